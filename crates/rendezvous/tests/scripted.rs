//! Deterministic interleavings of the roles, one scripted schedule per scenario.

mod common;

use common::{Choice, EventKind, Place, Sim, WORDS};
use rendezvous::{
    Action, Activity, CallerRole, CpuIndex, CpuSet, Deadline, Inactivity, RendezvousError,
    RendezvousMemory, RendezvousStorage, SilentPlatform, WorkaroundOutcome, record_affectedness,
    request_workaround,
};

fn assert_clean(sim: &Sim) {
    assert!(
        sim.violations.is_empty(),
        "{:?}\n{}",
        sim.violations,
        sim.trace()
    );
}

fn set(cpus: &[usize]) -> CpuSet<WORDS> {
    cpus.iter().copied().map(CpuIndex::new).collect()
}

#[test]
fn caller_and_responder() {
    let mut sim = Sim::booted(&[true, true]);
    sim.apply(0, Choice::Call);
    sim.run_until(0, Action::WaitForEvent);
    assert_eq!(sim.sgis(), [(0, vec![1])]);
    assert!(sim.world.sgi_pending[1]);
    // CPU 1 takes the FIQ and answers; the caller then sees it.
    sim.apply(1, Choice::TakeFiq);
    sim.run_role(1);
    sim.run_role(0);
    assert_eq!(sim.last_outcome(0), Some(WorkaroundOutcome::Done));
    assert_clean(&sim);
}

#[test]
fn caller_waits_while_target_runs_lower_el() {
    let mut sim = Sim::booted(&[true, true]);
    sim.apply(0, Choice::Call);
    // Several waiting rounds while CPU 1 is still at a lower EL: the caller must not finish.
    for _ in 0..5 {
        sim.run_until(0, Action::WaitForEvent);
        sim.apply(1, Choice::RunLowerEl);
        sim.apply(0, Choice::Step);
    }
    assert!(matches!(sim.places[0], Place::InRole(_)), "{}", sim.trace());
    sim.apply(1, Choice::TakeFiq);
    sim.run_role(1);
    sim.run_role(0);
    assert_eq!(sim.last_outcome(0), Some(WorkaroundOutcome::Done));
    assert_clean(&sim);
}

#[test]
fn two_concurrent_callers_service_each_other() {
    let mut sim = Sim::booted(&[true, true, true]);
    sim.apply(0, Choice::Call);
    sim.apply(1, Choice::Call);
    // Both increment before either scans.
    sim.apply(0, Choice::Step);
    sim.apply(1, Choice::Step);
    // Both scan and send before either waits; neither can take its FIQ (masked at EL3), each
    // must service the other's request from its wait loop.
    for _ in 0..6 {
        sim.apply(0, Choice::Step);
        sim.apply(1, Choice::Step);
    }
    assert_eq!(sim.sgis(), [(0, vec![1, 2]), (1, vec![0, 2])]);
    // CPU 0 (request 1) waits for CPU 2 and meanwhile services CPU 1's request 2 itself.
    sim.run_until(0, Action::WaitForEvent);
    assert!(matches!(sim.places[0], Place::InRole(_)));
    assert_eq!(sim.memory().load_serviced(CpuIndex::new(0)), 2);
    sim.apply(2, Choice::TakeFiq);
    sim.run_all();
    assert_eq!(
        sim.last_outcome(0),
        Some(WorkaroundOutcome::Done),
        "{}",
        sim.trace()
    );
    assert_eq!(
        sim.last_outcome(1),
        Some(WorkaroundOutcome::Done),
        "{}",
        sim.trace()
    );
    // CPU 2's pending SGI from the later caller is answered later, harmlessly.
    assert_clean(&sim);
}

#[test]
fn concurrent_callers_without_other_cpus() {
    let mut sim = Sim::booted(&[true, true]);
    sim.apply(0, Choice::Call);
    sim.apply(1, Choice::Call);
    sim.run_all();
    assert_eq!(
        sim.last_outcome(0),
        Some(WorkaroundOutcome::Done),
        "{}",
        sim.trace()
    );
    assert_eq!(
        sim.last_outcome(1),
        Some(WorkaroundOutcome::Done),
        "{}",
        sim.trace()
    );
    assert_clean(&sim);
}

