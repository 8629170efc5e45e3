//! Reads and patches a flattened device tree (DTB) in place, inside a buffer the caller provides:
//! no allocation, no panic on a malformed blob, every failure an [`Error`] naming the reason.
//!
//! The EL3 monitor uses it to turn the tree QEMU hands to firmware into one a stock Linux kernel boots
//! from: a `/psci` node, `enable-method = "psci"` on every CPU, `/reserved-memory` for the monitor's and
//! the hypervisor's memory ([`DeviceTreeEditor::prepare_for_psci_boot`]), and to read the memory range,
//! the CPUs' MPIDRs and `/chosen` ([`DeviceTree`]); the hypervisor uses it to hide the SMMUv3 it owns
//! ([`DeviceTreeEditor::hide_smmu_v3`]).
//!
//! ```
//! # fn patch(buffer: &mut [u8]) -> Result<(), device_tree::Error> {
//! use device_tree::{DeviceTreeEditor, ReservedRegion};
//! let mut editor = DeviceTreeEditor::new(buffer)?;
//! let cpus = editor.prepare_for_psci_boot(&[
//!     ReservedRegion { name: "hypervisor", base: 0x4000_0000, size: 0x20_0000 },
//! ])?;
//! let memory = editor.tree().memory()?;
//! # let _ = (cpus, memory); Ok(()) }
//! ```
//!
//! # Why our own
//! The crates of the field did not fit a monitor without a heap: `fdt` and `flat_device_tree` only
//! read; `vm-fdt` only writes a new tree and needs `alloc` (or `std`); `dtoolkit` writes only with its
//! `alloc` feature; `fdt-edit` rebuilds an arena-backed tree in `alloc`. Editing in place — insert a
//! token run and shift what follows, append to the strings block, keep the header sizes and offsets
//! right, never pass the end of the buffer — is small, so it lives here. The tests check the result
//! with the independent `fdt` parser.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod boot;
mod editor;
mod format;
mod iommu;
mod reader;

pub use boot::{PSCI_COMPATIBLE, ReservedRegion};
pub use editor::DeviceTreeEditor;
pub use iommu::{PCIE_ECAM_COMPATIBLE, PCIE_IOMMU_PROPERTIES, SMMU_V3_COMPATIBLE};
pub use reader::{
    Cells, Children, Cpus, DeviceTree, MAX_WALK_DEPTH, MemoryRange, Node, Properties, Property,
    RegRanges,
};

/// Why a blob could not be read or changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The blob does not start with the device tree magic number.
    BadMagic,
    /// Older than version 17 (no structure block size) or only readable by a newer parser.
    UnsupportedVersion,
    /// A field, token or block runs past the end of the blob or the buffer.
    Truncated,
    /// The header's blocks lie outside the blob, overlap or are misaligned.
    BadLayout,
    /// The editor needs the usual block order: memory reservations, structure, strings.
    UnsupportedLayout,
    /// The structure block holds an unknown token, ends early, or names a string that is not there.
    BadStructure,
    /// The change needs `needed` bytes but the buffer holds `available`.
    BufferTooSmall {
        /// Bytes the blob would occupy after the change.
        needed: usize,
        /// Bytes the caller's buffer provides.
        available: usize,
    },
    /// No node at the given path.
    NodeNotFound,
    /// The node has no such property.
    PropertyNotFound,
    /// A property value has the wrong length or form, or a value does not fit its cells.
    BadPropertyValue,
    /// A node or property name is empty, too long, or contains `/` or NUL.
    InvalidName,
}

impl core::fmt::Display for Error {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadMagic => write!(formatter, "not a device tree (bad magic)"),
            Self::UnsupportedVersion => write!(formatter, "unsupported device tree version"),
            Self::Truncated => write!(formatter, "device tree truncated"),
            Self::BadLayout => write!(
                formatter,
                "device tree header describes an impossible layout"
            ),
            Self::UnsupportedLayout => {
                write!(formatter, "device tree blocks are not in the usual order")
            }
            Self::BadStructure => write!(formatter, "malformed device tree structure block"),
            Self::BufferTooSmall { needed, available } => {
                write!(
                    formatter,
                    "device tree needs {needed} bytes, buffer holds {available}"
                )
            }
            Self::NodeNotFound => write!(formatter, "device tree node not found"),
            Self::PropertyNotFound => write!(formatter, "device tree property not found"),
            Self::BadPropertyValue => write!(formatter, "bad device tree property value"),
            Self::InvalidName => write!(formatter, "invalid device tree node or property name"),
        }
    }
}

impl core::error::Error for Error {}
