//! PSCI 1.1 (SMCCC owner 4): decoding with `abi::psci`, decisions in `psci-state`, actions in
//! [`crate::power`].
//!
//! Implemented: `PSCI_VERSION`, `CPU_SUSPEND`, `CPU_OFF`, `CPU_ON`, `AFFINITY_INFO`,
//! `MIGRATE_INFO_TYPE` (2: no Trusted OS), `SYSTEM_OFF`, `SYSTEM_RESET`, `PSCI_FEATURES`. Everything
//! else in the range answers `NOT_SUPPORTED`; malformed arguments (reserved bits in an MPIDR or a
//! power state) answer `INVALID_PARAMETERS`.

use super::{Service, SmcCall, SmcReturn};
use crate::power;
use abi::DecodeError;
use abi::psci::{PsciCall, PsciFunctionId as Id};
use abi::smccc::SMCCC_VERSION;
use firmware_runtime::power::BoardRequest;
use psci_state::{EntryPoint, PsciError};

/// `MIGRATE_INFO_TYPE`: no Trusted OS is present.
const MIGRATE_INFO_TYPE_NO_TRUSTED_OS: u64 = 2;
/// `PSCI_FEATURES(CPU_SUSPEND)`: extended StateID format (bit 1), no OS-initiated mode.
const CPU_SUSPEND_FEATURES: u64 = 1 << 1;

/// The PSCI service.
pub struct Psci;

fn error(error: PsciError) -> SmcReturn {
    SmcReturn::signed(error.code())
}

fn result(outcome: Result<(), PsciError>) -> SmcReturn {
    match outcome {
        Ok(()) => SmcReturn::one(0),
        Err(reason) => error(reason),
    }
}

/// `PSCI_FEATURES`: 0 (or flags) for the functions implemented, `NOT_SUPPORTED` for the others.
fn features(function_id: u32) -> SmcReturn {
    const IMPLEMENTED: [Id; 12] = [
        Id::PsciVersion,
        Id::CpuOff,
        Id::CpuOn32,
        Id::CpuOn64,
        Id::AffinityInfo32,
        Id::AffinityInfo64,
        Id::MigrateInfoType,
        Id::SystemOff,
        Id::SystemReset,
        Id::PsciFeatures,
        Id::CpuSuspend32,
        Id::CpuSuspend64,
    ];
    if function_id == Id::CpuSuspend32 as u32 || function_id == Id::CpuSuspend64 as u32 {
        return SmcReturn::one(CPU_SUSPEND_FEATURES);
    }
    if function_id == SMCCC_VERSION || IMPLEMENTED.iter().any(|&id| id as u32 == function_id) {
        SmcReturn::one(0)
    } else {
        error(PsciError::NotSupported)
    }
}

impl Service for Psci {
    fn handle(&self, call: &SmcCall) -> SmcReturn {
        let decoded = match PsciCall::decode(call.function_id, call.arguments) {
            Ok(decoded) => decoded,
            Err(DecodeError::UnknownFunction(_)) => return error(PsciError::NotSupported),
            Err(_) => return error(PsciError::InvalidParameters),
        };
        match decoded {
            PsciCall::Version => SmcReturn::one(
                (u64::from(abi::psci::VERSION.major) << 16) | u64::from(abi::psci::VERSION.minor),
            ),
            PsciCall::CpuOn {
                target_cpu,
                entry_point,
                context_id,
                ..
            } => result(power::cpu_on(
                target_cpu,
                EntryPoint {
                    address: entry_point,
                    context_id,
                },
            )),
            PsciCall::CpuOff => error(power::cpu_off(call.cpu)),
            PsciCall::CpuSuspend {
                power_state,
                entry_point,
                context_id,
                ..
            } => result(power::cpu_suspend(
                call.cpu,
                u32::from(power_state),
                EntryPoint {
                    address: entry_point,
                    context_id,
                },
            )),
            PsciCall::AffinityInfo {
                target_affinity,
                lowest_affinity_level,
                ..
            } => match power::affinity_info(target_affinity, u64::from(lowest_affinity_level)) {
                Ok(state) => SmcReturn::signed(state.code()),
                Err(reason) => error(reason),
            },
            PsciCall::MigrateInfoType => SmcReturn::one(MIGRATE_INFO_TYPE_NO_TRUSTED_OS),
            PsciCall::SystemOff => power::board(BoardRequest::PowerOff),
            PsciCall::SystemReset => power::board(BoardRequest::Reset),
            PsciCall::Features { function_id } => features(function_id),
            _ => error(PsciError::NotSupported),
        }
    }
}
