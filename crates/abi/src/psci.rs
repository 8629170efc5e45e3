//! PSCI 1.1 (Arm DEN0022): every function in its SMC32 and SMC64 forms, decoded into
//! [`PsciCall`] with typed arguments.
//!
//! Callers: the host and guests (trapped at EL2, then forwarded) and EL2 itself; callee: the EL3
//! monitor. Constants and return types come from `arm-psci` (see the crate docs).
//!
//! Decoding rules beyond the ID match:
//! - MPIDR arguments may only have affinity bits set (`Aff3` `[39:32]` and `Aff2..Aff0` `[23:0]`
//!   for SMC64, `[23:0]` for SMC32); anything else is [`DecodeError::ReservedBitsSet`]
//!   (answer `INVALID_PARAMETERS`).
//! - `power_state` uses the extended StateID format (we report it in `PSCI_FEATURES(CPU_SUSPEND)`):
//!   StateID `[27:0]`, StateType bit 30; bits 31, 29 and 28 must be zero.
//! - `SYSTEM_OFF2` (PSCI 1.3) is unknown: we implement 1.1.

use crate::smccc::{Arguments, Convention, FunctionId};
use crate::{DecodeError, argument, argument32, arguments};

pub use arm_psci::{
    AffinityInfo as AffinityState, ArchitecturalResetType, ErrorCode, FeatureFlagsCpuSuspend,
    FunctionId as PsciFunctionId, HwState, MigrateInfoType, PowerState, ResetType, SuspendMode,
    Version,
};

/// The PSCI version we implement and report: 1.1.
pub const VERSION: Version = Version { major: 1, minor: 1 };

/// Bits of an SMC64 MPIDR argument that may be set: Aff3 `[39:32]`, Aff2..Aff0 `[23:0]`.
pub const MPIDR_AFFINITY_MASK_64: u64 = 0x00FF_00FF_FFFF;
/// Bits of an SMC32 MPIDR argument that may be set: Aff2..Aff0 `[23:0]`.
pub const MPIDR_AFFINITY_MASK_32: u64 = 0x00FF_FFFF;

/// Whether `function_id` is in PSCI's range (`0x8400_0000`–`0x8400_001F` and the SMC64 twin),
/// known or not: a dispatcher hands these to the PSCI service.
pub const fn owns(function_id: FunctionId) -> bool {
    let value = function_id.without_sve_hint().value();
    (value & !0x4000_0000) & !0x1F == 0x8400_0000
}

