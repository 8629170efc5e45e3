//! `cargo xtask`: the project's one front end. It builds the images, runs them in QEMU, runs the tests and
//! the benchmarks. It only orchestrates: nothing the firmware needs lives here.

mod bench;
mod codegen;
mod demo;
mod error;
mod firmware;
mod linux;
mod linux_demo;
mod model;
mod monitor_tests;
mod qemu;
mod run;
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
    /// Run the main job (monitor, protected hypervisor, host, protected guest) and print a summary.
    Demo(demo::DemoArgs),
    /// Only the hypervisor's QEMU scenarios (part of `test`).
    TestHypervisor,
    /// Run the attack suite (a hostile host going around the hypercalls) and print every verdict.
    Attacks,
    /// Only the DMA scenario (part of `test-hypervisor`): QEMU's edu device behind the SMMUv3.
    TestDma,
    /// Run the benchmarks and print their figures.
    Bench(bench::BenchArgs),
    /// Fetch and cache Debian's arm64 kernel and busybox, build the hotplug initramfs, print the paths.
    FetchLinux,
    /// Boot an arm64 Linux kernel Image on the monitor (or, with --hypervisor, under the hypervisor).
    Run(run::RunArgs),
    /// Only the Linux tests (part of `test`): Debian's 6.1 kernel with CPU hotplug loops, and stock
    /// Linux pKVM (protected VMs, refusal without the fix, no calls on a fixed CPU, hotplug, two VMs).
    TestLinux,
    /// Only the SMMU boot test (part of `test-linux`): Linux under the hypervisor uses virtio-rng-pci
    /// behind the hypervisor's SMMUv3.
    TestLinuxIommu,
    /// Build the firmware images (monitor, test payload) as raw binaries under target/images.
    Build(monitor_tests::BuildArgs),
    /// Boot the monitor in QEMU with the EL2 test payload running one scenario.
    RunPayload(monitor_tests::RunArgs),
    /// Only the monitor's QEMU scenarios and (on `virt`) its benchmark (part of `test`).
    TestMonitor(monitor_tests::TestArgs),
    /// Explore the model checker's scenarios (issue 5): verdict table, counterexamples as SVG.
    Model(model::ModelArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) => test::run(&args),
        Command::Demo(args) => demo::demo(&args),
        Command::TestHypervisor => demo::run_qemu_tests(),
        Command::Attacks => demo::attacks(),
        Command::TestDma => demo::run_dma_scenario(true),
        Command::Bench(args) => bench::run(&args),
        Command::FetchLinux => linux::fetch_linux(),
        Command::Run(args) => run::run(&args),
        Command::TestLinux => run::linux_boot_test().and_then(|()| linux_demo::run_tests()),
        Command::TestLinuxIommu => run::linux_iommu_test(),
        Command::Model(args) => model::model(&args),
        Command::Build(args) => monitor_tests::build(&args),
        Command::RunPayload(args) => monitor_tests::run_payload(&args),
        Command::TestMonitor(args) => monitor_tests::test(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error}");
            ExitCode::FAILURE
        }
    }
}
