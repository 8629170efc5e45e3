//! The protected hypervisor of pkvm-rs (EL2, nVHE), entered by the EL3 monitor at
//! [`HYPERVISOR_BASE`] with x0 = the device tree.
//!
//! Boot flow (CPU 0, [`hyp_main`]): console → EL2 identity map of the image, MMU and caches on
//! ([`mmu`]) → read DRAM and the devices from the device tree, remove the devices the host may not
//! reach ([`hyp_core::devices`]) and reserve the hypervisor's memory there (no-map)
//! ([`boot_device_tree`]) → EL2 identity map of all DRAM → erratum 4193714 check
//! ([`hyp_core::boot`]): on an affected CPU the firmware call must answer 0, otherwise protected mode
//! is refused and the host runs unprotected → the ownership state (`mem_protect`, host stage-2 from a
//! pool taken once, [`boot_memory`], filled on demand) inside [`hyp_core::Hypervisor`] → per-CPU EL2
//! set-up ([`el2_setup`]) → the host at EL1 at [`HOST_ENTRY`].
//!
//! Other CPUs arrive at `hyp_secondary_entry` because the hypervisor rewrites the host's `CPU_ON`
//! (and power-down `CPU_SUSPEND`); they run [`cpu_init`] and enter the host's own entry point.
//!
//! At run time: host traps in [`traps`], vCPU runs in [`world_switch`], the erratum hook and TLB
//! maintenance in [`platform`], the SMMU that keeps DMA to the host's own pages in [`smmu`], firmware
//! calls in [`firmware`].
//!
//! Concurrency: the [`hyp_core::Hypervisor`] is behind one spin lock (which gives the ownership lock
//! order host → hypervisor → guest); a vCPU runs without it. Per-CPU state is indexed by the dense
//! CPU index; `TPIDR_EL2` points at the CPU's [`PerCpu`] block for the vectors.
//!
//! Known gaps: FP/SIMD/SVE/SME registers are not switched between host and guest (the guest's use of
//! them is trapped instead, see [`world_switch`]); the erratum decision is made on the boot CPU, and a
//! later CPU that is affected when the boot CPU was not is refused (not started) rather than
//! mitigated.
#![no_std]
#![no_main]

extern crate alloc;

mod boot_device_tree;
mod boot_memory;
mod el2_setup;
mod firmware;
mod heap;
mod mmu;
mod platform;
mod smmu;
mod sysreg;
mod traps;
mod world_switch;

use arm_sysregs::el1::accessors::{read_id_aa64mmfr0_el1, read_id_aa64pfr1_el1, read_midr_el1};
use arm_sysregs::el2::registers::SpsrEl2;
use arm_sysregs::types::{ExceptionLevel, StackPointer};
use board::Platform;
pub use boot_device_tree::host_devices;
use boot_device_tree::read_and_patch_device_tree;
use boot_memory::HOST_TABLES;
use core::arch::global_asm;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use el2_setup::cpu_init;
pub use el2_setup::{mdcr_el2_guest, mdcr_el2_host};
use errata::{CpuIdentity, Erratum, Midr, SmeDvmSyncEarlyAck};
use firmware_runtime::println;
use hyp_core::boot::{ProtectedModeDecision, host_memory_layout};
use hyp_core::{Hypervisor, MetadataPools};
use mem_protect::{ErratumMitigation, HypervisorPages, MemProtect};
use platform::HypPlatform;
use spin::Once;
use spin::mutex::SpinMutex;
use stage2::{Geometry, PagePool, TablePage};

