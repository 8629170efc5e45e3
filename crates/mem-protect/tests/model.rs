//! Random hypercall sequences against a small abstract model (page → owner and state). After every
//! step the tables, their annotations and the model must agree, and the recorded TLB maintenance,
//! firmware calls and ownership changes must come in the required order.

mod support;

use std::collections::BTreeMap;

use mem_protect::{
    ErratumMitigation, HostAbortReason, HostFaultOutcome, HypervisorPageState, MemProtectError,
    PAGE_SIZE, PageOwnership, ProtectionEvent, VmHandle, VmLifecycle,
};
use proptest::prelude::*;
use stage2::{Entry, PageState};
use support::{Backing, DRAM_PAGES, Event, HYPERVISOR, Machine, page};

/// Guest addresses used by the sequences: the first 4 MiB of guest space (two 2 MiB regions).
const GUEST_WINDOW_PAGES: u64 = 1024;
const VMS: usize = 3;
const CASES: u32 = 10_000;

#[derive(Clone, Debug)]
enum Op {
    HostFault(u64),
    ShareHypervisor(u64),
    UnshareHypervisor(u64),
    DonateHypervisor(u64, u64),
    HypervisorDonateHost(u64, u64),
    CreateVm,
    DonateGuest {
        vm: usize,
        page: u64,
        guest_page: u64,
        pages: u64,
    },
    GuestShare {
        vm: usize,
        guest_page: u64,
    },
    GuestUnshare {
        vm: usize,
        guest_page: u64,
    },
    Teardown(usize),
    Reclaim {
        vm: usize,
        guest_page: u64,
        pages: u64,
    },
    FreeVm(usize),
    FirmwareFails(bool),
}

/// A generated step: an operation, or a choice the model turns into one from its current state (so
/// sequences reach shares, unshares and reclaims of pages that really were given).
#[derive(Clone, Debug)]
enum Step {
    Do(Op),
    /// The guest shares one of the pages it was given.
    ShareGivenPage {
        vm: usize,
        pick: usize,
    },
    /// The guest unshares one of the pages it shares.
    UnshareSharedPage {
        vm: usize,
        pick: usize,
    },
    /// The host reclaims a run of a dying VM's pages.
    ReclaimGivenPages {
        vm: usize,
        pick: usize,
        pages: u64,
    },
}

fn page_index() -> impl Strategy<Value = u64> {
    // Mostly a few pages (so later steps find what earlier ones did), sometimes anywhere in DRAM, the
    // hypervisor's pages, or just past the end.
    prop_oneof![6 => 0u64..12, 3 => 0..DRAM_PAGES, 1 => (DRAM_PAGES - 140)..(DRAM_PAGES + 4)]
}

fn page_count() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 1u64..4, 2 => 4u64..100, 1 => Just(512u64), 1 => Just(0u64)]
}

/// Guest pages: mostly the first few, so shares and unshares find donated pages.
fn guest_page() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..8, 1 => 0..GUEST_WINDOW_PAGES]
}

fn step() -> impl Strategy<Value = Step> {
    let op = prop_oneof![
        3 => page_index().prop_map(Op::HostFault),
        2 => page_index().prop_map(Op::ShareHypervisor),
        2 => page_index().prop_map(Op::UnshareHypervisor),
        2 => (page_index(), page_count()).prop_map(|(page, pages)| Op::DonateHypervisor(page, pages)),
        2 => (page_index(), page_count()).prop_map(|(page, pages)| Op::HypervisorDonateHost(page, pages)),
        2 => Just(Op::CreateVm),
        6 => (0..=VMS, page_index(), guest_page(), page_count())
            .prop_map(|(vm, page, guest_page, pages)| Op::DonateGuest { vm, page, guest_page, pages }),
        3 => (0..=VMS, guest_page()).prop_map(|(vm, guest_page)| Op::GuestShare { vm, guest_page }),
        3 => (0..=VMS, guest_page()).prop_map(|(vm, guest_page)| Op::GuestUnshare { vm, guest_page }),
        1 => (0..=VMS).prop_map(Op::Teardown),
        2 => (0..=VMS, guest_page(), page_count()).prop_map(|(vm, guest_page, pages)| Op::Reclaim { vm, guest_page, pages }),
        1 => (0..=VMS).prop_map(Op::FreeVm),
        1 => any::<bool>().prop_map(Op::FirmwareFails),
    ];
    prop_oneof![
        10 => op.prop_map(Step::Do),
        1 => (0..VMS, any::<usize>()).prop_map(|(vm, pick)| Step::ShareGivenPage { vm, pick }),
        1 => (0..VMS, any::<usize>()).prop_map(|(vm, pick)| Step::UnshareSharedPage { vm, pick }),
        1 => (0..VMS, any::<usize>(), 1u64..4).prop_map(|(vm, pick, pages)| Step::ReclaimGivenPages { vm, pick, pages }),
    ]
}