/// A decoded PSCI 1.1 call. Calls that exist in both forms carry the `convention` they were made
/// with, so that [`PsciCall::encode`] reproduces the same function ID. MPIDRs are raw `u64`
/// values with only affinity bits set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciCall {
    /// `PSCI_VERSION`: answer [`VERSION`].
    Version,
    /// `CPU_SUSPEND`.
    CpuSuspend {
        /// Requested state.
        power_state: PowerState,
        /// Where the core resumes after a power-down state.
        entry_point: u64,
        /// Passed in `x0` at the entry point.
        context_id: u64,
        /// SMC32 or SMC64 form.
        convention: Convention,
    },
    /// `CPU_OFF`.
    CpuOff,
    /// `CPU_ON`.
    CpuOn {
        /// MPIDR of the core to start.
        target_cpu: u64,
        /// Where it starts.
        entry_point: u64,
        /// Passed in `x0` at the entry point.
        context_id: u64,
        /// SMC32 or SMC64 form.
        convention: Convention,
    },
    /// `AFFINITY_INFO`: answer an [`AffinityState`].
    AffinityInfo {
        /// MPIDR of the node asked about.
        target_affinity: u64,
        /// Affinity levels below this one are ignored (0..=3 for SMC64, 0..=2 for SMC32).
        lowest_affinity_level: u32,
        /// SMC32 or SMC64 form.
        convention: Convention,
    },
    /// `MIGRATE`.
    Migrate {
        /// MPIDR of the core the Trusted OS should move to.
        target_cpu: u64,
        /// SMC32 or SMC64 form.
        convention: Convention,
    },
    /// `MIGRATE_INFO_TYPE`: answer a [`MigrateInfoType`].
    MigrateInfoType,
    /// `MIGRATE_INFO_UP_CPU`.
    MigrateInfoUpCpu {
        /// SMC32 or SMC64 form.
        convention: Convention,
    },
    /// `SYSTEM_OFF`.
    SystemOff,
    /// `SYSTEM_RESET`.
    SystemReset,
    /// `SYSTEM_RESET2`.
    SystemReset2 {
        /// Architectural or vendor reset type.
        reset_type: ResetType,
        /// Vendor-defined cookie.
        cookie: u64,
        /// SMC32 or SMC64 form.
        convention: Convention,
    },
    /// `MEM_PROTECT` (SMC32 only).
    MemProtect {
        /// Enable (`w1 != 0`) or disable.
        enable: bool,
    },
    /// `MEM_PROTECT_CHECK_RANGE`.
    MemProtectCheckRange {
        /// Start of the range.
        base: u64,
        /// Length of the range in bytes.
        length: u64,
        /// SMC32 or SMC64 form.
        convention: Convention,
    },
    /// `PSCI_FEATURES` (SMC32 only).
    Features {
        /// The function ID asked about.
        function_id: u32,
    },
    /// `CPU_FREEZE`.
    CpuFreeze,
    /// `CPU_DEFAULT_SUSPEND`.
    CpuDefaultSuspend {
        /// Where the core resumes.
        entry_point: u64,
        /// Passed in `x0` at the entry point.
        context_id: u64,
        /// SMC32 or SMC64 form.
        convention: Convention,
    },
    /// `NODE_HW_STATE`: answer a [`HwState`].
    NodeHwState {
        /// MPIDR of the node.
        target_cpu: u64,
        /// Power level of the node (0..=3).
        power_level: u32,
        /// SMC32 or SMC64 form.
        convention: Convention,
    },
    /// `SYSTEM_SUSPEND`.
    SystemSuspend {
        /// Where the boot core resumes.
        entry_point: u64,
        /// Passed in `x0` at the entry point.
        context_id: u64,
        /// SMC32 or SMC64 form.
        convention: Convention,
    },
    /// `PSCI_SET_SUSPEND_MODE` (SMC32 only).
    SetSuspendMode {
        /// Platform-coordinated or OS-initiated.
        mode: SuspendMode,
    },
    /// `PSCI_STAT_RESIDENCY`.
    StatResidency {
        /// MPIDR of the core.
        target_cpu: u64,
        /// The state asked about.
        power_state: PowerState,
        /// SMC32 or SMC64 form.
        convention: Convention,
    },
    /// `PSCI_STAT_COUNT`.
    StatCount {
        /// MPIDR of the core.
        target_cpu: u64,
        /// The state asked about.
        power_state: PowerState,
        /// SMC32 or SMC64 form.
        convention: Convention,
    },
}

/// Reads a parameter that is 32 bits wide in the SMC32 form and 64 bits in the SMC64 form.
fn natural(args: &Arguments, register: u8, convention: Convention) -> u64 {
    match convention {
        Convention::Smc32 => u64::from(argument32(args, register)),
        Convention::Smc64 => argument(args, register),
    }
}

fn mpidr(args: &Arguments, register: u8, convention: Convention) -> Result<u64, DecodeError> {
    let value = natural(args, register, convention);
    let mask = match convention {
        Convention::Smc32 => MPIDR_AFFINITY_MASK_32,
        Convention::Smc64 => MPIDR_AFFINITY_MASK_64,
    };
    if value & !mask == 0 {
        Ok(value)
    } else {
        Err(DecodeError::ReservedBitsSet { register })
    }
}

fn power_state(args: &Arguments, register: u8) -> Result<PowerState, DecodeError> {
    PowerState::try_from(argument32(args, register))
        .map_err(|_| DecodeError::ReservedBitsSet { register })
}

fn at_most(args: &Arguments, register: u8, max: u32) -> Result<u32, DecodeError> {
    let value = argument32(args, register);
    if value <= max {
        Ok(value)
    } else {
        Err(DecodeError::OutOfRange { register })
    }
}

