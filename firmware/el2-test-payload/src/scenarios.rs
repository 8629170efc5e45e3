//! The test scenarios. CPU 0 leads; the other CPUs are started with `CPU_ON` at `payload_secondary`
//! with a context id naming their job ([`Job`]) and coordinate through the atomics below.

use crate::calls::{self, ERRATUM_CALL, SMCCC_VERSION, psci, smc, smc_signed};
use crate::{Parameters, Scenario};
use arm_sysregs::aarch32::registers::Pmcntenset;
use arm_sysregs::el0::registers::PmcrEl0;
use arm_sysregs::el1::accessors::write_sctlr_el1;
use arm_sysregs::el2::accessors::{write_elr_el2, write_hcr_el2, write_spsr_el2};
use arm_sysregs::el2::registers::{ElrEl2, HcrEl2, SpsrEl2};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use firmware_runtime::cpu::mpidr_from_index;
use firmware_runtime::memory_map::{MAX_CPUS, SECURE_RAM_BASE};
use firmware_runtime::println;
use firmware_runtime::semihosting::exit;
use firmware_runtime::sysreg::{Pmevtyper, SCTLR_EL1_MMU_OFF};

/// `SPSR_EL2` of the entry to EL1: EL1h (`M[3:0]` = 0b0101), D, A, I and F masked.
const SPSR_EL1H_MASKED: SpsrEl2 = SpsrEl2::D
    .union(SpsrEl2::A)
    .union(SpsrEl2::I)
    .union(SpsrEl2::F)
    .with_m_3_0(0b0101);
const _: () = assert!(SPSR_EL1H_MASKED.bits() == 0b0101 | (0b1111 << 6));

unsafe extern "C" {
    fn payload_secondary();
    fn el1_spin();
}

/// What a secondary CPU does (its `CPU_ON` context id).
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Job {
    /// Take turns and rounds of erratum calls as CPU 0 says ([`ROUND`]).
    Caller = 1,
    /// Drop to EL1 and spin there with every interrupt masked.
    SpinAtEl1 = 2,
    /// Report in, wait until [`HOLD_OFF`] is clear, and `CPU_OFF` again.
    ReportAndOff = 3,
    /// Loop: standby suspend, power-down suspend (resuming at [`Job::Churn`]), `CPU_OFF`.
    Churn = 4,
    /// Park in `WFI` at EL2 (benchmark).
    Park = 5,
    /// CPU 0 resuming from its power-down suspend in the PSCI scenario.
    Resumed = 6,
    /// Standby suspend once (odd CPUs) or power-down suspend once (even CPUs), then report.
    SuspendOnce = 7,
    /// An even CPU back from its power-down suspend.
    ResumedOnce = 8,
}

static ONLINE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static AT_EL1: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static FAILURES: AtomicUsize = AtomicUsize::new(0);
static ROUND: AtomicU64 = AtomicU64::new(0);
static ROUND_DONE: AtomicUsize = AtomicUsize::new(0);
static TURN: AtomicUsize = AtomicUsize::new(usize::MAX);
static ITERATIONS: AtomicU64 = AtomicU64::new(1000);
static EXPECTED: AtomicU64 = AtomicU64::new(0);
static CHURN_LOOPS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static STOP_CHURN: AtomicBool = AtomicBool::new(false);
/// Keeps a [`Job::ReportAndOff`] CPU on until cleared, so that a second `CPU_ON` is certain to find
/// it on or still pending (otherwise a fast CPU could already be off again, and `CPU_ON` rightly
/// succeed).
static HOLD_OFF: AtomicBool = AtomicBool::new(false);
static SUSPENDING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static RESUMED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static PARAMETERS_SCENARIO: AtomicU64 = AtomicU64::new(0);

fn fail(what: core::fmt::Arguments) {
    println!("payload: FAIL: {what}");
    FAILURES.fetch_add(1, Ordering::SeqCst);
}

macro_rules! check {
    ($condition:expr, $($arg:tt)*) => {
        if !$condition { fail(format_args!($($arg)*)); }
    };
}

