//! What the rendezvous needs from the CPU and the interrupt controller, and the deadline type.

use crate::cpu_set::CpuSet;

/// Which accesses a `DSB` waits for (Arm ARM, *Data Synchronization Barrier*: the `<option>`'s
/// access-type part).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum BarrierKind {
    /// Loads and stores (`DSB SY`, `DSB ISH`, ...).
    Full,
    /// Stores only (`DSB ST`, `DSB ISHST`, ...): earlier loads may still be outstanding.
    StoresOnly,
    /// Loads only (`DSB LD`, `DSB ISHLD`, ...): earlier stores may still be outstanding.
    LoadsOnly,
}

/// For which observers a `DSB` waits (the `<option>`'s shareability domain).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum BarrierDomain {
    /// `SY`: every observer in the system.
    FullSystem,
    /// `OSH`: the outer shareable domain.
    OuterShareable,
    /// `ISH`: the inner shareable domain (every CPU of the system).
    InnerShareable,
    /// `NSH`: this PE only. The accesses complete for this CPU's own view; other CPUs and the new
    /// owner of a page are not waited for.
    NonShareable,
}

/// One `DSB <option>`: what it waits for, for which observers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Barrier {
    /// Which accesses.
    pub kind: BarrierKind,
    /// Which observers.
    pub domain: BarrierDomain,
}

impl Barrier {
    /// `DSB SY`.
    pub const SY: Self = Self::new(BarrierKind::Full, BarrierDomain::FullSystem);
    /// `DSB ST`.
    pub const ST: Self = Self::new(BarrierKind::StoresOnly, BarrierDomain::FullSystem);
    /// `DSB OSH`.
    pub const OSH: Self = Self::new(BarrierKind::Full, BarrierDomain::OuterShareable);
    /// `DSB ISH`.
    pub const ISH: Self = Self::new(BarrierKind::Full, BarrierDomain::InnerShareable);
    /// `DSB ISHST`.
    pub const ISHST: Self = Self::new(BarrierKind::StoresOnly, BarrierDomain::InnerShareable);
    /// `DSB NSH`.
    pub const NSH: Self = Self::new(BarrierKind::Full, BarrierDomain::NonShareable);

    /// `DSB` of `kind` for `domain`.
    #[inline]
    pub const fn new(kind: BarrierKind, domain: BarrierDomain) -> Self {
        Self { kind, domain }
    }

    /// Whether the barrier waits for this CPU's earlier loads to complete for the other CPUs
    /// (inner shareable domain or wider).
    #[inline]
    pub const fn completes_loads_for_other_cpus(self) -> bool {
        !matches!(self.kind, BarrierKind::StoresOnly)
            && !matches!(self.domain, BarrierDomain::NonShareable)
    }

    /// Whether the barrier waits for this CPU's earlier stores to complete (become visible) for the
    /// other CPUs (inner shareable domain or wider).
    #[inline]
    pub const fn completes_stores_for_other_cpus(self) -> bool {
        !matches!(self.kind, BarrierKind::LoadsOnly)
            && !matches!(self.domain, BarrierDomain::NonShareable)
    }

    /// The assembly mnemonic (`"dsb sy"`, `"dsb ishst"`, ...).
    #[inline]
    pub const fn mnemonic(self) -> &'static str {
        match (self.domain, self.kind) {
            (BarrierDomain::FullSystem, BarrierKind::Full) => "dsb sy",
            (BarrierDomain::FullSystem, BarrierKind::StoresOnly) => "dsb st",
            (BarrierDomain::FullSystem, BarrierKind::LoadsOnly) => "dsb ld",
            (BarrierDomain::OuterShareable, BarrierKind::Full) => "dsb osh",
            (BarrierDomain::OuterShareable, BarrierKind::StoresOnly) => "dsb oshst",
            (BarrierDomain::OuterShareable, BarrierKind::LoadsOnly) => "dsb oshld",
            (BarrierDomain::InnerShareable, BarrierKind::Full) => "dsb ish",
            (BarrierDomain::InnerShareable, BarrierKind::StoresOnly) => "dsb ishst",
            (BarrierDomain::InnerShareable, BarrierKind::LoadsOnly) => "dsb ishld",
            (BarrierDomain::NonShareable, BarrierKind::Full) => "dsb nsh",
            (BarrierDomain::NonShareable, BarrierKind::StoresOnly) => "dsb nshst",
            (BarrierDomain::NonShareable, BarrierKind::LoadsOnly) => "dsb nshld",
        }
    }

    /// Whether the barrier is strong enough for [`RendezvousPlatform::local_dsb`]: it completes
    /// this CPU's earlier loads and stores (its SME accesses among them) for every other CPU.
    #[inline]
    pub const fn suffices_as_local_barrier(self) -> bool {
        self.completes_loads_for_other_cpus() && self.completes_stores_for_other_cpus()
    }

    /// Whether the barrier is strong enough before the SGI ([`RendezvousPlatform::send_sgi`]):
    /// this CPU's earlier stores (the request counter) are visible to the targets before the
    /// `ICC_SGI0R_EL1` write.
    #[inline]
    pub const fn suffices_before_sgi(self) -> bool {
        self.completes_stores_for_other_cpus()
    }
}

