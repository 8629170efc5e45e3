//! Parts (a) and (b): a hardware model of host CPUs with SME accesses in flight, around a recorded
//! run of the real ownership code.
//!
//! CPU 0 makes the hypercall: until then it is a host CPU like the others; afterwards it executes
//! the recorded [`HypervisorStep`]s one per model step. The other CPUs keep running the host: they
//! issue SME loads and stores to a model page while their translation allows it, and each access
//! completes ("lands") at any later step. The new owner of the pages writes to them once they are
//! its.
//!
//! Semantics of the recorded steps:
//! - `TLBI IPAS2E1IS` / `TLBI VMALLE1IS` for the host's VMID: the invalidation is issued; it takes
//!   effect at the next `DSB ISH` of CPU 0. A host translation of a page is gone once both the
//!   stage-2 entry (IPA) and the combined stage-1 entries (VMALLE1IS) were invalidated and a DSB
//!   completed them. Until then a host CPU may still hit a stale TLB entry and issue an access.
//! - `DSB ISH` on CPU 0 completes CPU 0's own accesses. On a **correct** CPU it also waits for every
//!   CPU's accesses that used a translation invalidated by the TLBIs it completes. On an
//!   **affected** C1-Pro it does not wait for other CPUs' SME accesses (erratum 4193714).
//! - The firmware call, as the EL3 rendezvous: every CPU's accesses complete (each CPU runs a DSB).
//!   In part (b) it is instead a broadcast of interrupts that each host CPU must take (running a DSB
//!   in the handler); EL2's IPIs can be masked by the host, EL3's Group 0 SGI (an FIQ) cannot.
//! - `OwnershipTransferred` to a guest or the hypervisor: from here the page is the new owner's.
//!
//! Host mapping: a host CPU may issue an access to a page while the host's stage-2, read with the
//! real `Stage2Table::walk`, maps it (before the call: the walk before; after: the walk after, an
//! invalid unannotated entry counting as mapped on demand), or, during the call, while a stale
//! translation may remain in its TLB (the walk before mapped it and the TLBIs have not completed).
//!
//! Properties: (P1) no host access issued under the host's mapping lands in a page after the page
//! was transferred; (P2) no host load returns data the new owner wrote. Liveness: from every
//! reachable state the transition can still complete with the pages transferred.

use core::ops::Range;

use mem_protect::{ErratumMitigation, HOST_VMID, PAGE_SIZE, ProtectionEvent};
use stage2::TlbEvent;

use rendezvous::{
    Action, CallerRole, CellRendezvousMemory, CpuIndex, CpuSet, Deadline, RendezvousPlatform,
};

use crate::explorer::Model;
use crate::recording::{
    HostMapping, HypervisorStep, Layout, MODEL_PAGES, PageView, RecordedTransition,
};

/// Most CPUs the model holds.
pub const MAX_CPUS: usize = 4;
/// Accesses a CPU can have in flight at once.
pub const IN_FLIGHT: usize = 2;

/// Whether the CPUs have erratum 4193714.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuKind {
    /// C1-Pro r0p0..r1p2 with SME: a DSB after TLBI does not wait for other CPUs' SME accesses.
    Affected,
    /// A CPU whose `TLBI` + `DSB` completes every access that used the old translation.
    Correct,
}

/// What the firmware call (`ProtectionPlatform::firmware_dvm_sync`) does on the modelled machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SyncMechanism {
    /// The EL3 rendezvous, taken as one step: every CPU runs a DSB before the call returns (part
    /// (c) checks the rendezvous itself).
    El3Rendezvous,
    /// A broadcast of interrupts to every other CPU, whose handler runs a DSB and acknowledges; the
    /// caller waits for every acknowledgement.
    Interrupts {
        /// Whether the host can mask them (EL2 IPIs: yes; EL3 Group 0 SGI as FIQ: no).
        maskable: bool,
        /// What the waiting caller does when a target does not answer.
        on_timeout: TimeoutPolicy,
    },
}

/// What a waiting hypervisor does about a target that does not answer (it has masked interrupts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeoutPolicy {
    /// No timeout: wait for ever.
    WaitForever,
    /// Give up waiting and carry on as if the call succeeded (upstream pKVM ignores the call's
    /// runtime result).
    ProceedAnyway,
    /// Give up and report failure: the real code then rolls the transition back.
    FailTransition,
}