fn cpu_count() -> usize {
    // AFFINITY_INFO answers INVALID_PARAMETERS (-2) for CPUs that do not exist.
    (1..MAX_CPUS)
        .find(|&cpu| smc_signed(psci::AFFINITY_INFO, [mpidr_from_index(cpu), 0, 0]) == -2)
        .unwrap_or(MAX_CPUS)
}

fn cpu_on(cpu: usize, job: Job) -> i64 {
    smc_signed(
        psci::CPU_ON,
        [
            mpidr_from_index(cpu),
            payload_secondary as *const () as usize as u64,
            job as u64,
        ],
    )
}

fn finish(name: &str) -> ! {
    let failures = FAILURES.load(Ordering::SeqCst);
    if failures == 0 {
        println!("payload: {name}: PASS");
        exit(0)
    }
    println!("payload: {name}: {failures} failures");
    exit(1)
}

/// Runs the erratum call `iterations` times on this CPU, checking every result.
fn erratum_calls(iterations: u64) {
    let expected = EXPECTED.load(Ordering::SeqCst) as i64;
    let cpu = calls::cpu_index();
    for iteration in 0..iterations {
        let result = smc_signed(ERRATUM_CALL, [0; 3]);
        if result != expected {
            fail(format_args!(
                "CPU {cpu}: erratum call {iteration} returned {result}, expected {expected}"
            ));
            return;
        }
    }
}

/// Checks that, after `caller`'s calls, every CPU in `others` serviced the caller's last request.
fn check_serviced(caller: usize, others: impl Iterator<Item = usize>) {
    let (request, _, _) = calls::statistics(caller);
    for other in others {
        let (serviced, answered, _) = calls::statistics(other);
        check!(
            serviced >= request,
            "CPU {other} serviced request {serviced}, CPU {caller}'s last request is {request}"
        );
        check!(answered > 0, "CPU {other} never answered a rendezvous SGI");
    }
}

pub fn run(parameters: Parameters) -> ! {
    ITERATIONS.store(parameters.iterations, Ordering::SeqCst);
    EXPECTED.store(parameters.expected_erratum_result as u64, Ordering::SeqCst);
    PARAMETERS_SCENARIO.store(parameters.scenario as u64, Ordering::SeqCst);
    ONLINE[0].store(true, Ordering::SeqCst);
    match parameters.scenario {
        Scenario::Boot => finish("boot"),
        Scenario::Psci => psci_scenario(),
        Scenario::Erratum => erratum_scenario(),
        Scenario::ErratumMasked => masked_scenario(),
        Scenario::ErratumChurn => churn_scenario(),
        Scenario::Benchmark => benchmark(Job::Park),
        Scenario::BenchmarkBusy => benchmark(Job::SpinAtEl1),
        Scenario::ErratumSuspended => suspended_scenario(),
        Scenario::Reset => {
            println!("payload: reset: calling SYSTEM_RESET");
            smc(psci::SYSTEM_RESET, [0; 3]);
            println!("payload: FAIL: SYSTEM_RESET returned");
            exit(1)
        }
    }
}

fn bring_up(cpus: usize, job: Job) {
    for cpu in 1..cpus {
        let result = cpu_on(cpu, job);
        check!(result == 0, "CPU_ON({cpu}) returned {result}");
    }
    for online in ONLINE.iter().take(cpus).skip(1) {
        while !online.load(Ordering::SeqCst) {
            calls::wait_for_event();
        }
    }
}

