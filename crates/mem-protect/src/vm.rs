//! Protected VMs as the ownership rules see them: a handle, a lifecycle, a stage-2 table.

use stage2::{Stage2Table, TablePool};

/// Names a protected VM across hypercalls. Handles are never 0 and are not reused while the VM exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmHandle(pub u16);

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
