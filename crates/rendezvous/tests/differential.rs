//! The flat caller loop the monitor runs ([`request_workaround_flat`]) against the caller role
//! the model checker explores ([`CallerRole`]), under the same random schedules.
//!
//! Each schedule is run twice. In the reference run every agent is a role stepped one action at
//! a time. In the flat run the callers are [`request_workaround_flat`] on threads of their own,
//! whose every memory access and platform action waits for the scheduler's turn (a gate), so the
//! flat loop is interleaved at exactly the granularity of the role's steps; responders, leaving
//! and joining CPUs stay roles. A seeded generator makes the same choice among the same
//! candidates in both runs, so as long as the two callers act alike the schedules are the same;
//! the test requires the same sequence of (CPU, action) pairs, the same SGI target sets, the same
//! outcomes and SGI counts, and the same final memory. Schedules include concurrent callers,
//! callers whose targets leave or join meanwhile, SGIs left pending on CPUs that went off, and
//! deadlines short enough that some calls time out.

// Several per-CPU arrays (agents, the gate's flags) are indexed by the same CPU number.
#![allow(clippy::needless_range_loop)]

use rendezvous::{
    Action, CallerRole, CellRendezvousMemory, CpuIndex, CpuSet, Deadline, Inactivity, JoinRole,
    LeaveRole, Progress, RendezvousMemory, RendezvousPlatform, ResponderRole, WorkaroundOutcome,
    record_affectedness, request_workaround_flat,
};
use std::sync::{Arc, Condvar, Mutex};

const CPUS: usize = 4;
const WORDS: usize = 1;
/// Schedules per run of the test.
const SCHEDULES: u64 = 2_000;
/// Agents started per schedule (callers, leaves, joins); responders are not counted.
const AGENTS: usize = 12;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % bound
    }
}

/// What both runs share: the memory, pending SGIs, the clock (one tick per action) and the log.
struct World {
    memory: CellRendezvousMemory<CPUS>,
    sgi_pending: [bool; CPUS],
    clock: u64,
    log: Vec<(usize, Action)>,
    sgi_targets: Vec<(usize, CpuSet<WORDS>)>,
}

impl World {
    fn new() -> Self {
        Self {
            memory: CellRendezvousMemory::new(CPUS),
            sgi_pending: [false; CPUS],
            clock: 0,
            log: Vec::new(),
            sgi_targets: Vec::new(),
        }
    }
}

/// The platform of a role agent: acts on the world directly.
struct WorldPlatform<'a> {
    cpu: usize,
    sgi_pending: &'a mut [bool; CPUS],
    sgi_targets: &'a mut Vec<(usize, CpuSet<WORDS>)>,
    clock: u64,
}

impl RendezvousPlatform for WorldPlatform<'_> {
    fn send_sgi<const N: usize>(&mut self, targets: &CpuSet<N>) {
        let mut set = CpuSet::<WORDS>::new();
        for cpu in targets.iter() {
            self.sgi_pending[cpu.get()] = true;
            set.insert(cpu);
        }
        self.sgi_targets.push((self.cpu, set));
    }
    fn local_dsb(&mut self) {}
    fn send_event(&mut self) {}
    fn wait_for_event(&mut self) {}
    fn now(&mut self) -> u64 {
        self.clock
    }
}

/// One step of a role agent on `world`; `None` once the role has finished.
fn step_role(world: &mut World, cpu: usize, role: &mut Role) -> Option<Action> {
    let World {
        memory,
        sgi_pending,
        clock,
        log,
        sgi_targets,
    } = world;
    let mut platform = WorldPlatform {
        cpu,
        sgi_pending,
        sgi_targets,
        clock: *clock,
    };
    let action = match role {
        Role::Caller(role) => match role.step(&*memory, &mut platform) {
            Progress::Ran(action) => action,
            Progress::Finished(_) => return None,
        },
        Role::Responder(role) => match role.step(&*memory, &mut platform) {
            Progress::Ran(action) => action,
            Progress::Finished(()) => return None,
        },
        Role::Leave(role) => match role.step(&*memory, &mut platform) {
            Progress::Ran(action) => action,
            Progress::Finished(()) => return None,
        },
        Role::Join(role) => match role.step(&*memory, &mut platform) {
            Progress::Ran(action) => action,
            Progress::Finished(()) => return None,
        },
    };
    log.push((cpu, action));
    *clock += 1;
    Some(action)
}

enum Role {
    Caller(CallerRole<WORDS>),
    Responder(ResponderRole),
    Leave(LeaveRole),
    Join(JoinRole),
}

impl Role {
    fn next_action(&self) -> Option<Action> {
        match self {
            Self::Caller(role) => role.next_action(),
            Self::Responder(role) => role.next_action(),
            Self::Leave(role) => role.next_action(),
            Self::Join(role) => role.next_action(),
        }
    }
}

