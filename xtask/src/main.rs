//! `cargo xtask`: the project's one front end. It builds the images, runs them in QEMU, runs the tests and
//! the benchmarks. It only orchestrates: nothing the firmware needs lives here.

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) => test::run(&args),
        Command::Demo => demo(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Until the hypervisor exists the demo runs what exists so far.
fn demo() -> Result<(), String> {
    setup::ensure_tools()?;
    println!(
        "pkvm-rs demo: the hypervisor (issue 4) is not built yet; running the host tests of the"
    );
    println!("ownership core instead.");
    test::run_host_tests(&[])
}
