//! Who owns a page, and how that is written into the host's stage-2 table.

use crate::vm::VmHandle;

/// The components that can own memory, in lock order (host, then hypervisor, then guests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// The host kernel at EL1.
    Host,
    /// The hypervisor at EL2.
    Hypervisor,
    /// A protected guest.
    Guest(VmHandle),
}

/// The state of one DRAM page, seen from every component at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageOwnership {
    /// The host owns the page and nobody else can reach it (mapped, or mapped on its next access).
    Host,
    /// The host owns the page and lends it to the hypervisor.
    SharedWithHypervisor,
    /// The hypervisor owns the page; the host takes an abort on access.
    Hypervisor,
    /// A protected guest owns the page; the host takes an abort on access.
    Guest {
        /// The owner.
        vm: VmHandle,
        /// Where the page appears in the guest's address space.
        guest_address: u64,
    },
    /// A protected guest owns the page and lends it to the host (which guest, and where, the guest's
    /// own stage-2 table says: a valid host entry has no room for it).
    SharedByGuest,
}

/// [`PageOwnership`] without its details: what a transition expects to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnershipKind {
    /// See [`PageOwnership::Host`].
    Host,
    /// See [`PageOwnership::SharedWithHypervisor`].
    SharedWithHypervisor,
    /// See [`PageOwnership::Hypervisor`].
    Hypervisor,
    /// See [`PageOwnership::Guest`].
    Guest,
    /// See [`PageOwnership::SharedByGuest`].
    SharedByGuest,
}

impl PageOwnership {
    /// The kind of state, without its details.
    pub fn kind(&self) -> OwnershipKind {
        match self {
            Self::Host => OwnershipKind::Host,
            Self::SharedWithHypervisor => OwnershipKind::SharedWithHypervisor,
            Self::Hypervisor => OwnershipKind::Hypervisor,
            Self::Guest { .. } => OwnershipKind::Guest,
            Self::SharedByGuest => OwnershipKind::SharedByGuest,
        }
    }
}

/// Owner ids written into invalid host stage-2 entries (3 bits; 0 means "the host, not annotated").
pub mod owner_id {
    /// The hypervisor owns the page.
    pub const HYPERVISOR: u8 = 1;
    /// A protected guest owns the page; the metadata says which and where.
    pub const GUEST: u8 = 2;
}

/// Bits of annotation metadata that hold the VM handle.
const VM_HANDLE_BITS: u32 = 16;
const _: () = assert!((crate::MAX_VM_HANDLE as u32) < 1 << VM_HANDLE_BITS);
/// Bits of annotation metadata that hold the guest frame offset.
pub const FRAME_OFFSET_BITS: u32 = 40;

/// The metadata of a guest-owned host stage-2 entry: the VM and the distance, in pages, from the host
/// frame to the guest frame (modulo 2^40).
///
/// Storing the *offset* rather than the guest frame makes the annotation the same for every page of a
/// donated range, so a whole range (and a whole 2 MiB or 1 GiB block) is one annotation: the guest frame of
/// any page is its host frame plus the offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestPageMetadata {
    /// The owner.
    pub vm: VmHandle,
    frame_offset: u64,
}

impl GuestPageMetadata {
    const OFFSET_MASK: u64 = (1 << FRAME_OFFSET_BITS) - 1;

    /// The metadata of a range whose first host page is `physical_address`, seen by the guest at
    /// `guest_address`.
    pub fn new(vm: VmHandle, physical_address: u64, guest_address: u64) -> Self {
        let frame_offset =
            (guest_address / crate::PAGE_SIZE).wrapping_sub(physical_address / crate::PAGE_SIZE);
        Self {
            vm,
            frame_offset: frame_offset & Self::OFFSET_MASK,
        }
    }

    /// Where the host page at `physical_address` appears in the guest.
    pub fn guest_address(&self, physical_address: u64) -> u64 {
        let frame = (physical_address / crate::PAGE_SIZE).wrapping_add(self.frame_offset)
            & Self::OFFSET_MASK;
        frame * crate::PAGE_SIZE
    }

    /// The metadata bits stored in the stage-2 annotation.
    pub fn encode(&self) -> u64 {
        (u64::from(self.vm.0) & ((1 << VM_HANDLE_BITS) - 1)) | (self.frame_offset << VM_HANDLE_BITS)
    }

    /// Reads metadata bits written by [`Self::encode`].
    pub fn decode(bits: u64) -> Self {
        let vm = VmHandle((bits & ((1 << VM_HANDLE_BITS) - 1)) as u32);
        Self {
            vm,
            frame_offset: (bits >> VM_HANDLE_BITS) & Self::OFFSET_MASK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_metadata_round_trips_for_every_page_of_a_range() {
        let cases = [
            (0x4000_0000u64, 0x0u64),
            (0x4000_0000, 0x8000_0000),
            (0x7fe0_0000, 0x1000),
            (0x1000, 0xff_ffff_f000),
        ];
        for (physical, guest) in cases {
            let metadata = GuestPageMetadata::new(VmHandle(7), physical, guest);
            let decoded = GuestPageMetadata::decode(metadata.encode());
            assert_eq!(decoded, metadata);
            for page in [0u64, 1, 511, 4096] {
                let offset = page * crate::PAGE_SIZE;
                assert_eq!(
                    decoded.guest_address(physical + offset),
                    guest + offset,
                    "{physical:#x}->{guest:#x}"
                );
            }
        }
    }
}
