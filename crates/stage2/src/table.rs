//! The stage-2 table: prepare (validate, count and reserve table pages), then commit.
//!
//! # How one operation runs
//! 1. **Prepare** (may fail, changes nothing): check the range and arguments, walk the range
//!    without writing to count the table pages the change needs, take them all from the pool
//!    into a private reserve.
//! 2. **Commit** (cannot fail): walk the range again and write each descriptor that changes.
//!    New tables (block splits) are filled while still invisible to hardware, then published.
//!    A *valid* descriptor that changes to anything but itself with other software bits is not
//!    overwritten directly: it is *broken* — written invalid, with its pending final value kept
//!    in the descriptor (bits `[63:61]` mark it; hardware ignores invalid descriptors).
//! 3. **TLB maintenance**, once per operation and only if something was broken: `DSB ISH` (the
//!    invalidating stores reach the table walkers), `TLBI IPAS2E1IS` per broken page or block
//!    in ascending IPA order, `DSB ISH`, `TLBI VMALLE1IS`, `DSB ISH`, `ISB`.
//! 4. **Make**: every broken descriptor gets its final value (annotation, new leaf, or the
//!    table that replaces a split block).
//!
//! Tables are never collapsed: a range that becomes unmapped keeps its (empty) tables, and a
//! map over a range that already has a next-level table fills that table instead of replacing
//! it with a block. Every table page returns to the pool on [`Stage2Table::release`].

use core::sync::atomic::{Ordering, fence};

use crate::{
    Annotation, Attributes, Entry, Geometry, PAGE_SIZE, PageState, Stage2Error, TablePool,
    TlbMaintenance, Vmid,
    descriptor::{
        ENTRIES_PER_TABLE, METADATA_SHIFT, OUTPUT_MASK, STATE_MASK, VALID, decode_leaf, is_table,
        leaf_attribute_bits, leaf_descriptor, level_shift, level_span, table_descriptor,
    },
};

/// Bits `[63:61]` of a broken descriptor: what it becomes once TLB maintenance is done.
const PENDING_MASK: u64 = 0b111 << 61;
/// Broken; final value = the descriptor without the mark (an invalid descriptor).
const PENDING_INVALID: u64 = 0b001 << 61;
/// Broken; final value = the descriptor without the mark, with the valid bit set.
const PENDING_VALID: u64 = 0b010 << 61;
/// End of the reserve list.
const NO_PAGE: u64 = u64::MAX;

/// The largest leaf `map` may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MappingGranule {
    /// 1 GiB or 2 MiB blocks wherever IPA, PA and size allow, pages elsewhere.
    #[default]
    Largest,
    /// 2 MiB blocks wherever IPA, PA and size allow, pages elsewhere.
    AtMost2M,
    /// 4 KiB pages only.
    Page,
}

impl MappingGranule {
    /// The lowest level a leaf may be written at.
    const fn first_leaf_level(self) -> u8 {
        match self {
            Self::Largest => 1,
            Self::AtMost2M => 2,
            Self::Page => 3,
        }
    }
}

/// A change to a range, for [`Stage2Table::tables_needed`] and [`Stage2Table::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Map the range to `pa..pa + size`.
    Map {
        /// Output address of the first byte.
        pa: u64,
        /// Attributes of every leaf.
        attributes: Attributes,
        /// The largest leaf allowed.
        granule: MappingGranule,
    },
    /// Replace the range with invalid descriptors carrying the annotation.
    Annotate(Annotation),
    /// Replace the range with one invalid page descriptor per page; page `k` of the range
    /// records `metadata + k` (e.g. consecutive guest frame numbers).
    AnnotatePerPage(Annotation),
    /// Replace the range with invalid, unannotated descriptors.
    Unmap,
    /// Change the page state of every (valid) leaf in the range.
    SetPageState(PageState),
}

/// One leaf-level descriptor, as [`Stage2Table::visit_leaves`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// First IPA the descriptor covers (may lie before the visited range).
    pub ipa: u64,
    /// Bytes the descriptor covers.
    pub size: u64,
    /// Level of the descriptor.
    pub level: u8,
    /// What it says; for `Mapped`, `output` is the PA of `ipa`.
    pub entry: Entry,
}

