//! The CPU models the tooling offers (`cargo xtask run --cpu MODEL`, `cargo xtask demo --cpu MODEL`).
//!
//! A model other than `max` becomes `-cpu max,midr=0x...`: QEMU's `max` CPU (with SME) presents the
//! chosen MIDR, so erratum detection runs on real register values. QEMU cannot set `REVIDR_EL1`
//! from the command line; it reads as 0, so a `c1-pro-r1p2` model is the *unfixed* r1p2.

use crate::{CpuIdentity, CpuPart, Erratum, Midr, Revision, SmeDvmSyncEarlyAck};
use core::{fmt, str::FromStr};

/// A named CPU model QEMU can present.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuModel {
    /// QEMU's own `max` CPU, keeping its own MIDR (implementer 0): not affected.
    Max,
    /// Arm C1-Pro r0p0 (affected).
    C1ProR0p0,
    /// Arm C1-Pro r0p2 (affected).
    C1ProR0p2,
    /// Arm C1-Pro r1p0 (affected).
    C1ProR1p0,
    /// Arm C1-Pro r1p1 (affected): the demo's default.
    C1ProR1p1,
    /// Arm C1-Pro r1p2 (affected in QEMU, where `REVIDR_EL1` bit 0 is clear).
    C1ProR1p2,
    /// Arm C1-Pro r2p0 (fixed revision).
    C1ProR2p0,
    /// Arm Cortex-A720 r0p0 (another Arm part: not affected).
    CortexA720,
}

/// `ID_AA64PFR1_EL1` as this crate assumes QEMU's `max` CPU reports it: only the SME field
/// (`[27:24]` = 1, SMEv1) is modelled, because it is the only field erratum decisions read.
const QEMU_MAX_ID_AA64PFR1: u64 = 1 << CpuIdentity::SME_FIELD_SHIFT;

/// `MIDR_EL1` of QEMU's `max` CPU (implementer 0, architecture 0xF, part number `'Q'`).
const QEMU_MAX_MIDR: u32 = 0x000F_0510;

impl CpuModel {
    /// Every model, in the order the tooling lists them.
    pub const ALL: [CpuModel; 8] = [
        Self::Max,
        Self::C1ProR0p0,
        Self::C1ProR0p2,
        Self::C1ProR1p0,
        Self::C1ProR1p1,
        Self::C1ProR1p2,
        Self::C1ProR2p0,
        Self::CortexA720,
    ];

    /// The name used on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Max => "max",
            Self::C1ProR0p0 => "c1-pro-r0p0",
            Self::C1ProR0p2 => "c1-pro-r0p2",
            Self::C1ProR1p0 => "c1-pro-r1p0",
            Self::C1ProR1p1 => "c1-pro-r1p1",
            Self::C1ProR1p2 => "c1-pro-r1p2",
            Self::C1ProR2p0 => "c1-pro-r2p0",
            Self::CortexA720 => "cortex-a720",
        }
    }

    /// Finds a model by its command-line name (exact, lower case).
    pub fn parse(name: &str) -> Result<CpuModel, UnknownCpuModel> {
        Self::ALL
            .into_iter()
            .find(|model| model.name() == name)
            .ok_or(UnknownCpuModel)
    }

    /// The part and revision this model presents, or `None` for `max`.
    const fn part_revision(self) -> Option<(CpuPart, Revision)> {
        let c1_pro = CpuPart::ARM_C1_PRO;
        match self {
            Self::Max => None,
            Self::C1ProR0p0 => Some((c1_pro, Revision::new(0, 0))),
            Self::C1ProR0p2 => Some((c1_pro, Revision::new(0, 2))),
            Self::C1ProR1p0 => Some((c1_pro, Revision::new(1, 0))),
            Self::C1ProR1p1 => Some((c1_pro, Revision::new(1, 1))),
            Self::C1ProR1p2 => Some((c1_pro, Revision::new(1, 2))),
            Self::C1ProR2p0 => Some((c1_pro, Revision::new(2, 0))),
            Self::CortexA720 => Some((CpuPart::ARM_CORTEX_A720, Revision::new(0, 0))),
        }
    }

    /// The MIDR to pass as `-cpu max,midr=...`, or `None` for `max` (QEMU keeps its own MIDR).
    pub const fn midr(self) -> Option<u32> {
        match self.part_revision() {
            None => None,
            Some((part, revision)) => match part.midr(revision) {
                Some(midr) => Some(midr.value()),
                None => None,
            },
        }
    }

    /// The identity a CPU of this model has under QEMU: this model's MIDR (or QEMU's own for
    /// `max`), `REVIDR_EL1` = 0, SME implemented.
    pub const fn identity_in_qemu(self) -> CpuIdentity {
        let midr = match self.midr() {
            Some(midr) => midr,
            None => QEMU_MAX_MIDR,
        };
        CpuIdentity {
            midr: Midr::new(midr),
            revidr: 0,
            id_aa64pfr1: QEMU_MAX_ID_AA64PFR1,
        }
    }

    /// Whether erratum 4193714 detection fires for this model under QEMU.
    pub fn affected_in_qemu(self) -> bool {
        SmeDvmSyncEarlyAck::applies_to(&self.identity_in_qemu())
    }
}

