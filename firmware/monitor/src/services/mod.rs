//! SMC dispatch, Rusted Firmware-A style: each service owns the function IDs of one SMCCC owner
//! and handles its calls; [`dispatch`] finds the service of a call's owner in [`SERVICES`].
//! Adding a service adds one row there and touches no other service.
//!
//! | service            | owner (SMCCC)          | function IDs                          |
//! |--------------------|------------------------|---------------------------------------|
//! | [`arch::Arch`]     | 0, Arm Architecture    | `SMCCC_VERSION`, `SMCCC_ARCH_FEATURES` |
//! | [`cpu::CpuService`]| 1, CPU service         | erratum 4193714 call, UID, VERSION    |
//! | [`statistics::Statistics`] | 2, SiP         | the monitor's rendezvous counters (tests, demo) |
//! | [`psci::Psci`]     | 4, Standard Secure     | PSCI 1.1                              |
//!
//! Every other function ID is answered with `SMC_UNK` (-1).

pub mod arch;
pub mod cpu;
pub mod psci;
pub mod statistics;

use crate::context::Context;
use crate::el3::{read_sysreg, write_sysreg};
use abi::smccc::{ARGUMENT_REGISTERS, Arguments, FunctionId};
use exception_entry::ExceptionLevel;

/// `SMC_UNK`: the function is not implemented.
pub const SMC_UNKNOWN: u64 = -1_i64 as u64;

/// One SMC as a service sees it.
pub struct SmcCall<'a> {
    /// The function ID (w0).
    pub function_id: FunctionId,
    /// x1 to x17 as saved (the `abi` decoders ignore the upper halves of SMC32 arguments).
    pub arguments: &'a Arguments,
    /// Dense index of the calling CPU.
    pub cpu: usize,
}

/// The result registers of a call: only the first `count` of x0-x3 are written back.
pub struct SmcReturn {
    values: [u64; 4],
    count: usize,
}

impl SmcReturn {
    /// One result in x0.
    pub const fn one(x0: u64) -> Self {
        Self {
            values: [x0, 0, 0, 0],
            count: 1,
        }
    }

    /// A signed result in x0, sign-extended.
    pub const fn signed(x0: i32) -> Self {
        Self::one(x0 as i64 as u64)
    }

    /// Four results in x0-x3.
    pub const fn four(values: [u64; 4]) -> Self {
        Self { values, count: 4 }
    }
}

/// A service: handles the function IDs of its SMCCC owner ([`SERVICES`]).
pub trait Service: Sync {
    /// Handles a call this service owns. May not return (e.g. `CPU_OFF`).
    fn handle(&self, call: &SmcCall) -> SmcReturn;
}

/// Every service, indexed by the SMCCC owning entity number it handles (function ID bits
/// `[29:24]`): Arm Architecture 0, CPU service 1, SiP 2, Standard Secure (PSCI) 4. One load finds
/// a call's service, whatever the number of services.
static SERVICES: [Option<&dyn Service>; 64] = {
    let mut services: [Option<&dyn Service>; 64] = [None; 64];
    services[0] = Some(&arch::Arch);
    services[1] = Some(&cpu::CpuService);
    services[2] = Some(&statistics::Statistics);
    services[4] = Some(&psci::Psci);
    services
};

/// What `exceptions.S` (`smc_entry`) saves on this CPU's EL3 stack for an SMC: x0-x17 (the
/// function ID and arguments, and the results written back), then x18 and x30. Only the
/// registers a Rust call may clobber: see the comment at `smc_entry`.
#[repr(C)]
pub struct SmcFrame {
    /// x0-x17.
    registers: [u64; 18],
    /// x18 and x30, restored as saved.
    preserved: [u64; 2],
}

const _: () = assert!(size_of::<SmcFrame>() == 0xa0, "CALLER_SAVED_FRAME_SIZE");

