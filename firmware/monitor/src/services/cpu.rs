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
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use errata::{CpuIdentity, Erratum, Midr, SmeDvmSyncEarlyAck};
use firmware_runtime::println;
use rendezvous::{
    CpuIndex, CpuSet, Deadline, FlatRequest, Inactivity, RendezvousPlatform, RendezvousStorage,
    WorkaroundOutcome,
};

/// One CPU's rendezvous statistics, on its own cache line: what it did as a caller of the erratum
/// call (the figures the monitor prints at `SYSTEM_OFF`/`SYSTEM_RESET` and reports through the
/// statistics call, so that a run shows whose calls reached the rendezvous: stock pKVM calls from
/// EL2, and its host kernel probes once from EL1) and the SGIs it answered. Every field has one
/// writer, its CPU (in the SMC handler or the FIQ handler, never both at once: FIQs are masked in
/// the SMC handler), so a plain load and store replace a read-modify-write, and the line is never
/// written by another CPU.
#[repr(C, align(64))]
struct CpuCounters {
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
    /// Rendezvous SGIs sent as a caller (counted by the scan, no population count).
    sgis_sent: AtomicU64,
    /// Rendezvous SGIs answered.
    sgis_answered: AtomicU64,
    /// Waits ended by the deadline timer (the Secure physical timer's FIQ).
    deadline_timer_wakeups: AtomicU64,
}

impl CpuCounters {
    const fn new() -> Self {
        Self {
            from_el1: AtomicU64::new(0),
            from_el2: AtomicU64::new(0),
            deadline_misses: AtomicU64::new(0),
            longest_ticks: AtomicU64::new(0),
            total_ticks: AtomicU64::new(0),
            sgis_sent: AtomicU64::new(0),
            sgis_answered: AtomicU64::new(0),
            deadline_timer_wakeups: AtomicU64::new(0),
        }
    }
}

// One cache line each.
const _: () = assert!(size_of::<CpuCounters>() == 64);

/// Per-CPU counters.
static COUNTERS: [CpuCounters; MAX_CPUS] = [const { CpuCounters::new() }; MAX_CPUS];

/// Bits of `CpuSet` words: one word covers every CPU this platform can have.
const WORDS: usize = MAX_CPUS.div_ceil(64);

/// The rendezvous state shared by all CPUs.
static RENDEZVOUS: RendezvousStorage<MAX_CPUS> = RendezvousStorage::new();
/// Whether each CPU has the erratum (set by the CPU itself).
static AFFECTED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Adds `amount` to a counter that only this CPU writes (with FIQs masked, so never concurrently).
#[inline]
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
/// The deliberately broken `never-answer` build waits one millisecond, so that its test is short.
const RENDEZVOUS_TIMEOUT_MICROSECONDS: u64 = if cfg!(feature = "never-answer") {
    1_000
} else {
    1_000_000
};

/// [`RENDEZVOUS_TIMEOUT_MICROSECONDS`] in counter ticks (computed once, off the hot path).
static TIMEOUT_TICKS: AtomicU64 = AtomicU64::new(u64::MAX);

fn memory() -> rendezvous::AtomicRendezvousMemory<'static> {
    RENDEZVOUS.memory(crate::power::cpu_count())
}

/// The rendezvous' hardware actions on this platform. `deadline` is the tick at which a waiting
/// caller's deadline timer fires (`Deadline::NEVER` outside a call); `armed` whether the timer has
/// been started.
struct Platform {
    deadline: u64,
    armed: bool,
}

impl Platform {
    /// The platform of a role that never waits (responder, leave, join).
    const fn no_wait() -> Self {
        Self {
            deadline: u64::MAX,
            armed: false,
        }
    }
}

/// `YIELD`s in the wait's unmasked window: none, but in the deliberately broken `never-answer`
/// build (its test needs the timer's FIQ to arrive inside the window, see `wait_for_event`).
const TEST_WINDOW_YIELDS: u64 = if cfg!(feature = "never-answer") {
    10_000
} else {
    0
};

/// `CNTPS_CTL_EL1.ENABLE`: the Secure physical timer runs, its interrupt unmasked (IMASK clear).
const TIMER_ENABLE: u64 = 1;

