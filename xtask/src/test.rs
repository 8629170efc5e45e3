//! `cargo xtask test`: every test the project has, in the order that fails fastest.

use crate::error::XtaskError;
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
pub fn run(args: &TestArgs) -> Result<(), XtaskError> {
    setup::ensure_tools()?;
    if !args.no_lint {
        setup::run("cargo", &["fmt", "--all", "--", "--check"])?;
        setup::run(
            "cargo",
            &["clippy", "--all-targets", "--", "-D", "warnings"],
        )?;
        lint_firmware()?;
        lint_linux_side()?;
    }
    run_host_tests(&[])?;
    crate::model::loom_and_codegen()?;
    for machine in crate::qemu::Machine::ALL {
        crate::monitor_tests::run_qemu_tests(machine)?;
    }
    crate::monitor_tests::benchmark()?;
    crate::demo::run_qemu_tests()?;
    crate::run::linux_boot_test()?;
    crate::linux_demo::run_tests()?;
    println!("xtask: all tests passed");
    Ok(())
}

/// Crates whose tests print what they covered (case counts, the refused transitions): their output is
/// shown even when they pass.
const REPORTING_CRATES: &[&str] = &["mem-protect"];

/// The host tests of every library crate and of the tooling (the workspace's default members).
pub fn run_host_tests(extra: &[&str]) -> Result<(), XtaskError> {
    let packages = host_packages()?;
    let mut quiet = vec!["test", "--release"];
    for name in packages
        .iter()
        .filter(|name| !REPORTING_CRATES.contains(&name.as_str()))
    {
        quiet.extend(["--package", name.as_str()]);
    }
    quiet.extend_from_slice(extra);
    setup::run("cargo", &quiet)?;
    let mut reporting = vec!["test", "--release"];
    for name in REPORTING_CRATES {
        reporting.extend(["--package", name]);
    }
    reporting.extend_from_slice(extra);
    reporting.extend(["--", "--show-output"]);
    setup::run("cargo", &reporting)
}

/// Clippy over the bare-metal crates (the workspace members that are not default members), for the
/// firmware target.
fn lint_firmware() -> Result<(), XtaskError> {
    crate::firmware::ensure_target()?;
    let mut args = vec![
        "clippy",
        "--release",
        "--target",
        crate::firmware::FIRMWARE_TARGET,
    ];
    let packages = workspace_packages(Members::FirmwareOnly)?;
    for name in &packages {
        args.extend(["--package", name.as_str()]);
    }
    args.extend(["--", "-D", "warnings"]);
    setup::run("cargo", &args)
}

/// Clippy over the Linux-side programs (`linux/pvm`), for their musl target.
fn lint_linux_side() -> Result<(), XtaskError> {
    let mut command = crate::linux::pvm::cargo("clippy")?;
    let status = command
        .args(["--", "-D", "warnings"])
        .status()
        .map_err(|error| XtaskError::spawn("cargo clippy", error))?;
    if status.success() {
        Ok(())
    } else {
        Err(XtaskError::failed(
            "cargo clippy (the Linux-side programs)",
            status,
        ))
    }
}

/// Which workspace members [`workspace_packages`] lists.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Members {
    /// The default members: host-testable libraries and the tooling.
    Host,
    /// The other members: bare-metal binaries and their support crates.
    FirmwareOnly,
}

/// The names of the workspace's default members (the host-testable crates), from `cargo metadata`.
fn host_packages() -> Result<Vec<String>, XtaskError> {
    workspace_packages(Members::Host)
}

/// Package names of one kind of workspace member, from `cargo metadata`.
fn workspace_packages(members: Members) -> Result<Vec<String>, XtaskError> {
    let output = std::process::Command::new("cargo")
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .map_err(|error| XtaskError::spawn("cargo metadata", error))?;
    if !output.status.success() {
        return Err(XtaskError::failed("cargo metadata", output.status));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|error| {
        XtaskError::Unexpected(format!("cargo metadata printed bad JSON: {error}"))
    })?;
    let ids = |key: &str| -> Result<Vec<String>, XtaskError> {
        Ok(metadata[key]
            .as_array()
            .ok_or_else(|| XtaskError::Unexpected(format!("cargo metadata has no {key}")))?
            .iter()
            .filter_map(serde_json::Value::as_str)
            .map(str::to_owned)
            .collect())
    };
    let default_ids = ids("workspace_default_members")?;
    let member_ids = ids("workspace_members")?;
    let wanted = |id: &str| {
        let is_default = default_ids.iter().any(|candidate| candidate == id);
        member_ids.iter().any(|candidate| candidate == id)
            && (is_default == (members == Members::Host))
    };
    let packages = metadata["packages"]
        .as_array()
        .ok_or_else(|| XtaskError::Unexpected("cargo metadata has no packages".into()))?;
    Ok(packages
        .iter()
        .filter(|package| package["id"].as_str().is_some_and(wanted))
        // The Linux-side programs are built and linted for their own target (`lint_linux_side`).
        .filter(|package| package["name"].as_str() != Some(crate::linux::pvm::PACKAGE))
        .filter_map(|package| package["name"].as_str().map(str::to_owned))
        .collect())
}