/// An SMC other than the erratum call (the Rust end of `smc_entry`).
#[unsafe(no_mangle)]
extern "C" fn handle_smc(frame: &mut SmcFrame) {
    dispatch(&mut frame.registers);
}

/// Exception class of an `SMC` executed in AArch64 state.
const EC_SMC64: u64 = 0x17;

/// Synchronous exception from the Non-secure world (the Rust end of `exceptions.S`'s lower-EL
/// synchronous vector): an SMC, or an access to a register that traps to EL3 (a Group 0 GIC register
/// such as `ICC_IAR0_EL1`, say), which the caller gets back as an undefined instruction: a lower
/// level must not be able to stop the machine.
///
/// It lives next to [`dispatch`] rather than with the other vector ends in `context.rs` so that the
/// two are always compiled in the same codegen unit: `dispatch` is then inlined on the path of every
/// SMC whatever the partitioning of the rest of the crate (5 instructions per SMC otherwise).
#[unsafe(no_mangle)]
extern "C" fn handle_lower_el_sync(context: &mut Context) {
    let syndrome = read_sysreg!("esr_el3");
    if syndrome >> 26 == EC_SMC64 {
        // `smc_entry` sends SMCs to `handle_smc`; kept for completeness.
        if let Some(registers) = context.registers.first_chunk_mut::<18>() {
            dispatch(registers);
        }
    } else {
        inject_undefined(context, syndrome);
    }
}

/// Makes the Non-secure code that trapped take an undefined-instruction exception at the level the
/// architecture would route it to (its own, or EL1/EL2 from EL0), at that level's vector.
#[cold]
fn inject_undefined(context: &mut Context, syndrome: u64) {
    let el0_to_el2 = read_sysreg!("hcr_el2") & (1 << 27) != 0;
    let entry = match exception_entry::synchronous_entry(context.saved_state, el0_to_el2) {
        Ok(entry) => entry,
        Err(error) => panic!(
            "trap from the Non-secure world that cannot be reflected ({error}): ESR_EL3 {syndrome:#x}, ELR_EL3 {:#x}",
            context.return_address
        ),
    };
    let vector_base = match entry.level {
        ExceptionLevel::El2 => {
            write_sysreg!("esr_el2", exception_entry::ESR_UNDEFINED);
            write_sysreg!("elr_el2", context.return_address);
            write_sysreg!("spsr_el2", context.saved_state);
            read_sysreg!("vbar_el2")
        }
        ExceptionLevel::El1 | ExceptionLevel::El0 => {
            write_sysreg!("esr_el1", exception_entry::ESR_UNDEFINED);
            write_sysreg!("elr_el1", context.return_address);
            write_sysreg!("spsr_el1", context.saved_state);
            read_sysreg!("vbar_el1")
        }
    };
    context.return_address = vector_base + entry.vector_offset;
    context.saved_state = entry.spsr;
}

/// Handles the SMC whose x0-x17 are `registers` and writes its results back into them.
pub fn dispatch(registers: &mut [u64; 18]) {
    let function_id = FunctionId::from_register(registers[0]);
    let result = {
        let Some(arguments) = registers.last_chunk::<ARGUMENT_REGISTERS>() else {
            return;
        };
        let call = SmcCall {
            function_id,
            arguments,
            cpu: crate::cpu_index(),
        };
        match SERVICES.get(usize::from(function_id.owner_number())) {
            Some(Some(service)) => service.handle(&call),
            _ => SmcReturn::one(SMC_UNKNOWN),
        }
    };
    // Results are one register or four: written register by register, since a slice copy of a
    // run-time length becomes a call to `memcpy` on every SMC.
    let [x0, x1, x2, x3] = result.values;
    registers[0] = x0;
    if result.count > 1 {
        registers[1] = x1;
        registers[2] = x2;
        registers[3] = x3;
    }
}

/// Per-CPU set-up of the services on a CPU that is about to run Non-secure code.
pub fn init_cpu(cpu: usize) {
    cpu::init_cpu(cpu);
}
