//! Installs what the project needs on a fresh machine, or says exactly how to.

use crate::error::XtaskError;
use std::process::Command;

/// Makes sure the firmware target and QEMU are present.
pub fn ensure_tools() -> Result<(), XtaskError> {
    ensure_target()?;
    ensure_qemu()
}

/// Adds the firmware's Rust target through rustup when it is missing.
pub fn ensure_target() -> Result<(), XtaskError> {
    crate::firmware::ensure_target()
}

/// Installs `qemu-system-arm` (which provides `qemu-system-aarch64`) when running as root; otherwise
/// prints the command to run and fails.
pub fn ensure_qemu() -> Result<(), XtaskError> {
    if Command::new("qemu-system-aarch64")
        .arg("--version")
        .output()
        .is_ok()
    {
        return Ok(());
    }
    let install = "apt-get install -y --no-install-recommends qemu-system-arm";
    if !is_root() {
        return Err(XtaskError::MissingTool {
            tool: "qemu-system-aarch64",
            install: format!("sudo apt-get update && sudo {install}"),
        });
    }
    eprintln!("xtask: installing qemu-system-arm with apt-get");
    run("apt-get", &["update"])?;
    let status = Command::new("apt-get")
        .args([
            "install",
            "-y",
            "--no-install-recommends",
            "qemu-system-arm",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|error| XtaskError::spawn("apt-get", error))?;
    if !status.success() {
        return Err(XtaskError::failed(install, status));
    }
    Ok(())
}

fn is_root() -> bool {
    output("id", &["-u"]).is_ok_and(|uid| uid.trim() == "0")
}

/// Runs a command, inheriting the terminal, and fails with its name when it does not succeed.
pub fn run(program: &str, args: &[&str]) -> Result<(), XtaskError> {
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|error| XtaskError::spawn(program, error))?;
    if status.success() {
        Ok(())
    } else {
        Err(XtaskError::failed(
            format!("{program} {}", args.join(" ")),
            status,
        ))
    }
}

fn output(program: &str, args: &[&str]) -> Result<String, XtaskError> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|error| XtaskError::spawn(program, error))?;
    if !output.status.success() {
        return Err(XtaskError::failed(
            format!("{program} {}", args.join(" ")),
            output.status,
        ));
    }
    String::from_utf8(output.stdout)
        .map_err(|error| XtaskError::Unexpected(format!("{program} printed non-UTF-8: {error}")))
}

/// Adds the Rust target `target` through rustup when it is missing (the firmware's soft-float target,
/// the Linux-side programs' musl target).
pub fn ensure_rust_target(target: &str) -> Result<(), XtaskError> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|error| XtaskError::spawn("rustup", error))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == target)
    {
        return Ok(());
    }
    run("rustup", &["target", "add", target])
}
