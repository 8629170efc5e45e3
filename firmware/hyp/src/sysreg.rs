//! System registers the hypervisor reaches that `arm-sysregs` does not (yet) give, and the barrier.
//!
//! Every other system register goes through `arm-sysregs` (0.5.2, feature `el2`): its typed accessors
//! (`read_hcr_el2`, `write_vttbr_el2`, ...) and its bitflags types with named fields (`HcrEl2::VM`,
//! `CptrEl2::RES1`, `MdcrEl2::with_hpmn`, `EsrEl2::ec`, `HpfarEl2::fipa`, ...).
//!
//! What `arm-sysregs` 0.5.2 lacks, and so what this module keeps by hand:
//!
//! | register or field | what the crate lacks |
//! |---|---|
//! | `REVIDR_EL1` | no accessor |
//! | `SP_EL0` | no accessor |
//! | `APIBKey*_EL1`, `APDAKey*_EL1`, `APDBKey*_EL1`, `APGAKey*_EL1` | no accessors (only `APIAKey{Lo,Hi}_EL1`); all ten keys are switched here together, by encoding |
//! | `TPIDR2_EL0` | no accessor |
//! | `PMCNTENSET_EL0`, `PMCNTENCLR_EL0` | no AArch64 accessors (only the AArch32 `PMCNTENSET`/`PMCNTENCLR` types) |
//! | `ZCR_EL2` (`LEN`) | no accessor and no type (only `ZCR_EL3`) |
//! | `SMCR_EL2` (`FA64`, `LEN`) | no accessor and no type (only `SMCR_EL3`) |
//! | `CNTHCTL_EL2.EL1PCTEN` (bit 0, `E2H` = 0) | the bit is named only by its `E2H` = 1 name, `EL0PCTEN` (`cpu_setup::el2::CNTHCTL_EL1PCTEN` aliases it) |

use firmware_runtime::sysreg;

sysreg!(
    /// `REVIDR_EL1`.
    read read_revidr_el1,
    "revidr_el1"
);
sysreg!(
    /// `SP_EL0`.
    read_sp_el0,
    write_sp_el0,
    "sp_el0"
);
sysreg!(
    /// `TPIDR2_EL0` (SME).
    read_tpidr2_el0,
    write_tpidr2_el0,
    "S3_3_C13_C0_5"
);
sysreg!(
    /// `PMCNTENSET_EL0`.
    read_pmcntenset_el0,
    write_pmcntenset_el0,
    "pmcntenset_el0"
);
sysreg!(
    /// `PMCNTENCLR_EL0`.
    write write_pmcntenclr_el0,
    "pmcntenclr_el0"
);
sysreg!(
    /// `ZCR_EL2` (SVE).
    write write_zcr_el2,
    "S3_4_C1_C2_0"
);
sysreg!(
    /// `SMCR_EL2` (SME).
    write write_smcr_el2,
    "S3_4_C1_C2_6"
);

/// `ZCR_EL2.LEN` (bits 3:0) at its largest: the largest vector length the CPU implements.
pub const ZCR_EL2_LEN_MAX: u64 = 0xF;
/// `SMCR_EL2.LEN` (bits 3:0) at its largest: the largest streaming vector length the CPU implements.
pub const SMCR_EL2_LEN_MAX: u64 = 0xF;
/// `SMCR_EL2.FA64` (bit 31): the full A64 instruction set in streaming mode.
pub const SMCR_EL2_FA64: u64 = 1 << 31;

/// The ten pointer-authentication key halves, in the order `APIAKeyLo`, `APIAKeyHi`, `APIBKeyLo`,
/// `APIBKeyHi`, `APDAKeyLo`, `APDAKeyHi`, `APDBKeyLo`, `APDBKeyHi`, `APGAKeyLo`, `APGAKeyHi`.
pub type PointerAuthenticationKeys = [u64; 10];

/// Reads the pointer-authentication keys (the CPU must implement pointer authentication).
pub fn read_pointer_authentication_keys() -> PointerAuthenticationKeys {
    macro_rules! read {
        ($($asm:literal),*) => {
            [$({
                let value: u64;
                // SAFETY: reading a key register (present: the caller checked) touches no memory.
                unsafe {
                    core::arch::asm!(concat!("mrs {}, ", $asm), out(reg) value, options(nomem, nostack, preserves_flags))
                };
                value
            }),*]
        };
    }
    read!(
        "S3_0_C2_C1_0",
        "S3_0_C2_C1_1",
        "S3_0_C2_C1_2",
        "S3_0_C2_C1_3",
        "S3_0_C2_C2_0",
        "S3_0_C2_C2_1",
        "S3_0_C2_C2_2",
        "S3_0_C2_C2_3",
        "S3_0_C2_C3_0",
        "S3_0_C2_C3_1"
    )
}

/// Writes the pointer-authentication keys (the CPU must implement pointer authentication).
pub fn write_pointer_authentication_keys(keys: &PointerAuthenticationKeys) {
    macro_rules! write {
        ($($index:literal: $asm:literal),*) => {
            $(
                // SAFETY: the keys are EL1 state the world switch swaps for the side about to run;
                // the hypervisor itself does not use pointer authentication.
                unsafe {
                    core::arch::asm!(concat!("msr ", $asm, ", {}"), in(reg) keys[$index], options(nostack, preserves_flags))
                };
            )*
        };
    }
    write!(
        0: "S3_0_C2_C1_0",
        1: "S3_0_C2_C1_1",
        2: "S3_0_C2_C1_2",
        3: "S3_0_C2_C1_3",
        4: "S3_0_C2_C2_0",
        5: "S3_0_C2_C2_1",
        6: "S3_0_C2_C2_2",
        7: "S3_0_C2_C2_3",
        8: "S3_0_C2_C3_0",
        9: "S3_0_C2_C3_1"
    );
}

/// `ISB`.
pub fn isb() {
    // SAFETY: a barrier touches no memory.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
}
