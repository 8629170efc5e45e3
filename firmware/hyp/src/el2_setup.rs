//! This CPU's EL2 controls: what `HCR_EL2`, `MDCR_EL2`, `CPTR_EL2`, the timers' and the GIC's EL2
//! registers hold while the host runs (set by [`cpu_init`] on every CPU that enters the host) and
//! while a guest runs (`world_switch` switches to the guest's values and back).

use crate::sysreg::{self, SMCR_EL2_FA64, SMCR_EL2_LEN_MAX, ZCR_EL2_LEN_MAX, isb};
use crate::{GEOMETRY, PER_CPU, PerCpu, host_vttbr, world_switch};
use arm_sysregs::el0::accessors::read_pmcr_el0;
use arm_sysregs::el1::accessors::{
    read_id_aa64pfr0_el1, read_id_aa64pfr1_el1, read_midr_el1, read_mpidr_el1, write_sctlr_el1,
};
use arm_sysregs::el1::registers::SctlrEl1;
use arm_sysregs::el2::accessors::{
    write_cnthctl_el2, write_cntvoff_el2, write_cptr_el2, write_hcr_el2, write_hstr_el2,
    write_icc_sre_el2, write_mdcr_el2, write_tpidr_el2, write_vmpidr_el2, write_vpidr_el2,
    write_vtcr_el2, write_vttbr_el2,
};
use arm_sysregs::el2::registers::{
    CntvoffEl2, CptrEl2, HcrEl2, IccSreEl2, MdcrEl2, TpidrEl2, VmpidrEl2, VpidrEl2, VtcrEl2,
    VttbrEl2,
};

/// `HCR_EL2.BSU` = 0b01: barriers the guest issues are upgraded to inner shareable.
const HCR_BSU_INNER_SHAREABLE: u8 = 0b01;

/// `HCR_EL2` while the host runs: stage-2 on (VM), set/way invalidation upgraded (SWIO), SMCs trapped
/// (TSC), EL1 is AArch64 (RW), pointer authentication not trapped (APK, API). Interrupts stay the
/// host's own.
pub const HCR_HOST: HcrEl2 = HcrEl2::VM
    .union(HcrEl2::SWIO)
    .union(HcrEl2::TSC)
    .union(HcrEl2::RW)
    .union(HcrEl2::APK)
    .union(HcrEl2::API);
/// `HCR_EL2` while a guest runs: as for the host, plus physical interrupts to EL2 (FMO, IMO, AMO) and
/// TLB maintenance broadcast inner shareable (FB, BSU).
pub const HCR_GUEST: HcrEl2 = HCR_HOST
    .union(HcrEl2::FMO)
    .union(HcrEl2::IMO)
    .union(HcrEl2::AMO)
    .union(HcrEl2::FB)
    .with_bsu(HCR_BSU_INNER_SHAREABLE);
/// `MDCR_EL2` while the host runs: every PMU counter is the host's (`HPMN` = `PMCR_EL0.N`), and
/// (outside the benchmark build) none counts at EL2 (`HPMD`), so the host learns nothing from the
/// hypervisor's own execution. Debug and PMU accesses are not trapped: the host owns them.
pub fn mdcr_el2_host() -> MdcrEl2 {
    let counters = MdcrEl2::empty().with_hpmn(read_pmcr_el0().n());
    if cfg!(feature = "benchmark") {
        counters
    } else {
        counters | MdcrEl2::HPMD
    }
}

/// `MDCR_EL2` while a guest runs: as for the host, plus traps of every PMU (`TPM`, `TPMCR`), debug
/// (`TDA`, `TDOSA`, `TDRA`), statistical-profiling (`TPMS`) and trace (`TTRF`) register, so the guest
/// neither reads nor changes the host's.
pub fn mdcr_el2_guest() -> MdcrEl2 {
    mdcr_el2_host()
        | MdcrEl2::TPMCR
        | MdcrEl2::TPM
        | MdcrEl2::TDA
        | MdcrEl2::TDOSA
        | MdcrEl2::TDRA
        | MdcrEl2::TPMS
        | MdcrEl2::TTRF
}

/// `CPTR_EL2` (E2H = 0) while the host runs: no FP/SIMD (TFP), SVE (TZ) or SME (TSM) trap, only the
/// RES1 bits (13, 9, 7:0). Bit 12 (TSM) is RES1 when SME is not implemented, so it is set then.
fn cptr_el2_host(has_sme: bool) -> CptrEl2 {
    if has_sme {
        CptrEl2::RES1
    } else {
        CptrEl2::RES1 | CptrEl2::TSM
    }
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
    write_cnthctl_el2(world_switch::CNTHCTL_HOST);
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
        write_sctlr_el1(SctlrEl1::from_bits_retain(hyp_core::vcpu::SCTLR_EL1_RESET));
    }
    isb();
    // SAFETY: invalidating this CPU's stage-1 and stage-2 TLB entries of EL1 only drops translations.
    unsafe { core::arch::asm!("tlbi alle1", "dsb nsh", "isb", options(nostack)) };
}
