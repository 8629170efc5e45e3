//! The hypervisor's side of ownership: which DRAM pages it owns or borrows.

use crate::PAGE_SIZE;

/// The hypervisor's view of one DRAM page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypervisorPageState {
    /// The hypervisor has no access.
    NoAccess,
    /// The hypervisor owns the page.
    Owned,
    /// The host lends the page to the hypervisor.
    Borrowed,
}

/// Two bits per DRAM page, in memory the caller provides (a static array at EL2, a `Vec` in tests).
///
/// The hypervisor maps all of DRAM at EL2 (it is trusted with every page); this table is what says which
/// pages it may touch. Updates never allocate, so they cannot fail once the range was checked.
pub struct HypervisorPages<'a> {
    dram_start: u64,
    bits: &'a mut [u8],
}

impl<'a> HypervisorPages<'a> {
    /// Bytes of tracking memory needed for `dram_size` bytes of DRAM.
    pub const fn bytes_needed(dram_size: u64) -> usize {
        (dram_size / PAGE_SIZE).div_ceil(4) as usize
    }

    /// Tracks the pages of DRAM from `dram_start`, all starting as [`HypervisorPageState::NoAccess`].
    /// `bits` must hold [`Self::bytes_needed`] bytes for the DRAM size in use.
    pub fn new(dram_start: u64, bits: &'a mut [u8]) -> Self {
        bits.fill(0);
        Self { dram_start, bits }
    }

    fn slot(&self, address: u64) -> Option<(usize, u32)> {
        let page = usize::try_from(address.checked_sub(self.dram_start)? / PAGE_SIZE).ok()?;
        let index = page / 4;
        if index >= self.bits.len() {
            return None;
        }
        Some((index, ((page % 4) * 2) as u32))
    }

    /// The state of the page holding `address`; pages outside DRAM are never accessible.
    pub fn state(&self, address: u64) -> HypervisorPageState {
        match self.slot(address) {
            Some((index, shift)) => match (self.bits[index] >> shift) & 0b11 {
                1 => HypervisorPageState::Owned,
                2 => HypervisorPageState::Borrowed,
                _ => HypervisorPageState::NoAccess,
            },
            None => HypervisorPageState::NoAccess,
        }
    }

    /// Sets every page of `range` to `state`. The caller checked the range lies in DRAM.
    pub(crate) fn set(&mut self, range: core::ops::Range<u64>, state: HypervisorPageState) {
        let value = match state {
            HypervisorPageState::NoAccess => 0,
            HypervisorPageState::Owned => 1,
            HypervisorPageState::Borrowed => 2,
        };
        for address in range.step_by(PAGE_SIZE as usize) {
            if let Some((index, shift)) = self.slot(address) {
                self.bits[index] = (self.bits[index] & !(0b11 << shift)) | (value << shift);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_per_page() {
        let mut bits = [0xffu8; 4];
        let mut pages = HypervisorPages::new(0x4000_0000, &mut bits);
        pages.set(0x4000_1000..0x4000_3000, HypervisorPageState::Owned);
        pages.set(0x4000_3000..0x4000_4000, HypervisorPageState::Borrowed);
        let expected = [
            (0x4000_0000, HypervisorPageState::NoAccess),
            (0x4000_1000, HypervisorPageState::Owned),
            (0x4000_2fff, HypervisorPageState::Owned),
            (0x4000_3000, HypervisorPageState::Borrowed),
            (0x4000_4000, HypervisorPageState::NoAccess),
            (0x4001_0000, HypervisorPageState::NoAccess),
            (0x3fff_f000, HypervisorPageState::NoAccess),
        ];
        for (address, state) in expected {
            assert_eq!(pages.state(address), state, "{address:#x}");
        }
    }
}
