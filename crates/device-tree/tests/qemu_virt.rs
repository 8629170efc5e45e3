//! Reads and patches the tree QEMU's `virt` machine gives firmware (see `tests/data/README.md`), and
//! checks every result with the independent `fdt` parser as well as our own reader.

use device_tree::{
    DeviceTree, DeviceTreeEditor, Error, MemoryRange, PSCI_COMPATIBLE, ReservedRegion,
};

const QEMU_VIRT: &[u8] = include_bytes!("data/qemu-virt-bios-smp4.dtb");

const MONITOR: ReservedRegion<'static> = ReservedRegion {
    name: "monitor",
    base: 0x0e00_0000,
    size: 0x0100_0000,
};
const HYPERVISOR: ReservedRegion<'static> = ReservedRegion {
    name: "hypervisor",
    base: 0x7e00_0000,
    size: 0x0200_0000,
};

/// The fixture at the start of a buffer with `slack` free bytes after it.
fn buffer_with_slack(slack: usize) -> Vec<u8> {
    let mut buffer = QEMU_VIRT.to_vec();
    buffer.resize(QEMU_VIRT.len() + slack, 0);
    buffer
}

fn patched(slack: usize) -> Vec<u8> {
    let mut buffer = buffer_with_slack(slack);
    let mut editor = DeviceTreeEditor::new(&mut buffer).expect("fixture parses");
    assert_eq!(editor.prepare_for_psci_boot(&[MONITOR, HYPERVISOR]), Ok(4));
    buffer
}

fn cells(value: &[u8]) -> Vec<u32> {
    value
        .chunks(4)
        .map(|chunk| u32::from_be_bytes(chunk.try_into().expect("whole cells")))
        .collect()
}

#[test]
fn reads_what_qemu_describes() {
    let tree = DeviceTree::new(QEMU_VIRT).expect("fixture parses");
    assert_eq!(tree.total_size(), QEMU_VIRT.len());
    assert_eq!(
        tree.memory(),
        Ok(MemoryRange {
            base: 0x4000_0000,
            size: 0x4000_0000
        })
    );
    assert_eq!(tree.cpu_count(), Ok(4));
    assert_eq!(
        tree.cpus().expect("cpus").collect::<Result<Vec<_>, _>>(),
        Ok(vec![0, 1, 2, 3])
    );
    assert_eq!(tree.stdout_path(), Ok(Some("/pl011@9000000")));
    assert_eq!(tree.bootargs(), Ok(None));
    assert_eq!(tree.initrd(), Ok(None));
    assert_eq!(tree.find_node("/psci").unwrap_err(), Error::NodeNotFound);
    assert_eq!(
        tree.property("/cpus/cpu@0", "enable-method"),
        Err(Error::PropertyNotFound)
    );
    assert_eq!(tree.property("/cpus/cpu@2", "reg"), Ok(&[0u8, 0, 0, 2][..]));
    assert_eq!(
        tree.find_node("/pl011@9000000").map(|node| node.name()),
        Ok(&b"pl011@9000000"[..])
    );
}

#[test]
fn patch_adds_psci_cpus_and_reserved_memory_as_fdt_crate_sees_them() {
    let buffer = patched(4096);
    let fdt = fdt::Fdt::new(&buffer).expect("fdt crate parses the patched blob");

    let psci = fdt.find_node("/psci").expect("/psci");
    let compatible: Vec<&str> = psci.compatible().expect("compatible").all().collect();
    assert_eq!(compatible, ["arm,psci-1.0", "arm,psci-0.2"]);
    assert_eq!(
        psci.property("method").and_then(|method| method.as_str()),
        Some("smc")
    );

    let cpus: Vec<_> = fdt.cpus().collect();
    assert_eq!(cpus.len(), 4);
    for (index, cpu) in cpus.iter().enumerate() {
        assert_eq!(cpu.ids().first(), index);
        assert_eq!(
            cpu.property("enable-method")
                .and_then(|method| method.as_str()),
            Some("psci")
        );
    }

    let reserved = fdt.find_node("/reserved-memory").expect("/reserved-memory");
    assert_eq!(
        reserved
            .property("#address-cells")
            .and_then(|cells| cells.as_usize()),
        Some(2)
    );
    assert_eq!(
        reserved
            .property("#size-cells")
            .and_then(|cells| cells.as_usize()),
        Some(2)
    );
    assert_eq!(
        reserved.property("ranges").map(|ranges| ranges.value.len()),
        Some(0)
    );
    let children: Vec<_> = reserved.children().map(|child| child.name).collect();
    assert_eq!(children, ["monitor@e000000", "hypervisor@7e000000"]);
    for (path, region) in [
        ("/reserved-memory/monitor@e000000", MONITOR),
        ("/reserved-memory/hypervisor@7e000000", HYPERVISOR),
    ] {
        let node = fdt.find_node(path).expect(path);
        let reg = node.property("reg").expect("reg").value;
        let expected = [
            (region.base >> 32) as u32,
            region.base as u32,
            (region.size >> 32) as u32,
            region.size as u32,
        ];
        assert_eq!(cells(reg), expected, "{path}");
        assert_eq!(
            node.property("no-map").map(|no_map| no_map.value.len()),
            Some(0),
            "{path}"
        );
    }
    // What was there before is still there.
    let memory = fdt.memory().regions().next().expect("memory region");
    assert_eq!(
        (memory.starting_address as usize, memory.size),
        (0x4000_0000, Some(0x4000_0000))
    );
    assert_eq!(
        fdt.chosen().stdout().map(|stdout| stdout.name),
        Some("pl011@9000000")
    );
}

