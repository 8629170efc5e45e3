//! The hypervisor's decisions against a machine with 64 MiB of DRAM and recording fakes.

use super::*;
use abi::hypercall::{Gfn, Pfn};
use mem_protect::{ErratumMitigation, HypervisorPages, MemoryLayout};
use stage2::{Geometry, PagePool, TlbMaintenance, Vmid};

const DRAM: Range<u64> = 0x4000_0000..0x4400_0000;
const HYPERVISOR: Range<u64> = 0x4020_0000..0x4040_0000;
const DEVICES: Range<u64> = 0x0800_0000..0x4000_0000;
const FORBIDDEN: [Range<u64>; 2] = [0x0000_0000..0x0400_0000, 0x0e00_0000..0x0f00_0000];
const METADATA: u64 = 0x4100_0000;
const GUEST_MEMORY: u64 = 0x4200_0000;
const GUEST_IPA: u64 = 0x8000_0000;

#[derive(Default)]
struct FakePlatform {
    firmware_calls: u64,
    firmware_answer: i64,
    zeroed: Vec<u64>,
}

impl TlbMaintenance for FakePlatform {
    fn invalidate_ipa(&mut self, _: Vmid, _: u64, _: u8) {}
    fn dsb_inner_shareable(&mut self) {}
    fn invalidate_stage1_for_vmid(&mut self, _: Vmid) {}
    fn isb(&mut self) {}
}

impl ProtectionPlatform for FakePlatform {
    fn firmware_dvm_sync(&mut self) -> Result<(), i64> {
        self.firmware_calls += 1;
        if self.firmware_answer == 0 {
            Ok(())
        } else {
            Err(self.firmware_answer)
        }
    }
    fn zero_page(&mut self, address: u64) {
        self.zeroed.push(address);
    }
    fn clean_to_point_of_coherency(&mut self, _range: Range<u64>) {}
}

struct LeakedPools;

impl MetadataPools<PagePool<'static>> for LeakedPools {
    fn pool(&mut self, _address: u64, pages: u64) -> PagePool<'static> {
        stage2::testing::leaked_pool(usize::try_from(pages).unwrap_or(0))
    }
}

type TestHypervisor = Hypervisor<'static, PagePool<'static>, FakePlatform, LeakedPools>;

fn hypervisor(status: ProtectedModeStatus, mitigation: ErratumMitigation) -> TestHypervisor {
    let layout = MemoryLayout {
        dram: DRAM,
        hypervisor: HYPERVISOR,
        forbidden: &FORBIDDEN,
        devices: std::slice::from_ref(&DEVICES),
    };
    let bits = Box::leak(
        vec![0u8; HypervisorPages::bytes_needed(DRAM.end - DRAM.start)].into_boxed_slice(),
    );
    let geometry = Geometry::from_pa_range(2).expect("40-bit geometry");
    let memory = MemProtect::new(
        layout,
        geometry,
        stage2::testing::leaked_pool(64),
        bits,
        mitigation,
        FakePlatform::default(),
    )
    .expect("machine");
    Hypervisor::new(memory, LeakedPools, status)
}

fn done(outcome: HostCallOutcome) -> Result<HypercallOutput, HypercallError> {
    match outcome {
        HostCallOutcome::Done(result) => result,
        HostCallOutcome::Run(ticket) => panic!("unexpected run of {ticket:?}"),
    }
}

fn call(hyp: &mut TestHypervisor, call: HostHypercall) -> Result<HypercallOutput, HypercallError> {
    done(hyp.host_hypercall(call))
}

fn create(hyp: &mut TestHypervisor) -> VmHandle {
    match call(
        hyp,
        HostHypercall::VmCreate {
            vcpus: 1,
            metadata_pfn: Pfn(METADATA / PAGE_SIZE),
            metadata_pages: 16,
        },
    ) {
        Ok(HypercallOutput::Vm(vm)) => vm,
        other => panic!("VM_CREATE: {other:?}"),
    }
}

fn donate(vm: VmHandle, address: u64, ipa: u64, pages: u64) -> HostHypercall {
    HostHypercall::DonateGuest {
        vm,
        pfn: Pfn(address / PAGE_SIZE),
        gfn: Gfn(ipa / PAGE_SIZE),
        pages,
    }
}

