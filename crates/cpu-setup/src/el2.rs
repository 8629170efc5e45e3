//! EL2 controls while the host runs and while a protected guest runs: what the hypervisor traps and
//! what it leaves to each world. The hypervisor writes them (`firmware/hyp`'s `el2_setup` and
//! `world_switch`); the decisions live here so that their security properties are host-tested.

use crate::Counting;
use arm_sysregs::el2::registers::{CnthctlEl2, CptrEl2, HcrEl2, MdcrEl2};

/// `HCR_EL2.BSU` = 0b01: barriers the guest issues are upgraded to inner shareable.
const HCR_BSU_INNER_SHAREABLE: u8 = 0b01;

/// `HCR_EL2` while the host runs: stage-2 on (VM), set/way invalidation upgraded (SWIO), SMCs trapped
/// (TSC, so the hypervisor sees every firmware call the host makes), EL1 is AArch64 (RW), pointer
/// authentication not trapped (APK, API). Interrupts stay the host's own.
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

/// `MDCR_EL2` while the host runs: every PMU counter is the host's (`HPMN` = `counters`, the
/// CPU's `PMCR_EL0.N`), and unless `counting` allows it none counts at EL2 (`HPMD`), so the host
/// learns nothing from the hypervisor's own execution. Debug and PMU accesses are not trapped: the
/// host owns them.
pub fn mdcr_el2_host(counters: u8, counting: Counting) -> MdcrEl2 {
    let host = MdcrEl2::empty().with_hpmn(counters);
    match counting {
        Counting::Allowed => host,
        Counting::Prohibited => host | MdcrEl2::HPMD,
    }
}

/// `MDCR_EL2` while a guest runs: as for the host, plus traps of every PMU (`TPM`, `TPMCR`), debug
/// (`TDA`, `TDOSA`, `TDRA`), statistical-profiling (`TPMS`) and trace (`TTRF`) register, so the guest
/// neither reads nor changes the host's.
pub fn mdcr_el2_guest(counters: u8, counting: Counting) -> MdcrEl2 {
    mdcr_el2_host(counters, counting)
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
pub fn cptr_el2_host(has_sme: bool) -> CptrEl2 {
    if has_sme {
        CptrEl2::RES1
    } else {
        CptrEl2::RES1 | CptrEl2::TSM
    }
}

/// `CNTHCTL_EL2.EL1PCTEN` (`E2H` = 0): EL1 may read the physical counter. Bit 0, which
/// `arm-sysregs` 0.5.2 names only by its `E2H` = 1 meaning, `EL0PCTEN`.
pub const CNTHCTL_EL1PCTEN: CnthctlEl2 = CnthctlEl2::EL0PCTEN;

/// `CNTHCTL_EL2` (E2H = 0) while the host runs: EL1 may read the physical counter (EL1PCTEN) and
/// use the physical timer (EL1PCEN).
pub const CNTHCTL_HOST: CnthctlEl2 = CNTHCTL_EL1PCTEN.union(CnthctlEl2::EL1PCEN);

/// `CNTHCTL_EL2` (E2H = 0) while a guest runs: the physical counter only (EL1PCTEN); the physical
/// timer is the host's (EL1PCEN clear).
pub const CNTHCTL_GUEST: CnthctlEl2 = CNTHCTL_EL1PCTEN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_runs_behind_its_stage_2_with_its_smcs_trapped_and_its_own_interrupts() {
        assert!(HCR_HOST.contains(HcrEl2::VM | HcrEl2::TSC | HcrEl2::RW));
        assert!(!HCR_HOST.intersects(HcrEl2::FMO | HcrEl2::IMO | HcrEl2::AMO | HcrEl2::E2H));
        // The same values the hypervisor wrote by hand before (bits 0, 1, 19, 31, 40, 41).
        assert_eq!(HCR_HOST.bits(), 0x0000_0300_8008_0003);
    }

    #[test]
    fn a_guest_runs_with_every_physical_interrupt_at_el2() {
        assert!(HCR_GUEST.contains(HCR_HOST));
        assert!(HCR_GUEST.contains(HcrEl2::FMO | HcrEl2::IMO | HcrEl2::AMO | HcrEl2::FB));
        assert_eq!(HCR_GUEST.bsu(), HCR_BSU_INNER_SHAREABLE);
        // FMO, IMO, AMO (bits 3 to 5), FB (9), BSU = 0b01 (bits 11:10).
        assert_eq!(HCR_GUEST.bits() & !HCR_HOST.bits(), 0x638);
    }

    #[test]
    fn the_pmu_does_not_count_at_el2_outside_the_benchmark_build() {
        for counters in [0, 6, 31] {
            let host = mdcr_el2_host(counters, Counting::Prohibited);
            assert!(host.contains(MdcrEl2::HPMD));
            assert_eq!(host.hpmn(), counters);
            assert!(!mdcr_el2_host(counters, Counting::Allowed).contains(MdcrEl2::HPMD));
            assert!(!mdcr_el2_guest(counters, Counting::Allowed).contains(MdcrEl2::HPMD));
        }
    }

    #[test]
    fn a_guest_reaches_no_pmu_debug_profiling_or_trace_register_of_the_host() {
        let traps = MdcrEl2::TPMCR
            | MdcrEl2::TPM
            | MdcrEl2::TDA
            | MdcrEl2::TDOSA
            | MdcrEl2::TDRA
            | MdcrEl2::TPMS
            | MdcrEl2::TTRF;
        for counting in [Counting::Prohibited, Counting::Allowed] {
            let host = mdcr_el2_host(6, counting);
            let guest = mdcr_el2_guest(6, counting);
            assert!(!host.intersects(traps), "the host owns its PMU and debug");
            assert_eq!(guest, host | traps);
        }
    }

    #[test]
    fn the_host_has_fp_sve_and_sme_untrapped() {
        for has_sme in [false, true] {
            let cptr = cptr_el2_host(has_sme);
            assert!(!cptr.intersects(CptrEl2::TZ | CptrEl2::TFP | CptrEl2::TCPAC));
            // TSM is RES1 without SME; with SME it must be clear (no trap).
            assert_eq!(cptr.contains(CptrEl2::TSM), !has_sme);
        }
        assert_eq!(cptr_el2_host(true).bits(), 0x22FF);
        assert_eq!(cptr_el2_host(false).bits(), 0x32FF);
    }

    #[test]
    fn the_physical_timer_is_the_hosts_never_a_guests() {
        assert!(CNTHCTL_HOST.contains(CnthctlEl2::EL1PCEN | CNTHCTL_EL1PCTEN));
        assert!(!CNTHCTL_GUEST.contains(CnthctlEl2::EL1PCEN));
        assert!(CNTHCTL_GUEST.contains(CNTHCTL_EL1PCTEN));
    }
}