/// Every node and property of the original tree survives the patch unchanged, except the
/// `enable-method` the patch adds; the patch adds exactly the nodes it should.
#[test]
fn patch_keeps_everything_else_byte_for_byte() {
    fn walk(
        node: fdt::node::FdtNode<'_, '_>,
        path: String,
        out: &mut Vec<(String, String, Vec<u8>)>,
    ) {
        out.push((path.clone(), String::new(), Vec::new()));
        for property in node.properties() {
            out.push((
                path.clone(),
                property.name.to_string(),
                property.value.to_vec(),
            ));
        }
        for child in node.children() {
            walk(child, format!("{path}/{}", child.name), out);
        }
    }
    let original = fdt::Fdt::new(QEMU_VIRT).expect("original");
    let buffer = patched(4096);
    let patched_fdt = fdt::Fdt::new(&buffer).expect("patched");
    let mut before = Vec::new();
    walk(
        original.find_node("/").expect("root"),
        String::new(),
        &mut before,
    );
    let mut after = Vec::new();
    walk(
        patched_fdt.find_node("/").expect("root"),
        String::new(),
        &mut after,
    );

    let added: Vec<_> = after
        .iter()
        .filter(|entry| !before.contains(entry))
        .collect();
    let removed: Vec<_> = before
        .iter()
        .filter(|entry| !after.contains(entry))
        .collect();
    assert!(removed.is_empty(), "removed: {removed:?}");
    let added_keys: Vec<(&str, &str)> = added
        .iter()
        .map(|(path, name, _)| (path.as_str(), name.as_str()))
        .collect();
    let mut expected: Vec<(&str, &str)> = vec![
        ("/cpus/cpu@0", "enable-method"),
        ("/cpus/cpu@1", "enable-method"),
        ("/cpus/cpu@2", "enable-method"),
        ("/cpus/cpu@3", "enable-method"),
        ("/psci", ""),
        ("/psci", "compatible"),
        ("/psci", "method"),
        ("/reserved-memory", ""),
        ("/reserved-memory", "#address-cells"),
        ("/reserved-memory", "#size-cells"),
        ("/reserved-memory", "ranges"),
        ("/reserved-memory/monitor@e000000", ""),
        ("/reserved-memory/monitor@e000000", "reg"),
        ("/reserved-memory/monitor@e000000", "no-map"),
        ("/reserved-memory/hypervisor@7e000000", ""),
        ("/reserved-memory/hypervisor@7e000000", "reg"),
        ("/reserved-memory/hypervisor@7e000000", "no-map"),
    ];
    let mut added_sorted = added_keys.clone();
    added_sorted.sort();
    expected.sort();
    assert_eq!(added_sorted, expected);
}

#[test]
fn patch_keeps_the_header_consistent() {
    let buffer = patched(4096);
    let word = |index: usize| {
        u32::from_be_bytes(
            buffer[index * 4..index * 4 + 4]
                .try_into()
                .expect("4 bytes"),
        ) as usize
    };
    let (total, struct_offset, strings_offset, strings_size, struct_size) =
        (word(1), word(2), word(3), word(8), word(9));
    let original = DeviceTree::new(QEMU_VIRT).expect("original");
    // The fixture was packed, so it stays packed: totalsize ends with the strings block.
    assert_eq!(total, strings_offset + strings_size);
    assert_eq!(struct_offset + struct_size, strings_offset);
    assert!(total > original.total_size() && total <= buffer.len());
    assert!(
        buffer[total..].iter().all(|&byte| byte == 0),
        "nothing written past totalsize"
    );
    // dtc's layout and QEMU's 1 MiB totalsize with free space behind the strings block are both kept.
    let mut roomy = QEMU_VIRT.to_vec();
    roomy.resize(0x10000, 0);
    roomy[4..8].copy_from_slice(&0x8000u32.to_be_bytes());
    let mut editor = DeviceTreeEditor::new(&mut roomy).expect("roomy parses");
    editor.prepare_for_psci_boot(&[MONITOR]).expect("patch");
    assert_eq!(
        editor.total_size(),
        0x8000,
        "totalsize with free space left alone"
    );
    let packed = editor.pack().expect("pack");
    assert!(packed < 0x8000 && packed > QEMU_VIRT.len(), "{packed:#x}");
    assert_eq!(editor.blob().len(), packed);
    let fdt = fdt::Fdt::new(editor.blob()).expect("packed blob parses");
    assert_eq!(fdt.total_size(), packed);
    assert!(fdt.find_node("/reserved-memory/monitor@e000000").is_some());
}