/// The bounds and variant of one erratum model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErratumConfig {
    /// CPUs, CPU 0 being the one that makes the hypercall (at most [`MAX_CPUS`]).
    pub cpus: usize,
    /// Accesses each CPU may issue in all (each CPU holds at most [`IN_FLIGHT`] at once).
    pub accesses_per_cpu: u8,
    /// Whether the CPUs are affected.
    pub cpu_kind: CpuKind,
    /// How the firmware call is carried out.
    pub mechanism: SyncMechanism,
    /// Which safety properties count as violations.
    pub properties: Properties,
    /// Whether the firmware call may fail (time out) instead of succeeding (EL3 rendezvous).
    pub failures: bool,
    /// Where the model pages sit in the host's stage-2 (which recording is replayed).
    pub layout: Layout,
    /// CPUs (bit per CPU) that are correct although `cpu_kind` is [`CpuKind::Affected`]: a mixed
    /// system. CPU 0, the caller, is never in it.
    pub unaffected: u8,
}

/// Which safety properties are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Properties {
    /// P1 and P2.
    Both,
    /// Only P2 (to show a confidentiality counterexample on its own).
    LoadsOnly,
}

/// A load or a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccessKind {
    /// An SME load (e.g. `LDR ZA`).
    Load,
    /// An SME store (e.g. `STR ZA`).
    Store,
}

/// An access in flight: which page, which kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Access {
    /// Model page index.
    pub page: u8,
    /// Load or store.
    pub kind: AccessKind,
}

/// One CPU of the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostCpu {
    /// Accesses in flight, kept sorted (the order of slots means nothing).
    pub in_flight: [Option<Access>; IN_FLIGHT],
    /// Accesses issued so far.
    pub issued: u8,
    /// The host masked interrupts on this CPU (and, as far as the hypervisor can tell, for good).
    pub masked: bool,
    /// An interrupt of the broadcast is pending here.
    pub interrupt_pending: bool,
    /// This CPU's handler ran its DSB and acknowledged the broadcast.
    pub acknowledged: bool,
}

/// Where the hypervisor (CPU 0 at EL2) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hypervisor {
    /// CPU 0 has not made the hypercall yet.
    NotEntered,
    /// Next: recorded step `next` of the successful (`failed == false`) or failed run.
    Running {
        /// Index of the next step.
        next: u8,
        /// Whether the firmware call failed (the failed run's steps follow).
        failed: bool,
    },
    /// Waiting for the broadcast of recorded step `call` to be acknowledged.
    Waiting {
        /// Index of the firmware call step.
        call: u8,
    },
    /// The hypercall returned.
    Returned {
        /// Whether the failed run was followed.
        failed: bool,
    },
}

/// A broken property, remembered in the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Broken {
    /// P1: an access landed after the transfer.
    pub landed_after_transfer: bool,
    /// P2: a load returned the new owner's data.
    pub read_new_owner_data: bool,
}

/// One state of the machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ErratumState {
    /// The hypervisor's progress through the recording.
    pub hypervisor: Hypervisor,
    /// The CPUs (entries past `cpus` stay default).
    pub cpus: [HostCpu; MAX_CPUS],
    /// Pages (bit per model page) whose stage-2 TLBI was issued and not yet completed by a DSB.
    pub ipa_issued: u8,
    /// Whether a host `TLBI VMALLE1IS` was issued and not yet completed.
    pub stage1_issued: bool,
    /// Pages whose stage-2 TLBI completed.
    pub ipa_done: u8,
    /// Whether the host's `TLBI VMALLE1IS` completed.
    pub stage1_done: bool,
    /// Pages whose combined (stage-1 + stage-2) entries a completed `TLBI VMALLE1IS` removed for
    /// good: those whose stage-2 invalidation had *completed* when the stage-1 one was issued.
    /// Otherwise a walk between the two may refill a combined entry from the stale stage-2 entry
    /// (hence the architecture's `TLBI IPAS2E1IS; DSB; TLBI VMALLE1IS; DSB` order).
    pub stage1_effective_done: u8,
    /// The same, for a `TLBI VMALLE1IS` issued and not yet completed.
    pub stage1_effective_issued: u8,
    /// A failed firmware call left the host without a page it had, or gave it to the new owner.
    pub failure_not_rolled_back: bool,
    /// Pages the new owner wrote.
    pub new_owner_wrote: u8,
    /// Properties broken so far.
    pub broken: Broken,
}

