//! `cargo xtask bench`: benchmarks, which print figures (they are not pass/fail tests).

use crate::setup;
use clap::Args;

/// Options of `cargo xtask bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Run the host (criterion) benchmarks of the ownership core.
    #[arg(long)]
    host: bool,
}

/// Runs the benchmarks asked for.
pub fn run(args: &BenchArgs) -> Result<(), String> {
    if !args.host {
        return Err(
            "only the host benchmarks exist so far (`cargo xtask bench --host`); the deterministic QEMU \
             benchmarks are tracked in the benchmarks issue"
                .to_owned(),
        );
    }
    setup::run(
        "cargo",
        &["bench", "--package", "mem-protect", "--bench", "donation"],
    )
}
