//! The host's EL1 stage-1 translation: a fixed identity map of the low 2 GiB in 1 GiB blocks (device
//! memory below DRAM, normal write-back memory for DRAM) and of QEMU's high PCIe ECAM
//! (256..257 GiB, device), the same on every CPU. With it the SME and
//! plain stores of the demo go to Normal memory, as a real kernel's would; what the host may really
//! touch is decided by the hypervisor's stage-2 underneath.

/// One 4 KiB translation table.
#[repr(C, align(4096))]
struct Table([u64; 512]);

/// Block descriptor bits: valid block, access flag.
const BLOCK: u64 = 0b01 | (1 << 10);
/// AttrIndx 0 (device nGnRE), privileged and unprivileged execute-never.
const DEVICE: u64 = BLOCK | (1 << 53) | (1 << 54);
/// AttrIndx 1 (normal write-back), inner shareable.
const NORMAL: u64 = BLOCK | (1 << 2) | (3 << 8);

/// Level-1 table: entry 0 covers 0..1 GiB (devices), entry 1 covers 1..2 GiB (DRAM), entry 256 the
/// GiB from 0x40_0000_0000 (the PCIe ECAM at 0x40_1000_0000).
static LEVEL1: Table = {
    let mut entries = [0; 512];
    entries[0] = DEVICE;
    entries[1] = (1 << 30) | NORMAL;
    entries[256] = (256 << 30) | DEVICE;
    Table(entries)
};

/// MAIR_EL1: index 0 device nGnRE, index 1 normal inner/outer write-back read/write-allocate.
const MAIR: u64 = 0x04 | (0xFF << 8);
/// TCR_EL1: T0SZ = 25 (512 GiB, walks start at level 1), write-back inner shareable walks, 4 KiB
/// granule, TTBR1 walks disabled (EPD1), 40-bit intermediate physical addresses.
const TCR: u64 = 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (2 << 32);
/// SCTLR_EL1: RES1 bits, MMU, data cache, stack alignment check, instruction cache.
const SCTLR: u64 = 0x30D0_0800 | 1 | (1 << 2) | (1 << 3) | (1 << 12);

/// Turns this CPU's EL1 MMU and caches on with the identity map.
pub fn enable() {
    let root = &raw const LEVEL1 as u64;
    // SAFETY: the identity map covers the host's code, data, stacks and UART at the addresses they
    // already have, so turning translation on changes no address the program uses.
    unsafe {
        core::arch::asm!(
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {root}",
            "dsb ish",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            "msr sctlr_el1, {sctlr}",
            "isb",
            mair = in(reg) MAIR,
            tcr = in(reg) TCR,
            root = in(reg) root,
            sctlr = in(reg) SCTLR,
            options(nostack),
        );
    }
}

/// Cleans `range` to the point of coherency (data the guest will read with its MMU off).
pub fn clean(range: core::ops::Range<u64>) {
    for line in range.step_by(64) {
        // SAFETY: cleaning a cache line only writes it back.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) line, options(nostack, preserves_flags)) };
    }
    // SAFETY: a barrier touches no memory.
    unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
}
