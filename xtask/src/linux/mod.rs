//! Stock Linux to boot on the monitor: Debian's arm64 kernels and a busybox initramfs, fetched from
//! Debian's archive with a private apt and cached under `.cache/` in the workspace; the device tree
//! and the console-log checks of the Linux boots.
//!
//! | file | job |
//! | --- | --- |
//! | `apt.rs` | the private apt (own sources list, lists, cache; arm64 only; Debian's keyring) |
//! | `kernel.rs` | which kernel package, download, `Image` and `config` out of the `.deb`s, config check |
//! | `initramfs.rs` | busybox, the init scripts' common part, the archive with our binaries |
//! | `cpio.rs` | the `newc` cpio writer |
//! | `device_tree.rs` | QEMU's tree with `/chosen` filled in |
//! | `boot_log.rs` | the markers a good boot prints |
//! | `pvm.rs` | builds the Linux-side binaries (`linux/pvm`) for `aarch64-unknown-linux-musl` |
//! | `process.rs` | running the Debian tools with their output captured |
//! | `virtio_rng.rs` | the SMMU boot test's modules and `/init` |

use crate::error::XtaskError;
mod apt;
mod boot_log;
mod cpio;
mod device_tree;
mod initramfs;
mod kernel;
mod process;
pub mod pvm;
mod virtio_rng;

pub use boot_log::check_linux_boot_log;
pub use device_tree::{INITRD_ADDRESS, KERNEL_ADDRESS, boot_device_tree};
pub use initramfs::{build_initramfs, hotplug_init_script};
pub use kernel::{Kernel, KernelKind, kernel};
pub use virtio_rng::{virtio_rng_init_script, virtio_rng_modules};

use std::path::{Path, PathBuf};

/// Where kernels, busybox and initramfs archives are cached: `<workspace>/.cache/linux` (gitignored).
pub fn cache_dir() -> PathBuf {
    workspace_root().join(".cache").join("linux")
}

/// The private apt's directory: `<workspace>/.cache/apt`.
fn apt_dir() -> PathBuf {
    workspace_root().join(".cache").join("apt")
}

fn workspace_root() -> PathBuf {
    // xtask lives directly under the workspace root.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `cargo xtask fetch-linux`: fetches and caches both kernels and busybox, builds the hotplug test's
/// initramfs, and prints what it got and where.
pub fn fetch_linux() -> Result<(), XtaskError> {
    let bookworm = kernel(KernelKind::Bookworm)?;
    let pkvm = kernel(KernelKind::Pkvm)?;
    let busybox = initramfs::ensure_busybox()?;
    let initramfs = build_initramfs(&hotplug_init_script(3), &[])?;
    for (what, kernel) in [("6.1 kernel", &bookworm), ("pKVM kernel", &pkvm)] {
        println!(
            "{what}: {} {} ({}), Image {}",
            kernel.package,
            kernel.version,
            kernel.suite,
            kernel.image.display()
        );
    }
    println!(
        "pKVM kernel config: {} has CONFIG_ARM64_ERRATUM_4193714=y and CONFIG_KVM=y",
        pkvm.config.display()
    );
    println!("busybox:        {}", busybox.display());
    println!(
        "initramfs:      {} (/init = hotplug test, 3 rounds)",
        initramfs.display()
    );
    println!(
        "try: cargo xtask run --kernel {} --initrd {} --append \"console=ttyAMA0 kvm-arm.mode=protected\"",
        pkvm.image.display(),
        initramfs.display()
    );
    Ok(())
}