impl PsciCall {
    /// Decodes a PSCI call. Unknown IDs (including PSCI 1.3 additions) give
    /// [`DecodeError::UnknownFunction`]; malformed arguments give the other variants.
    pub fn decode(function_id: FunctionId, args: &Arguments) -> Result<Self, DecodeError> {
        use Convention::Smc32;
        use PsciFunctionId as Id;

        let id = PsciFunctionId::try_from(function_id.without_sve_hint().value())
            .map_err(|_| DecodeError::UnknownFunction(function_id))?;
        let convention = function_id.convention();
        Ok(match id {
            Id::PsciVersion => Self::Version,
            Id::CpuSuspend32 | Id::CpuSuspend64 => Self::CpuSuspend {
                power_state: power_state(args, 1)?,
                entry_point: natural(args, 2, convention),
                context_id: natural(args, 3, convention),
                convention,
            },
            Id::CpuOff => Self::CpuOff,
            Id::CpuOn32 | Id::CpuOn64 => Self::CpuOn {
                target_cpu: mpidr(args, 1, convention)?,
                entry_point: natural(args, 2, convention),
                context_id: natural(args, 3, convention),
                convention,
            },
            Id::AffinityInfo32 | Id::AffinityInfo64 => Self::AffinityInfo {
                target_affinity: mpidr(args, 1, convention)?,
                lowest_affinity_level: at_most(args, 2, if convention == Smc32 { 2 } else { 3 })?,
                convention,
            },
            Id::Migrate32 | Id::Migrate64 => Self::Migrate {
                target_cpu: mpidr(args, 1, convention)?,
                convention,
            },
            Id::MigrateInfoType => Self::MigrateInfoType,
            Id::MigrateInfoUpCpu32 | Id::MigrateInfoUpCpu64 => {
                Self::MigrateInfoUpCpu { convention }
            }
            Id::SystemOff => Self::SystemOff,
            Id::SystemReset => Self::SystemReset,
            Id::SystemReset232 | Id::SystemReset264 => Self::SystemReset2 {
                reset_type: ResetType::try_from(argument32(args, 1))
                    .map_err(|_| DecodeError::OutOfRange { register: 1 })?,
                cookie: natural(args, 2, convention),
                convention,
            },
            Id::MemProtect => Self::MemProtect {
                enable: argument32(args, 1) != 0,
            },
            Id::MemProtectCheckRange32 | Id::MemProtectCheckRange64 => Self::MemProtectCheckRange {
                base: natural(args, 1, convention),
                length: natural(args, 2, convention),
                convention,
            },
            Id::PsciFeatures => Self::Features {
                function_id: argument32(args, 1),
            },
            Id::CpuFreeze => Self::CpuFreeze,
            Id::CpuDefaultSuspend32 | Id::CpuDefaultSuspend64 => Self::CpuDefaultSuspend {
                entry_point: natural(args, 1, convention),
                context_id: natural(args, 2, convention),
                convention,
            },
            Id::NodeHwState32 | Id::NodeHwState64 => Self::NodeHwState {
                target_cpu: mpidr(args, 1, convention)?,
                power_level: at_most(args, 2, 3)?,
                convention,
            },
            Id::SystemSuspend32 | Id::SystemSuspend64 => Self::SystemSuspend {
                entry_point: natural(args, 1, convention),
                context_id: natural(args, 2, convention),
                convention,
            },
            Id::PsciSetSuspendMode => Self::SetSuspendMode {
                mode: SuspendMode::try_from(argument32(args, 1))
                    .map_err(|_| DecodeError::OutOfRange { register: 1 })?,
            },
            Id::PsciStatResidency32 | Id::PsciStatResidency64 => Self::StatResidency {
                target_cpu: mpidr(args, 1, convention)?,
                power_state: power_state(args, 2)?,
                convention,
            },
            Id::PsciStatCount32 | Id::PsciStatCount64 => Self::StatCount {
                target_cpu: mpidr(args, 1, convention)?,
                power_state: power_state(args, 2)?,
                convention,
            },
            // PSCI 1.3: not part of the 1.1 interface we implement.
            Id::SystemOff232 | Id::SystemOff264 => {
                return Err(DecodeError::UnknownFunction(function_id));
            }
        })
    }

