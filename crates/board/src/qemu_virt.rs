//! QEMU 7.2 `virt` with `secure=on,virtualization=on,gic-version=3` (`cargo xtask` starts it so).
//!
//! ```text
//! 0x0000_0000  Secure flash (64 MiB)        reset vector: the monitor image (-bios)
//! 0x0800_0000  GIC distributor
//! 0x080A_0000  GIC redistributors           two 64 KiB frames per CPU
//! 0x0900_0000  UART0 (PL011, Non-secure)    the one console of every image (the test harness reads it)
//! 0x0904_0000  UART1 (PL011, Secure only)   unused, forbidden to the host
//! 0x0905_0000  SMMUv3 (iommu=smmuv3)        the hypervisor's, forbidden to the host
//! 0x090B_0000  Secure GPIO (PL061)          pin 0 powers the board off, pin 1 resets it
//! 0x0E00_0000  Secure RAM (16 MiB)          monitor code, data, stacks, page tables
//! 0x4000_0000  DRAM (Non-secure)            QEMU's device tree at the start (1 MiB kept for it: the
//!                                          monitor adds /psci and /reserved-memory in place)
//! 0x401F_F000  test parameter block         written by `-device loader` in the QEMU tests
//! 0x4020_0000  Non-secure entry (EL2)       the hypervisor's 32 MiB (or the test payload, or Linux)
//! 0x4220_0000  host entry (EL1)             host demo
//! 0x4300_0000  guest image                  as QEMU's loader puts it (host memory)
//! 0x4400_0000  donated memory               what the host demo gives away
//! 0x4800_0000  initramfs                    `cargo xtask run --initrd`
//! ```
//!
//! The Non-secure entry is 2 MiB aligned so that an arm64 Linux `Image` (text offset 0) can be loaded
//! there directly.

use crate::{ClusterNumbering, GicLayout, GpioPower, Platform, PowerControl, Region, Uart};
use core::ops::Range;

/// QEMU's `virt` board (see the module's map).
#[derive(Clone, Copy, Debug)]
pub struct QemuVirt;

/// Where QEMU `virt` puts the SMMUv3 (`-M virt,iommu=smmuv3`).
const SMMU: Region = Region::new(0x0905_0000, 0x2_0000);

impl Platform for QemuVirt {
    const NAME: &'static str = "QEMU virt";
    const QEMU_MACHINE: &'static str = "virt,secure=on,virtualization=on,gic-version=3";
    const QEMU_ARGUMENTS: &'static [&'static str] = &[];
    // QEMU's tree describes every device of the board.
    const DEVICE_TREE_HAS_DEVICES: bool = true;

    const SECURE_FLASH: Region = Region::new(0x0000_0000, 64 << 20);
    const SECURE_RAM: Region = Region::new(0x0E00_0000, 16 << 20);
    const DRAM_BASE: usize = 0x4000_0000;
    // 255 GiB from 0x40_0000_0000 is where QEMU's high peripherals may start.
    const DRAM_MAX_END: usize = 0x40_0000_0000;
    // 3 GiB: the device tree and any entry point the tests use.
    const MONITOR_DRAM_WINDOW: Region = Region::new(0x4000_0000, 0xC000_0000);
    // QEMU places the tree at the start of DRAM when firmware is given with `-bios`; its tree is far
    // smaller than the 1 MiB kept for it.
    const DEVICE_TREE: Region = Region::new(0x4000_0000, 1 << 20);
    const TEST_PARAMETERS_ADDRESS: usize = 0x401F_F000;
    const NON_SECURE_ENTRY: usize = 0x4020_0000;
    const HYPERVISOR: Region = Region::new(0x4020_0000, 32 << 20);
    const HOST_ENTRY: usize = 0x4220_0000;
    const GUEST_IMAGE: Region = Region::new(0x4300_0000, 1 << 20);
    const DONATION_BASE: usize = 0x4400_0000;
    // Well after the kernel's `image_size` (27 MiB for Debian's 6.1 cloud kernel) from 0x4020_0000.
    const INITRD_ADDRESS: usize = 0x4800_0000;

    const DEVICES: Region = Region::new(0x0800_0000, 0x0200_0000);
    const GIC: GicLayout = GicLayout {
        distributor: 0x0800_0000,
        redistributors: 0x080A_0000,
        redistributor_stride: 0x2_0000,
    };
    const UART: Uart = Uart {
        base: 0x0900_0000,
        clock_hz: 24_000_000,
    };
    const POWER: PowerControl = PowerControl::Gpio(GpioPower {
        base: 0x090B_0000,
        power_off_pin: 0,
        reset_pin: 1,
    });
    const SMMU: Option<Region> = Some(SMMU);
    const FORBIDDEN: &'static [Range<u64>] = &[
        Self::SECURE_FLASH.range(),
        // UART1, the Secure PL011.
        0x0904_0000..0x0905_0000,
        SMMU.range(),
        // The Secure GPIO.
        0x090B_0000..0x090C_0000,
        Self::SECURE_RAM.range(),
    ];

    const MAX_CPUS: usize = 8;
    // With a GICv3, QEMU puts 16 CPUs in each Aff1 cluster.
    const CPU_NUMBERING: ClusterNumbering = ClusterNumbering { cluster_shift: 4 };
}
