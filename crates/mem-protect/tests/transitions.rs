//! Every transition: the legal cases with the exact order of TLB maintenance, firmware call and
//! ownership change, and the illegal ones with their exact error and an unchanged machine.

mod support;

use mem_protect::{
    ErratumMitigation, HostAbortReason, HostFaultOutcome, MemProtectError, OwnershipKind,
    PAGE_SIZE, PageOwnership, ProtectionEvent, VmHandle,
};
use stage2::{BLOCK_SIZE_2M, TablePool, TlbEvent, Vmid};
use support::{Backing, DRAM, Event, HYPERVISOR, Machine, page, snapshot};

const VM: VmHandle = VmHandle(1);
const OTHER_VM: VmHandle = VmHandle(2);
const GUEST_BASE: u64 = 0x8000_0000;

/// A machine with VM 1 live, VM 2 dying, and a few pages already in every state:
/// page 0..4 donated to VM 1 at GUEST_BASE, page 4 shared with the hypervisor, page 5 donated to the
/// hypervisor, page 6 donated to VM 1 at GUEST_BASE + 16 pages and shared back with the host,
/// page 7 donated to VM 2 (dying), pages 0x20..0x24 donated to VM 1 at GUEST_BASE + 2 MiB.
fn populated<'a>(machine: &mut Machine<'a>, pools: &mut support::Pools<'a>) {
    assert_eq!(machine.create_vm(pools.next()), Ok(VM));
    assert_eq!(machine.create_vm(pools.next()), Ok(OTHER_VM));
    machine
        .host_donate_guest(VM, page(0), GUEST_BASE, 4)
        .expect("donate 0..4");
    machine.host_share_hypervisor(page(4)).expect("share 4");
    machine
        .host_donate_hypervisor(page(5), 1)
        .expect("donate 5 to hyp");
    machine
        .host_donate_guest(VM, page(6), GUEST_BASE + 16 * PAGE_SIZE, 1)
        .expect("donate 6");
    machine
        .guest_share_host(VM, GUEST_BASE + 16 * PAGE_SIZE)
        .expect("guest shares 6");
    machine
        .host_donate_guest(OTHER_VM, page(7), GUEST_BASE, 1)
        .expect("donate 7 to vm 2");
    machine
        .host_donate_guest(VM, page(0x20), GUEST_BASE + 0x20_0000, 4)
        .expect("donate 0x20..0x24");
    machine.teardown_vm(OTHER_VM).expect("teardown vm 2");
    machine.platform_mut().take();
}

