//! `cargo xtask bench`: benchmarks, which print and record figures (they are not pass/fail tests).
//!
//! The QEMU benchmarks run under `-icount shift=0,sleep=off` and count retired instructions (PMU event
//! `INST_RETIRED`, every vCPU and exception level together), which are the same in every run (each
//! run is made twice and must print the same figures, or the benchmark fails):
//!
//! * the erratum call against a null SMC (`SMCCC_VERSION`) with 1, 2, 4 and 8 CPUs, the other CPUs
//!   idle in `WFI` or busy at EL1 (EL2 test payload, scenarios 6 and 9);
//! * donating 64 MiB to a protected VM and reclaiming it (host demo, scenario 3), with no fix needed
//!   (unaffected CPU), with one firmware call per hypercall, and with one per page (the hypervisor's
//!   benchmark-only `firmware-call-per-page` build, upstream Linux's placement);
//! * stage-2 table memory per GiB donated, computed with the ownership library ([`table_memory`]).
//!
//! The figures go to `bench/results.json` and to a section of `docs/results.md` with two SVG plots
//! ([`report`]); `--compare` checks them against `bench/baseline.json` (any change beyond 1% fails),
//! `--update-baseline` makes this run the baseline. `--host` runs the criterion benchmarks instead;
//! `--profile` breaks one erratum call down by part and CPU ([`profile`]).

mod linux;
mod profile;
mod records;
mod report;
mod table_memory;