fn run(hyp: &mut TestHypervisor, vm: VmHandle) -> RunTicket {
    match hyp.host_hypercall(HostHypercall::VcpuRun { vm, vcpu: 0 }) {
        HostCallOutcome::Run(ticket) => ticket,
        HostCallOutcome::Done(result) => panic!("VCPU_RUN: {result:?}"),
    }
}

fn guest_call(function_id: u32, x1: u64) -> GuestTrap {
    GuestTrap::Call {
        function_id,
        arguments: [x1, 0, 0, 0],
    }
}

#[test]
fn a_protected_vm_lives_and_dies() {
    let mut hyp = hypervisor(
        ProtectedModeStatus::Enabled,
        ErratumMitigation::FirmwareDvmSync,
    );
    let vm = create(&mut hyp);
    assert_eq!(
        hyp.memory().platform().firmware_calls,
        1,
        "metadata donation"
    );
    let init = HostHypercall::VcpuInit {
        vm,
        vcpu: 0,
        entry_ipa: GUEST_IPA,
        argument: 16,
    };
    assert_eq!(call(&mut hyp, init), Ok(HypercallOutput::Nothing));
    assert_eq!(
        call(&mut hyp, init),
        Err(HypercallError::AlreadyInitialised)
    );
    for batch in 0..2 {
        let offset = batch * 8 * PAGE_SIZE;
        let donation = donate(vm, GUEST_MEMORY + offset, GUEST_IPA + offset, 8);
        assert_eq!(call(&mut hyp, donation), Ok(HypercallOutput::Nothing));
    }
    assert_eq!(
        hyp.memory().platform().firmware_calls,
        3,
        "one call per donation hypercall"
    );

    let mut ticket = run(&mut hyp, vm);
    assert_eq!(ticket.context.pc, GUEST_IPA);
    assert_eq!(ticket.context.registers[0], 16);
    assert!(matches!(
        hyp.host_hypercall(HostHypercall::VcpuRun { vm, vcpu: 0 }),
        HostCallOutcome::Done(Err(HypercallError::Busy))
    ));
    assert_eq!(
        hyp.guest_exit(&mut ticket, guest_call(abi::guest::HYP_MEMINFO, 0)),
        GuestExitAction::Resume
    );
    assert_eq!(ticket.context.registers[0], PAGE_SIZE);
    // A malformed call of ours (reserved register set) is answered in place, not passed to the host.
    let malformed = GuestTrap::Call {
        function_id: abi::guest::HYP_MEMINFO,
        arguments: [0, 7, 0, 0],
    };
    assert_eq!(
        hyp.guest_exit(&mut ticket, malformed),
        GuestExitAction::Resume
    );
    assert_eq!(
        ticket.context.registers[0],
        ReturnCode::InvalidParameter.to_register()
    );
    let unaligned = guest_call(abi::guest::MEM_SHARE, GUEST_IPA + 8);
    assert_eq!(
        hyp.guest_exit(&mut ticket, unaligned),
        GuestExitAction::Resume
    );
    let report = GUEST_IPA + 15 * PAGE_SIZE;
    let shared = hyp.guest_exit(&mut ticket, guest_call(abi::guest::MEM_SHARE, report));
    assert_eq!(
        shared,
        GuestExitAction::ReturnToHost(VcpuExit::MemoryShared { ipa: report })
    );
    assert_eq!(
        hyp.memory().page_ownership(GUEST_MEMORY + 15 * PAGE_SIZE),
        Ok(PageOwnership::SharedByGuest)
    );
    hyp.end_run(ticket, &VcpuExit::MemoryShared { ipa: report });

    let mut ticket = run(&mut hyp, vm);
    let unshared = hyp.guest_exit(&mut ticket, guest_call(abi::guest::MEM_UNSHARE, report));
    assert_eq!(
        unshared,
        GuestExitAction::ReturnToHost(VcpuExit::MemoryUnshared { ipa: report })
    );
    assert_eq!(
        hyp.memory().platform().firmware_calls,
        4,
        "unshare takes the erratum path"
    );
    hyp.end_run(ticket, &VcpuExit::MemoryUnshared { ipa: report });
    let mut ticket = run(&mut hyp, vm);
    let off = hyp.guest_exit(&mut ticket, guest_call(0x8400_0008, 0));
    assert_eq!(off, GuestExitAction::ReturnToHost(VcpuExit::SystemOff));
    hyp.end_run(ticket, &VcpuExit::SystemOff);
    assert!(matches!(
        hyp.host_hypercall(HostHypercall::VcpuRun { vm, vcpu: 0 }),
        HostCallOutcome::Done(Err(HypercallError::VmNotRunnable))
    ));

    let reclaim = HostHypercall::ReclaimGuestPages {
        vm,
        gfn: Gfn(GUEST_IPA / PAGE_SIZE),
        pages: 16,
    };
    assert_eq!(
        call(&mut hyp, reclaim),
        Err(HypercallError::WrongVmState),
        "still live"
    );
    assert_eq!(
        call(&mut hyp, HostHypercall::VmTeardown { vm }),
        Ok(HypercallOutput::Nothing)
    );
    assert_eq!(
        call(&mut hyp, HostHypercall::VmFree { vm }),
        Err(HypercallError::WrongVmState)
    );
    assert_eq!(call(&mut hyp, reclaim), Ok(HypercallOutput::Nothing));
    assert_eq!(
        call(&mut hyp, HostHypercall::VmFree { vm }),
        Ok(HypercallOutput::Nothing)
    );
    for page in [METADATA, GUEST_MEMORY, GUEST_MEMORY + 15 * PAGE_SIZE] {
        assert_eq!(
            hyp.memory().page_ownership(page),
            Ok(PageOwnership::Host),
            "{page:#x}"
        );
    }
    assert_eq!(
        call(&mut hyp, HostHypercall::VmTeardown { vm }),
        Err(HypercallError::UnknownVm)
    );
}

