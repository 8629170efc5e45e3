//! The caller's role as one straight loop: what the monitor runs for `0x8100_0010`.
//!
//! [`CallerRole`] takes one step per call and keeps its state in an enum, which the model checker
//! needs (it interleaves steps of different CPUs) but which costs a jump-table dispatch per step
//! on the hot path. [`request_workaround_flat`] performs the same actions in the same order with
//! the same per-step functions (`scan_record`, `has_serviced`, `newer_request` in `roles`), its
//! state in local variables. `tests/differential.rs` runs both under the same random schedules
//! (responders, concurrent callers, CPUs leaving and joining, deadlines) and requires the same
//! action sequence, outcomes and memory.

use crate::cpu_set::{CpuIndex, CpuSet};
use crate::memory::RendezvousMemory;
use crate::outcome::{RendezvousError, WorkaroundOutcome};
use crate::platform::{Deadline, RendezvousPlatform};
use crate::roles::{CallerRole, has_serviced, newer_request, scan_record};

/// What a flat request did.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct FlatRequest<const WORDS: usize> {
    /// The request's outcome, as [`CallerRole`] would finish with.
    pub outcome: WorkaroundOutcome<WORDS>,
    /// The CPUs the SGI was sent to (counted during the scan, so that statistics need no
    /// population count).
    pub sgis_sent: u32,
}

/// Runs a workaround request by CPU `me` to completion: [`CallerRole`]'s actions in its order,
/// without the per-step dispatch.
///
/// Call with FIQs masked and no lock held, like [`crate::request_workaround`].
#[inline]
pub fn request_workaround_flat<M: RendezvousMemory, P: RendezvousPlatform, const WORDS: usize>(
    memory: &M,
    platform: &mut P,
    me: CpuIndex,
    deadline: Deadline,
) -> Result<FlatRequest<WORDS>, RendezvousError> {
    // The same checks as the role's (CPU in range, set large enough).
    CallerRole::<WORDS>::new(memory, me, deadline)?;
    let cpu_count = memory.cpu_count();
    // Increment.
    let request = memory.increment_request_counter();
    // Scan, in index order.
    let mut targets = CpuSet::<WORDS>::new();
    let mut sgis_sent = 0u32;
    let mut possibly_affected = false;
    for index in 0..cpu_count {
        let (targeted, may_be_affected) =
            scan_record(memory, me, CpuIndex::new(index), &mut targets);
        sgis_sent += u32::from(targeted);
        possibly_affected |= may_be_affected;
    }
    if !possibly_affected {
        return Ok(FlatRequest {
            outcome: WorkaroundOutcome::NotNeeded,
            sgis_sent: 0,
        });
    }
    // SendSgi (when there are targets), OwnDsb, OwnPublish, SendEvent.
    if sgis_sent != 0 {
        platform.send_sgi(&targets);
    }
    platform.local_dsb();
    memory.store_serviced(me, request);
    platform.send_event();
    // The waiting passes: `remaining` holds the targets not yet seen to answer, `next` the one
    // checked next, always the lowest in `remaining` (passes resume at the first silent CPU, as
    // the role's do).
    let mut remaining = targets;
    let mut published = request;
    let mut next = remaining.first_at_or_after(0);
    loop {
        // CheckServiced, from `next` up, until the first CPU that has not answered.
        let silent = loop {
            let Some(cpu) = next else {
                return Ok(FlatRequest {
                    outcome: WorkaroundOutcome::Done,
                    sgis_sent,
                });
            };
            if !has_serviced(memory, cpu, request) {
                break cpu;
            }
            // `cpu` is the lowest CPU in `remaining` (every CPU below it has been removed), so
            // the first one after it is the lowest left: no shift by `cpu`, no overflow check.
            remaining.remove(cpu);
            next = remaining.first_at_or_after(0);
        };
        // CheckOwnWork, and the catch-up (DSB, publish, event) for other callers' requests.
        if let Some(observed) = newer_request(memory, published) {
            platform.local_dsb();
            memory.store_serviced(me, observed);
            platform.send_event();
            published = observed;
        }
        // ReadClock.
        if deadline.has_passed(platform.now()) {
            return Ok(FlatRequest {
                outcome: WorkaroundOutcome::Timeout {
                    unanswered: remaining,
                },
                sgis_sent,
            });
        }
        // WaitForEvent; the next pass starts at the lowest remaining CPU, which is `silent`
        // (every CPU below it has been removed).
        platform.wait_for_event();
        next = Some(silent);
    }
}
