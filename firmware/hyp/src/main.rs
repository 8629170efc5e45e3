//! The protected hypervisor of pkvm-rs (EL2, nVHE), entered by the EL3 monitor at
//! [`HYPERVISOR_BASE`] with x0 = the device tree.
//!
//! Boot flow (CPU 0, [`hyp_main`]): console → EL2 identity map of the image, MMU and caches on
//! ([`mmu`]) → read DRAM and the devices from the device tree, remove the devices the host may not
//! reach ([`hyp_core::devices`]) and reserve the hypervisor's memory there (no-map) → EL2 identity
//! map of all DRAM → erratum 4193714
//! check ([`decide_protected_mode`]): on an affected CPU the firmware call must answer 0, otherwise
//! protected mode is refused and the host runs unprotected → the ownership state (`mem_protect`,
//! host stage-2 from a static pool, filled on demand) inside [`hyp_core::Hypervisor`] → per-CPU EL2
//! set-up ([`cpu_init`]) → the host at EL1 at [`HOST_ENTRY`].
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
//! them is trapped instead, see [`world_switch`]); the erratum decision is made on the boot CPU, and a later CPU that is
//! affected when the boot CPU was not is refused (not started) rather than mitigated.
#![no_std]
#![no_main]

extern crate alloc;

mod firmware;
mod heap;
mod mmu;
mod platform;
mod smmu;
mod sysreg;
mod traps;
mod world_switch;

use board::Platform;
use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use errata::{CpuIdentity, Erratum, Midr, SmeDvmSyncEarlyAck};
use hyp_core::boot::{ProtectedModeDecision, host_memory_layout};
use hyp_core::devices::HostDeviceMap;
use hyp_core::{Hypervisor, MetadataPools};
use mem_protect::{ErratumMitigation, HypervisorPages, MemProtect};
use platform::HypPlatform;
use platform_qemu::println;
use spin::Once;
use spin::mutex::SpinMutex;
use stage2::{Geometry, PagePool, TablePage};
use sysreg::{isb, read_sysreg, write_sysreg};

/// The board this hypervisor is built for: adding a board means implementing `board::Platform` for
/// it and naming it here.
pub type Board = board::QemuVirt;
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
    platform_qemu::asm_macros!(),
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

/// `HCR_EL2` while the host runs: stage-2 on (VM), set/way invalidation upgraded (SWIO), SMCs trapped
/// (TSC), EL1 is AArch64 (RW), pointer authentication not trapped (APK, API). Interrupts stay the
/// host's own.
pub const HCR_HOST: u64 = 1 | (1 << 1) | (1 << 19) | (1 << 31) | (1 << 40) | (1 << 41);
/// `HCR_EL2` while a guest runs: as for the host, plus physical interrupts to EL2 (FMO, IMO, AMO) and
/// TLB maintenance broadcast inner shareable (FB, BSU).
pub const HCR_GUEST: u64 = HCR_HOST | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 9) | (1 << 10);
/// `MDCR_EL2` while the host runs: every PMU counter is the host's (`HPMN` = `PMCR_EL0.N`), and
/// (outside the benchmark build) none counts at EL2 (`HPMD`), so the host learns nothing from the
/// hypervisor's own execution. Debug and PMU accesses are not trapped: the host owns them.
pub fn mdcr_el2_host() -> u64 {
    const HPMD: u64 = 1 << 17;
    let counters = (read_sysreg!("pmcr_el0") >> 11) & 0x1F;
    counters | if cfg!(feature = "benchmark") { 0 } else { HPMD }
}

/// `MDCR_EL2` while a guest runs: as for the host, plus traps of every PMU (`TPM`, `TPMCR`), debug
/// (`TDA`, `TDOSA`, `TDRA`), statistical-profiling (`TPMS`) and trace (`TTRF`) register, so the guest
/// neither reads nor changes the host's.
pub fn mdcr_el2_guest() -> u64 {
    const TPMCR: u64 = 1 << 5;
    const TPM: u64 = 1 << 6;
    const TDA: u64 = 1 << 9;
    const TDOSA: u64 = 1 << 10;
    const TDRA: u64 = 1 << 11;
    const TPMS: u64 = 1 << 14;
    const TTRF: u64 = 1 << 19;
    mdcr_el2_host() | TPMCR | TPM | TDA | TDOSA | TDRA | TPMS | TTRF
}

/// `SPSR_EL2` for entering the host: EL1h with D, A, I, F masked.
const SPSR_EL1H_MASKED: u64 = 0b0101 | (0b1111 << 6);

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

/// Memory handed out once, at boot, to whoever takes it first (CPU 0 building the ownership state).
struct BootMemory<T> {
    taken: AtomicBool,
    cell: UnsafeCell<T>,
}

// SAFETY: the contents are reachable only through `take`, which hands out the one mutable reference
// at most once.
unsafe impl<T: Send> Sync for BootMemory<T> {}

