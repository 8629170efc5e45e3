//! Runs the real `mem_protect::MemProtect` transitions on the host and records what they ask of the
//! machine: every TLB maintenance call, the firmware call, and every `observe()` event, in order.
//! The erratum model then replays that recording one step at a time while host CPUs act in between.

use core::ops::Range;

use mem_protect::{
    Component, ErratumMitigation, HypervisorPages, MemProtect, MemProtectError, MemoryLayout,
    PAGE_SIZE, ProtectionEvent, ProtectionPlatform,
};
use stage2::{Entry, Geometry, PagePool, TablePage, TlbEvent, TlbMaintenance, Vmid};

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

/// One run of a transition by the real code.
#[derive(Clone, Debug)]
pub struct Run {
    /// What the code asked of the machine, in order.
    pub steps: Vec<HypervisorStep>,
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
}

impl TlbMaintenance for RecordingPlatform {
    fn invalidate_ipa(&mut self, vmid: Vmid, ipa: u64, level: u8) {
        self.steps
            .push(HypervisorStep::Tlb(TlbEvent::InvalidateIpa {
                vmid,
                ipa,
                level,
            }));
    }
    fn dsb_inner_shareable(&mut self) {
        self.steps
            .push(HypervisorStep::Tlb(TlbEvent::DsbInnerShareable));
    }
    fn invalidate_stage1_for_vmid(&mut self, vmid: Vmid) {
        self.steps
            .push(HypervisorStep::Tlb(TlbEvent::InvalidateStage1ForVmid {
                vmid,
            }));
    }
    fn isb(&mut self) {
        self.steps.push(HypervisorStep::Tlb(TlbEvent::Isb));
    }
}

impl ProtectionPlatform for RecordingPlatform {
    fn firmware_dvm_sync(&mut self) -> Result<(), i64> {
        self.steps.push(HypervisorStep::FirmwareCall);
        if self.firmware_fails { Err(-1) } else { Ok(()) }
    }
    fn zero_page(&mut self, physical_address: u64) {
        self.steps.push(HypervisorStep::ZeroPage(physical_address));
    }
    /// Caches are not part of the model (its memory is coherent): nothing to replay.
    fn clean_to_point_of_coherency(&mut self, _range: core::ops::Range<u64>) {}
    fn observe(&mut self, event: ProtectionEvent) {
        self.steps.push(HypervisorStep::Protection(event));
    }
}

fn page(index: u64) -> u64 {
    DRAM.start + index * PAGE_SIZE
}

fn setup<T>(what: &'static str, result: Result<T, MemProtectError>) -> Result<T, RecordingError> {
    result.map_err(|error| RecordingError::Setup(what, error))
}

/// Builds a fresh machine, brings the model pages into the state the transition starts from, runs
/// the transition with the firmware call answering as told, and returns the set-up mapping and the run.
fn run_once(
    transition: Transition,
    mitigation: ErratumMitigation,
    firmware_fails: bool,
) -> Result<([HostMapping; MODEL_PAGES], Run, Component), RecordingError> {
    let mut host_tables: Box<[TablePage]> = (0..32).map(|_| TablePage::ZEROED).collect();
    let mut guest_tables: Box<[TablePage]> = (0..16).map(|_| TablePage::ZEROED).collect();
    let mut hypervisor_bits = vec![0u8; HypervisorPages::bytes_needed(DRAM.end - DRAM.start)];
    let layout = MemoryLayout {
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
            layout,
            geometry,
            PagePool::new(&mut host_tables),
            &mut hypervisor_bits,
            mitigation,
            RecordingPlatform::default(),
        ),
    )?;
    let pages = [page(0), page(1)];
    // The host touches both pages first: its stage-2 maps them on demand (a 2 MiB block).
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
    machine.platform_mut().steps.clear();
    // Only the transition's own firmware call answers as told; the set-up's calls succeed.
    machine.platform_mut().firmware_fails = firmware_fails;
    let result = match (transition, new_owner) {
        (Transition::HostDonatesToGuest, Component::Guest(vm)) => {
            machine.host_donate_guest(vm, pages[0], 0, 2)
        }
        (Transition::GuestUnsharesPage, Component::Guest(vm)) => {
            machine.guest_unshare_host(vm, 0).map(|_| ())
        }
        _ => machine.host_donate_hypervisor(pages[0], 2),
    };
    let after = pages.map(|address| HostMapping::of(machine.host_stage2().walk(address)));
    let steps = core::mem::take(&mut machine.platform_mut().steps);
    Ok((
        before,
        Run {
            steps,
            after,
            result,
        },
        new_owner,
    ))
}

/// Records `transition` as the real code runs it under `mitigation`.
pub fn record(
    transition: Transition,
    mitigation: ErratumMitigation,
) -> Result<RecordedTransition, RecordingError> {
    let (before, success, new_owner) = run_once(transition, mitigation, false)?;
    let (_, failure, _) = run_once(transition, mitigation, true)?;
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
        pages: [page(0), page(1)],
        before,
        success,
        failure,
        new_owner,
    })
}