/// One step of one participant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErratumAction {
    /// A host CPU issues an SME access.
    Issue {
        /// The CPU.
        cpu: u8,
        /// The access.
        access: Access,
    },
    /// An access in flight completes.
    Land {
        /// The CPU.
        cpu: u8,
        /// Slot index.
        slot: u8,
    },
    /// CPU 0 makes the hypercall.
    Hypercall,
    /// CPU 0 executes the next recorded step.
    HypervisorStep,
    /// Every target acknowledged: the firmware call returns success.
    BroadcastAcknowledged,
    /// The firmware call fails (EL3's rendezvous timed out): accesses of other CPUs may still be
    /// in flight, and the code takes its failure path.
    FirmwareFails,
    /// The waiting hypervisor gives up (a target has masked interrupts).
    Timeout,
    /// A host CPU takes the broadcast interrupt: DSB, acknowledge.
    TakeInterrupt {
        /// The CPU.
        cpu: u8,
    },
    /// A host CPU masks interrupts and never unmasks them.
    MaskInterrupts {
        /// The CPU.
        cpu: u8,
    },
    /// The new owner writes a page it now owns.
    NewOwnerWrites {
        /// Model page index.
        page: u8,
    },
}

/// The erratum model over one recording.
#[derive(Clone, Debug)]
pub struct ErratumModel {
    recording: RecordedTransition,
    config: ErratumConfig,
    /// The CPUs the real rendezvous caller sends the SGI to (bit per CPU), from the CPUs'
    /// affectedness: each runs a DSB before the firmware call returns.
    sgi_targets: u8,
}

const HOST_CPU: HostCpu = HostCpu {
    in_flight: [None; IN_FLIGHT],
    issued: 0,
    masked: false,
    interrupt_pending: false,
    acknowledged: false,
};

fn bit(page: usize) -> u8 {
    1 << page
}

impl ErratumModel {
    /// A model of `recording` under `config` (CPUs clamped to `2..=MAX_CPUS`).
    pub fn new(recording: RecordedTransition, mut config: ErratumConfig) -> Self {
        config.cpus = config.cpus.clamp(2, MAX_CPUS);
        config.unaffected &= !1;
        let affected: Vec<bool> = (0..config.cpus)
            .map(|cpu| config.cpu_kind == CpuKind::Affected && config.unaffected & bit(cpu) == 0)
            .collect();
        Self {
            recording,
            config,
            sgi_targets: rendezvous_targets(&affected),
        }
    }

    /// The CPUs the firmware call's rendezvous sends the SGI to (bit per CPU).
    pub fn sgi_targets(&self) -> u8 {
        self.sgi_targets
    }

    /// Whether `cpu` has the erratum.
    fn affected(&self, cpu: usize) -> bool {
        self.config.cpu_kind == CpuKind::Affected && self.config.unaffected & bit(cpu) == 0
    }

    /// The recording this model replays.
    pub fn recording(&self) -> &RecordedTransition {
        &self.recording
    }

    fn steps(&self, failed: bool) -> &[HypervisorStep] {
        if failed {
            &self.recording.failure.steps
        } else {
            &self.recording.success.steps
        }
    }

    /// Model pages inside `range`, as a bit mask.
    fn pages_in(&self, range: Range<u64>) -> u8 {
        self.recording
            .pages
            .iter()
            .enumerate()
            .filter(|(_, address)| range.contains(address))
            .fold(0, |mask, (index, _)| mask | bit(index))
    }

    /// Whether a host CPU's access to `page` translates in `state`.
    fn translates(&self, state: &ErratumState, page: usize) -> bool {
        match state.hypervisor {
            Hypervisor::NotEntered => self.recording.before[page].host_may_access(),
            Hypervisor::Returned { failed } => {
                let run = if failed {
                    &self.recording.failure
                } else {
                    &self.recording.success
                };
                run.after[page].host_may_access()
            }
            Hypervisor::Running { .. } | Hypervisor::Waiting { .. } => {
                let translation_gone =
                    state.ipa_done & state.stage1_effective_done & bit(page) != 0;
                let stale = self.recording.before[page] == HostMapping::Mapped && !translation_gone;
                // A valid entry written back during the call (a rollback) translates again.
                stale || self.view(state)[page].host == HostMapping::Mapped
            }
        }
    }

