//! Debian's arm64 kernels, fetched through the private apt ([`super::apt`]) and cached as a raw
//! `Image` with its `config` under `.cache/linux/<kind>/`.
//!
//! Two kernels:
//! - [`KernelKind::Bookworm`]: Debian 12's cloud kernel (Linux 6.1), which the first boot tests
//!   use. Its package `linux-image-<abi>-cloud-arm64` holds `boot/vmlinuz-*` and `boot/config-*`.
//! - [`KernelKind::Pkvm`]: the newest Linux ≥ 7.1 of sid or trixie-backports, built with the
//!   erratum 4193714 workaround (`CONFIG_ARM64_ERRATUM_4193714=y`, checked) and KVM built in: stock
//!   pKVM. Since 6.19 Debian splits the kernel: `linux-image-<abi>` only depends on
//!   `linux-binary-<abi>` (`usr/lib/modules/<abi>/vmlinuz`, an uncompressed `Image`) and
//!   `linux-base-<abi>` (`config`, `System.map`, device trees). Modules are not fetched: KVM is
//!   built in and the initramfs holds only busybox and our own binaries.
//!
//! The version is chosen here rather than by apt's candidate: backports are pinned low (100), so
//! apt would prefer sid's 7.2 over backports' 7.3.

use super::apt::{Available, PrivateApt, Suite, dependency_names};
use super::process::{path_text, run_quietly};
use crate::error::XtaskError;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Which kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// Debian 12's 6.1 cloud kernel.
    Bookworm,
    /// The newest Linux ≥ 7.1 with the erratum 4193714 workaround, for stock pKVM.
    Pkvm,
}

/// The lowest Linux version whose pKVM makes the erratum call (Linux 7.1, BRIEF §3).
pub const PKVM_MINIMUM_VERSION: (u32, u32) = (7, 1);

impl KernelKind {
    /// The cache subdirectory.
    fn directory(self) -> &'static str {
        match self {
            Self::Bookworm => "bookworm",
            Self::Pkvm => "pkvm",
        }
    }

    /// The metapackage that depends on the current kernel of its flavour.
    fn metapackage(self) -> &'static str {
        match self {
            Self::Bookworm => "linux-image-cloud-arm64",
            Self::Pkvm => "linux-image-arm64",
        }
    }

    fn suites(self) -> &'static [Suite] {
        match self {
            Self::Bookworm => &[Suite::Bookworm],
            Self::Pkvm => &[Suite::Sid, Suite::TrixieBackports],
        }
    }

    /// Lines the kernel's `config` must contain.
    fn required_config(self) -> &'static [&'static str] {
        match self {
            Self::Bookworm => &[],
            Self::Pkvm => &["CONFIG_ARM64_ERRATUM_4193714=y", "CONFIG_KVM=y"],
        }
    }
}

/// A cached kernel.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// The uncompressed arm64 `Image`.
    pub image: PathBuf,
    /// The kernel's build configuration.
    pub config: PathBuf,
    /// The package the `Image` came from (`linux-binary-7.3.4+deb13-arm64`).
    pub package: String,
    /// The package version (`7.3.4-1~bpo13+1`).
    pub version: String,
    /// The suite it came from.
    pub suite: String,
}

/// Fetches (once) and returns the kernel of `kind`.
pub fn kernel(kind: KernelKind) -> Result<Kernel, XtaskError> {
    let dir = super::cache_dir().join(kind.directory());
    let image = dir.join("Image");
    let config = dir.join("config");
    let stamp = dir.join("Image.package");
    if let (true, true, Ok(recorded)) = (
        image.is_file(),
        config.is_file(),
        fs::read_to_string(&stamp),
    ) {
        let fields: Vec<&str> = recorded.split_whitespace().collect();
        if let [package, version, suite] = fields[..] {
            return Ok(Kernel {
                image,
                config,
                package: package.into(),
                version: version.into(),
                suite: suite.into(),
            });
        }
    }
    let apt = PrivateApt::new(&super::apt_dir())?;
    let Available { version, suite } = apt.newest(kind.metapackage(), kind.suites())?;
    if kind == KernelKind::Pkvm {
        let found = upstream_version(&version).ok_or_else(|| {
            XtaskError::Unexpected(format!("cannot read a Linux version from {version}"))
        })?;
        if found < PKVM_MINIMUM_VERSION {
            return Err(XtaskError::Unexpected(format!(
                "the newest {} in {} is {version}; stock pKVM with the erratum call needs Linux {}.{} or later",
                kind.metapackage(),
                suite.name(),
                PKVM_MINIMUM_VERSION.0,
                PKVM_MINIMUM_VERSION.1
            )));
        }
    }
    let image_package = versioned_dependency(&apt, kind.metapackage(), &version, "linux-image-")?;
    // Linux ≥ 6.19 in Debian: the image package is empty and names the binary and base packages.
    let parts = dependency_names(&apt.field(&image_package, &version, "Depends")?);
    let split: Vec<String> = parts
        .into_iter()
        .filter(|name| name.starts_with("linux-binary-") || name.starts_with("linux-base-"))
        .collect();
    let packages = if split.is_empty() {
        vec![image_package.clone()]
    } else {
        split
    };
    let debs = super::cache_dir().join("debs");
    let root = dir.join("root");
    if root.exists() {
        fs::remove_dir_all(&root).map_err(|error| XtaskError::file("clear", &root, error))?;
    }
    fs::create_dir_all(&root).map_err(|error| XtaskError::file("create", &root, error))?;
    for package in &packages {
        let deb = apt.download(package, &version, &debs)?;
        extract(&deb, &root)?;
    }
    let vmlinuz = find_file(&root, "vmlinuz")?;
    let found_config = find_file(&root, "config")?;
    let config_text = fs::read_to_string(&found_config)
        .map_err(|error| XtaskError::file("read", &found_config, error))?;
    for line in kind.required_config() {
        if !config_text
            .lines()
            .any(|candidate| candidate.trim() == *line)
        {
            return Err(XtaskError::Unexpected(format!(
                "{image_package} {version} ({}) is not built with {line}: it cannot run stock pKVM \
                 with the erratum 4193714 firmware call",
                suite.name()
            )));
        }
    }
    fs::create_dir_all(&dir).map_err(|error| XtaskError::file("create", &dir, error))?;
    write_image(&vmlinuz, &image)?;
    fs::write(&config, &config_text).map_err(|error| XtaskError::file("write", &config, error))?;
    fs::remove_dir_all(&root).map_err(|error| XtaskError::file("remove", &root, error))?;
    let package = packages
        .iter()
        .find(|name| name.starts_with("linux-binary-"))
        .unwrap_or(&image_package)
        .clone();
    fs::write(&stamp, format!("{package} {version} {}\n", suite.name()))
        .map_err(|error| XtaskError::file("write", &stamp, error))?;
    Ok(Kernel {
        image,
        config,
        package,
        version,
        suite: suite.name().into(),
    })
}

