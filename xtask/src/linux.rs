//! A stock Linux to boot on the monitor: Debian's arm64 cloud kernel and a busybox initramfs, fetched
//! from Debian's archive with apt and cached under `.cache/linux/` in the workspace.
//!
//! Only Debian's own packages are used (`linux-image-cloud-arm64`, the versioned kernel package it
//! depends on, and `busybox-static`, all for `arm64`), downloaded with `apt-get download` after
//! `dpkg --add-architecture arm64`. The kernel's `vmlinuz` in bookworm's signed arm64 package is
//! already the raw `Image` (with its EFI stub); a gzip-compressed one would be decompressed. The
//! initramfs is an uncompressed `newc` cpio archive written here (Linux accepts it as it is).

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian metapackage that always depends on the current cloud kernel.
const KERNEL_METAPACKAGE: &str = "linux-image-cloud-arm64";
/// The Debian package with a statically linked busybox.
const BUSYBOX_PACKAGE: &str = "busybox-static";

/// Applets linked into `/bin` of the initramfs, so scripts can call them by name.
const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "mount", "umount", "cat", "echo", "printf", "poweroff", "reboot", "sleep", "seq",
    "dmesg", "grep", "ls", "uname", "mkdir", "nproc", "test", "[", "true", "false", "tr", "wc",
    "head", "insmod", "od",
];

/// The modules virtio-rng-pci needs in Debian's cloud kernel (all `=m` there), in load order.
const VIRTIO_RNG_MODULES: &[&str] = &[
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/char/hw_random/virtio-rng.ko",
];

/// Where downloads and products are cached: `<workspace>/.cache/linux` (gitignored).
pub fn cache_dir() -> PathBuf {
    workspace_root().join(".cache").join("linux")
}

fn workspace_root() -> PathBuf {
    // xtask lives directly under the workspace root.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The cached kernel: the raw `Image` and the Debian package it came from.
pub struct DebianKernel {
    /// The decompressed arm64 `Image`.
    pub image: PathBuf,
    /// The versioned package, e.g. `linux-image-6.1.0-56-cloud-arm64`.
    pub package: String,
    /// The package version, e.g. `6.1.192-2`.
    pub version: String,
}

/// Downloads (once) Debian's arm64 cloud kernel and returns the path of its raw `Image`.
#[allow(
    dead_code,
    reason = "the entry point of the Linux boot test and `cargo xtask run --kernel`"
)]
pub fn ensure_debian_kernel() -> Result<PathBuf, String> {
    debian_kernel().map(|kernel| kernel.image)
}

/// Downloads (once) Debian's arm64 cloud kernel; returns where its `Image` is and what it is.
pub fn debian_kernel() -> Result<DebianKernel, String> {
    let dir = cache_dir();
    let image = dir.join("Image");
    let stamp = dir.join("Image.package");
    if let (true, Ok(recorded)) = (image.is_file(), fs::read_to_string(&stamp)) {
        let mut fields = recorded.split_whitespace();
        if let (Some(package), Some(version)) = (fields.next(), fields.next()) {
            return Ok(DebianKernel {
                image,
                package: package.to_string(),
                version: version.to_string(),
            });
        }
    }
    let debs = dir.join("debs");
    fs::create_dir_all(&debs)
        .map_err(|error| format!("cannot create {}: {error}", debs.display()))?;
    ensure_arm64_archive()?;
    let metapackage = download(KERNEL_METAPACKAGE, &debs)?;
    let package = kernel_package_of(&metapackage)?;
    let deb = download(&package, &debs)?;
    let version = deb_field(&deb, "Version")?;
    let root = dir.join("kernel-root");
    extract(&deb, &root)?;
    let vmlinuz = find_vmlinuz(&root)?;
    decompress_image(&vmlinuz, &image)?;
    // The modules are not needed: the initramfs holds busybox only.
    fs::remove_dir_all(&root)
        .map_err(|error| format!("cannot remove {}: {error}", root.display()))?;
    fs::write(&stamp, format!("{package} {version}\n"))
        .map_err(|error| format!("cannot write {}: {error}", stamp.display()))?;
    Ok(DebianKernel {
        image,
        package,
        version,
    })
}

