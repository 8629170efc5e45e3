//! The devices' stage-1 IO page table: an identity map (IOVA = physical address) of exactly the pages
//! the host may access, in the AArch64 long-descriptor format with the 4 KiB granule, from level 1
//! (39-bit input addresses). 2 MiB blocks wherever a whole aligned block is mapped; a block is split
//! into a level-3 table when part of it is unmapped. Table pages come from a pool given at
//! construction and are never freed (a split block stays a table when it is mapped whole again).
//!
//! Every change is two-phase: [`IoPageTable::tables_needed`] counts the pool pages a change needs
//! without writing anything, and a change whose pages the pool cannot give fails before its first
//! write. A change never does TLB maintenance: the caller ([`crate::Smmu`]) invalidates and
//! synchronises afterwards.

use core::ops::Range;

use crate::structures::INPUT_ADDRESS_BITS;
use crate::{DeviceAccess, SmmuError};

/// Bytes of a page and of a table.
pub use abi::PAGE_SIZE;
/// Bytes a level-2 block maps.
pub const BLOCK_SIZE: u64 = 2 << 20;
const ENTRIES: u64 = 512;
const OUTPUT_ADDRESS: u64 = 0x0000_FFFF_FFFF_F000;
/// Valid table descriptor (levels 1 and 2) or page descriptor (level 3).
const TABLE_OR_PAGE: u64 = 0b11;
/// Valid block descriptor (level 2).
const BLOCK: u64 = 0b01;
/// Leaf attributes: AttrIndx 0 (normal write-back, the CD's MAIR), AP = 0b01 (read-write, also for
/// unprivileged transactions), SH = inner shareable, AF set (no access-flag faults), PXN and UXN
/// (devices fetch no instructions).
const LEAF_ATTRIBUTES: u64 = (1 << 6) | (3 << 8) | (1 << 10) | (1 << 53) | (1 << 54);

/// What a change did, for the TLB maintenance that must follow it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changed {
    /// Leaf entries (pages or blocks) written.
    pub leaves: u64,
    /// Whether a block was replaced by a table (cached block translations must go).
    pub split: bool,
}

/// The two changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Map,
    Unmap,
}

/// A decoded descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Descriptor {
    Invalid,
    Block(u64),
    Table(u64),
}

fn decode(descriptor: u64, level: u8) -> Descriptor {
    match (descriptor & 0b11, level) {
        // A page (level 3) or a block (levels 1 and 2): a leaf.
        (0b11, 3) | (0b01, 1 | 2) => Descriptor::Block(descriptor & OUTPUT_ADDRESS),
        (0b11, _) => Descriptor::Table(descriptor & OUTPUT_ADDRESS),
        _ => Descriptor::Invalid,
    }
}

fn index(address: u64, level: u8) -> u64 {
    (address >> (12 + 9 * (3 - u32::from(level)))) % ENTRIES
}

/// The IO page table.
#[derive(Debug)]
pub struct IoPageTable {
    root: u64,
    pool: Range<u64>,
    next_free: u64,
}

impl IoPageTable {
    /// A table with nothing mapped, its root and later tables taken from `pool` (page aligned
    /// physical memory the SMMU can read, nobody else writes).
    pub fn new(device: &mut impl DeviceAccess, pool: Range<u64>) -> Result<Self, SmmuError> {
        if !pool.start.is_multiple_of(PAGE_SIZE) || !pool.end.is_multiple_of(PAGE_SIZE) {
            return Err(SmmuError::NotAligned {
                address: pool.start,
            });
        }
        let mut table = Self {
            root: pool.start,
            next_free: pool.start,
            pool,
        };
        table.root = table.allocate(device)?;
        Ok(table)
    }

    /// Physical address of the level-1 table (the CD's TTB0).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Table pages still in the pool.
    pub fn tables_available(&self) -> u64 {
        (self.pool.end - self.next_free) / PAGE_SIZE
    }

