//! CPU identification and errata decisions, as data.
//!
//! This crate answers one question for the rest of the system: *does this CPU need the workaround
//! for a given erratum?* It decodes the three identification registers that matter
//! (`MIDR_EL1`, `REVIDR_EL1`, `ID_AA64PFR1_EL1`) into a [`CpuIdentity`], and describes each erratum
//! as a type implementing [`Erratum`] whose affected parts and revisions are a constant
//! [`ErratumScope`], not a chain of `if`s.
//!
//! The only erratum modelled today is [`SmeDvmSyncEarlyAck`] (Arm erratum 4193714,
//! CVE-2026-0995): on Arm C1-Pro with SME, a `TLBI` + `DSB` on one CPU can complete while another
//! CPU still has SME memory accesses in flight.
//!
//! [`CpuModel`] names the CPU models the tooling can ask QEMU to present (`-cpu max,midr=...`) and
//! predicts whether the erratum detection will fire for each of them.
//!
//! Reading the registers is the caller's job (firmware reads them with `mrs`; host tests build
//! [`CpuIdentity`] values directly), so everything here is plain data and host-testable.
//! `arm-sysregs` and `aarch64-cpu` provide register *access*; neither decides errata, so this crate
//! stands alone and has no dependencies.
//!
//! ```
//! use errata::{CpuIdentity, CpuModel, Erratum, Midr, SmeDvmSyncEarlyAck};
//!
//! // C1-Pro r0p2 with SME: affected.
//! let cpu = CpuIdentity { midr: Midr::new(0x410F_D8B2), revidr: 0, id_aa64pfr1: 1 << 24 };
//! assert!(SmeDvmSyncEarlyAck::applies_to(&cpu));
//! // The tooling's view: `--cpu c1-pro-r2p0` becomes `-cpu max,midr=0x412fd8b0`, not affected.
//! let model: CpuModel = "c1-pro-r2p0".parse().expect("known model");
//! assert_eq!(model.midr(), Some(0x412F_D8B0));
//! assert!(!model.affected_in_qemu());
//! ```
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod model;

pub use model::{CpuModel, UnknownCpuModel};

use core::fmt;

/// The value of `MIDR_EL1` (Main ID Register): who made the CPU, which part, which revision.
///
/// Layout: implementer `[31:24]`, variant `[23:20]` (the "r" in r1p2), architecture `[19:16]`,
/// part number `[15:4]`, revision `[3:0]` (the "p" in r1p2). Bits `[63:32]` of the 64-bit
/// register are reserved and dropped by [`Midr::from_register`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Midr(u32);

impl Midr {
    /// Wraps a 32-bit MIDR value.
    pub const fn new(value: u32) -> Self {
        Self(value)
    }

    /// Takes the value read from the 64-bit `MIDR_EL1` register; the reserved upper half is ignored.
    pub const fn from_register(value: u64) -> Self {
        // Truncation is the point: bits [63:32] are RES0.
        Self(value as u32)
    }

    /// Builds a MIDR from its fields, or `None` if a field does not fit its bit width
    /// (variant, architecture and revision are 4 bits, the part number 12 bits).
    pub const fn from_parts(
        implementer: u8,
        variant: u8,
        architecture: u8,
        part_number: u16,
        revision: u8,
    ) -> Option<Self> {
        if variant > 0xF || architecture > 0xF || part_number > 0xFFF || revision > 0xF {
            return None;
        }
        Some(Self(
            (implementer as u32) << 24
                | (variant as u32) << 20
                | (architecture as u32) << 16
                | (part_number as u32) << 4
                | revision as u32,
        ))
    }

    /// The raw 32-bit value.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// Implementer code, bits `[31:24]` (`0x41` is Arm Limited, `0x00` is reserved for software
    /// use and is what QEMU's `max` CPU reports).
    pub const fn implementer(self) -> u8 {
        (self.0 >> 24) as u8
    }

    /// Major revision, bits `[23:20]` (the `r` in `r1p2`).
    pub const fn variant(self) -> u8 {
        ((self.0 >> 20) & 0xF) as u8
    }