type Operation = fn(&mut Machine<'_>) -> Result<(), MemProtectError>;

fn guest_in(vm: VmHandle, guest_address: u64) -> PageOwnership {
    PageOwnership::Guest { vm, guest_address }
}

/// (what, operation, exact error). Each runs on a fresh populated machine and must change nothing.
fn illegal_cases() -> Vec<(&'static str, Operation, MemProtectError)> {
    use MemProtectError as E;
    use OwnershipKind as K;
    vec![
        (
            "donate a guest page again",
            |m| m.host_donate_guest(VM, page(2), GUEST_BASE + 0x10_0000, 1),
            E::UnexpectedState {
                address: page(2),
                expected: K::Host,
                found: guest_in(VM, GUEST_BASE + 2 * PAGE_SIZE),
            },
        ),
        (
            "donate a range that runs into donated pages",
            |m| m.host_donate_guest(VM, page(0x1e), GUEST_BASE + 0x10_0000, 4),
            E::UnexpectedState {
                address: page(0x20),
                expected: K::Host,
                found: guest_in(VM, GUEST_BASE + 0x20_0000),
            },
        ),
        (
            "donate a page shared with the hypervisor",
            |m| m.host_donate_guest(VM, page(4), GUEST_BASE + 0x10_0000, 1),
            E::UnexpectedState {
                address: page(4),
                expected: K::Host,
                found: PageOwnership::SharedWithHypervisor,
            },
        ),
        (
            "donate a page the guest shares",
            |m| m.host_donate_guest(VM, page(6), GUEST_BASE + 0x10_0000, 1),
            E::UnexpectedState {
                address: page(6),
                expected: K::Host,
                found: PageOwnership::SharedByGuest,
            },
        ),
        (
            "donate the hypervisor's memory",
            |m| m.host_donate_guest(VM, HYPERVISOR.start, GUEST_BASE + 0x10_0000, 1),
            E::UnexpectedState {
                address: HYPERVISOR.start,
                expected: K::Host,
                found: PageOwnership::Hypervisor,
            },
        ),
        (
            "donate a page donated to the hypervisor",
            |m| m.host_donate_hypervisor(page(5), 1),
            E::UnexpectedState {
                address: page(5),
                expected: K::Host,
                found: PageOwnership::Hypervisor,
            },
        ),
        (
            "donate to an occupied guest address",
            |m| m.host_donate_guest(VM, page(9), GUEST_BASE + PAGE_SIZE, 1),
            E::GuestAddressInUse {
                guest_address: GUEST_BASE + PAGE_SIZE,
            },
        ),
        (
            "donate an unaligned address",
            |m| m.host_donate_guest(VM, page(9) + 0x800, GUEST_BASE + 0x10_0000, 1),
            E::NotAligned {
                address: page(9) + 0x800,
            },
        ),
        (
            "donate to an unaligned guest address",
            |m| m.host_donate_guest(VM, page(9), GUEST_BASE + 0x10_0010, 1),
            E::NotAligned {
                address: GUEST_BASE + 0x10_0010,
            },
        ),
        (
            "donate zero pages",
            |m| m.host_donate_guest(VM, page(9), GUEST_BASE + 0x10_0000, 0),
            E::ZeroPages,
        ),
        (
            "donate past the end of DRAM",
            |m| m.host_donate_guest(VM, DRAM.end - PAGE_SIZE, GUEST_BASE + 0x10_0000, 2),
            E::NotMemory { address: DRAM.end },
        ),
        (
            "donate an absurd page count",
            |m| m.host_donate_guest(VM, page(9), GUEST_BASE + 0x10_0000, 1 << 40),
            E::NotMemory { address: DRAM.end },
        ),
        (
            "donate a page count that overflows",
            |m| m.host_donate_guest(VM, page(9), GUEST_BASE + 0x10_0000, 1 << 60),
            E::AddressOverflow {
                address: page(9),
                pages: 1 << 60,
            },
        ),
        (
            "donate device memory",
            |m| m.host_donate_guest(VM, 0x0900_0000, GUEST_BASE + 0x10_0000, 1),
            E::NotMemory {
                address: 0x0900_0000,
            },
        ),
        (
            "donate the monitor's secure RAM",
            |m| m.host_donate_hypervisor(0x0e00_0000, 1),
            E::NotMemory {
                address: 0x0e00_0000,
            },
        ),
        (
            "donate beyond the guest address space",
            |m| m.host_donate_guest(VM, page(9), 1 << 40, 1),
            E::GuestAddressOutOfRange {
                guest_address: 1 << 40,
            },
        ),
        (
            "donate to an unknown VM",
            |m| m.host_donate_guest(VmHandle(9), page(9), GUEST_BASE, 1),
            E::UnknownVm { vm: VmHandle(9) },
        ),
        (
            "donate to a dying VM",
            |m| m.host_donate_guest(OTHER_VM, page(9), GUEST_BASE + 0x10_0000, 1),
            E::VmDying { vm: OTHER_VM },
        ),
        (
            "share a page already shared",
            |m| m.host_share_hypervisor(page(4)),
            E::UnexpectedState {
                address: page(4),
                expected: K::Host,
                found: PageOwnership::SharedWithHypervisor,
            },
        ),
        (
            "share a guest page with the hypervisor",
            |m| m.host_share_hypervisor(page(1)),
            E::UnexpectedState {
                address: page(1),
                expected: K::Host,
                found: guest_in(VM, GUEST_BASE + PAGE_SIZE),
            },
        ),
        (
            "unshare a page that is not shared",
            |m| m.host_unshare_hypervisor(page(9)),
            E::UnexpectedState {
                address: page(9),
                expected: K::SharedWithHypervisor,
                found: PageOwnership::Host,
            },
        ),
        (
            "give back the hypervisor's own image",
            |m| m.hypervisor_donate_host(HYPERVISOR.start, 1),
            E::UnexpectedState {
                address: HYPERVISOR.start,
                expected: K::Hypervisor,
                found: PageOwnership::Hypervisor,
            },
        ),
        (
            "give back a page the hypervisor does not own",
            |m| m.hypervisor_donate_host(page(9), 1),
            E::UnexpectedState {
                address: page(9),
                expected: K::Hypervisor,
                found: PageOwnership::Host,
            },
        ),
        (
            "guest shares a page it already shares",
            |m| {
                m.guest_share_host(VM, GUEST_BASE + 16 * PAGE_SIZE)
                    .map(drop)
            },
            E::UnexpectedState {
                address: page(6),
                expected: K::Guest,
                found: PageOwnership::SharedByGuest,
            },
        ),
        (
            "guest shares a page it does not have",
            |m| m.guest_share_host(VM, GUEST_BASE + 0x30_0000).map(drop),
            E::GuestPageMissing {
                guest_address: GUEST_BASE + 0x30_0000,
            },
        ),
        (
            "guest unshares a page it does not share",
            |m| m.guest_unshare_host(VM, GUEST_BASE).map(drop),
            E::UnexpectedState {
                address: page(0),
                expected: K::SharedByGuest,
                found: guest_in(VM, GUEST_BASE),
            },
        ),
        (
            "guest of a dying VM shares",
            |m| m.guest_share_host(OTHER_VM, GUEST_BASE).map(drop),
            E::VmDying { vm: OTHER_VM },
        ),
        (
            "reclaim from a live VM",
            |m| m.reclaim_guest_pages(VM, GUEST_BASE, 1),
            E::VmNotDying { vm: VM },
        ),
        (
            "reclaim a guest page that does not exist",
            |m| m.reclaim_guest_pages(OTHER_VM, GUEST_BASE, 2),
            E::GuestPageMissing {
                guest_address: GUEST_BASE + PAGE_SIZE,
            },
        ),
        (
            "free a live VM",
            |m| m.free_vm(VM).map(drop),
            E::VmNotDying { vm: VM },
        ),
        (
            "free a VM with pages left",
            |m| m.free_vm(OTHER_VM).map(drop),
            E::VmHasPages {
                vm: OTHER_VM,
                pages: 1,
            },
        ),
        (
            "tear down an unknown VM",
            |m| m.teardown_vm(VmHandle(77)),
            E::UnknownVm { vm: VmHandle(77) },
        ),
        (
            "tear down a VM twice",
            |m| m.teardown_vm(OTHER_VM),
            E::VmDying { vm: OTHER_VM },
        ),
    ]
}

#[test]
fn illegal_transitions_fail_precisely_and_change_nothing() {
    let cases = illegal_cases();
    for (what, operation, expected) in &cases {
        let mut backing = Backing::new(16, 2, 16);
        let (mut machine, mut pools) =
            support::machine(&mut backing, ErratumMitigation::FirmwareDvmSync);
        populated(&mut machine, &mut pools);
        let before = snapshot(&machine);
        assert_eq!(operation(&mut machine), Err(*expected), "{what}");
        assert_eq!(snapshot(&machine), before, "{what}: the machine changed");
        assert_eq!(
            machine.platform_mut().take(),
            vec![],
            "{what}: the platform was used"
        );
        println!("illegal transition refused: {what}: {expected:?}");
    }
    println!(
        "{} illegal transitions refused with their exact error, nothing changed",
        cases.len()
    );
}

/// The events a revocation of `range` must produce, around the host's TLB maintenance.
fn assert_revocation_order(events: &[Event], firmware: bool, to: mem_protect::Component) {
    let position = |wanted: &dyn Fn(&Event) -> bool| events.iter().position(wanted);
    let revoked = position(&|event| {
        matches!(
            event,
            Event::Protection(ProtectionEvent::HostAccessRevoked { .. })
        )
    })
    .expect("host access revoked");
    let transferred = position(&|event| {
        matches!(event, Event::Protection(ProtectionEvent::OwnershipTransferred { to: target, .. }) if *target == to)
    })
    .expect("ownership transferred");
    let host_tlb: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, event)| {
            matches!(
                event,
                Event::Tlb(TlbEvent::InvalidateStage1ForVmid { vmid: Vmid(0) })
            )
        })
        .map(|(index, _)| index)
        .collect();
    let calls: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, event)| **event == Event::FirmwareCall)
        .map(|(index, _)| index)
        .collect();
    assert!(
        host_tlb.iter().all(|&index| index < revoked),
        "host TLB maintenance before revocation: {events:?}"
    );
    let devices: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, event)| matches!(event, Event::DeviceRevoked(_)))
        .map(|(index, _)| index)
        .collect();
    assert_eq!(
        devices.len(),
        1,
        "exactly one IOMMU revocation (one sync) per operation: {events:?}"
    );
    assert!(
        revoked < devices[0] && devices[0] < transferred,
        "CPU TLB maintenance, IOMMU revocation, transfer: {events:?}"
    );
    if firmware {
        assert_eq!(calls.len(), 1, "exactly one firmware call: {events:?}");
        assert!(
            revoked < calls[0] && devices[0] < calls[0] && calls[0] < transferred,
            "TLB maintenance, IOMMU revocation, firmware call, transfer: {events:?}"
        );
    } else {
        assert!(
            calls.is_empty(),
            "no firmware call when not needed: {events:?}"
        );
    }
}

