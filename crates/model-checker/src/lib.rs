//! Explicit-state model checking of pkvm-rs's own code for erratum 4193714 (host only).
//!
//! `cargo xtask model` runs [`catalogue`] and prints one row per scenario; the tests in
//! `tests/verdicts.rs` assert each verdict.
//!
//! # How the explorer reaches the project's own code
//!
//! - **Parts (a) and (b), the ownership code.** [`recording`] builds a real
//!   `mem_protect::MemProtect` on the host (real `stage2` tables in host memory) with a
//!   `ProtectionPlatform` that records instead of executing, runs the transition (host donates to a
//!   guest, guest unshares, host donates to the hypervisor) and keeps the exact sequence of calls the
//!   code made: every `TLBI`, `DSB ISH`, `ISB`, the firmware call, and every `observe()` event. It
//!   does so twice, with the firmware call succeeding and failing (the code then rolls back), and
//!   reads the host's stage-2 with the real `Stage2Table::walk` before and after. The hypervisor's
//!   operations are synchronous calls, so its behaviour *is* that sequence: [`erratum`] replays it
//!   one call per model step on CPU 0 and interleaves every host-CPU action between those steps
//!   (issue an SME load/store while the translation allows it; an access in flight lands), under
//!   the semantics of an affected C1-Pro or a correct CPU. Nothing in the model restates which
//!   TLBIs, barriers or calls the code makes, or in which order: change the code and the model
//!   changes with it. Four page layouts are recorded ([`recording::Layout`]): two pages of one
//!   2 MiB block mapping (invalidated at level 2), two pages mapped at level 3 (invalidated by
//!   page), a range across two blocks (a block and a page mapping), and a whole 2 MiB block.
//!   Which CPUs run a DSB in the firmware call is decided by the real `rendezvous::CallerRole`
//!   too: the model runs it over the CPUs' affectedness and takes the CPUs it signals.
//! - **Parts (c) and (d), the rendezvous.** [`rendezvous_model`] steps the real
//!   `rendezvous::{CallerRole, ResponderRole, LeaveRole, JoinRole}` state machines one `Action` per
//!   model step over `CellRendezvousMemory` (a plain value, so it is part of the explored state), with
//!   a platform that records DSBs, SGIs and events into the model state. [`mod@reference`] is the one
//!   re-description: TF-A's protocol as BRIEF §7 words it, driven by the same harness and checked
//!   against the same properties.
//!
//! # Why our own explorer rather than `stateright` 0.31
//!
//! `stateright` checks `always` properties and returns shortest traces well, but its `eventually`
//! properties are only evaluated at terminal states and, by its own admission
//! (`fixme_can_miss_counterexample_when_revisiting_a_state` in `src/checker.rs`), miss
//! counterexamples when a path revisits a state or joins another path. The blackout of part (b) is
//! exactly such a case: the host keeps running (issuing and completing accesses, in cycles) while
//! the hypervisor waits for ever, so no terminal state shows it. [`explorer`] is a breadth-first
//! search over states remembered exactly (see *Visited states* below), with parent links for shortest
//! counterexamples, followed by a liveness pass over the explored graph: every reachable state must
//! be able to reach a goal state (the donation completes; every role finishes); a state that cannot
//! is a deadlock or blackout, reported with the path to it. Random walks cover bounds too large to
//! exhaust. It is one file of a few hundred lines, with no dependency.
//!
//! # Modelling decisions, assumptions and fairness
//!
//! - The host is adversarial: it may issue any access the translation allows at any point, and mask
//!   interrupts for good (part (b)). A timeout fires only when a target has masked interrupts: a CPU
//!   that takes the interrupt answers in time.
//! - During a transition, a host CPU may still use a TLB entry for a page until the hypervisor has
//!   both invalidated it (`TLBI IPAS2E1IS` of the page, `TLBI VMALLE1IS` of the host VMID) and
//!   completed those with a DSB; before and after the transition only the walk counts.
//! - **Ownership is read from state, not events.** The recording stops the real code at each of its
//!   platform calls (unwinding out of the platform, no panic hook) and reads the real tables there:
//!   the host's stage-2 walk, the guest's stage-2 walk and the hypervisor's page states. A page is
//!   transferred when the new owner's own tables give it the page exclusively (guest `Owned` mapping,
//!   hypervisor `Owned`); P1/P2 and the new owner's writes use that, and the code's
//!   `OwnershipTransferred` events are only labels in traces.
//! - **Failures (part (a)).** With the EL3 rendezvous the firmware call may fail (EL3 timed out) at
//!   the call: the other CPUs' accesses may still be in flight, and the recorded failure run follows.
//!   **F:** when a failed call returns, the tables give the host every page with the access it had
//!   before, and the new owner nothing it did not have. Liveness then means "the hypercall returns"
//!   (either way). Part (c) lets each caller's deadline pass at any point (`c-deadlines`): a call
//!   then ends `Timeout`, and nothing else may change.
//! - **Fairness (liveness).** Part (c)/(d): from every reachable state, a state with no CPU inside a
//!   role must be reachable through *fair* moves alone: a CPU inside a role keeps stepping, a CPU at
//!   the lower EL takes a pending FIQ (taking one that overtook the request counter, with a
//!   wrong SGI barrier, counts too), a per-core timeout of part (d) expires. An off or suspended
//!   CPU may stay so for ever, nothing forces a new call or power transition, and the own protocol's
//!   deadline is not counted on (liveness must hold without it). Parts (a)/(b): every move is fair
//!   (the adversarial host's mask is what makes liveness meaningful there).
//! - **Visited states.** Remembered exactly by default: each state's full encoding (every field
//!   its `Hash` writes, enum discriminants and collection lengths included, integers as LEB128
//!   varints), so no two states are ever confused and "exhaustive" needs no caveat. Every
//!   exhaustive run fits: the largest, `c-3cpus-repeated`, holds 6.8 million states in about
//!   1.2 GiB. `cargo xtask model --fingerprints` remembers two independent 64-bit hashes instead
//!   (SipHash-1-3 and FNV-1a, 16 bytes a state; a state is lost only if both collide, about
//!   n²/2¹²⁹); a test checks both modes find the same states.
//! - **Mixed systems (part (a)).** `ErratumConfig::unaffected` makes some CPUs correct: their
//!   accesses complete with the hypervisor's `TLBI` + `DSB ISH`; the real caller sends them no SGI
//!   and they need none. An affected CPU the caller skipped keeps its accesses in flight past the
//!   call: a P1/P2 counterexample (mutant `rendezvous_scan_skips_last_cpu`).
//! - **CPU numbers across two words (part (c)).** `c-cpus-across-two-words` runs the real roles
//!   with `CpuSet<2>` on a machine numbering 72 CPUs of which 0, 64 and 65 are present: the others
//!   never booted, their records read `Off` and nobody writes them, so the harness merges a scan's
//!   read of one into the step before (it commutes with every other step) and the state stays the
//!   size of the three CPUs.
//! - **The monitor's atomic memory** is not explored here (this harness uses `CellRendezvousMemory`,
//!   sequentially consistent): `crates/rendezvous/tests/loom.rs` explores `AtomicRendezvousMemory`
//!   under the C11 model with `loom` (`cargo xtask model --loom`), with 2 and 3 CPUs.
//! - **Mutation score.** [`mutants`] lists bugs seeded in the library crates behind
//!   `cfg(mutant = ...)`; `cargo xtask model --mutants` runs the checker once per mutant.
//!
//! # The erratum's assumptions, next to the notice's wording
//!
//! BRIEF §1 words Arm's notice: *"when one CPU does `TLBI` + `DSB`, the DSB can complete while
//! another CPU still has memory accesses in flight that were issued by SME"*, and *"the only
//! reliable fix is for every affected CPU to execute a local `DSB` (or take an exception with
//! `SCTLR_ELx.IESB=1`) after the TLB maintenance and before the page changes hands"*. The model
//! rests on exactly these readings, and no more:
//!
//! - **A1 (the fix works): a local DSB completes the CPU's own SME accesses.** A CPU that ran a
//!   full-system, outer- or inner-shareable `DSB` covering loads and stores has no access in flight
//!   afterwards (part (a): the firmware call lands every access of the CPUs it signals; part (c):
//!   the DSB ends the CPU's exposure). A `DSB ISHST` completes stores only, a `DSB ISHLD` loads
//!   only, and a `DSB NSH` completes accesses for this PE's own view only, not for the other CPUs
//!   or the page's new owner: none of them ends exposure (`c-barrier-local-dsb-ishst`,
//!   `-nsh`).
//! - **A2 (the erratum is about accesses in flight): no new access through a stale entry after
//!   `TLBI` + `DSB`.** Once the hypervisor's `TLBI IPAS2E1IS` and `TLBI VMALLE1IS` completed with
//!   its `DSB ISH`, no host CPU issues a new access through the old translation; until then it may
//!   (part (a), `ErratumModel::translates`). Only accesses already issued may still land.
//! - **A3 (what "affected" means): a correct CPU's accesses are completed by the broadcast `TLBI`'s
//!   `DSB`**, as the architecture requires; only affected CPUs need the local DSB.
//! - **The SGI's ordering.** `ICC_SGI0R_EL1` is a system-register write, not a memory access: the
//!   request counter's store is visible to the target when it takes the interrupt only if a `DSB`
//!   that completes stores for the other CPUs (`DSB ISHST` or stronger) comes between them. Without
//!   one (or with `DSB NSH`) the model lets the target take the FIQ, read the old counter and do
//!   nothing; the caller then waits for ever (`c-barrier-no-dsb-before-sgi`). The barriers are the
//!   `RendezvousPlatform::LOCAL_BARRIER` and `SGI_PUBLISH_BARRIER` constants; the model reads the
//!   trait's defaults, which the monitor names (with compile-time checks that they suffice).
//! - **Not modelled.** `SEV`/`WFE` are an event flag (a `WFE` may return at any time; `SEV` sets
//!   every CPU's flag). The caller's own TLBIs are completed by its own `DSB ISH` before the call
//!   (that is the recorded sequence), so the call has none of its own to complete. Caches are
//!   coherent; `SCTLR_EL3.IESB` is not used.
//!
//! # Bounds
//!
//! Part (a)/(b): 3 CPUs, 2 pages, 2 accesses in flight and 3 issued per CPU, exhaustive; 4 CPUs × 4
//! accesses by 20,000 random walks. Part (c): up to 3 CPUs exhaustive with 2 calls and 2 power
//! transitions per CPU, 4 CPUs by 20,000 random walks (400 steps each); 2 CPUs for the barrier
//! scenarios. The monitor's atomic memory under the C11 model (`loom`): 2 CPUs in four tests and
//! 3 CPUs in one, no preemption bound (`crates/rendezvous/tests/loom.rs`).

