//! Unit tests: geometry, encodings, map/walk, splits, annotations, all-or-nothing errors,
//! exact TLB sequences, table memory, and a property test against a page-by-page model.
#![allow(clippy::type_complexity, reason = "test tables are rows of tuples")]

use alloc::{boxed::Box, collections::BTreeMap, vec::Vec};

use proptest::prelude::*;

use crate::{
    testing::{RecordingTlb, break_before_make_events, table_pages},
    *,
};

const VMID: Vmid = Vmid(5);
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn geometry_48() -> Geometry {
    Geometry::from_pa_range(5).unwrap()
}

/// A table over a leaked pool of `pages` pages.
fn table_with(geometry: Geometry, pages: usize) -> Stage2Table<PagePool<'static>> {
    let pool = PagePool::new(Box::leak(table_pages(pages)));
    Stage2Table::new(geometry, VMID, pool).unwrap()
}

fn table(pages: usize) -> Stage2Table<PagePool<'static>> {
    table_with(geometry_48(), pages)
}

/// Every descriptor of every table, for "nothing changed" checks.
fn dump<P: TablePool>(table: &Stage2Table<P>) -> Vec<(u8, u64, usize, u64)> {
    crate::testing::descriptor_dump(table)
}

fn leaves<P: TablePool>(table: &Stage2Table<P>, ipa: u64, size: u64) -> Vec<Leaf> {
    let mut found = Vec::new();
    table
        .visit_leaves(ipa, size, |leaf| found.push(leaf))
        .unwrap();
    found
}

fn annotation(owner: u8, metadata: u64) -> Annotation {
    Annotation::new(OwnerId::new(owner).unwrap(), metadata).unwrap()
}

fn mapped(output: u64, attributes: Attributes, block_size: u64) -> Entry {
    Entry::Mapped {
        output,
        attributes,
        block_size,
    }
}

// ---- geometry and registers -------------------------------------------------------------

#[test]
fn geometry_from_pa_range() {
    // (PARange, PA bits, start level, root entries, root pages, T0SZ, SL0, PS)
    let cases: [(u8, u8, u8, usize, usize, u64, u64, u64); 8] = [
        (0, 32, 2, 2048, 4, 32, 0, 0),
        (1, 36, 1, 64, 1, 28, 1, 1),
        (2, 40, 1, 1024, 2, 24, 1, 2),
        (3, 42, 1, 4096, 8, 22, 1, 3),
        (4, 44, 0, 32, 1, 20, 2, 4),
        (5, 48, 0, 512, 1, 16, 2, 5),
        (6, 48, 0, 512, 1, 16, 2, 5),
        (7, 48, 0, 512, 1, 16, 2, 5),
    ];
    for (pa_range, bits, level, entries, pages, t0sz, sl0, ps) in cases {
        let geometry = Geometry::from_pa_range(pa_range).unwrap();
        assert_eq!(geometry.pa_bits(), bits, "PARange {pa_range}");
        assert_eq!(geometry.ipa_bits(), bits, "PARange {pa_range}");
        assert_eq!(geometry.start_level(), level, "PARange {pa_range}");
        assert_eq!(geometry.root_entries(), entries, "PARange {pa_range}");
        assert_eq!(geometry.root_table_pages(), pages, "PARange {pa_range}");
        let vtcr = geometry.vtcr_el2();
        assert_eq!(vtcr & 0x3f, t0sz, "T0SZ, PARange {pa_range}");
        assert_eq!((vtcr >> 6) & 0b11, sl0, "SL0, PARange {pa_range}");
        assert_eq!((vtcr >> 8) & 0b11, 0b01, "IRGN0");
        assert_eq!((vtcr >> 10) & 0b11, 0b01, "ORGN0");
        assert_eq!((vtcr >> 12) & 0b11, 0b11, "SH0");
        assert_eq!((vtcr >> 14) & 0b11, 0b00, "TG0");
        assert_eq!((vtcr >> 16) & 0b111, ps, "PS, PARange {pa_range}");
        assert_eq!((vtcr >> 19) & 1, 0, "VS");
        assert_eq!((vtcr >> 31) & 1, 1, "RES1");
        assert_eq!(vtcr >> 32, 0);
        let with_vs = geometry.with_16_bit_vmid(true).vtcr_el2();
        assert_eq!(with_vs, vtcr | 1 << 19);
    }
    // Whole values worked out by hand from the field layout.
    assert_eq!(geometry_48().vtcr_el2(), 0x8005_3590);
    assert_eq!(Geometry::from_pa_range(2).unwrap().vtcr_el2(), 0x8002_3558);
    assert_eq!(Geometry::from_pa_range(0).unwrap().vtcr_el2(), 0x8000_3520);
    for reserved in [8u8, 9, 15] {
        assert_eq!(
            Geometry::from_pa_range(reserved),
            Err(Stage2Error::UnsupportedPaRange(reserved))
        );
    }
    assert_eq!(
        Geometry::from_id_aa64mmfr0_el1(0x0000_1122_0010_0f05),
        Ok(geometry_48())
    );
}

#[test]
fn vttbr_and_vmid_width() {
    let table = table(4);
    assert_eq!(table.vttbr_el2(), table.root_address() | 5 << 48);
    assert_eq!(table.root_address() % PAGE_SIZE, 0);

    let pool = PagePool::new(Box::leak(table_pages(2)));
    let refused = Stage2Table::new(geometry_48(), Vmid(256), pool);
    assert_eq!(refused.err(), Some(Stage2Error::VmidTooWide));

    let pool = PagePool::new(Box::leak(table_pages(2)));
    let wide = Stage2Table::new(geometry_48().with_16_bit_vmid(true), Vmid(0xabcd), pool).unwrap();
    assert_eq!(wide.vttbr_el2() >> 48, 0xabcd);
}

