//! The four protocol roles as explicit-step state machines.
//!
//! Each `step` performs at most one shared-memory access or one platform action and says which
//! ([`Progress::Ran`]); once the role is finished, `step` performs nothing and returns
//! [`Progress::Finished`] with the result. `next_action` tells a scheduler (or model checker) what
//! the next step will do without doing it, e.g. to treat a `WaitForEvent` as blocking.

use crate::cpu_set::{CpuIndex, CpuSet};
use crate::memory::{Affectedness, CpuRecord, Inactivity, RendezvousMemory};
use crate::outcome::{Action, Progress, RendezvousError, WorkaroundOutcome};
use crate::platform::{Deadline, RendezvousPlatform};
use crate::service::ServiceState;

/// Checks that `cpu` has a slot in `memory`.
#[inline]
fn check_cpu<M: RendezvousMemory>(memory: &M, cpu: CpuIndex) -> Result<(), RendezvousError> {
    let cpu_count = memory.cpu_count();
    if cpu.get() < cpu_count {
        Ok(())
    } else {
        Err(RendezvousError::CpuOutOfRange { cpu, cpu_count })
    }
}

/// The caller's scan of one CPU: reads `cpu`'s record and adds `cpu` to `targets` when the caller
/// must interrupt it and wait for it. Returns (whether it was added, whether it may be affected).
/// Shared by [`CallerRole::step`] and the flat driver ([`crate::request_workaround_flat`]).
#[inline]
pub(crate) fn scan_record<M: RendezvousMemory, const WORDS: usize>(
    memory: &M,
    me: CpuIndex,
    cpu: CpuIndex,
    targets: &mut CpuSet<WORDS>,
) -> (bool, bool) {
    let record = memory.load_cpu_record(cpu);
    let targeted = cpu != me && record.needs_rendezvous();
    if targeted {
        targets.insert(cpu);
    }
    (targeted, record.affectedness.may_be_affected())
}

/// Whether `cpu` has published `request` (or a later one) as serviced.
#[inline]
pub(crate) fn has_serviced<M: RendezvousMemory>(memory: &M, cpu: CpuIndex, request: u64) -> bool {
    memory.load_serviced(cpu) >= request
}

/// The request counter, if it is past what the waiting caller has `published`: other callers'
/// requests it must service before it waits again.
#[inline]
pub(crate) fn newer_request<M: RendezvousMemory>(memory: &M, published: u64) -> Option<u64> {
    let observed = memory.load_request_counter();
    (observed > published).then_some(observed)
}

/// The states of a workaround request on the calling CPU (see the crate docs for the diagram).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum CallerState<const WORDS: usize> {
    /// Next: increment the global request counter; its new value is this request's number.
    Increment,
    /// Next: read the record of CPU `next` (CPUs are scanned in index order).
    Scan {
        /// This request's number.
        request: u64,
        /// CPU whose record is read next.
        next: CpuIndex,
        /// Active, possibly affected CPUs other than the caller seen so far.
        targets: CpuSet<WORDS>,
        /// Whether any CPU seen so far (the caller included) is or may be affected.
        possibly_affected: bool,
    },
    /// Next: send the SGI to `targets`.
    SendSgi {
        /// This request's number.
        request: u64,
        /// CPUs to interrupt and wait for.
        targets: CpuSet<WORDS>,
    },
    /// Next: the caller's own DSB.
    OwnDsb {
        /// This request's number.
        request: u64,
        /// CPUs to wait for.
        targets: CpuSet<WORDS>,
    },
    /// Next: publish `request` as the caller's serviced counter.
    OwnPublish {
        /// This request's number.
        request: u64,
        /// CPUs to wait for.
        targets: CpuSet<WORDS>,
    },
    /// Next: wake other waiting callers (they service this request, or wait for this CPU).
    SendEvent {
        /// This request's number.
        request: u64,
        /// CPUs to wait for.
        targets: CpuSet<WORDS>,
    },
    /// Next: read the serviced counter of `next`, the lowest member of `remaining`.
    CheckServiced {
        /// This request's number.
        request: u64,
        /// Highest request this CPU has published as serviced during this call.
        published: u64,
        /// CPUs that have not yet been seen to service the request.
        remaining: CpuSet<WORDS>,
        /// CPU checked next.
        next: CpuIndex,
    },
    /// Next: read the global counter, to service other callers' newer requests while waiting.
    CheckOwnWork {
        /// This request's number.
        request: u64,
        /// Highest request published during this call.
        published: u64,
        /// CPUs still to answer.
        remaining: CpuSet<WORDS>,
    },
    /// Next: local DSB on behalf of other callers' requests up to `observed`.
    CatchUpDsb {
        /// This request's number.
        request: u64,
        /// Counter value read.
        observed: u64,
        /// CPUs still to answer.
        remaining: CpuSet<WORDS>,
    },
    /// Next: publish `observed`.
    CatchUpPublish {
        /// This request's number.
        request: u64,
        /// Counter value read.
        observed: u64,
        /// CPUs still to answer.
        remaining: CpuSet<WORDS>,
    },
    /// Next: wake the callers that wait for this CPU's publication.
    CatchUpSendEvent {
        /// This request's number.
        request: u64,
        /// Highest request published during this call.
        published: u64,
        /// CPUs still to answer.
        remaining: CpuSet<WORDS>,
    },
    /// Next: read the clock and give up if the deadline has passed.
    ReadClock {
        /// This request's number.
        request: u64,
        /// Highest request published during this call.
        published: u64,
        /// CPUs still to answer.
        remaining: CpuSet<WORDS>,
    },
    /// Next: wait for an event, then check the remaining CPUs again.
    WaitForEvent {
        /// This request's number.
        request: u64,
        /// Highest request published during this call.
        published: u64,
        /// CPUs still to answer.
        remaining: CpuSet<WORDS>,
    },
    /// The request has ended.
    Finished(WorkaroundOutcome<WORDS>),
}

