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

use crate::sysreg::{isb, read_sysreg, write_sysreg};
use crate::{HCR_GUEST, HCR_HOST, hypervisor};
use abi::hypercall::VcpuExit;
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
        let isar1 = read_sysreg!("id_aa64isar1_el1");
        let isar2 = read_sysreg!("id_aa64isar2_el1");
        let field = |value: u64, shift: u32| (value >> shift) & 0xF != 0;
        Features {
            sme: field(read_sysreg!("id_aa64pfr1_el1"), 24),
            // APA, API, GPA, GPI (ISAR1), APA3, GPA3 (ISAR2).
            pointer_authentication: field(isar1, 4)
                || field(isar1, 8)
                || field(isar1, 24)
                || field(isar1, 28)
                || field(isar2, 12)
                || field(isar2, 8),
        }
    })
}

fn save_pointer_authentication_keys() -> [u64; 10] {
    [
        read_sysreg!("S3_0_C2_C1_0"),
        read_sysreg!("S3_0_C2_C1_1"),
        read_sysreg!("S3_0_C2_C1_2"),
        read_sysreg!("S3_0_C2_C1_3"),
        read_sysreg!("S3_0_C2_C2_0"),
        read_sysreg!("S3_0_C2_C2_1"),
        read_sysreg!("S3_0_C2_C2_2"),
        read_sysreg!("S3_0_C2_C2_3"),
        read_sysreg!("S3_0_C2_C3_0"),
        read_sysreg!("S3_0_C2_C3_1"),
    ]
}

fn load_pointer_authentication_keys(keys: &[u64; 10]) {
    write_sysreg!("S3_0_C2_C1_0", keys[0]);
    write_sysreg!("S3_0_C2_C1_1", keys[1]);
    write_sysreg!("S3_0_C2_C1_2", keys[2]);
    write_sysreg!("S3_0_C2_C1_3", keys[3]);
    write_sysreg!("S3_0_C2_C2_0", keys[4]);
    write_sysreg!("S3_0_C2_C2_1", keys[5]);
    write_sysreg!("S3_0_C2_C2_2", keys[6]);
    write_sysreg!("S3_0_C2_C2_3", keys[7]);
    write_sysreg!("S3_0_C2_C3_0", keys[8]);
    write_sysreg!("S3_0_C2_C3_1", keys[9]);
}

fn save_el1() -> El1Registers {
    let features = features();
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
        actlr: read_sysreg!("actlr_el1"),
        csselr: read_sysreg!("csselr_el1"),
        tpidr2_el0: if features.sme {
            read_sysreg!("S3_3_C13_C0_5")
        } else {
            0
        },
        cntv_ctl: read_sysreg!("cntv_ctl_el0"),
        cntv_cval: read_sysreg!("cntv_cval_el0"),
        cntvoff: read_sysreg!("cntvoff_el2"),
        mdscr: read_sysreg!("mdscr_el1"),
        pointer_authentication_keys: if features.pointer_authentication {
            save_pointer_authentication_keys()
        } else {
            [0; 10]
        },
    }
}

fn load_el1(registers: &El1Registers) {
    let features = features();
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
    write_sysreg!("actlr_el1", registers.actlr);
    write_sysreg!("csselr_el1", registers.csselr);
    if features.sme {
        write_sysreg!("S3_3_C13_C0_5", registers.tpidr2_el0);
    }
    // The timer's control last, once its compare value and offset are the new world's.
    write_sysreg!("cntvoff_el2", registers.cntvoff);
    write_sysreg!("cntv_cval_el0", registers.cntv_cval);
    write_sysreg!("cntv_ctl_el0", registers.cntv_ctl);
    write_sysreg!("mdscr_el1", registers.mdscr);
    if features.pointer_authentication {
        load_pointer_authentication_keys(&registers.pointer_authentication_keys);
    }
}

/// `CPTR_EL2` (E2H = 0) trap bits: SVE (TZ), FP/SIMD (TFP), SME (TSM).
const CPTR_TZ: u64 = 1 << 8;
const CPTR_TFP: u64 = 1 << 10;
const CPTR_TSM: u64 = 1 << 12;
/// `CNTHCTL_EL2` (E2H = 0): EL1 may read the physical counter (EL1PCTEN) and use the physical timer
/// (EL1PCEN).
pub const CNTHCTL_EL1PCTEN: u64 = 1 << 0;
/// See [`CNTHCTL_EL1PCTEN`].
pub const CNTHCTL_EL1PCEN: u64 = 1 << 1;

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
    // Stop the host's PMU counters first, so they count nothing of the guest's (or of this switch).
    let host_counters = read_sysreg!("pmcntenset_el0");
    write_sysreg!("pmcntenclr_el0", u64::MAX);
    isb();
    let host = save_el1();
    let host_traps = read_sysreg!("cptr_el2");
    // A guest always runs with debug disarmed (it cannot change MDSCR_EL1: MDCR_EL2.TDA traps it).
    ticket.context.el1.mdscr = 0;
    load_el1(&ticket.context.el1);
    // The FP/SIMD, SVE and SME registers are not switched (yet): trap the guest's use of them, so
    // that neither side can read what the other left there. The guest then exits as `Unknown`.
    write_sysreg!("cptr_el2", host_traps | CPTR_TZ | CPTR_TFP | CPTR_TSM);
    write_sysreg!("mdcr_el2", crate::mdcr_el2_guest());
    // The physical timer is the host's: the guest's use of it traps (EL1PCEN clear); the physical
    // counter may be read (EL1PCTEN).
    write_sysreg!("cnthctl_el2", CNTHCTL_EL1PCTEN);
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
    write_sysreg!("mdcr_el2", crate::mdcr_el2_host());
    write_sysreg!("cnthctl_el2", CNTHCTL_EL1PCTEN | CNTHCTL_EL1PCEN);
    write_sysreg!("vttbr_el2", crate::host_vttbr());
    write_sysreg!("hcr_el2", HCR_HOST);
    isb();
    write_sysreg!("pmcntenset_el0", host_counters);
    isb();
    hypervisor().lock().end_run(ticket, &exit);
    exit
}
