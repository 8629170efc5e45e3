//! Checks the device tree the monitor hands over: what a stock Linux kernel needs to find PSCI.

use device_tree::{DeviceTree, Error};
use platform_qemu::memory_map::DEVICE_TREE_MAX_SIZE;
use platform_qemu::println;

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
    match tree.find_node("/reserved-memory/monitor@e000000") {
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
