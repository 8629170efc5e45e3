//! CPU indices and fixed-capacity CPU sets.
//!
//! A [`CpuSet`] is a bitmap over `WORDS` 64-bit words, so its capacity (`64 * WORDS`) is chosen by
//! the platform, not fixed at 64. Walking a set costs one step per set bit plus one per word, never a
//! scan of every possible bit.

use core::fmt;

/// The linear index of a CPU (0 ..= `cpu_count - 1`), as the monitor numbers its cores.
///
/// The mapping from MPIDR affinity to this index is the monitor's business.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct CpuIndex(usize);

impl CpuIndex {
    /// Wraps a linear CPU index.
    #[inline]
    pub const fn new(index: usize) -> Self {
        Self(index)
    }

    /// The linear index.
    #[inline]
    pub const fn get(self) -> usize {
        self.0
    }
}

impl fmt::Display for CpuIndex {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "cpu{}", self.0)
    }
}

/// Bits per bitmap word.
const WORD_BITS: usize = 64;

/// A set of CPUs stored as a bitmap of `WORDS` 64-bit words (capacity `64 * WORDS` CPUs).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuSet<const WORDS: usize> {
    words: [u64; WORDS],
}

impl<const WORDS: usize> CpuSet<WORDS> {
    /// How many CPUs the set can hold.
    pub const CAPACITY: usize = WORDS * WORD_BITS;

    /// The empty set.
    #[inline]
    pub const fn new() -> Self {
        Self { words: [0; WORDS] }
    }

    /// Adds `cpu`; returns `false` (and changes nothing) when `cpu` is beyond the capacity.
    #[inline]
    pub fn insert(&mut self, cpu: CpuIndex) -> bool {
        match self.words.get_mut(cpu.0 / WORD_BITS) {
            Some(word) => {
                *word |= 1 << (cpu.0 % WORD_BITS);
                true
            }
            None => false,
        }
    }

    /// Removes `cpu` (no effect when absent or beyond the capacity).
    #[inline]
    pub fn remove(&mut self, cpu: CpuIndex) {
        if let Some(word) = self.words.get_mut(cpu.0 / WORD_BITS) {
            *word &= !(1 << (cpu.0 % WORD_BITS));
        }
    }

    /// Whether `cpu` is in the set.
    #[inline]
    pub fn contains(&self, cpu: CpuIndex) -> bool {
        self.words
            .get(cpu.0 / WORD_BITS)
            .is_some_and(|word| word & (1 << (cpu.0 % WORD_BITS)) != 0)
    }

    /// Whether the set is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|word| *word == 0)
    }

    /// The number of CPUs in the set.
    #[inline]
    pub fn len(&self) -> usize {
        self.words
            .iter()
            .map(|word| usize::try_from(word.count_ones()).unwrap_or(WORD_BITS))
            .sum()
    }

    /// The lowest CPU in the set whose index is `from` or more.
    #[inline]
    pub fn first_at_or_after(&self, from: usize) -> Option<CpuIndex> {
        let mut word_index = from / WORD_BITS;
        let first_word = self.words.get(word_index)?;
        // Drop the bits below `from` in the first word.
        #[cfg(not(mutant = "cpu_set_mask_by_cpu_number"))]
        let mut bits = first_word & (u64::MAX << (from % WORD_BITS));
        // Seeded bug: the mask shifts by the CPU number, not its bit in the word, so a search
        // that starts inside a later word skips that word.
        #[cfg(mutant = "cpu_set_mask_by_cpu_number")]
        let mut bits = first_word
            & u64::MAX
                .checked_shl(u32::try_from(from).unwrap_or(u32::MAX))
                .unwrap_or(0);
        loop {
            if bits != 0 {
                let bit = usize::try_from(bits.trailing_zeros()).unwrap_or(0);
                return Some(CpuIndex(word_index * WORD_BITS + bit));
            }
            word_index += 1;
            bits = *self.words.get(word_index)?;
        }
    }

    /// The CPUs of the set in increasing index order.
    #[inline]
    pub fn iter(&self) -> CpuSetIter<'_, WORDS> {
        CpuSetIter { set: self, next: 0 }
    }

    /// The raw bitmap: bit `i % 64` of word `i / 64` is CPU `i` (for building GIC target lists).
    #[inline]
    pub const fn words(&self) -> &[u64; WORDS] {
        &self.words
    }
}

impl<const WORDS: usize> Default for CpuSet<WORDS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const WORDS: usize> fmt::Debug for CpuSet<WORDS> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_set()
            .entries(self.iter().map(CpuIndex::get))
            .finish()
    }
}

impl<const WORDS: usize> FromIterator<CpuIndex> for CpuSet<WORDS> {
    /// Collects CPUs; those beyond the capacity are dropped.
    fn from_iter<I: IntoIterator<Item = CpuIndex>>(cpus: I) -> Self {
        let mut set = Self::new();
        for cpu in cpus {
            set.insert(cpu);
        }
        set
    }
}

/// Iterator over the members of a [`CpuSet`], lowest index first.
#[derive(Clone, Debug)]
pub struct CpuSetIter<'a, const WORDS: usize> {
    set: &'a CpuSet<WORDS>,
    next: usize,
}

impl<const WORDS: usize> Iterator for CpuSetIter<'_, WORDS> {
    type Item = CpuIndex;

    #[inline]
    fn next(&mut self) -> Option<CpuIndex> {
        let cpu = self.set.first_at_or_after(self.next)?;
        self.next = cpu.0 + 1;
        Some(cpu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_contains_across_words() {
        let mut set = CpuSet::<3>::new();
        for index in [0, 63, 64, 130, 191] {
            assert!(set.insert(CpuIndex::new(index)));
        }
        assert!(!set.insert(CpuIndex::new(192)), "beyond capacity");
        assert_eq!(set.len(), 5);
        assert!(set.contains(CpuIndex::new(64)));
        assert!(!set.contains(CpuIndex::new(65)));
        assert!(!set.contains(CpuIndex::new(500)));
        set.remove(CpuIndex::new(64));
        assert!(!set.contains(CpuIndex::new(64)));
        let members: Vec<usize> = set.iter().map(CpuIndex::get).collect();
        assert_eq!(members, [0, 63, 130, 191]);
    }

    #[test]
    fn first_at_or_after_table() {
        let set: CpuSet<2> = [1, 5, 64, 127].map(CpuIndex::new).into_iter().collect();
        // (from, expected)
        let table = [
            (0, Some(1)),
            (1, Some(1)),
            (2, Some(5)),
            (6, Some(64)),
            (65, Some(127)),
            (127, Some(127)),
            (128, None),
            (1000, None),
        ];
        for (from, expected) in table {
            assert_eq!(
                set.first_at_or_after(from).map(CpuIndex::get),
                expected,
                "from {from}"
            );
        }
    }

    #[test]
    fn empty_set() {
        let set = CpuSet::<1>::new();
        assert!(set.is_empty());
        assert_eq!(set.len(), 0);
        assert_eq!(set.iter().next(), None);
        assert_eq!(format!("{set:?}"), "{}");
    }
}
