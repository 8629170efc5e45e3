//! Runs the real `mem_protect::MemProtect` transitions on the host and records what they ask of the
//! machine: every TLB maintenance call, the firmware call, and every `observe()` event, in order.
//! The erratum model then replays that recording one step at a time while host CPUs act in between.

use core::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use mem_protect::{
    Component, ErratumMitigation, HypervisorPageState, HypervisorPages, MemProtect,
    MemProtectError, MemoryLayout, PAGE_SIZE, ProtectionEvent, ProtectionPlatform,
};
use stage2::{
    Entry, Geometry, PagePool, PageState, Stage2Table, TablePage, TlbEvent, TlbMaintenance, Vmid,
};

/// The physical memory of the recorded machine (4 MiB of DRAM, the last 512 KiB the hypervisor's).
const DRAM: Range<u64> = 0x4000_0000..0x4040_0000;
const HYPERVISOR: Range<u64> = 0x4038_0000..0x4040_0000;
const DEVICE: Range<u64> = 0x0800_0000..0x4000_0000;
/// Secure flash and secure RAM: never the host's.
const FORBIDDEN: [Range<u64>; 2] = [0x0000_0000..0x0400_0000, 0x0e00_0000..0x0f00_0000];

/// How many pages the models follow.
pub const MODEL_PAGES: usize = 2;

/// One thing the hypervisor code asked of the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HypervisorStep {
    /// A TLB maintenance call (`TLBI`, `DSB ISH`, `ISB`) through `stage2::TlbMaintenance`.
    Tlb(TlbEvent),
    /// `ProtectionPlatform::firmware_dvm_sync`: the CPU-service call `0x81000010`.
    FirmwareCall,
    /// `ProtectionPlatform::zero_page`.
    ZeroPage(u64),
    /// `ProtectionPlatform::observe`.
    Protection(ProtectionEvent),
}

/// The ownership transitions in which the host loses access to pages (BRIEF §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transition {
    /// `host_donate_guest` of both model pages to a new protected VM.
    HostDonatesToGuest,
    /// `guest_unshare_host` of page 0, which the guest had shared with the host; page 1 stays the
    /// host's own, mapped throughout.
    GuestUnsharesPage,
    /// `host_donate_hypervisor` of both model pages.
    HostDonatesToHypervisor,
}

impl Transition {
    /// Every transition the models cover.
    pub const ALL: [Self; 3] = [
        Self::HostDonatesToGuest,
        Self::GuestUnsharesPage,
        Self::HostDonatesToHypervisor,
    ];

    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::HostDonatesToGuest => "host donates 2 pages to a guest",
            Self::GuestUnsharesPage => "guest unshares a page",
            Self::HostDonatesToHypervisor => "host donates 2 pages to the hypervisor",
        }
    }
}

/// How the model pages sit in the host's stage-2 when the transition starts, and so which
/// mappings the real code breaks and at which level it invalidates them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Pages 0 and 1 of one 2 MiB block the host mapped as a block on demand: the block is split
    /// and invalidated at level 2.
    SameBlock,
    /// Pages 0 and 1 mapped as 4 KiB pages (level 3): another page of the block went to the
    /// hypervisor first, so the host's faults mapped pages; each is invalidated by page.
    PageMappings,
    /// The last page of one 2 MiB block and the first of the next: the range crosses two blocks.
    /// The first is mapped as a block; the second holds the hypervisor's memory, so the host's
    /// fault maps a 4 KiB page there (one level-2 and one level-3 invalidation).
    AcrossBlocks,
    /// A whole 2 MiB block (512 pages) mapped as a block and transferred as one; the model follows
    /// its first and last pages.
    WholeBlock,
}

impl Layout {
    /// Every layout.
    pub const ALL: [Self; 4] = [
        Self::SameBlock,
        Self::PageMappings,
        Self::AcrossBlocks,
        Self::WholeBlock,
    ];

    /// The physical address of each model page.
    pub fn pages(self) -> [u64; MODEL_PAGES] {
        match self {
            Self::SameBlock | Self::PageMappings => [page(0), page(1)],
            Self::AcrossBlocks => [page(511), page(512)],
            Self::WholeBlock => [page(0), page(511)],
        }
    }

