//! TLB maintenance, supplied by the hypervisor (real instructions) or by tests (a recorder).

use crate::Vmid;

/// The TLB maintenance and barrier instructions break-before-make needs.
///
/// The hypervisor implements each method with the instruction named; the IPA operations act
/// on the VMID currently in VTTBR_EL2, so an implementation must make `vmid` current first
/// when it is not (as Linux does when it flushes another VM's TLB entries).
pub trait TlbMaintenance {
    /// `TLBI IPAS2E1IS` for the page or block at `ipa` (a byte address; the instruction takes
    /// `ipa >> 12`), whose descriptor was at `level` (usable as the FEAT_TTL hint).
    fn invalidate_ipa(&mut self, vmid: Vmid, ipa: u64, level: u8);
    /// `DSB ISH`.
    fn dsb_inner_shareable(&mut self);
    /// `TLBI VMALLE1IS` for `vmid`: stage-1 entries combined with the old stage-2 ones.
    fn invalidate_stage1_for_vmid(&mut self, vmid: Vmid);
    /// `ISB`.
    fn isb(&mut self);
}

impl<T: TlbMaintenance + ?Sized> TlbMaintenance for &mut T {
    fn invalidate_ipa(&mut self, vmid: Vmid, ipa: u64, level: u8) {
        (**self).invalidate_ipa(vmid, ipa, level);
    }
    fn dsb_inner_shareable(&mut self) {
        (**self).dsb_inner_shareable();
    }
    fn invalidate_stage1_for_vmid(&mut self, vmid: Vmid) {
        (**self).invalidate_stage1_for_vmid(vmid);
    }
    fn isb(&mut self) {
        (**self).isb();
    }
}

/// One call to a [`TlbMaintenance`] method, as recorded by tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlbEvent {
    /// `TLBI IPAS2E1IS`.
    InvalidateIpa {
        /// VMID passed.
        vmid: Vmid,
        /// IPA of the page or block (byte address).
        ipa: u64,
        /// Level of the removed descriptor.
        level: u8,
    },
    /// `DSB ISH`.
    DsbInnerShareable,
    /// `TLBI VMALLE1IS`.
    InvalidateStage1ForVmid {
        /// VMID passed.
        vmid: Vmid,
    },
    /// `ISB`.
    Isb,
}
