//! A small machine for the ownership tests: 4 MiB of DRAM, a recording platform, snapshots.

#![allow(dead_code)]

use std::ops::Range;

use mem_protect::{
    DeviceAccessError, ErratumMitigation, HypervisorPages, MemProtect, MemoryLayout, PAGE_SIZE,
    ProtectionEvent, ProtectionPlatform,
};
use stage2::{Geometry, PagePool, TablePage, TlbEvent, TlbMaintenance, Vmid};

pub const DRAM: Range<u64> = 0x4000_0000..0x4040_0000;
pub const HYPERVISOR: Range<u64> = 0x4038_0000..0x4040_0000;
pub const DEVICE: Range<u64> = 0x0800_0000..0x4000_0000;
pub const FORBIDDEN: [Range<u64>; 2] = [0x0000_0000..0x0400_0000, 0x0e00_0000..0x0f00_0000];
pub const DRAM_PAGES: u64 = (DRAM.end - DRAM.start) / PAGE_SIZE;

pub fn layout() -> MemoryLayout<'static> {
    MemoryLayout {
        dram: DRAM,
        hypervisor: HYPERVISOR,
        forbidden: &FORBIDDEN,
        devices: std::slice::from_ref(&DEVICE),
    }
}

/// Page `index` of DRAM.
pub const fn page(index: u64) -> u64 {
    DRAM.start + index * PAGE_SIZE
}

/// Everything the platform was asked to do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Tlb(TlbEvent),
    FirmwareCall,
    ZeroPage(u64),
    CleanToPointOfCoherency(std::ops::Range<u64>),
    Protection(ProtectionEvent),
    /// The host's devices lost the range (IOMMU unmap, invalidation, sync).
    DeviceRevoked(Range<u64>),
    /// The host's devices may reach the range again.
    DeviceGranted(Range<u64>),
}

/// Records every platform operation; the firmware call can be made to fail.
#[derive(Default)]
pub struct RecordingPlatform {
    pub events: Vec<Event>,
    pub firmware_answer: i64,
    pub firmware_calls: u64,
    /// What the IOMMU answers to a revocation (`None`: success).
    pub device_answer: Option<DeviceAccessError>,
}

impl RecordingPlatform {
    pub fn take(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }
}

impl TlbMaintenance for RecordingPlatform {
    fn invalidate_ipa(&mut self, vmid: Vmid, ipa: u64, level: u8) {
        self.events
            .push(Event::Tlb(TlbEvent::InvalidateIpa { vmid, ipa, level }));
    }
    fn dsb_inner_shareable(&mut self) {
        self.events.push(Event::Tlb(TlbEvent::DsbInnerShareable));
    }
    fn invalidate_stage1_for_vmid(&mut self, vmid: Vmid) {
        self.events
            .push(Event::Tlb(TlbEvent::InvalidateStage1ForVmid { vmid }));
    }
    fn isb(&mut self) {
        self.events.push(Event::Tlb(TlbEvent::Isb));
    }
}

impl ProtectionPlatform for RecordingPlatform {
    fn firmware_dvm_sync(&mut self) -> Result<(), i64> {
        self.events.push(Event::FirmwareCall);
        self.firmware_calls += 1;
        if self.firmware_answer == 0 {
            Ok(())
        } else {
            Err(self.firmware_answer)
        }
    }
    fn zero_page(&mut self, physical_address: u64) {
        self.events.push(Event::ZeroPage(physical_address));
    }
    fn clean_to_point_of_coherency(&mut self, range: std::ops::Range<u64>) {
        self.events.push(Event::CleanToPointOfCoherency(range));
    }
    fn revoke_device_access(&mut self, range: Range<u64>) -> Result<(), DeviceAccessError> {
        match self.device_answer {
            None => {
                self.events.push(Event::DeviceRevoked(range));
                Ok(())
            }
            Some(error) => Err(error),
        }
    }
    fn grant_device_access(&mut self, range: Range<u64>) {
        self.events.push(Event::DeviceGranted(range));
    }
    fn observe(&mut self, event: ProtectionEvent) {
        self.events.push(Event::Protection(event));
    }
}

