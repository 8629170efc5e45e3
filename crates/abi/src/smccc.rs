//! The SMC Calling Convention: function-ID layout, the architecture calls every SMCCC callee
//! answers, return codes, and UIDs.
//!
//! We report **SMCCC 1.2**: SMC64 calls pass arguments and results in `x0`–`x17`, which the
//! hypervisor's calls use. We do not report 1.3 or later because 1.3 adds the SVE live-state hint
//! (function-ID bit 16) with rules on which SVE state the callee may discard; reporting 1.2 keeps
//! callers (Linux included) from setting it. Decoders still clear the hint bit of fast calls before
//! matching ([`FunctionId::without_sve_hint`]), so a caller that sets it anyway is understood.

use crate::{DecodeError, argument32, arguments};
pub use ::smccc::arch::Version;

/// Number of argument registers of an SMC64/HVC64 call under SMCCC 1.2 (`x1`–`x17`).
pub const ARGUMENT_REGISTERS: usize = 17;

/// The argument registers `x1`–`x17` of a call (`[0]` is `x1`). Matches the `args` parameter of
/// `smccc::smc64`/`smccc::hvc64`.
pub type Arguments = [u64; ARGUMENT_REGISTERS];

/// `SMCCC_VERSION`: returns the SMCCC version (SMC32 fast call, no arguments).
pub const SMCCC_VERSION: u32 = ::smccc::arch::SMCCC_VERSION;
/// `SMCCC_ARCH_FEATURES`: is the function ID in `w1` implemented? (SMC32 fast call).
pub const SMCCC_ARCH_FEATURES: u32 = ::smccc::arch::SMCCC_ARCH_FEATURES;

/// The SMCCC version our EL3 monitor and hypervisor report: 1.2 (see the module docs).
pub const REPORTED_VERSION: Version = Version { major: 1, minor: 2 };

/// Function number of the "Call UID query" of every service (`0xFF01`).
pub const CALL_UID_NUMBER: u16 = 0xFF01;
/// Function number of the "Revision query" of every service (`0xFF03`).
pub const REVISION_NUMBER: u16 = 0xFF03;

/// Fast (atomic) or yielding (preemptible) call: bit 31 of the function ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallType {
    /// Bit 31 set: runs to completion with interrupts masked at the callee.
    Fast,
    /// Bit 31 clear: may be preempted (used by Trusted OSes).
    Yielding,
}

/// Register width of a call: bit 30 of the function ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Convention {
    /// 32-bit parameters in `w1`–`w7`; upper halves ignored.
    Smc32,
    /// 64-bit parameters in `x1`–`x17`.
    Smc64,
}

/// Which service owns a function ID: bits `[29:24]` (the owning entity number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// 0: Arm architecture calls (`SMCCC_VERSION`, workarounds).
    Architecture,
    /// 1: CPU service calls (CPU errata workarounds such as 4193714).
    Cpu,
    /// 2: Silicon partner (SiP) calls.
    SiliconPartner,
    /// 3: OEM calls.
    Oem,
    /// 4: Standard secure services (PSCI, TRNG, ...).
    StandardSecure,
    /// 5: Standard hypervisor services.
    StandardHypervisor,
    /// 6: Vendor-specific hypervisor services (pKVM guest calls, our host hypercalls).
    VendorHypervisor,
    /// 48–49: Trusted applications.
    TrustedApplication,
    /// 50–63: Trusted OSes.
    TrustedOs,
    /// 7–47: reserved.
    Reserved,
}

impl Owner {
    /// The class of owning entity number `number` (only bits `[5:0]` exist; larger numbers are
    /// reported as [`Owner::Reserved`]).
    pub const fn of(number: u8) -> Owner {
        match number {
            0 => Self::Architecture,
            1 => Self::Cpu,
            2 => Self::SiliconPartner,
            3 => Self::Oem,
            4 => Self::StandardSecure,
            5 => Self::StandardHypervisor,
            6 => Self::VendorHypervisor,
            48..=49 => Self::TrustedApplication,
            50..=63 => Self::TrustedOs,
            _ => Self::Reserved,
        }
    }

