//! What the SMMU boot test puts into its initramfs: the virtio-rng-pci modules of Debian's 6.1 cloud
//! kernel (all `=m` there), taken from the kernel's cached package, and an `/init` that loads them and
//! reads the device.

use super::initramfs::ExtraFile;
use super::kernel::{Kernel, extract};
use crate::error::XtaskError;
use std::fs;
use std::path::{Path, PathBuf};

/// The modules virtio-rng-pci needs, in load order.
const VIRTIO_RNG_MODULES: &[&str] = &[
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/char/hw_random/virtio-rng.ko",
];

/// The virtio-rng-pci modules of `kernel` as `lib/<name>` files for the initramfs; extracted once
/// from the kernel's package in the cache.
pub fn virtio_rng_modules(kernel: &Kernel) -> Result<Vec<ExtraFile>, XtaskError> {
    let dir = super::cache_dir();
    // One tree per kernel package: modules only load into the kernel they were built for.
    let root = dir.join(format!("modules-{}", kernel.package));
    let release_dir = |root: &Path| -> Option<PathBuf> {
        ["lib/modules", "usr/lib/modules"]
            .iter()
            .filter_map(|modules| fs::read_dir(root.join(modules)).ok())
            .flat_map(|entries| entries.flatten())
            .map(|entry| entry.path())
            .next()
    };
    if release_dir(&root).is_none() {
        let deb = fs::read_dir(dir.join("debs"))
            .map_err(|error| {
                XtaskError::Unexpected(format!("cannot list the cached packages: {error}"))
            })?
            .flatten()
            .map(|entry| entry.path())
            .find(|path| {
                path.file_name().is_some_and(|name| {
                    name.to_string_lossy()
                        .starts_with(&format!("{}_", kernel.package))
                })
            })
            .ok_or_else(|| {
                XtaskError::Unexpected(format!("no cached package of {}", kernel.package))
            })?;
        extract(&deb, &root)?;
    }
    let release = release_dir(&root)
        .ok_or_else(|| XtaskError::Unexpected("the kernel package has no modules".into()))?;
    VIRTIO_RNG_MODULES
        .iter()
        .map(|module| {
            let path = release.join("kernel").join(module);
            let name = path
                .file_name()
                .map(|name| format!("lib/{}", name.to_string_lossy()))
                .ok_or_else(|| XtaskError::Unexpected("module without a name".into()))?;
            fs::read(&path)
                .map(|contents| ExtraFile {
                    path: name,
                    contents,
                })
                .map_err(|error| XtaskError::file("read", &path, error))
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