/// The dependency of `package` (at `version`) whose name starts with `prefix` and ends in `-arm64`.
fn versioned_dependency(
    apt: &PrivateApt,
    package: &str,
    version: &str,
    prefix: &str,
) -> Result<String, XtaskError> {
    let depends = apt.field(package, version, "Depends")?;
    dependency_names(&depends)
        .into_iter()
        .find(|name| name.starts_with(prefix) && name.ends_with("-arm64"))
        .ok_or_else(|| {
            XtaskError::Unexpected(format!(
                "{package} {version} depends on no {prefix}*-arm64: {depends}"
            ))
        })
}

/// Linux's major and minor version from a Debian package version (`1:7.3.4-1~bpo13+1` → (7, 3)).
pub fn upstream_version(version: &str) -> Option<(u32, u32)> {
    let without_epoch = version.rsplit_once(':').map_or(version, |(_, rest)| rest);
    let mut numbers = without_epoch
        .split(|character: char| !character.is_ascii_digit())
        .map(str::parse::<u32>);
    Some((numbers.next()?.ok()?, numbers.next()?.ok()?))
}

pub(super) fn extract(deb: &Path, root: &Path) -> Result<(), XtaskError> {
    run_quietly(
        "dpkg-deb",
        &["-x".to_string(), path_text(deb)?, path_text(root)?],
        None,
    )
}

/// The kernel's `name` file: `usr/lib/modules/*/name` (Debian ≥ 6.19) or `boot/name-*` (before).
fn find_file(root: &Path, name: &str) -> Result<PathBuf, XtaskError> {
    let modules = root.join("usr/lib/modules");
    if let Ok(entries) = fs::read_dir(&modules) {
        for entry in entries.flatten() {
            let candidate = entry.path().join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let boot = root.join("boot");
    if let Ok(entries) = fs::read_dir(&boot) {
        let prefix = format!("{name}-");
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                return Ok(entry.path());
            }
        }
    }
    Err(XtaskError::Unexpected(format!(
        "the kernel packages hold no {name} (looked in {} and {})",
        modules.display(),
        boot.display()
    )))
}

/// Writes the raw arm64 `Image` from Debian's `vmlinuz`: Debian's arm64 packages ship the raw
/// `Image` (an EFI-stub PE file, bootable as is); a gzip-compressed one is decompressed. Either way
/// the arm64 image header's magic (`ARM\x64` at offset 56) is checked.
fn write_image(vmlinuz: &Path, image: &Path) -> Result<(), XtaskError> {
    let contents = fs::read(vmlinuz).map_err(|error| XtaskError::file("read", vmlinuz, error))?;
    let raw = if contents.starts_with(&[0x1f, 0x8b]) {
        let decompressed = Command::new("gzip")
            .args(["-dc", &path_text(vmlinuz)?])
            .output()
            .map_err(|error| XtaskError::spawn("gzip", error))?;
        if !decompressed.status.success() {
            return Err(XtaskError::failed(
                format!("gzip -dc {}", vmlinuz.display()),
                decompressed.status,
            ));
        }
        decompressed.stdout
    } else {
        contents
    };
    if raw.get(56..60) != Some(b"ARM\x64") {
        return Err(XtaskError::Unexpected(format!(
            "{} is neither an arm64 Image nor a gzip-compressed one (an EFI zboot image is not handled)",
            vmlinuz.display()
        )));
    }
    fs::write(image, &raw).map_err(|error| XtaskError::file("write", image, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_versions_from_debian_versions() {
        let table = [
            ("7.3.4-1~bpo13+1", Some((7, 3))),
            ("7.2.13-1", Some((7, 2))),
            ("6.1.176-1", Some((6, 1))),
            ("1:7.10.1-2", Some((7, 10))),
            ("garbage", None),
        ];
        for (version, expected) in table {
            assert_eq!(upstream_version(version), expected, "{version}");
        }
        assert!(upstream_version("7.1.3-1").is_some_and(|found| found >= PKVM_MINIMUM_VERSION));
        assert!(upstream_version("7.0.13-1").is_some_and(|found| found < PKVM_MINIMUM_VERSION));
    }
}