/// Stops this CPU's Secure physical timer.
fn stop_deadline_timer() {
    // SAFETY: CNTPS_CTL_EL1 is the Secure physical timer's control, used only by the rendezvous
    // wait on this CPU; writing 0 stops it and touches no memory.
    unsafe {
        core::arch::asm!(
            "msr cntps_ctl_el1, xzr",
            "isb",
            options(nomem, nostack, preserves_flags)
        )
    };
}

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

    /// Waits for an event (`WFE`) with the deadline bounded by the Secure physical timer, which
    /// the Non-secure world cannot access: WFE is woken by SEV, the event stream (configured by
    /// the Non-secure world, so not relied upon) or an interrupt *that is not masked by PSTATE*;
    /// WFI would wake on a masked interrupt but not on SEV. So the timer (Group 0, an FIQ at EL3)
    /// is armed at the deadline, and FIQs are unmasked around the WFE with `ICC_PMR_EL1` raised
    /// to [`gic::WAIT_PRIORITY_MASK`], so that only the timer is taken, never the rendezvous SGI
    /// nor a Non-secure interrupt. Taking the FIQ ends the WFE (its handler also runs `SEVL`, for
    /// a timer taken just before the WFE). ELR_EL3 and SPSR_EL3 hold the caller's return state,
    /// which taking that FIQ overwrites: they are kept in registers and written back, like PMR.
    fn wait_for_event(&mut self) {
        if !self.armed {
            self.armed = true;
            // SAFETY: programs this CPU's Secure physical timer (compare value, then enable);
            // only the rendezvous wait uses it; no memory is touched.
            unsafe {
                core::arch::asm!(
                    "msr cntps_cval_el1, {deadline}",
                    "msr cntps_ctl_el1, {enable}",
                    deadline = in(reg) self.deadline,
                    enable = in(reg) TIMER_ENABLE,
                    options(nomem, nostack, preserves_flags),
                )
            };
        }
        // SAFETY: the FIQ that may be taken inside runs `handle_fiq` (through `fiq_entry`, which
        // saves and restores every register Rust code may clobber) and returns here; this SMC's
        // return state (ELR_EL3, SPSR_EL3), which taking that FIQ overwrites, and PMR are written
        // back before FIQs are masked again.
        unsafe {
            core::arch::asm!(
                "mrs {elr}, elr_el3",
                "mrs {spsr}, spsr_el3",
                "mrs {pmr}, icc_pmr_el1",
                "msr icc_pmr_el1, {mask}",
                "isb",
                "msr daifclr, #1",
                // The `never-answer` test build stays here a while (QEMU's WFE does not sleep),
                // so that the timer's FIQ is taken in this window and its path is exercised.
                "cbz {stay}, 2f",
                "1: yield",
                "subs {stay}, {stay}, #1",
                "b.ne 1b",
                "2: wfe",
                "msr daifset, #1",
                "msr icc_pmr_el1, {pmr}",
                "msr elr_el3, {elr}",
                "msr spsr_el3, {spsr}",
                elr = out(reg) _,
                spsr = out(reg) _,
                pmr = out(reg) _,
                stay = inout(reg) TEST_WINDOW_YIELDS => _,
                mask = in(reg) gic::WAIT_PRIORITY_MASK,
                options(nostack),
            )
        };
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
    if let Err(error) = rendezvous::join_active_set(
        &memory(),
        &mut Platform::no_wait(),
        CpuIndex::new(cpu),
        affected,
    ) {
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
    if let Err(error) = rendezvous::leave_active_set(
        &memory(),
        &mut Platform::no_wait(),
        CpuIndex::new(cpu),
        inactivity,
    ) {
        panic!("CPU {cpu} cannot leave the rendezvous: {error:?}");
    }
}

/// The memory view of a responder: every slot the storage has, so that answering does not read
/// the number of CPUs present (a responder touches only the counter and its own slot, and its
/// index is below `MAX_CPUS`).
fn responder_memory() -> rendezvous::AtomicRendezvousMemory<'static> {
    RENDEZVOUS.memory(MAX_CPUS)
}

/// Printed when a CPU cannot answer (out of the FIQ handler's way).
#[cold]
#[inline(never)]
fn report_answer_error(cpu: usize, error: rendezvous::RendezvousError) {
    println!("monitor: CPU {cpu} cannot answer the rendezvous: {error:?}");
}

