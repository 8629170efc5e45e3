//! Running a vCPU: swap the host's EL1 state for the guest's, point `VTTBR_EL2` at the guest's
//! stage-2, enter it (`guest_enter` in `entry.S`), and handle its exits until one goes to the host.
//!
//! What a guest can reach at EL1/EL0 is either switched or trapped, in both directions:
//!
//! | state | how |
//! |---|---|
//! | EL1/EL0 system registers (translation, exception, thread ID, `ACTLR`, `CSSELR`, `TPIDR2_EL0`) | switched ([`El1Registers`]) |
//! | pointer-authentication keys | switched (when the CPU has them) |
//! | virtual timer | switched (`CNTV_CTL`, `CNTV_CVAL`, and the vCPU's `CNTVOFF_EL2`) |
//! | physical timer | trapped (`CNTHCTL_EL2.EL1PCEN` clear): the guest exits as `Unknown` |
//! | `SCXTNUM_EL0/EL1` | trapped for host and guest alike (`HCR_EL2.EnSCXT` clear) |
//! | PMU, debug, trace, statistical profiling | trapped (`MDCR_EL2`), and the host's counters are stopped while the guest runs, so the host counts nothing of it; the host's `MDSCR_EL1` is replaced by 0 so its breakpoints and watchpoints are not armed in the guest |
//! | FP/SIMD, SVE, SME registers | trapped (`CPTR_EL2`): the guest exits as `Unknown`; the guest demo is soft-float |

use crate::hypervisor;
use crate::sysreg::{self, isb};
use crate::traps::ESR_WNR;
use abi::hypercall::VcpuExit;
use arm_sysregs::el0::accessors::{
    read_cntv_ctl_el0, read_cntv_cval_el0, read_tpidr_el0, read_tpidrro_el0, write_cntv_ctl_el0,
    write_cntv_cval_el0, write_tpidr_el0, write_tpidrro_el0,
};
use arm_sysregs::el0::registers::{CntvCtlEl0, CntvCvalEl0, TpidrEl0, TpidrroEl0};
use arm_sysregs::el1::accessors::{
    read_actlr_el1, read_afsr0_el1, read_afsr1_el1, read_amair_el1, read_cntkctl_el1,
    read_contextidr_el1, read_cpacr_el1, read_csselr_el1, read_elr_el1, read_esr_el1, read_far_el1,
    read_id_aa64isar1_el1, read_id_aa64isar2_el1, read_id_aa64pfr1_el1, read_mair_el1,
    read_mdscr_el1, read_par_el1, read_sctlr_el1, read_sp_el1, read_spsr_el1, read_tcr_el1,
    read_tpidr_el1, read_ttbr0_el1, read_ttbr1_el1, read_vbar_el1, write_actlr_el1,
    write_afsr0_el1, write_afsr1_el1, write_amair_el1, write_cntkctl_el1, write_contextidr_el1,
    write_cpacr_el1, write_csselr_el1, write_elr_el1, write_esr_el1, write_far_el1, write_mair_el1,
    write_mdscr_el1, write_par_el1, write_sctlr_el1, write_sp_el1, write_spsr_el1, write_tcr_el1,
    write_tpidr_el1, write_ttbr0_el1, write_ttbr1_el1, write_vbar_el1,
};
use arm_sysregs::el1::registers::{
    CntkctlEl1, ContextidrEl1, CpacrEl1, CsselrEl1, ElrEl1, EsrEl1, FarEl1, MairEl1, MdscrEl1,
    ParEl1, SctlrEl1, SpEl1, SpsrEl1, TcrEl1, TpidrEl1, Ttbr0El1, Ttbr1El1, VbarEl1,
};
use arm_sysregs::el2::accessors::{
    read_cntvoff_el2, read_cptr_el2, read_esr_el2, read_far_el2, read_hpfar_el2, read_vmpidr_el2,
    write_cnthctl_el2, write_cntvoff_el2, write_cptr_el2, write_hcr_el2, write_mdcr_el2,
    write_vmpidr_el2, write_vttbr_el2,
};
use arm_sysregs::el2::registers::{CntvoffEl2, CptrEl2, FarEl2, HpfarEl2, VmpidrEl2, VttbrEl2};
use cpu_setup::el2::{CNTHCTL_GUEST, CNTHCTL_HOST, HCR_GUEST, HCR_HOST};
use hyp_core::vcpu::{El1Registers, VcpuContext};
use hyp_core::{GuestExitAction, GuestTrap, RunTicket};
use spin::Once;

