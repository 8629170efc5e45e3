//! The driver against the fake SMMU: ownership, the revoke sequence and its order, splits, the
//! two-phase failure, timeouts.

use crate::fake::{Event, FakeSmmu};
use crate::registers::{
    CR0_CMDQEN, CR0_EVENTQEN, CR0_SMMUEN, CR0ACK, EVENTQ_PROD, GBPA, GBPA_ABORT,
};
use crate::{
    Command, DeviceAccess, HOST_ASID, IoPageTable, PAGE_SIZE, Smmu, SmmuError, SmmuMemory,
};

const MIB: u64 = 1 << 20;
/// The SMMU's memory: fixed structures plus 16 table pages.
const MEMORY: SmmuMemory = SmmuMemory {
    base: 0x4100_0000,
    size: SmmuMemory::FIXED_BYTES + 16 * PAGE_SIZE,
};
/// Host memory as QEMU's `virt` with the hypervisor at 0x4020_0000..0x4220_0000.
const HOST: [core::ops::Range<u64>; 2] = [0x4000_0000..0x4020_0000, 0x4220_0000..0x8000_0000];
const EDU: u32 = 0x0008;

fn owned() -> Smmu<FakeSmmu> {
    Smmu::take_ownership(FakeSmmu::new(), MEMORY, &HOST).expect("the fake SMMU is taken")
}

#[test]
fn ownership_translates_every_stream_to_host_memory_only() {
    let mut smmu = owned();
    let fake = smmu.device_mut();
    assert_eq!(fake.read32(CR0ACK), CR0_CMDQEN | CR0_EVENTQEN | CR0_SMMUEN);
    assert_eq!(fake.read32(GBPA) & GBPA_ABORT, GBPA_ABORT);
    assert_eq!(
        fake.commands(),
        [
            Command::ConfigureAll,
            Command::InvalidateAllNonSecure,
            Command::InvalidateAllEl2,
            Command::Sync
        ]
    );
    for stream in [0, EDU, 0x0100, 0xFFFF] {
        assert_eq!(fake.dma(stream, 0x4000_0000), Some(0x4000_0000));
        assert_eq!(fake.dma(stream, 0x4360_0123), Some(0x4360_0123));
        assert_eq!(fake.dma(stream, 0x7FFF_F000), Some(0x7FFF_F000));
        // The hypervisor, the devices and beyond DRAM are not reachable.
        assert_eq!(fake.dma(stream, 0x4020_0000), None);
        assert_eq!(fake.dma(stream, 0x421F_F000), None);
        assert_eq!(fake.dma(stream, 0x0808_0000), None);
        assert_eq!(fake.dma(stream, 0x8000_0000), None);
    }
    assert_eq!(
        fake.dma(0x1_0000, 0x4000_0000),
        None,
        "beyond 16 StreamID bits"
    );
    // 1 GiB of DRAM in 2 MiB blocks: the root and one level-2 table.
    assert_eq!(smmu.table().tables_available(), 14);
}

/// Where `event` is in the log.
fn position(log: &[Event], wanted: impl Fn(&Event) -> bool) -> Vec<usize> {
    log.iter()
        .enumerate()
        .filter(|(_, event)| wanted(event))
        .map(|(index, _)| index)
        .collect()
}

#[test]
fn revoke_is_unmap_then_invalidate_then_one_sync() {
    let mut smmu = owned();
    let page = 0x4400_0000;
    // Split the block first, so this revoke writes level-3 entries only.
    smmu.revoke(page + PAGE_SIZE..page + 2 * PAGE_SIZE)
        .expect("revoke");
    let fake = smmu.device_mut();
    assert_eq!(fake.dma(EDU, page), Some(page), "cached in the TLB now");
    fake.log.clear();
    smmu.revoke(page..page + PAGE_SIZE).expect("revoke");
    let log = &smmu.device().log;
    let pool = MEMORY.base + SmmuMemory::FIXED_BYTES;
    let unmap = position(
        log,
        |event| matches!(event, Event::Memory { address, value: 0 } if *address >= pool),
    );
    let invalidate = position(log, |event| {
        *event
            == Event::Executed(Command::InvalidateAddress {
                asid: HOST_ASID,
                vmid: 0,
                address: page,
                leaf: true,
            })
    });
    let sync = position(log, |event| *event == Event::Executed(Command::Sync));
    assert_eq!(unmap.len(), 1, "{log:?}");
    assert_eq!(invalidate.len(), 1, "{log:?}");
    assert_eq!(sync.len(), 1, "one sync per operation: {log:?}");
    assert!(
        unmap[0] < invalidate[0] && invalidate[0] < sync[0],
        "{log:?}"
    );
    assert!(
        position(log, |event| *event == Event::Publish)
            .iter()
            .any(|&publish| unmap[0] < publish && publish < invalidate[0]),
        "the unmap is published before the SMMU reads the invalidation: {log:?}"
    );
    assert_eq!(smmu.device_mut().dma(EDU, page), None);
    assert_eq!(smmu.syncs(), 2);
}