/// The gate between the scheduler and the flat callers' threads.
struct Gate {
    world: World,
    /// The CPU whose thread may perform its next action.
    turn: Option<usize>,
    /// Threads waiting for their turn.
    waiting: [bool; CPUS],
    /// Threads that have returned, with their result.
    finished: [Option<(WorkaroundOutcome<WORDS>, u32)>; CPUS],
}

struct Shared {
    gate: Mutex<Gate>,
    changed: Condvar,
}

/// The memory and platform of a flat caller's thread: every access waits for its turn.
struct Gated {
    shared: Arc<Shared>,
    cpu: usize,
}

impl Gated {
    fn act<T>(&self, action: Action, body: impl FnOnce(&mut World, usize) -> T) -> T {
        let mut gate = self.shared.gate.lock().expect("gate");
        gate.waiting[self.cpu] = true;
        self.shared.changed.notify_all();
        while gate.turn != Some(self.cpu) {
            gate = self.shared.changed.wait(gate).expect("gate");
        }
        gate.waiting[self.cpu] = false;
        let value = body(&mut gate.world, self.cpu);
        gate.world.log.push((self.cpu, action));
        gate.world.clock += 1;
        gate.turn = None;
        self.shared.changed.notify_all();
        value
    }
}

impl RendezvousMemory for Gated {
    fn cpu_count(&self) -> usize {
        CPUS
    }
    fn load_request_counter(&self) -> u64 {
        self.act(Action::LoadRequestCounter, |world, _| {
            world.memory.load_request_counter()
        })
    }
    fn increment_request_counter(&self) -> u64 {
        self.act(Action::IncrementRequestCounter, |world, _| {
            world.memory.increment_request_counter()
        })
    }
    fn load_serviced(&self, cpu: CpuIndex) -> u64 {
        self.act(Action::LoadServiced(cpu), |world, _| {
            world.memory.load_serviced(cpu)
        })
    }
    fn store_serviced(&self, cpu: CpuIndex, request: u64) {
        self.act(Action::StoreServiced(cpu), |world, _| {
            world.memory.store_serviced(cpu, request)
        })
    }
    fn load_cpu_record(&self, cpu: CpuIndex) -> rendezvous::CpuRecord {
        self.act(Action::LoadCpuRecord(cpu), |world, _| {
            world.memory.load_cpu_record(cpu)
        })
    }
    fn store_cpu_record(&self, cpu: CpuIndex, record: rendezvous::CpuRecord) {
        self.act(Action::StoreCpuRecord(cpu), |world, _| {
            world.memory.store_cpu_record(cpu, record)
        })
    }
}

/// The platform of a flat caller's thread.
struct GatedPlatform<'a>(&'a Gated);

impl RendezvousPlatform for GatedPlatform<'_> {
    fn send_sgi<const N: usize>(&mut self, targets: &CpuSet<N>) {
        let mut set = CpuSet::<WORDS>::new();
        for cpu in targets.iter() {
            set.insert(cpu);
        }
        self.0.act(Action::SendSgi, |world, me| {
            for cpu in set.iter() {
                world.sgi_pending[cpu.get()] = true;
            }
            world.sgi_targets.push((me, set));
        });
    }
    fn local_dsb(&mut self) {
        self.0.act(Action::LocalDsb, |_, _| ());
    }
    fn send_event(&mut self) {
        self.0.act(Action::SendEvent, |_, _| ());
    }
    fn wait_for_event(&mut self) {
        self.0.act(Action::WaitForEvent, |_, _| ());
    }
    fn now(&mut self) -> u64 {
        self.0.act(Action::ReadClock, |world, _| world.clock)
    }
}

/// Which kind of caller a run uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Callers {
    Roles,
    Flat,
    /// The flat loop after one extra read of the counter: a caller that does not act like the
    /// role, which the comparison must catch.
    Broken,
}

/// What a run produced.
#[derive(Debug, PartialEq)]
struct Trace {
    log: Vec<(usize, Action)>,
    sgi_targets: Vec<(usize, CpuSet<WORDS>)>,
    outcomes: Vec<(usize, WorkaroundOutcome<WORDS>, u32)>,
    memory: CellRendezvousMemory<CPUS>,
}

/// An agent running on a CPU.
enum Agent {
    Role(Role),
    /// A flat caller on its own thread.
    Thread(std::thread::JoinHandle<()>),
}

