//! The CPU service (SMCCC owner 1) and the erratum 4193714 rendezvous it drives.
//!
//! * `0x8100_0010`: the erratum call. Every active affected CPU runs a DSB after the request before
//!   the caller returns (the protocol is `crates/rendezvous`; this module only supplies the platform:
//!   Group 0 SGI, DSB, SEV/WFE, the counter clock). Answers 0, -3 when no CPU of the system is
//!   affected, -1 on a timeout. Built with the `without-erratum-fix` feature, the monitor answers -1
//!   (`SMC_UNK`) like firmware without the fix.
//! * `0x8100_FF01` (UID) and `0x8100_FF03` (VERSION 1.0), values from `abi::cpu_service`.
//!
//! Whether a CPU is affected is decided on that CPU from its own `MIDR_EL1`, `REVIDR_EL1` and
//! `ID_AA64PFR1_EL1` with the `errata` crate, so mixed systems work.

use super::{SMC_UNKNOWN, Service, SmcCall, SmcReturn};
use crate::el3::read_sysreg;
use crate::gic;
use abi::cpu_service::{self, CpuServiceCall};
use abi::smccc::{FunctionId, Owner};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use errata::{CpuIdentity, Erratum, Midr, SmeDvmSyncEarlyAck};
use platform_qemu::memory_map::MAX_CPUS;
use platform_qemu::println;
use rendezvous::{
    CpuIndex, CpuSet, Deadline, Inactivity, RendezvousPlatform, RendezvousStorage,
    WorkaroundOutcome,
};

/// Bits of `CpuSet` words: one word covers every CPU this platform can have.
const WORDS: usize = MAX_CPUS.div_ceil(64);

/// The rendezvous state shared by all CPUs.
static RENDEZVOUS: RendezvousStorage<MAX_CPUS> = RendezvousStorage::new();
/// Whether each CPU has the erratum (set by the CPU itself).
static AFFECTED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Rendezvous SGIs each CPU has answered (statistics for the tests and the demo). Each counter has
/// one writer, its CPU's FIQ handler, so a plain load and store replace a read-modify-write.
static SGIS_ANSWERED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// Rendezvous SGIs each CPU has sent as a caller (one writer each, like [`SGIS_ANSWERED`]); the
/// statistics call reports their sum.
static SGIS_SENT: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Adds `amount` to a counter that only this CPU writes (with FIQs masked, so never concurrently).
fn add_to_own_counter(counter: &AtomicU64, amount: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(amount),
        Ordering::Relaxed,
    );
}
/// Whether each CPU has recorded its affectedness (once, at cold boot).
static RECORDED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// CPUs that have recorded their affectedness in the pen at cold boot.
static CPUS_RECORDED: AtomicU64 = AtomicU64::new(0);

/// How long a caller waits for every CPU, in total (not per CPU): one second. Real hardware answers
/// in microseconds; QEMU's vCPUs are host threads that a loaded host can stall for tens of
/// milliseconds, and the deadline only exists so that a broken CPU cannot hang the caller forever.
const RENDEZVOUS_TIMEOUT_MICROSECONDS: u64 = 1_000_000;

/// [`RENDEZVOUS_TIMEOUT_MICROSECONDS`] in counter ticks (computed once, off the hot path).
static TIMEOUT_TICKS: AtomicU64 = AtomicU64::new(u64::MAX);

fn memory() -> rendezvous::AtomicRendezvousMemory<'static> {
    RENDEZVOUS.memory(crate::power::cpu_count())
}

/// The rendezvous' hardware actions on this platform.
struct Platform;

impl RendezvousPlatform for Platform {
    fn send_sgi<const N: usize>(&mut self, targets: &CpuSet<N>) {
        // SAFETY: a barrier only orders memory accesses.
        unsafe { core::arch::asm!("dsb ishst", options(nostack)) };
        gic::send_rendezvous_sgi(targets.words());
        if let Some(sent) = SGIS_SENT.get(crate::cpu_index()) {
            add_to_own_counter(sent, targets.len() as u64);
        }
    }

