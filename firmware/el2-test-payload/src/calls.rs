//! SMCs to the monitor and the few system-register operations the scenarios need.

use arm_gic::gicv3::{GicCpuInterface, SgiTarget, SgiTargetGroup};
use arm_gic::{IntId, InterruptGroup};
use arm_sysregs::el2::accessors::{
    read_hcr_el2, read_icc_sre_el2, read_sctlr_el2, write_hcr_el2, write_icc_sre_el2,
    write_sctlr_el2,
};
use arm_sysregs::el2::registers::{HcrEl2, IccSreEl2, SctlrEl2};
pub use firmware_runtime::smccc::smc;
use firmware_runtime::sysreg::isb;

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
    firmware_runtime::cpu::current_index::<board::Selected>()
}

/// Enables the system-register interface of the GIC at EL2 and SGI 0 (Group 1 NS) in this CPU's
/// redistributor, so that an SGI can wake this CPU from a suspend.
pub fn enable_wake_sgi() {
    let sgi_frame = firmware_runtime::memory_map::GICR_BASE
        + cpu_index() * firmware_runtime::memory_map::GICR_STRIDE
        + 0x1_0000;
    // ICC_SRE_EL2.SRE on, every other field as the monitor left it (`arm-gic`'s
    // `enable_system_register_el2` would also write `Enable`, which this payload leaves alone).
    // SAFETY: ICC_SRE_EL2 is accessible at EL2 (the monitor set ICC_SRE_EL3.Enable); changing SRE from
    // 0 to 1 only selects the system-register interface.
    unsafe { write_icc_sre_el2(read_icc_sre_el2() | IccSreEl2::SRE) };
    isb();
    // SAFETY: GICR_ISENABLER0 (offset 0x100 of this CPU's SGI frame) is writable from the Non-secure
    // state for Group 1 NS interrupts; the MMU is off so the physical address is used.
    unsafe { ((sgi_frame + 0x100) as *mut u32).write_volatile(1) };
}

/// The SGI that wakes a CPU.
const WAKE_SGI: IntId = IntId::sgi(0);

/// Sends SGI 0 (Group 1 NS) to the CPU with dense index `target`.
pub fn send_wake_sgi(target: usize) {
    // The board's numbering: Aff0 selects the bit of the target list, Aff1 the cluster.
    let mpidr = firmware_runtime::cpu::mpidr_from_index(target);
    let target = SgiTarget::List {
        affinity3: 0,
        affinity2: 0,
        affinity1: ((mpidr >> 8) & 0xFF) as u8,
        target_list: 1 << (mpidr & 0xF),
    };
    // `send_sgi` refuses only an INTID that is not an SGI, and `WAKE_SGI` is SGI 0.
    let _ = GicCpuInterface::send_sgi(WAKE_SGI, target, SgiTargetGroup::CurrentGroup1);
    isb();
}

/// Acknowledges and ends every pending Group 1 interrupt of this CPU (IRQs stay masked at EL2).
pub fn drain_interrupts() {
    while let Some(intid) = GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1) {
        // The special INTIDs (1020..1023) are not acknowledgements: nothing to end.
        if intid.raw_value() >= IntId::SPECIAL_SECURE.raw_value() {
            return;
        }
        GicCpuInterface::end_interrupt(intid, InterruptGroup::Group1);
        isb();
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
pub const SCTLR_MMU_AND_CACHES: SctlrEl2 = SctlrEl2::M.union(SctlrEl2::C).union(SctlrEl2::I);

/// This CPU's `SCTLR_EL2` and `HCR_EL2`.
pub fn lower_translation_state() -> (SctlrEl2, HcrEl2) {
    (read_sctlr_el2(), read_hcr_el2())
}

/// Turns on the EL2 caches (MMU stays off, so nothing changes for this payload) and sets
/// `HCR_EL2.RW`, as a kernel would leave them, to check that a warm boot resets them.
pub fn dirty_lower_translation_state() {
    // SAFETY: with the MMU off, enabling the caches keeps every access as it was (QEMU models no
    // cache incoherence); HCR_EL2.RW only matters for EL1, which this CPU does not enter.
    unsafe {
        write_sctlr_el2(read_sctlr_el2() | SctlrEl2::C | SctlrEl2::I);
        write_hcr_el2(HcrEl2::RW);
    }
    isb();
}
