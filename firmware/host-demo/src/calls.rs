//! The host's calls: hypercalls to the hypervisor (`HVC`) and SMCs (which the hypervisor traps and
//! forwards, rewrites or refuses; the SMC wrapper is `firmware_runtime::smccc::smc`).

use abi::hypercall::{HostHypercall, HypercallFailure, HypercallOutput, Results};
pub use firmware_runtime::smccc::smc;

/// Makes an `HVC` (`smccc::hvc64`) with x0 = `function_id` and x1-x4 = `arguments`; returns x0-x6.
pub fn hvc(function_id: u32, arguments: [u64; 4]) -> Results {
    let mut registers = [0; 17];
    registers[..4].copy_from_slice(&arguments);
    let results = smccc::hvc64(function_id, registers);
    let mut out: Results = [0; 7];
    out.copy_from_slice(&results[..7]);
    out
}

/// Makes a host hypercall and decodes its result.
pub fn hypercall(call: HostHypercall) -> Result<HypercallOutput, HypercallFailure> {
    let (function_id, arguments) = call.encode();
    let results = hvc(
        function_id,
        [arguments[0], arguments[1], arguments[2], arguments[3]],
    );
    call.decode_result(&results)
}

/// PSCI `CPU_ON` (SMC64).
pub const CPU_ON: u32 = abi::psci::PsciFunctionId::CpuOn64 as u32;
/// PSCI `CPU_OFF`.
pub const CPU_OFF: u32 = abi::psci::PsciFunctionId::CpuOff as u32;
/// PSCI `AFFINITY_INFO` (SMC64).
pub const AFFINITY_INFO: u32 = abi::psci::PsciFunctionId::AffinityInfo64 as u32;
pub use abi::statistics::RENDEZVOUS_STATISTICS;