/// Downloads (once) Debian's static arm64 busybox and returns its path.
pub fn ensure_busybox() -> Result<PathBuf, String> {
    let dir = cache_dir();
    let busybox = dir.join("busybox-root").join("bin").join("busybox");
    if busybox.is_file() {
        return Ok(busybox);
    }
    let debs = dir.join("debs");
    fs::create_dir_all(&debs)
        .map_err(|error| format!("cannot create {}: {error}", debs.display()))?;
    ensure_arm64_archive()?;
    let deb = download(BUSYBOX_PACKAGE, &debs)?;
    extract(&deb, &dir.join("busybox-root"))?;
    if !busybox.is_file() {
        return Err(format!("{} has no bin/busybox", deb.display()));
    }
    Ok(busybox)
}

/// Builds an initramfs (uncompressed `newc` cpio) holding busybox, links for common applets in `/bin`,
/// `/dev/console`, empty `/proc`, `/sys`, `/tmp`, and `init_script` as `/init`. Returns its path in the
/// cache; the file name carries a hash of the script, so different scripts do not overwrite each other.
pub fn build_initramfs(init_script: &str) -> Result<PathBuf, String> {
    build_initramfs_with(init_script, &[])
}

/// [`build_initramfs`] with `files` (path in the archive, contents) added; their directories must be
/// among the ones every initramfs has (`lib` included).
pub fn build_initramfs_with(
    init_script: &str,
    files: &[(String, Vec<u8>)],
) -> Result<PathBuf, String> {
    let busybox_path = ensure_busybox()?;
    let busybox = fs::read(&busybox_path)
        .map_err(|error| format!("cannot read {}: {error}", busybox_path.display()))?;
    let mut hasher = DefaultHasher::new();
    init_script.hash(&mut hasher);
    busybox.len().hash(&mut hasher);
    files.hash(&mut hasher);
    let path = cache_dir().join(format!("initramfs-{:016x}.cpio", hasher.finish()));

    let mut archive = CpioWriter::default();
    for dir in [
        "bin", "sbin", "dev", "proc", "sys", "tmp", "etc", "usr", "usr/bin", "usr/sbin", "lib",
    ] {
        archive.directory(dir);
    }
    for (name, contents) in files {
        archive.file(name, 0o644, contents);
    }
    archive.character_device("dev/console", 5, 1);
    archive.file("bin/busybox", 0o755, &busybox);
    for applet in BUSYBOX_APPLETS {
        archive.symlink(&format!("bin/{applet}"), "busybox");
    }
    archive.file("init", 0o755, init_script.as_bytes());
    let bytes = archive.finish();
    let temporary = path.with_extension(format!("cpio.{}.partial", std::process::id()));
    let mut file = fs::File::create(&temporary)
        .map_err(|error| format!("cannot create {}: {error}", temporary.display()))?;
    file.write_all(&bytes)
        .map_err(|error| format!("cannot write {}: {error}", temporary.display()))?;
    fs::rename(&temporary, &path)
        .map_err(|error| format!("cannot rename to {}: {error}", path.display()))?;
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

/// The virtio-rng-pci modules of the cached kernel ([`VIRTIO_RNG_MODULES`]), as `lib/<name>` files
/// for [`build_initramfs_with`]; extracted once from the kernel's package in the cache.
pub fn virtio_rng_modules(kernel: &DebianKernel) -> Result<Vec<(String, Vec<u8>)>, String> {
    let dir = cache_dir();
    let root = dir.join("modules-root");
    let release_dir = |root: &Path| -> Option<PathBuf> {
        fs::read_dir(root.join("lib").join("modules"))
            .ok()?
            .flatten()
            .map(|entry| entry.path())
            .next()
    };
    if release_dir(&root).is_none() {
        let deb = fs::read_dir(dir.join("debs"))
            .map_err(|error| format!("cannot list the cached packages: {error}"))?
            .flatten()
            .map(|entry| entry.path())
            .find(|path| {
                path.file_name().is_some_and(|name| {
                    let name = name.to_string_lossy();
                    name.starts_with(&format!("{}_", kernel.package))
                })
            })
            .ok_or_else(|| format!("no cached package of {}", kernel.package))?;
        extract(&deb, &root)?;
    }
    let release = release_dir(&root).ok_or("the kernel package has no modules")?;
    VIRTIO_RNG_MODULES
        .iter()
        .map(|module| {
            let path = release.join("kernel").join(module);
            let name = path
                .file_name()
                .map(|name| format!("lib/{}", name.to_string_lossy()))
                .ok_or("module without a name")?;
            fs::read(&path)
                .map(|bytes| (name, bytes))
                .map_err(|error| format!("cannot read {}: {error}", path.display()))
        })
        .collect()
}

/// The `/init` of the SMMU boot test: loads the virtio-rng-pci modules, reads 64 bytes from
/// `/dev/hwrng` (the device's DMA goes through the hypervisor's SMMU) and powers off. Prints
/// `pkvm-init: hwrng: <hex>` and `pkvm-init: done`; failures contain `FAIL`.
pub fn virtio_rng_init_script() -> String {
    let loads: String = VIRTIO_RNG_MODULES
        .iter()
        .filter_map(|module| module.rsplit('/').next())
        .map(|name| format!("insmod /lib/{name} || echo \"pkvm-init: FAIL cannot load {name}\"\n"))
        .collect();
    format!(
        r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
{loads}echo "pkvm-init: rng: $(cat /sys/class/misc/hw_random/rng_current)"
bytes=$(head -c 64 /dev/hwrng | od -An -tx1 | tr -d ' \n')
if [ ${{#bytes}} -eq 128 ]; then
    echo "pkvm-init: hwrng: $bytes"
else
    echo "pkvm-init: FAIL read ${{#bytes}} hex digits from /dev/hwrng"
fi
echo "pkvm-init: done"
poweroff -f
"#
    )
}

/// Where the Linux boot places things in DRAM when the monitor enters the kernel: QEMU puts the
/// device tree at the start of DRAM (the monitor may grow it up to the kernel), the kernel `Image`
/// goes at the next 2 MiB boundary (its header has `text_offset` 0), the initramfs well after the
/// kernel's `image_size` (27 MiB for Debian's 6.1 cloud kernel).
pub const KERNEL_ADDRESS: u64 = 0x4020_0000;
/// See [`KERNEL_ADDRESS`].
pub const INITRD_ADDRESS: u64 = 0x4800_0000;

/// The device tree for booting Linux on the monitor: QEMU's own tree for exactly this machine (`qemu_args`
/// are the arguments of the real run, `-bios` included, without `-kernel`/`-initrd`/`-append`, which
/// QEMU does not combine with firmware that way), dumped with `-machine dumpdtb=`, with `/chosen`
/// given `bootargs` and, when `initrd` is set, `linux,initrd-start`/`-end`. Pass the result to QEMU
/// with `-dtb`: QEMU then places it at the start of DRAM for the monitor, which adds `/psci`, the CPUs'
/// enable method and `/reserved-memory`. Load the kernel and initramfs with `-device loader` at
/// [`KERNEL_ADDRESS`] and [`INITRD_ADDRESS`].
#[allow(
    dead_code,
    reason = "used by `cargo xtask run --kernel` and the Linux boot test"
)]
pub fn boot_device_tree(
    qemu_args: &[String],
    bootargs: &str,
    initrd: Option<device_tree::MemoryRange>,
) -> Result<PathBuf, String> {
    let dir = cache_dir();
    fs::create_dir_all(&dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let dumped = dir.join(format!("qemu-{}.dtb", std::process::id()));
    let dump_option = format!("dumpdtb={}", dumped.to_str().ok_or("non-UTF-8 path")?);
    let mut args: Vec<&str> = qemu_args.iter().map(String::as_str).collect();
    args.extend_from_slice(&["-machine", &dump_option]);
    let result = Command::new("qemu-system-aarch64")
        .args(&args)
        .output()
        .map_err(|error| format!("cannot run qemu-system-aarch64: {error}"))?;
    if !result.status.success() {
        return Err(format!(
            "qemu-system-aarch64 could not dump its device tree ({}):\n{}",
            result.status,
            String::from_utf8_lossy(&result.stderr).trim()
        ));
    }
    let mut buffer =
        fs::read(&dumped).map_err(|error| format!("cannot read {}: {error}", dumped.display()))?;
    let _ = fs::remove_file(&dumped);
    buffer.resize(buffer.len() + bootargs.len() + 4096, 0);
    let mut editor = device_tree::DeviceTreeEditor::new(&mut buffer)
        .map_err(|error| format!("QEMU's device tree: {error}"))?;
    editor
        .set_bootargs(bootargs)
        .map_err(|error| format!("cannot set bootargs: {error}"))?;
    if let Some(initrd) = initrd {
        editor
            .set_initrd(initrd)
            .map_err(|error| format!("cannot set the initrd: {error}"))?;
    }
    // QEMU's tree reserves 1 MiB; packed, it stays far below the kernel at KERNEL_ADDRESS.
    editor
        .pack()
        .map_err(|error| format!("cannot pack the device tree: {error}"))?;
    // Named after the inputs (QEMU's random seeds in the tree change on every dump).
    let mut hasher = DefaultHasher::new();
    (
        qemu_args,
        bootargs,
        initrd.map(|range| (range.base, range.size)),
    )
        .hash(&mut hasher);
    let path = dir.join(format!("boot-{:016x}.dtb", hasher.finish()));
    fs::write(&path, editor.blob())
        .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    Ok(path)
}

/// Checks the console log of a Linux boot with [`hotplug_init_script`] as `/init` on `cpus` CPUs: PSCI
/// 1.1 detected, every CPU brought up, each hotplug round and the script finished without a `FAIL`,
/// every CPU online at the end, and the kernel powered down. Returns the first thing missing.
#[allow(dead_code, reason = "used by the Linux boot test")]
pub fn check_linux_boot_log(log: &str, cpus: usize) -> Result<(), String> {
    let all_online = if cpus <= 1 {
        "0".to_string()
    } else {
        format!("0-{}", cpus - 1)
    };
    if let Some(failure) = log.lines().find(|line| line.contains("pkvm-init: FAIL")) {
        return Err(format!("the init script reported: {}", failure.trim()));
    }
    let required = [
        "psci: PSCIv1.1 detected in firmware.".to_string(),
        format!("smp: Brought up 1 node, {cpus} CPU"),
        "Run /init as init process".to_string(),
        format!("pkvm-init: online: {all_online}\n"),
        "pkvm-init: done".to_string(),
        "reboot: Power down".to_string(),
    ];
    let log = log.replace("\r\n", "\n");
    let mut from = 0;
    for needle in &required {
        // In this order: each marker must come after the previous one.
        match log[from..].find(needle.as_str()) {
            Some(position) => from += position + needle.len(),
            None => {
                return Err(format!(
                    "the boot log lacks `{}` (in order)",
                    needle.trim_end()
                ));
            }
        }
    }
    Ok(())
}

/// `cargo xtask fetch-linux`: fetches and caches the kernel and busybox, builds the hotplug test's
/// initramfs, and prints the paths.
pub fn fetch_linux() -> Result<(), String> {
    let kernel = debian_kernel()?;
    let busybox = ensure_busybox()?;
    let initramfs = build_initramfs(&hotplug_init_script(3))?;
    println!("kernel package: {} {}", kernel.package, kernel.version);
    println!("kernel Image:   {}", kernel.image.display());
    println!("busybox:        {}", busybox.display());
    println!(
        "initramfs:      {} (/init = hotplug test, 3 rounds)",
        initramfs.display()
    );
    println!(
        "on the monitor: -dtb <boot_device_tree()> -device loader,file={},addr={KERNEL_ADDRESS:#x},force-raw=on \\\n    \
         -device loader,file={},addr={INITRD_ADDRESS:#x},force-raw=on",
        kernel.image.display(),
        initramfs.display()
    );
    Ok(())
}

/// Makes sure apt knows the arm64 archive: adds the architecture and refreshes the lists when root,
/// otherwise says exactly what to run.
fn ensure_arm64_archive() -> Result<(), String> {
    let foreign = output("dpkg", &["--print-foreign-architectures"])?;
    if foreign.lines().any(|line| line.trim() == "arm64") {
        return Ok(());
    }
    if !is_root() {
        return Err(not_root_message());
    }
    eprintln!("xtask: adding the arm64 architecture to dpkg and refreshing apt's lists");
    run_quietly("dpkg", &["--add-architecture", "arm64"], None)?;
    run_quietly("apt-get", &["update"], None)
}

fn not_root_message() -> String {
    format!(
        "the arm64 packages are not available to apt and xtask is not root; run:\n    \
         sudo dpkg --add-architecture arm64 && sudo apt-get update\nthen again, or fetch by hand:\n    \
         apt-get download {KERNEL_METAPACKAGE}:arm64 {BUSYBOX_PACKAGE}:arm64"
    )
}

/// `apt-get download PACKAGE:arm64` into `dir`; refreshes the lists once when apt cannot find it.
fn download(package: &str, dir: &Path) -> Result<PathBuf, String> {
    let target = format!("{package}:arm64");
    // apt keeps the archive's file dates, so clear older downloads rather than pick by date.
    while let Ok(stale) = newest_deb(dir, package) {
        fs::remove_file(&stale)
            .map_err(|error| format!("cannot remove {}: {error}", stale.display()))?;
    }
    eprintln!("xtask: downloading {target} from Debian's archive");
    if run_quietly("apt-get", &["download", &target], Some(dir)).is_err() {
        if !is_root() {
            return Err(format!(
                "`apt-get download {target}` failed; run `sudo apt-get update` and try again"
            ));
        }
        run_quietly("apt-get", &["update"], None)?;
        run_quietly("apt-get", &["download", &target], Some(dir))?;
    }
    newest_deb(dir, package)
}

/// The `.deb` apt wrote for `package` (`PACKAGE_VERSION_arm64.deb`; the newest if several).
fn newest_deb(dir: &Path, package: &str) -> Result<PathBuf, String> {
    let prefix = format!("{package}_");
    let entries =
        fs::read_dir(dir).map_err(|error| format!("cannot list {}: {error}", dir.display()))?;
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !(name.starts_with(&prefix) && name.ends_with("_arm64.deb")) {
            continue;
        }
        let modified = entry
            .metadata()
            .and_then(|metadata| metadata.modified())
            .ok();
        let Some(modified) = modified else { continue };
        if newest.as_ref().is_none_or(|(time, _)| modified > *time) {
            newest = Some((modified, entry.path()));
        }
    }
    newest
        .map(|(_, path)| path)
        .ok_or_else(|| format!("apt-get wrote no {prefix}*_arm64.deb in {}", dir.display()))
}

/// The versioned kernel package the metapackage depends on (`linux-image-6.1.0-56-cloud-arm64`).
fn kernel_package_of(metapackage: &Path) -> Result<String, String> {
    let depends = deb_field(metapackage, "Depends")?;
    depends
        .split(',')
        .map(|alternative| alternative.trim().split([' ', '(']).next().unwrap_or(""))
        .find(|name| name.starts_with("linux-image-") && name.ends_with("-arm64"))
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "{} depends on no kernel image: {depends}",
                metapackage.display()
            )
        })
}