#[test]
fn concatenated_root_is_aligned_and_covers_the_ipa_space() {
    for (pa_range, pages) in [(0u8, 4usize), (2, 2), (3, 8)] {
        let geometry = Geometry::from_pa_range(pa_range).unwrap();
        let mut table = table_with(geometry, 40);
        assert_eq!(table.root_address() % (pages as u64 * PAGE_SIZE), 0);
        assert_eq!(table.table_pages_in_use(), pages);
        let mut tlb = RecordingTlb::new();
        let top = geometry.ipa_size() - PAGE_SIZE;
        let attributes = Attributes::NORMAL_OWNED;
        table
            .map(top, 0x1000, PAGE_SIZE, attributes, &mut tlb)
            .unwrap();
        table
            .map(0, 0x2000, PAGE_SIZE, attributes, &mut tlb)
            .unwrap();
        assert_eq!(table.walk(top), mapped(0x1000, attributes, PAGE_SIZE));
        assert_eq!(table.walk(0), mapped(0x2000, attributes, PAGE_SIZE));
        assert_eq!(table.walk(geometry.ipa_size()), Entry::Unmapped);
        assert_eq!(
            table.map(top, 0, 2 * PAGE_SIZE, attributes, &mut tlb),
            Err(Stage2Error::OutOfRange)
        );
        let capacity = table.pool().capacity();
        assert_eq!(table.release().available(), capacity);
    }
}

// ---- encodings --------------------------------------------------------------------------

#[test]
fn leaf_descriptor_encodings() {
    let normal_read_only = Attributes {
        memory: MemoryType::Normal,
        permissions: Permissions::READ_ONLY,
        state: PageState::SharedBorrowed,
    };
    // (attributes, granule, size, expected descriptor for PA 0x4000_0000)
    let cases = [
        (
            Attributes::NORMAL_OWNED,
            MappingGranule::Page,
            PAGE_SIZE,
            0x4000_07ff,
        ),
        (
            Attributes::NORMAL_OWNED,
            MappingGranule::Largest,
            BLOCK_SIZE_2M,
            0x4000_07fd,
        ),
        (
            Attributes::NORMAL_OWNED,
            MappingGranule::Largest,
            BLOCK_SIZE_1G,
            0x4000_07fd,
        ),
        (
            Attributes::DEVICE_OWNED,
            MappingGranule::Page,
            PAGE_SIZE,
            1 << 54 | 0x4000_07c7,
        ),
        (
            Attributes::NORMAL_OWNED.with_state(PageState::SharedOwned),
            MappingGranule::Page,
            PAGE_SIZE,
            1 << 55 | 0x4000_07ff,
        ),
        (
            normal_read_only,
            MappingGranule::Page,
            PAGE_SIZE,
            1 << 56 | 1 << 54 | 0x4000_077f,
        ),
    ];
    for (attributes, granule, size, expected) in cases {
        let mut table = table(8);
        let mut tlb = RecordingTlb::new();
        let pa = 0x4000_0000;
        table
            .map_with_granule(GIB, pa, size, attributes, granule, &mut tlb)
            .unwrap();
        let found = leaves(&table, GIB, size);
        assert_eq!(found.len(), 1);
        let level = found[0].level;
        let mut descriptors = Vec::new();
        table.visit_descriptors(|at_level, _, _, descriptor| {
            if at_level == level && descriptor != 0 {
                descriptors.push(descriptor);
            }
        });
        assert_eq!(descriptors, [expected], "{attributes:?} {size:#x}");
        assert_eq!(
            table.walk(GIB + 0x123 * 8),
            mapped(pa + 0x918, attributes, size)
        );
    }
}

#[test]
fn annotation_encoding_and_limits() {
    let owner = OwnerId::new(7).unwrap();
    assert_eq!(OwnerId::new(8), Err(Stage2Error::OwnerOutOfRange));
    assert_eq!(
        Annotation::new(OwnerId::TABLE_OWNER, 1),
        Err(Stage2Error::AnnotationWithoutOwner)
    );
    assert_eq!(
        Annotation::new(owner, Annotation::MAX_METADATA + 1),
        Err(Stage2Error::AnnotationTooWide)
    );
    let widest = Annotation::new(owner, Annotation::MAX_METADATA).unwrap();
    // Fields are public: `annotate` checks again.
    let too_wide = Annotation {
        owner,
        metadata: 1 << 56,
    };

    let mut table = table(8);
    let mut tlb = RecordingTlb::new();
    let before = dump(&table);
    assert_eq!(
        table.annotate(0, PAGE_SIZE, too_wide, &mut tlb),
        Err(Stage2Error::AnnotationTooWide)
    );
    assert_eq!(dump(&table), before);

    for (ipa, annotation) in [
        (0x1000, widest),
        (0x2000, annotation(1, 0)),
        (0x3000, annotation(3, 0x1234_5678)),
    ] {
        table
            .annotate(ipa, PAGE_SIZE, annotation, &mut tlb)
            .unwrap();
        assert_eq!(table.walk(ipa), Entry::Annotated(annotation));
    }
    let mut level3 = Vec::new();
    table.visit_descriptors(|level, _, index, descriptor| {
        if level == 3 && descriptor != 0 {
            level3.push((index, descriptor));
        }
    });
    let widest_bits = 7 << 2 | Annotation::MAX_METADATA << 5;
    assert_eq!(widest_bits, 0x1fff_ffff_ffff_fffc);
    assert_eq!(
        level3,
        [
            (1, widest_bits),
            (2, 1 << 2),
            (3, 3 << 2 | 0x1234_5678 << 5)
        ]
    );
    assert_eq!(tlb.events, []);
}

// ---- map and walk -----------------------------------------------------------------------

