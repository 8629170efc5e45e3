//! Where the protected hypervisor, the host demo and the guest image live in DRAM (issue 4), in one
//! place for the three images. The physical addresses are the selected board's ([`board::Selected`];
//! `cargo xtask` reads the same crate for QEMU's command line). On QEMU `virt`:
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
//!
//! QEMU `sbsa-ref` has the same offsets from its DRAM at 1 TiB.

use board::{Platform, Selected as Board};

/// Start of the hypervisor's memory: its entry point (the monitor's Non-secure entry).
pub const HYPERVISOR_BASE: usize = Board::HYPERVISOR.base;
/// Size of the hypervisor's memory (image, stacks, heap, table pools).
pub const HYPERVISOR_SIZE: usize = Board::HYPERVISOR.size;
/// Where the hypervisor enters the host at EL1 (x0 = device tree).
pub const HOST_ENTRY: usize = Board::HOST_ENTRY;
/// Where QEMU's loader puts the guest image (inside host memory).
pub const GUEST_IMAGE_LOAD_ADDRESS: usize = Board::GUEST_IMAGE.base;
/// Largest guest image the host copies.
pub const GUEST_IMAGE_MAX_SIZE: usize = Board::GUEST_IMAGE.size;
/// Where the guest image runs in the guest's address space (its entry point, an IPA).
pub const GUEST_ENTRY_IPA: u64 = 0x8000_0000;
/// The host demo's own buffers (the secondaries' store targets, scratch pages of the hostile and
/// DMA scenarios), 8 MiB after the guest image's load address and below the donated memory:
/// `0x4380_0000` on QEMU `virt`.
pub const HOST_BUFFERS: u64 = (Board::GUEST_IMAGE.base + 0x80_0000) as u64;
const _: () = assert!(HOST_BUFFERS + 0x10_0000 <= Board::DONATION_BASE as u64);
/// Start of the memory the host demo donates (metadata pages, then guest memory).
pub const DONATION_BASE: usize = Board::DONATION_BASE;
