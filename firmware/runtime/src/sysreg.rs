//! The system registers the test payloads (`host-demo`, `guest-demo`, `el2-test-payload`) reach that
//! `arm-sysregs` does not (yet) give, and the barrier they write them with.
//!
//! Every other system register of the payloads goes through `arm-sysregs` (0.5.2): its typed
//! accessors (`read_esr_el1`, `write_cpacr_el1`, `write_icc_sre_el2`, ...) and its types with named
//! fields (`CpacrEl1::with_fpen`, `TcrEl1::with_t0sz`, `SctlrEl1::M`, `PmcrEl0::E`, ...); the GICv3
//! CPU interface goes through `arm-gic`'s `GicCpuInterface`.
//!
//! What `arm-sysregs` 0.5.2 lacks, and so what this module keeps by hand:
//!
//! | register or field | what the crate lacks |
//! |---|---|
//! | `TPIDR2_EL0` | no accessor |
//! | `SMCR_EL1` (`LEN`) | no accessor and no type (only `SMCR_EL3`) |
//! | `PMEVTYPER0_EL0` (`evtCount`, `P`, `U`, `NSH`, `M`) | no AArch64 accessor and no type with the fields (the AArch32 `PMXEVTYPER` type has one opaque `ETR` field) |
//! | `PMEVCNTR0_EL0` | no AArch64 accessor |
//! | `PMCNTENSET_EL0` | no AArch64 accessor (the AArch32 `Pmcntenset` type, with `P0`, has the same layout and is used for the value) |
//! | `ISB` | barriers are not system registers; the crate's accessors do not synchronize |

use arm_sysregs::aarch32::registers::Pmcntenset;
use arm_sysregs::el0::accessors::{
    read_cntv_ctl_el0, read_cntv_cval_el0, write_cntv_ctl_el0, write_cntv_cval_el0,
};
use arm_sysregs::el0::registers::{CntvCtlEl0, CntvCvalEl0};
use arm_sysregs::el1::accessors::{
    read_apiakeylo_el1, read_csselr_el1, write_apiakeylo_el1, write_csselr_el1,
};
use arm_sysregs::el1::registers::{ApiakeyloEl1, CsselrEl1, SctlrEl1};

/// `SCTLR_EL1` with the MMU and caches off, as the payloads enter EL1: the architectural reset value
/// (`cpu_setup::reset::SCTLR_EL1`).
pub const SCTLR_EL1_MMU_OFF: SctlrEl1 = cpu_setup::reset::SCTLR_EL1;

