//! The monitor's QEMU scenarios (issue 3): the EL2 test payload runs one scenario per QEMU run and
//! reports with a `payload: <name>: PASS` marker and its exit status. Also `cargo xtask build` and
//! `cargo xtask run-payload`, and the instruction-count benchmark.

use crate::error::XtaskError;
use crate::firmware::{self, MONITOR, MONITOR_BENCHMARK, MONITOR_WITHOUT_FIX, PAYLOAD};
use crate::qemu::{self, Machine, Run};
use clap::Args;
use std::path::Path;
use std::time::Duration;

/// Options of `cargo xtask build`.
#[derive(Args)]
pub struct BuildArgs {
    /// Build the monitor without the erratum fix (answers the call with -1).
    #[arg(long)]
    without_fix: bool,
    /// The board to build for.
    #[arg(long, value_enum, default_value_t)]
    machine: Machine,
}

/// Options of `cargo xtask test-monitor`.
#[derive(Args)]
pub struct TestArgs {
    /// The board to run the scenarios on.
    #[arg(long, value_enum, default_value_t)]
    machine: Machine,
}

/// Options of `cargo xtask run-payload`.
#[derive(Args)]
pub struct RunArgs {
    /// Scenario: boot, psci, erratum, erratum-masked, erratum-churn, erratum-suspended, benchmark,
    /// reset.
    #[arg(long, default_value = "boot")]
    scenario: String,
    /// Number of CPUs.
    #[arg(long, default_value_t = 4)]
    cpus: usize,
    /// CPU model (max, c1-pro-r0p2, c1-pro-r1p1, c1-pro-r2p0, ...).
    #[arg(long, default_value = "c1-pro-r0p2")]
    cpu: String,
    /// Erratum calls per round.
    #[arg(long, default_value_t = 1000)]
    iterations: u64,
    /// Use the monitor built without the erratum fix.
    #[arg(long)]
    without_fix: bool,
    /// Run under `-icount shift=0,sleep=off`.
    #[arg(long)]
    icount: bool,
    /// The board.
    #[arg(long, value_enum, default_value_t)]
    machine: Machine,
}

/// `cargo xtask build`.
pub fn build(args: &BuildArgs) -> Result<(), XtaskError> {
    let (monitor, payload) = monitor_and_payload(args.machine, args.without_fix)?;
    println!("{}\n{}", monitor.display(), payload.display());
    Ok(())
}

/// The monitor (with or without the fix) and the EL2 test payload, built for `machine`.
fn monitor_and_payload(
    machine: Machine,
    without_fix: bool,
) -> Result<(std::path::PathBuf, std::path::PathBuf), XtaskError> {
    let monitor = firmware::build_for(
        machine,
        if without_fix {
            MONITOR_WITHOUT_FIX
        } else {
            MONITOR
        },
    )?;
    Ok((monitor, firmware::build_for(machine, PAYLOAD)?))
}

fn scenario_number(name: &str) -> Result<u64, XtaskError> {
    Ok(match name {
        "boot" => 1,
        "psci" => 2,
        "erratum" => 3,
        "erratum-masked" => 4,
        "erratum-churn" => 5,
        "benchmark" => 6,
        "reset" => 7,
        "erratum-suspended" => 8,
        _ => return Err(XtaskError::Usage(format!("unknown scenario {name:?}"))),
    })
}

/// One QEMU scenario.
struct Scenario<'a> {
    machine: Machine,
    name: &'a str,
    cpus: usize,
    cpu_model: &'a str,
    expected_erratum_result: i64,
    iterations: u64,
    icount: bool,
    /// The line that proves success.
    marker: &'a str,
}

fn scenario_run(scenario: &Scenario, monitor: &Path, payload: &Path) -> Result<Run, XtaskError> {
    let mut extra = Vec::new();
    if scenario.icount {
        extra.extend(["-icount".to_string(), "shift=0,sleep=off".to_string()]);
    }
    Ok(Run {
        machine: scenario.machine,
        name: format!(
            "{}-{}-smp{}{}",
            scenario.name,
            scenario.cpu_model,
            scenario.cpus,
            scenario.machine.suffix()
        ),
        monitor: monitor.to_path_buf(),
        payload: Some(payload.to_path_buf()),
        parameters: vec![
            scenario_number(scenario.name)?,
            scenario.expected_erratum_result as u64,
            scenario.iterations,
        ],
        cpu: qemu::cpu_argument(scenario.cpu_model)?,
        cpus: scenario.cpus,
        extra,
        timeout: Duration::from_secs(30),
    })
}

/// Runs one scenario and checks its exit status and marker; returns the log.
fn check(scenario: &Scenario, monitor: &Path, payload: &Path) -> Result<String, XtaskError> {
    let run = scenario_run(scenario, monitor, payload)?;
    let outcome = run.execute()?;
    let mut problems = Vec::new();
    if outcome.status != Some(0) {
        problems.push(format!(
            "QEMU exit status {:?} (0 expected)",
            outcome.status
        ));
    }
    if !outcome.log.contains(scenario.marker) {
        problems.push(format!("the log lacks {:?}", scenario.marker));
    }
    qemu::report(&run.name, &outcome, &problems, "")?;
    Ok(outcome.log)
}

