//! The saved state of the interrupted (Non-secure) world and the Rust ends of the exception vectors.

use crate::el3::read_sysreg;
use crate::services;
use firmware_runtime::println;

/// What `exceptions.S` saves on this CPU's EL3 stack on every synchronous exception (with
/// `save_exception_frame el3`): x0-x30, `ELR_EL3` (`return_address`) and `SPSR_EL3` (`saved_state`).
pub type Context = firmware_runtime::exception::ExceptionFrame;

/// FIQ (a Group 0 interrupt) taken from the Non-secure world or from the monitor itself. Its entry
/// (`fiq_entry` in `exceptions.S`) saves only the registers this call may clobber.
#[unsafe(no_mangle)]
extern "C" fn handle_fiq() {
    services::cpu::handle_fiq();
}

/// The slow path of a FIQ from the Non-secure world (`fiq_slow` in `exceptions.S`): the interrupt
/// `intid` that `handle_fiq_fast` acknowledged but left alone.
#[unsafe(no_mangle)]
extern "C" fn handle_fiq_slow(intid: u64) {
    // The INTID came from a 24-bit field.
    services::cpu::handle_fiq_acknowledged(intid as u32);
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
    firmware_runtime::semihosting::exit(102)
}

/// Any vector the monitor does not expect to be used.
#[unsafe(no_mangle)]
extern "C" fn handle_unexpected_exception(context: &mut Context) {
    let syndrome = read_sysreg!("esr_el3");
    println!(
        "monitor: unexpected exception: ESR_EL3 {syndrome:#x} ELR_EL3 {:#x}",
        context.return_address
    );
    firmware_runtime::semihosting::exit(103)
}
