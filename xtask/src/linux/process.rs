//! Running the Debian tools (`apt-get`, `apt-cache`, `dpkg-deb`, `dpkg`) with their output captured,
//! so that a failure's error carries what the tool said.

use crate::error::XtaskError;
use std::path::Path;
use std::process::Command;

/// Runs `program` with `args` (in `dir` when given); on failure the error carries its standard error.
pub fn run_quietly(program: &str, args: &[String], dir: Option<&Path>) -> Result<(), XtaskError> {
    output_in(program, args, dir).map(drop)
}

/// Runs `program` with `args` and returns its standard output.
pub fn output(program: &str, args: &[String]) -> Result<String, XtaskError> {
    output_in(program, args, None)
}

fn output_in(program: &str, args: &[String], dir: Option<&Path>) -> Result<String, XtaskError> {
    let mut command = Command::new(program);
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let result = command
        .output()
        .map_err(|error| XtaskError::spawn(program, error))?;
    if !result.status.success() {
        return Err(XtaskError::failed_with_output(
            format!("{program} {}", args.join(" ")),
            result.status,
            String::from_utf8_lossy(&result.stderr).trim(),
        ));
    }
    String::from_utf8(result.stdout)
        .map_err(|error| XtaskError::Unexpected(format!("{program} printed non-UTF-8: {error}")))
}

/// Whether Debian version `left` is newer than `right` (`dpkg --compare-versions`, which knows
/// epochs, `~` and the rest of Debian's ordering).
pub fn version_newer(left: &str, right: &str) -> Result<bool, XtaskError> {
    let status = Command::new("dpkg")
        .args(["--compare-versions", left, "gt", right])
        .status()
        .map_err(|error| XtaskError::spawn("dpkg", error))?;
    // Exit 0: true, 1: false; anything else is dpkg refusing a malformed version.
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(XtaskError::Unexpected(format!(
            "dpkg cannot compare versions {left:?} and {right:?} ({status})"
        ))),
    }
}

/// Converts a path to the UTF-8 text a command line needs.
pub fn path_text(path: &Path) -> Result<String, XtaskError> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| XtaskError::Unexpected(format!("{} is not UTF-8", path.display())))
}
