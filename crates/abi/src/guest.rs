//! Calls a protected guest makes to the hypervisor, numbered as pKVM numbers them (SMCCC owner 6,
//! vendor-specific hypervisor), so a Linux guest's pKVM drivers work unchanged.
//!
//! Caller: the guest at EL1 (HVC); callee: the hypervisor. Results use SMCCC return codes
//! ([`ReturnCode`]): `SUCCESS`, `INVALID_PARAMETER` for a malformed call, `NOT_SUPPORTED` for an
//! unknown one. As in pKVM, argument registers a call does not use (up to `x3`) must be zero.

use crate::smccc::{Arguments, FunctionId, ReturnCode, Uid};
use crate::{DecodeError, argument, arguments};

/// `ARM_SMCCC_VENDOR_HYP_KVM_FEATURES_FUNC_ID`: returns the [`FeatureBitmap`] in `w0`.
pub const KVM_FEATURES: u32 = 0x8600_0000;
/// `ARM_SMCCC_VENDOR_HYP_CALL_UID_FUNC_ID`: returns [`KVM_UID`] in `w0`–`w3`.
pub const VENDOR_HYP_CALL_UID: u32 = 0x8600_FF01;
/// `HYP_MEMINFO`: returns the hypervisor's page size ([`PAGE_SIZE`]) in `x0`.
pub const HYP_MEMINFO: u32 = 0xC600_0002;
/// `MEM_SHARE`: share the page at IPA `x1` with the host.
pub const MEM_SHARE: u32 = 0xC600_0003;
/// `MEM_UNSHARE`: stop sharing the page at IPA `x1` with the host (the host loses it).
pub const MEM_UNSHARE: u32 = 0xC600_0004;

/// The granule of guest memory calls: 4 KiB.
pub use crate::PAGE_SIZE;
/// IPAs are at most 52 bits wide; anything at or above this is out of range.
pub const IPA_LIMIT: u64 = 1 << 52;

/// KVM's vendor-hypervisor UID `28b46fb6-2ec5-11e9-a9ca-4b564d003a74`; guests check it before
/// using [`KVM_FEATURES`] and the calls below.
pub const KVM_UID: Uid = Uid([
    0x28, 0xb4, 0x6f, 0xb6, 0x2e, 0xc5, 0x11, 0xe9, 0xa9, 0xca, 0x4b, 0x56, 0x4d, 0x00, 0x3a, 0x74,
]);

/// The `KVM_FEATURES` bitmap: bit N set means the vendor-hypervisor function number N exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FeatureBitmap(pub u32);

impl FeatureBitmap {
    /// Function 0: `KVM_FEATURES` itself.
    pub const FEATURES: u32 = 1 << 0;
    /// Function 2: `HYP_MEMINFO`.
    pub const HYP_MEMINFO: u32 = 1 << 2;
    /// Function 3: `MEM_SHARE`.
    pub const MEM_SHARE: u32 = 1 << 3;
    /// Function 4: `MEM_UNSHARE`.
    pub const MEM_UNSHARE: u32 = 1 << 4;

    /// What our hypervisor offers protected guests.
    pub const SUPPORTED: FeatureBitmap =
        FeatureBitmap(Self::FEATURES | Self::HYP_MEMINFO | Self::MEM_SHARE | Self::MEM_UNSHARE);

    /// Whether function number `number` is offered.
    pub const fn has(self, number: u16) -> bool {
        number < 32 && self.0 & (1 << number) != 0
    }
}

/// A decoded guest call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestCall {
    /// `KVM_FEATURES`.
    Features,
    /// `VENDOR_HYP_CALL_UID`.
    Uid,
    /// `HYP_MEMINFO`.
    HypMeminfo,
    /// `MEM_SHARE` of the page at `ipa` (page-aligned).
    MemShare {
        /// Guest physical address of the page.
        ipa: u64,
    },
    /// `MEM_UNSHARE` of the page at `ipa` (page-aligned).
    MemUnshare {
        /// Guest physical address of the page.
        ipa: u64,
    },
}

/// Checks that `x<first>`..=`x3` are zero.
fn unused_zero(args: &Arguments, first: u8) -> Result<(), DecodeError> {
    match (first..=3).find(|&register| argument(args, register) != 0) {
        Some(register) => Err(DecodeError::ReservedBitsSet { register }),
        None => Ok(()),
    }
}

fn page_ipa(args: &Arguments) -> Result<u64, DecodeError> {
    let ipa = argument(args, 1);
    if !ipa.is_multiple_of(PAGE_SIZE) {
        return Err(DecodeError::Misaligned { register: 1 });
    }
    if ipa >= IPA_LIMIT {
        return Err(DecodeError::OutOfRange { register: 1 });
    }
    unused_zero(args, 2)?;
    Ok(ipa)
}

impl GuestCall {
    /// Decodes a guest call. `KVM_FEATURES` and the UID query ignore their arguments, as KVM does.
    pub fn decode(function_id: FunctionId, args: &Arguments) -> Result<Self, DecodeError> {
        match function_id.without_sve_hint().value() {
            KVM_FEATURES => Ok(Self::Features),
            VENDOR_HYP_CALL_UID => Ok(Self::Uid),
            HYP_MEMINFO => unused_zero(args, 1).map(|()| Self::HypMeminfo),
            MEM_SHARE => page_ipa(args).map(|ipa| Self::MemShare { ipa }),
            MEM_UNSHARE => page_ipa(args).map(|ipa| Self::MemUnshare { ipa }),
            _ => Err(DecodeError::UnknownFunction(function_id)),
        }
    }