impl<T> BootMemory<T> {
    const fn new(value: T) -> Self {
        Self {
            taken: AtomicBool::new(false),
            cell: UnsafeCell::new(value),
        }
    }

    /// The contents, the first time only.
    #[allow(clippy::mut_from_ref, reason = "handed out once, guarded by `taken`")]
    fn take(&'static self) -> Option<&'static mut T> {
        if self.taken.swap(true, Ordering::AcqRel) {
            return None;
        }
        // SAFETY: `taken` was false, so no other reference to the contents was ever handed out, and
        // none will be: this is the only one, for the rest of the program.
        Some(unsafe { &mut *self.cell.get() })
    }
}

/// Table pages for the host's stage-2 (4 MiB).
const HOST_TABLE_PAGES: usize = 1024;
static HOST_TABLES: BootMemory<[TablePage; HOST_TABLE_PAGES]> =
    BootMemory::new([const { TablePage::ZEROED }; HOST_TABLE_PAGES]);

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

/// The devices the host may reach (read from the device tree at boot).
static HOST_DEVICES: Once<HostDeviceMap> = Once::new();

/// The host's device allowlist (empty before boot).
pub fn host_devices() -> Option<&'static HostDeviceMap> {
    HOST_DEVICES.get()
}

/// Most DRAM the hypervisor tracks (page-state bits come from its heap: 4 MiB for 64 GiB). DRAM
/// beyond it is left out of the host's memory, with a message.
const MAX_DRAM: u64 = 64 << 30;

/// Reads DRAM and the devices from the device tree, and hands the host a tree without the devices
/// it withholds (the SMMUv3 among them: it returns its registers) and with the hypervisor's memory
/// reserved (no-map).
fn read_and_patch_device_tree(address: u64) -> (Range<u64>, Option<device_tree::MemoryRange>) {
    let fallback = DRAM_BASE as u64..DRAM_BASE as u64 + (1 << 30);
    // The tree may grow into the free space below the parameter block.
    let room = Board::TEST_PARAMETERS_ADDRESS - DRAM_BASE;
    // SAFETY: QEMU put the device tree at the start of DRAM; the range up to the parameter block is
    // host memory nobody else uses during boot, and the host only starts after this.
    let buffer = unsafe { core::slice::from_raw_parts_mut(address as *mut u8, room) };
    let mut editor = match device_tree::DeviceTreeEditor::new(buffer) {
        Ok(editor) => editor,
        Err(error) => panic!("cannot read the device tree ({error}): no device could be checked"),
    };
    let mut dram = match editor.tree().memory() {
        Ok(memory) => memory.base..memory.base + memory.size,
        Err(error) => {
            println!("hyp: no memory node in the device tree ({error}); assuming 1 GiB");
            fallback
        }
    };
    if dram.end - dram.start > MAX_DRAM {
        println!(
            "hyp: DRAM {:#x}..{:#x} is larger than the {} GiB the hypervisor tracks: the rest is not the host's",
            dram.start,
            dram.end,
            MAX_DRAM >> 30
        );
        dram.end = dram.start + MAX_DRAM;
    }
    // The SMMUv3 first: when the hypervisor takes it, the PCIe root complex's DMA is translated and
    // the root complex may be the host's.
    let smmu = match editor.hide_smmu_v3() {
        Ok(smmu) => smmu,
        Err(error) => panic!("cannot hide the SMMUv3 from the host's device tree: {error}"),
    };
    let devices = match HostDeviceMap::from_tree(&editor.tree(), smmu.is_some()) {
        Ok(devices) => devices,
        Err(error) => panic!("cannot build the host's device allowlist: {error}"),
    };
    let mut withheld = [0; hyp_core::devices::MAX_WITHHELD_NODES];
    for (slot, (offset, _)) in withheld.iter_mut().zip(devices.withheld()) {
        *slot = *offset;
    }
    let count = devices.withheld().len();
    match editor.remove_nodes(&mut withheld[..count]) {
        Ok(removed) => println!(
            "hyp: host devices: {} ranges allowed; {removed} devices withheld (DMA masters, unknown) and removed from its device tree",
            devices.host_ranges().len()
        ),
        Err(error) => panic!("cannot remove the withheld devices from the device tree: {error}"),
    }
    HOST_DEVICES.call_once(|| devices);
    let region = device_tree::ReservedRegion {
        name: "pkvm-hypervisor",
        base: HYPERVISOR_BASE as u64,
        size: HYPERVISOR_SIZE as u64,
    };
    match editor.add_reserved_memory(&[region]) {
        Ok(()) => println!(
            "hyp: reserved {:#x}..{:#x} (no-map) in the device tree",
            HYPERVISOR_BASE,
            HYPERVISOR_BASE + HYPERVISOR_SIZE
        ),
        Err(error) => {
            println!("hyp: cannot reserve the hypervisor's memory in the device tree: {error}")
        }
    }
    (dram, smmu)
}

