//! The boards' maps are consistent, the CPU numbering follows each board's clusters, and QEMU
//! `virt`'s values are QEMU 7.2's (`hw/arm/virt.c`, `base_memmap`).

use super::*;

#[test]
fn every_board_is_consistent() {
    assert_eq!(check::<QemuVirt>(), Ok(()));
    assert_eq!(check::<SbsaRef>(), Ok(()));
    assert_eq!(check::<TestPlatform>(), Ok(()));
}

/// The test board with its hypervisor moved off the Non-secure entry.
struct Misplaced;

impl Platform for Misplaced {
    const NAME: &'static str = "misplaced hypervisor";
    const QEMU_MACHINE: &'static str = TestPlatform::QEMU_MACHINE;
    const QEMU_ARGUMENTS: &'static [&'static str] = TestPlatform::QEMU_ARGUMENTS;
    const DEVICE_TREE_HAS_DEVICES: bool = TestPlatform::DEVICE_TREE_HAS_DEVICES;
    const SECURE_FLASH: Region = TestPlatform::SECURE_FLASH;
    const SECURE_RAM: Region = TestPlatform::SECURE_RAM;
    const DRAM_BASE: usize = TestPlatform::DRAM_BASE;
    const DRAM_MAX_END: usize = TestPlatform::DRAM_MAX_END;
    const MONITOR_DRAM_WINDOW: Region = TestPlatform::MONITOR_DRAM_WINDOW;
    const DEVICE_TREE: Region = TestPlatform::DEVICE_TREE;
    const TEST_PARAMETERS_ADDRESS: usize = TestPlatform::TEST_PARAMETERS_ADDRESS;
    const NON_SECURE_ENTRY: usize = TestPlatform::NON_SECURE_ENTRY;
    const HYPERVISOR: Region = Region::new(0x8060_0000, 16 << 20);
    const HOST_ENTRY: usize = TestPlatform::HOST_ENTRY;
    const GUEST_IMAGE: Region = TestPlatform::GUEST_IMAGE;
    const DONATION_BASE: usize = TestPlatform::DONATION_BASE;
    const INITRD_ADDRESS: usize = TestPlatform::INITRD_ADDRESS;
    const DEVICES: Region = TestPlatform::DEVICES;
    const GIC: GicLayout = TestPlatform::GIC;
    const UART: Uart = TestPlatform::UART;
    const POWER: PowerControl = TestPlatform::POWER;
    const SMMU: Option<Region> = TestPlatform::SMMU;
    // The Secure RAM left out: the host could map the monitor.
    const FORBIDDEN: &'static [Range<u64>] = &[TestPlatform::SECURE_FLASH.range()];
    const MAX_CPUS: usize = TestPlatform::MAX_CPUS;
    const CPU_NUMBERING: ClusterNumbering = TestPlatform::CPU_NUMBERING;
}

#[test]
fn an_inconsistent_board_is_refused() {
    assert_eq!(check::<Misplaced>(), Err(MapError::HypervisorNotAtEntry));
}

/// (MPIDR_EL1, dense index) per board: bits outside the affinity fields are ignored, Aff2/Aff3, an
/// Aff0 beyond the cluster and an index beyond `MAX_CPUS` name no CPU.
#[test]
fn cpu_numbering_follows_the_boards_clusters() {
    let qemu: &[(u64, Option<usize>)] = &[
        (0x0, Some(0)),
        (0x8000_0007, Some(7)),
        (0x8, None),
        (0x100, None),
        (0x1_0000, None),
        (0x1_0000_0000, None),
    ];
    let test: &[(u64, Option<usize>)] = &[
        (0x0, Some(0)),
        (0x8000_0003, Some(3)),
        (0x4, None),
        (0x100, Some(4)),
        (0x103, Some(7)),
        (0x200, None),
        (0x1_0100, None),
    ];
    // QEMU sbsa-ref: 8 CPUs per cluster, two clusters supported.
    let sbsa: &[(u64, Option<usize>)] = &[
        (0x0, Some(0)),
        (0x8000_0007, Some(7)),
        (0x8, None),
        (0x100, Some(8)),
        (0x107, Some(15)),
        (0x200, None),
        (0x1_0000, None),
    ];
    for &(mpidr, index) in qemu {
        assert_eq!(QemuVirt::cpu_index(mpidr), index, "QEMU {mpidr:#x}");
    }
    for &(mpidr, index) in sbsa {
        assert_eq!(SbsaRef::cpu_index(mpidr), index, "sbsa-ref {mpidr:#x}");
    }
    for index in 0..SbsaRef::MAX_CPUS {
        assert_eq!(SbsaRef::cpu_index(SbsaRef::cpu_mpidr(index)), Some(index));
    }
    assert_eq!(SbsaRef::cpu_mpidr(9), 0x101);
    for &(mpidr, index) in test {
        assert_eq!(TestPlatform::cpu_index(mpidr), index, "test {mpidr:#x}");
    }
    for index in 0..QemuVirt::MAX_CPUS {
        assert_eq!(QemuVirt::cpu_index(QemuVirt::cpu_mpidr(index)), Some(index));
    }
    for index in 0..TestPlatform::MAX_CPUS {
        assert_eq!(
            TestPlatform::cpu_index(TestPlatform::cpu_mpidr(index)),
            Some(index)
        );
    }
    assert_eq!(QemuVirt::cpu_mpidr(5), 5);
    assert_eq!(TestPlatform::cpu_mpidr(5), 0x101);
}

