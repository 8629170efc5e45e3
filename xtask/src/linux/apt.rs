//! A private apt for Debian's arm64 archive: its own sources list, lists, cache and (empty) dpkg
//! status under `.cache/apt/`, passed to `apt-get`/`apt-cache` as `-o` options. The machine's apt
//! configuration of sources, architectures and lists is neither read for packages nor changed: no
//! `dpkg --add-architecture`, no system-wide `apt-get update`.
//!
//! Signatures are checked against Debian's archive keyring (`signed-by=` on every source line), so a
//! tampered list or package is refused exactly as the system's apt would refuse it.

use super::process::{output, path_text, run_quietly, version_newer};
use crate::error::XtaskError;
use std::fs;
use std::path::{Path, PathBuf};

/// Debian's archive (overridable with `PKVM_DEBIAN_MIRROR` for a local mirror).
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// The keyring that signs Debian's archive (package `debian-archive-keyring`).
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// A Debian suite the private apt knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// Debian 12: the 6.1 cloud kernel and busybox of the first Linux boot tests.
    Bookworm,
    /// Debian 13 backports: Linux 7.3.x.
    TrixieBackports,
    /// Debian unstable: Linux 7.2.x.
    Sid,
}

impl Suite {
    /// Every suite, in the order of the sources list.
    pub const ALL: [Self; 3] = [Self::Bookworm, Self::TrixieBackports, Self::Sid];

    /// The suite's name in the archive.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Bookworm => "bookworm",
            Self::TrixieBackports => "trixie-backports",
            Self::Sid => "sid",
        }
    }
}

/// One version of a package in one suite, as `apt-cache madison` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Available {
    /// The Debian version (`7.3.4-1~bpo13+1`).
    pub version: String,
    /// The suite it comes from.
    pub suite: Suite,
}

/// The private apt rooted at a directory (`.cache/apt`).
pub struct PrivateApt {
    root: PathBuf,
}

impl PrivateApt {
    /// Prepares the directory tree and the sources list; touches nothing outside `root`.
    pub fn new(root: &Path) -> Result<Self, XtaskError> {
        if !Path::new(KEYRING).is_file() {
            return Err(XtaskError::MissingTool {
                tool: "Debian's archive keyring",
                install: format!(
                    "apt-get install debian-archive-keyring (it provides {KEYRING}, which verifies the arm64 packages)"
                ),
            });
        }
        for dir in ["lists/partial", "cache/archives/partial", "etc"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(|error| XtaskError::file("create", &path, error))?;
        }
        let mirror = std::env::var("PKVM_DEBIAN_MIRROR").unwrap_or_else(|_| DEFAULT_MIRROR.into());
        let sources: String = Suite::ALL
            .iter()
            .map(|suite| {
                format!(
                    "deb [arch=arm64 signed-by={KEYRING}] {mirror} {} main\n",
                    suite.name()
                )
            })
            .collect();
        let write = |name: &str, contents: &str| {
            let path = root.join(name);
            fs::write(&path, contents).map_err(|error| XtaskError::file("write", &path, error))
        };
        write("etc/sources.list", &sources)?;
        // An empty dpkg status: apt must not weigh what this machine has installed.
        write("status", "")?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The `-o` options that make `apt-get`/`apt-cache` use only this tree, for arm64 only.
    fn options(&self) -> Result<Vec<String>, XtaskError> {
        let path = |name: &str| path_text(&self.root.join(name));
        let settings = [
            ("Dir::Etc::SourceList", path("etc/sources.list")?),
            ("Dir::Etc::SourceParts", "/dev/null".to_string()),
            ("Dir::State::Lists", path("lists")?),
            ("Dir::State::status", path("status")?),
            ("Dir::Cache", path("cache")?),
            ("APT::Architecture", "arm64".to_string()),
            ("APT::Architectures", "arm64".to_string()),
            // Only the package lists: no translations, no AppStream metadata.
            ("Acquire::Languages", "none".to_string()),
            (
                "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled",
                "false".to_string(),
            ),
            // Downloads go to a directory the unprivileged `_apt` user may not be able to write.
            ("APT::Sandbox::User", "root".to_string()),
        ];
        Ok(settings
            .into_iter()
            .flat_map(|(key, value)| ["-o".to_string(), format!("{key}={value}")])
            .collect())
    }

    /// Whether the lists have been fetched (`..._Packages`, possibly kept compressed as `.lz4`/`.gz`).
    fn has_lists(&self) -> bool {
        fs::read_dir(self.root.join("lists")).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|entry| entry.file_name().to_string_lossy().contains("_Packages"))
        })
    }

    /// `apt-get update` of the private lists (about 20 MB for the three suites).
    pub fn update(&self) -> Result<(), XtaskError> {
        eprintln!("xtask: fetching Debian's arm64 package lists into a private apt directory");
        let mut args = self.options()?;
        args.push("update".into());
        run_quietly("apt-get", &args, None).map_err(|error| {
            XtaskError::Unexpected(format!("cannot reach Debian's arm64 archive: {error}"))
        })
    }

    /// Fetches the lists when there are none yet.
    pub fn ensure_lists(&self) -> Result<(), XtaskError> {
        if self.has_lists() {
            Ok(())
        } else {
            self.update()
        }
    }

    /// Every version of `package` the lists offer.
    pub fn versions(&self, package: &str) -> Result<Vec<Available>, XtaskError> {
        let mut args = self.options()?;
        args.extend(["madison".to_string(), package.to_string()]);
        Ok(parse_madison(&output("apt-cache", &args)?))
    }

    /// The newest version of `package` in any of `suites`, refreshing the lists once when none is
    /// found (they may predate the package).
    pub fn newest(&self, package: &str, suites: &[Suite]) -> Result<Available, XtaskError> {
        self.ensure_lists()?;
        let mut found = self.newest_listed(package, suites)?;
        if found.is_none() {
            self.update()?;
            found = self.newest_listed(package, suites)?;
        }
        found.ok_or_else(|| {
            let names: Vec<&str> = suites.iter().map(|suite| suite.name()).collect();
            XtaskError::Unexpected(format!(
                "Debian's arm64 archive has no {package} in {}",
                names.join(", ")
            ))
        })
    }

    fn newest_listed(
        &self,
        package: &str,
        suites: &[Suite],
    ) -> Result<Option<Available>, XtaskError> {
        let mut newest: Option<Available> = None;
        for available in self.versions(package)? {
            if !suites.contains(&available.suite) {
                continue;
            }
            let better = match &newest {
                None => true,
                Some(current) => version_newer(&available.version, &current.version)?,
            };
            if better {
                newest = Some(available);
            }
        }
        Ok(newest)
    }

    /// Field `field` of `package` at `version` (`apt-cache show PACKAGE=VERSION`).
    pub fn field(&self, package: &str, version: &str, field: &str) -> Result<String, XtaskError> {
        let mut args = self.options()?;
        args.extend(["show".to_string(), format!("{package}={version}")]);
        let text = output("apt-cache", &args)?;
        control_field(&text, field).ok_or_else(|| {
            XtaskError::Unexpected(format!("{package} {version} has no {field} field"))
        })
    }

    /// Downloads `package` at `version` into `dir` and returns the `.deb`.
    pub fn download(
        &self,
        package: &str,
        version: &str,
        dir: &Path,
    ) -> Result<PathBuf, XtaskError> {
        fs::create_dir_all(dir).map_err(|error| XtaskError::file("create", dir, error))?;
        let file_name = deb_file_name(package, version);
        let deb = dir.join(&file_name);
        if deb.is_file() {
            return Ok(deb);
        }
        eprintln!("xtask: downloading {package} {version} (arm64) from Debian's archive");
        let mut args = self.options()?;
        args.extend(["download".to_string(), format!("{package}={version}")]);
        run_quietly("apt-get", &args, Some(dir))?;
        if deb.is_file() {
            Ok(deb)
        } else {
            Err(XtaskError::Unexpected(format!(
                "apt-get download wrote no {file_name} in {}",
                dir.display()
            )))
        }
    }
}

