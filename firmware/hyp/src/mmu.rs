//! The hypervisor's own EL2 stage-1 translation: one identity map built by CPU 0 with
//! `aarch64-paging` (its `El2` regime fits: a static identity map with no changes at run time), shared
//! by every CPU.
//!
//! | range | mapping |
//! |---|---|
//! | GIC, UART0 | device, execute-never |
//! | hypervisor code | normal, read-only, executable |
//! | hypervisor read-only data | normal, read-only, execute-never |
//! | the rest of DRAM (3 GiB window) | normal, read-write, execute-never |
//!
//! The hypervisor maps all of DRAM because it must be able to read and zero any page; which pages it
//! may touch is recorded by `mem_protect::HypervisorPages`.

use aarch64_paging::descriptor::El23Attributes;
use aarch64_paging::idmap::IdMap;
use aarch64_paging::paging::{El2, MemoryRegion};
use platform_qemu::memory_map::{DRAM_BASE, GICD_BASE};
use spin::Once;

unsafe extern "C" {
    static __image_start: u8;
    static __rodata_start: u8;
    static __data_start: u8;
}

/// Root of the EL2 tables, once built.
static ROOT: Once<usize> = Once::new();

const DEVICE: El23Attributes = El23Attributes::ATTRIBUTE_INDEX_0;
const NORMAL: El23Attributes =
    El23Attributes::ATTRIBUTE_INDEX_1.union(El23Attributes::INNER_SHAREABLE);
/// MAIR_EL2: index 0 device nGnRE, index 1 normal write-back read/write-allocate.
const MAIR_EL2_VALUE: u64 = 0x04 | (0xFF << 8);
const BASE: El23Attributes = El23Attributes::VALID
    .union(El23Attributes::ACCESSED)
    .union(El23Attributes::USER_RES1);
const ROOT_LEVEL: usize = 1;
/// TCR_EL2 (E2H = 0): T0SZ = 25 (39-bit VA), write-back cacheable inner shareable walks, 4 KiB
/// granule, 40-bit PA, RES1 bits 23 and 31.
const TCR_EL2_VALUE: u64 =
    25 | (1 << 8) | (1 << 10) | (3 << 12) | (2 << 16) | (1 << 23) | (1 << 31);
/// SCTLR_EL2: RES1 bits, MMU, data cache, stack alignment check, instruction cache, WXN.
pub const SCTLR_EL2_VALUE: u64 = 0x30C5_0830 | 1 | (1 << 2) | (1 << 3) | (1 << 12) | (1 << 19);
/// SCTLR_EL2 with the MMU and caches off: its RES1 bits only.
pub const SCTLR_EL2_RESET: u64 = 0x30C5_0830;

/// Builds the identity map (CPU 0, MMU off). Failing is fatal: the hypervisor cannot run without it.
pub fn build_tables() {
    ROOT.call_once(|| {
        let image_start = &raw const __image_start as usize;
        let rodata_start = &raw const __rodata_start as usize;
        let data_start = &raw const __data_start as usize;
        let regions = [
            (GICD_BASE, 0x0A00_0000, BASE | DEVICE | El23Attributes::XN),
            (DRAM_BASE, image_start, BASE | NORMAL | El23Attributes::XN),
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
                0x1_0000_0000,
                BASE | NORMAL | El23Attributes::XN,
            ),
        ];
        let mut map = IdMap::new(ROOT_LEVEL, El2);
        for (start, end, attributes) in regions {
            if let Err(error) = map.map_range(&MemoryRegion::new(start, end), attributes) {
                panic!("cannot map {start:#x}..{end:#x} at EL2: {error}");
            }
        }
        map.mark_active();
        let root = map.root_address().0;
        // The tables live as long as the hypervisor: never changed or freed.
        core::mem::forget(map);
        root
    });
}

/// Turns on this CPU's MMU and caches with the shared identity map.
pub fn enable() {
    let Some(&root) = ROOT.get() else {
        panic!("EL2 page tables used before they were built");
    };
    // SAFETY: the identity map covers the hypervisor's code, data, stacks and devices at the addresses
    // they already have, so turning translation on changes no address the program uses.
    unsafe {
        core::arch::asm!(
            "msr mair_el2, {mair}",
            "msr tcr_el2, {tcr}",
            "msr ttbr0_el2, {root}",
            "dsb sy",
            "isb",
            "tlbi alle2",
            "dsb sy",
            "isb",
            "msr sctlr_el2, {sctlr}",
            "isb",
            mair = in(reg) MAIR_EL2_VALUE,
            tcr = in(reg) TCR_EL2_VALUE,
            root = in(reg) root,
            sctlr = in(reg) SCTLR_EL2_VALUE,
            options(nostack),
        );
    }
}
