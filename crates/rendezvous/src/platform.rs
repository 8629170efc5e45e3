//! What the rendezvous needs from the CPU and the interrupt controller, and the deadline type.

use crate::cpu_set::CpuSet;

/// Platform actions of the rendezvous, each one step of a role.
///
/// The monitor implements this with a few instructions each; a model checker or a test with a
/// fake that logs events. Methods take `&mut self` so that fakes need no interior mutability.
pub trait RendezvousPlatform {
    /// Sends the rendezvous Group 0 SGI to every CPU in `targets` (never empty, never the caller).
    ///
    /// Must first make all earlier stores of this CPU visible to the targets (`DSB ISHST` or
    /// stronger before writing `ICC_SGI0R_EL1`): a target reads the request counter after taking
    /// the interrupt and must see the new value. Grouping targets by affinity cluster is up to
    /// the implementation.
    fn send_sgi<const WORDS: usize>(&mut self, targets: &CpuSet<WORDS>);

    /// Completes every memory access this CPU issued before, at any exception level (`DSB SY`).
    ///
    /// When the implementation knows the accesses are already complete (e.g. it runs in the FIQ
    /// handler and `SCTLR_EL3.IESB` is set), it may do nothing.
    fn local_dsb(&mut self);

    /// Wakes every CPU waiting in [`Self::wait_for_event`] (`DSB ISH; SEV`): the barrier makes the
    /// store just published visible before the waiters look again.
    fn send_event(&mut self);

    /// Waits for an event (`WFE`). May return early (spuriously), and must return within a
    /// bounded time even without an event (e.g. timer event stream) so that the caller's deadline
    /// is seen; an implementation that simply returns (a busy poll) is correct too.
    fn wait_for_event(&mut self);

    /// A monotonic clock in the ticks the [`Deadline`] is expressed in (e.g. `CNTPCT_EL0`).
    fn now(&mut self) -> u64;
}

/// When a caller stops waiting, as an absolute clock tick of [`RendezvousPlatform::now`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Deadline {
    tick: u64,
}

impl Deadline {
    /// A deadline at clock tick `tick`.
    #[inline]
    pub const fn at(tick: u64) -> Self {
        Self { tick }
    }

    /// A deadline `ticks` after `now` (saturating: never wraps into the past).
    #[inline]
    pub const fn after(now: u64, ticks: u64) -> Self {
        Self {
            tick: now.saturating_add(ticks),
        }
    }

    /// A deadline that never expires.
    pub const NEVER: Self = Self { tick: u64::MAX };

    /// The tick at which the deadline expires.
    #[inline]
    pub const fn tick(self) -> u64 {
        self.tick
    }

    /// Whether the deadline has passed at clock value `now`.
    #[inline]
    pub const fn has_passed(self, now: u64) -> bool {
        self.tick != u64::MAX && now >= self.tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_table() {
        // (deadline, now, expected has_passed)
        let table = [
            (Deadline::after(10, 5), 14, false),
            (Deadline::after(10, 5), 15, true),
            (Deadline::after(u64::MAX - 1, 5), u64::MAX, false),
            (Deadline::NEVER, u64::MAX, false),
            (Deadline::at(0), 0, true),
        ];
        for (deadline, now, expected) in table {
            assert_eq!(deadline.has_passed(now), expected, "{deadline:?} at {now}");
        }
    }
}
