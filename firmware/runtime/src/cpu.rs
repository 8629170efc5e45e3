//! CPU numbering: from the `MPIDR_EL1` affinity fields to a dense index 0..`MAX_CPUS`, as the
//! board numbers its CPUs ([`board::Platform::cpu_index`]).

use board::{Platform, Selected};

pub use board::MPIDR_AFFINITY_MASK;

/// Returns the dense index of the CPU with the given `MPIDR_EL1` value on the selected board (the
/// payloads' board), or `None` when no such CPU can exist there.
pub fn index_from_mpidr(mpidr: u64) -> Option<usize> {
    Selected::cpu_index(mpidr)
}

/// Returns the `MPIDR_EL1` affinity value of the CPU with the given dense index on the selected
/// board.
pub fn mpidr_from_index(index: usize) -> u64 {
    Selected::cpu_mpidr(index)
}

/// Reads this CPU's `MPIDR_EL1`.
#[cfg(target_arch = "aarch64")]
pub fn current_mpidr() -> u64 {
    arm_sysregs::el1::accessors::read_mpidr_el1().bits()
}

/// Returns this CPU's dense index on board `B`.
#[cfg(target_arch = "aarch64")]
pub fn current_index<B: Platform>() -> usize {
    // Every CPU the board starts has an index below MAX_CPUS: the reset code parks the others forever.
    B::cpu_index(current_mpidr()).unwrap_or(0)
}
