//! The secondary CPUs: started with PSCI `CPU_ON` (through the hypervisor), then busy with store loops
//! into their own host buffers until the boot CPU stops them: SME Streaming-mode stores (`STR ZA` and
//! `ST1B` of a streaming SVE vector) when the CPU has SME, plain stores otherwise. Stopped, each
//! switches itself off (`CPU_OFF`) and the boot CPU switches it on again: the CPU comes back through
//! the hypervisor's per-CPU set-up a second time (with whatever EL2 state the monitor left).

use crate::calls::{AFFINITY_INFO, CPU_OFF, CPU_ON, smc};
use arm_sysregs::el0::accessors::{read_cntfrq_el0, read_cntpct_el0};
use arm_sysregs::el1::accessors::{read_id_aa64pfr1_el1, write_cpacr_el1};
use arm_sysregs::el1::registers::CpacrEl1;
use core::sync::atomic::{AtomicU64, Ordering};
use firmware_runtime::memory_map::MAX_CPUS;
use firmware_runtime::println;
use firmware_runtime::sysreg::{SmcrLen, isb, write_smcr_el1};

unsafe extern "C" {
    fn host_secondary_entry();
    fn sme_store_loop(buffer: u64, stop: *const AtomicU64, rounds: *mut u64);
    fn plain_store_loop(buffer: u64, stop: *const AtomicU64, rounds: *mut u64);
}

/// Where each secondary CPU stores (host memory, 64 KiB each).
const BUFFERS: u64 = firmware_runtime::hypervisor_map::HOST_BUFFERS;
/// Set by the boot CPU to end the loops.
static STOP: AtomicU64 = AtomicU64::new(0);
/// CPUs that entered their loop.
static STARTED: AtomicU64 = AtomicU64::new(0);
/// CPUs that left their loop.
static FINISHED: AtomicU64 = AtomicU64::new(0);
/// CPUs that came back after `CPU_OFF` and a second `CPU_ON`.
static REVIVED: AtomicU64 = AtomicU64::new(0);
/// Context id bit of a CPU's second start.
const SECOND_START: u64 = 1 << 32;
/// Context id bit of a CPU started to idle in `WFI` (the benchmark).
const IDLE_START: u64 = 1 << 33;
/// CPUs idling in `WFI`.
static IDLE: AtomicU64 = AtomicU64::new(0);
/// `AFFINITY_INFO`'s answer for a CPU that is off.
const AFFINITY_OFF: u64 = 1;
/// Rounds each CPU did (written by its loop when it ends).
static ROUNDS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Whether this CPU implements SME (ID_AA64PFR1_EL1.SME).
pub fn has_sme() -> bool {
    read_id_aa64pfr1_el1().sme() != 0
}

/// `CPACR_EL1.FPEN`/`ZEN`/`SMEN`: no trapping of the instructions the field controls.
const NO_TRAP: u8 = 0b11;
/// `CPACR_EL1`: FP/SIMD, SVE and SME at EL1 and EL0 without trapping.
const CPACR_VECTORS: CpacrEl1 = CpacrEl1::empty()
    .with_fpen(NO_TRAP)
    .with_zen(NO_TRAP)
    .with_smen(NO_TRAP);
const _: () = assert!(CPACR_VECTORS.bits() == (0b11 << 20) | (0b11 << 16) | (0b11 << 24));

/// Lets EL1 use FP/SIMD, SVE and SME (CPACR_EL1.FPEN, ZEN, SMEN) with the largest streaming vector
/// length (SMCR_EL1.LEN).
pub fn enable_sme() {
    // SAFETY: this write only allows this EL1 to use the vector registers.
    unsafe { write_cpacr_el1(CPACR_VECTORS) };
    isb();
    if has_sme() {
        write_smcr_el1(SmcrLen::MAX);
        isb();
    }
}

/// Waits (boundedly, two seconds of the system counter) until `done` says so.
fn wait_until(done: impl Fn() -> bool) {
    let frequency = u64::from(read_cntfrq_el0().clockfreq());
    let deadline = read_cntpct_el0()
        .bits()
        .saturating_add(frequency.saturating_mul(2));
    while !done() && read_cntpct_el0().bits() < deadline {
        // YIELD, not `spin_loop()` (an ISB on aarch64): under `-icount` QEMU runs the vCPUs in turns
        // and only a YIELD/WFE/WFI ends this CPU's turn, so the CPUs being waited for get to run.
        // SAFETY: YIELD is a hint with no architectural effect.
        unsafe { core::arch::asm!("yield", options(nomem, nostack)) };
    }
}

fn wait() {
    // SAFETY: WFE only waits (bounded by the event stream or an SEV).
    unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
}

