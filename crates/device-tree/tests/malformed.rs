//! A truncated or corrupted blob yields errors, never a panic, from every reader and editor entry
//! point; an edit that succeeds on a corrupted blob still leaves a blob our reader accepts.

use device_tree::{DeviceTree, DeviceTreeEditor, Error, MemoryRange, ReservedRegion};
use proptest::prelude::*;

const QEMU_VIRT: &[u8] = include_bytes!("data/qemu-virt-bios-smp4.dtb");

/// Runs every read helper; the results do not matter, only that they return.
fn read_everything(bytes: &[u8]) -> Result<(), Error> {
    let tree = DeviceTree::new(bytes)?;
    let _ = tree.memory();
    let _ = tree.cpu_count();
    let _ = tree.cpus().map(|cpus| cpus.count());
    let _ = tree.bootargs();
    let _ = tree.stdout_path();
    let _ = tree.initrd();
    let _ = tree.property("/cpus/cpu@1", "reg");
    if let Ok(root) = tree.root() {
        walk(root, 0);
    }
    Ok(())
}

fn walk(node: device_tree::Node<'_>, depth: usize) {
    if let Ok(properties) = node.properties() {
        for property in properties {
            let _ = property;
        }
    }
    if let Ok(children) = node.children() {
        for child in children.flatten() {
            if depth < 64 {
                walk(child, depth + 1);
            }
        }
    }
}

/// One editor operation.
type Edit = fn(&mut DeviceTreeEditor<'_>) -> Result<(), Error>;

/// Runs every edit on a copy with room to grow; after each successful edit the blob must still read.
fn edit_everything(bytes: &[u8]) {
    let mut buffer = bytes.to_vec();
    buffer.resize(bytes.len() + 2048, 0);
    let Ok(mut editor) = DeviceTreeEditor::new(&mut buffer) else {
        return;
    };
    let edits: [Edit; 6] = [
        |editor| editor.add_psci_node(),
        |editor| editor.use_psci_for_cpus().map(|_| ()),
        |editor| {
            editor.add_reserved_memory(&[ReservedRegion {
                name: "monitor",
                base: 0xe00_0000,
                size: 0x100_0000,
            }])
        },
        |editor| {
            editor.set_initrd(MemoryRange {
                base: 0x4800_0000,
                size: 0x1000,
            })
        },
        |editor| editor.set_bootargs("console=ttyAMA0"),
        |editor| editor.remove_property("/cpus/cpu@0", "reg").map(|_| ()),
    ];
    for edit in edits {
        if edit(&mut editor).is_ok() {
            assert!(
                DeviceTree::new(editor.blob()).is_ok(),
                "an edit broke the header"
            );
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    for len in 0..QEMU_VIRT.len() {
        let result = DeviceTree::new(&QEMU_VIRT[..len]);
        assert!(result.is_err(), "length {len} accepted");
        // And with totalsize claiming exactly what is there, the walk finds the damage.
        let mut shortened = QEMU_VIRT[..len].to_vec();
        if len >= 8 {
            shortened[4..8].copy_from_slice(&u32::try_from(len).expect("small").to_be_bytes());
        }
        let _ = read_everything(&shortened);
        edit_everything(&shortened);
    }
}

#[test]
fn every_token_overwritten_in_the_structure_block_is_survived() {
    let struct_offset = u32::from_be_bytes(QEMU_VIRT[8..12].try_into().expect("4 bytes")) as usize;
    let struct_size = u32::from_be_bytes(QEMU_VIRT[36..40].try_into().expect("4 bytes")) as usize;
    // END_NODE, PROP, END where something else was, and a word that is no token or a huge length;
    // other values come from the random test below.
    let values = [2u32, 3, 9, 0xffff_ffff];
    for offset in (struct_offset..struct_offset + struct_size).step_by(4) {
        for value in values {
            let mut corrupted = QEMU_VIRT.to_vec();
            corrupted[offset..offset + 4].copy_from_slice(&value.to_be_bytes());
            let _ = read_everything(&corrupted);
            edit_everything(&corrupted);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_corruption_never_panics(
        flips in proptest::collection::vec((0..QEMU_VIRT.len(), any::<u8>()), 1..16),
        header_word in proptest::option::of((0usize..10, any::<u32>())),
    ) {
        let mut corrupted = QEMU_VIRT.to_vec();
        for (index, value) in flips {
            corrupted[index] = value;
        }
        if let Some((index, value)) = header_word {
            corrupted[index * 4..index * 4 + 4].copy_from_slice(&value.to_be_bytes());
        }
        let _ = read_everything(&corrupted);
        edit_everything(&corrupted);
    }

    #[test]
    fn header_fields_out_of_range_are_errors(index in 1usize..10, value in any::<u32>()) {
        let mut corrupted = QEMU_VIRT.to_vec();
        corrupted[index * 4..index * 4 + 4].copy_from_slice(&value.to_be_bytes());
        let _ = read_everything(&corrupted);
        edit_everything(&corrupted);
        // Blocks pushed past the blob are always caught.
        if (index == 1 && value as usize > QEMU_VIRT.len()) || (index == 2 && value as usize >= QEMU_VIRT.len()) {
            prop_assert!(DeviceTree::new(&corrupted).is_err());
        }
    }
}

#[test]
fn bad_magic_and_version_are_named() {
    let mut corrupted = QEMU_VIRT.to_vec();
    corrupted[0] ^= 1;
    assert_eq!(DeviceTree::new(&corrupted).unwrap_err(), Error::BadMagic);
    let mut old = QEMU_VIRT.to_vec();
    old[20..24].copy_from_slice(&16u32.to_be_bytes());
    assert_eq!(
        DeviceTree::new(&old).unwrap_err(),
        Error::UnsupportedVersion
    );
    assert_eq!(
        DeviceTree::new(&QEMU_VIRT[..3]).unwrap_err(),
        Error::Truncated
    );
}
