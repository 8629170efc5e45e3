//! What the host's traps to EL2 become: hypercalls (`HVC`), SMCs (forwarded, refused or rewritten,
//! see [`hyp_core::host_smc`]) and stage-2 faults (mapped on demand, or an abort injected into the
//! host's EL1).

use crate::firmware::{self, Registers};
use crate::{Board, HOST_ENTRIES, hypervisor, platform, world_switch};
use abi::hypercall::{self, HostHypercall, HypercallError, HypercallOutput};
use abi::smccc::{ARGUMENT_REGISTERS, FunctionId, ReturnCode};
use arm_sysregs::el1::accessors::{
    read_vbar_el1, write_elr_el1, write_esr_el1, write_far_el1, write_spsr_el1,
};
use arm_sysregs::el1::registers::{ElrEl1, EsrEl1, FarEl1, SpsrEl1};
use arm_sysregs::el2::accessors::{read_esr_el2, read_far_el2};
use arm_sysregs::el2::registers::{EsrEl2, SpsrEl2};
use board::Platform;
use core::sync::atomic::{AtomicU64, Ordering};
use firmware_runtime::println;
use hyp_core::HostCallOutcome;
use hyp_core::gic::{ControlPageAction, MmioAccess, control_page_access};
use hyp_core::host_smc::{self, HostSmcAction};
use mem_protect::HostFaultOutcome;

/// The host's registers as the vectors saved them (`save_exception_frame el2` in `entry.S`): x0-x30,
/// `ELR_EL2` (`return_address`: where the host continues) and `SPSR_EL2` (`saved_state`).
pub type TrapFrame = firmware_runtime::exception::ExceptionFrame;

/// Aborts injected into the host because it touched memory it does not own.
static ABORTS_INJECTED: AtomicU64 = AtomicU64::new(0);

/// How many aborts the host has been given.
pub fn aborts_injected() -> u64 {
    ABORTS_INJECTED.load(Ordering::Relaxed)
}

const EC_UNKNOWN: u64 = 0x00;
const EC_HVC64: u64 = 0x16;
const EC_SMC64: u64 = 0x17;
const EC_INSTRUCTION_ABORT_LOWER: u64 = 0x20;
const EC_INSTRUCTION_ABORT_SAME: u64 = 0x21;
const EC_DATA_ABORT_LOWER: u64 = 0x24;
const EC_DATA_ABORT_SAME: u64 = 0x25;
/// `ESR_ELx.IL`: a 32-bit instruction.
const ESR_IL: u64 = EsrEl1::IL.bits();
/// `ESR_ELx.ISS.WnR` of a data abort (`arm-sysregs` does not decode the ISS).
pub const ESR_WNR: u64 = 1 << 6;
/// `ESR_ELx.ISS.DFSC`/`IFSC` of an abort: the fault status code (`arm-sysregs` does not decode the
/// ISS).
const ESR_FSC_MASK: u64 = 0x3F;
/// Fault status code: synchronous external abort.
const FSC_EXTERNAL_ABORT: u64 = 0x10;
/// PSCI `INVALID_ADDRESS`.
const PSCI_INVALID_ADDRESS: u64 = -9_i64 as u64;

/// A lower-EL exception while the host ran (kind 0 synchronous, 1 IRQ, 2 FIQ, 3 SError).
#[unsafe(no_mangle)]
extern "C" fn handle_host_trap(frame: &mut TrapFrame, kind: u64) {
    if kind != 0 {
        // The host's interrupts go to EL1 (HCR_EL2.IMO/FMO/AMO clear): nothing arrives here.
        return;
    }
    let syndrome = read_esr_el2().bits();
    // The exception class alone (bits 31:26): ISS2 (bits 63:32), non-zero for some accesses on CPUs
    // with FEAT_LS64 or FEAT_GCS, must not change which class matches.
    match exception_class(syndrome) {
        EC_HVC64 => host_hypercall(frame),
        EC_SMC64 => {
            // A trapped SMC returns to the SMC itself.
            frame.return_address += 4;
            host_smc(frame);
        }
        EC_DATA_ABORT_LOWER | EC_INSTRUCTION_ABORT_LOWER => host_abort(frame, syndrome),
        _ => inject(frame, EC_UNKNOWN << EsrEl1::EC_SHIFT | ESR_IL, 0),
    }
}

/// The exception class of `ESR_EL2`'s value (bits 31:26).
pub fn exception_class(syndrome: u64) -> u64 {
    (syndrome >> EsrEl2::EC_SHIFT) & 0x3F
}