    /// Architecture field, bits `[19:16]` (`0xF`: defined by the ID registers).
    pub const fn architecture(self) -> u8 {
        ((self.0 >> 16) & 0xF) as u8
    }

    /// Primary part number, bits `[15:4]` (`0xD8B` is C1-Pro).
    pub const fn part_number(self) -> u16 {
        ((self.0 >> 4) & 0xFFF) as u16
    }

    /// Minor revision, bits `[3:0]` (the `p` in `r1p2`).
    pub const fn revision(self) -> u8 {
        (self.0 & 0xF) as u8
    }

    /// The variant and revision together, as an ordered [`Revision`].
    pub const fn variant_revision(self) -> Revision {
        Revision {
            variant: self.variant(),
            revision: self.revision(),
        }
    }
}

impl fmt::Display for Midr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

/// A product revision `rNpM` (variant N, revision M), ordered as Arm orders them:
/// r0p0 < r0p2 < r1p0 < r1p2 < r2p0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    /// Major revision (MIDR variant field), 0..=15.
    pub variant: u8,
    /// Minor revision (MIDR revision field), 0..=15.
    pub revision: u8,
}

impl Revision {
    /// `rVpR`.
    pub const fn new(variant: u8, revision: u8) -> Self {
        Self { variant, revision }
    }

    /// `self <= other` usable in `const fn` (derived `Ord` is not const).
    const fn at_most(self, other: Revision) -> bool {
        self.variant < other.variant
            || (self.variant == other.variant && self.revision <= other.revision)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}p{}", self.variant, self.revision)
    }
}

/// The identification registers of one CPU that errata decisions depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuIdentity {
    /// `MIDR_EL1`.
    pub midr: Midr,
    /// `REVIDR_EL1`: implementation-defined bits that mark fixes applied within a revision.
    pub revidr: u64,
    /// `ID_AA64PFR1_EL1`: processor feature register 1 (holds the SME field).
    pub id_aa64pfr1: u64,
}

impl CpuIdentity {
    /// Bit position of the SME field in `ID_AA64PFR1_EL1` (`[27:24]`).
    pub const SME_FIELD_SHIFT: u32 = 24;

    /// Whether SME is implemented: `ID_AA64PFR1_EL1.SME` (bits `[27:24]`) is non-zero.
    pub const fn sme_implemented(&self) -> bool {
        (self.id_aa64pfr1 >> Self::SME_FIELD_SHIFT) & 0xF != 0
    }

    /// The known part this CPU is, if it is in [`CpuPart::KNOWN`].
    pub fn part(&self) -> Option<&'static CpuPart> {
        CpuPart::lookup(self.midr)
    }
}

/// A CPU part: implementer plus primary part number, with a human-readable name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuPart {
    /// MIDR implementer code.
    pub implementer: u8,
    /// MIDR primary part number.
    pub part_number: u16,
    /// Marketing name, for logs.
    pub name: &'static str,
}

impl CpuPart {
    /// Implementer code of Arm Limited.
    pub const ARM_IMPLEMENTER: u8 = 0x41;

    /// Arm C1-Pro: the part affected by erratum 4193714.
    pub const ARM_C1_PRO: CpuPart = CpuPart {
        implementer: Self::ARM_IMPLEMENTER,
        part_number: 0xD8B,
        name: "Arm C1-Pro",
    };

    /// Arm Cortex-A720.
    pub const ARM_CORTEX_A720: CpuPart = CpuPart {
        implementer: Self::ARM_IMPLEMENTER,
        part_number: 0xD81,
        name: "Arm Cortex-A720",
    };

    /// Arm Cortex-A520.
    pub const ARM_CORTEX_A520: CpuPart = CpuPart {
        implementer: Self::ARM_IMPLEMENTER,
        part_number: 0xD80,
        name: "Arm Cortex-A520",
    };

    /// Arm Neoverse N2.
    pub const ARM_NEOVERSE_N2: CpuPart = CpuPart {
        implementer: Self::ARM_IMPLEMENTER,
        part_number: 0xD49,
        name: "Arm Neoverse N2",
    };