/// A change, reduced to what the walk needs.
#[derive(Clone, Copy, Debug)]
enum Change {
    Map {
        ipa: u64,
        pa: u64,
        attribute_bits: u64,
        first_leaf_level: u8,
    },
    Invalid(u64),
    /// Page `k` of the range gets `first + (k << METADATA_SHIFT)`.
    InvalidPerPage {
        ipa: u64,
        first: u64,
    },
    SetState(u64),
}

/// What to do with one descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// Already as required.
    Skip,
    /// Becomes this descriptor.
    Write(u64),
    /// A table: apply the change inside it.
    Descend(u64),
    /// A leaf covering more than the change: replace it by a table of its pieces.
    Split,
}

/// Where `plan` reads descriptors from: a real table, or the table a split would create.
#[derive(Clone, Copy, Debug)]
enum Node {
    Real(u64),
    Split { parent: u64, parent_level: u8 },
}

/// State of one commit: reserved pages and how many descriptors were broken.
#[derive(Debug)]
struct CommitWork {
    reserve_head: u64,
    reserved: usize,
    broken: usize,
}

/// A stage-2 translation table for one VMID, with every table page taken from its pool.
#[derive(Debug)]
pub struct Stage2Table<P: TablePool> {
    geometry: Geometry,
    vmid: Vmid,
    pool: P,
    root: u64,
    pages_in_use: usize,
}

impl<P: TablePool> Stage2Table<P> {
    /// An empty table (every IPA unmapped). Allocates the root
    /// ([`Geometry::root_table_pages`] contiguous pages).
    pub fn new(geometry: Geometry, vmid: Vmid, mut pool: P) -> Result<Self, Stage2Error> {
        if vmid.0 > geometry.max_vmid() {
            return Err(Stage2Error::VmidTooWide);
        }
        let pages = geometry.root_table_pages();
        let root = pool
            .allocate_contiguous(pages)
            .ok_or(Stage2Error::OutOfTableMemory {
                needed: pages,
                available: pool.available(),
            })?;
        let root_end = root + pages as u64 * PAGE_SIZE - 1;
        if root_end >> 48 != 0 {
            for page in 0..pages {
                pool.free_page(root + page as u64 * PAGE_SIZE);
            }
            return Err(Stage2Error::TableAddressOutOfRange);
        }
        Ok(Self {
            geometry,
            vmid,
            pool,
            root,
            pages_in_use: pages,
        })
    }

    /// The geometry the table was built for.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// The table's VMID.
    pub fn vmid(&self) -> Vmid {
        self.vmid
    }

    /// Physical address of the root table.
    pub fn root_address(&self) -> u64 {
        self.root
    }

    /// VTTBR_EL2 for this table: root PA | VMID << 48 (CnP clear).
    pub fn vttbr_el2(&self) -> u64 {
        (self.root & OUTPUT_MASK) | (u64::from(self.vmid.0) << 48)
    }

    /// The pool (to ask how much is left).
    pub fn pool(&self) -> &P {
        &self.pool
    }

    /// Table pages this table holds, root included.
    pub fn table_pages_in_use(&self) -> usize {
        self.pages_in_use
    }

    /// Maps `ipa..ipa + size` to `pa..pa + size`, with 1 GiB / 2 MiB blocks where alignment
    /// allows. Valid descriptors already in the range that differ are replaced with
    /// break-before-make; identical ones are left alone (no TLB maintenance).
    pub fn map(
        &mut self,
        ipa: u64,
        pa: u64,
        size: u64,
        attributes: Attributes,
        tlb: &mut impl TlbMaintenance,
    ) -> Result<(), Stage2Error> {
        self.map_with_granule(ipa, pa, size, attributes, MappingGranule::Largest, tlb)
    }

    /// [`map`](Self::map) with a limit on the leaf size.
    pub fn map_with_granule(
        &mut self,
        ipa: u64,
        pa: u64,
        size: u64,
        attributes: Attributes,
        granule: MappingGranule,
        tlb: &mut impl TlbMaintenance,
    ) -> Result<(), Stage2Error> {
        let operation = Operation::Map {
            pa,
            attributes,
            granule,
        };
        self.apply(ipa, size, operation, tlb)
    }

