//! The monitor's EL3 translation regime: one identity map, built once by CPU 0 with `aarch64-paging`
//! and shared by every CPU. The attributes and register values are those of
//! the `identity-map` crate.
//!
//! | range                        | mapping                                                     |
//! |------------------------------|-------------------------------------------------------------|
//! | the board's device window    | device, execute-never (GIC, UARTs, Secure GPIO)             |
//! | monitor code                 | Secure normal memory, read-only, executable                 |
//! | monitor read-only data       | Secure normal memory, read-only, execute-never              |
//! | rest of Secure RAM           | Secure normal memory, read-write, execute-never             |
//! | the board's DRAM window      | Non-secure normal memory, read-write, execute-never         |
//!
//! Secure flash is not mapped: only the reset code runs there, with the MMU off.

use crate::Board;
use aarch64_paging::descriptor::El23Attributes;
use aarch64_paging::paging::El3;
use board::Platform;
use identity_map::{BASE, DEVICE, ImageLayout, NORMAL};
use spin::Once;

/// Root of the EL3 tables, once built.
static ROOT: Once<usize> = Once::new();

/// Builds the identity map (CPU 0, MMU still off). Failing to build it is fatal: the monitor cannot
/// run safely without it.
pub fn build_tables() {
    ROOT.call_once(|| {
        let image = ImageLayout::of_this_image();
        let secure_ram_end = Board::SECURE_RAM.end();
        let devices = Board::DEVICES;
        let dram = Board::MONITOR_DRAM_WINDOW;
        let [code, read_only, writable] = image.regions(secure_ram_end);
        let regions = [
            (
                devices.base,
                devices.end(),
                BASE | DEVICE | El23Attributes::XN,
            ),
            code,
            read_only,
            writable,
            (
                dram.base,
                dram.end(),
                BASE | NORMAL | El23Attributes::XN | El23Attributes::NS,
            ),
        ];
        identity_map::build(El3, &regions)
    });
}

/// Turns on the MMU and the caches of this CPU with the shared identity map.
pub fn enable() {
    let Some(&root) = ROOT.get() else {
        panic!("EL3 page tables used before they were built");
    };
    // SAFETY: `root` is the identity map built above; it covers the monitor's code, data, stacks and
    // devices with the addresses they already have, and this code runs at EL3.
    unsafe { identity_map::enable_el3(root) };
}
