//! The host of the demo: a small EL1 kernel under the protected hypervisor (`firmware/hyp`).
//!
//! It brings up every CPU through PSCI (the hypervisor rewrites `CPU_ON`), keeps the secondary CPUs
//! busy with SME Streaming-mode store loops into host memory, and on the boot CPU runs one of two
//! scenarios chosen by the parameter block QEMU writes at
//! [`TEST_PARAMETERS_ADDRESS`](firmware_runtime::memory_map::TEST_PARAMETERS_ADDRESS) (word 0: 0 or 1
//! the demo, 2 the hostile host, 3 the donation benchmark, 4 the attack suite, 5 the DMA scenario;
//! word 1: guest memory in MiB, 0 for 16; word 2: guest image size; benchmark only: word 3 pages per
//! `DONATE_GUEST` call, word 4 non-zero for 2 MiB-aligned ranges; attack suite only: word 5 a host
//! page above 4 GiB, or 0):
//!
//! * [`demo`]: a protected VM from start to finish, with a summary;
//! * [`hostile`]: hypercalls with bad arguments, each with its exact error, and checks that nothing
//!   changed;
//! * [`bench`]: retired instructions of donating and reclaiming guest memory (`cargo xtask bench`);
//! * [`attacks`]: every path to memory and state around the hypercalls (devices, DMA, the GIC, the
//!   world switch, the PMU, EL3 traps), each of which must be refused.
//! * [`dma`]: DMA with QEMU's `edu` device into the host's, a guest's and the hypervisor's memory.
//!
//! All end with `host: RESULT: PASS` or `FAIL` and a semihosting exit with status 0 or 1.
//! The host runs with a fixed identity map at stage 1 ([`mmu`]); the hypervisor's stage-2 decides
//! what it may touch.
#![no_std]
#![no_main]

mod attacks;
mod bench;
mod calls;
mod demo;
mod dma;
mod hostile;
mod mmu;
mod secondaries;

use arm_sysregs::el0::accessors::read_currentel;
use arm_sysregs::el1::accessors::{read_elr_el1, read_esr_el1, read_far_el1, write_elr_el1};
use arm_sysregs::el1::registers::ElrEl1;
use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use firmware_runtime::println;

// The build script linked the image for the board its libraries read (`board::Selected`).
const _: () = assert!(board::same_name(
    env!("PKVM_BOARD"),
    <board::Selected as board::Platform>::NAME
));

// The shared assembler macros first: they must be defined before `entry.S` uses them.
global_asm!(firmware_runtime::asm_macros!(), include_str!("entry.S"));

/// Synchronous external aborts the host has taken (the hypervisor injects one for every access to
/// memory the host gave away).
pub static ABORTS: AtomicU64 = AtomicU64::new(0);
/// Undefined-instruction exceptions taken while [`EXPECT_UNDEFINED`] was set.
pub static UNDEFINED: AtomicU64 = AtomicU64::new(0);
/// Set around an instruction that must raise an undefined-instruction exception (the attack suite).
pub static EXPECT_UNDEFINED: AtomicBool = AtomicBool::new(false);

/// `ESR_EL1.EC` of an unknown-reason (undefined-instruction) exception.
const EC_UNKNOWN: u8 = 0x00;
/// `ESR_EL1.EC` of an instruction abort taken without a change of level.
const EC_INSTRUCTION_ABORT_SAME: u8 = 0x21;
/// `ESR_EL1.EC` of a data abort taken without a change of level.
const EC_DATA_ABORT_SAME: u8 = 0x25;
/// `ESR_EL1.ISS` bits of the fault status code (`DFSC`/`IFSC`) of an abort.
const ISS_FAULT_STATUS: u32 = 0x3F;
/// The fault status code of a synchronous external abort (not on a table walk).
const FSC_SYNCHRONOUS_EXTERNAL: u32 = 0x10;
/// The length of the (A64) instruction the handler steps over.
const INSTRUCTION_BYTES: u64 = 4;

/// The scenario and its parameters.
#[derive(Clone, Copy, Debug)]
pub struct Parameters {
    /// Run the hostile-host scenario instead of the demo.
    pub hostile: bool,
    /// Guest memory in pages.
    pub guest_pages: u64,
    /// Size of the guest image QEMU loaded (0: unknown, copy the largest allowed).
    pub image_size: u64,
    /// Run the donation benchmark instead of the demo.
    pub benchmark: bool,
    /// Benchmark: pages per `DONATE_GUEST` call.
    pub pages_per_call: u64,
    /// Benchmark: donate 2 MiB-aligned ranges (blocks possible) rather than ranges one page off.
    pub block_aligned: bool,
    /// Run the attack suite instead of the demo.
    pub attacks: bool,
    /// Attack suite: a host page above 4 GiB to donate and reclaim (0: the machine has none).
    pub high_page: u64,
    /// Run the DMA scenario instead of the demo.
    pub dma: bool,
}

