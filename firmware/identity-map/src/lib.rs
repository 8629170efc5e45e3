//! The stage-1 identity maps of the monitor (EL3) and the hypervisor (EL2): what their translation
//! regimes have in common. Both build one static map with `aarch64-paging` on CPU 0 (MMU off), never
//! change it, and turn it on in every CPU with the same register values: `TCR_EL3` and `SCTLR_EL3`
//! have the layout of `TCR_EL2` and `SCTLR_EL2` with `HCR_EL2.E2H` = 0, and both use the same
//! memory attributes (index 0 device, index 1 normal write-back).
//!
//! What differs stays with each image: which ranges it maps and how (Secure or Non-secure, which
//! parts of DRAM), and which exception level's registers [`enable_el2`] or [`enable_el3`] program.
//! Building the map from such a list is shared ([`build`]). A crate of its own rather than a module
//! of `firmware-runtime`: `aarch64-paging`'s `IdMap` needs `alloc`, and `firmware-runtime` is also linked
//! by the payloads, which have no allocator.
//!
//! Address size: 48 bits of virtual and physical address (root table at level 0), so that every
//! board's DRAM is reachable: QEMU `sbsa-ref` has it at 1 TiB, beyond the 39-bit virtual and 40-bit
//! physical addresses these maps had when QEMU `virt` was the only board. The extra table level
//! costs boot-time table memory only; the instruction counts of the benchmarks do not change.

#![no_std]

extern crate alloc;

use aarch64_paging::descriptor::El23Attributes;
use aarch64_paging::idmap::IdMap;
use aarch64_paging::paging::{MemoryRegion, TranslationRegime};
use cpu_setup::translation;

unsafe extern "C" {
    static __image_start: u8;
    static __rodata_start: u8;
    static __data_start: u8;
}

/// Index 0 of `MAIR_ELx` (`cpu_setup::translation::MAIR`): device nGnRE.
pub const DEVICE: El23Attributes = El23Attributes::ATTRIBUTE_INDEX_0;
/// Index 1 of `MAIR_ELx`: normal memory, inner and outer write-back, read/write-allocate.
pub const NORMAL: El23Attributes =
    El23Attributes::ATTRIBUTE_INDEX_1.union(El23Attributes::INNER_SHAREABLE);
/// Bits common to every block and page descriptor.
pub const BASE: El23Attributes = El23Attributes::VALID
    .union(El23Attributes::ACCESSED)
    .union(El23Attributes::USER_RES1);

/// Root level 0: a 48-bit (256 TiB) address space (`cpu_setup::translation::TCR`).
pub const ROOT_LEVEL: usize = 0;

/// Where the linker script put the image's parts (`__image_start`, `__rodata_start`,
/// `__data_start`): code, then read-only data, then everything writable.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    /// First byte of the code.
    pub image_start: usize,
    /// First byte of the read-only data (end of the code).
    pub rodata_start: usize,
    /// First byte of the writable data (end of the read-only data).
    pub data_start: usize,
}

impl ImageLayout {
    /// The running image's layout, from its linker script's symbols.
    pub fn of_this_image() -> Self {
        Self {
            image_start: &raw const __image_start as usize,
            rodata_start: &raw const __rodata_start as usize,
            data_start: &raw const __data_start as usize,
        }
    }

    /// The image's own mappings, as [`build`] takes them: its code read-only and executable, its
    /// read-only data read-only and never executed, and everything writable from its data up to
    /// `writable_end` (stacks, heap) never executed.
    pub fn regions(&self, writable_end: usize) -> [(usize, usize, El23Attributes); 3] {
        [
            (
                self.image_start,
                self.rodata_start,
                BASE | NORMAL | El23Attributes::READ_ONLY,
            ),
            (
                self.rodata_start,
                self.data_start,
                BASE | NORMAL | El23Attributes::READ_ONLY | El23Attributes::XN,
            ),
            (
                self.data_start,
                writable_end,
                BASE | NORMAL | El23Attributes::XN,
            ),
        ]
    }
}

/// Builds an identity map of `regions` (start, end, attributes) in `regime` and returns its root's
/// physical address. The tables live as long as the image: they are never changed or freed. Failing
/// to map a range is fatal: the image cannot run safely without its map.
pub fn build<R>(regime: R, regions: &[(usize, usize, R::Attributes)]) -> usize
where
    R: TranslationRegime<Asid = (), VaRange = ()>,
    R::Attributes: core::fmt::Debug,
{
    let mut map = IdMap::new(ROOT_LEVEL, regime);
    for &(start, end, attributes) in regions {
        if let Err(error) = map.map_range(&MemoryRegion::new(start, end), attributes) {
            panic!("cannot map {start:#x}..{end:#x} ({attributes:?}): {error}");
        }
    }
    map.mark_active();
    let root = map.root_address().0;
    core::mem::forget(map);
    root
}

/// Defines `enable_el2` and `enable_el3`: the same sequence, each on its own level's registers.
macro_rules! define_enable {
    ($name:ident, $level:literal, $register:literal, $tlbi:literal) => {
        #[doc = concat!(
            "Turns on this CPU's MMU and caches at ", $level, " with the identity map rooted at `root`",
            ": `MAIR_", $level, "`, `TCR_", $level, "`, `TTBR0_", $level,
            "`, TLB invalidation, then `SCTLR_", $level, "`.\n\n",
            "# Safety\n\n",
            "`root` must be the root of a stage-1 table for this level that covers the running code, ",
            "its data, its stack and the devices it uses at the addresses they already have (an ",
            "identity map), with this CPU at ", $level, "."
        )]
        pub unsafe fn $name(root: usize) {
            // One asm block: nothing may be reordered into the sequence that turns translation on.
            // SAFETY: the caller promises that the identity map covers everything the program uses at
            // the addresses it already has, so turning translation on changes no address in use.
            unsafe {
                core::arch::asm!(
                    concat!("msr mair_", $register, ", {mair}"),
                    concat!("msr tcr_", $register, ", {tcr}"),
                    concat!("msr ttbr0_", $register, ", {root}"),
                    "dsb sy",
                    "isb",
                    concat!("tlbi ", $tlbi),
                    "dsb sy",
                    "isb",
                    concat!("msr sctlr_", $register, ", {sctlr}"),
                    "isb",
                    mair = in(reg) translation::MAIR.bits(),
                    tcr = in(reg) translation::TCR.bits(),
                    root = in(reg) root,
                    sctlr = in(reg) translation::SCTLR_ON.bits(),
                    options(nostack),
                );
            }
        }
    };
}

define_enable!(enable_el2, "EL2", "el2", "alle2");
define_enable!(enable_el3, "EL3", "el3", "alle3");
