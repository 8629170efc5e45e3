//! Page ownership between the host, the hypervisor and protected VMs, pKVM style.
//!
//! The host's stage-2 table is the record of who owns each DRAM page: a valid entry means the host may
//! use the page (its software bits say whether it is the host's own, lent to the hypervisor, or borrowed
//! from a guest); an invalid entry *annotated* with an owner id means another component owns it and the
//! host takes an abort on access. Each protected VM has its own stage-2 table; the hypervisor's side is a
//! two-bit-per-page table ([`HypervisorPages`]).
//!
//! # Transitions
//!
//! One method per transition, named for what it does, as in Linux's `mem_protect.c`:
//!
//! | method | from | to | host loses access? |
//! | --- | --- | --- | --- |
//! | [`MemProtect::host_share_hypervisor`] | host | shared with hypervisor | no |
//! | [`MemProtect::host_unshare_hypervisor`] | shared with hypervisor | host | no |
//! | [`MemProtect::host_donate_hypervisor`] | host | hypervisor | **yes** |
//! | [`MemProtect::hypervisor_donate_host`] | hypervisor | host | no |
//! | [`MemProtect::host_donate_guest`] | host | guest | **yes** |
//! | [`MemProtect::guest_share_host`] | guest | shared by guest | no |
//! | [`MemProtect::guest_unshare_host`] | shared by guest | guest | **yes** |
//! | [`MemProtect::reclaim_guest_pages`] | guest or shared by guest, VM dying | host (zeroed) | no |
//!
//! Every transition is two-phase: first every page of the range, both tables, and the table memory the
//! change needs are checked, changing nothing; then the change is committed in steps that cannot fail.
//! A refused call leaves every table and state exactly as it was.
//!
//! # The erratum 4193714 hook
//!
//! On C1-Pro cores with SME, a `DSB` after `TLBI` does not wait for another CPU's SME loads and stores
//! that are still in flight. Wherever the host loses access to pages, the order is therefore:
//!
//! 1. write invalid, annotated host entries (break);
//! 2. TLB maintenance: `TLBI IPAS2E1IS` per entry, `DSB ISH`, `TLBI VMALLE1IS`, `DSB ISH`, `ISB`
//!    (done by [`stage2::Stage2Table`]);
//! 3. the host's devices lose the pages too ([`ProtectionPlatform::revoke_device_access`]: IOMMU
//!    unmap, IOMMU TLB invalidation, `CMD_SYNC`), once per operation;
//! 4. the firmware call `0x81000010` ([`ProtectionPlatform::firmware_dvm_sync`]), which returns once every
//!    CPU ran a DSB, only under [`ErratumMitigation::FirmwareDvmSync`], once per operation (not per page);
//! 5. only then the new owner gets the pages.
//!
//! Where the host gets pages back (a dead guest's reclaimed pages, pages the hypervisor gives it, a
//! rolled-back revocation) its devices get them back too ([`ProtectionPlatform::grant_device_access`]).
//! Pages a guest shares with the host stay out of the devices' reach: the host may touch them with
//! its CPUs only, so a guest's unshare needs no IOMMU work beyond the (idempotent) revocation.
//!
//! If the firmware call fails, the host's entries go back to "host-owned" (the host keeps its access; its
//! stage-2 maps the pages again on its next access), nothing else changed, and
//! [`MemProtectError::FirmwareCallFailed`] is returned.
//!
//! # Concurrency
//!
//! [`MemProtect`] is not internally locked: the hypervisor keeps it behind one lock, which gives the lock
//! order host → hypervisor → guest for free. It never allocates: table pages come from pools filled
//! beforehand (the host's at boot, each VM's from the metadata pages the host donated for it).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod error;
mod hyp_pages;
mod layout;
#[cfg(feature = "measurement")]
pub mod measurement;
mod ownership;
mod platform;
mod vm;

use core::ops::Range;

use stage2::{
    Annotation, Attributes, Entry, Geometry, MappingGranule, Operation, OwnerId, PageState,
    Stage2Error, Stage2Table, TablePool, Vmid,
};

