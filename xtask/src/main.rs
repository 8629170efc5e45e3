//! `cargo xtask`: the project's one front end. It builds the images, runs them in QEMU, runs the tests and
//! the benchmarks. It only orchestrates: nothing the firmware needs lives here.

mod bench;
mod firmware;
mod linux;
mod monitor_tests;
mod qemu;
mod setup;
mod test;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run, test and measure pkvm-rs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every test: formatting, lints, host tests, QEMU scenarios.
    Test(test::TestArgs),
    /// Run the main job and print a summary.
    Demo,
    /// Run the benchmarks and print their figures.
    Bench(bench::BenchArgs),
    /// Fetch and cache Debian's arm64 kernel and busybox, build the hotplug initramfs, print the paths.
    FetchLinux,
    /// Build the firmware images (monitor, test payload) as raw binaries under target/images.
    Build(monitor_tests::BuildArgs),
    /// Boot the monitor in QEMU with the EL2 test payload running one scenario.
    RunPayload(monitor_tests::RunArgs),
    /// Only the monitor's QEMU scenarios and its benchmark (part of `test`).
    TestMonitor,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) => test::run(&args),
        Command::Demo => demo(),
        Command::Bench(args) => bench::run(&args),
        Command::FetchLinux => linux::fetch_linux(),
        Command::Build(args) => monitor_tests::build(&args),
        Command::RunPayload(args) => monitor_tests::run_payload(&args),
        Command::TestMonitor => {
            monitor_tests::run_qemu_tests().and_then(|()| monitor_tests::benchmark().map(drop))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Until the hypervisor exists the demo runs what exists so far: the monitor's QEMU scenarios.
fn demo() -> Result<(), String> {
    setup::ensure_tools()?;
    println!("pkvm-rs demo: the hypervisor is not built yet; running the monitor's QEMU scenarios");
    monitor_tests::run_qemu_tests()
}
