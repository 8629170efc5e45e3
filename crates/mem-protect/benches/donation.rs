//! Host benchmarks of the ownership core: donating 1 GiB to a guest and reclaiming it, one page per call
//! (4 KiB mappings, as upstream Linux donates) and one 2 MiB block per call (block mappings).
//!
//! Prints the table memory each way needs per GiB, then lets criterion time the round trip; criterion's
//! throughput line gives pages per second (ns per page = 1e9 / that).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use mem_protect::{
    ErratumMitigation, HypervisorPages, MemProtect, MemoryLayout, PAGE_SIZE, ProtectionPlatform,
    VmHandle,
};
use stage2::{Geometry, PagePool, TablePage, TablePool, TlbMaintenance, Vmid};

const GIB: u64 = 1 << 30;
const DRAM_START: u64 = 0x4000_0000;
const DRAM_END: u64 = DRAM_START + 2 * GIB;
const HYPERVISOR_START: u64 = DRAM_END - (16 << 20);
const GUEST_BASE: u64 = 0x1_0000_0000;
const PAGES: u64 = GIB / PAGE_SIZE;
const FORBIDDEN: [std::ops::Range<u64>; 2] = [0..0x0400_0000, 0x0e00_0000..0x0f00_0000];

/// Costs nothing, so the figures are the ownership logic and the tables.
struct NullPlatform;

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
        black_box(physical_address);
    }
}

struct Backing {
    host: Box<[TablePage]>,
    guest: Box<[TablePage]>,
    hypervisor: Vec<u8>,
}

impl Backing {
    fn new() -> Self {
        let pages = |count: usize| {
            (0..count)
                .map(|_| TablePage::ZEROED)
                .collect::<Box<[TablePage]>>()
        };
        Self {
            host: pages(1200),
            guest: pages(1200),
            hypervisor: vec![0; HypervisorPages::bytes_needed(DRAM_END - DRAM_START)],
        }
    }
}

type Machine<'a> = MemProtect<'a, PagePool<'a>, NullPlatform>;

fn machine(backing: &mut Backing) -> (Machine<'_>, VmHandle) {
    let layout = MemoryLayout {
        dram: DRAM_START..DRAM_END,
        hypervisor: HYPERVISOR_START..DRAM_END,
        forbidden: &FORBIDDEN,
        device: 0x0800_0000..DRAM_START,
    };
    let geometry = Geometry::from_pa_range(0b0010).expect("40-bit geometry");
    let mut machine = MemProtect::new(
        layout,
        geometry,
        PagePool::new(&mut backing.host),
        &mut backing.hypervisor,
        ErratumMitigation::FirmwareDvmSync,
        NullPlatform,
    )
    .expect("machine");
    let vm = machine
        .create_vm(PagePool::new(&mut backing.guest))
        .expect("vm");
    // The host has touched all of it: mapped as blocks, as the host's fault handler maps it.
    for block in (DRAM_START..DRAM_START + GIB).step_by(2 << 20) {
        machine.handle_host_fault(block);
    }
    (machine, vm)
}

/// Donates 1 GiB in calls of `pages_per_call` pages, tears the VM down and reclaims every page.
fn donate_and_reclaim(machine: &mut Machine<'_>, vm: VmHandle, pages_per_call: u64) {
    for call in 0..PAGES / pages_per_call {
        let offset = call * pages_per_call * PAGE_SIZE;
        machine
            .host_donate_guest(vm, DRAM_START + offset, GUEST_BASE + offset, pages_per_call)
            .expect("donate");
    }
    machine.teardown_vm(vm).expect("teardown");
    machine
        .reclaim_guest_pages(vm, GUEST_BASE, PAGES)
        .expect("reclaim");
}

fn report_table_memory() {
    for (name, pages_per_call) in [("4 KiB pages", 1), ("2 MiB blocks", 512)] {
        let mut backing = Backing::new();
        let (mut machine, vm) = machine(&mut backing);
        let host_before = machine.host_stage2().table_pages_in_use();
        for call in 0..PAGES / pages_per_call {
            let offset = call * pages_per_call * PAGE_SIZE;
            machine
                .host_donate_guest(vm, DRAM_START + offset, GUEST_BASE + offset, pages_per_call)
                .expect("donate");
        }
        let host = machine.host_stage2().table_pages_in_use() - host_before;
        let guest = machine
            .vm(vm)
            .map_or(0, |vm| vm.stage2().table_pages_in_use());
        let guest_root = machine
            .vm(vm)
            .map_or(0, |vm| vm.stage2().geometry().root_table_pages());
        println!(
            "table memory per GiB donated in {name}: host stage-2 +{} KiB, guest stage-2 {} KiB ({} KiB without its {}-page root); host pool left {}",
            host * 4,
            guest * 4,
            (guest - guest_root) * 4,
            guest_root,
            machine.host_stage2().pool().available()
        );
    }
}

fn donation(criterion: &mut Criterion) {
    report_table_memory();
    let mut group = criterion.benchmark_group("donate_and_reclaim_1GiB");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(PAGES));
    for (name, pages_per_call) in [("4KiB_pages", 1), ("2MiB_blocks", 512)] {
        group.bench_function(name, |bencher| {
            bencher.iter_batched_ref(
                Backing::new,
                |backing| {
                    let (mut machine, vm) = machine(backing);
                    donate_and_reclaim(&mut machine, vm, pages_per_call);
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, donation);
criterion_main!(benches);