unsafe extern "C" {
    /// Enters the guest with `context`'s registers; returns the kind of exception that ended the run
    /// (0 synchronous, 1 IRQ, 2 FIQ, 3 SError), with the guest's registers saved in `context`.
    fn guest_enter(context: *mut VcpuContext) -> u64;
}

/// Which optional EL1 registers this CPU has (QEMU and real systems present the same on every CPU).
#[derive(Clone, Copy)]
struct Features {
    /// SME: `TPIDR2_EL0`.
    sme: bool,
    /// Pointer authentication: the five keys.
    pointer_authentication: bool,
}

static FEATURES: Once<Features> = Once::new();

fn features() -> Features {
    *FEATURES.call_once(|| {
        let isar1 = read_id_aa64isar1_el1();
        let isar2 = read_id_aa64isar2_el1();
        Features {
            sme: read_id_aa64pfr1_el1().sme() != 0,
            pointer_authentication: isar1.apa() != 0
                || isar1.api() != 0
                || isar1.gpa() != 0
                || isar1.gpi() != 0
                || isar2.apa3() != 0
                || isar2.gpa3() != 0,
        }
    })
}

fn save_el1() -> El1Registers {
    let features = features();
    El1Registers {
        sctlr: read_sctlr_el1().bits(),
        ttbr0: read_ttbr0_el1().bits(),
        ttbr1: read_ttbr1_el1().bits(),
        tcr: read_tcr_el1().bits(),
        mair: read_mair_el1().bits(),
        amair: read_amair_el1(),
        vbar: read_vbar_el1().bits(),
        contextidr: read_contextidr_el1().bits(),
        tpidr_el1: read_tpidr_el1().bits(),
        tpidr_el0: read_tpidr_el0().bits(),
        tpidrro_el0: read_tpidrro_el0().bits(),
        sp_el1: read_sp_el1().bits(),
        sp_el0: sysreg::read_sp_el0(),
        elr: read_elr_el1().bits(),
        spsr: read_spsr_el1().bits(),
        esr: read_esr_el1().bits(),
        far: read_far_el1().bits(),
        afsr0: read_afsr0_el1(),
        afsr1: read_afsr1_el1(),
        par: read_par_el1().bits(),
        cpacr: read_cpacr_el1().bits(),
        cntkctl: read_cntkctl_el1().bits(),
        vmpidr: read_vmpidr_el2().bits(),
        actlr: read_actlr_el1(),
        csselr: read_csselr_el1().bits(),
        tpidr2_el0: if features.sme {
            sysreg::read_tpidr2_el0()
        } else {
            0
        },
        cntv_ctl: read_cntv_ctl_el0().bits(),
        cntv_cval: read_cntv_cval_el0().bits(),
        cntvoff: read_cntvoff_el2().bits(),
        mdscr: read_mdscr_el1().bits(),
        pointer_authentication_keys: if features.pointer_authentication {
            sysreg::read_pointer_authentication_keys()
        } else {
            [0; 10]
        },
    }
}