pub use error::MemProtectError;
pub use hyp_pages::{HypervisorPageState, HypervisorPages};
pub use layout::{AddressKind, MemoryLayout, page_range};
pub use ownership::{Component, GuestPageMetadata, OwnershipKind, PageOwnership, owner_id};
pub use platform::{DeviceAccessError, ErratumMitigation, ProtectionEvent, ProtectionPlatform};
pub use vm::{ProtectedVm, VmHandle, VmLifecycle};

/// The translation granule.
pub const PAGE_SIZE: u64 = stage2::PAGE_SIZE;

/// How many protected VMs can exist at once.
pub const MAX_VMS: usize = 16;

/// The largest VM handle [`MemProtect::create_vm`] hands out: handles double as VMIDs, which are 8
/// bits wide (0 is the host's).
pub const MAX_VM_HANDLE: u16 = 255;

/// The VMID of the host's stage-2 (guests get their handle as VMID).
pub const HOST_VMID: Vmid = Vmid(0);

/// What the hypervisor should do about a host stage-2 fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostFaultOutcome {
    /// The page (or block) was host memory or device memory and is now mapped: retry the access.
    Mapped {
        /// The physical range now mapped.
        start: u64,
        /// Its size in bytes.
        size: u64,
    },
    /// The host may not access this address: inject an abort into the host.
    Abort(HostAbortReason),
}

/// Why the host may not access an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostAbortReason {
    /// The hypervisor owns the page.
    OwnedByHypervisor,
    /// A protected guest owns the page.
    OwnedByGuest(VmHandle),
    /// The address is the monitor's, a secure device's, or outside every region.
    Forbidden,
    /// The host stage-2 has no table memory left to map it.
    OutOfTableMemory,
}

/// The ownership state of the whole machine and the rules that change it.
pub struct MemProtect<'a, P: TablePool, F: ProtectionPlatform> {
    layout: MemoryLayout<'a>,
    host: Stage2Table<P>,
    hypervisor: HypervisorPages<'a>,
    vms: [Option<ProtectedVm<P>>; MAX_VMS],
    last_handle: u16,
    guest_geometry: Geometry,
    mitigation: ErratumMitigation,
    platform: F,
}

impl<'a, P: TablePool, F: ProtectionPlatform> MemProtect<'a, P, F> {
    /// Builds the host's stage-2 with `host_pool` and gives the hypervisor its own memory
    /// (`layout.hypervisor`), which the host can then never map.
    pub fn new(
        layout: MemoryLayout<'a>,
        geometry: Geometry,
        host_pool: P,
        hypervisor_pages: &'a mut [u8],
        mitigation: ErratumMitigation,
        mut platform: F,
    ) -> Result<Self, MemProtectError> {
        let dram_size = layout.dram.end.saturating_sub(layout.dram.start);
        if hypervisor_pages.len() < HypervisorPages::bytes_needed(dram_size) {
            return Err(MemProtectError::OutOfTableMemory {
                needed: HypervisorPages::bytes_needed(dram_size),
                available: hypervisor_pages.len(),
            });
        }
        let hypervisor_range = layout.hypervisor.clone();
        let pages = (hypervisor_range.end.saturating_sub(hypervisor_range.start)) / PAGE_SIZE;
        layout.memory_range(hypervisor_range.start, pages)?;
        let mut host = Stage2Table::new(geometry, HOST_VMID, host_pool).map_err(stage2_error)?;
        let annotation = hypervisor_annotation();
        host.annotate(
            hypervisor_range.start,
            pages * PAGE_SIZE,
            annotation,
            &mut platform,
        )
        .map_err(stage2_error)?;
        let mut hypervisor = HypervisorPages::new(layout.dram.start, hypervisor_pages);
        hypervisor.set(hypervisor_range, HypervisorPageState::Owned);
        Ok(Self {
            layout,
            host,
            hypervisor,
            vms: core::array::from_fn(|_| None),
            last_handle: 0,
            guest_geometry: geometry,
            mitigation,
            platform,
        })
    }

    /// The machine operations (tests read their recordings from it).
    pub fn platform(&self) -> &F {
        &self.platform
    }

    /// The machine operations, writable.
    pub fn platform_mut(&mut self) -> &mut F {
        &mut self.platform
    }

    /// Whether the firmware call is part of every revocation.
    pub fn mitigation(&self) -> ErratumMitigation {
        self.mitigation
    }