    /// The lowest owning entity number in this class.
    pub const fn first_number(self) -> u8 {
        match self {
            Self::Architecture => 0,
            Self::Cpu => 1,
            Self::SiliconPartner => 2,
            Self::Oem => 3,
            Self::StandardSecure => 4,
            Self::StandardHypervisor => 5,
            Self::VendorHypervisor => 6,
            Self::Reserved => 7,
            Self::TrustedApplication => 48,
            Self::TrustedOs => 50,
        }
    }
}

/// An SMCCC function ID (`w0` of a call).
///
/// Layout: bit 31 fast/yielding, bit 30 SMC32/SMC64, bits `[29:24]` owner, bits `[23:17]`
/// reserved (zero) for fast calls, bit 16 the SVE live-state hint (SMCCC 1.3+), bits `[15:0]` the
/// function number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionId(pub u32);

impl FunctionId {
    const FAST_BIT: u32 = 1 << 31;
    const SMC64_BIT: u32 = 1 << 30;
    const OWNER_SHIFT: u32 = 24;
    const OWNER_MASK: u32 = 0x3F;
    const SVE_HINT_BIT: u32 = 1 << 16;
    const FAST_RESERVED_MASK: u32 = 0x00FE_0000;

    /// Takes the function ID from `x0`: only `w0` counts.
    pub const fn from_register(x0: u64) -> Self {
        // Truncation is the rule: the function ID is W0.
        Self(x0 as u32)
    }

    /// Builds a function ID, or `None` if `owner_number` does not fit its 6 bits.
    pub const fn from_parts(
        call_type: CallType,
        convention: Convention,
        owner_number: u8,
        number: u16,
    ) -> Option<Self> {
        if owner_number as u32 > Self::OWNER_MASK {
            return None;
        }
        let fast = match call_type {
            CallType::Fast => Self::FAST_BIT,
            CallType::Yielding => 0,
        };
        let width = match convention {
            Convention::Smc32 => 0,
            Convention::Smc64 => Self::SMC64_BIT,
        };
        Some(Self(
            fast | width | (owner_number as u32) << Self::OWNER_SHIFT | number as u32,
        ))
    }

    /// A fast call of the first owner number of `owner`.
    pub const fn fast(convention: Convention, owner: Owner, number: u16) -> Self {
        let width = match convention {
            Convention::Smc32 => 0,
            Convention::Smc64 => Self::SMC64_BIT,
        };
        Self(
            Self::FAST_BIT
                | width
                | (owner.first_number() as u32) << Self::OWNER_SHIFT
                | number as u32,
        )
    }

    /// The raw value.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// Fast or yielding.
    pub const fn call_type(self) -> CallType {
        if self.0 & Self::FAST_BIT != 0 {
            CallType::Fast
        } else {
            CallType::Yielding
        }
    }

    /// SMC32 or SMC64.
    pub const fn convention(self) -> Convention {
        if self.0 & Self::SMC64_BIT != 0 {
            Convention::Smc64
        } else {
            Convention::Smc32
        }
    }

    /// Owning entity number, bits `[29:24]`.
    pub const fn owner_number(self) -> u8 {
        ((self.0 >> Self::OWNER_SHIFT) & Self::OWNER_MASK) as u8
    }

    /// Owning entity class.
    pub const fn owner(self) -> Owner {
        Owner::of(self.owner_number())
    }

    /// Function number, bits `[15:0]`.
    pub const fn number(self) -> u16 {
        // Truncation is the point: the low 16 bits.
        self.0 as u16
    }

    /// Whether the caller set the SMCCC 1.3 SVE live-state hint (bit 16 of a fast call).
    pub const fn has_sve_hint(self) -> bool {
        matches!(self.call_type(), CallType::Fast) && self.0 & Self::SVE_HINT_BIT != 0
    }

    /// This ID with the SVE hint cleared (fast calls only): what decoders match against.
    pub const fn without_sve_hint(self) -> Self {
        if self.has_sve_hint() {
            Self(self.0 & !Self::SVE_HINT_BIT)
        } else {
            self
        }
    }

    /// Bits `[23:17]` of a fast call, which must be zero (0 for yielding calls).
    pub const fn reserved_bits(self) -> u32 {
        match self.call_type() {
            CallType::Fast => self.0 & Self::FAST_RESERVED_MASK,
            CallType::Yielding => 0,
        }
    }
}

