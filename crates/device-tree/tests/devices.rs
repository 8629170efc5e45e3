//! The node walk, `reg` decoding and node removal the hypervisor uses to hand the host a tree
//! without the devices it withholds, on QEMU's own `virt` tree, checked with the independent `fdt`
//! parser too.

use device_tree::{Cells, DeviceTree, DeviceTreeEditor, Error, MemoryRange};

const QEMU_VIRT: &[u8] = include_bytes!("data/qemu-virt-bios-smp4.dtb");

/// Every node with a `compatible` and its first `reg` range, as the walk sees them.
fn devices(tree: &DeviceTree) -> Vec<(String, Option<MemoryRange>, usize)> {
    let mut found = Vec::new();
    tree.walk_nodes(&mut |node, cells| {
        let name = String::from_utf8_lossy(node.name()).into_owned();
        // CPU nodes have addresses without sizes: no memory range.
        let first = node.reg(cells).expect("reg").next().and_then(Result::ok);
        found.push((name, first, node.structure_offset()));
    })
    .expect("walk");
    found
}

#[test]
fn the_walk_reaches_nested_nodes_with_their_parents_cells() {
    let tree = DeviceTree::new(QEMU_VIRT).expect("fixture parses");
    let found = devices(&tree);
    let range = |name: &str| {
        found
            .iter()
            .find(|(found, ..)| found == name)
            .and_then(|(_, range, _)| *range)
    };
    assert_eq!(
        range("pl011@9000000"),
        Some(MemoryRange {
            base: 0x0900_0000,
            size: 0x1000
        })
    );
    assert_eq!(
        range("fw-cfg@9020000"),
        Some(MemoryRange {
            base: 0x0902_0000,
            size: 0x18
        })
    );
    // The ITS is a child of the GIC node.
    assert_eq!(
        range("its@8080000"),
        Some(MemoryRange {
            base: 0x0808_0000,
            size: 0x2_0000
        })
    );
    let gic = tree.find_node("/intc@8000000").expect("gic");
    assert_eq!(gic.is_compatible("arm,gic-v3"), Ok(true));
    assert_eq!(gic.is_compatible("arm,gic-v3-its"), Ok(false));
    let ranges: Vec<MemoryRange> = gic
        .reg(Cells {
            address: 2,
            size: 2,
        })
        .expect("reg")
        .collect::<Result<_, _>>()
        .expect("ranges");
    assert_eq!(ranges[0].base, 0x0800_0000);
    assert_eq!(ranges[1].base, 0x080A_0000);
}

#[test]
fn removed_nodes_are_gone_and_everything_else_stays() {
    let mut buffer = QEMU_VIRT.to_vec();
    let before = devices(&DeviceTree::new(&buffer).expect("fixture parses"));
    let mut editor = DeviceTreeEditor::new(&mut buffer).expect("fixture parses");
    let offset = |name: &str| {
        before
            .iter()
            .find(|(found, ..)| found == name)
            .map(|(.., offset)| *offset)
            .expect("node")
    };
    let mut withheld = [offset("its@8080000"), offset("fw-cfg@9020000")];
    assert_eq!(editor.remove_nodes(&mut withheld), Ok(2));
    let size = editor.total_size();
    let after = devices(&editor.tree());
    let names = |list: &[(String, Option<MemoryRange>, usize)]| -> Vec<String> {
        list.iter().map(|(name, ..)| name.clone()).collect()
    };
    let mut expected = names(&before);
    expected.retain(|name| name != "its@8080000" && name != "fw-cfg@9020000");
    assert_eq!(names(&after), expected);
    let independent = fdt::Fdt::new(&buffer[..size]).expect("fdt parses the result");
    assert!(independent.find_node("/fw-cfg@9020000").is_none());
    assert!(independent.find_node("/intc@8000000/its@8080000").is_none());
    assert!(independent.find_node("/intc@8000000").is_some());
    assert!(independent.find_node("/pl011@9000000").is_some());
}

#[test]
fn offsets_that_are_not_nodes_are_refused_and_change_nothing() {
    let mut buffer = QEMU_VIRT.to_vec();
    let mut editor = DeviceTreeEditor::new(&mut buffer).expect("fixture parses");
    let root = editor.tree().root().expect("root").structure_offset();
    for bad in [root, 4, usize::MAX] {
        let mut offsets = [bad];
        assert_eq!(
            editor.remove_nodes(&mut offsets),
            Err(Error::BadStructure),
            "{bad}"
        );
    }
    assert_eq!(editor.blob(), QEMU_VIRT);
}