fn deb_field(deb: &Path, field: &str) -> Result<String, String> {
    let deb = deb.to_str().ok_or("non-UTF-8 path")?;
    Ok(output("dpkg-deb", &["--field", deb, field])?
        .trim()
        .to_string())
}

fn extract(deb: &Path, root: &Path) -> Result<(), String> {
    if root.exists() {
        fs::remove_dir_all(root)
            .map_err(|error| format!("cannot clear {}: {error}", root.display()))?;
    }
    let (deb, root_text) = (
        deb.to_str().ok_or("non-UTF-8 path")?,
        root.to_str().ok_or("non-UTF-8 path")?,
    );
    run_quietly("dpkg-deb", &["-x", deb, root_text], None)
}

fn find_vmlinuz(root: &Path) -> Result<PathBuf, String> {
    let boot = root.join("boot");
    let entries =
        fs::read_dir(&boot).map_err(|error| format!("cannot list {}: {error}", boot.display()))?;
    entries
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| format!("no vmlinuz-* in {}", boot.display()))
}

/// Writes the raw arm64 `Image` from Debian's `vmlinuz`: bookworm's signed arm64 package ships the
/// raw `Image` (an EFI-stub PE file, bootable as is); a gzip-compressed one is decompressed. Either way
/// the arm64 image header's magic (`ARM\x64` at offset 56) is checked.
fn decompress_image(vmlinuz: &Path, image: &Path) -> Result<(), String> {
    let contents =
        fs::read(vmlinuz).map_err(|error| format!("cannot read {}: {error}", vmlinuz.display()))?;
    let raw = if contents.starts_with(&[0x1f, 0x8b]) {
        let decompressed = Command::new("gzip")
            .args(["-dc", vmlinuz.to_str().ok_or("non-UTF-8 path")?])
            .output()
            .map_err(|error| format!("cannot run gzip: {error}"))?;
        if !decompressed.status.success() {
            return Err(format!(
                "gzip -dc {} failed ({})",
                vmlinuz.display(),
                decompressed.status
            ));
        }
        decompressed.stdout
    } else {
        contents
    };
    if raw.get(56..60) != Some(b"ARM\x64") {
        return Err(format!(
            "{} is neither an arm64 Image nor a gzip-compressed one (an EFI zboot image is not handled)",
            vmlinuz.display()
        ));
    }
    fs::write(image, &raw).map_err(|error| format!("cannot write {}: {error}", image.display()))
}

