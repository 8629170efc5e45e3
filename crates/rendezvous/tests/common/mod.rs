//! A single-threaded simulator of N CPUs driving the rendezvous roles one step at a time.
//!
//! It models what the property is about: a CPU is *exposed* once it runs lower-EL code and stays
//! so until it executes a DSB; each request records the affected CPUs exposed at its increment,
//! and a CPU leaves that set when it executes a DSB. A caller returning `Done` with a non-empty
//! set is a violation. The memory and platform count their calls so that every step is checked
//! to perform exactly the one action it reports.

#![allow(dead_code)] // Each test binary uses a different part.

use std::cell::Cell;
use std::collections::BTreeMap;

use rendezvous::{
    Action, Activity, AtomicRendezvousMemory, CallerRole, CpuIndex, CpuRecord, CpuSet, Deadline,
    Inactivity, JoinRole, LeaveRole, Progress, RendezvousMemory, RendezvousPlatform,
    RendezvousStorage, ResponderRole, WorkaroundOutcome,
};

/// Bitmap words used by the tests' CPU sets.
pub const WORDS: usize = 1;
/// Most CPUs a simulation has.
pub const MAX_CPUS: usize = 8;

/// Memory that counts accesses, over the real atomic implementation.
pub struct CountingMemory<'a> {
    inner: AtomicRendezvousMemory<'a>,
    accesses: Cell<usize>,
    fault: Fault,
}

/// A deliberate bug injected into the memory, to show that the checks can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Correct memory.
    None,
    /// Serviced counters read as answered: callers stop waiting at once.
    ServicedAlwaysAnswered,
    /// Records read as off: callers interrupt and wait for nobody.
    RecordsAlwaysOff,
}

impl RendezvousMemory for CountingMemory<'_> {
    fn cpu_count(&self) -> usize {
        self.inner.cpu_count()
    }
    fn load_request_counter(&self) -> u64 {
        self.accesses.set(self.accesses.get() + 1);
        self.inner.load_request_counter()
    }
    fn increment_request_counter(&self) -> u64 {
        self.accesses.set(self.accesses.get() + 1);
        self.inner.increment_request_counter()
    }
    fn load_serviced(&self, cpu: CpuIndex) -> u64 {
        self.accesses.set(self.accesses.get() + 1);
        if self.fault == Fault::ServicedAlwaysAnswered {
            return u64::MAX;
        }
        self.inner.load_serviced(cpu)
    }
    fn store_serviced(&self, cpu: CpuIndex, request: u64) {
        self.accesses.set(self.accesses.get() + 1);
        self.inner.store_serviced(cpu, request);
    }
    fn load_cpu_record(&self, cpu: CpuIndex) -> CpuRecord {
        self.accesses.set(self.accesses.get() + 1);
        let record = self.inner.load_cpu_record(cpu);
        if self.fault == Fault::RecordsAlwaysOff {
            return CpuRecord {
                activity: Activity::Off,
                ..record
            };
        }
        record
    }
    fn store_cpu_record(&self, cpu: CpuIndex, record: CpuRecord) {
        self.accesses.set(self.accesses.get() + 1);
        self.inner.store_cpu_record(cpu, record);
    }
}

/// Something that happened, for assertions and for printing a failing schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The CPU ran lower-EL code (it is exposed from now on).
    LowerEl,
    /// The CPU took the rendezvous FIQ.
    TookFiq,
    /// A step of a role.
    Step(Action),
    /// The SGI was sent to these CPUs.
    SgiSent(Vec<usize>),
    /// A request got its number.
    Requested(u64),
    /// A caller finished.
    CallerFinished(WorkaroundOutcome<WORDS>),
    /// A CPU in retention standby was woken by a pending SGI.
    RetentionWokenBySgi,
    /// A CPU started leaving.
    Leaving(Inactivity),
    /// A CPU started joining.
    Joining,
}

/// A logged event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub time: u64,
    pub cpu: usize,
    pub kind: EventKind,
}

/// Everything a platform action touches.
pub struct World {
    pub time: u64,
    pub sgi_pending: Vec<bool>,
    pub event_register: Vec<bool>,
    pub exposed: Vec<bool>,
    pub affected: Vec<bool>,
    /// Open requests: number → affected CPUs exposed at its increment and not yet DSB'd.
    pub open_requests: BTreeMap<u64, Vec<usize>>,
    pub log: Vec<Event>,
    pub platform_actions: usize,
    /// DSBs since the CPU's current join started (for "DSB before lower-EL code").
    pub dsb_since_join: Vec<bool>,
    /// Per CPU, how many times it entered standby (to tell one standby period from the next).
    pub standby_epoch: Vec<u64>,
    /// Per request: the CPUs in standby at its increment, with their standby epoch.
    pub standby_at_request: BTreeMap<u64, Vec<(usize, u64)>>,
}

