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
use crate::MAX_CPUS;
use crate::el3::read_sysreg;
use crate::gic;
use abi::cpu_service::{self, CpuServiceCall};
use abi::smccc::{FunctionId, Owner};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use errata::{CpuIdentity, Erratum, Midr, SmeDvmSyncEarlyAck};
use platform_qemu::println;
use rendezvous::{
    CpuIndex, CpuSet, Deadline, Inactivity, RendezvousPlatform, RendezvousStorage,
    WorkaroundOutcome,
};

/// What each CPU did as a caller of the erratum call: the figures the monitor prints at
/// `SYSTEM_OFF`/`SYSTEM_RESET` and reports through the statistics call, so that a run shows whose
/// calls reached the rendezvous (stock pKVM calls from EL2, and its host kernel probes once from
/// EL1). Each field has one writer, its CPU in the SMC handler (FIQs masked).
struct CallerCounters {
    /// Calls made from Non-secure EL1.
    from_el1: AtomicU64,
    /// Calls made from Non-secure EL2.
    from_el2: AtomicU64,
    /// Calls that passed their deadline before every CPU answered.
    deadline_misses: AtomicU64,
    /// The longest call, in counter ticks.
    longest_ticks: AtomicU64,
    /// All calls together, in counter ticks (under `-icount shift=0`, the instructions all vCPUs
    /// retired while this CPU's calls were under way, in 16-instruction ticks).
    total_ticks: AtomicU64,
}

impl CallerCounters {
    const fn new() -> Self {
        Self {
            from_el1: AtomicU64::new(0),
            from_el2: AtomicU64::new(0),
            deadline_misses: AtomicU64::new(0),
            longest_ticks: AtomicU64::new(0),
            total_ticks: AtomicU64::new(0),
        }
    }
}