    /// QEMU's `max` CPU: implementer 0 ("reserved for software use"), part number `'Q'`.
    pub const QEMU_MAX: CpuPart = CpuPart {
        implementer: 0x00,
        part_number: 0x051,
        name: "QEMU max",
    };

    /// Every part this crate can name.
    pub const KNOWN: [CpuPart; 5] = [
        Self::ARM_C1_PRO,
        Self::ARM_CORTEX_A720,
        Self::ARM_CORTEX_A520,
        Self::ARM_NEOVERSE_N2,
        Self::QEMU_MAX,
    ];

    /// Whether `midr` is this part (any revision).
    pub const fn matches(&self, midr: Midr) -> bool {
        midr.implementer() == self.implementer && midr.part_number() == self.part_number
    }

    /// Finds the known part for `midr`.
    pub fn lookup(midr: Midr) -> Option<&'static CpuPart> {
        Self::KNOWN.iter().find(|part| part.matches(midr))
    }

    /// The MIDR of revision `revision` of this part (architecture field `0xF`), or `None` if the
    /// revision does not fit the MIDR fields.
    pub const fn midr(&self, revision: Revision) -> Option<Midr> {
        Midr::from_parts(
            self.implementer,
            revision.variant,
            0xF,
            self.part_number,
            revision.revision,
        )
    }
}

/// A fix within a revision, marked by a `REVIDR_EL1` bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevidrFix {
    /// The revision in which the bit has this meaning.
    pub revision: Revision,
    /// The `REVIDR_EL1` bit that, when set, says the erratum is fixed.
    pub bit: u32,
}

/// Which CPUs an erratum affects, as data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErratumScope {
    /// The affected part.
    pub part: CpuPart,
    /// First affected revision (inclusive).
    pub first: Revision,
    /// Last affected revision (inclusive).
    pub last: Revision,
    /// A revision in which a `REVIDR_EL1` bit marks the fix.
    pub revidr_fix: Option<RevidrFix>,
    /// Only CPUs that implement SME are affected.
    pub requires_sme: bool,
}

impl ErratumScope {
    /// Whether a CPU with this identity is affected.
    pub const fn applies_to(&self, cpu: &CpuIdentity) -> bool {
        if !self.part.matches(cpu.midr) {
            return false;
        }
        let revision = cpu.midr.variant_revision();
        if !(self.first.at_most(revision) && revision.at_most(self.last)) {
            return false;
        }
        if let Some(fix) = self.revidr_fix {
            let fixed_bit_set = fix.bit < 64 && (cpu.revidr >> fix.bit) & 1 == 1;
            if fix.revision.variant == revision.variant
                && fix.revision.revision == revision.revision
                && fixed_bit_set
            {
                return false;
            }
        }
        !self.requires_sme || cpu.sme_implemented()
    }
}

/// A CPU erratum: an identifier, a description, and the decision whether it applies to a CPU.
///
/// The workaround itself lives with the code that needs it (the EL3 rendezvous, the hypervisor's
/// donation path); this trait only tells them whether to use it.
pub trait Erratum {
    /// Arm's erratum number.
    const ID: u32;
    /// The CVE, if the erratum has one.
    const CVE: Option<&'static str>;
    /// One-line description for logs.
    const DESCRIPTION: &'static str;

    /// Whether a CPU with this identity is affected.
    fn applies_to(cpu: &CpuIdentity) -> bool;
}

/// Arm erratum 4193714 (CVE-2026-0995), "SME DVMSync early acknowledgement".
///
/// A `TLBI` + `DSB` on one CPU can complete while another CPU still has memory accesses in flight
/// that SME issued (`LDR`/`STR` of `ZA`/`ZT0`, loads and stores in Streaming mode). Affected:
/// Arm C1-Pro r0p0 to r1p2 inclusive, except r1p2 with `REVIDR_EL1` bit 0 set, and only when SME
/// is implemented (`ID_AA64PFR1_EL1.SME != 0`), as Linux decides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmeDvmSyncEarlyAck;

impl SmeDvmSyncEarlyAck {
    /// The affected CPUs.
    pub const SCOPE: ErratumScope = ErratumScope {
        part: CpuPart::ARM_C1_PRO,
        first: Revision::new(0, 0),
        last: Revision::new(1, 2),
        revidr_fix: Some(RevidrFix {
            revision: Revision::new(1, 2),
            bit: 0,
        }),
        requires_sme: true,
    };
}

impl Erratum for SmeDvmSyncEarlyAck {
    const ID: u32 = 4_193_714;
    const CVE: Option<&'static str> = Some("CVE-2026-0995");
    const DESCRIPTION: &'static str = "SME DVMSync early acknowledgement: TLBI+DSB can complete \
        while another CPU's SME loads/stores are in flight";

    fn applies_to(cpu: &CpuIdentity) -> bool {
        Self::SCOPE.applies_to(cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ID_AA64PFR1_EL1` with SME = 1 (SMEv1) and a few unrelated fields set.
    const PFR1_SME: u64 = (1 << 24) | 0x0000_0000_0000_0121;
    /// `ID_AA64PFR1_EL1` with SME = 2 (SME2).
    const PFR1_SME2: u64 = 2 << 24;
    /// `ID_AA64PFR1_EL1` without SME (other fields set, bits [27:24] clear).
    const PFR1_NO_SME: u64 = 0xFFFF_FFFF_F0FF_FFFF;

    fn cpu(midr: u32, revidr: u64, id_aa64pfr1: u64) -> CpuIdentity {
        CpuIdentity {
            midr: Midr::new(midr),
            revidr,
            id_aa64pfr1,
        }
    }

    #[test]
    fn midr_fields_decode() {
        // (MIDR, implementer, variant, architecture, part number, revision)
        let table: [(u32, u8, u8, u8, u16, u8); 4] = [
            (0x410F_D8B2, 0x41, 0, 0xF, 0xD8B, 2),
            (0x411F_D8B2, 0x41, 1, 0xF, 0xD8B, 2),
            (0x412F_D8B0, 0x41, 2, 0xF, 0xD8B, 0),
            (0x000F_0510, 0x00, 0, 0xF, 0x051, 0),
        ];
        for (value, implementer, variant, architecture, part, revision) in table {
            let midr = Midr::new(value);
            assert_eq!(midr.implementer(), implementer, "{midr}");
            assert_eq!(midr.variant(), variant, "{midr}");
            assert_eq!(midr.architecture(), architecture, "{midr}");
            assert_eq!(midr.part_number(), part, "{midr}");
            assert_eq!(midr.revision(), revision, "{midr}");
            assert_eq!(
                Midr::from_parts(implementer, variant, architecture, part, revision),
                Some(midr)
            );
        }
    }

    #[test]
    fn midr_from_parts_rejects_oversized_fields() {
        assert_eq!(Midr::from_parts(0x41, 16, 0xF, 0xD8B, 0), None);
        assert_eq!(Midr::from_parts(0x41, 0, 16, 0xD8B, 0), None);
        assert_eq!(Midr::from_parts(0x41, 0, 0xF, 0x1000, 0), None);
        assert_eq!(Midr::from_parts(0x41, 0, 0xF, 0xD8B, 16), None);
        assert_eq!(
            Midr::from_register(0xFFFF_FFFF_410F_D8B2),
            Midr::new(0x410F_D8B2)
        );
    }

    #[test]
    fn revisions_order_and_print() {
        let ordered = [(0, 0), (0, 2), (0, 15), (1, 0), (1, 2), (2, 0)];
        for pair in ordered.windows(2) {
            let lower = Revision::new(pair[0].0, pair[0].1);
            let higher = Revision::new(pair[1].0, pair[1].1);
            assert!(lower < higher);
            assert!(lower.at_most(higher) && !higher.at_most(lower));
        }
        assert_eq!(Revision::new(1, 2).to_string(), "r1p2");
    }

    #[test]
    fn sme_field_decodes() {
        assert!(cpu(0, 0, PFR1_SME).sme_implemented());
        assert!(cpu(0, 0, PFR1_SME2).sme_implemented());
        assert!(!cpu(0, 0, PFR1_NO_SME).sme_implemented());
        assert!(!cpu(0, 0, 0).sme_implemented());
    }

    #[test]
    fn erratum_4193714_table() {
        // (case, MIDR, REVIDR, ID_AA64PFR1, affected)
        let table: [(&str, u32, u64, u64, bool); 15] = [
            ("C1-Pro r0p0", 0x410F_D8B0, 0, PFR1_SME, true),
            ("C1-Pro r0p1", 0x410F_D8B1, 0, PFR1_SME, true),
            ("C1-Pro r0p2", 0x410F_D8B2, 0, PFR1_SME, true),
            ("C1-Pro r1p0", 0x411F_D8B0, 0, PFR1_SME, true),
            ("C1-Pro r1p1", 0x411F_D8B1, 0, PFR1_SME, true),
            (
                "C1-Pro r1p2, REVIDR[0] clear",
                0x411F_D8B2,
                0,
                PFR1_SME,
                true,
            ),
            (
                "C1-Pro r1p2, other REVIDR bits",
                0x411F_D8B2,
                !1,
                PFR1_SME,
                true,
            ),
            (
                "C1-Pro r1p2, REVIDR[0] set",
                0x411F_D8B2,
                1,
                PFR1_SME,
                false,
            ),
            ("C1-Pro r1p1, REVIDR[0] set", 0x411F_D8B1, 1, PFR1_SME, true),
            ("C1-Pro r1p3", 0x411F_D8B3, 0, PFR1_SME, false),
            ("C1-Pro r2p0", 0x412F_D8B0, 0, PFR1_SME, false),
            ("C1-Pro r0p2 SME2", 0x410F_D8B2, 0, PFR1_SME2, true),
            (
                "C1-Pro r0p2 without SME",
                0x410F_D8B2,
                0,
                PFR1_NO_SME,
                false,
            ),
            ("Cortex-A720 r0p0", 0x410F_D810, 0, PFR1_SME, false),
            (
                "other implementer, part 0xD8B",
                0x420F_D8B2,
                0,
                PFR1_SME,
                false,
            ),
        ];
        for (case, midr, revidr, pfr1, affected) in table {
            assert_eq!(
                SmeDvmSyncEarlyAck::applies_to(&cpu(midr, revidr, pfr1)),
                affected,
                "{case}"
            );
        }
        // QEMU's own `max` MIDR.
        assert!(!SmeDvmSyncEarlyAck::applies_to(&cpu(
            0x000F_0510,
            0,
            PFR1_SME
        )));
    }

    #[test]
    fn erratum_4193714_metadata() {
        assert_eq!(SmeDvmSyncEarlyAck::ID, 4193714);
        assert_eq!(SmeDvmSyncEarlyAck::CVE, Some("CVE-2026-0995"));
        assert!(SmeDvmSyncEarlyAck::DESCRIPTION.contains("SME"));
    }

    #[test]
    fn parts_are_found_by_midr() {
        let c1_pro = cpu(0x411F_D8B1, 0, 0);
        assert_eq!(c1_pro.part().map(|part| part.name), Some("Arm C1-Pro"));
        assert_eq!(
            cpu(0x410F_D810, 0, 0).part(),
            Some(&CpuPart::ARM_CORTEX_A720)
        );
        assert_eq!(cpu(0x510F_D8B0, 0, 0).part(), None);
        assert_eq!(
            CpuPart::ARM_C1_PRO.midr(Revision::new(1, 2)),
            Some(Midr::new(0x411F_D8B2))
        );
        // Every known part is distinct.
        for (index, part) in CpuPart::KNOWN.iter().enumerate() {
            for other in &CpuPart::KNOWN[index + 1..] {
                assert!(
                    (part.implementer, part.part_number) != (other.implementer, other.part_number)
                );
            }
        }
    }
}
