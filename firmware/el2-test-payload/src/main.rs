//! The Non-secure EL2 payload that drives the monitor's QEMU tests (`cargo xtask test`).
//!
//! The scenario is chosen by the test-parameter block QEMU writes at
//! [`TEST_PARAMETERS_ADDRESS`](firmware_runtime::memory_map::TEST_PARAMETERS_ADDRESS): word 0 the
//! scenario, word 1 the result the erratum call must give (0, or -3 on unaffected CPUs), word 2 the
//! number of calls per round. The payload prints `payload: <scenario>: PASS` and exits QEMU through
//! semihosting with status 0, or prints `FAIL` lines and exits with status 1. The PSCI scenario ends
//! with `SYSTEM_OFF` instead (QEMU exits 0 through the board's power control: the Secure GPIO on
//! `virt`, the embedded controller on `sbsa-ref`).
//!
//! The rendezvous counters come from the monitor's statistics call (SiP `0xC200_0010`).
#![no_std]
#![no_main]

mod calls;
mod device_tree_check;
mod scenarios;

use core::arch::global_asm;
use firmware_runtime::println;

// The build script linked the image for the board its libraries read (`board::Selected`).
const _: () = assert!(board::same_name(
    env!("PKVM_BOARD"),
    <board::Selected as board::Platform>::NAME
));

// The shared assembler macros first: they must be defined before `entry.S` uses them.
global_asm!(
    firmware_runtime::asm_macros!(),
    include_str!("entry.S"),
    MAX_CPUS = const <board::Selected as board::Platform>::MAX_CPUS,
    CLUSTER_SHIFT = const <board::Selected as board::Platform>::CPU_NUMBERING.cluster_shift,
);

/// What the boot CPU was asked to do.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Scenario {
    /// Print and exit.
    Boot,
    /// PSCI functions and every misuse with its error code.
    Psci,
    /// The erratum call from each CPU in turn and from all at once, others spinning at EL2.
    Erratum,
    /// The erratum call while the other CPUs spin at EL1 with every interrupt masked.
    ErratumMasked,
    /// The erratum call while the other CPUs loop through CPU_OFF/CPU_ON and both CPU_SUSPENDs.
    ErratumChurn,
    /// Retired instructions per call (run under `-icount`).
    Benchmark,
    /// `SYSTEM_RESET`.
    Reset,
    /// The erratum call while the other CPUs are in standby or power-down suspend: they are neither
    /// interrupted nor waited for, and they catch up when they wake.
    ErratumSuspended,
    /// Retired instructions per call with the other CPUs busy at EL1 (a loop that yields, so that
    /// `-icount` turns stay fair; run under `-icount`).
    BenchmarkBusy,
}

impl Scenario {
    fn from_word(word: u64) -> Option<Self> {
        Some(match word {
            1 => Self::Boot,
            2 => Self::Psci,
            3 => Self::Erratum,
            4 => Self::ErratumMasked,
            5 => Self::ErratumChurn,
            6 => Self::Benchmark,
            7 => Self::Reset,
            8 => Self::ErratumSuspended,
            9 => Self::BenchmarkBusy,
            _ => return None,
        })
    }
}

/// The parameter block.
#[derive(Clone, Copy, Debug)]
pub struct Parameters {
    /// The scenario.
    pub scenario: Scenario,
    /// What every erratum call must return.
    pub expected_erratum_result: i64,
    /// Calls per round.
    pub iterations: u64,
}

fn read_parameters() -> Option<Parameters> {
    let base = firmware_runtime::memory_map::TEST_PARAMETERS_ADDRESS as *const u64;
    // SAFETY: the parameter block lies in DRAM below the payload, written by QEMU before the start and
    // never written by anything afterwards; the MMU is off, so the physical address is the address.
    let words = unsafe {
        [
            base.read_volatile(),
            base.add(1).read_volatile(),
            base.add(2).read_volatile(),
        ]
    };
    Some(Parameters {
        scenario: Scenario::from_word(words[0])?,
        expected_erratum_result: words[1] as i64,
        iterations: if words[2] == 0 { 1000 } else { words[2] },
    })
}

/// The boot CPU.
#[unsafe(no_mangle)]
extern "C" fn payload_main(device_tree: u64) -> ! {
    // SAFETY: UART0 is reachable at its physical address (MMU off) and the console is its only user in
    // this image.
    unsafe { firmware_runtime::console::init(firmware_runtime::memory_map::CONSOLE) };
    println!("payload: EL2 test payload on CPU 0, device tree at {device_tree:#x}");
    let Some(parameters) = read_parameters() else {
        println!("payload: no valid test parameters");
        firmware_runtime::semihosting::exit(2)
    };
    if parameters.scenario == Scenario::Boot {
        device_tree_check::check(device_tree);
    }
    scenarios::run(parameters)
}

/// A CPU started by `CPU_ON` or resuming from a power-down suspend.
#[unsafe(no_mangle)]
extern "C" fn secondary_main(context: u64) -> ! {
    scenarios::secondary(context)
}

/// Any exception taken to EL2 is a test failure.
#[unsafe(no_mangle)]
extern "C" fn payload_unexpected_exception(syndrome: u64, address: u64) -> ! {
    println!(
        "payload: FAIL: unexpected exception at EL2: ESR_EL2 {syndrome:#x} ELR_EL2 {address:#x}"
    );
    firmware_runtime::semihosting::exit(1)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("payload: FAIL: panic: {info}");
    firmware_runtime::semihosting::exit(1)
}
