//! The Arm Architecture service (SMCCC owner 0): `SMCCC_VERSION` (1.2, [`abi::smccc::REPORTED_VERSION`]) and
//! `SMCCC_ARCH_FEATURES`. No architectural workaround (`SMCCC_ARCH_WORKAROUND_*`) is implemented, so
//! `SMCCC_ARCH_FEATURES` answers `NOT_SUPPORTED` for them.

use super::{Service, SmcCall, SmcReturn};
use abi::smccc::{ArchCall, REPORTED_VERSION, SMCCC_ARCH_FEATURES, SMCCC_VERSION};

/// `NOT_SUPPORTED`.
const NOT_SUPPORTED: i32 = -1;

/// The Arm Architecture service.
pub struct Arch;

impl Service for Arch {
    fn handle(&self, call: &SmcCall) -> SmcReturn {
        match ArchCall::decode(call.function_id, call.arguments) {
            Ok(ArchCall::Version) => SmcReturn::one(
                (u64::from(REPORTED_VERSION.major) << 16) | u64::from(REPORTED_VERSION.minor),
            ),
            Ok(ArchCall::Features { queried }) => match queried.value() {
                SMCCC_VERSION | SMCCC_ARCH_FEATURES => SmcReturn::one(0),
                _ => SmcReturn::signed(NOT_SUPPORTED),
            },
            Err(_) => SmcReturn::signed(NOT_SUPPORTED),
        }
    }
}
