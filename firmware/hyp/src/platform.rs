//! The machine operations behind the ownership rules: real TLB maintenance, the SMMU's
//! ([`crate::smmu`]), the firmware call and page zeroing ([`mem_protect::ProtectionPlatform`]).
//!
//! TLBI by IPA and `TLBI VMALLE1IS` act on the VMID in `VTTBR_EL2`; when the table being changed
//! belongs to another VMID (e.g. the host's stage-2 while this CPU handles a guest's `MEM_UNSHARE`),
//! that table's `VTTBR_EL2` value is installed for the TLBI and the previous one restored after.

use crate::firmware;
use crate::sysreg::isb;
use arm_sysregs::el0::accessors::read_ctr_el0;
use arm_sysregs::el2::accessors::{read_vttbr_el2, write_vttbr_el2};
use arm_sysregs::el2::registers::VttbrEl2;
use core::sync::atomic::{AtomicU64, Ordering};
use mem_protect::ProtectionPlatform;
use stage2::{TlbMaintenance, Vmid};

/// `VTTBR_EL2` of each VMID's table (0 when unknown), so TLB maintenance can name any VMID.
static VTTBR_BY_VMID: [AtomicU64; 256] = [const { AtomicU64::new(0) }; 256];

/// Records the `VTTBR_EL2` value of a VMID's table (or forgets it, with 0).
pub fn set_vttbr(vmid: u16, vttbr: u64) {
    if let Some(slot) = VTTBR_BY_VMID.get(usize::from(vmid)) {
        slot.store(vttbr, Ordering::Relaxed);
    }
}

/// Runs `operation` with `vmid` current in `VTTBR_EL2`.
fn with_vmid(vmid: Vmid, operation: impl FnOnce()) {
    let current = read_vttbr_el2();
    if current.vmid() == vmid.0 {
        operation();
        return;
    }
    let known = VTTBR_BY_VMID
        .get(usize::from(vmid.0))
        .map_or(0, |slot| slot.load(Ordering::Relaxed));
    let wanted = if known != 0 {
        VttbrEl2::from_bits_retain(known)
    } else {
        current.with_vmid(vmid.0)
    };
    // SAFETY: `wanted` is a stage-2 table of the hypervisor's own (recorded by `set_vttbr`, or the
    // current one under another VMID), installed only for TLB maintenance at EL2 and replaced by the
    // current one right after; stage-2 does not translate the hypervisor's own accesses.
    unsafe { write_vttbr_el2(wanted) };
    isb();
    operation();
    // SAFETY: the value read above back.
    unsafe { write_vttbr_el2(current) };
    isb();
}

/// Erratum 4193714 calls made for ownership changes so far (all CPUs; the boot-time probe is not
/// counted), for the log and the demo's summary.
static DVM_SYNC_CALLS: AtomicU64 = AtomicU64::new(0);

/// How many erratum calls ownership changes have made.
pub fn dvm_sync_calls() -> u64 {
    DVM_SYNC_CALLS.load(Ordering::Relaxed)
}

/// The hypervisor's [`ProtectionPlatform`].
pub struct HypPlatform;

impl TlbMaintenance for HypPlatform {
    fn invalidate_ipa(&mut self, vmid: Vmid, ipa: u64, _level: u8) {
        with_vmid(vmid, || {
            // SAFETY: TLB invalidation by IPA only drops cached translations.
            unsafe {
                core::arch::asm!("tlbi ipas2e1is, {}", in(reg) ipa >> 12, options(nostack, preserves_flags))
            };
        });
    }

    fn dsb_inner_shareable(&mut self) {
        // SAFETY: a barrier touches no memory.
        unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
    }

    fn invalidate_stage1_for_vmid(&mut self, vmid: Vmid) {
        with_vmid(vmid, || {
            // SAFETY: TLB invalidation only drops cached translations.
            unsafe { core::arch::asm!("tlbi vmalle1is", options(nostack, preserves_flags)) };
        });
    }

    fn isb(&mut self) {
        isb();
    }
}