/// `cargo xtask run-payload`.
pub fn run_payload(args: &RunArgs) -> Result<(), XtaskError> {
    crate::setup::ensure_qemu()?;
    let (monitor, payload) = monitor_and_payload(args.machine, args.without_fix)?;
    let scenario = Scenario {
        machine: args.machine,
        name: &args.scenario,
        cpus: args.cpus,
        cpu_model: &args.cpu,
        expected_erratum_result: expected_result(&args.cpu, args.without_fix)?,
        iterations: args.iterations,
        icount: args.icount,
        marker: "PASS",
    };
    let run = scenario_run(&scenario, &monitor, &payload)?;
    let outcome = run.execute()?;
    print!("{}", outcome.log);
    println!(
        "xtask: QEMU exit status {:?} {}",
        outcome.status,
        qemu::log_hint(&outcome.log_path)
    );
    Ok(())
}

/// What the erratum call must answer for a CPU model: 0 when affected, -3 when not, -1 from
/// firmware without the fix.
fn expected_result(cpu_model: &str, without_fix: bool) -> Result<i64, XtaskError> {
    if without_fix {
        return Ok(-1);
    }
    let model = crate::qemu::parse_cpu_model(cpu_model)?;
    Ok(if model.affected_in_qemu() { 0 } else { -3 })
}

/// `cargo xtask test-monitor [--machine ...]`: the scenarios, then on `virt` the benchmark.
pub fn test(args: &TestArgs) -> Result<(), XtaskError> {
    run_qemu_tests(args.machine)?;
    if args.machine == Machine::Virt {
        benchmark()?;
    }
    Ok(())
}

