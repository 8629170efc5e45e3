//! The hypervisor's own EL2 stage-1 translation: one identity map built by CPU 0 with
//! `aarch64-paging` (its `El2` regime fits: a static identity map with no changes at run time), shared
//! by every CPU. The attributes and register values are those of `platform_qemu::identity_map`.
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
use platform_qemu::identity_map::{self, ImageLayout};
use platform_qemu::memory_map::{DRAM_BASE, GICD_BASE};
use spin::Once;

/// Root of the EL2 tables, once built.
static ROOT: Once<usize> = Once::new();

/// Index 0 of `MAIR_ELx` (`identity_map::MAIR_VALUE`): device nGnRE.
const DEVICE: El23Attributes = El23Attributes::ATTRIBUTE_INDEX_0;
/// Index 1 of `MAIR_ELx`: normal memory, inner and outer write-back, read/write-allocate.
const NORMAL: El23Attributes =
    El23Attributes::ATTRIBUTE_INDEX_1.union(El23Attributes::INNER_SHAREABLE);
/// Bits common to every block and page descriptor.
const BASE: El23Attributes = El23Attributes::VALID
    .union(El23Attributes::ACCESSED)
    .union(El23Attributes::USER_RES1);

/// SCTLR_EL2 with the MMU and caches off: its RES1 bits only.
pub const SCTLR_EL2_RESET: u64 = identity_map::SCTLR_RESET;

/// Builds the identity map (CPU 0, MMU off). Failing is fatal: the hypervisor cannot run without it.
pub fn build_tables() {
    ROOT.call_once(|| {
        let image = ImageLayout::of_this_image();
        let regions = [
            (GICD_BASE, 0x0A00_0000, BASE | DEVICE | El23Attributes::XN),
            (
                DRAM_BASE,
                image.image_start,
                BASE | NORMAL | El23Attributes::XN,
            ),
            (
                image.image_start,
                image.rodata_start,
                BASE | NORMAL | El23Attributes::READ_ONLY,
            ),
            (
                image.rodata_start,
                image.data_start,
                BASE | NORMAL | El23Attributes::READ_ONLY | El23Attributes::XN,
            ),
            (
                image.data_start,
                0x1_0000_0000,
                BASE | NORMAL | El23Attributes::XN,
            ),
        ];
        let mut map = IdMap::new(identity_map::ROOT_LEVEL, El2);
        for (start, end, attributes) in regions {
            if let Err(error) = map.map_range(&MemoryRegion::new(start, end), attributes) {
                panic!("cannot map {start:#x}..{end:#x} at EL2: {error}");
            }
        }
        map.mark_active();
        let root = map.root_address().0;
        // The tables live as long as the hypervisor: they are never changed or freed.
        core::mem::forget(map);
        root
    });
}

/// Turns on this CPU's MMU and caches with the shared identity map.
pub fn enable() {
    let Some(&root) = ROOT.get() else {
        panic!("EL2 page tables used before they were built");
    };
    // SAFETY: `root` is the identity map built above; it covers the hypervisor's code, data, stacks
    // and devices at the addresses they already have, and this code runs at EL2.
    unsafe { identity_map::enable_el2(root) };
}
