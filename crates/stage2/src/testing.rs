//! Helpers for host tests, here and in crates built on this one (feature `testing`).

use alloc::{boxed::Box, vec::Vec};

use crate::{PagePool, Stage2Table, TablePage, TablePool, TlbEvent, TlbMaintenance, Vmid};

/// A [`TlbMaintenance`] that records every call in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordingTlb {
    /// The calls so far, oldest first.
    pub events: Vec<TlbEvent>,
}

impl RecordingTlb {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the recorded events and starts afresh.
    pub fn take(&mut self) -> Vec<TlbEvent> {
        core::mem::take(&mut self.events)
    }
}

impl TlbMaintenance for RecordingTlb {
    fn invalidate_ipa(&mut self, vmid: Vmid, ipa: u64, level: u8) {
        self.events
            .push(TlbEvent::InvalidateIpa { vmid, ipa, level });
    }
    fn dsb_inner_shareable(&mut self) {
        self.events.push(TlbEvent::DsbInnerShareable);
    }
    fn invalidate_stage1_for_vmid(&mut self, vmid: Vmid) {
        self.events.push(TlbEvent::InvalidateStage1ForVmid { vmid });
    }
    fn isb(&mut self) {
        self.events.push(TlbEvent::Isb);
    }
}

/// The exact events one operation emits when it broke the valid descriptors at
/// `(ipa, level)` (in ascending IPA order): `DSB ISH`, one `TLBI IPAS2E1IS` each,
/// `DSB ISH`, `TLBI VMALLE1IS`, `DSB ISH`, `ISB`. Empty when nothing valid was broken.
pub fn break_before_make_events(vmid: Vmid, broken: &[(u64, u8)]) -> Vec<TlbEvent> {
    if broken.is_empty() {
        return Vec::new();
    }
    let mut events = Vec::with_capacity(broken.len() + 5);
    events.push(TlbEvent::DsbInnerShareable);
    events.extend(
        broken
            .iter()
            .map(|&(ipa, level)| TlbEvent::InvalidateIpa { vmid, ipa, level }),
    );
    events.extend([
        TlbEvent::DsbInnerShareable,
        TlbEvent::InvalidateStage1ForVmid { vmid },
        TlbEvent::DsbInnerShareable,
        TlbEvent::Isb,
    ]);
    events
}

/// `count` zeroed table pages on the heap.
pub fn table_pages(count: usize) -> Box<[TablePage]> {
    (0..count).map(|_| TablePage::ZEROED).collect()
}

/// A pool of `count` pages that lives for the rest of the test process (the memory is leaked
/// on purpose, so the pool can be stored without a lifetime).
pub fn leaked_pool(count: usize) -> PagePool<'static> {
    PagePool::new(Box::leak(table_pages(count)))
}

/// Every non-zero descriptor of every table of `table` as `(level, table address, index,
/// descriptor)`, depth first: compare two dumps to prove an operation changed nothing.
pub fn descriptor_dump<P: TablePool>(table: &Stage2Table<P>) -> Vec<(u8, u64, usize, u64)> {
    let mut entries = Vec::new();
    table.visit_descriptors(|level, address, index, descriptor| {
        if descriptor != 0 {
            entries.push((level, address, index, descriptor));
        }
    });
    entries
}