#[test]
fn map_chooses_the_largest_leaves_alignment_allows() {
    use MappingGranule::*;
    // (ipa, pa, size, granule, expected (leaf size, count) in IPA order, table pages in use)
    let cases: [(u64, u64, u64, MappingGranule, &[(u64, usize)], usize); 9] = [
        (GIB, 0x8000_0000, PAGE_SIZE, Largest, &[(PAGE_SIZE, 1)], 4),
        (
            GIB,
            0x8000_0000,
            BLOCK_SIZE_2M,
            Largest,
            &[(BLOCK_SIZE_2M, 1)],
            3,
        ),
        (GIB, 0x8000_0000, GIB, Largest, &[(GIB, 1)], 2),
        (GIB, 0x8000_0000, GIB, AtMost2M, &[(BLOCK_SIZE_2M, 512)], 3),
        (
            GIB,
            0x8000_1000,
            BLOCK_SIZE_2M,
            Largest,
            &[(PAGE_SIZE, 512)],
            4,
        ),
        (
            GIB,
            0x8000_0000,
            BLOCK_SIZE_2M + PAGE_SIZE,
            Largest,
            &[(BLOCK_SIZE_2M, 1), (PAGE_SIZE, 1)],
            4,
        ),
        (GIB, 0x8000_0000, 4 * MIB, Page, &[(PAGE_SIZE, 1024)], 5),
        (
            GIB - 2 * PAGE_SIZE,
            0x8000_0000 - 2 * PAGE_SIZE,
            2 * PAGE_SIZE + GIB + BLOCK_SIZE_2M + PAGE_SIZE,
            Largest,
            &[(PAGE_SIZE, 2), (GIB, 1), (BLOCK_SIZE_2M, 1), (PAGE_SIZE, 1)],
            6,
        ),
        (0, 0, 3 * GIB, Largest, &[(GIB, 3)], 2),
    ];
    for (ipa, pa, size, granule, expected, pages) in cases {
        let mut table = table(16);
        let mut tlb = RecordingTlb::new();
        let attributes = Attributes::NORMAL_OWNED;
        let operation = Operation::Map {
            pa,
            attributes,
            granule,
        };
        let needed = table.tables_needed(ipa, size, operation).unwrap();
        table
            .map_with_granule(ipa, pa, size, attributes, granule, &mut tlb)
            .unwrap();
        assert_eq!(table.table_pages_in_use(), 1 + needed);
        assert_eq!(table.table_pages_in_use(), pages, "{ipa:#x} {size:#x}");
        assert_eq!(tlb.events, [], "mapping over nothing needs no maintenance");

        let found = leaves(&table, ipa, size);
        let mut runs: Vec<(u64, usize)> = Vec::new();
        let mut next = ipa;
        for leaf in &found {
            assert_eq!(leaf.ipa, next, "leaves are contiguous");
            assert_eq!(
                leaf.entry,
                mapped(pa + (leaf.ipa - ipa), attributes, leaf.size)
            );
            next += leaf.size;
            match runs.last_mut() {
                Some((size, count)) if *size == leaf.size => *count += 1,
                _ => runs.push((leaf.size, 1)),
            }
        }
        assert_eq!(next, ipa + size);
        assert_eq!(runs, expected, "{ipa:#x} {pa:#x} {size:#x} {granule:?}");
        for offset in [0, PAGE_SIZE, (size / 2) & !0xfff, size - PAGE_SIZE] {
            if offset >= size {
                continue;
            }
            let Entry::Mapped { output, .. } = table.walk(ipa + offset + 8) else {
                panic!("{:#x} not mapped", ipa + offset);
            };
            assert_eq!(output, pa + offset + 8);
        }
        assert_eq!(table.walk(ipa + size), Entry::Unmapped);
        assert_eq!(table.walk(ipa.wrapping_sub(PAGE_SIZE)), Entry::Unmapped);
    }
}

#[test]
fn invalid_arguments_change_nothing() {
    let mut table = table(8);
    let mut tlb = RecordingTlb::new();
    let attributes = Attributes::NORMAL_OWNED;
    table
        .map(0, 0, BLOCK_SIZE_2M, attributes, &mut tlb)
        .unwrap();
    let before = dump(&table);
    let max = geometry_48().ipa_size();
    let owner = annotation(1, 1);
    let cases: [(u64, u64, Operation, Stage2Error); 10] = [
        (0x800, PAGE_SIZE, Operation::Unmap, Stage2Error::NotAligned),
        (0, 0x800, Operation::Unmap, Stage2Error::NotAligned),
        (0, 0, Operation::Unmap, Stage2Error::ZeroSize),
        (
            max - PAGE_SIZE,
            2 * PAGE_SIZE,
            Operation::Unmap,
            Stage2Error::OutOfRange,
        ),
        (
            u64::MAX - 0xfff,
            PAGE_SIZE,
            Operation::Annotate(owner),
            Stage2Error::OutOfRange,
        ),
        (
            0,
            PAGE_SIZE,
            Operation::Map {
                pa: 0x10,
                attributes,
                granule: MappingGranule::Largest,
            },
            Stage2Error::NotAligned,
        ),
        (
            0,
            2 * PAGE_SIZE,
            Operation::Map {
                pa: max - PAGE_SIZE,
                attributes,
                granule: MappingGranule::Largest,
            },
            Stage2Error::OutOfRange,
        ),
        (
            BLOCK_SIZE_2M - PAGE_SIZE,
            2 * PAGE_SIZE,
            Operation::SetPageState(PageState::SharedOwned),
            Stage2Error::NotMapped { ipa: BLOCK_SIZE_2M },
        ),
        (
            0,
            PAGE_SIZE,
            Operation::Annotate(Annotation {
                owner: OwnerId::TABLE_OWNER,
                metadata: 3,
            }),
            Stage2Error::AnnotationWithoutOwner,
        ),
        (
            GIB,
            PAGE_SIZE,
            Operation::SetPageState(PageState::Owned),
            Stage2Error::NotMapped { ipa: GIB },
        ),
    ];
    for (ipa, size, operation, expected) in cases {
        assert_eq!(table.tables_needed(ipa, size, operation), Err(expected));
        assert_eq!(table.apply(ipa, size, operation, &mut tlb), Err(expected));
        assert_eq!(dump(&table), before, "{operation:?}");
        assert_eq!(tlb.events, []);
        assert_eq!(table.table_pages_in_use(), 3);
    }
}

// ---- splits and TLB sequences -----------------------------------------------------------

