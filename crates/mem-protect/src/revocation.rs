//! The erratum path every transition that takes pages from the host goes through, and its undo.

use core::ops::Range;

use stage2::{Annotation, TablePool};

use crate::{
    ErratumMitigation, MemProtect, MemProtectError, ProtectionEvent, ProtectionPlatform,
    stage2_error,
};

impl<P: TablePool, F: ProtectionPlatform> MemProtect<'_, P, F> {
    /// Steps 1–4 of every revocation: annotate, TLB maintenance, the devices' access, firmware call.
    /// On a failure the caller gives the host the pages back and the error is returned.
    pub(crate) fn revoke_host_access(
        &mut self,
        range: Range<u64>,
        annotation: Annotation,
    ) -> Result<(), MemProtectError> {
        let size = range.end - range.start;
        self.host
            .annotate(range.start, size, annotation, &mut self.platform)
            .map_err(stage2_error)?;
        self.platform.observe(ProtectionEvent::HostAccessRevoked {
            range: range.clone(),
        });
        self.platform
            .revoke_device_access(range)
            .map_err(MemProtectError::DeviceAccess)?;
        match self.mitigation {
            ErratumMitigation::NotNeeded => Ok(()),
            ErratumMitigation::FirmwareDvmSync => match self.platform.firmware_dvm_sync() {
                Ok(()) => {
                    self.platform.observe(ProtectionEvent::FirmwareDvmSyncDone);
                    Ok(())
                }
                #[cfg(mutant = "mem_protect_ignores_call_failure")]
                Err(_) => Ok(()),
                #[cfg(not(mutant = "mem_protect_ignores_call_failure"))]
                Err(code) => Err(code),
            }
            .map_err(|code| MemProtectError::FirmwareCallFailed { code }),
        }
    }

    /// Returns annotated pages to the host: their entries become plain invalid, which the host's
    /// stage-2 reads as "host-owned, map on the next access". Needs no table memory when the range was
    /// just annotated (the entries already exist at the right level), and no TLB maintenance (nothing
    /// valid changes).
    pub(crate) fn give_back_to_host(&mut self, range: Range<u64>) -> Result<(), MemProtectError> {
        let size = range.end - range.start;
        self.host
            .unmap(range.start, size, &mut self.platform)
            .map_err(stage2_error)
    }

    /// Undoes a revocation whose firmware call (or, impossibly, whose commit) failed.
    pub(crate) fn roll_back_to_host(&mut self, range: Range<u64>) {
        if self.give_back_to_host(range.clone()).is_ok() {
            self.platform.grant_device_access(range.clone());
            self.platform.observe(ProtectionEvent::RolledBack { range });
        }
    }
}
