//! The monitor's statistics call (SiP range, owner 2): lets the QEMU tests and the demo see that the
//! rendezvous really ran on each CPU. Read-only and cheap; it reveals only counters.
//!
//! Each takes x1 = dense CPU index and answers x0 = 0 (or -2 for a CPU that does not exist):
//! - `0xC200_0010` (SMC64): x1 = the last request number the CPU serviced, x2 = rendezvous SGIs it
//!   answered, x3 = rendezvous SGIs sent by all CPUs.
//! - `0xC200_0011`: the CPU as a caller of the erratum call: x1 = calls from EL1, x2 = calls from
//!   EL2, x3 = possibly affected CPUs its calls skipped because they were off or suspended.
//! - `0xC200_0012`: x1 = its calls that missed their deadline, x2 = its longest call in
//!   nanoseconds, x3 = rendezvous SGIs it sent.

use super::{Service, SmcCall, SmcReturn};

/// Function ID of the statistics call.
pub const RENDEZVOUS_STATISTICS: u32 = 0xC200_0010;
/// Function ID of the caller statistics call.
pub const CALLER_STATISTICS: u32 = 0xC200_0011;
/// Function ID of the deadline and wait statistics call.
pub const WAIT_STATISTICS: u32 = 0xC200_0012;
/// `INVALID_PARAMETERS`.
const INVALID_PARAMETERS: i32 = -2;

/// The statistics service.
pub struct Statistics;

impl Service for Statistics {
    fn handle(&self, call: &SmcCall) -> SmcReturn {
        let cpu = usize::try_from(call.arguments[0]).unwrap_or(usize::MAX);
        let values = match call.function_id.value() {
            RENDEZVOUS_STATISTICS => super::cpu::statistics(cpu).map(|statistics| {
                [
                    statistics.serviced,
                    statistics.sgis_answered,
                    statistics.sgis_sent,
                ]
            }),
            CALLER_STATISTICS => super::cpu::caller_statistics(cpu)
                .map(|caller| [caller.from_el1, caller.from_el2, caller.skipped_inactive]),
            WAIT_STATISTICS => super::cpu::caller_statistics(cpu).map(|caller| {
                [
                    caller.deadline_misses,
                    caller.longest_wait_ns,
                    super::cpu::sgis_sent_by(cpu),
                ]
            }),
            _ => return SmcReturn::one(super::SMC_UNKNOWN),
        };
        match values {
            Some([x1, x2, x3]) => SmcReturn::four([0, x1, x2, x3]),
            None => SmcReturn::signed(INVALID_PARAMETERS),
        }
    }
}
