//! Prepares QEMU's device tree for the Non-secure payload with `crates/device-tree`: a `/psci` node
//! (method `smc`), `enable-method = "psci"` on every CPU, and the monitor's Secure RAM under
//! `/reserved-memory` (no-map), so that a stock arm64 Linux kernel boots on this monitor.
//!
//! On a board whose tree lacks its devices (`Platform::DEVICE_TREE_HAS_DEVICES`: QEMU `sbsa-ref`
//! gives only memory and CPUs) the console UART and the GIC are added from the board's facts, so
//! that the hypervisor's device allowlist, which is read from the tree, lets the host reach them.

use crate::{Board, MAX_CPUS};
use alloc::format;
use board::Platform;
use device_tree::{DeviceTreeEditor, ReservedRegion};
use firmware_runtime::println;

/// `reg` of `(base, size)` pairs with two address and two size cells (big-endian), as QEMU's trees
/// have at the root.
fn reg<const N: usize>(ranges: [(usize, usize); N]) -> alloc::vec::Vec<u8> {
    ranges
        .iter()
        .flat_map(|&(base, size)| [base as u64, size as u64])
        .flat_map(u64::to_be_bytes)
        .collect()
}

/// Adds the console UART and the GIC under `/` (their nodes as QEMU `virt` describes them).
fn describe_devices(editor: &mut DeviceTreeEditor) -> Result<(), device_tree::Error> {
    let uart = Board::UART;
    let name = format!("pl011@{:x}", uart.base);
    editor.add_node("/", &name)?;
    let path = format!("/{name}");
    editor.set_property(&path, "compatible", b"arm,pl011\0arm,primecell\0")?;
    editor.set_property(&path, "reg", &reg([(uart.base, 0x1000)]))?;
    let gic = Board::GIC;
    let name = format!("intc@{:x}", gic.distributor);
    editor.add_node("/", &name)?;
    let path = format!("/{name}");
    editor.set_property(&path, "compatible", b"arm,gic-v3\0")?;
    editor.set_property(
        &path,
        "reg",
        &reg([
            (gic.distributor, 0x1_0000),
            (gic.redistributors, MAX_CPUS * gic.redistributor_stride),
        ]),
    )?;
    editor.set_property_u32(&path, "#interrupt-cells", 3)?;
    editor.set_property(&path, "interrupt-controller", &[])
}

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
        if !Board::DEVICE_TREE_HAS_DEVICES {
            describe_devices(&mut editor)?;
        }
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