    fn local_dsb(&mut self) {
        // SAFETY: a barrier only completes memory accesses.
        unsafe { core::arch::asm!("dsb sy", options(nostack)) };
    }

    fn send_event(&mut self) {
        // SAFETY: the barrier orders earlier stores before the event; SEV touches no memory.
        unsafe { core::arch::asm!("dsb ish", "sev", options(nostack)) };
    }

    fn wait_for_event(&mut self) {
        // SAFETY: WFE only waits; it touches no memory.
        unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
    }

    fn now(&mut self) -> u64 {
        read_sysreg!("cntpct_el0")
    }
}

/// Reads this CPU's identification registers and decides whether it has the erratum.
fn this_cpu_is_affected() -> bool {
    let identity = CpuIdentity {
        midr: Midr::from_register(read_sysreg!("midr_el1")),
        revidr: read_sysreg!("revidr_el1"),
        id_aa64pfr1: read_sysreg!("id_aa64pfr1_el1"),
    };
    SmeDvmSyncEarlyAck::applies_to(&identity)
}

/// Cold boot, before the pen (only the first time): records whether this CPU is affected while it is still off, so that the
/// first call can answer -3 on a system without affected CPUs.
pub fn record_at_cold_boot(cpu: usize) {
    if RECORDED[cpu].swap(true, Ordering::Relaxed) {
        return;
    }
    let affected = this_cpu_is_affected();
    AFFECTED[cpu].store(affected, Ordering::Relaxed);
    if let Err(error) = rendezvous::record_affectedness(&memory(), CpuIndex::new(cpu), affected) {
        println!("monitor: CPU {cpu} cannot record its affectedness: {error:?}");
    }
    CPUS_RECORDED.fetch_add(1, Ordering::Release);
    // SAFETY: the barrier orders the stores above before the event; SEV touches no memory.
    unsafe { core::arch::asm!("dsb ish", "sev", options(nostack)) };
}

/// How many CPUs have recorded their affectedness at cold boot.
pub fn cpus_recorded() -> u64 {
    CPUS_RECORDED.load(Ordering::Acquire)
}

/// This CPU is about to run Non-secure code (first boot, `CPU_ON`): it joins the rendezvous (runs its
/// DSB, then answers requests).
pub fn init_cpu(cpu: usize) {
    let frequency = read_sysreg!("cntfrq_el0");
    TIMEOUT_TICKS.store(
        frequency.saturating_mul(RENDEZVOUS_TIMEOUT_MICROSECONDS) / 1_000_000,
        Ordering::Relaxed,
    );
    let affected = this_cpu_is_affected();
    AFFECTED[cpu].store(affected, Ordering::Relaxed);
    join(cpu);
}

/// Rejoins the active set (after the GIC interface of this CPU is set up).
pub fn join(cpu: usize) {
    let affected = AFFECTED[cpu].load(Ordering::Relaxed);
    if let Err(error) =
        rendezvous::join_active_set(&memory(), &mut Platform, CpuIndex::new(cpu), affected)
    {
        panic!("CPU {cpu} cannot join the rendezvous: {error:?}");
    }
}

/// Why a CPU leaves the active set.
#[derive(Clone, Copy, Debug)]
pub enum Leaving {
    /// `CPU_OFF`.
    Off,
    /// Power-down `CPU_SUSPEND`.
    PowerDown,
    /// Standby/retention `CPU_SUSPEND`.
    Retention,
}

/// Leaves the active set (runs the DSB first): callers no longer wait for this CPU.
pub fn leave(cpu: usize, leaving: Leaving) {
    let inactivity = match leaving {
        Leaving::Off => Inactivity::Off,
        Leaving::PowerDown => Inactivity::PowerDownSuspended,
        Leaving::Retention => Inactivity::RetentionSuspended,
    };
    if let Err(error) =
        rendezvous::leave_active_set(&memory(), &mut Platform, CpuIndex::new(cpu), inactivity)
    {
        panic!("CPU {cpu} cannot leave the rendezvous: {error:?}");
    }
}