#[test]
fn donation_to_a_guest_makes_one_firmware_call_after_tlb_maintenance() {
    for mitigation in [
        ErratumMitigation::FirmwareDvmSync,
        ErratumMitigation::NotNeeded,
    ] {
        let mut backing = Backing::new(16, 1, 16);
        let (mut machine, mut pools) = support::machine(&mut backing, mitigation);
        let vm = machine.create_vm(pools.next()).expect("vm");
        // The host touched the pages first: they are mapped (as a 2 MiB block) and must be broken.
        assert_eq!(
            machine.handle_host_fault(page(3)),
            HostFaultOutcome::Mapped {
                start: DRAM.start,
                size: BLOCK_SIZE_2M
            }
        );
        machine.platform_mut().take();
        machine
            .host_donate_guest(vm, page(0), GUEST_BASE, 300)
            .expect("donate 300 pages");
        let events = machine.platform_mut().take();
        assert_revocation_order(
            &events,
            mitigation == ErratumMitigation::FirmwareDvmSync,
            mem_protect::Component::Guest(vm),
        );
        // The donated range is cleaned to the point of coherency once, after the host lost it (and
        // after the firmware call) and before the guest has it.
        let cleans: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, event)| matches!(event, Event::CleanToPointOfCoherency(_)))
            .map(|(index, _)| index)
            .collect();
        assert_eq!(cleans.len(), 1, "one clean per donation: {events:?}");
        assert_eq!(
            events[cleans[0]],
            Event::CleanToPointOfCoherency(page(0)..page(300))
        );
        let after = |wanted: &dyn Fn(&Event) -> bool| {
            events
                .iter()
                .position(wanted)
                .is_some_and(|index| index < cleans[0])
        };
        assert!(after(&|event| matches!(
            event,
            Event::Protection(ProtectionEvent::HostAccessRevoked { .. })
        )));
        assert!(
            mitigation == ErratumMitigation::NotNeeded
                || after(&|event| *event == Event::FirmwareCall)
        );
        assert!(!after(&|event| matches!(
            event,
            Event::Protection(ProtectionEvent::OwnershipTransferred { .. })
        )));
        for index in [0, 150, 299] {
            assert_eq!(
                machine.page_ownership(page(index)),
                Ok(guest_in(vm, GUEST_BASE + index * PAGE_SIZE)),
                "page {index}"
            );
        }
        assert_eq!(machine.page_ownership(page(300)), Ok(PageOwnership::Host));
        assert_eq!(machine.vm(vm).map(|vm| vm.pages()), Some(300));
    }
}