    /// Pages the transition covers, from the first model page.
    fn page_count(self) -> u64 {
        match self {
            Self::WholeBlock => 512,
            _ => 2,
        }
    }

    /// A short name for scenario names.
    pub fn slug(self) -> &'static str {
        match self {
            Self::SameBlock => "",
            Self::PageMappings => "-l3",
            Self::AcrossBlocks => "-across-blocks",
            Self::WholeBlock => "-2m-block",
        }
    }

    /// In words.
    pub fn describe(self) -> &'static str {
        match self {
            Self::SameBlock => "2 pages of one 2 MiB block mapping",
            Self::PageMappings => "2 pages mapped at level 3 (4 KiB), invalidated by page",
            Self::AcrossBlocks => "2 pages across two 2 MiB blocks (a block and a page mapping)",
            Self::WholeBlock => "a whole 2 MiB block mapping (512 pages)",
        }
    }
}

/// What the host's stage-2 says about a model page, read with `Stage2Table::walk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostMapping {
    /// A valid entry: the host's accesses translate.
    Mapped,
    /// An invalid, unannotated entry: the host's next access faults and the hypervisor maps the page
    /// on demand (it is the host's).
    MappedOnDemand,
    /// An annotated entry: the page belongs to someone else; the host takes an abort.
    Annotated,
}

impl HostMapping {
    fn of(entry: Entry) -> Self {
        match entry {
            Entry::Mapped { .. } => Self::Mapped,
            Entry::Unmapped => Self::MappedOnDemand,
            Entry::Annotated(_) => Self::Annotated,
        }
    }

    /// Whether the host can issue an access to the page.
    pub fn host_may_access(self) -> bool {
        !matches!(self, Self::Annotated)
    }
}

/// What the new owner's own tables say about a model page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OwnerAccess {
    /// The new owner has no access (guest: no valid stage-2 entry; hypervisor: no page state).
    None,
    /// The new owner maps the page but shares it with the host (guest `SharedOwned`; hypervisor
    /// `Borrowed`).
    Shared,
    /// The new owner has the page to itself (guest `Owned` mapping; hypervisor `Owned`).
    Exclusive,
}

/// Who may access a model page, read from the real tables: the host's stage-2 (walk), the new
/// owner's (the guest's stage-2 walk, or the hypervisor's page states).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PageView {
    /// The host's stage-2.
    pub host: HostMapping,
    /// The new owner's access.
    pub owner: OwnerAccess,
}

impl PageView {
    /// Whether the page is the new owner's alone (the point of no return of a transfer).
    pub fn transferred(self) -> bool {
        self.owner == OwnerAccess::Exclusive
    }
}

/// One run of a transition by the real code.
#[derive(Clone, Debug)]
pub struct Run {
    /// What the code asked of the machine, in order.
    pub steps: Vec<HypervisorStep>,
    /// `views[k]`: the tables, read when the code made its call number `k` (so after every table
    /// write that came before it); `views[steps.len()]` is the state after the call returned.
    pub views: Vec<[PageView; MODEL_PAGES]>,
    /// The host's stage-2 for each model page after the call.
    pub after: [HostMapping; MODEL_PAGES],
    /// What the call returned.
    pub result: Result<(), MemProtectError>,
}

/// A transition recorded twice: once with the firmware call succeeding, once failing.
#[derive(Clone, Debug)]
pub struct RecordedTransition {
    /// Which transition.
    pub transition: Transition,
    /// The mitigation the real code ran with.
    pub mitigation: ErratumMitigation,
    /// Physical address of each model page.
    pub pages: [u64; MODEL_PAGES],
    /// The host's stage-2 for each model page before the call.
    pub before: [HostMapping; MODEL_PAGES],
    /// The tables before the call.
    pub before_views: [PageView; MODEL_PAGES],
    /// The run in which `firmware_dvm_sync` answered `Ok`.
    pub success: Run,
    /// The run in which it answered `Err(-1)` (identical to `success` when no call is made).
    pub failure: Run,
    /// Who gets the pages.
    pub new_owner: Component,
}

