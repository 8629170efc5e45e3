//! The shared state of the rendezvous and its real implementation over `core::sync::atomic`.
//!
//! Shared state is one global request counter plus, per CPU, a "serviced" counter and a
//! [`CpuRecord`] (activity and affectedness). Each per-CPU location has a single writer: the CPU
//! itself (or the cold-boot CPU before that CPU first runs). The global counter is only ever
//! incremented with a read-modify-write.

use crate::sync::{AtomicU8, AtomicU64, Ordering, fence};
use core::cell::Cell;
use core::hash::{Hash, Hasher};

use crate::cpu_set::CpuIndex;

/// Whether a CPU currently takes part in rendezvous (it is sent the SGI and waited for).
/// (The discriminants are the bits of [`CpuRecord::to_bits`], so that decoding is a mask.)
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum Activity {
    /// Running (at any exception level); answers the SGI.
    Active = 0,
    /// Powered off (`CPU_OFF`, or never started).
    Off = 1,
    /// In a power-down `CPU_SUSPEND`; comes back through the warm-boot path.
    PowerDownSuspended = 2,
    /// In a standby/retention `CPU_SUSPEND` (`WFI` at EL3); must not be woken by the rendezvous.
    RetentionSuspended = 3,
}

/// How a CPU leaves the active set; the [`Activity`] it records.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Inactivity {
    /// `CPU_OFF`.
    Off,
    /// Power-down `CPU_SUSPEND`.
    PowerDownSuspended,
    /// Standby/retention `CPU_SUSPEND`.
    RetentionSuspended,
}

impl From<Inactivity> for Activity {
    #[inline]
    fn from(inactivity: Inactivity) -> Self {
        match inactivity {
            Inactivity::Off => Self::Off,
            Inactivity::PowerDownSuspended => Self::PowerDownSuspended,
            Inactivity::RetentionSuspended => Self::RetentionSuspended,
        }
    }
}

/// Whether a CPU has the erratum, as far as the monitor knows.
/// (The discriminants are the bits of [`CpuRecord::to_bits`].)
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum Affectedness {
    /// The CPU has not reported yet (never booted, not preset): treated as possibly affected
    /// when deciding whether the system needs the workaround at all.
    Unknown = 0,
    /// The CPU has the erratum: it is sent the SGI and waited for while active.
    Affected = 1,
    /// The CPU does not have the erratum: never sent the SGI, never waited for.
    Unaffected = 2,
}

impl Affectedness {
    /// `Affected` for `true`, `Unaffected` for `false`.
    #[inline]
    pub const fn from_affected(affected: bool) -> Self {
        if affected {
            Self::Affected
        } else {
            Self::Unaffected
        }
    }

    /// Whether the CPU may need the workaround (`Affected` or `Unknown`).
    #[inline]
    pub const fn may_be_affected(self) -> bool {
        !matches!(self, Self::Unaffected)
    }
}

/// A CPU's published state: read by callers with one access.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CpuRecord {
    /// Whether the CPU takes part in rendezvous now.
    pub activity: Activity,
    /// Whether it has the erratum.
    pub affectedness: Affectedness,
}

impl CpuRecord {
    /// The record of a CPU that has never run: off, affectedness unknown.
    pub const INITIAL: Self = Self {
        activity: Activity::Off,
        affectedness: Affectedness::Unknown,
    };

    /// Whether a caller must send this CPU the SGI and wait for it.
    #[inline]
    pub const fn needs_rendezvous(self) -> bool {
        matches!(self.activity, Activity::Active) && self.affectedness.may_be_affected()
    }

    /// Packs the record into one byte (bits 0-1 activity, bits 2-3 affectedness).
    #[inline]
    pub const fn to_bits(self) -> u8 {
        let activity = match self.activity {
            Activity::Active => 0,
            Activity::Off => 1,
            Activity::PowerDownSuspended => 2,
            Activity::RetentionSuspended => 3,
        };
        let affectedness = match self.affectedness {
            Affectedness::Unknown => 0,
            Affectedness::Affected => 1,
            Affectedness::Unaffected => 2,
        };
        activity | (affectedness << 2)
    }

    /// Unpacks [`Self::to_bits`]. Bits no writer produces decode to an active, possibly affected
    /// CPU: the answer that errs on the side of waiting.
    ///
    /// Callers decode a record per CPU on every request: the two fields are taken with one mask
    /// each and two-way selects, which compile to a few instructions without branches.
    #[inline]
    pub const fn from_bits(bits: u8) -> Self {
        if bits >> 4 != 0 {
            return Self {
                activity: Activity::Active,
                affectedness: Affectedness::Unknown,
            };
        }
        let activity = match bits & 0b11 {
            0 => Activity::Active,
            1 => Activity::Off,
            2 => Activity::PowerDownSuspended,
            _ => Activity::RetentionSuspended,
        };
        let affectedness = match (bits >> 2) & 0b11 {
            1 => Affectedness::Affected,
            2 => Affectedness::Unaffected,
            _ => Affectedness::Unknown,
        };
        Self {
            activity,
            affectedness,
        }
    }
}

