//! The device tree at boot: DRAM and the devices the host may reach are read from it; the host is
//! handed a tree without the devices the hypervisor withholds (the SMMUv3 among them) and with the
//! hypervisor's memory reserved (no-map).

use crate::{Board, DRAM_BASE, HYPERVISOR_BASE, HYPERVISOR_SIZE};
use board::Platform;
use core::ops::Range;
use firmware_runtime::println;
use hyp_core::devices::HostDeviceMap;
use spin::Once;

/// The devices the host may reach (read from the device tree at boot).
static HOST_DEVICES: Once<HostDeviceMap> = Once::new();

/// The host's device allowlist (empty before boot).
pub fn host_devices() -> Option<&'static HostDeviceMap> {
    HOST_DEVICES.get()
}

/// Most DRAM the hypervisor tracks (page-state bits come from its heap: 4 MiB for 64 GiB). DRAM
/// beyond it is left out of the host's memory, with a message.
const MAX_DRAM: u64 = 64 << 30;

/// Reads DRAM and the devices from the device tree, and hands the host a tree without the devices
/// it withholds (the SMMUv3 among them: it returns its registers) and with the hypervisor's memory
/// reserved (no-map).
pub fn read_and_patch_device_tree(address: u64) -> (Range<u64>, Option<device_tree::MemoryRange>) {
    let fallback = DRAM_BASE as u64..DRAM_BASE as u64 + (1 << 30);
    // The tree may grow into the free space below the parameter block.
    let room = Board::TEST_PARAMETERS_ADDRESS - DRAM_BASE;
    // SAFETY: QEMU put the device tree at the start of DRAM; the range up to the parameter block is
    // host memory nobody else uses during boot, and the host only starts after this.
    let buffer = unsafe { core::slice::from_raw_parts_mut(address as *mut u8, room) };
    let mut editor = match device_tree::DeviceTreeEditor::new(buffer) {
        Ok(editor) => editor,
        Err(error) => panic!("cannot read the device tree ({error}): no device could be checked"),
    };
    let mut dram = match editor.tree().memory() {
        Ok(memory) => memory.base..memory.base + memory.size,
        Err(error) => {
            println!("hyp: no memory node in the device tree ({error}); assuming 1 GiB");
            fallback
        }
    };
    if dram.end - dram.start > MAX_DRAM {
        println!(
            "hyp: DRAM {:#x}..{:#x} is larger than the {} GiB the hypervisor tracks: the rest is not the host's",
            dram.start,
            dram.end,
            MAX_DRAM >> 30
        );
        dram.end = dram.start + MAX_DRAM;
    }
    // The SMMUv3 first: when the hypervisor takes it, the PCIe root complex's DMA is translated and
    // the root complex may be the host's.
    let smmu = match editor.hide_smmu_v3() {
        Ok(smmu) => smmu,
        Err(error) => panic!("cannot hide the SMMUv3 from the host's device tree: {error}"),
    };
    let devices = match HostDeviceMap::from_tree(&editor.tree(), smmu.is_some()) {
        Ok(devices) => devices,
        Err(error) => panic!("cannot build the host's device allowlist: {error}"),
    };
    let mut withheld = [0; hyp_core::devices::MAX_WITHHELD_NODES];
    for (slot, (offset, _)) in withheld.iter_mut().zip(devices.withheld()) {
        *slot = *offset;
    }
    let count = devices.withheld().len();
    match editor.remove_nodes(&mut withheld[..count]) {
        Ok(removed) => println!(
            "hyp: host devices: {} ranges allowed; {removed} devices withheld (DMA masters, unknown) and removed from its device tree",
            devices.host_ranges().len()
        ),
        Err(error) => panic!("cannot remove the withheld devices from the device tree: {error}"),
    }
    HOST_DEVICES.call_once(|| devices);
    let region = device_tree::ReservedRegion {
        name: "pkvm-hypervisor",
        base: HYPERVISOR_BASE as u64,
        size: HYPERVISOR_SIZE as u64,
    };
    match editor.add_reserved_memory(&[region]) {
        Ok(()) => println!(
            "hyp: reserved {:#x}..{:#x} (no-map) in the device tree",
            HYPERVISOR_BASE,
            HYPERVISOR_BASE + HYPERVISOR_SIZE
        ),
        Err(error) => {
            println!("hyp: cannot reserve the hypervisor's memory in the device tree: {error}")
        }
    }
    (dram, smmu)
}