impl World {
    fn log(&mut self, cpu: usize, kind: EventKind) {
        self.log.push(Event {
            time: self.time,
            cpu,
            kind,
        });
    }
}

/// The platform as seen by one CPU.
pub struct SimPlatform<'w> {
    pub me: usize,
    pub world: &'w mut World,
}

impl RendezvousPlatform for SimPlatform<'_> {
    fn send_sgi<const N: usize>(&mut self, targets: &CpuSet<N>) {
        self.world.platform_actions += 1;
        let list: Vec<usize> = targets.iter().map(CpuIndex::get).collect();
        for &target in &list {
            self.world.sgi_pending[target] = true;
        }
        self.world.log(self.me, EventKind::SgiSent(list));
    }

    fn local_dsb(&mut self) {
        self.world.platform_actions += 1;
        let me = self.me;
        self.world.exposed[me] = false;
        self.world.dsb_since_join[me] = true;
        for pending in self.world.open_requests.values_mut() {
            pending.retain(|cpu| *cpu != me);
        }
    }

    fn send_event(&mut self) {
        self.world.platform_actions += 1;
        self.world.event_register.fill(true);
    }

    fn wait_for_event(&mut self) {
        self.world.platform_actions += 1;
        self.world.event_register[self.me] = false;
    }

    fn now(&mut self) -> u64 {
        self.world.platform_actions += 1;
        self.world.time
    }
}

/// A role in progress on a CPU.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    Caller(CallerRole<WORDS>),
    Responder(ResponderRole),
    Leave(LeaveRole, Inactivity),
    Join(JoinRole),
}

/// Where a CPU is.
#[derive(Clone, Copy, Debug)]
pub enum Place {
    LowerEl,
    InRole(Role),
    Off,
    PowerDownSuspended,
    RetentionWfi,
}

/// What the scheduler may make a CPU do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// Step the role in progress.
    Step,
    /// Lower EL: run some code.
    RunLowerEl,
    /// Lower EL: take the pending FIQ.
    TakeFiq,
    /// Lower EL: SMC 0x81000010.
    Call,
    /// Lower EL: a PSCI call that leaves the active set.
    Leave(Inactivity),
    /// Off, suspended or in standby: power on / wake.
    Wake,
}

/// The simulation.
pub struct Sim {
    storage: RendezvousStorage<MAX_CPUS>,
    pub cpu_count: usize,
    pub places: Vec<Place>,
    pub world: World,
    pub deadline_ticks: u64,
    pub violations: Vec<String>,
    pub fault: Fault,
}

impl Sim {
    /// `affected[i]` says whether CPU i has the erratum; all CPUs start off, records unknown.
    pub fn new(affected: &[bool]) -> Self {
        let cpu_count = affected.len();
        assert!(cpu_count <= MAX_CPUS);
        Self {
            storage: RendezvousStorage::new(),
            cpu_count,
            places: vec![Place::Off; cpu_count],
            world: World {
                time: 0,
                sgi_pending: vec![false; cpu_count],
                event_register: vec![false; cpu_count],
                exposed: vec![false; cpu_count],
                affected: affected.to_vec(),
                open_requests: BTreeMap::new(),
                log: Vec::new(),
                platform_actions: 0,
                dsb_since_join: vec![false; cpu_count],
                standby_epoch: vec![0; cpu_count],
                standby_at_request: BTreeMap::new(),
            },
            deadline_ticks: u64::MAX,
            violations: Vec::new(),
            fault: Fault::None,
        }
    }

    /// A simulation whose CPUs have all joined and run lower-EL code.
    pub fn booted(affected: &[bool]) -> Self {
        let mut sim = Self::new(affected);
        for cpu in 0..sim.cpu_count {
            sim.apply(cpu, Choice::Wake);
            sim.run_role(cpu);
            sim.apply(cpu, Choice::RunLowerEl);
        }
        sim.world.log.clear();
        sim
    }

