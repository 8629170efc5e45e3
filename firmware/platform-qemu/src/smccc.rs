//! The SMC conduit of the SMC Calling Convention, as the Non-secure images call the monitor (the
//! test payload directly, the host demo through the hypervisor, which forwards, rewrites or refuses
//! the call).
//!
//! What we wrote ourselves and why: `smccc` 0.2 has the function IDs and results but its calls take
//! and return 18 registers; the callers here pass three arguments and read four results, and this
//! keeps each call at one `smc` instruction.

/// Makes an `SMC` with x0 = `function_id` and x1-x3 = `arguments`; returns x0-x3.
///
/// The callee may write x0-x17 (the SMCCC rule for calls whose results could be in any of them), so
/// the compiler keeps nothing it needs in x4-x17 across the call.
pub fn smc(function_id: u32, arguments: [u64; 3]) -> [u64; 4] {
    let mut registers = [
        u64::from(function_id),
        arguments[0],
        arguments[1],
        arguments[2],
    ];
    // SAFETY: an SMCCC call writes x0-x17 at most (all marked as outputs here) and preserves the
    // stack and the caller's memory.
    unsafe {
        core::arch::asm!(
            "smc #0",
            inout("x0") registers[0], inout("x1") registers[1], inout("x2") registers[2],
            inout("x3") registers[3], out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _,
            out("x14") _, out("x15") _, out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    registers
}
