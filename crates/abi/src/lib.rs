//! Every identifier that crosses a privilege boundary in pkvm-rs, with its encoding and decoding.
//!
//! One module per interface; each says who calls whom:
//!
//! | module          | caller → callee              | function IDs                                  |
//! |-----------------|------------------------------|-----------------------------------------------|
//! | [`smccc`]       | anyone → EL3 / EL2           | SMCCC function-ID layout, `SMCCC_VERSION`, `SMCCC_ARCH_FEATURES`, return codes |
//! | [`psci`]        | host/guest → EL3 (via EL2)   | PSCI 1.1, `0x8400_0000`–`0x8400_001F`, `0xC400_0000`–`0xC400_001F` |
//! | [`cpu_service`] | EL2 → EL3                    | CPU service: UID, VERSION, erratum 4193714 call `0x8100_0010` |
//! | [`hypercall`]   | host (EL1) → hypervisor (EL2)| `0xC600_0020`… (vendor-hypervisor owner, SMC64 fast) |
//! | [`guest`]       | protected guest → EL2        | pKVM's guest calls: `KVM_FEATURES`, `HYP_MEMINFO`, `MEM_SHARE`, `MEM_UNSHARE` |
//! | [`statistics`]  | tests, demo → EL3            | the monitor's rendezvous counters, `0xC200_0010`–`0xC200_0012` (SiP) |
//!
//! Every decoder takes the function ID (the low 32 bits of `x0`) and the argument registers
//! `x1`–`x17` as [`smccc::Arguments`], and returns a typed call or a [`DecodeError`] naming what was
//! wrong. Decoding never panics, whatever the registers hold (property-tested). Every encoder
//! returns `(function_id, arguments)` ready for `smccc::hvc64`/`smccc::smc64`, and for every call
//! a decoder produced, `decode(encode(call)) == call` (property-tested). Calls in SMC32 form encode
//! with their arguments already truncated to 32 bits, so the same array can go to
//! `smccc::hvc64`/`smc64` (the callee ignores upper halves) or be narrowed for `hvc32`/`smc32`.
//!
//! SMC32 calls ignore the upper 32 bits of every argument register, as SMCCC requires; 32-bit
//! parameters of SMC64 calls (e.g. PSCI `power_state`) are read from the low 32 bits too.
//!
//! # Crates of the field used here
//! - [`arm_psci`] 0.2 (callee-side PSCI types): reused for the PSCI function-ID enum, error codes,
//!   version, `AFFINITY_INFO` states, reset types, suspend modes and feature flags, all re-exported
//!   from [`psci`]. Its call decoder (`arm_psci::Function`) is *not* used: it reads the SMC32
//!   `MEM_PROTECT` argument from all 64 bits of `x1` (SMCCC says the upper half must be ignored),
//!   decodes PSCI 1.3's `SYSTEM_OFF2` (we implement 1.1), and its encoder panics on mixed 32/64-bit
//!   values (its `PowerState` is used as it is); [`psci::PsciCall`] decodes
//!   with those points fixed and names the calling convention explicitly.
//! - [`smccc`](::smccc) 0.2 (caller-side SMC/HVC wrappers): reused for the SMCCC architecture
//!   function IDs, its error-code constants and its `Version` type. Its call functions are for the
//!   firmware binaries, not this crate. It has no function-ID decoder, no callee-side types and
//!   nothing for the CPU service, the hypervisor or pKVM guests, which are defined here.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

/// The one page size of every interface in pkvm-rs: hypercalls and guest calls count in it, and the
/// hypervisor's stage-2 and IO page tables map in it (the 4 KiB translation granule).
pub const PAGE_SIZE: u64 = 4096;

pub mod cpu_service;
pub mod guest;
pub mod hypercall;
pub mod psci;
pub mod smccc;
pub mod statistics;

use core::fmt;

