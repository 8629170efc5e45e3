//! What the hypervisor does with an SMC the host made (trapped by `HCR_EL2.TSC`).
//!
//! * PSCI `CPU_ON` and power-down `CPU_SUSPEND` are rewritten: the CPU must come back through the
//!   hypervisor (which sets up its EL2 state and the host's stage-2) before it runs host code, so the
//!   hypervisor substitutes its own entry point and remembers the host's.
//! * The erratum 4193714 call range is the hypervisor's own: the host gets `NOT_SUPPORTED`, so it
//!   cannot make every CPU take a firmware interrupt at will.
//! * Everything else goes to EL3 unchanged.

use abi::psci::{PowerState, PsciCall};
use abi::smccc::{Arguments, Convention, FunctionId, ReturnCode};

/// The decision for one host SMC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostSmcAction {
    /// Pass the call to EL3 unchanged and hand its results back.
    Forward,
    /// Answer it without EL3, with this `x0`.
    Refuse(u64),
    /// `CPU_ON`: start `target_cpu` at the hypervisor's entry, then at the host's.
    CpuOn {
        /// MPIDR of the CPU to start.
        target_cpu: u64,
        /// The host's entry point.
        entry_point: u64,
        /// The host's context id (its `x0` at `entry_point`).
        context_id: u64,
        /// SMC32 or SMC64 form (the forwarded call keeps it).
        convention: Convention,
    },
    /// Power-down `CPU_SUSPEND`: resume at the hypervisor's entry, then at the host's.
    CpuSuspend {
        /// The power state (forwarded unchanged).
        power_state: u32,
        /// The host's resume point.
        entry_point: u64,
        /// The host's context id.
        context_id: u64,
        /// SMC32 or SMC64 form.
        convention: Convention,
    },
}

/// Decides what to do with the host's SMC `function_id` with `arguments` (`x1`...).
///
/// The decision is taken on the ID without the SMCCC 1.3 SVE live-state hint (bit 16 of a fast
/// call), because that is the ID the monitor acts on: classifying the raw ID would let the host reach
/// the erratum call as `0x8101_0010`.
pub fn classify(function_id: u32, arguments: &Arguments) -> HostSmcAction {
    let id = FunctionId(function_id).without_sve_hint();
    if abi::cpu_service::is_erratum_4193714_reserved(id.value()) {
        return HostSmcAction::Refuse(ReturnCode::NotSupported.to_register());
    }
    if !abi::psci::owns(id) {
        return HostSmcAction::Forward;
    }
    match PsciCall::decode(id, arguments) {
        Ok(PsciCall::CpuOn {
            target_cpu,
            entry_point,
            context_id,
            convention,
        }) => HostSmcAction::CpuOn {
            target_cpu,
            entry_point,
            context_id,
            convention,
        },
        Ok(PsciCall::CpuSuspend {
            power_state: power_state @ PowerState::PowerDown(_),
            entry_point,
            context_id,
            convention,
        }) => HostSmcAction::CpuSuspend {
            power_state: u32::from(power_state),
            entry_point,
            context_id,
            convention,
        },
        // Standby suspends return in place; malformed calls get EL3's own error code.
        _ => HostSmcAction::Forward,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(values: &[u64]) -> Arguments {
        let mut registers = [0; abi::smccc::ARGUMENT_REGISTERS];
        registers[..values.len()].copy_from_slice(values);
        registers
    }

    #[test]
    fn host_smcs_table() {
        let not_supported = ReturnCode::NotSupported.to_register();
        let table = [
            (0x8100_0010, args(&[]), HostSmcAction::Refuse(not_supported)),
            (0x8100_001F, args(&[]), HostSmcAction::Refuse(not_supported)),
            (0xC100_0010, args(&[]), HostSmcAction::Refuse(not_supported)),
            // The same calls with the SVE live-state hint: the monitor ignores the hint, so must we.
            (0x8101_0010, args(&[]), HostSmcAction::Refuse(not_supported)),
            (0x8101_001F, args(&[]), HostSmcAction::Refuse(not_supported)),
            (0xC101_0010, args(&[]), HostSmcAction::Refuse(not_supported)),
            (
                0xC401_0003,
                args(&[2, 0x4220_1000, 7]),
                HostSmcAction::CpuOn {
                    target_cpu: 2,
                    entry_point: 0x4220_1000,
                    context_id: 7,
                    convention: Convention::Smc64,
                },
            ),
            (0x8100_FF01, args(&[]), HostSmcAction::Forward),
            (0x8400_0000, args(&[]), HostSmcAction::Forward),
            (
                abi::statistics::RENDEZVOUS_STATISTICS,
                args(&[1]),
                HostSmcAction::Forward,
            ),
            (
                0xC400_0003,
                args(&[2, 0x4220_1000, 7]),
                HostSmcAction::CpuOn {
                    target_cpu: 2,
                    entry_point: 0x4220_1000,
                    context_id: 7,
                    convention: Convention::Smc64,
                },
            ),
            (
                0xC400_0001,
                args(&[1 << 30, 0x4220_2000, 9]),
                HostSmcAction::CpuSuspend {
                    power_state: 1 << 30,
                    entry_point: 0x4220_2000,
                    context_id: 9,
                    convention: Convention::Smc64,
                },
            ),
            // Standby suspend returns in place: nothing to rewrite.
            (
                0xC400_0001,
                args(&[0, 0x4220_2000, 9]),
                HostSmcAction::Forward,
            ),
            (0x8400_0002, args(&[]), HostSmcAction::Forward),
        ];
        for (function_id, arguments, expected) in table {
            assert_eq!(
                classify(function_id, &arguments),
                expected,
                "{function_id:#x}"
            );
        }
    }
}