fn erratum_scenario() -> ! {
    let cpus = cpu_count();
    let iterations = ITERATIONS.load(Ordering::SeqCst);
    calls::enable_wake_sgi();
    bring_up(cpus, Job::Caller);
    println!("payload: erratum: {cpus} CPUs online, {iterations} calls per CPU per round");
    // Each CPU in turn.
    for turn in 0..cpus {
        if turn == 0 {
            erratum_calls(iterations);
        } else {
            ROUND_DONE.store(0, Ordering::SeqCst);
            TURN.store(turn, Ordering::SeqCst);
            ROUND.fetch_add(1, Ordering::SeqCst);
            calls::send_event();
            while ROUND_DONE.load(Ordering::SeqCst) == 0 {
                calls::wait_for_event();
            }
        }
        if EXPECTED.load(Ordering::SeqCst) == 0 {
            check_serviced(turn, (0..cpus).filter(|&other| other != turn));
        }
    }
    // All at once.
    ROUND_DONE.store(0, Ordering::SeqCst);
    TURN.store(usize::MAX, Ordering::SeqCst);
    ROUND.fetch_add(1, Ordering::SeqCst);
    calls::send_event();
    erratum_calls(iterations);
    while ROUND_DONE.load(Ordering::SeqCst) < cpus - 1 {
        calls::wait_for_event();
    }
    // The monitor's own account: every CPU called `2 × iterations` times, from EL2; with the fix
    // each call sent the SGI to every other (active, affected) CPU, skipped none and met its
    // deadline; without it (or on an unaffected CPU) no SGI was sent.
    let fixed_and_affected = EXPECTED.load(Ordering::SeqCst) == 0;
    for caller in 0..cpus {
        let (from_el1, from_el2, skipped) = calls::caller_statistics(caller);
        let (misses, _, sent) = calls::wait_statistics(caller);
        let wanted_sent = if fixed_and_affected {
            2 * iterations * (cpus as u64 - 1)
        } else {
            0
        };
        check!(
            from_el1 == 0 && from_el2 == 2 * iterations,
            "CPU {caller}: the monitor counted {from_el1} calls from EL1 and {from_el2} from EL2, 0 and {} expected",
            2 * iterations
        );
        check!(
            skipped == 0 && misses == 0 && sent == wanted_sent,
            "CPU {caller}: {skipped} CPUs skipped, {misses} deadline misses, {sent} SGIs sent ({wanted_sent} expected)"
        );
    }
    if EXPECTED.load(Ordering::SeqCst) == 0 {
        for caller in 0..cpus {
            check_serviced(caller, (0..cpus).filter(|&other| other != caller));
        }
    } else {
        let (_, _, sent) = calls::statistics(0);
        check!(
            sent == 0,
            "{sent} rendezvous SGIs sent although no CPU is affected"
        );
    }
    println!(
        "payload: erratum: statistics of CPU 0: {:?}",
        calls::statistics(0)
    );
    finish("erratum")
}

fn masked_scenario() -> ! {
    let cpus = cpu_count();
    for cpu in 1..cpus {
        let result = cpu_on(cpu, Job::SpinAtEl1);
        check!(result == 0, "CPU_ON({cpu}) returned {result}");
    }
    for at_el1 in AT_EL1.iter().take(cpus).skip(1) {
        while at_el1.load(Ordering::SeqCst) == 0 {
            calls::wait_for_event();
        }
    }
    println!(
        "payload: erratum-masked: {} CPUs spin at EL1 with DAIF masked",
        cpus - 1
    );
    let before: [u64; MAX_CPUS] = core::array::from_fn(|cpu| {
        if cpu < cpus {
            calls::statistics(cpu).1
        } else {
            0
        }
    });
    erratum_calls(ITERATIONS.load(Ordering::SeqCst));
    if EXPECTED.load(Ordering::SeqCst) == 0 {
        check_serviced(0, 1..cpus);
        for (cpu, &answered_before) in before.iter().enumerate().take(cpus).skip(1) {
            let answered = calls::statistics(cpu).1;
            check!(
                answered > answered_before,
                "CPU {cpu} at EL1 answered no SGI ({answered})"
            );
        }
    }
    finish("erratum-masked")
}

fn churn_scenario() -> ! {
    let cpus = cpu_count();
    let iterations = ITERATIONS.load(Ordering::SeqCst);
    calls::enable_wake_sgi();
    for cpu in 1..cpus {
        let result = cpu_on(cpu, Job::Churn);
        check!(result == 0, "CPU_ON({cpu}) returned {result}");
    }
    for iteration in 0..iterations {
        let result = smc_signed(ERRATUM_CALL, [0; 3]);
        let expected = EXPECTED.load(Ordering::SeqCst) as i64;
        check!(
            result == expected,
            "erratum call {iteration} returned {result} with CPUs churning"
        );
        calls::yield_now();
        for cpu in 1..cpus {
            // Wake CPUs that are suspended; restart CPUs that are off.
            calls::send_wake_sgi(cpu);
            if smc_signed(psci::AFFINITY_INFO, [mpidr_from_index(cpu), 0, 0]) == 1 {
                let result = cpu_on(cpu, Job::Churn);
                check!(
                    result == 0 || result == -4 || result == -5,
                    "CPU_ON({cpu}) returned {result}"
                );
            }
        }
    }
    STOP_CHURN.store(true, Ordering::SeqCst);
    for (cpu, loops) in CHURN_LOOPS.iter().enumerate().take(cpus).skip(1) {
        let loops = loops.load(Ordering::SeqCst);
        println!("payload: erratum-churn: CPU {cpu} went through {loops} off/suspend cycles");
        check!(loops > 0, "CPU {cpu} never churned");
    }
    finish("erratum-churn")
}