impl From<u32> for FunctionId {
    fn from(value: u32) -> Self {
        Self(value)
    }
}

impl From<FunctionId> for u32 {
    fn from(id: FunctionId) -> u32 {
        id.0
    }
}

/// Return codes of the SMCCC architecture calls (`x0`/`w0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReturnCode {
    /// 0.
    Success,
    /// -1: the function is not implemented.
    NotSupported,
    /// -2: the function is implemented but not needed on this system.
    NotRequired,
    /// -3: a parameter has a value the function does not accept.
    InvalidParameter,
}

impl ReturnCode {
    /// The signed value.
    pub const fn to_i32(self) -> i32 {
        match self {
            Self::Success => ::smccc::error::SUCCESS,
            Self::NotSupported => ::smccc::arch::error::NOT_SUPPORTED,
            Self::NotRequired => ::smccc::arch::error::NOT_REQUIRED,
            Self::InvalidParameter => ::smccc::arch::error::INVALID_PARAMETER,
        }
    }

    /// The value for a 64-bit return register (sign-extended, so `w0` reads the same).
    pub const fn to_register(self) -> u64 {
        self.to_i32() as i64 as u64
    }

    /// The return code with this signed value.
    pub const fn from_i32(value: i32) -> Option<Self> {
        match value {
            0 => Some(Self::Success),
            -1 => Some(Self::NotSupported),
            -2 => Some(Self::NotRequired),
            -3 => Some(Self::InvalidParameter),
            _ => None,
        }
    }

    /// The return code in a 64-bit return register; the value must be a sign-extended 32-bit value.
    pub const fn from_register(x0: u64) -> Option<Self> {
        let signed = x0 as i64;
        if signed < i32::MIN as i64 || signed > i32::MAX as i64 {
            return None;
        }
        Self::from_i32(signed as i32)
    }
}

impl From<ReturnCode> for i32 {
    fn from(code: ReturnCode) -> i32 {
        code.to_i32()
    }
}

impl From<ReturnCode> for u64 {
    fn from(code: ReturnCode) -> u64 {
        code.to_register()
    }
}

/// A value that is not an SMCCC return code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownReturnCode(pub u64);

impl TryFrom<i32> for ReturnCode {
    type Error = UnknownReturnCode;

    fn try_from(value: i32) -> Result<Self, Self::Error> {
        Self::from_i32(value).ok_or(UnknownReturnCode(value as i64 as u64))
    }
}

impl TryFrom<u64> for ReturnCode {
    type Error = UnknownReturnCode;

    fn try_from(value: u64) -> Result<Self, Self::Error> {
        Self::from_register(value).ok_or(UnknownReturnCode(value))
    }
}

impl From<DecodeError> for ReturnCode {
    fn from(error: DecodeError) -> Self {
        match error {
            DecodeError::UnknownFunction(_) => Self::NotSupported,
            DecodeError::ReservedBitsSet { .. }
            | DecodeError::OutOfRange { .. }
            | DecodeError::Misaligned { .. } => Self::InvalidParameter,
        }
    }
}

/// The SMCCC architecture calls our firmware answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArchCall {
    /// `SMCCC_VERSION`: answer [`REPORTED_VERSION`].
    Version,
    /// `SMCCC_ARCH_FEATURES`: is `queried` implemented?
    Features {
        /// The function ID asked about (`w1`).
        queried: FunctionId,
    },
}

impl ArchCall {
    /// Decodes an architecture call. Other owner-0 IDs (workarounds, `SOC_ID`) are unknown.
    pub fn decode(function_id: FunctionId, args: &Arguments) -> Result<Self, DecodeError> {
        match function_id.without_sve_hint().value() {
            SMCCC_VERSION => Ok(Self::Version),
            SMCCC_ARCH_FEATURES => Ok(Self::Features {
                queried: FunctionId(argument32(args, 1)),
            }),
            _ => Err(DecodeError::UnknownFunction(function_id)),
        }
    }

    /// The function ID and argument registers of this call.
    pub fn encode(&self) -> (u32, Arguments) {
        match self {
            Self::Version => (SMCCC_VERSION, arguments(&[])),
            Self::Features { queried } => (
                SMCCC_ARCH_FEATURES,
                arguments(&[u64::from(queried.value())]),
            ),
        }
    }
}

