//! QEMU 7.2 `sbsa-ref` (`hw/arm/sbsa-ref.c`), the Arm Server Base System Architecture reference
//! board. It always has EL3, EL2 and a GICv3; `cargo xtask --machine sbsa-ref` starts it with
//! `-global VGA.romfile=` so that it does not look for Debian's `vgabios-stdvga.bin`.
//!
//! ```text
//! 0x0000_0000       Secure flash0 (256 MiB)       reset vector: the monitor image (-bios)
//! 0x1000_0000       Non-secure flash1             unused
//! 0x2000_0000       Secure RAM (512 MiB)          monitor code, data, stacks, page tables
//! 0x4006_0000       GIC distributor
//! 0x4008_0000       GIC redistributors            two 64 KiB frames per CPU
//! 0x5000_0000       embedded controller (Secure)  command register: 1 powers off, 2 resets
//! 0x6000_0000       UART (PL011, Non-secure)      the one console of every image
//! 0x6003_0000       UARTs (PL011, Secure only)    two, unused, forbidden to the host
//! 0x6005_0000       SMMUv3                        not in QEMU's tree: forbidden to the host
//! 0x100_0000_0000   DRAM (Non-secure, at 1 TiB)   QEMU's device tree at the start (memory and CPUs
//!                                                 only: the monitor adds the UART and the GIC)
//! +0x1F_F000        test parameter block          then the same offsets from DRAM as on `virt`:
//! +0x20_0000        Non-secure entry (EL2)        hypervisor 32 MiB, host +0x220_0000, guest image
//!                                                 +0x300_0000, donations +0x400_0000, initramfs
//!                                                 +0x800_0000
//! ```
//!
//! DRAM at 1 TiB needs more than 40 bits of physical and intermediate physical address: the EL3 and
//! EL2 identity maps use 48-bit addresses, the stage-2 tables the CPU's whole `PARange`.
//!
//! CPUs: QEMU puts 8 in each Aff1 cluster (`sbsa_ref_cpu_mp_affinity`); the 9th CPU is MPIDR
//! `0x100`. The firmware supports two clusters.
//!
//! Power: there is no Secure GPIO wired to power (the board's PL061 is the Non-secure power
//! button); the Secure embedded controller (`hw/misc/sbsa_ec.c`) powers off or resets on a write
//! to its first register.

use crate::{
    ClusterNumbering, CommandRegisterPower, GicLayout, Platform, PowerControl, Region, Uart,
};
use core::ops::Range;

/// QEMU's `sbsa-ref` board (see the module's map).
#[derive(Clone, Copy, Debug)]
pub struct SbsaRef;

/// Start of DRAM: 1 TiB.
const DRAM: usize = 0x100_0000_0000;
/// The SMMUv3 (Non-secure registers; QEMU's tree does not describe it).
const SMMU: Region = Region::new(0x6005_0000, 0x2_0000);
/// The Secure embedded controller.
const EMBEDDED_CONTROLLER: usize = 0x5000_0000;

impl Platform for SbsaRef {
    const NAME: &'static str = "QEMU sbsa-ref";
    const QEMU_MACHINE: &'static str = "sbsa-ref";
    // The VGA device's option ROM comes from Debian's `seabios`; without a file name QEMU starts
    // without one (the firmware never uses the VGA).
    const QEMU_ARGUMENTS: &'static [&'static str] = &["-global", "VGA.romfile="];
    // QEMU 7.2 puts a tree at the start of DRAM with /memory and /cpus only.
    const DEVICE_TREE_HAS_DEVICES: bool = false;

    const SECURE_FLASH: Region = Region::new(0x0000_0000, 256 << 20);
    const SECURE_RAM: Region = Region::new(0x2000_0000, 512 << 20);
    const DRAM_BASE: usize = DRAM;
    // The board's RAM may be far larger than the tests use; 1 TiB is the window entry points may lie in.
    const DRAM_MAX_END: usize = DRAM + (1 << 40);
    const MONITOR_DRAM_WINDOW: Region = Region::new(DRAM, 0xC000_0000);
    const DEVICE_TREE: Region = Region::new(DRAM, 1 << 20);
    const TEST_PARAMETERS_ADDRESS: usize = DRAM + 0x1F_F000;
    const NON_SECURE_ENTRY: usize = DRAM + 0x20_0000;
    const HYPERVISOR: Region = Region::new(DRAM + 0x20_0000, 32 << 20);
    const HOST_ENTRY: usize = DRAM + 0x220_0000;
    const GUEST_IMAGE: Region = Region::new(DRAM + 0x300_0000, 1 << 20);
    const DONATION_BASE: usize = DRAM + 0x400_0000;
    const INITRD_ADDRESS: usize = DRAM + 0x800_0000;

    const DEVICES: Region = Region::new(0x4000_0000, 0x3000_0000);
    const GIC: GicLayout = GicLayout {
        distributor: 0x4006_0000,
        redistributors: 0x4008_0000,
        redistributor_stride: 0x2_0000,
    };
    const UART: Uart = Uart {
        base: 0x6000_0000,
        clock_hz: 24_000_000,
    };
    const POWER: PowerControl = PowerControl::CommandRegister(CommandRegisterPower {
        base: EMBEDDED_CONTROLLER,
        power_off: 1,
        reset: 2,
    });
    const SMMU: Option<Region> = Some(SMMU);
    const FORBIDDEN: &'static [Range<u64>] = &[
        Self::SECURE_FLASH.range(),
        Self::SECURE_RAM.range(),
        // The embedded controller.
        0x5000_0000..0x5000_1000,
        // The two Secure PL011s.
        0x6003_0000..0x6005_0000,
        SMMU.range(),
    ];

    const MAX_CPUS: usize = 16;
    const CPU_NUMBERING: ClusterNumbering = ClusterNumbering { cluster_shift: 3 };
}