fn churn_loop(cpu: usize, context: u64) -> ! {
    // A CPU_ON or power-down entry point is entered as after reset: the caches this CPU turned on
    // below before its CPU_OFF or suspend must be off again (the monitor resets SCTLR_EL2/HCR_EL2).
    let (sctlr, hcr) = calls::lower_translation_state();
    check!(
        !sctlr.intersects(calls::SCTLR_MMU_AND_CACHES) && hcr.is_empty(),
        "CPU {cpu} entered with SCTLR_EL2 {:#x}, HCR_EL2 {:#x}",
        sctlr.bits(),
        hcr.bits()
    );
    calls::enable_wake_sgi();
    calls::drain_interrupts();
    if STOP_CHURN.load(Ordering::SeqCst) {
        loop {
            calls::wait_for_event();
        }
    }
    // The context id counts the step: 4 = start, then standby, then power-down resumes with 104.
    if context == Job::Churn as u64 {
        let result = smc_signed(psci::CPU_SUSPEND, [0, 0, 0]);
        check!(
            result == 0,
            "CPU {cpu}: standby CPU_SUSPEND returned {result}"
        );
        calls::drain_interrupts();
        calls::dirty_lower_translation_state();
        let resume = payload_secondary as *const () as usize as u64;
        let result = smc_signed(
            psci::CPU_SUSPEND,
            [1 << 30, resume, 100 + Job::Churn as u64],
        );
        fail(format_args!(
            "CPU {cpu}: power-down CPU_SUSPEND returned {result}"
        ));
    }
    CHURN_LOOPS[cpu].fetch_add(1, Ordering::SeqCst);
    calls::dirty_lower_translation_state();
    let result = smc_signed(psci::CPU_OFF, [0; 3]);
    fail(format_args!("CPU {cpu}: CPU_OFF returned {result}"));
    loop {
        calls::wait_for_event();
    }
}

/// Odd CPUs: standby suspend (returns); even CPUs: power-down suspend (resumes at `ResumedOnce`).
fn suspend_once(cpu: usize) -> ! {
    calls::enable_wake_sgi();
    SUSPENDING[cpu].store(true, Ordering::SeqCst);
    calls::send_event();
    if cpu % 2 == 1 {
        let result = smc_signed(psci::CPU_SUSPEND, [0, 0, 0]);
        check!(
            result == 0,
            "CPU {cpu}: standby CPU_SUSPEND returned {result}"
        );
        calls::drain_interrupts();
        RESUMED[cpu].store(true, Ordering::SeqCst);
        calls::send_event();
    } else {
        let resume = payload_secondary as *const () as usize as u64;
        let result = smc_signed(
            psci::CPU_SUSPEND,
            [1 << 30, resume, Job::ResumedOnce as u64],
        );
        fail(format_args!(
            "CPU {cpu}: power-down CPU_SUSPEND returned {result}"
        ));
    }
    loop {
        calls::wait_for_event();
    }
}

