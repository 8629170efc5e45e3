//! EL3 rendezvous for Arm erratum 4193714 ("SME DVMSync early acknowledgement", CVE-2026-0995).
//!
//! When a CPU calls function `0x81000010`, every *active affected* CPU must execute a local `DSB`
//! after the request and before the caller returns, so that SME accesses it issued under a stale
//! translation are complete before the hypervisor hands the page over. This crate is the logic of
//! that call, independent of the hardware: the monitor drives it from its SMC handler, its FIQ
//! handler and its PSCI power paths; the model checker drives the very same state machines one
//! shared-memory access at a time.
//!
//! # Who calls what
//!
//! | Monitor path | Call | Notes |
//! |---|---|---|
//! | Cold boot, hold pen (each CPU, or the boot CPU for all) | [`record_affectedness`] | While the CPU is off |
//! | First boot, `CPU_ON` warm boot, wake from either suspend | [`join_active_set`] | After the CPU's GIC interface takes the Group 0 SGI; before any lower-EL code |
//! | SMC `0x81000010` | [`request_workaround`] | FIQs masked, no lock held; x0 = [`WorkaroundOutcome::to_x0`] |
//! | FIQ for the rendezvous SGI | [`handle_sgi`] | After acknowledging the interrupt (`ICC_IAR0_EL1`) |
//! | `CPU_OFF`, power-down `CPU_SUSPEND` | [`leave_active_set`] | Last thing before powering down |
//! | Standby/retention `CPU_SUSPEND` | [`leave_active_set`] then `WFI` then [`join_active_set`] | Not woken by callers |
//!
//! # Example: the monitor's glue
//!
//! ```
//! use rendezvous::{
//!     CpuIndex, CpuSet, Deadline, Inactivity, RendezvousPlatform, RendezvousStorage,
//!     WorkaroundOutcome, handle_sgi, join_active_set, leave_active_set, request_workaround,
//! };
//!
//! /// Most CPUs the monitor supports; `CpuSet<WORDS>` must hold them (64 per word).
//! const MAX_CPUS: usize = 8;
//! const WORDS: usize = MAX_CPUS.div_ceil(64);
//! static RENDEZVOUS: RendezvousStorage<MAX_CPUS> = RendezvousStorage::new();
//!
//! /// The monitor's platform: a few instructions per method (stubs here).
//! struct El3Platform;
//! impl RendezvousPlatform for El3Platform {
//!     fn send_sgi<const N: usize>(&mut self, targets: &CpuSet<N>) {
//!         // DSB ISHST, then one ICC_SGI0R_EL1 write per affinity cluster of `targets`; ISB.
//!         let _ = targets;
//!     }
//!     fn local_dsb(&mut self) { /* DSB SY */ }
//!     fn send_event(&mut self) { /* DSB ISH; SEV */ }
//!     fn wait_for_event(&mut self) { /* WFE (timer event stream enabled) */ }
//!     fn now(&mut self) -> u64 { 0 /* CNTPCT_EL0 */ }
//! }
//!
//! let cpu_count = 1; // CPUs present, found at cold boot
//! let memory = RENDEZVOUS.memory(cpu_count);
//! let me = CpuIndex::new(0); // from MPIDR_EL1
//! let mut platform = El3Platform;
//!
//! // Boot or warm boot, GIC CPU interface ready, before entering the lower EL:
//! join_active_set(&memory, &mut platform, me, true).unwrap();
//!
//! // SMC 0x81000010 (FIQs masked): x0 = outcome, or SMC_UNK on a configuration error.
//! let deadline = Deadline::after(platform.now(), 10_000);
//! let outcome = request_workaround::<_, _, WORDS>(&memory, &mut platform, me, deadline);
//! assert_eq!(outcome, Ok(WorkaroundOutcome::Done));
//! assert_eq!(outcome.map_or(u64::MAX, |outcome| outcome.to_x0()), 0);
//!
//! // FIQ handler, after reading ICC_IAR0_EL1 and seeing the rendezvous SGI:
//! handle_sgi(&memory, &mut platform, me).unwrap();
//!
//! // CPU_OFF, as the last thing before powering down:
//! leave_active_set(&memory, &mut platform, me, Inactivity::Off).unwrap();
//! ```
//!
//! # Shared state
//!
//! Through [`RendezvousMemory`] (real implementation: [`AtomicRendezvousMemory`] over a
//! [`RendezvousStorage`], acquire/release plus two fences, see *Orderings*; for model checkers: [`CellRendezvousMemory`], a plain
//! value that can be hashed and compared):
//! - `counter`: the global request counter; a caller increments it and its new value `R` is the
//!   request's number.
//! - `serviced[c]`: the highest counter value CPU `c` has *serviced*, i.e. it read the counter at
//!   that value or later and then executed a DSB. Written only by `c`; it never decreases.
//! - `record[c]`: [`Activity`] (active, off, power-down suspended, retention suspended) and
//!   [`Affectedness`] of `c`, in one word. Written only by `c` (or the boot CPU before `c` runs).
//!
//! Platform actions go through [`RendezvousPlatform`]: send the SGI to a [`CpuSet`], local DSB,
//! send event (`DSB; SEV`), wait for event (`WFE`), read the clock.
//!
//! # The protocol
//!
//! - **Caller** (CPU `m`): `R = ++counter`; read every `record[c]`; targets = active, possibly
//!   affected CPUs other than `m`; if no CPU (including `m`) is or may be affected, return
//!   `NotNeeded` (no SGI, no wait). Otherwise send the SGI to the targets, run its own DSB,
//!   publish `serviced[m] = R`, send an event, then loop: check the targets in index order,
//!   dropping each with `serviced[c] >= R`; when none remain return `Done`; at the first that has
//!   not answered, stop the pass (the caller must wait for that CPU anyway, and the next pass
//!   resumes there), read `counter` and if it moved past what `m` published, run a DSB and
//!   publish it (this is how a waiting caller, FIQs masked, services *other* callers: concurrent
//!   callers cannot deadlock), read the clock and give up with `Timeout { unanswered }` past the
//!   deadline, else wait for an event.
//! - **Responder** (FIQ handler): read `counter` as `G`; DSB; `serviced[me] = G`; send event.
//! - **Leave** (`CPU_OFF`, either `CPU_SUSPEND`): DSB; store the inactive record; then service
//!   (read `counter`, DSB, publish, send event).
//! - **Join** (power-on, wake): store the active record; then service. The service's DSB runs
//!   before any lower-EL code; a request the read missed is answered through the SGI, which is
//!   pending by the time the CPU returns to a lower EL.
//!
//! # State diagrams
//!
//! ```text
//! Caller:
//!  Increment ─► Scan(cpu 0 .. n-1) ──(no CPU may be affected)──────────────► Finished(NotNeeded)
//!                 │ targets ≠ ∅             │ targets = ∅
//!                 ▼                         │
//!              SendSgi ─► OwnDsb ◄──────────┘
//!                           ▼
//!                        OwnPublish ─► SendEvent ──(targets = ∅)─────────────► Finished(Done)
//!                                         │
//!                                         ▼
//!        ┌──────────────────────► CheckServiced (lowest remaining CPU; ──(none left)─► Finished(Done)
//!        │                          answered: next one)
//!        │                                │ not answered
//!        │                                ▼
//!        │                          CheckOwnWork ──(counter > published)─► CatchUpDsb
//!        │                                │ no                                 ▼
//!        │                                │                              CatchUpPublish
//!        │                                ▼                                    ▼
//!        └──── WaitForEvent ◄────── ReadClock ◄──────────────────────── CatchUpSendEvent
//!                                         │ deadline passed
//!                                         ▼
//!                                 Finished(Timeout { unanswered })
//!
//! Responder:  ReadCounter ─► Dsb ─► Publish ─► SendEvent ─► Finished
//! Leave:      ReadOwnRecord ─► Dsb ─► StoreInactive ─► (Responder's four steps) ─► Finished
//! Join:       StoreActive ─► (Responder's four steps) ─► Finished
//!
//! A CPU's record:
//!   Off ──join──► Active ──leave(Off)────────────► Off
//!                 Active ──leave(PowerDown)──────► PowerDownSuspended ──join (warm boot)──► Active
//!                 Active ──leave(Retention)──────► RetentionSuspended ──join (after WFI)──► Active
//! ```
//!
//! # The property, and why it holds
//!
//! Say CPU `c` is *exposed* at request `R` if, at the moment `R` is numbered (the increment), `c`
//! has run lower-EL code since its last DSB: it may have accesses in flight issued under the
//! translation the caller just invalidated. **Property:** when a caller returns `Done` for `R`,
//! every affected CPU exposed at `R` has executed a DSB after the increment. (Accesses completed
//! before the increment are harmless; accesses issued after it use the new translation, since the
//! caller's `TLBI; DSB` precede its SMC.)
//!
//! This is deliberately not "every CPU whose record was active at the request ran a DSB after
//! it": a CPU that is in EL3 between its leave DSB and its inactive store is active but not
//! exposed, and needs no second DSB; conversely a protocol that stores the inactive record
//! *before* its DSB satisfies that weaker wording while letting a caller skip a CPU whose accesses
//! are still in flight. Model checkers should check exposure.
//!
//! Two invariants carry the argument:
//! - **I1 (exposure only while active).** Lower-EL code runs only after a completed join, and a
//!   leave runs its DSB before it stores the inactive record, with no lower-EL code in between.
//!   So a CPU whose record is not `Active` is never exposed, and a CPU exposed at `R` has its
//!   record `Active` at the increment.
//! - **I2 (publication means a DSB after the read).** `serviced[c] = v` is stored only after `c`
//!   read `counter >= v` and then executed a DSB (every role: read, DSB, publish; the caller
//!   publishes its own `R` after its DSB, and `R` is its own increment).
//!
//! Take an affected CPU `c` exposed at `R`. The caller reads `record[c]` after its increment.
//! - It reads `Active`: `c` is a target and the caller returns `Done` only after reading
//!   `serviced[c] >= R`. By I2, `c` read `counter >= R` (so after the increment) and then ran a
//!   DSB, before that publication.
//! - It reads an inactive record: by I1 the record was `Active` at the increment, so the inactive
//!   store came after it; the leave DSB precedes that store and follows `c`'s last lower-EL code,
//!   and since `c` was still exposed at the increment, that DSB came after the increment.
//!
//! **Orderings (C11/Rust, and the Arm instructions they become).** [`AtomicRendezvousMemory`]
//! loads are `Acquire` (`LDAR`, or `LDAPR` with `+rcpc`), stores `Release` (`STLR`), the increment
//! an `AcqRel` read-modify-write (`LDADDAL`, or an `LDAXR`/`STLXR` loop), and two
//! `fence(SeqCst)` (`DMB ISH`) carry the one store→load order the protocol needs: after the
//! caller's increment, and after every record store. The DSB is a full barrier, so the inactive
//! store cannot become visible before the leave DSB completed. Safety needs only that (and I2's
//! read → DSB → store order in each role). *Liveness* needs the store→load order (a Dekker
//! pattern): a leaving CPU stores its record, fences, then reads the counter; a caller increments
//! the counter, fences, then reads the record. By the C11 fence rule one of the two reads sees
//! the other's store: either the caller reads the inactive record (and does not wait), or the
//! leaving CPU reads `counter >= R` and publishes it. The argument rests on the fences, not on
//! `LDAR`/`STLR` being RCsc: with `+rcpc` (`LDAPR`) it still holds. Release/acquire alone would
//! not do (each side may read the other's old value); `tests/loom.rs` explores this memory under
//! the C11 model with `loom` and fails when either fence is removed.
//! A joining CPU that the caller already sees `Active` but that read an older counter answers
//! through the SGI, pending since the caller sent it after the read; the SGI write is ordered after
//! the increment by the `DSB ISHST` that [`RendezvousPlatform::send_sgi`] requires, and the
//! responder reads the counter after acknowledging, so it sees `R`. The `DSB` in
//! [`RendezvousPlatform::send_event`] makes a publication visible before waiters look again, and
//! `WFE` keeps a `SEV` that comes between a waiter's last check and its `WFE`, so no wake-up is
//! lost.
//!
//! **No deadlock.** Every active affected CPU answers within bounded time: at a lower EL it takes
//! the FIQ (EL1/EL2 cannot mask it); in the FIQ handler it is answering; as a caller it services
//! newer requests in its wait loop (it is woken by the new caller's `SEV`); in a leave or join it
//! services after its record store (Dekker above). This needs the monitor never to wait in EL3 with
//! FIQs masked anywhere else (no lock held across these calls).
//!
//! # Decisions
//!
//! - **One deadline per request**, absolute ([`Deadline`]), checked once per waiting round; a
//!   round runs after every event, so the deadline is seen as soon as
//!   [`RendezvousPlatform::wait_for_event`] returns.
//! - **The SGI is not re-sent** while waiting. A GICv3 SGI stays pending at its target until
//!   acknowledged, and the responder reads the counter after acknowledging, so one SGI sent after
//!   the increment is enough; an SGI that arrives while the target is already answering becomes
//!   pending again and is taken after `EOI`. A re-send could only add interrupts.
//! - **Unknown affectedness counts as possibly affected** when deciding `NotNeeded`: a CPU that
//!   has never booted may be affected, so the call answers `Done` (safe, slower) until every
//!   present CPU has been recorded unaffected (by [`record_affectedness`] or its first join).
//! - The caller always runs its own DSB, affected or not.
//! - **A waiting pass stops at the first silent CPU.** Checking the CPUs above it cannot end the
//!   wait sooner, so each target's counter is read about once per call rather than once per
//!   pass; the price is that a `Timeout` may name CPUs above the first silent one that had in
//!   fact answered (the monitor prints each named CPU's counter).
//!
//! # Cost: the caller as one flat loop, checked against the role
//!
//! The model checker explores the roles step by step; on the hot path that stepping costs a
//! jump-table dispatch per step. The monitor therefore runs [`request_workaround_flat`] for the
//! caller: the same actions in the same order, built from the same per-step functions as
//! [`CallerRole::step`] (the scan of one record, the check of one serviced counter, the check for
//! newer requests), with its state in local variables; it also counts the CPUs it sends the SGI
//! to, so that statistics need no population count. `tests/differential.rs` runs both under
//! thousands of random schedules (responders, concurrent callers, CPUs leaving and joining,
//! deadlines that expire) and requires the same action sequence, outcomes and memory. The
//! responder, leave and join run the roles themselves ([`handle_sgi`] takes its
//! [`ServiceState::STEPS`] steps in a counted loop, which the compiler unrolls, so the FIQ
//! handler runs without any dispatch). Figures: `cargo xtask bench --profile` and
//! `docs/results.md`.
//!
//! # How it is tested
//!
//! On the host, with the real roles: scripted interleavings for each scenario
//! (`tests/scripted.rs`); thousands of random schedules of 3-4 CPUs at single-step granularity
//! with a drain phase that detects deadlock (`tests/random_schedules.rs`); every interleaving of
//! small bounds, explored exhaustively over [`CellRendezvousMemory`] (`tests/exhaustive.rs`);
//! real threads over the real atomics (`tests/threads.rs`); the flat caller against the role
//! (`tests/differential.rs`). The simulators check the exposure
//! property above, and that each step performs exactly the one action it reports. Negative
//! tests show the checks bite: memory that makes callers skip the wait or ignore activity, and a
//! leave that stores its inactive record before its DSB, are each caught.
//!
//! # Known limits
//!
//! - Each call reads every present CPU's record: cost grows with the CPUs present (not with a
//!   fixed 64), one load each; a shared active set would need read-modify-writes on shared words
//!   at every power transition instead.
//! - `NotNeeded` still increments the counter (no SGI, no DSB by others); only discovery calls hit
//!   it.
//! - Entry to a Secure-world payload is not a leave (there is none in this monitor); a future
//!   S-EL1 payload needs leave/join around world switches, as TF-A does.
//! - In the race window of a standby suspend (a caller read `Active` just before the CPU stored
//!   `RetentionSuspended`), the SGI wakes the `WFI` once; the leave has already answered.
//! - A CPU that hangs in EL3 with FIQs masked (outside these roles) makes callers time out.
#![cfg_attr(not(any(test, loom)), no_std)]
#![forbid(unsafe_code)]

