//! The PSCI 1.1 decisions of the EL3 monitor, kept apart from the hardware so they are tested on the
//! host: the per-CPU power state machine ([`PowerTable`]), the `CPU_SUSPEND` power-state format
//! ([`decode_power_state`]) and the Non-secure entry-point check ([`NonSecureMemory`]).
//!
//! The monitor (`firmware/monitor`) holds one [`PowerTable`] behind a spin lock and performs what the
//! table decides (release a CPU from its pen, wait in `WFI`, warm-boot to an entry point).
//!
//! # Power-state format of `CPU_SUSPEND`
//!
//! The extended StateID format (the one `arm_psci::PowerState` decodes), with one state of each kind:
//!
//! | bits    | field      | accepted values                                     |
//! |---------|------------|-----------------------------------------------------|
//! | [27:0]  | StateID    | 0                                                   |
//! | [30]    | StateType  | 0 = standby/retention (WFI at EL3, then return), 1 = power-down (warm boot at the given entry point) |
//! | others  | reserved   | 0                                                   |
//!
//! Anything else is `INVALID_PARAMETERS`. `PSCI_FEATURES(CPU_SUSPEND)` therefore answers 2 (extended
//! format, platform-coordinated mode only).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

use arm_psci::PowerState;

/// The PSCI error codes (PSCI 1.1, table 5), as returned in x0.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum PsciError {
    /// The function or feature is not implemented.
    NotSupported,
    /// An argument is malformed or names something that does not exist.
    InvalidParameters,
    /// The call is not allowed in the current state (e.g. turning off the last CPU).
    Denied,
    /// `CPU_ON` of a CPU that is already on.
    AlreadyOn,
    /// `CPU_ON` of a CPU whose earlier `CPU_ON` has not completed yet.
    OnPending,
    /// The firmware failed internally.
    InternalFailure,
    /// The entry point is not an address the Non-secure world may be entered at.
    InvalidAddress,
}

impl core::fmt::Display for PsciError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        formatter.write_str(match self {
            Self::NotSupported => "NOT_SUPPORTED",
            Self::InvalidParameters => "INVALID_PARAMETERS",
            Self::Denied => "DENIED",
            Self::AlreadyOn => "ALREADY_ON",
            Self::OnPending => "ON_PENDING",
            Self::InternalFailure => "INTERNAL_FAILURE",
            Self::InvalidAddress => "INVALID_ADDRESS",
        })
    }
}

impl core::error::Error for PsciError {}

impl PsciError {
    /// The signed code PSCI defines for this error.
    pub const fn code(self) -> i32 {
        match self {
            Self::NotSupported => -1,
            Self::InvalidParameters => -2,
            Self::Denied => -3,
            Self::AlreadyOn => -4,
            Self::OnPending => -5,
            Self::InternalFailure => -6,
            Self::InvalidAddress => -9,
        }
    }
}

/// Where and with what argument a CPU enters the Non-secure world after `CPU_ON` or a power-down
/// suspend.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct EntryPoint {
    /// Address of the first Non-secure instruction.
    pub address: u64,
    /// The value handed over in x0.
    pub context_id: u64,
}

/// The power state of one CPU as the monitor tracks it.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum CpuPower {
    /// Off (or not yet started): waiting in the monitor's pen for `CPU_ON`.
    Off,
    /// `CPU_ON` accepted; the CPU has not yet left the pen.
    OnPending(EntryPoint),
    /// Running.
    On,
    /// In a standby/retention `CPU_SUSPEND` (`WFI` at EL3); returns to the caller.
    Standby,
    /// In a power-down `CPU_SUSPEND`; warm-boots at the entry point when woken.
    PoweredDown(EntryPoint),
}

/// The answers of `AFFINITY_INFO`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum AffinityState {
    /// At least one core of the affinity instance is on (suspended cores count as on).
    On,
    /// Every core is off.
    Off,
    /// A core is on its way on.
    OnPending,
}

impl AffinityState {
    /// The value PSCI defines for this state.
    pub const fn code(self) -> i32 {
        match self {
            Self::On => 0,
            Self::Off => 1,
            Self::OnPending => 2,
        }
    }
}

/// The two kinds of `CPU_SUSPEND`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SuspendKind {
    /// Standby or retention: the core keeps its state, the call returns.
    Standby,
    /// Power-down: the core loses its state and warm-boots at the entry point given to the call.
    PowerDown,
}

/// Decodes the `power_state` argument of `CPU_SUSPEND` (format in the crate docs): the field split is
/// `arm_psci::PowerState`'s; this platform offers StateID 0 of each type only.
pub fn decode_power_state(power_state: u32) -> Result<SuspendKind, PsciError> {
    match PowerState::try_from(power_state) {
        Ok(PowerState::StandbyOrRetention(0)) => Ok(SuspendKind::Standby),
        Ok(PowerState::PowerDown(0)) => Ok(SuspendKind::PowerDown),
        _ => Err(PsciError::InvalidParameters),
    }
}

/// The physical window in which Non-secure entry points may lie.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct NonSecureMemory {
    /// First valid address.
    pub start: u64,
    /// One past the last valid address.
    pub end: u64,
}

impl NonSecureMemory {
    /// Accepts an entry point that is 4-byte aligned and inside the window.
    pub fn check_entry_point(&self, address: u64) -> Result<(), PsciError> {
        if address.is_multiple_of(4) && (self.start..self.end).contains(&address) {
            Ok(())
        } else {
            Err(PsciError::InvalidAddress)
        }
    }
}

