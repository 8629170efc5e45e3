//! The monitor's EL3 translation regime: one identity map, built once by CPU 0 with `aarch64-paging`
//! and shared by every CPU.
//!
//! | range                        | mapping                                                     |
//! |------------------------------|-------------------------------------------------------------|
//! | GIC, UARTs, Secure GPIO      | device, execute-never                                       |
//! | monitor code                 | Secure normal memory, read-only, executable                 |
//! | monitor read-only data       | Secure normal memory, read-only, execute-never              |
//! | rest of Secure RAM           | Secure normal memory, read-write, execute-never             |
//! | DRAM (3 GiB window)          | Non-secure normal memory, read-write, execute-never         |
//!
//! Secure flash is not mapped: only the reset code runs there, with the MMU off.

use aarch64_paging::descriptor::El23Attributes;
use aarch64_paging::idmap::IdMap;
use aarch64_paging::paging::{El3, MemoryRegion};
use platform_qemu::memory_map::{DRAM_BASE, GICD_BASE, SECURE_RAM_BASE, SECURE_RAM_SIZE};
use spin::Once;

unsafe extern "C" {
    static __image_start: u8;
    static __rodata_start: u8;
    static __data_start: u8;
}

/// Root of the EL3 tables, once built.
static ROOT: Once<usize> = Once::new();

/// Index 0 of `MAIR_EL3`: device nGnRE.
const DEVICE: El23Attributes = El23Attributes::ATTRIBUTE_INDEX_0;
/// Index 1 of `MAIR_EL3`: normal memory, inner and outer write-back, read/write-allocate.
const NORMAL: El23Attributes =
    El23Attributes::ATTRIBUTE_INDEX_1.union(El23Attributes::INNER_SHAREABLE);
const MAIR_EL3_VALUE: u64 = 0x04 | (0xFF << 8);
/// Bits common to every block and page descriptor.
const BASE: El23Attributes = El23Attributes::VALID
    .union(El23Attributes::ACCESSED)
    .union(El23Attributes::USER_RES1);

/// Root level 1: a 39-bit (512 GiB) address space.
const ROOT_LEVEL: usize = 1;
/// TCR_EL3: T0SZ = 25 (39-bit VA), inner/outer write-back cacheable, inner shareable walks, 4 KiB
/// granule, 40-bit PA, RES1 bits 23 and 31.
const TCR_EL3_VALUE: u64 =
    25 | (1 << 8) | (1 << 10) | (3 << 12) | (2 << 16) | (1 << 23) | (1 << 31);
/// SCTLR_EL3: RES1 bits, MMU, alignment checks off, data cache, stack alignment check, instruction
/// cache, writable-implies-execute-never.
const SCTLR_EL3_VALUE: u64 = 0x30C5_0830 | 1 | (1 << 2) | (1 << 3) | (1 << 12) | (1 << 19);

/// Builds the identity map (CPU 0, MMU still off). Failing to build it is fatal: the monitor cannot
/// run safely without it.
pub fn build_tables() {
    ROOT.call_once(|| {
        let image_start = &raw const __image_start as usize;
        let rodata_start = &raw const __rodata_start as usize;
        let data_start = &raw const __data_start as usize;
        let secure_ram_end = SECURE_RAM_BASE + SECURE_RAM_SIZE;
        let regions = [
            (GICD_BASE, 0x0A00_0000, BASE | DEVICE | El23Attributes::XN),
            (
                image_start,
                rodata_start,
                BASE | NORMAL | El23Attributes::READ_ONLY,
            ),
            (
                rodata_start,
                data_start,
                BASE | NORMAL | El23Attributes::READ_ONLY | El23Attributes::XN,
            ),
            (
                data_start,
                secure_ram_end,
                BASE | NORMAL | El23Attributes::XN,
            ),
            (
                DRAM_BASE,
                0x1_0000_0000,
                BASE | NORMAL | El23Attributes::XN | El23Attributes::NS,
            ),
        ];
        let mut map = IdMap::new(ROOT_LEVEL, El3);
        for (start, end, attributes) in regions {
            if let Err(error) = map.map_range(&MemoryRegion::new(start, end), attributes) {
                panic!("cannot map {start:#x}..{end:#x} at EL3: {error}");
            }
        }
        map.mark_active();
        let root = map.root_address().0;
        // The tables live as long as the monitor: they are never changed or freed.
        core::mem::forget(map);
        root
    });
}

/// Turns on the MMU and the caches of this CPU with the shared identity map.
pub fn enable() {
    let Some(&root) = ROOT.get() else {
        panic!("EL3 page tables used before they were built");
    };
    // SAFETY: the identity map covers the monitor's code, data, stacks and devices with the addresses
    // they already have, so turning translation on changes no address the program uses.
    unsafe {
        core::arch::asm!(
            "msr mair_el3, {mair}",
            "msr tcr_el3, {tcr}",
            "msr ttbr0_el3, {root}",
            "dsb sy",
            "isb",
            "tlbi alle3",
            "dsb sy",
            "isb",
            "msr sctlr_el3, {sctlr}",
            "isb",
            mair = in(reg) MAIR_EL3_VALUE,
            tcr = in(reg) TCR_EL3_VALUE,
            root = in(reg) root,
            sctlr = in(reg) SCTLR_EL3_VALUE,
            options(nostack),
        );
    }
}