/// A `newc` ("070701") cpio archive, built in memory: headers of 13 hexadecimal fields, names and data
/// each padded to 4 bytes, closed by `TRAILER!!!`.
#[derive(Default)]
struct CpioWriter {
    bytes: Vec<u8>,
    next_inode: u32,
}

impl CpioWriter {
    const DIRECTORY: u32 = 0o040_000;
    const REGULAR: u32 = 0o100_000;
    const SYMLINK: u32 = 0o120_000;
    const CHARACTER_DEVICE: u32 = 0o020_000;

    fn directory(&mut self, path: &str) {
        self.entry(path, Self::DIRECTORY | 0o755, 2, (0, 0), &[]);
    }

    fn file(&mut self, path: &str, permissions: u32, data: &[u8]) {
        self.entry(path, Self::REGULAR | permissions, 1, (0, 0), data);
    }

    fn symlink(&mut self, path: &str, target: &str) {
        self.entry(path, Self::SYMLINK | 0o777, 1, (0, 0), target.as_bytes());
    }

    fn character_device(&mut self, path: &str, major: u32, minor: u32) {
        self.entry(path, Self::CHARACTER_DEVICE | 0o600, 1, (major, minor), &[]);
    }

    fn entry(&mut self, path: &str, mode: u32, links: u32, device: (u32, u32), data: &[u8]) {
        self.next_inode += 1;
        let name_size = path.len() + 1;
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            links,
            0, // mtime: fixed, so that the archive is reproducible
            u32::try_from(data.len()).unwrap_or(u32::MAX),
            0, // devmajor
            0, // devminor
            device.0,
            device.1,
            u32::try_from(name_size).unwrap_or(u32::MAX),
            0, // check
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(path.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[]);
        self.bytes
    }
}