/// The board this image is built for: the `board` crate's selection (`cargo xtask --machine`
/// picks it through the crate's features). Adding a board means implementing `board::Platform` in
/// that crate, nothing here.
pub type Board = board::Selected;
// The build script linked the image for the same board (its `memory.ld`).
const _: () = assert!(board::same_name(env!("PKVM_BOARD"), Board::NAME));
// The board's map must be consistent (the hypervisor at the Non-secure entry, Secure memory and the
// SMMU forbidden to the host, ...) before the hypervisor is built for it.
const _: () = assert!(board::check::<Board>().is_ok());
/// Most CPUs of [`Board`]: the length of every per-CPU array.
pub const MAX_CPUS: usize = Board::MAX_CPUS;
/// Start of the hypervisor's memory: its entry point.
const HYPERVISOR_BASE: usize = Board::HYPERVISOR.base;
/// Size of the hypervisor's memory.
const HYPERVISOR_SIZE: usize = Board::HYPERVISOR.size;
/// Where the host is entered at EL1.
const HOST_ENTRY: usize = Board::HOST_ENTRY;
/// Start of DRAM.
const DRAM_BASE: usize = Board::DRAM_BASE;

/// Size of each CPU's EL2 stack (must match `.stacks` in `hyp.ld`).
const STACK_SIZE: usize = 0x1_0000;

// The shared assembler macros first: they must be defined before `entry.S` uses them.
global_asm!(
    firmware_runtime::asm_macros!(),
    include_str!("entry.S"),
    MAX_CPUS = const MAX_CPUS,
    CLUSTER_SHIFT = const Board::CPU_NUMBERING.cluster_shift,
    STACK_SIZE = const STACK_SIZE,
    SCTLR_EL2_RESET = const mmu::SCTLR_EL2_RESET,
);

unsafe extern "C" {
    /// Leaves EL2 for the host at `entry` with x0 = `argument` (`entry.S`).
    fn enter_host(entry: u64, argument: u64, spsr: u64) -> !;
    /// Where CPUs the host starts enter the hypervisor (`entry.S`).
    fn hyp_secondary_entry();
}

/// `SPSR_EL2.M[3:0]` of EL1h: the exception level in bits 3:2, `SP_EL1` (SPSel = 1) in bit 0.
const M_EL1H: u8 = ((ExceptionLevel::El1 as u8) << 2) | StackPointer::ElX as u8;
/// `SPSR_EL2` for entering the host: EL1h with D, A, I, F masked.
const SPSR_EL1H_MASKED: u64 = SpsrEl2::D
    .union(SpsrEl2::A)
    .union(SpsrEl2::I)
    .union(SpsrEl2::F)
    .with_m_3_0(M_EL1H)
    .bits();

/// Per-CPU block the vectors use (layout shared with `entry.S`): word 0 the running guest's context
/// (0 while the host runs), word 1 the hypervisor stack pointer saved by `guest_enter`.
#[repr(C)]
pub struct PerCpu {
    guest_context: AtomicU64,
    hypervisor_stack: AtomicU64,
}

static PER_CPU: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        guest_context: AtomicU64::new(0),
        hypervisor_stack: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// Where each CPU enters the host after the hypervisor set it up (`CPU_ON` / power-down resume).
pub static HOST_ENTRIES: [SpinMutex<Option<(u64, u64)>>; MAX_CPUS] =
    [const { SpinMutex::new(None) }; MAX_CPUS];

/// Builds VM table pools over pages the host donated (the hypervisor identity-maps all DRAM).
pub struct DonatedPools;

impl MetadataPools<PagePool<'static>> for DonatedPools {
    fn pool(&mut self, address: u64, pages: u64) -> PagePool<'static> {
        let count = usize::try_from(pages).unwrap_or(0);
        // SAFETY: `hyp_core` calls this right after the pages were donated to the hypervisor, which
        // now owns them exclusively until `VM_FREE` drops the pool; they are page aligned, inside
        // DRAM (checked by the donation) and identity-mapped read-write at EL2.
        let pages = unsafe { core::slice::from_raw_parts_mut(address as *mut TablePage, count) };
        PagePool::new(pages)
    }
}

type Core = Hypervisor<'static, PagePool<'static>, HypPlatform, DonatedPools>;

static HYPERVISOR: Once<SpinMutex<Core>> = Once::new();
static GEOMETRY: Once<Geometry> = Once::new();
static HOST_VTTBR: AtomicU64 = AtomicU64::new(0);

