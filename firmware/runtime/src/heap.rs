//! The bump allocator behind the monitor's and the hypervisor's heaps: `aarch64-paging` allocates
//! their page tables from it at boot, and nothing is ever freed, so a bump pointer over the linker
//! script's `.heap` section (`__heap_start`..`__heap_end`) is all it takes.
//!
//! Each image declares its own `#[global_allocator]` static with [`BumpAllocator::new`] and provides
//! the two symbols in its linker script.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

unsafe extern "C" {
    static __heap_start: u8;
    static __heap_end: u8;
}

/// Hands out memory from `.heap` upwards and never reuses it.
pub struct BumpAllocator {
    /// Offset of the first free byte from `__heap_start`.
    used: AtomicUsize,
}

impl BumpAllocator {
    /// An allocator with all of `.heap` free.
    pub const fn new() -> Self {
        Self {
            used: AtomicUsize::new(0),
        }
    }
}

impl Default for BumpAllocator {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: `alloc` returns aligned, unaliased blocks inside `.heap` (or null when full); `dealloc` is a
// no-op, which is allowed.
unsafe impl GlobalAlloc for BumpAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let start = &raw const __heap_start as usize;
        let end = &raw const __heap_end as usize;
        let mut result = core::ptr::null_mut();
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let first = (start + used).next_multiple_of(layout.align());
                let last = first.checked_add(layout.size())?;
                if last > end {
                    return None;
                }
                result = first as *mut u8;
                Some(last - start)
            });
        result
    }

    unsafe fn dealloc(&self, _pointer: *mut u8, _layout: Layout) {}
}