#[test]
fn cpu_off_after_caller_saw_it_active() {
    let mut sim = Sim::booted(&[true, true]);
    sim.apply(0, Choice::Call);
    sim.run_until(0, Action::WaitForEvent);
    // CPU 1 calls CPU_OFF instead of taking the FIQ first (FIQ still pending).
    sim.apply(1, Choice::Leave(Inactivity::Off));
    sim.run_role(1);
    assert_eq!(sim.record(1).activity, Activity::Off);
    sim.run_role(0);
    assert_eq!(sim.last_outcome(0), Some(WorkaroundOutcome::Done));
    assert_clean(&sim);
}

#[test]
fn cpu_off_between_increment_and_scan() {
    let mut sim = Sim::booted(&[true, true]);
    sim.apply(1, Choice::Leave(Inactivity::Off));
    sim.run_until(1, Action::StoreCpuRecord(CpuIndex::new(1)));
    sim.apply(0, Choice::Call);
    sim.apply(0, Choice::Step); // increment
    sim.apply(1, Choice::Step); // store Off
    sim.run_role(0);
    assert_eq!(sim.sgis(), [], "an inactive CPU is not interrupted");
    assert_eq!(sim.last_outcome(0), Some(WorkaroundOutcome::Done));
    sim.run_role(1);
    assert_clean(&sim);
}

#[test]
fn cpu_off_before_its_dsb_is_waited_for() {
    // CPU 1 is in EL3 for CPU_OFF but has not run its DSB: the caller must not skip it.
    let mut sim = Sim::booted(&[true, true]);
    sim.apply(1, Choice::Leave(Inactivity::Off));
    sim.apply(0, Choice::Call);
    sim.run_until(0, Action::WaitForEvent);
    assert_eq!(sim.sgis(), [(0, vec![1])]);
    sim.apply(0, Choice::Step);
    sim.run_until(0, Action::WaitForEvent);
    assert!(matches!(sim.places[0], Place::InRole(_)));
    sim.run_role(1);
    sim.run_role(0);
    assert_eq!(sim.last_outcome(0), Some(WorkaroundOutcome::Done));
    assert_clean(&sim);
}

#[test]
fn power_down_suspend_then_warm_boot_during_broadcast() {
    let mut sim = Sim::booted(&[true, true, true]);
    sim.apply(2, Choice::Leave(Inactivity::PowerDownSuspended));
    sim.run_role(2);
    sim.apply(0, Choice::Call);
    sim.run_until(0, Action::WaitForEvent);
    assert_eq!(
        sim.sgis(),
        [(0, vec![1])],
        "suspended CPU 2 not interrupted"
    );
    // CPU 2 wakes in the middle and joins; its DSB runs before lower-EL code.
    sim.apply(2, Choice::Wake);
    sim.run_role(2);
    sim.apply(1, Choice::TakeFiq);
    sim.run_role(1);
    sim.run_role(0);
    assert_eq!(sim.last_outcome(0), Some(WorkaroundOutcome::Done));
    assert_clean(&sim);
}

#[test]
fn joiner_that_read_an_old_counter_answers_through_the_sgi() {
    let mut sim = Sim::booted(&[true, true]);
    sim.apply(1, Choice::Leave(Inactivity::Off));
    sim.run_role(1);
    // CPU 1 powers on: stores Active and reads the counter before CPU 0's request.
    sim.apply(1, Choice::Wake);
    sim.apply(1, Choice::Step); // store Active
    sim.apply(1, Choice::Step); // read counter (old)
    sim.apply(0, Choice::Call);
    sim.run_until(0, Action::WaitForEvent);
    assert_eq!(
        sim.sgis(),
        [(0, vec![1])],
        "the caller sees the joiner active"
    );
    sim.run_role(1); // DSB, publishes the old number
    sim.apply(0, Choice::Step);
    sim.run_until(0, Action::WaitForEvent);
    assert!(
        matches!(sim.places[0], Place::InRole(_)),
        "old number is not enough"
    );
    // Back at a lower EL the pending SGI is taken at once.
    sim.apply(1, Choice::TakeFiq);
    sim.run_role(1);
    sim.run_role(0);
    assert_eq!(sim.last_outcome(0), Some(WorkaroundOutcome::Done));
    assert_clean(&sim);
}

