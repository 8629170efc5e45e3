//! The saved state of the interrupted (Non-secure) world and the Rust ends of the exception vectors.

use crate::el3::read_sysreg;
use crate::services;
use platform_qemu::println;

/// What `exceptions.S` saves on this CPU's EL3 stack on every exception: the layout is shared with the
/// assembly (x0-x30 at offset 0, ELR_EL3 at 0xF8, SPSR_EL3 at 0x100, size 0x110).
#[repr(C)]
pub struct Context {
    /// x0 to x30 of the interrupted code.
    pub registers: [u64; 31],
    /// Where the interrupted code continues (`ELR_EL3`).
    pub return_address: u64,
    /// The interrupted code's PSTATE (`SPSR_EL3`).
    pub saved_state: u64,
    padding: u64,
}

const _: () = assert!(size_of::<Context>() == 0x110);

/// Exception class of an `SMC` executed in AArch64 state.
const EC_SMC64: u64 = 0x17;

/// Synchronous exception from the Non-secure world: an SMC (anything else is a monitor bug or a
/// configuration error and stops the system).
#[unsafe(no_mangle)]
extern "C" fn handle_lower_el_sync(context: &mut Context) {
    let syndrome = read_sysreg!("esr_el3");
    if syndrome >> 26 == EC_SMC64 {
        services::dispatch(context);
    } else {
        panic!(
            "unexpected trap from the Non-secure world: ESR_EL3 {syndrome:#x}, ELR_EL3 {:#x}",
            context.return_address
        );
    }
}

/// FIQ (a Group 0 interrupt) taken from the Non-secure world or from the monitor itself. Its entry
/// (`fiq_entry` in `exceptions.S`) saves only the registers this call may clobber.
#[unsafe(no_mangle)]
extern "C" fn handle_fiq() {
    services::cpu::handle_fiq();
}

/// Synchronous exception in the monitor itself: always a bug.
#[unsafe(no_mangle)]
extern "C" fn handle_current_el_sync(context: &mut Context) {
    let syndrome = read_sysreg!("esr_el3");
    let fault_address = read_sysreg!("far_el3");
    println!(
        "monitor: exception at EL3: ESR_EL3 {syndrome:#x} ELR_EL3 {:#x} FAR_EL3 {fault_address:#x}",
        context.return_address
    );
    platform_qemu::semihosting::exit(102)
}

/// Any vector the monitor does not expect to be used.
#[unsafe(no_mangle)]
extern "C" fn handle_unexpected_exception(context: &mut Context) {
    let syndrome = read_sysreg!("esr_el3");
    println!(
        "monitor: unexpected exception: ESR_EL3 {syndrome:#x} ELR_EL3 {:#x}",
        context.return_address
    );
    platform_qemu::semihosting::exit(103)
}
