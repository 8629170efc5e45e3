//! Every verdict of issue 5 is a test: violations are found (with a counterexample that ends where
//! the property broke); the fixed variants explore every reachable state without one.

use mem_protect::ErratumMitigation;
use model_checker::explorer::{Limits, Verdict, explore};
use model_checker::recording::{HypervisorStep, Layout, Transition, record, record_layout};
use model_checker::rendezvous_model::{
    CallOutcome, OwnProtocol, OwnRole, Protocol, RendezvousConfig, RendezvousModel,
};
use model_checker::{Scenario, catalogue, run, svg};
use rendezvous::Inactivity;
use stage2::TlbEvent;

fn scenario(name: &str) -> Scenario {
    match catalogue()
        .into_iter()
        .find(|scenario| scenario.name == name)
    {
        Some(scenario) => scenario,
        None => panic!("no scenario {name}"),
    }
}

/// Runs `name` and checks its verdict; returns the exploration for further checks.
fn verdict(name: &str) -> model_checker::explorer::Exploration {
    let scenario = scenario(name);
    let result = run(&scenario, Limits::default()).expect("recording works");
    let exploration = result.exploration;
    let trace = exploration
        .counterexample
        .as_ref()
        .map(|counterexample| counterexample.numbered())
        .unwrap_or_default();
    assert_eq!(
        exploration.verdict, scenario.expected,
        "{name}: {} states\n{trace}",
        exploration.states
    );
    match exploration.verdict {
        Verdict::Holds => {
            // Not vacuous: the search went well past the initial states.
            assert!(
                exploration.states > 500,
                "{name}: only {} states",
                exploration.states
            );
            assert!(exploration.counterexample.is_none());
        }
        Verdict::NoViolationFound => assert!(exploration.states > 100_000, "{name}"),
        Verdict::SafetyViolation => {
            let counterexample = exploration.counterexample.as_ref().expect("a trace");
            let last = counterexample.steps.last().expect("a non-empty trace");
            assert!(last.highlighted, "{name}: the breaking step is highlighted");
            assert_eq!(
                counterexample
                    .steps
                    .iter()
                    .filter(|step| step.highlighted)
                    .count(),
                1
            );
            let picture = svg::timeline(name, counterexample);
            assert!(
                picture.starts_with("<svg") && picture.contains("#d00"),
                "{name}"
            );
        }
        Verdict::LivenessViolation => {
            let counterexample = exploration.counterexample.as_ref().expect("a trace");
            assert!(
                counterexample.message.contains("no sequence of steps"),
                "{name}"
            );
        }
        Verdict::Incomplete => panic!("{name}: incomplete"),
    }
    exploration
}

#[test]
fn exact_and_hashed_visited_sets_agree() {
    use model_checker::explorer::Visited;
    for name in ["c-off-powerdown", "a-unshare-affected-with-call"] {
        let scenario = scenario(name);
        let explore = |visited| {
            let limits = Limits {
                visited,
                ..Limits::default()
            };
            run(&scenario, limits).expect("recording works").exploration
        };
        let exact = explore(Visited::Exact);
        let hashed = explore(Visited::Fingerprints);
        assert_eq!(exact.visited, Some(Visited::Exact));
        assert_eq!(hashed.visited, Some(Visited::Fingerprints));
        assert_eq!(exact.verdict, hashed.verdict, "{name}");
        assert_eq!(exact.states, hashed.states, "{name}");
        assert_eq!(exact.transitions, hashed.transitions, "{name}");
        assert!(exact.memory_bytes > hashed.memory_bytes, "{name}");
    }
}