fn host_hypercall(frame: &mut TrapFrame) {
    // Function IDs are 32 bits (w0).
    let function_id = FunctionId(frame.registers[0] as u32);
    if !hypercall::owns(function_id) {
        frame.registers[0] = ReturnCode::NotSupported.to_register();
        return;
    }
    let mut arguments = [0; ARGUMENT_REGISTERS];
    arguments.copy_from_slice(&frame.registers[1..=ARGUMENT_REGISTERS]);
    let result = match HostHypercall::decode(function_id, &arguments) {
        Err(error) => Err(HypercallError::from(error)),
        Ok(call) => {
            let outcome = hypervisor().lock().host_hypercall(call);
            let result = match outcome {
                HostCallOutcome::Done(result) => result,
                HostCallOutcome::Run(ticket) => {
                    Ok(HypercallOutput::Exit(world_switch::run(ticket)))
                }
            };
            after_hypercall(&call, &result);
            result
        }
    };
    let results = hypercall::encode_result(result);
    frame.registers[..results.len()].copy_from_slice(&results);
}

/// Keeps the VMID → table record for TLB maintenance and logs the VM lifecycle.
fn after_hypercall(call: &HostHypercall, result: &Result<HypercallOutput, HypercallError>) {
    match (call, result) {
        (HostHypercall::VmCreate { .. }, Ok(HypercallOutput::Vm(vm))) => {
            let table = hypervisor()
                .lock()
                .memory()
                .vm(*vm)
                .map(|protected| (protected.stage2().vmid(), protected.stage2().vttbr_el2()));
            if let Some((vmid, vttbr)) = table {
                platform::set_vttbr(vmid.0, vttbr);
            }
            println!("hyp: protected VM {} created", vm.0);
        }
        (HostHypercall::VmFree { vm }, Ok(_)) => {
            platform::set_vttbr(u16::try_from(vm.0).unwrap_or(0), 0);
            crate::smmu::report_faults();
            println!(
                "hyp: protected VM {} freed; erratum 4193714 firmware calls so far: {}; aborts injected into the host: {}",
                vm.0,
                platform::dvm_sync_calls(),
                aborts_injected()
            );
        }
        _ => {}
    }
}

fn host_smc(frame: &mut TrapFrame) {
    // Function IDs are 32 bits (w0).
    let function_id = frame.registers[0] as u32;
    let mut arguments = [0; ARGUMENT_REGISTERS];
    arguments.copy_from_slice(&frame.registers[1..=ARGUMENT_REGISTERS]);
    match host_smc::classify(function_id, &arguments) {
        HostSmcAction::Forward => {
            let mut registers: Registers = [0; 18];
            registers.copy_from_slice(&frame.registers[..18]);
            let results = firmware::smc(registers);
            frame.registers[..18].copy_from_slice(&results);
        }
        HostSmcAction::Refuse(x0) => frame.registers[0] = x0,
        HostSmcAction::CpuOn {
            target_cpu,
            entry_point,
            context_id,
            ..
        } => {
            let target = Board::cpu_index(target_cpu)
                .filter(|_| target_cpu & !board::MPIDR_AFFINITY_MASK == 0);
            frame.registers[0] = match target {
                // The monitor gives the exact error for a CPU that does not exist.
                None => forward(frame),
                Some(target) => start_cpu(function_id, target_cpu, target, entry_point, context_id),
            };
        }
        HostSmcAction::CpuSuspend {
            power_state,
            entry_point,
            context_id,
            ..
        } => {
            let cpu = firmware_runtime::cpu::current_index::<Board>();
            frame.registers[0] = if hypervisor().lock().host_entry_allowed(entry_point) {
                *HOST_ENTRIES[cpu].lock() = Some((entry_point, context_id));
                let mut registers: Registers = [0; 18];
                registers[0] = u64::from(function_id);
                registers[1] = u64::from(power_state);
                registers[2] = crate::secondary_entry_address();
                let result = firmware::smc(registers)[0];
                // Returned: a standby, or refused. A power-down resumes through the entry instead.
                *HOST_ENTRIES[cpu].lock() = None;
                result
            } else {
                PSCI_INVALID_ADDRESS
            };
        }
    }
}

fn forward(frame: &TrapFrame) -> u64 {
    let mut registers: Registers = [0; 18];
    registers.copy_from_slice(&frame.registers[..18]);
    firmware::smc(registers)[0]
}

/// `CPU_ON` for the host: the CPU starts in the hypervisor, which then enters the host's entry.
fn start_cpu(function_id: u32, mpidr: u64, target: usize, entry: u64, context_id: u64) -> u64 {
    if !hypervisor().lock().host_entry_allowed(entry) {
        return PSCI_INVALID_ADDRESS;
    }
    let previous = HOST_ENTRIES[target].lock().replace((entry, context_id));
    let mut registers: Registers = [0; 18];
    registers[0] = u64::from(function_id);
    registers[1] = mpidr;
    registers[2] = crate::secondary_entry_address();
    let result = firmware::smc(registers)[0];
    if result != 0 {
        *HOST_ENTRIES[target].lock() = previous;
    }
    result
}

