//! Part (d): TF-A's published rendezvous, **re-described** from BRIEF §7 (it is not our code and
//! not TF-A's code: a model of the protocol as the brief words it), checked by the same harness and
//! properties as the project's own rendezvous.
//!
//! The description, step by step:
//! - shared: a global request counter; per CPU a "last serviced" counter; an *active set* (one bit
//!   per core; no 64-core limit is modelled);
//! - **caller**: increment the counter (its new value `R` numbers the request); read the active
//!   set; send the Group 0 SGI to every active affected CPU but itself; run the local workaround
//!   (read the counter, DSB, publish what it read); then, for each target, wait with `WFE` until its
//!   counter reaches `R`, giving up on that core when its own timeout expires (per core);
//! - **SGI handler**: the local workaround (read the counter, DSB, publish what it read), `SEV`;
//! - **leave** (`CPU_OFF`, power-down `CPU_SUSPEND`, entry to the Secure world): leave the active
//!   set, *then* run the local workaround once. BRIEF §7 orders the barriers "so that either the
//!   caller sees the CPU as inactive or the CPU sees the new counter": the set update comes first,
//!   the counter read after it (a Dekker pattern), so the DSB of the workaround comes *after* the
//!   CPU stopped being visible as active;
//! - **join** (on the way back): enter the active set, then run the local workaround once;
//! - cores in **retention** suspend are not handled specially: they stay in the active set;
//! - non-C1-Pro (unaffected) cores do not take part: they never enter the set.
//!
//! Secure-world entry is the same leave/join code path as a power-down suspend in this
//! description, so the power-down leave stands for it.
//!
//! # What the checker finds (see `cargo xtask model`, part (d))
//!
//! - **S1 fails** when CPUs go off or power down during a call: a leaving CPU clears its bit
//!   before its DSB, a caller numbered after that reads the set without it, runs its own
//!   workaround and returns `Done` while the leaving CPU's lower-EL accesses may still be in
//!   flight (its DSB comes later). This holds when `SCTLR_EL3.IESB` is clear: with it set, the
//!   `SMC` that entered EL3 already synchronised the accesses and the order would not matter.
//!   The project's rendezvous runs the DSB *before* storing the inactive record.
//! - **S3 fails** with retention suspend: a core in standby stays in the active set, so a caller
//!   sends it the SGI and wakes it (and waits for it).
//! - Concurrent callers, with or without per-core timeouts, hold: no deadlock, S1 holds (a
//!   caller's published counter covers every lower request).

use rendezvous::{Action, CpuIndex, CpuSet, Inactivity, RendezvousPlatform};

use crate::rendezvous_model::{CallOutcome, MAX_CPUS, Protocol};

/// The shared memory of the described protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReferenceMemory {
    counter: u64,
    serviced: [u64; MAX_CPUS],
    /// Bit per core.
    active: u8,
    affected: u8,
    cpu_count: u8,
}

/// The local workaround: read the counter, DSB, publish, `SEV`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workaround {
    /// Next: read the global counter.
    ReadCounter,
    /// Next: DSB.
    Dsb(u64),
    /// Next: publish the value read.
    Publish(u64),
    /// Next: `SEV`.
    SendEvent,
    /// Done.
    Finished,
}

impl Workaround {
    fn next_action(self, me: CpuIndex) -> Option<Action> {
        match self {
            Self::ReadCounter => Some(Action::LoadRequestCounter),
            Self::Dsb(_) => Some(Action::LocalDsb),
            Self::Publish(_) => Some(Action::StoreServiced(me)),
            Self::SendEvent => Some(Action::SendEvent),
            Self::Finished => None,
        }
    }

