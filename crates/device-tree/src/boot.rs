//! The patches that let a stock arm64 Linux kernel boot on our EL3 monitor: a `/psci` node, PSCI as
//! every CPU's enable method, the monitor's and hypervisor's memory withheld from Linux, and the
//! `/chosen` entries for the initial RAM disk and the command line.

use crate::reader::{MemoryRange, is_cpu_node};
use crate::{DeviceTreeEditor, Error};
use core::fmt::Write;

/// `compatible` of `/psci`: PSCI 1.0 (the monitor implements 1.1, which has no compatible of its own)
/// and 0.2, which older kernels know. Each string ends with its NUL.
pub const PSCI_COMPATIBLE: &[u8] = b"arm,psci-1.0\0arm,psci-0.2\0";

/// Properties of the spin-table boot protocol, removed when a CPU switches to PSCI.
const SPIN_TABLE_PROPERTIES: [&str; 1] = ["cpu-release-addr"];

/// Memory Linux must neither use nor map (`no-map`), under `/reserved-memory`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedRegion<'a> {
    /// Node name without unit address, e.g. `monitor` (becomes `monitor@e000000`).
    pub name: &'a str,
    /// First byte.
    pub base: u64,
    /// Length in bytes (not zero).
    pub size: u64,
}

/// A node name built on the stack: `name@hex-address`.
struct NodeName {
    bytes: [u8; 288],
    len: usize,
}