/// One page in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Host,
    SharedWithHypervisor,
    Hypervisor,
    Guest {
        vm: VmHandle,
        guest_address: u64,
        shared: bool,
    },
}

#[derive(Clone, Debug)]
struct ModelVm {
    handle: VmHandle,
    dying: bool,
    /// guest address → host address
    pages: BTreeMap<u64, u64>,
}

#[derive(Clone, Debug)]
struct Model {
    pages: Vec<Owner>,
    vms: Vec<ModelVm>,
    firmware_fails: bool,
    mitigation: ErratumMitigation,
}

/// What the model expects of one operation.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    Ok,
    /// Refused for this reason (the error's variant); nothing may change.
    Refused(&'static str),
}

fn reason(error: &MemProtectError) -> &'static str {
    match error {
        MemProtectError::NotAligned { .. } => "NotAligned",
        MemProtectError::ZeroPages => "ZeroPages",
        MemProtectError::AddressOverflow { .. } => "AddressOverflow",
        MemProtectError::NotMemory { .. } => "NotMemory",
        MemProtectError::UnexpectedState { .. } => "UnexpectedState",
        MemProtectError::GuestAddressOutOfRange { .. } => "GuestAddressOutOfRange",
        MemProtectError::GuestAddressInUse { .. } => "GuestAddressInUse",
        MemProtectError::GuestPageMissing { .. } => "GuestPageMissing",
        MemProtectError::UnknownVm { .. } => "UnknownVm",
        MemProtectError::VmDying { .. } => "VmDying",
        MemProtectError::VmNotDying { .. } => "VmNotDying",
        MemProtectError::VmHasPages { .. } => "VmHasPages",
        MemProtectError::TooManyVms => "TooManyVms",
        MemProtectError::OutOfTableMemory { .. } => "OutOfTableMemory",
        MemProtectError::FirmwareCallFailed { .. } => "FirmwareCallFailed",
        MemProtectError::DeviceAccess(_) => "DeviceAccess",
        MemProtectError::Table(_) => "Table",
    }
}

impl Model {
    fn new(mitigation: ErratumMitigation) -> Self {
        let pages = (0..DRAM_PAGES)
            .map(|index| {
                if HYPERVISOR.contains(&page(index)) {
                    Owner::Hypervisor
                } else {
                    Owner::Host
                }
            })
            .collect();
        Self {
            pages,
            vms: Vec::new(),
            firmware_fails: false,
            mitigation,
        }
    }

    /// The VM an operation names: index `VMS` names no VM at all.
    fn vm(&self, index: usize) -> VmHandle {
        if index >= VMS || self.vms.is_empty() {
            return VmHandle(999);
        }
        self.vms[index % self.vms.len()].handle
    }

    fn vm_mut(&mut self, handle: VmHandle) -> Option<&mut ModelVm> {
        self.vms.iter_mut().find(|vm| vm.handle == handle)
    }

