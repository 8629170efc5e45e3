//! The CPU service (SMCCC owner 1): discovery and the erratum 4193714 call.
//!
//! Caller: the hypervisor at EL2 (the host is refused this call by the hypervisor); callee: the
//! EL3 monitor. As deployed in Linux 7.1 and TF-A v2.15:
//! - [`ERRATUM_4193714_WORKAROUND`] (`0x8100_0010`, SMC32 fast, no arguments): every affected CPU
//!   runs a local `DSB` before the call returns, completing in-flight SME accesses. The range
//!   `0x8100_0010`–`0x8100_001F` and its SMC64 twin are reserved for this family; only offset 0
//!   exists. There is no `SMCCC_ARCH_FEATURES` entry: callers discover it by calling it.
//! - Returns ([`CpuServiceReturn`]): 0 done; -1 (`SMC_UNK`) not implemented, or a CPU did not
//!   answer in time; -3 (`SMC_DENIED`) this system does not need it.

use crate::smccc::{Arguments, FunctionId, Uid};
use crate::{DecodeError, arguments};

/// `CPU_SVC_UID`: returns [`UID`] in `w0`–`w3`.
pub const CPU_SERVICE_UID: u32 = 0x8100_FF01;
/// `CPU_SVC_VERSION`: returns [`VERSION`], major in `w0`, minor in `w1`.
pub const CPU_SERVICE_VERSION: u32 = 0x8100_FF03;
/// Erratum 4193714 ("SME DVMSync early acknowledgement") workaround: make every affected CPU
/// complete its in-flight SME memory accesses.
pub const ERRATUM_4193714_WORKAROUND: u32 = 0x8100_0010;
/// Function IDs reserved for the erratum 4193714 family, SMC32 form.
pub const ERRATUM_4193714_RESERVED_SMC32: core::ops::RangeInclusive<u32> =
    0x8100_0010..=0x8100_001F;
/// Function IDs reserved for the erratum 4193714 family, SMC64 form.
pub const ERRATUM_4193714_RESERVED_SMC64: core::ops::RangeInclusive<u32> =
    0xC100_0010..=0xC100_001F;

/// Whether `function_id` is in the range reserved for the erratum 4193714 family (either form).
pub const fn is_erratum_4193714_reserved(function_id: u32) -> bool {
    (function_id >= *ERRATUM_4193714_RESERVED_SMC32.start()
        && function_id <= *ERRATUM_4193714_RESERVED_SMC32.end())
        || (function_id >= *ERRATUM_4193714_RESERVED_SMC64.start()
            && function_id <= *ERRATUM_4193714_RESERVED_SMC64.end())
}

/// The CPU service's UID as our monitor reports it: `58b9153f-028c-4c4b-b6fe-289e80ddb99a`, a
/// random version-4 UUID generated once for pkvm-rs (it identifies this implementation, not the
/// interface; callers should not depend on it).
pub const UID: Uid = Uid([
    0x58, 0xb9, 0x15, 0x3f, 0x02, 0x8c, 0x4c, 0x4b, 0xb6, 0xfe, 0x28, 0x9e, 0x80, 0xdd, 0xb9, 0x9a,
]);

/// A service revision, as returned by a "Revision query" (major in `w0`, minor in `w1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceVersion {
    /// Incompatible changes.
    pub major: u32,
    /// Compatible additions.
    pub minor: u32,
}

impl ServiceVersion {
    /// Return registers `x0`, `x1`.
    pub const fn to_registers(self) -> [u64; 2] {
        [self.major as u64, self.minor as u64]
    }

    /// From return registers `x0`, `x1` (32-bit values: upper halves ignored).
    pub const fn from_registers(registers: [u64; 2]) -> Self {
        Self {
            major: registers[0] as u32,
            minor: registers[1] as u32,
        }
    }
}

/// The CPU service version we report: 1.0.
pub const VERSION: ServiceVersion = ServiceVersion { major: 1, minor: 0 };

/// A decoded CPU service call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuServiceCall {
    /// `CPU_SVC_UID`.
    Uid,
    /// `CPU_SVC_VERSION`.
    Version,
    /// [`ERRATUM_4193714_WORKAROUND`]: the SME DVMSync rendezvous.
    Erratum4193714Workaround,
}

impl CpuServiceCall {
    /// Decodes a CPU service call. Arguments are ignored (none of these calls takes any). Every
    /// other ID, including the rest of the reserved erratum range, is unknown (answer `SMC_UNK`).
    pub fn decode(function_id: FunctionId, _args: &Arguments) -> Result<Self, DecodeError> {
        match function_id.without_sve_hint().value() {
            CPU_SERVICE_UID => Ok(Self::Uid),
            CPU_SERVICE_VERSION => Ok(Self::Version),
            ERRATUM_4193714_WORKAROUND => Ok(Self::Erratum4193714Workaround),
            _ => Err(DecodeError::UnknownFunction(function_id)),
        }
    }

    /// The function ID and argument registers of this call.
    pub fn encode(&self) -> (u32, Arguments) {
        let id = match self {
            Self::Uid => CPU_SERVICE_UID,
            Self::Version => CPU_SERVICE_VERSION,
            Self::Erratum4193714Workaround => ERRATUM_4193714_WORKAROUND,
        };
        (id, arguments(&[]))
    }
}

/// What the erratum call (and any CPU service call) returns in `x0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CpuServiceReturn {
    /// 0: every active affected CPU has completed its in-flight SME accesses.
    Success,
    /// -1 (`SMC_UNK`): not implemented (unknown function), or a CPU did not answer in time.
    Unknown,
    /// -3 (`SMC_DENIED`): this system does not need the workaround (no CPU is affected).
    Denied,
}

