//! The device tree a Linux boot on the monitor gets: QEMU's own tree for the machine, with the
//! command line and the initramfs range in `/chosen`.

use crate::error::XtaskError;
use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::process::Command;

use super::cache_dir;
use crate::qemu::Board;
use board::Platform;

/// Where the Linux boot places things in DRAM when the monitor enters the kernel: QEMU puts the
/// device tree at the start of DRAM (the monitor may grow it up to the kernel), the kernel `Image`
/// goes at the next 2 MiB boundary (its header has `text_offset` 0), the initramfs well after the
/// kernel's `image_size` (27 MiB for Debian's 6.1 cloud kernel).
pub const KERNEL_ADDRESS: u64 = Board::NON_SECURE_ENTRY as u64;
/// See [`KERNEL_ADDRESS`].
pub const INITRD_ADDRESS: u64 = Board::INITRD_ADDRESS as u64;

/// The device tree for booting Linux on the monitor: QEMU's own tree for exactly this machine (`qemu_args`
/// are the arguments of the real run, `-bios` included, without `-kernel`/`-initrd`/`-append`, which
/// QEMU does not combine with firmware that way), dumped with `-machine dumpdtb=`, with `/chosen`
/// given `bootargs` and, when `initrd` is set, `linux,initrd-start`/`-end`. Pass the result to QEMU
/// with `-dtb`: QEMU then places it at the start of DRAM for the monitor, which adds `/psci`, the CPUs'
/// enable method and `/reserved-memory`. Load the kernel and initramfs with `-device loader` at
/// [`KERNEL_ADDRESS`] and [`INITRD_ADDRESS`].
///
/// With `deterministic`, `/chosen/rng-seed` and `/chosen/kaslr-seed` (random bytes QEMU writes into
/// every tree it makes) are removed, so that two boots under `-icount` execute the same instructions.
pub fn boot_device_tree(
    qemu_args: &[String],
    bootargs: &str,
    initrd: Option<device_tree::MemoryRange>,
    deterministic: bool,
) -> Result<PathBuf, XtaskError> {
    let dir = cache_dir();
    fs::create_dir_all(&dir).map_err(|error| XtaskError::file("create", &dir, error))?;
    let dumped = dir.join(format!("qemu-{}.dtb", std::process::id()));
    let dump_option = format!(
        "dumpdtb={}",
        dumped
            .to_str()
            .ok_or_else(|| XtaskError::Unexpected("non-UTF-8 path".into()))?
    );
    let mut args: Vec<&str> = qemu_args.iter().map(String::as_str).collect();
    args.extend_from_slice(&["-machine", &dump_option]);
    let result = Command::new("qemu-system-aarch64")
        .args(&args)
        .output()
        .map_err(|error| XtaskError::spawn("qemu-system-aarch64", error))?;
    if !result.status.success() {
        return Err(XtaskError::Check(format!(
            "qemu-system-aarch64 could not dump its device tree ({}):\n{}",
            result.status,
            String::from_utf8_lossy(&result.stderr).trim()
        )));
    }
    let mut buffer = fs::read(&dumped).map_err(|error| XtaskError::file("read", &dumped, error))?;
    let _ = fs::remove_file(&dumped);
    buffer.resize(buffer.len() + bootargs.len() + 4096, 0);
    let mut editor = device_tree::DeviceTreeEditor::new(&mut buffer)
        .map_err(|error| XtaskError::Unexpected(format!("QEMU's device tree: {error}")))?;
    editor
        .set_bootargs(bootargs)
        .map_err(|error| XtaskError::Unexpected(format!("cannot set bootargs: {error}")))?;
    if let Some(initrd) = initrd {
        editor
            .set_initrd(initrd)
            .map_err(|error| XtaskError::Unexpected(format!("cannot set the initrd: {error}")))?;
    }
    if deterministic {
        for seed in ["rng-seed", "kaslr-seed"] {
            editor.remove_property("/chosen", seed).map_err(|error| {
                XtaskError::Unexpected(format!("cannot remove /chosen/{seed}: {error}"))
            })?;
        }
    }
    // QEMU's tree reserves 1 MiB; packed, it stays far below the kernel at KERNEL_ADDRESS.
    editor
        .pack()
        .map_err(|error| XtaskError::Unexpected(format!("cannot pack the device tree: {error}")))?;
    // Named after the inputs (QEMU's random seeds in the tree change on every dump).
    let mut hasher = DefaultHasher::new();
    (
        qemu_args,
        bootargs,
        initrd.map(|range| (range.base, range.size)),
        deterministic,
    )
        .hash(&mut hasher);
    let path = dir.join(format!("boot-{:016x}.dtb", hasher.finish()));
    fs::write(&path, editor.blob()).map_err(|error| XtaskError::file("write", &path, error))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_device_tree_carries_bootargs_and_initrd_into_qemus_own_tree() {
        // The smallest firmware QEMU accepts: one branch-to-self instruction.
        let firmware = cache_dir().join(format!("spin-{}.bin", std::process::id()));
        fs::create_dir_all(cache_dir()).expect("cache dir");
        fs::write(&firmware, 0x1400_0000u32.to_le_bytes()).expect("firmware");
        let args: Vec<String> = [
            "-M",
            crate::qemu::MACHINE,
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
        let path = boot_device_tree(&args, "console=ttyAMA0 loglevel=8", Some(initrd), true);
        let _ = fs::remove_file(&firmware);
        let path = path.expect("boot_device_tree");
        let bytes = fs::read(&path).expect("written");
        let _ = fs::remove_file(&path);
        let tree = device_tree::DeviceTree::new(&bytes).expect("valid tree");
        assert_eq!(tree.total_size(), bytes.len(), "packed");
        assert_eq!(tree.bootargs(), Ok(Some("console=ttyAMA0 loglevel=8")));
        assert_eq!(tree.initrd(), Ok(Some(initrd)));
        assert_eq!(tree.cpu_count(), Ok(2));
        for seed in ["rng-seed", "kaslr-seed"] {
            assert_eq!(
                tree.property("/chosen", seed).map(|_| ()),
                Err(device_tree::Error::PropertyNotFound),
                "{seed} removed"
            );
        }
        assert_eq!(
            tree.memory(),
            Ok(device_tree::MemoryRange {
                base: crate::qemu::DRAM_BASE,
                size: 0x2000_0000
            })
        );
        assert_eq!(
            tree.find_node("/psci").map(|_| ()),
            Err(device_tree::Error::NodeNotFound),
            "the monitor adds it"
        );
    }
}
