//! The EL3 monitor of pkvm-rs. The board is [`Board`] (QEMU `virt` or `sbsa-ref`): every address,
//! the GIC layout, the CPU numbering and power control come from its `board::Platform`
//! implementation.
//!
//! Boot flow (see `firmware/README.md` for the picture and the memory map):
//!
//! 1. `entry.S`: every CPU starts at the reset vector in Secure flash. CPU 0 copies the image to Secure
//!    RAM and clears `.bss`; the others wait in flash for [`SECONDARIES_RELEASE`].
//! 2. [`primary_main`] (CPU 0): console, EL3 page tables ([`mmu`]), GIC distributor and this CPU's
//!    redistributor ([`gic`]), EL3 controls ([`el3`]), services ([`services`]); releases the other CPUs
//!    into the pen, patches the device tree for PSCI ([`boot_device_tree`]) and enters the Non-secure
//!    payload at EL2 with x0 = device tree.
//! 3. [`secondary_main`] (other CPUs, and any CPU coming back from `CPU_OFF` or a power-down suspend):
//!    MMU on, then the pen ([`power::pen`]) until `CPU_ON` names this CPU.
//! 4. At run time the Non-secure world enters through the vectors (`exceptions.S`): SMCs go to
//!    [`services::dispatch`], Group 0 interrupts (the rendezvous SGI) to [`services::cpu::handle_fiq`].
//!
//! Concurrency: the monitor runs with every exception masked; shared state is either atomics or behind
//! spin locks, per-CPU state is indexed by the CPU's dense index (`board::Platform::cpu_index`).
#![no_std]
#![no_main]

extern crate alloc;

mod boot_device_tree;
mod context;
mod el3;
mod gic;
mod heap;
mod mmu;
mod power;
mod services;

use arm_sysregs::el0::accessors::{read_cntfrq_el0, read_cntpct_el0};
use arm_sysregs::el1::accessors::write_sctlr_el1;
use arm_sysregs::el2::accessors::{write_hcr_el2, write_sctlr_el2};
use arm_sysregs::el2::registers::HcrEl2;
use arm_sysregs::el3::accessors::read_tpidr_el3;
use board::Platform;
use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};
use firmware_runtime::println;

/// The board this image is built for: the `board` crate's selection (`cargo xtask --machine`
/// picks it through the crate's features). Adding a board means implementing `board::Platform` in
/// that crate, nothing here.
pub type Board = board::Selected;
// The build script linked the image for the same board (its `memory.ld`).
const _: () = assert!(board::same_name(env!("PKVM_BOARD"), Board::NAME));
// The board's map must be consistent (the hypervisor at the Non-secure entry, Secure memory
// forbidden to the host, ...) before the monitor is built for it.
const _: () = assert!(board::check::<Board>().is_ok());
/// Most CPUs of [`Board`]: the length of every per-CPU array.
pub const MAX_CPUS: usize = Board::MAX_CPUS;
/// Where the Non-secure payload is entered at EL2.
const NON_SECURE_ENTRY: usize = Board::NON_SECURE_ENTRY;

/// Size of each CPU's EL3 stack (must match the `.stacks` section of `monitor.ld`).
pub const STACK_SIZE: usize = 0x4000;
/// The value CPU 0 writes to [`SECONDARIES_RELEASE`] once Secure RAM holds the image.
const RELEASE_MAGIC: u64 = 0x5EC0_4DA2_B007_0001;
/// `SCTLR_EL3` out of reset: the RES1 bits, instruction cache on, MMU and data cache off.
const SCTLR_EL3_BOOT: u64 = 0x30C5_0830 | (1 << 12);

// One `global_asm!` for all the monitor's assembly: the shared macros must be defined once, first.
global_asm!(
    firmware_runtime::asm_macros!(),
    include_str!("entry.S"),
    include_str!("exceptions.S"),
    MAX_CPUS = const MAX_CPUS,
    CLUSTER_SHIFT = const Board::CPU_NUMBERING.cluster_shift,
    STACK_SIZE = const STACK_SIZE,
    RELEASE_MAGIC = const RELEASE_MAGIC,
    SCTLR_EL3_BOOT = const SCTLR_EL3_BOOT,
);

/// Secondary CPUs wait in flash until this holds [`RELEASE_MAGIC`].
#[unsafe(export_name = "secondaries_release")]
static SECONDARIES_RELEASE: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" {
    /// Leaves EL3 for `spsr`'s exception level at `entry` with x0 = `argument` (`entry.S`).
    fn enter_non_secure(entry: u64, argument: u64, spsr: u64) -> !;
    /// Restarts this CPU in the pen with an empty stack (`entry.S`).
    fn secondary_ram_entry() -> !;
}

/// `SPSR_EL3` for entering the Non-secure payload: EL2h with D, A, I and F masked.
const SPSR_EL2H_MASKED: u64 = 0b1001 | (0b1111 << 6);