/// The erratum call while every other CPU is suspended: no SGI reaches them (standby CPUs are not
/// woken needlessly, power-down CPUs are not waited for), and each has serviced the last request
/// once it is back.
fn suspended_scenario() -> ! {
    let cpus = cpu_count();
    for cpu in 1..cpus {
        let result = cpu_on(cpu, Job::SuspendOnce);
        check!(result == 0, "CPU_ON({cpu}) returned {result}");
    }
    for suspending in SUSPENDING.iter().take(cpus).skip(1) {
        while !suspending.load(Ordering::SeqCst) {
            calls::wait_for_event();
        }
    }
    // Let the others reach their WFI in the monitor (under -icount a WFI ends their turn).
    for _ in 0..100 {
        calls::yield_now();
    }
    let answered_before: [u64; MAX_CPUS] = core::array::from_fn(|cpu| {
        if cpu < cpus {
            calls::statistics(cpu).1
        } else {
            0
        }
    });
    let (_, _, sent_before) = calls::statistics(0);
    erratum_calls(ITERATIONS.load(Ordering::SeqCst));
    let (request, _, sent_after) = calls::statistics(0);
    check!(
        sent_after == sent_before,
        "{} SGIs sent while every other CPU was suspended",
        sent_after - sent_before
    );
    for (cpu, &before) in answered_before.iter().enumerate().take(cpus).skip(1) {
        let answered = calls::statistics(cpu).1;
        check!(
            answered == before,
            "suspended CPU {cpu} answered {} SGIs",
            answered - before
        );
        let state = smc_signed(psci::AFFINITY_INFO, [mpidr_from_index(cpu), 0, 0]);
        check!(
            state == 0,
            "AFFINITY_INFO of suspended CPU {cpu} is {state}, expected ON"
        );
    }
    for cpu in 1..cpus {
        calls::send_wake_sgi(cpu);
    }
    for (cpu, resumed) in RESUMED.iter().enumerate().take(cpus).skip(1) {
        while !resumed.load(Ordering::SeqCst) {
            calls::wait_for_event();
        }
        let (serviced, _, _) = calls::statistics(cpu);
        check!(
            serviced >= request,
            "CPU {cpu} woke having serviced request {serviced}, last request {request}"
        );
    }
    println!(
        "payload: erratum-suspended: {} CPUs suspended, none interrupted",
        cpus - 1
    );
    finish("erratum-suspended")
}

/// Retired instructions per call, the other CPUs doing `others` (run under `-icount
/// shift=0,sleep=off`): [`Job::Park`] parks them in WFI at EL2, [`Job::SpinAtEl1`] keeps them busy
/// in a loop at EL1 that yields every iteration (their loop instructions count too: under `-icount`
/// the counter sums every vCPU).
fn benchmark(others: Job) -> ! {
    let cpus = cpu_count();
    for cpu in 1..cpus {
        check!(cpu_on(cpu, others) == 0, "CPU_ON({cpu}) failed");
    }
    for cpu in 1..cpus {
        if others == Job::SpinAtEl1 {
            while AT_EL1[cpu].load(Ordering::SeqCst) == 0 {
                calls::wait_for_event();
            }
        } else {
            while !ONLINE[cpu].load(Ordering::SeqCst) {
                calls::wait_for_event();
            }
        }
    }
    let (name, label) = if others == Job::SpinAtEl1 {
        ("benchmark-busy", "busy-el1")
    } else {
        ("benchmark", "wfi")
    };
    let iterations = ITERATIONS.load(Ordering::SeqCst);
    // The instructions of the measurement itself (counter reads, barriers), subtracted below.
    let overhead = measure(0, 0);
    let null = measure(SMCCC_VERSION, iterations).saturating_sub(overhead);
    let erratum = measure(ERRATUM_CALL, iterations).saturating_sub(overhead);
    println!(
        "payload: {name}: cpus={cpus} others={label} iterations={iterations} null_smc_total={null} \
         erratum_total={erratum} null_smc_per_call={} erratum_per_call={} (loop body: 4 instructions, \
         included)",
        null / iterations,
        erratum / iterations
    );
    finish(name)
}

