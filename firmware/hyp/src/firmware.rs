//! Calls to the EL3 monitor: a general SMC (for forwarding the host's calls) and the erratum 4193714
//! DVMSync call the ownership rules need.

/// The SMCCC registers of a call or its results: `x0` to `x17`.
pub type Registers = [u64; 18];

/// Makes an SMC with `registers` as x0-x17 and returns x0-x17 after it.
pub fn smc(mut registers: Registers) -> Registers {
    // SAFETY: the monitor follows SMCCC: it may write x0-x17 and preserves everything else, including
    // the stack and memory the hypervisor owns (it never writes Non-secure memory on these calls).
    unsafe {
        core::arch::asm!(
            "smc #0",
            inout("x0") registers[0], inout("x1") registers[1], inout("x2") registers[2],
            inout("x3") registers[3], inout("x4") registers[4], inout("x5") registers[5],
            inout("x6") registers[6], inout("x7") registers[7], inout("x8") registers[8],
            inout("x9") registers[9], inout("x10") registers[10], inout("x11") registers[11],
            inout("x12") registers[12], inout("x13") registers[13], inout("x14") registers[14],
            inout("x15") registers[15], inout("x16") registers[16], inout("x17") registers[17],
            options(nostack),
        );
    }
    registers
}

/// The erratum 4193714 call `0x8100_0010`: returns the firmware's `x0` (0 = every CPU ran its DSB).
pub fn dvm_sync() -> i64 {
    let mut registers = [0; 18];
    registers[0] = u64::from(abi::cpu_service::ERRATUM_4193714_WORKAROUND);
    smc(registers)[0] as i64
}
