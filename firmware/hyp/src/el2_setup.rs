//! This CPU's EL2 controls: what `HCR_EL2`, `MDCR_EL2`, `CPTR_EL2`, the timers' and the GIC's EL2
//! registers hold while the host runs (set by [`cpu_init`] on every CPU that enters the host) and
//! while a guest runs (`world_switch` switches to the guest's values and back). The values are
//! decided, and host-tested, in `cpu_setup::el2`.

use crate::sysreg::{self, SMCR_EL2_FA64, SMCR_EL2_LEN_MAX, ZCR_EL2_LEN_MAX, isb};
use crate::{GEOMETRY, PER_CPU, PerCpu, host_vttbr};
use arm_sysregs::el0::accessors::read_pmcr_el0;
use arm_sysregs::el1::accessors::{
    read_id_aa64pfr0_el1, read_id_aa64pfr1_el1, read_midr_el1, read_mpidr_el1, write_sctlr_el1,
};
use arm_sysregs::el2::accessors::{
    write_cnthctl_el2, write_cntvoff_el2, write_cptr_el2, write_hcr_el2, write_hstr_el2,
    write_icc_sre_el2, write_mdcr_el2, write_tpidr_el2, write_vmpidr_el2, write_vpidr_el2,
    write_vtcr_el2, write_vttbr_el2,
};
use arm_sysregs::el2::registers::{
    CntvoffEl2, IccSreEl2, MdcrEl2, TpidrEl2, VmpidrEl2, VpidrEl2, VtcrEl2, VttbrEl2,
};
use cpu_setup::Counting;
use cpu_setup::el2::{CNTHCTL_HOST, HCR_HOST, cptr_el2_host};

/// Whether the host's PMU may count at EL2: only in the benchmark build.
const COUNTING: Counting = if cfg!(feature = "benchmark") {
    Counting::Allowed
} else {
    Counting::Prohibited
};

/// `MDCR_EL2` while the host runs (`cpu_setup::el2::mdcr_el2_host` for this CPU's counters).
pub fn mdcr_el2_host() -> MdcrEl2 {
    cpu_setup::el2::mdcr_el2_host(read_pmcr_el0().n(), COUNTING)
}

/// `MDCR_EL2` while a guest runs (`cpu_setup::el2::mdcr_el2_guest` for this CPU's counters).
pub fn mdcr_el2_guest() -> MdcrEl2 {
    cpu_setup::el2::mdcr_el2_guest(read_pmcr_el0().n(), COUNTING)
}

/// This CPU's EL2 controls for running the host: vectors' per-CPU block, HCR_EL2, the host's stage-2,
/// no FP/SVE/SME traps (full vector lengths), EL1 access to the physical timer and to the GIC's system
/// registers, and a clean EL1 for the host to start from.
pub fn cpu_init(cpu: usize) {
    let geometry = match GEOMETRY.get() {
        Some(geometry) => *geometry,
        None => panic!("CPU {cpu} set up before the boot CPU"),
    };
    let has_sve = read_id_aa64pfr0_el1().sve() != 0;
    let has_sme = read_id_aa64pfr1_el1().sme() != 0;
    // SAFETY: TPIDR_EL2 gets this CPU's own per-CPU block (static, so valid for ever), which is what
    // the vectors expect it to hold. HCR_EL2, VTCR_EL2 and VTTBR_EL2 get the host's controls and its
    // stage-2 (built and owned by the hypervisor, in the geometry the boot CPU chose); CPTR_EL2 gets
    // no trap. None of them changes the hypervisor's own (EL2) memory or translation.
    unsafe {
        write_tpidr_el2(TpidrEl2::from_bits_retain(
            &PER_CPU[cpu] as *const PerCpu as u64,
        ));
        write_hcr_el2(HCR_HOST);
        write_vtcr_el2(VtcrEl2::from_bits_retain(geometry.vtcr_el2()));
        write_vttbr_el2(VttbrEl2::from_bits_retain(host_vttbr()));
        write_cptr_el2(cptr_el2_host(has_sme));
    }
    isb();
    if has_sve {
        // ZCR_EL2.LEN: the host and guests may use the largest vector length.
        sysreg::write_zcr_el2(ZCR_EL2_LEN_MAX);
    }
    if has_sme {
        sysreg::write_smcr_el2(SMCR_EL2_FA64 | SMCR_EL2_LEN_MAX);
    }
    write_cnthctl_el2(CNTHCTL_HOST);
    write_cntvoff_el2(CntvoffEl2::empty());
    write_mdcr_el2(mdcr_el2_host());
    write_vpidr_el2(VpidrEl2::from_bits_retain(read_midr_el1().bits()));
    write_vmpidr_el2(VmpidrEl2::from_bits_retain(read_mpidr_el1().bits()));
    write_hstr_el2(0);
    // SAFETY: ICC_SRE_EL2 enables the GIC's system-register interface (SRE) and lets EL1 use it
    // (Enable), with FIQ and IRQ bypass disabled (DFB, DIB); SCTLR_EL1 gets the architectural reset
    // value for the host's EL1 (MMU off). Neither changes EL2's memory or translation.
    unsafe {
        write_icc_sre_el2(IccSreEl2::SRE | IccSreEl2::DFB | IccSreEl2::DIB | IccSreEl2::ENABLE);
        write_sctlr_el1(cpu_setup::reset::SCTLR_EL1);
    }
    isb();
    // SAFETY: invalidating this CPU's stage-1 and stage-2 TLB entries of EL1 only drops translations.
    unsafe { core::arch::asm!("tlbi alle1", "dsb nsh", "isb", options(nostack)) };
}
