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
//!
//! # Where things are
//!
//! | module | what |
//! | --- | --- |
//! | this file | [`MemProtect`]: the state, its accessors, the host's view of a page, the shared checks |
//! | `revocation` | the erratum path (steps 1–5 above) and its rollback |
//! | `hypervisor_transitions` | host ↔ hypervisor: share, unshare, donate, give back |
//! | `guest_transitions` | host → guest donation, the guest's share and unshare |
//! | `vm_lifecycle` | create, tear down, reclaim, free a VM |
//! | `host_fault` | a host stage-2 fault: map on demand or abort |
//! | `layout`, `ownership`, `hyp_pages`, `vm`, `platform`, `error` | the types the rules use |
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod error;
mod guest_transitions;
mod host_fault;
mod hyp_pages;
mod hypervisor_transitions;
mod layout;
#[cfg(feature = "measurement")]
pub mod measurement;
mod ownership;
mod platform;
mod revocation;
mod vm;
mod vm_lifecycle;

use core::ops::Range;

use stage2::{
    Annotation, Attributes, Entry, Geometry, MappingGranule, Operation, OwnerId, PageState,
    Stage2Error, Stage2Table, TablePool, Vmid,
};

pub use error::MemProtectError;
pub use host_fault::{HostAbortReason, HostFaultOutcome};
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

    pub(crate) fn host_view(&self, page: u64) -> PageOwnership {
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
    pub(crate) fn expect_host_state(
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

    pub(crate) fn host_tables_available(&self, needed: usize) -> Result<(), MemProtectError> {
        let available = self.host.pool().available();
        if needed > available {
            return Err(MemProtectError::OutOfTableMemory { needed, available });
        }
        Ok(())
    }
}

pub(crate) fn hypervisor_annotation() -> Annotation {
    Annotation {
        owner: owner(owner_id::HYPERVISOR),
        metadata: 0,
    }
}

pub(crate) fn guest_annotation(metadata: GuestPageMetadata) -> Annotation {
    Annotation {
        owner: owner(owner_id::GUEST),
        metadata: metadata.encode(),
    }
}

pub(crate) fn owner(id: u8) -> OwnerId {
    match OwnerId::new(id) {
        Ok(owner) => owner,
        Err(_) => unreachable!("owner ids are 3-bit constants"),
    }
}

/// The host's identity mapping of one page with `state`.
pub(crate) fn host_map(address: u64, state: PageState) -> Operation {
    Operation::Map {
        pa: address,
        attributes: Attributes::NORMAL_OWNED.with_state(state),
        granule: MappingGranule::Page,
    }
}

/// A guest's mapping of donated pages from `address`: blocks wherever the range allows.
pub(crate) fn guest_map(address: u64) -> Operation {
    Operation::Map {
        pa: address,
        attributes: Attributes::NORMAL_OWNED,
        granule: MappingGranule::Largest,
    }
}

/// Table pages `operation` would allocate in `table`.
pub(crate) fn needed<P: TablePool>(
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
pub(crate) fn tables_available<P: TablePool>(
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

pub(crate) fn stage2_error(error: Stage2Error) -> MemProtectError {
    match error {
        Stage2Error::OutOfTableMemory { needed, available } => {
            MemProtectError::OutOfTableMemory { needed, available }
        }
        other => MemProtectError::Table(other),
    }
}
