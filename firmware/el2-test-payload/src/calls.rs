//! SMCs to the monitor and the few system-register operations the scenarios need.

pub use platform_qemu::smccc::smc;

/// x0 of an SMC as a signed value.
pub fn smc_signed(function_id: u32, arguments: [u64; 3]) -> i64 {
    smc(function_id, arguments)[0] as i64
}

/// The erratum call.
pub const ERRATUM_CALL: u32 = abi::cpu_service::ERRATUM_4193714_WORKAROUND;
/// The monitor's statistics calls (`abi::statistics`).
use abi::statistics::{CALLER_STATISTICS, RENDEZVOUS_STATISTICS, WAIT_STATISTICS};
/// `SMCCC_VERSION`.
pub const SMCCC_VERSION: u32 = abi::smccc::SMCCC_VERSION;
/// `SMCCC_ARCH_FEATURES`.
pub const SMCCC_ARCH_FEATURES: u32 = abi::smccc::SMCCC_ARCH_FEATURES;

/// PSCI function IDs (from `abi`, which takes them from `arm-psci`).
pub mod psci {
    use abi::psci::PsciFunctionId as Id;

    /// `PSCI_VERSION`.
    pub const VERSION: u32 = Id::PsciVersion as u32;
    /// `CPU_SUSPEND` (SMC64).
    pub const CPU_SUSPEND: u32 = Id::CpuSuspend64 as u32;
    /// `CPU_SUSPEND` (SMC32).
    pub const CPU_SUSPEND_32: u32 = Id::CpuSuspend32 as u32;
    /// `CPU_OFF`.
    pub const CPU_OFF: u32 = Id::CpuOff as u32;
    /// `CPU_ON` (SMC64).
    pub const CPU_ON: u32 = Id::CpuOn64 as u32;
    /// `AFFINITY_INFO` (SMC64).
    pub const AFFINITY_INFO: u32 = Id::AffinityInfo64 as u32;
    /// `MIGRATE` (SMC64).
    pub const MIGRATE: u32 = Id::Migrate64 as u32;
    /// `MIGRATE_INFO_TYPE`.
    pub const MIGRATE_INFO_TYPE: u32 = Id::MigrateInfoType as u32;
    /// `SYSTEM_OFF`.
    pub const SYSTEM_OFF: u32 = Id::SystemOff as u32;
    /// `SYSTEM_RESET`.
    pub const SYSTEM_RESET: u32 = Id::SystemReset as u32;
    /// `PSCI_FEATURES`.
    pub const FEATURES: u32 = Id::PsciFeatures as u32;
    /// `SYSTEM_SUSPEND` (SMC64), not implemented by the monitor.
    pub const SYSTEM_SUSPEND: u32 = Id::SystemSuspend64 as u32;
}

/// The rendezvous counters of `cpu`: (serviced request, SGIs answered, SGIs sent by all).
pub fn statistics(cpu: usize) -> (u64, u64, u64) {
    let result = smc(RENDEZVOUS_STATISTICS, [cpu as u64, 0, 0]);
    (result[1], result[2], result[3])
}

/// The monitor's caller statistics of `cpu` (`0xC200_0011`): (erratum calls from EL1, from EL2,
/// CPUs its calls skipped as off or suspended).
pub fn caller_statistics(cpu: usize) -> (u64, u64, u64) {
    let result = smc(CALLER_STATISTICS, [cpu as u64, 0, 0]);
    (result[1], result[2], result[3])
}

/// The monitor's wait statistics of `cpu` (`0xC200_0012`): (deadline misses, longest call in
/// nanoseconds, rendezvous SGIs it sent).
pub fn wait_statistics(cpu: usize) -> (u64, u64, u64) {
    let result = smc(WAIT_STATISTICS, [cpu as u64, 0, 0]);
    (result[1], result[2], result[3])
}

/// This CPU's dense index, as the board numbers its CPUs (`board::Platform::cpu_index`: on QEMU
/// `sbsa-ref` the 9th CPU is MPIDR 0x100, index 8).
pub fn cpu_index() -> usize {
    platform_qemu::cpu::current_index::<board::Selected>()
}