    /// Whether `cpu` runs host code (CPU 0 only until its hypercall).
    fn runs_host(&self, state: &ErratumState, cpu: usize) -> bool {
        cpu != 0 || state.hypervisor == Hypervisor::NotEntered
    }

    /// The access in `slot` of `cpu` lands: check the properties, free the slot.
    fn land(&self, state: &mut ErratumState, cpu: usize, slot: usize) {
        let Some(access) = state.cpus[cpu].in_flight[slot].take() else {
            return;
        };
        let page = usize::from(access.page);
        if self.transferred(state) & bit(page) != 0 {
            state.broken.landed_after_transfer = true;
        }
        if access.kind == AccessKind::Load && state.new_owner_wrote & bit(page) != 0 {
            state.broken.read_new_owner_data = true;
        }
        state.cpus[cpu].in_flight.sort_unstable_by(slot_order);
    }

    /// Every access of `cpu` (to pages in `pages`) lands.
    fn land_all(&self, state: &mut ErratumState, cpu: usize, pages: u8) {
        for slot in (0..IN_FLIGHT).rev() {
            if let Some(access) = state.cpus[cpu].in_flight[slot]
                && pages & bit(usize::from(access.page)) != 0
            {
                self.land(state, cpu, slot);
            }
        }
    }

    fn dsb(&self, state: &mut ErratumState) {
        self.land_all(state, 0, u8::MAX);
        let mut completed = state.ipa_issued;
        if state.stage1_issued {
            completed = u8::MAX;
        }
        state.ipa_done |= state.ipa_issued;
        state.stage1_done |= state.stage1_issued;
        state.stage1_effective_done |= state.stage1_effective_issued;
        state.stage1_effective_issued = 0;
        state.ipa_issued = 0;
        state.stage1_issued = false;
        // A correct CPU's accesses that used an invalidated translation complete with the DSB; an
        // affected CPU's SME accesses need not (erratum 4193714).
        for cpu in 1..self.config.cpus {
            if !self.affected(cpu) {
                self.land_all(state, cpu, completed);
            }
        }
    }

    fn advance(&self, state: &mut ErratumState, next: u8, failed: bool) {
        state.hypervisor = if usize::from(next) >= self.steps(failed).len() {
            Hypervisor::Returned { failed }
        } else {
            Hypervisor::Running { next, failed }
        };
        if state.hypervisor == (Hypervisor::Returned { failed: true }) {
            // F: the host has every page it had, with the access it had, and the new owner has
            // none it did not have (read from the tables, not from the code's events).
            let before = &self.recording.before_views;
            let after = self.view(state);
            let restored = before.iter().zip(after).all(|(before, after)| {
                before.host.host_may_access() == after.host.host_may_access()
                    && before.owner == after.owner
            });
            if !restored {
                state.failure_not_rolled_back = true;
            }
        }
    }

    /// The real tables at the model's point of the recording: before the hypercall, at the
    /// recorded call the hypervisor is about to make, or after it returned.
    pub fn view(&self, state: &ErratumState) -> [PageView; MODEL_PAGES] {
        let at = |failed: bool, index: usize| {
            let run = if failed {
                &self.recording.failure
            } else {
                &self.recording.success
            };
            run.views
                .get(index)
                .or(run.views.last())
                .copied()
                .unwrap_or(self.recording.before_views)
        };
        match state.hypervisor {
            Hypervisor::NotEntered => self.recording.before_views,
            Hypervisor::Running { next, failed } => at(failed, usize::from(next)),
            Hypervisor::Waiting { call } => at(false, usize::from(call)),
            Hypervisor::Returned { failed } => at(failed, usize::MAX),
        }
    }

    /// Pages the tables give to the new owner alone, as a mask.
    fn transferred(&self, state: &ErratumState) -> u8 {
        self.view(state)
            .iter()
            .enumerate()
            .filter(|(_, view)| view.transferred())
            .fold(0, |mask, (index, _)| mask | bit(index))
    }