#[test]
fn partial_changes_split_blocks_with_one_maintenance_sequence() {
    let owner = annotation(2, 0xfeed);
    // (block size, changed offset, changed size, operation, pages added by the split)
    let cases: [(u64, u64, u64, Operation, usize); 6] = [
        (
            BLOCK_SIZE_2M,
            5 * PAGE_SIZE,
            PAGE_SIZE,
            Operation::Annotate(owner),
            1,
        ),
        (BLOCK_SIZE_2M, 0, 3 * PAGE_SIZE, Operation::Unmap, 1),
        (
            GIB,
            7 * BLOCK_SIZE_2M,
            BLOCK_SIZE_2M,
            Operation::Annotate(owner),
            1,
        ),
        (
            GIB,
            7 * BLOCK_SIZE_2M + PAGE_SIZE,
            PAGE_SIZE,
            Operation::Unmap,
            2,
        ),
        (
            GIB,
            GIB - PAGE_SIZE,
            PAGE_SIZE,
            Operation::SetPageState(PageState::SharedOwned),
            2,
        ),
        (
            BLOCK_SIZE_2M,
            PAGE_SIZE,
            PAGE_SIZE,
            Operation::SetPageState(PageState::SharedBorrowed),
            1,
        ),
    ];
    for (block, offset, size, operation, added) in cases {
        let mut table = table(8);
        let mut tlb = RecordingTlb::new();
        let (ipa, pa) = (GIB, 3 * GIB);
        let attributes = Attributes::NORMAL_OWNED;
        table.map(ipa, pa, block, attributes, &mut tlb).unwrap();
        assert_eq!(leaves(&table, ipa, block).len(), 1);
        let pages_before = table.table_pages_in_use();
        assert_eq!(
            table.tables_needed(ipa + offset, size, operation),
            Ok(added)
        );

        table
            .apply(ipa + offset, size, operation, &mut tlb)
            .unwrap();

        let level = if block == GIB { 1 } else { 2 };
        assert_eq!(
            tlb.take(),
            break_before_make_events(VMID, &[(ipa, level)]),
            "{operation:?}"
        );
        assert_eq!(table.table_pages_in_use(), pages_before + added);
        let changed = match operation {
            Operation::Annotate(annotation) => Entry::Annotated(annotation),
            Operation::Unmap => Entry::Unmapped,
            Operation::SetPageState(state) => {
                mapped(pa + offset, attributes.with_state(state), PAGE_SIZE)
            }
            Operation::Map { .. } | Operation::AnnotatePerPage(_) => unreachable!(),
        };
        let first = table.walk(ipa + offset);
        match (first, changed) {
            (
                Entry::Mapped {
                    output, attributes, ..
                },
                Entry::Mapped {
                    output: o,
                    attributes: a,
                    ..
                },
            ) => {
                assert_eq!((output, attributes), (o, a));
            }
            _ => assert_eq!(first, changed),
        }
        // The rest of the block still translates as before.
        for probe in [
            0,
            offset.saturating_sub(PAGE_SIZE),
            offset + size,
            block - PAGE_SIZE,
        ] {
            if probe >= offset && probe < offset + size || probe >= block {
                continue;
            }
            let Entry::Mapped {
                output,
                attributes: found,
                ..
            } = table.walk(ipa + probe)
            else {
                panic!("lost the mapping at offset {probe:#x}");
            };
            assert_eq!((output, found), (pa + probe, attributes));
        }
    }
}

#[test]
fn maintenance_runs_only_when_a_valid_entry_changes() {
    let owner = annotation(1, 9);
    let normal = Attributes::NORMAL_OWNED;
    let pa = 0x4000_0000;
    let mut table = table(16);
    let mut tlb = RecordingTlb::new();
    // Three mapped pages at 0x10_0000.., one annotated page at 0x20_0000.
    table
        .map_with_granule(
            0x10_0000,
            pa,
            3 * PAGE_SIZE,
            normal,
            MappingGranule::Page,
            &mut tlb,
        )
        .unwrap();
    table
        .annotate(0x20_0000, PAGE_SIZE, owner, &mut tlb)
        .unwrap();
    assert_eq!(tlb.take(), []);
    let pages = |list: &[u64]| -> Vec<(u64, u8)> { list.iter().map(|&ipa| (ipa, 3)).collect() };

    // (operation, ipa, size, expected broken pages)
    let steps: Vec<(Operation, u64, u64, Vec<(u64, u8)>)> = Vec::from([
        // Same mapping again: nothing changes.
        (
            Operation::Map {
                pa,
                attributes: normal,
                granule: MappingGranule::Page,
            },
            0x10_0000,
            3 * PAGE_SIZE,
            Vec::new(),
        ),
        // State only: software bits, no maintenance.
        (
            Operation::SetPageState(PageState::SharedOwned),
            0x10_0000,
            2 * PAGE_SIZE,
            Vec::new(),
        ),
        // Unmapping nothing, annotating nothing: no maintenance.
        (Operation::Unmap, 0x30_0000, 16 * PAGE_SIZE, Vec::new()),
        (Operation::Annotate(owner), 0x40_0000, PAGE_SIZE, Vec::new()),
        // Same annotation again.
        (Operation::Annotate(owner), 0x20_0000, PAGE_SIZE, Vec::new()),
        // Annotating over one valid page and one empty page: one TLBI.
        (
            Operation::Annotate(owner),
            0x10_2000,
            2 * PAGE_SIZE,
            pages(&[0x10_2000]),
        ),
        // Remap with another output: both pages broken, in IPA order.
        (
            Operation::Map {
                pa: 2 * pa,
                attributes: normal,
                granule: MappingGranule::Page,
            },
            0x10_0000,
            2 * PAGE_SIZE,
            pages(&[0x10_0000, 0x10_1000]),
        ),
        // Permission change is a real change too.
        (
            Operation::Map {
                pa: 2 * pa,
                attributes: Attributes {
                    permissions: Permissions::READ_ONLY,
                    ..normal
                },
                granule: MappingGranule::Page,
            },
            0x10_0000,
            PAGE_SIZE,
            pages(&[0x10_0000]),
        ),
        (
            Operation::Unmap,
            0x10_0000,
            16 * PAGE_SIZE,
            pages(&[0x10_0000, 0x10_1000]),
        ),
    ]);
    for (operation, ipa, size, broken) in steps {
        table.apply(ipa, size, operation, &mut tlb).unwrap();
        assert_eq!(
            tlb.take(),
            break_before_make_events(VMID, &broken),
            "{operation:?} at {ipa:#x}"
        );
    }
    assert_eq!(table.walk(0x10_2000), Entry::Unmapped);
    assert_eq!(table.walk(0x20_0000), Entry::Annotated(owner));
}

