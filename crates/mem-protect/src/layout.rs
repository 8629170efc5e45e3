//! Where memory is, as the hypervisor sees the physical address space.

use core::ops::Range;

use crate::PAGE_SIZE;
use crate::error::MemProtectError;

/// The physical memory map the ownership rules are checked against.
///
/// The host's stage-2 is an identity map: a host intermediate physical address is the physical address.
/// DRAM pages may change owner; device memory below DRAM is mapped to the host on demand, except the
/// forbidden ranges (secure-only devices, the monitor, the hypervisor's own image), which never appear in
/// the host's stage-2 at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryLayout<'a> {
    /// Normal memory whose pages can be owned, shared and donated.
    pub dram: Range<u64>,
    /// The hypervisor's own memory, inside `dram`: owned by the hypervisor from the start.
    pub hypervisor: Range<u64>,
    /// Physical ranges the host may never map (secure flash, secure RAM, secure-only devices).
    pub forbidden: &'a [Range<u64>],
    /// Device memory the host may map on demand.
    pub device: Range<u64>,
}

/// What a physical address is, for the ownership rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressKind {
    /// A DRAM page that takes part in ownership tracking.
    Memory,
    /// Device memory the host may map on demand.
    Device,
    /// An address the host may never map.
    Forbidden,
}

impl MemoryLayout<'_> {
    /// Classifies one physical address.
    pub fn classify(&self, address: u64) -> AddressKind {
        if self.forbidden.iter().any(|range| range.contains(&address)) {
            AddressKind::Forbidden
        } else if self.dram.contains(&address) {
            AddressKind::Memory
        } else if self.device.contains(&address) {
            AddressKind::Device
        } else {
            AddressKind::Forbidden
        }
    }

    /// Checks that `pages` pages from `address` are page aligned, do not wrap, and lie in DRAM; returns the
    /// range in bytes.
    pub fn memory_range(&self, address: u64, pages: u64) -> Result<Range<u64>, MemProtectError> {
        let range = page_range(address, pages)?;
        if range.start < self.dram.start || range.end > self.dram.end {
            return Err(MemProtectError::NotMemory {
                address: first_outside(&range, &self.dram),
            });
        }
        if let Some(forbidden) = self
            .forbidden
            .iter()
            .find(|forbidden| overlaps(forbidden, &range))
        {
            return Err(MemProtectError::NotMemory {
                address: forbidden.start.max(range.start),
            });
        }
        Ok(range)
    }
}

/// The byte range of `pages` pages from `address`, checking alignment, a non-zero count and overflow.
pub fn page_range(address: u64, pages: u64) -> Result<Range<u64>, MemProtectError> {
    if !address.is_multiple_of(PAGE_SIZE) {
        return Err(MemProtectError::NotAligned { address });
    }
    if pages == 0 {
        return Err(MemProtectError::ZeroPages);
    }
    let size = pages
        .checked_mul(PAGE_SIZE)
        .ok_or(MemProtectError::AddressOverflow { address, pages })?;
    let end = address
        .checked_add(size)
        .ok_or(MemProtectError::AddressOverflow { address, pages })?;
    Ok(address..end)
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

fn first_outside(range: &Range<u64>, dram: &Range<u64>) -> u64 {
    if range.start < dram.start || range.start >= dram.end {
        range.start
    } else {
        dram.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORBIDDEN: [Range<u64>; 2] = [0x0000_0000..0x0400_0000, 0x0e00_0000..0x0f00_0000];

    fn layout() -> MemoryLayout<'static> {
        MemoryLayout {
            dram: 0x4000_0000..0x8000_0000,
            hypervisor: 0x7f00_0000..0x8000_0000,
            forbidden: &FORBIDDEN,
            device: 0x0800_0000..0x4000_0000,
        }
    }

    #[test]
    fn classifies_addresses() {
        let cases = [
            (0x4000_0000, AddressKind::Memory),
            (0x7fff_f000, AddressKind::Memory),
            (0x8000_0000, AddressKind::Forbidden),
            (0x0900_0000, AddressKind::Device),
            (0x0e00_1000, AddressKind::Forbidden),
            (0x0000_0000, AddressKind::Forbidden),
            (0x0400_0000, AddressKind::Forbidden),
        ];
        for (address, expected) in cases {
            assert_eq!(layout().classify(address), expected, "{address:#x}");
        }
    }

    #[test]
    fn memory_range_rejects_bad_input() {
        let cases: [(u64, u64, Result<Range<u64>, MemProtectError>); 6] = [
            (0x4000_0000, 2, Ok(0x4000_0000..0x4000_2000)),
            (
                0x4000_0800,
                1,
                Err(MemProtectError::NotAligned {
                    address: 0x4000_0800,
                }),
            ),
            (0x4000_0000, 0, Err(MemProtectError::ZeroPages)),
            (
                0x7fff_f000,
                2,
                Err(MemProtectError::NotMemory {
                    address: 0x8000_0000,
                }),
            ),
            (
                0x0900_0000,
                1,
                Err(MemProtectError::NotMemory {
                    address: 0x0900_0000,
                }),
            ),
            (
                0x4000_0000,
                u64::MAX / 2,
                Err(MemProtectError::AddressOverflow {
                    address: 0x4000_0000,
                    pages: u64::MAX / 2,
                }),
            ),
        ];
        for (address, pages, expected) in cases {
            assert_eq!(
                layout().memory_range(address, pages),
                expected,
                "{address:#x} x {pages}"
            );
        }
    }
}