/// Why a recording could not be made (the machine set-up failed: a bug in this crate or below).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordingError {
    /// A set-up call of the real code failed.
    Setup(&'static str, MemProtectError),
    /// The two runs differ before the firmware call (they must not: the call is the only input).
    RunsDiverge,
}

impl core::fmt::Display for RecordingError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Setup(what, error) => write!(formatter, "set-up step {what} failed: {error:?}"),
            Self::RunsDiverge => write!(
                formatter,
                "the recorded runs diverge before the firmware call"
            ),
        }
    }
}

impl core::error::Error for RecordingError {}

/// The machine as the real code sees it: records instead of executing.
#[derive(Debug, Default)]
struct RecordingPlatform {
    steps: Vec<HypervisorStep>,
    firmware_fails: bool,
    /// Stop the code (unwind out of it) when it makes this call, so that the tables can be read
    /// as they are at that point.
    stop_at: Option<usize>,
}

/// The payload of the unwinding that stops the code at a call (`resume_unwind`: no panic hook, no
/// message).
struct StopHere;

impl RecordingPlatform {
    fn push(&mut self, step: HypervisorStep) {
        if self.stop_at == Some(self.steps.len()) {
            resume_unwind(Box::new(StopHere));
        }
        self.steps.push(step);
    }
}

impl TlbMaintenance for RecordingPlatform {
    fn invalidate_ipa(&mut self, vmid: Vmid, ipa: u64, level: u8) {
        self.push(HypervisorStep::Tlb(TlbEvent::InvalidateIpa {
            vmid,
            ipa,
            level,
        }));
    }
    fn dsb_inner_shareable(&mut self) {
        self.push(HypervisorStep::Tlb(TlbEvent::DsbInnerShareable));
    }
    fn invalidate_stage1_for_vmid(&mut self, vmid: Vmid) {
        self.push(HypervisorStep::Tlb(TlbEvent::InvalidateStage1ForVmid {
            vmid,
        }));
    }
    fn isb(&mut self) {
        self.push(HypervisorStep::Tlb(TlbEvent::Isb));
    }
}

impl ProtectionPlatform for RecordingPlatform {
    fn firmware_dvm_sync(&mut self) -> Result<(), i64> {
        self.push(HypervisorStep::FirmwareCall);
        if self.firmware_fails { Err(-1) } else { Ok(()) }
    }
    fn zero_page(&mut self, physical_address: u64) {
        self.push(HypervisorStep::ZeroPage(physical_address));
    }
    /// Caches are not part of the model (its memory is coherent): nothing to replay.
    fn clean_to_point_of_coherency(&mut self, _range: core::ops::Range<u64>) {}
    fn observe(&mut self, event: ProtectionEvent) {
        self.push(HypervisorStep::Protection(event));
    }
}

fn page(index: u64) -> u64 {
    DRAM.start + index * PAGE_SIZE
}

fn setup<T>(what: &'static str, result: Result<T, MemProtectError>) -> Result<T, RecordingError> {
    result.map_err(|error| RecordingError::Setup(what, error))
}

/// What one run up to a stop (or to the end) left behind.
struct PartialRun {
    before: [HostMapping; MODEL_PAGES],
    before_views: [PageView; MODEL_PAGES],
    steps: Vec<HypervisorStep>,
    /// The tables where the run stopped (or after it returned).
    views: [PageView; MODEL_PAGES],
    after: [HostMapping; MODEL_PAGES],
    /// `None` when stopped before returning.
    result: Option<Result<(), MemProtectError>>,
    new_owner: Component,
}

