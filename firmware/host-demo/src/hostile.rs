//! The hostile host: hypercalls with bad arguments at every stage of a VM's life, each of which must
//! fail with its exact error and change nothing (the guest still finds its secret pattern intact, the
//! pages the host named are still usable by the host).

use crate::calls::{hypercall, smc};
use crate::demo::{self, GUEST_MEMORY, METADATA, PAGE_SIZE, Vm};
use crate::{ABORTS, Parameters};
use abi::hypercall::{
    Gfn, HostHypercall, HypercallError, HypercallFailure, HypercallOutput, Pfn, VcpuExit, VmHandle,
};
use core::sync::atomic::Ordering;
use firmware_runtime::hypervisor_map::{GUEST_ENTRY_IPA, HYPERVISOR_BASE};
use firmware_runtime::memory_map::SECURE_RAM_BASE;
use firmware_runtime::println;

/// A host page that is never donated: used for sharing and for "still usable" checks.
const SPARE_PAGE: u64 = firmware_runtime::hypervisor_map::HOST_BUFFERS - 0x1_0000;
/// A guest address with nothing behind it.
const FREE_IPA: u64 = GUEST_ENTRY_IPA + 0x1000_0000;

fn pfn(address: u64) -> Pfn {
    Pfn(address / PAGE_SIZE)
}

fn donate(vm: VmHandle, address: u64, pages: u64) -> HostHypercall {
    HostHypercall::DonateGuest {
        vm,
        pfn: pfn(address),
        gfn: Gfn(FREE_IPA / PAGE_SIZE),
        pages,
    }
}

/// Makes `call` and checks that it fails with `expected`; prints one line.
fn expect_error(name: &str, call: HostHypercall, expected: HypercallError) -> bool {
    let outcome = hypercall(call);
    let passed = outcome == Err(HypercallFailure::Error(expected));
    println!(
        "host: hostile: {name}: expected {expected:?}, got {outcome:?}: {}",
        if passed { "ok" } else { "FAIL" }
    );
    passed
}

fn expect_ok(name: &str, call: HostHypercall) -> bool {
    let outcome = hypercall(call);
    let passed = outcome.is_ok();
    if !passed {
        println!("host: hostile: {name}: FAIL: {outcome:?}");
    }
    passed
}

/// Runs the guest until it leaves with `wanted` (by discriminant); returns whether it did.
fn run_until(vm: &Vm, wanted: fn(&VcpuExit) -> bool) -> bool {
    for _ in 0..8 {
        match demo::run_once(vm) {
            Ok(exit) if wanted(&exit) => return true,
            Ok(VcpuExit::MemoryShared { .. } | VcpuExit::MemoryUnshared { .. }) => {}
            other => {
                println!("host: hostile: FAIL: guest exit {other:?}");
                return false;
            }
        }
    }
    false
}

/// Runs the probing guest to its first exit: a read abort just past its memory. Donates that page.
fn probe_exit(vm: &mut Vm) -> bool {
    let ipa = GUEST_ENTRY_IPA + vm.pages * PAGE_SIZE;
    let exit = demo::run_once(vm);
    let expected = Ok(VcpuExit::DataAbort { ipa, write: false });
    let aborted = exit == expected;
    println!(
        "host: hostile: guest reads outside its memory: expected {expected:?}, got {exit:?}: {}",
        if aborted { "ok" } else { "FAIL" }
    );
    let page = GUEST_MEMORY + vm.pages * PAGE_SIZE;
    // SAFETY: the page after the guest's memory is host memory this program reserved for it.
    unsafe { core::ptr::write_bytes(page as *mut u8, 0, PAGE_SIZE as usize) };
    let donated = expect_ok(
        "donate the page the guest asked for",
        HostHypercall::DonateGuest {
            vm: vm.handle,
            pfn: pfn(page),
            gfn: Gfn(ipa / PAGE_SIZE),
            pages: 1,
        },
    );
    if donated {
        vm.pages += 1;
    }
    aborted && donated
}

/// The host pages named in bad calls are still the host's: touching them takes no abort.
fn host_pages_usable() -> bool {
    let before = ABORTS.load(Ordering::Relaxed);
    for address in [
        SPARE_PAGE,
        SPARE_PAGE + PAGE_SIZE,
        METADATA + 16 * PAGE_SIZE,
    ] {
        demo::touch(address, false);
    }
    let usable = ABORTS.load(Ordering::Relaxed) == before;
    println!(
        "host: hostile: host pages named in refused calls still usable: {}",
        if usable { "ok" } else { "FAIL" }
    );
    usable
}

