//! Physical memory map of QEMU's `virt` board with `secure=on`, and the addresses pkvm-rs chooses
//! inside it.
//!
//! ```text
//! 0x0000_0000  Secure flash (64 MiB)        monitor image, executed only to copy itself to Secure RAM
//! 0x0800_0000  GIC distributor
//! 0x080A_0000  GIC redistributors           two 64 KiB frames per CPU
//! 0x0900_0000  UART0 (PL011, Non-secure)    the one console of every image (the test harness captures it)
//! 0x0904_0000  UART1 (PL011, Secure only)   unused
//! 0x090B_0000  Secure GPIO (PL061)          pin 0 powers the board off, pin 1 resets it
//! 0x0E00_0000  Secure RAM (16 MiB)          monitor code, data, stacks, page tables
//! 0x4000_0000  DRAM (Non-secure)            QEMU's device tree at the start (1 MiB kept for it: the
//!                                          monitor adds /psci and /reserved-memory in place)
//! 0x401F_F000  test parameter block         written by `-device loader` in the QEMU tests
//! 0x4020_0000  Non-secure payload entry     entered at EL2 with x0 = device tree address
//! ```
//!
//! The payload address is 2 MiB aligned so that an arm64 Linux `Image` (text offset 0) can be loaded
//! there directly.

/// Start of Secure flash, where every CPU starts at EL3 (the reset vector).
pub const SECURE_FLASH_BASE: usize = 0x0000_0000;
/// Size of Secure flash.
pub const SECURE_FLASH_SIZE: usize = 64 << 20;
/// GICv3 distributor.
pub const GICD_BASE: usize = 0x0800_0000;
/// First GICv3 redistributor frame.
pub const GICR_BASE: usize = 0x080A_0000;
/// Distance between two CPUs' redistributors (RD_base and SGI_base frames).
pub const GICR_STRIDE: usize = 0x2_0000;
/// Size of the redistributor region QEMU's `virt` board provides for its first 123 CPUs.
pub const GICR_REGION_SIZE: usize = 0x00F6_0000;
/// UART0, the Non-secure PL011: the console every image prints to.
pub const UART0_BASE: usize = 0x0900_0000;
/// Reference clock of QEMU's PL011s.
pub const UART_CLOCK_HZ: u32 = 24_000_000;
/// Secure PL061 GPIO whose pins 0 and 1 power off and reset the board.
pub const SECURE_GPIO_BASE: usize = 0x090B_0000;
/// Start of Secure RAM: reachable only from the Secure state, so the monitor runs from here.
pub const SECURE_RAM_BASE: usize = 0x0E00_0000;
/// Size of Secure RAM.
pub const SECURE_RAM_SIZE: usize = 16 << 20;
/// Start of DRAM.
pub const DRAM_BASE: usize = 0x4000_0000;
/// Largest DRAM QEMU's `virt` board maps below its high memory region (255 GiB at 0x40_0000_0000 is
/// where high peripherals may start). The Non-secure entry-point checks use this window.
pub const DRAM_MAX_END: usize = 0x40_0000_0000;
/// Where QEMU places the flattened device tree when firmware is given with `-bios`.
pub const DEVICE_TREE_ADDRESS: usize = DRAM_BASE;
/// Room the monitor may use for the device tree when it patches it in place (QEMU's tree is far
/// smaller): nothing else may be loaded in `DEVICE_TREE_ADDRESS..+DEVICE_TREE_MAX_SIZE`.
pub const DEVICE_TREE_MAX_SIZE: usize = 1 << 20;
/// Where the QEMU tests place the [`TestParameters`](crate::memory_map::TEST_PARAMETERS_ADDRESS)
/// word the test payload reads (with `-device loader,addr=...,data=...`).
pub const TEST_PARAMETERS_ADDRESS: usize = 0x401F_F000;
/// Entry point of the Non-secure payload at EL2 (hypervisor, test payload or Linux `Image`).
pub const NON_SECURE_ENTRY: usize = 0x4020_0000;

/// Most CPUs the firmware supports; QEMU's `virt` board numbers them 0..N with Aff0 = index for N <= 16.
pub const MAX_CPUS: usize = 8;
