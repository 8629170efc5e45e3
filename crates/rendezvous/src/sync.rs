//! The atomics of [`crate::AtomicRendezvousMemory`]: `core`'s in every real build, `loom`'s when
//! the crate is built with `RUSTFLAGS="--cfg loom"` (`tests/loom.rs` then explores the very same
//! memory code under the C11/Rust memory model).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU64, Ordering, fence};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU8, AtomicU64, Ordering, fence};
