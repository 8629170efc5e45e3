//! Builds the Linux-side programs (`linux/pvm`: `pvm-launch`, `sme-stress`) as static
//! `aarch64-unknown-linux-musl` executables for the initramfs.
//!
//! No cross C toolchain is needed: Rust's musl target ships its C runtime
//! (`-C link-self-contained=yes`), `rust-lld` links, `+crt-static` makes the result static. These
//! flags are given to this one build through `CARGO_ENCODED_RUSTFLAGS` and a target directory of
//! its own (`target/linux`), not through a global cargo configuration that the firmware builds
//! would also pick up.

use super::initramfs::ExtraFile;
use crate::error::XtaskError;
use std::path::PathBuf;
use std::process::Command;

/// The Rust target of the Linux-side programs.
pub const LINUX_TARGET: &str = "aarch64-unknown-linux-musl";
/// The package.
pub const PACKAGE: &str = "pvm";
/// Its binaries, installed as `/bin/<name>` in the initramfs.
pub const BINARIES: [&str; 2] = ["pvm-launch", "sme-stress"];
/// `rustc` flags of the static build, separated by the `0x1f` unit separator of
/// `CARGO_ENCODED_RUSTFLAGS`.
const RUSTFLAGS: [&str; 4] = [
    "-Clinker=rust-lld",
    "-Ctarget-feature=+crt-static",
    "-Clink-self-contained=yes",
    "-Cstrip=symbols",
];

/// Adds the musl target through rustup when it is missing.
pub fn ensure_target() -> Result<(), XtaskError> {
    crate::setup::ensure_rust_target(LINUX_TARGET)
}

/// A cargo command for the Linux-side crate (`build` or `clippy`), with the static-build flags
/// and its own target directory.
pub fn cargo(subcommand: &str) -> Result<Command, XtaskError> {
    ensure_target()?;
    let root = super::workspace_root();
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(&root)
        .args([
            subcommand,
            "--release",
            "--target",
            LINUX_TARGET,
            "-p",
            PACKAGE,
        ])
        .arg("--target-dir")
        .arg(root.join("target").join("linux"))
        .env("CARGO_ENCODED_RUSTFLAGS", RUSTFLAGS.join("\u{1f}"))
        // No debug information: the binaries travel in an uncompressed initramfs.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false");
    Ok(command)
}

/// Builds the programs and returns them as initramfs entries (`bin/<name>`).
pub fn build() -> Result<Vec<ExtraFile>, XtaskError> {
    let mut command = cargo("build")?;
    let status = command
        .arg("--quiet")
        .status()
        .map_err(|error| XtaskError::spawn("cargo", error))?;
    if !status.success() {
        return Err(XtaskError::failed(
            format!("cargo build of {PACKAGE} for {LINUX_TARGET}"),
            status,
        ));
    }
    let directory: PathBuf = super::workspace_root()
        .join("target")
        .join("linux")
        .join(LINUX_TARGET)
        .join("release");
    BINARIES
        .iter()
        .map(|name| {
            let path = directory.join(name);
            let contents =
                std::fs::read(&path).map_err(|error| XtaskError::file("read", &path, error))?;
            Ok(ExtraFile {
                path: format!("bin/{name}"),
                contents,
            })
        })
        .collect()
}