#[test]
fn the_recordings_come_from_the_real_code() {
    // (transition, mitigation, firmware calls expected in the successful run)
    let table = [
        (
            Transition::HostDonatesToGuest,
            ErratumMitigation::NotNeeded,
            0,
        ),
        (
            Transition::HostDonatesToGuest,
            ErratumMitigation::FirmwareDvmSync,
            1,
        ),
        (
            Transition::GuestUnsharesPage,
            ErratumMitigation::FirmwareDvmSync,
            1,
        ),
        (
            Transition::HostDonatesToHypervisor,
            ErratumMitigation::FirmwareDvmSync,
            1,
        ),
    ];
    for (transition, mitigation, calls) in table {
        let recording = record(transition, mitigation).expect("recording works");
        let steps = &recording.success.steps;
        let found = steps
            .iter()
            .filter(|step| **step == HypervisorStep::FirmwareCall)
            .count();
        assert_eq!(found, calls, "{transition:?} {mitigation:?}: {steps:#?}");
        assert!(recording.success.result.is_ok(), "{transition:?}");
        assert!(
            steps
                .iter()
                .any(|step| matches!(step, HypervisorStep::Tlb(_))),
            "{transition:?}: TLB maintenance recorded"
        );
        if calls > 0 {
            assert!(
                recording.failure.result.is_err(),
                "{transition:?}: failed call reported"
            );
        }
    }
}