    /// The function ID of this call.
    pub const fn function_id(&self) -> PsciFunctionId {
        use Convention::Smc32;
        use PsciFunctionId as Id;

        const fn pick(convention: Convention, smc32: Id, smc64: Id) -> Id {
            match convention {
                Smc32 => smc32,
                Convention::Smc64 => smc64,
            }
        }
        match *self {
            Self::Version => Id::PsciVersion,
            Self::CpuSuspend { convention, .. } => {
                pick(convention, Id::CpuSuspend32, Id::CpuSuspend64)
            }
            Self::CpuOff => Id::CpuOff,
            Self::CpuOn { convention, .. } => pick(convention, Id::CpuOn32, Id::CpuOn64),
            Self::AffinityInfo { convention, .. } => {
                pick(convention, Id::AffinityInfo32, Id::AffinityInfo64)
            }
            Self::Migrate { convention, .. } => pick(convention, Id::Migrate32, Id::Migrate64),
            Self::MigrateInfoType => Id::MigrateInfoType,
            Self::MigrateInfoUpCpu { convention } => {
                pick(convention, Id::MigrateInfoUpCpu32, Id::MigrateInfoUpCpu64)
            }
            Self::SystemOff => Id::SystemOff,
            Self::SystemReset => Id::SystemReset,
            Self::SystemReset2 { convention, .. } => {
                pick(convention, Id::SystemReset232, Id::SystemReset264)
            }
            Self::MemProtect { .. } => Id::MemProtect,
            Self::MemProtectCheckRange { convention, .. } => pick(
                convention,
                Id::MemProtectCheckRange32,
                Id::MemProtectCheckRange64,
            ),
            Self::Features { .. } => Id::PsciFeatures,
            Self::CpuFreeze => Id::CpuFreeze,
            Self::CpuDefaultSuspend { convention, .. } => {
                pick(convention, Id::CpuDefaultSuspend32, Id::CpuDefaultSuspend64)
            }
            Self::NodeHwState { convention, .. } => {
                pick(convention, Id::NodeHwState32, Id::NodeHwState64)
            }
            Self::SystemSuspend { convention, .. } => {
                pick(convention, Id::SystemSuspend32, Id::SystemSuspend64)
            }
            Self::SetSuspendMode { .. } => Id::PsciSetSuspendMode,
            Self::StatResidency { convention, .. } => {
                pick(convention, Id::PsciStatResidency32, Id::PsciStatResidency64)
            }
            Self::StatCount { convention, .. } => {
                pick(convention, Id::PsciStatCount32, Id::PsciStatCount64)
            }
        }
    }

    /// The function ID and argument registers of this call. Values of SMC32 forms are truncated
    /// to 32 bits, as the callee will read them.
    pub fn encode(&self) -> (u32, Arguments) {
        let id = u32::from(self.function_id());
        let width = |value: u64, convention: Convention| match convention {
            Convention::Smc32 => value & 0xFFFF_FFFF,
            Convention::Smc64 => value,
        };
        let args = match *self {
            Self::Version
            | Self::CpuOff
            | Self::MigrateInfoType
            | Self::MigrateInfoUpCpu { .. }
            | Self::SystemOff
            | Self::SystemReset
            | Self::CpuFreeze => arguments(&[]),
            Self::CpuSuspend {
                power_state,
                entry_point,
                context_id,
                convention,
            } => arguments(&[
                u32::from(power_state).into(),
                width(entry_point, convention),
                width(context_id, convention),
            ]),
            Self::CpuOn {
                target_cpu,
                entry_point,
                context_id,
                convention,
            } => arguments(&[
                width(target_cpu, convention),
                width(entry_point, convention),
                width(context_id, convention),
            ]),
            Self::AffinityInfo {
                target_affinity,
                lowest_affinity_level,
                convention,
            } => arguments(&[
                width(target_affinity, convention),
                lowest_affinity_level.into(),
            ]),
            Self::Migrate {
                target_cpu,
                convention,
            } => arguments(&[width(target_cpu, convention)]),
            Self::SystemReset2 {
                reset_type,
                cookie,
                convention,
            } => arguments(&[u32::from(reset_type).into(), width(cookie, convention)]),
            Self::MemProtect { enable } => arguments(&[u64::from(enable)]),
            Self::MemProtectCheckRange {
                base,
                length,
                convention,
            } => arguments(&[width(base, convention), width(length, convention)]),
            Self::Features { function_id } => arguments(&[function_id.into()]),
            Self::CpuDefaultSuspend {
                entry_point,
                context_id,
                convention,
            }
            | Self::SystemSuspend {
                entry_point,
                context_id,
                convention,
            } => arguments(&[
                width(entry_point, convention),
                width(context_id, convention),
            ]),
            Self::NodeHwState {
                target_cpu,
                power_level,
                convention,
            } => arguments(&[width(target_cpu, convention), power_level.into()]),
            Self::SetSuspendMode { mode } => arguments(&[u32::from(mode).into()]),
            Self::StatResidency {
                target_cpu,
                power_state,
                convention,
            }
            | Self::StatCount {
                target_cpu,
                power_state,
                convention,
            } => arguments(&[width(target_cpu, convention), u32::from(power_state).into()]),
        };
        (id, args)
    }
}