mod cpu_set;
mod flat;
mod memory;
mod outcome;
mod platform;
mod roles;
mod service;
mod sync;

pub use cpu_set::{CpuIndex, CpuSet, CpuSetIter};
pub use flat::{FlatRequest, request_workaround_flat};
pub use memory::{
    Activity, Affectedness, AtomicRendezvousMemory, CellRendezvousMemory, CpuRecord, Inactivity,
    PerCpuSlot, RendezvousMemory, RendezvousStorage,
};
pub use outcome::{
    Action, Progress, RendezvousError, SMC_DENIED, SMC_SUCCESS, SMC_UNKNOWN, WorkaroundOutcome,
};
pub use platform::{
    Barrier, BarrierDomain, BarrierKind, DEFAULT_LOCAL_BARRIER, DEFAULT_SGI_PUBLISH_BARRIER,
    Deadline, RendezvousPlatform, SilentPlatform,
};
pub use roles::{
    CallerRole, CallerState, JoinRole, JoinState, LeaveRole, LeaveState, ResponderRole,
};
pub use service::ServiceState;

/// Runs a workaround request by CPU `me` to completion (the SMC `0x81000010` handler).
///
/// Call with FIQs masked and no lock held; answer the SMC with the outcome's
/// [`WorkaroundOutcome::to_x0`], and an error with `SMC_UNK`.
#[inline]
pub fn request_workaround<M: RendezvousMemory, P: RendezvousPlatform, const WORDS: usize>(
    memory: &M,
    platform: &mut P,
    me: CpuIndex,
    deadline: Deadline,
) -> Result<WorkaroundOutcome<WORDS>, RendezvousError> {
    let mut role = CallerRole::<WORDS>::new(memory, me, deadline)?;
    loop {
        if let Progress::Finished(outcome) = role.step(memory, platform) {
            return Ok(outcome);
        }
    }
}

