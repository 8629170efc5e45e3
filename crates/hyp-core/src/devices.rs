//! Which devices the host may reach: an allowlist read from the device tree.
//!
//! The host's stage-2 only checks what the host's CPUs do. A device that reads or writes memory on
//! its own (a DMA master) does so with no stage-2 check at all, so a host that can program one can
//! reach every page the hypervisor took from it. The hypervisor therefore maps for the host only the
//! devices it knows cannot be made to write memory, and withholds every other device: it is never
//! mapped (the host's access takes an external abort) and its node is removed from the tree the host
//! is handed.
//!
//! | `compatible` | devices on QEMU `virt` | treatment |
//! |---|---|---|
//! | `arm,pl011`, `arm,pl031`, `arm,pl061`, `cfi-flash` | UART, RTC, GPIO, flash | the host's |
//! | `arm,gic-v3` | distributor, redistributors | the host's, except each redistributor's control page (LPI tables), which the hypervisor emulates ([`crate::gic`]) |
//! | `qemu,fw-cfg-mmio` | fw_cfg | withheld: its DMA interface writes any address |
//! | `virtio,mmio` | virtio-mmio transports | withheld: a device behind one reads and writes its queues at any address, and no IOMMU sits in front of them (the host's virtio devices go on PCIe, behind the SMMU) |
//! | `arm,gic-v3-its` | the GIC's ITS | withheld: it writes its tables to any address; LPIs are not offered to the host |
//! | `pci-host-ecam-generic` | PCIe root complex | withheld unless the hypervisor owns an IOMMU that translates its DMA |
//! | `arm,smmu-v3` | the SMMU | withheld: the hypervisor's own |
//! | anything else with a `reg` | (platform bus, unknown devices) | withheld: not known to be safe |
//!
//! Nodes that describe no device registers are left alone: those without `compatible` (memory,
//! reserved memory), without `reg` (timer, PSCI, PMU, `gpio-keys`), under a parent whose
//! `#size-cells` is 0 (CPUs), and disabled ones.
//!
//! Why LPIs are not offered rather than trapped and checked: a host that could place the LPI
//! property and pending tables and the ITS tables would need every one of them pinned in host-owned
//! memory for as long as the GIC may use them, with the ITS command queue parsed and checked command
//! by command. The demo host and Linux run without LPIs (Linux falls back to wired interrupts), so
//! the smaller, fully checkable surface wins.

use core::ops::Range;
use device_tree::{Cells, DeviceTree, Node};

/// Most device ranges the allowlist holds (QEMU's redistributor region alone gives 123).
pub const MAX_HOST_DEVICE_RANGES: usize = 256;
/// Most device-tree nodes the hypervisor withholds.
pub const MAX_WITHHELD_NODES: usize = 64;
/// Distance between two redistributors (GICv3 without virtual LPIs: `RD_base` and `SGI_base`).
pub const REDISTRIBUTOR_STRIDE: u64 = 0x2_0000;
/// The redistributor's control page (`RD_base` + 0..4 KiB): `GICR_CTLR`, `GICR_TYPER`,
/// `GICR_PROPBASER`, `GICR_PENDBASER`. The hypervisor emulates it.
pub const REDISTRIBUTOR_CONTROL_PAGE: u64 = 0x1000;

/// What the hypervisor does with one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Treatment {
    /// Mapped for the host on demand.
    Host,
    /// The GIC: the host's, with the redistributors' control pages emulated.
    Gic,
    /// A PCIe root complex whose DMA the hypervisor's IOMMU translates: its configuration space
    /// (`reg`) and its windows (`ranges`) are the host's.
    PciHost,
    /// Never mapped, and removed from the host's tree.
    Withheld(WithheldReason),
    /// Nothing to map (no `reg`, or disabled): left as it is.
    Ignored,
}

/// Why a device is withheld from the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WithheldReason {
    /// It reads or writes memory at addresses software gives it.
    WritesMemory,
    /// The hypervisor drives it itself.
    HypervisorOwned,
    /// Not known to be safe.
    Unknown,
}