    /// DRAM page indices of a host range, or why the range is refused.
    fn host_range(&self, index: u64, pages: u64) -> Result<std::ops::Range<usize>, &'static str> {
        if pages == 0 {
            return Err("ZeroPages");
        }
        if index + pages > DRAM_PAGES {
            return Err("NotMemory");
        }
        Ok(index as usize..(index + pages) as usize)
    }

    fn all(
        &self,
        range: std::ops::Range<usize>,
        wanted: impl Fn(Owner) -> bool,
    ) -> Result<(), &'static str> {
        if self.pages[range].iter().all(|owner| wanted(*owner)) {
            Ok(())
        } else {
            Err("UnexpectedState")
        }
    }

    fn revocation_result(&self) -> Result<(), &'static str> {
        if self.firmware_fails && self.mitigation == ErratumMitigation::FirmwareDvmSync {
            Err("FirmwareCallFailed")
        } else {
            Ok(())
        }
    }

    fn live(&self, vm: VmHandle) -> Result<&ModelVm, &'static str> {
        match self.vms.iter().find(|candidate| candidate.handle == vm) {
            None => Err("UnknownVm"),
            Some(candidate) if candidate.dying => Err("VmDying"),
            Some(candidate) => Ok(candidate),
        }
    }

    /// Turns the operations that pick from the model's state into concrete ones.
    fn resolve(&self, step: &Step) -> Op {
        let guest_pages = |vm: usize, shared: Option<bool>| -> Vec<u64> {
            let handle = self.vm(vm);
            self.vms
                .iter()
                .filter(|candidate| candidate.handle == handle)
                .flat_map(|candidate| candidate.pages.iter())
                .filter(
                    |(_, address)| match (shared, self.pages[index_of(**address)]) {
                        (None, _) => true,
                        (Some(wanted), Owner::Guest { shared, .. }) => shared == wanted,
                        _ => false,
                    },
                )
                .map(|(guest_address, _)| guest_address / PAGE_SIZE)
                .collect()
        };
        let pick = |pages: Vec<u64>, pick: usize| pages.get(pick % pages.len().max(1)).copied();
        match *step {
            Step::Do(ref op) => op.clone(),
            Step::ShareGivenPage { vm, pick: index } => {
                match pick(guest_pages(vm, Some(false)), index) {
                    Some(guest_page) => Op::GuestShare { vm, guest_page },
                    None => Op::CreateVm,
                }
            }
            Step::UnshareSharedPage { vm, pick: index } => {
                match pick(guest_pages(vm, Some(true)), index) {
                    Some(guest_page) => Op::GuestUnshare { vm, guest_page },
                    None => Op::Teardown(vm),
                }
            }
            Step::ReclaimGivenPages {
                vm,
                pick: index,
                pages,
            } => match pick(guest_pages(vm, None), index) {
                Some(guest_page) => Op::Reclaim {
                    vm,
                    guest_page,
                    pages,
                },
                None => Op::FreeVm(vm),
            },
        }
    }

    /// The model's verdict on `op` (without applying it).
    fn expect(&self, op: &Op) -> Expect {
        let verdict: Result<(), &'static str> = match *op {
            Op::HostFault(_) | Op::FirmwareFails(_) | Op::CreateVm => Ok(()),
            Op::ShareHypervisor(index) => self
                .host_range(index, 1)
                .and_then(|range| self.all(range, |o| o == Owner::Host)),
            Op::UnshareHypervisor(index) => self
                .host_range(index, 1)
                .and_then(|range| self.all(range, |o| o == Owner::SharedWithHypervisor)),
            Op::DonateHypervisor(index, pages) => self
                .host_range(index, pages)
                .and_then(|range| self.all(range, |o| o == Owner::Host))
                .and_then(|()| self.revocation_result()),
            Op::HypervisorDonateHost(index, pages) => {
                self.host_range(index, pages).and_then(|range| {
                    if range.clone().any(|i| HYPERVISOR.contains(&page(i as u64))) {
                        return Err("UnexpectedState");
                    }
                    self.all(range, |o| o == Owner::Hypervisor)
                })
            }
            Op::DonateGuest {
                vm,
                page: index,
                guest_page,
                pages,
            } => self.live(self.vm(vm)).and_then(|model_vm| {
                let range = self.host_range(index, pages)?;
                self.all(range, |o| o == Owner::Host)?;
                let guest = guest_page * PAGE_SIZE;
                if (0..pages).any(|i| model_vm.pages.contains_key(&(guest + i * PAGE_SIZE))) {
                    return Err("GuestAddressInUse");
                }
                self.revocation_result()
            }),
            Op::GuestShare { vm, guest_page } => self.live(self.vm(vm)).and_then(|model_vm| {
                match model_vm.pages.get(&(guest_page * PAGE_SIZE)) {
                    None => Err("GuestPageMissing"),
                    Some(&address) => self.all(index_of(address)..index_of(address) + 1, |o| {
                        matches!(o, Owner::Guest { shared: false, .. })
                    }),
                }
            }),
            Op::GuestUnshare { vm, guest_page } => self.live(self.vm(vm)).and_then(|model_vm| {
                match model_vm.pages.get(&(guest_page * PAGE_SIZE)) {
                    None => Err("GuestPageMissing"),
                    Some(&address) => self
                        .all(index_of(address)..index_of(address) + 1, |o| {
                            matches!(o, Owner::Guest { shared: true, .. })
                        })
                        .and_then(|()| self.revocation_result()),
                }
            }),
            Op::Teardown(vm) => self.live(self.vm(vm)).map(drop),
            Op::Reclaim {
                vm,
                guest_page,
                pages,
            } => {
                match self
                    .vms
                    .iter()
                    .find(|candidate| candidate.handle == self.vm(vm))
                {
                    None => Err("UnknownVm"),
                    Some(candidate) if !candidate.dying => Err("VmNotDying"),
                    Some(_) if pages == 0 => Err("ZeroPages"),
                    Some(candidate) => {
                        let guest = guest_page * PAGE_SIZE;
                        if (0..pages)
                            .all(|i| candidate.pages.contains_key(&(guest + i * PAGE_SIZE)))
                        {
                            Ok(())
                        } else {
                            Err("GuestPageMissing")
                        }
                    }
                }
            }
            Op::FreeVm(vm) => match self
                .vms
                .iter()
                .find(|candidate| candidate.handle == self.vm(vm))
            {
                None => Err("UnknownVm"),
                Some(candidate) if !candidate.dying => Err("VmNotDying"),
                Some(candidate) if !candidate.pages.is_empty() => Err("VmHasPages"),
                Some(_) => Ok(()),
            },
        };
        match verdict {
            Ok(()) => Expect::Ok,
            Err(reason) => Expect::Refused(reason),
        }
    }

    /// Applies a successful `op` (`handle` is what `create_vm` returned).
    fn apply(&mut self, op: &Op, handle: Option<VmHandle>) {
        match *op {
            Op::HostFault(_) => {}
            Op::FirmwareFails(fails) => self.firmware_fails = fails,
            Op::CreateVm => {
                if let Some(handle) = handle {
                    self.vms.push(ModelVm {
                        handle,
                        dying: false,
                        pages: BTreeMap::new(),
                    });
                }
            }
            Op::ShareHypervisor(index) => self.pages[index as usize] = Owner::SharedWithHypervisor,
            Op::UnshareHypervisor(index) => self.pages[index as usize] = Owner::Host,
            Op::DonateHypervisor(index, pages) => {
                self.pages[index as usize..(index + pages) as usize].fill(Owner::Hypervisor)
            }
            Op::HypervisorDonateHost(index, pages) => {
                self.pages[index as usize..(index + pages) as usize].fill(Owner::Host)
            }
            Op::DonateGuest {
                vm,
                page: index,
                guest_page,
                pages,
            } => {
                let handle = self.vm(vm);
                for i in 0..pages {
                    let guest_address = (guest_page + i) * PAGE_SIZE;
                    self.pages[(index + i) as usize] = Owner::Guest {
                        vm: handle,
                        guest_address,
                        shared: false,
                    };
                    if let Some(model_vm) = self.vm_mut(handle) {
                        model_vm.pages.insert(guest_address, page(index + i));
                    }
                }
            }
            Op::GuestShare { vm, guest_page } | Op::GuestUnshare { vm, guest_page } => {
                let shared = matches!(op, Op::GuestShare { .. });
                let handle = self.vm(vm);
                let address = self
                    .vms
                    .iter()
                    .find(|v| v.handle == handle)
                    .and_then(|v| v.pages.get(&(guest_page * PAGE_SIZE)).copied());
                if let Some(address) = address
                    && let Owner::Guest { shared: state, .. } = &mut self.pages[index_of(address)]
                {
                    *state = shared;
                }
            }
            Op::Teardown(vm) => {
                let handle = self.vm(vm);
                if let Some(model_vm) = self.vm_mut(handle) {
                    model_vm.dying = true;
                }
            }
            Op::Reclaim {
                vm,
                guest_page,
                pages,
            } => {
                let handle = self.vm(vm);
                let mut returned = Vec::new();
                if let Some(model_vm) = self.vm_mut(handle) {
                    for i in 0..pages {
                        if let Some(address) =
                            model_vm.pages.remove(&((guest_page + i) * PAGE_SIZE))
                        {
                            returned.push(address);
                        }
                    }
                }
                for address in returned {
                    self.pages[index_of(address)] = Owner::Host;
                }
            }
            Op::FreeVm(vm) => {
                let handle = self.vm(vm);
                self.vms.retain(|candidate| candidate.handle != handle);
            }
        }
    }

    /// Whether `op`, when it succeeds, takes pages away from the host.
    fn revokes(op: &Op) -> bool {
        matches!(
            op,
            Op::DonateHypervisor(..) | Op::DonateGuest { .. } | Op::GuestUnshare { .. }
        )
    }
}