fn read_parameters() -> Parameters {
    let base = firmware_runtime::memory_map::TEST_PARAMETERS_ADDRESS as *const u64;
    // SAFETY: the parameter block is host memory below the hypervisor, written by QEMU before the start
    // and never by anything else; with the MMU off the address is physical.
    let words = unsafe {
        [
            base.read_volatile(),
            base.add(1).read_volatile(),
            base.add(2).read_volatile(),
            base.add(3).read_volatile(),
            base.add(4).read_volatile(),
            base.add(5).read_volatile(),
        ]
    };
    let mebibytes = if words[1] == 0 { 16 } else { words[1].min(256) };
    Parameters {
        hostile: words[0] == 2,
        guest_pages: mebibytes * 256,
        image_size: words[2],
        benchmark: words[0] == 3,
        pages_per_call: words[3].max(1),
        block_aligned: words[4] != 0,
        attacks: words[0] == 4,
        high_page: words[5],
        dma: words[0] == 5,
    }
}

/// The boot CPU.
#[unsafe(no_mangle)]
extern "C" fn host_main(device_tree: u64) -> ! {
    mmu::enable();
    // SAFETY: UART0 is device memory the hypervisor maps on demand; this image's console is its only
    // user here.
    unsafe { firmware_runtime::console::init(firmware_runtime::memory_map::CONSOLE) };
    println!(
        "host: demo host at EL{} on CPU 0, device tree at {device_tree:#x}",
        read_currentel().el()
    );
    let parameters = read_parameters();
    if parameters.benchmark {
        let passed = bench::run(parameters, device_tree);
        println!("host: RESULT: {}", if passed { "PASS" } else { "FAIL" });
        firmware_runtime::semihosting::exit(if passed { 0 } else { 1 })
    }
    let cpus = secondaries::start_all(device_tree);
    let passed = if parameters.hostile {
        hostile::run(parameters)
    } else if parameters.attacks {
        attacks::run(parameters)
    } else if parameters.dma {
        dma::run(parameters, device_tree)
    } else {
        demo::run(parameters, cpus)
    };
    let rounds = secondaries::stop_all();
    println!("host: secondary CPUs stopped after {rounds} store rounds");
    let revived = secondaries::restart_all(cpus);
    println!(
        "host: CPUs switched off and on again through the hypervisor: {revived} of {}",
        cpus - 1
    );
    let passed = passed && revived as usize == cpus - 1;
    println!("host: RESULT: {}", if passed { "PASS" } else { "FAIL" });
    firmware_runtime::semihosting::exit(if passed { 0 } else { 1 })
}

/// A CPU started with `CPU_ON` (context id: its index, plus a flag on its second start).
#[unsafe(no_mangle)]
extern "C" fn host_secondary_main(context: u64) -> ! {
    secondaries::run(context)
}

/// A synchronous exception at EL1: an abort the hypervisor injected (or, in the attack suite, an
/// expected undefined instruction) is counted and the faulting instruction skipped; anything else
/// ends the demo.
#[unsafe(no_mangle)]
extern "C" fn host_sync_exception() {
    let syndrome = read_esr_el1();
    let class = syndrome.ec();
    let external_abort = syndrome.iss() & ISS_FAULT_STATUS == FSC_SYNCHRONOUS_EXTERNAL;
    if (class == EC_DATA_ABORT_SAME || class == EC_INSTRUCTION_ABORT_SAME) && external_abort {
        ABORTS.fetch_add(1, Ordering::Relaxed);
        step_over_instruction();
        return;
    }
    if class == EC_UNKNOWN && EXPECT_UNDEFINED.load(Ordering::Relaxed) {
        UNDEFINED.fetch_add(1, Ordering::Relaxed);
        step_over_instruction();
        return;
    }
    println!(
        "host: FAIL: unexpected exception: ESR_EL1 {:#x} ELR_EL1 {:#x} FAR_EL1 {:#x}",
        syndrome.bits(),
        read_elr_el1().bits(),
        read_far_el1().bits()
    );
    firmware_runtime::semihosting::exit(3)
}

/// Makes the exception return to the instruction after the one that raised it (a faulting or
/// undefined 32-bit A64 instruction).
fn step_over_instruction() {
    let next = read_elr_el1().bits() + INSTRUCTION_BYTES;
    // SAFETY: the exception handler returns to the next instruction of the same code.
    unsafe { write_elr_el1(ElrEl1::from_bits_retain(next)) };
}

/// Any vector the host does not expect.
#[unsafe(no_mangle)]
extern "C" fn host_unexpected_exception(syndrome: u64, address: u64) -> ! {
    println!("host: FAIL: unexpected exception vector: ESR_EL1 {syndrome:#x} ELR_EL1 {address:#x}");
    firmware_runtime::semihosting::exit(3)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("host: FAIL: panic: {info}");
    firmware_runtime::semihosting::exit(1)
}
