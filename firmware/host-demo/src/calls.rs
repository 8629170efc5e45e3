//! The host's calls: hypercalls to the hypervisor (`HVC`) and SMCs (which the hypervisor traps and
//! forwards, rewrites or refuses; the SMC wrapper is `platform_qemu::smccc::smc`).

use abi::hypercall::{HostHypercall, HypercallFailure, HypercallOutput, Results};
pub use platform_qemu::smccc::smc;

/// Makes an `HVC` with x0 = `function_id` and x1-x4 = `arguments`; returns x0-x6.
pub fn hvc(function_id: u32, arguments: [u64; 4]) -> Results {
    let mut registers = [
        u64::from(function_id),
        arguments[0],
        arguments[1],
        arguments[2],
        arguments[3],
        0,
        0,
    ];
    // SAFETY: the hypervisor follows SMCCC: it writes x0-x17 at most and preserves the stack and the
    // host's memory (apart from what a hypercall documents, which none of these do).
    unsafe {
        core::arch::asm!(
            "hvc #0",
            inout("x0") registers[0], inout("x1") registers[1], inout("x2") registers[2],
            inout("x3") registers[3], inout("x4") registers[4], inout("x5") registers[5],
            inout("x6") registers[6], out("x7") _, out("x8") _, out("x9") _, out("x10") _,
            out("x11") _, out("x12") _, out("x13") _, out("x14") _, out("x15") _, out("x16") _,
            out("x17") _,
            options(nostack),
        );
    }
    registers
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
pub const CPU_ON: u32 = 0xC400_0003;
/// PSCI `CPU_OFF`.
pub const CPU_OFF: u32 = 0x8400_0002;
/// PSCI `AFFINITY_INFO` (SMC64).
pub const AFFINITY_INFO: u32 = 0xC400_0004;
/// The monitor's rendezvous statistics call (SiP).
pub const RENDEZVOUS_STATISTICS: u32 = 0xC200_0010;