    /// The memory map the rules check against.
    pub fn layout(&self) -> &MemoryLayout<'a> {
        &self.layout
    }

    /// The host's stage-2 table.
    pub fn host_stage2(&self) -> &Stage2Table<P> {
        &self.host
    }

    /// The hypervisor's page states.
    pub fn hypervisor_pages(&self) -> &HypervisorPages<'a> {
        &self.hypervisor
    }

    /// The VM with this handle, if it exists.
    pub fn vm(&self, vm: VmHandle) -> Option<&ProtectedVm<P>> {
        self.vms
            .iter()
            .flatten()
            .find(|candidate| candidate.handle == vm)
    }

    /// Every VM that exists.
    pub fn vms(&self) -> impl Iterator<Item = &ProtectedVm<P>> {
        self.vms.iter().flatten()
    }

    /// Who owns the DRAM page at `address`, as the host's stage-2 records it.
    pub fn page_ownership(&self, address: u64) -> Result<PageOwnership, MemProtectError> {
        let page = address - address % PAGE_SIZE;
        self.layout.memory_range(page, 1)?;
        Ok(self.host_view(page))
    }

    fn host_view(&self, page: u64) -> PageOwnership {
        match self.host.walk(page) {
            Entry::Unmapped => PageOwnership::Host,
            Entry::Mapped { attributes, .. } => match attributes.state {
                PageState::Owned => PageOwnership::Host,
                PageState::SharedOwned => PageOwnership::SharedWithHypervisor,
                PageState::SharedBorrowed => PageOwnership::SharedByGuest,
            },
            Entry::Annotated(annotation) => match annotation.owner.value() {
                owner_id::GUEST => {
                    let metadata = GuestPageMetadata::decode(annotation.metadata);
                    PageOwnership::Guest {
                        vm: metadata.vm,
                        guest_address: metadata.guest_address(page),
                    }
                }
                // Only this crate writes annotations; any other id is read as the most restrictive owner.
                _ => PageOwnership::Hypervisor,
            },
        }
    }

    /// Checks that every page of `range` is in state `expected`.
    fn expect_host_state(
        &self,
        range: &Range<u64>,
        expected: OwnershipKind,
    ) -> Result<(), MemProtectError> {
        for page in range.clone().step_by(PAGE_SIZE as usize) {
            let found = self.host_view(page);
            if found.kind() != expected {
                return Err(MemProtectError::UnexpectedState {
                    address: page,
                    expected,
                    found,
                });
            }
        }
        Ok(())
    }

    fn host_tables_available(&self, needed: usize) -> Result<(), MemProtectError> {
        let available = self.host.pool().available();
        if needed > available {
            return Err(MemProtectError::OutOfTableMemory { needed, available });
        }
        Ok(())
    }

    /// Steps 1–4 of every revocation: annotate, TLB maintenance, the devices' access, firmware call.
    /// On a failure the caller gives the host the pages back and the error is returned.
    fn revoke_host_access(
        &mut self,
        range: Range<u64>,
        annotation: Annotation,
    ) -> Result<(), MemProtectError> {
        let size = range.end - range.start;
        self.host
            .annotate(range.start, size, annotation, &mut self.platform)
            .map_err(stage2_error)?;
        self.platform.observe(ProtectionEvent::HostAccessRevoked {
            range: range.clone(),
        });
        self.platform
            .revoke_device_access(range)
            .map_err(MemProtectError::DeviceAccess)?;
        match self.mitigation {
            ErratumMitigation::NotNeeded => Ok(()),
            ErratumMitigation::FirmwareDvmSync => match self.platform.firmware_dvm_sync() {
                Ok(()) => {
                    self.platform.observe(ProtectionEvent::FirmwareDvmSyncDone);
                    Ok(())
                }
                #[cfg(mutant = "mem_protect_ignores_call_failure")]
                Err(_) => Ok(()),
                #[cfg(not(mutant = "mem_protect_ignores_call_failure"))]
                Err(code) => Err(code),
            }
            .map_err(|code| MemProtectError::FirmwareCallFailed { code }),
        }
    }

    /// Host → shared with the hypervisor, one page. The host keeps its access.
    pub fn host_share_hypervisor(&mut self, address: u64) -> Result<(), MemProtectError> {
        let range = self.layout.memory_range(address, 1)?;
        self.expect_host_state(&range, OwnershipKind::Host)?;
        let operation = match self.host.walk(address) {
            // Only software bits change: no break-before-make, the host never loses the page.
            Entry::Mapped { .. } => Operation::SetPageState(PageState::SharedOwned),
            Entry::Unmapped | Entry::Annotated(_) => host_map(address, PageState::SharedOwned),
        };
        self.host_tables_available(needed(&self.host, address, PAGE_SIZE, operation)?)?;
        // Commit.
        self.host
            .apply(address, PAGE_SIZE, operation, &mut self.platform)
            .map_err(stage2_error)?;
        self.hypervisor
            .set(range.clone(), HypervisorPageState::Borrowed);
        self.platform
            .observe(ProtectionEvent::OwnershipTransferred {
                range,
                to: Component::Hypervisor,
            });
        Ok(())
    }

    /// Shared with the hypervisor → host, one page.
    pub fn host_unshare_hypervisor(&mut self, address: u64) -> Result<(), MemProtectError> {
        let range = self.layout.memory_range(address, 1)?;
        self.expect_host_state(&range, OwnershipKind::SharedWithHypervisor)?;
        let operation = Operation::SetPageState(PageState::Owned);
        self.host_tables_available(needed(&self.host, address, PAGE_SIZE, operation)?)?;
        // Commit.
        self.hypervisor
            .set(range.clone(), HypervisorPageState::NoAccess);
        self.host
            .apply(address, PAGE_SIZE, operation, &mut self.platform)
            .map_err(stage2_error)?;
        self.platform
            .observe(ProtectionEvent::OwnershipTransferred {
                range,
                to: Component::Host,
            });
        Ok(())
    }

    /// Host → hypervisor, `pages` pages. The host loses access: erratum path.
    pub fn host_donate_hypervisor(
        &mut self,
        address: u64,
        pages: u64,
    ) -> Result<(), MemProtectError> {
        let range = self.layout.memory_range(address, pages)?;
        self.expect_host_state(&range, OwnershipKind::Host)?;
        let annotation = hypervisor_annotation();
        let size = range.end - range.start;
        self.host_tables_available(needed(
            &self.host,
            address,
            size,
            Operation::Annotate(annotation),
        )?)?;
        // Commit.
        #[cfg(mutant = "mem_protect_hyp_owns_before_call")]
        self.hypervisor
            .set(range.clone(), HypervisorPageState::Owned);
        if let Err(error) = self.revoke_host_access(range.clone(), annotation) {
            self.roll_back_to_host(range);
            return Err(error);
        }
        self.hypervisor
            .set(range.clone(), HypervisorPageState::Owned);
        self.platform
            .observe(ProtectionEvent::OwnershipTransferred {
                range,
                to: Component::Hypervisor,
            });
        Ok(())
    }

    /// Hypervisor → host, `pages` pages the hypervisor owns (not its own image).
    pub fn hypervisor_donate_host(
        &mut self,
        address: u64,
        pages: u64,
    ) -> Result<(), MemProtectError> {
        let range = self.layout.memory_range(address, pages)?;
        if let Some(address) = range
            .clone()
            .step_by(PAGE_SIZE as usize)
            .find(|page| self.layout.hypervisor.contains(page))
        {
            return Err(MemProtectError::UnexpectedState {
                address,
                expected: OwnershipKind::Hypervisor,
                found: PageOwnership::Hypervisor,
            });
        }
        self.expect_host_state(&range, OwnershipKind::Hypervisor)?;
        self.host_tables_available(needed(
            &self.host,
            address,
            range.end - range.start,
            Operation::Unmap,
        )?)?;
        // Commit (the table change first: the checks above make it infallible, and if it were not,
        // nothing would have changed).
        self.give_back_to_host(range.clone())?;
        self.platform.grant_device_access(range.clone());
        self.hypervisor
            .set(range.clone(), HypervisorPageState::NoAccess);
        self.platform
            .observe(ProtectionEvent::OwnershipTransferred {
                range,
                to: Component::Host,
            });
        Ok(())
    }

    /// Returns annotated pages to the host: their entries become plain invalid, which the host's
    /// stage-2 reads as "host-owned, map on the next access". Needs no table memory when the range was
    /// just annotated (the entries already exist at the right level), and no TLB maintenance (nothing
    /// valid changes).
    fn give_back_to_host(&mut self, range: Range<u64>) -> Result<(), MemProtectError> {
        let size = range.end - range.start;
        self.host
            .unmap(range.start, size, &mut self.platform)
            .map_err(stage2_error)
    }

    /// Undoes a revocation whose firmware call (or, impossibly, whose commit) failed.
    fn roll_back_to_host(&mut self, range: Range<u64>) {
        if self.give_back_to_host(range.clone()).is_ok() {
            self.platform.grant_device_access(range.clone());
            self.platform.observe(ProtectionEvent::RolledBack { range });
        }
    }

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

    fn vm_slot(&self, vm: VmHandle) -> Result<usize, MemProtectError> {
        self.vms
            .iter()
            .position(|slot| {
                slot.as_ref()
                    .is_some_and(|candidate| candidate.handle == vm)
            })
            .ok_or(MemProtectError::UnknownVm { vm })
    }

    fn live_vm_slot(&self, vm: VmHandle) -> Result<usize, MemProtectError> {
        let slot = self.vm_slot(vm)?;
        match self.vms[slot].as_ref().map(|candidate| candidate.lifecycle) {
            Some(VmLifecycle::Live) => Ok(slot),
            _ => Err(MemProtectError::VmDying { vm }),
        }
    }

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

    fn guest_range(&self, guest_address: u64, pages: u64) -> Result<Range<u64>, MemProtectError> {
        let range = page_range(guest_address, pages)?;
        if range.end > self.guest_geometry.ipa_size() {
            return Err(MemProtectError::GuestAddressOutOfRange {
                guest_address: range.start.max(self.guest_geometry.ipa_size()),
            });
        }
        Ok(range)
    }

    fn vm_at(&self, slot: usize) -> &ProtectedVm<P> {
        match &self.vms[slot] {
            Some(vm) => vm,
            None => unreachable!("slot {slot} was just looked up"),
        }
    }

    fn vm_at_mut(&mut self, slot: usize) -> &mut ProtectedVm<P> {
        match &mut self.vms[slot] {
            Some(vm) => vm,
            None => unreachable!("slot {slot} was just looked up"),
        }
    }

    /// Applies `operation` to the stage-2 of the VM in `slot`.
    fn apply_to_guest(
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

    /// Decides what a host stage-2 fault at `address` means: map host or device memory on demand
    /// (a whole 2 MiB block of host memory when nothing in it is annotated or mapped), or make the
    /// host take an abort.
    pub fn handle_host_fault(&mut self, address: u64) -> HostFaultOutcome {
        let page = address - address % PAGE_SIZE;
        match self.layout.classify(page) {
            AddressKind::Forbidden => HostFaultOutcome::Abort(HostAbortReason::Forbidden),
            AddressKind::Device => {
                // The largest block that is all allowed device memory and where the host's table
                // has nothing yet (a block never replaces mappings made before).
                let block = self
                    .layout
                    .device_block(page, &DEVICE_BLOCK_SIZES)
                    .filter(|block| {
                        block.end - block.start == PAGE_SIZE || self.host_range_unused(block)
                    })
                    .unwrap_or(page..page + PAGE_SIZE);
                self.map_on_demand(
                    block.start,
                    block.end - block.start,
                    Attributes::DEVICE_OWNED,
                )
            }
            AddressKind::Memory => match self.host.walk(page) {
                Entry::Annotated(_) => HostFaultOutcome::Abort(match self.host_view(page) {
                    PageOwnership::Guest { vm, .. } => HostAbortReason::OwnedByGuest(vm),
                    _ => HostAbortReason::OwnedByHypervisor,
                }),
                // Already mapped (another CPU faulted on it first): just retry.
                Entry::Mapped { .. } => HostFaultOutcome::Mapped {
                    start: page,
                    size: PAGE_SIZE,
                },
                Entry::Unmapped => {
                    let block = page - page % stage2::BLOCK_SIZE_2M;
                    let block_range = block..block + stage2::BLOCK_SIZE_2M;
                    let whole_block_free = self
                        .layout
                        .memory_range(block, stage2::BLOCK_SIZE_2M / PAGE_SIZE)
                        .is_ok()
                        && self.host_block_unused(block);
                    if whole_block_free {
                        self.map_on_demand(
                            block_range.start,
                            stage2::BLOCK_SIZE_2M,
                            Attributes::NORMAL_OWNED,
                        )
                    } else {
                        self.map_on_demand(page, PAGE_SIZE, Attributes::NORMAL_OWNED)
                    }
                }
            },
        }
    }

    /// Whether nothing in the 2 MiB block at `block` is mapped or annotated.
    fn host_block_unused(&self, block: u64) -> bool {
        self.host_range_unused(&(block..block + stage2::BLOCK_SIZE_2M))
    }

    /// Whether nothing in `range` is mapped or annotated in the host's stage-2.
    fn host_range_unused(&self, range: &core::ops::Range<u64>) -> bool {
        let mut unused = true;
        let visited = self
            .host
            .visit_leaves(range.start, range.end - range.start, |leaf| {
                unused &= leaf.entry == Entry::Unmapped;
            });
        visited.is_ok() && unused
    }

    fn map_on_demand(&mut self, start: u64, size: u64, attributes: Attributes) -> HostFaultOutcome {
        let operation = Operation::Map {
            pa: start,
            attributes,
            granule: MappingGranule::Largest,
        };
        if tables_available(&self.host, start, size, operation).is_err() {
            return HostFaultOutcome::Abort(HostAbortReason::OutOfTableMemory);
        }
        match self.host.apply(start, size, operation, &mut self.platform) {
            Ok(()) => HostFaultOutcome::Mapped { start, size },
            Err(_) => HostFaultOutcome::Abort(HostAbortReason::OutOfTableMemory),
        }
    }
}

