//! The controls each exception level's firmware sets on every CPU before it lets a lower level run,
//! decided from the CPU's own ID registers.
//!
//! Why a crate: what the monitor allows the Non-secure world (its traps, where its FIQs go, whether
//! it may count EL3's instructions) is a security decision, and it must be checked on the host like
//! the rest of the logic. Each set-up is written once, against `arm-sysregs`' typed registers: on
//! the target the accessors are `mrs`/`msr`; in this crate's tests they are `arm-sysregs`' fake
//! registers (its `fakes` feature), so the very code the firmware runs is exercised with made-up
//! CPUs (with and without SVE, SME, FEAT_FGT, ...) and the registers it wrote are read back.
//!
//! * [`el3`]: `SCR_EL3`, `CPTR_EL3`, `MDCR_EL3`, `ZCR_EL3`, `SMCR_EL3` (the monitor, at boot and
//!   after every warm boot), written here and tested against fake registers.
//! * [`el2`]: `HCR_EL2`, `MDCR_EL2`, `CPTR_EL2`, `CNTHCTL_EL2` while the host runs and while a
//!   guest runs (the hypervisor writes them at boot and on every world switch; `ZCR_EL2` and
//!   `SMCR_EL2`, which `arm-sysregs` 0.5.2 lacks, stay with it).
//! * [`reset`]: the EL1/EL2 system control values a CPU has after reset, which PSCI entry points
//!   and a new vCPU start from.
//! * [`translation`]: `MAIR`, `TCR` and `SCTLR` of the EL3 and EL2 identity maps.
#![cfg_attr(not(test), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

pub mod el2;
pub mod el3;
pub mod reset;
pub mod translation;

/// Whether the Non-secure PMU may count what a higher exception level executes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counting {
    /// Counting prohibited (`MDCR_EL3.SPME` clear, `MDCR_EL2.HPMD` set): the Non-secure world learns
    /// nothing of what the higher level executes. Every build but the benchmark's.
    Prohibited,
    /// The benchmark build, so the Non-secure PMU sees the higher level's cost.
    Allowed,
}

/// An instruction synchronization barrier: makes the control-register writes before it take effect
/// for the instructions after it. Nothing to do against fake registers.
#[inline(always)]
pub fn isb() {
    #[cfg(all(target_arch = "aarch64", not(test)))]
    // SAFETY: ISB only synchronizes the instruction stream; it reads or writes no memory.
    unsafe {
        core::arch::asm!("isb", options(nostack, preserves_flags))
    };
}