/// The hostile-host scenario; returns whether every check passed.
pub fn run(parameters: Parameters) -> bool {
    let Some(status) = demo::status() else {
        return false;
    };
    if !status.is_enabled() {
        println!("host: hostile: FAIL: protected mode is off ({status})");
        return false;
    }
    let mut vm = match demo::create(parameters.guest_pages, parameters.image_size, true) {
        Ok(vm) => vm,
        Err(error) => {
            println!("host: hostile: FAIL: creating the VM: {error:?}");
            return false;
        }
    };
    let report_page = GUEST_MEMORY + (vm.pages - 5) * PAGE_SIZE;
    // The guest first reads the page past its memory: it must exit to the host, which then gives it
    // that page (memory on demand) and lets it continue.
    let mut passed = probe_exit(&mut vm);
    // Let the guest write its secret pattern and share its report page.
    passed &= run_until(&vm, |exit| matches!(exit, VcpuExit::MemoryShared { .. }));
    let handle = vm.handle;
    passed &= expect_ok(
        "share a spare page with the hypervisor",
        HostHypercall::ShareHyp {
            pfn: pfn(SPARE_PAGE),
        },
    );
    let live_checks = [
        (
            "double donation",
            donate(handle, GUEST_MEMORY, 1),
            HypercallError::NotOwned,
        ),
        (
            "donate hypervisor memory",
            donate(handle, HYPERVISOR_BASE as u64, 1),
            HypercallError::OutOfRange,
        ),
        (
            "donate monitor memory",
            donate(handle, SECURE_RAM_BASE as u64, 1),
            HypercallError::OutOfRange,
        ),
        (
            "donate the VM's metadata pages",
            donate(handle, METADATA, 1),
            HypercallError::NotOwned,
        ),
        (
            "donate a page shared with the hypervisor",
            donate(handle, SPARE_PAGE, 1),
            HypercallError::IllegalTransition,
        ),
        (
            "donate a page the guest shares",
            donate(handle, report_page, 1),
            HypercallError::IllegalTransition,
        ),
        (
            "share a guest-shared page with the hypervisor",
            HostHypercall::ShareHyp {
                pfn: pfn(report_page),
            },
            HypercallError::IllegalTransition,
        ),
        (
            "share a guest page with the hypervisor",
            HostHypercall::ShareHyp {
                pfn: pfn(GUEST_MEMORY),
            },
            HypercallError::NotOwned,
        ),
        (
            "range past the end of DRAM",
            donate(handle, 0x7FFF_F000, 2),
            HypercallError::OutOfRange,
        ),
        (
            "range beyond DRAM",
            donate(handle, 0x1_0000_0000, 1),
            HypercallError::OutOfRange,
        ),
        (
            "range across the hypervisor",
            donate(handle, HYPERVISOR_BASE as u64 - PAGE_SIZE, 2),
            HypercallError::OutOfRange,
        ),
        (
            "unaligned entry point",
            HostHypercall::VcpuInit {
                vm: handle,
                vcpu: 0,
                entry_ipa: GUEST_ENTRY_IPA + 2,
                argument: 0,
            },
            HypercallError::NotAligned,
        ),
        (
            "zero pages",
            donate(handle, SPARE_PAGE + PAGE_SIZE, 0),
            HypercallError::OutOfRange,
        ),
        (
            "absurd page count",
            donate(handle, SPARE_PAGE + PAGE_SIZE, 1 << 39),
            HypercallError::OutOfRange,
        ),
        (
            "page count overflowing",
            donate(handle, SPARE_PAGE + PAGE_SIZE, u64::MAX),
            HypercallError::OutOfRange,
        ),
        (
            "guest address already in use",
            HostHypercall::DonateGuest {
                vm: handle,
                pfn: pfn(SPARE_PAGE + PAGE_SIZE),
                gfn: Gfn(GUEST_ENTRY_IPA / PAGE_SIZE),
                pages: 1,
            },
            HypercallError::IllegalTransition,
        ),
        (
            "unknown VM",
            donate(VmHandle(77), SPARE_PAGE + PAGE_SIZE, 1),
            HypercallError::UnknownVm,
        ),
        (
            "run an unknown VM",
            HostHypercall::VcpuRun {
                vm: VmHandle(77),
                vcpu: 0,
            },
            HypercallError::UnknownVm,
        ),
        (
            "run an unknown vCPU",
            HostHypercall::VcpuRun {
                vm: handle,
                vcpu: 5,
            },
            HypercallError::UnknownVcpu,
        ),
        (
            "initialise an unknown vCPU",
            HostHypercall::VcpuInit {
                vm: handle,
                vcpu: 3,
                entry_ipa: GUEST_ENTRY_IPA,
                argument: 0,
            },
            HypercallError::UnknownVcpu,
        ),
        (
            "initialise vCPU 0 twice",
            HostHypercall::VcpuInit {
                vm: handle,
                vcpu: 0,
                entry_ipa: GUEST_ENTRY_IPA,
                argument: 0,
            },
            HypercallError::AlreadyInitialised,
        ),
        (
            "reclaim from a live VM",
            HostHypercall::ReclaimGuestPages {
                vm: handle,
                gfn: Gfn(GUEST_ENTRY_IPA / PAGE_SIZE),
                pages: 1,
            },
            HypercallError::WrongVmState,
        ),
        (
            "free a live VM",
            HostHypercall::VmFree { vm: handle },
            HypercallError::WrongVmState,
        ),
        (
            "unshare a page never shared",
            HostHypercall::UnshareHyp {
                pfn: pfn(SPARE_PAGE + PAGE_SIZE),
            },
            HypercallError::IllegalTransition,
        ),
    ];
    for (name, call, expected) in live_checks {
        passed &= expect_error(name, call, expected);
    }
    let erratum = smc(abi::cpu_service::ERRATUM_4193714_WORKAROUND, [0; 3])[0] as i64;
    println!(
        "host: hostile: the erratum call from the host: expected -1, got {erratum}: {}",
        if erratum == -1 { "ok" } else { "FAIL" }
    );
    passed &= erratum == -1;
    // CPU_ON must not let a CPU start in memory the host does not own (PSCI INVALID_ADDRESS, -9).
    for (name, entry) in [
        ("CPU_ON into hypervisor memory", HYPERVISOR_BASE as u64),
        ("CPU_ON into guest memory", GUEST_MEMORY),
        ("CPU_ON into monitor memory", SECURE_RAM_BASE as u64),
    ] {
        let answer = smc(crate::calls::CPU_ON, [1, entry, 0])[0] as i64;
        println!(
            "host: hostile: {name}: expected -9, got {answer}: {}",
            if answer == -9 { "ok" } else { "FAIL" }
        );
        passed &= answer == -9;
    }
    passed &= expect_ok(
        "unshare the spare page",
        HostHypercall::UnshareHyp {
            pfn: pfn(SPARE_PAGE),
        },
    );
    // Nothing changed: the guest finds its pattern intact (it powers off only then).
    let intact = run_until(&vm, |exit| matches!(exit, VcpuExit::SystemOff));
    println!(
        "host: hostile: guest data intact after the refused calls: {}",
        if intact { "ok" } else { "FAIL" }
    );
    passed &= intact && host_pages_usable();

    passed &= expect_ok("teardown", HostHypercall::VmTeardown { vm: handle });
    let dying_checks = [
        (
            "run a destroyed VM",
            HostHypercall::VcpuRun {
                vm: handle,
                vcpu: 0,
            },
            HypercallError::VmNotRunnable,
        ),
        (
            "donate to a destroyed VM",
            donate(handle, SPARE_PAGE + PAGE_SIZE, 1),
            HypercallError::WrongVmState,
        ),
        (
            "free before reclaiming",
            HostHypercall::VmFree { vm: handle },
            HypercallError::WrongVmState,
        ),
        (
            "reclaim guest addresses with no page",
            HostHypercall::ReclaimGuestPages {
                vm: handle,
                gfn: Gfn(FREE_IPA / PAGE_SIZE),
                pages: 1,
            },
            HypercallError::InvalidArgument,
        ),
        (
            "reclaim from an unknown VM",
            HostHypercall::ReclaimGuestPages {
                vm: VmHandle(77),
                gfn: Gfn(GUEST_ENTRY_IPA / PAGE_SIZE),
                pages: 1,
            },
            HypercallError::UnknownVm,
        ),
    ];
    for (name, call, expected) in dying_checks {
        passed &= expect_error(name, call, expected);
    }
    let mut reclaimed = true;
    let mut done = 0;
    while done < vm.pages {
        let batch = demo::BATCH_PAGES.min(vm.pages - done);
        reclaimed &= expect_ok(
            "reclaim",
            HostHypercall::ReclaimGuestPages {
                vm: handle,
                gfn: Gfn(GUEST_ENTRY_IPA / PAGE_SIZE + done),
                pages: batch,
            },
        );
        done += batch;
    }
    passed &= reclaimed && expect_ok("free", HostHypercall::VmFree { vm: handle });
    passed &= expect_error(
        "run a freed VM",
        HostHypercall::VcpuRun {
            vm: handle,
            vcpu: 0,
        },
        HypercallError::UnknownVm,
    );
    let zeroed = demo::zeroed_pages(&vm);
    println!(
        "host: hostile: reclaimed pages reading zero: {zeroed} of {}",
        vm.pages
    );
    passed &= zeroed == vm.pages && host_pages_usable();
    let _ = HypercallOutput::Nothing;
    passed
}