/// Why the allowlist could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceMapError {
    /// The tree is malformed.
    Tree(device_tree::Error),
    /// More device ranges than [`MAX_HOST_DEVICE_RANGES`].
    TooManyRanges,
    /// More withheld nodes than [`MAX_WITHHELD_NODES`].
    TooManyWithheld,
}

impl core::fmt::Display for DeviceMapError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Self::Tree(error) => write!(formatter, "malformed device tree: {error}"),
            Self::TooManyRanges => write!(
                formatter,
                "more than {MAX_HOST_DEVICE_RANGES} device ranges for the host"
            ),
            Self::TooManyWithheld => write!(
                formatter,
                "more than {MAX_WITHHELD_NODES} devices to withhold"
            ),
        }
    }
}

impl core::error::Error for DeviceMapError {}

impl From<device_tree::Error> for DeviceMapError {
    fn from(error: device_tree::Error) -> Self {
        Self::Tree(error)
    }
}

/// Compatible strings of devices that cannot write memory: the host's.
const HOST_DEVICES: [&str; 4] = ["arm,pl011", "arm,pl031", "arm,pl061", "cfi-flash"];
/// Compatible strings of devices that write memory on their own.
const MEMORY_WRITERS: [&str; 4] = [
    "qemu,fw-cfg-mmio",
    "arm,gic-v3-its",
    "pci-host-ecam-generic",
    "virtio,mmio",
];

/// How the hypervisor treats `node`; `pcie_translated` says whether the hypervisor owns an IOMMU that
/// translates the PCIe root complex's DMA (then the root complex is the host's);
/// `cells` are those of its `reg` (its parent's).
pub fn treatment(
    node: &Node,
    cells: Cells,
    pcie_translated: bool,
) -> Result<Treatment, device_tree::Error> {
    let has_reg = node.property("reg")?.is_some();
    let has_compatible = node.property("compatible")?.is_some();
    let disabled = node
        .property_str("status")
        .ok()
        .flatten()
        .is_some_and(|status| status == "disabled");
    if !has_reg || !has_compatible || cells.size == 0 || disabled {
        return Ok(Treatment::Ignored);
    }
    let any = |list: &[&str]| -> Result<bool, device_tree::Error> {
        for compatible in list {
            if node.is_compatible(compatible)? {
                return Ok(true);
            }
        }
        Ok(false)
    };
    Ok(if node.is_compatible("arm,gic-v3")? {
        Treatment::Gic
    } else if any(&HOST_DEVICES)? {
        Treatment::Host
    } else if pcie_translated && node.is_compatible("pci-host-ecam-generic")? {
        Treatment::PciHost
    } else if any(&MEMORY_WRITERS)? {
        Treatment::Withheld(WithheldReason::WritesMemory)
    } else if node.is_compatible("arm,smmu-v3")? {
        Treatment::Withheld(WithheldReason::HypervisorOwned)
    } else {
        Treatment::Withheld(WithheldReason::Unknown)
    })
}

/// A PCI bridge's own `#address-cells` (3) and `#size-cells`.
fn pci_cells(node: &Node) -> Result<(usize, usize), device_tree::Error> {
    let read = |name: &str| -> Result<usize, device_tree::Error> {
        let value = node
            .property(name)?
            .ok_or(device_tree::Error::PropertyNotFound)?;
        let cells = read_cells(value, 1)?;
        usize::try_from(cells).map_err(|_| device_tree::Error::BadPropertyValue)
    };
    let size = read("#size-cells")?;
    if size == 0 || size > 2 {
        return Err(device_tree::Error::BadPropertyValue);
    }
    Ok((read("#address-cells")?, size))
}

/// A big-endian value of `cells` 32-bit cells (1 or 2) at the start of `bytes`.
fn read_cells(bytes: &[u8], cells: usize) -> Result<u64, device_tree::Error> {
    let cell = |index: usize| -> Result<u64, device_tree::Error> {
        let raw = bytes
            .get(index * 4..index * 4 + 4)
            .ok_or(device_tree::Error::BadPropertyValue)?;
        Ok(u64::from(u32::from_be_bytes([
            raw[0], raw[1], raw[2], raw[3],
        ])))
    };
    match cells {
        1 => cell(0),
        2 => Ok((cell(0)? << 32) | cell(1)?),
        _ => Err(device_tree::Error::BadPropertyValue),
    }
}

