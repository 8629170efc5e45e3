//! The hypervisor's own EL2 stage-1 translation: one identity map built by CPU 0 with
//! `aarch64-paging` (its `El2` regime fits: a static identity map with no changes at run time), shared
//! by every CPU. The attributes and register values are those of the `identity-map` crate.
//!
//! | range | mapping |
//! |---|---|
//! | the board's device window (GIC, UART0) | device, execute-never |
//! | hypervisor code | normal, read-only, executable |
//! | hypervisor read-only data | normal, read-only, execute-never |
//! | the rest of DRAM (as the device tree describes it) | normal, read-write, execute-never |
//!
//! The hypervisor maps all of DRAM because it must be able to read and zero any page; which pages it
//! may touch is recorded by `mem_protect::HypervisorPages`.

use crate::Board;
use aarch64_paging::descriptor::El23Attributes;
use aarch64_paging::paging::El2;
use board::Platform;
use core::ops::Range;
use core::sync::atomic::{AtomicUsize, Ordering};
use identity_map::{BASE, DEVICE, ImageLayout, NORMAL};

/// Root of the EL2 tables in use (0 before CPU 0 built them).
static ROOT: AtomicUsize = AtomicUsize::new(0);

/// SCTLR_EL2 with the MMU and caches off (`cpu_setup::reset::SCTLR_EL2`), for `entry.S`.
pub const SCTLR_EL2_RESET: u64 = cpu_setup::reset::SCTLR_EL2.bits();

/// Builds the identity map of the hypervisor's image, its devices and `dram` (CPU 0), which the
/// next [`enable`] turns on. Called twice: before the device tree is read (`dram` empty: the image
/// and the tree below it), then with all DRAM the tree describes. Both maps give the running code
/// the same translation, so switching from one to the other with the MMU on changes nothing in use.
/// Failing is fatal: the hypervisor cannot run without it.
pub fn build_tables(dram: Range<u64>) {
    let image = ImageLayout::of_this_image();
    // At least the hypervisor's whole reserved region (stacks, heap) after its read-only data.
    let writable_end = usize::try_from(dram.end)
        .unwrap_or(usize::MAX)
        .max(Board::HYPERVISOR.end());
    let devices = Board::DEVICES;
    let [code, read_only, writable] = image.regions(writable_end);
    let regions = [
        (
            devices.base,
            devices.end(),
            BASE | DEVICE | El23Attributes::XN,
        ),
        (
            Board::DRAM_BASE,
            image.image_start,
            BASE | NORMAL | El23Attributes::XN,
        ),
        code,
        read_only,
        writable,
    ];
    ROOT.store(identity_map::build(El2, &regions), Ordering::Release);
}

/// Turns on this CPU's MMU and caches with the shared identity map.
pub fn enable() {
    let root = ROOT.load(Ordering::Acquire);
    if root == 0 {
        panic!("EL2 page tables used before they were built");
    }
    // SAFETY: `root` is the identity map built above; it covers the hypervisor's code, data, stacks
    // and devices at the addresses they already have, and this code runs at EL2.
    unsafe { identity_map::enable_el2(root) };
}