/// The shared memory of the rendezvous. Every method except [`Self::cpu_count`] is exactly one
/// shared-memory access. Implementations must order a record store before any later load of the
/// same CPU, and the increment before any later load (store→load, see the crate docs'
/// *Orderings*), besides acquire loads and release stores.
///
/// A model checker implements this over its own state; firmware uses [`AtomicRendezvousMemory`].
/// Methods taking a [`CpuIndex`] are only called with indices below [`Self::cpu_count`] by this
/// crate's roles (their constructors check).
pub trait RendezvousMemory {
    /// Number of CPU slots (CPUs present on the platform). A constant, not a shared access.
    fn cpu_count(&self) -> usize;
    /// Reads the global request counter.
    fn load_request_counter(&self) -> u64;
    /// Atomically increments the global request counter; returns the new value (the request's
    /// number).
    fn increment_request_counter(&self) -> u64;
    /// Reads the last request number `cpu` has serviced.
    fn load_serviced(&self, cpu: CpuIndex) -> u64;
    /// Publishes the last request number `cpu` has serviced (only `cpu` itself calls this).
    fn store_serviced(&self, cpu: CpuIndex, request: u64);
    /// Reads `cpu`'s activity and affectedness.
    fn load_cpu_record(&self, cpu: CpuIndex) -> CpuRecord;
    /// Writes `cpu`'s activity and affectedness (only `cpu` itself, or the cold-boot CPU before
    /// `cpu` first runs).
    fn store_cpu_record(&self, cpu: CpuIndex, record: CpuRecord);
}

/// One CPU's slot, on its own cache line so that CPUs publishing do not disturb each other.
#[repr(C, align(64))]
#[derive(Debug)]
pub struct PerCpuSlot {
    serviced: AtomicU64,
    record: AtomicU8,
}

impl PerCpuSlot {
    /// A slot for a CPU that has never run.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            serviced: AtomicU64::new(0),
            record: AtomicU8::new(CpuRecord::INITIAL.to_bits()),
        }
    }

    /// A slot for a CPU that has never run (`loom`'s atomics have no `const` constructor).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            serviced: AtomicU64::new(0),
            record: AtomicU8::new(CpuRecord::INITIAL.to_bits()),
        }
    }
}

impl Default for PerCpuSlot {
    fn default() -> Self {
        Self::new()
    }
}

/// The global counter on its own cache line.
#[repr(C, align(64))]
#[derive(Debug)]
struct CounterSlot(AtomicU64);

/// Statically allocatable storage for up to `MAX_CPUS` CPUs, e.g.
/// `static RENDEZVOUS: RendezvousStorage<8> = RendezvousStorage::new();`.
#[derive(Debug)]
pub struct RendezvousStorage<const MAX_CPUS: usize> {
    request_counter: CounterSlot,
    cpus: [PerCpuSlot; MAX_CPUS],
}

impl<const MAX_CPUS: usize> RendezvousStorage<MAX_CPUS> {
    /// Storage with every CPU off and of unknown affectedness, counters at zero.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            request_counter: CounterSlot(AtomicU64::new(0)),
            cpus: [const { PerCpuSlot::new() }; MAX_CPUS],
        }
    }

    /// Storage with every CPU off and of unknown affectedness, counters at zero (`loom` build).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            request_counter: CounterSlot(AtomicU64::new(0)),
            cpus: core::array::from_fn(|_| PerCpuSlot::new()),
        }
    }

    /// A view of the first `cpu_count` slots (clamped to `MAX_CPUS`): the CPUs present.
    #[inline]
    pub fn memory(&self, cpu_count: usize) -> AtomicRendezvousMemory<'_> {
        let present = self.cpus.get(..cpu_count).unwrap_or(&self.cpus);
        AtomicRendezvousMemory::new(&self.request_counter.0, present)
    }
}

impl<const MAX_CPUS: usize> Default for RendezvousStorage<MAX_CPUS> {
    fn default() -> Self {
        Self::new()
    }
}

/// [`RendezvousMemory`] over atomics: acquire loads, release stores, an acquire-release increment,
/// and a `fence(SeqCst)` (`DMB ISH`) after the increment and after each record store, which give
/// the store→load order the protocol needs (the crate docs' *Orderings*).
///
/// The memory must be Normal cacheable (MMU on) for the exclusives of the read-modify-write.
#[derive(Clone, Copy, Debug)]
pub struct AtomicRendezvousMemory<'a> {
    request_counter: &'a AtomicU64,
    cpus: &'a [PerCpuSlot],
}

