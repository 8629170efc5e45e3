//! The hypervisor's SMMUv3 (issue 11): taken at boot from the device tree's `arm,smmu-v3` node, its
//! node and the PCIe bridge's `iommu-map`/`msi-map` hidden from the host, its registers never in the
//! host's stage-2 (a forbidden range), every PCIe stream translated through the host's IO page table
//! (`smmu` crate), which follows the ownership rules through [`revoke`] and [`grant`] (called by
//! `platform::HypPlatform`).
//!
//! No fallback address: on a `virt` machine without `iommu=smmuv3` nothing answers at the board's
//! SMMU address and
//! a probe would take an external abort at EL2. Without an SMMU, [`owns_pcie_dma`] stays false and the
//! host must not be given the PCIe bus.
//!
//! Lock order: the hypervisor's lock, then this one.

use crate::Board;
use crate::boot_memory::BootMemory;
use board::Platform;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, Ordering};
use firmware_runtime::println;
use mem_protect::DeviceAccessError;
use smmu::{DeviceAccess, Smmu, SmmuError, SmmuMemory};
use spin::Once;
use spin::mutex::SpinMutex;

/// Where the board puts its SMMUv3 (QEMU `virt`: `-M virt,iommu=smmuv3`): the only place the
/// hypervisor accepts one, because `board::check` keeps this range forbidden to the host. Empty when
/// the board has none.
const BOARD_SMMU: Range<u64> = match Board::SMMU {
    Some(region) => region.range(),
    None => 0..0,
};

/// IO page-table pages: enough to split 255 blocks of 2 MiB (510 MiB donated page by page).
const TABLE_PAGES: usize = 256;
const MEMORY_SIZE: usize = SmmuMemory::FIXED_BYTES as usize + TABLE_PAGES * 4096;

/// The memory the SMMU reads: hypervisor memory (never in the host's stage-2 or IO page table).
#[repr(C, align(16384))]
struct SmmuArea([u8; MEMORY_SIZE]);

static AREA: BootMemory<SmmuArea> = BootMemory::new(SmmuArea([0; MEMORY_SIZE]));

/// The SMMU's registers and memory, reached at their physical addresses (identity-mapped at EL2:
/// the registers as device memory, the area as normal memory).
#[derive(Debug)]
pub struct HypDevice {
    registers: u64,
    memory: Range<u64>,
}

impl HypDevice {
    fn register(&self, offset: usize) -> u64 {
        let offset = offset as u64;
        assert!(
            offset < BOARD_SMMU.end - BOARD_SMMU.start,
            "SMMU register {offset:#x}"
        );
        self.registers + offset
    }

    fn word(&self, address: u64) -> u64 {
        assert!(
            self.memory.contains(&address) && address.is_multiple_of(8),
            "SMMU memory access at {address:#x}"
        );
        address
    }
}

impl DeviceAccess for HypDevice {
    fn read32(&mut self, offset: usize) -> u32 {
        // SAFETY: `register` checked the offset lies in the SMMU's 128 KiB of registers, which the
        // EL2 map covers as device memory; reading a register has no effect on memory.
        unsafe { (self.register(offset) as *const u32).read_volatile() }
    }

    fn write32(&mut self, offset: usize, value: u32) {
        // SAFETY: as in `read32`; only this driver programs the SMMU.
        unsafe { (self.register(offset) as *mut u32).write_volatile(value) }
    }

    fn write64(&mut self, offset: usize, value: u64) {
        // SAFETY: as in `write32`.
        unsafe { (self.register(offset) as *mut u64).write_volatile(value) }
    }

    fn read_memory(&mut self, address: u64) -> u64 {
        // SAFETY: `word` checked the address is an aligned word of the SMMU's area, hypervisor
        // memory identity-mapped at EL2 that only this driver (under its lock) touches.
        unsafe { (self.word(address) as *const u64).read_volatile() }
    }

    fn write_memory(&mut self, address: u64, value: u64) {
        // SAFETY: as in `read_memory`.
        unsafe { (self.word(address) as *mut u64).write_volatile(value) }
    }

