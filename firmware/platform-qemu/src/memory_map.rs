//! QEMU `virt`'s addresses under the names the payloads (test payload, host demo, guest) use. The
//! values are [`board::QemuVirt`]'s, where the map is drawn; the monitor and the hypervisor read their
//! `Board` type instead, so that only the payloads still name QEMU.

use board::{Platform, QemuVirt};

/// Start of Secure flash, where every CPU starts at EL3 (the reset vector).
pub const SECURE_FLASH_BASE: usize = QemuVirt::SECURE_FLASH.base;
/// Size of Secure flash.
pub const SECURE_FLASH_SIZE: usize = QemuVirt::SECURE_FLASH.size;
/// GICv3 distributor.
pub const GICD_BASE: usize = QemuVirt::GIC.distributor;
/// First GICv3 redistributor frame.
pub const GICR_BASE: usize = QemuVirt::GIC.redistributors;
/// Distance between two CPUs' redistributors (RD_base and SGI_base frames).
pub const GICR_STRIDE: usize = QemuVirt::GIC.redistributor_stride;
/// UART0, the Non-secure PL011: the console every image prints to.
pub const UART0_BASE: usize = QemuVirt::UART.base;
/// UART0 and its clock, for `console::init`.
pub const CONSOLE: board::Uart = QemuVirt::UART;
/// Reference clock of QEMU's PL011s.
pub const UART_CLOCK_HZ: u32 = QemuVirt::UART.clock_hz;
/// Secure PL061 GPIO whose pins 0 and 1 power off and reset the board.
pub const SECURE_GPIO_BASE: usize = QemuVirt::POWER.base;
/// Start of Secure RAM: reachable only from the Secure state, so the monitor runs from here.
pub const SECURE_RAM_BASE: usize = QemuVirt::SECURE_RAM.base;
/// Size of Secure RAM.
pub const SECURE_RAM_SIZE: usize = QemuVirt::SECURE_RAM.size;
/// Start of DRAM.
pub const DRAM_BASE: usize = QemuVirt::DRAM_BASE;
/// Largest DRAM QEMU's `virt` board maps below its high memory region. The Non-secure entry-point
/// checks use this window.
pub const DRAM_MAX_END: usize = QemuVirt::DRAM_MAX_END;
/// Where QEMU places the flattened device tree when firmware is given with `-bios`.
pub const DEVICE_TREE_ADDRESS: usize = QemuVirt::DEVICE_TREE.base;
/// Room the monitor may use for the device tree when it patches it in place.
pub const DEVICE_TREE_MAX_SIZE: usize = QemuVirt::DEVICE_TREE.size;
/// Where the QEMU tests place the parameter words the test payloads read (with
/// `-device loader,addr=...,data=...`).
pub const TEST_PARAMETERS_ADDRESS: usize = QemuVirt::TEST_PARAMETERS_ADDRESS;
/// Entry point of the Non-secure payload at EL2 (hypervisor, test payload or Linux `Image`).
pub const NON_SECURE_ENTRY: usize = QemuVirt::NON_SECURE_ENTRY;

/// Most CPUs the firmware supports.
pub const MAX_CPUS: usize = QemuVirt::MAX_CPUS;