#[test]
fn every_revocation_takes_the_erratum_path_and_nothing_else_does() {
    type Step = fn(&mut Machine<'_>) -> Result<(), MemProtectError>;
    let guest = mem_protect::Component::Guest(VM);
    let hypervisor = mem_protect::Component::Hypervisor;
    // (what, operation, host loses access, new owner)
    let cases: Vec<(&str, Step, bool, mem_protect::Component)> = vec![
        (
            "host donates to a guest",
            |m| m.host_donate_guest(VM, page(20), GUEST_BASE + 0x40_0000, 8),
            true,
            guest,
        ),
        (
            "host donates to the hypervisor",
            |m| m.host_donate_hypervisor(page(20), 8),
            true,
            hypervisor,
        ),
        (
            "guest unshares",
            |m| {
                m.guest_unshare_host(VM, GUEST_BASE + 16 * PAGE_SIZE)
                    .map(drop)
            },
            true,
            guest,
        ),
        (
            "host shares with the hypervisor",
            |m| m.host_share_hypervisor(page(20)),
            false,
            hypervisor,
        ),
        (
            "host unshares from the hypervisor",
            |m| m.host_unshare_hypervisor(page(4)),
            false,
            mem_protect::Component::Host,
        ),
        (
            "hypervisor gives back",
            |m| m.hypervisor_donate_host(page(5), 1),
            false,
            mem_protect::Component::Host,
        ),
        (
            "guest shares",
            |m| m.guest_share_host(VM, GUEST_BASE).map(drop),
            false,
            mem_protect::Component::Host,
        ),
    ];
    for (what, operation, revokes, to) in cases {
        let mut backing = Backing::new(16, 2, 16);
        let (mut machine, mut pools) =
            support::machine(&mut backing, ErratumMitigation::FirmwareDvmSync);
        populated(&mut machine, &mut pools);
        operation(&mut machine).unwrap_or_else(|error| panic!("{what}: {error:?}"));
        let events = machine.platform_mut().take();
        if revokes {
            assert_revocation_order(&events, true, to);
        } else {
            assert!(
                !events.contains(&Event::FirmwareCall),
                "{what}: no firmware call"
            );
            assert!(
                !events
                    .iter()
                    .any(|event| matches!(event, Event::DeviceRevoked(_))),
                "{what}: no IOMMU revocation"
            );
            // The host's devices get back exactly what the host owns again.
            let granted = events
                .iter()
                .any(|event| matches!(event, Event::DeviceGranted(_)));
            assert_eq!(
                granted,
                what == "hypervisor gives back",
                "{what}: {events:?}"
            );
            assert!(
                events.iter().any(|event| matches!(event, Event::Protection(ProtectionEvent::OwnershipTransferred { to: target, .. }) if *target == to)),
                "{what}: {events:?}"
            );
        }
    }
}

#[test]
fn a_failed_firmware_call_leaves_the_pages_with_the_host() {
    let mut backing = Backing::new(16, 2, 16);
    let (mut machine, mut pools) =
        support::machine(&mut backing, ErratumMitigation::FirmwareDvmSync);
    populated(&mut machine, &mut pools);
    let guests_before = snapshot(&machine).guests;
    let calls_before = machine.platform().firmware_calls;
    machine.platform_mut().firmware_answer = -1;

    let donated = machine.host_donate_guest(VM, page(0x40), GUEST_BASE + 0x40_0000, 64);
    assert_eq!(
        donated,
        Err(MemProtectError::FirmwareCallFailed { code: -1 })
    );
    let unshared = machine.guest_unshare_host(VM, GUEST_BASE + 16 * PAGE_SIZE);
    assert_eq!(
        unshared,
        Err(MemProtectError::FirmwareCallFailed { code: -1 })
    );
    let to_hypervisor = machine.host_donate_hypervisor(page(0x100), 3);
    assert_eq!(
        to_hypervisor,
        Err(MemProtectError::FirmwareCallFailed { code: -1 })
    );

    assert_eq!(
        snapshot(&machine).guests,
        guests_before,
        "guest tables untouched"
    );
    for index in (0x40..0x80).chain(0x100..0x103) {
        assert_eq!(
            machine.page_ownership(page(index)),
            Ok(PageOwnership::Host),
            "page {index}"
        );
        assert_eq!(
            machine.hypervisor_pages().state(page(index)),
            mem_protect::HypervisorPageState::NoAccess
        );
        assert!(
            matches!(
                machine.handle_host_fault(page(index)),
                HostFaultOutcome::Mapped { .. }
            ),
            "host maps page {index} again"
        );
    }
    assert_eq!(
        machine.page_ownership(page(6)),
        Ok(PageOwnership::SharedByGuest),
        "the host keeps its borrowed page"
    );
    assert_eq!(
        machine.platform().firmware_calls,
        calls_before + 3,
        "one call per operation"
    );
}

#[test]
fn running_out_of_table_memory_midway_changes_nothing() {
    // The guest's pool has room for its root and one more table: a range straddling two 2 MiB
    // regions at an unaligned guest address needs more.
    let mut backing = Backing::new(16, 1, 3);
    let (mut machine, mut pools) =
        support::machine(&mut backing, ErratumMitigation::FirmwareDvmSync);
    let vm = machine.create_vm(pools.next()).expect("vm");
    let before = snapshot(&machine);
    let result = machine.host_donate_guest(vm, page(0), GUEST_BASE + 0x1f_f000, 8);
    assert!(
        matches!(result, Err(MemProtectError::OutOfTableMemory { .. })),
        "{result:?}"
    );
    assert_eq!(snapshot(&machine), before);
    assert_eq!(
        machine.platform_mut().take(),
        vec![],
        "no TLB maintenance, no firmware call"
    );

    // The host's pool: a host block split needs a table the pool does not have.
    let mut backing = Backing::new(4, 1, 16);
    let (mut machine, mut pools) =
        support::machine(&mut backing, ErratumMitigation::FirmwareDvmSync);
    let vm = machine.create_vm(pools.next()).expect("vm");
    let spare = TablePool::available(machine.host_stage2().pool());
    assert_eq!(
        spare, 0,
        "the fixture leaves the host pool empty after boot"
    );
    let before = snapshot(&machine);
    let result = machine.host_donate_guest(vm, page(1), GUEST_BASE, 2);
    assert!(
        matches!(
            result,
            Err(MemProtectError::OutOfTableMemory { available: 0, .. })
        ),
        "{result:?}"
    );
    assert_eq!(snapshot(&machine), before);
}

#[test]
fn guest_sharing_round_trip() {
    let mut backing = Backing::new(16, 1, 16);
    let (mut machine, mut pools) =
        support::machine(&mut backing, ErratumMitigation::FirmwareDvmSync);
    let vm = machine.create_vm(pools.next()).expect("vm");
    machine
        .host_donate_guest(vm, page(10), GUEST_BASE, 4)
        .expect("donate");
    assert_eq!(
        machine.guest_share_host(vm, GUEST_BASE + 2 * PAGE_SIZE),
        Ok(page(12))
    );
    assert_eq!(
        machine.page_ownership(page(12)),
        Ok(PageOwnership::SharedByGuest)
    );
    assert_eq!(
        machine.handle_host_fault(page(12)),
        HostFaultOutcome::Mapped {
            start: page(12),
            size: PAGE_SIZE
        }
    );
    assert_eq!(
        machine.guest_unshare_host(vm, GUEST_BASE + 2 * PAGE_SIZE),
        Ok(page(12))
    );
    assert_eq!(
        machine.page_ownership(page(12)),
        Ok(guest_in(vm, GUEST_BASE + 2 * PAGE_SIZE))
    );
    assert_eq!(
        machine.handle_host_fault(page(12)),
        HostFaultOutcome::Abort(HostAbortReason::OwnedByGuest(vm))
    );
}

#[test]
fn teardown_reclaims_zeroed_pages_and_frees_the_vm() {
    let mut backing = Backing::new(16, 1, 16);
    let (mut machine, mut pools) =
        support::machine(&mut backing, ErratumMitigation::FirmwareDvmSync);
    let vm = machine.create_vm(pools.next()).expect("vm");
    machine
        .host_donate_guest(vm, page(10), GUEST_BASE, 6)
        .expect("donate");
    machine
        .guest_share_host(vm, GUEST_BASE + PAGE_SIZE)
        .expect("share");
    machine.teardown_vm(vm).expect("teardown");
    assert_eq!(
        machine.guest_share_host(vm, GUEST_BASE),
        Err(MemProtectError::VmDying { vm })
    );
    machine.platform_mut().take();

    machine
        .reclaim_guest_pages(vm, GUEST_BASE, 6)
        .expect("reclaim");
    let events = machine.platform_mut().take();
    for index in 10..16 {
        let zeroed = events
            .iter()
            .position(|event| *event == Event::ZeroPage(page(index)))
            .expect("zeroed");
        let returned = events
            .iter()
            .position(|event| {
                matches!(event, Event::Protection(ProtectionEvent::OwnershipTransferred { range, to: mem_protect::Component::Host })
                    if range.contains(&page(index)))
            })
            .expect("returned");
        assert!(
            zeroed < returned,
            "page {index} zeroed before the host gets it"
        );
        assert_eq!(machine.page_ownership(page(index)), Ok(PageOwnership::Host));
    }
    assert!(
        !events.contains(&Event::FirmwareCall),
        "the host gains the pages: no firmware call"
    );
    let pool = machine.free_vm(vm).expect("free");
    assert_eq!(
        pool.available(),
        pool.capacity(),
        "every guest table page is back in the pool"
    );
    assert_eq!(
        machine.host_donate_guest(vm, page(20), GUEST_BASE, 1),
        Err(MemProtectError::UnknownVm { vm })
    );
}

#[test]
fn host_faults_map_on_demand_or_abort() {
    let mut backing = Backing::new(16, 2, 16);
    let (mut machine, mut pools) =
        support::machine(&mut backing, ErratumMitigation::FirmwareDvmSync);
    populated(&mut machine, &mut pools);
    let cases = [
        (
            page(9),
            HostFaultOutcome::Mapped {
                start: page(9),
                size: PAGE_SIZE,
            },
        ),
        // The second 2 MiB of DRAM holds the hypervisor's memory: mapped page by page.
        (
            0x4020_0000 + 0x123,
            HostFaultOutcome::Mapped {
                start: 0x4020_0000,
                size: PAGE_SIZE,
            },
        ),
        // Allowed device memory: the whole 2 MiB block around the access.
        (
            0x0900_0010,
            HostFaultOutcome::Mapped {
                start: 0x0900_0000,
                size: stage2::BLOCK_SIZE_2M,
            },
        ),
        // The last allowed block below DRAM.
        (
            0x4000_0000 - PAGE_SIZE,
            HostFaultOutcome::Mapped {
                start: 0x3FE0_0000,
                size: stage2::BLOCK_SIZE_2M,
            },
        ),
        // Not on the allowlist (and not forbidden either): never mapped.
        (
            0x0500_0000,
            HostFaultOutcome::Abort(HostAbortReason::Forbidden),
        ),
        (
            page(1) + 8,
            HostFaultOutcome::Abort(HostAbortReason::OwnedByGuest(VM)),
        ),
        (
            page(7),
            HostFaultOutcome::Abort(HostAbortReason::OwnedByGuest(OTHER_VM)),
        ),
        (
            page(5),
            HostFaultOutcome::Abort(HostAbortReason::OwnedByHypervisor),
        ),
        (
            HYPERVISOR.start + 0x4000,
            HostFaultOutcome::Abort(HostAbortReason::OwnedByHypervisor),
        ),
        (
            0x0e00_0000,
            HostFaultOutcome::Abort(HostAbortReason::Forbidden),
        ),
        (
            0x0000_1000,
            HostFaultOutcome::Abort(HostAbortReason::Forbidden),
        ),
        (
            DRAM.end,
            HostFaultOutcome::Abort(HostAbortReason::Forbidden),
        ),
    ];
    for (address, expected) in cases {
        assert_eq!(machine.handle_host_fault(address), expected, "{address:#x}");
    }
}

/// A host that faults on ten thousand scattered device addresses: allowed ones are mapped in blocks,
/// so the table pages they consume are bounded by the allowlist, and the rest abort without taking
/// any; the hypervisor can still donate afterwards.
#[test]
fn device_faults_cannot_exhaust_the_host_table_pool() {
    const WINDOW: std::ops::Range<u64> = 0x80_0000_0000..0x100_0000_0000;
    let devices = [0x0900_0000..0x0900_1000, WINDOW];
    let mut backing = Backing::new(16, 1, 16);
    let Backing {
        host_tables,
        hypervisor_bits,
        ..
    } = &mut backing;
    let mut machine = mem_protect::MemProtect::new(
        mem_protect::MemoryLayout {
            devices: &devices,
            ..support::layout()
        },
        support::geometry(),
        stage2::PagePool::new(host_tables),
        hypervisor_bits,
        ErratumMitigation::FirmwareDvmSync,
        support::RecordingPlatform::default(),
    )
    .expect("machine");
    let before = machine.host_stage2().table_pages_in_use();
    let mut seed = 0x1234_5678_u64;
    let mut aborted = 0;
    for _ in 0..10_000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Anywhere in the 40-bit space outside DRAM, page aligned.
        let address = (seed >> 24) & ((1 << 40) - 1) & !(PAGE_SIZE - 1);
        if support::DRAM.contains(&address) {
            continue;
        }
        match machine.handle_host_fault(address) {
            HostFaultOutcome::Mapped { .. } => assert!(
                WINDOW.contains(&address) || devices[0].contains(&address),
                "{address:#x} mapped"
            ),
            HostFaultOutcome::Abort(HostAbortReason::Forbidden) => aborted += 1,
            other => panic!("{address:#x}: {other:?}"),
        }
    }
    let used = machine.host_stage2().table_pages_in_use() - before;
    // The 512 GiB window in 1 GiB blocks needs one level-1 table; the page-sized UART a level-2 and
    // a level-3 one.
    assert!(used <= 4, "{used} table pages for device faults");
    assert!(aborted > 5_000, "{aborted} aborted");
    assert_eq!(
        machine.handle_host_fault(0x0900_0000),
        HostFaultOutcome::Mapped {
            start: 0x0900_0000,
            size: PAGE_SIZE
        }
    );
    assert_eq!(
        machine.host_donate_hypervisor(page(3), 1),
        Ok(()),
        "the hypervisor still has table pages for ownership changes"
    );
}