/// QEMU 7.2's `virt` memory map, as `hw/arm/virt.c` lays it out.
#[test]
fn qemu_virt_is_qemus_map() {
    assert_eq!(QemuVirt::SECURE_FLASH, Region::new(0, 0x0400_0000));
    assert_eq!(QemuVirt::GIC.distributor, 0x0800_0000);
    assert_eq!(QemuVirt::GIC.redistributors, 0x080A_0000);
    assert_eq!(QemuVirt::UART.base, 0x0900_0000);
    assert_eq!(QemuVirt::SMMU, Some(Region::new(0x0905_0000, 0x2_0000)));
    assert_eq!(
        QemuVirt::POWER,
        PowerControl::Gpio(GpioPower {
            base: 0x090B_0000,
            power_off_pin: 0,
            reset_pin: 1
        })
    );
    assert_eq!(QemuVirt::SECURE_RAM, Region::new(0x0E00_0000, 0x0100_0000));
    assert_eq!(QemuVirt::DRAM_BASE, 0x4000_0000);
    assert_eq!(
        QemuVirt::FORBIDDEN,
        &[
            0x0000_0000..0x0400_0000,
            0x0904_0000..0x0905_0000,
            0x0905_0000..0x0907_0000,
            0x090B_0000..0x090C_0000,
            0x0E00_0000..0x0F00_0000,
        ]
    );
}

/// QEMU 7.2's `sbsa-ref` memory map (`hw/arm/sbsa-ref.c`, `sbsa_ref_memmap`; checked with `info
/// mtree` and the tree QEMU leaves at 1 TiB).
#[test]
fn sbsa_ref_is_qemus_map() {
    assert_eq!(SbsaRef::SECURE_FLASH, Region::new(0, 0x1000_0000));
    assert_eq!(SbsaRef::SECURE_RAM, Region::new(0x2000_0000, 0x2000_0000));
    assert_eq!(SbsaRef::GIC.distributor, 0x4006_0000);
    assert_eq!(SbsaRef::GIC.redistributors, 0x4008_0000);
    assert_eq!(SbsaRef::UART.base, 0x6000_0000);
    assert_eq!(SbsaRef::DRAM_BASE, 0x100_0000_0000);
    assert_eq!(SbsaRef::DEVICE_TREE.base, SbsaRef::DRAM_BASE);
    assert_eq!(SbsaRef::POWER.registers(), Region::new(0x5000_0000, 0x1000));
    assert_eq!(
        SbsaRef::FORBIDDEN,
        &[
            0x0000_0000..0x1000_0000,
            0x2000_0000..0x4000_0000,
            0x5000_0000..0x5000_1000,
            0x6003_0000..0x6005_0000,
            0x6005_0000..0x6007_0000,
        ]
    );
}

#[cfg(not(feature = "sbsa-ref"))]
#[test]
fn the_selected_board_is_the_default_one() {
    assert!(same_name(Selected::NAME, QemuVirt::NAME));
    assert!(!same_name(SbsaRef::NAME, QemuVirt::NAME));
    assert!(!same_name("QEMU vir", QemuVirt::NAME));
}

/// The link regions follow the board, and the fragment is what the linker scripts include.
#[test]
fn images_are_linked_where_the_board_says() {
    let qemu: &[(Image, Region)] = &[
        (Image::Monitor, Region::new(0x0E00_0000, 16 << 20)),
        (Image::Hypervisor, Region::new(0x4020_0000, 32 << 20)),
        (Image::TestPayload, Region::new(0x4020_0000, 32 << 20)),
        (Image::HostDemo, Region::new(0x4220_0000, 14 << 20)),
    ];
    for &(image, region) in qemu {
        assert_eq!(link_region::<QemuVirt>(image), region, "{image:?}");
    }
    assert_eq!(
        link_region::<TestPlatform>(Image::HostDemo),
        Region::new(0x8160_0000, 0x00A0_0000)
    );
    assert_eq!(
        MemoryBlock::new::<TestPlatform>("hyp", Image::Hypervisor).to_string(),
        "/* Written by the build script from crates/board. */\nMEMORY\n{\n    hyp : ORIGIN = 0x80400000, LENGTH = 0x1000000\n}\n__board_max_cpus = 8;\n"
    );
}