/// The calling CPU's side of a workaround request (SMC `0x81000010`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CallerRole<const WORDS: usize> {
    me: CpuIndex,
    cpu_count: usize,
    deadline: Deadline,
    state: CallerState<WORDS>,
}

impl<const WORDS: usize> CallerRole<WORDS> {
    /// A request by CPU `me` that gives up at `deadline`.
    #[inline]
    pub fn new<M: RendezvousMemory>(
        memory: &M,
        me: CpuIndex,
        deadline: Deadline,
    ) -> Result<Self, RendezvousError> {
        check_cpu(memory, me)?;
        let cpu_count = memory.cpu_count();
        if cpu_count > CpuSet::<WORDS>::CAPACITY {
            return Err(RendezvousError::CpuSetTooSmall {
                cpu_count,
                capacity: CpuSet::<WORDS>::CAPACITY,
            });
        }
        Ok(Self {
            me,
            cpu_count,
            deadline,
            state: CallerState::Increment,
        })
    }

    /// The current state.
    #[inline]
    pub const fn state(&self) -> &CallerState<WORDS> {
        &self.state
    }

    /// The calling CPU.
    #[inline]
    pub const fn cpu(&self) -> CpuIndex {
        self.me
    }

    /// The outcome, once finished.
    #[inline]
    pub const fn outcome(&self) -> Option<WorkaroundOutcome<WORDS>> {
        match self.state {
            CallerState::Finished(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// The action the next step performs (`None` once finished).
    #[inline]
    pub const fn next_action(&self) -> Option<Action> {
        Some(match self.state {
            CallerState::Increment => Action::IncrementRequestCounter,
            CallerState::Scan { next, .. } => Action::LoadCpuRecord(next),
            CallerState::SendSgi { .. } => Action::SendSgi,
            CallerState::OwnDsb { .. } | CallerState::CatchUpDsb { .. } => Action::LocalDsb,
            CallerState::OwnPublish { .. } | CallerState::CatchUpPublish { .. } => {
                Action::StoreServiced(self.me)
            }
            CallerState::SendEvent { .. } | CallerState::CatchUpSendEvent { .. } => {
                Action::SendEvent
            }
            CallerState::CheckServiced { next, .. } => Action::LoadServiced(next),
            CallerState::CheckOwnWork { .. } => Action::LoadRequestCounter,
            CallerState::ReadClock { .. } => Action::ReadClock,
            CallerState::WaitForEvent { .. } => Action::WaitForEvent,
            CallerState::Finished(_) => return None,
        })
    }

    /// Performs one step.
    #[inline]
    pub fn step<M: RendezvousMemory, P: RendezvousPlatform>(
        &mut self,
        memory: &M,
        platform: &mut P,
    ) -> Progress<WorkaroundOutcome<WORDS>> {
        let me = self.me;
        let (action, next_state) = match self.state {
            CallerState::Increment => {
                let request = memory.increment_request_counter();
                let state = CallerState::Scan {
                    request,
                    next: CpuIndex::new(0),
                    targets: CpuSet::new(),
                    possibly_affected: false,
                };
                (Action::IncrementRequestCounter, state)
            }
            CallerState::Scan {
                request,
                next,
                mut targets,
                possibly_affected,
            } => {
                let (_, may_be_affected) = scan_record(memory, me, next, &mut targets);
                let possibly_affected = possibly_affected || may_be_affected;
                let following = next.get() + 1;
                #[cfg(not(mutant = "rendezvous_scan_skips_last_cpu"))]
                let scanned = self.cpu_count;
                // Seeded bug: an off-by-one that never reads the last CPU's record.
                #[cfg(mutant = "rendezvous_scan_skips_last_cpu")]
                let scanned = self.cpu_count.saturating_sub(1);
                let state = if following < scanned {
                    CallerState::Scan {
                        request,
                        next: CpuIndex::new(following),
                        targets,
                        possibly_affected,
                    }
                } else if !possibly_affected {
                    CallerState::Finished(WorkaroundOutcome::NotNeeded)
                } else if targets.is_empty() {
                    CallerState::OwnDsb { request, targets }
                } else {
                    CallerState::SendSgi { request, targets }
                };
                (Action::LoadCpuRecord(next), state)
            }
            CallerState::SendSgi { request, targets } => {
                platform.send_sgi(&targets);
                (Action::SendSgi, CallerState::OwnDsb { request, targets })
            }
            CallerState::OwnDsb { request, targets } => {
                platform.local_dsb();
                (
                    Action::LocalDsb,
                    CallerState::OwnPublish { request, targets },
                )
            }
            CallerState::OwnPublish { request, targets } => {
                memory.store_serviced(me, request);
                (
                    Action::StoreServiced(me),
                    CallerState::SendEvent { request, targets },
                )
            }
            CallerState::SendEvent { request, targets } => {
                platform.send_event();
                (
                    Action::SendEvent,
                    Self::start_pass(request, request, targets),
                )
            }
            CallerState::CheckServiced {
                request,
                published,
                mut remaining,
                next,
            } => {
                // A pass stops at the first CPU that has not answered: the caller has to wait for
                // it anyway, and the next pass resumes there (`remaining` keeps only CPUs from
                // `next` on), so each target's counter is read about once per call instead of
                // once per pass.
                let state = if has_serviced(memory, next, request) {
                    remaining.remove(next);
                    match remaining.first_at_or_after(next.get() + 1) {
                        Some(following) => CallerState::CheckServiced {
                            request,
                            published,
                            remaining,
                            next: following,
                        },
                        None => CallerState::Finished(WorkaroundOutcome::Done),
                    }
                } else {
                    CallerState::CheckOwnWork {
                        request,
                        published,
                        remaining,
                    }
                };
                (Action::LoadServiced(next), state)
            }
            CallerState::CheckOwnWork {
                request,
                published,
                remaining,
            } => {
                let state = match newer_request(memory, published) {
                    Some(observed) => CallerState::CatchUpDsb {
                        request,
                        observed,
                        remaining,
                    },
                    None => CallerState::ReadClock {
                        request,
                        published,
                        remaining,
                    },
                };
                (Action::LoadRequestCounter, state)
            }
            CallerState::CatchUpDsb {
                request,
                observed,
                remaining,
            } => {
                platform.local_dsb();
                let state = CallerState::CatchUpPublish {
                    request,
                    observed,
                    remaining,
                };
                (Action::LocalDsb, state)
            }
            CallerState::CatchUpPublish {
                request,
                observed,
                remaining,
            } => {
                memory.store_serviced(me, observed);
                let state = CallerState::CatchUpSendEvent {
                    request,
                    published: observed,
                    remaining,
                };
                (Action::StoreServiced(me), state)
            }
            CallerState::CatchUpSendEvent {
                request,
                published,
                remaining,
            } => {
                platform.send_event();
                let state = CallerState::ReadClock {
                    request,
                    published,
                    remaining,
                };
                (Action::SendEvent, state)
            }
            CallerState::ReadClock {
                request,
                published,
                remaining,
            } => {
                let now = platform.now();
                let state = if self.deadline.has_passed(now) {
                    CallerState::Finished(WorkaroundOutcome::Timeout {
                        unanswered: remaining,
                    })
                } else {
                    CallerState::WaitForEvent {
                        request,
                        published,
                        remaining,
                    }
                };
                (Action::ReadClock, state)
            }
            CallerState::WaitForEvent {
                request,
                published,
                remaining,
            } => {
                platform.wait_for_event();
                (
                    Action::WaitForEvent,
                    Self::start_pass(request, published, remaining),
                )
            }
            CallerState::Finished(outcome) => return Progress::Finished(outcome),
        };
        self.state = next_state;
        Progress::Ran(action)
    }

    /// The state that starts a pass over the CPUs still to answer (or finishes when none are).
    #[inline]
    fn start_pass(request: u64, published: u64, remaining: CpuSet<WORDS>) -> CallerState<WORDS> {
        match remaining.first_at_or_after(0) {
            Some(next) => CallerState::CheckServiced {
                request,
                published,
                remaining,
                next,
            },
            None => CallerState::Finished(WorkaroundOutcome::Done),
        }
    }
}

/// The SGI responder: what the monitor's FIQ handler runs for the rendezvous SGI.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ResponderRole {
    me: CpuIndex,
    state: ServiceState,
}

impl ResponderRole {
    /// A responder on CPU `me`.
    #[inline]
    pub fn new<M: RendezvousMemory>(memory: &M, me: CpuIndex) -> Result<Self, RendezvousError> {
        check_cpu(memory, me)?;
        Ok(Self {
            me,
            state: ServiceState::ReadCounter,
        })
    }

    /// The current state.
    #[inline]
    pub const fn state(&self) -> &ServiceState {
        &self.state
    }

    /// The action the next step performs (`None` once finished).
    #[inline]
    pub const fn next_action(&self) -> Option<Action> {
        self.state.next_action(self.me)
    }

    /// Performs one step.
    #[inline]
    pub fn step<M: RendezvousMemory, P: RendezvousPlatform>(
        &mut self,
        memory: &M,
        platform: &mut P,
    ) -> Progress<()> {
        self.state.step(self.me, memory, platform)
    }
}

/// The states of a CPU leaving the active set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum LeaveState {
    /// Next: read the CPU's own record (to keep its affectedness).
    ReadOwnRecord,
    /// Next: DSB, completing every access issued at a lower EL before the PSCI call.
    Dsb {
        /// This CPU's affectedness, kept in the new record.
        affectedness: Affectedness,
    },
    /// Next: publish the inactive record (after the DSB: a caller that sees it may skip us).
    StoreInactive {
        /// This CPU's affectedness.
        affectedness: Affectedness,
    },
    /// Servicing requests a caller may have counted on us for before it saw the record.
    Service(ServiceState),
}

/// A CPU leaving the active set: `CPU_OFF`, power-down or retention `CPU_SUSPEND`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct LeaveRole {
    me: CpuIndex,
    inactivity: Inactivity,
    state: LeaveState,
}

