//! Host-side measurements of the ownership core (feature `measurement`): what the benchmarks of
//! `cargo xtask bench` and criterion report, computed with the very code the hypervisor runs.

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

use stage2::{Geometry, PagePool, TablePage, TlbMaintenance, Vmid};

use crate::{
    ErratumMitigation, HypervisorPages, MemProtect, MemProtectError, MemoryLayout, PAGE_SIZE,
    ProtectionPlatform,
};

/// One GiB.
pub const GIB: u64 = 1 << 30;
/// Where the measured machine's DRAM starts (QEMU `virt`'s).
pub const DRAM_START: u64 = 0x4000_0000;
/// 2 GiB of DRAM: the first GiB is donated, the last 16 MiB are the hypervisor's.
pub const DRAM_END: u64 = DRAM_START + 2 * GIB;
/// The devices of the measured machine (all of them below DRAM).
const DEVICES: core::ops::Range<u64> = 0x0800_0000..DRAM_START;
/// Where the measured donations appear in the guest (a 4 GiB-aligned guest address).
pub const GUEST_BASE: u64 = 0x1_0000_0000;
const HYPERVISOR_START: u64 = DRAM_END - (16 << 20);
const FORBIDDEN: [Range<u64>; 2] = [0..0x0400_0000, 0x0e00_0000..0x0f00_0000];
/// Table pages each stage-2 may use: more than 1 GiB in 4 KiB pages needs.
const POOL_PAGES: usize = 1200;

/// TLB maintenance and firmware calls that cost nothing, so a measurement sees only the ownership
/// logic and the tables.
pub struct NullPlatform;

impl TlbMaintenance for NullPlatform {
    fn invalidate_ipa(&mut self, _vmid: Vmid, _ipa: u64, _level: u8) {}
    fn dsb_inner_shareable(&mut self) {}
    fn invalidate_stage1_for_vmid(&mut self, _vmid: Vmid) {}
    fn isb(&mut self) {}
}

impl ProtectionPlatform for NullPlatform {
    fn firmware_dvm_sync(&mut self) -> Result<(), i64> {
        Ok(())
    }
    fn zero_page(&mut self, physical_address: u64) {
        core::hint::black_box(physical_address);
    }
    fn clean_to_point_of_coherency(&mut self, range: core::ops::Range<u64>) {
        core::hint::black_box(range);
    }
}

/// The memory a [`MeasuredMachine`] borrows.
pub struct Backing {
    host: Vec<TablePage>,
    guest: Vec<TablePage>,
    hypervisor: Vec<u8>,
}

impl Backing {
    /// Fresh table pages and page-state bits for one machine.
    pub fn new() -> Self {
        Self {
            host: (0..POOL_PAGES).map(|_| TablePage::ZEROED).collect(),
            guest: (0..POOL_PAGES).map(|_| TablePage::ZEROED).collect(),
            hypervisor: vec![0; HypervisorPages::bytes_needed(DRAM_END - DRAM_START)],
        }
    }
}

impl Default for Backing {
    fn default() -> Self {
        Self::new()
    }
}

/// The machine the measurements run on.
pub type MeasuredMachine<'a> = MemProtect<'a, PagePool<'a>, NullPlatform>;

/// A machine with 2 GiB of DRAM whose first GiB the host has used (its stage-2 maps it in 2 MiB
/// blocks, as the fault handler does), and one VM with a 40-bit address space.
pub fn machine(
    backing: &mut Backing,
) -> Result<(MeasuredMachine<'_>, crate::VmHandle), MemProtectError> {
    let layout = MemoryLayout {
        dram: DRAM_START..DRAM_END,
        hypervisor: HYPERVISOR_START..DRAM_END,
        forbidden: &FORBIDDEN,
        devices: core::slice::from_ref(&DEVICES),
    };
    let geometry = Geometry::from_pa_range(0b0010).map_err(MemProtectError::Table)?;
    let mut machine = MemProtect::new(
        layout,
        geometry,
        PagePool::new(&mut backing.host),
        &mut backing.hypervisor,
        ErratumMitigation::FirmwareDvmSync,
        NullPlatform,
    )?;
    let vm = machine.create_vm(PagePool::new(&mut backing.guest))?;
    for block in (DRAM_START..DRAM_START + GIB).step_by(2 << 20) {
        machine.handle_host_fault(block);
    }
    Ok((machine, vm))
}

/// Donates the first GiB of DRAM to the VM, `pages_per_call` pages per call.
pub fn donate_gib(
    machine: &mut MeasuredMachine<'_>,
    vm: crate::VmHandle,
    pages_per_call: u64,
) -> Result<(), MemProtectError> {
    for call in 0..GIB / PAGE_SIZE / pages_per_call {
        let offset = call * pages_per_call * PAGE_SIZE;
        machine.host_donate_guest(vm, DRAM_START + offset, GUEST_BASE + offset, pages_per_call)?;
    }
    Ok(())
}

/// Translation-table pages one GiB of donation costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TablePagesPerGib {
    /// Pages the host's stage-2 gained (blocks split where single pages leave).
    pub host_added: usize,
    /// Pages of the guest's stage-2, its root excluded.
    pub guest_without_root: usize,
    /// Pages of the guest's root (paid once per VM).
    pub guest_root: usize,
}

/// The table pages of donating 1 GiB `pages_per_call` pages at a time.
pub fn table_pages_per_gib(pages_per_call: u64) -> Result<TablePagesPerGib, MemProtectError> {
    let mut backing = Backing::new();
    let (mut machine, vm) = machine(&mut backing)?;
    let host_before = machine.host_stage2().table_pages_in_use();
    donate_gib(&mut machine, vm, pages_per_call)?;
    let host_added = machine.host_stage2().table_pages_in_use() - host_before;
    let guest = machine
        .vm(vm)
        .ok_or(MemProtectError::UnknownVm { vm })?
        .stage2();
    let guest_root = guest.geometry().root_table_pages();
    Ok(TablePagesPerGib {
        host_added,
        guest_without_root: guest.table_pages_in_use() - guest_root,
        guest_root,
    })
}
