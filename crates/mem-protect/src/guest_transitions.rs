//! Transitions between the host and a protected guest: donation, and the guest's share and unshare.

use core::ops::Range;

use stage2::{Entry, Operation, PageState, Stage2Error, TablePool};

use crate::{
    Component, GuestPageMetadata, MemProtect, MemProtectError, OwnershipKind, PAGE_SIZE,
    PageOwnership, ProtectionEvent, ProtectionPlatform, VmHandle, guest_annotation, guest_map,
    host_map, page_range, stage2_error, tables_available,
};

impl<P: TablePool, F: ProtectionPlatform> MemProtect<'_, P, F> {
    /// Host → guest: `pages` pages from `address`, seen by the guest from `guest_address`, in one call
    /// and with one firmware call. The host loses access: erratum path.
    pub fn host_donate_guest(
        &mut self,
        vm: VmHandle,
        address: u64,
        guest_address: u64,
        pages: u64,
    ) -> Result<(), MemProtectError> {
        let slot = self.live_vm_slot(vm)?;
        let range = self.layout.memory_range(address, pages)?;
        let size = range.end - range.start;
        let guest_range = self.guest_range(guest_address, pages)?;
        self.expect_host_state(&range, OwnershipKind::Host)?;
        let guest = self.vm_at(slot);
        for guest_page in guest_range.clone().step_by(PAGE_SIZE as usize) {
            if guest.stage2.walk(guest_page) != Entry::Unmapped {
                return Err(MemProtectError::GuestAddressInUse {
                    guest_address: guest_page,
                });
            }
        }
        tables_available(&guest.stage2, guest_address, size, guest_map(address))?;
        let annotation = guest_annotation(GuestPageMetadata::new(vm, address, guest_address));
        tables_available(&self.host, address, size, Operation::Annotate(annotation))?;

        // Commit.
        #[cfg(mutant = "mem_protect_guest_maps_before_call")]
        let _ = self.apply_to_guest(slot, guest_address, size, guest_map(address));
        if let Err(error) = self.revoke_host_access(range.clone(), annotation) {
            #[cfg(not(mutant = "mem_protect_donate_rollback_skipped"))]
            self.roll_back_to_host(range);
            return Err(error);
        }
        // The host can no longer write the pages: write back and drop what it left in the caches,
        // so a guest that starts with its MMU off (non-cacheable accesses) reads what memory holds,
        // and no dirty line of the host's is written back over the guest's data later.
        self.platform.clean_to_point_of_coherency(range.clone());
        let mapped = self.apply_to_guest(slot, guest_address, size, guest_map(address));
        if let Err(error) = mapped {
            // Cannot happen: the range and the table memory were checked above.
            self.roll_back_to_host(range);
            return Err(stage2_error(error));
        }
        self.vm_at_mut(slot).pages += pages;
        self.platform
            .observe(ProtectionEvent::OwnershipTransferred {
                range,
                to: Component::Guest(vm),
            });
        Ok(())
    }

    pub(crate) fn guest_range(
        &self,
        guest_address: u64,
        pages: u64,
    ) -> Result<Range<u64>, MemProtectError> {
        let range = page_range(guest_address, pages)?;
        if range.end > self.guest_geometry.ipa_size() {
            return Err(MemProtectError::GuestAddressOutOfRange {
                guest_address: range.start.max(self.guest_geometry.ipa_size()),
            });
        }
        Ok(range)
    }

    /// Applies `operation` to the stage-2 of the VM in `slot`.
    pub(crate) fn apply_to_guest(
        &mut self,
        slot: usize,
        address: u64,
        size: u64,
        operation: Operation,
    ) -> Result<(), Stage2Error> {
        match &mut self.vms[slot] {
            Some(vm) => vm
                .stage2
                .apply(address, size, operation, &mut self.platform),
            None => unreachable!("slot {slot} was just looked up"),
        }
    }

    /// The host page behind a guest page the guest maps with `state`.
    fn guest_page(
        &self,
        slot: usize,
        guest_address: u64,
        state: PageState,
    ) -> Result<u64, MemProtectError> {
        let vm = self.vm_at(slot);
        self.guest_range(guest_address, 1)?;
        match vm.stage2.walk(guest_address) {
            Entry::Mapped {
                output, attributes, ..
            } if attributes.state == state => Ok(output),
            Entry::Mapped {
                output, attributes, ..
            } => Err(MemProtectError::UnexpectedState {
                address: output,
                expected: match state {
                    PageState::Owned => OwnershipKind::Guest,
                    _ => OwnershipKind::SharedByGuest,
                },
                found: match attributes.state {
                    PageState::Owned => PageOwnership::Guest {
                        vm: vm.handle,
                        guest_address,
                    },
                    _ => PageOwnership::SharedByGuest,
                },
            }),
            Entry::Unmapped | Entry::Annotated(_) => {
                Err(MemProtectError::GuestPageMissing { guest_address })
            }
        }
    }

    /// The checks of a share or unshare of one guest page: the guest maps `guest_address` with
    /// `from.0` and the host sees the page as `from.1`; the guest's table can take the page state
    /// `to`. Returns the host page and the guest-side change.
    fn check_guest_page_change(
        &self,
        slot: usize,
        guest_address: u64,
        from: (PageState, OwnershipKind),
        to: PageState,
    ) -> Result<(u64, Operation), MemProtectError> {
        let address = self.guest_page(slot, guest_address, from.0)?;
        self.expect_host_state(&(address..address + PAGE_SIZE), from.1)?;
        let guest_operation = Operation::SetPageState(to);
        tables_available(
            &self.vm_at(slot).stage2,
            guest_address,
            PAGE_SIZE,
            guest_operation,
        )?;
        Ok((address, guest_operation))
    }

    /// Guest → shared with the host, one page: the host may map it (no erratum path: it gains access).
    pub fn guest_share_host(
        &mut self,
        vm: VmHandle,
        guest_address: u64,
    ) -> Result<u64, MemProtectError> {
        let slot = self.live_vm_slot(vm)?;
        let (address, guest_operation) = self.check_guest_page_change(
            slot,
            guest_address,
            (PageState::Owned, OwnershipKind::Guest),
            PageState::SharedOwned,
        )?;
        let page = address..address + PAGE_SIZE;
        let host_operation = host_map(address, PageState::SharedBorrowed);
        tables_available(&self.host, address, PAGE_SIZE, host_operation)?;

        // Commit: guest first (it still owns the page), then the host gains its mapping.
        self.apply_to_guest(slot, guest_address, PAGE_SIZE, guest_operation)
            .map_err(stage2_error)?;
        self.host
            .apply(address, PAGE_SIZE, host_operation, &mut self.platform)
            .map_err(stage2_error)?;
        self.platform
            .observe(ProtectionEvent::OwnershipTransferred {
                range: page,
                to: Component::Host,
            });
        Ok(address)
    }

    /// Shared by the guest → guest, one page. The host loses access: erratum path.
    pub fn guest_unshare_host(
        &mut self,
        vm: VmHandle,
        guest_address: u64,
    ) -> Result<u64, MemProtectError> {
        let slot = self.live_vm_slot(vm)?;
        let (address, guest_operation) = self.check_guest_page_change(
            slot,
            guest_address,
            (PageState::SharedOwned, OwnershipKind::SharedByGuest),
            PageState::Owned,
        )?;
        let page = address..address + PAGE_SIZE;
        let annotation = guest_annotation(GuestPageMetadata::new(vm, address, guest_address));
        tables_available(
            &self.host,
            address,
            PAGE_SIZE,
            Operation::Annotate(annotation),
        )?;

        // Commit.
        if let Err(error) = self.revoke_host_access(page.clone(), annotation) {
            // Back to the borrowed mapping the host had: the page table entry exists, nothing to allocate.
            let borrowed = host_map(address, PageState::SharedBorrowed);
            #[cfg(mutant = "mem_protect_unshare_rollback_keeps_annotation")]
            let borrowed = Operation::Annotate(annotation);
            if self
                .host
                .apply(address, PAGE_SIZE, borrowed, &mut self.platform)
                .is_ok()
            {
                self.platform
                    .observe(ProtectionEvent::RolledBack { range: page });
            }
            return Err(error);
        }
        self.apply_to_guest(slot, guest_address, PAGE_SIZE, guest_operation)
            .map_err(stage2_error)?;
        self.platform
            .observe(ProtectionEvent::OwnershipTransferred {
                range: page,
                to: Component::Guest(vm),
            });
        Ok(address)
    }
}