#[test]
fn remapping_a_block_range_in_pages_breaks_the_block_once() {
    let mut table = table(8);
    let mut tlb = RecordingTlb::new();
    let normal = Attributes::NORMAL_OWNED;
    table
        .map(0, 0x4000_0000, 2 * BLOCK_SIZE_2M, normal, &mut tlb)
        .unwrap();
    // Map the whole range again, unaligned output: the blocks become page tables.
    table
        .map(0, 0x5000_1000, 2 * BLOCK_SIZE_2M, normal, &mut tlb)
        .unwrap();
    assert_eq!(
        tlb.take(),
        break_before_make_events(VMID, &[(0, 2), (BLOCK_SIZE_2M, 2)])
    );
    assert_eq!(
        table.walk(BLOCK_SIZE_2M + 0x10),
        mapped(0x5020_1010, normal, PAGE_SIZE)
    );
    assert_eq!(leaves(&table, 0, 2 * BLOCK_SIZE_2M).len(), 1024);
}

#[test]
fn per_page_annotations_count_up_and_split_to_pages() {
    let normal = Attributes::NORMAL_OWNED;
    let mut table = table(8);
    let mut tlb = RecordingTlb::new();
    table
        .map(0, 0, 2 * BLOCK_SIZE_2M, normal, &mut tlb)
        .unwrap();
    let first = annotation(3, 0x42 << 36 | 0x1000);
    let (ipa, pages) = (BLOCK_SIZE_2M - 2 * PAGE_SIZE, 5u64);
    table
        .annotate_per_page(ipa, pages * PAGE_SIZE, first, &mut tlb)
        .unwrap();
    assert_eq!(
        tlb.take(),
        break_before_make_events(VMID, &[(0, 2), (BLOCK_SIZE_2M, 2)])
    );
    for page in 0..pages {
        let expected = Annotation {
            metadata: first.metadata + page,
            ..first
        };
        assert_eq!(
            table.walk(ipa + page * PAGE_SIZE),
            Entry::Annotated(expected)
        );
    }
    assert_eq!(
        table.walk(ipa - PAGE_SIZE),
        mapped(ipa - PAGE_SIZE, normal, PAGE_SIZE)
    );
    assert_eq!(
        table.walk(ipa + pages * PAGE_SIZE),
        mapped(ipa + pages * PAGE_SIZE, normal, PAGE_SIZE)
    );

    // A whole empty 2 MiB region still needs a leaf table; the last metadata must fit.
    let operation = Operation::AnnotatePerPage(first);
    assert_eq!(table.tables_needed(GIB, BLOCK_SIZE_2M, operation), Ok(2));
    let near_max = annotation(1, Annotation::MAX_METADATA - 1);
    let before = dump(&table);
    assert_eq!(
        table.annotate_per_page(GIB, 3 * PAGE_SIZE, near_max, &mut tlb),
        Err(Stage2Error::AnnotationTooWide)
    );
    assert_eq!(dump(&table), before);
    table
        .annotate_per_page(GIB, 2 * PAGE_SIZE, near_max, &mut tlb)
        .unwrap();
    assert_eq!(
        table.walk(GIB + PAGE_SIZE),
        Entry::Annotated(annotation(1, Annotation::MAX_METADATA))
    );
    assert_eq!(tlb.take(), []);
}

#[test]
fn undoing_an_annotation_needs_no_table_pages() {
    let normal = Attributes::NORMAL_OWNED;
    let mut table = table(8);
    let mut tlb = RecordingTlb::new();
    table.map(GIB, 4 * GIB, GIB, normal, &mut tlb).unwrap();
    table
        .map_with_granule(0, 0, 4 * MIB, normal, MappingGranule::Page, &mut tlb)
        .unwrap();
    let (ipa, size) = (GIB + 3 * MIB, 5 * MIB);
    table
        .annotate(ipa, size, annotation(1, 1), &mut tlb)
        .unwrap();
    table
        .annotate(MIB, 2 * MIB, annotation(1, 2), &mut tlb)
        .unwrap();
    // The rollback a failed firmware call needs (mem-protect) cannot run out of memory.
    let restore = Operation::Map {
        pa: 4 * GIB + 3 * MIB,
        attributes: normal,
        granule: MappingGranule::Largest,
    };
    assert_eq!(table.tables_needed(ipa, size, restore), Ok(0));
    table.apply(ipa, size, restore, &mut tlb).unwrap();
    let restore = Operation::Map {
        pa: MIB,
        attributes: normal,
        granule: MappingGranule::Page,
    };
    assert_eq!(table.tables_needed(MIB, 2 * MIB, restore), Ok(0));
    table.apply(MIB, 2 * MIB, restore, &mut tlb).unwrap();
    for probe in (0..4 * MIB).step_by(PAGE_SIZE as usize) {
        assert_eq!(table.walk(probe), mapped(probe, normal, PAGE_SIZE));
    }
    for probe in (GIB..2 * GIB).step_by(BLOCK_SIZE_2M as usize / 4) {
        let Entry::Mapped { output, .. } = table.walk(probe) else {
            panic!("{probe:#x}")
        };
        assert_eq!(output, probe + 3 * GIB);
    }
}

// ---- table memory -----------------------------------------------------------------------

