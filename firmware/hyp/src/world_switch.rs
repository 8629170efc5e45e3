//! Running a vCPU: swap the host's EL1 state for the guest's, point `VTTBR_EL2` at the guest's
//! stage-2, enter it (`guest_enter` in `entry.S`), and handle its exits until one goes to the host.
//!
//! Not switched (a known gap): FP/SIMD/SVE/SME registers. Instead the guest's use of them is trapped
//! (it exits as `Unknown`), so nothing leaks either way; the guest demo is built soft-float.

use crate::sysreg::{isb, read_sysreg, write_sysreg};
use crate::{HCR_GUEST, HCR_HOST, hypervisor};
use abi::hypercall::VcpuExit;
use hyp_core::vcpu::{El1Registers, VcpuContext};
use hyp_core::{GuestExitAction, GuestTrap, RunTicket};

unsafe extern "C" {
    /// Enters the guest with `context`'s registers; returns the kind of exception that ended the run
    /// (0 synchronous, 1 IRQ, 2 FIQ, 3 SError), with the guest's registers saved in `context`.
    fn guest_enter(context: *mut VcpuContext) -> u64;
}

fn save_el1() -> El1Registers {
    El1Registers {
        sctlr: read_sysreg!("sctlr_el1"),
        ttbr0: read_sysreg!("ttbr0_el1"),
        ttbr1: read_sysreg!("ttbr1_el1"),
        tcr: read_sysreg!("tcr_el1"),
        mair: read_sysreg!("mair_el1"),
        amair: read_sysreg!("amair_el1"),
        vbar: read_sysreg!("vbar_el1"),
        contextidr: read_sysreg!("contextidr_el1"),
        tpidr_el1: read_sysreg!("tpidr_el1"),
        tpidr_el0: read_sysreg!("tpidr_el0"),
        tpidrro_el0: read_sysreg!("tpidrro_el0"),
        sp_el1: read_sysreg!("sp_el1"),
        sp_el0: read_sysreg!("sp_el0"),
        elr: read_sysreg!("elr_el1"),
        spsr: read_sysreg!("spsr_el1"),
        esr: read_sysreg!("esr_el1"),
        far: read_sysreg!("far_el1"),
        afsr0: read_sysreg!("afsr0_el1"),
        afsr1: read_sysreg!("afsr1_el1"),
        par: read_sysreg!("par_el1"),
        cpacr: read_sysreg!("cpacr_el1"),
        cntkctl: read_sysreg!("cntkctl_el1"),
        vmpidr: read_sysreg!("vmpidr_el2"),
    }
}

fn load_el1(registers: &El1Registers) {
    write_sysreg!("sctlr_el1", registers.sctlr);
    write_sysreg!("ttbr0_el1", registers.ttbr0);
    write_sysreg!("ttbr1_el1", registers.ttbr1);
    write_sysreg!("tcr_el1", registers.tcr);
    write_sysreg!("mair_el1", registers.mair);
    write_sysreg!("amair_el1", registers.amair);
    write_sysreg!("vbar_el1", registers.vbar);
    write_sysreg!("contextidr_el1", registers.contextidr);
    write_sysreg!("tpidr_el1", registers.tpidr_el1);
    write_sysreg!("tpidr_el0", registers.tpidr_el0);
    write_sysreg!("tpidrro_el0", registers.tpidrro_el0);
    write_sysreg!("sp_el1", registers.sp_el1);
    write_sysreg!("sp_el0", registers.sp_el0);
    write_sysreg!("elr_el1", registers.elr);
    write_sysreg!("spsr_el1", registers.spsr);
    write_sysreg!("esr_el1", registers.esr);
    write_sysreg!("far_el1", registers.far);
    write_sysreg!("afsr0_el1", registers.afsr0);
    write_sysreg!("afsr1_el1", registers.afsr1);
    write_sysreg!("par_el1", registers.par);
    write_sysreg!("cpacr_el1", registers.cpacr);
    write_sysreg!("cntkctl_el1", registers.cntkctl);
    write_sysreg!("vmpidr_el2", registers.vmpidr);
}

/// `CPTR_EL2` (E2H = 0) trap bits: SVE (TZ), FP/SIMD (TFP), SME (TSM).
const CPTR_TZ: u64 = 1 << 8;
const CPTR_TFP: u64 = 1 << 10;
const CPTR_TSM: u64 = 1 << 12;

/// Exception classes the world switch tells apart.
const EC_HVC64: u64 = 0x16;
const EC_SMC64: u64 = 0x17;
const EC_INSTRUCTION_ABORT_LOWER: u64 = 0x20;
const EC_DATA_ABORT_LOWER: u64 = 0x24;

/// The faulting IPA of a stage-2 abort: `HPFAR_EL2.FIPA` gives the page, `FAR_EL2` the offset.
pub fn fault_ipa() -> u64 {
    let hpfar = read_sysreg!("hpfar_el2");
    let far = read_sysreg!("far_el2");
    (((hpfar >> 4) & ((1 << 40) - 1)) << 12) | (far & 0xFFF)
}

fn decode_trap(kind: u64, context: &mut VcpuContext) -> GuestTrap {
    let syndrome = read_sysreg!("esr_el2");
    match kind {
        0 => match syndrome >> 26 {
            EC_HVC64 | EC_SMC64 => {
                if syndrome >> 26 == EC_SMC64 {
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
                write: syndrome >> 26 == EC_DATA_ABORT_LOWER && syndrome & (1 << 6) != 0,
            },
            _ => GuestTrap::Other { syndrome },
        },
        1 | 2 => GuestTrap::Interrupt,
        _ => GuestTrap::Other { syndrome },
    }
}

/// Runs the vCPU of `ticket` until an exit goes to the host; returns that exit.
pub fn run(mut ticket: RunTicket) -> VcpuExit {
    let host = save_el1();
    let host_traps = read_sysreg!("cptr_el2");
    load_el1(&ticket.context.el1);
    // The FP/SIMD, SVE and SME registers are not switched (yet): trap the guest's use of them, so
    // that neither side can read what the other left there. The guest then exits as `Unknown`.
    write_sysreg!("cptr_el2", host_traps | CPTR_TZ | CPTR_TFP | CPTR_TSM);
    write_sysreg!("vttbr_el2", ticket.vttbr_el2);
    write_sysreg!("hcr_el2", HCR_GUEST);
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
    write_sysreg!("cptr_el2", host_traps);
    write_sysreg!("vttbr_el2", crate::host_vttbr());
    write_sysreg!("hcr_el2", HCR_HOST);
    isb();
    hypervisor().lock().end_run(ticket, &exit);
    exit
}
