//! A vCPU's saved state: what the world switch loads before entering the guest and saves when it
//! leaves. The layout is shared with the hypervisor's assembly (general-purpose registers at offset
//! 0, `pc` at 0xF8, `pstate` at 0x100), so it is `repr(C)`.

/// `SPSR_EL2` for a vCPU's first entry: EL1 using `SP_EL1` (EL1h), with D, A, I and F masked.
pub const PSTATE_EL1H_MASKED: u64 = 0b0101 | (0b1111 << 6);
/// `SCTLR_EL1` of a new vCPU: the architectural reset value (`cpu_setup::reset::SCTLR_EL1`).
pub const SCTLR_EL1_RESET: u64 = cpu_setup::reset::SCTLR_EL1.bits();

/// The EL1 system registers a world switch swaps between the host and a guest.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct El1Registers {
    /// `SCTLR_EL1`.
    pub sctlr: u64,
    /// `TTBR0_EL1`.
    pub ttbr0: u64,
    /// `TTBR1_EL1`.
    pub ttbr1: u64,
    /// `TCR_EL1`.
    pub tcr: u64,
    /// `MAIR_EL1`.
    pub mair: u64,
    /// `AMAIR_EL1`.
    pub amair: u64,
    /// `VBAR_EL1`.
    pub vbar: u64,
    /// `CONTEXTIDR_EL1`.
    pub contextidr: u64,
    /// `TPIDR_EL1`.
    pub tpidr_el1: u64,
    /// `TPIDR_EL0`.
    pub tpidr_el0: u64,
    /// `TPIDRRO_EL0`.
    pub tpidrro_el0: u64,
    /// `SP_EL1`.
    pub sp_el1: u64,
    /// `SP_EL0`.
    pub sp_el0: u64,
    /// `ELR_EL1`.
    pub elr: u64,
    /// `SPSR_EL1`.
    pub spsr: u64,
    /// `ESR_EL1`.
    pub esr: u64,
    /// `FAR_EL1`.
    pub far: u64,
    /// `AFSR0_EL1`.
    pub afsr0: u64,
    /// `AFSR1_EL1`.
    pub afsr1: u64,
    /// `PAR_EL1`.
    pub par: u64,
    /// `CPACR_EL1`.
    pub cpacr: u64,
    /// `CNTKCTL_EL1`.
    pub cntkctl: u64,
    /// `VMPIDR_EL2`: the MPIDR the EL1 software reads.
    pub vmpidr: u64,
    /// `ACTLR_EL1`.
    pub actlr: u64,
    /// `CSSELR_EL1`.
    pub csselr: u64,
    /// `TPIDR2_EL0` (SME).
    pub tpidr2_el0: u64,
    /// `CNTV_CTL_EL0`: the virtual timer is the vCPU's own.
    pub cntv_ctl: u64,
    /// `CNTV_CVAL_EL0`.
    pub cntv_cval: u64,
    /// `CNTVOFF_EL2`: the offset of the virtual counter this EL1 reads.
    pub cntvoff: u64,
    /// `MDSCR_EL1`: the host's debug control must not arm breakpoints or watchpoints in a guest
    /// (a guest's accesses to it trap: `MDCR_EL2.TDA`), so a guest always runs with 0.
    pub mdscr: u64,
    /// The pointer-authentication keys, low then high halves: `APIAKey`, `APIBKey`, `APDAKey`,
    /// `APDBKey`, `APGAKey`.
    pub pointer_authentication_keys: [u64; 10],
}

/// Everything of a vCPU the hypervisor saves while it does not run.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuContext {
    /// `x0` to `x30`.
    pub registers: [u64; 31],
    /// Where the vCPU continues (`ELR_EL2` at entry).
    pub pc: u64,
    /// Its PSTATE (`SPSR_EL2` at entry).
    pub pstate: u64,
    /// Its EL1 system registers.
    pub el1: El1Registers,
}

const _: () = assert!(core::mem::offset_of!(VcpuContext, pc) == 0xF8);
const _: () = assert!(core::mem::offset_of!(VcpuContext, pstate) == 0x100);

impl VcpuContext {
    /// A vCPU about to run its first instruction at `entry` (MMU off, EL1h, interrupts masked) with
    /// `x0` = `argument`.
    pub fn at_entry(entry: u64, argument: u64, index: u32) -> Self {
        let mut context = Self::default();
        context.registers[0] = argument;
        context.pc = entry;
        context.pstate = PSTATE_EL1H_MASKED;
        context.el1.sctlr = SCTLR_EL1_RESET;
        // Bit 31 of MPIDR is RES1; Aff0 is the vCPU index.
        context.el1.vmpidr = (1 << 31) | u64::from(index);
        context
    }
}

/// Where a vCPU is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuState {
    /// `VCPU_INIT` has not been called.
    Uninitialised,
    /// Can run.
    Ready,
    /// Runs on some CPU now.
    Running,
    /// Powered itself off (or stopped on an exit it cannot continue from): never runs again.
    Stopped,
}