impl<'a> AtomicRendezvousMemory<'a> {
    /// A view over caller-provided storage: one slot per present CPU.
    #[inline]
    pub const fn new(request_counter: &'a AtomicU64, cpus: &'a [PerCpuSlot]) -> Self {
        Self {
            request_counter,
            cpus,
        }
    }
}

impl RendezvousMemory for AtomicRendezvousMemory<'_> {
    #[inline]
    fn cpu_count(&self) -> usize {
        self.cpus.len()
    }

    #[inline]
    fn load_request_counter(&self) -> u64 {
        self.request_counter.load(Ordering::Acquire)
    }

    #[inline]
    fn increment_request_counter(&self) -> u64 {
        let previous = self.request_counter.fetch_add(1, Ordering::AcqRel);
        // Dekker, caller's side: the increment is ordered before the records the caller reads
        // next (a leaving CPU has the matching fence after its record store). See the crate docs.
        #[cfg(not(mutant = "rendezvous_no_caller_fence"))]
        fence(Ordering::SeqCst);
        #[cfg(mutant = "rendezvous_increment_returns_old")]
        return previous;
        #[cfg(not(mutant = "rendezvous_increment_returns_old"))]
        previous.wrapping_add(1)
    }

    #[inline]
    fn load_serviced(&self, cpu: CpuIndex) -> u64 {
        // Out-of-range indices cannot come from the roles (their constructors check); reading 0
        // means "serviced nothing", which makes a caller wait rather than skip.
        self.cpus
            .get(cpu.get())
            .map_or(0, |slot| slot.serviced.load(Ordering::Acquire))
    }

    #[inline]
    fn store_serviced(&self, cpu: CpuIndex, request: u64) {
        if let Some(slot) = self.cpus.get(cpu.get()) {
            slot.serviced.store(request, Ordering::Release);
        }
    }

    #[inline]
    fn load_cpu_record(&self, cpu: CpuIndex) -> CpuRecord {
        self.cpus.get(cpu.get()).map_or(CpuRecord::INITIAL, |slot| {
            CpuRecord::from_bits(slot.record.load(Ordering::Acquire))
        })
    }

    #[inline]
    fn store_cpu_record(&self, cpu: CpuIndex, record: CpuRecord) {
        if let Some(slot) = self.cpus.get(cpu.get()) {
            slot.record.store(record.to_bits(), Ordering::Release);
            // Dekker, leaving/joining side: the record store is ordered before the counter read
            // that follows (the caller has the matching fence after its increment).
            #[cfg(not(mutant = "rendezvous_no_leave_fence"))]
            fence(Ordering::SeqCst);
        }
    }
}

/// Single-threaded [`RendezvousMemory`] as a plain value, for model checkers and simulations:
/// `Clone`, `Eq` and `Hash` compare the contents, so a copy of it can be part of an explored
/// state. Accesses are trivially sequentially consistent (one thread performs them in turn).
#[derive(Clone, Debug)]
pub struct CellRendezvousMemory<const MAX_CPUS: usize> {
    cpu_count: usize,
    request_counter: Cell<u64>,
    serviced: [Cell<u64>; MAX_CPUS],
    records: [Cell<CpuRecord>; MAX_CPUS],
}

impl<const MAX_CPUS: usize> CellRendezvousMemory<MAX_CPUS> {
    /// Memory for `cpu_count` CPUs (clamped to `MAX_CPUS`), all off, affectedness unknown.
    pub const fn new(cpu_count: usize) -> Self {
        Self {
            cpu_count: if cpu_count < MAX_CPUS {
                cpu_count
            } else {
                MAX_CPUS
            },
            request_counter: Cell::new(0),
            serviced: [const { Cell::new(0) }; MAX_CPUS],
            records: [const { Cell::new(CpuRecord::INITIAL) }; MAX_CPUS],
        }
    }

    /// The slot index of `cpu`, if present.
    fn present(&self, cpu: CpuIndex) -> Option<usize> {
        (cpu.get() < self.cpu_count).then_some(cpu.get())
    }

    /// The contents as plain values: (counter, serviced counters, records) of the present CPUs.
    pub fn contents(&self) -> (u64, impl Iterator<Item = (u64, CpuRecord)> + '_) {
        let present = self
            .serviced
            .iter()
            .zip(&self.records)
            .take(self.cpu_count)
            .map(|(serviced, record)| (serviced.get(), record.get()));
        (self.request_counter.get(), present)
    }
}

