//! GICv3 set-up with `arm-gic`: every interrupt belongs to the Non-secure world (Group 1 NS) except
//! the rendezvous SGI and the Secure physical timer (a waiting caller's deadline), which are
//! Group 0, so they reach EL3 as FIQs (`SCR_EL3.FIQ` = 1) that EL1 and EL2 cannot mask.
//!
//! Configuration goes through `arm-gic`; the three accesses on the rendezvous' hot paths (send the
//! SGI, acknowledge it, end it) are single system-register instructions written here, because the
//! crate's versions are out-of-line calls that convert through enums, and these run once per call
//! on the caller and once per interrupted CPU.

use crate::{Board, MAX_CPUS};
use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicV3, Group, SecureIntGroup};
use arm_gic::{IntId, UniqueMmioPointer};
use board::{MPIDR_AFFINITY_MASK, Platform};
use core::ptr::NonNull;
use firmware_runtime::cpu::current_mpidr;
use spin::mutex::SpinMutex;

/// The number of the SGI the erratum rendezvous sends (8: Linux uses 0 to 7 for its IPIs); SGI `n`
/// is INTID `n`.
const RENDEZVOUS_SGI_NUMBER: u32 = 8;
/// The SGI the erratum rendezvous sends.
pub const RENDEZVOUS_SGI: IntId = IntId::sgi(RENDEZVOUS_SGI_NUMBER);
/// Priority of the rendezvous SGI: beyond what the Non-secure world can mask with PMR (it can only
/// write values from 0x80 up), below the deadline timer's.
const RENDEZVOUS_PRIORITY: u8 = 0x40;
/// The Secure physical timer (`CNTPS_*`, PPI 13 = INTID 29 on QEMU `virt` and in the Arm Base
/// System Architecture): the wake-up of a caller whose deadline passes while it waits.
const DEADLINE_TIMER: IntId = IntId::ppi(DEADLINE_TIMER_INTID - 16);
/// [`DEADLINE_TIMER`]'s INTID, as [`acknowledge_group0`] returns it.
const DEADLINE_TIMER_INTID: u32 = 29;
/// Priority of the deadline timer: the highest.
const DEADLINE_TIMER_PRIORITY: u8 = 0x00;
/// `ICC_PMR_EL1` while a caller waits with FIQs unmasked: only interrupts of a higher priority
/// than the rendezvous SGI (the deadline timer) are signalled, so the waiting caller is never
/// interrupted to answer the rendezvous (it services newer requests in its own loop) and never
/// by a Non-secure interrupt (priorities from 0x80 in the Secure view).
pub const WAIT_PRIORITY_MASK: u64 = RENDEZVOUS_PRIORITY as u64;
/// The board's distributor.
const GICD_BASE: usize = Board::GIC.distributor;
/// The board's first redistributor.
const GICR_BASE: usize = Board::GIC.redistributors;
/// Distance between two CPUs' redistributors.
const GICR_STRIDE: usize = Board::GIC.redistributor_stride;
/// GICR_TYPER.Last: this is the last redistributor of the region.
const GICR_TYPER_LAST: u64 = 1 << 4;

/// The GIC driver; the lock serialises configuration (boot and warm boot only).
static GIC: SpinMutex<Option<GicV3<'static>>> = SpinMutex::new(None);

/// Counts the redistributors (one per CPU) by walking `GICR_TYPER` until `Last`.
fn count_redistributors() -> usize {
    let mut count = 0;
    while count < MAX_CPUS {
        let typer = (GICR_BASE + count * GICR_STRIDE + 0x8) as *const u64;
        // SAFETY: the redistributor region is mapped as device memory and holds a frame for every CPU
        // up to the one marked Last; GICR_TYPER is a read-only register at offset 8 of each frame.
        let value = unsafe { typer.read_volatile() };
        count += 1;
        if value & GICR_TYPER_LAST != 0 {
            break;
        }
    }
    count
}

/// Sets up the distributor (affinity routing for both states, Group 0 and Group 1 NS enabled, every
/// SPI Group 1 NS) on CPU 0; returns the number of CPUs (redistributors).
pub fn init_distributor() -> usize {
    let cpu_count = count_redistributors();
    let (Some(gicd), Some(gicr)) = (
        NonNull::new(GICD_BASE as *mut Gicd),
        NonNull::new(GICR_BASE as *mut GicrSgi),
    ) else {
        panic!("GIC base addresses are null");
    };
    // SAFETY: the distributor and the redistributors are mapped as device memory at these addresses
    // and only this driver instance accesses them.
    let gic = unsafe { GicV3::new(UniqueMmioPointer::new(gicd), gicr, cpu_count) };
    let mut gic = match gic {
        Ok(gic) => gic,
        Err(error) => panic!("GICv3 not usable: {error}"),
    };
    let distributor = gic.distributor();
    distributor.configure_default_settings();
    distributor.enable_affinity_routing_non_secure(true);
    distributor.enable_group0(true);
    gic.gicd_barrier();
    *GIC.lock() = Some(gic);
    cpu_count
}

