//! Where the protected hypervisor, the host demo and the guest image live in DRAM (issue 4), in one
//! place for the three images. The physical addresses are [`board::QemuVirt`]'s (`cargo xtask` reads
//! the same crate for QEMU's command line).
//!
//! ```text
//! 0x4000_0000  device tree (QEMU)                         host memory
//! 0x401F_F000  demo / test parameter block                 host memory (written by QEMU's loader)
//! 0x4020_0000  hypervisor: image, stacks, heap, host       hypervisor memory: never in the host's
//!              stage-2 table pool, page-state bits         stage-2, reserved (no-map) in the tree
//! 0x4220_0000  host demo (EL1 entry)                      host memory
//! 0x4300_0000  guest image as loaded by QEMU              host memory (the host copies it into the
//!                                                          pages it donates)
//! 0x4400_0000  memory the host demo gives away            metadata pages, then guest memory
//! ```

use board::{Platform, QemuVirt};

/// Start of the hypervisor's memory: its entry point (the monitor's Non-secure entry).
pub const HYPERVISOR_BASE: usize = QemuVirt::HYPERVISOR.base;
/// Size of the hypervisor's memory (image, stacks, heap, table pools).
pub const HYPERVISOR_SIZE: usize = QemuVirt::HYPERVISOR.size;
/// Where the hypervisor enters the host at EL1 (x0 = device tree).
pub const HOST_ENTRY: usize = QemuVirt::HOST_ENTRY;
/// Where QEMU's loader puts the guest image (inside host memory).
pub const GUEST_IMAGE_LOAD_ADDRESS: usize = QemuVirt::GUEST_IMAGE.base;
/// Largest guest image the host copies.
pub const GUEST_IMAGE_MAX_SIZE: usize = QemuVirt::GUEST_IMAGE.size;
/// Where the guest image runs in the guest's address space (its entry point, an IPA).
pub const GUEST_ENTRY_IPA: u64 = 0x8000_0000;
/// Start of the memory the host demo donates (metadata pages, then guest memory).
pub const DONATION_BASE: usize = QemuVirt::DONATION_BASE;
