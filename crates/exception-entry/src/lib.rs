//! Making a lower exception level take an exception it did not raise itself: the hypervisor injects
//! an external abort into the host's EL1 when the host touches memory it does not own, and the
//! monitor injects an undefined-instruction exception into the Non-secure world when it executes a
//! system-register access that traps to EL3 (a Group 0 GIC register, say), instead of stopping the
//! machine.
//!
//! The rules are the architecture's (Arm ARM D1.3, "Exception entry"): the exception is taken to the
//! level that would have taken it had the CPU raised it itself, at `VBAR_ELx` plus an offset that
//! says where it came from (the same level with `SP_EL0` or `SP_ELx`, or a lower level in AArch64),
//! with `D`, `A`, `I` and `F` masked. This crate only computes; the caller writes `ESR_ELx`,
//! `ELR_ELx`, `SPSR_ELx`, `FAR_ELx` and its own return state.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

/// An exception level of the Non-secure world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionLevel {
    /// Applications.
    El0,
    /// The host's (or a guest's) kernel.
    El1,
    /// The hypervisor.
    El2,
}

/// Where an injected exception enters: the level, the offset from that level's `VBAR`, and the
/// `SPSR` to return to it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The level that takes the exception.
    pub level: ExceptionLevel,
    /// Offset of the synchronous vector from `VBAR_ELx` (0x000, 0x200 or 0x400).
    pub vector_offset: u64,
    /// `SPSR` of the entry: the level's handler mode (`ELxh`) with `D`, `A`, `I`, `F` masked.
    pub spsr: u64,
}

/// Why a saved state cannot take an injected exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryError {
    /// The saved `SPSR` is of AArch32 state, which this firmware never runs.
    AArch32,
    /// The saved `SPSR` names EL3 or a mode that does not exist.
    NotNonSecureLevel(u64),
}

impl core::fmt::Display for EntryError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Self::AArch32 => write!(formatter, "the interrupted state is AArch32"),
            Self::NotNonSecureLevel(mode) => {
                write!(formatter, "SPSR mode {mode:#x} is not EL0, EL1 or EL2")
            }
        }
    }
}

impl core::error::Error for EntryError {}

/// `SPSR.M[4]`: AArch32.
const SPSR_AARCH32: u64 = 1 << 4;
/// `D`, `A`, `I`, `F` masked.
const DAIF_MASKED: u64 = 0b1111 << 6;
/// `SPSR.M[0]`: the level's own stack pointer (`SP_ELx`) rather than `SP_EL0`.
const SPSR_SP_ELX: u64 = 1;

/// The level a saved `SPSR` (of `ELR_ELx`'s state) was running at, and whether it used `SP_ELx`.
pub fn interrupted_level(spsr: u64) -> Result<(ExceptionLevel, bool), EntryError> {
    if spsr & SPSR_AARCH32 != 0 {
        return Err(EntryError::AArch32);
    }
    let mode = spsr & 0xF;
    let level = match mode >> 2 {
        0 => ExceptionLevel::El0,
        1 => ExceptionLevel::El1,
        2 => ExceptionLevel::El2,
        _ => return Err(EntryError::NotNonSecureLevel(mode)),
    };
    if level == ExceptionLevel::El0 && mode != 0 || mode & 0b10 != 0 {
        return Err(EntryError::NotNonSecureLevel(mode));
    }
    Ok((level, mode & SPSR_SP_ELX != 0))
}

/// Where a synchronous exception raised by code running in `spsr`'s state enters, for an exception
/// the architecture routes to the level that raised it or, from EL0, to EL1 (EL2 when
/// `HCR_EL2.TGE` is set: `el0_to_el2`). An undefined instruction and an external abort of the host
/// both follow this rule.
pub fn synchronous_entry(spsr: u64, el0_to_el2: bool) -> Result<Entry, EntryError> {
    let (from, own_stack) = interrupted_level(spsr)?;
    let level = match from {
        ExceptionLevel::El0 if el0_to_el2 => ExceptionLevel::El2,
        ExceptionLevel::El0 => ExceptionLevel::El1,
        other => other,
    };
    let vector_offset = match (from == level, own_stack) {
        (false, _) => 0x400,
        (true, true) => 0x200,
        (true, false) => 0x000,
    };
    let handler_mode = match level {
        ExceptionLevel::El0 | ExceptionLevel::El1 => 0b0101,
        ExceptionLevel::El2 => 0b1001,
    };
    Ok(Entry {
        level,
        vector_offset,
        spsr: handler_mode | DAIF_MASKED,
    })
}

/// `ESR_ELx` of an undefined-instruction exception (EC 0, "unknown reason") of a 32-bit instruction.
pub const ESR_UNDEFINED: u64 = 1 << 25;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_follow_the_vector_table_layout() {
        let masked = 0b1111 << 6;
        let table = [
            // (saved SPSR, HCR_EL2.TGE, level, offset, entry SPSR)
            (0b0000, false, ExceptionLevel::El1, 0x400, 0b0101 | masked),
            (0b0000, true, ExceptionLevel::El2, 0x400, 0b1001 | masked),
            (0b0100, false, ExceptionLevel::El1, 0x000, 0b0101 | masked),
            (0b0101, false, ExceptionLevel::El1, 0x200, 0b0101 | masked),
            (
                0b0101 | masked,
                true,
                ExceptionLevel::El1,
                0x200,
                0b0101 | masked,
            ),
            (0b1000, false, ExceptionLevel::El2, 0x000, 0b1001 | masked),
            (0b1001, false, ExceptionLevel::El2, 0x200, 0b1001 | masked),
        ];
        for (spsr, tge, level, vector_offset, entry_spsr) in table {
            assert_eq!(
                synchronous_entry(spsr, tge),
                Ok(Entry {
                    level,
                    vector_offset,
                    spsr: entry_spsr
                }),
                "SPSR {spsr:#x} TGE {tge}"
            );
        }
    }

    #[test]
    fn states_that_cannot_take_an_injected_exception_are_refused() {
        assert_eq!(synchronous_entry(0b1_0000, false), Err(EntryError::AArch32));
        for mode in [0b0001, 0b0010, 0b0011, 0b0110, 0b1010, 0b1100, 0b1101] {
            assert_eq!(
                synchronous_entry(mode, false),
                Err(EntryError::NotNonSecureLevel(mode)),
                "{mode:#b}"
            );
        }
    }
}