/// Retired instructions (PMU event `INST_RETIRED`, all vCPUs together under -icount) of `iterations`
/// SMCs of `function_id` in a 4-instruction loop (`mov`, `smc`, `subs`, `b.ne`).
fn measure(function_id: u32, iterations: u64) -> u64 {
    let before: u64;
    let after: u64;
    // Hand-written on purpose: the benchmark's figures are this exact instruction sequence (the
    // counter set-up, the two counter reads and the loop between them), so the compiler must not
    // place, merge or reorder anything in it. The values are the named fields of `arm-sysregs`
    // (`PmcrEl0::E`, `Pmcntenset::P0`) and of `firmware_runtime::sysreg::Pmevtyper`, as `const`
    // operands: the same instructions as the literals they replace.
    // SAFETY: programs PMU counter 0 (INST_RETIRED, counting EL2 and EL3) and makes SMCs; the monitor
    // preserves every register but x0-x3.
    unsafe {
        core::arch::asm!(
            "msr pmselr_el0, xzr",
            "mov {tmp}, #{event}",
            "orr {tmp}, {tmp}, #{nsh}",
            "msr pmxevtyper_el0, {tmp}",
            "mov {tmp}, #{counter0}",
            "msr pmcntenset_el0, {tmp}",
            "mrs {tmp}, pmcr_el0",
            "orr {tmp}, {tmp}, #{enable}",
            "msr pmcr_el0, {tmp}",
            "isb",
            "mrs {before}, pmevcntr0_el0",
            "cbz {count}, 2f",
            "1:",
            "mov x0, {function}",
            "smc #0",
            "subs {count}, {count}, #1",
            "b.ne 1b",
            "2:",
            "isb",
            "mrs {after}, pmevcntr0_el0",
            event = const Pmevtyper::INST_RETIRED,
            nsh = const Pmevtyper::NSH,
            counter0 = const Pmcntenset::P0.bits(),
            enable = const PmcrEl0::E.bits(),
            tmp = out(reg) _,
            before = out(reg) before,
            after = out(reg) after,
            count = inout(reg) iterations => _,
            function = in(reg) u64::from(function_id),
            out("x0") _, out("x1") _, out("x2") _, out("x3") _,
            options(nostack),
        );
    }
    after.wrapping_sub(before)
}