/// (scenario, CPUs, CPU model, erratum call result, -icount, line that proves success)
type Row = (&'static str, usize, &'static str, i64, bool, &'static str);

/// The CPU model of the erratum scenarios: C1-Pro r0p2, affected.
const AFFECTED: &str = "c1-pro-r0p2";

/// Every monitor scenario on QEMU `virt`.
// The erratum scenarios run under `-icount` (deterministic, one vCPU at a time, well under a second
// each: every waiting loop of the payload and the monitor ends in YIELD, WFE or WFI, which pass the
// turn). The EL1 spinners' loop has a YIELD too (a no-op everywhere but in QEMU's -icount
// scheduler), so the 2-CPU masked run also uses multi-threaded TCG, where it is a hard spin that
// only the FIQ interrupts.
#[rustfmt::skip]
const VIRT_SCENARIOS: &[Row] = &[
    ("boot", 4, "max", 0, false, "payload: boot: PASS"),
    // Under -icount CPU 0 makes both CPU_ONs within one turn, so the second one deterministically
    // finds the target still pending (ON_PENDING); the payload itself also accepts ALREADY_ON.
    ("psci", 1, AFFECTED, 0, true, "payload: psci: PASS"),
    ("psci", 2, AFFECTED, 0, true, "payload: psci: second CPU_ON answered -5"),
    ("psci", 4, AFFECTED, 0, true, "payload: psci: second CPU_ON answered -5"),
    ("psci", 4, AFFECTED, 0, false, "payload: psci: PASS"),
    ("reset", 2, AFFECTED, 0, false, "monitor: Reset"),
    ("erratum", 1, AFFECTED, 0, true, "payload: erratum: PASS"),
    ("erratum", 2, AFFECTED, 0, true, "payload: erratum: PASS"),
    ("erratum", 4, AFFECTED, 0, true, "payload: erratum: PASS"),
    ("erratum", 8, AFFECTED, 0, true, "payload: erratum: PASS"),
    ("erratum", 4, "max", -3, true, "payload: erratum: PASS"),
    ("erratum", 4, "c1-pro-r2p0", -3, true, "payload: erratum: PASS"),
    ("erratum-masked", 2, AFFECTED, 0, false, "payload: erratum-masked: PASS"),
    ("erratum-masked", 4, AFFECTED, 0, true, "payload: erratum-masked: PASS"),
    ("erratum-masked", 8, AFFECTED, 0, true, "payload: erratum-masked: PASS"),
    ("erratum-churn", 4, AFFECTED, 0, true, "payload: erratum-churn: PASS"),
    ("erratum-churn", 8, AFFECTED, 0, true, "payload: erratum-churn: PASS"),
    ("erratum-suspended", 4, AFFECTED, 0, true, "payload: erratum-suspended: PASS"),
    ("erratum-suspended", 8, AFFECTED, 0, true, "payload: erratum-suspended: PASS"),
];

/// The scenarios only QEMU `sbsa-ref` can run, besides the whole virt list: 12 CPUs, across two
/// 8-CPU clusters (one SGI target list per cluster, MPIDR 0x100 = CPU 8), for the erratum call and
/// in a power-down suspend. (Everything else in [`VIRT_SCENARIOS`] runs there too: boot with the
/// device tree at 1 TiB, PSCI with entry points in DRAM at 1 TiB, the reset through the embedded
/// controller, every erratum scenario.)
#[rustfmt::skip]
const SBSA_ONLY_SCENARIOS: &[Row] = &[
    ("erratum", 12, AFFECTED, 0, true, "payload: erratum: PASS"),
    ("erratum-suspended", 12, AFFECTED, 0, true, "payload: erratum-suspended: PASS"),
];

/// Every monitor scenario of `machine` in QEMU (called by `cargo xtask test` for each board).
pub fn run_qemu_tests(machine: Machine) -> Result<(), XtaskError> {
    let monitor = firmware::build_for(machine, MONITOR)?;
    let without_fix = firmware::build_for(machine, MONITOR_WITHOUT_FIX)?;
    let payload = firmware::build_for(machine, PAYLOAD)?;
    let extra = match machine {
        Machine::Virt => &[][..],
        Machine::SbsaRef => SBSA_ONLY_SCENARIOS,
    };
    let scenarios = VIRT_SCENARIOS.iter().chain(extra).map(
        |&(name, cpus, cpu_model, expected, icount, marker)| Scenario {
            machine,
            name,
            cpus,
            cpu_model,
            expected_erratum_result: expected,
            iterations: 1000,
            icount,
            marker,
        },
    );
    for scenario in scenarios {
        check(&scenario, &monitor, &payload)?;
    }
    let refused = Scenario {
        machine,
        name: "erratum",
        cpus: 2,
        cpu_model: AFFECTED,
        expected_erratum_result: -1,
        iterations: 1000,
        icount: true,
        marker: "payload: erratum: PASS",
    };
    check(&refused, &without_fix, &payload)?;
    deadline_scenario(machine, &payload)
}

/// The monitor deliberately broken for [`deadline_scenario`]: CPU 1 never answers the SGI.
const MONITOR_NEVER_ANSWER: firmware::Image = firmware::Image {
    package: "monitor",
    features: "never-answer",
    board_specific: true,
};

/// The deadline on real hardware (issue 15): with CPU 1 never answering, every call must answer
/// -1 (the payload checks each), be counted as a deadline miss, and have been ended by the Secure
/// physical timer's FIQ taken in the caller's wait. QEMU's WFE does not sleep (it yields), so the
/// `never-answer` build stays in the wait's unmasked window with `YIELD`s: what the test shows is
/// that the timer fires at the deadline, that its FIQ is taken inside the wait (the only way a
/// WFE with nobody answering ends on hardware without an event stream) and that the call then
/// returns normally (its return state kept across that FIQ). `-icount` makes QEMU's timers fire
/// at the exact virtual time, so the counts are deterministic.
fn deadline_scenario(machine: Machine, payload: &Path) -> Result<(), XtaskError> {
    const CALLS: u64 = 3;
    let monitor = firmware::build_for(machine, MONITOR_NEVER_ANSWER)?;
    let scenario = Scenario {
        machine,
        name: "erratum-masked",
        cpus: 2,
        cpu_model: "c1-pro-r0p2",
        expected_erratum_result: -1,
        iterations: CALLS,
        icount: true,
        marker: "payload: erratum-masked: PASS",
    };
    let log = check(&scenario, &monitor, payload)?;
    let count = |marker: &str| log.matches(marker).count() as u64;
    let timed_out = count("timed out waiting for {1}");
    let taken = count("monitor:   deadline timer: its FIQ ended the wait");
    let raised = count("monitor:   deadline timer: raised, not yet taken");
    let not_raised = count("monitor:   deadline timer: NOT RAISED");
    println!(
        "xtask: deadline: {timed_out} calls timed out; the timer's FIQ ended {taken} waits, was raised at {raised} time-outs, not raised at {not_raised}"
    );
    // The build stays long in the wait's unmasked window: the FIQ must end every wait.
    if timed_out == CALLS && taken == CALLS && raised == 0 && not_raised == 0 {
        Ok(())
    } else {
        Err(XtaskError::Check(format!(
            "never-answer: {CALLS} time-outs with the deadline timer raised expected {}",
            qemu::log_hint(
                &crate::firmware::workspace_root()
                    .join("target")
                    .join("qemu-logs")
            )
        )))
    }
}

/// Retired instructions per call for 1, 2, 4 and 8 CPUs (printed; `cargo xtask test` runs it too).
pub fn benchmark() -> Result<Vec<String>, XtaskError> {
    let monitor = firmware::build(MONITOR_BENCHMARK)?;
    let payload = firmware::build(PAYLOAD)?;
    let mut lines = Vec::new();
    for cpus in [1, 2, 4, 8] {
        let scenario = Scenario {
            machine: Machine::Virt,
            name: "benchmark",
            cpus,
            cpu_model: "c1-pro-r0p2",
            expected_erratum_result: 0,
            iterations: 1000,
            icount: true,
            marker: "payload: benchmark: PASS",
        };
        let log = check(&scenario, &monitor, &payload)?;
        if let Some(line) = log
            .lines()
            .find(|line| line.contains("payload: benchmark: cpus="))
        {
            println!("{line}");
            lines.push(line.to_string());
        }
    }
    Ok(lines)
}