impl LeaveRole {
    /// CPU `me` leaving the active set to become `inactivity`.
    #[inline]
    pub fn new<M: RendezvousMemory>(
        memory: &M,
        me: CpuIndex,
        inactivity: Inactivity,
    ) -> Result<Self, RendezvousError> {
        check_cpu(memory, me)?;
        Ok(Self {
            me,
            inactivity,
            state: LeaveState::ReadOwnRecord,
        })
    }

    /// The current state.
    #[inline]
    pub const fn state(&self) -> &LeaveState {
        &self.state
    }

    /// The action the next step performs (`None` once finished).
    #[inline]
    pub const fn next_action(&self) -> Option<Action> {
        match &self.state {
            LeaveState::ReadOwnRecord => Some(Action::LoadCpuRecord(self.me)),
            LeaveState::Dsb { .. } => Some(Action::LocalDsb),
            LeaveState::StoreInactive { .. } => Some(Action::StoreCpuRecord(self.me)),
            LeaveState::Service(service) => service.next_action(self.me),
        }
    }

    /// Performs one step.
    #[inline]
    pub fn step<M: RendezvousMemory, P: RendezvousPlatform>(
        &mut self,
        memory: &M,
        platform: &mut P,
    ) -> Progress<()> {
        let me = self.me;
        let (action, next_state) = match &mut self.state {
            LeaveState::ReadOwnRecord => {
                let affectedness = memory.load_cpu_record(me).affectedness;
                (Action::LoadCpuRecord(me), LeaveState::Dsb { affectedness })
            }
            // Seeded bug: the two steps swapped (the inactive record is stored before the DSB).
            #[cfg(mutant = "rendezvous_leave_stores_before_dsb")]
            LeaveState::Dsb { affectedness } => {
                let record = CpuRecord {
                    activity: self.inactivity.into(),
                    affectedness: *affectedness,
                };
                memory.store_cpu_record(me, record);
                let affectedness = *affectedness;
                (
                    Action::StoreCpuRecord(me),
                    LeaveState::StoreInactive { affectedness },
                )
            }
            #[cfg(mutant = "rendezvous_leave_stores_before_dsb")]
            LeaveState::StoreInactive { .. } => {
                platform.local_dsb();
                (
                    Action::LocalDsb,
                    LeaveState::Service(ServiceState::ReadCounter),
                )
            }
            #[cfg(not(mutant = "rendezvous_leave_stores_before_dsb"))]
            LeaveState::Dsb { affectedness } => {
                platform.local_dsb();
                let affectedness = *affectedness;
                (Action::LocalDsb, LeaveState::StoreInactive { affectedness })
            }
            #[cfg(not(mutant = "rendezvous_leave_stores_before_dsb"))]
            LeaveState::StoreInactive { affectedness } => {
                let record = CpuRecord {
                    activity: self.inactivity.into(),
                    affectedness: *affectedness,
                };
                memory.store_cpu_record(me, record);
                #[cfg(mutant = "rendezvous_leave_skips_service")]
                let service = ServiceState::Finished;
                #[cfg(not(mutant = "rendezvous_leave_skips_service"))]
                let service = ServiceState::ReadCounter;
                (Action::StoreCpuRecord(me), LeaveState::Service(service))
            }
            LeaveState::Service(service) => return service.step(me, memory, platform),
        };
        self.state = next_state;
        Progress::Ran(action)
    }
}