    fn allocate(&mut self, device: &mut impl DeviceAccess) -> Result<u64, SmmuError> {
        if self.next_free >= self.pool.end {
            return Err(SmmuError::OutOfTableMemory {
                needed: 1,
                available: 0,
            });
        }
        let page = self.next_free;
        self.next_free += PAGE_SIZE;
        for entry in 0..ENTRIES {
            device.write_memory(page + entry * 8, 0);
        }
        Ok(page)
    }

    fn check_range(range: &Range<u64>) -> Result<(), SmmuError> {
        for address in [range.start, range.end] {
            if !address.is_multiple_of(PAGE_SIZE) {
                return Err(SmmuError::NotAligned { address });
            }
        }
        if range.end > 1 << INPUT_ADDRESS_BITS || range.start > range.end {
            return Err(SmmuError::OutOfRange { address: range.end });
        }
        Ok(())
    }

    /// The 2 MiB-bounded pieces of `range`: (start, end, whole block).
    fn pieces(range: Range<u64>) -> impl Iterator<Item = (u64, u64, bool)> {
        let mut start = range.start;
        core::iter::from_fn(move || {
            if start >= range.end {
                return None;
            }
            let block_end = (start / BLOCK_SIZE + 1) * BLOCK_SIZE;
            let end = block_end.min(range.end);
            let piece = (
                start,
                end,
                start.is_multiple_of(BLOCK_SIZE) && end == block_end,
            );
            start = end;
            Some(piece)
        })
    }

    fn level2_descriptor(&self, device: &mut impl DeviceAccess, address: u64) -> (u64, u64) {
        // The level-2 table and the descriptor's address in it (0 when there is no level-2 table).
        let level1 = self.root + index(address, 1) * 8;
        match decode(device.read_memory(level1), 1) {
            Descriptor::Table(table) => (table, table + index(address, 2) * 8),
            _ => (0, 0),
        }
    }

    /// Table pages `change` of `range` would take from the pool.
    fn needed(
        &self,
        device: &mut impl DeviceAccess,
        range: &Range<u64>,
        change: Change,
    ) -> Result<u64, SmmuError> {
        Self::check_range(range)?;
        let mut needed = 0;
        let mut last_new_level1 = None;
        for (start, _, whole) in Self::pieces(range.clone()) {
            let (level2, descriptor) = self.level2_descriptor(device, start);
            if level2 == 0 {
                // No level-2 table: nothing to unmap; a map needs one (once per level-1 entry)...
                if change == Change::Map {
                    if last_new_level1 != Some(index(start, 1)) {
                        needed += 1;
                        last_new_level1 = Some(index(start, 1));
                    }
                    // ...and a level-3 table for a partial block.
                    needed += u64::from(!whole);
                }
                continue;
            }
            let entry = decode(device.read_memory(descriptor), 2);
            needed += u64::from(match (change, entry) {
                (Change::Map, Descriptor::Invalid) => !whole,
                (Change::Unmap, Descriptor::Block(_)) => !whole,
                _ => false,
            });
        }
        Ok(needed)
    }

    /// Table pages mapping `range` would take from the pool.
    pub fn tables_needed_to_map(
        &self,
        device: &mut impl DeviceAccess,
        range: &Range<u64>,
    ) -> Result<u64, SmmuError> {
        self.needed(device, range, Change::Map)
    }

    /// Table pages unmapping `range` would take from the pool (one per block split).
    pub fn tables_needed(
        &self,
        device: &mut impl DeviceAccess,
        range: &Range<u64>,
    ) -> Result<u64, SmmuError> {
        self.needed(device, range, Change::Unmap)
    }

    fn ensure_pool(&self, needed: u64) -> Result<(), SmmuError> {
        let available = self.tables_available();
        if needed > available {
            return Err(SmmuError::OutOfTableMemory { needed, available });
        }
        Ok(())
    }

