//! Arm stage-2 translation tables (VMSAv8-64, 4 KiB granule) for a pKVM-style hypervisor.
//!
//! What this crate owns: the layout of the tables ([`Geometry`], VTCR_EL2, VTTBR_EL2), the
//! descriptor encodings (see the [`descriptor`] module), and changes to a table
//! ([`Stage2Table`]): map (1 GiB / 2 MiB blocks where possible), unmap, annotate (invalid
//! descriptors that record an owner and metadata), page-state changes, with block splits and
//! break-before-make. Who calls it: `mem-protect` (the ownership state machine), which decides
//! *what* changes; this crate only knows *how*.
//!
//! Two rules hold for every operation:
//! - **All or nothing.** An operation first validates its arguments and counts and reserves
//!   every table page it needs; only then does it write, and nothing after that can fail. Any
//!   error leaves the table exactly as it was (and no TLB maintenance ran).
//! - **Break-before-make, once per operation.** Valid descriptors that change are first
//!   written invalid; then `DSB ISH`, `TLBI IPAS2E1IS` per broken page/block, `DSB ISH`,
//!   `TLBI VMALLE1IS`, `DSB ISH`, `ISB` run once for the whole range through
//!   [`TlbMaintenance`]; then the new descriptors are written. Nothing runs when no valid
//!   descriptor changed. The leading `DSB ISH` (not in BRIEF §5's list) is what the
//!   architecture requires between the invalidating stores and the TLBIs.
//!
//! Concurrency: a `Stage2Table` is changed through `&mut self`; the caller holds its lock.
//! Hardware walkers read concurrently, which is what the ordering above is for.
//!
//! # Example
//! ```
//! use stage2::*;
//!
//! /// Counts TLBIs instead of issuing them (the hypervisor issues the real instructions).
//! #[derive(Default)]
//! struct CountingTlb(usize);
//! impl TlbMaintenance for CountingTlb {
//!     fn invalidate_ipa(&mut self, _: Vmid, _: u64, _: u8) { self.0 += 1; }
//!     fn dsb_inner_shareable(&mut self) {}
//!     fn invalidate_stage1_for_vmid(&mut self, _: Vmid) {}
//!     fn isb(&mut self) {}
//! }
//!
//! let mut pages = vec![TablePage::ZEROED; 8];
//! let geometry = Geometry::from_pa_range(5)?; // 48-bit PA: IPA 48 bits, walk starts at level 0
//! let mut table = Stage2Table::new(geometry, Vmid(1), PagePool::new(&mut pages))?;
//! let mut tlb = CountingTlb::default();
//!
//! // 4 MiB of RAM, identity mapped: two 2 MiB blocks, no TLB maintenance (nothing was valid).
//! table.map(0x4000_0000, 0x4000_0000, 4 << 20, Attributes::NORMAL_OWNED, &mut tlb)?;
//! assert_eq!(tlb.0, 0);
//!
//! // Give one page to owner 1: the first block is split (one new table) and broken once.
//! let owner = Annotation::new(OwnerId::new(1)?, 0x2a)?;
//! assert_eq!(table.tables_needed(0x4000_1000, PAGE_SIZE, Operation::Annotate(owner))?, 1);
//! table.annotate(0x4000_1000, PAGE_SIZE, owner, &mut tlb)?;
//! assert_eq!(tlb.0, 1);
//! assert_eq!(table.walk(0x4000_1000), Entry::Annotated(owner));
//! assert!(matches!(table.walk(0x4000_2000), Entry::Mapped { output: 0x4000_2000, .. }));
//! # Ok::<(), Stage2Error>(())
//! ```
//!
//! # Why not `aarch64-paging` 0.12
//! Its `Stage2` regime was evaluated (source of 0.12.3) and rejected because it lacks:
//! - **Allocation failure:** `Translation::allocate_table` returns a table, not an `Option`
//!   or `Result`, so an exhausted pool can only panic, and tables are allocated in the middle
//!   of `map_range`, so a failure could not be reported with nothing half-done.
//! - **TLB maintenance through a trait:** `TranslationRegime::invalidate_va` is an associated
//!   function (no `self`, no VMID, no level) with a hard-coded `tlbi ipas2e1is`; the barriers
//!   (`dsb ish; isb`) are hard-coded and there is no `TLBI VMALLE1IS`; in host tests the
//!   instructions are compiled out, so a sequence cannot be recorded.
//! - **Break-before-make on a live table:** it refuses (`MapError::BreakBeforeMakeViolation`)
//!   to split a live block or change a live output address, and asks the caller to deactivate
//!   the whole table first; the host's stage 2 is always live.
//! - **VMID and VTCR:** `Stage2::activate` writes VTTBR_EL2 with the root address only (no
//!   VMID), nothing computes VTCR_EL2, and the root is one 4 KiB table (no concatenated root
//!   tables, which 40- and 42-bit PA ranges require).
//! - **Annotations:** invalid descriptors can only be written by smuggling bits through the
//!   attribute flags of `modify_range`; there is no owner/metadata type or decoding.
//!
//! # Table memory
//! Tables come from a [`TablePool`]; [`PagePool`] manages caller-provided pages. Tables are
//! never freed while the `Stage2Table` lives (a range that becomes empty keeps its tables, a
//! map over an existing table fills it rather than collapsing it into a block), which keeps
//! the commit step free of frees; [`Stage2Table::release`] returns them all. Mapping 1 GiB in
//! 4 KiB pages takes 512 leaf tables plus one table per level above (2 MiB + 12 KiB with a
//! 48-bit IPA, root included); in 2 MiB blocks, 12 KiB; in 1 GiB blocks, 8 KiB.
#![cfg_attr(not(test), no_std)]

#[cfg(any(test, feature = "testing"))]
extern crate alloc;

pub mod descriptor;
mod error;
mod geometry;
mod pool;
mod table;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod tlb;

pub use descriptor::{
    Annotation, Attributes, BLOCK_SIZE_1G, BLOCK_SIZE_2M, ENTRIES_PER_TABLE, Entry, MemoryType,
    OwnerId, PAGE_SIZE, PageState, Permissions,
};
pub use error::Stage2Error;
pub use geometry::{
    Geometry, MAX_ADDRESS_BITS, VTCR_IRGN0_SHIFT, VTCR_ORGN0_SHIFT, VTCR_PS_SHIFT, VTCR_RES1,
    VTCR_SH0_SHIFT, VTCR_SL0_SHIFT, VTCR_TG0_SHIFT, VTCR_VS, Vmid,
};
pub use pool::{PagePool, TablePage, TablePool};
pub use table::{Leaf, MappingGranule, Operation, Stage2Table};
pub use tlb::{TlbEvent, TlbMaintenance};

#[cfg(test)]
mod tests;