/// A pool that claims more than it can give, to prove the reserve step catches it.
struct LyingPool(PagePool<'static>, usize);

impl TablePool for LyingPool {
    fn allocate_page(&mut self) -> Option<u64> {
        if self.1 == 0 {
            return None;
        }
        self.1 -= 1;
        self.0.allocate_page()
    }
    fn allocate_contiguous(&mut self, count: usize) -> Option<u64> {
        self.0.allocate_contiguous(count)
    }
    fn free_page(&mut self, address: u64) {
        self.0.free_page(address);
    }
    fn available(&self) -> usize {
        self.0.available()
    }
    fn page(&self, address: u64) -> &TablePage {
        self.0.page(address)
    }
    fn page_mut(&mut self, address: u64) -> &mut TablePage {
        self.0.page_mut(address)
    }
}

#[test]
fn running_out_of_table_memory_changes_nothing() {
    let normal = Attributes::NORMAL_OWNED;
    let owner = annotation(4, 77);
    // Existing state: a 1 GiB block, some pages, an annotation.
    let mut table = table(10);
    let mut tlb = RecordingTlb::new();
    table
        .map(GIB, 0x1_0000_0000, GIB, normal, &mut tlb)
        .unwrap();
    table
        .map_with_granule(0, 0, 8 * MIB, normal, MappingGranule::Page, &mut tlb)
        .unwrap();
    table
        .annotate(0x10_0000, PAGE_SIZE, owner, &mut tlb)
        .unwrap();
    let available = table.pool().available();
    assert_eq!(available, 10 - table.table_pages_in_use());
    let before = dump(&table);
    tlb.take();

    // 64 MiB of pages straddling the end of the mapped pages needs 30 more leaf tables;
    // annotating 68 MiB of the 1 GiB block from an unaligned start needs a level-2 table and
    // two leaf tables; remapping 8 MiB of it in pages needs a level-2 table and 5 leaf tables.
    let page_granule = MappingGranule::Page;
    let cases = [
        (
            4 * MIB,
            64 * MIB,
            Operation::Map {
                pa: 0x8000_0000,
                attributes: normal,
                granule: page_granule,
            },
            30,
        ),
        (
            GIB + PAGE_SIZE,
            34 * BLOCK_SIZE_2M,
            Operation::Annotate(owner),
            3,
        ),
        (
            GIB + PAGE_SIZE,
            8 * MIB,
            Operation::Map {
                pa: 0x9000_0000,
                attributes: normal,
                granule: page_granule,
            },
            6,
        ),
    ];
    for (ipa, size, operation, needed) in cases {
        assert_eq!(
            table.tables_needed(ipa, size, operation),
            Ok(needed),
            "{operation:?}"
        );
        if needed == available {
            continue;
        }
        let result = table.apply(ipa, size, operation, &mut tlb);
        assert_eq!(
            result,
            Err(Stage2Error::OutOfTableMemory { needed, available })
        );
        assert_eq!(dump(&table), before, "{operation:?}");
        assert_eq!(table.pool().available(), available);
        assert_eq!(tlb.take(), []);
    }
    // With exactly enough, the same annotation succeeds.
    table
        .annotate(GIB + PAGE_SIZE, 34 * BLOCK_SIZE_2M, owner, &mut tlb)
        .unwrap();
    assert_eq!(table.pool().available(), 0);
    assert_eq!(tlb.take(), break_before_make_events(VMID, &[(GIB, 1)]));

    // A pool whose `available` overstates what it can hand out fails in the reserve step,
    // with every page handed back.
    let lying = LyingPool(PagePool::new(Box::leak(table_pages(64))), 3);
    let mut table = Stage2Table::new(geometry_48(), VMID, lying).unwrap();
    table.map(GIB, 0, GIB, normal, &mut tlb).unwrap();
    let before = dump(&table);
    let free = table.pool().available();
    let result = table.annotate(
        GIB + 4 * MIB + PAGE_SIZE,
        3 * BLOCK_SIZE_2M,
        owner,
        &mut tlb,
    );
    assert!(
        matches!(result, Err(Stage2Error::OutOfTableMemory { needed: 3, .. })),
        "{result:?}"
    );
    assert_eq!(dump(&table), before);
    assert_eq!(table.pool().available(), free);
    assert_eq!(tlb.take(), []);
}

#[test]
fn table_pages_beyond_48_bits_are_refused() {
    let high = PagePool::with_physical_base(Box::leak(table_pages(4)), 1 << 48);
    let refused = Stage2Table::new(geometry_48(), VMID, high);
    assert_eq!(refused.err(), Some(Stage2Error::TableAddressOutOfRange));

    // Root below the limit, the next pages above it.
    let straddling = PagePool::with_physical_base(Box::leak(table_pages(4)), (1 << 48) - PAGE_SIZE);
    let mut table = Stage2Table::new(geometry_48(), VMID, straddling).unwrap();
    let mut tlb = RecordingTlb::new();
    let before = dump(&table);
    let result = table.map(0, 0, PAGE_SIZE, Attributes::NORMAL_OWNED, &mut tlb);
    assert_eq!(result, Err(Stage2Error::TableAddressOutOfRange));
    assert_eq!(dump(&table), before);
    assert_eq!(table.pool().available(), 3);
}

#[test]
fn table_memory_per_gib_meets_the_targets() {
    let normal = Attributes::NORMAL_OWNED;
    // (granule, target in bytes)
    let cases = [
        (MappingGranule::Page, 2 * MIB + MIB / 20),
        (MappingGranule::AtMost2M, 16 * 1024),
        (MappingGranule::Largest, 16 * 1024),
    ];
    for (granule, target) in cases {
        let mut table = table(600);
        let mut tlb = RecordingTlb::new();
        table
            .map_with_granule(GIB, 0x8000_0000, GIB, normal, granule, &mut tlb)
            .unwrap();
        let bytes = table.table_pages_in_use() as u64 * PAGE_SIZE;
        std::println!(
            "stage-2 table memory for 1 GiB mapped with {granule:?}: {} pages = {} KiB (root included; target {} KiB)",
            table.table_pages_in_use(),
            bytes / 1024,
            target / 1024
        );
        assert!(bytes <= target, "{granule:?}: {bytes} bytes");
        let capacity = table.pool().capacity();
        assert_eq!(
            table.release().available(),
            capacity,
            "release returns every page"
        );
    }
}

#[test]
fn annotating_a_gib_of_pages_is_fast_and_exact() {
    let normal = Attributes::NORMAL_OWNED;
    let owner = annotation(2, 1);
    let mut table = table(600);
    let mut tlb = RecordingTlb::new();
    table
        .map_with_granule(
            GIB,
            0x8000_0000,
            GIB,
            normal,
            MappingGranule::Page,
            &mut tlb,
        )
        .unwrap();
    let pages_in_use = table.table_pages_in_use();
    let started = std::time::Instant::now();
    table.annotate(GIB, GIB, owner, &mut tlb).unwrap();
    let elapsed = started.elapsed();
    std::println!("annotating 262144 mapped pages took {elapsed:?} (this build profile)");
    assert_eq!(table.table_pages_in_use(), pages_in_use, "no table needed");
    assert_eq!(tlb.events.len(), 262_144 + 5);
    assert_eq!(
        tlb.events[1],
        TlbEvent::InvalidateIpa {
            vmid: VMID,
            ipa: GIB,
            level: 3
        }
    );
    assert_eq!(
        tlb.events[262_144],
        TlbEvent::InvalidateIpa {
            vmid: VMID,
            ipa: 2 * GIB - PAGE_SIZE,
            level: 3
        }
    );
    assert_eq!(table.walk(GIB + 12345 * PAGE_SIZE), Entry::Annotated(owner));
}

#[test]
fn page_pool_hands_out_zeroed_aligned_pages_and_reuses_freed_ones() {
    let mut pages = table_pages(40);
    let mut pool = PagePool::new(&mut pages);
    assert_eq!(pool.available(), 40);
    let first = pool.allocate_page().unwrap();
    pool.page_mut(first).0[7] = 99;
    let root = pool.allocate_contiguous(16).unwrap();
    assert_eq!(root % (16 * PAGE_SIZE), 0);
    assert_eq!(pool.allocate_contiguous(3), None);
    pool.free_page(first);
    let again = pool.allocate_page().unwrap();
    assert_eq!(pool.page(again), &TablePage::ZEROED);
    let mut count = 0;
    while pool.allocate_page().is_some() {
        count += 1;
    }
    assert_eq!(pool.available(), 0);
    assert_eq!(count + 1 + 16, 40);
}

// ---- property test ----------------------------------------------------------------------

/// What the model says one page holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ModelPage {
    Mapped { output: u64, attributes: Attributes },
    Annotated(Annotation),
}

