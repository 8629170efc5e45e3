//! The selected board's addresses ([`board::Selected`], chosen by the `board` crate's cargo
//! features) under the names the payloads (test payload, host demo, guest) use. The map is drawn
//! in the `board` crate; nothing here names a board.

use board::{Platform, Selected as Board};

/// Start of Secure flash, where every CPU starts at EL3 (the reset vector).
pub const SECURE_FLASH_BASE: usize = Board::SECURE_FLASH.base;
/// Size of Secure flash.
pub const SECURE_FLASH_SIZE: usize = Board::SECURE_FLASH.size;
/// GICv3 distributor.
pub const GICD_BASE: usize = Board::GIC.distributor;
/// First GICv3 redistributor frame.
pub const GICR_BASE: usize = Board::GIC.redistributors;
/// Distance between two CPUs' redistributors (RD_base and SGI_base frames).
pub const GICR_STRIDE: usize = Board::GIC.redistributor_stride;
/// UART0, the Non-secure PL011: the console every image prints to.
pub const UART0_BASE: usize = Board::UART.base;
/// UART0 and its clock, for `console::init`.
pub const CONSOLE: board::Uart = Board::UART;
/// Reference clock of the console UART.
pub const UART_CLOCK_HZ: u32 = Board::UART.clock_hz;
/// Start of Secure RAM: reachable only from the Secure state, so the monitor runs from here.
pub const SECURE_RAM_BASE: usize = Board::SECURE_RAM.base;
/// Size of Secure RAM.
pub const SECURE_RAM_SIZE: usize = Board::SECURE_RAM.size;
/// Start of DRAM.
pub const DRAM_BASE: usize = Board::DRAM_BASE;
/// End of the window Non-secure entry points must lie in.
pub const DRAM_MAX_END: usize = Board::DRAM_MAX_END;
/// Where the device tree is handed to the firmware.
pub const DEVICE_TREE_ADDRESS: usize = Board::DEVICE_TREE.base;
/// Room the monitor may use for the device tree when it patches it in place.
pub const DEVICE_TREE_MAX_SIZE: usize = Board::DEVICE_TREE.size;
/// Where the QEMU tests place the parameter words the test payloads read (with
/// `-device loader,addr=...,data=...`).
pub const TEST_PARAMETERS_ADDRESS: usize = Board::TEST_PARAMETERS_ADDRESS;
/// Entry point of the Non-secure payload at EL2 (hypervisor, test payload or Linux `Image`).
pub const NON_SECURE_ENTRY: usize = Board::NON_SECURE_ENTRY;

/// Most CPUs the firmware supports.
pub const MAX_CPUS: usize = Board::MAX_CPUS;
/// Most CPUs of one Aff1 cluster (one `ICC_SGI*R_EL1` target list).
pub const CPUS_PER_CLUSTER: usize = Board::CPU_NUMBERING.cpus_per_cluster();