    /// Replaces `ipa..ipa + size` with invalid descriptors recording `annotation`; valid
    /// descriptors are broken with TLB maintenance, blocks partly covered are split.
    pub fn annotate(
        &mut self,
        ipa: u64,
        size: u64,
        annotation: Annotation,
        tlb: &mut impl TlbMaintenance,
    ) -> Result<(), Stage2Error> {
        self.apply(ipa, size, Operation::Annotate(annotation), tlb)
    }

    /// Like [`annotate`](Self::annotate), but page `k` of the range records
    /// `first.metadata + k`, so every page carries its own metadata (e.g. VM handle in the
    /// high bits, guest frame number in the low bits). Always page granular: blocks in the
    /// range are split down to pages. [`Stage2Error::AnnotationTooWide`] if the last page's
    /// metadata would not fit.
    pub fn annotate_per_page(
        &mut self,
        ipa: u64,
        size: u64,
        first: Annotation,
        tlb: &mut impl TlbMaintenance,
    ) -> Result<(), Stage2Error> {
        self.apply(ipa, size, Operation::AnnotatePerPage(first), tlb)
    }

    /// Replaces `ipa..ipa + size` with invalid, unannotated descriptors (annotations in the
    /// range are cleared too).
    pub fn unmap(
        &mut self,
        ipa: u64,
        size: u64,
        tlb: &mut impl TlbMaintenance,
    ) -> Result<(), Stage2Error> {
        self.apply(ipa, size, Operation::Unmap, tlb)
    }

    /// Sets the page state of every leaf in `ipa..ipa + size`, keeping output and permissions.
    /// Every page of the range must be mapped ([`Stage2Error::NotMapped`] otherwise).
    ///
    /// Only software bits change, which hardware ignores and a stale TLB entry translates the
    /// same way: no break-before-make and no TLB maintenance, unless a block is only partly
    /// covered and must be split (then the block is broken with the full sequence).
    pub fn set_page_state(
        &mut self,
        ipa: u64,
        size: u64,
        state: PageState,
        tlb: &mut impl TlbMaintenance,
    ) -> Result<(), Stage2Error> {
        self.apply(ipa, size, Operation::SetPageState(state), tlb)
    }

    /// Applies `operation` to `ipa..ipa + size` (what `map`, `annotate`, `unmap` and
    /// `set_page_state` call). On error nothing changed and no TLB maintenance ran.
    pub fn apply(
        &mut self,
        ipa: u64,
        size: u64,
        operation: Operation,
        tlb: &mut impl TlbMaintenance,
    ) -> Result<(), Stage2Error> {
        let change = self.check(ipa, size, &operation)?;
        let end = ipa + size;
        let needed = self.count_tables(ipa, end, &change)?;
        let mut work = self.reserve(needed)?;

        let (root, level) = (self.root, self.geometry.start_level());
        self.commit(root, level, 0, ipa, end, &change, true, &mut work);
        // Nothing should be left; return anything that is, so no page is ever lost.
        while let Some(page) = self.take_reserved(&mut work) {
            self.pool.free_page(page);
        }

        if work.broken > 0 {
            tlb.dsb_inner_shareable();
            self.invalidate_broken(root, level, 0, ipa, end, tlb);
            #[cfg(not(mutant = "stage2_no_dsb_after_ipa_tlbi"))]
            tlb.dsb_inner_shareable();
            #[cfg(not(mutant = "stage2_no_stage1_tlbi"))]
            tlb.invalidate_stage1_for_vmid(self.vmid);
            tlb.dsb_inner_shareable();
            tlb.isb();
            self.make_broken(root, level, 0, ipa, end);
        }
        Ok(())
    }

    /// Table pages `operation` on `ipa..ipa + size` would allocate now, or the error it would
    /// fail with (other than running out of table memory).
    pub fn tables_needed(
        &self,
        ipa: u64,
        size: u64,
        operation: Operation,
    ) -> Result<usize, Stage2Error> {
        let change = self.check(ipa, size, &operation)?;
        self.count_tables(ipa, ipa + size, &change)
    }