/// The window the property test works in: 16 MiB straddling a 1 GiB boundary.
const WINDOW: u64 = GIB - 8 * MIB;
const WINDOW_PAGES: u64 = 16 * MIB / PAGE_SIZE;

fn operation_strategy() -> impl Strategy<Value = (u64, u64, Operation)> {
    let start = prop_oneof![
        (0..WINDOW_PAGES).prop_map(|page| page * PAGE_SIZE),
        (0..8u64).prop_map(|block| block * BLOCK_SIZE_2M),
    ];
    let size = prop_oneof![
        (1..8u64).prop_map(|pages| pages * PAGE_SIZE),
        (1..4u64).prop_map(|blocks| blocks * BLOCK_SIZE_2M),
        (1..1200u64).prop_map(|pages| pages * PAGE_SIZE),
    ];
    let attributes =
        (any::<bool>(), any::<bool>(), 0..3u8).prop_map(|(device, write, state)| Attributes {
            memory: if device {
                MemoryType::Device
            } else {
                MemoryType::Normal
            },
            permissions: Permissions::new(true, write, !device),
            state: [
                PageState::Owned,
                PageState::SharedOwned,
                PageState::SharedBorrowed,
            ][state as usize],
        });
    let granule = prop_oneof![
        Just(MappingGranule::Largest),
        Just(MappingGranule::AtMost2M),
        Just(MappingGranule::Page)
    ];
    let output = prop_oneof![
        Just(None),
        (0..64u64).prop_map(|page| Some(page * PAGE_SIZE))
    ];
    let operation = prop_oneof![
        (attributes, granule, output).prop_map(|(attributes, granule, shift)| {
            // `pa` is filled in from the start below: same offset as the IPA (blocks possible)
            // or shifted by a few pages.
            Operation::Map {
                pa: shift.unwrap_or(0) | 1,
                attributes,
                granule,
            }
        }),
        (1..8u8, 0..1024u64)
            .prop_map(|(owner, metadata)| Operation::Annotate(annotation(owner, metadata))),
        Just(Operation::Unmap),
        prop_oneof![
            Just(PageState::Owned),
            Just(PageState::SharedOwned),
            Just(PageState::SharedBorrowed)
        ]
        .prop_map(Operation::SetPageState),
    ];
    (start, size, operation).prop_map(|(start, size, operation)| {
        let ipa = WINDOW + start;
        let size = size
            .min(WINDOW + WINDOW_PAGES * PAGE_SIZE - ipa)
            .max(PAGE_SIZE);
        let operation = match operation {
            Operation::Map {
                pa,
                attributes,
                granule,
            } => Operation::Map {
                pa: 0x8000_0000 + ipa + (pa & !1),
                attributes,
                granule,
            },
            other => other,
        };
        (ipa, size, operation)
    })
}

