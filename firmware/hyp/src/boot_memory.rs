//! Memory the boot CPU takes once: the host's stage-2 table pool, the SMMU's tables and queues.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};
use stage2::TablePage;

/// Memory handed out once, at boot, to whoever takes it first (CPU 0 building the ownership state).
pub struct BootMemory<T> {
    taken: AtomicBool,
    cell: UnsafeCell<T>,
}

// SAFETY: the contents are reachable only through `take`, which hands out the one mutable reference
// at most once.
unsafe impl<T: Send> Sync for BootMemory<T> {}

impl<T> BootMemory<T> {
    pub const fn new(value: T) -> Self {
        Self {
            taken: AtomicBool::new(false),
            cell: UnsafeCell::new(value),
        }
    }

    /// The contents, the first time only.
    #[allow(clippy::mut_from_ref, reason = "handed out once, guarded by `taken`")]
    pub fn take(&'static self) -> Option<&'static mut T> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: `taken` was false, so no other reference to the contents was ever handed out, and
        // none will be: this is the only one, for the rest of the program.
        Some(unsafe { &mut *self.cell.get() })
    }
}

/// Table pages for the host's stage-2 (4 MiB).
const HOST_TABLE_PAGES: usize = 1024;
pub static HOST_TABLES: BootMemory<[TablePage; HOST_TABLE_PAGES]> =
    BootMemory::new([const { TablePage::ZEROED }; HOST_TABLE_PAGES]);