    fn hypervisor_step(&self, state: &mut ErratumState, next: u8, failed: bool) {
        let Some(step) = self.steps(failed).get(usize::from(next)) else {
            state.hypervisor = Hypervisor::Returned { failed };
            return;
        };
        match step {
            HypervisorStep::Tlb(TlbEvent::InvalidateIpa { vmid, ipa, level }) => {
                if *vmid == HOST_VMID {
                    let size = level_size(*level);
                    state.ipa_issued |= self.pages_in(*ipa..ipa.saturating_add(size));
                }
            }
            HypervisorStep::Tlb(TlbEvent::InvalidateStage1ForVmid { vmid }) => {
                if *vmid == HOST_VMID {
                    state.stage1_issued = true;
                    state.stage1_effective_issued |= state.ipa_done;
                }
            }
            HypervisorStep::Tlb(TlbEvent::DsbInnerShareable) => self.dsb(state),
            HypervisorStep::Tlb(TlbEvent::Isb) | HypervisorStep::ZeroPage(_) => {}
            HypervisorStep::FirmwareCall => match self.config.mechanism {
                SyncMechanism::El3Rendezvous => {
                    // The caller's own DSB, and the DSB of every CPU the real rendezvous caller
                    // sends the SGI to (the affected ones).
                    for cpu in 0..self.config.cpus {
                        if cpu == 0 || self.sgi_targets & bit(cpu) != 0 {
                            self.land_all(state, cpu, u8::MAX);
                        }
                    }
                }
                SyncMechanism::Interrupts { .. } => {
                    self.land_all(state, 0, u8::MAX);
                    for cpu in 1..self.config.cpus {
                        state.cpus[cpu].interrupt_pending = true;
                        state.cpus[cpu].acknowledged = false;
                    }
                    state.hypervisor = Hypervisor::Waiting { call: next };
                    return;
                }
            },
            // Events are only labels: who owns a page is read from the tables (`Self::view`).
            HypervisorStep::Protection(_) => {}
        }
        self.advance(state, next + 1, failed);
    }

    fn targets_answered(&self, state: &ErratumState) -> bool {
        (1..self.config.cpus).all(|cpu| state.cpus[cpu].acknowledged)
    }

    fn maskable(&self) -> bool {
        matches!(
            self.config.mechanism,
            SyncMechanism::Interrupts { maskable: true, .. }
        )
    }
}

fn slot_order(first: &Option<Access>, second: &Option<Access>) -> core::cmp::Ordering {
    // Occupied slots first, then by access.
    match (first, second) {
        (Some(a), Some(b)) => a.cmp(b),
        (Some(_), None) => core::cmp::Ordering::Less,
        (None, Some(_)) => core::cmp::Ordering::Greater,
        (None, None) => core::cmp::Ordering::Equal,
    }
}

/// The CPUs (bit per CPU) the real `rendezvous::CallerRole` of CPU 0 sends the SGI to, on a system
/// whose CPUs are all active with the affectedness given.
fn rendezvous_targets(affected: &[bool]) -> u8 {
    struct Targets(u8);
    impl RendezvousPlatform for Targets {
        fn send_sgi<const N: usize>(&mut self, targets: &CpuSet<N>) {
            for cpu in targets.iter() {
                if cpu.get() < 8 {
                    self.0 |= bit(cpu.get());
                }
            }
        }
        fn local_dsb(&mut self) {}
        fn send_event(&mut self) {}
        fn wait_for_event(&mut self) {}
        fn now(&mut self) -> u64 {
            0
        }
    }
    let memory = CellRendezvousMemory::<MAX_CPUS>::new(affected.len());
    let mut platform = Targets(0);
    for (cpu, &is_affected) in affected.iter().enumerate() {
        let _ =
            rendezvous::join_active_set(&memory, &mut platform, CpuIndex::new(cpu), is_affected);
    }
    let Ok(mut caller) = CallerRole::<1>::new(&memory, CpuIndex::new(0), Deadline::NEVER) else {
        return 0;
    };
    // Up to the caller's own DSB: the SGIs are sent by then (the bound only guards a broken role).
    for _ in 0..64 {
        match caller.next_action() {
            None | Some(Action::LocalDsb) => break,
            Some(_) => {
                let _ = caller.step(&memory, &mut platform);
            }
        }
    }
    platform.0
}

/// Bytes a TLBI at translation `level` covers (4 KiB granule).
fn level_size(level: u8) -> u64 {
    match level {
        3 => PAGE_SIZE,
        2 => PAGE_SIZE << 9,
        1 => PAGE_SIZE << 18,
        _ => PAGE_SIZE << 27,
    }
}

fn kind_name(kind: AccessKind) -> &'static str {
    match kind {
        AccessKind::Load => "load",
        AccessKind::Store => "store",
    }
}

impl Model for ErratumModel {
    type State = ErratumState;
    type Action = ErratumAction;

