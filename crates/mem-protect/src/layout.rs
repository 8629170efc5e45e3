//! Where memory is, as the hypervisor sees the physical address space.

use core::ops::Range;

use crate::PAGE_SIZE;
use crate::error::MemProtectError;

/// The physical memory map the ownership rules are checked against.
///
/// The host's stage-2 is an identity map: a host intermediate physical address is the physical address.
/// DRAM pages may change owner; the devices the hypervisor lets the host reach (an allowlist: no
/// device that can write memory behind the hypervisor's back) are mapped to the host on demand;
/// everything else — the forbidden ranges (secure-only devices, the monitor, the hypervisor's own
/// image), devices not on the list, addresses where nothing is — never appears in the host's stage-2
/// at all, and the host's access takes an external abort.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryLayout<'a> {
    /// Normal memory whose pages can be owned, shared and donated.
    pub dram: Range<u64>,
    /// The hypervisor's own memory, inside `dram`: owned by the hypervisor from the start.
    pub hypervisor: Range<u64>,
    /// Physical ranges the host may never map (secure flash, secure RAM, secure-only devices).
    pub forbidden: &'a [Range<u64>],
    /// Device memory the host may map on demand: the allowlist, one range per device (or part of a
    /// device) the host may reach.
    pub devices: &'a [Range<u64>],
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
        } else if self.device_range(address).is_some() {
            AddressKind::Device
        } else {
            AddressKind::Forbidden
        }
    }

    /// The allowed device range holding `address`, if any.
    pub fn device_range(&self, address: u64) -> Option<&Range<u64>> {
        self.devices.iter().find(|range| range.contains(&address))
    }

    /// The largest naturally aligned block (of `sizes`, largest first, then a page) around `page`
    /// that lies wholly inside one allowed device range and touches neither DRAM nor a forbidden
    /// range: mapping device memory by blocks keeps the table pages a host's faults can consume
    /// bounded by the allowlist, not by how many addresses the host touches.
    pub fn device_block(&self, page: u64, sizes: &[u64]) -> Option<Range<u64>> {
        let allowed = self.device_range(page)?;
        let fits = |block: &Range<u64>| {
            allowed.start <= block.start
                && block.end <= allowed.end
                && !overlaps(&self.dram, block)
                && !self
                    .forbidden
                    .iter()
                    .any(|forbidden| overlaps(forbidden, block))
        };
        sizes
            .iter()
            .filter_map(|&size| {
                let start = page - page % size;
                Some(start..start.checked_add(size)?)
            })
            .find(fits)
            .or_else(|| {
                let start = page - page % PAGE_SIZE;
                Some(start..start + PAGE_SIZE).filter(fits)
            })
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
            devices: &[0x0800_0000..0x0A00_0000, 0x0A20_0000..0x0A20_1000],
        }
    }

    #[test]
    fn device_blocks_stay_inside_one_allowed_range() {
        const GIB: u64 = 1 << 30;
        const MIB2: u64 = 2 << 20;
        let sizes = [GIB, MIB2];
        let cases = [
            // The 2 MiB block around 0x0900_0000 lies inside the first range.
            (0x0900_0123, Some(0x0900_0000..0x0920_0000)),
            (0x0800_0000, Some(0x0800_0000..0x0820_0000)),
            // A one-page device: a page, never more.
            (0x0A20_0000, Some(0x0A20_0000..0x0A20_1000)),
            // Outside the list.
            (0x0A00_0000, None),
            (0x0A20_1000, None),
            (0x0000_1000, None),
        ];
        for (page, expected) in cases {
            assert_eq!(layout().device_block(page, &sizes), expected, "{page:#x}");
        }
        // A whole allowed gibibyte is one block; next to DRAM or forbidden ranges it is not.
        let big = [0x1_0000_0000..0x3_0000_0000, 0x0100_0000..0x4000_0000];
        let wide = MemoryLayout {
            devices: &big,
            ..layout()
        };
        assert_eq!(
            wide.device_block(0x1_2345_6000, &sizes),
            Some(0x1_0000_0000..0x1_4000_0000)
        );
        // 0..1 GiB holds the forbidden Secure flash: 2 MiB blocks there, not the whole gibibyte.
        assert_eq!(
            wide.device_block(0x0500_0000, &sizes),
            Some(0x0500_0000..0x0520_0000)
        );
    }

    #[test]
    fn classifies_addresses() {
        let cases = [
            (0x4000_0000, AddressKind::Memory),
            (0x7fff_f000, AddressKind::Memory),
            (0x8000_0000, AddressKind::Forbidden),
            (0x0900_0000, AddressKind::Device),
            // Not on the allowlist: never mapped.
            (0x0A00_0000, AddressKind::Forbidden),
            (0x2000_0000, AddressKind::Forbidden),
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
