//! CPU power flows: the pen, `CPU_ON`, `CPU_OFF`, both kinds of `CPU_SUSPEND`, and the board power
//! requests. What is allowed is decided by [`psci_state::PowerTable`]; this module performs it.
//!
//! There is no real power control of cores on QEMU's `virt` board, so "off" means waiting in the pen
//! (`WFE` at EL3 with the MMU on) and "power-down suspend" means `WFI` at EL3 followed by a warm boot
//! at the entry point given to `CPU_SUSPEND`. In both cases the CPU first leaves the erratum
//! rendezvous and rejoins it before it runs Non-secure code again ([`crate::services::cpu`]).

use crate::services::cpu::{self as cpu_service, Leaving};
use crate::{Board, MAX_CPUS};
use board::{MPIDR_AFFINITY_MASK, Platform};
use core::sync::atomic::{AtomicUsize, Ordering};
use psci_state::{EntryPoint, NonSecureMemory, PowerTable, PsciError, SuspendKind};
use spin::mutex::SpinMutex;

/// The power state of every CPU.
static POWER: SpinMutex<PowerTable<MAX_CPUS>> = SpinMutex::new(PowerTable::new());

/// Where Non-secure entry points may lie: DRAM (the monitor's memory is Secure RAM, outside it).
const NON_SECURE_MEMORY: NonSecureMemory = NonSecureMemory {
    start: Board::DRAM_BASE as u64,
    end: Board::DRAM_MAX_END as u64,
};

fn wait_for_event() {
    // SAFETY: WFE only waits; it touches no memory.
    unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
}

fn wait_for_interrupt() {
    // SAFETY: WFI only waits (any pending interrupt, even masked, ends it); it touches no memory.
    unsafe { core::arch::asm!("dsb sy", "wfi", options(nostack)) };
}

fn send_event() {
    // SAFETY: the barrier orders this CPU's stores before the event; SEV touches no memory.
    unsafe { core::arch::asm!("dsb ish", "sev", options(nostack)) };
}

/// What a powered-down core loses and QEMU's "off" (a loop in the pen) would keep: the SME mode
/// bits. A core that went off in Streaming mode, or with ZA on, must come back with `SVCR` at its
/// reset value 0, as on hardware: Linux's secondary start runs FP/SIMD code that Streaming mode
/// would make fail, and a CPU brought back online after running an SME program never came up.
fn lose_power_down_state() {
    if arm_sysregs::el1::accessors::read_id_aa64pfr1_el1().sme() != 0 {
        // SAFETY: SVCR exists when SME is implemented and CPTR_EL3.ESM leaves it untrapped at EL3;
        // clearing it leaves Streaming mode and turns ZA off, which only changes the register
        // state of the world that just gave up this CPU.
        unsafe {
            arm_sysregs::el0::accessors::write_svcr(arm_sysregs::el0::registers::Svcr::empty())
        };
        cpu_setup::isb();
    }
}

/// Number of CPUs of the platform, kept outside the lock for the rendezvous' hot paths.
static CPU_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Records the number of CPUs and that the boot CPU runs.
pub fn boot(cpu_count: usize, boot_cpu: usize) {
    let mut table = POWER.lock();
    table.boot(cpu_count, boot_cpu);
    CPU_COUNT.store(table.present(), Ordering::Release);
}

/// Number of CPUs of the platform.
pub fn cpu_count() -> usize {
    CPU_COUNT.load(Ordering::Acquire)
}

/// The pen: waits until `CPU_ON` names this CPU, then returns where to enter the Non-secure world.
pub fn pen(cpu: usize) -> EntryPoint {
    loop {
        if let Some(entry) = POWER.lock().take_pending_entry(cpu) {
            return entry;
        }
        wait_for_event();
    }
}

/// Maps a `CPU_ON`/`AFFINITY_INFO` MPIDR argument to a CPU index; `None` for bits outside the
/// affinity fields or a CPU that cannot exist.
fn target_index(mpidr: u64) -> Option<usize> {
    if mpidr & !MPIDR_AFFINITY_MASK != 0 {
        return None;
    }
    Board::cpu_index(mpidr)
}

/// `CPU_ON`.
pub fn cpu_on(target_mpidr: u64, entry: EntryPoint) -> Result<(), PsciError> {
    POWER
        .lock()
        .cpu_on(target_index(target_mpidr), entry, &NON_SECURE_MEMORY)?;
    send_event();
    Ok(())
}

/// `AFFINITY_INFO`.
pub fn affinity_info(
    target_mpidr: u64,
    lowest_level: u64,
) -> Result<psci_state::AffinityState, PsciError> {
    POWER
        .lock()
        .affinity_info(target_index(target_mpidr), lowest_level)
}

/// `CPU_OFF`: returns only with the reason it was refused.
pub fn cpu_off(cpu: usize) -> PsciError {
    let mut power = POWER.lock();
    if let Err(error) = power.cpu_off(cpu) {
        return error;
    }
    // Printed with the power table held, so that a CPU that sees this one off through
    // `AFFINITY_INFO` (which takes the same lock) prints after this line, not into it.
    cpu_service::print_calls_at_cpu_off(cpu);
    drop(power);
    cpu_service::leave(cpu, Leaving::Off);
    lose_power_down_state();
    crate::restart_in_pen()
}

/// `CPU_SUSPEND`: returns (`Ok`) after a standby, never after a power-down (the CPU warm-boots at
/// `entry` instead), or the reason it was refused.
pub fn cpu_suspend(cpu: usize, power_state: u32, entry: EntryPoint) -> Result<(), PsciError> {
    let kind = psci_state::decode_power_state(power_state)?;
    POWER.lock().suspend(cpu, kind, entry, &NON_SECURE_MEMORY)?;
    match kind {
        SuspendKind::Standby => {
            cpu_service::leave(cpu, Leaving::Retention);
            wait_for_interrupt();
            // Standby: nothing to warm-boot, the call returns.
            let _ = POWER.lock().wake(cpu);
            cpu_service::join(cpu);
            Ok(())
        }
        SuspendKind::PowerDown => {
            cpu_service::leave(cpu, Leaving::PowerDown);
            wait_for_interrupt();
            let resume = POWER.lock().wake(cpu).unwrap_or(entry);
            lose_power_down_state();
            cpu_service::join(cpu);
            crate::warm_boot(resume)
        }
    }
}

/// `SYSTEM_OFF` and `SYSTEM_RESET` through the board's Secure GPIO.
pub fn board(request: firmware_runtime::power::BoardRequest) -> ! {
    cpu_service::print_statistics();
    firmware_runtime::println!("monitor: {request:?}");
    // SAFETY: the Secure GPIO is identity-mapped as device memory and only this function uses it.
    unsafe { firmware_runtime::power::request(Board::POWER, request) }
}