/// The power state of every CPU of the platform.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PowerTable<const CPUS: usize> {
    cpus: [CpuPower; CPUS],
    present: usize,
}

impl<const CPUS: usize> Default for PowerTable<CPUS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CPUS: usize> PowerTable<CPUS> {
    /// A table in which no CPU is present yet.
    pub const fn new() -> Self {
        Self {
            cpus: [CpuPower::Off; CPUS],
            present: 0,
        }
    }

    /// Records how many CPUs exist (at most `CPUS`) and that `boot_cpu` runs.
    pub fn boot(&mut self, present: usize, boot_cpu: usize) {
        self.present = present.min(CPUS);
        self.cpus = [CpuPower::Off; CPUS];
        if boot_cpu < self.present {
            self.cpus[boot_cpu] = CpuPower::On;
        }
    }

    /// How many CPUs exist.
    pub fn present(&self) -> usize {
        self.present
    }

    /// The state of `cpu` (`Off` for a CPU that does not exist).
    pub fn state(&self, cpu: usize) -> CpuPower {
        self.existing(Some(cpu))
            .map_or(CpuPower::Off, |cpu| self.cpus[cpu])
    }

    fn existing(&self, cpu: Option<usize>) -> Option<usize> {
        cpu.filter(|&cpu| cpu < self.present)
    }

    /// `CPU_ON`: `target` is `None` when the MPIDR names no CPU of the platform.
    pub fn cpu_on(
        &mut self,
        target: Option<usize>,
        entry: EntryPoint,
        memory: &NonSecureMemory,
    ) -> Result<(), PsciError> {
        let target = self.existing(target).ok_or(PsciError::InvalidParameters)?;
        memory.check_entry_point(entry.address)?;
        match self.cpus[target] {
            CpuPower::Off => {
                self.cpus[target] = CpuPower::OnPending(entry);
                Ok(())
            }
            CpuPower::OnPending(_) => Err(PsciError::OnPending),
            CpuPower::On | CpuPower::Standby | CpuPower::PoweredDown(_) => {
                Err(PsciError::AlreadyOn)
            }
        }
    }

    /// Called by a CPU waiting in the pen: takes its pending `CPU_ON` request, if any, and marks the CPU
    /// on.
    pub fn take_pending_entry(&mut self, cpu: usize) -> Option<EntryPoint> {
        let cpu = self.existing(Some(cpu))?;
        match self.cpus[cpu] {
            CpuPower::OnPending(entry) => {
                self.cpus[cpu] = CpuPower::On;
                Some(entry)
            }
            CpuPower::Off | CpuPower::On | CpuPower::Standby | CpuPower::PoweredDown(_) => None,
        }
    }

    /// `CPU_OFF` by the running `cpu`. Refused (`DENIED`) for the last CPU that is not off: nothing
    /// could ever turn the system back on.
    pub fn cpu_off(&mut self, cpu: usize) -> Result<(), PsciError> {
        let cpu = self.existing(Some(cpu)).ok_or(PsciError::InternalFailure)?;
        if self.cpus[cpu] != CpuPower::On {
            return Err(PsciError::InternalFailure);
        }
        let others_alive = (0..self.present)
            .filter(|&other| other != cpu)
            .any(|other| self.cpus[other] != CpuPower::Off);
        if !others_alive {
            return Err(PsciError::Denied);
        }
        self.cpus[cpu] = CpuPower::Off;
        Ok(())
    }

    /// `CPU_SUSPEND` by the running `cpu`. A power-down suspend needs the entry point the CPU resumes
    /// at; it is checked like a `CPU_ON` entry point.
    pub fn suspend(
        &mut self,
        cpu: usize,
        kind: SuspendKind,
        entry: EntryPoint,
        memory: &NonSecureMemory,
    ) -> Result<(), PsciError> {
        let cpu = self.existing(Some(cpu)).ok_or(PsciError::InternalFailure)?;
        if self.cpus[cpu] != CpuPower::On {
            return Err(PsciError::InternalFailure);
        }
        self.cpus[cpu] = match kind {
            SuspendKind::Standby => CpuPower::Standby,
            SuspendKind::PowerDown => {
                memory.check_entry_point(entry.address)?;
                CpuPower::PoweredDown(entry)
            }
        };
        Ok(())
    }

    /// The suspended `cpu` woke up: it is on again. Returns where it continues after a power-down
    /// suspend (`None` after standby: the call returns to the caller).
    pub fn wake(&mut self, cpu: usize) -> Option<EntryPoint> {
        let cpu = self.existing(Some(cpu))?;
        match self.cpus[cpu] {
            CpuPower::Standby => {
                self.cpus[cpu] = CpuPower::On;
                None
            }
            CpuPower::PoweredDown(entry) => {
                self.cpus[cpu] = CpuPower::On;
                Some(entry)
            }
            CpuPower::Off | CpuPower::OnPending(_) | CpuPower::On => None,
        }
    }

    /// `AFFINITY_INFO` for affinity level 0 (the only level this platform reports).
    pub fn affinity_info(
        &self,
        target: Option<usize>,
        lowest_affinity_level: u64,
    ) -> Result<AffinityState, PsciError> {
        if lowest_affinity_level != 0 {
            return Err(PsciError::InvalidParameters);
        }
        let target = self.existing(target).ok_or(PsciError::InvalidParameters)?;
        Ok(match self.cpus[target] {
            CpuPower::Off => AffinityState::Off,
            CpuPower::OnPending(_) => AffinityState::OnPending,
            CpuPower::On | CpuPower::Standby | CpuPower::PoweredDown(_) => AffinityState::On,
        })
    }
}

#[cfg(test)]
mod tests;