#[test]
fn hostile_hypercalls_get_their_exact_error_and_change_nothing() {
    let mut hyp = hypervisor(
        ProtectedModeStatus::Enabled,
        ErratumMitigation::FirmwareDvmSync,
    );
    let vm = create(&mut hyp);
    let first = donate(vm, GUEST_MEMORY, GUEST_IPA, 4);
    assert_eq!(call(&mut hyp, first), Ok(HypercallOutput::Nothing));
    let shared = GUEST_MEMORY + 0x10_0000;
    assert_eq!(
        call(
            &mut hyp,
            HostHypercall::ShareHyp {
                pfn: Pfn(shared / PAGE_SIZE)
            }
        ),
        Ok(HypercallOutput::Nothing)
    );
    let calls_before = hyp.memory().platform().firmware_calls;
    let table = [
        (
            donate(vm, GUEST_MEMORY, GUEST_IPA + 0x10_0000, 1),
            HypercallError::NotOwned,
        ),
        (
            donate(vm, HYPERVISOR.start, GUEST_IPA + 0x10_0000, 1),
            HypercallError::OutOfRange,
        ),
        (
            donate(vm, METADATA, GUEST_IPA + 0x10_0000, 1),
            HypercallError::NotOwned,
        ),
        (
            donate(vm, 0x0e00_0000, GUEST_IPA + 0x10_0000, 1),
            HypercallError::OutOfRange,
        ),
        (
            donate(vm, shared, GUEST_IPA + 0x10_0000, 1),
            HypercallError::IllegalTransition,
        ),
        (
            donate(vm, DRAM.end - PAGE_SIZE, GUEST_IPA + 0x10_0000, 2),
            HypercallError::OutOfRange,
        ),
        (
            donate(vm, GUEST_MEMORY + 0x20_0000, GUEST_IPA, 1),
            HypercallError::IllegalTransition,
        ),
        (
            donate(VmHandle(99), GUEST_MEMORY + 0x20_0000, GUEST_IPA, 1),
            HypercallError::UnknownVm,
        ),
        (
            donate(VmHandle(1 << 20), GUEST_MEMORY, GUEST_IPA, 1),
            HypercallError::UnknownVm,
        ),
        (
            HostHypercall::VcpuRun { vm, vcpu: 3 },
            HypercallError::UnknownVcpu,
        ),
        (
            HostHypercall::VcpuRun { vm, vcpu: 0 },
            HypercallError::VmNotRunnable,
        ),
        (
            HostHypercall::UnshareHyp {
                pfn: Pfn(GUEST_MEMORY / PAGE_SIZE),
            },
            HypercallError::NotOwned,
        ),
        (
            HostHypercall::ShareHyp {
                pfn: Pfn(GUEST_MEMORY / PAGE_SIZE),
            },
            HypercallError::NotOwned,
        ),
        (
            HostHypercall::VmCreate {
                vcpus: 9,
                metadata_pfn: Pfn(METADATA / PAGE_SIZE + 64),
                metadata_pages: 4,
            },
            HypercallError::LimitReached,
        ),
        (
            HostHypercall::VmCreate {
                vcpus: 1,
                metadata_pfn: Pfn(METADATA / PAGE_SIZE),
                metadata_pages: 4,
            },
            HypercallError::NotOwned,
        ),
        (
            HostHypercall::ReclaimGuestPages {
                vm,
                gfn: Gfn(GUEST_IPA / PAGE_SIZE),
                pages: 4,
            },
            HypercallError::WrongVmState,
        ),
    ];
    for (bad, expected) in table {
        let outcome = match hyp.host_hypercall(bad) {
            HostCallOutcome::Done(result) => result,
            HostCallOutcome::Run(ticket) => panic!("{bad:?} ran {ticket:?}"),
        };
        assert_eq!(outcome, Err(expected), "{bad:?}");
    }
    assert_eq!(
        hyp.memory().platform().firmware_calls,
        calls_before,
        "no refused call reached the firmware"
    );
    assert_eq!(
        hyp.memory().page_ownership(GUEST_MEMORY),
        Ok(PageOwnership::Guest {
            vm: VmHandle(1),
            guest_address: GUEST_IPA
        })
    );
    assert_eq!(
        hyp.memory().page_ownership(shared),
        Ok(PageOwnership::SharedWithHypervisor)
    );
}