    /// What translates `ipa`. IPAs beyond the IPA size read as [`Entry::Unmapped`].
    pub fn walk(&self, ipa: u64) -> Entry {
        if ipa >= self.geometry.ipa_size() {
            return Entry::Unmapped;
        }
        let mut table = self.root;
        let mut level = self.geometry.start_level();
        // The root index uses every remaining IPA bit (concatenated root tables).
        let mut index = (ipa >> level_shift(level)) as usize;
        loop {
            let descriptor = self.read(table, index);
            if is_table(descriptor, level) {
                table = descriptor & OUTPUT_MASK;
                level += 1;
                index = ((ipa >> level_shift(level)) as usize) % ENTRIES_PER_TABLE;
                continue;
            }
            return match decode_leaf(descriptor, level) {
                Entry::Mapped {
                    output,
                    attributes,
                    block_size,
                } => Entry::Mapped {
                    output: output + (ipa & (block_size - 1)),
                    attributes,
                    block_size,
                },
                other => other,
            };
        }
    }

    /// Calls `visit` for every leaf-level descriptor (valid leaf, annotation, or empty entry
    /// at any level) overlapping `ipa..ipa + size`, in ascending IPA order.
    pub fn visit_leaves(
        &self,
        ipa: u64,
        size: u64,
        mut visit: impl FnMut(Leaf),
    ) -> Result<(), Stage2Error> {
        self.check_range(ipa, size)?;
        let level = self.geometry.start_level();
        self.visit_leaves_in(self.root, level, 0, ipa, ipa + size, &mut visit);
        Ok(())
    }

    /// Calls `visit(level, table address, index, descriptor)` for every descriptor of every
    /// table, depth first (root first): a complete dump, for "nothing changed" checks.
    pub fn visit_descriptors(&self, mut visit: impl FnMut(u8, u64, usize, u64)) {
        let (root, level) = (self.root, self.geometry.start_level());
        self.visit_descriptors_in(root, level, self.geometry.root_entries(), &mut visit);
    }

    /// Returns every table page to the pool and hands the pool back.
    pub fn release(mut self) -> P {
        let (root, level) = (self.root, self.geometry.start_level());
        let entries = self.geometry.root_entries();
        self.free_subtables(root, level, entries);
        for page in 0..self.geometry.root_table_pages() {
            self.pool.free_page(root + page as u64 * PAGE_SIZE);
        }
        self.pool
    }

    // ---- checks -------------------------------------------------------------------------

