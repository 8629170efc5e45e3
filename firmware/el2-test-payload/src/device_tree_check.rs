//! Checks the device tree the monitor hands over: what a stock Linux kernel needs to find PSCI.

use core::fmt::Write;
use device_tree::{DeviceTree, Error};
use firmware_runtime::memory_map::{DEVICE_TREE_MAX_SIZE, SECURE_RAM_BASE};
use firmware_runtime::println;

/// A node path built without an allocator.
struct Path {
    bytes: [u8; 64],
    length: usize,
}

impl Write for Path {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        let end = self.length + text.len();
        let slot = self
            .bytes
            .get_mut(self.length..end)
            .ok_or(core::fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.length = end;
        Ok(())
    }
}

impl Path {
    /// The path `arguments` formats to, or an error when it does not fit.
    fn new(arguments: core::fmt::Arguments) -> Result<Self, &'static str> {
        let mut path = Self {
            bytes: [0; 64],
            length: 0,
        };
        path.write_fmt(arguments)
            .map_err(|_| "device-tree path too long")?;
        Ok(path)
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.length]).unwrap_or("")
    }
}

/// On a board whose own tree lacks them (`Platform::DEVICE_TREE_HAS_DEVICES`), the monitor must have
/// added the console UART and the GIC: the hypervisor's device allowlist is read from the tree.
fn verify_added_devices(tree: &DeviceTree) -> Result<(), &'static str> {
    type Board = board::Selected;
    if <Board as board::Platform>::DEVICE_TREE_HAS_DEVICES {
        return Ok(());
    }
    let uart = Path::new(format_args!(
        "/pl011@{:x}",
        <Board as board::Platform>::UART.base
    ))?;
    let compatible = tree
        .find_node(uart.as_str())
        .and_then(|node| node.is_compatible("arm,pl011"));
    if compatible != Ok(true) {
        return Err("the monitor did not add the console UART");
    }
    let gic = Path::new(format_args!(
        "/intc@{:x}",
        <Board as board::Platform>::GIC.distributor
    ))?;
    let compatible = tree
        .find_node(gic.as_str())
        .and_then(|node| node.is_compatible("arm,gic-v3"));
    if compatible != Ok(true) {
        return Err("the monitor did not add the GIC");
    }
    Ok(())
}

/// What the tree must say, checked in order; the first failure is reported.
fn verify(tree: &DeviceTree) -> Result<usize, &'static str> {
    let method = tree
        .find_node("/psci")
        .and_then(|psci| psci.property_str("method"));
    if method != Ok(Some("smc")) {
        return Err("/psci has no method = \"smc\"");
    }
    let cpus = tree.find_node("/cpus").map_err(|_| "no /cpus")?;
    let mut count = 0;
    for child in cpus.children().map_err(|_| "unreadable /cpus")? {
        let child = child.map_err(|_| "unreadable CPU node")?;
        if !child.name().starts_with(b"cpu@") {
            continue;
        }
        if child.property_str("enable-method") != Ok(Some("psci")) {
            return Err("a CPU node lacks enable-method = \"psci\"");
        }
        count += 1;
    }
    verify_added_devices(tree)?;
    // The monitor reserves the board's Secure RAM under its own name.
    let path = Path::new(format_args!("/reserved-memory/monitor@{SECURE_RAM_BASE:x}"))?;
    match tree.find_node(path.as_str()) {
        Ok(node) if node.property("no-map") != Ok(None) => Ok(count),
        Ok(_) => Err("the monitor's reserved memory is not no-map"),
        Err(Error::NodeNotFound) => Err("the monitor's memory is not reserved"),
        Err(_) => Err("unreadable /reserved-memory"),
    }
}

/// Checks the tree at `address`; a failure is printed as a `FAIL` line and ends the run.
pub fn check(address: u64) {
    // SAFETY: the tree lies in DRAM at `address` (x0 from the monitor), which nothing writes while the
    // payload runs; the MMU is off, so the physical address is the address.
    let bytes =
        unsafe { core::slice::from_raw_parts(address as usize as *const u8, DEVICE_TREE_MAX_SIZE) };
    let verdict = DeviceTree::new(bytes)
        .map_err(|_| "not a device tree")
        .and_then(|tree| verify(&tree));
    match verdict {
        Ok(cpus) => println!(
            "payload: device tree: /psci (smc), {cpus} CPUs with enable-method psci, monitor memory reserved"
        ),
        Err(reason) => {
            println!("payload: FAIL: device tree: {reason}");
            firmware_runtime::semihosting::exit(1)
        }
    }
}
