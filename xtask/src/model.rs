//! `cargo xtask model`: runs the model checker's scenarios (issue 5), prints the table and writes each
//! counterexample as a numbered list and an SVG timeline under `target/model/`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clap::Args;
use model_checker::explorer::{Limits, Verdict, Visited};
use model_checker::mutants::{MUTANTS, Suite};
use model_checker::{Part, Scenario, catalogue, run, svg};

use crate::error::XtaskError;
use crate::setup;

/// Options of `cargo xtask model`.
#[derive(Args)]
pub struct ModelArgs {
    /// Only the scenarios whose name contains this text.
    #[arg(long)]
    only: Option<String>,
    /// Print every counterexample's steps (by default only the first of each part).
    #[arg(long)]
    all_traces: bool,
    /// Run the seeded bugs instead (model_checker::mutants): build and test once per mutant,
    /// report which test caught each (1–4 minutes per mutant on 2 shared cores).
    #[arg(long)]
    mutants: bool,
    /// Run the loom exploration of the monitor's atomic memory instead.
    #[arg(long)]
    loom: bool,
    /// Remember visited states by two 64-bit hashes instead of their exact encoding (less memory).
    #[arg(long)]
    fingerprints: bool,
    /// Internal: already running the optimised build.
    #[arg(long, hide = true)]
    optimised: bool,
}

/// Runs the scenarios; fails when a verdict is not the expected one.
pub fn model(args: &ModelArgs) -> Result<(), XtaskError> {
    if args.mutants {
        return mutants(args.only.as_deref());
    }
    if args.loom {
        return loom_and_codegen();
    }
    if cfg!(debug_assertions) && !args.optimised {
        // State-space search wants an optimised build; xtask itself is built without.
        let mut forwarded: Vec<String> =
            ["run", "--quiet", "--release", "--package", "xtask", "--"]
                .map(String::from)
                .to_vec();
        forwarded.extend(["model", "--optimised"].map(String::from));
        if let Some(only) = &args.only {
            // One argument, so that a filter starting with `-` is not taken for an option.
            forwarded.push(format!("--only={only}"));
        }
        if args.all_traces {
            forwarded.push("--all-traces".into());
        }
        if args.fingerprints {
            forwarded.push("--fingerprints".into());
        }
        let forwarded: Vec<&str> = forwarded.iter().map(String::as_str).collect();
        return setup::run("cargo", &forwarded);
    }
    let output_dir = target_dir().join("model");
    fs::create_dir_all(&output_dir)
        .map_err(|error| XtaskError::file("create", &output_dir, error))?;
    let scenarios: Vec<Scenario> = catalogue()
        .into_iter()
        .filter(|scenario| {
            args.only
                .as_ref()
                .is_none_or(|only| scenario.name.contains(only.as_str()))
        })
        .collect();
    let limits = Limits {
        progress: true,
        visited: if args.fingerprints {
            Visited::Fingerprints
        } else {
            Visited::Exact
        },
        ..Limits::default()
    };
    let mut rows = Vec::new();
    let mut traces = Vec::new();
    let mut unexpected = Vec::new();
    let mut shown_parts = Vec::new();
    for scenario in &scenarios {
        eprintln!("xtask: model {} ...", scenario.name);
        let result = run(scenario, limits)
            .map_err(|error| XtaskError::Check(format!("{}: {error}", scenario.name)))?;
        let exploration = &result.exploration;
        let mut svg_path = String::from("-");
        let mut broken = Vec::new();
        let counterexamples = exploration
            .counterexample
            .iter()
            .chain(&exploration.further);
        for (index, counterexample) in counterexamples.enumerate() {
            let property = counterexample
                .message
                .split_whitespace()
                .next()
                .unwrap_or("property")
                .to_string();
            let stem = if index == 0 {
                scenario.name.clone()
            } else {
                format!("{}-{}", scenario.name, property.to_lowercase())
            };
            let path = output_dir.join(format!("{stem}.svg"));
            let title = format!("{stem} ({})", scenario.description);
            fs::write(&path, svg::timeline(&title, counterexample))
                .map_err(|error| XtaskError::file("write", &path, error))?;
            let text_path = output_dir.join(format!("{stem}.txt"));
            fs::write(&text_path, counterexample.numbered())
                .map_err(|error| XtaskError::file("write", &text_path, error))?;
            if index == 0 {
                svg_path = path.display().to_string();
            }
            if exploration.verdict == Verdict::SafetyViolation {
                broken.push(property);
            }
            // Every trace of part (d) (the findings), the first of each other part.
            let show = args.all_traces
                || scenario.part == Part::Reference
                || !shown_parts.contains(&scenario.part);
            if show {
                shown_parts.push(scenario.part);
                traces.push(format!(
                    "Counterexample of {stem} ({}):\n{}   SVG timeline: {}\n",
                    scenario.description,
                    counterexample.numbered(),
                    path.display()
                ));
            }
        }
        if !result.as_expected {
            unexpected.push(format!(
                "{}: expected {}, got {}",
                scenario.name,
                scenario.expected.label(),
                exploration.verdict.label()
            ));
        }
        rows.push([
            format!("({})", scenario.part.letter()),
            scenario.name.clone(),
            format!(
                "{}{}{}",
                exploration.verdict.label(),
                if broken.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", broken.join(", "))
                },
                if result.as_expected {
                    ""
                } else {
                    " (UNEXPECTED)"
                }
            ),
            exploration.states.to_string(),
            format!("{:.2} s", exploration.elapsed.as_secs_f64()),
            format!("{:.0}", exploration.rate()),
            format!(
                "{:.1} MiB",
                exploration.memory_bytes as f64 / (1024.0 * 1024.0)
            ),
            match exploration.visited {
                Some(Visited::Exact) => "exact",
                Some(Visited::Fingerprints) => "2 hashes",
                None => "-",
            }
            .to_string(),
            svg_path,
        ]);
    }
    print_table(
        &[
            "part",
            "scenario",
            "verdict",
            "states",
            "time",
            "states/s",
            "memory",
            "visited",
            "counterexample (SVG)",
        ],
        &rows,
    );
    println!();
    for trace in &traces {
        println!("{trace}");
    }
    if unexpected.is_empty() {
        println!("xtask: every verdict is the expected one");
        Ok(())
    } else {
        Err(XtaskError::Check(format!(
            "unexpected verdicts:\n  {}",
            unexpected.join("\n  ")
        )))
    }
}