#[test]
fn without_protected_mode_only_sharing_and_status_answer() {
    let status = ProtectedModeStatus::ErratumFirmwareMissing {
        firmware_result: u64::MAX,
    };
    let mut hyp = hypervisor(status, ErratumMitigation::FirmwareDvmSync);
    let page = Pfn(GUEST_MEMORY / PAGE_SIZE);
    let table = [
        (
            HostHypercall::QueryStatus,
            Ok(HypercallOutput::Status(status)),
        ),
        (
            HostHypercall::ShareHyp { pfn: page },
            Ok(HypercallOutput::Nothing),
        ),
        (
            HostHypercall::UnshareHyp { pfn: page },
            Ok(HypercallOutput::Nothing),
        ),
        (
            HostHypercall::VmCreate {
                vcpus: 1,
                metadata_pfn: Pfn(METADATA / PAGE_SIZE),
                metadata_pages: 4,
            },
            Err(HypercallError::ProtectedModeDisabled),
        ),
        (
            donate(VmHandle(1), GUEST_MEMORY, GUEST_IPA, 1),
            Err(HypercallError::ProtectedModeDisabled),
        ),
        (
            HostHypercall::VcpuRun {
                vm: VmHandle(1),
                vcpu: 0,
            },
            Err(HypercallError::ProtectedModeDisabled),
        ),
    ];
    for (request, expected) in table {
        assert_eq!(call(&mut hyp, request), expected, "{request:?}");
    }
    assert_eq!(hyp.memory().platform().firmware_calls, 0);
}

#[test]
fn a_failed_firmware_call_rolls_the_donation_back() {
    let mut hyp = hypervisor(
        ProtectedModeStatus::Enabled,
        ErratumMitigation::FirmwareDvmSync,
    );
    let vm = create(&mut hyp);
    hyp.memory_mut().platform_mut().firmware_answer = -1;
    let donation = donate(vm, GUEST_MEMORY, GUEST_IPA, 8);
    assert_eq!(
        call(&mut hyp, donation),
        Err(HypercallError::FirmwareCallFailed)
    );
    assert_eq!(
        hyp.memory().page_ownership(GUEST_MEMORY),
        Ok(PageOwnership::Host)
    );
}