/// Runs one schedule with callers of kind `callers`.
fn run(seed: u64, callers: Callers) -> Trace {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let shared = Arc::new(Shared {
        gate: Mutex::new(Gate {
            world: World::new(),
            turn: None,
            waiting: [false; CPUS],
            finished: [None; CPUS],
        }),
        changed: Condvar::new(),
    });
    // One system in eight has no affected CPU (calls answer `NotNeeded`).
    let none_affected = rng.below(8) == 0;
    let affected: [bool; CPUS] = core::array::from_fn(|_| !none_affected && rng.below(10) < 8);
    {
        let mut gate = shared.gate.lock().expect("gate");
        for (cpu, &is_affected) in affected.iter().enumerate() {
            record_affectedness(&gate.world.memory, CpuIndex::new(cpu), is_affected)
                .expect("in range");
        }
        // Every CPU joins at boot, except a random one that stays off.
        let off = rng.below(CPUS + 2);
        for cpu in (0..CPUS).filter(|&cpu| cpu != off) {
            let mut role = Role::Join(
                JoinRole::new(&gate.world.memory, CpuIndex::new(cpu), affected[cpu]).expect("cpu"),
            );
            while step_role(&mut gate.world, cpu, &mut role).is_some() {}
        }
    }
    let mut agents: [Option<Agent>; CPUS] = core::array::from_fn(|_| None);
    let mut outcomes = Vec::new();
    let mut started = 0;
    loop {
        // Settle: every thread is waiting for its turn or has finished.
        let mut gate = shared.gate.lock().expect("gate");
        loop {
            let unsettled = agents.iter().enumerate().any(|(cpu, agent)| {
                matches!(agent, Some(Agent::Thread(_)))
                    && !gate.waiting[cpu]
                    && gate.finished[cpu].is_none()
            });
            if !unsettled {
                break;
            }
            gate = shared.changed.wait(gate).expect("gate");
        }
        // Retire finished agents.
        for cpu in 0..CPUS {
            let done = match &agents[cpu] {
                Some(Agent::Role(role)) => role.next_action().is_none(),
                Some(Agent::Thread(_)) => gate.finished[cpu].is_some(),
                None => false,
            };
            if !done {
                continue;
            }
            match agents[cpu].take() {
                Some(Agent::Role(Role::Caller(role))) => {
                    // The role does not count its SGIs: a placeholder, see `forget_counts`.
                    outcomes.push((cpu, role.outcome().expect("finished"), u32::MAX));
                }
                Some(Agent::Thread(handle)) => {
                    let (outcome, sent) = gate.finished[cpu].take().expect("finished");
                    outcomes.push((cpu, outcome, sent));
                    drop(gate);
                    handle.join().expect("flat caller thread");
                    gate = shared.gate.lock().expect("gate");
                }
                _ => {}
            }
        }
        // Candidates: step an agent, or start one.
        let mut candidates: Vec<(usize, u8)> = Vec::new();
        for (cpu, agent) in agents.iter().enumerate() {
            if agent.is_some() {
                candidates.push((cpu, 0));
            }
        }
        for cpu in 0..CPUS {
            if agents[cpu].is_some() {
                continue;
            }
            let record = gate.world.memory.load_cpu_record(CpuIndex::new(cpu));
            let active = record.activity == rendezvous::Activity::Active;
            if active && gate.world.sgi_pending[cpu] {
                candidates.push((cpu, 1));
            }
            if started < AGENTS {
                if active {
                    candidates.push((cpu, 2));
                    candidates.push((cpu, 3));
                } else {
                    candidates.push((cpu, 4));
                }
            }
        }
        if candidates.is_empty() {
            break;
        }
        let (cpu, kind) = candidates[rng.below(candidates.len())];
        let me = CpuIndex::new(cpu);
        match kind {
            0 => match &mut agents[cpu] {
                Some(Agent::Role(role)) => {
                    step_role(&mut gate.world, cpu, role);
                }
                Some(Agent::Thread(_)) => {
                    gate.turn = Some(cpu);
                    shared.changed.notify_all();
                    while gate.turn.is_some() {
                        gate = shared.changed.wait(gate).expect("gate");
                    }
                }
                None => unreachable!(),
            },
            1 => {
                gate.world.sgi_pending[cpu] = false;
                let role = ResponderRole::new(&gate.world.memory, me).expect("cpu");
                agents[cpu] = Some(Agent::Role(Role::Responder(role)));
            }
            2 => {
                started += 1;
                // Deadlines from very short (time-outs) to never.
                let deadline = match rng.below(4) {
                    0 => Deadline::after(gate.world.clock, 5 + rng.below(20) as u64),
                    1 => Deadline::after(gate.world.clock, 40 + rng.below(60) as u64),
                    _ => Deadline::after(gate.world.clock, 400),
                };
                agents[cpu] = Some(match callers {
                    Callers::Roles => Agent::Role(Role::Caller(
                        CallerRole::new(&gate.world.memory, me, deadline).expect("cpu"),
                    )),
                    Callers::Flat | Callers::Broken => {
                        let gated = Gated {
                            shared: Arc::clone(&shared),
                            cpu,
                        };
                        Agent::Thread(std::thread::spawn(move || {
                            if callers == Callers::Broken {
                                gated.load_request_counter();
                            }
                            let request = request_workaround_flat::<_, _, WORDS>(
                                &gated,
                                &mut GatedPlatform(&gated),
                                CpuIndex::new(gated.cpu),
                                deadline,
                            )
                            .expect("valid caller");
                            let mut gate = gated.shared.gate.lock().expect("gate");
                            gate.finished[gated.cpu] = Some((request.outcome, request.sgis_sent));
                            gated.shared.changed.notify_all();
                        }))
                    }
                });
            }
            3 => {
                started += 1;
                let inactivity = match rng.below(3) {
                    0 => Inactivity::Off,
                    1 => Inactivity::PowerDownSuspended,
                    _ => Inactivity::RetentionSuspended,
                };
                let role = LeaveRole::new(&gate.world.memory, me, inactivity).expect("cpu");
                agents[cpu] = Some(Agent::Role(Role::Leave(role)));
            }
            _ => {
                started += 1;
                let role = JoinRole::new(&gate.world.memory, me, affected[cpu]).expect("cpu");
                agents[cpu] = Some(Agent::Role(Role::Join(role)));
            }
        }
    }
    let gate = shared.gate.lock().expect("gate");
    Trace {
        log: gate.world.log.clone(),
        sgi_targets: gate.world.sgi_targets.clone(),
        outcomes,
        memory: gate.world.memory.clone(),
    }
}