fn index_of(address: u64) -> usize {
    ((address - support::DRAM.start) / PAGE_SIZE) as usize
}

fn run<'a>(
    machine: &mut Machine<'a>,
    pools: &mut Vec<stage2::PagePool<'a>>,
    model: &Model,
    op: &Op,
) -> (
    Result<(), MemProtectError>,
    Option<VmHandle>,
    Option<HostFaultOutcome>,
) {
    match *op {
        Op::HostFault(index) => (Ok(()), None, Some(machine.handle_host_fault(page(index)))),
        Op::FirmwareFails(fails) => {
            machine.platform_mut().firmware_answer = if fails { -1 } else { 0 };
            (Ok(()), None, None)
        }
        Op::CreateVm => match pools.pop() {
            Some(pool) => match machine.create_vm(pool) {
                Ok(handle) => (Ok(()), Some(handle), None),
                Err(error) => (Err(error), None, None),
            },
            None => (Ok(()), None, None),
        },
        Op::ShareHypervisor(index) => (machine.host_share_hypervisor(page(index)), None, None),
        Op::UnshareHypervisor(index) => (machine.host_unshare_hypervisor(page(index)), None, None),
        Op::DonateHypervisor(index, pages) => (
            machine.host_donate_hypervisor(page(index), pages),
            None,
            None,
        ),
        Op::HypervisorDonateHost(index, pages) => (
            machine.hypervisor_donate_host(page(index), pages),
            None,
            None,
        ),
        Op::DonateGuest {
            vm,
            page: index,
            guest_page,
            pages,
        } => {
            let handle = model.vm(vm);
            (
                machine.host_donate_guest(handle, page(index), guest_page * PAGE_SIZE, pages),
                None,
                None,
            )
        }
        Op::GuestShare { vm, guest_page } => {
            let handle = model.vm(vm);
            (
                machine
                    .guest_share_host(handle, guest_page * PAGE_SIZE)
                    .map(drop),
                None,
                None,
            )
        }
        Op::GuestUnshare { vm, guest_page } => {
            let handle = model.vm(vm);
            (
                machine
                    .guest_unshare_host(handle, guest_page * PAGE_SIZE)
                    .map(drop),
                None,
                None,
            )
        }
        Op::Teardown(vm) => {
            let handle = model.vm(vm);
            (machine.teardown_vm(handle), None, None)
        }
        Op::Reclaim {
            vm,
            guest_page,
            pages,
        } => {
            let handle = model.vm(vm);
            (
                machine.reclaim_guest_pages(handle, guest_page * PAGE_SIZE, pages),
                None,
                None,
            )
        }
        Op::FreeVm(vm) => {
            let handle = model.vm(vm);
            match machine.free_vm(handle) {
                Ok(pool) => {
                    pools.push(pool);
                    (Ok(()), None, None)
                }
                Err(error) => (Err(error), None, None),
            }
        }
    }
}