/// The states of a CPU rejoining the active set.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum JoinState {
    /// Next: publish the active record (callers from now on send the SGI and wait).
    StoreActive,
    /// Servicing, so that the DSB runs before any lower-EL code.
    Service(ServiceState),
}

/// A CPU (re)joining the active set: first boot, `CPU_ON` warm boot, wake from suspend.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct JoinRole {
    me: CpuIndex,
    affectedness: Affectedness,
    state: JoinState,
}

impl JoinRole {
    /// CPU `me`, which has (`affected`) the erratum or not, joining.
    #[inline]
    pub fn new<M: RendezvousMemory>(
        memory: &M,
        me: CpuIndex,
        affected: bool,
    ) -> Result<Self, RendezvousError> {
        check_cpu(memory, me)?;
        Ok(Self {
            me,
            affectedness: Affectedness::from_affected(affected),
            state: JoinState::StoreActive,
        })
    }

    /// The current state.
    #[inline]
    pub const fn state(&self) -> &JoinState {
        &self.state
    }

    /// The action the next step performs (`None` once finished).
    #[inline]
    pub const fn next_action(&self) -> Option<Action> {
        match &self.state {
            JoinState::StoreActive => Some(Action::StoreCpuRecord(self.me)),
            JoinState::Service(service) => service.next_action(self.me),
        }
    }

    /// Performs one step.
    #[inline]
    pub fn step<M: RendezvousMemory, P: RendezvousPlatform>(
        &mut self,
        memory: &M,
        platform: &mut P,
    ) -> Progress<()> {
        let me = self.me;
        match &mut self.state {
            JoinState::StoreActive => {
                let record = CpuRecord {
                    activity: crate::memory::Activity::Active,
                    affectedness: self.affectedness,
                };
                memory.store_cpu_record(me, record);
                self.state = JoinState::Service(ServiceState::ReadCounter);
                Progress::Ran(Action::StoreCpuRecord(me))
            }
            JoinState::Service(service) => service.step(me, memory, platform),
        }
    }
}