#[test]
fn patch_twice_changes_nothing_more() {
    let once = patched(4096);
    let mut twice = once.clone();
    let mut editor = DeviceTreeEditor::new(&mut twice).expect("parses");
    assert_eq!(editor.prepare_for_psci_boot(&[MONITOR, HYPERVISOR]), Ok(4));
    assert_eq!(once, twice);
}

#[test]
fn spin_table_cpus_switch_to_psci() {
    let mut buffer = buffer_with_slack(4096);
    let mut editor = DeviceTreeEditor::new(&mut buffer).expect("parses");
    for cpu in 0..4 {
        let path = format!("/cpus/cpu@{cpu}");
        editor
            .set_property_str(&path, "enable-method", "spin-table")
            .expect("spin-table");
        editor
            .set_property_u64(&path, "cpu-release-addr", 0x4000_fff8)
            .expect("release address");
    }
    assert_eq!(
        editor
            .tree()
            .property("/cpus/cpu@3", "cpu-release-addr")
            .map(<[u8]>::len),
        Ok(8)
    );
    assert_eq!(editor.use_psci_for_cpus(), Ok(4));
    let tree = editor.tree();
    for cpu in 0..4 {
        let node = tree.find_node(&format!("/cpus/cpu@{cpu}")).expect("cpu");
        assert_eq!(node.property_str("enable-method"), Ok(Some("psci")));
        assert_eq!(node.property("cpu-release-addr"), Ok(None));
    }
    assert_eq!(
        tree.cpus().expect("cpus").collect::<Result<Vec<_>, _>>(),
        Ok(vec![0, 1, 2, 3])
    );
}

#[test]
fn chosen_initrd_and_bootargs_round_trip() {
    let mut buffer = buffer_with_slack(4096);
    let mut editor = DeviceTreeEditor::new(&mut buffer).expect("parses");
    let initrd = MemoryRange {
        base: 0x4800_0000,
        size: 0x12_3456,
    };
    editor.set_initrd(initrd).expect("initrd");
    editor
        .set_bootargs("console=ttyAMA0 earlycon")
        .expect("bootargs");
    editor
        .set_bootargs("console=ttyAMA0")
        .expect("shorter bootargs");
    let tree = editor.tree();
    assert_eq!(tree.initrd(), Ok(Some(initrd)));
    assert_eq!(tree.bootargs(), Ok(Some("console=ttyAMA0")));
    let fdt = fdt::Fdt::new(&buffer).expect("fdt crate parses");
    assert_eq!(fdt.chosen().bootargs(), Some("console=ttyAMA0"));
}

