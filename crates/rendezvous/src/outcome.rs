//! Results of the roles: what one step did, how a call ended, and configuration errors.

use crate::cpu_set::{CpuIndex, CpuSet};

/// SMCCC return value: success.
pub const SMC_SUCCESS: i32 = 0;
/// SMCCC return value `SMC_UNK` (-1), also the result of a timed-out rendezvous.
pub const SMC_UNKNOWN: i32 = -1;
/// SMCCC return value `SMC_DENIED` (-3): the system does not need the workaround.
pub const SMC_DENIED: i32 = -3;

/// How a workaround request (function `0x81000010`) ended.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum WorkaroundOutcome<const WORDS: usize> {
    /// Every active affected CPU completed its earlier accesses after the request.
    Done,
    /// No CPU of the system is (or may be) affected: nothing was sent, nothing waited for.
    NotNeeded,
    /// The deadline passed before these CPUs answered.
    Timeout {
        /// CPUs the caller had not yet seen answer. The caller checks its targets in index order
        /// and waits at the first silent one, so CPUs above the lowest member may have answered
        /// unseen; the lowest member certainly had not at the last check.
        unanswered: CpuSet<WORDS>,
    },
}

impl<const WORDS: usize> WorkaroundOutcome<WORDS> {
    /// The SMCCC return value: 0, -3 (`SMC_DENIED`) or -1 (`SMC_UNK`, as TF-A on a timeout).
    #[inline]
    pub const fn to_smc_return(&self) -> i32 {
        match self {
            Self::Done => SMC_SUCCESS,
            Self::NotNeeded => SMC_DENIED,
            Self::Timeout { .. } => SMC_UNKNOWN,
        }
    }

    /// [`Self::to_smc_return`] sign-extended to 64 bits, ready for `x0`.
    #[inline]
    pub const fn to_x0(&self) -> u64 {
        // Sign extension is the intent: -1 becomes 0xFFFF_FFFF_FFFF_FFFF as SMCCC expects.
        self.to_smc_return() as i64 as u64
    }
}

/// Why a role could not be started; the monitor answers the SMC with `SMC_UNK` and logs it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum RendezvousError {
    /// The CPU index is not below the memory's CPU count.
    CpuOutOfRange {
        /// The offending index.
        cpu: CpuIndex,
        /// CPUs present.
        cpu_count: usize,
    },
    /// [`crate::record_affectedness`] on a CPU that is active (it would take it out of the
    /// active set without its DSB).
    CpuActive {
        /// The active CPU.
        cpu: CpuIndex,
    },
    /// The caller's [`CpuSet`] cannot hold every CPU present.
    CpuSetTooSmall {
        /// CPUs present.
        cpu_count: usize,
        /// Capacity of the set type.
        capacity: usize,
    },
}

impl core::fmt::Display for RendezvousError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Self::CpuOutOfRange { cpu, cpu_count } => {
                write!(formatter, "CPU {cpu:?} is not one of the {cpu_count} CPUs")
            }
            Self::CpuActive { cpu } => write!(formatter, "CPU {cpu:?} is active"),
            Self::CpuSetTooSmall {
                cpu_count,
                capacity,
            } => write!(
                formatter,
                "a CPU set of {capacity} cannot hold {cpu_count} CPUs"
            ),
        }
    }
}

impl core::error::Error for RendezvousError {}

/// The one shared-memory access or platform action a step performed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Action {
    /// [`crate::RendezvousMemory::increment_request_counter`].
    IncrementRequestCounter,
    /// [`crate::RendezvousMemory::load_request_counter`].
    LoadRequestCounter,
    /// [`crate::RendezvousMemory::load_serviced`] of this CPU.
    LoadServiced(CpuIndex),
    /// [`crate::RendezvousMemory::store_serviced`] of this CPU.
    StoreServiced(CpuIndex),
    /// [`crate::RendezvousMemory::load_cpu_record`] of this CPU.
    LoadCpuRecord(CpuIndex),
    /// [`crate::RendezvousMemory::store_cpu_record`] of this CPU.
    StoreCpuRecord(CpuIndex),
    /// [`crate::RendezvousPlatform::send_sgi`].
    SendSgi,
    /// [`crate::RendezvousPlatform::local_dsb`].
    LocalDsb,
    /// [`crate::RendezvousPlatform::send_event`].
    SendEvent,
    /// [`crate::RendezvousPlatform::wait_for_event`].
    WaitForEvent,
    /// [`crate::RendezvousPlatform::now`].
    ReadClock,
}

impl Action {
    /// Whether the action touches the rendezvous' shared memory (as opposed to a platform action).
    pub const fn is_shared_access(self) -> bool {
        matches!(
            self,
            Self::IncrementRequestCounter
                | Self::LoadRequestCounter
                | Self::LoadServiced(_)
                | Self::StoreServiced(_)
                | Self::LoadCpuRecord(_)
                | Self::StoreCpuRecord(_)
        )
    }
}

/// What one call of a role's `step` did.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Progress<T> {
    /// The step performed this one action; the role is not finished.
    Ran(Action),
    /// The role had finished (this call performed nothing) with this result.
    Finished(T),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smc_return_table() {
        let table: [(WorkaroundOutcome<1>, i32, u64); 3] = [
            (WorkaroundOutcome::Done, 0, 0),
            (WorkaroundOutcome::NotNeeded, -3, 0xFFFF_FFFF_FFFF_FFFD),
            (
                WorkaroundOutcome::Timeout {
                    unanswered: CpuSet::new(),
                },
                -1,
                u64::MAX,
            ),
        ];
        for (outcome, smc, x0) in table {
            assert_eq!(outcome.to_smc_return(), smc, "{outcome:?}");
            assert_eq!(outcome.to_x0(), x0, "{outcome:?}");
        }
    }
}