use crate::error::XtaskError;
use crate::firmware::{
    self, HOST, HOST_ADDRESS, HYPERVISOR_BENCHMARK, HYPERVISOR_CALL_PER_PAGE, MONITOR_BENCHMARK,
    PAYLOAD,
};
use crate::qemu::{self, Run};
use clap::Args;
use records::{DonationRow, ErratumRow, Results};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Options of `cargo xtask bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Run the host (criterion) benchmarks of the ownership core instead of the QEMU ones.
    #[arg(long)]
    host: bool,
    /// Compare this run with `bench/baseline.json`; fail on any change beyond 1%.
    #[arg(long)]
    compare: bool,
    /// Write this run as the new `bench/baseline.json`.
    #[arg(long)]
    update_baseline: bool,
    /// Only the real workload: stock Linux pKVM with a protected VM, affected CPUs against
    /// `c1-pro-r2p0` (`bench/linux-pkvm.json` and its section of `docs/results.md`).
    #[arg(long)]
    linux: bool,
    /// Only the profile: where one erratum call's instructions go, by part, with 1, 2, 4 and 8
    /// CPUs (QEMU trace matched to the images' debug information; `bench/profile.md`).
    #[arg(long)]
    profile: bool,
}

/// An affected CPU model (the fix runs) and an unaffected one (it is never needed).
const AFFECTED: &str = "c1-pro-r0p2";
const UNAFFECTED: &str = "c1-pro-r2p0";
/// Calls per measurement of the erratum benchmark.
const ITERATIONS: u64 = 1000;
/// Guest memory donated by the donation benchmark, and the CPUs online during it.
const DONATION_MEBIBYTES: u64 = 64;
const DONATION_CPUS: usize = 4;
/// Relative change `--compare` tolerates.
const TOLERANCE: f64 = 0.01;

/// Where the firmware call is made during a donation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Unaffected CPU: no call.
    NotNeeded,
    /// One call per `DONATE_GUEST` hypercall (ours).
    PerHypercall,
    /// One call per page (upstream Linux's placement; benchmark-only hypervisor build).
    PerPage,
}

impl Placement {
    /// Name in the results.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotNeeded => "not-needed",
            Self::PerHypercall => "per-hypercall",
            Self::PerPage => "per-page",
        }
    }
}

/// Runs the benchmarks asked for.
pub fn run(args: &BenchArgs) -> Result<(), XtaskError> {
    if args.host {
        return crate::setup::run(
            "cargo",
            &[
                "bench",
                "--package",
                "mem-protect",
                "--features",
                "measurement",
                "--bench",
                "donation",
            ],
        );
    }
    crate::setup::ensure_qemu()?;
    let root = firmware::workspace_root();
    if args.linux {
        return linux_benchmark(&root);
    }
    if args.profile {
        return profile::run(&root);
    }
    let start = Instant::now();
    let erratum = erratum_benchmarks()?;
    let donation = donation_benchmarks()?;
    let tables = table_memory::measure()?;
    let mut results = Results {
        schema: 1,
        qemu: qemu_version(),
        conditions: format!(
            "QEMU virt, -icount shift=0,sleep=off, PMU INST_RETIRED summed over all vCPUs and \
             EL1-EL3; erratum call: {ITERATIONS} calls from Non-secure EL2 (4-instruction loop \
             body included); donation: {DONATION_MEBIBYTES} MiB, {DONATION_CPUS} CPUs, others in WFI"
        ),
        erratum_call: erratum,
        donation,
        table_memory: tables,
        targets: Vec::new(),
    };
    results.targets = report::targets(&results);
    println!(
        "xtask: QEMU benchmarks took {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let text = records::to_text(&results)?;
    write(&root.join("bench").join("results.json"), &text)?;
    report::write_docs(&root, &results)?;
    print!("{}", report::tables(&results));
    linux_benchmark(&root)?;
    if args.update_baseline {
        write(&root.join("bench").join("baseline.json"), &text)?;
    }
    if args.compare {
        let path = root.join("bench").join("baseline.json");
        let baseline: Results = records::read(&path)?;
        let changes = compare_results(&baseline, &results)?;
        if changes.is_empty() {
            println!("xtask: bench: no figure changed by more than 1% from the baseline");
        } else {
            for change in &changes {
                println!("xtask: bench: {change}");
            }
            return Err(XtaskError::Check(format!(
                "{} figures differ from bench/baseline.json by more than 1%",
                changes.len()
            )));
        }
    }
    Ok(())
}

/// The real workload ([`linux`]): measures it, prints and records it next to the figures of the
/// last full run (`bench/results.json`: the call's cost alone and our hypervisor's donation).
fn linux_benchmark(root: &Path) -> Result<(), XtaskError> {
    let measured = linux::measure()?;
    // No full run yet: the section goes without the microbenchmark's figures. A file that is there
    // must read.
    let path = root.join("bench").join("results.json");
    let results: Option<Results> = if path.exists() {
        Some(records::read(&path)?)
    } else {
        None
    };
    let erratum_per_call = results.as_ref().and_then(|results| {
        results
            .erratum_call
            .iter()
            .find(|row| row.cpus == 4 && row.others == "wfi")
            .map(|row| row.erratum_per_call)
    });
    let donation = results.map(|results| results.donation).unwrap_or_default();
    let section = linux::section(&measured, erratum_per_call, &donation);
    print!("{section}");
    linux::write(root, &section, &measured)
}

fn write(path: &Path, text: &str) -> Result<(), XtaskError> {
    if let Some(directory) = path.parent() {
        std::fs::create_dir_all(directory)
            .map_err(|error| XtaskError::file("create", directory, error))?;
    }
    std::fs::write(path, text).map_err(|error| XtaskError::file("write", path, error))
}

fn qemu_version() -> String {
    std::process::Command::new("qemu-system-aarch64")
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// The `key=value` numbers of a log line.
fn fields(line: &str) -> Vec<(&str, u64)> {
    line.split_whitespace()
        .filter_map(|word| {
            let (key, value) = word.split_once('=')?;
            Some((key, value.parse().ok()?))
        })
        .collect()
}

fn field(fields: &[(&str, u64)], key: &str) -> Result<u64, XtaskError> {
    fields
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, value)| *value)
        .ok_or_else(|| XtaskError::Unexpected(format!("no {key}= in the benchmark line")))
}

/// Runs `run` twice (the counts must repeat exactly under `-icount`), requires exit status 0 and
/// the same lines both times, and returns the first line containing each of `markers`.
fn run_for_lines(run: &Run, markers: &[&str]) -> Result<Vec<String>, XtaskError> {
    let first = run_once_for_lines(run, markers)?;
    let second = run_once_for_lines(run, markers)?;
    if first != second {
        return Err(XtaskError::Check(format!(
            "benchmark run {} is not deterministic:\n  {first:?}\n  {second:?}",
            run.name
        )));
    }
    Ok(first)
}

/// Runs `run` once, requires exit status 0, and returns the first line containing each of `markers`.
fn run_once_for_lines(run: &Run, markers: &[&str]) -> Result<Vec<String>, XtaskError> {
    let outcome = run.execute()?;
    let lines: Option<Vec<String>> = markers
        .iter()
        .map(|marker| {
            outcome
                .log
                .lines()
                .find(|line| line.contains(marker))
                .map(str::to_string)
        })
        .collect();
    println!(
        "xtask: qemu {:<48} {} ({:.1} s)",
        run.name,
        if outcome.status == Some(0) && lines.is_some() {
            "ok"
        } else {
            "FAILED"
        },
        outcome.elapsed.as_secs_f64()
    );
    match (outcome.status, lines) {
        (Some(0), Some(lines)) => Ok(lines),
        (status, _) => Err(XtaskError::Check(format!(
            "benchmark run {} failed (exit status {status:?}) {}",
            run.name,
            qemu::log_hint(&outcome.log_path)
        ))),
    }
}

fn icount() -> Vec<String> {
    vec!["-icount".into(), "shift=0,sleep=off".into()]
}

/// The erratum call against a null SMC, for 1, 2, 4 and 8 CPUs, the others in WFI or busy at EL1.
fn erratum_benchmarks() -> Result<Vec<ErratumRow>, XtaskError> {
    let monitor = firmware::build(MONITOR_BENCHMARK)?;
    let payload = firmware::build(PAYLOAD)?;
    let mut rows = Vec::new();
    // (payload scenario number, its name, what the other CPUs do)
    for (scenario, name, others) in [
        (6u64, "benchmark", "wfi"),
        (9, "benchmark-busy", "busy-el1"),
    ] {
        for cpus in [1usize, 2, 4, 8] {
            let run = Run {
                machine: qemu::Machine::Virt,
                name: format!("bench-{name}-smp{cpus}"),
                monitor: monitor.clone(),
                payload: Some(payload.clone()),
                parameters: vec![scenario, 0, ITERATIONS],
                cpu: qemu::cpu_argument(AFFECTED)?,
                cpus,
                extra: icount(),
                timeout: Duration::from_secs(60),
            };
            let lines = run_for_lines(&run, &[&format!("payload: {name}: cpus=")])?;
            let fields = fields(&lines[0]);
            let null_total = field(&fields, "null_smc_total")?;
            let erratum_total = field(&fields, "erratum_total")?;
            rows.push(ErratumRow {
                cpus: cpus as u64,
                others: others.to_string(),
                iterations: ITERATIONS,
                null_smc_total: null_total,
                erratum_total,
                null_smc_per_call: null_total as f64 / ITERATIONS as f64,
                erratum_per_call: erratum_total as f64 / ITERATIONS as f64,
            });
        }
    }
    Ok(rows)
}

/// One donation configuration.
struct Donation {
    placement: Placement,
    pages_per_call: u64,
    block_aligned: bool,
}

/// Donating 64 MiB: every placement, in pages at 1, 16 and 512 pages per call, and in 2 MiB blocks.
fn donation_benchmarks() -> Result<Vec<DonationRow>, XtaskError> {
    let monitor = firmware::build(MONITOR_BENCHMARK)?;
    let hypervisor = firmware::build(HYPERVISOR_BENCHMARK)?;
    let per_page = firmware::build(HYPERVISOR_CALL_PER_PAGE)?;
    let host = firmware::build(HOST)?;
    let mut configurations = Vec::new();
    for placement in [
        Placement::NotNeeded,
        Placement::PerHypercall,
        Placement::PerPage,
    ] {
        for pages_per_call in [1, 16, 512] {
            // One page per call: one firmware call per page either way.
            if placement == Placement::PerPage && pages_per_call == 1 {
                continue;
            }
            configurations.push(Donation {
                placement,
                pages_per_call,
                block_aligned: false,
            });
        }
        configurations.push(Donation {
            placement,
            pages_per_call: 512,
            block_aligned: true,
        });
    }
    let mut rows = Vec::new();
    for configuration in configurations {
        let image: &PathBuf = if configuration.placement == Placement::PerPage {
            &per_page
        } else {
            &hypervisor
        };
        let cpu = if configuration.placement == Placement::NotNeeded {
            UNAFFECTED
        } else {
            AFFECTED
        };
        let granule = if configuration.block_aligned {
            "block"
        } else {
            "page"
        };
        let run = Run {
            machine: qemu::Machine::Virt,
            name: format!(
                "bench-donate-{}-{granule}-{}",
                configuration.placement.name(),
                configuration.pages_per_call
            ),
            monitor: monitor.clone(),
            payload: Some(image.clone()),
            parameters: vec![
                3,
                DONATION_MEBIBYTES,
                0,
                configuration.pages_per_call,
                u64::from(configuration.block_aligned),
            ],
            cpu: qemu::cpu_argument(cpu)?,
            cpus: DONATION_CPUS,
            extra: [
                icount(),
                vec![
                    "-device".into(),
                    format!(
                        "loader,file={},addr={HOST_ADDRESS:#x},force-raw=on",
                        host.display()
                    ),
                ],
            ]
            .concat(),
            timeout: Duration::from_secs(120),
        };
        let lines = run_for_lines(&run, &["host: bench: cpus=", FIRMWARE_CALLS])?;
        let fields = fields(&lines[0]);
        let firmware_calls = firmware_calls(&lines[1])?;
        let pages = field(&fields, "pages")?;
        let donate = field(&fields, "donate_total")?;
        let reclaim = field(&fields, "reclaim_total")?;
        rows.push(DonationRow {
            placement: configuration.placement.name().to_string(),
            granule: granule.to_string(),
            pages_per_call: configuration.pages_per_call,
            cpu: cpu.to_string(),
            cpus: field(&fields, "cpus")?,
            pages,
            calls: field(&fields, "calls")?,
            firmware_calls_whole_run: firmware_calls,
            donate_total: donate,
            reclaim_total: reclaim,
            donate_per_page: donate as f64 / pages as f64,
            reclaim_per_page: reclaim as f64 / pages as f64,
        });
    }
    Ok(rows)
}

/// What the hypervisor prints at `VM_FREE`, before the number of erratum calls its ownership changes
/// made (the benchmark's donations and `VM_CREATE`'s metadata donation).
const FIRMWARE_CALLS: &str = "erratum 4193714 firmware calls so far:";

fn firmware_calls(line: &str) -> Result<u64, XtaskError> {
    line.split_once(FIRMWARE_CALLS)
        .and_then(|(_, rest)| {
            let digits: String = rest
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .ok_or_else(|| XtaskError::Unexpected(format!("no firmware call count in {line:?}")))
}

/// Every number in `value`, named by its path (array elements by their identifying fields).
fn flatten(value: &Value, path: &str, out: &mut Vec<(String, f64)>) {
    match value {
        Value::Number(number) => {
            if let Some(number) = number.as_f64() {
                out.push((path.to_string(), number));
            }
        }
        Value::Object(map) => {
            for (key, value) in map {
                flatten(value, &format!("{path}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                flatten(item, &format!("{path}[{}]", identity(item, index)), out);
            }
        }
        _ => {}
    }
}

/// What names an array element: its string fields and its configuration numbers.
fn identity(item: &Value, index: usize) -> String {
    let Value::Object(map) = item else {
        return index.to_string();
    };
    let parts: Vec<String> = map
        .iter()
        .filter(|(key, value)| {
            value.is_string() || matches!(key.as_str(), "cpus" | "pages_per_call")
        })
        .map(|(key, value)| match value {
            Value::String(text) => format!("{key}={text}"),
            other => format!("{key}={other}"),
        })
        .collect();
    if parts.is_empty() {
        index.to_string()
    } else {
        parts.join(",")
    }
}

/// [`compare`] on the records.
fn compare_results(baseline: &Results, current: &Results) -> Result<Vec<String>, XtaskError> {
    let value = |results: &Results| {
        serde_json::to_value(results).map_err(|error| {
            XtaskError::Unexpected(format!("cannot encode a benchmark record: {error}"))
        })
    };
    Ok(compare(&value(baseline)?, &value(current)?))
}

/// The figures of `current` that differ from `baseline` by more than [`TOLERANCE`], or that only
/// one of them has.
pub fn compare(baseline: &Value, current: &Value) -> Vec<String> {
    let (mut old, mut new) = (Vec::new(), Vec::new());
    // Only the measurements: the target verdicts follow from them.
    for key in ["erratum_call", "donation", "table_memory"] {
        flatten(&baseline[key], key, &mut old);
        flatten(&current[key], key, &mut new);
    }
    let mut changes = Vec::new();
    for (name, before) in &old {
        match new.iter().find(|(other, _)| other == name) {
            None => changes.push(format!("{name}: missing from this run (baseline {before})")),
            Some((_, after)) => {
                let scale = before.abs().max(f64::MIN_POSITIVE);
                let change = (after - before) / scale;
                if change.abs() > TOLERANCE {
                    changes.push(format!(
                        "{name}: {before} -> {after} ({:+.2}%)",
                        change * 100.0
                    ));
                }
            }
        }
    }
    for (name, after) in &new {
        if !old.iter().any(|(other, _)| other == name) {
            changes.push(format!(
                "{name}: new in this run ({after}), not in the baseline"
            ));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compare_reports_changes_beyond_one_percent() {
        let baseline = json!({
            "erratum_call": [{"cpus": 1, "others": "wfi", "erratum_total": 1000}],
            "donation": [],
            "table_memory": {"page": {"host_kib_per_gib": 2048}},
        });
        // (current erratum_total, current table figure, number of changes expected)
        let cases: &[(u64, u64, usize)] = &[
            (1000, 2048, 0),
            (1010, 2048, 0),
            (1011, 2048, 1),
            (989, 2048, 1),
            (1000, 4096, 1),
            (2000, 0, 2),
        ];
        for &(erratum, table, expected) in cases {
            let current = json!({
                "erratum_call": [{"cpus": 1, "others": "wfi", "erratum_total": erratum}],
                "donation": [],
                "table_memory": {"page": {"host_kib_per_gib": table}},
            });
            let changes = compare(&baseline, &current);
            assert_eq!(changes.len(), expected, "{erratum} {table}: {changes:?}");
        }
    }

    #[test]
    fn compare_reports_missing_and_new_rows() {
        let baseline = json!({"erratum_call": [{"cpus": 1, "others": "wfi", "erratum_total": 5}]});
        let current = json!({"erratum_call": [{"cpus": 2, "others": "wfi", "erratum_total": 5}]});
        let changes = compare(&baseline, &current);
        // Both figures of the row (its `cpus` and its total), once missing and once new.
        assert_eq!(changes.len(), 4, "{changes:?}");
        assert!(
            changes[..2].iter().all(|change| change.contains("missing")),
            "{changes:?}"
        );
        assert!(
            changes[2..].iter().all(|change| change.contains("new")),
            "{changes:?}"
        );
    }

    #[test]
    fn fields_are_read_from_a_log_line() {
        let line = "payload: benchmark: cpus=4 others=wfi null_smc_total=70000 (loop body)";
        let parsed = fields(line);
        assert_eq!(field(&parsed, "cpus").ok(), Some(4));
        assert_eq!(field(&parsed, "null_smc_total").ok(), Some(70000));
        assert!(field(&parsed, "others").is_err());
        let hypervisor =
            "hyp: protected VM 1 freed; erratum 4193714 firmware calls so far: 33; aborts";
        assert_eq!(firmware_calls(hypervisor).ok(), Some(33));
        assert!(firmware_calls("hyp: protected VM 1 freed").is_err());
    }

    const BASELINE: &str = include_str!("../../bench/baseline.json");

    #[test]
    fn the_committed_records_read_and_compare_with_themselves() {
        let path = Path::new("bench/baseline.json");
        let baseline: Results = records::parse(path, BASELINE).expect("the committed baseline");
        assert_eq!(baseline.erratum_call.len(), 8);
        assert_eq!(compare_results(&baseline, &baseline).ok(), Some(Vec::new()));
        let results = include_str!("../../bench/results.json");
        assert!(records::parse::<Results>(Path::new("bench/results.json"), results).is_ok());
        let linux = include_str!("../../bench/linux-pkvm.json");
        assert!(records::parse::<records::LinuxRecord>(Path::new("x"), linux).is_ok());
    }

    #[test]
    fn a_baseline_with_a_mistyped_key_is_refused_naming_the_file_and_the_key() {
        let path = Path::new("bench/baseline.json");
        // (the committed baseline edited, what the message must name)
        let cases = [
            (
                BASELINE.replacen("\"erratum_total\"", "\"erratum_totl\"", 1),
                "erratum_totl",
            ),
            (
                BASELINE.replacen("\"host_kib_per_gib\"", "\"host_kib_per_gb\"", 1),
                "host_kib_per_gb",
            ),
            (
                BASELINE.replacen("\"cpus\": 4", "\"cpus\": \"4\"", 1),
                "invalid type",
            ),
        ];
        for (text, named) in &cases {
            assert_ne!(text, BASELINE, "the edit must change the baseline");
            let error = records::parse::<Results>(path, text).expect_err(named);
            let message = error.to_string();
            assert!(matches!(error, XtaskError::Unexpected(_)), "{message}");
            assert!(message.starts_with("bench/baseline.json: "), "{message}");
            assert!(message.contains(named), "{message}");
        }
    }
}
