//! EL3 controls that decide what the Non-secure world may do: set on every CPU before it first enters
//! the Non-secure world (at boot and after each warm boot).

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

const SCR_NS: u64 = 1 << 0;
const SCR_FIQ: u64 = 1 << 2;
const SCR_RES1: u64 = (1 << 4) | (1 << 5);
const SCR_HCE: u64 = 1 << 8;
const SCR_SIF: u64 = 1 << 9;
const SCR_RW: u64 = 1 << 10;
const SCR_APK: u64 = 1 << 16;
const SCR_API: u64 = 1 << 17;
const SCR_ENSCXT: u64 = 1 << 25;
const SCR_FGTEN: u64 = 1 << 27;
const SCR_ECVEN: u64 = 1 << 28;
const SCR_HXEN: u64 = 1 << 38;
const SCR_ENTP2: u64 = 1 << 41;

const CPTR_EZ: u64 = 1 << 8;
const CPTR_ESM: u64 = 1 << 12;
/// `MDCR_EL3`: in the benchmark build SPME (bit 17), so the Non-secure PMU also counts EL3 and the
/// benchmark sees the monitor's cost; otherwise 0, so the Non-secure world learns nothing of what
/// the Secure world executes (counting prohibited there, SPME clear).
const MDCR: u64 = if cfg!(feature = "benchmark") {
    1 << 17
} else {
    0
};

/// Extracts a 4-bit ID register field.
fn id_field(value: u64, shift: u32) -> u64 {
    (value >> shift) & 0xF
}

/// Sets up this CPU's EL3 controls:
///
/// * `SCR_EL3`: lower levels are Non-secure and AArch64, HVC enabled, SMC enabled (SMD=0), IRQs
///   routed to the lower ELs, FIQs (Group 0: the rendezvous SGI) to EL3, and the features the
///   hypervisor and Linux use (pointer authentication, fine-grained traps, ECV, HCRX, SCXTNUM,
///   TPIDR2) not trapped when the CPU has them.
/// * `CPTR_EL3`: FP/SIMD, SVE and SME not trapped; the largest vector lengths allowed.
/// * `MDCR_EL3`: the PMU usable from the Non-secure world; counting at EL3 only in the benchmark
///   build.
pub fn init_cpu() {
    let pfr0 = read_sysreg!("id_aa64pfr0_el1");
    let pfr1 = read_sysreg!("id_aa64pfr1_el1");
    let mmfr0 = read_sysreg!("id_aa64mmfr0_el1");
    let mmfr1 = read_sysreg!("id_aa64mmfr1_el1");
    let has_sve = id_field(pfr0, 32) != 0;
    let has_sme = id_field(pfr1, 24) != 0;

    let mut scr = SCR_NS | SCR_FIQ | SCR_RES1 | SCR_HCE | SCR_SIF | SCR_RW | SCR_APK | SCR_API;
    if id_field(pfr0, 56) >= 2 {
        // FEAT_CSV2_2: SCXTNUM_ELx not trapped.
        scr |= SCR_ENSCXT;
    }
    if id_field(mmfr0, 56) != 0 {
        scr |= SCR_FGTEN;
    }
    if id_field(mmfr0, 60) != 0 {
        scr |= SCR_ECVEN;
    }
    if id_field(mmfr1, 40) != 0 {
        scr |= SCR_HXEN;
    }
    if has_sme {
        // TPIDR2_EL0 (SME) not trapped: Linux switches it on every context switch.
        scr |= SCR_ENTP2;
    }
    let mut cptr = 0;
    if has_sve {
        cptr |= CPTR_EZ;
    }
    if has_sme {
        cptr |= CPTR_ESM;
    }
    // SAFETY: these writes only change what lower exception levels may do and where their FIQs go;
    // the monitor itself uses no FP/SIMD, SVE or SME (it is built soft-float).
    unsafe {
        core::arch::asm!(
            "msr scr_el3, {scr}",
            "msr cptr_el3, {cptr}",
            "msr mdcr_el3, {mdcr}",
            "isb",
            scr = in(reg) scr,
            cptr = in(reg) cptr,
            mdcr = in(reg) MDCR,
            options(nostack),
        );
    }
    if has_sve {
        // SAFETY: ZCR_EL3 exists (SVE) and is no longer trapped; LEN = 15 allows 2048-bit vectors.
        unsafe { core::arch::asm!("msr S3_6_C1_C2_0, {}", "isb", in(reg) 15u64, options(nostack)) };
    }
    if has_sme {
        // SAFETY: SMCR_EL3 exists (SME) and is no longer trapped; FA64 on and LEN = 15.
        unsafe {
            core::arch::asm!("msr S3_6_C1_C2_6, {}", "isb", in(reg) (1u64 << 31) | 15, options(nostack))
        };
    }
}
