//! Reads of memory that may not be the host's any more, survived: a load that faults is skipped
//! and reported instead of killing the launcher.
//!
//! The load is one instruction at a known label (`pvm_probe_load`). A `SIGSEGV`/`SIGBUS` handler
//! checks that the fault is exactly there, sets x1 (the "faulted" flag the probe returns) and
//! resumes after the load. A fault anywhere else is a real bug: the handler restores the default
//! action and returns, so the fault happens again and the process dies as it should.

use core::sync::atomic::{AtomicBool, Ordering};

core::arch::global_asm!(
    ".global pvm_probe_read",
    "pvm_probe_read:",
    "    mov   x1, #0",
    ".global pvm_probe_load",
    "pvm_probe_load:",
    "    ldr   x2, [x0]",
    "    mov   x0, x1",
    "    mov   x1, x2",
    "    ret",
);

unsafe extern "C" {
    /// Reads the 64-bit word at x0; returns (x0 = 1 if the load faulted, x1 = the word).
    fn pvm_probe_read(address: *const u64) -> ProbeResult;
    static pvm_probe_load: u8;
}

/// x0/x1 of `pvm_probe_read`.
#[repr(C)]
struct ProbeResult {
    faulted: u64,
    value: u64,
}

static INSTALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_fault(
    signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let load = (&raw const pvm_probe_load) as u64;
    // SAFETY: the kernel passes a valid `ucontext_t` to an `SA_SIGINFO` handler; only this thread
    // uses it while the handler runs.
    let context = unsafe { &mut *context.cast::<libc::ucontext_t>() };
    if context.uc_mcontext.pc == load {
        context.uc_mcontext.regs[1] = 1;
        context.uc_mcontext.pc += 4;
        return;
    }
    // Not the probe: die of this signal as if no handler were installed.
    // SAFETY: resetting a signal's action to the default is always valid.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
    }
}

/// Installs the fault handler (once).
pub fn install() -> Result<(), String> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    for signal in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: `sigaction` is plain data; all zeroes is "no flags, empty mask".
        let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
        action.sa_sigaction = on_fault as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        // SAFETY: `action` is initialised and its handler has the `SA_SIGINFO` signature.
        let result = unsafe { libc::sigaction(signal, &action, core::ptr::null_mut()) };
        if result != 0 {
            return Err(format!(
                "cannot install the handler for signal {signal}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Reads the word at `address`: `None` when the read faulted.
///
/// # Safety
/// `address` must be 8-byte aligned and lie in a mapping of this process (the handler only turns
/// faults of pages the kernel cannot give, such as pages pKVM gave a protected guest, into `None`).
pub unsafe fn read(address: *const u64) -> Option<u64> {
    assert!(INSTALLED.load(Ordering::SeqCst), "probe::install first");
    // SAFETY: the caller guarantees the address is mapped and aligned; a fault on it is caught by
    // the handler, which resumes after the load with the flag set.
    let result = unsafe { pvm_probe_read(address) };
    (result.faulted == 0).then_some(result.value)
}