/// What [`handle_fiq_fast`] returns when it has handled the interrupt (or there was none): the
/// fast entry then restores its few registers and returns.
pub const FIQ_HANDLED: u64 = u64::MAX;

/// The fast path of a FIQ taken from the Non-secure world (`fiq_fast_entry` in `exceptions.S`):
/// acknowledges the interrupt and, when it is the rendezvous SGI, answers it (the responder role of
/// `crates/rendezvous`, [`rendezvous::handle_sgi`], inlined into straight code), counts it and ends
/// it. Returns [`FIQ_HANDLED`], or the INTID of an interrupt it left to [`handle_fiq_acknowledged`]
/// (any other interrupt, or an SGI it could not answer).
///
/// Its entry saves only the registers this function writes, so it must stay a leaf that writes
/// nothing else: every build of the monitor checks that from the disassembly
/// (`xtask/src/codegen.rs` reads the saved set from the entry's own stores).
#[unsafe(no_mangle)]
extern "C" fn handle_fiq_fast() -> u64 {
    let intid = gic::acknowledge_group0_raw();
    if !gic::is_rendezvous_sgi(intid) {
        return if gic::is_special(intid) {
            FIQ_HANDLED
        } else {
            u64::from(intid)
        };
    }
    let cpu = crate::cpu_index();
    let Some(counters) = COUNTERS.get(cpu) else {
        return u64::from(intid);
    };
    // The deliberately broken build of the deadline test: CPU 1 takes the SGI and ends it
    // without answering.
    if !(cfg!(feature = "never-answer") && cpu == 1)
        && rendezvous::handle_sgi(
            &responder_memory(),
            &mut Platform::no_wait(),
            CpuIndex::new(cpu),
        )
        .is_err()
    {
        // The role refused before any action: the slow path reports why.
        return u64::from(intid);
    }
    add_to_own_counter(&counters.sgis_answered, 1);
    gic::end_group0(intid);
    FIQ_HANDLED
}

/// The FIQ handler of the monitor itself (a caller's deadline timer, taken in its wait): acknowledges
/// and handles the interrupt.
pub fn handle_fiq() {
    if let Some(intid) = gic::acknowledge_group0() {
        handle_fiq_acknowledged(intid);
    }
}