fn psci_scenario() -> ! {
    let cpus = cpu_count();
    let version = smc(psci::VERSION, [0; 3])[0];
    check!(version == 0x1_0001, "PSCI_VERSION {version:#x}");
    let smccc = smc(SMCCC_VERSION, [0; 3])[0];
    check!(smccc == 0x1_0002, "SMCCC_VERSION {smccc:#x}");
    let uid = smc(abi::cpu_service::CPU_SERVICE_UID, [0; 3]);
    check!(
        uid == abi::cpu_service::UID.to_return_registers(),
        "CPU_SVC_UID returned {uid:x?}"
    );
    let cpu_service_version = smc(abi::cpu_service::CPU_SERVICE_VERSION, [0; 3]);
    check!(
        cpu_service_version[..2] == abi::cpu_service::VERSION.to_registers(),
        "CPU_SVC_VERSION returned {cpu_service_version:x?}"
    );
    let entry = payload_secondary as *const () as usize as u64;
    #[rustfmt::skip]
    let table: &[(&str, u32, [u64; 3], i64)] = &[
        ("PSCI_FEATURES(CPU_ON)", psci::FEATURES, [psci::CPU_ON as u64, 0, 0], 0),
        ("PSCI_FEATURES(CPU_SUSPEND)", psci::FEATURES, [psci::CPU_SUSPEND as u64, 0, 0], 2),
        ("PSCI_FEATURES(SMCCC_VERSION)", psci::FEATURES, [SMCCC_VERSION as u64, 0, 0], 0),
        ("PSCI_FEATURES(MIGRATE)", psci::FEATURES, [psci::MIGRATE as u64, 0, 0], -1),
        ("PSCI_FEATURES(SYSTEM_SUSPEND)", psci::FEATURES, [psci::SYSTEM_SUSPEND as u64, 0, 0], -1),
        ("SMCCC_ARCH_FEATURES(WORKAROUND_1)", calls::SMCCC_ARCH_FEATURES, [0x8000_8000, 0, 0], -1),
        ("SMCCC_ARCH_FEATURES(SMCCC_ARCH_FEATURES)", calls::SMCCC_ARCH_FEATURES, [calls::SMCCC_ARCH_FEATURES as u64, 0, 0], 0),
        ("SMCCC_ARCH_FEATURES(PSCI_VERSION)", calls::SMCCC_ARCH_FEATURES, [psci::VERSION as u64, 0, 0], -1),
        ("MIGRATE_INFO_TYPE", psci::MIGRATE_INFO_TYPE, [0; 3], 2),
        ("MIGRATE", psci::MIGRATE, [1, 0, 0], -1),
        ("SYSTEM_SUSPEND", psci::SYSTEM_SUSPEND, [entry, 0, 0], -1),
        ("unknown PSCI function", 0x8400_001F, [0; 3], -1),
        ("unknown service", 0x8700_0000, [0; 3], -1),
        ("erratum call, SMC64 twin", 0xC100_0010, [0; 3], -1),
        ("erratum family, reserved offset 1", 0x8100_0011, [0; 3], -1),
        ("statistics of a CPU that does not exist", abi::statistics::RENDEZVOUS_STATISTICS, [MAX_CPUS as u64, 0, 0], abi::statistics::NO_SUCH_CPU),
        ("CPU_ON(self)", psci::CPU_ON, [0, entry, 0], -4),
        ("CPU_ON(no such CPU)", psci::CPU_ON, [0xFF, entry, 0], -2),
        ("CPU_ON(reserved MPIDR bits)", psci::CPU_ON, [1 << 24, entry, 0], -2),
        ("CPU_ON(entry in Secure RAM)", psci::CPU_ON, [1, SECURE_RAM_BASE as u64, 0], -9),
        ("CPU_ON(unaligned entry)", psci::CPU_ON, [1, entry + 2, 0], -9),
        ("AFFINITY_INFO(level 1)", psci::AFFINITY_INFO, [0, 1, 0], -2),
        ("AFFINITY_INFO(no such CPU)", psci::AFFINITY_INFO, [0xFF, 0, 0], -2),
        ("AFFINITY_INFO(self)", psci::AFFINITY_INFO, [0, 0, 0], 0),
        ("CPU_SUSPEND(StateID 1)", psci::CPU_SUSPEND, [1, entry, 0], -2),
        ("CPU_SUSPEND(reserved bit 31)", psci::CPU_SUSPEND, [1 << 31, entry, 0], -2),
        ("CPU_SUSPEND(power-down, bad entry)", psci::CPU_SUSPEND, [1 << 30, SECURE_RAM_BASE as u64, 0], -9),
        ("CPU_SUSPEND(power-down, SMC32 bad entry)", psci::CPU_SUSPEND_32, [1 << 30, 0x1000, 0], -9),
        // The upper halves of the target and the entry are ignored: CPU 0, already on, when the
        // entry lies below 4 GiB; on a board whose DRAM is above 4 GiB (sbsa-ref) no SMC32 entry
        // is valid.
        ("CPU_ON(SMC32, upper half ignored)", 0x8400_0003, [0xFFFF_FFFF_0000_0000, entry, 0], if entry >> 32 == 0 { -4 } else { -9 }),
    ];
    for &(name, function_id, arguments, expected) in table {
        if cpus < 2 && (name.starts_with("CPU_ON(entry") || name.starts_with("CPU_ON(unaligned")) {
            continue;
        }
        let result = smc_signed(function_id, arguments);
        check!(
            result == expected,
            "{name} returned {result}, expected {expected}"
        );
    }
    if cpus >= 2 {
        HOLD_OFF.store(true, Ordering::SeqCst);
        let first = cpu_on(1, Job::ReportAndOff);
        let second = cpu_on(1, Job::ReportAndOff);
        HOLD_OFF.store(false, Ordering::SeqCst);
        calls::send_event();
        check!(first == 0, "CPU_ON(1) returned {first}");
        check!(
            second == -5 || second == -4,
            "second CPU_ON(1) returned {second}, expected ON_PENDING or ALREADY_ON"
        );
        println!("payload: psci: second CPU_ON answered {second}");
        loop {
            let state = smc_signed(psci::AFFINITY_INFO, [1, 0, 0]);
            check!(
                (0..=2).contains(&state),
                "AFFINITY_INFO(1) returned {state}"
            );
            if ONLINE[1].load(Ordering::SeqCst) && state == 1 {
                break;
            }
            if state < 0 {
                break;
            }
            calls::yield_now();
        }
    }
    // CPU_OFF of the last CPU is refused.
    let result = smc_signed(psci::CPU_OFF, [0; 3]);
    check!(
        result == -3,
        "CPU_OFF of the last CPU returned {result}, expected DENIED"
    );
    // Standby suspend with a wake-up SGI already pending returns at once.
    calls::enable_wake_sgi();
    calls::send_wake_sgi(0);
    let result = smc_signed(psci::CPU_SUSPEND, [0, 0, 0]);
    check!(result == 0, "standby CPU_SUSPEND returned {result}");
    calls::drain_interrupts();
    // Power-down suspend: resumes at payload_secondary with context Resumed.
    calls::send_wake_sgi(0);
    let result = smc_signed(psci::CPU_SUSPEND, [1 << 30, entry, Job::Resumed as u64]);
    fail(format_args!("power-down CPU_SUSPEND returned {result}"));
    finish("psci")
}