/// CPU 0 after the image is in Secure RAM; MMU off, stack set.
#[unsafe(no_mangle)]
extern "C" fn primary_main(cpu: usize) -> ! {
    // SAFETY: UART0 is reachable at its physical address (MMU off, later identity-mapped as device
    // memory) and only the console uses it.
    unsafe { firmware_runtime::console::init(Board::UART) };
    println!("monitor: EL3 firmware of pkvm-rs, CPU {cpu} booting");
    mmu::build_tables();
    mmu::enable();
    el3::init_cpu();
    let cpu_count = gic::init_distributor();
    gic::init_cpu(cpu);
    power::boot(cpu_count, cpu);
    release_secondaries();
    services::init_cpu(cpu);
    wait_for_secondaries(cpu_count);
    boot_device_tree::prepare();
    println!(
        "monitor: {cpu_count} CPUs; entering the Non-secure payload at {NON_SECURE_ENTRY:#x} (EL2)"
    );
    let device_tree = Board::DEVICE_TREE.base as u64;
    // SAFETY: the payload entry is Non-secure DRAM; the EL3 state for it was set up above.
    unsafe { enter_non_secure(NON_SECURE_ENTRY as u64, device_tree, SPSR_EL2H_MASKED) }
}

/// Lets the other CPUs into Secure RAM: they turn their MMU on with the tables already built.
fn release_secondaries() {
    SECONDARIES_RELEASE.store(RELEASE_MAGIC, Ordering::Release);
    // SAFETY: the waiting CPUs read the flag with their MMU (and caches) off: cleaning its cache line
    // to the point of coherency makes the store visible to them; SEV only signals an event.
    unsafe {
        core::arch::asm!(
            "dc cvac, {flag}",
            "dsb sy",
            "sev",
            flag = in(reg) SECONDARIES_RELEASE.as_ptr(),
            options(nostack),
        );
    }
}

/// How long CPU 0 waits for the others to reach the pen, in microseconds.
const PEN_ARRIVAL_TIMEOUT_MICROSECONDS: u64 = 2_000_000;

/// Waits (boundedly) until every other CPU has reached the pen and recorded whether it has the
/// erratum, so that the first erratum call already knows the whole system.
fn wait_for_secondaries(cpu_count: usize) {
    let expected = cpu_count.saturating_sub(1) as u64;
    let frequency = u64::from(read_cntfrq_el0().clockfreq());
    let deadline = read_cntpct_el0()
        .physicalcount()
        .saturating_add(frequency.saturating_mul(PEN_ARRIVAL_TIMEOUT_MICROSECONDS) / 1_000_000);
    while services::cpu::cpus_recorded() < expected {
        if read_cntpct_el0().physicalcount() >= deadline {
            println!(
                "monitor: only {} of {expected} secondary CPUs reached the pen",
                services::cpu::cpus_recorded()
            );
            return;
        }
        // SAFETY: WFE only waits (each secondary sends an event after recording; under -icount a
        // loop that never waits would keep the whole time slice).
        unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
    }
}

/// A secondary CPU in Secure RAM (at boot, or again after `CPU_OFF`/power-down suspend).
#[unsafe(no_mangle)]
extern "C" fn secondary_main(cpu: usize) -> ! {
    mmu::enable();
    el3::init_cpu();
    services::cpu::record_at_cold_boot(cpu);
    let entry = power::pen(cpu);
    gic::init_cpu(cpu);
    services::init_cpu(cpu);
    warm_boot(entry)
}

/// This CPU's dense index, kept in `TPIDR_EL3` by `entry.S` (the monitor has no other use for it), so
/// that the hot paths need not decode `MPIDR_EL1`.
pub fn cpu_index() -> usize {
    // Set from an index below MAX_CPUS by entry.S before any Rust code runs.
    read_tpidr_el3().bits() as usize
}

/// Puts the lower exception levels' translation back into the state a CPU has after reset (MMU and
/// caches off at EL2 and EL1, `HCR_EL2` clear), as PSCI promises at a `CPU_ON` or power-down entry
/// point. On QEMU a CPU is never really powered down, so the kernel's MMU would otherwise still be on.
fn reset_lower_translation() {
    // SAFETY: the Non-secure world does not run on this CPU until the ERET that follows; these
    // registers only control EL2 and EL1, never EL3 (the values: `cpu_setup::reset`).
    unsafe {
        write_hcr_el2(HcrEl2::empty());
        cpu_setup::isb();
        write_sctlr_el2(cpu_setup::reset::SCTLR_EL2);
        write_sctlr_el1(cpu_setup::reset::SCTLR_EL1);
    }
    cpu_setup::isb();
}

/// Enters the Non-secure world at EL2 at a PSCI entry point.
pub fn warm_boot(entry: psci_state::EntryPoint) -> ! {
    reset_lower_translation();
    // SAFETY: the entry point was checked to lie in Non-secure DRAM; the EL3 state is set up.
    unsafe { enter_non_secure(entry.address, entry.context_id, SPSR_EL2H_MASKED) }
}

/// Puts this CPU back into the pen with an empty stack.
pub fn restart_in_pen() -> ! {
    // SAFETY: `secondary_ram_entry` resets the stack and never returns; nothing on the current stack
    // is needed any more.
    unsafe { secondary_ram_entry() }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!("monitor: PANIC on CPU {}: {info}", cpu_index());
    firmware_runtime::semihosting::exit(101)
}
