//! The monitor's statistics call (SiP range, owner 2): lets the QEMU tests and the demo see that the
//! rendezvous really ran on each CPU. Read-only and cheap; it reveals only counters.
//!
//! `0xC200_0010` (SMC64), x1 = dense CPU index → x0 = 0 (or -2 for a CPU that does not exist),
//! x1 = the last request number the CPU serviced, x2 = rendezvous SGIs it answered, x3 = rendezvous
//! SGIs sent by all CPUs.

use super::{Service, SmcCall, SmcReturn};
use abi::smccc::{FunctionId, Owner};

/// Function ID of the statistics call.
pub const RENDEZVOUS_STATISTICS: u32 = 0xC200_0010;
/// `INVALID_PARAMETERS`.
const INVALID_PARAMETERS: i32 = -2;

/// The statistics service.
pub struct Statistics;

impl Service for Statistics {
    fn owns(&self, function_id: FunctionId) -> bool {
        function_id.owner() == Owner::SiliconPartner
    }

    fn handle(&self, call: &SmcCall) -> SmcReturn {
        if call.function_id.value() != RENDEZVOUS_STATISTICS {
            return SmcReturn::one(super::SMC_UNKNOWN);
        }
        let cpu = usize::try_from(call.arguments[0]).unwrap_or(usize::MAX);
        match super::cpu::statistics(cpu) {
            Some(statistics) => SmcReturn::four([
                0,
                statistics.serviced,
                statistics.sgis_answered,
                statistics.sgis_sent,
            ]),
            None => SmcReturn::signed(INVALID_PARAMETERS),
        }
    }
}
