//! Part (c): every interleaving of the real `rendezvous` step machines on a few CPUs, with
//! concurrent callers, `CPU_OFF`/`CPU_ON`, power-down and retention suspend.
//!
//! The harness is generic over a [`Protocol`] so that part (d), TF-A's published protocol
//! re-described in [`crate::reference`], is checked by the very same harness and properties.
//!
//! # What is checked, precisely
//!
//! A CPU is **exposed** from the moment it runs lower-EL code until it next executes a DSB: only
//! then may it have SME accesses in flight issued under a translation the caller has just
//! invalidated. For each request `R`, let `E(R)` be the affected CPUs exposed at the step that
//! numbers `R` (the counter increment). Properties:
//! - **S1** a caller returns `Done` for `R` only after every CPU of `E(R)` executed a DSB after that
//!   step. (Not "every CPU *active* at the request": a CPU in EL3 between its leave DSB and its
//!   inactive store is active but has nothing in flight; and a protocol that stores "inactive"
//!   before its DSB satisfies the "active" wording while a caller skips a CPU whose accesses are
//!   still in flight. Exposure is what the erratum is about.)
//! - **S2** an affected CPU that comes back from off or power-down suspend executes a DSB before it
//!   runs lower-EL code. (Retention is covered by S1 and S3: a protocol may keep a CPU in standby
//!   in its active set, as TF-A does, and then it never left.)
//! - **S3** a CPU in retention suspend is not sent the SGI by a request numbered after it entered
//!   standby (a request numbered before it, which may have read it as active, may still wake it).
//! - **S4** a caller never answers `NotNeeded` when an affected CPU exists, nor times out unless
//!   the bound lets timeouts expire (the own protocol runs with an infinite deadline).
//! - **L** (no deadlock) from every reachable state, a state in which no CPU is inside a role can be
//!   reached.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

use rendezvous::{
    Action, Barrier, CallerRole, CellRendezvousMemory, CpuIndex, CpuSet, Deadline, Inactivity,
    JoinRole, LeaveRole, Progress, RendezvousPlatform, ResponderRole, SilentPlatform,
    WorkaroundOutcome,
};

use crate::explorer::Model;

/// Most CPUs the harness holds.
pub const MAX_CPUS: usize = 4;

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// Every CPU that needed to answered.
    Done,
    /// The protocol decided no CPU is affected.
    NotNeeded,
    /// The caller gave up on some CPU.
    Timeout,
}

/// A rendezvous protocol as the harness drives it: roles that each step one action at a time.
pub trait Protocol {
    /// The shared memory (part of the explored state).
    type Memory: Clone + Eq + Hash + Debug;
    /// A role in progress.
    type Role: Clone + Copy + Eq + Hash + Debug;

    /// A short name.
    fn name(&self) -> &'static str;
    /// Shared memory with every CPU booted: affected CPUs as given, all active.
    fn booted_memory(&self, affected: &[bool]) -> Self::Memory;
    /// A call (SMC `0x81000010`) by `cpu`.
    fn caller(&self, memory: &Self::Memory, cpu: usize) -> Self::Role;
    /// The SGI handler on `cpu`.
    fn responder(&self, memory: &Self::Memory, cpu: usize) -> Self::Role;
    /// `cpu` leaving (`CPU_OFF`, power-down or retention `CPU_SUSPEND`).
    fn leave(&self, memory: &Self::Memory, cpu: usize, inactivity: Inactivity) -> Self::Role;
    /// `cpu` coming back (power-on, wake).
    fn join(&self, memory: &Self::Memory, cpu: usize, affected: bool) -> Self::Role;
    /// What the next step does (`None`: finished).
    fn next_action(&self, role: &Self::Role) -> Option<Action>;
    /// The CPU number of each model CPU (default: model CPU `k` is CPU `k`).
    fn cpu_ids(&self) -> [usize; MAX_CPUS] {
        core::array::from_fn(|cpu| cpu)
    }
    /// The barriers the platform executes (default: the trait's defaults).
    fn barriers(&self) -> Barriers {
        Barriers::PLATFORM
    }
    /// Whether the next step touches nothing another CPU ever writes or reads, so that the harness
    /// may take it together with the step before (default: no).
    fn invisible(&self, _role: &Self::Role) -> bool {
        false
    }
    /// Performs one step.
    fn step<P: RendezvousPlatform>(
        &self,
        role: &mut Self::Role,
        memory: &mut Self::Memory,
        platform: &mut P,
    );
    /// The request number a caller holds once it has incremented the counter.
    fn request(&self, role: &Self::Role) -> Option<u64>;
    /// A finished caller's outcome.
    fn outcome(&self, role: &Self::Role) -> Option<CallOutcome>;
    /// A name for the next step, where the action alone would mislead (default: the action).
    fn step_name(&self, role: &Self::Role) -> Option<String> {
        self.next_action(role).map(|action| format!("{action:?}"))
    }
    /// The global request counter's value.
    fn request_counter(&self, memory: &Self::Memory) -> u64;
    /// A caller blocked in its wait whose (per-target) timeout expires: the role after it, if the
    /// protocol has such timeouts.
    fn expire(&self, role: &Self::Role) -> Option<Self::Role>;
}

