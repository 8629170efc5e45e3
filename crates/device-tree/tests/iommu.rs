//! Hiding the SMMUv3 from the host, checked with the independent `fdt` parser.

use device_tree::{DeviceTree, DeviceTreeEditor, MemoryRange, PCIE_IOMMU_PROPERTIES};

const WITH_SMMU: &[u8] = include_bytes!("data/qemu-virt-bios-smp4-smmuv3.dtb");
const WITHOUT_SMMU: &[u8] = include_bytes!("data/qemu-virt-bios-smp4.dtb");

fn buffer(blob: &[u8]) -> Vec<u8> {
    let mut buffer = blob.to_vec();
    buffer.resize(blob.len() + 4096, 0);
    buffer
}

#[test]
fn the_smmu_and_the_bridge_routing_disappear() {
    let mut buffer = buffer(WITH_SMMU);
    let before = fdt::Fdt::new(&buffer).expect("fixture parses");
    assert!(before.find_node("/smmuv3@9050000").is_some());
    let pcie = before.find_node("/pcie@10000000").expect("bridge");
    assert!(pcie.property("iommu-map").is_some());
    assert!(pcie.property("msi-map").is_some());
    let nodes_before = before.all_nodes().count();

    let mut editor = DeviceTreeEditor::new(&mut buffer).expect("editor");
    assert_eq!(
        editor.hide_smmu_v3(),
        Ok(Some(MemoryRange {
            base: 0x0905_0000,
            size: 0x2_0000
        }))
    );
    assert_eq!(editor.hide_smmu_v3(), Ok(None), "nothing left to hide");
    let size = editor.total_size();

    let after = fdt::Fdt::new(&buffer[..size]).expect("still a valid tree");
    assert!(after.find_node("/smmuv3@9050000").is_none());
    assert_eq!(after.all_nodes().count(), nodes_before - 1);
    let pcie = after.find_node("/pcie@10000000").expect("bridge kept");
    for name in PCIE_IOMMU_PROPERTIES {
        assert!(pcie.property(name).is_none(), "{name}");
    }
    // The rest of the bridge is intact.
    for name in ["reg", "ranges", "interrupt-map", "bus-range", "compatible"] {
        assert!(pcie.property(name).is_some(), "{name}");
    }
    assert!(after.find_node("/pl011@9000000").is_some());
    let ours = DeviceTree::new(&buffer).expect("our reader");
    assert_eq!(ours.memory().map(|memory| memory.base), Ok(0x4000_0000));
}

#[test]
fn a_tree_without_smmu_is_left_alone() {
    let mut buffer = buffer(WITHOUT_SMMU);
    let original = buffer.clone();
    let mut editor = DeviceTreeEditor::new(&mut buffer).expect("editor");
    assert_eq!(editor.hide_smmu_v3(), Ok(None));
    assert_eq!(buffer, original);
}

#[test]
fn remove_node_removes_a_subtree() {
    let mut buffer = buffer(WITHOUT_SMMU);
    let mut editor = DeviceTreeEditor::new(&mut buffer).expect("editor");
    assert_eq!(editor.remove_node("/cpus"), Ok(true));
    assert_eq!(editor.remove_node("/cpus"), Ok(false));
    let size = editor.total_size();
    let tree = fdt::Fdt::new(&buffer[..size]).expect("valid");
    assert!(tree.find_node("/cpus").is_none());
    assert!(tree.find_node("/memory@40000000").is_some());
}