    fn check_range(&self, ipa: u64, size: u64) -> Result<(), Stage2Error> {
        if size == 0 {
            return Err(Stage2Error::ZeroSize);
        }
        if !ipa.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
            return Err(Stage2Error::NotAligned);
        }
        match ipa.checked_add(size) {
            Some(end) if end <= self.geometry.ipa_size() => Ok(()),
            _ => Err(Stage2Error::OutOfRange),
        }
    }

    fn check(&self, ipa: u64, size: u64, operation: &Operation) -> Result<Change, Stage2Error> {
        if let Operation::Annotate(annotation) | Operation::AnnotatePerPage(annotation) = operation
        {
            annotation.validate()?;
        }
        self.check_range(ipa, size)?;
        if let Operation::AnnotatePerPage(annotation) = operation {
            let last = annotation.metadata.checked_add(size / PAGE_SIZE - 1);
            if last.is_none_or(|last| last > Annotation::MAX_METADATA) {
                return Err(Stage2Error::AnnotationTooWide);
            }
        }
        Ok(match *operation {
            Operation::Map {
                pa,
                attributes,
                granule,
            } => {
                if !pa.is_multiple_of(PAGE_SIZE) {
                    return Err(Stage2Error::NotAligned);
                }
                match pa.checked_add(size) {
                    Some(end) if end <= 1u64 << self.geometry.pa_bits() => {}
                    _ => return Err(Stage2Error::OutOfRange),
                }
                Change::Map {
                    ipa,
                    pa,
                    attribute_bits: attributes.encode(),
                    first_leaf_level: granule.first_leaf_level(),
                }
            }
            Operation::Annotate(annotation) => Change::Invalid(annotation.encode()),
            Operation::AnnotatePerPage(annotation) => Change::InvalidPerPage {
                ipa,
                first: annotation.encode(),
            },
            Operation::Unmap => Change::Invalid(0),
            Operation::SetPageState(state) => Change::SetState(state.encode()),
        })
    }

    // ---- descriptor access --------------------------------------------------------------

    /// Descriptor `index` of the table at `table` (which may span several concatenated pages).
    fn read(&self, table: u64, index: usize) -> u64 {
        let page = table + (index / ENTRIES_PER_TABLE) as u64 * PAGE_SIZE;
        self.pool.page(page).0[index % ENTRIES_PER_TABLE]
    }

    /// Stores descriptor `index` with one 64-bit store the compiler may not elide or merge
    /// (table walkers read it concurrently).
    fn write(&mut self, table: u64, index: usize, descriptor: u64) {
        let page = table + (index / ENTRIES_PER_TABLE) as u64 * PAGE_SIZE;
        let slot = &mut self.pool.page_mut(page).0[index % ENTRIES_PER_TABLE];
        // SAFETY: `slot` comes from a live `&mut u64`, so the pointer is valid, aligned and
        // not aliased for the duration of this store.
        unsafe { core::ptr::write_volatile(slot, descriptor) };
    }

    fn entries_at(&self, level: u8) -> usize {
        if level == self.geometry.start_level() {
            self.geometry.root_entries()
        } else {
            ENTRIES_PER_TABLE
        }
    }

    /// Indices of the table at `level` based at `table_base` that overlap `start..end`.
    fn indices(&self, level: u8, table_base: u64, start: u64, end: u64) -> core::ops::Range<usize> {
        let shift = level_shift(level);
        let table_end = table_base + ((self.entries_at(level) as u64) << shift);
        let first = (start.max(table_base) - table_base) >> shift;
        let last = (end.min(table_end) - 1 - table_base) >> shift;
        first as usize..last as usize + 1
    }

    // ---- prepare ------------------------------------------------------------------------

    fn count_tables(&self, start: u64, end: u64, change: &Change) -> Result<usize, Stage2Error> {
        let mut needed = 0;
        let node = Node::Real(self.root);
        self.plan(
            node,
            self.geometry.start_level(),
            0,
            start,
            end,
            change,
            &mut needed,
        )?;
        Ok(needed)
    }

    #[allow(clippy::too_many_arguments)]
    fn plan(
        &self,
        node: Node,
        level: u8,
        table_base: u64,
        start: u64,
        end: u64,
        change: &Change,
        needed: &mut usize,
    ) -> Result<(), Stage2Error> {
        let span = level_span(level);
        for index in self.indices(level, table_base, start, end) {
            let entry_base = table_base + index as u64 * span;
            let old = match node {
                Node::Real(table) => self.read(table, index),
                Node::Split {
                    parent,
                    parent_level,
                } => split_child(parent, parent_level, index),
            };
            match decide(old, level, entry_base, start, end, change)? {
                Decision::Skip | Decision::Write(_) => {}
                Decision::Descend(child) => {
                    self.plan(
                        Node::Real(child),
                        level + 1,
                        entry_base,
                        start,
                        end,
                        change,
                        needed,
                    )?;
                }
                Decision::Split => {
                    *needed += 1;
                    let node = Node::Split {
                        parent: old,
                        parent_level: level,
                    };
                    self.plan(node, level + 1, entry_base, start, end, change, needed)?;
                }
            }
        }
        Ok(())
    }

    /// Takes `needed` pages from the pool, or none at all.
    fn reserve(&mut self, needed: usize) -> Result<CommitWork, Stage2Error> {
        let available = self.pool.available();
        let out_of_memory = Stage2Error::OutOfTableMemory { needed, available };
        if needed > available {
            return Err(out_of_memory);
        }
        let mut work = CommitWork {
            reserve_head: NO_PAGE,
            reserved: 0,
            broken: 0,
        };
        for _ in 0..needed {
            let page = self.pool.allocate_page();
            let error = match page {
                Some(page) if page >> 48 != 0 => {
                    self.pool.free_page(page);
                    Some(Stage2Error::TableAddressOutOfRange)
                }
                Some(_) => None,
                None => Some(out_of_memory),
            };
            let (Some(page), None) = (page, error) else {
                while let Some(page) = self.take_reserved(&mut work) {
                    self.pool.free_page(page);
                }
                return Err(error.unwrap_or(out_of_memory));
            };
            // The reserve is a list linked through the first word of each page.
            self.pool.page_mut(page).0[0] = work.reserve_head;
            work.reserve_head = page;
            work.reserved += 1;
        }
        Ok(work)
    }

    /// A zeroed reserved page, if any is left.
    fn take_reserved(&mut self, work: &mut CommitWork) -> Option<u64> {
        if work.reserved == 0 {
            return None;
        }
        let page = work.reserve_head;
        let link = &mut self.pool.page_mut(page).0[0];
        work.reserve_head = *link;
        *link = 0;
        work.reserved -= 1;
        Some(page)
    }

    // ---- commit -------------------------------------------------------------------------

    /// Applies the change below the table at `table`. `live` says whether hardware can see
    /// the table (false inside a table built by a split and not yet published).
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        table: u64,
        level: u8,
        table_base: u64,
        start: u64,
        end: u64,
        change: &Change,
        live: bool,
        work: &mut CommitWork,
    ) {
        let span = level_span(level);
        for index in self.indices(level, table_base, start, end) {
            let entry_base = table_base + index as u64 * span;
            let old = self.read(table, index);
            // `plan` ran the same decisions on the same descriptors and found no error.
            let Ok(decision) = decide(old, level, entry_base, start, end, change) else {
                continue;
            };
            match decision {
                Decision::Skip => {}
                Decision::Write(new) => self.replace(table, index, old, new, live, work),
                Decision::Descend(child) => {
                    self.commit(child, level + 1, entry_base, start, end, change, live, work);
                }
                Decision::Split => {
                    // `plan` counted this page, so the reserve has it.
                    let Some(new_table) = self.take_reserved(work) else {
                        continue;
                    };
                    self.pages_in_use += 1;
                    let page = self.pool.page_mut(new_table);
                    for (child_index, slot) in page.0.iter_mut().enumerate() {
                        *slot = split_child(old, level, child_index);
                    }
                    self.commit(
                        new_table,
                        level + 1,
                        entry_base,
                        start,
                        end,
                        change,
                        false,
                        work,
                    );
                    // The new table's contents must be visible before the descriptor that
                    // publishes it.
                    fence(Ordering::Release);
                    self.replace(table, index, old, table_descriptor(new_table), live, work);
                }
            }
        }
    }

    /// Writes `new` over `old`, breaking `old` first when it is valid, visible and changes
    /// in more than its software bits.
    fn replace(
        &mut self,
        table: u64,
        index: usize,
        old: u64,
        new: u64,
        live: bool,
        work: &mut CommitWork,
    ) {
        let needs_break =
            live && old & VALID != 0 && !(new & VALID != 0 && (old ^ new) & !STATE_MASK == 0);
        let stored = if !needs_break {
            new
        } else if new & VALID == 0 {
            work.broken += 1;
            new | PENDING_INVALID
        } else {
            work.broken += 1;
            (new & !VALID) | PENDING_VALID
        };
        self.write(table, index, stored);
    }

    /// Issues `TLBI IPAS2E1IS` for every broken descriptor in the range, in IPA order.
    fn invalidate_broken(
        &self,
        table: u64,
        level: u8,
        table_base: u64,
        start: u64,
        end: u64,
        tlb: &mut impl TlbMaintenance,
    ) {
        let span = level_span(level);
        for index in self.indices(level, table_base, start, end) {
            let entry_base = table_base + index as u64 * span;
            let descriptor = self.read(table, index);
            if is_broken(descriptor) {
                tlb.invalidate_ipa(self.vmid, entry_base, level);
            } else if is_table(descriptor, level) {
                let child = descriptor & OUTPUT_MASK;
                self.invalidate_broken(child, level + 1, entry_base, start, end, tlb);
            }
        }
    }

    /// Gives every broken descriptor in the range its final value.
    fn make_broken(&mut self, table: u64, level: u8, table_base: u64, start: u64, end: u64) {
        let span = level_span(level);
        for index in self.indices(level, table_base, start, end) {
            let entry_base = table_base + index as u64 * span;
            let descriptor = self.read(table, index);
            if is_broken(descriptor) {
                let unmarked = descriptor & !PENDING_MASK;
                let last = if descriptor & PENDING_MASK == PENDING_VALID {
                    unmarked | VALID
                } else {
                    unmarked
                };
                self.write(table, index, last);
            } else if is_table(descriptor, level) {
                let child = descriptor & OUTPUT_MASK;
                self.make_broken(child, level + 1, entry_base, start, end);
            }
        }
    }

    // ---- reading and releasing ----------------------------------------------------------

    fn visit_leaves_in(
        &self,
        table: u64,
        level: u8,
        table_base: u64,
        start: u64,
        end: u64,
        visit: &mut impl FnMut(Leaf),
    ) {
        let span = level_span(level);
        for index in self.indices(level, table_base, start, end) {
            let entry_base = table_base + index as u64 * span;
            let descriptor = self.read(table, index);
            if is_table(descriptor, level) {
                let child = descriptor & OUTPUT_MASK;
                self.visit_leaves_in(child, level + 1, entry_base, start, end, visit);
            } else {
                visit(Leaf {
                    ipa: entry_base,
                    size: span,
                    level,
                    entry: decode_leaf(descriptor, level),
                });
            }
        }
    }

    fn visit_descriptors_in(
        &self,
        table: u64,
        level: u8,
        entries: usize,
        visit: &mut impl FnMut(u8, u64, usize, u64),
    ) {
        for index in 0..entries {
            let descriptor = self.read(table, index);
            visit(level, table, index, descriptor);
            if is_table(descriptor, level) {
                let child = descriptor & OUTPUT_MASK;
                self.visit_descriptors_in(child, level + 1, ENTRIES_PER_TABLE, visit);
            }
        }
    }

    fn free_subtables(&mut self, table: u64, level: u8, entries: usize) {
        for index in 0..entries {
            let descriptor = self.read(table, index);
            if is_table(descriptor, level) {
                let child = descriptor & OUTPUT_MASK;
                self.free_subtables(child, level + 1, ENTRIES_PER_TABLE);
                self.pool.free_page(child);
                self.pages_in_use -= 1;
            }
        }
    }
}