/// Tables, annotations, hypervisor states and the model agree.
fn check_agreement(machine: &Machine<'_>, model: &Model) -> Result<(), TestCaseError> {
    for (index, owner) in model.pages.iter().enumerate() {
        let address = page(index as u64);
        let expected = match *owner {
            Owner::Host => PageOwnership::Host,
            Owner::SharedWithHypervisor => PageOwnership::SharedWithHypervisor,
            Owner::Hypervisor => PageOwnership::Hypervisor,
            Owner::Guest { shared: true, .. } => PageOwnership::SharedByGuest,
            Owner::Guest {
                vm,
                guest_address,
                shared: false,
            } => PageOwnership::Guest { vm, guest_address },
        };
        prop_assert_eq!(
            machine.page_ownership(address),
            Ok(expected),
            "page {:#x}",
            address
        );
        let hypervisor = match owner {
            Owner::Hypervisor => HypervisorPageState::Owned,
            Owner::SharedWithHypervisor => HypervisorPageState::Borrowed,
            _ => HypervisorPageState::NoAccess,
        };
        prop_assert_eq!(
            machine.hypervisor_pages().state(address),
            hypervisor,
            "hypervisor view of {:#x}",
            address
        );
    }
    prop_assert_eq!(machine.vms().count(), model.vms.len());
    for model_vm in &model.vms {
        let vm = machine
            .vm(model_vm.handle)
            .ok_or_else(|| TestCaseError::fail("VM missing"))?;
        let lifecycle = if model_vm.dying {
            VmLifecycle::Dying
        } else {
            VmLifecycle::Live
        };
        prop_assert_eq!(vm.lifecycle(), lifecycle);
        prop_assert_eq!(vm.pages(), model_vm.pages.len() as u64);
        let mut mapped = 0;
        vm.stage2()
            .visit_leaves(0, GUEST_WINDOW_PAGES * 2 * PAGE_SIZE, |leaf| {
                if let Entry::Mapped { .. } = leaf.entry {
                    mapped += leaf.size / PAGE_SIZE;
                }
            })
            .map_err(|error| TestCaseError::fail(format!("{error}")))?;
        prop_assert_eq!(mapped, model_vm.pages.len() as u64, "guest pages mapped");
        for (&guest_address, &address) in &model_vm.pages {
            let shared = matches!(
                model.pages[index_of(address)],
                Owner::Guest { shared: true, .. }
            );
            match vm.stage2().walk(guest_address) {
                Entry::Mapped {
                    output, attributes, ..
                } => {
                    prop_assert_eq!(output, address);
                    let state = if shared {
                        PageState::SharedOwned
                    } else {
                        PageState::Owned
                    };
                    prop_assert_eq!(attributes.state, state);
                }
                other => {
                    return Err(TestCaseError::fail(format!(
                        "guest {guest_address:#x}: {other:?}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The order of one step's events: revocation, then one firmware call (only when mitigating), then the
/// transfer; a reclaimed page is zeroed before the host gets it.
fn check_events(
    events: &[Event],
    op: &Op,
    outcome: &Result<(), MemProtectError>,
    mitigation: ErratumMitigation,
) -> Result<(), TestCaseError> {
    let calls = events
        .iter()
        .filter(|event| **event == Event::FirmwareCall)
        .count();
    let reached_firmware =
        outcome.is_ok() || matches!(outcome, Err(MemProtectError::FirmwareCallFailed { .. }));
    let expected_calls = usize::from(
        Model::revokes(op) && reached_firmware && mitigation == ErratumMitigation::FirmwareDvmSync,
    );
    prop_assert_eq!(
        calls,
        expected_calls,
        "firmware calls for {:?}: {:?}",
        op,
        events
    );
    if outcome.is_err() && !matches!(outcome, Err(MemProtectError::FirmwareCallFailed { .. })) {
        prop_assert!(
            events.is_empty(),
            "a refused call did something: {:?}",
            events
        );
    }
    if Model::revokes(op) && outcome.is_ok() {
        let revoked = events.iter().position(|e| {
            matches!(
                e,
                Event::Protection(ProtectionEvent::HostAccessRevoked { .. })
            )
        });
        let transferred = events.iter().position(|e| {
            matches!(
                e,
                Event::Protection(ProtectionEvent::OwnershipTransferred { .. })
            )
        });
        let call = events.iter().position(|e| *e == Event::FirmwareCall);
        let last_host_tlb = events.iter().rposition(|e| {
            matches!(
                e,
                Event::Tlb(stage2::TlbEvent::InvalidateStage1ForVmid {
                    vmid: stage2::Vmid(0)
                })
            )
        });
        prop_assert!(revoked.is_some() && transferred.is_some());
        prop_assert!(revoked < transferred);
        if let Some(last) = last_host_tlb {
            prop_assert!(
                Some(last) < revoked,
                "host TLB maintenance finishes before the revocation is complete"
            );
        }
        if let Some(call) = call {
            prop_assert!(
                revoked < Some(call) && Some(call) < transferred,
                "{:?}",
                events
            );
        }
    }
    if let (Op::Reclaim { .. }, Ok(())) = (op, outcome) {
        for (position, event) in events.iter().enumerate() {
            if let Event::Protection(ProtectionEvent::OwnershipTransferred { range, .. }) = event {
                for page in range.clone().step_by(PAGE_SIZE as usize) {
                    let zeroed = events[..position].contains(&Event::ZeroPage(page));
                    prop_assert!(zeroed, "page {:#x} handed back before it was zeroed", page);
                }
            }
        }
    }
    Ok(())
}

/// One random sequence: run it against the machine and the model, checking after every step.
fn run_sequence(steps: &[Step], mitigation: ErratumMitigation) -> Result<(), TestCaseError> {
    // A small host pool and small guest pools, so running out of table memory happens too.
    let mut backing = Backing::new(10, VMS, 6);
    let (mut machine, mut vm_pools) = support::machine(&mut backing, mitigation);
    let mut pools: Vec<_> = (0..VMS).map(|_| vm_pools.next()).collect();
    let mut model = Model::new(mitigation);
    for step in steps {
        let op = &model.resolve(step);
        let expected = model.expect(op);
        let before = support::snapshot(&machine);
        let (outcome, handle, fault) = run(&mut machine, &mut pools, &model, op);
        let events = machine.platform_mut().take();
        check_events(&events, op, &outcome, mitigation)?;
        match (&expected, &outcome) {
            (Expect::Ok, Ok(())) => model.apply(op, handle),
            (Expect::Ok, Err(MemProtectError::OutOfTableMemory { .. })) => {
                prop_assert_eq!(
                    support::snapshot(&machine),
                    before,
                    "out of table memory changed something"
                );
            }
            (
                Expect::Refused("FirmwareCallFailed"),
                Err(MemProtectError::FirmwareCallFailed { .. }),
            ) => {}
            (Expect::Refused(reason_expected), Err(error)) => {
                prop_assert_eq!(*reason_expected, reason(error), "{:?}", op);
                prop_assert_eq!(
                    support::snapshot(&machine),
                    before,
                    "refused {:?} changed something",
                    op
                );
            }
            _ => prop_assert!(
                false,
                "{:?}: model expected {:?}, got {:?}",
                op,
                expected,
                outcome
            ),
        }
        if let (Op::HostFault(index), Some(fault)) = (op, fault) {
            let expected_fault = match model.pages.get(*index as usize) {
                None => None,
                Some(Owner::Hypervisor) => {
                    Some(HostFaultOutcome::Abort(HostAbortReason::OwnedByHypervisor))
                }
                Some(Owner::Guest {
                    vm, shared: false, ..
                }) => Some(HostFaultOutcome::Abort(HostAbortReason::OwnedByGuest(*vm))),
                Some(_) => None,
            };
            match expected_fault {
                Some(expected) => prop_assert_eq!(fault, expected),
                None if (*index as usize) < model.pages.len() => prop_assert!(
                    matches!(
                        fault,
                        HostFaultOutcome::Mapped { .. }
                            | HostFaultOutcome::Abort(HostAbortReason::OutOfTableMemory)
                    ),
                    "{:?}",
                    fault
                ),
                None => prop_assert_eq!(fault, HostFaultOutcome::Abort(HostAbortReason::Forbidden)),
            }
        }
        check_agreement(&machine, &model)?;
        let name = format!("{op:?}");
        let name = name.split([' ', '(']).next().unwrap_or_default().to_owned();
        let mut tally = OUTCOMES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = tally.entry(name).or_default();
        if outcome.is_ok() {
            entry.0 += 1
        } else {
            entry.1 += 1
        }
    }
    Ok(())
}

/// Per operation: how many succeeded and how many were refused (shows the sequences reach every case).
static OUTCOMES: std::sync::Mutex<BTreeMap<String, (u64, u64)>> =
    std::sync::Mutex::new(BTreeMap::new());

#[test]
fn random_hypercall_sequences_agree_with_the_model() {
    let config = ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let cases = std::sync::atomic::AtomicU64::new(0);
    let step_count = std::sync::atomic::AtomicU64::new(0);
    let strategy = (proptest::collection::vec(step(), 1..40), any::<bool>());
    let result = runner.run(&strategy, |(sequence, mitigate)| {
        let mitigation = if mitigate {
            ErratumMitigation::FirmwareDvmSync
        } else {
            ErratumMitigation::NotNeeded
        };
        cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        step_count.fetch_add(sequence.len() as u64, std::sync::atomic::Ordering::Relaxed);
        run_sequence(&sequence, mitigation)
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let cases = cases.into_inner();
    assert!(cases >= u64::from(CASES), "ran {cases} cases");
    println!(
        "model-based property test: {cases} random hypercall sequences, {} steps, tables and model agreed after every step",
        step_count.into_inner()
    );
    let tally = OUTCOMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (operation, (succeeded, refused)) in tally.iter() {
        println!("  {operation:<22} {succeeded:>7} succeeded {refused:>7} refused");
        assert!(
            *succeeded > 0,
            "{operation} never succeeded: the generator misses legal cases"
        );
    }
}