/// Block sizes device memory is mapped in for the host, largest first (then a page).
const DEVICE_BLOCK_SIZES: [u64; 2] = [1 << 30, stage2::BLOCK_SIZE_2M];

fn hypervisor_annotation() -> Annotation {
    Annotation {
        owner: owner(owner_id::HYPERVISOR),
        metadata: 0,
    }
}

fn guest_annotation(metadata: GuestPageMetadata) -> Annotation {
    Annotation {
        owner: owner(owner_id::GUEST),
        metadata: metadata.encode(),
    }
}

fn owner(id: u8) -> OwnerId {
    match OwnerId::new(id) {
        Ok(owner) => owner,
        Err(_) => unreachable!("owner ids are 3-bit constants"),
    }
}

/// The host's identity mapping of one page with `state`.
fn host_map(address: u64, state: PageState) -> Operation {
    Operation::Map {
        pa: address,
        attributes: Attributes::NORMAL_OWNED.with_state(state),
        granule: MappingGranule::Page,
    }
}

/// A guest's mapping of donated pages from `address`: blocks wherever the range allows.
fn guest_map(address: u64) -> Operation {
    Operation::Map {
        pa: address,
        attributes: Attributes::NORMAL_OWNED,
        granule: MappingGranule::Largest,
    }
}

/// Table pages `operation` would allocate in `table`.
fn needed<P: TablePool>(
    table: &Stage2Table<P>,
    address: u64,
    size: u64,
    operation: Operation,
) -> Result<usize, MemProtectError> {
    table
        .tables_needed(address, size, operation)
        .map_err(stage2_error)
}

/// Checks that `table`'s pool covers `operation`.
fn tables_available<P: TablePool>(
    table: &Stage2Table<P>,
    address: u64,
    size: u64,
    operation: Operation,
) -> Result<(), MemProtectError> {
    let needed = needed(table, address, size, operation)?;
    let available = table.pool().available();
    if needed > available {
        return Err(MemProtectError::OutOfTableMemory { needed, available });
    }
    Ok(())
}

fn stage2_error(error: Stage2Error) -> MemProtectError {
    match error {
        Stage2Error::OutOfTableMemory { needed, available } => {
            MemProtectError::OutOfTableMemory { needed, available }
        }
        other => MemProtectError::Table(other),
    }
}