impl CpuServiceReturn {
    /// The signed value.
    pub const fn to_i32(self) -> i32 {
        match self {
            Self::Success => 0,
            Self::Unknown => -1,
            Self::Denied => -3,
        }
    }

    /// The value for `x0` (sign-extended).
    pub const fn to_register(self) -> u64 {
        self.to_i32() as i64 as u64
    }

    /// Decodes `x0`. Both the sign-extended 64-bit form and a 32-bit form (`w0`, upper half zero,
    /// as an SMC32 callee may leave it) are accepted.
    pub const fn from_register(x0: u64) -> Option<Self> {
        let signed = if x0 >> 32 == 0 {
            x0 as u32 as i32 as i64
        } else {
            x0 as i64
        };
        match signed {
            0 => Some(Self::Success),
            -1 => Some(Self::Unknown),
            -3 => Some(Self::Denied),
            _ => None,
        }
    }
}

impl From<CpuServiceReturn> for i32 {
    fn from(value: CpuServiceReturn) -> i32 {
        value.to_i32()
    }
}

impl From<CpuServiceReturn> for u64 {
    fn from(value: CpuServiceReturn) -> u64 {
        value.to_register()
    }
}

impl TryFrom<u64> for CpuServiceReturn {
    type Error = crate::smccc::UnknownReturnCode;

    fn try_from(x0: u64) -> Result<Self, Self::Error> {
        Self::from_register(x0).ok_or(crate::smccc::UnknownReturnCode(x0))
    }
}

impl From<DecodeError> for CpuServiceReturn {
    /// Every undecodable CPU service call is answered `SMC_UNK`.
    fn from(_: DecodeError) -> Self {
        Self::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smccc::{ARGUMENT_REGISTERS, CallType, Convention, Owner};
    use crate::test_support::any_arguments;
    use proptest::prelude::*;

    #[test]
    fn calls_table() {
        // (ID, call)
        let table = [
            (0x8100_FF01, CpuServiceCall::Uid),
            (0x8100_FF03, CpuServiceCall::Version),
            (0x8100_0010, CpuServiceCall::Erratum4193714Workaround),
        ];
        for (id, call) in table {
            let noisy = [u64::MAX; ARGUMENT_REGISTERS];
            assert_eq!(CpuServiceCall::decode(FunctionId(id), &noisy), Ok(call));
            assert_eq!(call.encode(), (id, [0; ARGUMENT_REGISTERS]));
        }
        let erratum = FunctionId(ERRATUM_4193714_WORKAROUND);
        assert_eq!(erratum.call_type(), CallType::Fast);
        assert_eq!(erratum.convention(), Convention::Smc32);
        assert_eq!(erratum.owner(), Owner::Cpu);
        assert_eq!(erratum.number(), 0x10);
    }

    #[test]
    fn reserved_range_is_unknown_except_offset_zero() {
        let args = [0; ARGUMENT_REGISTERS];
        for id in ERRATUM_4193714_RESERVED_SMC32.chain(ERRATUM_4193714_RESERVED_SMC64) {
            assert!(is_erratum_4193714_reserved(id));
            let expected = if id == ERRATUM_4193714_WORKAROUND {
                Ok(CpuServiceCall::Erratum4193714Workaround)
            } else {
                Err(DecodeError::UnknownFunction(FunctionId(id)))
            };
            assert_eq!(CpuServiceCall::decode(FunctionId(id), &args), expected);
        }
        for outside in [
            0x8100_000F,
            0x8100_0020,
            0xC100_000F,
            0xC100_0020,
            0x8200_0010,
        ] {
            assert!(!is_erratum_4193714_reserved(outside));
        }
        assert_eq!(
            CpuServiceReturn::from(DecodeError::UnknownFunction(FunctionId(0x8100_0011))),
            CpuServiceReturn::Unknown
        );
    }

    #[test]
    fn return_values_table() {
        // (value, signed, 64-bit register, 32-bit register)
        let table = [
            (CpuServiceReturn::Success, 0, 0, 0),
            (CpuServiceReturn::Unknown, -1, u64::MAX, 0xFFFF_FFFF),
            (CpuServiceReturn::Denied, -3, u64::MAX - 2, 0xFFFF_FFFD),
        ];
        for (value, signed, register64, register32) in table {
            assert_eq!(i32::from(value), signed);
            assert_eq!(u64::from(value), register64);
            assert_eq!(CpuServiceReturn::try_from(register64), Ok(value));
            assert_eq!(CpuServiceReturn::from_register(register32), Some(value));
        }
        for other in [1, 2, u64::MAX - 1, 0xFFFF_FFFE, 0x1_0000_0000] {
            assert_eq!(CpuServiceReturn::from_register(other), None, "{other:#x}");
        }
    }

    #[test]
    fn uid_and_version() {
        assert_eq!(
            UID.to_registers(),
            [0x3f15_b958, 0x4b4c_8c02, 0x9e28_feb6, 0x9ab9_dd80]
        );
        assert_eq!(Uid::from_registers(UID.to_registers()), UID);
        assert_eq!(VERSION.to_registers(), [1, 0]);
        assert_eq!(ServiceVersion::from_registers([1, 0]), VERSION);
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_round_trips(
            low in any::<u16>(), smc64 in any::<bool>(), args in any_arguments()
        ) {
            let id = FunctionId(0x8100_0000 | u32::from(low) | u32::from(smc64) << 30);
            if let Ok(call) = CpuServiceCall::decode(id, &args) {
                let (encoded_id, encoded_args) = call.encode();
                prop_assert_eq!(CpuServiceCall::decode(FunctionId(encoded_id), &encoded_args), Ok(call));
            }
        }
    }
}