/// Per-CPU caller counters.
static CALLERS: [CallerCounters; MAX_CPUS] = [const { CallerCounters::new() }; MAX_CPUS];

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
    // The model checker (crates/model-checker, part (c)) gives each barrier its architectural
    // effect; the assertions admit only the ones it shows sufficient, and the asm below follows the
    // constants (each `match` folds to one instruction).
    const LOCAL_BARRIER: rendezvous::Barrier = {
        let barrier = rendezvous::Barrier::SY;
        assert!(barrier.suffices_as_local_barrier());
        barrier
    };
    const SGI_PUBLISH_BARRIER: Option<rendezvous::Barrier> = {
        let barrier = rendezvous::Barrier::ISHST;
        assert!(barrier.suffices_before_sgi());
        Some(barrier)
    };

    fn send_sgi<const N: usize>(&mut self, targets: &CpuSet<N>) {
        // SAFETY: a barrier only orders memory accesses.
        unsafe {
            match Self::SGI_PUBLISH_BARRIER {
                Some(rendezvous::Barrier::ISHST) => core::arch::asm!("dsb ishst", options(nostack)),
                Some(rendezvous::Barrier::ISH) => core::arch::asm!("dsb ish", options(nostack)),
                // Any other admitted barrier: the strongest.
                _ => core::arch::asm!("dsb sy", options(nostack)),
            }
        }
        gic::send_rendezvous_sgi(targets.words());
        if let Some(sent) = SGIS_SENT.get(crate::cpu_index()) {
            add_to_own_counter(sent, targets.len() as u64);
        }
    }

    fn local_dsb(&mut self) {
        // SAFETY: a barrier only completes memory accesses.
        unsafe {
            match Self::LOCAL_BARRIER {
                rendezvous::Barrier::ISH => core::arch::asm!("dsb ish", options(nostack)),
                rendezvous::Barrier::OSH => core::arch::asm!("dsb osh", options(nostack)),
                // `DSB SY`, and the strongest for any other admitted barrier.
                _ => core::arch::asm!("dsb sy", options(nostack)),
            }
        }
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

/// `SPSR_EL3.M[3:2]`: the exception level the SMC came from.
fn caller_exception_level() -> u64 {
    (read_sysreg!("spsr_el3") >> 2) & 0b11
}

/// Counts a call by `cpu` from its exception level (also when the monitor lacks the fix, so that a
/// refused probe shows).
fn count_caller(cpu: usize) {
    let Some(counters) = CALLERS.get(cpu) else {
        return;
    };
    let counter = if caller_exception_level() == 2 {
        &counters.from_el2
    } else {
        &counters.from_el1
    };
    add_to_own_counter(counter, 1);
}

/// Runs one erratum call for `cpu`.
fn erratum_call(cpu: usize) -> u64 {
    count_caller(cpu);
    if cfg!(feature = "without-erratum-fix") {
        return SMC_UNKNOWN;
    }
    let started = Platform.now();
    let deadline = Deadline::after(started, TIMEOUT_TICKS.load(Ordering::Relaxed));
    let outcome: Result<WorkaroundOutcome<WORDS>, _> =
        rendezvous::request_workaround(&memory(), &mut Platform, CpuIndex::new(cpu), deadline);
    match outcome {
        Ok(outcome) => {
            if let Some(counters) = CALLERS.get(cpu) {
                let ticks = Platform.now().wrapping_sub(started);
                add_to_own_counter(&counters.total_ticks, ticks);
                if ticks > counters.longest_ticks.load(Ordering::Relaxed) {
                    counters.longest_ticks.store(ticks, Ordering::Relaxed);
                }
                if matches!(outcome, WorkaroundOutcome::Timeout { .. }) {
                    add_to_own_counter(&counters.deadline_misses, 1);
                }
            }
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

/// What the statistics call reports about one CPU as a caller.
pub struct CallerStatistics {
    /// Erratum calls from Non-secure EL1.
    pub from_el1: u64,
    /// Erratum calls from Non-secure EL2.
    pub from_el2: u64,
    /// Possibly affected CPUs its calls skipped because they were off or suspended.
    pub skipped_inactive: u64,
    /// Its calls that missed their deadline.
    pub deadline_misses: u64,
    /// Its longest call, in nanoseconds.
    pub longest_wait_ns: u64,
}

/// Possibly affected CPUs that `cpu`'s `calls` skipped because they were off or suspended.
///
/// Counted without any work on the call's path: a call sends the SGI to exactly the other
/// possibly affected CPUs it reads as active, and whether a CPU is affected is recorded once for
/// every CPU (at cold boot, or the boot CPU's at its first join) and never changes, so the CPUs
/// skipped over all calls are
/// `calls × (other possibly affected CPUs) − SGIs sent`. A monitor without the fix sends none and
/// skips none.
fn skipped_inactive(cpu: usize, calls: u64) -> u64 {
    if cfg!(feature = "without-erratum-fix") {
        return 0;
    }
    use rendezvous::RendezvousMemory;
    let memory = memory();
    // The records the caller's scan reads: a CPU that has never reported counts as possibly
    // affected there too.
    let others = (0..crate::power::cpu_count())
        .filter(|&other| {
            other != cpu
                && memory
                    .load_cpu_record(CpuIndex::new(other))
                    .affectedness
                    .may_be_affected()
        })
        .count() as u64;
    calls
        .saturating_mul(others)
        .saturating_sub(sgis_sent_by(cpu))
}

/// Rendezvous SGIs `cpu` has sent as a caller.
pub fn sgis_sent_by(cpu: usize) -> u64 {
    SGIS_SENT
        .get(cpu)
        .map_or(0, |sent| sent.load(Ordering::Relaxed))
}

/// Counter ticks as nanoseconds.
fn ticks_to_ns(ticks: u64) -> u64 {
    let frequency = read_sysreg!("cntfrq_el0").max(1);
    u64::try_from(u128::from(ticks) * 1_000_000_000 / u128::from(frequency)).unwrap_or(u64::MAX)
}

/// The caller counters of `cpu`, or `None` for a CPU that does not exist.
pub fn caller_statistics(cpu: usize) -> Option<CallerStatistics> {
    if cpu >= crate::power::cpu_count() {
        return None;
    }
    let counters = CALLERS.get(cpu)?;
    let calls =
        counters.from_el1.load(Ordering::Relaxed) + counters.from_el2.load(Ordering::Relaxed);
    Some(CallerStatistics {
        from_el1: counters.from_el1.load(Ordering::Relaxed),
        from_el2: counters.from_el2.load(Ordering::Relaxed),
        skipped_inactive: skipped_inactive(cpu, calls),
        deadline_misses: counters.deadline_misses.load(Ordering::Relaxed),
        longest_wait_ns: ticks_to_ns(counters.longest_ticks.load(Ordering::Relaxed)),
    })
}

/// Prints the erratum calls made so far when `cpu` goes off: CPU hotplug is what a Linux init
/// script can do to mark a point in time for the monitor (the Linux demo marks the end of boot, of
/// the protected VM's run and of its teardown this way).
pub fn print_calls_at_cpu_off(cpu: usize) {
    let (mut el1, mut el2) = (0, 0);
    for other in 0..crate::power::cpu_count() {
        if let Some(caller) = caller_statistics(other) {
            el1 += caller.from_el1;
            el2 += caller.from_el2;
        }
    }
    println!(
        "monitor: CPU {cpu} off; erratum calls so far: {} (from EL1 {el1}, from EL2 {el2})",
        el1 + el2
    );
}

/// Prints what the erratum call did since boot: calls by the caller's exception level, then per CPU
/// the calls it made, the SGIs it sent and answered and the CPUs its calls skipped; deadline misses
/// and the longest wait. Called at `SYSTEM_OFF`/`SYSTEM_RESET`, so that every run's log shows whether
/// (and from where) the calls reached the rendezvous.
pub fn print_statistics() {
    let cpus = crate::power::cpu_count();
    let (mut el1, mut el2, mut misses, mut longest) = (0, 0, 0, 0);
    for cpu in 0..cpus {
        if let Some(caller) = caller_statistics(cpu) {
            el1 += caller.from_el1;
            el2 += caller.from_el2;
            misses += caller.deadline_misses;
            longest = longest.max(caller.longest_wait_ns);
        }
    }
    println!(
        "monitor: erratum 4193714 calls: {} (from EL1 {el1}, from EL2 {el2}); deadline misses {misses}; longest wait {}.{:03} us",
        el1 + el2,
        longest / 1000,
        longest % 1000
    );
    let inside: u64 = CALLERS
        .iter()
        .take(cpus)
        .map(|counters| counters.total_ticks.load(Ordering::Relaxed))
        .sum();
    println!("monitor: time inside erratum calls: {inside} ticks");
    // Under QEMU's `-icount shift=0` the counter advances one nanosecond per instruction retired
    // by any vCPU (plus the time skipped while every vCPU sleeps): the benchmarks read the length
    // of a whole run from this line.
    println!(
        "monitor: counter at power-off: {} ticks at {} Hz",
        Platform.now(),
        read_sysreg!("cntfrq_el0")
    );
    for cpu in 0..cpus {
        let (Some(caller), Some(counters)) = (caller_statistics(cpu), statistics(cpu)) else {
            continue;
        };
        println!(
            "monitor:   CPU {cpu}: calls {}, SGIs sent {}, SGIs answered {}, CPUs skipped as off or suspended {}",
            caller.from_el1 + caller.from_el2,
            sgis_sent_by(cpu),
            counters.sgis_answered,
            caller.skipped_inactive
        );
    }
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
