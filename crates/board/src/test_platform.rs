//! A board that does not exist, for host tests: every address differs from QEMU `virt`'s, DRAM is
//! at 2 GiB, and clusters have 4 CPUs (index = `Aff1 * 4 + Aff0`, as on many Arm SoCs). Code that
//! is generic over [`Platform`] and tested against it cannot be reading QEMU's constants.
//!
//! ```text
//! 0x1000_0000  Secure flash (32 MiB)
//! 0x1400_0000  Secure RAM (8 MiB)
//! 0x2000_0000  device window: UART 0x2C09_0000, GPIO 0x2C0B_0000 (pins 3 off, 5 reset),
//!              SMMU 0x2B40_0000, GICD 0x2F00_0000, GICR 0x2F10_0000
//! 0x8000_0000  DRAM: device tree (512 KiB), parameters 0x8010_0000, hypervisor 0x8040_0000 (16 MiB),
//!              host 0x8160_0000, guest image 0x8200_0000, donations 0x8400_0000, initramfs 0x8800_0000
//! ```

use crate::{ClusterNumbering, GicLayout, GpioPower, Platform, PowerControl, Region, Uart};
use core::ops::Range;

/// The made-up board of the host tests (see the module's map).
#[derive(Clone, Copy, Debug)]
pub struct TestPlatform;

const SMMU: Region = Region::new(0x2B40_0000, 0x2_0000);

impl Platform for TestPlatform {
    const NAME: &'static str = "test board";
    const QEMU_MACHINE: &'static str = "";
    const QEMU_ARGUMENTS: &'static [&'static str] = &[];
    const DEVICE_TREE_HAS_DEVICES: bool = false;

    const SECURE_FLASH: Region = Region::new(0x1000_0000, 32 << 20);
    const SECURE_RAM: Region = Region::new(0x1400_0000, 8 << 20);
    const DRAM_BASE: usize = 0x8000_0000;
    const DRAM_MAX_END: usize = 0x1_0000_0000;
    const MONITOR_DRAM_WINDOW: Region = Region::new(0x8000_0000, 0x4000_0000);
    const DEVICE_TREE: Region = Region::new(0x8000_0000, 512 << 10);
    const TEST_PARAMETERS_ADDRESS: usize = 0x8010_0000;
    const NON_SECURE_ENTRY: usize = 0x8040_0000;
    const HYPERVISOR: Region = Region::new(0x8040_0000, 16 << 20);
    const HOST_ENTRY: usize = 0x8160_0000;
    const GUEST_IMAGE: Region = Region::new(0x8200_0000, 1 << 20);
    const DONATION_BASE: usize = 0x8400_0000;
    const INITRD_ADDRESS: usize = 0x8800_0000;

    const DEVICES: Region = Region::new(0x2000_0000, 0x1000_0000);
    const GIC: GicLayout = GicLayout {
        distributor: 0x2F00_0000,
        redistributors: 0x2F10_0000,
        redistributor_stride: 0x2_0000,
    };
    const UART: Uart = Uart {
        base: 0x2C09_0000,
        clock_hz: 24_000_000,
    };
    const POWER: PowerControl = PowerControl::Gpio(GpioPower {
        base: 0x2C0B_0000,
        power_off_pin: 3,
        reset_pin: 5,
    });
    const SMMU: Option<Region> = Some(SMMU);
    const FORBIDDEN: &'static [Range<u64>] = &[
        Self::SECURE_FLASH.range(),
        Self::SECURE_RAM.range(),
        SMMU.range(),
        0x2C0B_0000..0x2C0C_0000,
    ];

    const MAX_CPUS: usize = 8;
    const CPU_NUMBERING: ClusterNumbering = ClusterNumbering { cluster_shift: 2 };
}
