//! The demo: a protected VM from creation to reclaim, with the checks the summary reports.

use crate::calls::{RENDEZVOUS_STATISTICS, hypercall, smc};
use crate::{ABORTS, Parameters, secondaries};
use abi::hypercall::{
    Gfn, HostHypercall, HypercallError, HypercallFailure, HypercallOutput, Pfn,
    ProtectedModeStatus, VcpuExit, VmHandle,
};
use core::sync::atomic::Ordering;
use firmware_runtime::hypervisor_map::{
    DONATION_BASE, GUEST_ENTRY_IPA, GUEST_IMAGE_LOAD_ADDRESS, GUEST_IMAGE_MAX_SIZE,
};
use firmware_runtime::println;

unsafe extern "C" {
    fn sme_touch(address: u64);
}

/// Size of a page.
pub use abi::PAGE_SIZE;
/// Pages the host donates for a VM's stage-2 tables: the levels above the leaves, plus one leaf table
/// per 2 MiB in case the memory ends up mapped page by page.
pub const fn metadata_pages(guest_pages: u64) -> u64 {
    8 + guest_pages.div_ceil(512)
}
/// Where the metadata pages are.
pub const METADATA: u64 = DONATION_BASE as u64;
/// Where the guest's memory starts in host memory (2 MiB aligned, so the guest can map blocks).
pub const GUEST_MEMORY: u64 = DONATION_BASE as u64 + 0x20_0000;
/// Pages per `DONATE_GUEST` hypercall: 2 MiB, so the guest's stage-2 can use blocks.
pub const BATCH_PAGES: u64 = 512;
/// The guest's report: "guest ok".
pub const REPORT_MAGIC: u64 = u64::from_le_bytes(*b"guest ok");

/// A VM the host created.
#[derive(Clone, Copy, Debug)]
pub struct Vm {
    /// Its handle.
    pub handle: VmHandle,
    /// Guest memory in pages (host physical from [`GUEST_MEMORY`], guest from [`GUEST_ENTRY_IPA`]).
    pub pages: u64,
    /// `DONATE_GUEST` hypercalls it took.
    pub donations: u64,
}

/// Asks the hypervisor whether protected mode is on.
pub fn status() -> Option<ProtectedModeStatus> {
    match hypercall(HostHypercall::QueryStatus) {
        Ok(HypercallOutput::Status(status)) => Some(status),
        _ => None,
    }
}

/// Copies the guest image (QEMU loaded it into host memory) to the start of the guest's memory.
fn load_guest_image(pages: u64, image_size: u64) {
    let limit = (pages * PAGE_SIZE).min(GUEST_IMAGE_MAX_SIZE as u64);
    let size = if image_size == 0 {
        limit
    } else {
        image_size.min(limit)
    };
    let source = GUEST_IMAGE_LOAD_ADDRESS as *const u64;
    let destination = GUEST_MEMORY as *mut u64;
    for index in 0..usize::try_from(size.div_ceil(8)).unwrap_or(0) {
        // SAFETY: both ranges are host memory this program owns: the loader's copy of the image and
        // the guest memory not yet donated; they do not overlap.
        unsafe {
            destination
                .add(index)
                .write_volatile(source.add(index).read_volatile())
        };
    }
    // The guest starts with its MMU off: it reads memory, not this CPU's cache.
    crate::mmu::clean(GUEST_MEMORY..GUEST_MEMORY + size);
}

/// Creates a VM with `pages` pages of guest memory, the guest image loaded and vCPU 0 initialised.
/// With `probe`, the guest first reads the page just past its memory (and exits to the host there).
pub fn create(pages: u64, image_size: u64, probe: bool) -> Result<Vm, HypercallFailure> {
    load_guest_image(pages, image_size);
    let handle = match hypercall(HostHypercall::VmCreate {
        vcpus: 1,
        metadata_pfn: Pfn(METADATA / PAGE_SIZE),
        metadata_pages: metadata_pages(pages),
    })? {
        HypercallOutput::Vm(handle) => handle,
        _ => return Err(HypercallFailure::UnknownStatus(0)),
    };
    let mut donations = 0;
    let mut done = 0;
    while done < pages {
        let batch = BATCH_PAGES.min(pages - done);
        hypercall(HostHypercall::DonateGuest {
            vm: handle,
            pfn: Pfn(GUEST_MEMORY / PAGE_SIZE + done),
            gfn: Gfn(GUEST_ENTRY_IPA / PAGE_SIZE + done),
            pages: batch,
        })?;
        donations += 1;
        done += batch;
    }
    hypercall(HostHypercall::VcpuInit {
        vm: handle,
        vcpu: 0,
        entry_ipa: GUEST_ENTRY_IPA,
        argument: pages | (u64::from(probe) << 63),
    })?;
    Ok(Vm {
        handle,
        pages,
        donations,
    })
}

