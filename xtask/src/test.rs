//! `cargo xtask test`: every test the project has, in the order that fails fastest.

use crate::setup;
use clap::Args;

/// Options of `cargo xtask test`.
#[derive(Args)]
pub struct TestArgs {
    /// Skip the formatting and lint checks.
    #[arg(long)]
    no_lint: bool,
}

/// Runs the whole suite.
pub fn run(args: &TestArgs) -> Result<(), String> {
    setup::ensure_tools()?;
    if !args.no_lint {
        setup::run("cargo", &["fmt", "--all", "--", "--check"])?;
        setup::run(
            "cargo",
            &["clippy", "--all-targets", "--", "-D", "warnings"],
        )?;
    }
    run_host_tests(&[])?;
    println!("xtask: all tests passed");
    Ok(())
}

/// The host tests of every library crate and of the tooling.
pub fn run_host_tests(extra: &[&str]) -> Result<(), String> {
    let mut args = vec!["test", "--release"];
    args.extend_from_slice(extra);
    setup::run("cargo", &args)
}