/// The project's own protocol: the `rendezvous` crate's roles over [`CellRendezvousMemory`].
///
/// `SLOTS` is the memory's CPU capacity and `WORDS` the callers' `CpuSet` width. The model's CPU
/// `k` is the CPU numbered `ids[k]`: [`OwnProtocol::DENSE`] numbers them 0..4 in one 64-bit word;
/// [`OwnProtocol::sparse`] spreads a few present CPUs over a larger machine (e.g. 0, 1, 64, 65 of
/// 72), so that the roles' CPU sets span two words while the explored state stays the size of the
/// present CPUs (the other CPU numbers never booted: their records read `Off` and nobody writes
/// them).
#[derive(Clone, Copy, Debug)]
pub struct OwnProtocol<const SLOTS: usize = MAX_CPUS, const WORDS: usize = 1> {
    ids: [usize; MAX_CPUS],
    cpu_count: usize,
    barriers: Barriers,
}

/// The barriers a platform executes: `local_dsb`'s, and the one before the SGI (`None`: none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Barriers {
    /// [`RendezvousPlatform::LOCAL_BARRIER`].
    pub local: Barrier,
    /// [`RendezvousPlatform::SGI_PUBLISH_BARRIER`].
    pub sgi_publish: Option<Barrier>,
}

impl Barriers {
    /// The trait's defaults (what a platform that names no barrier runs; the monitor names these).
    pub const PLATFORM: Self = Self {
        local: <SilentPlatform as RendezvousPlatform>::LOCAL_BARRIER,
        sgi_publish: <SilentPlatform as RendezvousPlatform>::SGI_PUBLISH_BARRIER,
    };
}

impl OwnProtocol {
    /// CPUs 0..4 of a machine of at most [`MAX_CPUS`] (the memory's CPU count is the model's).
    pub const DENSE: Self = Self {
        ids: [0, 1, 2, 3],
        cpu_count: 0,
        barriers: Barriers::PLATFORM,
    };
}

impl Default for OwnProtocol {
    fn default() -> Self {
        Self::DENSE
    }
}

impl<const SLOTS: usize, const WORDS: usize> OwnProtocol<SLOTS, WORDS> {
    /// The model's CPUs are CPUs `ids` of a machine numbering `cpu_count` CPUs (at most `SLOTS`);
    /// the others are never booted.
    pub const fn sparse(ids: [usize; MAX_CPUS], cpu_count: usize) -> Self {
        Self {
            ids,
            cpu_count,
            barriers: Barriers::PLATFORM,
        }
    }

    /// The same protocol on a platform that executes `barriers`.
    pub const fn with_barriers(self, barriers: Barriers) -> Self {
        Self { barriers, ..self }
    }

    fn id(&self, cpu: usize) -> CpuIndex {
        CpuIndex::new(self.ids.get(cpu).copied().unwrap_or(cpu))
    }
}

/// A role of the `rendezvous` crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OwnRole<const WORDS: usize = 1> {
    /// [`CallerRole`].
    Caller(CallerRole<WORDS>),
    /// [`ResponderRole`].
    Responder(ResponderRole),
    /// [`LeaveRole`].
    Leave(LeaveRole),
    /// [`JoinRole`].
    Join(JoinRole),
    /// A constructor refused (cannot happen with in-range CPUs; kept so nothing panics).
    Refused,
}

impl<const SLOTS: usize, const WORDS: usize> Protocol for OwnProtocol<SLOTS, WORDS> {
    type Memory = CellRendezvousMemory<SLOTS>;
    type Role = OwnRole<WORDS>;

