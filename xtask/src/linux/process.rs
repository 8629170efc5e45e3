//! Running the Debian tools (`apt-get`, `apt-cache`, `dpkg-deb`, `dpkg`) with their output captured,
//! so that a failure's error carries what the tool said.

use std::path::Path;
use std::process::Command;

/// Runs `program` with `args` (in `dir` when given); on failure the error carries its standard error.
pub fn run_quietly(program: &str, args: &[String], dir: Option<&Path>) -> Result<(), String> {
    output_in(program, args, dir).map(drop)
}

/// Runs `program` with `args` and returns its standard output.
pub fn output(program: &str, args: &[String]) -> Result<String, String> {
    output_in(program, args, None)
}

fn output_in(program: &str, args: &[String], dir: Option<&Path>) -> Result<String, String> {
    let mut command = Command::new(program);
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let result = command
        .output()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if !result.status.success() {
        return Err(format!(
            "`{program} {}` failed ({}):\n{}",
            args.join(" "),
            result.status,
            String::from_utf8_lossy(&result.stderr).trim()
        ));
    }
    String::from_utf8(result.stdout)
        .map_err(|error| format!("{program} printed non-UTF-8: {error}"))
}

/// Whether Debian version `left` is newer than `right` (`dpkg --compare-versions`, which knows
/// epochs, `~` and the rest of Debian's ordering).
pub fn version_newer(left: &str, right: &str) -> Result<bool, String> {
    let status = Command::new("dpkg")
        .args(["--compare-versions", left, "gt", right])
        .status()
        .map_err(|error| format!("cannot run dpkg: {error}"))?;
    // Exit 0: true, 1: false; anything else is dpkg refusing a malformed version.
    match status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(format!(
            "dpkg cannot compare versions {left:?} and {right:?} ({status})"
        )),
    }
}

/// Converts a path to the UTF-8 text a command line needs.
pub fn path_text(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))
}
