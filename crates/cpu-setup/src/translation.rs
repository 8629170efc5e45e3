//! The stage-1 translation controls of the monitor's and the hypervisor's identity maps (the
//! `identity-map` firmware crate turns them on). `TCR_EL3`/`SCTLR_EL3` have the layout of
//! `TCR_EL2`/`SCTLR_EL2` with `HCR_EL2.E2H` = 0, so one value serves both levels; they are typed
//! here as the EL3 registers. The EL1 payload that maps itself (the host demo) uses the same
//! attributes and walk controls ([`MAIR_EL1`], [`TCR_EL1`]).

use arm_sysregs::el1::registers::{MairEl1, TcrEl1};
use arm_sysregs::el3::registers::{MairEl3, SctlrEl3, TcrEl3};

/// `MAIR_ELx` attribute index of device memory (nGnRE).
pub const DEVICE_INDEX: u32 = 0;
/// `MAIR_ELx` attribute index of normal memory.
pub const NORMAL_INDEX: u32 = 1;

/// The memory-attribute encoding of Device-nGnRE.
pub const DEVICE_NGNRE: u8 = 0b0000_0100;
/// The memory-attribute encoding of Normal memory, inner and outer write-back non-transient,
/// read- and write-allocate.
pub const NORMAL_WRITE_BACK: u8 = 0b1111_1111;

/// `MAIR_ELx`: index 0 device nGnRE, index 1 normal write-back memory.
pub const MAIR: MairEl3 = MairEl3::empty()
    .with_attr(DEVICE_INDEX, DEVICE_NGNRE)
    .with_attr(NORMAL_INDEX, NORMAL_WRITE_BACK);

/// `T0SZ` of a 48-bit virtual address space (the root table at level 0).
pub const T0SZ_48_BITS: u8 = 64 - 48;
/// `IRGN0`/`ORGN0`: table walks write-back, read- and write-allocate.
pub const WALK_WRITE_BACK: u8 = 0b01;
/// `SH0`: table walks inner shareable.
pub const WALK_INNER_SHAREABLE: u8 = 0b11;
/// `TG0`: 4 KiB granule.
pub const GRANULE_4K: u8 = 0b00;
/// `PS`: 48-bit physical addresses (every board's DRAM; QEMU `sbsa-ref` has it at 1 TiB).
pub const PHYSICAL_48_BITS: u8 = 0b101;

/// `TCR_EL3` / `TCR_EL2` (E2H = 0): 48-bit virtual and physical addresses, write-back inner
/// shareable table walks, 4 KiB granule.
pub const TCR: TcrEl3 = TcrEl3::RES1
    .with_t0sz(T0SZ_48_BITS)
    .with_irgn0(WALK_WRITE_BACK)
    .with_orgn0(WALK_WRITE_BACK)
    .with_sh0(WALK_INNER_SHAREABLE)
    .with_tg0(GRANULE_4K)
    .with_ps(PHYSICAL_48_BITS);

/// `SCTLR_EL3` / `SCTLR_EL2` (E2H = 0) with the MMU and caches off: the RES1 bits, and EOS/EIS
/// (RES1 without FEAT_ExS: exceptions are context-synchronizing).
pub const SCTLR_OFF: SctlrEl3 = SctlrEl3::RES1.union(SctlrEl3::EOS).union(SctlrEl3::EIS);

/// `SCTLR_EL3` / `SCTLR_EL2` (E2H = 0) in use: the MMU (M), data and instruction caches (C, I),
/// stack alignment checks (SA), writable-implies-execute-never (WXN); no alignment checks.
pub const SCTLR_ON: SctlrEl3 = SCTLR_OFF
    .union(SctlrEl3::M)
    .union(SctlrEl3::C)
    .union(SctlrEl3::SA)
    .union(SctlrEl3::I)
    .union(SctlrEl3::WXN);

/// `MAIR_EL1` of an EL1 image with the same attributes as [`MAIR`].
pub const MAIR_EL1: MairEl1 = MairEl1::empty()
    .with_attr(DEVICE_INDEX, DEVICE_NGNRE)
    .with_attr(NORMAL_INDEX, NORMAL_WRITE_BACK);

/// `TCR_EL1` of an EL1 identity map like [`TCR`]: 48-bit virtual and intermediate physical
/// addresses, write-back inner shareable walks, 4 KiB granule, `TTBR1_EL1` walks disabled (`EPD1`).
pub const TCR_EL1: TcrEl1 = TcrEl1::EPD1
    .with_t0sz(T0SZ_48_BITS)
    .with_irgn0(WALK_WRITE_BACK)
    .with_orgn0(WALK_WRITE_BACK)
    .with_sh0(WALK_INNER_SHAREABLE)
    .with_tg0(GRANULE_4K)
    .with_ips(PHYSICAL_48_BITS);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_values_the_images_wrote_by_hand_before() {
        assert_eq!(MAIR.bits(), 0x04 | (0xFF << 8));
        assert_eq!(
            TCR.bits(),
            16 | (1 << 8) | (1 << 10) | (3 << 12) | (5 << 16) | (1 << 23) | (1 << 31)
        );
        assert_eq!(SCTLR_OFF.bits(), 0x30C5_0830);
        assert_eq!(
            SCTLR_ON.bits(),
            0x30C5_0830 | 1 | (1 << 2) | (1 << 3) | (1 << 12) | (1 << 19)
        );
    }

    #[test]
    fn the_el1_values_the_host_demo_wrote_by_hand_before() {
        assert_eq!(MAIR_EL1.bits(), MAIR.bits());
        assert_eq!(
            TCR_EL1.bits(),
            16 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (5 << 32)
        );
    }

    #[test]
    fn the_el2_reset_value_is_the_translation_off_value() {
        assert_eq!(SCTLR_OFF.bits(), crate::reset::SCTLR_EL2.bits());
    }

    #[test]
    fn code_is_never_executable_from_writable_memory_and_alignment_faults_are_off() {
        assert!(SCTLR_ON.contains(SctlrEl3::WXN | SctlrEl3::M));
        assert!(!SCTLR_ON.contains(SctlrEl3::A));
    }
}