/// The devices of one machine as the hypervisor hands them to the host.
#[derive(Clone, Debug)]
pub struct HostDeviceMap {
    ranges: [Range<u64>; MAX_HOST_DEVICE_RANGES],
    range_count: usize,
    withheld: [(usize, WithheldReason); MAX_WITHHELD_NODES],
    withheld_count: usize,
    redistributors: Option<Range<u64>>,
}

impl HostDeviceMap {
    /// Reads the allowlist from `tree` (see the module docs for the rules).
    pub fn from_tree(tree: &DeviceTree, pcie_translated: bool) -> Result<Self, DeviceMapError> {
        let mut map = Self {
            ranges: [const { 0..0 }; MAX_HOST_DEVICE_RANGES],
            range_count: 0,
            withheld: [(0, WithheldReason::Unknown); MAX_WITHHELD_NODES],
            withheld_count: 0,
            redistributors: None,
        };
        let mut failure = None;
        tree.walk_nodes(&mut |node, cells| {
            if failure.is_none()
                && let Err(error) = map.add(&node, cells, pcie_translated)
            {
                failure = Some(error);
            }
        })?;
        match failure {
            Some(error) => Err(error),
            None => Ok(map),
        }
    }

    fn add(
        &mut self,
        node: &Node,
        cells: Cells,
        pcie_translated: bool,
    ) -> Result<(), DeviceMapError> {
        match treatment(node, cells, pcie_translated)? {
            Treatment::Ignored => Ok(()),
            Treatment::Host => {
                for range in node.reg(cells)? {
                    let range = range?;
                    self.allow(range.base..range.base.saturating_add(range.size))?;
                }
                Ok(())
            }
            Treatment::PciHost => {
                for range in node.reg(cells)? {
                    let range = range?;
                    self.allow(range.base..range.base.saturating_add(range.size))?;
                }
                let (_, window_size_cells) = pci_cells(node)?;
                let ranges = node.property("ranges")?.unwrap_or(&[]);
                // (PCI address: 3 cells, CPU address: the parent's cells, size: the bridge's).
                let entry = (3 + cells.address + window_size_cells) * 4;
                if entry == 0 || ranges.len() % entry != 0 {
                    return Err(DeviceMapError::Tree(device_tree::Error::BadPropertyValue));
                }
                for window in ranges.chunks(entry) {
                    let cpu = read_cells(&window[12..], cells.address)?;
                    let size = read_cells(&window[12 + cells.address * 4..], window_size_cells)?;
                    self.allow(cpu..cpu.saturating_add(size))?;
                }
                Ok(())
            }
            Treatment::Gic => {
                let mut regions = node.reg(cells)?;
                if let Some(distributor) = regions.next() {
                    let distributor = distributor?;
                    self.allow(
                        distributor.base..distributor.base.saturating_add(distributor.size),
                    )?;
                }
                if let Some(redistributors) = regions.next() {
                    let redistributors = redistributors?;
                    let region = redistributors.base
                        ..redistributors.base.saturating_add(redistributors.size);
                    let mut frame = region.start;
                    while frame < region.end {
                        let end = frame.saturating_add(REDISTRIBUTOR_STRIDE).min(region.end);
                        if frame + REDISTRIBUTOR_CONTROL_PAGE < end {
                            self.allow(frame + REDISTRIBUTOR_CONTROL_PAGE..end)?;
                        }
                        frame = end;
                    }
                    self.redistributors = Some(region);
                }
                Ok(())
            }
            Treatment::Withheld(reason) => {
                let slot = self
                    .withheld
                    .get_mut(self.withheld_count)
                    .ok_or(DeviceMapError::TooManyWithheld)?;
                *slot = (node.structure_offset(), reason);
                self.withheld_count += 1;
                Ok(())
            }
        }
    }

