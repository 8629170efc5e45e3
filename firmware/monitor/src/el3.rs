//! EL3 controls that decide what the Non-secure world may do: set on every CPU before it first enters
//! the Non-secure world (at boot and after each warm boot), and the register macros of the monitor's
//! other modules.

/// Reads a system register by name.
macro_rules! read_sysreg {
    ($name:literal) => {{
        let value: u64;
        // SAFETY: reading an ID or control register has no side effects.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $name), out(reg) value, options(nomem, nostack, preserves_flags)) };
        value
    }};
}
pub(crate) use read_sysreg;

/// Writes a system register by name.
macro_rules! write_sysreg {
    ($name:literal, $value:expr) => {{
        let value: u64 = $value;
        // SAFETY: the callers write the saved state of a lower exception level (its syndrome, return
        // address and state), which only decides where that level resumes.
        unsafe { core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) value, options(nomem, nostack, preserves_flags)) };
    }};
}
pub(crate) use write_sysreg;

/// Sets up this CPU's EL3 controls (`SCR_EL3`, `CPTR_EL3`, `MDCR_EL3`, `ZCR_EL3`, `SMCR_EL3`) from
/// its ID registers: the decisions and their host tests are `cpu_setup::el3`. The Non-secure PMU
/// counts EL3 only in the benchmark build.
pub fn init_cpu() {
    let counting = if cfg!(feature = "benchmark") {
        cpu_setup::Counting::Allowed
    } else {
        cpu_setup::Counting::Prohibited
    };
    cpu_setup::el3::init_cpu(counting);
}
