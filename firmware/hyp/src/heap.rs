//! The hypervisor's heap: the shared bump allocator over `.heap`, used only by `aarch64-paging` when
//! CPU 0 builds the EL2 page tables at boot. Nothing is freed.

use firmware_runtime::heap::BumpAllocator;

#[global_allocator]
static HEAP: BumpAllocator = BumpAllocator::new();