    fn name(&self) -> &'static str {
        "rendezvous crate"
    }

    fn booted_memory(&self, affected: &[bool]) -> Self::Memory {
        let cpu_count = if self.cpu_count == 0 {
            affected.len()
        } else {
            self.cpu_count
        };
        let memory = CellRendezvousMemory::new(cpu_count);
        let mut platform = SilentPlatform;
        for (cpu, &is_affected) in affected.iter().enumerate() {
            // The boot join is the real one; its effects on the harness do not matter here (every
            // CPU then starts exposed at the lower EL).
            let _ = rendezvous::join_active_set(&memory, &mut platform, self.id(cpu), is_affected);
        }
        memory
    }

    fn cpu_ids(&self) -> [usize; MAX_CPUS] {
        self.ids
    }

    fn barriers(&self) -> Barriers {
        self.barriers
    }

    fn caller(&self, memory: &Self::Memory, cpu: usize) -> Self::Role {
        // Tick 1: the harness's clock reads 0 until the model lets the deadline pass, then 1.
        CallerRole::new(memory, self.id(cpu), Deadline::at(1))
            .map_or(OwnRole::Refused, OwnRole::Caller)
    }

    fn responder(&self, memory: &Self::Memory, cpu: usize) -> Self::Role {
        ResponderRole::new(memory, self.id(cpu)).map_or(OwnRole::Refused, OwnRole::Responder)
    }

    fn leave(&self, memory: &Self::Memory, cpu: usize, inactivity: Inactivity) -> Self::Role {
        LeaveRole::new(memory, self.id(cpu), inactivity).map_or(OwnRole::Refused, OwnRole::Leave)
    }

    fn join(&self, memory: &Self::Memory, cpu: usize, affected: bool) -> Self::Role {
        JoinRole::new(memory, self.id(cpu), affected).map_or(OwnRole::Refused, OwnRole::Join)
    }

    fn next_action(&self, role: &Self::Role) -> Option<Action> {
        match role {
            OwnRole::Caller(role) => role.next_action(),
            OwnRole::Responder(role) => role.next_action(),
            OwnRole::Leave(role) => role.next_action(),
            OwnRole::Join(role) => role.next_action(),
            OwnRole::Refused => None,
        }
    }

    fn invisible(&self, role: &Self::Role) -> bool {
        // A scan's read of a CPU number that never booted: nobody ever writes its record, so the
        // read commutes with every other step (merging it into the step before loses nothing).
        matches!(
            self.next_action(role),
            Some(Action::LoadCpuRecord(cpu)) if !self.ids.contains(&cpu.get())
        )
    }

    fn step<P: RendezvousPlatform>(
        &self,
        role: &mut Self::Role,
        memory: &mut Self::Memory,
        platform: &mut P,
    ) {
        let memory = &*memory;
        match role {
            OwnRole::Caller(role) => {
                let _: Progress<_> = role.step(memory, platform);
            }
            OwnRole::Responder(role) => {
                let _ = role.step(memory, platform);
            }
            OwnRole::Leave(role) => {
                let _ = role.step(memory, platform);
            }
            OwnRole::Join(role) => {
                let _ = role.step(memory, platform);
            }
            OwnRole::Refused => {}
        }
    }

    fn request(&self, role: &Self::Role) -> Option<u64> {
        use rendezvous::CallerState;
        let OwnRole::Caller(caller) = role else {
            return None;
        };
        match *caller.state() {
            CallerState::Increment | CallerState::Finished(_) => None,
            CallerState::Scan { request, .. }
            | CallerState::SendSgi { request, .. }
            | CallerState::OwnDsb { request, .. }
            | CallerState::OwnPublish { request, .. }
            | CallerState::SendEvent { request, .. }
            | CallerState::CheckServiced { request, .. }
            | CallerState::CheckOwnWork { request, .. }
            | CallerState::CatchUpDsb { request, .. }
            | CallerState::CatchUpPublish { request, .. }
            | CallerState::CatchUpSendEvent { request, .. }
            | CallerState::ReadClock { request, .. }
            | CallerState::WaitForEvent { request, .. } => Some(request),
        }
    }

    fn outcome(&self, role: &Self::Role) -> Option<CallOutcome> {
        let OwnRole::Caller(caller) = role else {
            return None;
        };
        caller.outcome().map(|outcome| match outcome {
            WorkaroundOutcome::Done => CallOutcome::Done,
            WorkaroundOutcome::NotNeeded => CallOutcome::NotNeeded,
            WorkaroundOutcome::Timeout { .. } => CallOutcome::Timeout,
        })
    }

    fn request_counter(&self, memory: &Self::Memory) -> u64 {
        use rendezvous::RendezvousMemory;
        memory.load_request_counter()
    }

    fn expire(&self, _: &Self::Role) -> Option<Self::Role> {
        // Deadline::NEVER: the monitor's deadline is not modelled (S4 says it is never needed).
        None
    }
}

