//! Stage-2 table memory per GiB donated, computed with the ownership library itself (`mem-protect`
//! over `stage2`, the code the hypervisor runs) on the host: the hypervisor has no counter of its
//! table pages that the host could read, and the tables are the same data structure on the host.
//!
//! The machine: 2 GiB of DRAM whose first GiB the host has used (its stage-2 maps it in 2 MiB blocks,
//! as the hypervisor's fault handler does), a VM with a 40-bit IPA space, and 1 GiB donated either
//! one 4 KiB page per call or one 2 MiB block per call. The figures are the host stage-2 pages the
//! donation added (blocks split into page tables where single pages leave) and the guest stage-2's
//! pages without its root (paid once per VM, whatever it holds).

use mem_protect::{
    ErratumMitigation, HypervisorPages, MemProtect, MemoryLayout, PAGE_SIZE, ProtectionPlatform,
};
use serde_json::{Value, json};
use stage2::{Geometry, PagePool, TablePage, TlbMaintenance, Vmid};

const GIB: u64 = 1 << 30;
const DRAM_START: u64 = 0x4000_0000;
const DRAM_END: u64 = DRAM_START + 2 * GIB;
const HYPERVISOR_START: u64 = DRAM_END - (16 << 20);
const GUEST_BASE: u64 = 0x1_0000_0000;
const FORBIDDEN: [std::ops::Range<u64>; 2] = [0..0x0400_0000, 0x0e00_0000..0x0f00_0000];
/// Table pages available to each stage-2 (more than 1 GiB in pages needs).
const POOL_PAGES: usize = 1200;

/// TLB maintenance and firmware calls that cost nothing: only the tables matter here.
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
    fn zero_page(&mut self, _physical_address: u64) {}
}

/// Table pages (host added, guest without root, guest root) for 1 GiB donated `pages_per_call` pages
/// at a time.
fn table_pages(pages_per_call: u64) -> Result<(usize, usize, usize), String> {
    let mut host_pages: Vec<TablePage> = (0..POOL_PAGES).map(|_| TablePage::ZEROED).collect();
    let mut guest_pages: Vec<TablePage> = (0..POOL_PAGES).map(|_| TablePage::ZEROED).collect();
    let mut hypervisor = vec![0; HypervisorPages::bytes_needed(DRAM_END - DRAM_START)];
    let layout = MemoryLayout {
        dram: DRAM_START..DRAM_END,
        hypervisor: HYPERVISOR_START..DRAM_END,
        forbidden: &FORBIDDEN,
        device: 0x0800_0000..DRAM_START,
    };
    let geometry = Geometry::from_pa_range(0b0010)
        .map_err(|error| format!("no 40-bit stage-2 geometry: {error:?}"))?;
    let mut machine = MemProtect::new(
        layout,
        geometry,
        PagePool::new(&mut host_pages),
        &mut hypervisor,
        ErratumMitigation::FirmwareDvmSync,
        NullPlatform,
    )
    .map_err(|error| format!("table memory machine: {error:?}"))?;
    let vm = machine
        .create_vm(PagePool::new(&mut guest_pages))
        .map_err(|error| format!("table memory VM: {error:?}"))?;
    for block in (DRAM_START..DRAM_START + GIB).step_by(2 << 20) {
        machine.handle_host_fault(block);
    }
    let host_before = machine.host_stage2().table_pages_in_use();
    for call in 0..GIB / PAGE_SIZE / pages_per_call {
        let offset = call * pages_per_call * PAGE_SIZE;
        machine
            .host_donate_guest(vm, DRAM_START + offset, GUEST_BASE + offset, pages_per_call)
            .map_err(|error| format!("table memory donation: {error:?}"))?;
    }
    let host = machine.host_stage2().table_pages_in_use() - host_before;
    let guest = machine.vm(vm).ok_or("the VM vanished")?.stage2();
    let root = guest.geometry().root_table_pages();
    Ok((host, guest.table_pages_in_use() - root, root))
}

/// Table memory per GiB donated, in 4 KiB pages and in 2 MiB blocks.
pub fn measure() -> Result<Value, String> {
    let mut figures = serde_json::Map::new();
    for (granule, pages_per_call) in [("page", 1), ("block", 512)] {
        let (host, guest, root) = table_pages(pages_per_call)?;
        let kib = |pages: usize| pages as u64 * PAGE_SIZE / 1024;
        figures.insert(
            granule.to_string(),
            json!({
                "pages_per_call": pages_per_call,
                "host_kib_per_gib": kib(host),
                "guest_kib_per_gib": kib(guest),
                "guest_root_kib": kib(root),
            }),
        );
    }
    figures.insert(
        "source".to_string(),
        json!("computed on the host with the ownership library (mem-protect over stage2)"),
    );
    Ok(Value::Object(figures))
}