    fn initial_state(&self) -> ErratumState {
        ErratumState {
            hypervisor: Hypervisor::NotEntered,
            cpus: [HOST_CPU; MAX_CPUS],
            ipa_issued: 0,
            stage1_issued: false,
            ipa_done: 0,
            stage1_done: false,
            stage1_effective_done: 0,
            stage1_effective_issued: 0,
            failure_not_rolled_back: false,
            new_owner_wrote: 0,
            broken: Broken {
                landed_after_transfer: false,
                read_new_owner_data: false,
            },
        }
    }

    fn actions(&self, state: &ErratumState, actions: &mut Vec<ErratumAction>) {
        for cpu in 0..self.config.cpus {
            let this = &state.cpus[cpu];
            let index = u8::try_from(cpu).unwrap_or(u8::MAX);
            for slot in 0..IN_FLIGHT {
                if this.in_flight[slot].is_some() {
                    actions.push(ErratumAction::Land {
                        cpu: index,
                        slot: u8::try_from(slot).unwrap_or(0),
                    });
                }
            }
            if !self.runs_host(state, cpu) {
                continue;
            }
            let free_slot = this.in_flight.iter().any(Option::is_none);
            if free_slot && this.issued < self.config.accesses_per_cpu {
                for page in 0..MODEL_PAGES {
                    if self.translates(state, page) {
                        for kind in [AccessKind::Load, AccessKind::Store] {
                            let access = Access {
                                page: u8::try_from(page).unwrap_or(0),
                                kind,
                            };
                            actions.push(ErratumAction::Issue { cpu: index, access });
                        }
                    }
                }
            }
            if cpu != 0 {
                if self.maskable() && !this.masked {
                    actions.push(ErratumAction::MaskInterrupts { cpu: index });
                }
                if this.interrupt_pending && (!this.masked || !self.maskable()) {
                    actions.push(ErratumAction::TakeInterrupt { cpu: index });
                }
            }
        }
        for page in 0..MODEL_PAGES {
            if self.transferred(state) & !state.new_owner_wrote & bit(page) != 0 {
                actions.push(ErratumAction::NewOwnerWrites {
                    page: u8::try_from(page).unwrap_or(0),
                });
            }
        }
        // The hypervisor's steps last: liveness continuations take the last enabled step, so they
        // follow the hypervisor as far as it gets.
        match state.hypervisor {
            Hypervisor::NotEntered => actions.push(ErratumAction::Hypercall),
            Hypervisor::Running { next, failed } => {
                let at_call = self.steps(failed).get(usize::from(next))
                    == Some(&HypervisorStep::FirmwareCall);
                if at_call && self.config.failures && !failed {
                    actions.push(ErratumAction::FirmwareFails);
                }
                actions.push(ErratumAction::HypervisorStep);
            }
            Hypervisor::Waiting { .. } => {
                if self.targets_answered(state) {
                    actions.push(ErratumAction::BroadcastAcknowledged);
                }
                let stuck = (1..self.config.cpus).any(|cpu| {
                    let target = &state.cpus[cpu];
                    !target.acknowledged && target.masked && self.maskable()
                });
                let has_timeout = matches!(
                    self.config.mechanism,
                    SyncMechanism::Interrupts {
                        on_timeout: TimeoutPolicy::ProceedAnyway | TimeoutPolicy::FailTransition,
                        ..
                    }
                );
                if stuck && has_timeout {
                    actions.push(ErratumAction::Timeout);
                }
            }
            Hypervisor::Returned { .. } => {}
        }
    }