/// Runs vCPU 0 once; returns its exit.
pub fn run_once(vm: &Vm) -> Result<VcpuExit, HypercallFailure> {
    match hypercall(HostHypercall::VcpuRun {
        vm: vm.handle,
        vcpu: 0,
    })? {
        HypercallOutput::Exit(exit) => Ok(exit),
        _ => Err(HypercallFailure::UnknownStatus(0)),
    }
}

/// What the guest reported in its shared page.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestReport {
    /// The checksum of its secret pattern.
    pub checksum: u64,
    /// Pages the pattern covers.
    pub data_pages: u64,
}

/// Reads the report from the page the guest shares at `ipa`.
pub fn read_report(vm: &Vm, ipa: u64) -> Option<GuestReport> {
    let offset = ipa.checked_sub(GUEST_ENTRY_IPA)?;
    if offset >= vm.pages * PAGE_SIZE {
        return None;
    }
    let page = (GUEST_MEMORY + offset) as *const u64;
    // SAFETY: the guest shares this page with the host right now (MEM_SHARE exit), so the host's
    // stage-2 maps it; the host only reads it.
    let words = unsafe {
        [
            page.read_volatile(),
            page.add(1).read_volatile(),
            page.add(2).read_volatile(),
        ]
    };
    (words[0] == REPORT_MAGIC).then_some(GuestReport {
        checksum: words[1],
        data_pages: words[2],
    })
}

/// Reads and writes `address` with plain accesses, and (with SME) stores to it in Streaming mode.
pub fn touch(address: u64, sme: bool) {
    // SAFETY: an access to memory the host gave away makes the hypervisor inject an abort, which the
    // host's handler counts and steps over; to memory the host owns, these are ordinary accesses to
    // a page this program reserved for them.
    unsafe {
        core::arch::asm!("ldr {value}, [{address}]", "str {value}, [{address}]", address = in(reg) address, value = out(reg) _, options(nostack));
        if sme {
            sme_touch(address);
        }
    }
}

/// Tears the VM down, reclaims its pages in batches and frees it.
pub fn destroy(vm: &Vm) -> Result<(), HypercallFailure> {
    hypercall(HostHypercall::VmTeardown { vm: vm.handle })?;
    let mut done = 0;
    while done < vm.pages {
        let batch = BATCH_PAGES.min(vm.pages - done);
        hypercall(HostHypercall::ReclaimGuestPages {
            vm: vm.handle,
            gfn: Gfn(GUEST_ENTRY_IPA / PAGE_SIZE + done),
            pages: batch,
        })?;
        done += batch;
    }
    hypercall(HostHypercall::VmFree { vm: vm.handle })?;
    Ok(())
}

/// Pages of guest memory whose every word reads zero.
pub fn zeroed_pages(vm: &Vm) -> u64 {
    (0..vm.pages)
        .filter(|page| {
            let base = (GUEST_MEMORY + page * PAGE_SIZE) as *const u64;
            // SAFETY: the pages were reclaimed: host memory again, mapped on demand.
            (0..PAGE_SIZE as usize / 8).all(|word| unsafe { base.add(word).read_volatile() } == 0)
        })
        .count() as u64
}

fn failure(step: &str, error: HypercallFailure) -> bool {
    println!("host: FAIL: {step}: {error:?}");
    false
}