#[test]
fn without_the_invalidation_a_cached_translation_survives() {
    // What `revoke` guards against: the table alone is not enough while the TLB holds the page.
    let mut smmu = owned();
    let page = 0x4400_0000;
    assert_eq!(smmu.device_mut().dma(EDU, page), Some(page));
    // Clear the block's entry in the driver's own table but send no command.
    let root = smmu.table().root();
    let fake = smmu.device_mut();
    let level1 = fake.read_memory(root + 8) & 0x0000_FFFF_FFFF_F000;
    fake.write_memory(level1 + ((page >> 21) & 511) * 8, 0);
    assert_eq!(fake.dma(EDU, page), Some(page), "stale TLB entry");
    assert_eq!(
        fake.dma(EDU, page + 2 * MIB - PAGE_SIZE),
        None,
        "not cached"
    );
}

#[test]
fn revoking_part_of_a_block_splits_it() {
    let mut smmu = owned();
    let before = smmu.table().tables_available();
    let range = 0x4400_3000..0x4400_5000;
    let changed = smmu.revoke(range.clone()).expect("revoke");
    assert!(changed.split);
    assert_eq!(changed.leaves, 2);
    assert_eq!(smmu.table().tables_available(), before - 1);
    assert!(smmu.device().commands().ends_with(&[
        Command::InvalidateAsid {
            asid: HOST_ASID,
            vmid: 0
        },
        Command::Sync
    ]));
    let fake = smmu.device_mut();
    for (address, expected) in [
        (0x4400_0000, true),
        (0x4400_2FFF, true),
        (0x4400_3000, false),
        (0x4400_4FF8, false),
        (0x4400_5000, true),
        (0x441F_F000, true),
    ] {
        assert_eq!(fake.dma(EDU, address).is_some(), expected, "{address:#x}");
    }
    // Granted back: reachable again, no new table, no command.
    let commands = smmu.device().commands().len();
    smmu.grant(range).expect("grant");
    assert_eq!(smmu.table().tables_available(), before - 1);
    assert_eq!(smmu.device().commands().len(), commands);
    assert_eq!(smmu.device_mut().dma(EDU, 0x4400_3000), Some(0x4400_3000));
}

#[test]
fn revoking_whole_blocks_needs_no_table() {
    let mut smmu = owned();
    let before = smmu.table().tables_available();
    let changed = smmu.revoke(0x4400_0000..0x4480_0000).expect("revoke");
    assert_eq!(changed.leaves, 4);
    assert!(!changed.split);
    assert_eq!(smmu.table().tables_available(), before);
    let commands = smmu.device().commands();
    assert_eq!(commands.iter().filter(|c| **c == Command::Sync).count(), 2);
    assert_eq!(
        commands[commands.len() - 2],
        Command::InvalidateAsid {
            asid: HOST_ASID,
            vmid: 0
        },
        "a large range is invalidated by ASID"
    );
    assert_eq!(smmu.device_mut().dma(EDU, 0x4470_0000), None);
    assert_eq!(smmu.device_mut().dma(EDU, 0x4480_0000), Some(0x4480_0000));
}

#[test]
fn a_revoke_the_pool_cannot_cover_changes_nothing() {
    let mut smmu = owned();
    // 14 pages left: 15 partial blocks need 15.
    let start = 0x4400_0000;
    let ranges: Vec<_> = (0..15u64)
        .map(|block| start + block * 2 * MIB..start + block * 2 * MIB + PAGE_SIZE)
        .collect();
    for range in &ranges[..14] {
        smmu.revoke(range.clone()).expect("pool covers 14");
    }
    smmu.device_mut().log.clear();
    assert_eq!(
        smmu.revoke(ranges[14].clone()),
        Err(SmmuError::OutOfTableMemory {
            needed: 1,
            available: 0
        })
    );
    assert!(
        smmu.device().log.is_empty(),
        "nothing written, nothing sent"
    );
    assert_eq!(
        smmu.device_mut().dma(EDU, ranges[14].start),
        Some(ranges[14].start)
    );
    // One range over several blocks is refused as a whole, before its first split.
    let across = start + 30 * MIB - PAGE_SIZE..start + 32 * MIB + PAGE_SIZE;
    assert_eq!(
        smmu.revoke(across).map(drop),
        Err(SmmuError::OutOfTableMemory {
            needed: 2,
            available: 0
        })
    );
    assert!(smmu.device().log.is_empty());
}