/// Whether the boot CPU found erratum 4193714 (every later CPU is checked against it).
static BOOT_CPU_AFFECTED: AtomicBool = AtomicBool::new(false);

/// This CPU's identity as the errata see it (its MIDR, REVIDR and SME support).
fn this_cpu() -> CpuIdentity {
    CpuIdentity {
        midr: Midr::from_register(read_sysreg!("midr_el1")),
        revidr: read_sysreg!("revidr_el1"),
        id_aa64pfr1: read_sysreg!("id_aa64pfr1_el1"),
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
    unsafe { platform_qemu::console::init(Board::UART) };
    println!("hyp: protected hypervisor of pkvm-rs on CPU {cpu}, device tree at {device_tree:#x}");
    // A first map covering the image and the device tree, to read the tree with caches on; then the
    // map of all DRAM the tree describes.
    mmu::build_tables(DRAM_BASE as u64..DRAM_BASE as u64);
    mmu::enable();
    let (dram, smmu_registers) = read_and_patch_device_tree(device_tree);
    mmu::build_tables(dram.clone());
    mmu::enable();
    let (mitigation, status) = decide_protected_mode();
    let geometry = match Geometry::from_id_aa64mmfr0_el1(read_sysreg!("id_aa64mmfr0_el1")) {
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
            registers[0] = 0x8400_0002;
            firmware::smc(registers);
            loop {
                // SAFETY: WFI only waits.
                unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
            }
        }
    }
}

/// Extracts a 4-bit ID register field.
fn id_field(value: u64, shift: u32) -> u64 {
    (value >> shift) & 0xF
}

/// This CPU's EL2 controls for running the host: vectors' per-CPU block, HCR_EL2, the host's stage-2,
/// no FP/SVE/SME traps (full vector lengths), EL1 access to the physical timer and to the GIC's system
/// registers, and a clean EL1 for the host to start from.
fn cpu_init(cpu: usize) {
    let geometry = match GEOMETRY.get() {
        Some(geometry) => *geometry,
        None => panic!("CPU {cpu} set up before the boot CPU"),
    };
    let has_sve = id_field(read_sysreg!("id_aa64pfr0_el1"), 32) != 0;
    let has_sme = id_field(read_sysreg!("id_aa64pfr1_el1"), 24) != 0;
    write_sysreg!("tpidr_el2", &PER_CPU[cpu] as *const PerCpu as u64);
    write_sysreg!("hcr_el2", HCR_HOST);
    write_sysreg!("vtcr_el2", geometry.vtcr_el2());
    write_sysreg!("vttbr_el2", host_vttbr());
    // CPTR_EL2 (E2H = 0): RES1 bits 13, 9 and 7:0; TZ (8), TFP (10), TSM (12) clear. Bit 12 is RES1
    // when SME is not implemented.
    write_sysreg!("cptr_el2", if has_sme { 0x22FF } else { 0x32FF });
    isb();
    if has_sve {
        // ZCR_EL2.LEN = 15: the host and guests may use the largest vector length.
        write_sysreg!("S3_4_C1_C2_0", 15);
    }
    if has_sme {
        // SMCR_EL2: FA64 and LEN = 15.
        write_sysreg!("S3_4_C1_C2_6", (1 << 31) | 15);
    }
    write_sysreg!(
        "cnthctl_el2",
        world_switch::CNTHCTL_EL1PCTEN | world_switch::CNTHCTL_EL1PCEN
    );
    write_sysreg!("cntvoff_el2", 0);
    write_sysreg!("mdcr_el2", mdcr_el2_host());
    write_sysreg!("vpidr_el2", read_sysreg!("midr_el1"));
    write_sysreg!("vmpidr_el2", read_sysreg!("mpidr_el1"));
    write_sysreg!("hstr_el2", 0);
    // ICC_SRE_EL2: system-register interface, and EL1 may use it (Enable).
    write_sysreg!("S3_4_C12_C9_5", 0xF);
    write_sysreg!("sctlr_el1", hyp_core::vcpu::SCTLR_EL1_RESET);
    isb();
    // SAFETY: invalidating this CPU's stage-1 and stage-2 TLB entries of EL1 only drops translations.
    unsafe { core::arch::asm!("tlbi alle1", "dsb nsh", "isb", options(nostack)) };
}

/// A synchronous exception at EL2 itself: always a hypervisor bug.
#[unsafe(no_mangle)]
extern "C" fn hyp_exception_at_el2(syndrome: u64, address: u64, fault_address: u64) -> ! {
    println!(
        "hyp: exception at EL2 on CPU {}: ESR_EL2 {syndrome:#x} ELR_EL2 {address:#x} FAR_EL2 {fault_address:#x}",
        platform_qemu::cpu::current_index::<Board>()
    );
    platform_qemu::semihosting::exit(102)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    println!(
        "hyp: PANIC on CPU {}: {info}",
        platform_qemu::cpu::current_index::<Board>()
    );
    platform_qemu::semihosting::exit(101)
}