    /// The real memory view.
    pub fn memory(&self) -> AtomicRendezvousMemory<'_> {
        self.storage.memory(self.cpu_count)
    }

    /// The record of `cpu` in shared memory.
    pub fn record(&self, cpu: usize) -> CpuRecord {
        self.memory().load_cpu_record(CpuIndex::new(cpu))
    }

    /// The choices `cpu` has now (`spurious_wake`: a WFE may return without an event).
    pub fn choices(&self, cpu: usize, spurious_wake: bool) -> Vec<Choice> {
        match self.places[cpu] {
            Place::InRole(role) => {
                let next = match role {
                    Role::Caller(caller) => caller.next_action(),
                    Role::Responder(responder) => responder.next_action(),
                    Role::Leave(leave, _) => leave.next_action(),
                    Role::Join(join) => join.next_action(),
                };
                let blocked = next == Some(Action::WaitForEvent)
                    && !self.world.event_register[cpu]
                    && !spurious_wake;
                if blocked { vec![] } else { vec![Choice::Step] }
            }
            Place::LowerEl => {
                let mut choices = vec![
                    Choice::RunLowerEl,
                    Choice::Call,
                    Choice::Leave(Inactivity::Off),
                    Choice::Leave(Inactivity::PowerDownSuspended),
                    Choice::Leave(Inactivity::RetentionSuspended),
                ];
                if self.world.sgi_pending[cpu] {
                    choices.push(Choice::TakeFiq);
                }
                choices
            }
            Place::Off | Place::PowerDownSuspended => vec![Choice::Wake],
            Place::RetentionWfi => vec![Choice::Wake],
        }
    }

    /// Makes `cpu` do `choice` (one tick of simulated time).
    pub fn apply(&mut self, cpu: usize, choice: Choice) {
        self.world.time += 1;
        match (self.places[cpu], choice) {
            (Place::InRole(role), Choice::Step) => self.step_role(cpu, role),
            (Place::LowerEl, lower) => {
                self.world.exposed[cpu] = true;
                self.world.log(cpu, EventKind::LowerEl);
                match lower {
                    Choice::RunLowerEl => {}
                    Choice::TakeFiq => {
                        // Acknowledging the SGI clears its pending state.
                        self.world.sgi_pending[cpu] = false;
                        self.world.log(cpu, EventKind::TookFiq);
                        let role = ResponderRole::new(&self.memory(), CpuIndex::new(cpu))
                            .expect("cpu in range");
                        self.places[cpu] = Place::InRole(Role::Responder(role));
                    }
                    Choice::Call => {
                        let deadline = Deadline::after(self.world.time, self.deadline_ticks);
                        let role = CallerRole::new(&self.memory(), CpuIndex::new(cpu), deadline)
                            .expect("cpu in range");
                        self.places[cpu] = Place::InRole(Role::Caller(role));
                    }
                    Choice::Leave(inactivity) => {
                        self.world.log(cpu, EventKind::Leaving(inactivity));
                        let role = LeaveRole::new(&self.memory(), CpuIndex::new(cpu), inactivity)
                            .expect("cpu in range");
                        self.places[cpu] = Place::InRole(Role::Leave(role, inactivity));
                    }
                    other => panic!("{other:?} is not a lower-EL choice"),
                }
            }
            (Place::Off | Place::PowerDownSuspended | Place::RetentionWfi, Choice::Wake) => {
                if matches!(self.places[cpu], Place::RetentionWfi) && self.world.sgi_pending[cpu] {
                    self.world.log(cpu, EventKind::RetentionWokenBySgi);
                }
                self.start_join(cpu);
            }
            (place, choice) => panic!("cpu{cpu}: {choice:?} impossible in {place:?}"),
        }
    }

    fn start_join(&mut self, cpu: usize) {
        self.world.log(cpu, EventKind::Joining);
        self.world.dsb_since_join[cpu] = false;
        let role = JoinRole::new(&self.memory(), CpuIndex::new(cpu), self.world.affected[cpu])
            .expect("cpu in range");
        self.places[cpu] = Place::InRole(Role::Join(role));
    }

    fn step_role(&mut self, cpu: usize, mut role: Role) {
        let memory = CountingMemory {
            inner: self.storage.memory(self.cpu_count),
            accesses: Cell::new(0),
            fault: self.fault,
        };
        let actions_before = self.world.platform_actions;
        let mut platform = SimPlatform {
            me: cpu,
            world: &mut self.world,
        };
        let (predicted, progress_finished, action) = match &mut role {
            Role::Caller(caller) => {
                let predicted = caller.next_action();
                match caller.step(&memory, &mut platform) {
                    Progress::Ran(action) => (predicted, false, Some(action)),
                    Progress::Finished(_) => (predicted, true, None),
                }
            }
            Role::Responder(responder) => {
                let predicted = responder.next_action();
                step_unit(predicted, responder.step(&memory, &mut platform))
            }
            Role::Leave(leave, _) => {
                let predicted = leave.next_action();
                step_unit(predicted, leave.step(&memory, &mut platform))
            }
            Role::Join(join) => {
                let predicted = join.next_action();
                step_unit(predicted, join.step(&memory, &mut platform))
            }
        };
        // The step contract: exactly the one action it reports, as predicted.
        let platform_actions = self.world.platform_actions - actions_before;
        let accesses = memory.accesses.get();
        match action {
            Some(action) => {
                assert_eq!(predicted, Some(action), "cpu{cpu}: next_action mismatch");
                let (expected_accesses, expected_platform) = if action.is_shared_access() {
                    (1, 0)
                } else {
                    (0, 1)
                };
                assert_eq!(
                    (accesses, platform_actions),
                    (expected_accesses, expected_platform),
                    "cpu{cpu}: {action:?} must be one action"
                );
                self.world.log(cpu, EventKind::Step(action));
            }
            None => {
                assert_eq!(predicted, None);
                assert_eq!((accesses, platform_actions), (0, 0), "finished step acts");
            }
        }
        if let Role::Caller(caller) = &role
            && action == Some(Action::IncrementRequestCounter)
        {
            self.on_increment(cpu, caller);
        }
        if action == Some(Action::SendSgi) {
            self.check_standby_not_woken(cpu);
        }
        self.places[cpu] = Place::InRole(role);
        if progress_finished || role_finished(&role) {
            self.finish_role(cpu, role);
        }
    }

    fn on_increment(&mut self, cpu: usize, caller: &CallerRole<WORDS>) {
        let request = match caller.state() {
            rendezvous::CallerState::Scan { request, .. } => *request,
            other => panic!("after the increment the caller scans, not {other:?}"),
        };
        let pending: Vec<usize> = (0..self.cpu_count)
            .filter(|&other| self.world.affected[other] && self.world.exposed[other])
            .collect();
        self.world.open_requests.insert(request, pending);
        let standby: Vec<(usize, u64)> = (0..self.cpu_count)
            .filter(|&other| matches!(self.places[other], Place::RetentionWfi))
            .map(|other| (other, self.world.standby_epoch[other]))
            .collect();
        self.world.standby_at_request.insert(request, standby);
        self.world.log(cpu, EventKind::Requested(request));
    }

    fn finish_role(&mut self, cpu: usize, role: Role) {
        match role {
            Role::Caller(caller) => {
                let outcome = caller.outcome().expect("finished caller has an outcome");
                self.world.log(cpu, EventKind::CallerFinished(outcome));
                let request = self.request_of(cpu);
                if let (Some(request), WorkaroundOutcome::Done) = (request, outcome) {
                    let pending = self
                        .world
                        .open_requests
                        .remove(&request)
                        .unwrap_or_default();
                    if !pending.is_empty() {
                        self.violations.push(format!(
                            "t={}: cpu{cpu} returned Done for request {request} but exposed \
                             affected CPUs {pending:?} ran no DSB since",
                            self.world.time
                        ));
                    }
                } else if let Some(request) = request {
                    self.world.open_requests.remove(&request);
                }
                self.places[cpu] = Place::LowerEl;
            }
            Role::Responder(_) => self.places[cpu] = Place::LowerEl,
            Role::Leave(_, inactivity) => {
                self.places[cpu] = match inactivity {
                    Inactivity::Off => Place::Off,
                    Inactivity::PowerDownSuspended => Place::PowerDownSuspended,
                    Inactivity::RetentionSuspended => {
                        self.world.standby_epoch[cpu] += 1;
                        Place::RetentionWfi
                    }
                };
            }
            Role::Join(_) => {
                if !self.world.dsb_since_join[cpu] {
                    self.violations.push(format!(
                        "cpu{cpu} joined without a DSB before lower-EL code"
                    ));
                }
                self.places[cpu] = Place::LowerEl;
            }
        }
    }

    /// A CPU that was in standby at the request and still is must not be sent the SGI.
    fn check_standby_not_woken(&mut self, cpu: usize) {
        let Some(request) = self.request_of(cpu) else {
            return;
        };
        let targets = match self.world.log.last() {
            Some(Event {
                kind: EventKind::SgiSent(targets),
                ..
            }) => targets.clone(),
            _ => return,
        };
        let standby = self
            .world
            .standby_at_request
            .get(&request)
            .cloned()
            .unwrap_or_default();
        for (target, epoch) in standby {
            let still_in_standby = matches!(self.places[target], Place::RetentionWfi)
                && self.world.standby_epoch[target] == epoch;
            if still_in_standby && targets.contains(&target) {
                self.violations.push(format!(
                    "t={}: cpu{cpu} sent the SGI to cpu{target}, in standby since before the \
                     request",
                    self.world.time
                ));
            }
        }
    }

    /// The request number of `cpu`'s latest `Requested` event.
    fn request_of(&self, cpu: usize) -> Option<u64> {
        self.world
            .log
            .iter()
            .rev()
            .find_map(|event| match event.kind {
                EventKind::Requested(request) if event.cpu == cpu => Some(request),
                _ => None,
            })
    }

    /// Steps `cpu`'s role until it finishes (ignores WFE blocking: spurious wake-ups).
    pub fn run_role(&mut self, cpu: usize) {
        for _ in 0..10_000 {
            if !matches!(self.places[cpu], Place::InRole(_)) {
                return;
            }
            self.apply(cpu, Choice::Step);
        }
        panic!("cpu{cpu} did not finish its role");
    }

    /// Round-robin over all CPUs until every role has finished: roles step (a WFE counts as a
    /// spurious wake-up), CPUs at a lower EL take a pending FIQ, nothing else starts.
    pub fn run_all(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            for cpu in 0..self.cpu_count {
                match self.places[cpu] {
                    Place::InRole(_) => self.apply(cpu, Choice::Step),
                    Place::LowerEl if self.world.sgi_pending[cpu] => {
                        self.apply(cpu, Choice::TakeFiq);
                    }
                    _ => continue,
                }
                progressed = true;
            }
            if !progressed {
                return;
            }
        }
        panic!("roles did not finish\n{}", self.trace());
    }

    /// Steps `cpu`'s role until its next action is `action` (or it finishes).
    pub fn run_until(&mut self, cpu: usize, action: Action) {
        for _ in 0..10_000 {
            match self.places[cpu] {
                Place::InRole(role) if self.next_action(role) != Some(action) => {
                    self.apply(cpu, Choice::Step);
                }
                _ => return,
            }
        }
        panic!("cpu{cpu} never reached {action:?}");
    }

    /// The next action of a role.
    pub fn next_action(&self, role: Role) -> Option<Action> {
        match role {
            Role::Caller(caller) => caller.next_action(),
            Role::Responder(responder) => responder.next_action(),
            Role::Leave(leave, _) => leave.next_action(),
            Role::Join(join) => join.next_action(),
        }
    }

    /// The outcome of `cpu`'s last finished call.
    pub fn last_outcome(&self, cpu: usize) -> Option<WorkaroundOutcome<WORDS>> {
        self.world
            .log
            .iter()
            .rev()
            .find_map(|event| match event.kind {
                EventKind::CallerFinished(outcome) if event.cpu == cpu => Some(outcome),
                _ => None,
            })
    }

    /// Every SGI send in the log: (sender, targets).
    pub fn sgis(&self) -> Vec<(usize, Vec<usize>)> {
        self.world
            .log
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::SgiSent(targets) => Some((event.cpu, targets.clone())),
                _ => None,
            })
            .collect()
    }

    /// Whether the record of `cpu` says active.
    pub fn is_active(&self, cpu: usize) -> bool {
        self.record(cpu).activity == Activity::Active
    }

    /// The log, one event per line (for failure messages).
    pub fn trace(&self) -> String {
        self.world
            .log
            .iter()
            .map(|event| format!("t={:>5} cpu{} {:?}\n", event.time, event.cpu, event.kind))
            .collect()
    }
}

fn step_unit(
    predicted: Option<Action>,
    progress: Progress<()>,
) -> (Option<Action>, bool, Option<Action>) {
    match progress {
        Progress::Ran(action) => (predicted, false, Some(action)),
        Progress::Finished(()) => (predicted, true, None),
    }
}

fn role_finished(role: &Role) -> bool {
    match role {
        Role::Caller(caller) => caller.next_action().is_none(),
        Role::Responder(responder) => responder.next_action().is_none(),
        Role::Leave(leave, _) => leave.next_action().is_none(),
        Role::Join(join) => join.next_action().is_none(),
    }
}

/// A small deterministic generator (xorshift64*), so that failing seeds replay.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number below `bound` (> 0).
    pub fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(bound).unwrap()).unwrap()
    }
    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}