/// The FIQ handler: answers the rendezvous SGI. Other Group 0 interrupts do not exist on this
/// platform; one that appears is acknowledged and ended so it cannot storm.
pub fn handle_fiq() {
    let Some(intid) = gic::acknowledge_group0() else {
        return;
    };
    if gic::is_rendezvous_sgi(intid) {
        let cpu = crate::cpu_index();
        if let Err(error) = rendezvous::handle_sgi(&memory(), &mut Platform, CpuIndex::new(cpu)) {
            println!("monitor: CPU {cpu} cannot answer the rendezvous: {error:?}");
        }
        if let Some(answered) = SGIS_ANSWERED.get(cpu) {
            add_to_own_counter(answered, 1);
        }
    }
    gic::end_group0(intid);
}

/// Runs one erratum call for `cpu`.
fn erratum_call(cpu: usize) -> u64 {
    if cfg!(feature = "without-erratum-fix") {
        return SMC_UNKNOWN;
    }
    let deadline = Deadline::after(Platform.now(), TIMEOUT_TICKS.load(Ordering::Relaxed));
    let outcome: Result<WorkaroundOutcome<WORDS>, _> =
        rendezvous::request_workaround(&memory(), &mut Platform, CpuIndex::new(cpu), deadline);
    match outcome {
        Ok(outcome) => {
            if let WorkaroundOutcome::Timeout { unanswered } = outcome {
                println!("monitor: erratum call on CPU {cpu} timed out waiting for {unanswered:?}");
                for target in unanswered.iter() {
                    report_unanswered(target);
                }
            }
            outcome.to_x0()
        }
        Err(error) => {
            println!("monitor: erratum call on CPU {cpu} refused: {error:?}");
            SMC_UNKNOWN
        }
    }
}

/// Prints what is known about a CPU that did not answer in time.
fn report_unanswered(target: CpuIndex) {
    use rendezvous::RendezvousMemory;
    let memory = memory();
    let (pending, active) = gic::sgi_state(target.get());
    println!(
        "monitor:   CPU {}: record {:?}, serviced {}, answered {}, SGI pending {pending}, active {active}",
        target.get(),
        memory.load_cpu_record(target),
        memory.load_serviced(target),
        SGIS_ANSWERED[target.get()].load(Ordering::Relaxed),
    );
}

/// What the statistics call reports about one CPU.
pub struct CpuStatistics {
    /// The last request number the CPU has serviced.
    pub serviced: u64,
    /// Rendezvous SGIs it has answered.
    pub sgis_answered: u64,
    /// Rendezvous SGIs sent by all CPUs.
    pub sgis_sent: u64,
}

/// The rendezvous counters of `cpu`, or `None` for a CPU that does not exist.
pub fn statistics(cpu: usize) -> Option<CpuStatistics> {
    if cpu >= crate::power::cpu_count() {
        return None;
    }
    use rendezvous::RendezvousMemory;
    Some(CpuStatistics {
        serviced: memory().load_serviced(CpuIndex::new(cpu)),
        sgis_answered: SGIS_ANSWERED[cpu].load(Ordering::Relaxed),
        sgis_sent: SGIS_SENT
            .iter()
            .map(|sent| sent.load(Ordering::Relaxed))
            .sum(),
    })
}

/// The CPU service.
pub struct CpuService;

impl Service for CpuService {
    fn owns(&self, function_id: FunctionId) -> bool {
        function_id.owner() == Owner::Cpu
    }

    fn handle(&self, call: &SmcCall) -> SmcReturn {
        match CpuServiceCall::decode(call.function_id, call.arguments) {
            Ok(CpuServiceCall::Erratum4193714Workaround) => SmcReturn::one(erratum_call(call.cpu)),
            Ok(CpuServiceCall::Uid) => SmcReturn::four(cpu_service::UID.to_return_registers()),
            Ok(CpuServiceCall::Version) => {
                let [major, minor] = cpu_service::VERSION.to_registers();
                SmcReturn::four([major, minor, 0, 0])
            }
            Err(_) => SmcReturn::one(SMC_UNKNOWN),
        }
    }
}