/// What a CPU is running inside a role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Task<R> {
    /// A call it made.
    Call(R),
    /// The SGI handler.
    Answer(R),
    /// Leaving, to become inactive.
    Leave(R, Inactivity),
    /// Coming back from `Inactivity`.
    Join(R, Inactivity),
}

impl<R> Task<R> {
    fn role(&self) -> &R {
        match self {
            Self::Call(role) | Self::Answer(role) | Self::Leave(role, _) | Self::Join(role, _) => {
                role
            }
        }
    }

    fn role_mut(&mut self) -> &mut R {
        match self {
            Self::Call(role) | Self::Answer(role) | Self::Leave(role, _) | Self::Join(role, _) => {
                role
            }
        }
    }
}

/// Where a CPU is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Place<R> {
    /// Running lower-EL code (exposed).
    LowerEl,
    /// In EL3, inside a role.
    InRole(Task<R>),
    /// Off or suspended.
    Inactive(Inactivity),
}

/// One CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cpu<R> {
    /// Where it is.
    pub place: Place<R>,
    /// Whether it has the erratum.
    pub affected: bool,
    /// The rendezvous SGI is pending.
    pub sgi_pending: bool,
    /// The pending SGI was sent without a barrier that made the sender's stores visible first: the
    /// handler may read the request counter from before the request.
    pub sgi_early: bool,
    /// Its event register (for `WFE`).
    pub event: bool,
    /// Ran lower-EL code since its last DSB.
    pub exposed: bool,
    /// Executed a DSB since its current join began.
    pub dsb_since_join: bool,
    /// The request number of its current call (0: none).
    pub request: u64,
    /// Counter value when it last entered retention standby.
    pub standby_since: u64,
    /// Calls it may still make.
    pub calls_left: u8,
    /// Power transitions it may still make.
    pub leaves_left: u8,
    /// The deadline of its current call has passed (`now()` reads past it).
    pub deadline_passed: bool,
}

/// A broken safety property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RendezvousViolation {
    /// S1.
    DoneWhileExposed {
        /// The caller.
        caller: u8,
        /// Its request.
        request: u64,
        /// Exposed CPUs without a DSB since, as a bit mask.
        exposed: u8,
    },
    /// S2.
    JoinedWithoutDsb {
        /// The CPU.
        cpu: u8,
    },
    /// S3.
    RetentionWoken {
        /// The caller.
        caller: u8,
        /// The CPU in standby.
        target: u8,
    },
    /// S4.
    UnexpectedOutcome {
        /// The caller.
        caller: u8,
        /// What it returned.
        outcome: CallOutcome,
    },
}

/// One state of the harness.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RendezvousState<M, R> {
    /// The protocol's shared memory.
    pub memory: M,
    /// The CPUs.
    pub cpus: [Cpu<R>; MAX_CPUS],
    /// Open requests: number → affected CPUs exposed at its numbering with no DSB since (bit mask).
    pub open: BTreeMap<u64, u8>,
    /// The first broken property.
    pub broken: Option<RendezvousViolation>,
}

/// A step of one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Move {
    /// The role in progress takes one step.
    Step,
    /// The role's wait times out (protocols with timeouts only).
    Expire,
    /// The clock passes the deadline of the CPU's call (own protocol, `deadlines` bounds only).
    DeadlinePasses,
    /// At the lower EL: take the pending FIQ.
    TakeFiq,
    /// At the lower EL: take a pending FIQ that overtook the sender's stores: the handler reads the
    /// request counter from before the request and has nothing to do.
    TakeFiqEarly,
    /// At the lower EL: SMC `0x81000010`.
    Call,
    /// At the lower EL: a PSCI call that makes the CPU inactive.
    Leave(Inactivity),
    /// Off or suspended: power on, wake.
    Wake,
}

/// A move of a CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuMove {
    /// The CPU.
    pub cpu: u8,
    /// What it does.
    pub movement: Move,
}