    fn step<P: RendezvousPlatform>(
        &mut self,
        me: usize,
        memory: &mut ReferenceMemory,
        platform: &mut P,
    ) {
        *self = match *self {
            Self::ReadCounter => Self::Dsb(memory.counter),
            Self::Dsb(observed) => {
                platform.local_dsb();
                Self::Publish(observed)
            }
            Self::Publish(observed) => {
                if let Some(slot) = memory.serviced.get_mut(me) {
                    *slot = observed;
                }
                Self::SendEvent
            }
            Self::SendEvent => {
                platform.send_event();
                Self::Finished
            }
            Self::Finished => Self::Finished,
        };
    }
}

/// The caller's steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallerStep {
    /// Next: increment the counter.
    Increment,
    /// Next: read the active set.
    ReadActive {
        /// The request number.
        request: u64,
    },
    /// Next: send the SGI to `targets`.
    SendSgi {
        /// The request number.
        request: u64,
        /// Bit mask of targets.
        targets: u8,
    },
    /// The caller's own workaround.
    Own {
        /// The request number.
        request: u64,
        /// Bit mask of targets.
        targets: u8,
        /// Its progress.
        workaround: Workaround,
    },
    /// Next: read the serviced counter of the lowest remaining target.
    Check {
        /// The request number.
        request: u64,
        /// Targets not yet caught up.
        remaining: u8,
        /// Whether some target timed out.
        timed_out: bool,
    },
    /// Next: `WFE`.
    Wait {
        /// The request number.
        request: u64,
        /// Targets not yet caught up.
        remaining: u8,
        /// Whether some target timed out.
        timed_out: bool,
    },
    /// Returned.
    Finished(CallOutcome),
}

/// A role of the described protocol on one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReferenceRole {
    me: u8,
    kind: ReferenceRoleKind,
}

/// What the role is and how far it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReferenceRoleKind {
    /// A call.
    Caller(CallerStep),
    /// The SGI handler.
    Responder(Workaround),
    /// Leave: `true` while the set update is still to be done, then the workaround.
    Leave(bool, Workaround),
    /// Join: `true` while the set update is still to be done, then the workaround.
    Join(bool, Workaround),
    /// Nothing to do (retention, or an unaffected core's leave/join).
    Nothing,
}

/// TF-A's protocol as BRIEF §7 describes it.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReferenceProtocol;

fn lowest(mask: u8) -> Option<usize> {
    (mask != 0).then(|| mask.trailing_zeros() as usize)
}

impl ReferenceProtocol {
    fn is_affected(memory: &ReferenceMemory, cpu: usize) -> bool {
        memory.affected & (1 << cpu) != 0
    }
}

impl Protocol for ReferenceProtocol {
    type Memory = ReferenceMemory;
    type Role = ReferenceRole;