/// Sets up this CPU's redistributor and CPU interface: wakes the redistributor, makes every SGI and
/// PPI Group 1 NS except [`RENDEZVOUS_SGI`] (Group 0, enabled), enables the system-register interface
/// for every EL, Group 0 at EL3 and Group 1 NS for the Non-secure world.
pub fn init_cpu(cpu: usize) {
    GicCpuInterface::enable_system_register_el3(true);
    {
        let mut guard = GIC.lock();
        let Some(gic) = guard.as_mut() else {
            panic!("GIC used before the distributor was set up");
        };
        let mut redistributor = match gic.redistributor(cpu) {
            Ok(redistributor) => redistributor,
            Err(error) => panic!("no redistributor for CPU {cpu}: {error}"),
        };
        let affinity = redistributor.typer().core_mpidr() & MPIDR_AFFINITY_MASK;
        assert_eq!(
            affinity,
            current_mpidr() & MPIDR_AFFINITY_MASK,
            "redistributor {cpu} belongs to another CPU"
        );
        // Already awake after a warm boot without power loss: not an error.
        let _ = redistributor.mark_core_awake();
        redistributor.configure_default_settings();
        for (interrupt, priority) in [
            (RENDEZVOUS_SGI, RENDEZVOUS_PRIORITY),
            (DEADLINE_TIMER, DEADLINE_TIMER_PRIORITY),
        ] {
            let configured = redistributor
                .set_group(interrupt, Group::Secure(SecureIntGroup::Group0))
                .and_then(|()| redistributor.set_interrupt_priority(interrupt, priority))
                .and_then(|()| redistributor.enable_interrupt(interrupt, true));
            if let Err(error) = configured {
                panic!("cannot configure Group 0 interrupt {interrupt:?}: {error}");
            }
        }
        redistributor.wait_for_pending_write();
    }
    GicCpuInterface::set_priority_mask(0xFF);
    GicCpuInterface::enable_group0(true);
    GicCpuInterface::enable_group1_non_secure(true);
}

/// CPUs per `ICC_SGI0R_EL1` target list: one Aff1 cluster of the board (`board::check` keeps it at
/// most 16, the width of the target list).
const CPUS_PER_TARGET_LIST: usize = Board::CPU_NUMBERING.cpus_per_cluster();
/// The target-list bits of one cluster.
const TARGET_LIST_MASK: u64 = (1 << CPUS_PER_TARGET_LIST) - 1;
/// `ICC_SGI0R_EL1.INTID` (bits 27:24) for [`RENDEZVOUS_SGI`].
const SGIR_RENDEZVOUS_INTID: u64 = (RENDEZVOUS_SGI_NUMBER as u64) << 24;
/// Shift of `ICC_SGI0R_EL1.Aff1`.
const SGIR_AFF1_SHIFT: u32 = 16;
/// INTIDs from this value up are special (1020-1023: nothing to acknowledge, or not for this group).
const FIRST_SPECIAL_INTID: u32 = 1020;
/// `ICC_IAR0_EL1.INTID`: 24 bits.
const INTID_MASK: u64 = 0xFF_FFFF;

/// Sends the rendezvous SGI to the CPUs of a bitmap of dense indices (bit `i % 64` of word `i / 64`
/// is CPU `i`): one `ICC_SGI0R_EL1` write per cluster that has a target, taken straight from the
/// bitmap. The dense index is `Aff1 * n + Aff0` with `n` CPUs per cluster (the board's
/// `ClusterNumbering`, a power of two up to 16), so bits `n k .. n k + n - 1` are exactly the target
/// list of cluster `Aff1 = k`.
///
/// Written against the register rather than with `arm_gic`'s `send_sgi` (an out-of-line call that
/// rebuilds the value from an enum per cluster): this runs on every erratum call, and a caller's
/// instructions are the call's cost. Callers order their earlier stores first (`DSB ISHST`).
pub fn send_rendezvous_sgi(targets: &[u64]) {
    for (word_index, word) in targets.iter().enumerate() {
        let mut remaining = *word;
        while remaining != 0 {
            let bit = remaining.trailing_zeros() as usize;
            let chunk = bit / CPUS_PER_TARGET_LIST * CPUS_PER_TARGET_LIST;
            let target_list = (remaining >> chunk) & TARGET_LIST_MASK;
            remaining &= !(TARGET_LIST_MASK << chunk);
            let first_cpu = word_index * 64 + chunk;
            let cluster = (Board::cpu_mpidr(first_cpu) >> 8) & 0xFF;
            let sgir = SGIR_RENDEZVOUS_INTID | (cluster << SGIR_AFF1_SHIFT) | target_list;
            // SAFETY: writing ICC_SGI0R_EL1 at EL3 (system-register interface enabled by `init_cpu`)
            // only raises Group 0 SGI 8 at the listed CPUs of cluster `cluster`; Aff2, Aff3 and IRM
            // are 0, which is right on this platform. No memory is touched.
            unsafe {
                core::arch::asm!("msr icc_sgi0r_el1, {}", in(reg) sgir, options(nomem, nostack, preserves_flags));
            }
        }
    }
    // SAFETY: ISB only synchronises the context: the SGI writes above are issued before what follows.
    unsafe { core::arch::asm!("isb", options(nomem, nostack, preserves_flags)) };
}