fn model_pages<P: TablePool>(table: &Stage2Table<P>) -> BTreeMap<u64, ModelPage> {
    let mut pages = BTreeMap::new();
    for leaf in leaves(table, WINDOW, WINDOW_PAGES * PAGE_SIZE) {
        let first = leaf.ipa.max(WINDOW);
        let last = (leaf.ipa + leaf.size).min(WINDOW + WINDOW_PAGES * PAGE_SIZE);
        for ipa in (first..last).step_by(PAGE_SIZE as usize) {
            let page = match leaf.entry {
                Entry::Unmapped => continue,
                Entry::Annotated(annotation) => ModelPage::Annotated(annotation),
                Entry::Mapped {
                    output, attributes, ..
                } => ModelPage::Mapped {
                    output: output + (ipa - leaf.ipa),
                    attributes,
                },
            };
            pages.insert(ipa, page);
        }
    }
    pages
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_operations_agree_with_a_page_model(
        operations in proptest::collection::vec((operation_strategy(), any::<bool>()), 1..24),
        pool_pages in prop_oneof![Just(12usize), Just(64)],
        pa_range in prop_oneof![Just(5u8), Just(2), Just(0)],
    ) {
        let mut table = table_with(Geometry::from_pa_range(pa_range).unwrap(), pool_pages);
        let mut model: BTreeMap<u64, ModelPage> = BTreeMap::new();
        let mut tlb = RecordingTlb::new();
        for ((ipa, size, operation), roll_back) in operations {
            let before = dump(&table);
            let leaves_before = leaves(&table, WINDOW, WINDOW_PAGES * PAGE_SIZE);
            let pages_before = table.table_pages_in_use();
            let needed = table.tables_needed(ipa, size, operation);

            // The model's answer.
            let mut expected = model.clone();
            let mut model_error = None;
            for page_ipa in (ipa..ipa + size).step_by(PAGE_SIZE as usize) {
                match operation {
                    Operation::Map { pa, attributes, .. } => {
                        expected.insert(page_ipa, ModelPage::Mapped { output: pa + (page_ipa - ipa), attributes });
                    }
                    Operation::Annotate(annotation) => {
                        expected.insert(page_ipa, ModelPage::Annotated(annotation));
                    }
                    Operation::AnnotatePerPage(first) => {
                        let metadata = first.metadata + (page_ipa - ipa) / PAGE_SIZE;
                        expected.insert(page_ipa, ModelPage::Annotated(Annotation { metadata, ..first }));
                    }
                    Operation::Unmap => {
                        expected.remove(&page_ipa);
                    }
                    Operation::SetPageState(state) => match expected.get_mut(&page_ipa) {
                        Some(ModelPage::Mapped { attributes, .. }) => attributes.state = state,
                        _ => {
                            model_error.get_or_insert(Stage2Error::NotMapped { ipa: page_ipa });
                        }
                    },
                }
            }
            let result = table.apply(ipa, size, operation, &mut tlb);
            let events = tlb.take();
            match (result, model_error, needed) {
                (Err(error), Some(model_error), Err(planned)) => {
                    prop_assert_eq!(error, model_error);
                    prop_assert_eq!(planned, model_error);
                }
                (Err(Stage2Error::OutOfTableMemory { needed: wanted, available }), None, Ok(planned)) => {
                    prop_assert_eq!(wanted, planned);
                    prop_assert!(planned > available);
                }
                (Ok(()), None, Ok(planned)) => {
                    prop_assert_eq!(table.table_pages_in_use(), pages_before + planned);
                    // Tables are kept, so repeating the change or clearing the range needs none.
                    prop_assert_eq!(table.tables_needed(ipa, size, operation), Ok(0));
                    prop_assert!(model_pages(&table) == expected, "table and model disagree after {:?} at {:#x}+{:#x}", operation, ipa, size);
                    model = expected;
                }
                other => prop_assert!(false, "unexpected outcome {:?}", other),
            }
            if result.is_err() {
                prop_assert_eq!(dump(&table), before);
                prop_assert_eq!(&events, &[]);
                continue;
            }

            // Maintenance: exactly the documented shape, only for entries that were valid.
            let broken: Vec<(u64, u8)> = events.iter().filter_map(|event| match *event {
                TlbEvent::InvalidateIpa { vmid, ipa, level } => { assert_eq!(vmid, VMID); Some((ipa, level)) }
                _ => None,
            }).collect();
            prop_assert_eq!(&events, &break_before_make_events(VMID, &broken));
            for &(broken_ipa, level) in &broken {
                let was_valid = leaves_before.iter().any(|leaf| leaf.ipa == broken_ipa && leaf.level == level && matches!(leaf.entry, Entry::Mapped { .. }));
                prop_assert!(was_valid, "TLBI for {:#x} level {} which was not a valid leaf", broken_ipa, level);
            }
            let before_pages = model_pages_from(&leaves_before);
            let valid_changed = before_pages.iter().any(|(page, old)| match old {
                ModelPage::Mapped { output, attributes } => match model.get(page) {
                    Some(ModelPage::Mapped { output: new_output, attributes: new }) => {
                        new_output != output || new.with_state(PageState::Owned) != attributes.with_state(PageState::Owned)
                    }
                    _ => true,
                },
                ModelPage::Annotated(_) => false,
            });
            let anything_valid_changed = before_pages.iter().any(|(page, old)| matches!(old, ModelPage::Mapped { .. }) && model.get(page) != Some(old));
            if valid_changed {
                prop_assert!(!broken.is_empty(), "valid entries changed without maintenance");
            }
            if !anything_valid_changed {
                prop_assert!(broken.is_empty(), "maintenance although no valid entry changed");
            }

            // Rolling back (as mem-protect does when the firmware call fails): writing the old
            // contents back, leaf by leaf, needs no table page and restores every page.
            if roll_back {
                let end = ipa + size;
                for leaf in leaves_before.iter().filter(|leaf| leaf.ipa < end && leaf.ipa + leaf.size > ipa) {
                    let first = leaf.ipa.max(ipa);
                    let length = (leaf.ipa + leaf.size).min(end) - first;
                    let restore = match leaf.entry {
                        Entry::Unmapped => Operation::Unmap,
                        Entry::Annotated(annotation) => Operation::Annotate(annotation),
                        Entry::Mapped { output, attributes, .. } => Operation::Map {
                            pa: output + (first - leaf.ipa),
                            attributes,
                            granule: MappingGranule::Largest,
                        },
                    };
                    prop_assert_eq!(table.tables_needed(first, length, restore), Ok(0));
                    prop_assert_eq!(table.apply(first, length, restore, &mut tlb), Ok(()));
                }
                tlb.take();
                prop_assert!(model_pages(&table) == before_pages, "rollback did not restore the pages");
                model = before_pages;
            }
        }
        let capacity = table.pool().capacity();
        prop_assert_eq!(table.release().available(), capacity);
    }
}

fn model_pages_from(found: &[Leaf]) -> BTreeMap<u64, ModelPage> {
    let mut pages = BTreeMap::new();
    for leaf in found {
        let first = leaf.ipa.max(WINDOW);
        let last = (leaf.ipa + leaf.size).min(WINDOW + WINDOW_PAGES * PAGE_SIZE);
        for ipa in (first..last).step_by(PAGE_SIZE as usize) {
            let page = match leaf.entry {
                Entry::Unmapped => continue,
                Entry::Annotated(annotation) => ModelPage::Annotated(annotation),
                Entry::Mapped {
                    output, attributes, ..
                } => ModelPage::Mapped {
                    output: output + (ipa - leaf.ipa),
                    attributes,
                },
            };
            pages.insert(ipa, page);
        }
    }
    pages
}