/// The host-stage-2 invalidations (address, level) of a recording's successful run.
fn host_invalidations(transition: Transition, layout: Layout) -> Vec<(u64, u8)> {
    let recording = record_layout(transition, layout, ErratumMitigation::FirmwareDvmSync)
        .expect("recording works");
    assert_eq!(recording.pages, layout.pages());
    recording
        .success
        .steps
        .iter()
        .filter_map(|step| match step {
            HypervisorStep::Tlb(TlbEvent::InvalidateIpa { vmid, ipa, level })
                if *vmid == mem_protect::HOST_VMID =>
            {
                Some((*ipa, *level))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn the_layouts_make_the_code_invalidate_at_each_level() {
    for transition in [
        Transition::HostDonatesToGuest,
        Transition::HostDonatesToHypervisor,
    ] {
        let [first, second] = Layout::SameBlock.pages();
        assert_eq!(
            host_invalidations(transition, Layout::SameBlock),
            [(first, 2)],
            "one block, invalidated at level 2"
        );
        assert_eq!(
            host_invalidations(transition, Layout::PageMappings),
            [(first, 3), (second, 3)],
            "4 KiB mappings, invalidated by page"
        );
        let [last_of_first, first_of_next] = Layout::AcrossBlocks.pages();
        assert_eq!(
            host_invalidations(transition, Layout::AcrossBlocks),
            [(last_of_first & !0x1f_ffff, 2), (first_of_next, 3)],
            "a block mapping and a page mapping in the next block"
        );
        let [block, _] = Layout::WholeBlock.pages();
        assert_eq!(
            host_invalidations(transition, Layout::WholeBlock),
            [(block, 2)],
            "the whole block, once"
        );
    }
}

#[test]
fn a_every_layout_needs_the_call_on_affected_cpus() {
    let names: Vec<String> = catalogue()
        .into_iter()
        .map(|scenario| scenario.name)
        .filter(|name| {
            ["-l3-", "-across-blocks-", "-2m-block-"]
                .iter()
                .any(|layout| name.contains(layout))
        })
        .collect();
    assert_eq!(names.len(), 18, "{names:?}");
    for name in names {
        verdict(&name);
    }
}

#[test]
fn a_mixed_systems_signal_exactly_the_affected_cpus() {
    use model_checker::erratum::ErratumModel;
    // (scenario, CPUs the real caller signals)
    let table = [
        ("a-donate-guest-mixed-with-call", 0b100),
        ("a-donate-guest-mixed-no-call", 0b100),
        ("a-donate-guest-mixed-last-unaffected-with-call", 0b010),
        ("a-donate-guest-affected-with-call", 0b110),
        ("a-donate-guest-correct-no-call", 0),
    ];
    for (name, targets) in table {
        let model_checker::Subject::Erratum {
            transition,
            call_made,
            config,
        } = scenario(name).subject
        else {
            panic!("{name} is an erratum scenario");
        };
        let recording = record(
            transition,
            model_checker::erratum::mitigation_for(call_made),
        )
        .expect("recording works");
        let model = ErratumModel::new(recording, config);
        assert_eq!(model.sgi_targets(), targets, "{name}");
        verdict(name);
    }
}

#[test]
fn a_donate_guest_affected_without_call_is_unsafe() {
    let exploration = verdict("a-donate-guest-affected-no-call");
    let trace = exploration.counterexample.expect("trace").numbered();
    assert!(
        trace.contains("lands (now owned by the new owner)"),
        "{trace}"
    );
}

#[test]
fn a_donate_guest_affected_with_call_is_safe() {
    verdict("a-donate-guest-affected-with-call");
}

#[test]
fn a_donate_guest_correct_cpu_without_call_is_safe() {
    verdict("a-donate-guest-correct-no-call");
}

#[test]
fn a_unshare_affected_without_call_is_unsafe() {
    verdict("a-unshare-affected-no-call");
}

#[test]
fn a_unshare_affected_with_call_is_safe() {
    verdict("a-unshare-affected-with-call");
}

#[test]
fn a_unshare_correct_cpu_without_call_is_safe() {
    verdict("a-unshare-correct-no-call");
}

#[test]
fn a_donate_hypervisor_affected_without_call_is_unsafe() {
    verdict("a-donate-hyp-affected-no-call");
}

#[test]
fn a_donate_hypervisor_affected_with_call_is_safe() {
    verdict("a-donate-hyp-affected-with-call");
}

#[test]
fn a_donate_hypervisor_correct_cpu_without_call_is_safe() {
    verdict("a-donate-hyp-correct-no-call");
}

#[test]
fn a_late_load_reads_the_guests_data() {
    let exploration = verdict("a-donate-guest-affected-no-call-confidentiality");
    let counterexample = exploration.counterexample.expect("trace");
    assert!(
        counterexample.message.starts_with("P2"),
        "{}",
        counterexample.message
    );
    let trace = counterexample.numbered();
    assert!(trace.contains("writes its secret"), "{trace}");
}

#[test]
fn a_random_walks_on_larger_bounds() {
    verdict("a-donate-guest-4cpus-random-no-call");
    verdict("a-donate-guest-4cpus-random-with-call");
}

#[test]
fn b_masked_el2_ipis_block_the_donation_for_ever() {
    let exploration = verdict("b-el2-ipi-no-timeout");
    let trace = exploration.counterexample.expect("trace").numbered();
    assert!(trace.contains("masks interrupts"), "{trace}");
}

#[test]
fn b_el2_ipis_with_a_timeout_that_carries_on_are_unsafe() {
    verdict("b-el2-ipi-timeout-proceeds");
}

#[test]
fn b_el2_ipis_with_a_timeout_that_fails_never_donate() {
    verdict("b-el2-ipi-timeout-fails");
}

#[test]
fn b_el3_fiq_completes_and_is_safe() {
    verdict("b-el3-fiq");
}

#[test]
fn c_concurrent_callers() {
    verdict("c-concurrent-callers");
}

#[test]
fn c_off_and_power_down_during_a_broadcast() {
    verdict("c-off-powerdown");
}

#[test]
fn c_retention_during_a_broadcast() {
    verdict("c-retention");
}

#[test]
fn c_callers_and_power_transitions() {
    verdict("c-callers-and-power");
}

#[test]
fn c_deadlines_may_pass_at_any_point() {
    verdict("c-deadlines");
}

#[test]
fn c_two_calls_and_two_power_transitions_per_cpu() {
    verdict("c-two-calls-two-transitions");
}

#[test]
fn c_cpu_numbers_across_two_words() {
    verdict("c-cpus-across-two-words");
}

#[test]
fn c_each_barrier_has_its_architectural_effect() {
    use model_checker::rendezvous_model::Barriers;
    use rendezvous::Barrier;
    // The platform's defaults (the monitor names the same) are the ones shown sufficient.
    assert_eq!(Barriers::PLATFORM.local, Barrier::SY);
    assert_eq!(Barriers::PLATFORM.sgi_publish, Some(Barrier::ISHST));
    for name in [
        "c-barrier-local-dsb-ish",
        "c-barrier-local-dsb-ishst",
        "c-barrier-local-dsb-nsh",
        "c-barrier-no-dsb-before-sgi",
        "c-barrier-dsb-nsh-before-sgi",
    ] {
        let exploration = verdict(name);
        if let Some(counterexample) = &exploration.counterexample {
            let expected = if name.contains("sgi") {
                "before the request counter is visible"
            } else {
                "LocalDsb"
            };
            assert!(
                counterexample
                    .steps
                    .iter()
                    .any(|step| step.text.contains(expected)),
                "{name}: {}",
                counterexample.numbered()
            );
        }
    }
}

#[test]
fn c_random_walks_on_larger_bounds() {
    verdict("c-4cpus-random");
}

#[test]
fn d_reference_concurrent_callers() {
    verdict("d-concurrent-callers");
    verdict("d-concurrent-callers-timeouts");
}

#[test]
fn d_reference_leave_stores_inactive_before_its_dsb() {
    let exploration = verdict("d-off-powerdown");
    let counterexample = exploration.counterexample.expect("trace");
    assert!(
        counterexample.message.starts_with("S1"),
        "{}",
        counterexample.message
    );
}

#[test]
fn d_reference_wakes_retention_cores() {
    let exploration = verdict("d-retention");
    let counterexample = exploration.counterexample.expect("trace");
    assert!(
        counterexample.message.starts_with("S3"),
        "{}",
        counterexample.message
    );
}

#[test]
fn d_reference_callers_and_power_transitions() {
    // Both findings, each with its own shortest trace.
    let exploration = verdict("d-callers-and-power");
    let mut properties: Vec<String> = exploration
        .counterexample
        .iter()
        .chain(&exploration.further)
        .map(|counterexample| counterexample.message[..2].to_string())
        .collect();
    properties.sort();
    assert_eq!(properties, ["S1", "S3"]);
}

/// The project's protocol with one deliberate bug: a CPU coming back runs no join at all (no
/// record store, no DSB). S2 must catch it.
#[derive(Clone, Copy, Debug, Default)]
struct JoinWithoutService;

impl Protocol for JoinWithoutService {
    type Memory = <OwnProtocol as Protocol>::Memory;
    type Role = OwnRole;
    fn name(&self) -> &'static str {
        "join without service"
    }
    fn booted_memory(&self, affected: &[bool]) -> Self::Memory {
        OwnProtocol::DENSE.booted_memory(affected)
    }
    fn caller(&self, memory: &Self::Memory, cpu: usize) -> OwnRole {
        OwnProtocol::DENSE.caller(memory, cpu)
    }
    fn responder(&self, memory: &Self::Memory, cpu: usize) -> OwnRole {
        OwnProtocol::DENSE.responder(memory, cpu)
    }
    fn leave(&self, memory: &Self::Memory, cpu: usize, inactivity: Inactivity) -> OwnRole {
        OwnProtocol::DENSE.leave(memory, cpu, inactivity)
    }
    fn join(&self, _: &Self::Memory, _: usize, _: bool) -> OwnRole {
        OwnRole::Refused
    }
    fn next_action(&self, role: &OwnRole) -> Option<rendezvous::Action> {
        OwnProtocol::DENSE.next_action(role)
    }
    fn step<P: rendezvous::RendezvousPlatform>(
        &self,
        role: &mut OwnRole,
        memory: &mut Self::Memory,
        platform: &mut P,
    ) {
        OwnProtocol::DENSE.step(role, memory, platform);
    }
    fn request(&self, role: &OwnRole) -> Option<u64> {
        OwnProtocol::DENSE.request(role)
    }
    fn outcome(&self, role: &OwnRole) -> Option<CallOutcome> {
        OwnProtocol::DENSE.outcome(role)
    }
    fn request_counter(&self, memory: &Self::Memory) -> u64 {
        OwnProtocol::DENSE.request_counter(memory)
    }
    fn expire(&self, role: &OwnRole) -> Option<OwnRole> {
        OwnProtocol::DENSE.expire(role)
    }
}

#[test]
fn c_a_join_without_its_dsb_is_caught() {
    let config = RendezvousConfig {
        affected: vec![true; 3],
        calls: vec![1, 0, 0],
        leaves: vec![0, 1, 0],
        leave_kinds: vec![Inactivity::Off],
        timeouts: false,
        deadlines: false,
    };
    let exploration = explore(
        &RendezvousModel::new(JoinWithoutService, config),
        "join-without-service",
        Limits::default(),
    );
    assert_eq!(exploration.verdict, Verdict::SafetyViolation);
    let properties: Vec<&str> = exploration
        .counterexample
        .iter()
        .chain(&exploration.further)
        .map(|counterexample| &counterexample.message[..2])
        .collect();
    assert!(properties.contains(&"S2"), "{properties:?}");
}