/// Generates `read_<name>` and/or `write_<name>` (or both, given both names) for a 64-bit system
/// register by its assembler name: for the registers `arm-sysregs` 0.5.2 lacks, here and in the
/// hypervisor (`hyp/src/sysreg.rs`).
///
/// Whoever invokes it promises what the `SAFETY` comments below rely on: reading the register has no
/// side effect on memory, and writing it changes neither memory nor the running level's own
/// translation (thread-ID registers, PMU controls, vector-length controls, the lower level's
/// registers a world switch swaps).
#[macro_export]
macro_rules! sysreg {
    ($(#[$meta:meta])* $read:ident, $write:ident, $asm:literal) => {
        $crate::sysreg!($(#[$meta])* read $read, $asm);
        $crate::sysreg!($(#[$meta])* write $write, $asm);
    };
    ($(#[$meta:meta])* read $read:ident, $asm:literal) => {
        $(#[$meta])*
        #[inline(always)]
        pub fn $read() -> u64 {
            let value: u64;
            // SAFETY: the invoker promises that reading this register has no side effect on memory.
            unsafe {
                core::arch::asm!(concat!("mrs {}, ", $asm), out(reg) value, options(nomem, nostack, preserves_flags))
            };
            value
        }
    };
    ($(#[$meta:meta])* write $write:ident, $asm:literal) => {
        $(#[$meta])*
        #[inline(always)]
        pub fn $write(value: u64) {
            // SAFETY: the invoker promises that writing this register changes neither memory nor
            // the running level's own translation.
            unsafe { core::arch::asm!(concat!("msr ", $asm, ", {}"), in(reg) value, options(nostack, preserves_flags)) };
        }
    };
}

sysreg!(
    /// `TPIDR2_EL0` (SME).
    read read_tpidr2_el0,
    "S3_3_C13_C0_5"
);
sysreg!(
    /// `TPIDR2_EL0` (SME).
    write write_tpidr2_el0,
    "S3_3_C13_C0_5"
);
sysreg!(
    /// `SMCR_EL1` (SME): only the payload's own streaming vector length.
    write write_smcr_el1_raw,
    "S3_0_C1_C2_6"
);
sysreg!(
    /// `PMEVTYPER0_EL0`.
    write write_pmevtyper0_el0_raw,
    "pmevtyper0_el0"
);
sysreg!(
    /// `PMEVCNTR0_EL0`.
    read read_pmevcntr0_el0,
    "pmevcntr0_el0"
);
sysreg!(
    /// `PMEVCNTR0_EL0`.
    write write_pmevcntr0_el0,
    "pmevcntr0_el0"
);
sysreg!(
    /// `PMCNTENSET_EL0`.
    write write_pmcntenset_el0_raw,
    "pmcntenset_el0"
);

/// `SMCR_EL1.LEN`: the requested streaming vector length, (LEN + 1) × 128 bits.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct SmcrLen(u8);

impl SmcrLen {
    /// The largest length the field can request (LEN = 15: 2048 bits); the CPU gives the largest it
    /// implements up to that.
    pub const MAX: Self = Self(0b1111);

    /// The register value with this length and every other field 0 (`FA64`, `EZT0` clear).
    pub const fn bits(self) -> u64 {
        self.0 as u64
    }
}

/// Writes `SMCR_EL1` with `len` (every other field 0).
#[inline(always)]
pub fn write_smcr_el1(len: SmcrLen) {
    write_smcr_el1_raw(len.bits());
}

/// `PMEVTYPER<n>_EL0`: the event a PMU event counter counts and at which levels.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Pmevtyper(u64);

impl Pmevtyper {
    /// `evtCount` of `INST_RETIRED` (instructions architecturally executed).
    pub const INST_RETIRED: u16 = 0x08;
    /// `P` (bit 31): do not count at EL1 (with `M`: EL3 too, when `M` = `P`).
    pub const P: u64 = 1 << 31;
    /// `U` (bit 30): do not count at EL0.
    pub const U: u64 = 1 << 30;
    /// `NSH` (bit 27): count at Non-secure EL2.
    pub const NSH: u64 = 1 << 27;
    /// `M` (bit 26): count at EL3 when equal to `P`.
    pub const M: u64 = 1 << 26;

    /// Counts `event` with the filter bits `filters` (an OR of [`Self::P`], [`Self::U`],
    /// [`Self::NSH`], [`Self::M`]).
    pub const fn new(event: u16, filters: u64) -> Self {
        Self(event as u64 | filters)
    }

    /// The register value.
    pub const fn bits(self) -> u64 {
        self.0
    }
}

/// Writes `PMEVTYPER0_EL0`.
#[inline(always)]
pub fn write_pmevtyper0_el0(value: Pmevtyper) {
    write_pmevtyper0_el0_raw(value.bits());
}

/// Writes `PMCNTENSET_EL0` (enables the counters whose bits are set; `Pmcntenset::P0` is counter 0).
#[inline(always)]
pub fn write_pmcntenset_el0(value: Pmcntenset) {
    write_pmcntenset_el0_raw(u64::from(value.bits()));
}

/// An instruction synchronization barrier: makes the system-register writes before it take effect
/// for the instructions after it.
#[inline(always)]
pub fn isb() {
    // SAFETY: a barrier touches no memory.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
}

/// The EL1/EL0 registers the attack suite marks to check that the hypervisor's world switch swaps
/// them between the host and a guest, in this order: `APIAKeyLo_EL1`, `TPIDR2_EL0`,
/// `CNTV_CVAL_EL0`, `CNTV_CTL_EL0` (`ENABLE` and `IMASK` only: `ISTATUS` is the timer's, not
/// software's), `CSSELR_EL1`.
pub fn read_switched_registers() -> [u64; 5] {
    let timer_control = read_cntv_ctl_el0() & (CntvCtlEl0::ENABLE | CntvCtlEl0::IMASK);
    [
        read_apiakeylo_el1().bits(),
        read_tpidr2_el0(),
        read_cntv_cval_el0().bits(),
        timer_control.bits(),
        read_csselr_el1().bits(),
    ]
}

/// Writes `values` to the registers of [`read_switched_registers`], in its order, and synchronizes.
///
/// # Safety
///
/// The caller uses none of these registers otherwise: pointer authentication is off (the key is not
/// used), the virtual timer's interrupt is not taken (`values[3]` enables the timer only with
/// `IMASK`, or not at all), and nothing depends on which cache `CSSELR_EL1` selects.
pub unsafe fn write_switched_registers(values: [u64; 5]) {
    // SAFETY: the caller does not use the key (see above).
    unsafe { write_apiakeylo_el1(ApiakeyloEl1::from_bits_retain(values[0])) };
    write_tpidr2_el0(values[1]);
    write_cntv_cval_el0(CntvCvalEl0::from_bits_retain(values[2]));
    write_cntv_ctl_el0(CntvCtlEl0::from_bits_retain(values[3]));
    write_csselr_el1(CsselrEl1::from_bits_retain(values[4]));
    isb();
}

// The values the payloads wrote by hand before, checked when the firmware builds (this crate is not
// host-tested: it is built for `aarch64-unknown-none` only).
const _: () = assert!(
    Pmevtyper::new(Pmevtyper::INST_RETIRED, Pmevtyper::U | Pmevtyper::NSH).bits()
        == 0x08 | (1 << 30) | (1 << 27)
);
const _: () = assert!(
    Pmevtyper::new(Pmevtyper::INST_RETIRED, Pmevtyper::U | Pmevtyper::M).bits()
        == 0x08 | (1 << 30) | (1 << 26)
);
const _: () = assert!(SmcrLen::MAX.bits() == 15);
