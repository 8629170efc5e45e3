//! Checks the device tree the monitor hands over: what a stock Linux kernel needs to find PSCI.

use core::fmt::Write;
use device_tree::{DeviceTree, Error};
use platform_qemu::memory_map::{DEVICE_TREE_MAX_SIZE, SECURE_RAM_BASE};
use platform_qemu::println;

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
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.length]).unwrap_or("")
    }
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
    // The monitor reserves the board's Secure RAM under its own name.
    let mut path = Path {
        bytes: [0; 64],
        length: 0,
    };
    write!(path, "/reserved-memory/monitor@{SECURE_RAM_BASE:x}")
        .map_err(|_| "reserved-memory path too long")?;
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
            platform_qemu::semihosting::exit(1)
        }
    }
}