/// One row of the edit table: an edit of `/cpus/cpu@1`, its result, and the value of `property`
/// afterwards.
struct EditCase {
    label: &'static str,
    edit: fn(&mut DeviceTreeEditor<'_>) -> Result<(), Error>,
    expected: Result<(), Error>,
    property: &'static str,
    value_after: Option<&'static [u8]>,
}

#[test]
fn property_edits_table() {
    let path = "/cpus/cpu@1";
    let table = [
        EditCase {
            label: "same length",
            edit: |editor| editor.set_property("/cpus/cpu@1", "reg", &[0, 0, 0, 9]),
            expected: Ok(()),
            property: "reg",
            value_after: Some(&[0, 0, 0, 9]),
        },
        EditCase {
            label: "grow",
            edit: |editor| editor.set_property("/cpus/cpu@1", "reg", &[1, 2, 3, 4, 5]),
            expected: Ok(()),
            property: "reg",
            value_after: Some(&[1, 2, 3, 4, 5]),
        },
        EditCase {
            label: "shrink to empty",
            edit: |editor| editor.set_property("/cpus/cpu@1", "reg", &[]),
            expected: Ok(()),
            property: "reg",
            value_after: Some(&[]),
        },
        EditCase {
            label: "new property",
            edit: |editor| editor.set_property_u32("/cpus/cpu@1", "new-one", 7),
            expected: Ok(()),
            property: "new-one",
            value_after: Some(&[0, 0, 0, 7]),
        },
        EditCase {
            label: "remove",
            edit: |editor| {
                editor
                    .remove_property("/cpus/cpu@1", "compatible")
                    .map(|_| ())
            },
            expected: Ok(()),
            property: "compatible",
            value_after: None,
        },
        EditCase {
            label: "remove absent",
            edit: |editor| editor.remove_property("/cpus/cpu@1", "absent").map(|_| ()),
            expected: Ok(()),
            property: "absent",
            value_after: None,
        },
        EditCase {
            label: "missing node",
            edit: |editor| editor.set_property("/cpus/cpu@9", "reg", &[]),
            expected: Err(Error::NodeNotFound),
            property: "reg",
            value_after: Some(&[0, 0, 0, 1]),
        },
        EditCase {
            label: "bad name",
            edit: |editor| editor.set_property("/cpus/cpu@1", "a/b", &[]),
            expected: Err(Error::InvalidName),
            property: "a/b",
            value_after: None,
        },
        EditCase {
            label: "empty name",
            edit: |editor| editor.set_property("/cpus/cpu@1", "", &[]),
            expected: Err(Error::InvalidName),
            property: "",
            value_after: None,
        },
        EditCase {
            label: "new node",
            edit: |editor| editor.add_node("/cpus/cpu@1", "cache"),
            expected: Ok(()),
            property: "reg",
            value_after: Some(&[0, 0, 0, 1]),
        },
    ];
    for case in table {
        let label = case.label;
        let mut buffer = buffer_with_slack(256);
        let mut editor = DeviceTreeEditor::new(&mut buffer).expect("parses");
        assert_eq!((case.edit)(&mut editor), case.expected, "{label}");
        let node = editor.tree().find_node(path).expect("node");
        assert_eq!(
            node.property(case.property),
            Ok(case.value_after),
            "{label}"
        );
        // Neighbours are intact and the independent parser agrees.
        assert_eq!(
            editor.tree().property("/cpus/cpu@2", "reg"),
            Ok(&[0u8, 0, 0, 2][..]),
            "{label}"
        );
        assert_eq!(
            editor.tree().memory().map(|memory| memory.base),
            Ok(0x4000_0000),
            "{label}"
        );
        let fdt = fdt::Fdt::new(&buffer).expect("fdt crate parses");
        let seen = fdt
            .find_node(path)
            .and_then(|node| node.property(case.property))
            .map(|property| property.value);
        assert_eq!(seen, case.value_after, "{label}");
    }
}

#[test]
fn too_small_a_buffer_is_refused_and_leaves_a_valid_tree() {
    let mut buffer = QEMU_VIRT.to_vec();
    let mut editor = DeviceTreeEditor::new(&mut buffer).expect("parses");
    let result = editor.add_psci_node();
    assert!(
        matches!(result, Err(Error::BufferTooSmall { available, .. }) if available == QEMU_VIRT.len()),
        "{result:?}"
    );
    assert_eq!(editor.tree().cpu_count(), Ok(4));
    fdt::Fdt::new(&buffer).expect("still a valid tree");

    // Just enough room: every size from none to ample either succeeds or says BufferTooSmall.
    let needed = patched(4096)
        .iter()
        .rposition(|&byte| byte != 0)
        .expect("not empty")
        + 1;
    for slack in 0..needed - QEMU_VIRT.len() + 8 {
        let mut buffer = buffer_with_slack(slack);
        let mut editor = DeviceTreeEditor::new(&mut buffer).expect("parses");
        match editor.prepare_for_psci_boot(&[MONITOR, HYPERVISOR]) {
            Ok(cpus) => assert_eq!(cpus, 4),
            Err(Error::BufferTooSmall { .. }) => {}
            Err(other) => panic!("slack {slack}: {other:?}"),
        }
        fdt::Fdt::new(&buffer).expect("valid after success or refusal");
    }
}

#[test]
fn reserved_regions_that_do_not_fit_are_refused() {
    let table = [
        (
            ReservedRegion {
                name: "empty",
                base: 0x1000,
                size: 0,
            },
            Error::BadPropertyValue,
        ),
        (
            ReservedRegion {
                name: "a@b",
                base: 0x1000,
                size: 1,
            },
            Error::InvalidName,
        ),
        (
            ReservedRegion {
                name: "",
                base: 0x1000,
                size: 1,
            },
            Error::InvalidName,
        ),
        (
            ReservedRegion {
                name: "a/b",
                base: 0x1000,
                size: 1,
            },
            Error::InvalidName,
        ),
    ];
    for (region, expected) in table {
        let mut buffer = buffer_with_slack(4096);
        let mut editor = DeviceTreeEditor::new(&mut buffer).expect("parses");
        assert_eq!(
            editor.add_reserved_memory(&[region]),
            Err(expected),
            "{region:?}"
        );
    }
    assert_eq!(PSCI_COMPATIBLE.last(), Some(&0));
}