/// Whether `descriptor` was broken by the running operation and awaits its final value.
const fn is_broken(descriptor: u64) -> bool {
    descriptor & VALID == 0 && descriptor & PENDING_MASK != 0
}

/// Descriptor `index` of the table that replaces `parent` (at `parent_level`) in a split:
/// the same annotation, or the matching piece of the block with the same attributes.
fn split_child(parent: u64, parent_level: u8, index: usize) -> u64 {
    if parent & VALID == 0 {
        return parent;
    }
    let child_level = parent_level + 1;
    let output = (parent & OUTPUT_MASK) + index as u64 * level_span(child_level);
    leaf_descriptor(child_level, output, leaf_attribute_bits(parent))
}

/// The one place that decides what happens to a descriptor; `plan` and `commit` both call
/// it, so the pages counted are exactly the pages used.
fn decide(
    old: u64,
    level: u8,
    entry_base: u64,
    start: u64,
    end: u64,
    change: &Change,
) -> Result<Decision, Stage2Error> {
    if is_table(old, level) {
        return Ok(Decision::Descend(old & OUTPUT_MASK));
    }
    let span = level_span(level);
    let first = start.max(entry_base);
    // Ranges are page aligned, so a level-3 descriptor is always fully covered.
    let full = start <= entry_base && end >= entry_base + span;
    let valid = old & VALID != 0;
    let replace_or_split = |new: u64| {
        if new == old {
            Decision::Skip
        } else if full {
            Decision::Write(new)
        } else {
            Decision::Split
        }
    };
    match *change {
        Change::Invalid(new) => Ok(replace_or_split(new)),
        Change::InvalidPerPage { ipa, first } => {
            if level < 3 {
                // One descriptor cannot carry per-page metadata: go down to pages.
                return Ok(Decision::Split);
            }
            Ok(replace_or_split(
                first + (((entry_base - ipa) / PAGE_SIZE) << METADATA_SHIFT),
            ))
        }
        Change::SetState(state_bits) => {
            if !valid {
                return Err(Stage2Error::NotMapped { ipa: first });
            }
            Ok(replace_or_split((old & !STATE_MASK) | state_bits))
        }
        Change::Map {
            ipa,
            pa,
            attribute_bits,
            first_leaf_level,
        } => {
            if full {
                let output = pa + (entry_base - ipa);
                if level == 3 || (level >= first_leaf_level && output.is_multiple_of(span)) {
                    let new = leaf_descriptor(level, output, attribute_bits);
                    return Ok(if new == old {
                        Decision::Skip
                    } else {
                        Decision::Write(new)
                    });
                }
            }
            // A block that already maps the covered part exactly as asked stays.
            let same_translation = valid
                && leaf_attribute_bits(old) == attribute_bits
                && (old & OUTPUT_MASK) + (first - entry_base) == pa + (first - ipa);
            Ok(if same_translation {
                Decision::Skip
            } else {
                Decision::Split
            })
        }
    }
}
