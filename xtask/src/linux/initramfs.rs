//! The initramfs of the Linux boots: Debian's static busybox (bookworm's `busybox-static`, through
//! the private apt), links for the applets the scripts call, `/init`, and any of our own binaries.

use super::apt::{PrivateApt, Suite};
use super::cpio::CpioWriter;
use super::process::{path_text, run_quietly};
use crate::error::XtaskError;
use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::PathBuf;

/// The Debian package with a statically linked busybox.
const BUSYBOX_PACKAGE: &str = "busybox-static";

/// Applets linked into `/bin` of the initramfs, so scripts can call them by name.
const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "mount", "umount", "cat", "echo", "printf", "poweroff", "reboot", "sleep", "seq",
    "dmesg", "grep", "ls", "uname", "mkdir", "nproc", "test", "[", "true", "false", "tr", "wc",
    "head", "tail", "ulimit", "kill", "wait", "taskset", "sed", "cut", "insmod", "od",
];

/// Downloads (once) Debian's static arm64 busybox and returns its path.
pub fn ensure_busybox() -> Result<PathBuf, XtaskError> {
    let dir = super::cache_dir();
    let root = dir.join("busybox-root");
    let busybox = root.join("bin").join("busybox");
    if busybox.is_file() {
        return Ok(busybox);
    }
    let apt = PrivateApt::new(&super::apt_dir())?;
    let available = apt.newest(BUSYBOX_PACKAGE, &[Suite::Bookworm])?;
    let deb = apt.download(BUSYBOX_PACKAGE, &available.version, &dir.join("debs"))?;
    if root.exists() {
        fs::remove_dir_all(&root).map_err(|error| XtaskError::file("clear", &root, error))?;
    }
    fs::create_dir_all(&root).map_err(|error| XtaskError::file("create", &root, error))?;
    run_quietly(
        "dpkg-deb",
        &["-x".to_string(), path_text(&deb)?, path_text(&root)?],
        None,
    )?;
    if !busybox.is_file() {
        return Err(XtaskError::Unexpected(format!(
            "{} has no bin/busybox",
            deb.display()
        )));
    }
    Ok(busybox)
}

/// A file of our own to put into the initramfs.
pub struct ExtraFile {
    /// Path inside the archive (no leading `/`).
    pub path: String,
    /// Its contents.
    pub contents: Vec<u8>,
}

/// Builds an initramfs (uncompressed `newc` cpio) holding busybox, links for common applets in `/bin`,
/// `/dev/console`, empty `/proc`, `/sys`, `/tmp`, the `extra` files (executable) and `init_script` as
/// `/init`. Returns its path in the cache; the file name carries a hash of the contents, so different
/// scripts do not overwrite each other.
pub fn build_initramfs(init_script: &str, extra: &[ExtraFile]) -> Result<PathBuf, XtaskError> {
    let busybox_path = ensure_busybox()?;
    let busybox =
        fs::read(&busybox_path).map_err(|error| XtaskError::file("read", &busybox_path, error))?;
    let mut archive = CpioWriter::default();
    for dir in [
        "bin", "sbin", "dev", "proc", "sys", "tmp", "etc", "usr", "usr/bin", "usr/sbin", "lib",
    ] {
        archive.directory(dir);
    }
    archive.character_device("dev/console", 5, 1);
    archive.file("bin/busybox", 0o755, &busybox);
    for applet in BUSYBOX_APPLETS {
        archive.symlink(&format!("bin/{applet}"), "busybox");
    }
    for file in extra {
        archive.file(&file.path, 0o755, &file.contents);
    }
    archive.file("init", 0o755, init_script.as_bytes());
    let bytes = archive.finish();
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    let path = super::cache_dir().join(format!("initramfs-{:016x}.cpio", hasher.finish()));
    if path.is_file() {
        return Ok(path);
    }
    let temporary = path.with_extension(format!("cpio.{}.partial", std::process::id()));
    let mut file = fs::File::create(&temporary)
        .map_err(|error| XtaskError::file("create", &temporary, error))?;
    file.write_all(&bytes)
        .map_err(|error| XtaskError::file("write", &temporary, error))?;
    fs::rename(&temporary, &path).map_err(|error| XtaskError::file("rename to", &path, error))?;
    Ok(path)
}

/// The `/init` the Linux boot test uses: mounts proc and sysfs, takes every secondary CPU offline
/// and online again `rounds` times, prints `/sys/devices/system/cpu/online`, and powers off with
/// `poweroff -f` (PSCI SYSTEM_OFF). Every line it prints starts with `pkvm-init:`; failures contain
/// `FAIL`; the last line before power-off is `pkvm-init: done`.
pub fn hotplug_init_script(rounds: u32) -> String {
    format!(
        r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "pkvm-init: started, kernel $(uname -r), $(nproc) cpus online: $(cat /sys/devices/system/cpu/online)"
round=1
while [ $round -le {rounds} ]; do
    for online in /sys/devices/system/cpu/cpu[1-9]*/online; do
        cpu=${{online%/online}}
        cpu=${{cpu##*/}}
        echo 0 > $online || echo "pkvm-init: FAIL cannot take $cpu offline"
        [ "$(cat $online)" = 0 ] || echo "pkvm-init: FAIL $cpu still online"
        echo 1 > $online || echo "pkvm-init: FAIL cannot bring $cpu online"
        [ "$(cat $online)" = 1 ] || echo "pkvm-init: FAIL $cpu still offline"
    done
    echo "pkvm-init: hotplug round $round done, online: $(cat /sys/devices/system/cpu/online)"
    round=$((round + 1))
done
echo "pkvm-init: online: $(cat /sys/devices/system/cpu/online)"
echo "pkvm-init: done"
poweroff -f
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hotplug_script_loops_the_requested_rounds_and_powers_off() {
        let script = hotplug_init_script(7);
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.contains("while [ $round -le 7 ]"));
        assert!(
            script.contains("cpu=${online%/online}"),
            "braces survive format!"
        );
        assert!(script.trim_end().ends_with("poweroff -f"));
    }
}