/// Bounds of one exploration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RendezvousConfig {
    /// Per CPU: whether it is affected (the length is the CPU count, at most [`MAX_CPUS`]).
    pub affected: Vec<bool>,
    /// Per CPU: calls it may make.
    pub calls: Vec<u8>,
    /// Per CPU: power transitions (leave, then come back) it may make.
    pub leaves: Vec<u8>,
    /// Which kinds of leave a CPU may choose.
    pub leave_kinds: Vec<Inactivity>,
    /// Whether a blocked caller's per-target timeout may expire (protocols that have one).
    pub timeouts: bool,
    /// Whether a caller's deadline may pass at any point of its call (the own protocol's
    /// `Deadline`; an unfair move: liveness must hold without it).
    pub deadlines: bool,
}

/// The harness over protocol `P`.
#[derive(Clone, Debug)]
pub struct RendezvousModel<P: Protocol> {
    protocol: P,
    config: RendezvousConfig,
}

impl<P: Protocol> RendezvousModel<P> {
    /// A harness for `protocol` with `config`'s bounds (CPUs beyond [`MAX_CPUS`] are dropped).
    pub fn new(protocol: P, mut config: RendezvousConfig) -> Self {
        config.affected.truncate(MAX_CPUS);
        Self { protocol, config }
    }

    fn cpu_count(&self) -> usize {
        self.config.affected.len()
    }
}

/// The platform the roles see: the harness's CPUs.
struct HarnessPlatform<'a, R> {
    me: usize,
    /// The CPU number of each model CPU.
    ids: [usize; MAX_CPUS],
    /// The barriers the platform executes.
    barriers: Barriers,
    cpus: &'a mut [Cpu<R>; MAX_CPUS],
    open: &'a mut BTreeMap<u64, u8>,
    broken: &'a mut Option<RendezvousViolation>,
}

impl<R> RendezvousPlatform for HarnessPlatform<'_, R> {
    fn send_sgi<const N: usize>(&mut self, targets: &CpuSet<N>) {
        let request = self.cpus[self.me].request;
        for target in targets.iter() {
            // An SGI to a CPU number the model does not hold reaches no CPU of the model.
            let Some(index) = self.ids.iter().position(|&id| id == target.get()) else {
                continue;
            };
            let Some(cpu) = self.cpus.get_mut(index) else {
                continue;
            };
            cpu.sgi_pending = true;
            // `ICC_SGI0R_EL1` is a system register write, not a memory access: without a barrier
            // that completes the earlier stores for the other CPUs (`DSB ISHST` or stronger), the
            // interrupt may arrive before the new request counter is visible.
            if !self
                .barriers
                .sgi_publish
                .is_some_and(Barrier::suffices_before_sgi)
            {
                cpu.sgi_early = true;
            }
            let in_standby = cpu.place_is_retention();
            if in_standby && request > cpu.standby_since && self.broken.is_none() {
                *self.broken = Some(RendezvousViolation::RetentionWoken {
                    caller: u8::try_from(self.me).unwrap_or(u8::MAX),
                    target: u8::try_from(index).unwrap_or(u8::MAX),
                });
            }
        }
    }

    fn local_dsb(&mut self) {
        // Exposure ends only with a DSB that completes this CPU's loads *and* stores for the other
        // CPUs: `DSB ISHST` leaves loads in flight (a late load reads the new owner's data), `DSB
        // ISHLD` stores (a late store lands in the new owner's page), `DSB NSH` waits for this PE's
        // view only.
        if !self.barriers.local.suffices_as_local_barrier() {
            return;
        }
        let me = self.me;
        self.cpus[me].exposed = false;
        self.cpus[me].dsb_since_join = true;
        for pending in self.open.values_mut() {
            *pending &= !(1 << me);
        }
    }

    fn send_event(&mut self) {
        for cpu in self.cpus.iter_mut() {
            cpu.event = true;
        }
    }

    fn wait_for_event(&mut self) {
        self.cpus[self.me].event = false;
    }

    fn now(&mut self) -> u64 {
        u64::from(self.cpus[self.me].deadline_passed)
    }
}

impl<R> Cpu<R> {
    fn place_is_retention(&self) -> bool {
        matches!(self.place, Place::Inactive(Inactivity::RetentionSuspended))
    }
}

impl<P: Protocol> RendezvousModel<P> {
    fn blocked(&self, cpu: &Cpu<P::Role>, role: &P::Role) -> bool {
        self.protocol.next_action(role) == Some(Action::WaitForEvent) && !cpu.event
    }

