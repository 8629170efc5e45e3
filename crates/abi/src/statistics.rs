//! The monitor's statistics calls (SiP range, owner 2, SMC64 fast): let the QEMU tests, the demo and
//! the Linux pKVM summary see that the rendezvous really ran on each CPU. Read-only; they reveal
//! only counters.
//!
//! Each takes x1 = the dense index of the CPU asked about and answers x0 = 0 with three values in
//! x1–x3, or x0 = -2 (`INVALID_PARAMETERS`) for a CPU that does not exist:
//!
//! | call | ID | x1 | x2 | x3 |
//! |---|---|---|---|---|
//! | [`StatisticsCall::Rendezvous`] | `0xC200_0010` | last request number the CPU serviced | rendezvous SGIs it answered | rendezvous SGIs sent by all CPUs |
//! | [`StatisticsCall::Caller`] | `0xC200_0011` | its erratum calls from EL1 | from EL2 | possibly affected CPUs its calls skipped as off or suspended |
//! | [`StatisticsCall::Wait`] | `0xC200_0012` | its calls that missed their deadline | its longest call in nanoseconds | rendezvous SGIs it sent |

use crate::smccc::{Arguments, Convention, FunctionId, Owner};
use crate::{DecodeError, argument, arguments};

/// Function ID of [`StatisticsCall::Rendezvous`]: `0xC200_0010`.
pub const RENDEZVOUS_STATISTICS: u32 = statistics_id(0x10);
/// Function ID of [`StatisticsCall::Caller`]: `0xC200_0011`.
pub const CALLER_STATISTICS: u32 = statistics_id(0x11);
/// Function ID of [`StatisticsCall::Wait`]: `0xC200_0012`.
pub const WAIT_STATISTICS: u32 = statistics_id(0x12);

/// A SiP SMC64 fast call's function ID.
const fn statistics_id(number: u16) -> u32 {
    FunctionId::fast(Convention::Smc64, Owner::SiliconPartner, number).value()
}

/// The answer in x0 for a CPU that does not exist (`INVALID_PARAMETERS`).
pub const NO_SUCH_CPU: i64 = -2;

/// A statistics call: which counters, of which CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatisticsCall {
    /// The CPU as a responder of the rendezvous.
    Rendezvous {
        /// Dense CPU index.
        cpu: u64,
    },
    /// The CPU as a caller of the erratum call.
    Caller {
        /// Dense CPU index.
        cpu: u64,
    },
    /// The CPU's waits as a caller.
    Wait {
        /// Dense CPU index.
        cpu: u64,
    },
}

impl StatisticsCall {
    /// Decodes a call in the statistics range; anything else is [`DecodeError::UnknownFunction`].
    pub fn decode(function_id: FunctionId, args: &Arguments) -> Result<Self, DecodeError> {
        let cpu = argument(args, 1);
        match function_id.value() {
            RENDEZVOUS_STATISTICS => Ok(Self::Rendezvous { cpu }),
            CALLER_STATISTICS => Ok(Self::Caller { cpu }),
            WAIT_STATISTICS => Ok(Self::Wait { cpu }),
            _ => Err(DecodeError::UnknownFunction(function_id)),
        }
    }

    /// The function ID and argument registers of this call.
    pub fn encode(&self) -> (u32, Arguments) {
        let (id, cpu) = match *self {
            Self::Rendezvous { cpu } => (RENDEZVOUS_STATISTICS, cpu),
            Self::Caller { cpu } => (CALLER_STATISTICS, cpu),
            Self::Wait { cpu } => (WAIT_STATISTICS, cpu),
        };
        (id, arguments(&[cpu]))
    }
}

/// Why a statistics call gave no counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatisticsError {
    /// The monitor has no such CPU.
    NoSuchCpu,
    /// The monitor does not offer the call (x0 = `SMC_UNK`), or answered something else.
    NotSupported(i64),
}

impl core::fmt::Display for StatisticsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoSuchCpu => write!(f, "no such CPU"),
            Self::NotSupported(code) => write!(f, "statistics call not supported (x0 = {code})"),
        }
    }
}

impl core::error::Error for StatisticsError {}

/// The three counters of a successful call (x1–x3), from its result registers x0–x3.
pub fn decode_result(results: &[u64; 4]) -> Result<[u64; 3], StatisticsError> {
    match results[0] as i64 {
        0 => Ok([results[1], results[2], results[3]]),
        NO_SUCH_CPU => Err(StatisticsError::NoSuchCpu),
        other => Err(StatisticsError::NotSupported(other)),
    }
}

/// The result registers x0–x3 the monitor answers with.
pub fn encode_result(result: Result<[u64; 3], StatisticsError>) -> [u64; 4] {
    match result {
        Ok([x1, x2, x3]) => [0, x1, x2, x3],
        Err(StatisticsError::NoSuchCpu) => [NO_SUCH_CPU as u64, 0, 0, 0],
        Err(StatisticsError::NotSupported(code)) => [code as u64, 0, 0, 0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::any_arguments;
    use proptest::prelude::*;

    #[test]
    fn the_ids_are_the_documented_ones() {
        assert_eq!(
            [RENDEZVOUS_STATISTICS, CALLER_STATISTICS, WAIT_STATISTICS],
            [0xC200_0010, 0xC200_0011, 0xC200_0012]
        );
    }

    #[test]
    fn results_round_trip_and_errors_are_named() {
        let cases = [
            Ok([7, 8, 9]),
            Err(StatisticsError::NoSuchCpu),
            Err(StatisticsError::NotSupported(-1)),
        ];
        for case in cases {
            assert_eq!(decode_result(&encode_result(case)), case);
        }
        assert_eq!(
            decode_result(&[(-2i64) as u64, 1, 2, 3]),
            Err(StatisticsError::NoSuchCpu)
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_round_trips(low in 0u32..0x20, args in any_arguments()) {
            let id = FunctionId(0xC200_0000 | low);
            match StatisticsCall::decode(id, &args) {
                Ok(call) => {
                    let (encoded_id, encoded_args) = call.encode();
                    prop_assert_eq!(encoded_id, id.value());
                    prop_assert_eq!(StatisticsCall::decode(FunctionId(encoded_id), &encoded_args), Ok(call));
                }
                Err(error) => prop_assert_eq!(error, DecodeError::UnknownFunction(id)),
            }
        }
    }
}
