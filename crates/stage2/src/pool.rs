//! Memory for translation tables: a small trait, and a pool over caller-provided pages.

use crate::descriptor::{ENTRIES_PER_TABLE, PAGE_SIZE};

/// One 4 KiB translation table page.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C, align(4096))]
pub struct TablePage(pub [u64; ENTRIES_PER_TABLE]);

impl TablePage {
    /// A page of invalid, unannotated descriptors.
    pub const ZEROED: Self = Self([0; ENTRIES_PER_TABLE]);
}

impl Default for TablePage {
    fn default() -> Self {
        Self::ZEROED
    }
}

/// Supplies zeroed table pages, addressed by physical address.
///
/// Descriptors hold physical addresses; the pool translates them to the memory it manages.
/// A [`Stage2Table`](crate::Stage2Table) allocates every table it needs in its prepare step,
/// before changing anything, so a pool may fail freely: failure becomes
/// [`Stage2Error::OutOfTableMemory`](crate::Stage2Error::OutOfTableMemory).
pub trait TablePool {
    /// A zeroed page, 4 KiB aligned, by physical address; `None` when exhausted.
    fn allocate_page(&mut self) -> Option<u64>;

    /// `count` (a power of two, at most 16) physically contiguous zeroed pages, aligned to
    /// `count` x 4 KiB (a concatenated root table); `None` when not available. Each page is
    /// later returned with [`free_page`](Self::free_page).
    fn allocate_contiguous(&mut self, count: usize) -> Option<u64>;

    /// Returns a page obtained from this pool.
    fn free_page(&mut self, address: u64);

    /// How many single pages [`allocate_page`](Self::allocate_page) can still supply.
    fn available(&self) -> usize;

    /// The page at physical `address`, which this pool handed out. May panic on an address it
    /// never handed out (the table only passes addresses it obtained from the pool).
    fn page(&self, address: u64) -> &TablePage;

    /// The page at physical `address`, writable; same contract as [`page`](Self::page).
    fn page_mut(&mut self, address: u64) -> &mut TablePage;
}

/// Marks a free page's link word: the next free page index, or `NO_PAGE`.
const NO_PAGE: u64 = u64::MAX;

/// A [`TablePool`] over caller-provided pages: a `static` array on bare metal, a boxed slice on
/// the host.
///
/// Physical address = `physical_base` + offset in the slice; [`PagePool::new`] takes the
/// slice's own address (identity mapping, as at EL2 with an identity map, and on the host).
/// Free pages form a list linked through their first word; never-used pages are handed out
/// in order after that.
#[derive(Debug)]
pub struct PagePool<'a> {
    pages: &'a mut [TablePage],
    physical_base: u64,
    next_unused: usize,
    free_head: u64,
    free_count: usize,
}

impl<'a> PagePool<'a> {
    /// A pool over `pages`, whose physical address is their address (identity mapping).
    pub fn new(pages: &'a mut [TablePage]) -> Self {
        let physical_base = pages.as_ptr() as u64;
        Self::with_physical_base(pages, physical_base)
    }

    /// A pool over `pages`, located at `physical_base` in physical memory.
    pub fn with_physical_base(pages: &'a mut [TablePage], physical_base: u64) -> Self {
        Self {
            pages,
            physical_base,
            next_unused: 0,
            free_head: NO_PAGE,
            free_count: 0,
        }
    }

    /// Pages the pool manages in total.
    pub fn capacity(&self) -> usize {
        self.pages.len()
    }

    fn address_of(&self, index: usize) -> u64 {
        self.physical_base + index as u64 * PAGE_SIZE
    }

    /// The slice index of the page at `address`.
    ///
    /// # Panics
    /// On an address outside the pool or not page aligned: the table passes only addresses
    /// the pool handed out, so this is an internal invariant, not caller input.
    fn index_of(&self, address: u64) -> usize {
        let offset = address
            .checked_sub(self.physical_base)
            .filter(|offset| offset.is_multiple_of(PAGE_SIZE))
            .expect("table address not from this pool");
        let index = usize::try_from(offset / PAGE_SIZE).expect("table address not from this pool");
        assert!(index < self.pages.len(), "table address not from this pool");
        index
    }

    fn push_free(&mut self, index: usize) {
        self.pages[index].0[0] = self.free_head;
        self.free_head = index as u64;
        self.free_count += 1;
    }
}

impl TablePool for PagePool<'_> {
    fn allocate_page(&mut self) -> Option<u64> {
        let index = if self.free_head != NO_PAGE {
            let index = usize::try_from(self.free_head).ok()?;
            self.free_head = self.pages[index].0[0];
            self.free_count -= 1;
            index
        } else if self.next_unused < self.pages.len() {
            self.next_unused += 1;
            self.next_unused - 1
        } else {
            return None;
        };
        self.pages[index] = TablePage::ZEROED;
        Some(self.address_of(index))
    }

    fn allocate_contiguous(&mut self, count: usize) -> Option<u64> {
        if count == 1 {
            return self.allocate_page();
        }
        if !count.is_power_of_two() || count > 16 {
            return None;
        }
        // Only never-used pages are known to be contiguous; skip to the required alignment.
        let alignment = count as u64 * PAGE_SIZE;
        let mut start = self.next_unused;
        while start < self.pages.len() && !self.address_of(start).is_multiple_of(alignment) {
            start += 1;
        }
        if start + count > self.pages.len() {
            return None;
        }
        for skipped in self.next_unused..start {
            self.push_free(skipped);
        }
        self.next_unused = start + count;
        for page in &mut self.pages[start..start + count] {
            *page = TablePage::ZEROED;
        }
        Some(self.address_of(start))
    }

    fn free_page(&mut self, address: u64) {
        let index = self.index_of(address);
        self.push_free(index);
    }

    fn available(&self) -> usize {
        self.free_count + (self.pages.len() - self.next_unused)
    }

    fn page(&self, address: u64) -> &TablePage {
        &self.pages[self.index_of(address)]
    }

    fn page_mut(&mut self, address: u64) -> &mut TablePage {
        let index = self.index_of(address);
        &mut self.pages[index]
    }
}