#![forbid(unsafe_code)]

pub mod erratum;
pub mod explorer;
pub mod mutants;
pub mod recording;
pub mod reference;
pub mod rendezvous_model;
pub mod svg;

use rendezvous::Inactivity;

use crate::erratum::{
    CpuKind, ErratumConfig, ErratumModel, Properties, SyncMechanism, TimeoutPolicy, mitigation_for,
};
use crate::explorer::{Exploration, Limits, Verdict, explore, random_walks};
use crate::recording::{Layout, RecordingError, Transition, record_layout};
use crate::reference::ReferenceProtocol;
use crate::rendezvous_model::{Barriers, OwnProtocol, RendezvousConfig, RendezvousModel};
use rendezvous::Barrier;

/// The parts of issue 5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// (a) the erratum, the firmware call, a correct CPU.
    Erratum,
    /// (b) why EL3.
    WhyEl3,
    /// (c) the project's rendezvous.
    Rendezvous,
    /// (d) TF-A's protocol as described.
    Reference,
}

impl Part {
    /// `a`..`d`.
    pub fn letter(self) -> char {
        match self {
            Self::Erratum => 'a',
            Self::WhyEl3 => 'b',
            Self::Rendezvous => 'c',
            Self::Reference => 'd',
        }
    }
}

/// How a scenario is searched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Search {
    /// Every reachable state.
    Exhaustive,
    /// Random walks: (walks, depth, seed).
    Random(usize, usize, u64),
}