/// The name `apt-get download` gives a package file: the epoch's colon is escaped as `%3a`.
fn deb_file_name(package: &str, version: &str) -> String {
    format!("{package}_{}_arm64.deb", version.replace(':', "%3a"))
}

/// The first value of `field` in a control paragraph (`Field: value`).
pub fn control_field(text: &str, field: &str) -> Option<String> {
    let prefix = format!("{field}:");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().to_string())
}

/// Reads `apt-cache madison` lines: `package | version | URI suite/component arch Packages`.
fn parse_madison(text: &str) -> Vec<Available> {
    text.lines()
        .filter_map(|line| {
            let mut columns = line.split('|').map(str::trim);
            let (_, version, source) = (columns.next()?, columns.next()?, columns.next()?);
            let suite_name = source.split_whitespace().nth(1)?.split('/').next()?;
            let suite = Suite::ALL
                .into_iter()
                .find(|suite| suite.name() == suite_name)?;
            Some(Available {
                version: version.to_string(),
                suite,
            })
        })
        .collect()
}

/// The package names in a `Depends` field (alternatives and version constraints dropped).
pub fn dependency_names(depends: &str) -> Vec<String> {
    depends
        .split([',', '|'])
        .filter_map(|item| item.split_whitespace().next())
        .map(|name| name.split(':').next().unwrap_or(name).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn madison_lines_name_version_and_suite() {
        let text = "linux-image-arm64 | 7.3.4-1~bpo13+1 | http://deb.debian.org/debian trixie-backports/main arm64 Packages\n\
                    linux-image-arm64 |   7.2.13-1 | http://deb.debian.org/debian sid/main arm64 Packages\n\
                    linux-image-arm64 |  6.1.176-1 | http://deb.debian.org/debian bookworm/main arm64 Packages\n\
                    linux-image-arm64 |  1.0-1 | http://example.org/debian experimental/main arm64 Packages\n";
        let expected = vec![
            Available {
                version: "7.3.4-1~bpo13+1".into(),
                suite: Suite::TrixieBackports,
            },
            Available {
                version: "7.2.13-1".into(),
                suite: Suite::Sid,
            },
            Available {
                version: "6.1.176-1".into(),
                suite: Suite::Bookworm,
            },
        ];
        assert_eq!(parse_madison(text), expected);
    }

    #[test]
    fn dependencies_and_fields() {
        let depends = "dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, \
                       linux-base-7.3.4+deb13-arm64 (= 7.3.4-1~bpo13+1), linux-binary-7.3.4+deb13-arm64:arm64";
        assert_eq!(
            dependency_names(depends),
            [
                "dracut",
                "initramfs-tools",
                "linux-initramfs-tool",
                "linux-base-7.3.4+deb13-arm64",
                "linux-binary-7.3.4+deb13-arm64"
            ]
        );
        let paragraph = "Package: busybox-static\nVersion: 1:1.35.0-4\nDepends: libc6\n";
        assert_eq!(
            control_field(paragraph, "Version").as_deref(),
            Some("1:1.35.0-4")
        );
        assert_eq!(control_field(paragraph, "Size"), None);
        assert_eq!(
            deb_file_name("busybox-static", "1:1.35.0-4"),
            "busybox-static_1%3a1.35.0-4_arm64.deb"
        );
    }
}