fn psci_after_resume() -> ! {
    calls::drain_interrupts();
    println!("payload: psci: CPU 0 resumed from power-down suspend");
    let failures = FAILURES.load(Ordering::SeqCst);
    if failures != 0 {
        finish("psci");
    }
    println!("payload: psci: PASS");
    println!("payload: psci: calling SYSTEM_OFF");
    smc(psci::SYSTEM_OFF, [0; 3]);
    println!("payload: FAIL: SYSTEM_OFF returned");
    exit(1)
}

pub fn secondary(context: u64) -> ! {
    let cpu = calls::cpu_index();
    match context {
        c if c == Job::Caller as u64 => {
            calls::enable_wake_sgi();
            ONLINE[cpu].store(true, Ordering::SeqCst);
            calls::send_event();
            let mut seen = ROUND.load(Ordering::SeqCst);
            loop {
                let round = ROUND.load(Ordering::SeqCst);
                if round == seen {
                    calls::wait_for_event();
                    continue;
                }
                seen = round;
                let turn = TURN.load(Ordering::SeqCst);
                if turn == cpu || turn == usize::MAX {
                    erratum_calls(ITERATIONS.load(Ordering::SeqCst));
                    ROUND_DONE.fetch_add(1, Ordering::SeqCst);
                    calls::send_event();
                }
            }
        }
        c if c == Job::SpinAtEl1 as u64 => {
            let flag = AT_EL1[cpu].as_ptr() as u64;
            // SAFETY: prepares the entry to EL1 (AArch64, MMU off, every interrupt masked) at
            // `el1_spin`; nothing at EL2 runs with these values but the ERET below.
            unsafe {
                write_hcr_el2(HcrEl2::RW);
                write_spsr_el2(SPSR_EL1H_MASKED);
                write_elr_el2(ElrEl2::from_bits_retain(
                    el1_spin as *const () as usize as u64,
                ));
                write_sctlr_el1(SCTLR_EL1_MMU_OFF);
            }
            // SAFETY: enters EL1 at `el1_spin`, which stores 1 to the flag whose address is in x0 and
            // spins forever; EL2 is never needed again. (The exception return has no accessor: it
            // stays an instruction.)
            unsafe {
                core::arch::asm!("isb", "eret", in("x0") flag, options(noreturn, nostack));
            }
        }
        c if c == Job::ReportAndOff as u64 => {
            ONLINE[cpu].store(true, Ordering::SeqCst);
            calls::send_event();
            while HOLD_OFF.load(Ordering::SeqCst) {
                calls::wait_for_event();
            }
            let result = smc_signed(psci::CPU_OFF, [0; 3]);
            fail(format_args!("CPU {cpu}: CPU_OFF returned {result}"));
            loop {
                calls::wait_for_event();
            }
        }
        c if c == Job::Churn as u64 || c == 100 + Job::Churn as u64 => churn_loop(cpu, context),
        c if c == Job::Park as u64 => {
            ONLINE[cpu].store(true, Ordering::SeqCst);
            calls::send_event();
            loop {
                // SAFETY: WFI only waits.
                unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
            }
        }
        c if c == Job::Resumed as u64 && cpu == 0 => psci_after_resume(),
        c if c == Job::SuspendOnce as u64 => suspend_once(cpu),
        c if c == Job::ResumedOnce as u64 => {
            calls::drain_interrupts();
            RESUMED[cpu].store(true, Ordering::SeqCst);
            calls::send_event();
            loop {
                calls::wait_for_event();
            }
        }
        _ => {
            fail(format_args!(
                "CPU {cpu} started with unknown context {context}"
            ));
            exit(1)
        }
    }
}