/// What is explored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A recorded transition under the hardware model.
    Erratum {
        /// Which transition.
        transition: Transition,
        /// Whether the code makes the firmware call (`FirmwareDvmSync`) or not (`NotNeeded`).
        call_made: bool,
        /// The hardware and bounds.
        config: ErratumConfig,
    },
    /// The rendezvous crate's roles.
    OwnRendezvous(RendezvousConfig),
    /// The rendezvous crate's roles on a platform that executes other barriers than the trait's
    /// defaults.
    OwnRendezvousBarriers {
        /// The bounds.
        config: RendezvousConfig,
        /// The barriers.
        barriers: Barriers,
    },
    /// The rendezvous crate's roles on a machine of [`SPREAD_CPU_COUNT`] CPU numbers of which the
    /// model's CPUs are `ids` (the others never booted): CPU sets of two 64-bit words.
    SpreadRendezvous {
        /// The bounds, per model CPU.
        config: RendezvousConfig,
        /// The CPU number of each model CPU.
        ids: [usize; rendezvous_model::MAX_CPUS],
    },
    /// TF-A's protocol as described.
    ReferenceRendezvous(RendezvousConfig),
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Which part.
    pub part: Part,
    /// A short, unique name (also the SVG file name).
    pub name: String,
    /// What it shows.
    pub description: String,
    /// What it must conclude.
    pub expected: Verdict,
    /// What is explored.
    pub subject: Subject,
    /// How.
    pub search: Search,
}