impl fmt::Display for CpuModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CpuModel {
    type Err = UnknownCpuModel;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::parse(name)
    }
}

/// The name given is not one of [`CpuModel::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownCpuModel;

impl fmt::Display for UnknownCpuModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown CPU model; expected one of:")?;
        for model in CpuModel::ALL {
            write!(f, " {}", model.name())?;
        }
        Ok(())
    }
}

impl core::error::Error for UnknownCpuModel {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_table() {
        // (name, MIDR passed to QEMU, affected under QEMU)
        let table: [(&str, Option<u32>, bool); 8] = [
            ("max", None, false),
            ("c1-pro-r0p0", Some(0x410F_D8B0), true),
            ("c1-pro-r0p2", Some(0x410F_D8B2), true),
            ("c1-pro-r1p0", Some(0x411F_D8B0), true),
            ("c1-pro-r1p1", Some(0x411F_D8B1), true),
            ("c1-pro-r1p2", Some(0x411F_D8B2), true),
            ("c1-pro-r2p0", Some(0x412F_D8B0), false),
            ("cortex-a720", Some(0x410F_D810), false),
        ];
        assert_eq!(table.len(), CpuModel::ALL.len());
        for (name, midr, affected) in table {
            let model = CpuModel::parse(name).unwrap_or_else(|_| panic!("{name} must parse"));
            assert_eq!(model.name(), name);
            assert_eq!(model.midr(), midr, "{name}");
            assert_eq!(model.affected_in_qemu(), affected, "{name}");
        }
    }

    #[test]
    fn parse_round_trips_every_model() {
        for model in CpuModel::ALL {
            assert_eq!(CpuModel::parse(model.name()), Ok(model));
            assert_eq!(model.to_string().parse::<CpuModel>(), Ok(model));
        }
    }

    #[test]
    fn parse_rejects_unknown_names() {
        for name in ["", "MAX", "c1-pro", "c1-pro-r3p0", "cortex-a720 ", "host"] {
            assert_eq!(CpuModel::parse(name), Err(UnknownCpuModel), "{name:?}");
        }
        let message = UnknownCpuModel.to_string();
        for model in CpuModel::ALL {
            assert!(message.contains(model.name()));
        }
    }

    #[test]
    fn max_keeps_qemu_identity() {
        let identity = CpuModel::Max.identity_in_qemu();
        assert_eq!(identity.midr.implementer(), 0);
        assert!(identity.sme_implemented());
        assert_eq!(identity.part(), Some(&CpuPart::QEMU_MAX));
    }
}