    /// Ends the task of `cpu` once its role has finished.
    fn finish_if_done(&self, state: &mut RendezvousState<P::Memory, P::Role>, cpu: usize) {
        let Place::InRole(task) = state.cpus[cpu].place else {
            return;
        };
        if self.protocol.next_action(task.role()).is_some() {
            return;
        }
        let counter_now = self.protocol.request_counter(&state.memory);
        let this = &mut state.cpus[cpu];
        let index = u8::try_from(cpu).unwrap_or(u8::MAX);
        match task {
            Task::Call(role) => {
                let request = this.request;
                let pending = state.open.remove(&request).unwrap_or(0);
                let outcome = self.protocol.outcome(&role);
                if outcome == Some(CallOutcome::Done) && pending != 0 {
                    state
                        .broken
                        .get_or_insert(RendezvousViolation::DoneWhileExposed {
                            caller: index,
                            request,
                            exposed: pending,
                        });
                }
                let any_affected = self.config.affected.iter().any(|&affected| affected);
                match outcome {
                    Some(CallOutcome::Timeout) if self.config.timeouts || this.deadline_passed => {}
                    Some(CallOutcome::NotNeeded) if !any_affected => {}
                    Some(CallOutcome::Done) => {}
                    other => {
                        state
                            .broken
                            .get_or_insert(RendezvousViolation::UnexpectedOutcome {
                                caller: index,
                                outcome: other.unwrap_or(CallOutcome::Timeout),
                            });
                    }
                }
                this.request = 0;
                this.deadline_passed = false;
                this.place = Place::LowerEl;
                this.exposed = true;
            }
            Task::Answer(_) => {
                this.place = Place::LowerEl;
                this.exposed = true;
            }
            Task::Leave(_, inactivity) => {
                this.place = Place::Inactive(inactivity);
                if inactivity == Inactivity::RetentionSuspended {
                    this.standby_since = counter_now;
                }
            }
            Task::Join(_, from) => {
                let left_the_set = from != Inactivity::RetentionSuspended;
                if this.affected && left_the_set && !this.dsb_since_join {
                    state
                        .broken
                        .get_or_insert(RendezvousViolation::JoinedWithoutDsb { cpu: index });
                }
                this.place = Place::LowerEl;
                this.exposed = true;
            }
        }
    }
}

impl<P: Protocol + Clone + Debug> Model for RendezvousModel<P> {
    type State = RendezvousState<P::Memory, P::Role>;
    type Action = CpuMove;

    fn initial_state(&self) -> Self::State {
        let memory = self.protocol.booted_memory(&self.config.affected);
        let cpus = core::array::from_fn(|cpu| Cpu {
            place: if cpu < self.cpu_count() {
                Place::LowerEl
            } else {
                Place::Inactive(Inactivity::Off)
            },
            affected: self.config.affected.get(cpu).copied().unwrap_or(false),
            sgi_pending: false,
            sgi_early: false,
            event: false,
            exposed: cpu < self.cpu_count(),
            dsb_since_join: true,
            request: 0,
            standby_since: 0,
            calls_left: self.config.calls.get(cpu).copied().unwrap_or(0),
            leaves_left: self.config.leaves.get(cpu).copied().unwrap_or(0),
            deadline_passed: false,
        });
        RendezvousState {
            memory,
            cpus,
            open: BTreeMap::new(),
            broken: None,
        }
    }

    fn actions(&self, state: &Self::State, actions: &mut Vec<CpuMove>) {
        for cpu in 0..self.cpu_count() {
            let this = &state.cpus[cpu];
            let index = u8::try_from(cpu).unwrap_or(u8::MAX);
            let mut push = |movement| {
                actions.push(CpuMove {
                    cpu: index,
                    movement,
                })
            };
            match this.place {
                Place::InRole(task) => {
                    if self.config.deadlines
                        && matches!(task, Task::Call(_))
                        && !this.deadline_passed
                    {
                        push(Move::DeadlinePasses);
                    }
                    if !self.blocked(this, task.role()) {
                        push(Move::Step);
                    } else if self.config.timeouts && self.protocol.expire(task.role()).is_some() {
                        push(Move::Expire);
                    }
                }
                Place::LowerEl => {
                    if this.sgi_pending {
                        push(Move::TakeFiq);
                        if this.sgi_early {
                            push(Move::TakeFiqEarly);
                        }
                    }
                    if this.calls_left > 0 {
                        push(Move::Call);
                    }
                    if this.leaves_left > 0 {
                        for &kind in &self.config.leave_kinds {
                            push(Move::Leave(kind));
                        }
                    }
                }
                Place::Inactive(_) => push(Move::Wake),
            }
        }
    }

