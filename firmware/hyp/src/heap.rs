//! The hypervisor's heap: a bump allocator over `.heap`, used only by `aarch64-paging` when CPU 0
//! builds the EL2 page tables at boot. Nothing is freed.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

unsafe extern "C" {
    static __heap_start: u8;
    static __heap_end: u8;
}

/// Hands out memory from `.heap` upwards and never reuses it.
struct BumpAllocator {
    used: AtomicUsize,
}

#[global_allocator]
static HEAP: BumpAllocator = BumpAllocator {
    used: AtomicUsize::new(0),
};

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