    fn publish(&mut self) {
        // SAFETY: a barrier touches no memory. The SMMU is I/O coherent: completing the stores is
        // enough for it to see them.
        unsafe { core::arch::asm!("dsb st", options(nostack, preserves_flags)) };
    }
}

static SMMU: Once<SpinMutex<Smmu<HypDevice>>> = Once::new();
static OWNED: AtomicBool = AtomicBool::new(false);

/// Whether the hypervisor's SMMU translates every PCIe stream (the host may then be given the PCIe
/// bus: its devices reach only the host's own memory).
pub fn owns_pcie_dma() -> bool {
    OWNED.load(Ordering::Acquire)
}

/// Takes the SMMU at `registers` (from the device tree) with an IO page table mapping `host_memory`.
/// Called once, by CPU 0, before the host runs.
pub fn take_ownership(registers: device_tree::MemoryRange, host_memory: &[Range<u64>]) {
    if registers.base != BOARD_SMMU.start || registers.size > BOARD_SMMU.end - BOARD_SMMU.start {
        println!(
            "hyp: smmu: an SMMUv3 at {:#x} (size {:#x}) is not where the host is kept away from it; not used",
            registers.base, registers.size
        );
        return;
    }
    let Some(area) = AREA.take() else {
        return;
    };
    let base = area.0.as_mut_ptr() as u64;
    let memory = SmmuMemory {
        base,
        size: MEMORY_SIZE as u64,
    };
    let device = HypDevice {
        registers: registers.base,
        memory: base..base + memory.size,
    };
    match Smmu::take_ownership(device, memory, host_memory) {
        Ok(smmu) => {
            let tables = smmu.table().tables_available();
            SMMU.call_once(|| SpinMutex::new(smmu));
            OWNED.store(true, Ordering::Release);
            println!(
                "hyp: smmu: translating every PCIe stream through the host's IO page table (SMMUv3 at {:#x}; {tables} table pages free); unknown streams abort",
                registers.base
            );
        }
        Err(error) => println!(
            "hyp: smmu: cannot take the SMMUv3 at {:#x}: {error:?}; PCIe DMA is not contained",
            registers.base
        ),
    }
}

/// The host's devices lose `range` (unmap, TLB invalidation, `CMD_SYNC`).
pub fn revoke(range: Range<u64>) -> Result<(), DeviceAccessError> {
    let Some(smmu) = SMMU.get() else {
        return Ok(());
    };
    match smmu.lock().revoke(range.clone()) {
        Ok(_) => Ok(()),
        Err(SmmuError::OutOfTableMemory { needed, available }) => {
            println!(
                "hyp: smmu: no IO page-table memory to revoke {:#x}..{:#x} ({needed} pages needed, {available} left)",
                range.start, range.end
            );
            Err(DeviceAccessError::OutOfTableMemory)
        }
        Err(error) => {
            println!(
                "hyp: smmu: revoking {:#x}..{:#x} failed: {error:?}",
                range.start, range.end
            );
            Err(DeviceAccessError::InvalidationFailed)
        }
    }
}

/// The host's devices may reach `range` again.
pub fn grant(range: Range<u64>) {
    let Some(smmu) = SMMU.get() else {
        return;
    };
    if let Err(error) = smmu.lock().grant(range.clone()) {
        println!(
            "hyp: smmu: {:#x}..{:#x} stays out of DMA's reach: {error:?}",
            range.start, range.end
        );
    }
}

/// Prints the DMA faults the SMMU recorded since the last report.
pub fn report_faults() {
    let Some(smmu) = SMMU.get() else {
        return;
    };
    let mut smmu = smmu.lock();
    let (count, last) = smmu.drain_events();
    if let Some(last) = last {
        println!(
            "hyp: smmu: {count} DMA faults recorded (last: event {:#x}, stream {:#x}, {} at {:#x}); revocations so far: {}",
            last.kind,
            last.stream,
            if last.read { "read" } else { "write" },
            last.address,
            smmu.syncs()
        );
    }
}