/// Acknowledges the highest-priority pending Group 0 interrupt (`ICC_IAR0_EL1`); `None` when there
/// is none (a special INTID). Read directly: it runs on every CPU the rendezvous interrupts.
#[inline]
pub fn acknowledge_group0() -> Option<u32> {
    let iar: u64;
    // SAFETY: reading ICC_IAR0_EL1 at EL3 acknowledges the pending Group 0 interrupt, which the FIQ
    // handler is about to handle and end with `end_group0`; no memory is touched.
    unsafe {
        core::arch::asm!("mrs {}, icc_iar0_el1", out(reg) iar, options(nomem, nostack, preserves_flags));
    }
    // The mask keeps 24 bits, so the value fits.
    let intid = (iar & INTID_MASK) as u32;
    (intid < FIRST_SPECIAL_INTID).then_some(intid)
}

/// Acknowledges the highest-priority pending Group 0 interrupt and returns its INTID as read,
/// special INTIDs (1020-1023: none pending) included, so that the responder's fast path tests for
/// the rendezvous SGI first and for a special INTID only on its slow path ([`is_special`]).
#[inline]
pub fn acknowledge_group0_raw() -> u32 {
    let iar: u64;
    // SAFETY: as in `acknowledge_group0`: the caller handles and ends the interrupt.
    unsafe {
        core::arch::asm!("mrs {}, icc_iar0_el1", out(reg) iar, options(nomem, nostack, preserves_flags));
    }
    // The mask keeps 24 bits, so the value fits.
    (iar & INTID_MASK) as u32
}

/// Whether `intid` (from [`acknowledge_group0_raw`]) is special: nothing was acknowledged.
#[inline]
pub fn is_special(intid: u32) -> bool {
    intid >= FIRST_SPECIAL_INTID
}

/// Whether `intid` (from [`acknowledge_group0`]) is the rendezvous SGI.
#[inline]
pub fn is_rendezvous_sgi(intid: u32) -> bool {
    intid == RENDEZVOUS_SGI_NUMBER
}

/// Whether `intid` (from [`acknowledge_group0`]) is the deadline timer.
pub fn is_deadline_timer(intid: u32) -> bool {
    intid == DEADLINE_TIMER_INTID
}

/// Ends (priority drop and deactivation, `EOImode` 0) a Group 0 interrupt acknowledged by
/// [`acknowledge_group0`].
#[inline]
pub fn end_group0(intid: u32) {
    // SAFETY: writing ICC_EOIR0_EL1 with the INTID just acknowledged on this CPU ends that interrupt;
    // no memory is touched.
    unsafe {
        core::arch::asm!("msr icc_eoir0_el1, {}", in(reg) u64::from(intid), options(nomem, nostack, preserves_flags));
    }
}

/// Whether the deadline timer's interrupt is pending at CPU `cpu` (the deadline test: a call that
/// gave up without the timer's FIQ having been taken must find it raised).
pub fn deadline_timer_pending(cpu: usize) -> bool {
    let sgi_frame = GICR_BASE + cpu * GICR_STRIDE + 0x1_0000;
    // SAFETY: GICR_ISPENDR0 (0x200) of the SGI frame of an existing CPU is readable without side
    // effects; the frame is mapped as device memory.
    let pending = unsafe { ((sgi_frame + 0x200) as *const u32).read_volatile() };
    pending & (1 << DEADLINE_TIMER_INTID) != 0
}

/// Whether the rendezvous SGI is pending and whether it is active at CPU `cpu` (diagnostics).
pub fn sgi_state(cpu: usize) -> (bool, bool) {
    let sgi_frame = GICR_BASE + cpu * GICR_STRIDE + 0x1_0000;
    let bit = 1u32 << RENDEZVOUS_SGI.sgi_index().unwrap_or(0);
    // SAFETY: GICR_ISPENDR0 (0x200) and GICR_ISACTIVER0 (0x300) of the SGI frame of an existing CPU are
    // readable without side effects; the frame is mapped as device memory.
    let (pending, active) = unsafe {
        (
            ((sgi_frame + 0x200) as *const u32).read_volatile(),
            ((sgi_frame + 0x300) as *const u32).read_volatile(),
        )
    };
    (pending & bit != 0, active & bit != 0)
}
