//! What a host stage-2 fault means: memory or a device mapped on demand, or an abort.

use stage2::{Attributes, Entry, MappingGranule, Operation, TablePool};

use crate::{
    AddressKind, MemProtect, PAGE_SIZE, PageOwnership, ProtectionPlatform, VmHandle,
    tables_available,
};

/// What the hypervisor should do about a host stage-2 fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostFaultOutcome {
    /// The page (or block) was host memory or device memory and is now mapped: retry the access.
    Mapped {
        /// The physical range now mapped.
        start: u64,
        /// Its size in bytes.
        size: u64,
    },
    /// The host may not access this address: inject an abort into the host.
    Abort(HostAbortReason),
}

/// Why the host may not access an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostAbortReason {
    /// The hypervisor owns the page.
    OwnedByHypervisor,
    /// A protected guest owns the page.
    OwnedByGuest(VmHandle),
    /// The address is the monitor's, a secure device's, or outside every region.
    Forbidden,
    /// The host stage-2 has no table memory left to map it.
    OutOfTableMemory,
}

impl<P: TablePool, F: ProtectionPlatform> MemProtect<'_, P, F> {
    /// Decides what a host stage-2 fault at `address` means: map host or device memory on demand
    /// (a whole 2 MiB block of host memory when nothing in it is annotated or mapped), or make the
    /// host take an abort.
    pub fn handle_host_fault(&mut self, address: u64) -> HostFaultOutcome {
        let page = address - address % PAGE_SIZE;
        match self.layout.classify(page) {
            AddressKind::Forbidden => HostFaultOutcome::Abort(HostAbortReason::Forbidden),
            AddressKind::Device => {
                // The largest block that is all allowed device memory and where the host's table
                // has nothing yet (a block never replaces mappings made before).
                let block = self
                    .layout
                    .device_block(page, &DEVICE_BLOCK_SIZES)
                    .filter(|block| {
                        block.end - block.start == PAGE_SIZE || self.host_range_unused(block)
                    })
                    .unwrap_or(page..page + PAGE_SIZE);
                self.map_on_demand(
                    block.start,
                    block.end - block.start,
                    Attributes::DEVICE_OWNED,
                )
            }
            AddressKind::Memory => match self.host.walk(page) {
                Entry::Annotated(_) => HostFaultOutcome::Abort(match self.host_view(page) {
                    PageOwnership::Guest { vm, .. } => HostAbortReason::OwnedByGuest(vm),
                    _ => HostAbortReason::OwnedByHypervisor,
                }),
                // Already mapped (another CPU faulted on it first): just retry.
                Entry::Mapped { .. } => HostFaultOutcome::Mapped {
                    start: page,
                    size: PAGE_SIZE,
                },
                Entry::Unmapped => {
                    let block = page - page % stage2::BLOCK_SIZE_2M;
                    let block_range = block..block + stage2::BLOCK_SIZE_2M;
                    let whole_block_free = self
                        .layout
                        .memory_range(block, stage2::BLOCK_SIZE_2M / PAGE_SIZE)
                        .is_ok()
                        && self.host_block_unused(block);
                    if whole_block_free {
                        self.map_on_demand(
                            block_range.start,
                            stage2::BLOCK_SIZE_2M,
                            Attributes::NORMAL_OWNED,
                        )
                    } else {
                        self.map_on_demand(page, PAGE_SIZE, Attributes::NORMAL_OWNED)
                    }
                }
            },
        }
    }

    /// Whether nothing in the 2 MiB block at `block` is mapped or annotated.
    fn host_block_unused(&self, block: u64) -> bool {
        self.host_range_unused(&(block..block + stage2::BLOCK_SIZE_2M))
    }

    /// Whether nothing in `range` is mapped or annotated in the host's stage-2.
    fn host_range_unused(&self, range: &core::ops::Range<u64>) -> bool {
        let mut unused = true;
        let visited = self
            .host
            .visit_leaves(range.start, range.end - range.start, |leaf| {
                unused &= leaf.entry == Entry::Unmapped;
            });
        visited.is_ok() && unused
    }

    fn map_on_demand(&mut self, start: u64, size: u64, attributes: Attributes) -> HostFaultOutcome {
        let operation = Operation::Map {
            pa: start,
            attributes,
            granule: MappingGranule::Largest,
        };
        if tables_available(&self.host, start, size, operation).is_err() {
            return HostFaultOutcome::Abort(HostAbortReason::OutOfTableMemory);
        }
        match self.host.apply(start, size, operation, &mut self.platform) {
            Ok(()) => HostFaultOutcome::Mapped { start, size },
            Err(_) => HostFaultOutcome::Abort(HostAbortReason::OutOfTableMemory),
        }
    }
}

/// Block sizes device memory is mapped in for the host, largest first (then a page).
const DEVICE_BLOCK_SIZES: [u64; 2] = [1 << 30, stage2::BLOCK_SIZE_2M];