/// Why a call's registers do not decode. The numbers in the variants are register numbers
/// (`1` is `x1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// No call of this interface has this function ID. Answer "not supported".
    UnknownFunction(smccc::FunctionId),
    /// Register `x<register>` has bits set that the call requires to be zero.
    ReservedBitsSet {
        /// Argument register number.
        register: u8,
    },
    /// Register `x<register>` holds a value outside the range the call accepts (e.g. a count of
    /// zero, a vCPU index wider than 32 bits, a frame number beyond the largest physical address).
    OutOfRange {
        /// Argument register number.
        register: u8,
    },
    /// Register `x<register>` holds an address that is not aligned as the call requires.
    Misaligned {
        /// Argument register number.
        register: u8,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownFunction(id) => write!(f, "unknown function {:#010x}", id.value()),
            Self::ReservedBitsSet { register } => write!(f, "reserved bits set in x{register}"),
            Self::OutOfRange { register } => write!(f, "x{register} out of range"),
            Self::Misaligned { register } => write!(f, "x{register} misaligned"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Reads argument register `x<register>` (1-based) from `args`; registers past the array read as 0.
pub(crate) fn argument(args: &smccc::Arguments, register: u8) -> u64 {
    usize::from(register)
        .checked_sub(1)
        .and_then(|index| args.get(index))
        .copied()
        .unwrap_or(0)
}

/// Reads `x<register>` as a 32-bit parameter: the upper half is ignored.
pub(crate) fn argument32(args: &smccc::Arguments, register: u8) -> u32 {
    // Truncation is the rule: 32-bit parameters live in W registers.
    argument(args, register) as u32
}

/// Builds an argument array whose first registers (`x1`, `x2`, ...) hold `values`.
pub(crate) fn arguments(values: &[u64]) -> smccc::Arguments {
    let mut args = [0; smccc::ARGUMENT_REGISTERS];
    for (slot, value) in args.iter_mut().zip(values) {
        *slot = *value;
    }
    args
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::smccc::{ARGUMENT_REGISTERS, Arguments};
    use proptest::prelude::*;

    /// Argument registers mixing zeros, small values and arbitrary values, so decoders see both
    /// valid and invalid inputs.
    pub fn any_arguments() -> impl Strategy<Value = Arguments> {
        let register = prop_oneof![
            Just(0u64),
            0u64..16,
            (0u64..(1 << 40)).prop_map(|frame| frame << 12),
            any::<u64>(),
        ];
        proptest::collection::vec(register, ARGUMENT_REGISTERS).prop_map(|values| {
            let mut args = [0; ARGUMENT_REGISTERS];
            args.copy_from_slice(&values);
            args
        })
    }
}

#[cfg(test)]
mod tests {
    use super::smccc::{ARGUMENT_REGISTERS, ArchCall, FunctionId};
    use super::{cpu_service::CpuServiceCall, guest::GuestCall, hypercall::HostHypercall};
    use super::{psci::PsciCall, *};

    /// How many interfaces accept `id` with `args`.
    fn decoders_accepting(id: FunctionId, args: &smccc::Arguments) -> usize {
        [
            ArchCall::decode(id, args).is_ok(),
            PsciCall::decode(id, args).is_ok(),
            CpuServiceCall::decode(id, args).is_ok(),
            HostHypercall::decode(id, args).is_ok(),
            GuestCall::decode(id, args).is_ok(),
        ]
        .into_iter()
        .filter(|accepted| *accepted)
        .count()
    }

    /// Every function number (bits `[15:0]`) of owners 0 (architecture), 1 (CPU), 4 (standard
    /// secure) and 6 (vendor hypervisor), fast and yielding, SMC32 and SMC64, with bits `[23:16]`
    /// clear, the SVE hint, a reserved bit and all set, goes through every decoder without a
    /// panic, and no ID is accepted by two interfaces.
    #[test]
    fn every_id_in_the_owner_ranges_decodes_in_at_most_one_interface() {
        let argument_sets = [
            [0; ARGUMENT_REGISTERS],
            [u64::MAX; ARGUMENT_REGISTERS],
            arguments(&[1, 0x1000, 1, 1]),
        ];
        let mut accepted_with_zero_arguments = 0usize;
        for owner in [0u32, 1, 4, 6] {
            for type_and_width in [0x8000_0000u32, 0xC000_0000, 0x0000_0000, 0x4000_0000] {
                for bits_23_16 in [0x00u32, 0x01, 0x02, 0x80, 0xFF] {
                    for number in 0..=0xFFFFu32 {
                        let id =
                            FunctionId(type_and_width | owner << 24 | bits_23_16 << 16 | number);
                        let counts = argument_sets.map(|args| decoders_accepting(id, &args));
                        assert!(
                            counts.iter().all(|&count| count <= 1),
                            "{:#010x}",
                            id.value()
                        );
                        accepted_with_zero_arguments += counts[0];
                    }
                }
            }
        }
        // With all-zero arguments: SMCCC 2, PSCI 33 (35 IDs minus SYSTEM_OFF2's two), CPU service
        // 3, host hypercalls 7 (VM_CREATE, DONATE_GUEST and RECLAIM need non-zero counts), guest 5;
        // twice each, because the SVE-hinted twin (bit 16) of every fast call decodes too.
        assert_eq!(accepted_with_zero_arguments, 2 * (2 + 33 + 3 + 7 + 5));
    }
}
