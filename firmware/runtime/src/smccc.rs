//! The SMC conduit of the SMC Calling Convention, as the Non-secure images call the monitor (the
//! test payload directly, the host demo through the hypervisor, which forwards, rewrites or refuses
//! the call).
//!
//! The call itself is `smccc::smc64` (the field's crate; it marks x0-x17 as written by the callee, as
//! SMCCC allows). This adapter only spares the call sites the 17-element argument array: the
//! callers here pass three arguments and read four results.

/// Makes an `SMC` with x0 = `function_id` and x1-x3 = `arguments` (x4-x17 zero); returns x0-x3.
pub fn smc(function_id: u32, arguments: [u64; 3]) -> [u64; 4] {
    let mut registers = [0; 17];
    registers[..3].copy_from_slice(&arguments);
    let results = smccc::smc64(function_id, registers);
    [results[0], results[1], results[2], results[3]]
}
