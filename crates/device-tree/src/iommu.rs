//! Hiding the SMMUv3 from the host: the hypervisor owns it, so the host's tree must show the PCIe
//! bus as plain (no IOMMU), and must not offer MSIs, which are DMA writes the hypervisor's IO page
//! tables do not map.

use crate::reader::{MemoryRange, read_cells};
use crate::{DeviceTreeEditor, Error};

/// `compatible` of an SMMUv3.
pub const SMMU_V3_COMPATIBLE: &str = "arm,smmu-v3";
/// `compatible` of QEMU `virt`'s PCIe host bridge.
pub const PCIE_ECAM_COMPATIBLE: &str = "pci-host-ecam-generic";
/// Properties of a PCIe host bridge that route its devices through an IOMMU or to an MSI
/// controller.
pub const PCIE_IOMMU_PROPERTIES: [&str; 5] = [
    "iommu-map",
    "iommu-map-mask",
    "msi-map",
    "msi-map-mask",
    "msi-parent",
];

/// Whether a `compatible` value (NUL-separated strings) lists `wanted`.
fn lists(compatible: &[u8], wanted: &str) -> bool {
    compatible
        .split(|&byte| byte == 0)
        .any(|entry| entry == wanted.as_bytes())
}

impl DeviceTreeEditor<'_> {
    /// Removes the node at `path` and everything below it; returns whether it was there.
    pub fn remove_node(&mut self, path: &str) -> Result<bool, Error> {
        match self.tree().find_node(path) {
            Ok(node) => {
                self.remove_node_at(node.offset())?;
                Ok(true)
            }
            Err(Error::NodeNotFound) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The first direct child of the root whose `compatible` lists `compatible`: its structure
    /// offset and the first range of its `reg` (root cells).
    fn root_child(&self, compatible: &str) -> Result<Option<(usize, MemoryRange)>, Error> {
        let tree = self.tree();
        let root = tree.root()?;
        let (address_cells, size_cells) = root.cells()?;
        for child in root.children()? {
            let child = child?;
            let matches = child
                .property("compatible")?
                .is_some_and(|value| lists(value, compatible));
            if !matches {
                continue;
            }
            let reg = child.property("reg")?.ok_or(Error::PropertyNotFound)?;
            let base = read_cells(reg, address_cells)?;
            let size = read_cells(
                reg.get(address_cells * 4..)
                    .ok_or(Error::BadPropertyValue)?,
                size_cells,
            )?;
            return Ok(Some((child.offset(), MemoryRange { base, size })));
        }
        Ok(None)
    }

    /// Hides every SMMUv3 from the host: removes its node and, from every PCIe host bridge,
    /// [`PCIE_IOMMU_PROPERTIES`] (the host then drives the bus without IOMMU, with INTx interrupts).
    /// Returns the first SMMU's register range, or `None` (and changes nothing) when the tree has no
    /// SMMUv3.
    pub fn hide_smmu_v3(&mut self) -> Result<Option<MemoryRange>, Error> {
        let Some((offset, registers)) = self.root_child(SMMU_V3_COMPATIBLE)? else {
            return Ok(None);
        };
        self.remove_node_at(offset)?;
        while let Some((offset, _)) = self.root_child(SMMU_V3_COMPATIBLE)? {
            self.remove_node_at(offset)?;
        }
        // Offsets move as properties go: look the bridges up afresh after each removal.
        loop {
            let tree = self.tree();
            let mut found = None;
            for child in tree.root()?.children()? {
                let child = child?;
                let bridge = child
                    .property("compatible")?
                    .is_some_and(|value| lists(value, PCIE_ECAM_COMPATIBLE));
                if !bridge {
                    continue;
                }
                for name in PCIE_IOMMU_PROPERTIES {
                    if child.property(name)?.is_some() {
                        found = Some((child.offset(), name));
                        break;
                    }
                }
                if found.is_some() {
                    break;
                }
            }
            let Some((bridge, name)) = found else {
                return Ok(Some(registers));
            };
            self.remove_property_at(bridge, name)?;
        }
    }
}
