//! How the ownership core's refusals are reported to the host: every [`MemProtectError`] becomes the
//! [`HypercallError`] whose code the host's hypercall documentation promises.

use abi::hypercall::HypercallError;
use core::ops::Range;
use mem_protect::{MemProtectError, PageOwnership};

/// The host-visible error for a refused ownership change. `hypervisor_image` is the hypervisor's own
/// memory: pages in it are "out of range" for the host, like the monitor's, whereas pages the host
/// donated to the hypervisor earlier are "not owned".
pub fn hypercall_error(error: MemProtectError, hypervisor_image: &Range<u64>) -> HypercallError {
    match error {
        MemProtectError::NotAligned { .. } => HypercallError::NotAligned,
        MemProtectError::ZeroPages
        | MemProtectError::AddressOverflow { .. }
        | MemProtectError::NotMemory { .. }
        | MemProtectError::GuestAddressOutOfRange { .. } => HypercallError::OutOfRange,
        MemProtectError::UnexpectedState { address, found, .. } => match found {
            PageOwnership::Hypervisor if hypervisor_image.contains(&address) => {
                HypercallError::OutOfRange
            }
            PageOwnership::Hypervisor | PageOwnership::Guest { .. } => HypercallError::NotOwned,
            PageOwnership::Host
            | PageOwnership::SharedWithHypervisor
            | PageOwnership::SharedByGuest => HypercallError::IllegalTransition,
        },
        MemProtectError::GuestAddressInUse { .. } => HypercallError::IllegalTransition,
        MemProtectError::GuestPageMissing { .. } => HypercallError::InvalidArgument,
        MemProtectError::UnknownVm { .. } => HypercallError::UnknownVm,
        MemProtectError::VmDying { .. }
        | MemProtectError::VmNotDying { .. }
        | MemProtectError::VmHasPages { .. } => HypercallError::WrongVmState,
        MemProtectError::TooManyVms => HypercallError::LimitReached,
        MemProtectError::OutOfTableMemory { .. } => HypercallError::NoMemory,
        MemProtectError::Table(_) => HypercallError::InvalidArgument,
        MemProtectError::FirmwareCallFailed { .. } => HypercallError::FirmwareCallFailed,
        MemProtectError::DeviceAccess(mem_protect::DeviceAccessError::OutOfTableMemory) => {
            HypercallError::NoMemory
        }
        // Like a failed firmware call: the pages could not be made safe to hand over.
        MemProtectError::DeviceAccess(mem_protect::DeviceAccessError::InvalidationFailed) => {
            HypercallError::FirmwareCallFailed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mem_protect::{OwnershipKind, VmHandle};

    #[test]
    fn every_refusal_has_its_code() {
        let image = 0x4020_0000..0x4220_0000;
        let state = |address, found| MemProtectError::UnexpectedState {
            address,
            expected: OwnershipKind::Host,
            found,
        };
        let guest = PageOwnership::Guest {
            vm: VmHandle(1),
            guest_address: 0,
        };
        let table = [
            (
                MemProtectError::NotAligned { address: 1 },
                HypercallError::NotAligned,
            ),
            (MemProtectError::ZeroPages, HypercallError::OutOfRange),
            (
                MemProtectError::NotMemory {
                    address: 0x0e00_0000,
                },
                HypercallError::OutOfRange,
            ),
            (
                state(0x4020_0000, PageOwnership::Hypervisor),
                HypercallError::OutOfRange,
            ),
            (
                state(0x5000_0000, PageOwnership::Hypervisor),
                HypercallError::NotOwned,
            ),
            (state(0x5000_0000, guest), HypercallError::NotOwned),
            (
                state(0x5000_0000, PageOwnership::SharedWithHypervisor),
                HypercallError::IllegalTransition,
            ),
            (
                state(0x5000_0000, PageOwnership::Host),
                HypercallError::IllegalTransition,
            ),
            (
                MemProtectError::UnknownVm { vm: VmHandle(3) },
                HypercallError::UnknownVm,
            ),
            (
                MemProtectError::VmDying { vm: VmHandle(3) },
                HypercallError::WrongVmState,
            ),
            (MemProtectError::TooManyVms, HypercallError::LimitReached),
            (
                MemProtectError::OutOfTableMemory {
                    needed: 2,
                    available: 1,
                },
                HypercallError::NoMemory,
            ),
            (
                MemProtectError::FirmwareCallFailed { code: -1 },
                HypercallError::FirmwareCallFailed,
            ),
        ];
        for (error, expected) in table {
            assert_eq!(hypercall_error(error, &image), expected, "{error:?}");
        }
    }
}