    fn next_state(&self, state: &ErratumState, action: &ErratumAction) -> ErratumState {
        let mut next = state.clone();
        match *action {
            ErratumAction::Issue { cpu, access } => {
                let this = &mut next.cpus[usize::from(cpu)];
                if let Some(slot) = this.in_flight.iter_mut().find(|slot| slot.is_none()) {
                    *slot = Some(access);
                    this.issued += 1;
                    this.in_flight.sort_unstable_by(slot_order);
                }
            }
            ErratumAction::Land { cpu, slot } => {
                self.land(&mut next, usize::from(cpu), usize::from(slot));
            }
            ErratumAction::Hypercall => self.advance(&mut next, 0, false),
            ErratumAction::HypervisorStep => {
                if let Hypervisor::Running { next: step, failed } = state.hypervisor {
                    self.hypervisor_step(&mut next, step, failed);
                }
            }
            ErratumAction::BroadcastAcknowledged => {
                if let Hypervisor::Waiting { call } = state.hypervisor {
                    self.advance(&mut next, call + 1, false);
                }
            }
            ErratumAction::FirmwareFails => {
                if let Hypervisor::Running { next: call, .. } = state.hypervisor {
                    // The caller's own DSB ran; the other CPUs' accesses may still be in flight.
                    self.land_all(&mut next, 0, u8::MAX);
                    self.advance(&mut next, call + 1, true);
                }
            }
            ErratumAction::Timeout => {
                if let Hypervisor::Waiting { call } = state.hypervisor {
                    let failed = matches!(
                        self.config.mechanism,
                        SyncMechanism::Interrupts {
                            on_timeout: TimeoutPolicy::FailTransition,
                            ..
                        }
                    );
                    for cpu in 1..self.config.cpus {
                        next.cpus[cpu].interrupt_pending = false;
                    }
                    self.advance(&mut next, call + 1, failed);
                }
            }
            ErratumAction::TakeInterrupt { cpu } => {
                let cpu = usize::from(cpu);
                next.cpus[cpu].interrupt_pending = false;
                self.land_all(&mut next, cpu, u8::MAX);
                next.cpus[cpu].acknowledged = true;
            }
            ErratumAction::MaskInterrupts { cpu } => next.cpus[usize::from(cpu)].masked = true,
            ErratumAction::NewOwnerWrites { page } => {
                next.new_owner_wrote |= bit(usize::from(page))
            }
        }
        next
    }

    fn violation(&self, state: &ErratumState) -> Option<String> {
        if state.broken.landed_after_transfer && self.config.properties == Properties::Both {
            return Some(
                "P1 broken: a host access issued under the host's mapping landed in a page after \
                 the page was transferred to its new owner"
                    .into(),
            );
        }
        if state.broken.read_new_owner_data {
            return Some("P2 broken: a host load returned data the new owner wrote".into());
        }
        if state.failure_not_rolled_back {
            return Some(
                "F broken: after a failed firmware call the tables do not give the host back \
                 every page and access it had, or the new owner kept one"
                    .into(),
            );
        }
        None
    }

    fn goal_reached(&self, state: &ErratumState) -> bool {
        match state.hypervisor {
            Hypervisor::Returned { failed: false } => self.transferred(state) != 0,
            // A failed call is an answer too (the host keeps its pages), when failures are allowed.
            Hypervisor::Returned { failed: true } => self.config.failures,
            _ => false,
        }
    }

    fn goal_description(&self) -> String {
        format!(
            "the hypercall returns with the pages transferred to {:?}",
            self.recording.new_owner
        )
    }

    fn lanes(&self) -> Vec<String> {
        let mut lanes: Vec<String> = (0..self.config.cpus)
            .map(|cpu| {
                if cpu == 0 {
                    "CPU0 (host, then EL2)".to_string()
                } else if self.config.unaffected & bit(cpu) != 0 {
                    format!("CPU{cpu} (host, unaffected)")
                } else {
                    format!("CPU{cpu} (host)")
                }
            })
            .collect();
        lanes.push(format!("{:?} (new owner)", self.recording.new_owner));
        lanes
    }