    /// Maps `range` (page aligned) to itself: blocks for whole aligned 2 MiB pieces that have no
    /// table yet, pages otherwise. Fails, changing nothing, when the pool is short.
    pub fn map(
        &mut self,
        device: &mut impl DeviceAccess,
        range: Range<u64>,
    ) -> Result<Changed, SmmuError> {
        let needed = self.needed(device, &range, Change::Map)?;
        self.ensure_pool(needed)?;
        let mut changed = Changed::default();
        for (start, end, whole) in Self::pieces(range) {
            let level1 = self.root + index(start, 1) * 8;
            let level2 = match decode(device.read_memory(level1), 1) {
                Descriptor::Table(table) => table,
                _ => {
                    let table = self.allocate(device)?;
                    device.write_memory(level1, table | TABLE_OR_PAGE);
                    table
                }
            };
            let descriptor = level2 + index(start, 2) * 8;
            match decode(device.read_memory(descriptor), 2) {
                Descriptor::Block(_) => {}
                Descriptor::Invalid if whole => {
                    device.write_memory(descriptor, start | LEAF_ATTRIBUTES | BLOCK);
                    changed.leaves += 1;
                }
                Descriptor::Invalid => {
                    let table = self.allocate(device)?;
                    changed.leaves += self.write_pages(device, table, start..end, true);
                    device.write_memory(descriptor, table | TABLE_OR_PAGE);
                }
                Descriptor::Table(table) => {
                    changed.leaves += self.write_pages(device, table, start..end, true);
                }
            }
        }
        Ok(changed)
    }

    /// Unmaps `range` (page aligned): whole blocks are cleared, partly covered blocks split first.
    /// Fails, changing nothing, when the pool cannot cover the splits.
    pub fn unmap(
        &mut self,
        device: &mut impl DeviceAccess,
        range: Range<u64>,
    ) -> Result<Changed, SmmuError> {
        let needed = self.needed(device, &range, Change::Unmap)?;
        self.ensure_pool(needed)?;
        let mut changed = Changed::default();
        for (start, end, whole) in Self::pieces(range) {
            let (level2, descriptor) = self.level2_descriptor(device, start);
            if level2 == 0 {
                continue;
            }
            match decode(device.read_memory(descriptor), 2) {
                Descriptor::Invalid => {}
                Descriptor::Block(_) if whole => {
                    device.write_memory(descriptor, 0);
                    changed.leaves += 1;
                }
                Descriptor::Block(block) => {
                    // Split: a level-3 table mapping the whole block, minus the piece, replaces it.
                    let table = self.allocate(device)?;
                    self.write_pages(device, table, block..block + BLOCK_SIZE, true);
                    changed.leaves += self.write_pages(device, table, start..end, false);
                    device.write_memory(descriptor, table | TABLE_OR_PAGE);
                    changed.split = true;
                }
                Descriptor::Table(table) => {
                    changed.leaves += self.write_pages(device, table, start..end, false);
                }
            }
        }
        Ok(changed)
    }

    /// Writes the level-3 entries of `range` (inside one block) in `table`: mapped or invalid.
    /// Returns how many entries changed.
    fn write_pages(
        &self,
        device: &mut impl DeviceAccess,
        table: u64,
        range: Range<u64>,
        mapped: bool,
    ) -> u64 {
        let mut changed = 0;
        for page in range.step_by(PAGE_SIZE as usize) {
            let entry = table + index(page, 3) * 8;
            let value = if mapped {
                page | LEAF_ATTRIBUTES | TABLE_OR_PAGE
            } else {
                0
            };
            if device.read_memory(entry) != value {
                device.write_memory(entry, value);
                changed += 1;
            }
        }
        changed
    }

    /// Where a device access to `iova` goes, walking the table as the SMMU does: `None` for a
    /// translation fault.
    pub fn translate(&self, device: &mut impl DeviceAccess, iova: u64) -> Option<u64> {
        if iova >= 1 << INPUT_ADDRESS_BITS {
            return None;
        }
        let mut table = self.root;
        for level in 1..=3u8 {
            let descriptor = device.read_memory(table + index(iova, level) * 8);
            match decode(descriptor, level) {
                Descriptor::Invalid => return None,
                Descriptor::Block(output) => {
                    let size = 1 << (12 + 9 * (3 - u32::from(level)));
                    return Some(output + iova % size);
                }
                Descriptor::Table(next) => table = next,
            }
        }
        None
    }
}