/// A 128-bit service UID, as returned by the "Call UID query" of a service.
///
/// The bytes are in the order of the UUID's text form; registers `w0`–`w3` each carry four of
/// them, lowest-numbered byte in the least significant position (so UUID
/// `28b46fb6-2ec5-...` gives `w0 = 0xb66fb428`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Uid(pub [u8; 16]);

impl Uid {
    /// The four return registers `w0`–`w3`.
    pub const fn to_registers(self) -> [u32; 4] {
        let b = self.0;
        [
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        ]
    }

    /// The UID returned in `w0`–`w3`.
    pub const fn from_registers(registers: [u32; 4]) -> Self {
        let [a, b, c, d] = registers;
        let (a, b, c, d) = (
            a.to_le_bytes(),
            b.to_le_bytes(),
            c.to_le_bytes(),
            d.to_le_bytes(),
        );
        Self([
            a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1],
            d[2], d[3],
        ])
    }

    /// The four return registers as 64-bit values (`x0`–`x3`, upper halves zero).
    pub const fn to_return_registers(self) -> [u64; 4] {
        let [a, b, c, d] = self.to_registers();
        [a as u64, b as u64, c as u64, d as u64]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::any_arguments;
    use proptest::prelude::*;

    #[test]
    fn function_id_fields() {
        // (ID, type, convention, owner number, owner, number)
        let table: [(u32, CallType, Convention, u8, Owner, u16); 8] = [
            (
                0x8000_0000,
                CallType::Fast,
                Convention::Smc32,
                0,
                Owner::Architecture,
                0,
            ),
            (
                0x8100_0010,
                CallType::Fast,
                Convention::Smc32,
                1,
                Owner::Cpu,
                0x10,
            ),
            (
                0xC100_0010,
                CallType::Fast,
                Convention::Smc64,
                1,
                Owner::Cpu,
                0x10,
            ),
            (
                0xC400_0003,
                CallType::Fast,
                Convention::Smc64,
                4,
                Owner::StandardSecure,
                3,
            ),
            (
                0x8600_FF01,
                CallType::Fast,
                Convention::Smc32,
                6,
                Owner::VendorHypervisor,
                0xFF01,
            ),
            (
                0xC600_0020,
                CallType::Fast,
                Convention::Smc64,
                6,
                Owner::VendorHypervisor,
                0x20,
            ),
            (
                0x3100_0001,
                CallType::Yielding,
                Convention::Smc32,
                49,
                Owner::TrustedApplication,
                1,
            ),
            (
                0xBF00_0002,
                CallType::Fast,
                Convention::Smc32,
                63,
                Owner::TrustedOs,
                2,
            ),
        ];
        for (value, call_type, convention, owner_number, owner, number) in table {
            let id = FunctionId(value);
            assert_eq!(id.call_type(), call_type, "{value:#x}");
            assert_eq!(id.convention(), convention, "{value:#x}");
            assert_eq!(id.owner_number(), owner_number, "{value:#x}");
            assert_eq!(id.owner(), owner, "{value:#x}");
            assert_eq!(id.number(), number, "{value:#x}");
            assert_eq!(
                FunctionId::from_parts(call_type, convention, owner_number, number),
                Some(id)
            );
        }
        assert_eq!(
            FunctionId::fast(Convention::Smc64, Owner::StandardSecure, 3),
            FunctionId(0xC400_0003)
        );
        assert_eq!(
            FunctionId::from_parts(CallType::Fast, Convention::Smc32, 64, 0),
            None
        );
        assert_eq!(
            FunctionId::from_register(0xFFFF_FFFF_8000_0000),
            FunctionId(0x8000_0000)
        );
    }

    #[test]
    fn owner_classes_cover_every_number() {
        for number in 0..=63u8 {
            let owner = Owner::of(number);
            assert!(owner.first_number() <= number);
            assert_eq!(Owner::of(owner.first_number()), owner);
        }
        assert_eq!(Owner::of(7), Owner::Reserved);
        assert_eq!(Owner::of(47), Owner::Reserved);
        assert_eq!(Owner::of(64), Owner::Reserved);
    }

    #[test]
    fn sve_hint_and_reserved_bits() {
        let hinted = FunctionId(0xC401_0003);
        assert!(hinted.has_sve_hint());
        assert_eq!(hinted.without_sve_hint(), FunctionId(0xC400_0003));
        assert_eq!(hinted.reserved_bits(), 0);
        assert_eq!(FunctionId(0x8080_0000).reserved_bits(), 0x0080_0000);
        // Yielding calls have no hint bit: bit 16 belongs to them.
        assert!(!FunctionId(0x3201_0000).has_sve_hint());
        assert_eq!(
            FunctionId(0x3201_0000).without_sve_hint(),
            FunctionId(0x3201_0000)
        );
    }

    #[test]
    fn return_codes_table() {
        // (code, i32, register)
        let table = [
            (ReturnCode::Success, 0, 0),
            (ReturnCode::NotSupported, -1, u64::MAX),
            (ReturnCode::NotRequired, -2, u64::MAX - 1),
            (ReturnCode::InvalidParameter, -3, u64::MAX - 2),
        ];
        for (code, signed, register) in table {
            assert_eq!(i32::from(code), signed);
            assert_eq!(u64::from(code), register);
            assert_eq!(ReturnCode::try_from(signed), Ok(code));
            assert_eq!(ReturnCode::try_from(register), Ok(code));
        }
        assert_eq!(
            ReturnCode::try_from(-4i32),
            Err(UnknownReturnCode(-4i64 as u64))
        );
        assert_eq!(ReturnCode::try_from(1u64), Err(UnknownReturnCode(1)));
        // A 32-bit -1 not sign-extended is not a 64-bit return code.
        assert_eq!(ReturnCode::from_register(0xFFFF_FFFF), None);
        assert_eq!(ReturnCode::from_register(0x8000_0000_0000_0000), None);
    }

    #[test]
    fn arch_calls_round_trip() {
        let table = [
            ArchCall::Version,
            ArchCall::Features {
                queried: FunctionId(0x8100_0010),
            },
        ];
        for call in table {
            let (id, args) = call.encode();
            assert_eq!(ArchCall::decode(FunctionId(id), &args), Ok(call));
        }
        assert_eq!(REPORTED_VERSION, Version { major: 1, minor: 2 });
        assert_eq!(u32::from(REPORTED_VERSION), 0x0001_0002);
    }

    #[test]
    fn arch_features_ignores_upper_half_of_w1() {
        let mut args = [0; ARGUMENT_REGISTERS];
        args[0] = 0xDEAD_BEEF_8400_0000;
        assert_eq!(
            ArchCall::decode(FunctionId(SMCCC_ARCH_FEATURES), &args),
            Ok(ArchCall::Features {
                queried: FunctionId(0x8400_0000)
            })
        );
        for unknown in [0x8000_8000, 0x8000_7FFF, 0x8000_0002, 0xC000_0000] {
            assert_eq!(
                ArchCall::decode(FunctionId(unknown), &args),
                Err(DecodeError::UnknownFunction(FunctionId(unknown)))
            );
        }
    }

    #[test]
    fn uid_register_layout() {
        // pKVM's KVM UID, as Linux documents it.
        let kvm = Uid([
            0x28, 0xb4, 0x6f, 0xb6, 0x2e, 0xc5, 0x11, 0xe9, 0xa9, 0xca, 0x4b, 0x56, 0x4d, 0x00,
            0x3a, 0x74,
        ]);
        let registers = [0xb66f_b428, 0xe911_c52e, 0x564b_caa9, 0x743a_004d];
        assert_eq!(kvm.to_registers(), registers);
        assert_eq!(Uid::from_registers(registers), kvm);
    }

    proptest! {
        #[test]
        fn arch_decode_never_panics_and_round_trips(
            number in any::<u16>(), high in 0u32..4, args in any_arguments()
        ) {
            let id = FunctionId((high << 30) | u32::from(number));
            if let Ok(call) = ArchCall::decode(id, &args) {
                let (encoded_id, encoded_args) = call.encode();
                prop_assert_eq!(ArchCall::decode(FunctionId(encoded_id), &encoded_args), Ok(call));
            }
        }
    }
}
