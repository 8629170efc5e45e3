//! Why an ownership change was refused.

use crate::ownership::{OwnershipKind, PageOwnership};
use crate::vm::VmHandle;

/// Why an ownership change was refused. Every error leaves every table and state exactly as it was,
/// except [`MemProtectError::FirmwareCallFailed`], after which the pages are back with the host (see
/// [`crate::MemProtect::host_donate_guest`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemProtectError {
    /// An address is not a multiple of the page size.
    NotAligned {
        /// The offending address.
        address: u64,
    },
    /// A range of zero pages.
    ZeroPages,
    /// `address + pages * PAGE_SIZE` does not fit in 64 bits.
    AddressOverflow {
        /// Start of the range.
        address: u64,
        /// Number of pages asked for.
        pages: u64,
    },
    /// The address is not DRAM whose ownership can change (device memory, the monitor, outside DRAM).
    NotMemory {
        /// The first address of the range that is not memory.
        address: u64,
    },
    /// A page is not in the state the transition starts from (donating twice, unsharing a page that is
    /// not shared, donating the hypervisor's memory, ...).
    UnexpectedState {
        /// The page.
        address: u64,
        /// The state the transition needs.
        expected: OwnershipKind,
        /// The state the page is in.
        found: PageOwnership,
    },
    /// The guest address range is beyond the guest's address space.
    GuestAddressOutOfRange {
        /// The first guest address outside.
        guest_address: u64,
    },
    /// A guest address already has a page behind it.
    GuestAddressInUse {
        /// The guest address.
        guest_address: u64,
    },
    /// The guest has no page at this guest address.
    GuestPageMissing {
        /// The guest address.
        guest_address: u64,
    },
    /// No protected VM has this handle.
    UnknownVm {
        /// The handle.
        vm: VmHandle,
    },
    /// The VM is being torn down and can no longer receive pages or run.
    VmDying {
        /// The handle.
        vm: VmHandle,
    },
    /// The operation needs the VM to have been torn down first.
    VmNotDying {
        /// The handle.
        vm: VmHandle,
    },
    /// The VM still has pages the host has not reclaimed.
    VmHasPages {
        /// The handle.
        vm: VmHandle,
        /// How many pages are left.
        pages: u64,
    },
    /// Every VM slot is in use.
    TooManyVms,
    /// The pool of translation-table pages cannot cover the change.
    OutOfTableMemory {
        /// Table pages the change needs.
        needed: usize,
        /// Table pages the pool has.
        available: usize,
    },
    /// The translation tables refused a change the checks had let through (a bug, reported rather
    /// than hidden).
    Table(stage2::Stage2Error),
    /// The IOMMU could not take the pages from the host's devices; the pages stay with the host.
    DeviceAccess(crate::platform::DeviceAccessError),
    /// The firmware call that completes the host's outstanding SME accesses (erratum 4193714) failed;
    /// the pages stay with the host.
    FirmwareCallFailed {
        /// What the firmware returned in x0.
        code: i64,
    },
}

impl core::fmt::Display for MemProtectError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Self::NotAligned { address } => write!(formatter, "{address:#x} is not page aligned"),
            Self::ZeroPages => write!(formatter, "a range of zero pages"),
            Self::AddressOverflow { address, pages } => {
                write!(formatter, "{pages} pages from {address:#x} overflow")
            }
            Self::NotMemory { address } => {
                write!(
                    formatter,
                    "{address:#x} is not memory whose owner can change"
                )
            }
            Self::UnexpectedState {
                address,
                expected,
                found,
            } => write!(
                formatter,
                "page {address:#x} is {found:?}, the transition needs {expected:?}"
            ),
            Self::GuestAddressOutOfRange { guest_address } => write!(
                formatter,
                "guest address {guest_address:#x} is beyond the guest's address space"
            ),
            Self::GuestAddressInUse { guest_address } => {
                write!(
                    formatter,
                    "guest address {guest_address:#x} already has a page"
                )
            }
            Self::GuestPageMissing { guest_address } => {
                write!(formatter, "no page at guest address {guest_address:#x}")
            }
            Self::UnknownVm { vm } => write!(formatter, "no VM {}", vm.0),
            Self::VmDying { vm } => write!(formatter, "VM {} is being torn down", vm.0),
            Self::VmNotDying { vm } => write!(formatter, "VM {} has not been torn down", vm.0),
            Self::VmHasPages { vm, pages } => {
                write!(formatter, "VM {} still has {pages} pages", vm.0)
            }
            Self::TooManyVms => write!(formatter, "every VM slot is in use"),
            Self::OutOfTableMemory { needed, available } => write!(
                formatter,
                "out of table memory: {needed} pages needed, {available} available"
            ),
            Self::Table(error) => write!(formatter, "translation tables refused: {error}"),
            Self::DeviceAccess(error) => write!(formatter, "IOMMU: {error}"),
            Self::FirmwareCallFailed { code } => {
                write!(
                    formatter,
                    "the erratum 4193714 firmware call answered {code}"
                )
            }
        }
    }
}

impl core::error::Error for MemProtectError {}