impl Write for NodeName {
    fn write_str(&mut self, text: &str) -> core::fmt::Result {
        let end = self.len.checked_add(text.len()).ok_or(core::fmt::Error)?;
        let slot = self.bytes.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        slot.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl NodeName {
    fn new(name: &str, address: u64) -> Result<Self, Error> {
        let mut node_name = Self {
            bytes: [0; 288],
            len: 0,
        };
        write!(node_name, "{name}@{address:x}").map_err(|_| Error::InvalidName)?;
        Ok(node_name)
    }

    fn as_str(&self) -> Result<&str, Error> {
        core::str::from_utf8(&self.bytes[..self.len]).map_err(|_| Error::InvalidName)
    }
}

/// Encodes `value` in `cells` big-endian cells (1 or 2) into `out`; returns the bytes used.
fn encode_cells(value: u64, cells: usize, out: &mut [u8]) -> Result<usize, Error> {
    match cells {
        1 => {
            let narrow = u32::try_from(value).map_err(|_| Error::BadPropertyValue)?;
            out.get_mut(..4)
                .ok_or(Error::BadPropertyValue)?
                .copy_from_slice(&narrow.to_be_bytes());
            Ok(4)
        }
        2 => {
            out.get_mut(..8)
                .ok_or(Error::BadPropertyValue)?
                .copy_from_slice(&value.to_be_bytes());
            Ok(8)
        }
        _ => Err(Error::BadPropertyValue),
    }
}

impl DeviceTreeEditor<'_> {
    /// Everything the monitor adds before entering Linux: [`add_psci_node`](Self::add_psci_node),
    /// [`use_psci_for_cpus`](Self::use_psci_for_cpus) and
    /// [`add_reserved_memory`](Self::add_reserved_memory). Returns the number of CPU nodes.
    pub fn prepare_for_psci_boot(
        &mut self,
        reserved: &[ReservedRegion<'_>],
    ) -> Result<usize, Error> {
        self.add_psci_node()?;
        let cpus = self.use_psci_for_cpus()?;
        self.add_reserved_memory(reserved)?;
        Ok(cpus)
    }

    /// Adds (or updates) `/psci`: PSCI 1.0/0.2 reached through `SMC`.
    pub fn add_psci_node(&mut self) -> Result<(), Error> {
        let root = self.tree().root()?.offset();
        let psci = self.add_node_at(root, "psci")?;
        self.set_property_at(psci, "compatible", PSCI_COMPATIBLE)?;
        self.set_property_with(psci, "method", &[b"smc\0"])
    }

    /// Sets `enable-method = "psci"` on every CPU node under `/cpus` and removes spin-table
    /// properties; returns how many CPU nodes there are.
    pub fn use_psci_for_cpus(&mut self) -> Result<usize, Error> {
        let mut cpus = 0;
        let mut index = 0;
        loop {
            // Offsets move as properties grow, so find the index-th child afresh each time; the
            // offset of the child itself stays valid while only its own properties change.
            let tree = self.tree();
            let mut found = None;
            for (position, child) in tree.find_node("/cpus")?.children()?.enumerate() {
                let child = child?;
                if position == index {
                    found = Some(child);
                    break;
                }
            }
            let Some(child) = found else {
                return Ok(cpus);
            };
            index += 1;
            if !is_cpu_node(&child)? {
                continue;
            }
            let offset = child.offset();
            self.set_property_with(offset, "enable-method", &[b"psci\0"])?;
            for property in SPIN_TABLE_PROPERTIES {
                self.remove_property_at(offset, property)?;
            }
            cpus += 1;
        }
    }

    /// Adds `/reserved-memory` (cells as the root's, empty `ranges`) unless present, and a `no-map`
    /// child `name@base` with `reg = <base size>` for each region.
    pub fn add_reserved_memory(&mut self, regions: &[ReservedRegion<'_>]) -> Result<(), Error> {
        let root = self.tree().root()?;
        let (root_address_cells, root_size_cells) = root.cells()?;
        let root = root.offset();
        let parent = self.add_node_at(root, "reserved-memory")?;
        let node = self.tree().find_node("/reserved-memory")?;
        let has_address_cells = node.property("#address-cells")?.is_some();
        let has_size_cells = node.property("#size-cells")?.is_some();
        let has_ranges = node.property("ranges")?.is_some();
        // Keep what an existing node says; a new one inherits the root's cells so that its empty
        // `ranges` (identity mapping) is valid.
        if !has_address_cells {
            let cells = u32::try_from(root_address_cells).map_err(|_| Error::BadPropertyValue)?;
            self.set_property_at(parent, "#address-cells", &cells.to_be_bytes())?;
        }
        if !has_size_cells {
            let cells = u32::try_from(root_size_cells).map_err(|_| Error::BadPropertyValue)?;
            self.set_property_at(parent, "#size-cells", &cells.to_be_bytes())?;
        }
        if !has_ranges {
            self.set_property_at(parent, "ranges", &[])?;
        }
        let (address_cells, size_cells) = self.tree().find_node("/reserved-memory")?.cells()?;
        for region in regions {
            if region.name.is_empty() || region.name.contains('@') {
                return Err(Error::InvalidName);
            }
            if region.size == 0 {
                return Err(Error::BadPropertyValue);
            }
            let mut reg = [0u8; 16];
            let address_len = encode_cells(region.base, address_cells, &mut reg)?;
            let size_len = encode_cells(region.size, size_cells, &mut reg[address_len..])?;
            let name = NodeName::new(region.name, region.base)?;
            let child = self.add_node_at(parent, name.as_str()?)?;
            self.set_property_at(child, "reg", &reg[..address_len + size_len])?;
            self.set_property_at(child, "no-map", &[])?;
        }
        Ok(())
    }

    /// Tells Linux where its initial RAM disk lies (`/chosen/linux,initrd-start` and `-end`, 64 bits).
    pub fn set_initrd(&mut self, initrd: MemoryRange) -> Result<(), Error> {
        let end = initrd
            .base
            .checked_add(initrd.size)
            .ok_or(Error::BadPropertyValue)?;
        let chosen = self.chosen()?;
        self.set_property_at(chosen, "linux,initrd-start", &initrd.base.to_be_bytes())?;
        self.set_property_at(chosen, "linux,initrd-end", &end.to_be_bytes())
    }

    /// Sets the kernel command line (`/chosen/bootargs`).
    pub fn set_bootargs(&mut self, bootargs: &str) -> Result<(), Error> {
        let chosen = self.chosen()?;
        self.set_property_with(chosen, "bootargs", &[bootargs.as_bytes(), b"\0"])
    }

    /// The offset of `/chosen`, added when missing.
    fn chosen(&mut self) -> Result<usize, Error> {
        let root = self.tree().root()?.offset();
        self.add_node_at(root, "chosen")
    }
}