/// The default of [`RendezvousPlatform::LOCAL_BARRIER`] (`DSB SY`): the model checker explores the
/// protocol with it, and with weaker ones to show they fail.
#[cfg(not(any(
    mutant = "rendezvous_local_barrier_ishst",
    mutant = "rendezvous_local_barrier_nsh"
)))]
pub const DEFAULT_LOCAL_BARRIER: Barrier = Barrier::SY;
/// Seeded bug: a stores-only local barrier (loads may still be in flight).
#[cfg(mutant = "rendezvous_local_barrier_ishst")]
pub const DEFAULT_LOCAL_BARRIER: Barrier = Barrier::ISHST;
/// Seeded bug: a local barrier for this PE only.
#[cfg(mutant = "rendezvous_local_barrier_nsh")]
pub const DEFAULT_LOCAL_BARRIER: Barrier = Barrier::NSH;

/// The default of [`RendezvousPlatform::SGI_PUBLISH_BARRIER`]: `DSB ISHST` before the SGI's
/// `ICC_SGI0R_EL1` write (`None` would be no barrier).
#[cfg(not(mutant = "rendezvous_no_sgi_barrier"))]
pub const DEFAULT_SGI_PUBLISH_BARRIER: Option<Barrier> = Some(Barrier::ISHST);
/// Seeded bug: no barrier before the SGI.
#[cfg(mutant = "rendezvous_no_sgi_barrier")]
pub const DEFAULT_SGI_PUBLISH_BARRIER: Option<Barrier> = None;

/// Platform actions of the rendezvous, each one step of a role.
///
/// The monitor implements this with a few instructions each; a model checker or a test with a
/// fake that logs events. Methods take `&mut self` so that fakes need no interior mutability.
pub trait RendezvousPlatform {
    /// The `DSB` that [`Self::local_dsb`] executes. It must complete this CPU's earlier loads
    /// and stores for the other CPUs ([`Barrier::suffices_as_local_barrier`]: `DSB SY`, `DSB OSH`
    /// or `DSB ISH`); the model checker gives each kind and domain its architectural effect.
    const LOCAL_BARRIER: Barrier = DEFAULT_LOCAL_BARRIER;

    /// The barrier [`Self::send_sgi`] executes before writing `ICC_SGI0R_EL1` (`None`: none). It
    /// must make this CPU's earlier stores visible to the targets
    /// ([`Barrier::suffices_before_sgi`]: `DSB ISHST` or stronger); otherwise the SGI may arrive
    /// before the new request counter and the target reads the old one.
    const SGI_PUBLISH_BARRIER: Option<Barrier> = DEFAULT_SGI_PUBLISH_BARRIER;

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

/// A platform whose actions do nothing and whose clock stands at 0: for steps that never reach an
/// action (joins at boot in a model checker) and for tests that play the other CPUs through the
/// shared memory themselves. The one such fake, shared by this crate's tests and the model checker.
#[derive(Clone, Copy, Debug, Default)]
pub struct SilentPlatform;

impl RendezvousPlatform for SilentPlatform {
    fn send_sgi<const WORDS: usize>(&mut self, _: &CpuSet<WORDS>) {}
    fn local_dsb(&mut self) {}
    fn send_event(&mut self) {}
    fn wait_for_event(&mut self) {}
    fn now(&mut self) -> u64 {
        0
    }
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
    fn barrier_table() {
        // (barrier, mnemonic, enough as the local barrier, enough before the SGI)
        let table = [
            (Barrier::SY, "dsb sy", true, true),
            (Barrier::OSH, "dsb osh", true, true),
            (Barrier::ISH, "dsb ish", true, true),
            (Barrier::ST, "dsb st", false, true),
            (Barrier::ISHST, "dsb ishst", false, true),
            (
                Barrier::new(BarrierKind::LoadsOnly, BarrierDomain::InnerShareable),
                "dsb ishld",
                false,
                false,
            ),
            (Barrier::NSH, "dsb nsh", false, false),
        ];
        for (barrier, mnemonic, local, before_sgi) in table {
            assert_eq!(barrier.mnemonic(), mnemonic);
            assert_eq!(barrier.suffices_as_local_barrier(), local, "{mnemonic}");
            assert_eq!(barrier.suffices_before_sgi(), before_sgi, "{mnemonic}");
        }
    }

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
