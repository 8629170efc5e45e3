//! This CPU's EL2 controls: what `HCR_EL2`, `MDCR_EL2`, `CPTR_EL2`, the timers' and the GIC's EL2
//! registers hold while the host runs (set by [`cpu_init`] on every CPU that enters the host) and
//! while a guest runs (`world_switch` switches to the guest's values and back).

use crate::sysreg::{isb, read_sysreg, write_sysreg};
use crate::{GEOMETRY, PER_CPU, PerCpu, host_vttbr, world_switch};

/// `HCR_EL2` while the host runs: stage-2 on (VM), set/way invalidation upgraded (SWIO), SMCs trapped
/// (TSC), EL1 is AArch64 (RW), pointer authentication not trapped (APK, API). Interrupts stay the
/// host's own.
pub const HCR_HOST: u64 = 1 | (1 << 1) | (1 << 19) | (1 << 31) | (1 << 40) | (1 << 41);
/// `HCR_EL2` while a guest runs: as for the host, plus physical interrupts to EL2 (FMO, IMO, AMO) and
/// TLB maintenance broadcast inner shareable (FB, BSU).
pub const HCR_GUEST: u64 = HCR_HOST | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 9) | (1 << 10);
/// `MDCR_EL2` while the host runs: every PMU counter is the host's (`HPMN` = `PMCR_EL0.N`), and
/// (outside the benchmark build) none counts at EL2 (`HPMD`), so the host learns nothing from the
/// hypervisor's own execution. Debug and PMU accesses are not trapped: the host owns them.
pub fn mdcr_el2_host() -> u64 {
    const HPMD: u64 = 1 << 17;
    let counters = (read_sysreg!("pmcr_el0") >> 11) & 0x1F;
    counters | if cfg!(feature = "benchmark") { 0 } else { HPMD }
}

/// `MDCR_EL2` while a guest runs: as for the host, plus traps of every PMU (`TPM`, `TPMCR`), debug
/// (`TDA`, `TDOSA`, `TDRA`), statistical-profiling (`TPMS`) and trace (`TTRF`) register, so the guest
/// neither reads nor changes the host's.
pub fn mdcr_el2_guest() -> u64 {
    const TPMCR: u64 = 1 << 5;
    const TPM: u64 = 1 << 6;
    const TDA: u64 = 1 << 9;
    const TDOSA: u64 = 1 << 10;
    const TDRA: u64 = 1 << 11;
    const TPMS: u64 = 1 << 14;
    const TTRF: u64 = 1 << 19;
    mdcr_el2_host() | TPMCR | TPM | TDA | TDOSA | TDRA | TPMS | TTRF
}

/// Extracts a 4-bit ID register field.
fn id_field(value: u64, shift: u32) -> u64 {
    (value >> shift) & 0xF
}

/// This CPU's EL2 controls for running the host: vectors' per-CPU block, HCR_EL2, the host's stage-2,
/// no FP/SVE/SME traps (full vector lengths), EL1 access to the physical timer and to the GIC's system
/// registers, and a clean EL1 for the host to start from.
pub fn cpu_init(cpu: usize) {
    let geometry = match GEOMETRY.get() {
        Some(geometry) => *geometry,
        None => panic!("CPU {cpu} set up before the boot CPU"),
    };
    let has_sve = id_field(read_sysreg!("id_aa64pfr0_el1"), 32) != 0;
    let has_sme = id_field(read_sysreg!("id_aa64pfr1_el1"), 24) != 0;
    write_sysreg!("tpidr_el2", &PER_CPU[cpu] as *const PerCpu as u64);
    write_sysreg!("hcr_el2", HCR_HOST);
    write_sysreg!("vtcr_el2", geometry.vtcr_el2());
    write_sysreg!("vttbr_el2", host_vttbr());
    // CPTR_EL2 (E2H = 0): RES1 bits 13, 9 and 7:0; TZ (8), TFP (10), TSM (12) clear. Bit 12 is RES1
    // when SME is not implemented.
    write_sysreg!("cptr_el2", if has_sme { 0x22FF } else { 0x32FF });
    isb();
    if has_sve {
        // ZCR_EL2.LEN = 15: the host and guests may use the largest vector length.
        write_sysreg!("S3_4_C1_C2_0", 15);
    }
    if has_sme {
        // SMCR_EL2: FA64 and LEN = 15.
        write_sysreg!("S3_4_C1_C2_6", (1 << 31) | 15);
    }
    write_sysreg!(
        "cnthctl_el2",
        world_switch::CNTHCTL_EL1PCTEN | world_switch::CNTHCTL_EL1PCEN
    );
    write_sysreg!("cntvoff_el2", 0);
    write_sysreg!("mdcr_el2", mdcr_el2_host());
    write_sysreg!("vpidr_el2", read_sysreg!("midr_el1"));
    write_sysreg!("vmpidr_el2", read_sysreg!("mpidr_el1"));
    write_sysreg!("hstr_el2", 0);
    // ICC_SRE_EL2: system-register interface, and EL1 may use it (Enable).
    write_sysreg!("S3_4_C12_C9_5", 0xF);
    write_sysreg!("sctlr_el1", hyp_core::vcpu::SCTLR_EL1_RESET);
    isb();
    // SAFETY: invalidating this CPU's stage-1 and stage-2 TLB entries of EL1 only drops translations.
    unsafe { core::arch::asm!("tlbi alle1", "dsb nsh", "isb", options(nostack)) };
}