    fn name(&self) -> &'static str {
        "TF-A as described (BRIEF §7)"
    }

    fn booted_memory(&self, affected: &[bool]) -> ReferenceMemory {
        let mask = affected
            .iter()
            .enumerate()
            .filter(|(_, affected)| **affected)
            .fold(0u8, |mask, (cpu, _)| mask | (1 << cpu));
        ReferenceMemory {
            counter: 0,
            serviced: [0; MAX_CPUS],
            active: mask,
            affected: mask,
            cpu_count: u8::try_from(affected.len()).unwrap_or(u8::MAX),
        }
    }

    fn caller(&self, _: &ReferenceMemory, cpu: usize) -> ReferenceRole {
        ReferenceRole {
            me: u8::try_from(cpu).unwrap_or(u8::MAX),
            kind: ReferenceRoleKind::Caller(CallerStep::Increment),
        }
    }

    fn responder(&self, _: &ReferenceMemory, cpu: usize) -> ReferenceRole {
        ReferenceRole {
            me: u8::try_from(cpu).unwrap_or(u8::MAX),
            kind: ReferenceRoleKind::Responder(Workaround::ReadCounter),
        }
    }

    fn leave(&self, memory: &ReferenceMemory, cpu: usize, inactivity: Inactivity) -> ReferenceRole {
        let kind = match inactivity {
            _ if !Self::is_affected(memory, cpu) => ReferenceRoleKind::Nothing,
            Inactivity::RetentionSuspended => ReferenceRoleKind::Nothing,
            Inactivity::Off | Inactivity::PowerDownSuspended => {
                ReferenceRoleKind::Leave(true, Workaround::ReadCounter)
            }
        };
        ReferenceRole {
            me: u8::try_from(cpu).unwrap_or(u8::MAX),
            kind,
        }
    }

    fn join(&self, memory: &ReferenceMemory, cpu: usize, _: bool) -> ReferenceRole {
        let me = u8::try_from(cpu).unwrap_or(u8::MAX);
        // A core back from retention never left the set; an unaffected core never takes part.
        let kind = if !Self::is_affected(memory, cpu) || memory.active & (1 << cpu) != 0 {
            ReferenceRoleKind::Nothing
        } else {
            ReferenceRoleKind::Join(true, Workaround::ReadCounter)
        };
        ReferenceRole { me, kind }
    }

    fn next_action(&self, role: &ReferenceRole) -> Option<Action> {
        let me = CpuIndex::new(usize::from(role.me));
        match role.kind {
            ReferenceRoleKind::Caller(step) => match step {
                CallerStep::Increment => Some(Action::IncrementRequestCounter),
                // The active set is one shared word; `LoadCpuRecord` is the closest action name.
                CallerStep::ReadActive { .. } => Some(Action::LoadCpuRecord(me)),
                CallerStep::SendSgi { .. } => Some(Action::SendSgi),
                CallerStep::Own { workaround, .. } => workaround.next_action(me),
                CallerStep::Check { remaining, .. } => {
                    lowest(remaining).map(|cpu| Action::LoadServiced(CpuIndex::new(cpu)))
                }
                CallerStep::Wait { .. } => Some(Action::WaitForEvent),
                CallerStep::Finished(_) => None,
            },
            ReferenceRoleKind::Responder(workaround) => workaround.next_action(me),
            ReferenceRoleKind::Leave(true, _) | ReferenceRoleKind::Join(true, _) => {
                Some(Action::StoreCpuRecord(me))
            }
            ReferenceRoleKind::Leave(false, workaround)
            | ReferenceRoleKind::Join(false, workaround) => workaround.next_action(me),
            ReferenceRoleKind::Nothing => None,
        }
    }

    fn step<P: RendezvousPlatform>(
        &self,
        role: &mut ReferenceRole,
        memory: &mut ReferenceMemory,
        platform: &mut P,
    ) {
        let me = usize::from(role.me);
        let bit = 1u8 << me;
        role.kind = match role.kind {
            ReferenceRoleKind::Caller(step) => ReferenceRoleKind::Caller(match step {
                CallerStep::Increment => {
                    memory.counter += 1;
                    CallerStep::ReadActive {
                        request: memory.counter,
                    }
                }
                CallerStep::ReadActive { request } => {
                    let targets = memory.active & memory.affected & !bit;
                    if targets == 0 {
                        CallerStep::Own {
                            request,
                            targets,
                            workaround: Workaround::ReadCounter,
                        }
                    } else {
                        CallerStep::SendSgi { request, targets }
                    }
                }
                CallerStep::SendSgi { request, targets } => {
                    let mut set = CpuSet::<1>::new();
                    for cpu in 0..usize::from(memory.cpu_count) {
                        if targets & (1 << cpu) != 0 {
                            set.insert(CpuIndex::new(cpu));
                        }
                    }
                    platform.send_sgi(&set);
                    CallerStep::Own {
                        request,
                        targets,
                        workaround: Workaround::ReadCounter,
                    }
                }
                CallerStep::Own {
                    request,
                    targets,
                    mut workaround,
                } => {
                    workaround.step(me, memory, platform);
                    if workaround == Workaround::Finished {
                        check_or_finish(request, targets, false)
                    } else {
                        CallerStep::Own {
                            request,
                            targets,
                            workaround,
                        }
                    }
                }
                CallerStep::Check {
                    request,
                    remaining,
                    timed_out,
                } => {
                    let Some(target) = lowest(remaining) else {
                        return;
                    };
                    if memory.serviced[target] >= request {
                        check_or_finish(request, remaining & !(1 << target), timed_out)
                    } else {
                        CallerStep::Wait {
                            request,
                            remaining,
                            timed_out,
                        }
                    }
                }
                CallerStep::Wait {
                    request,
                    remaining,
                    timed_out,
                } => {
                    platform.wait_for_event();
                    CallerStep::Check {
                        request,
                        remaining,
                        timed_out,
                    }
                }
                CallerStep::Finished(outcome) => CallerStep::Finished(outcome),
            }),
            ReferenceRoleKind::Responder(mut workaround) => {
                workaround.step(me, memory, platform);
                ReferenceRoleKind::Responder(workaround)
            }
            ReferenceRoleKind::Leave(true, workaround) => {
                memory.active &= !bit;
                ReferenceRoleKind::Leave(false, workaround)
            }
            ReferenceRoleKind::Join(true, workaround) => {
                memory.active |= bit;
                ReferenceRoleKind::Join(false, workaround)
            }
            ReferenceRoleKind::Leave(false, mut workaround) => {
                workaround.step(me, memory, platform);
                ReferenceRoleKind::Leave(false, workaround)
            }
            ReferenceRoleKind::Join(false, mut workaround) => {
                workaround.step(me, memory, platform);
                ReferenceRoleKind::Join(false, workaround)
            }
            ReferenceRoleKind::Nothing => ReferenceRoleKind::Nothing,
        };
    }

    fn step_name(&self, role: &ReferenceRole) -> Option<String> {
        match role.kind {
            ReferenceRoleKind::Caller(CallerStep::ReadActive { .. }) => {
                Some("reads the active set".into())
            }
            ReferenceRoleKind::Leave(true, _) => Some("clears its bit in the active set".into()),
            ReferenceRoleKind::Join(true, _) => Some("sets its bit in the active set".into()),
            _ => self.next_action(role).map(|action| format!("{action:?}")),
        }
    }

    fn request(&self, role: &ReferenceRole) -> Option<u64> {
        match role.kind {
            ReferenceRoleKind::Caller(
                CallerStep::ReadActive { request }
                | CallerStep::SendSgi { request, .. }
                | CallerStep::Own { request, .. }
                | CallerStep::Check { request, .. }
                | CallerStep::Wait { request, .. },
            ) => Some(request),
            _ => None,
        }
    }

    fn outcome(&self, role: &ReferenceRole) -> Option<CallOutcome> {
        match role.kind {
            ReferenceRoleKind::Caller(CallerStep::Finished(outcome)) => Some(outcome),
            _ => None,
        }
    }

    fn request_counter(&self, memory: &ReferenceMemory) -> u64 {
        memory.counter
    }

    fn expire(&self, role: &ReferenceRole) -> Option<ReferenceRole> {
        match role.kind {
            ReferenceRoleKind::Caller(CallerStep::Wait {
                request, remaining, ..
            }) => {
                let target = lowest(remaining)?;
                Some(ReferenceRole {
                    me: role.me,
                    kind: ReferenceRoleKind::Caller(check_or_finish(
                        request,
                        remaining & !(1 << target),
                        true,
                    )),
                })
            }
            _ => None,
        }
    }
}

/// The next caller step once `remaining` targets are left.
fn check_or_finish(request: u64, remaining: u8, timed_out: bool) -> CallerStep {
    if remaining != 0 {
        CallerStep::Check {
            request,
            remaining,
            timed_out,
        }
    } else if timed_out {
        CallerStep::Finished(CallOutcome::Timeout)
    } else {
        CallerStep::Finished(CallOutcome::Done)
    }
}