/// The memory a [`Machine`] borrows: table pages and the hypervisor's page-state bits.
pub struct Backing {
    pub host_tables: Box<[TablePage]>,
    pub guest_tables: Vec<Box<[TablePage]>>,
    pub hypervisor_bits: Vec<u8>,
}

impl Backing {
    pub fn new(host_table_pages: usize, guests: usize, guest_table_pages: usize) -> Self {
        Self {
            host_tables: stage2::testing::table_pages(host_table_pages),
            guest_tables: (0..guests)
                .map(|_| stage2::testing::table_pages(guest_table_pages))
                .collect(),
            hypervisor_bits: vec![0; HypervisorPages::bytes_needed(DRAM.end - DRAM.start)],
        }
    }
}

pub type Machine<'a> = MemProtect<'a, PagePool<'a>, RecordingPlatform>;

pub fn geometry() -> Geometry {
    // PARange 0b0010: 40-bit physical (and guest) address space.
    match Geometry::from_pa_range(0b0010) {
        Ok(geometry) => geometry,
        Err(error) => panic!("40-bit geometry: {error}"),
    }
}

/// A machine over `backing`; guest table pools are handed out by [`Pools::next`].
pub fn machine(backing: &mut Backing, mitigation: ErratumMitigation) -> (Machine<'_>, Pools<'_>) {
    let Backing {
        host_tables,
        guest_tables,
        hypervisor_bits,
    } = backing;
    let machine = MemProtect::new(
        layout(),
        geometry(),
        PagePool::new(host_tables),
        hypervisor_bits,
        mitigation,
        RecordingPlatform::default(),
    )
    .expect("a machine with enough table memory");
    let pools = Pools {
        pools: guest_tables
            .iter_mut()
            .map(|pages| PagePool::new(pages))
            .collect(),
    };
    (machine, pools)
}

/// Table pools for the VMs a test creates.
pub struct Pools<'a> {
    pools: Vec<PagePool<'a>>,
}

impl<'a> Pools<'a> {
    pub fn next(&mut self) -> PagePool<'a> {
        self.pools.pop().expect("the test made enough guest pools")
    }
}

/// One VM's observable state.
#[derive(Debug, PartialEq, Eq)]
pub struct GuestSnapshot {
    pub handle: u32,
    pub lifecycle: mem_protect::VmLifecycle,
    pub pages: u64,
    pub descriptors: Vec<(u8, usize, u64)>,
    pub pool_available: usize,
}

/// Everything observable about the ownership state, for "nothing changed" checks.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub host_descriptors: Vec<(u8, usize, u64)>,
    pub host_tables_in_use: usize,
    pub host_pool_available: usize,
    pub hypervisor: Vec<mem_protect::HypervisorPageState>,
    pub guests: Vec<GuestSnapshot>,
}

pub fn snapshot(machine: &Machine<'_>) -> Snapshot {
    let mut host_descriptors = Vec::new();
    machine
        .host_stage2()
        .visit_descriptors(|level, _, index, descriptor| {
            host_descriptors.push((level, index, descriptor))
        });
    let hypervisor = (0..DRAM_PAGES)
        .map(|index| machine.hypervisor_pages().state(page(index)))
        .collect();
    let guests = machine
        .vms()
        .map(|vm| {
            let mut descriptors = Vec::new();
            vm.stage2()
                .visit_descriptors(|level, _, index, descriptor| {
                    descriptors.push((level, index, descriptor))
                });
            GuestSnapshot {
                handle: vm.handle().0,
                lifecycle: vm.lifecycle(),
                pages: vm.pages(),
                descriptors,
                pool_available: stage2::TablePool::available(vm.stage2().pool()),
            }
        })
        .collect();
    Snapshot {
        host_descriptors,
        host_tables_in_use: machine.host_stage2().table_pages_in_use(),
        host_pool_available: stage2::TablePool::available(machine.host_stage2().pool()),
        hypervisor,
        guests,
    }
}