/// Handles and ends an acknowledged Group 0 interrupt: answers the rendezvous SGI (the slow path:
/// only an SGI [`handle_fiq_fast`] could not answer comes here from the Non-secure world), and ends a
/// caller's wait when its deadline timer fires (the only FIQ taken at EL3 itself). Other Group 0
/// interrupts do not exist on this platform; one that appears is ended so it cannot storm.
pub fn handle_fiq_acknowledged(intid: u32) {
    let cpu = crate::cpu_index();
    if gic::is_rendezvous_sgi(intid) {
        if !(cfg!(feature = "never-answer") && cpu == 1) {
            let answered = rendezvous::handle_sgi(
                &responder_memory(),
                &mut Platform::no_wait(),
                CpuIndex::new(cpu),
            );
            if let Err(error) = answered {
                report_answer_error(cpu, error);
            }
        }
        if let Some(counters) = COUNTERS.get(cpu) {
            add_to_own_counter(&counters.sgis_answered, 1);
        }
    } else if gic::is_deadline_timer(intid) {
        // A waiting caller's deadline: stop the timer and make sure the WFE it interrupted (or
        // is about to run) returns; the caller then reads the clock and gives up.
        stop_deadline_timer();
        // SAFETY: SEVL only sets this CPU's event register.
        unsafe { core::arch::asm!("sevl", options(nomem, nostack, preserves_flags)) };
        if let Some(counters) = COUNTERS.get(cpu) {
            add_to_own_counter(&counters.deadline_timer_wakeups, 1);
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
#[inline]
fn count_caller(counters: &CpuCounters) {
    let counter = if caller_exception_level() == 2 {
        &counters.from_el2
    } else {
        &counters.from_el1
    };
    add_to_own_counter(counter, 1);
}

/// The erratum call's short path from `exceptions.S` (`smc_entry`): the answer for x0.
#[unsafe(no_mangle)]
extern "C" fn handle_erratum_call() -> u64 {
    erratum_call(crate::cpu_index())
}

/// Runs one erratum call for `cpu`: the flat caller loop of `crates/rendezvous` (the role's
/// actions in the role's order, `tests/differential.rs`), then the statistics, each a plain
/// increment on this CPU's own cache line.
#[inline]
fn erratum_call(cpu: usize) -> u64 {
    let Some(counters) = COUNTERS.get(cpu) else {
        return SMC_UNKNOWN;
    };
    count_caller(counters);
    if cfg!(feature = "without-erratum-fix") {
        return SMC_UNKNOWN;
    }
    let started = read_sysreg!("cntpct_el0");
    let deadline = Deadline::after(started, TIMEOUT_TICKS.load(Ordering::Relaxed));
    let mut platform = Platform {
        deadline: deadline.tick(),
        armed: false,
    };
    let request: Result<FlatRequest<WORDS>, _> =
        rendezvous::request_workaround_flat(&memory(), &mut platform, CpuIndex::new(cpu), deadline);
    // Whether the deadline timer's interrupt is raised and not yet taken, for a call that gave up
    // (read before the timer is stopped; only on that cold path).
    let timer_raised = platform.armed
        && matches!(
            request,
            Ok(FlatRequest {
                outcome: WorkaroundOutcome::Timeout { .. },
                ..
            })
        )
        && gic::deadline_timer_pending(cpu);
    if platform.armed {
        stop_deadline_timer();
    }
    match request {
        Ok(FlatRequest { outcome, sgis_sent }) => {
            let ticks = platform.now().wrapping_sub(started);
            add_to_own_counter(&counters.total_ticks, ticks);
            if ticks > counters.longest_ticks.load(Ordering::Relaxed) {
                counters.longest_ticks.store(ticks, Ordering::Relaxed);
            }
            add_to_own_counter(&counters.sgis_sent, u64::from(sgis_sent));
            if let WorkaroundOutcome::Timeout { unanswered } = outcome {
                report_timeout(cpu, counters, &unanswered, timer_raised);
            }
            outcome.to_x0()
        }
        Err(error) => {
            println!("monitor: erratum call on CPU {cpu} refused: {error:?}");
            SMC_UNKNOWN
        }
    }
}

/// Per CPU, [`CpuCounters::deadline_timer_wakeups`] when its last call gave up (cold path only),
/// so that a time-out can tell whether the timer's FIQ was taken during that call.
static TIMER_WAKEUPS_SEEN: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Counts and prints a call that passed its deadline.
#[cold]
fn report_timeout(
    cpu: usize,
    counters: &CpuCounters,
    unanswered: &CpuSet<WORDS>,
    timer_raised: bool,
) {
    add_to_own_counter(&counters.deadline_misses, 1);
    println!("monitor: erratum call on CPU {cpu} timed out waiting for {unanswered:?}");
    let wakeups = counters.deadline_timer_wakeups.load(Ordering::Relaxed);
    let seen = TIMER_WAKEUPS_SEEN
        .get(cpu)
        .map_or(wakeups, |seen| seen.swap(wakeups, Ordering::Relaxed));
    // On hardware the timer's FIQ is what ends a wait nobody answers; under QEMU, whose WFE
    // does not sleep, the caller may read the clock before the FIQ is taken.
    let timer = if wakeups != seen {
        "its FIQ ended the wait"
    } else if timer_raised {
        "raised, not yet taken (the clock was read first)"
    } else {
        "NOT RAISED"
    };
    println!("monitor:   deadline timer: {timer}");
    for target in unanswered.iter() {
        report_unanswered(target);
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
        COUNTERS[target.get()].sgis_answered.load(Ordering::Relaxed),
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
        sgis_answered: COUNTERS[cpu].sgis_answered.load(Ordering::Relaxed),
        sgis_sent: COUNTERS
            .iter()
            .map(|counters| counters.sgis_sent.load(Ordering::Relaxed))
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
    COUNTERS
        .get(cpu)
        .map_or(0, |counters| counters.sgis_sent.load(Ordering::Relaxed))
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
    let counters = COUNTERS.get(cpu)?;
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
    let timer_wakeups: u64 = COUNTERS
        .iter()
        .take(cpus)
        .map(|counters| counters.deadline_timer_wakeups.load(Ordering::Relaxed))
        .sum();
    println!("monitor: waits ended by the deadline timer: {timer_wakeups}");
    let inside: u64 = COUNTERS
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
        read_sysreg!("cntpct_el0"),
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
