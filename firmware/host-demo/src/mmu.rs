//! The host's EL1 stage-1 translation: a fixed identity map in 1 GiB blocks of the 512 GiB slot at
//! address 0 (the board's devices) and of the 512 GiB slot that holds the board's DRAM (the same slot
//! on QEMU `virt`, the third on `sbsa-ref`, whose DRAM is at 1 TiB): normal write-back memory for
//! the first 5 GiB of DRAM, device memory everywhere else. The same map on every CPU. With it the
//! SME and plain stores of the demo go to Normal memory, as a real kernel's would; what the host may
//! really touch is decided by the hypervisor's stage-2 underneath.

use arm_sysregs::el1::accessors::{
    write_mair_el1, write_sctlr_el1, write_tcr_el1, write_ttbr0_el1,
};
use arm_sysregs::el1::registers::{MairEl1, SctlrEl1, TcrEl1, Ttbr0El1};
use board::{Platform, Selected as Board};
use core::sync::atomic::{AtomicU64, Ordering};
use firmware_runtime::sysreg::{SCTLR_EL1_MMU_OFF, isb};

/// One 4 KiB translation table.
#[repr(C, align(4096))]
struct Table([u64; 512]);

/// The level-0 table: filled at run time with the level-1 tables' addresses.
#[repr(C, align(4096))]
struct RootTable([AtomicU64; 512]);

/// Block descriptor bits: valid block, access flag.
const BLOCK: u64 = 0b01 | (1 << 10);
/// Table descriptor bits: valid table.
const TABLE: u64 = 0b11;
/// AttrIndx 0 ([`DEVICE_INDEX`], device nGnRE), privileged and unprivileged execute-never.
const DEVICE: u64 = BLOCK | ((DEVICE_INDEX as u64) << 2) | (1 << 53) | (1 << 54);
/// AttrIndx 1 ([`NORMAL_INDEX`], normal write-back), inner shareable.
const NORMAL: u64 = BLOCK | ((NORMAL_INDEX as u64) << 2) | (3 << 8);

/// Start of DRAM.
const DRAM_BASE: u64 = Board::DRAM_BASE as u64;
/// The DRAM the host maps as normal memory (it may be smaller: the rest is never touched).
const DRAM_MAPPED: u64 = 5 << 30;
/// The level-0 slot (512 GiB) that holds DRAM.
const DRAM_SLOT: usize = (DRAM_BASE >> 39) as usize;

/// The level-1 table of 512 GiB slot `slot`: entry N covers N..N+1 GiB from the slot's start.
const fn level1(slot: usize) -> Table {
    let mut entries = [0; 512];
    let mut index = 0;
    while index < 512 {
        let address = ((slot as u64) << 39) | ((index as u64) << 30);
        let attributes = if address >= DRAM_BASE && address < DRAM_BASE + DRAM_MAPPED {
            NORMAL
        } else {
            DEVICE
        };
        entries[index] = address | attributes;
        index += 1;
    }
    Table(entries)
}

/// The devices' slot.
static LOW: Table = level1(0);
/// DRAM's slot (the same contents as [`LOW`] when DRAM is in slot 0).
static DRAM: Table = level1(DRAM_SLOT);
/// The root.
static LEVEL0: RootTable = RootTable([const { AtomicU64::new(0) }; 512]);

/// `MAIR_EL1`: index 0 device nGnRE, index 1 normal write-back memory (`cpu_setup::translation`).
const MAIR: MairEl1 = cpu_setup::translation::MAIR_EL1;
/// `MAIR_EL1` attribute index of device memory, the `AttrIndx` of [`DEVICE`].
const DEVICE_INDEX: u32 = cpu_setup::translation::DEVICE_INDEX;
/// `MAIR_EL1` attribute index of normal memory, the `AttrIndx` of [`NORMAL`].
const NORMAL_INDEX: u32 = cpu_setup::translation::NORMAL_INDEX;
/// `TCR_EL1`: 48-bit VA and IPA, write-back inner shareable walks, 4 KiB granule, no `TTBR1_EL1`
/// walks (`cpu_setup::translation`).
const TCR: TcrEl1 = cpu_setup::translation::TCR_EL1;

/// `SCTLR_EL1` in use: the translation-off value and the MMU (M), data and instruction caches (C,
/// I), stack alignment checks (SA).
const SCTLR: SctlrEl1 = SCTLR_EL1_MMU_OFF
    .union(SctlrEl1::M)
    .union(SctlrEl1::C)
    .union(SctlrEl1::SA)
    .union(SctlrEl1::I);

// The values this image wrote by hand before.
const _: () = assert!(MAIR.bits() == 0x04 | (0xFF << 8));
const _: () = assert!(TCR.bits() == 16 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (5 << 32));
const _: () = assert!(SCTLR.bits() == 0x30D0_0800 | 1 | (1 << 2) | (1 << 3) | (1 << 12));

/// Turns this CPU's EL1 MMU and caches on with the identity map.
pub fn enable() {
    // Every CPU writes the same two entries; the DSB in the sequence below orders them before the
    // walks the MMU makes.
    LEVEL0.0[0].store(&raw const LOW as u64 | TABLE, Ordering::Relaxed);
    LEVEL0.0[DRAM_SLOT].store(&raw const DRAM as u64 | TABLE, Ordering::Relaxed);
    let root = &raw const LEVEL0 as u64;
    // SAFETY: the translation controls take effect only when SCTLR_EL1.M is set below.
    unsafe {
        write_mair_el1(MAIR);
        write_tcr_el1(TCR);
        write_ttbr0_el1(Ttbr0El1::from_bits_retain(root));
    }
    // Hand-written on purpose: the barrier and TLB maintenance sequence between the translation
    // controls and SCTLR_EL1 (no accessor gives barriers or TLBI).
    // SAFETY: barriers and invalidating this EL1's TLB entries touch no memory.
    unsafe {
        core::arch::asm!(
            "dsb ish",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            options(nostack, preserves_flags)
        );
    }
    // SAFETY: the identity map covers the host's code, data, stacks and UART at the addresses they
    // already have, so turning translation on changes no address the program uses.
    unsafe { write_sctlr_el1(SCTLR) };
    isb();
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