/// Replaces the flat run's SGI counts (checked by [`check_sgi_counts`]) with the role run's
/// placeholder.
fn forget_counts(trace: &mut Trace) {
    for (_, _, sent) in &mut trace.outcomes {
        *sent = u32::MAX;
    }
}

#[test]
fn flat_caller_acts_like_the_role() {
    let mut outcomes = [0usize; 3];
    for seed in 0..SCHEDULES {
        let reference = run(seed, Callers::Roles);
        let mut flat = run(seed, Callers::Flat);
        // The flat caller's SGI count is the size of the set it sent that call (or 0).
        check_sgi_counts(&flat, seed);
        forget_counts(&mut flat);
        assert_eq!(reference, flat, "schedule {seed}");
        for (_, outcome, _) in &reference.outcomes {
            outcomes[match outcome {
                WorkaroundOutcome::Done => 0,
                WorkaroundOutcome::NotNeeded => 1,
                WorkaroundOutcome::Timeout { .. } => 2,
            }] += 1;
        }
    }
    // The schedules reach every outcome, so the comparison covers every exit of the loop.
    assert!(outcomes.iter().all(|&count| count > 50), "{outcomes:?}");
}

/// In a flat run, each call's SGI count equals the size of the SGI set its CPU sent during that
/// call (0 when it sent none).
fn check_sgi_counts(flat: &Trace, seed: u64) {
    // Replay the log: between a CPU's IncrementRequestCounter and its call's end, the SendSgi
    // it logs belongs to that call. Calls end in `outcomes` order per CPU.
    let mut sets = flat.sgi_targets.iter();
    let mut per_call: [Vec<u32>; CPUS] = core::array::from_fn(|_| Vec::new());
    let mut open: [Option<u32>; CPUS] = [None; CPUS];
    for &(cpu, action) in &flat.log {
        match action {
            Action::IncrementRequestCounter => {
                if let Some(count) = open[cpu].replace(0) {
                    per_call[cpu].push(count);
                }
            }
            Action::SendSgi => {
                let (sender, set) = sets.next().expect("a set per SendSgi");
                assert_eq!(*sender, cpu, "schedule {seed}");
                if let Some(count) = open[cpu].as_mut() {
                    *count = set.len() as u32;
                }
            }
            _ => {}
        }
    }
    for cpu in 0..CPUS {
        if let Some(count) = open[cpu].take() {
            per_call[cpu].push(count);
        }
    }
    let mut next = [0usize; CPUS];
    for &(cpu, _, sent) in &flat.outcomes {
        assert_eq!(
            Some(&sent),
            per_call[cpu].get(next[cpu]),
            "schedule {seed}: SGI count of call {} on CPU {cpu}",
            next[cpu]
        );
        next[cpu] += 1;
    }
}

/// The comparison can fail: a caller that performs one access more than the role is caught.
#[test]
fn comparison_catches_a_caller_that_differs() {
    let caught = (0..20).filter(|&seed| run(seed, Callers::Roles) != run(seed, Callers::Broken));
    assert!(caught.count() > 10);
}