/// Size of a cache line the hypervisor cleans by (the smallest the architecture allows is 16 bytes;
/// QEMU's is 64: cleaning by 64 is enough only when the line is at least that big, so read CTR_EL0).
fn data_cache_line_size() -> usize {
    // DminLine: log2 of the line size in 4-byte words.
    4 << read_ctr_el0().dminline()
}

/// Pages of the last revocation (`firmware-call-per-page` builds only): the benchmark's stand-in
/// for upstream Linux's placement makes one erratum call per page of it.
#[cfg(feature = "firmware-call-per-page")]
static REVOKED_PAGES: AtomicU64 = AtomicU64::new(1);

/// Erratum calls one ownership change makes: one, or (benchmark build) one per page it revoked.
fn calls_per_revocation() -> u64 {
    #[cfg(feature = "firmware-call-per-page")]
    {
        REVOKED_PAGES.load(Ordering::Relaxed).max(1)
    }
    #[cfg(not(feature = "firmware-call-per-page"))]
    {
        1
    }
}

impl ProtectionPlatform for HypPlatform {
    fn firmware_dvm_sync(&mut self) -> Result<(), i64> {
        for _ in 0..calls_per_revocation() {
            DVM_SYNC_CALLS.fetch_add(1, Ordering::Relaxed);
            let code = firmware::dvm_sync();
            if code != 0 {
                return Err(code);
            }
        }
        Ok(())
    }

    #[cfg(feature = "firmware-call-per-page")]
    fn observe(&mut self, event: mem_protect::ProtectionEvent) {
        if let mem_protect::ProtectionEvent::HostAccessRevoked { range } = event {
            let pages = (range.end - range.start) / mem_protect::PAGE_SIZE;
            REVOKED_PAGES.store(pages, Ordering::Relaxed);
        }
    }

    fn clean_to_point_of_coherency(&mut self, range: core::ops::Range<u64>) {
        clean_and_invalidate(range);
    }

    fn revoke_device_access(
        &mut self,
        range: core::ops::Range<u64>,
    ) -> Result<(), mem_protect::DeviceAccessError> {
        crate::smmu::revoke(range)
    }

    fn grant_device_access(&mut self, range: core::ops::Range<u64>) {
        crate::smmu::grant(range);
    }

    fn zero_page(&mut self, physical_address: u64) {
        let page = physical_address as *mut u64;
        for index in 0..(mem_protect::PAGE_SIZE as usize / 8) {
            // SAFETY: the ownership rules call this only for a DRAM page that has just left a guest and
            // that nobody else can access; the EL2 identity map covers all DRAM read-write.
            unsafe { page.add(index).write_volatile(0) };
        }
        clean_and_invalidate(physical_address..physical_address + mem_protect::PAGE_SIZE);
    }
}

/// `DC CIVAC` over every line of `range` (DRAM, identity-mapped at EL2), then `DSB ISH`. Four lines
/// per loop turn: a donation cleans every line of every page it gives away.
fn clean_and_invalidate(range: core::ops::Range<u64>) {
    let line = data_cache_line_size() as u64;
    let mut address = range.start - range.start % line;
    while address + 4 * line <= range.end {
        // SAFETY: cleaning and invalidating four lines of DRAM to the point of coherency only writes
        // back what they hold; the EL2 identity map covers all DRAM.
        unsafe {
            core::arch::asm!(
                "dc civac, {a}",
                "add {a}, {a}, {line}",
                "dc civac, {a}",
                "add {a}, {a}, {line}",
                "dc civac, {a}",
                "add {a}, {a}, {line}",
                "dc civac, {a}",
                "add {a}, {a}, {line}",
                a = inout(reg) address,
                line = in(reg) line,
                options(nostack, preserves_flags),
            )
        };
    }
    while address < range.end {
        // SAFETY: as above, one line.
        unsafe {
            core::arch::asm!("dc civac, {}", in(reg) address, options(nostack, preserves_flags))
        };
        address += line;
    }
    // SAFETY: a barrier touches no memory.
    unsafe { core::arch::asm!("dsb ish", options(nostack, preserves_flags)) };
}