fn load_el1(registers: &El1Registers) {
    let features = features();
    // SAFETY: these are the EL1/EL0 registers of the host or vCPU about to run (the values it left,
    // or a new vCPU's reset values), written while the hypervisor runs at EL2 with its own translation
    // (`SCTLR_EL2`, `TTBR0_EL2`), stack (`SP_EL2`) and vectors (`VBAR_EL2`): none of them changes the
    // hypervisor's memory, translation or control flow.
    unsafe {
        write_sctlr_el1(SctlrEl1::from_bits_retain(registers.sctlr));
        write_ttbr0_el1(Ttbr0El1::from_bits_retain(registers.ttbr0));
        write_ttbr1_el1(Ttbr1El1::from_bits_retain(registers.ttbr1));
        write_tcr_el1(TcrEl1::from_bits_retain(registers.tcr));
        write_mair_el1(MairEl1::from_bits_retain(registers.mair));
        write_amair_el1(registers.amair);
        write_vbar_el1(VbarEl1::from_bits_retain(registers.vbar));
        write_contextidr_el1(ContextidrEl1::from_bits_retain(registers.contextidr));
        write_tpidr_el1(TpidrEl1::from_bits_retain(registers.tpidr_el1));
        write_tpidr_el0(TpidrEl0::from_bits_retain(registers.tpidr_el0));
        write_tpidrro_el0(TpidrroEl0::from_bits_retain(registers.tpidrro_el0));
        write_sp_el1(SpEl1::from_bits_retain(registers.sp_el1));
    }
    sysreg::write_sp_el0(registers.sp_el0);
    // SAFETY: as above: EL1 exception, fault and control registers of the side about to run.
    unsafe {
        write_elr_el1(ElrEl1::from_bits_retain(registers.elr));
        write_spsr_el1(SpsrEl1::from_bits_retain(registers.spsr));
    }
    write_esr_el1(EsrEl1::from_bits_retain(registers.esr));
    // SAFETY: as above.
    unsafe {
        write_far_el1(FarEl1::from_bits_retain(registers.far));
        write_afsr0_el1(registers.afsr0);
        write_afsr1_el1(registers.afsr1);
        write_par_el1(ParEl1::from_bits_retain(registers.par));
        write_cpacr_el1(CpacrEl1::from_bits_retain(registers.cpacr));
    }
    write_cntkctl_el1(CntkctlEl1::from_bits_retain(registers.cntkctl));
    write_vmpidr_el2(VmpidrEl2::from_bits_retain(registers.vmpidr));
    // SAFETY: as above.
    unsafe { write_actlr_el1(registers.actlr) };
    write_csselr_el1(CsselrEl1::from_bits_retain(registers.csselr));
    if features.sme {
        sysreg::write_tpidr2_el0(registers.tpidr2_el0);
    }
    // The timer's control last, once its compare value and offset are the new world's.
    write_cntvoff_el2(CntvoffEl2::from_bits_retain(registers.cntvoff));
    write_cntv_cval_el0(CntvCvalEl0::from_bits_retain(registers.cntv_cval));
    write_cntv_ctl_el0(CntvCtlEl0::from_bits_retain(registers.cntv_ctl));
    write_mdscr_el1(MdscrEl1::from_bits_retain(registers.mdscr));
    if features.pointer_authentication {
        sysreg::write_pointer_authentication_keys(&registers.pointer_authentication_keys);
    }
}

/// Exception classes (`ESR_EL2.EC`) the world switch tells apart.
const EC_HVC64: u64 = 0x16;
const EC_SMC64: u64 = 0x17;
const EC_INSTRUCTION_ABORT_LOWER: u64 = 0x20;
const EC_DATA_ABORT_LOWER: u64 = 0x24;

/// The page offset of a fault address.
const PAGE_OFFSET_MASK: u64 = 0xFFF;
/// `HPFAR_EL2.FIPA` holds the faulting IPA's bits 51:12 (the page number).
const FIPA_PAGE_SHIFT: u32 = 12;

/// The faulting IPA of a stage-2 abort: `HPFAR_EL2.FIPA` gives the page, `FAR_EL2` the offset.
pub fn fault_ipa() -> u64 {
    let hpfar: HpfarEl2 = read_hpfar_el2();
    let far: FarEl2 = read_far_el2();
    (hpfar.fipa() << FIPA_PAGE_SHIFT) | (far.va() & PAGE_OFFSET_MASK)
}

