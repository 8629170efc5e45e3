//! GICv3 set-up with `arm-gic`: every interrupt belongs to the Non-secure world (Group 1 NS) except
//! the rendezvous SGI, which is Group 0, so it reaches EL3 as an FIQ (`SCR_EL3.FIQ` = 1) that EL1 and
//! EL2 cannot mask.

use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicV3, Group, SecureIntGroup, SgiTarget, SgiTargetGroup};
use arm_gic::{IntId, InterruptGroup, UniqueMmioPointer};
use core::ptr::NonNull;
use platform_qemu::cpu::{MPIDR_AFFINITY_MASK, current_mpidr, mpidr_from_index};
use platform_qemu::memory_map::{GICD_BASE, GICR_BASE, GICR_STRIDE, MAX_CPUS};
use spin::mutex::SpinMutex;

/// The SGI the erratum rendezvous sends (8: Linux uses 0 to 7 for its IPIs).
pub const RENDEZVOUS_SGI: IntId = IntId::sgi(8);
/// Priority of the rendezvous SGI: the highest, beyond what the Non-secure world can mask with PMR.
const RENDEZVOUS_PRIORITY: u8 = 0x00;
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
        let configured = redistributor
            .set_group(RENDEZVOUS_SGI, Group::Secure(SecureIntGroup::Group0))
            .and_then(|()| {
                redistributor.set_interrupt_priority(RENDEZVOUS_SGI, RENDEZVOUS_PRIORITY)
            })
            .and_then(|()| redistributor.enable_interrupt(RENDEZVOUS_SGI, true));
        if let Err(error) = configured {
            panic!("cannot configure the rendezvous SGI: {error}");
        }
        redistributor.wait_for_pending_write();
    }
    GicCpuInterface::set_priority_mask(0xFF);
    GicCpuInterface::enable_group0(true);
    GicCpuInterface::enable_group1_non_secure(true);
}

/// Sends the rendezvous SGI to the CPUs with the given dense indices (in increasing order): one
/// `ICC_SGI0R_EL1` write per cluster of 16 CPUs (Aff1), so any number of CPUs can be targeted.
pub fn send_rendezvous_sgi(targets: impl Iterator<Item = usize>) {
    let mut cluster: Option<u64> = None;
    let mut target_list: u16 = 0;
    for cpu in targets {
        let affinity = mpidr_from_index(cpu);
        let this_cluster = affinity >> 8;
        if cluster.is_some_and(|current| current != this_cluster) {
            send_to_cluster(cluster, target_list);
            target_list = 0;
        }
        cluster = Some(this_cluster);
        target_list |= 1 << (affinity & 0xF);
    }
    send_to_cluster(cluster, target_list);
}

/// One SGI write for the CPUs of `target_list` in cluster `cluster` (Aff2 and Aff3 are 0 on this
/// platform).
fn send_to_cluster(cluster: Option<u64>, target_list: u16) {
    let Some(cluster) = cluster else {
        return;
    };
    let target = SgiTarget::List {
        affinity3: 0,
        affinity2: 0,
        affinity1: (cluster & 0xFF) as u8,
        target_list,
    };
    // Cannot fail: RENDEZVOUS_SGI is an SGI.
    let _ = GicCpuInterface::send_sgi(RENDEZVOUS_SGI, target, SgiTargetGroup::Group0);
}

/// Acknowledges the highest-priority pending Group 0 interrupt; `None` when there is none.
pub fn acknowledge_group0() -> Option<IntId> {
    GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group0)
}

/// Ends a Group 0 interrupt acknowledged by [`acknowledge_group0`].
pub fn end_group0(intid: IntId) {
    GicCpuInterface::end_interrupt(intid, InterruptGroup::Group0);
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