/// The new owner's access to `page` (guest page `guest_page` for a guest).
fn owner_access<P: stage2::TablePool>(
    machine: &MemProtect<'_, P, RecordingPlatform>,
    new_owner: Component,
    page: u64,
    guest_page: u64,
) -> OwnerAccess {
    match new_owner {
        Component::Guest(vm) => {
            guest_access(machine.vm(vm).map(|vm| vm.stage2()), page, guest_page)
        }
        Component::Hypervisor => match machine.hypervisor_pages().state(page) {
            HypervisorPageState::Owned => OwnerAccess::Exclusive,
            HypervisorPageState::Borrowed => OwnerAccess::Shared,
            HypervisorPageState::NoAccess => OwnerAccess::None,
        },
        Component::Host => OwnerAccess::None,
    }
}

fn guest_access<P: stage2::TablePool>(
    table: Option<&Stage2Table<P>>,
    page: u64,
    guest_page: u64,
) -> OwnerAccess {
    match table.map(|table| table.walk(guest_page)) {
        Some(Entry::Mapped {
            output, attributes, ..
        }) if output == page => match attributes.state {
            PageState::Owned => OwnerAccess::Exclusive,
            _ => OwnerAccess::Shared,
        },
        _ => OwnerAccess::None,
    }
}

fn views<P: stage2::TablePool>(
    machine: &MemProtect<'_, P, RecordingPlatform>,
    new_owner: Component,
    pages: [u64; MODEL_PAGES],
) -> [PageView; MODEL_PAGES] {
    core::array::from_fn(|index| PageView {
        host: HostMapping::of(machine.host_stage2().walk(pages[index])),
        owner: owner_access(
            machine,
            new_owner,
            pages[index],
            pages[index].saturating_sub(pages[0]),
        ),
    })
}

/// Builds a fresh machine, brings the model pages into the state the transition starts from, runs
/// the transition with the firmware call answering as told, stopping it at call `stop_at` if
/// given, and returns what the tables say then.
fn run_once(
    transition: Transition,
    layout: Layout,
    mitigation: ErratumMitigation,
    firmware_fails: bool,
    stop_at: Option<usize>,
) -> Result<PartialRun, RecordingError> {
    let mut host_tables: Box<[TablePage]> = (0..32).map(|_| TablePage::ZEROED).collect();
    let mut guest_tables: Box<[TablePage]> = (0..16).map(|_| TablePage::ZEROED).collect();
    let mut hypervisor_bits = vec![0u8; HypervisorPages::bytes_needed(DRAM.end - DRAM.start)];
    let memory_layout = MemoryLayout {
        dram: DRAM,
        hypervisor: HYPERVISOR,
        forbidden: &FORBIDDEN,
        devices: std::slice::from_ref(&DEVICE),
    };
    let geometry = match Geometry::from_pa_range(0b0010) {
        Ok(geometry) => geometry,
        Err(error) => {
            return Err(RecordingError::Setup(
                "geometry",
                MemProtectError::Table(error),
            ));
        }
    };
    let mut machine = setup(
        "MemProtect::new",
        MemProtect::new(
            memory_layout,
            geometry,
            PagePool::new(&mut host_tables),
            &mut hypervisor_bits,
            mitigation,
            RecordingPlatform::default(),
        ),
    )?;
    let pages = layout.pages();
    if layout == Layout::PageMappings {
        // Another page of the block goes to the hypervisor first: the host's stage-2 can no
        // longer map the block as a whole, so the faults below map 4 KiB pages.
        setup(
            "host_donate_hypervisor (split)",
            machine.host_donate_hypervisor(page(8), 1),
        )?;
    }
    // The host touches the pages first: its stage-2 maps them on demand (a 2 MiB block each,
    // or pages).
    for address in pages {
        machine.handle_host_fault(address);
    }
    let new_owner = match transition {
        Transition::HostDonatesToGuest => {
            let vm = setup(
                "create_vm",
                machine.create_vm(PagePool::new(&mut guest_tables)),
            )?;
            Component::Guest(vm)
        }
        Transition::GuestUnsharesPage => {
            let vm = setup(
                "create_vm",
                machine.create_vm(PagePool::new(&mut guest_tables)),
            )?;
            setup(
                "host_donate_guest",
                machine.host_donate_guest(vm, pages[0], 0, 1),
            )?;
            setup("guest_share_host", machine.guest_share_host(vm, 0))?;
            Component::Guest(vm)
        }
        Transition::HostDonatesToHypervisor => Component::Hypervisor,
    };
    let before = pages.map(|address| HostMapping::of(machine.host_stage2().walk(address)));
    let before_views = views(&machine, new_owner, pages);
    machine.platform_mut().steps.clear();
    // Only the transition's own firmware call answers as told; the set-up's calls succeed.
    machine.platform_mut().firmware_fails = firmware_fails;
    machine.platform_mut().stop_at = stop_at;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        run_transition(
            &mut machine,
            transition,
            new_owner,
            pages[0],
            layout.page_count(),
        )
    }));
    let result = match outcome {
        Ok(result) => Some(result),
        Err(payload) if payload.is::<StopHere>() => None,
        Err(payload) => resume_unwind(payload),
    };
    machine.platform_mut().stop_at = None;
    let after = pages.map(|address| HostMapping::of(machine.host_stage2().walk(address)));
    let views = views(&machine, new_owner, pages);
    let steps = core::mem::take(&mut machine.platform_mut().steps);
    Ok(PartialRun {
        before,
        before_views,
        steps,
        views,
        after,
        result,
        new_owner,
    })
}