#[test]
fn retention_suspend_is_not_woken() {
    let mut sim = Sim::booted(&[true, true, true]);
    sim.apply(1, Choice::Leave(Inactivity::RetentionSuspended));
    sim.run_role(1);
    assert_eq!(sim.record(1).activity, Activity::RetentionSuspended);
    sim.apply(0, Choice::Call);
    sim.run_until(0, Action::WaitForEvent);
    sim.apply(2, Choice::TakeFiq);
    sim.run_role(2);
    sim.run_role(0);
    assert_eq!(sim.last_outcome(0), Some(WorkaroundOutcome::Done));
    assert_eq!(sim.sgis(), [(0, vec![2])]);
    assert!(!sim.world.sgi_pending[1], "standby CPU has no pending SGI");
    assert!(matches!(sim.places[1], Place::RetentionWfi));
    // It wakes for its own reasons later and rejoins with a DSB.
    sim.apply(1, Choice::Wake);
    sim.run_role(1);
    assert!(sim.is_active(1));
    assert_clean(&sim);
}

#[test]
fn timeout_names_the_cpu_that_never_answers() {
    let mut sim = Sim::booted(&[true, true, true]);
    sim.deadline_ticks = 60;
    sim.apply(0, Choice::Call);
    sim.run_until(0, Action::WaitForEvent);
    sim.apply(1, Choice::TakeFiq);
    sim.run_role(1);
    // CPU 2 is never scheduled again. (The caller checks in index order and waits at the first
    // silent CPU, so it is the lowest unanswered CPU that the outcome names for certain.)
    sim.run_role(0);
    let outcome = sim.last_outcome(0).expect("finished");
    assert_eq!(
        outcome,
        WorkaroundOutcome::Timeout {
            unanswered: set(&[2])
        }
    );
    assert_eq!(outcome.to_smc_return(), -1);
    assert_clean(&sim);
}

#[test]
fn no_affected_cpu_is_not_needed_and_sends_nothing() {
    let mut sim = Sim::booted(&[false, false, false]);
    sim.apply(0, Choice::Call);
    sim.run_role(0);
    let outcome = sim.last_outcome(0).expect("finished");
    assert_eq!(outcome, WorkaroundOutcome::NotNeeded);
    assert_eq!(outcome.to_smc_return(), -3);
    assert_eq!(sim.sgis(), []);
    let dsbs = sim
        .world
        .log
        .iter()
        .filter(|event| event.kind == EventKind::Step(Action::LocalDsb))
        .count();
    assert_eq!(dsbs, 0);
}

#[test]
fn never_booted_cpu_counts_as_possibly_affected() {
    // CPUs 0 and 1 are unaffected and running; CPU 2 never booted and nobody recorded it.
    let mut sim = Sim::new(&[false, false, true]);
    for cpu in 0..2 {
        sim.apply(cpu, Choice::Wake);
        sim.run_role(cpu);
    }
    sim.apply(0, Choice::RunLowerEl);
    sim.apply(0, Choice::Call);
    sim.run_role(0);
    assert_eq!(sim.last_outcome(0), Some(WorkaroundOutcome::Done));
    assert_eq!(sim.sgis(), [], "nobody active is affected");
    // Once CPU 2 is recorded unaffected, the answer becomes NotNeeded.
    record_affectedness(&sim.memory(), CpuIndex::new(2), false).expect("in range");
    sim.apply(0, Choice::Call);
    sim.run_role(0);
    assert_eq!(sim.last_outcome(0), Some(WorkaroundOutcome::NotNeeded));
}

#[test]
fn mixed_system_interrupts_only_affected_cpus() {
    let mut sim = Sim::booted(&[false, true, false, true]);
    sim.apply(0, Choice::Call);
    sim.run_until(0, Action::WaitForEvent);
    assert_eq!(sim.sgis(), [(0, vec![1, 3])]);
    for cpu in [1, 3] {
        sim.apply(cpu, Choice::TakeFiq);
        sim.run_role(cpu);
    }
    sim.run_role(0);
    assert_eq!(sim.last_outcome(0), Some(WorkaroundOutcome::Done));
    assert_clean(&sim);
}

