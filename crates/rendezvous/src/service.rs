//! Servicing: read the request counter, complete local accesses, publish, wake waiters.
//!
//! The SGI responder is exactly this sequence; the leave and join roles end with it.

use crate::cpu_set::CpuIndex;
use crate::memory::RendezvousMemory;
use crate::outcome::{Action, Progress};
use crate::platform::RendezvousPlatform;

/// The steps of servicing, in order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ServiceState {
    /// Next: read the global request counter.
    ReadCounter,
    /// Next: local DSB; every request up to `observed` is then serviced.
    Dsb {
        /// Counter value read before the DSB.
        observed: u64,
    },
    /// Next: publish `observed` as this CPU's serviced counter.
    Publish {
        /// Counter value read before the DSB.
        observed: u64,
    },
    /// Next: wake callers waiting for the publication.
    SendEvent,
    /// Nothing left to do.
    Finished,
}

impl ServiceState {
    /// Steps from [`Self::ReadCounter`] to [`Self::Finished`]: servicing never branches.
    pub const STEPS: usize = 4;

    /// The action the next step performs (`None` once finished).
    #[inline]
    pub const fn next_action(&self, me: CpuIndex) -> Option<Action> {
        match self {
            Self::ReadCounter => Some(Action::LoadRequestCounter),
            Self::Dsb { .. } => Some(Action::LocalDsb),
            Self::Publish { .. } => Some(Action::StoreServiced(me)),
            Self::SendEvent => Some(Action::SendEvent),
            Self::Finished => None,
        }
    }

    /// Performs one step for CPU `me`.
    #[inline]
    pub fn step<M: RendezvousMemory, P: RendezvousPlatform>(
        &mut self,
        me: CpuIndex,
        memory: &M,
        platform: &mut P,
    ) -> Progress<()> {
        let (action, next) = match *self {
            Self::ReadCounter => {
                let observed = memory.load_request_counter();
                (Action::LoadRequestCounter, Self::Dsb { observed })
            }
            #[cfg(not(mutant = "rendezvous_publish_before_dsb"))]
            Self::Dsb { observed } => {
                platform.local_dsb();
                (Action::LocalDsb, Self::Publish { observed })
            }
            #[cfg(not(mutant = "rendezvous_publish_before_dsb"))]
            Self::Publish { observed } => {
                memory.store_serviced(me, observed);
                (Action::StoreServiced(me), Self::SendEvent)
            }
            // Seeded bug: the two steps swapped (the publication comes before the DSB).
            #[cfg(mutant = "rendezvous_publish_before_dsb")]
            Self::Dsb { observed } => {
                memory.store_serviced(me, observed);
                (Action::StoreServiced(me), Self::Publish { observed })
            }
            #[cfg(mutant = "rendezvous_publish_before_dsb")]
            Self::Publish { .. } => {
                platform.local_dsb();
                (Action::LocalDsb, Self::SendEvent)
            }
            Self::SendEvent => {
                platform.send_event();
                (Action::SendEvent, Self::Finished)
            }
            Self::Finished => return Progress::Finished(()),
        };
        *self = next;
        Progress::Ran(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::CellRendezvousMemory;
    use crate::platform::SilentPlatform;

    #[test]
    fn servicing_takes_exactly_steps() {
        let memory = CellRendezvousMemory::<1>::new(1);
        let mut state = ServiceState::ReadCounter;
        let mut taken = 0;
        while let Progress::Ran(_) = state.step(CpuIndex::new(0), &memory, &mut SilentPlatform) {
            taken += 1;
        }
        assert_eq!(taken, ServiceState::STEPS);
    }
}