fn run_transition<P: stage2::TablePool>(
    machine: &mut MemProtect<'_, P, RecordingPlatform>,
    transition: Transition,
    new_owner: Component,
    first: u64,
    count: u64,
) -> Result<(), MemProtectError> {
    match (transition, new_owner) {
        (Transition::HostDonatesToGuest, Component::Guest(vm)) => {
            machine.host_donate_guest(vm, first, 0, count)
        }
        (Transition::GuestUnsharesPage, Component::Guest(vm)) => {
            machine.guest_unshare_host(vm, 0).map(|_| ())
        }
        _ => machine.host_donate_hypervisor(first, count),
    }
}

/// Runs the transition to the end, then once more per call it made, stopped at that call, to read
/// the tables as they were at each call.
fn run_with_views(
    transition: Transition,
    layout: Layout,
    mitigation: ErratumMitigation,
    firmware_fails: bool,
) -> Result<(PartialRun, Run), RecordingError> {
    let full = run_once(transition, layout, mitigation, firmware_fails, None)?;
    let mut views = Vec::with_capacity(full.steps.len() + 1);
    for stop in 0..full.steps.len() {
        let stopped = run_once(transition, layout, mitigation, firmware_fails, Some(stop))?;
        if stopped.result.is_some() || full.steps.get(..stop) != Some(&stopped.steps[..]) {
            return Err(RecordingError::RunsDiverge);
        }
        views.push(stopped.views);
    }
    views.push(full.views);
    let run = Run {
        steps: full.steps.clone(),
        views,
        after: full.after,
        result: full.result.unwrap_or(Ok(())),
    };
    Ok((full, run))
}

/// Records `transition` of two pages of one 2 MiB block ([`Layout::SameBlock`]) as the real code
/// runs it under `mitigation`.
pub fn record(
    transition: Transition,
    mitigation: ErratumMitigation,
) -> Result<RecordedTransition, RecordingError> {
    record_layout(transition, Layout::SameBlock, mitigation)
}

/// Records `transition` with the model pages laid out as `layout`.
pub fn record_layout(
    transition: Transition,
    layout: Layout,
    mitigation: ErratumMitigation,
) -> Result<RecordedTransition, RecordingError> {
    let (full, success) = run_with_views(transition, layout, mitigation, false)?;
    let (_, failure) = run_with_views(transition, layout, mitigation, true)?;
    let call = success
        .steps
        .iter()
        .position(|step| *step == HypervisorStep::FirmwareCall);
    let prefix = call.map_or(success.steps.len(), |index| index + 1);
    if failure.steps.get(..prefix) != success.steps.get(..prefix) {
        return Err(RecordingError::RunsDiverge);
    }
    Ok(RecordedTransition {
        transition,
        mitigation,
        pages: layout.pages(),
        before: full.before,
        before_views: full.before_views,
        success,
        failure,
        new_owner: full.new_owner,
    })
}
