//! Calls to the EL3 monitor: a general SMC (for forwarding the host's calls) and the erratum 4193714
//! DVMSync call the ownership rules need.

/// The SMCCC registers of a call or its results: `x0` to `x17`.
pub type Registers = [u64; 18];

/// Makes an SMC with `registers` as x0-x17 and returns x0-x17 after it (`smccc::smc64`: the monitor
/// follows SMCCC, it may write x0-x17 and preserves everything else).
pub fn smc(registers: Registers) -> Registers {
    let mut arguments = [0; 17];
    arguments.copy_from_slice(&registers[1..]);
    // The function ID is the low 32 bits of x0 (SMCCC); the callee ignores the rest.
    smccc::smc64(registers[0] as u32, arguments)
}

/// The erratum 4193714 call `0x8100_0010`: returns the firmware's `x0` (0 = every CPU ran its DSB).
pub fn dvm_sync() -> i64 {
    let mut registers = [0; 18];
    registers[0] = u64::from(abi::cpu_service::ERRATUM_4193714_WORKAROUND);
    smc(registers)[0] as i64
}