    fn allow(&mut self, range: Range<u64>) -> Result<(), DeviceMapError> {
        if range.is_empty() {
            return Ok(());
        }
        let slot = self
            .ranges
            .get_mut(self.range_count)
            .ok_or(DeviceMapError::TooManyRanges)?;
        *slot = range;
        self.range_count += 1;
        Ok(())
    }

    /// The device ranges the host may map (`MemoryLayout::devices`).
    pub fn host_ranges(&self) -> &[Range<u64>] {
        &self.ranges[..self.range_count]
    }

    /// The structure offsets of the withheld nodes (for `DeviceTreeEditor::remove_nodes`), with why.
    pub fn withheld(&self) -> &[(usize, WithheldReason)] {
        &self.withheld[..self.withheld_count]
    }

    /// The redistributor region, whose control pages the hypervisor emulates.
    pub fn redistributors(&self) -> Option<Range<u64>> {
        self.redistributors.clone()
    }

    /// If `address` lies in a redistributor's control page: that redistributor's `RD_base` and the
    /// offset of `address` in the page.
    pub fn redistributor_control(&self, address: u64) -> Option<(u64, u64)> {
        let region = self.redistributors.as_ref()?;
        if !region.contains(&address) {
            return None;
        }
        let offset = (address - region.start) % REDISTRIBUTOR_STRIDE;
        (offset < REDISTRIBUTOR_CONTROL_PAGE).then_some((address - offset, offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_VIRT: &[u8] = include_bytes!("../../device-tree/tests/data/qemu-virt-bios-smp4.dtb");

    #[test]
    fn qemu_virt_allowlist() {
        let tree = DeviceTree::new(QEMU_VIRT).expect("fixture");
        let map = HostDeviceMap::from_tree(&tree, false).expect("map");
        let allowed = |address: u64| {
            map.host_ranges()
                .iter()
                .any(|range| range.contains(&address))
        };
        // UART0, RTC, the distributor, a redistributor's SGI frame.
        for address in [0x0900_0000, 0x0901_0000, 0x0800_0000, 0x080B_0000] {
            assert!(allowed(address), "{address:#x} allowed");
        }
        // fw_cfg, the ITS, virtio-mmio transports, PCIe ECAM and MMIO, the redistributors' control
        // pages, nothing.
        for address in [
            0x0902_0000,
            0x0808_0000,
            0x0A00_0000,
            0x0A00_3E00,
            0x40_1000_0000,
            0x1000_0000,
            0x080A_0000,
            0x080C_0000,
            0x0C00_0000,
        ] {
            assert!(!allowed(address), "{address:#x} withheld");
        }
        assert_eq!(
            map.redistributor_control(0x080C_0070),
            Some((0x080C_0000, 0x70))
        );
        assert_eq!(map.redistributor_control(0x080D_0070), None);
        assert_eq!(map.redistributor_control(0x0900_0000), None);
        let reasons: Vec<WithheldReason> =
            map.withheld().iter().map(|(_, reason)| *reason).collect();
        assert!(reasons.contains(&WithheldReason::WritesMemory));
        // Every withheld node is a real node and can be removed; the memory and CPUs stay.
        let mut buffer = QEMU_VIRT.to_vec();
        let mut editor = device_tree::DeviceTreeEditor::new(&mut buffer).expect("editor");
        let mut offsets: Vec<usize> = map.withheld().iter().map(|(offset, _)| *offset).collect();
        assert_eq!(editor.remove_nodes(&mut offsets), Ok(map.withheld().len()));
        let tree = editor.tree();
        assert!(tree.find_node("/fw-cfg@9020000").is_err());
        assert!(tree.find_node("/intc@8000000/its@8080000").is_err());
        assert!(tree.find_node("/pcie@10000000").is_err());
        assert!(tree.find_node("/intc@8000000").is_ok());
        assert_eq!(tree.cpu_count(), Ok(4));
        assert!(tree.memory().is_ok());
        // With an IOMMU translating PCIe, the root complex is the host's.
        let tree = DeviceTree::new(QEMU_VIRT).expect("fixture");
        let translated = HostDeviceMap::from_tree(&tree, true).expect("map");
        assert!(
            translated
                .host_ranges()
                .iter()
                .any(|range| range.contains(&0x40_1000_0000))
        );
    }
}