fn host_abort(frame: &mut TrapFrame, syndrome: u64) {
    let fault_status = syndrome & ESR_FSC_MASK;
    // Translation (0x04-0x07), access flag (0x08-0x0B) and permission (0x0C-0x0F) faults are stage-2
    // faults the ownership rules decide about; anything else is an external abort to pass on.
    let far = read_far_el2().bits();
    if (0x04..=0x0F).contains(&fault_status) {
        let ipa = world_switch::fault_ipa();
        let control_page =
            crate::host_devices().and_then(|devices| devices.redistributor_control(ipa));
        if let Some((redistributor, offset)) = control_page
            && exception_class(syndrome) == EC_DATA_ABORT_LOWER
            && emulate_redistributor_control(frame, syndrome, redistributor, offset)
        {
            return;
        }
        let outcome = hypervisor().lock().memory_mut().handle_host_fault(ipa);
        if let HostFaultOutcome::Mapped { .. } = outcome {
            return;
        }
        ABORTS_INJECTED.fetch_add(1, Ordering::Relaxed);
    }
    // M[3:0] = 0: EL0t.
    let from_el0 = SpsrEl2::from_bits_retain(frame.saved_state).m_3_0() == 0;
    let class = match (exception_class(syndrome), from_el0) {
        (EC_INSTRUCTION_ABORT_LOWER, true) => EC_INSTRUCTION_ABORT_LOWER,
        (EC_INSTRUCTION_ABORT_LOWER, false) => EC_INSTRUCTION_ABORT_SAME,
        (_, true) => EC_DATA_ABORT_LOWER,
        (_, false) => EC_DATA_ABORT_SAME,
    };
    inject(
        frame,
        class << EsrEl1::EC_SHIFT | ESR_IL | (syndrome & ESR_WNR) | FSC_EXTERNAL_ABORT,
        far,
    );
}

/// Performs the host's access to a redistributor's control page as [`hyp_core::gic`] allows (LPIs
/// never enabled, no LPI table ever given to the GIC) and steps over the instruction; returns false
/// when the syndrome does not describe the access (the host then takes an abort).
fn emulate_redistributor_control(
    frame: &mut TrapFrame,
    syndrome: u64,
    redistributor: u64,
    offset: u64,
) -> bool {
    let Some(access) = MmioAccess::decode(syndrome) else {
        return false;
    };
    let address = redistributor + offset;
    let register = usize::from(access.register);
    match control_page_access(offset, access.write) {
        ControlPageAction::Read { clear } => {
            let raw = mmio_read(address, access.size) & !clear;
            if register < 31 {
                frame.registers[register] = access.loaded_value(raw);
            }
        }
        ControlPageAction::ReadZero => {
            if register < 31 {
                frame.registers[register] = 0;
            }
        }
        ControlPageAction::Write { clear } => {
            let value = if register < 31 {
                frame.registers[register]
            } else {
                0
            };
            mmio_write(address, access.size, value & !clear);
        }
        ControlPageAction::Ignore => {}
    }
    frame.return_address += 4;
    true
}

fn mmio_read(address: u64, size: u8) -> u64 {
    // SAFETY: `address` lies in a redistributor's control page (checked against the GIC's region
    // from the device tree), which the hypervisor's own map covers as device memory; the access has
    // the size the host used, naturally aligned as the architecture requires for device memory.
    unsafe {
        match size {
            1 => u64::from((address as *const u8).read_volatile()),
            2 => u64::from((address as *const u16).read_volatile()),
            4 => u64::from((address as *const u32).read_volatile()),
            _ => (address as *const u64).read_volatile(),
        }
    }
}

fn mmio_write(address: u64, size: u8, value: u64) {
    // SAFETY: as for `mmio_read`; the value was checked by `control_page_access`.
    unsafe {
        match size {
            1 => (address as *mut u8).write_volatile(value as u8),
            2 => (address as *mut u16).write_volatile(value as u16),
            4 => (address as *mut u32).write_volatile(value as u32),
            _ => (address as *mut u64).write_volatile(value),
        }
    }
}

/// Makes the host take a synchronous exception with `syndrome` at its EL1 vector, as if its own
/// EL1 had raised it: `ESR_EL1`, `FAR_EL1`, `ELR_EL1`, `SPSR_EL1`, then `VBAR_EL1` + the offset for
/// where the host was ([`exception_entry::synchronous_entry`]).
fn inject(frame: &mut TrapFrame, syndrome: u64, fault_address: u64) {
    // The host runs with HCR_EL2.TGE clear: its EL0's exceptions go to its EL1.
    let Ok(entry) = exception_entry::synchronous_entry(frame.saved_state, false) else {
        println!(
            "hyp: cannot reflect an exception into a host in SPSR state {:#x}",
            frame.saved_state
        );
        firmware_runtime::semihosting::exit(102)
    };
    write_esr_el1(EsrEl1::from_bits_retain(syndrome));
    // SAFETY: the host's own EL1 exception registers, set as its EL1 would on taking this exception;
    // the hypervisor at EL2 does not use them.
    unsafe {
        write_far_el1(FarEl1::from_bits_retain(fault_address));
        write_elr_el1(ElrEl1::from_bits_retain(frame.return_address));
        write_spsr_el1(SpsrEl1::from_bits_retain(frame.saved_state));
    }
    frame.return_address = read_vbar_el1().bits() + entry.vector_offset;
    frame.saved_state = entry.spsr;
}