/// A scenario's result.
#[derive(Clone, Debug)]
pub struct ScenarioResult {
    /// The exploration.
    pub exploration: Exploration,
    /// Whether the verdict is the expected one.
    pub as_expected: bool,
}

/// Runs one scenario.
pub fn run(scenario: &Scenario, limits: Limits) -> Result<ScenarioResult, RecordingError> {
    let exploration = match &scenario.subject {
        Subject::Erratum {
            transition,
            call_made,
            config,
        } => {
            let recording = record_layout(*transition, config.layout, mitigation_for(*call_made))?;
            let model = ErratumModel::new(recording, *config);
            search(&model, scenario, limits)
        }
        Subject::OwnRendezvous(config) => {
            let model = RendezvousModel::new(OwnProtocol::DENSE, config.clone());
            search(&model, scenario, limits)
        }
        Subject::OwnRendezvousBarriers { config, barriers } => {
            let protocol = OwnProtocol::DENSE.with_barriers(*barriers);
            let model = RendezvousModel::new(protocol, config.clone());
            search(&model, scenario, limits)
        }
        Subject::SpreadRendezvous { config, ids } => {
            let protocol = OwnProtocol::<SPREAD_CPU_COUNT, 2>::sparse(*ids, SPREAD_CPU_COUNT);
            let model = RendezvousModel::new(protocol, config.clone());
            search(&model, scenario, limits)
        }
        Subject::ReferenceRendezvous(config) => {
            let model = RendezvousModel::new(ReferenceProtocol, config.clone());
            search(&model, scenario, limits)
        }
    };
    let as_expected = exploration.verdict == scenario.expected;
    Ok(ScenarioResult {
        exploration,
        as_expected,
    })
}

fn search<M: explorer::Model>(model: &M, scenario: &Scenario, limits: Limits) -> Exploration {
    match scenario.search {
        Search::Exhaustive => explore(model, &scenario.name, limits),
        Search::Random(walks, depth, seed) => {
            random_walks(model, &scenario.name, walks, depth, seed, limits)
        }
    }
}

/// The CPU numbers of the spread scenario's machine (its CPU sets need two 64-bit words).
pub const SPREAD_CPU_COUNT: usize = 72;

