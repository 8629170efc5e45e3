//! `pvm-launch`: one protected VM on stock Linux pKVM, start to teardown (see `pvm::launcher`).
//!
//! Options: `--memory-mib N` (16), `--cpu K` (pin to CPU K; default: where it starts), `--seed S`,
//! `--probe-stride N` (probe every N-th page; 1), `--mark-cpu K` (take CPU K offline between the
//! run and the teardown), `--huge-pages 1` (back guest memory with
//! transparent huge pages; default 0: 4 KiB pages); the tag of its lines is `pvm<cpu>`.
//! Prints `pvm<cpu>: RESULT PASS` or `pvm<cpu>: RESULT FAIL ...` and exits 0 or 1.

use pvm::args::Options;
use pvm::launcher::{self, Launch};
use std::process::ExitCode;

fn run() -> Result<(String, Vec<String>), String> {
    let options = Options::parse(std::env::args().skip(1))?;
    options.only(&[
        "memory-mib",
        "cpu",
        "seed",
        "probe-stride",
        "mark-cpu",
        "huge-pages",
    ])?;
    let cpu = options.number("cpu", u64::MAX)?;
    if cpu != u64::MAX {
        pvm::cpu::pin_to(usize::try_from(cpu).map_err(|error| error.to_string())?)?;
    }
    let tag = format!("pvm{}", pvm::cpu::current().unwrap_or(0));
    let launch = Launch {
        memory_mib: options.number("memory-mib", 16)?,
        seed: options.number("seed", 0x5EC2_E7C0_FFEE_0000)?,
        probe_stride: options.number("probe-stride", 1)?,
        mark_cpu: options.number("mark-cpu", u64::MAX)?,
        huge_pages: options.number("huge-pages", 0)? != 0,
    };
    println!(
        "{tag}: launching a protected VM of {} MiB on CPU {}",
        launch.memory_mib,
        pvm::cpu::current().map_or("?".to_string(), |cpu| cpu.to_string())
    );
    let report = launcher::launch(&launch, &tag).map_err(|error| format!("{tag}: {error}"))?;
    println!(
        "{tag}: summary: pages={} probed={} faulted={} readable={} secret_after_teardown={}",
        report.status.pattern_pages,
        report.probed,
        report.faulted,
        report.readable,
        report.secret_words_after_teardown
    );
    Ok((tag, launcher::problems(&launch, &report)))
}

fn main() -> ExitCode {
    match run() {
        Ok((tag, problems)) if problems.is_empty() => {
            println!("{tag}: RESULT PASS");
            ExitCode::SUCCESS
        }
        Ok((tag, problems)) => {
            println!("{tag}: RESULT FAIL {}", problems.join("; "));
            ExitCode::FAILURE
        }
        Err(error) => {
            println!("pvm: RESULT FAIL {error}");
            ExitCode::FAILURE
        }
    }
}