#[test]
fn a_failed_iommu_revocation_leaves_the_pages_with_the_host_and_skips_the_firmware_call() {
    for error in [
        mem_protect::DeviceAccessError::OutOfTableMemory,
        mem_protect::DeviceAccessError::InvalidationFailed,
    ] {
        let mut backing = Backing::new(16, 2, 16);
        let (mut machine, mut pools) =
            support::machine(&mut backing, ErratumMitigation::FirmwareDvmSync);
        populated(&mut machine, &mut pools);
        let guests_before = snapshot(&machine).guests;
        machine.platform_mut().take();
        machine.platform_mut().device_answer = Some(error);
        assert_eq!(
            machine.host_donate_guest(VM, page(0x40), GUEST_BASE + 0x40_0000, 64),
            Err(MemProtectError::DeviceAccess(error))
        );
        assert_eq!(
            machine.host_donate_hypervisor(page(0x100), 3),
            Err(MemProtectError::DeviceAccess(error))
        );
        let events = machine.platform_mut().take();
        assert!(!events.contains(&Event::FirmwareCall), "{events:?}");
        assert!(
            events.contains(&Event::DeviceGranted(page(0x40)..page(0x80))),
            "the rollback gives the devices the pages back: {events:?}"
        );
        assert_eq!(snapshot(&machine).guests, guests_before);
        for index in (0x40..0x80).chain(0x100..0x103) {
            assert_eq!(
                machine.page_ownership(page(index)),
                Ok(PageOwnership::Host),
                "page {index}"
            );
        }
    }
}

#[test]
fn reclaimed_pages_go_back_to_the_devices_after_zeroing() {
    let mut backing = Backing::new(16, 1, 16);
    let (mut machine, mut pools) =
        support::machine(&mut backing, ErratumMitigation::FirmwareDvmSync);
    let vm = machine.create_vm(pools.next()).expect("vm");
    machine
        .host_donate_guest(vm, page(8), GUEST_BASE, 4)
        .expect("donate");
    machine.teardown_vm(vm).expect("teardown");
    machine.platform_mut().take();
    machine
        .reclaim_guest_pages(vm, GUEST_BASE, 4)
        .expect("reclaim");
    let events = machine.platform_mut().take();
    let granted = events
        .iter()
        .position(|event| *event == Event::DeviceGranted(page(8)..page(12)))
        .expect("granted");
    let last_zero = events
        .iter()
        .rposition(|event| matches!(event, Event::ZeroPage(_)))
        .expect("zeroed");
    assert!(
        last_zero < granted,
        "zeroed before the devices see it: {events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|event| matches!(event, Event::DeviceRevoked(_)))
    );
}
