//! What the ownership rules need from the machine, behind traits so the rules run in host tests.

use core::ops::Range;

use stage2::TlbMaintenance;

use crate::ownership::Component;

/// Whether the host can have memory accesses in flight that TLB maintenance does not wait for.
///
/// Decided once at boot from every CPU's identity (like a static key): on an unaffected system the
/// firmware call is never made and costs nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErratumMitigation {
    /// No CPU is affected by erratum 4193714: TLB maintenance completes every access.
    NotNeeded,
    /// Some CPU is affected: after TLB maintenance, ask the firmware to make every CPU run a DSB
    /// before a page the host loses changes hands.
    FirmwareDvmSync,
}

/// A step of an ownership change, reported to the platform as it happens (tests and the model checker
/// record them to check their order; the hypervisor ignores them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtectionEvent {
    /// The host's entries for these pages are invalid and annotated, and the TLB maintenance is done.
    HostAccessRevoked {
        /// The host physical range.
        range: Range<u64>,
    },
    /// The firmware answered the DVMSync call (made only under [`ErratumMitigation::FirmwareDvmSync`]).
    FirmwareDvmSyncDone,
    /// The pages now belong to (or are usable by) the new owner.
    OwnershipTransferred {
        /// The host physical range.
        range: Range<u64>,
        /// Who may now use the pages.
        to: Component,
    },
    /// The firmware call failed and the pages were given back to the host.
    RolledBack {
        /// The host physical range.
        range: Range<u64>,
    },
}

/// Why the IOMMU could not take pages away from the host's devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceAccessError {
    /// The IOMMU's page tables have no memory left for the change; nothing changed.
    OutOfTableMemory,
    /// The IOMMU did not confirm the invalidation (its `CMD_SYNC`): devices may still reach the
    /// pages, which therefore must not change hands.
    InvalidationFailed,
}

impl core::fmt::Display for DeviceAccessError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        formatter.write_str(match self {
            Self::OutOfTableMemory => "no table memory left for the change",
            Self::InvalidationFailed => "the invalidation was not confirmed",
        })
    }
}

impl core::error::Error for DeviceAccessError {}

/// The machine operations behind the ownership rules.
pub trait ProtectionPlatform: TlbMaintenance {
    /// The CPU-service call `0x81000010`: returns once every active affected CPU has run a DSB after
    /// this call began. `Err` carries the firmware's non-zero answer.
    fn firmware_dvm_sync(&mut self) -> Result<(), i64>;

    /// Zeroes the page at `physical_address` and cleans it to the point of coherency, so a reclaimed
    /// guest page reads as zero to the host whatever its cache state.
    fn zero_page(&mut self, physical_address: u64);

    /// Cleans and invalidates `range` to the point of coherency (`DC CIVAC` by line, then `DSB`):
    /// pages donated to a guest, once the host can no longer write them.
    fn clean_to_point_of_coherency(&mut self, range: Range<u64>);
    /// The host's devices lose `range`: unmap it from their IOMMU tables, invalidate the IOMMU's TLB
    /// and wait for the invalidation to complete (one sync per call). Called once per revocation,
    /// after the CPU TLB maintenance and before the firmware call and the change of owner, so no DMA
    /// reaches a page after it changed hands. Without an IOMMU (the default) there is nothing to do.
    fn revoke_device_access(&mut self, range: Range<u64>) -> Result<(), DeviceAccessError> {
        let _ = range;
        Ok(())
    }

    /// The host's devices may reach `range` again (the host owns it again). Cannot fail the
    /// transition: a page the IOMMU cannot map stays unreachable by DMA, which is safe.
    fn grant_device_access(&mut self, range: Range<u64>) {
        let _ = range;
    }

    /// Observes one step of an ownership change.
    fn observe(&mut self, event: ProtectionEvent) {
        let _ = event;
    }
}