/// The hypervisor's state (after boot).
pub fn hypervisor() -> &'static SpinMutex<Core> {
    match HYPERVISOR.get() {
        Some(core) => core,
        None => panic!("hypervisor state used before boot"),
    }
}

/// `VTTBR_EL2` of the host's stage-2.
pub fn host_vttbr() -> u64 {
    HOST_VTTBR.load(Ordering::Relaxed)
}

/// The physical address CPUs started for the host enter at.
pub fn secondary_entry_address() -> u64 {
    hyp_secondary_entry as *const () as u64
}

/// Whether the boot CPU found erratum 4193714 (every later CPU is checked against it).
static BOOT_CPU_AFFECTED: AtomicBool = AtomicBool::new(false);

/// This CPU's identity as the errata see it (its MIDR, REVIDR and SME support).
fn this_cpu() -> CpuIdentity {
    CpuIdentity {
        midr: Midr::from_register(read_midr_el1().bits()),
        revidr: sysreg::read_revidr_el1(),
        id_aa64pfr1: read_id_aa64pfr1_el1().bits(),
    }
}

/// Whether this CPU has erratum 4193714.
fn this_cpu_affected() -> bool {
    SmeDvmSyncEarlyAck::applies_to(&this_cpu())
}

/// Decides protected mode (BRIEF §3) with [`hyp_core::boot::decide_protected_mode`]: on a CPU
/// affected by erratum 4193714 the firmware call must answer 0; an unaffected system never makes it.
fn decide_protected_mode() -> (ErratumMitigation, abi::hypercall::ProtectedModeStatus) {
    let decision = hyp_core::boot::decide_protected_mode(&this_cpu(), firmware::dvm_sync);
    BOOT_CPU_AFFECTED.store(
        decision != ProtectedModeDecision::NotAffected,
        Ordering::Relaxed,
    );
    match decision {
        ProtectedModeDecision::NotAffected => println!(
            "hyp: protected mode on; erratum 4193714 does not affect this CPU: no firmware call needed"
        ),
        ProtectedModeDecision::Mitigated => println!(
            "hyp: protected mode on; erratum 4193714 mitigated by the firmware DVMSync call (SMC 0x81000010)"
        ),
        ProtectedModeDecision::FirmwareMissing { answer } => println!(
            "hyp: erratum 4193714: this CPU needs the firmware's DVMSync workaround (SMC 0x81000010) but the firmware answered {answer}: missing firmware support, protected mode refused, host runs unprotected"
        ),
    }
    (decision.mitigation(), decision.status())
}

