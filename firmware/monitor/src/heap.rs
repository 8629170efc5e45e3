//! The monitor's heap: the shared bump allocator over the `.heap` section, used only at boot for the
//! EL3 page tables (which `aarch64-paging` allocates). Nothing is ever freed.

use firmware_runtime::heap::BumpAllocator;

#[global_allocator]
static HEAP: BumpAllocator = BumpAllocator::new();