#[test]
fn entry_points_must_be_host_memory() {
    let mut hyp = hypervisor(ProtectedModeStatus::Enabled, ErratumMitigation::NotNeeded);
    let vm = create(&mut hyp);
    assert_eq!(
        call(&mut hyp, donate(vm, GUEST_MEMORY, GUEST_IPA, 1)),
        Ok(HypercallOutput::Nothing)
    );
    let table = [
        (0x4300_0000, true),
        (HYPERVISOR.start + 0x100, false),
        (METADATA, false),
        (GUEST_MEMORY, false),
        (0x0e00_0000, false),
        (DRAM.end, false),
    ];
    for (address, allowed) in table {
        assert_eq!(hyp.host_entry_allowed(address), allowed, "{address:#x}");
    }
    assert_eq!(
        hyp.memory().platform().firmware_calls,
        0,
        "unaffected systems never call"
    );
}

#[test]
fn guest_calls_table() {
    let mut hyp = hypervisor(ProtectedModeStatus::Enabled, ErratumMitigation::NotNeeded);
    let vm = create(&mut hyp);
    assert_eq!(
        call(&mut hyp, donate(vm, GUEST_MEMORY, GUEST_IPA, 4)),
        Ok(HypercallOutput::Nothing)
    );
    let init = HostHypercall::VcpuInit {
        vm,
        vcpu: 0,
        entry_ipa: GUEST_IPA,
        argument: 0,
    };
    assert_eq!(call(&mut hyp, init), Ok(HypercallOutput::Nothing));
    let not_supported = ReturnCode::NotSupported.to_register();
    let psci_version = (1 << 16) | 1;
    // (trap, expected action, expected x0 afterwards)
    let table = [
        (
            guest_call(abi::guest::KVM_FEATURES, 0),
            GuestExitAction::Resume,
            u64::from(FeatureBitmap::SUPPORTED.0),
        ),
        (
            guest_call(abi::guest::HYP_MEMINFO, 0),
            GuestExitAction::Resume,
            PAGE_SIZE,
        ),
        (
            guest_call(0x8400_0000, 0),
            GuestExitAction::Resume,
            psci_version,
        ),
        (
            guest_call(0x8400_0002, 0),
            GuestExitAction::Resume,
            not_supported,
        ),
        (
            guest_call(abi::guest::MEM_SHARE, GUEST_IPA + 0x10_0000),
            GuestExitAction::Resume,
            ReturnCode::InvalidParameter.to_register(),
        ),
        (
            guest_call(0xC600_0030, 5),
            GuestExitAction::ReturnToHost(VcpuExit::GuestHypercall {
                function_id: 0xC600_0030,
                arguments: [5, 0, 0, 0],
            }),
            not_supported,
        ),
        (
            GuestTrap::Abort {
                ipa: 0x9000_0000,
                write: true,
            },
            GuestExitAction::ReturnToHost(VcpuExit::DataAbort {
                ipa: 0x9000_0000,
                write: true,
            }),
            not_supported,
        ),
        (
            GuestTrap::Interrupt,
            GuestExitAction::ReturnToHost(VcpuExit::Interrupted),
            not_supported,
        ),
        (
            guest_call(0x8400_0009, 0),
            GuestExitAction::ReturnToHost(VcpuExit::SystemReset),
            not_supported,
        ),
    ];
    let mut ticket = run(&mut hyp, vm);
    for (trap, action, x0) in table {
        assert_eq!(hyp.guest_exit(&mut ticket, trap), action, "{trap:?}");
        assert_eq!(ticket.context.registers[0], x0, "{trap:?}");
    }
    hyp.end_run(ticket, &VcpuExit::SystemReset);
    assert!(matches!(
        hyp.host_hypercall(HostHypercall::VcpuRun { vm, vcpu: 0 }),
        HostCallOutcome::Done(Err(HypercallError::VmNotRunnable))
    ));
}