fn is_root() -> bool {
    output("id", &["-u"]).is_ok_and(|uid| uid.trim() == "0")
}

/// Runs a command with its output captured; on failure the error carries what it printed.
fn run_quietly(program: &str, args: &[&str], dir: Option<&Path>) -> Result<(), String> {
    let mut command = Command::new(program);
    command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let result = command
        .output()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if result.status.success() {
        return Ok(());
    }
    Err(format!(
        "`{program} {}` failed ({}):\n{}",
        args.join(" "),
        result.status,
        String::from_utf8_lossy(&result.stderr).trim()
    ))
}

fn output(program: &str, args: &[&str]) -> Result<String, String> {
    let result = Command::new(program)
        .args(args)
        .output()
        .map_err(|error| format!("cannot run {program}: {error}"))?;
    if !result.status.success() {
        return Err(format!(
            "`{program} {}` failed ({})",
            args.join(" "),
            result.status
        ));
    }
    String::from_utf8(result.stdout)
        .map_err(|error| format!("{program} printed non-UTF-8: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a newc archive back: (name, mode, rdev major, rdev minor, data) per entry.
    fn parse_cpio(mut bytes: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut entries = Vec::new();
        let mut consumed = 0usize;
        loop {
            assert_eq!(&bytes[..6], b"070701", "magic at byte {consumed}");
            let field = |index: usize| {
                let text =
                    std::str::from_utf8(&bytes[6 + index * 8..14 + index * 8]).expect("ASCII");
                u32::from_str_radix(text, 16).expect("hex")
            };
            let (mode, size, major, minor, name_size) =
                (field(1), field(6), field(9), field(10), field(11));
            let name_end = 110 + name_size as usize;
            let name = std::str::from_utf8(&bytes[110..name_end - 1])
                .expect("name")
                .to_string();
            assert_eq!(bytes[name_end - 1], 0, "{name} NUL-terminated");
            let data_start = name_end.next_multiple_of(4);
            let data_end = data_start + size as usize;
            let data = bytes[data_start..data_end].to_vec();
            let next = data_end.next_multiple_of(4);
            consumed += next;
            bytes = &bytes[next..];
            if name == "TRAILER!!!" {
                assert!(bytes.is_empty(), "nothing after the trailer");
                return entries;
            }
            entries.push((name, mode, major, minor, data));
        }
    }

    #[test]
    fn cpio_entries_read_back_with_their_types_and_padding() {
        let mut archive = CpioWriter::default();
        archive.directory("dev");
        archive.character_device("dev/console", 5, 1);
        archive.file("init", 0o755, b"#!/bin/sh\n");
        archive.file("odd", 0o644, b"abcde");
        archive.symlink("bin/sh", "busybox");
        let bytes = archive.finish();
        assert_eq!(bytes.len() % 4, 0);
        let entries = parse_cpio(&bytes);
        let expected: Vec<(String, u32, u32, u32, Vec<u8>)> = vec![
            ("dev".into(), 0o040_755, 0, 0, vec![]),
            ("dev/console".into(), 0o020_600, 5, 1, vec![]),
            ("init".into(), 0o100_755, 0, 0, b"#!/bin/sh\n".to_vec()),
            ("odd".into(), 0o100_644, 0, 0, b"abcde".to_vec()),
            ("bin/sh".into(), 0o120_777, 0, 0, b"busybox".to_vec()),
        ];
        assert_eq!(entries, expected);
    }

    #[test]
    fn boot_device_tree_carries_bootargs_and_initrd_into_qemus_own_tree() {
        // The smallest firmware QEMU accepts: one branch-to-self instruction.
        let firmware = cache_dir().join(format!("spin-{}.bin", std::process::id()));
        fs::create_dir_all(cache_dir()).expect("cache dir");
        fs::write(&firmware, 0x1400_0000u32.to_le_bytes()).expect("firmware");
        let args: Vec<String> = [
            "-M",
            "virt,secure=on,virtualization=on,gic-version=3",
            "-cpu",
            "max",
            "-smp",
            "2",
            "-m",
            "512M",
            "-nographic",
            "-nic",
            "none",
            "-semihosting",
            "-bios",
            firmware.to_str().expect("UTF-8"),
        ]
        .map(String::from)
        .to_vec();
        let initrd = device_tree::MemoryRange {
            base: INITRD_ADDRESS,
            size: 0x12_3000,
        };
        let path = boot_device_tree(&args, "console=ttyAMA0 loglevel=8", Some(initrd));
        let _ = fs::remove_file(&firmware);
        let path = path.expect("boot_device_tree");
        let bytes = fs::read(&path).expect("written");
        let _ = fs::remove_file(&path);
        let tree = device_tree::DeviceTree::new(&bytes).expect("valid tree");
        assert_eq!(tree.total_size(), bytes.len(), "packed");
        assert_eq!(tree.bootargs(), Ok(Some("console=ttyAMA0 loglevel=8")));
        assert_eq!(tree.initrd(), Ok(Some(initrd)));
        assert_eq!(tree.cpu_count(), Ok(2));
        assert_eq!(
            tree.memory(),
            Ok(device_tree::MemoryRange {
                base: 0x4000_0000,
                size: 0x2000_0000
            })
        );
        assert_eq!(
            tree.find_node("/psci").map(|_| ()),
            Err(device_tree::Error::NodeNotFound),
            "the monitor adds it"
        );
    }

    /// The markers of a good boot, as Linux and the init script print them.
    const GOOD_LOG: &str = "[    0.000000] psci: PSCIv1.1 detected in firmware.\r
[    0.206276] smp: Brought up 1 node, 4 CPUs\r
[    6.933292] Run /init as init process\r
pkvm-init: started, kernel 6.1.0-56-cloud-arm64, 4 cpus online: 0-3\r
[    7.538680] psci: CPU1 killed (polled 0 ms)\r
pkvm-init: hotplug round 1 done, online: 0-3\r
pkvm-init: online: 0-3\r
pkvm-init: done\r
[   11.149013] reboot: Power down\r
";

    #[test]
    fn boot_log_check_table() {
        let table: [(&str, String, usize, Result<(), &str>); 7] = [
            ("good", GOOD_LOG.to_string(), 4, Ok(())),
            (
                "other CPU count",
                GOOD_LOG.to_string(),
                2,
                Err("smp: Brought up 1 node, 2 CPU"),
            ),
            (
                "PSCI 1.0 only",
                GOOD_LOG.replace("PSCIv1.1", "PSCIv1.0"),
                4,
                Err("psci: PSCIv1.1"),
            ),
            (
                "CPU left offline",
                GOOD_LOG.replace("online: 0-3\r\npkvm", "online: 0-2\r\npkvm"),
                4,
                Err("online: 0-3"),
            ),
            (
                "script failure",
                GOOD_LOG.replace("pkvm-init: done", "pkvm-init: FAIL cpu2 still online"),
                4,
                Err("FAIL"),
            ),
            (
                "no power-off",
                GOOD_LOG.replace("reboot: Power down", "Kernel panic"),
                4,
                Err("Power down"),
            ),
            (
                "markers out of order",
                GOOD_LOG
                    .replace("pkvm-init: done\r\n", "")
                    .replace("Power down", "Power down\npkvm-init: done"),
                4,
                Err("Power down"),
            ),
        ];
        for (label, log, cpus, expected) in table {
            let result = check_linux_boot_log(&log, cpus);
            match expected {
                Ok(()) => assert_eq!(result, Ok(()), "{label}"),
                Err(fragment) => {
                    let error = result.expect_err(label);
                    assert!(error.contains(fragment), "{label}: {error}");
                }
            }
        }
    }

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