    /// The function ID and argument registers of this call.
    pub fn encode(&self) -> (u32, Arguments) {
        match *self {
            Self::Features => (KVM_FEATURES, arguments(&[])),
            Self::Uid => (VENDOR_HYP_CALL_UID, arguments(&[])),
            Self::HypMeminfo => (HYP_MEMINFO, arguments(&[])),
            Self::MemShare { ipa } => (MEM_SHARE, arguments(&[ipa])),
            Self::MemUnshare { ipa } => (MEM_UNSHARE, arguments(&[ipa])),
        }
    }
}

/// How the hypervisor answers a guest call that does not decode.
pub fn answer_for(error: DecodeError) -> ReturnCode {
    ReturnCode::from(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smccc::{ARGUMENT_REGISTERS, Convention, Owner};
    use crate::test_support::any_arguments;
    use proptest::prelude::*;

    #[test]
    fn calls_table() {
        // (ID, arguments, call)
        let table = [
            (0x8600_0000, arguments(&[]), GuestCall::Features),
            (0x8600_FF01, arguments(&[]), GuestCall::Uid),
            (0xC600_0002, arguments(&[]), GuestCall::HypMeminfo),
            (
                0xC600_0003,
                arguments(&[0x8000_1000]),
                GuestCall::MemShare { ipa: 0x8000_1000 },
            ),
            (
                0xC600_0004,
                arguments(&[0]),
                GuestCall::MemUnshare { ipa: 0 },
            ),
            (
                0xC600_0004,
                arguments(&[IPA_LIMIT - PAGE_SIZE]),
                GuestCall::MemUnshare {
                    ipa: IPA_LIMIT - PAGE_SIZE,
                },
            ),
        ];
        for (id, args, call) in table {
            assert_eq!(
                GuestCall::decode(FunctionId(id), &args),
                Ok(call),
                "{id:#x}"
            );
            assert_eq!(call.encode(), (id, args));
            assert_eq!(FunctionId(id).owner(), Owner::VendorHypervisor);
        }
        assert_eq!(FunctionId(HYP_MEMINFO).convention(), Convention::Smc64);
        assert_eq!(FunctionId(KVM_FEATURES).convention(), Convention::Smc32);
    }

    #[test]
    fn malformed_calls_table() {
        // (ID, arguments, error, SMCCC answer)
        let invalid = ReturnCode::InvalidParameter;
        let table = [
            (
                0xC600_0002,
                arguments(&[1]),
                DecodeError::ReservedBitsSet { register: 1 },
                invalid,
            ),
            (
                0xC600_0002,
                arguments(&[0, 0, 1]),
                DecodeError::ReservedBitsSet { register: 3 },
                invalid,
            ),
            (
                0xC600_0003,
                arguments(&[0x8000_1001]),
                DecodeError::Misaligned { register: 1 },
                invalid,
            ),
            (
                0xC600_0003,
                arguments(&[IPA_LIMIT]),
                DecodeError::OutOfRange { register: 1 },
                invalid,
            ),
            (
                0xC600_0004,
                arguments(&[0x1000, 5]),
                DecodeError::ReservedBitsSet { register: 2 },
                invalid,
            ),
            (
                0xC600_0005,
                arguments(&[]),
                DecodeError::UnknownFunction(FunctionId(0xC600_0005)),
                ReturnCode::NotSupported,
            ),
            (
                0x8600_0003,
                arguments(&[0x1000]),
                DecodeError::UnknownFunction(FunctionId(0x8600_0003)),
                ReturnCode::NotSupported,
            ),
        ];
        for (id, args, error, answer) in table {
            assert_eq!(
                GuestCall::decode(FunctionId(id), &args),
                Err(error),
                "{id:#x}"
            );
            assert_eq!(answer_for(error), answer);
        }
        // Registers past x3 are not the guest's concern.
        let mut args = arguments(&[0x2000]);
        args[5] = 77;
        assert_eq!(
            GuestCall::decode(FunctionId(MEM_SHARE), &args),
            Ok(GuestCall::MemShare { ipa: 0x2000 })
        );
    }

    #[test]
    fn feature_bitmap_and_uid() {
        let supported = FeatureBitmap::SUPPORTED;
        for number in [0, 2, 3, 4] {
            assert!(supported.has(number));
        }
        for number in [1, 5, 31, 32, 127] {
            assert!(!supported.has(number));
        }
        assert_eq!(supported.0, 0b1_1101);
        assert_eq!(
            KVM_UID.to_registers(),
            [0xb66f_b428, 0xe911_c52e, 0x564b_caa9, 0x743a_004d]
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_round_trips(
            low in any::<u16>(), smc64 in any::<bool>(), args in any_arguments()
        ) {
            let id = FunctionId(0x8600_0000 | u32::from(low) | u32::from(smc64) << 30);
            if let Ok(call) = GuestCall::decode(id, &args) {
                let (encoded_id, encoded_args) = call.encode();
                prop_assert_eq!(GuestCall::decode(FunctionId(encoded_id), &encoded_args), Ok(call));
                prop_assert!(encoded_args[1..ARGUMENT_REGISTERS].iter().all(|&r| r == 0));
            }
        }
    }
}
