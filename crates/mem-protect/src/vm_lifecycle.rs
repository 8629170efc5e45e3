//! A protected VM's life: creation, teardown, reclaiming its pages, freeing it.

use stage2::{Entry, Operation, Stage2Table, TablePool, Vmid};

use crate::{
    Component, MAX_VM_HANDLE, MemProtect, MemProtectError, OwnershipKind, PAGE_SIZE, PageOwnership,
    ProtectedVm, ProtectionEvent, ProtectionPlatform, VmHandle, VmLifecycle, needed, stage2_error,
    tables_available,
};

impl<P: TablePool, F: ProtectionPlatform> MemProtect<'_, P, F> {
    /// Creates a protected VM whose stage-2 tables come from `pool` (made from pages the host donated
    /// to the hypervisor for it).
    pub fn create_vm(&mut self, pool: P) -> Result<VmHandle, MemProtectError> {
        let slot = self
            .vms
            .iter()
            .position(Option::is_none)
            .ok_or(MemProtectError::TooManyVms)?;
        let (handle, vmid) = self.next_handle();
        let stage2 = Stage2Table::new(self.guest_geometry, vmid, pool).map_err(stage2_error)?;
        self.vms[slot] = Some(ProtectedVm {
            handle,
            lifecycle: VmLifecycle::Live,
            stage2,
            pages: 0,
        });
        Ok(handle)
    }

    /// The next free handle and the VMID it doubles as.
    fn next_handle(&mut self) -> (VmHandle, Vmid) {
        loop {
            self.last_handle = if self.last_handle >= MAX_VM_HANDLE {
                1
            } else {
                self.last_handle + 1
            };
            let candidate = VmHandle(u32::from(self.last_handle));
            if self.vm(candidate).is_none() {
                return (candidate, Vmid(self.last_handle));
            }
        }
    }

    pub(crate) fn vm_slot(&self, vm: VmHandle) -> Result<usize, MemProtectError> {
        self.vms
            .iter()
            .position(|slot| {
                slot.as_ref()
                    .is_some_and(|candidate| candidate.handle == vm)
            })
            .ok_or(MemProtectError::UnknownVm { vm })
    }

    pub(crate) fn live_vm_slot(&self, vm: VmHandle) -> Result<usize, MemProtectError> {
        let slot = self.vm_slot(vm)?;
        match self.vms[slot].as_ref().map(|candidate| candidate.lifecycle) {
            Some(VmLifecycle::Live) => Ok(slot),
            _ => Err(MemProtectError::VmDying { vm }),
        }
    }

    pub(crate) fn vm_at(&self, slot: usize) -> &ProtectedVm<P> {
        match &self.vms[slot] {
            Some(vm) => vm,
            None => unreachable!("slot {slot} was just looked up"),
        }
    }

    pub(crate) fn vm_at_mut(&mut self, slot: usize) -> &mut ProtectedVm<P> {
        match &mut self.vms[slot] {
            Some(vm) => vm,
            None => unreachable!("slot {slot} was just looked up"),
        }
    }

    /// Starts tearing a VM down: it never runs again and its pages wait for [`Self::reclaim_guest_pages`].
    pub fn teardown_vm(&mut self, vm: VmHandle) -> Result<(), MemProtectError> {
        let slot = self.live_vm_slot(vm)?;
        self.vm_at_mut(slot).lifecycle = VmLifecycle::Dying;
        Ok(())
    }

    /// Gives `pages` guest pages from `guest_address` of a dying VM back to the host, each zeroed (and
    /// cleaned to the point of coherency) before the host can map it. Returns the host address of the
    /// first page.
    pub fn reclaim_guest_pages(
        &mut self,
        vm: VmHandle,
        guest_address: u64,
        pages: u64,
    ) -> Result<(), MemProtectError> {
        let slot = self.vm_slot(vm)?;
        if self.vm_at(slot).lifecycle != VmLifecycle::Dying {
            return Err(MemProtectError::VmNotDying { vm });
        }
        self.guest_range(guest_address, pages)?;
        let mut host_needed = 0;
        let mut done = 0;
        while done < pages {
            let run_start = guest_address + done * PAGE_SIZE;
            let (address, run) = self.guest_run(slot, run_start, pages - done)?;
            for page in (address..address + run * PAGE_SIZE).step_by(PAGE_SIZE as usize) {
                match self.host_view(page) {
                    PageOwnership::Guest { vm: owner, .. } if owner == vm => {}
                    PageOwnership::SharedByGuest => {}
                    found => {
                        return Err(MemProtectError::UnexpectedState {
                            address: page,
                            expected: OwnershipKind::Guest,
                            found,
                        });
                    }
                }
            }
            host_needed += needed(&self.host, address, run * PAGE_SIZE, Operation::Unmap)?;
            done += run;
        }
        tables_available(
            &self.vm_at(slot).stage2,
            guest_address,
            pages * PAGE_SIZE,
            Operation::Unmap,
        )?;
        self.host_tables_available(host_needed)?;

        // Commit, one run of contiguous host pages at a time: the guest loses the run (with TLB
        // maintenance for its VMID), every page is zeroed, then the host gets the run back.
        let mut done = 0;
        while done < pages {
            let run_start = guest_address + done * PAGE_SIZE;
            let (address, run) = self.guest_run(slot, run_start, pages - done)?;
            let size = run * PAGE_SIZE;
            self.apply_to_guest(slot, run_start, size, Operation::Unmap)
                .map_err(stage2_error)?;
            self.vm_at_mut(slot).pages -= run;
            for page in (address..address + size).step_by(PAGE_SIZE as usize) {
                self.platform.zero_page(page);
            }
            self.host
                .unmap(address, size, &mut self.platform)
                .map_err(stage2_error)?;
            self.platform.grant_device_access(address..address + size);
            self.platform
                .observe(ProtectionEvent::OwnershipTransferred {
                    range: address..address + size,
                    to: Component::Host,
                });
            done += run;
        }
        Ok(())
    }

    /// The host page behind `guest_address` and how many of the following guest pages (at most
    /// `pages`) are backed by the following host pages.
    fn guest_run(
        &self,
        slot: usize,
        guest_address: u64,
        pages: u64,
    ) -> Result<(u64, u64), MemProtectError> {
        let stage2 = &self.vm_at(slot).stage2;
        let Entry::Mapped { output: first, .. } = stage2.walk(guest_address) else {
            return Err(MemProtectError::GuestPageMissing { guest_address });
        };
        let mut run = 1;
        while run < pages {
            match stage2.walk(guest_address + run * PAGE_SIZE) {
                Entry::Mapped { output, .. } if output == first + run * PAGE_SIZE => run += 1,
                _ => break,
            }
        }
        Ok((first, run))
    }

    /// Removes a dying VM whose pages were all reclaimed; returns its table pool so the hypervisor can
    /// give the metadata pages back to the host.
    pub fn free_vm(&mut self, vm: VmHandle) -> Result<P, MemProtectError> {
        let slot = self.vm_slot(vm)?;
        let candidate = self.vm_at(slot);
        if candidate.lifecycle != VmLifecycle::Dying {
            return Err(MemProtectError::VmNotDying { vm });
        }
        if candidate.pages != 0 {
            return Err(MemProtectError::VmHasPages {
                vm,
                pages: candidate.pages,
            });
        }
        match self.vms[slot].take() {
            Some(freed) => Ok(freed.stage2.release()),
            None => Err(MemProtectError::UnknownVm { vm }),
        }
    }
}