#[test]
fn a_stuck_smmu_fails_the_sync() {
    let mut smmu = owned();
    smmu.device_mut().stuck = true;
    assert_eq!(
        smmu.revoke(0x4400_0000..0x4420_0000),
        Err(SmmuError::SyncTimeout)
    );
}

#[test]
fn the_command_queue_wraps() {
    let mut smmu = owned();
    // 400 revokes of a page each: 800 commands through a 256-entry queue.
    for page in 0..400u64 {
        let address = 0x4800_0000 + page * PAGE_SIZE;
        smmu.revoke(address..address + PAGE_SIZE).expect("revoke");
    }
    assert_eq!(smmu.syncs(), 400);
    assert_eq!(smmu.device_mut().dma(EDU, 0x4800_0000), None);
    assert_eq!(smmu.device_mut().dma(EDU, 0x4819_0000), Some(0x4819_0000));
}

#[test]
fn unsupported_smmus_and_bad_memory_are_refused() {
    let mut fake = FakeSmmu::new();
    fake.registers.insert(crate::registers::IDR0, 0);
    assert_eq!(
        Smmu::take_ownership(fake, MEMORY, &HOST).map(drop),
        Err(SmmuError::Missing(crate::MissingFeature::Stage1))
    );
    let misaligned = SmmuMemory {
        base: MEMORY.base + 0x1000,
        ..MEMORY
    };
    assert_eq!(
        Smmu::take_ownership(FakeSmmu::new(), misaligned, &HOST).map(drop),
        Err(SmmuError::BadMemory)
    );
}

#[test]
fn io_page_table_map_unmap_table() {
    let mut fake = FakeSmmu::new();
    let mut table =
        IoPageTable::new(&mut fake, 0x1000_0000..0x1000_0000 + 8 * PAGE_SIZE).expect("table");
    // (change, range, tables needed, leaves written)
    let steps: [(bool, core::ops::Range<u64>, u64, u64); 6] = [
        (true, 0x4000_0000..0x4040_0000, 1, 2),
        (true, 0x4040_0000..0x4040_2000, 1, 2),
        (false, 0x4000_1000..0x4000_2000, 1, 1),
        (false, 0x4020_0000..0x4040_0000, 0, 1),
        (true, 0x4000_0000..0x4020_0000, 0, 1),
        (false, 0x4040_0000..0x4040_1000, 0, 1),
    ];
    for (map, range, tables, leaves) in steps {
        let needed = if map {
            table.tables_needed_to_map(&mut fake, &range)
        } else {
            table.tables_needed(&mut fake, &range)
        };
        assert_eq!(needed, Ok(tables), "{map} {range:x?}");
        let changed = if map {
            table.map(&mut fake, range.clone())
        } else {
            table.unmap(&mut fake, range.clone())
        }
        .expect("change");
        assert_eq!(changed.leaves, leaves, "{map} {range:x?}");
    }
    for (address, expected) in [
        (0x4000_0000, Some(0x4000_0000)),
        (0x4000_1000, Some(0x4000_1000)),
        (0x401F_FFF8, Some(0x401F_FFF8)),
        (0x4020_0000, None),
        (0x4040_0000, None),
        (0x4040_1000, Some(0x4040_1000)),
        (0x4040_2000, None),
        (1 << 39, None),
    ] {
        assert_eq!(
            table.translate(&mut fake, address),
            expected,
            "{address:#x}"
        );
    }
    assert_eq!(
        table.map(&mut fake, 0x4000_0800..0x4000_1000),
        Err(SmmuError::NotAligned {
            address: 0x4000_0800
        })
    );
    assert_eq!(
        table.map(&mut fake, 0x7F_FFFF_F000..0x80_0000_1000),
        Err(SmmuError::OutOfRange {
            address: 0x80_0000_1000
        })
    );
}

#[test]
fn events_are_drained() {
    let mut smmu = owned();
    let event_queue = MEMORY.base + 0x1000;
    let fake = smmu.device_mut();
    // An F_TRANSLATION read fault of the edu device at a guest page.
    fake.memory
        .insert(event_queue, 0x10 | (u64::from(EDU) << 32));
    fake.memory.insert(event_queue + 8, 1 << 35);
    fake.memory.insert(event_queue + 16, 0x4410_0000);
    fake.registers.insert(EVENTQ_PROD, 1);
    assert_eq!(
        smmu.drain_events(),
        (
            1,
            Some(crate::FaultRecord {
                kind: 0x10,
                stream: EDU,
                address: 0x4410_0000,
                read: true
            })
        )
    );
    assert_eq!(smmu.drain_events(), (0, None));
}
