//! CPU numbering: from the `MPIDR_EL1` affinity fields to a dense index 0..[`MAX_CPUS`].

use crate::memory_map::MAX_CPUS;

/// The affinity bits of `MPIDR_EL1` (Aff3, Aff2, Aff1, Aff0).
pub const MPIDR_AFFINITY_MASK: u64 = 0xFF_00FF_FFFF;

/// QEMU's `virt` board with a GICv3 puts 16 CPUs in each Aff1 cluster.
const CPUS_PER_CLUSTER: u64 = 16;

/// Returns the dense index of the CPU with the given `MPIDR_EL1` value (only its affinity fields are
/// looked at), or `None` when no such CPU can exist on this platform.
pub fn index_from_mpidr(mpidr: u64) -> Option<usize> {
    let affinity = mpidr & MPIDR_AFFINITY_MASK;
    let aff0 = affinity & 0xFF;
    let aff1 = (affinity >> 8) & 0xFF;
    if affinity >> 16 != 0 || aff0 >= CPUS_PER_CLUSTER {
        return None;
    }
    let index = usize::try_from(aff1 * CPUS_PER_CLUSTER + aff0).ok()?;
    (index < MAX_CPUS).then_some(index)
}

/// Returns the `MPIDR_EL1` affinity value of the CPU with the given dense index.
pub fn mpidr_from_index(index: usize) -> u64 {
    let index = index as u64;
    ((index / CPUS_PER_CLUSTER) << 8) | (index % CPUS_PER_CLUSTER)
}

/// Reads this CPU's `MPIDR_EL1`.
#[cfg(target_arch = "aarch64")]
pub fn current_mpidr() -> u64 {
    let mpidr: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects and is allowed at EL1 and above.
    unsafe {
        core::arch::asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack, preserves_flags))
    };
    mpidr
}

/// Returns this CPU's dense index.
#[cfg(target_arch = "aarch64")]
pub fn current_index() -> usize {
    // Every CPU QEMU starts has an index below MAX_CPUS: the reset code parks the others forever.
    index_from_mpidr(current_mpidr()).unwrap_or(0)
}