#[test]
fn single_cpu_call_is_done_without_sgi() {
    let mut sim = Sim::booted(&[true]);
    sim.apply(0, Choice::Call);
    sim.run_role(0);
    assert_eq!(sim.last_outcome(0), Some(WorkaroundOutcome::Done));
    assert_eq!(sim.sgis(), []);
    assert_clean(&sim);
}

#[test]
fn configuration_errors() {
    let storage = RendezvousStorage::<4>::new();
    let memory = storage.memory(4);
    let mut platform = SilentPlatform;
    // (cpu, expected error)
    let out_of_range =
        request_workaround::<_, _, 1>(&memory, &mut platform, CpuIndex::new(4), Deadline::NEVER);
    assert_eq!(
        out_of_range,
        Err(RendezvousError::CpuOutOfRange {
            cpu: CpuIndex::new(4),
            cpu_count: 4
        })
    );
    let big = RendezvousStorage::<65>::new();
    let too_small = CallerRole::<1>::new(&big.memory(65), CpuIndex::new(0), Deadline::NEVER);
    assert_eq!(
        too_small.err(),
        Some(RendezvousError::CpuSetTooSmall {
            cpu_count: 65,
            capacity: 64
        })
    );
    assert!(CallerRole::<2>::new(&big.memory(65), CpuIndex::new(64), Deadline::NEVER).is_ok());
    let mut sim = Sim::booted(&[true, true]);
    assert_eq!(
        record_affectedness(&sim.memory(), CpuIndex::new(1), false),
        Err(RendezvousError::CpuActive {
            cpu: CpuIndex::new(1)
        })
    );
    assert!(sim.is_active(1), "an active CPU keeps its record");
    sim.apply(0, Choice::Call);
    sim.run_until(0, Action::WaitForEvent);
    assert_eq!(sim.sgis(), [(0, vec![1])]);
    assert_eq!(
        record_affectedness(&memory, CpuIndex::new(9), true),
        Err(RendezvousError::CpuOutOfRange {
            cpu: CpuIndex::new(9),
            cpu_count: 4
        })
    );
}

#[test]
fn waiting_pass_stops_at_the_first_silent_cpu() {
    use rendezvous::{CellRendezvousMemory, Progress, join_active_set};
    let memory = CellRendezvousMemory::<4>::new(3);
    for cpu in 0..3 {
        join_active_set(&memory, &mut SilentPlatform, CpuIndex::new(cpu), true).expect("joins");
    }
    let mut caller =
        CallerRole::<WORDS>::new(&memory, CpuIndex::new(0), Deadline::NEVER).expect("valid");
    let step = |caller: &mut CallerRole<WORDS>| match caller.step(&memory, &mut SilentPlatform) {
        Progress::Ran(action) => Some(action),
        Progress::Finished(outcome) => {
            assert_eq!(outcome, WorkaroundOutcome::Done);
            None
        }
    };
    while step(&mut caller) != Some(Action::SendEvent) {}
    // CPU 2 answers at once; CPU 1 stays silent for two rounds.
    let request = memory.load_request_counter();
    memory.store_serviced(CpuIndex::new(2), request);
    let round = [
        Action::LoadServiced(CpuIndex::new(1)),
        Action::LoadRequestCounter,
        Action::ReadClock,
        Action::WaitForEvent,
    ];
    for action in round.iter().chain(&round) {
        assert_eq!(
            step(&mut caller),
            Some(*action),
            "CPU 2 is not read while 1 is silent"
        );
    }
    memory.store_serviced(CpuIndex::new(1), request);
    // (expected action, or None once the caller has finished with `Done`)
    let table = [
        Some(Action::LoadServiced(CpuIndex::new(1))),
        Some(Action::LoadServiced(CpuIndex::new(2))),
        None,
    ];
    for expected in table {
        assert_eq!(step(&mut caller), expected);
    }
}
