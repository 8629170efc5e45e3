//! System-register access by name (the hypervisor is the only user of these macros).

/// Reads a system register by name.
macro_rules! read_sysreg {
    ($name:literal) => {{
        let value: u64;
        // SAFETY: reading a system register that exists at EL2 has no side effects on memory.
        unsafe {
            core::arch::asm!(concat!("mrs {}, ", $name), out(reg) value, options(nomem, nostack, preserves_flags))
        };
        value
    }};
}

/// Writes a system register by name (no ISB: callers add one where the change must take effect).
macro_rules! write_sysreg {
    ($name:literal, $value:expr) => {{
        let value: u64 = $value;
        // SAFETY: every caller writes an EL1 register on behalf of the vCPU or host about to run, or an
        // EL2 control register with a value chosen in this module; none changes the hypervisor's own
        // memory or translation.
        unsafe { core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) value, options(nostack, preserves_flags)) };
    }};
}

pub(crate) use {read_sysreg, write_sysreg};

/// `ISB`.
pub fn isb() {
    // SAFETY: a barrier touches no memory.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
}