/// Answers the rendezvous SGI on CPU `me` (the FIQ handler, after acknowledging the interrupt).
#[inline]
pub fn handle_sgi<M: RendezvousMemory, P: RendezvousPlatform>(
    memory: &M,
    platform: &mut P,
    me: CpuIndex,
) -> Result<(), RendezvousError> {
    let mut role = ResponderRole::new(memory, me)?;
    // Servicing always takes `ServiceState::STEPS` steps. A counted loop is unrolled by the
    // compiler, which then sees each state as a constant and drops the dispatch on it: the FIQ
    // handler runs the four actions straight. The loop after it only finishes the role.
    for _ in 0..ServiceState::STEPS {
        role.step(memory, platform);
    }
    while let Progress::Ran(_) = role.step(memory, platform) {}
    Ok(())
}

/// Takes CPU `me` out of the active set (`CPU_OFF`, either kind of `CPU_SUSPEND`): callers stop
/// sending it the SGI and waiting for it. Runs its DSB first.
#[inline]
pub fn leave_active_set<M: RendezvousMemory, P: RendezvousPlatform>(
    memory: &M,
    platform: &mut P,
    me: CpuIndex,
    inactivity: Inactivity,
) -> Result<(), RendezvousError> {
    let mut role = LeaveRole::new(memory, me, inactivity)?;
    while let Progress::Ran(_) = role.step(memory, platform) {}
    Ok(())
}