/// Enables the system-register interface of the GIC at EL2 and SGI 0 (Group 1 NS) in this CPU's
/// redistributor, so that an SGI can wake this CPU from a suspend.
pub fn enable_wake_sgi() {
    let sgi_frame = platform_qemu::memory_map::GICR_BASE
        + cpu_index() * platform_qemu::memory_map::GICR_STRIDE
        + 0x1_0000;
    // SAFETY: ICC_SRE_EL2 is accessible at EL2 (the monitor set ICC_SRE_EL3.Enable); GICR_ISENABLER0
    // (offset 0x100 of this CPU's SGI frame) is writable from the Non-secure state for Group 1 NS
    // interrupts; the MMU is off so the physical address is used.
    unsafe {
        core::arch::asm!(
            "mrs {tmp}, S3_4_C12_C9_5",
            "orr {tmp}, {tmp}, #1",
            "msr S3_4_C12_C9_5, {tmp}",
            "isb",
            tmp = out(reg) _,
            options(nostack),
        );
        ((sgi_frame + 0x100) as *mut u32).write_volatile(1);
    }
}

/// Sends SGI 0 (Group 1 NS) to the CPU with dense index `target`.
pub fn send_wake_sgi(target: usize) {
    // The board's numbering: Aff0 selects the bit of the target list, Aff1 the cluster.
    let mpidr = platform_qemu::cpu::mpidr_from_index(target);
    let value = (1u64 << (mpidr & 0xF)) | (((mpidr >> 8) & 0xFF) << 16);
    // SAFETY: writing ICC_SGI1R_EL1 only generates an SGI.
    unsafe { core::arch::asm!("msr S3_0_C12_C11_5, {}", "isb", in(reg) value, options(nostack)) };
}

/// Acknowledges and ends every pending Group 1 interrupt of this CPU (IRQs stay masked at EL2).
pub fn drain_interrupts() {
    loop {
        let intid: u64;
        // SAFETY: reading ICC_IAR1_EL1 acknowledges the highest-priority pending interrupt.
        unsafe { core::arch::asm!("mrs {}, S3_0_C12_C12_0", out(reg) intid, options(nostack)) };
        if intid >= 1020 {
            return;
        }
        // SAFETY: ending the interrupt just acknowledged.
        unsafe {
            core::arch::asm!("msr S3_0_C12_C12_1, {}", "isb", in(reg) intid, options(nostack))
        };
    }
}

/// Waits for an event.
pub fn wait_for_event() {
    // SAFETY: WFE only waits.
    unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
}

/// Wakes CPUs waiting for an event.
pub fn send_event() {
    // SAFETY: the barrier orders earlier stores; SEV only signals.
    unsafe { core::arch::asm!("dsb sy", "sev", options(nostack)) };
}

/// Lets other vCPUs run (QEMU's `-icount` mode runs one vCPU at a time and switches on `YIELD`,
/// `WFE` and `WFI`); a hint with no effect on real hardware.
pub fn yield_now() {
    // SAFETY: YIELD is a hint; it touches no memory.
    unsafe { core::arch::asm!("yield", options(nomem, nostack)) };
}

/// `SCTLR_EL2` bits M (MMU), C (data cache) and I (instruction cache).
pub const SCTLR_MMU_AND_CACHES: u64 = (1 << 0) | (1 << 2) | (1 << 12);

/// This CPU's `SCTLR_EL2` and `HCR_EL2`.
pub fn lower_translation_state() -> (u64, u64) {
    let (sctlr, hcr): (u64, u64);
    // SAFETY: reading EL2 control registers at EL2 has no side effects.
    unsafe {
        core::arch::asm!(
            "mrs {sctlr}, sctlr_el2",
            "mrs {hcr}, hcr_el2",
            sctlr = out(reg) sctlr,
            hcr = out(reg) hcr,
            options(nomem, nostack, preserves_flags),
        );
    }
    (sctlr, hcr)
}

/// Turns on the EL2 caches (MMU stays off, so nothing changes for this payload) and sets
/// `HCR_EL2.RW`, as a kernel would leave them, to check that a warm boot resets them.
pub fn dirty_lower_translation_state() {
    // SAFETY: with the MMU off, enabling the caches keeps every access as it was (QEMU models no
    // cache incoherence); HCR_EL2.RW only matters for EL1, which this CPU does not enter.
    unsafe {
        core::arch::asm!(
            "mrs {tmp}, sctlr_el2",
            "orr {tmp}, {tmp}, #(1 << 2)",
            "orr {tmp}, {tmp}, #(1 << 12)",
            "msr sctlr_el2, {tmp}",
            "mov {tmp}, #(1 << 31)",
            "msr hcr_el2, {tmp}",
            "isb",
            tmp = out(reg) _,
            options(nostack),
        );
    }
}