/// The demo on the boot CPU; returns whether everything behaved as it must.
pub fn run(parameters: Parameters, cpus: usize) -> bool {
    let image_size = parameters.image_size;
    let Some(status) = status() else {
        println!("host: FAIL: QUERY_STATUS did not answer");
        return false;
    };
    if !status.is_enabled() {
        println!("host: protected mode is off: {status}");
        let refused = hypercall(HostHypercall::VmCreate {
            vcpus: 1,
            metadata_pfn: Pfn(METADATA / PAGE_SIZE),
            metadata_pages: metadata_pages(parameters.guest_pages),
        });
        let expected = Err(HypercallFailure::Error(
            HypercallError::ProtectedModeDisabled,
        ));
        println!("host: VM_CREATE answered {refused:?}");
        println!("host: === summary ===");
        println!(
            "host: protected mode: refused by the hypervisor (erratum 4193714 firmware support missing)"
        );
        println!("host: protected VMs: none can be created; the host keeps running unprotected");
        return refused == expected;
    }
    let sme = secondaries::has_sme();
    let vm = match create(parameters.guest_pages, image_size, false) {
        Ok(vm) => vm,
        Err(error) => return failure("creating the VM", error),
    };
    println!(
        "host: VM {} created; {} pages donated in {} DONATE_GUEST calls (+{} metadata pages)",
        vm.handle.0,
        vm.pages,
        vm.donations,
        metadata_pages(vm.pages)
    );
    let mut report = None;
    let mut unshared = false;
    let guest_ok = loop {
        match run_once(&vm) {
            Ok(VcpuExit::MemoryShared { ipa }) => {
                report = read_report(&vm, ipa);
                println!("host: guest shared {ipa:#x}: report {report:x?}");
            }
            Ok(VcpuExit::MemoryUnshared { ipa }) => {
                unshared = true;
                println!("host: guest unshared {ipa:#x}");
            }
            Ok(VcpuExit::SystemOff) => break true,
            Ok(VcpuExit::SystemReset) => {
                println!("host: FAIL: the guest found its memory changed (SYSTEM_RESET)");
                break false;
            }
            Ok(other) => {
                println!("host: FAIL: unexpected exit {other:?}");
                break false;
            }
            Err(error) => return failure("running the VM", error),
        }
    };
    let accesses_per_page = if sme { 4 } else { 2 };
    let aborts_before = ABORTS.load(Ordering::Relaxed);
    for page in 0..vm.pages {
        touch(GUEST_MEMORY + page * PAGE_SIZE, sme);
    }
    let aborts = ABORTS.load(Ordering::Relaxed) - aborts_before;
    let expected_aborts = vm.pages * accesses_per_page;
    if let Err(error) = destroy(&vm) {
        return failure("tearing the VM down", error);
    }
    let zeroed = zeroed_pages(&vm);
    let answered = rendezvous_answers(cpus);
    // Firmware calls the hypervisor needs for this VM on an affected CPU: the metadata donation, each
    // DONATE_GUEST, and the guest's MEM_UNSHARE.
    let firmware_calls = 1 + vm.donations + u64::from(unshared);
    println!("host: === summary ===");
    println!("host: protected mode: on");
    println!(
        "host: CPUs: {cpus} ({} secondaries storing {})",
        cpus - 1,
        if sme {
            "in SME Streaming mode"
        } else {
            "with plain stores"
        }
    );
    println!(
        "host: pages donated: {} in {} DONATE_GUEST calls, plus {} metadata pages",
        vm.pages,
        vm.donations,
        metadata_pages(vm.pages)
    );
    println!("host: firmware calls needed on an affected CPU: {firmware_calls}");
    match report {
        Some(report) => println!(
            "host: guest result: secret pattern over {} pages, checksum {:#018x}, {}",
            report.data_pages,
            report.checksum,
            if guest_ok {
                "intact after unsharing (SYSTEM_OFF)"
            } else {
                "NOT intact"
            }
        ),
        None => println!("host: guest result: no report"),
    }
    println!(
        "host: aborts taken on donated pages: {aborts} of {expected_aborts} expected ({accesses_per_page} accesses per page)"
    );
    println!(
        "host: reclaimed pages reading zero: {zeroed} of {}",
        vm.pages
    );
    println!(
        "host: CPUs that answered the rendezvous SGI: {answered} of {} other CPUs",
        cpus - 1
    );
    guest_ok && report.is_some() && unshared && aborts == expected_aborts && zeroed == vm.pages
}

/// How many CPUs other than this one answered at least one rendezvous SGI (the monitor's counters).
fn rendezvous_answers(cpus: usize) -> u64 {
    let mut answered = 0;
    for cpu in 1..cpus {
        let result = smc(RENDEZVOUS_STATISTICS, [cpu as u64, 0, 0]);
        if result[0] == 0 && result[2] > 0 {
            answered += 1;
        }
        println!(
            "host: CPU {cpu}: rendezvous SGIs answered {}, last request serviced {}",
            result[2], result[1]
        );
    }
    answered
}
