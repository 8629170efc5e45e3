//! Prepares QEMU's device tree for the Non-secure payload with `crates/device-tree`: a `/psci` node
//! (method `smc`), `enable-method = "psci"` on every CPU, and the monitor's Secure RAM under
//! `/reserved-memory` (no-map), so that a stock arm64 Linux kernel boots on this monitor.

use crate::Board;
use board::Platform;
use device_tree::{DeviceTreeEditor, ReservedRegion};
use platform_qemu::println;

/// Patches the tree at the board's `DEVICE_TREE` address in place (CPU 0, before any Non-secure code runs). A
/// tree that cannot be patched is reported and left as it is: payloads that do not read it (the test
/// payload) still run.
pub fn prepare() {
    let tree = Board::DEVICE_TREE;
    // SAFETY: the window is Non-secure DRAM mapped read-write at EL3; no Non-secure code runs yet and
    // no other CPU of the monitor touches it, so this is the only reference to that memory.
    let buffer = unsafe { core::slice::from_raw_parts_mut(tree.base as *mut u8, tree.size) };
    let reserved = [ReservedRegion {
        name: "monitor",
        base: Board::SECURE_RAM.base as u64,
        size: Board::SECURE_RAM.size as u64,
    }];
    let outcome = DeviceTreeEditor::new(buffer).and_then(|mut editor| {
        let cpus = editor.prepare_for_psci_boot(&reserved)?;
        Ok((cpus, editor.total_size()))
    });
    match outcome {
        Ok((cpus, size)) => {
            println!("monitor: device tree: /psci added, {cpus} CPUs use PSCI, {size} bytes")
        }
        Err(error) => {
            println!(
                "monitor: device tree at {:#x} not patched: {error}",
                tree.base
            )
        }
    }
}