impl<const MAX_CPUS: usize> PartialEq for CellRendezvousMemory<MAX_CPUS> {
    fn eq(&self, other: &Self) -> bool {
        let (counter, cpus) = self.contents();
        let (other_counter, other_cpus) = other.contents();
        self.cpu_count == other.cpu_count && counter == other_counter && cpus.eq(other_cpus)
    }
}

impl<const MAX_CPUS: usize> Eq for CellRendezvousMemory<MAX_CPUS> {}

impl<const MAX_CPUS: usize> Hash for CellRendezvousMemory<MAX_CPUS> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (counter, cpus) = self.contents();
        self.cpu_count.hash(state);
        counter.hash(state);
        for cpu in cpus {
            cpu.hash(state);
        }
    }
}

impl<const MAX_CPUS: usize> RendezvousMemory for CellRendezvousMemory<MAX_CPUS> {
    fn cpu_count(&self) -> usize {
        self.cpu_count
    }

    fn load_request_counter(&self) -> u64 {
        self.request_counter.get()
    }

    fn increment_request_counter(&self) -> u64 {
        let request = self.request_counter.get().wrapping_add(1);
        self.request_counter.set(request);
        request
    }

    fn load_serviced(&self, cpu: CpuIndex) -> u64 {
        self.present(cpu)
            .and_then(|index| self.serviced.get(index))
            .map_or(0, Cell::get)
    }

    fn store_serviced(&self, cpu: CpuIndex, request: u64) {
        if let Some(serviced) = self.present(cpu).and_then(|index| self.serviced.get(index)) {
            serviced.set(request);
        }
    }

    fn load_cpu_record(&self, cpu: CpuIndex) -> CpuRecord {
        self.present(cpu)
            .and_then(|index| self.records.get(index))
            .map_or(CpuRecord::INITIAL, Cell::get)
    }

    fn store_cpu_record(&self, cpu: CpuIndex, record: CpuRecord) {
        if let Some(slot) = self.present(cpu).and_then(|index| self.records.get(index)) {
            slot.set(record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_bits_round_trip() {
        let activities = [
            Activity::Active,
            Activity::Off,
            Activity::PowerDownSuspended,
            Activity::RetentionSuspended,
        ];
        let affectednesses = [
            Affectedness::Unknown,
            Affectedness::Affected,
            Affectedness::Unaffected,
        ];
        for activity in activities {
            for affectedness in affectednesses {
                let record = CpuRecord {
                    activity,
                    affectedness,
                };
                assert_eq!(CpuRecord::from_bits(record.to_bits()), record);
            }
        }
    }

    #[test]
    fn garbage_bits_decode_to_waiting() {
        for bits in [0b1100, 0b1_0000, 0xFF] {
            assert!(CpuRecord::from_bits(bits).needs_rendezvous(), "{bits:#x}");
        }
    }

    #[test]
    fn storage_view_is_clamped_and_starts_off() {
        let storage = RendezvousStorage::<4>::new();
        assert_eq!(storage.memory(2).cpu_count(), 2);
        assert_eq!(storage.memory(9).cpu_count(), 4);
        let memory = storage.memory(4);
        assert_eq!(memory.load_cpu_record(CpuIndex::new(3)), CpuRecord::INITIAL);
        assert_eq!(memory.increment_request_counter(), 1);
        assert_eq!(memory.increment_request_counter(), 2);
        assert_eq!(memory.load_request_counter(), 2);
        memory.store_serviced(CpuIndex::new(1), 2);
        assert_eq!(memory.load_serviced(CpuIndex::new(1)), 2);
        assert_eq!(memory.load_serviced(CpuIndex::new(7)), 0, "out of range");
    }

    #[test]
    fn cell_memory_compares_contents() {
        let first = CellRendezvousMemory::<4>::new(3);
        let second = first.clone();
        assert_eq!(first, second);
        first.store_serviced(CpuIndex::new(2), 5);
        assert_ne!(first, second);
        second.store_serviced(CpuIndex::new(2), 5);
        assert_eq!(first, second);
        // Slots beyond the CPU count are not accessible.
        first.store_serviced(CpuIndex::new(3), 9);
        assert_eq!(first.load_serviced(CpuIndex::new(3)), 0);
        assert_eq!(first, second);
        assert_eq!(first.increment_request_counter(), 1);
        assert_ne!(first, second);
        assert_eq!(CellRendezvousMemory::<4>::new(9).cpu_count(), 4);
    }

    #[test]
    fn slots_do_not_share_cache_lines() {
        assert_eq!(core::mem::align_of::<PerCpuSlot>(), 64);
        assert_eq!(core::mem::size_of::<PerCpuSlot>(), 64);
    }
}