/// The bounds of the exhaustive erratum scenarios: 3 CPUs, 2 pages, 2 accesses in flight per CPU,
/// 3 issued per CPU in all.
pub fn erratum_bounds(cpu_kind: CpuKind, mechanism: SyncMechanism) -> ErratumConfig {
    ErratumConfig {
        cpus: 3,
        accesses_per_cpu: 3,
        cpu_kind,
        mechanism,
        properties: Properties::Both,
        failures: matches!(mechanism, SyncMechanism::El3Rendezvous),
        layout: Layout::SameBlock,
        unaffected: 0,
    }
}

fn transition_slug(transition: Transition) -> &'static str {
    match transition {
        Transition::HostDonatesToGuest => "donate-guest",
        Transition::GuestUnsharesPage => "unshare",
        Transition::HostDonatesToHypervisor => "donate-hyp",
    }
}

const ALL_LEAVES: [Inactivity; 3] = [
    Inactivity::Off,
    Inactivity::PowerDownSuspended,
    Inactivity::RetentionSuspended,
];

/// The rendezvous bounds of parts (c) and (d): (name, description, config).
pub fn rendezvous_bounds() -> Vec<(&'static str, &'static str, RendezvousConfig)> {
    let config =
        |affected: &[bool], calls: &[u8], leaves: &[u8], kinds: &[Inactivity]| RendezvousConfig {
            affected: affected.to_vec(),
            calls: calls.to_vec(),
            leaves: leaves.to_vec(),
            leave_kinds: kinds.to_vec(),
            timeouts: false,
            deadlines: false,
        };
    vec![
        (
            "concurrent-callers",
            "3 CPUs, 3 concurrent callers",
            config(&[true; 3], &[1, 1, 1], &[0, 0, 0], &[]),
        ),
        (
            "off-powerdown",
            "3 CPUs, a caller while 2 CPUs go off / power down and come back",
            config(
                &[true; 3],
                &[1, 0, 0],
                &[0, 1, 1],
                &[Inactivity::Off, Inactivity::PowerDownSuspended],
            ),
        ),
        (
            "retention",
            "3 CPUs, a caller while 2 CPUs enter retention standby and wake",
            config(
                &[true; 3],
                &[1, 0, 0],
                &[0, 1, 1],
                &[Inactivity::RetentionSuspended],
            ),
        ),
        (
            "callers-and-power",
            "3 CPUs, 2 callers, 1 CPU off/suspends (any kind); one CPU unaffected",
            config(&[true, false, true], &[1, 1, 0], &[0, 0, 1], &ALL_LEAVES),
        ),
    ]
}

