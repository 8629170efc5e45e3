//! The donation benchmark (`cargo xtask bench`, run under `-icount shift=0,sleep=off`): the host
//! donates guest memory to a protected VM in calls of a given number of pages, then tears the VM
//! down and reclaims every page, and prints the retired instructions of each phase (PMU event
//! `INST_RETIRED`, which under `-icount` counts every vCPU at every exception level together: the
//! host, the hypervisor, the monitor and the other CPUs answering the rendezvous).
//!
//! The other CPUs are online and idle in `WFI` ([`secondaries::start_idle`]), so each erratum call
//! interrupts them all, and they add nothing else to the count.
//!
//! Page mode shifts the donated range by one page from a 2 MiB boundary (host and guest addresses
//! alike), so that no stage-2 can use a block; block mode keeps both aligned, so 512-page calls map
//! 2 MiB blocks.

use crate::calls::hypercall;
use crate::demo::{GUEST_MEMORY, METADATA, PAGE_SIZE, metadata_pages, status};
use crate::{Parameters, secondaries};
use abi::hypercall::{Gfn, HostHypercall, HypercallFailure, HypercallOutput, Pfn};
use arm_sysregs::aarch32::registers::Pmcntenset;
use arm_sysregs::el0::accessors::{read_pmcr_el0, write_pmcr_el0};
use arm_sysregs::el0::registers::PmcrEl0;
use firmware_runtime::hypervisor_map::GUEST_ENTRY_IPA;
use firmware_runtime::println;
use firmware_runtime::sysreg::{Pmevtyper, isb, write_pmcntenset_el0, write_pmevtyper0_el0};

/// Pages reclaimed per `RECLAIM_GUEST_PAGES` call (the same in every run, so reclaim figures compare).
const RECLAIM_BATCH: u64 = 512;

/// Starts PMU counter 0 counting `INST_RETIRED` at EL1, EL2 and EL3 (not EL0).
fn start_instruction_counter() {
    // U excludes EL0, NSH includes Non-secure EL2; P = M = 0 includes EL1 and EL3. The hypervisor
    // does not trap the host's PMU accesses (MDCR_EL2.TPM clear).
    write_pmevtyper0_el0(Pmevtyper::new(
        Pmevtyper::INST_RETIRED,
        Pmevtyper::U | Pmevtyper::NSH,
    ));
    write_pmcntenset_el0(Pmcntenset::P0);
    write_pmcr_el0(read_pmcr_el0() | PmcrEl0::E);
    isb();
}

/// PMU counter 0.
fn instructions() -> u64 {
    let value: u64;
    // Hand-written on purpose: the read that brackets the measured calls is exactly this
    // synchronization and read, with nothing the compiler could add or move between them.
    // SAFETY: reading a PMU counter has no side effects.
    unsafe {
        core::arch::asm!("isb", "mrs {}, pmevcntr0_el0", out(reg) value, options(nostack));
    }
    value
}

/// What one run measured.
struct Figures {
    calls: u64,
    donate: u64,
    reclaim: u64,
}

fn measure(parameters: &Parameters) -> Result<Figures, HypercallFailure> {
    let pages = parameters.guest_pages;
    let batch = parameters.pages_per_call.clamp(1, pages);
    let offset = if parameters.block_aligned { 0 } else { 1 };
    let host_start = GUEST_MEMORY / PAGE_SIZE + offset;
    let guest_start = GUEST_ENTRY_IPA / PAGE_SIZE + offset;
    // The host has used its memory before giving it away: its stage-2 maps it (in blocks, as the
    // hypervisor maps on demand), as it would in a running system.
    for page in 0..pages {
        let address = (host_start + page) * PAGE_SIZE;
        // SAFETY: host memory this program reserved for the benchmark and does not otherwise use.
        unsafe { core::ptr::read_volatile(address as *const u64) };
    }
    let vm = match hypercall(HostHypercall::VmCreate {
        vcpus: 1,
        metadata_pfn: Pfn(METADATA / PAGE_SIZE),
        // One more leaf table per stage-2 side when the range straddles an extra 2 MiB.
        metadata_pages: metadata_pages(pages) + 1,
    })? {
        HypercallOutput::Vm(handle) => handle,
        _ => return Err(HypercallFailure::UnknownStatus(0)),
    };
    start_instruction_counter();
    let before = instructions();
    let mut calls = 0;
    let mut done = 0;
    while done < pages {
        let count = batch.min(pages - done);
        hypercall(HostHypercall::DonateGuest {
            vm,
            pfn: Pfn(host_start + done),
            gfn: Gfn(guest_start + done),
            pages: count,
        })?;
        calls += 1;
        done += count;
    }
    let donated = instructions();
    hypercall(HostHypercall::VmTeardown { vm })?;
    let mut done = 0;
    while done < pages {
        let count = RECLAIM_BATCH.min(pages - done);
        hypercall(HostHypercall::ReclaimGuestPages {
            vm,
            gfn: Gfn(guest_start + done),
            pages: count,
        })?;
        done += count;
    }
    let reclaimed = instructions();
    hypercall(HostHypercall::VmFree { vm })?;
    Ok(Figures {
        calls,
        donate: donated.wrapping_sub(before),
        reclaim: reclaimed.wrapping_sub(donated),
    })
}

/// Runs the benchmark on the boot CPU and prints one `host: bench:` line; returns whether it worked.
pub fn run(parameters: Parameters, device_tree: u64) -> bool {
    let cpus = secondaries::start_idle(device_tree);
    let protected = status().is_some_and(|status| status.is_enabled());
    if !protected {
        println!("host: FAIL: protected mode is off, nothing to measure");
        return false;
    }
    match measure(&parameters) {
        Ok(figures) => {
            let pages = parameters.guest_pages;
            println!(
                "host: bench: cpus={cpus} pages={pages} pages_per_call={} granule={} calls={} \
                 donate_total={} donate_per_page={} reclaim_total={} reclaim_per_page={}",
                parameters.pages_per_call.clamp(1, pages),
                if parameters.block_aligned {
                    "block-aligned"
                } else {
                    "page"
                },
                figures.calls,
                figures.donate,
                figures.donate / pages,
                figures.reclaim,
                figures.reclaim / pages,
            );
            true
        }
        Err(error) => {
            println!("host: FAIL: benchmark: {error:?}");
            false
        }
    }
}
