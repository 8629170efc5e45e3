//! Why an xtask command failed, as one enum whose variant names the kind of failure: the command
//! line prints it, and a caller can tell a missing tool from a failed check.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

/// Why an xtask command failed.
#[derive(Debug)]
pub enum XtaskError {
    /// A program could not be started.
    Spawn {
        /// The program.
        program: String,
        /// What the operating system said.
        source: io::Error,
    },
    /// A program ran and reported failure.
    Failed {
        /// The command line.
        command: String,
        /// How it ended.
        status: ExitStatus,
        /// What it printed on its error stream, when that was captured (else empty).
        output: String,
    },
    /// A file or directory could not be read, written, created or removed.
    File {
        /// What was being done ("read", "write", "create", ...).
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// A tool the command needs is missing and this user cannot install it.
    MissingTool {
        /// The missing tool.
        tool: &'static str,
        /// The command that installs it.
        install: String,
    },
    /// A program's output, a log or a data file does not hold what was expected (not UTF-8, bad
    /// JSON, a missing field or line).
    Unexpected(String),
    /// A test, a QEMU scenario or a benchmark comparison did not show what it requires.
    Check(String),
    /// The command line asks for a combination that cannot run.
    Usage(String),
}

impl XtaskError {
    /// A failure to start `program`.
    pub fn spawn(program: impl Into<String>, source: io::Error) -> Self {
        Self::Spawn {
            program: program.into(),
            source,
        }
    }

    /// A failed file operation on `path`.
    pub fn file(action: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        Self::File {
            action,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A command that ran and failed.
    pub fn failed(command: impl Into<String>, status: ExitStatus) -> Self {
        Self::Failed {
            command: command.into(),
            status,
            output: String::new(),
        }
    }

    /// A command that ran and failed, with what it printed on its error stream.
    pub fn failed_with_output(
        command: impl Into<String>,
        status: ExitStatus,
        output: impl Into<String>,
    ) -> Self {
        Self::Failed {
            command: command.into(),
            status,
            output: output.into(),
        }
    }
}

impl fmt::Display for XtaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Spawn { program, source } => write!(f, "cannot run {program}: {source}"),
            Self::Failed {
                command,
                status,
                output,
            } => {
                write!(f, "`{command}` failed ({status})")?;
                if output.is_empty() {
                    Ok(())
                } else {
                    write!(f, ":\n{output}")
                }
            }
            Self::File {
                action,
                path,
                source,
            } => write!(f, "cannot {action} {}: {source}", path.display()),
            Self::MissingTool { tool, install } => {
                write!(f, "{tool} is missing; install it with:\n    {install}")
            }
            Self::Unexpected(what) | Self::Check(what) | Self::Usage(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for XtaskError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Spawn { source, .. } | Self::File { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_program_the_path_and_the_cause() {
        let missing = io::Error::new(io::ErrorKind::NotFound, "not found");
        assert_eq!(
            XtaskError::spawn("qemu-system-aarch64", missing).to_string(),
            "cannot run qemu-system-aarch64: not found"
        );
        let denied = io::Error::new(io::ErrorKind::PermissionDenied, "denied");
        let error = XtaskError::file("write", "/tmp/x", denied);
        assert_eq!(error.to_string(), "cannot write /tmp/x: denied");
        assert!(std::error::Error::source(&error).is_some());
    }
}