    fn next_state(&self, state: &Self::State, action: &CpuMove) -> Self::State {
        let mut next = state.clone();
        let cpu = usize::from(action.cpu);
        match action.movement {
            Move::Step => {
                let Place::InRole(mut task) = next.cpus[cpu].place else {
                    return next;
                };
                let action_taken = self.protocol.next_action(task.role());
                {
                    let RendezvousState {
                        memory,
                        cpus,
                        open,
                        broken,
                    } = &mut next;
                    let mut platform = HarnessPlatform {
                        me: cpu,
                        ids: self.protocol.cpu_ids(),
                        barriers: self.protocol.barriers(),
                        cpus,
                        open,
                        broken,
                    };
                    self.protocol.step(task.role_mut(), memory, &mut platform);
                    while self.protocol.invisible(task.role()) {
                        self.protocol.step(task.role_mut(), memory, &mut platform);
                    }
                }
                if action_taken == Some(Action::IncrementRequestCounter)
                    && let Some(request) = self.protocol.request(task.role())
                {
                    let exposed = (0..self.cpu_count())
                        .filter(|&other| next.cpus[other].affected && next.cpus[other].exposed)
                        .fold(0u8, |mask, other| mask | (1 << other));
                    next.open.insert(request, exposed);
                    next.cpus[cpu].request = request;
                }
                next.cpus[cpu].place = Place::InRole(task);
                self.finish_if_done(&mut next, cpu);
            }
            Move::Expire => {
                if let Place::InRole(Task::Call(role)) = next.cpus[cpu].place
                    && let Some(expired) = self.protocol.expire(&role)
                {
                    next.cpus[cpu].place = Place::InRole(Task::Call(expired));
                    self.finish_if_done(&mut next, cpu);
                }
            }
            Move::DeadlinePasses => {
                next.cpus[cpu].deadline_passed = true;
                // A waiting caller is woken by its timer event stream and reads the clock.
                next.cpus[cpu].event = true;
            }
            Move::TakeFiqEarly => {
                next.cpus[cpu].sgi_pending = false;
                next.cpus[cpu].sgi_early = false;
            }
            Move::TakeFiq => {
                next.cpus[cpu].sgi_pending = false;
                next.cpus[cpu].sgi_early = false;
                let role = self.protocol.responder(&next.memory, cpu);
                next.cpus[cpu].place = Place::InRole(Task::Answer(role));
                self.finish_if_done(&mut next, cpu);
            }
            Move::Call => {
                next.cpus[cpu].calls_left -= 1;
                let role = self.protocol.caller(&next.memory, cpu);
                next.cpus[cpu].place = Place::InRole(Task::Call(role));
                self.finish_if_done(&mut next, cpu);
            }
            Move::Leave(inactivity) => {
                next.cpus[cpu].leaves_left -= 1;
                let role = self.protocol.leave(&next.memory, cpu, inactivity);
                next.cpus[cpu].place = Place::InRole(Task::Leave(role, inactivity));
                self.finish_if_done(&mut next, cpu);
            }
            Move::Wake => {
                let Place::Inactive(from) = next.cpus[cpu].place else {
                    return next;
                };
                next.cpus[cpu].dsb_since_join = false;
                let affected = next.cpus[cpu].affected;
                let role = self.protocol.join(&next.memory, cpu, affected);
                next.cpus[cpu].place = Place::InRole(Task::Join(role, from));
                self.finish_if_done(&mut next, cpu);
            }
        }
        next
    }

    fn violation(&self, state: &Self::State) -> Option<String> {
        state.broken.map(|broken| match broken {
            RendezvousViolation::DoneWhileExposed {
                caller,
                request,
                exposed,
            } => format!(
                "S1 broken: CPU{caller} returned Done for request {request} while CPUs {} were \
                 exposed at the request and ran no DSB after it",
                cpu_list(exposed)
            ),
            RendezvousViolation::JoinedWithoutDsb { cpu } => {
                format!("S2 broken: CPU{cpu} came back and reached the lower EL without a DSB")
            }
            RendezvousViolation::RetentionWoken { caller, target } => format!(
                "S3 broken: CPU{caller} sent the SGI to CPU{target}, in retention standby since \
                 before the request"
            ),
            RendezvousViolation::UnexpectedOutcome { caller, outcome } => {
                format!("S4 broken: CPU{caller}'s call ended {outcome:?}")
            }
        })
    }