    fn describe(&self, state: &ErratumState, action: &ErratumAction) -> (usize, String) {
        let page_name = |page: u8| {
            let address = self
                .recording
                .pages
                .get(usize::from(page))
                .copied()
                .unwrap_or(0);
            format!("page {page} ({address:#x})")
        };
        match *action {
            ErratumAction::Issue { cpu, access } => (
                usize::from(cpu),
                format!(
                    "issues an SME {} to {} ({})",
                    kind_name(access.kind),
                    page_name(access.page),
                    match state.hypervisor {
                        Hypervisor::Running { .. } | Hypervisor::Waiting { .. } => {
                            "a TLB entry still translates it"
                        }
                        _ => "the host stage-2 maps it",
                    }
                ),
            ),
            ErratumAction::Land { cpu, slot } => {
                let access = state.cpus[usize::from(cpu)].in_flight[usize::from(slot)];
                let text = match access {
                    Some(access) => {
                        let owner = if self.transferred(state) & bit(usize::from(access.page)) != 0
                        {
                            "now owned by the new owner"
                        } else {
                            "still the host's"
                        };
                        format!(
                            "its SME {} to {} lands ({owner})",
                            kind_name(access.kind),
                            page_name(access.page)
                        )
                    }
                    None => "nothing lands".into(),
                };
                (usize::from(cpu), text)
            }
            ErratumAction::Hypercall => (0, "hypercall: enters EL2".into()),
            ErratumAction::HypervisorStep => {
                let text = match state.hypervisor {
                    Hypervisor::Running { next, failed } => self
                        .steps(failed)
                        .get(usize::from(next))
                        .map_or_else(|| "returns".into(), |step| self.step_text(step)),
                    _ => "(not running)".into(),
                };
                (0, text)
            }
            ErratumAction::BroadcastAcknowledged => (
                0,
                "every target acknowledged: the call returns success".into(),
            ),
            ErratumAction::FirmwareFails => (
                0,
                "SMC 0x81000010 fails (EL3 timed out): other CPUs' accesses may be in flight"
                    .into(),
            ),
            ErratumAction::Timeout => (
                0,
                match self.config.mechanism {
                    SyncMechanism::Interrupts {
                        on_timeout: TimeoutPolicy::FailTransition,
                        ..
                    } => "times out waiting: the call fails (the code rolls back)".into(),
                    _ => "times out waiting and carries on as if every CPU had answered".into(),
                },
            ),
            ErratumAction::TakeInterrupt { cpu } => (
                usize::from(cpu),
                "takes the interrupt: DSB (its accesses complete), acknowledges".into(),
            ),
            ErratumAction::MaskInterrupts { cpu } => (
                usize::from(cpu),
                "masks interrupts (PSTATE.I) and keeps them masked".into(),
            ),
            ErratumAction::NewOwnerWrites { page } => (
                self.config.cpus,
                format!("writes its secret to {}", page_name(page)),
            ),
        }
    }
}

impl ErratumModel {
    fn step_text(&self, step: &HypervisorStep) -> String {
        match step {
            HypervisorStep::Tlb(TlbEvent::InvalidateIpa { vmid, ipa, level }) => {
                format!("TLBI IPAS2E1IS vmid {} ipa {ipa:#x} level {level}", vmid.0)
            }
            HypervisorStep::Tlb(TlbEvent::InvalidateStage1ForVmid { vmid }) => {
                format!("TLBI VMALLE1IS vmid {}", vmid.0)
            }
            HypervisorStep::Tlb(TlbEvent::DsbInnerShareable) => match self.config.cpu_kind {
                CpuKind::Affected => {
                    "DSB ISH (affected C1-Pro: waits only for CPU0's own accesses)".into()
                }
                CpuKind::Correct => {
                    "DSB ISH (completes every access using the invalidated entries)".into()
                }
            },
            HypervisorStep::Tlb(TlbEvent::Isb) => "ISB".into(),
            HypervisorStep::ZeroPage(address) => format!("zeroes {address:#x}"),
            HypervisorStep::FirmwareCall => match self.config.mechanism {
                SyncMechanism::El3Rendezvous => {
                    "SMC 0x81000010: EL3 rendezvous, every CPU runs a DSB".into()
                }
                SyncMechanism::Interrupts { maskable: true, .. } => {
                    "sends IPIs to every other CPU and waits for each to run a DSB".into()
                }
                SyncMechanism::Interrupts {
                    maskable: false, ..
                } => "SMC 0x81000010: EL3 sends the Group 0 SGI (FIQ) to every other CPU, waits"
                    .into(),
            },
            HypervisorStep::Protection(ProtectionEvent::HostAccessRevoked { range }) => {
                format!("observe: host access revoked {range:#x?}")
            }
            HypervisorStep::Protection(ProtectionEvent::FirmwareDvmSyncDone) => {
                "observe: firmware DVMSync done".into()
            }
            HypervisorStep::Protection(ProtectionEvent::OwnershipTransferred { range, to }) => {
                format!("observe: ownership of {range:#x?} transferred to {to:?}")
            }
            HypervisorStep::Protection(ProtectionEvent::RolledBack { range }) => {
                format!("observe: rolled back {range:#x?}, the host keeps the pages")
            }
        }
    }
}

/// The mitigation the real code runs with for a variant: the firmware call is made whenever some
/// mechanism stands behind it.
pub fn mitigation_for(call_made: bool) -> ErratumMitigation {
    if call_made {
        ErratumMitigation::FirmwareDvmSync
    } else {
        ErratumMitigation::NotNeeded
    }
}