/// Every scenario `cargo xtask model` runs, with its expected verdict.
pub fn catalogue() -> Vec<Scenario> {
    let mut scenarios = Vec::new();
    for transition in Transition::ALL {
        let slug = transition_slug(transition);
        let variants = [
            (
                "affected-no-call",
                "affected C1-Pro, no firmware call (mitigation NotNeeded)",
                CpuKind::Affected,
                false,
                Verdict::SafetyViolation,
            ),
            (
                "affected-with-call",
                "affected C1-Pro, firmware call (EL3 rendezvous)",
                CpuKind::Affected,
                true,
                Verdict::Holds,
            ),
            (
                "correct-no-call",
                "correct CPU, no firmware call",
                CpuKind::Correct,
                false,
                Verdict::Holds,
            ),
        ];
        for (variant, description, cpu_kind, call_made, expected) in variants {
            scenarios.push(Scenario {
                part: Part::Erratum,
                name: format!("a-{slug}-{variant}"),
                description: format!("{}: {description}", transition.name()),
                expected,
                subject: Subject::Erratum {
                    transition,
                    call_made,
                    config: erratum_bounds(cpu_kind, SyncMechanism::El3Rendezvous),
                },
                search: Search::Exhaustive,
            });
        }
    }
    // The other recordings: level-3 mappings invalidated by page, a range across two blocks, a
    // whole 2 MiB block.
    for layout in [
        Layout::PageMappings,
        Layout::AcrossBlocks,
        Layout::WholeBlock,
    ] {
        for transition in [
            Transition::HostDonatesToGuest,
            Transition::HostDonatesToHypervisor,
        ] {
            let slug = transition_slug(transition);
            let variants = [
                (
                    "affected-no-call",
                    CpuKind::Affected,
                    false,
                    Verdict::SafetyViolation,
                ),
                (
                    "affected-with-call",
                    CpuKind::Affected,
                    true,
                    Verdict::Holds,
                ),
                ("correct-no-call", CpuKind::Correct, false, Verdict::Holds),
            ];
            for (variant, cpu_kind, call_made, expected) in variants {
                let mut config = erratum_bounds(cpu_kind, SyncMechanism::El3Rendezvous);
                config.layout = layout;
                scenarios.push(Scenario {
                    part: Part::Erratum,
                    name: format!("a-{slug}{}-{variant}", layout.slug()),
                    description: format!(
                        "{} ({}): {variant}",
                        transition.name(),
                        layout.describe()
                    ),
                    expected,
                    subject: Subject::Erratum {
                        transition,
                        call_made,
                        config,
                    },
                    search: Search::Exhaustive,
                });
            }
        }
    }
    // Mixed systems: an unaffected CPU gets no SGI and needs none; an affected one does.
    let mixed = [
        (
            "a-donate-guest-mixed-with-call",
            "CPU1 unaffected, CPU2 affected, firmware call (CPU2 alone gets the SGI)",
            0b010,
            true,
            Verdict::Holds,
        ),
        (
            "a-donate-guest-mixed-no-call",
            "CPU1 unaffected, CPU2 affected, no firmware call",
            0b010,
            false,
            Verdict::SafetyViolation,
        ),
        (
            "a-donate-guest-mixed-last-unaffected-with-call",
            "CPU1 affected, CPU2 unaffected, firmware call (CPU1 alone gets the SGI)",
            0b100,
            true,
            Verdict::Holds,
        ),
    ];
    for (name, description, unaffected, call_made, expected) in mixed {
        let mut config = erratum_bounds(CpuKind::Affected, SyncMechanism::El3Rendezvous);
        config.unaffected = unaffected;
        scenarios.push(Scenario {
            part: Part::Erratum,
            name: name.into(),
            description: format!("host donates 2 pages to a guest: {description}"),
            expected,
            subject: Subject::Erratum {
                transition: Transition::HostDonatesToGuest,
                call_made,
                config,
            },
            search: Search::Exhaustive,
        });
    }
    let mut loads_only = erratum_bounds(CpuKind::Affected, SyncMechanism::El3Rendezvous);
    loads_only.properties = Properties::LoadsOnly;
    scenarios.push(Scenario {
        part: Part::Erratum,
        name: "a-donate-guest-affected-no-call-confidentiality".into(),
        description: "host donates to a guest, affected, no call: P2 alone (a late load reads the \
                      guest's secret)"
            .into(),
        expected: Verdict::SafetyViolation,
        subject: Subject::Erratum {
            transition: Transition::HostDonatesToGuest,
            call_made: false,
            config: loads_only,
        },
        search: Search::Exhaustive,
    });
    let mut larger = erratum_bounds(CpuKind::Affected, SyncMechanism::El3Rendezvous);
    larger.cpus = 4;
    larger.accesses_per_cpu = 4;
    for (call_made, expected, variant) in [
        (false, Verdict::SafetyViolation, "no-call"),
        (true, Verdict::NoViolationFound, "with-call"),
    ] {
        scenarios.push(Scenario {
            part: Part::Erratum,
            name: format!("a-donate-guest-4cpus-random-{variant}"),
            description: format!(
                "host donates to a guest, affected, 4 CPUs x 4 accesses, random walks, {variant}"
            ),
            expected,
            subject: Subject::Erratum {
                transition: Transition::HostDonatesToGuest,
                call_made,
                config: larger,
            },
            search: Search::Random(20_000, 200, 5),
        });
    }

    let interrupts = |maskable, on_timeout| SyncMechanism::Interrupts {
        maskable,
        on_timeout,
    };
    let why_el3 = [
        (
            "b-el2-ipi-no-timeout",
            "EL2 sends IPIs the host can mask, waits for ever: blackout",
            interrupts(true, TimeoutPolicy::WaitForever),
            Verdict::LivenessViolation,
        ),
        (
            "b-el2-ipi-timeout-proceeds",
            "EL2 IPIs with a timeout, then carries on (result ignored, as upstream pKVM does)",
            interrupts(true, TimeoutPolicy::ProceedAnyway),
            Verdict::SafetyViolation,
        ),
        (
            "b-el2-ipi-timeout-fails",
            "EL2 IPIs with a timeout that fails the call (our code rolls back): never donates",
            interrupts(true, TimeoutPolicy::FailTransition),
            Verdict::LivenessViolation,
        ),
        (
            "b-el3-fiq",
            "EL3 Group 0 SGI (FIQ), which the host cannot mask",
            interrupts(false, TimeoutPolicy::WaitForever),
            Verdict::Holds,
        ),
    ];
    for (name, description, mechanism, expected) in why_el3 {
        scenarios.push(Scenario {
            part: Part::WhyEl3,
            name: name.into(),
            description: format!("host donates to a guest, affected: {description}"),
            expected,
            subject: Subject::Erratum {
                transition: Transition::HostDonatesToGuest,
                call_made: true,
                config: erratum_bounds(CpuKind::Affected, mechanism),
            },
            search: Search::Exhaustive,
        });
    }

    for (name, description, config) in rendezvous_bounds() {
        scenarios.push(Scenario {
            part: Part::Rendezvous,
            name: format!("c-{name}"),
            description: format!("rendezvous crate: {description}"),
            expected: Verdict::Holds,
            subject: Subject::OwnRendezvous(config),
            search: Search::Exhaustive,
        });
    }
    let bounded = |affected: &[bool], calls: &[u8], leaves: &[u8], deadlines| RendezvousConfig {
        affected: affected.to_vec(),
        calls: calls.to_vec(),
        leaves: leaves.to_vec(),
        leave_kinds: ALL_LEAVES.to_vec(),
        timeouts: false,
        deadlines,
    };
    let deeper = [
        (
            "c-deadlines",
            "rendezvous crate: 3 CPUs, 2 concurrent callers whose deadline may pass at any point",
            bounded(&[true; 3], &[1, 1, 0], &[0, 0, 0], true),
        ),
        (
            "c-two-calls-two-transitions",
            "rendezvous crate: 2 CPUs, 2 calls and 2 power transitions (any kind) each",
            bounded(&[true; 2], &[2, 2], &[2, 2], false),
        ),
        (
            "c-3cpus-repeated",
            "rendezvous crate: 3 CPUs, one makes 2 calls while the others each make 2 power \
             transitions (any kind); one CPU unaffected",
            bounded(&[true, true, false], &[2, 0, 0], &[0, 2, 2], false),
        ),
    ];
    for (name, description, config) in deeper {
        scenarios.push(Scenario {
            part: Part::Rendezvous,
            name: name.into(),
            description: description.into(),
            expected: Verdict::Holds,
            subject: Subject::OwnRendezvous(config),
            search: Search::Exhaustive,
        });
    }
    scenarios.push(Scenario {
        part: Part::Rendezvous,
        name: "c-cpus-across-two-words".into(),
        description: "rendezvous crate: CPUs 0, 64 and 65 of 72 (CPU sets of two words); \
                      callers on CPUs 0 and 64, CPU 65 goes off once and powers on"
            .into(),
        expected: Verdict::Holds,
        subject: Subject::SpreadRendezvous {
            config: RendezvousConfig {
                affected: vec![true; 3],
                calls: vec![1, 1, 0],
                leaves: vec![0, 0, 1],
                leave_kinds: vec![Inactivity::Off],
                timeouts: false,
                deadlines: false,
            },
            ids: [0, 64, 65, 66],
        },
        search: Search::Exhaustive,
    });
    // Each barrier with its architectural effect: a wrong one is a counterexample.
    let two_cpus = RendezvousConfig {
        affected: vec![true; 2],
        calls: vec![1, 1],
        leaves: vec![0, 1],
        leave_kinds: vec![Inactivity::Off],
        timeouts: false,
        deadlines: false,
    };
    let barrier_variants = [
        (
            "c-barrier-local-dsb-ish",
            "local DSB ISH (inner shareable, loads and stores): enough",
            Barriers {
                local: Barrier::ISH,
                ..Barriers::PLATFORM
            },
            Verdict::Holds,
        ),
        (
            "c-barrier-local-dsb-ishst",
            "local DSB ISHST (stores only): loads stay in flight",
            Barriers {
                local: Barrier::ISHST,
                ..Barriers::PLATFORM
            },
            Verdict::SafetyViolation,
        ),
        (
            "c-barrier-local-dsb-nsh",
            "local DSB NSH (this PE only): other observers not waited for",
            Barriers {
                local: Barrier::NSH,
                ..Barriers::PLATFORM
            },
            Verdict::SafetyViolation,
        ),
        (
            "c-barrier-no-dsb-before-sgi",
            "no barrier before the ICC_SGI0R_EL1 write: the target may read the old counter",
            Barriers {
                sgi_publish: None,
                ..Barriers::PLATFORM
            },
            Verdict::LivenessViolation,
        ),
        (
            "c-barrier-dsb-nsh-before-sgi",
            "DSB NSH before the SGI: the counter store need not be visible to the target",
            Barriers {
                sgi_publish: Some(Barrier::NSH),
                ..Barriers::PLATFORM
            },
            Verdict::LivenessViolation,
        ),
    ];
    for (name, description, barriers, expected) in barrier_variants {
        scenarios.push(Scenario {
            part: Part::Rendezvous,
            name: name.into(),
            description: format!(
                "rendezvous crate, 2 CPUs, a call each, CPU1 goes off once: {description}"
            ),
            expected,
            subject: Subject::OwnRendezvousBarriers {
                config: two_cpus.clone(),
                barriers,
            },
            search: Search::Exhaustive,
        });
    }
    let larger = RendezvousConfig {
        affected: vec![true; 4],
        calls: vec![2, 1, 1, 0],
        leaves: vec![1, 1, 2, 2],
        leave_kinds: ALL_LEAVES.to_vec(),
        timeouts: false,
        deadlines: false,
    };
    scenarios.push(Scenario {
        part: Part::Rendezvous,
        name: "c-4cpus-random".into(),
        description: "rendezvous crate: 4 CPUs, 4 calls, 6 power transitions, random walks".into(),
        expected: Verdict::NoViolationFound,
        subject: Subject::OwnRendezvous(larger),
        search: Search::Random(20_000, 400, 9),
    });

    for (name, description, config, expected) in reference_bounds() {
        scenarios.push(Scenario {
            part: Part::Reference,
            name: format!("d-{name}"),
            description: format!("TF-A as described: {description}"),
            expected,
            subject: Subject::ReferenceRendezvous(config),
            search: Search::Exhaustive,
        });
    }
    scenarios
}

/// Part (d)'s bounds (those of part (c), and one with per-core timeouts) with what the checker
/// finds for each.
fn reference_bounds() -> Vec<(&'static str, &'static str, RendezvousConfig, Verdict)> {
    let mut bounds: Vec<_> = rendezvous_bounds()
        .into_iter()
        .map(|(name, description, config)| {
            let expected = match name {
                "off-powerdown" | "retention" | "callers-and-power" => Verdict::SafetyViolation,
                _ => Verdict::Holds,
            };
            (name, description, config, expected)
        })
        .collect();
    let mut with_timeouts = rendezvous_bounds()
        .into_iter()
        .find(|(name, _, _)| *name == "concurrent-callers")
        .map(|(_, _, config)| config);
    if let Some(config) = with_timeouts.as_mut() {
        config.timeouts = true;
        bounds.push((
            "concurrent-callers-timeouts",
            "3 CPUs, 3 concurrent callers, per-core timeouts may expire",
            config.clone(),
            Verdict::Holds,
        ));
    }
    bounds
}