fn decode_trap(kind: u64, context: &mut VcpuContext) -> GuestTrap {
    let syndrome = read_esr_el2().bits();
    let class = crate::traps::exception_class(syndrome);
    match kind {
        0 => match class {
            EC_HVC64 | EC_SMC64 => {
                if class == EC_SMC64 {
                    // A trapped SMC returns to the SMC itself; step over it.
                    context.pc += 4;
                }
                let mut arguments = [0; 4];
                arguments.copy_from_slice(&context.registers[1..5]);
                GuestTrap::Call {
                    // Function IDs are 32 bits (w0).
                    function_id: context.registers[0] as u32,
                    arguments,
                }
            }
            EC_DATA_ABORT_LOWER | EC_INSTRUCTION_ABORT_LOWER => GuestTrap::Abort {
                ipa: fault_ipa(),
                write: class == EC_DATA_ABORT_LOWER && syndrome & ESR_WNR != 0,
            },
            _ => GuestTrap::Other { syndrome },
        },
        1 | 2 => GuestTrap::Interrupt,
        _ => GuestTrap::Other { syndrome },
    }
}

/// Runs the vCPU of `ticket` until an exit goes to the host; returns that exit.
pub fn run(mut ticket: RunTicket) -> VcpuExit {
    // Stop the host's PMU counters first, so they count nothing of the guest's (or of this switch).
    let host_counters = sysreg::read_pmcntenset_el0();
    sysreg::write_pmcntenclr_el0(u64::MAX);
    isb();
    let host = save_el1();
    let host_traps = read_cptr_el2();
    // A guest always runs with debug disarmed (it cannot change MDSCR_EL1: MDCR_EL2.TDA traps it).
    ticket.context.el1.mdscr = 0;
    load_el1(&ticket.context.el1);
    // The FP/SIMD, SVE and SME registers are not switched (yet): trap the guest's use of them, so
    // that neither side can read what the other left there. The guest then exits as `Unknown`.
    // SAFETY: CPTR_EL2 and HCR_EL2 with values chosen here (the host's traps plus the FP/SVE/SME
    // ones; the guest's controls), VTTBR_EL2 with the guest's own stage-2 (built and owned by the
    // hypervisor for this vCPU's VM): they apply to EL1/EL0 only, not to the hypervisor's own memory
    // or translation.
    unsafe {
        write_cptr_el2(host_traps | CptrEl2::TZ | CptrEl2::TFP | CptrEl2::TSM);
    }
    write_mdcr_el2(crate::mdcr_el2_guest());
    // The physical timer is the host's: the guest's use of it traps (EL1PCEN clear); the physical
    // counter may be read (EL1PCTEN).
    write_cnthctl_el2(CNTHCTL_GUEST);
    // SAFETY: as above.
    unsafe {
        write_vttbr_el2(VttbrEl2::from_bits_retain(ticket.vttbr_el2));
        write_hcr_el2(HCR_GUEST);
    }
    isb();
    let exit = loop {
        // SAFETY: the context is this vCPU's own (marked running, so no other CPU uses it), lives on
        // this stack for the whole call, and `guest_enter` returns here with the guest's registers
        // saved in it; the guest's stage-2 (installed above) maps only the guest's own pages.
        let kind = unsafe { guest_enter(&raw mut ticket.context) };
        let trap = decode_trap(kind, &mut ticket.context);
        let action = hypervisor().lock().guest_exit(&mut ticket, trap);
        if let GuestExitAction::ReturnToHost(exit) = action {
            break exit;
        }
    };
    ticket.context.el1 = save_el1();
    load_el1(&host);
    // SAFETY: the host's own CPTR_EL2 (read above) back.
    unsafe { write_cptr_el2(host_traps) };
    write_mdcr_el2(crate::mdcr_el2_host());
    write_cnthctl_el2(CNTHCTL_HOST);
    // SAFETY: the host's stage-2 (built and owned by the hypervisor) and the host's HCR_EL2: they
    // apply to EL1/EL0 only.
    unsafe {
        write_vttbr_el2(VttbrEl2::from_bits_retain(crate::host_vttbr()));
        write_hcr_el2(HCR_HOST);
    }
    isb();
    sysreg::write_pmcntenset_el0(host_counters);
    isb();
    hypervisor().lock().end_run(ticket, &exit);
    exit
}
