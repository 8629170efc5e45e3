//! The stage-1 identity maps of the monitor (EL3) and the hypervisor (EL2): what their translation
//! regimes have in common. Both build one static map with `aarch64-paging` on CPU 0 (MMU off), never
//! change it, and turn it on in every CPU with the same register values: `TCR_EL3` and `SCTLR_EL3`
//! have the layout of `TCR_EL2` and `SCTLR_EL2` with `HCR_EL2.E2H` = 0, and both use the same
//! memory attributes (index 0 device, index 1 normal write-back).
//!
//! What differs stays with each image: which ranges it maps and how (Secure or Non-secure, which
//! parts of DRAM), and which exception level's registers [`enable_el2`] or [`enable_el3`] program.
//! Building the map stays there too: `aarch64-paging`'s `IdMap` needs `alloc`, and this crate is
//! also linked by the payloads, which have no allocator.

unsafe extern "C" {
    static __image_start: u8;
    static __rodata_start: u8;
    static __data_start: u8;
}

/// `MAIR_ELx`: index 0 device nGnRE, index 1 normal memory, inner and outer write-back,
/// read/write-allocate.
pub const MAIR_VALUE: u64 = 0x04 | (0xFF << 8);
/// Root level 1: a 39-bit (512 GiB) address space.
pub const ROOT_LEVEL: usize = 1;
/// `TCR_EL3` / `TCR_EL2` (E2H = 0): T0SZ = 25 (39-bit VA), inner/outer write-back cacheable, inner
/// shareable walks, 4 KiB granule, 40-bit PA, RES1 bits 23 and 31.
pub const TCR_VALUE: u64 =
    25 | (1 << 8) | (1 << 10) | (3 << 12) | (2 << 16) | (1 << 23) | (1 << 31);
/// `SCTLR_EL3` / `SCTLR_EL2` (E2H = 0) with the MMU and caches off: its RES1 bits only.
pub const SCTLR_RESET: u64 = 0x30C5_0830;
/// `SCTLR_EL3` / `SCTLR_EL2` (E2H = 0) in use: RES1 bits, MMU, alignment checks off, data cache,
/// stack alignment check, instruction cache, writable-implies-execute-never.
pub const SCTLR_VALUE: u64 = SCTLR_RESET | 1 | (1 << 2) | (1 << 3) | (1 << 12) | (1 << 19);

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
                    mair = in(reg) MAIR_VALUE,
                    tcr = in(reg) TCR_VALUE,
                    root = in(reg) root,
                    sctlr = in(reg) SCTLR_VALUE,
                    options(nostack),
                );
            }
        }
    };
}

define_enable!(enable_el2, "EL2", "el2", "alle2");
define_enable!(enable_el3, "EL3", "el3", "alle3");
