//! Protected VMs as the ownership rules see them: a handle, a lifecycle, a stage-2 table.

use stage2::{Stage2Table, TablePool};

/// Names a protected VM across hypercalls: the hypercall ABI's handle, one type from the register
/// to the tables. [`crate::MemProtect`] hands out handles 1 to [`crate::MAX_VM_HANDLE`] (they double
/// as 8-bit VMIDs, 0 is the host's) and does not reuse one while its VM exists; any other value names
/// no VM.
pub use abi::hypercall::VmHandle;

/// Where a VM is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmLifecycle {
    /// Accepts pages and may run.
    Live,
    /// Torn down: its pages are waiting to be reclaimed by the host, it never runs again.
    Dying,
}

/// One protected VM's memory state.
pub struct ProtectedVm<P: TablePool> {
    pub(crate) handle: VmHandle,
    pub(crate) lifecycle: VmLifecycle,
    pub(crate) stage2: Stage2Table<P>,
    /// Pages the guest owns or shares (each one still to be reclaimed after teardown).
    pub(crate) pages: u64,
}

impl<P: TablePool> ProtectedVm<P> {
    /// The VM's handle.
    pub fn handle(&self) -> VmHandle {
        self.handle
    }

    /// Where the VM is in its life.
    pub fn lifecycle(&self) -> VmLifecycle {
        self.lifecycle
    }

    /// The VM's stage-2 table (the hypervisor installs it in VTTBR_EL2 to run the guest).
    pub fn stage2(&self) -> &Stage2Table<P> {
        &self.stage2
    }

    /// Pages the guest owns or shares.
    pub fn pages(&self) -> u64 {
        self.pages
    }
}