/// CPU 0, from `hyp_entry`: MMU off, stack and vectors set, `.bss` clear.
#[unsafe(no_mangle)]
extern "C" fn hyp_main(device_tree: u64, cpu: usize) -> ! {
    // SAFETY: UART0 is reachable at its physical address (MMU off now, device-mapped later) and this
    // image's console is its only user here.
    unsafe { firmware_runtime::console::init(Board::UART) };
    println!("hyp: protected hypervisor of pkvm-rs on CPU {cpu}, device tree at {device_tree:#x}");
    // A first map covering the image and the device tree, to read the tree with caches on; then the
    // map of all DRAM the tree describes.
    mmu::build_tables(DRAM_BASE as u64..DRAM_BASE as u64);
    mmu::enable();
    let (dram, smmu_registers) = read_and_patch_device_tree(device_tree);
    mmu::build_tables(dram.clone());
    mmu::enable();
    let (mitigation, status) = decide_protected_mode();
    let geometry = match Geometry::from_id_aa64mmfr0_el1(read_id_aa64mmfr0_el1().bits()) {
        Ok(geometry) => geometry,
        Err(error) => panic!("unsupported physical address size: {error}"),
    };
    GEOMETRY.call_once(|| geometry);
    let Some(devices) = host_devices() else {
        panic!("the device allowlist was not built");
    };
    // Only the allowlisted devices: everything else (devices that write memory, unknown ones,
    // addresses where nothing is) takes an external abort; never the board's forbidden ranges or the
    // hypervisor's memory.
    let layout = host_memory_layout::<Board>(dram.clone(), devices.host_ranges());
    let Some(host_tables) = HOST_TABLES.take() else {
        panic!("the boot memory was already taken");
    };
    // Two bits per DRAM page, from the heap (never freed: the hypervisor tracks DRAM for ever).
    let page_bits = alloc::vec![0; HypervisorPages::bytes_needed(dram.end - dram.start)].leak();
    let memory = match MemProtect::new(
        layout,
        geometry,
        PagePool::new(host_tables),
        page_bits,
        mitigation,
        HypPlatform,
    ) {
        Ok(memory) => memory,
        Err(error) => panic!("cannot set up the host's stage-2: {error:?}"),
    };
    if let Some(registers) = smmu_registers {
        // The host owns all of DRAM but the hypervisor's memory at this point.
        let hypervisor = memory.layout().hypervisor.clone();
        smmu::take_ownership(
            registers,
            &[dram.start..hypervisor.start, hypervisor.end..dram.end],
        );
    }
    HOST_VTTBR.store(memory.host_stage2().vttbr_el2(), Ordering::Relaxed);
    platform::set_vttbr(0, host_vttbr());
    HYPERVISOR.call_once(|| SpinMutex::new(Hypervisor::new(memory, DonatedPools, status)));
    println!(
        "hyp: DRAM {:#x}..{:#x}; host stage-2 identity map filled on demand; PCIe DMA contained by the SMMU: {}; entering the host at {HOST_ENTRY:#x} (EL1)",
        dram.start,
        dram.end,
        if smmu::owns_pcie_dma() { "yes" } else { "no" }
    );
    cpu_init(cpu);
    // SAFETY: the host entry is host memory (QEMU loaded the host image there); EL2 is set up.
    unsafe { enter_host(HOST_ENTRY as u64, device_tree, SPSR_EL1H_MASKED) }
}

/// A CPU the host started (or that resumes from a power-down suspend): MMU off, stack and vectors set.
#[unsafe(no_mangle)]
extern "C" fn hyp_secondary_main(cpu: usize) -> ! {
    mmu::enable();
    cpu_init(cpu);
    let entry = HOST_ENTRIES[cpu].lock().take();
    // The mitigation was decided on the boot CPU: an affected CPU joining a system that decided it
    // needs none could defeat every revocation, so it is not let into the host.
    let unprotected = this_cpu_affected() && !BOOT_CPU_AFFECTED.load(Ordering::Relaxed);
    if unprotected {
        println!(
            "hyp: CPU {cpu} has erratum 4193714 but the boot CPU does not: refusing to start it"
        );
    }
    match entry.filter(|_| !unprotected) {
        // SAFETY: the entry point was checked to be host memory when the host asked for it.
        Some((address, context)) => unsafe { enter_host(address, context, SPSR_EL1H_MASKED) },
        None => {
            println!("hyp: CPU {cpu} arrived without a host entry point; switching it off");
            let mut registers = [0; 18];
            registers[0] = u64::from(abi::psci::PsciFunctionId::CpuOff as u32);
            firmware::smc(registers);
            loop {
                // SAFETY: WFI only waits.
                unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
            }
        }
    }
}

/// A synchronous exception at EL2 itself: always a hypervisor bug.
#[unsafe(no_mangle)]
extern "C" fn hyp_exception_at_el2(syndrome: u64, address: u64, fault_address: u64) -> ! {
    println!(
        "hyp: exception at EL2 on CPU {}: ESR_EL2 {syndrome:#x} ELR_EL2 {address:#x} FAR_EL2 {fault_address:#x}",
        firmware_runtime::cpu::current_index::<Board>()
    );
    firmware_runtime::semihosting::exit(102)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!(
        "hyp: PANIC on CPU {}: {info}",
        firmware_runtime::cpu::current_index::<Board>()
    );
    firmware_runtime::semihosting::exit(101)
}