fn print_table<const COLUMNS: usize>(header: &[&str; COLUMNS], rows: &[[String; COLUMNS]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(header.to_vec());
    println!(
        "|{}|",
        widths
            .iter()
            .map(|width| "-".repeat(width + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// The workspace's target directory (`CARGO_TARGET_DIR` or `<workspace>/target`).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map_or_else(|| PathBuf::from("target"), |root| root.join("target")),
    }
}

/// Runs one test suite in release, with `mutant` seeded if given; returns whether it passed and
/// its output.
fn run_suite(suite: Suite, mutant: Option<&str>) -> Result<(bool, String), XtaskError> {
    let mut flags = Vec::new();
    if suite == Suite::Loom {
        flags.push("--cfg loom".to_string());
    }
    if let Some(name) = mutant {
        flags.push(format!("--cfg mutant=\"{name}\""));
    }
    // A target directory per set of flags, so the normal build is never rebuilt.
    let directory = match (suite, mutant.is_some()) {
        (Suite::Loom, false) => "loom",
        (Suite::Loom, true) => "mutants-loom",
        (Suite::Model, _) => "mutants",
    };
    let mut command = Command::new("cargo");
    command.args(["test", "--release"]);
    match suite {
        Suite::Model => command.args(["--package", "model-checker"]),
        Suite::Loom => command.args([
            "--package",
            "rendezvous",
            "--test",
            "loom",
            "--",
            "--nocapture",
            "--test-threads",
            "1",
        ]),
    };
    command
        .env("RUSTFLAGS", flags.join(" "))
        .env("CARGO_TARGET_DIR", target_dir().join(directory));
    let output = command
        .output()
        .map_err(|error| XtaskError::spawn("cargo", error))?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok((output.status.success(), text))
}

/// The tests a run reports as failed.
fn failed_tests(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|line| line.strip_prefix("test "))
        .filter_map(|line| line.strip_suffix(" ... FAILED"))
        .map(str::to_string)
        .collect()
}

/// `cargo xtask model --mutants`: every seeded bug, one at a time.
fn mutants(only: Option<&str>) -> Result<(), XtaskError> {
    let mut rows = Vec::new();
    let mut escaped = Vec::new();
    let selected: Vec<_> = MUTANTS
        .iter()
        .filter(|mutant| only.is_none_or(|only| mutant.name.contains(only)))
        .collect();
    let start = Instant::now();
    for mutant in &selected {
        eprintln!("xtask: mutant {} ...", mutant.name);
        let begun = Instant::now();
        let (passed, output) = run_suite(mutant.suite, Some(mutant.name))?;
        let failed = failed_tests(&output);
        let caught = !passed && !failed.is_empty();
        if !passed && failed.is_empty() {
            return Err(XtaskError::Check(format!(
                "mutant {} does not build or the tests did not run:\n{output}",
                mutant.name
            )));
        }
        if !caught {
            escaped.push(mutant.name);
        }
        rows.push([
            mutant.name.to_string(),
            mutant.krate.to_string(),
            mutant.breaks.to_string(),
            if caught {
                failed.join(", ")
            } else {
                "NOT CAUGHT".to_string()
            },
            format!("{:.0} s", begun.elapsed().as_secs_f64()),
        ]);
    }
    print_table(
        &["mutant", "crate", "what it breaks", "caught by", "time"],
        &rows,
    );
    println!(
        "\nmutation score: {} of {} seeded bugs caught ({:.0} s in all)",
        selected.len() - escaped.len(),
        selected.len(),
        start.elapsed().as_secs_f64()
    );
    if escaped.is_empty() {
        Ok(())
    } else {
        Err(XtaskError::Check(format!(
            "mutants not caught: {}",
            escaped.join(", ")
        )))
    }
}

/// The loom exploration of the monitor's atomic memory, then the check that the compiled memory
/// code is the instruction sequence its argument assumes (`cargo xtask model --loom`, and part of
/// `cargo xtask test`).
pub fn loom_and_codegen() -> Result<(), XtaskError> {
    eprintln!("xtask: loom exploration of AtomicRendezvousMemory (C11 model) ...");
    let (passed, output) = run_suite(Suite::Loom, None)?;
    let results: Vec<&str> = output
        .lines()
        .filter(|line| line.starts_with("test ") || line.contains("loom:"))
        .collect();
    println!("{}", results.join("\n"));
    if !passed {
        return Err(XtaskError::Check(format!(
            "the loom exploration failed:\n{output}"
        )));
    }
    codegen()
}

/// What each probe must compile to, in order (alternatives separated by `|`): the Arm mapping the
/// rendezvous crate's *Orderings* argument assumes.
const EXPECTED_CODE: &[(&str, &[&str])] = &[
    (
        "probe_increment",
        &["ldaxr|ldaddal", "stlxr|ldaddal", "dmb\tish"],
    ),
    ("probe_store_record", &["stlrb", "dmb\tish"]),
    ("probe_load_counter", &["ldar|ldapr"]),
    ("probe_store_serviced", &["stlr"]),
];

const PROBE: &str = r#"#![no_std]
use rendezvous::{AtomicRendezvousMemory, CpuIndex, CpuRecord, RendezvousMemory};
#[unsafe(no_mangle)]
pub fn probe_increment(memory: &AtomicRendezvousMemory<'_>) -> u64 {
    memory.increment_request_counter()
}
#[unsafe(no_mangle)]
pub fn probe_store_record(memory: &AtomicRendezvousMemory<'_>, record: CpuRecord) {
    memory.store_cpu_record(CpuIndex::new(0), record)
}
#[unsafe(no_mangle)]
pub fn probe_load_counter(memory: &AtomicRendezvousMemory<'_>) -> u64 {
    memory.load_request_counter()
}
#[unsafe(no_mangle)]
pub fn probe_store_serviced(memory: &AtomicRendezvousMemory<'_>, value: u64) {
    memory.store_serviced(CpuIndex::new(0), value)
}
"#;

/// Compiles `rendezvous` and a probe for the firmware's target and checks the instructions of
/// each memory access (the orderings' Arm mapping: LDAR/STLR, the exclusive pair, DMB ISH).
fn codegen() -> Result<(), XtaskError> {
    let directory = target_dir().join("codegen");
    fs::create_dir_all(&directory)
        .map_err(|error| XtaskError::file("create", &directory, error))?;
    let library = directory.join("librendezvous.rlib");
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|root| root.join("crates/rendezvous/src/lib.rs"))
        .ok_or_else(|| XtaskError::Unexpected("xtask's manifest directory has no parent".into()))?;
    let common = [
        "--edition",
        "2024",
        "-C",
        "opt-level=2",
        "--target",
        "aarch64-unknown-none-softfloat",
    ];
    let rustc = |args: &[&str]| -> Result<(), XtaskError> {
        let status = Command::new("rustc")
            .args(common)
            .args(args)
            .status()
            .map_err(|error| XtaskError::spawn("rustc", error))?;
        if status.success() {
            Ok(())
        } else {
            Err(XtaskError::failed(format!("rustc {args:?}"), status))
        }
    };
    let library_path = library.display().to_string();
    rustc(&[
        "--crate-type",
        "rlib",
        "--crate-name",
        "rendezvous",
        &source.display().to_string(),
        "-o",
        &library_path,
    ])?;
    let probe = directory.join("probe.rs");
    fs::write(&probe, PROBE).map_err(|error| XtaskError::file("write", &probe, error))?;
    let assembly = directory.join("probe.s");
    rustc(&[
        "--crate-type",
        "lib",
        "--emit",
        "asm",
        "--extern",
        &format!("rendezvous={library_path}"),
        &probe.display().to_string(),
        "-o",
        &assembly.display().to_string(),
    ])?;
    let text = fs::read_to_string(&assembly)
        .map_err(|error| XtaskError::file("read", &assembly, error))?;
    let mut failures = Vec::new();
    for (function, expected) in EXPECTED_CODE {
        let body: Vec<&str> = text
            .split(&format!("\n{function}:"))
            .nth(1)
            .unwrap_or("")
            .lines()
            .take_while(|line| !line.contains(".cfi_endproc") && !line.trim().starts_with(".size"))
            .map(str::trim)
            .filter(|line| !line.starts_with('.') && !line.is_empty())
            .collect();
        let mut position = 0;
        let mut found = Vec::new();
        for wanted in *expected {
            let alternatives: Vec<&str> = wanted.split('|').collect();
            let hit = body.iter().enumerate().skip(position).find(|(_, line)| {
                alternatives
                    .iter()
                    .any(|alternative| line.starts_with(alternative))
            });
            match hit {
                Some((index, line)) => {
                    found.push(line.to_string());
                    position = index + 1;
                }
                None => failures.push(format!(
                    "{function}: expected {wanted} (after {found:?}) in {body:?}"
                )),
            }
        }
        println!("xtask: codegen {function}: {}", found.join("; "));
    }
    if failures.is_empty() {
        println!("xtask: the rendezvous memory compiles to the instructions its argument assumes");
        Ok(())
    } else {
        Err(XtaskError::Check(format!(
            "unexpected code:\n  {}",
            failures.join("\n  ")
        )))
    }
}