impl From<DecodeError> for ErrorCode {
    /// How a PSCI implementation answers a call that does not decode.
    fn from(error: DecodeError) -> Self {
        match error {
            DecodeError::UnknownFunction(_) => Self::NotSupported,
            DecodeError::ReservedBitsSet { .. }
            | DecodeError::OutOfRange { .. }
            | DecodeError::Misaligned { .. } => Self::InvalidParameters,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smccc::ARGUMENT_REGISTERS;
    use crate::test_support::any_arguments;
    use Convention::{Smc32, Smc64};
    use proptest::prelude::*;

    fn regs(values: &[u64]) -> Arguments {
        arguments(values)
    }

    const RETENTION: PowerState = PowerState::StandbyOrRetention(0x123);
    const POWER_DOWN: PowerState = PowerState::PowerDown(0x0FFF_FFFF);

    /// (function ID, argument registers, decoded call) for every PSCI 1.1 function and form.
    fn every_call() -> [(u32, Arguments, PsciCall); 36] {
        [
            (0x8400_0000, regs(&[]), PsciCall::Version),
            (
                0x8400_0001,
                regs(&[0x123, 0x8000_0000, 7]),
                PsciCall::CpuSuspend {
                    power_state: RETENTION,
                    entry_point: 0x8000_0000,
                    context_id: 7,
                    convention: Smc32,
                },
            ),
            (
                0xC400_0001,
                regs(&[0x4FFF_FFFF, 0x1_0000_0000, u64::MAX]),
                PsciCall::CpuSuspend {
                    power_state: POWER_DOWN,
                    entry_point: 0x1_0000_0000,
                    context_id: u64::MAX,
                    convention: Smc64,
                },
            ),
            (0x8400_0002, regs(&[]), PsciCall::CpuOff),
            (
                0x8400_0003,
                regs(&[0x0001_0203, 0x4008_0000, 1]),
                PsciCall::CpuOn {
                    target_cpu: 0x0001_0203,
                    entry_point: 0x4008_0000,
                    context_id: 1,
                    convention: Smc32,
                },
            ),
            (
                0xC400_0003,
                regs(&[0xFF_00FF_FFFF, 0x4_4008_0000, 2]),
                PsciCall::CpuOn {
                    target_cpu: 0xFF_00FF_FFFF,
                    entry_point: 0x4_4008_0000,
                    context_id: 2,
                    convention: Smc64,
                },
            ),
            (
                0x8400_0004,
                regs(&[0x100, 2]),
                PsciCall::AffinityInfo {
                    target_affinity: 0x100,
                    lowest_affinity_level: 2,
                    convention: Smc32,
                },
            ),
            (
                0xC400_0004,
                regs(&[0x1_0000_0001, 3]),
                PsciCall::AffinityInfo {
                    target_affinity: 0x1_0000_0001,
                    lowest_affinity_level: 3,
                    convention: Smc64,
                },
            ),
            (
                0x8400_0005,
                regs(&[3]),
                PsciCall::Migrate {
                    target_cpu: 3,
                    convention: Smc32,
                },
            ),
            (
                0xC400_0005,
                regs(&[0x2_0000_0000]),
                PsciCall::Migrate {
                    target_cpu: 0x2_0000_0000,
                    convention: Smc64,
                },
            ),
            (0x8400_0006, regs(&[]), PsciCall::MigrateInfoType),
            (
                0x8400_0007,
                regs(&[]),
                PsciCall::MigrateInfoUpCpu { convention: Smc32 },
            ),
            (
                0xC400_0007,
                regs(&[]),
                PsciCall::MigrateInfoUpCpu { convention: Smc64 },
            ),
            (0x8400_0008, regs(&[]), PsciCall::SystemOff),
            (0x8400_0009, regs(&[]), PsciCall::SystemReset),
            (
                0x8400_0012,
                regs(&[0, 5]),
                PsciCall::SystemReset2 {
                    reset_type: ResetType::Architectural(ArchitecturalResetType::SystemWarmReset),
                    cookie: 5,
                    convention: Smc32,
                },
            ),
            (
                0xC400_0012,
                regs(&[0x8000_0042, 0x1_0000_0000]),
                PsciCall::SystemReset2 {
                    reset_type: ResetType::VendorSpecific(0x42),
                    cookie: 0x1_0000_0000,
                    convention: Smc64,
                },
            ),
            (
                0x8400_0013,
                regs(&[1]),
                PsciCall::MemProtect { enable: true },
            ),
            (
                0x8400_0014,
                regs(&[0x4000_0000, 0x1000]),
                PsciCall::MemProtectCheckRange {
                    base: 0x4000_0000,
                    length: 0x1000,
                    convention: Smc32,
                },
            ),
            (
                0xC400_0014,
                regs(&[0x8_0000_0000, 0x2_0000_0000]),
                PsciCall::MemProtectCheckRange {
                    base: 0x8_0000_0000,
                    length: 0x2_0000_0000,
                    convention: Smc64,
                },
            ),
            (
                0x8400_000A,
                regs(&[0xC400_0003]),
                PsciCall::Features {
                    function_id: 0xC400_0003,
                },
            ),
            (0x8400_000B, regs(&[]), PsciCall::CpuFreeze),
            (
                0x8400_000C,
                regs(&[0x4000_0000, 9]),
                PsciCall::CpuDefaultSuspend {
                    entry_point: 0x4000_0000,
                    context_id: 9,
                    convention: Smc32,
                },
            ),
            (
                0xC400_000C,
                regs(&[0x4_0000_0000, 10]),
                PsciCall::CpuDefaultSuspend {
                    entry_point: 0x4_0000_0000,
                    context_id: 10,
                    convention: Smc64,
                },
            ),
            (
                0x8400_000D,
                regs(&[0x1, 0]),
                PsciCall::NodeHwState {
                    target_cpu: 1,
                    power_level: 0,
                    convention: Smc32,
                },
            ),
            (
                0xC400_000D,
                regs(&[0x1_0000_0000, 3]),
                PsciCall::NodeHwState {
                    target_cpu: 0x1_0000_0000,
                    power_level: 3,
                    convention: Smc64,
                },
            ),
            (
                0x8400_000E,
                regs(&[0x4000_0000, 11]),
                PsciCall::SystemSuspend {
                    entry_point: 0x4000_0000,
                    context_id: 11,
                    convention: Smc32,
                },
            ),
            (
                0xC400_000E,
                regs(&[0x4_0000_0000, 12]),
                PsciCall::SystemSuspend {
                    entry_point: 0x4_0000_0000,
                    context_id: 12,
                    convention: Smc64,
                },
            ),
            (
                0x8400_000F,
                regs(&[1]),
                PsciCall::SetSuspendMode {
                    mode: SuspendMode::OsInitiated,
                },
            ),
            (
                0x8400_000F,
                regs(&[0]),
                PsciCall::SetSuspendMode {
                    mode: SuspendMode::PlatformCoordinated,
                },
            ),
            (
                0x8400_0010,
                regs(&[2, 0x123]),
                PsciCall::StatResidency {
                    target_cpu: 2,
                    power_state: RETENTION,
                    convention: Smc32,
                },
            ),
            (
                0xC400_0010,
                regs(&[0x3_0000_0002, 0x4FFF_FFFF]),
                PsciCall::StatResidency {
                    target_cpu: 0x3_0000_0002,
                    power_state: POWER_DOWN,
                    convention: Smc64,
                },
            ),
            (
                0x8400_0011,
                regs(&[2, 0x123]),
                PsciCall::StatCount {
                    target_cpu: 2,
                    power_state: RETENTION,
                    convention: Smc32,
                },
            ),
            (
                0xC400_0011,
                regs(&[0x3_0000_0002, 0x4FFF_FFFF]),
                PsciCall::StatCount {
                    target_cpu: 0x3_0000_0002,
                    power_state: POWER_DOWN,
                    convention: Smc64,
                },
            ),
            (
                0x8400_0013,
                regs(&[0]),
                PsciCall::MemProtect { enable: false },
            ),
            (
                0x8400_0004,
                regs(&[0x0001_0000, 0]),
                PsciCall::AffinityInfo {
                    target_affinity: 0x0001_0000,
                    lowest_affinity_level: 0,
                    convention: Smc32,
                },
            ),
        ]
    }

    #[test]
    fn every_function_decodes_and_encodes() {
        for (id, args, call) in every_call() {
            assert_eq!(
                PsciCall::decode(FunctionId(id), &args),
                Ok(call),
                "{id:#010x}"
            );
            assert_eq!(call.encode(), (id, args), "{call:?}");
            assert!(owns(FunctionId(id)));
        }
    }

    #[test]
    fn smc32_forms_ignore_upper_halves() {
        let dirty = 0xDEAD_BEEF_0000_0000;
        for (id, args, call) in every_call() {
            if FunctionId(id).convention() != Smc32 {
                continue;
            }
            let mut noisy = args;
            for register in noisy.iter_mut() {
                *register |= dirty;
            }
            assert_eq!(
                PsciCall::decode(FunctionId(id), &noisy),
                Ok(call),
                "{id:#010x}"
            );
        }
    }

    #[test]
    fn sve_hint_is_ignored() {
        let args = regs(&[1, 0x4008_0000, 0]);
        assert_eq!(
            PsciCall::decode(FunctionId(0xC401_0003), &args),
            PsciCall::decode(FunctionId(0xC400_0003), &args)
        );
    }

    #[test]
    fn malformed_calls_table() {
        // (function ID, arguments, expected error, PSCI answer)
        let invalid = ErrorCode::InvalidParameters;
        let table: [(u32, Arguments, DecodeError, ErrorCode); 16] = [
            // Reserved power_state bits 31, 29, 28.
            (
                0xC400_0001,
                regs(&[1 << 31]),
                DecodeError::ReservedBitsSet { register: 1 },
                invalid,
            ),
            (
                0xC400_0001,
                regs(&[1 << 29]),
                DecodeError::ReservedBitsSet { register: 1 },
                invalid,
            ),
            (
                0x8400_0001,
                regs(&[1 << 28]),
                DecodeError::ReservedBitsSet { register: 1 },
                invalid,
            ),
            (
                0x8400_0010,
                regs(&[0, 1 << 31]),
                DecodeError::ReservedBitsSet { register: 2 },
                invalid,
            ),
            // MPIDR with non-affinity bits.
            (
                0xC400_0003,
                regs(&[1 << 24]),
                DecodeError::ReservedBitsSet { register: 1 },
                invalid,
            ),
            (
                0xC400_0003,
                regs(&[1 << 40]),
                DecodeError::ReservedBitsSet { register: 1 },
                invalid,
            ),
            (
                0x8400_0003,
                regs(&[0xFF00_0000]),
                DecodeError::ReservedBitsSet { register: 1 },
                invalid,
            ),
            (
                0xC400_000D,
                regs(&[1 << 63]),
                DecodeError::ReservedBitsSet { register: 1 },
                invalid,
            ),
            // Levels and modes out of range.
            (
                0x8400_0004,
                regs(&[0, 3]),
                DecodeError::OutOfRange { register: 2 },
                invalid,
            ),
            (
                0xC400_0004,
                regs(&[0, 4]),
                DecodeError::OutOfRange { register: 2 },
                invalid,
            ),
            (
                0x8400_000D,
                regs(&[0, 4]),
                DecodeError::OutOfRange { register: 2 },
                invalid,
            ),
            (
                0x8400_000F,
                regs(&[2]),
                DecodeError::OutOfRange { register: 1 },
                invalid,
            ),
            (
                0x8400_0012,
                regs(&[1]),
                DecodeError::OutOfRange { register: 1 },
                invalid,
            ),
            // Unknown: SMC64 twins of SMC32-only calls, SYSTEM_OFF2 (1.3), gaps, outside the range.
            (
                0xC400_0000,
                regs(&[]),
                DecodeError::UnknownFunction(FunctionId(0xC400_0000)),
                ErrorCode::NotSupported,
            ),
            (
                0x8400_0015,
                regs(&[1]),
                DecodeError::UnknownFunction(FunctionId(0x8400_0015)),
                ErrorCode::NotSupported,
            ),
            (
                0x8400_001F,
                regs(&[]),
                DecodeError::UnknownFunction(FunctionId(0x8400_001F)),
                ErrorCode::NotSupported,
            ),
        ];
        for (id, args, error, answer) in table {
            assert_eq!(
                PsciCall::decode(FunctionId(id), &args),
                Err(error),
                "{id:#010x}"
            );
            assert_eq!(ErrorCode::from(error), answer);
        }
        for smc32_only in [0x02, 0x06, 0x08, 0x09, 0x0A, 0x0B, 0x0F, 0x13] {
            let id = FunctionId(0xC400_0000 | smc32_only);
            assert_eq!(
                PsciCall::decode(id, &regs(&[])),
                Err(DecodeError::UnknownFunction(id))
            );
        }
    }

    #[test]
    fn power_state_format() {
        assert_eq!(
            PowerState::try_from(0x4000_0001),
            Ok(PowerState::PowerDown(1))
        );
        assert_eq!(
            PowerState::try_from(0x0000_0001),
            Ok(PowerState::StandbyOrRetention(1))
        );
        for reserved in [1 << 31, 1 << 29, 1 << 28] {
            assert!(PowerState::try_from(reserved).is_err());
        }
        for value in [0, 1, 0x0FFF_FFFF, 0x4000_0000, 0x4FFF_FFFF] {
            assert_eq!(PowerState::try_from(value).map(u32::from), Ok(value));
        }
    }

    #[test]
    fn return_values() {
        assert_eq!(u32::from(VERSION), 0x0001_0001);
        let codes = [
            (ErrorCode::NotSupported, -1),
            (ErrorCode::InvalidParameters, -2),
            (ErrorCode::Denied, -3),
            (ErrorCode::AlreadyOn, -4),
            (ErrorCode::OnPending, -5),
            (ErrorCode::InternalFailure, -6),
            (ErrorCode::NotPresent, -7),
            (ErrorCode::Disabled, -8),
            (ErrorCode::InvalidAddress, -9),
        ];
        for (code, value) in codes {
            assert_eq!(i32::from(code), value);
            assert_eq!(u64::from(code), value as i64 as u64);
            assert_eq!(ErrorCode::try_from(value), Ok(code));
        }
        assert_eq!(u32::from(AffinityState::On), 0);
        assert_eq!(u32::from(AffinityState::Off), 1);
        assert_eq!(u32::from(AffinityState::OnPending), 2);
        assert_eq!(
            u32::from(FeatureFlagsCpuSuspend::EXTENDED_POWER_STATE),
            0b10
        );
    }

    #[test]
    fn ownership_of_the_psci_range() {
        assert!(owns(FunctionId(0x8400_001F)));
        assert!(owns(FunctionId(0xC400_0000)));
        assert!(!owns(FunctionId(0x8400_0020)));
        assert!(!owns(FunctionId(0x8500_0000)));
        assert!(!owns(FunctionId(0x0400_0000)));
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_round_trips(
            number in 0u32..0x40, smc64 in any::<bool>(), hint in any::<bool>(),
            args in any_arguments()
        ) {
            let id = FunctionId(0x8400_0000 | number | u32::from(smc64) << 30 | u32::from(hint) << 16);
            if let Ok(call) = PsciCall::decode(id, &args) {
                let (encoded_id, encoded_args) = call.encode();
                prop_assert_eq!(encoded_id, id.without_sve_hint().value());
                prop_assert_eq!(PsciCall::decode(FunctionId(encoded_id), &encoded_args), Ok(call));
                // Encoding writes only the registers the call uses.
                prop_assert!(encoded_args[4..ARGUMENT_REGISTERS].iter().all(|&r| r == 0));
            }
        }

        #[test]
        fn decode_any_id_never_panics(id in any::<u32>(), args in any_arguments()) {
            let _ = PsciCall::decode(FunctionId(id), &args);
        }
    }
}