    fn goal_reached(&self, state: &Self::State) -> bool {
        state
            .cpus
            .iter()
            .all(|cpu| !matches!(cpu.place, Place::InRole(_)))
    }

    fn goal_description(&self) -> String {
        "every CPU finishes the role it is in (no deadlock), through fair steps alone: roles step, \
         pending FIQs are taken, per-core timeouts expire; no CPU need power on or wake, nor \
         any new call or power transition start"
            .into()
    }

    /// Fairness: a CPU inside a role keeps stepping, a CPU at the lower EL takes a pending FIQ
    /// (EL1/EL2 cannot mask it), and a per-core timeout (part (d)) expires. An off or suspended CPU
    /// may stay so for ever, and nothing obliges a CPU to make a call or change power state.
    fn fair(&self, action: &CpuMove) -> bool {
        matches!(
            action.movement,
            Move::Step | Move::TakeFiq | Move::TakeFiqEarly | Move::Expire
        )
    }

    fn lanes(&self) -> Vec<String> {
        let ids = self.protocol.cpu_ids();
        (0..self.cpu_count())
            .map(|cpu| {
                let kind = if self.config.affected[cpu] {
                    "affected"
                } else {
                    "unaffected"
                };
                format!("CPU{} ({kind})", ids[cpu])
            })
            .collect()
    }

    fn describe(&self, state: &Self::State, action: &CpuMove) -> (usize, String) {
        let cpu = usize::from(action.cpu);
        let text = match action.movement {
            Move::Step => match state.cpus[cpu].place {
                Place::InRole(task) => {
                    let what = match task {
                        Task::Call(_) => "call",
                        Task::Answer(_) => "SGI handler",
                        Task::Leave(_, _) => "leave",
                        Task::Join(_, _) => "join",
                    };
                    let step = self
                        .protocol
                        .step_name(task.role())
                        .unwrap_or_else(|| "finishes".to_string());
                    let after = self.next_state(state, action);
                    let returned = match (task, after.cpus[cpu].place) {
                        (Task::Call(role), Place::LowerEl) => {
                            let mut stepped = role;
                            let mut memory = state.memory.clone();
                            let mut cpus = state.cpus;
                            let mut open = state.open.clone();
                            let mut broken = None;
                            let mut platform = HarnessPlatform {
                                me: cpu,
                                ids: self.protocol.cpu_ids(),
                                barriers: self.protocol.barriers(),
                                cpus: &mut cpus,
                                open: &mut open,
                                broken: &mut broken,
                            };
                            self.protocol.step(&mut stepped, &mut memory, &mut platform);
                            self.protocol
                                .outcome(&stepped)
                                .map_or_else(String::new, |outcome| {
                                    format!(", returns {outcome:?}")
                                })
                        }
                        (_, Place::LowerEl) => ", back to the lower EL".to_string(),
                        (_, Place::Inactive(inactivity)) => format!(", now {inactivity:?}"),
                        _ => String::new(),
                    };
                    format!("{what}: {step}{returned}")
                }
                _ => "step".into(),
            },
            Move::Expire => "per-core timeout expires".into(),
            Move::DeadlinePasses => "the clock passes the call's deadline".into(),
            Move::TakeFiq => "takes the rendezvous FIQ".into(),
            Move::TakeFiqEarly => {
                "takes the rendezvous FIQ before the request counter is visible: reads the old \
                 counter, nothing to do"
                    .into()
            }
            Move::Call => "SMC 0x81000010 (lower-EL accesses may be in flight)".into(),
            Move::Leave(inactivity) => format!("PSCI: leaves as {inactivity:?}"),
            Move::Wake => match state.cpus[cpu].place {
                Place::Inactive(inactivity) if state.cpus[cpu].sgi_pending => {
                    format!("wakes from {inactivity:?} (SGI pending)")
                }
                Place::Inactive(inactivity) => format!("powers on / wakes from {inactivity:?}"),
                _ => "wakes".into(),
            },
        };
        (cpu, text)
    }
}

fn cpu_list(mask: u8) -> String {
    (0..8)
        .filter(|cpu| mask & (1 << cpu) != 0)
        .map(|cpu| format!("CPU{cpu}"))
        .collect::<Vec<_>>()
        .join(", ")
}