/// Powers on every other CPU of the device tree at the secondaries' entry, with `flags` added to
/// each CPU's context id; returns how many `CPU_ON` calls succeeded.
fn power_on_secondaries(device_tree: u64, flags: u64) -> u64 {
    // SAFETY: the device tree is host memory at the start of DRAM (the hypervisor patched it before
    // entering the host); its header says how long it is.
    let tree = unsafe { core::slice::from_raw_parts(device_tree as *const u8, 0x10_0000) };
    let cpus = device_tree::DeviceTree::new(tree)
        .and_then(|tree| tree.cpu_count())
        .unwrap_or(1)
        .min(MAX_CPUS);
    let entry = host_secondary_entry as *const () as u64;
    let mut started = 0;
    for cpu in 1..cpus {
        let mpidr = firmware_runtime::cpu::mpidr_from_index(cpu);
        let result = smc(CPU_ON, [mpidr, entry, cpu as u64 | flags])[0];
        if result == 0 {
            started += 1;
        } else {
            println!("host: CPU_ON of CPU {cpu} answered {}", result as i64);
        }
    }
    started
}

/// Starts every other CPU of the device tree; returns the number of CPUs running.
pub fn start_all(device_tree: u64) -> usize {
    enable_sme();
    let started = power_on_secondaries(device_tree, 0);
    // Bounded wait: a CPU that never arrives is reported, not waited for forever.
    wait_until(|| STARTED.load(Ordering::Acquire) >= started);
    let arrived = STARTED.load(Ordering::Acquire);
    println!(
        "host: {arrived} of {started} secondary CPUs run {} store loops",
        if has_sme() {
            "SME Streaming-mode (STR ZA, ST1B)"
        } else {
            "plain (no SME on this CPU)"
        }
    );
    1 + arrived as usize
}

/// Starts every other CPU of the device tree to idle in `WFI` (the benchmark: they only wake for the
/// rendezvous, which the monitor handles at EL3); returns the number of CPUs online.
pub fn start_idle(device_tree: u64) -> usize {
    let started = power_on_secondaries(device_tree, IDLE_START);
    wait_until(|| IDLE.load(Ordering::Acquire) >= started);
    1 + IDLE.load(Ordering::Acquire) as usize
}

/// A secondary CPU's life: store loop until stopped, then `CPU_OFF`; after the second start, wait.
pub fn run(context: u64) -> ! {
    if context & IDLE_START != 0 {
        IDLE.fetch_add(1, Ordering::Release);
        loop {
            // SAFETY: WFI only waits; the rendezvous FIQ goes to EL3 and returns here.
            unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
        }
    }
    if context & SECOND_START != 0 {
        REVIVED.fetch_add(1, Ordering::Release);
        loop {
            wait();
        }
    }
    let cpu = context & 0xFF;
    crate::mmu::enable();
    enable_sme();
    let index = usize::try_from(cpu).unwrap_or(0).min(MAX_CPUS - 1);
    let buffer = BUFFERS + cpu * 0x1_0000;
    STARTED.fetch_add(1, Ordering::Release);
    // SAFETY: the loop writes only its 64 KiB buffer (this CPU's own host memory) and, once, at its
    // end, the counter `ROUNDS[index]` (an aligned u64 only this CPU writes).
    unsafe {
        let rounds = ROUNDS[index].as_ptr();
        if has_sme() {
            sme_store_loop(buffer, &STOP, rounds);
        } else {
            plain_store_loop(buffer, &STOP, rounds);
        }
    }
    FINISHED.fetch_add(1, Ordering::Release);
    let refused = smc(CPU_OFF, [0; 3])[0] as i64;
    println!("host: FAIL: CPU_OFF on CPU {cpu} answered {refused}");
    loop {
        wait();
    }
}

/// Stops the loops; returns the store rounds of all secondaries together.
pub fn stop_all() -> u64 {
    STOP.store(1, Ordering::Release);
    let target = STARTED.load(Ordering::Acquire);
    wait_until(|| FINISHED.load(Ordering::Acquire) >= target);
    ROUNDS
        .iter()
        .map(|rounds| rounds.load(Ordering::Acquire))
        .sum()
}

/// Waits until every started secondary is off, starts each again, and returns how many came back.
pub fn restart_all(cpus: usize) -> u64 {
    let mut restarted = 0;
    for cpu in 1..cpus {
        let mpidr = firmware_runtime::cpu::mpidr_from_index(cpu);
        wait_until(|| smc(AFFINITY_INFO, [mpidr, 0, 0])[0] == AFFINITY_OFF);
        let entry = host_secondary_entry as *const () as u64;
        let result = smc(CPU_ON, [mpidr, entry, cpu as u64 | SECOND_START])[0];
        if result == 0 {
            restarted += 1;
        } else {
            println!(
                "host: second CPU_ON of CPU {cpu} answered {}",
                result as i64
            );
        }
    }
    wait_until(|| REVIVED.load(Ordering::Acquire) >= restarted);
    REVIVED.load(Ordering::Acquire)
}