/// Puts CPU `me` (which has the erratum if `affected`) into the active set, and runs its DSB.
///
/// Call once the CPU's GIC interface accepts the Group 0 SGI, and before any lower-EL code runs.
#[inline]
pub fn join_active_set<M: RendezvousMemory, P: RendezvousPlatform>(
    memory: &M,
    platform: &mut P,
    me: CpuIndex,
    affected: bool,
) -> Result<(), RendezvousError> {
    let mut role = JoinRole::new(memory, me, affected)?;
    while let Progress::Ran(_) = role.step(memory, platform) {}
    Ok(())
}

/// Records whether `cpu` has the erratum while it is still off (cold boot: by the CPU itself in
/// the hold pen, or by the boot CPU for all CPUs when the platform knows), so that the first
/// request can answer `NotNeeded` on a system without affected CPUs.
pub fn record_affectedness<M: RendezvousMemory>(
    memory: &M,
    cpu: CpuIndex,
    affected: bool,
) -> Result<(), RendezvousError> {
    let cpu_count = memory.cpu_count();
    if cpu.get() >= cpu_count {
        return Err(RendezvousError::CpuOutOfRange { cpu, cpu_count });
    }
    if memory.load_cpu_record(cpu).activity == Activity::Active {
        return Err(RendezvousError::CpuActive { cpu });
    }
    memory.store_cpu_record(
        cpu,
        CpuRecord {
            activity: Activity::Off,
            affectedness: Affectedness::from_affected(affected),
        },
    );
    Ok(())
}
