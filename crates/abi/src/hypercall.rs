//! Host → hypervisor hypercalls: SMC64 fast calls (made with `HVC`) in the vendor-specific
//! hypervisor owner range, numbered from `0xC600_0020` so they never collide with pKVM's guest
//! calls ([`crate::guest`], `0xC600_0000`–`0xC600_001F`).
//!
//! Caller: the host kernel at EL1; callee: the hypervisor at EL2, which must treat every register
//! as hostile. [`HostHypercall::decode`] checks everything that can be checked without knowing the
//! system's state (widths, zero counts, ranges that overflow the 52-bit physical address space,
//! alignment); the hypervisor checks the rest (ownership, VM state) and answers with a
//! [`HypercallError`].
//!
//! Return registers ([`Results`], `x0`–`x6`): `x0` is 0 on success or a negative
//! [`HypercallError`] code; on success `x1`... carry the call's [`HypercallOutput`]:
//! `VM_CREATE` → `x1` = VM handle; `VCPU_RUN` → `x1`–`x6` = [`VcpuExit`];
//! `QUERY_STATUS` → `x1`, `x2` = [`ProtectedModeStatus`]; the others return nothing.
//!
//! | ID            | call                   | x1       | x2             | x3             | x4       |
//! |---------------|------------------------|----------|----------------|----------------|----------|
//! | `0xC600_0020` | `SHARE_HYP`            | pfn      |                |                |          |
//! | `0xC600_0021` | `UNSHARE_HYP`          | pfn      |                |                |          |
//! | `0xC600_0022` | `VM_CREATE`            | vcpus    | metadata pfn   | metadata pages |          |
//! | `0xC600_0023` | `VCPU_INIT`            | vm       | vcpu           | entry IPA      | argument |
//! | `0xC600_0024` | `DONATE_GUEST`         | vm       | pfn            | gfn            | pages    |
//! | `0xC600_0025` | `VCPU_RUN`             | vm       | vcpu           |                |          |
//! | `0xC600_0026` | `VM_TEARDOWN`          | vm       |                |                |          |
//! | `0xC600_0027` | `RECLAIM_GUEST_PAGES`  | vm       | gfn            | pages          |          |
//! | `0xC600_0028` | `VM_FREE`              | vm       |                |                |          |
//! | `0xC600_0029` | `QUERY_STATUS`         |          |                |                |          |
//!
//! Registers a call does not use are ignored.
//!
//! ```
//! use abi::hypercall::{self, Gfn, HostHypercall, HypercallError, HypercallOutput, Pfn, VmHandle};
//! use abi::smccc::FunctionId;
//!
//! // Host side: encode, make the HVC (here: pretend), decode the result.
//! let call = HostHypercall::DonateGuest { vm: VmHandle(1), pfn: Pfn(0x40200), gfn: Gfn(0x80000), pages: 16 };
//! let (function_id, args) = call.encode();
//! // Hypervisor side: decode the hostile registers, act, encode the outcome.
//! let decoded = HostHypercall::decode(FunctionId(function_id), &args).map_err(HypercallError::from);
//! assert_eq!(decoded, Ok(call));
//! let results = hypercall::encode_result(Ok(HypercallOutput::Nothing));
//! assert_eq!(call.decode_result(&results), Ok(HypercallOutput::Nothing));
//! ```

use crate::smccc::{Arguments, FunctionId};
use crate::{DecodeError, argument, arguments};
use core::fmt;

/// `SHARE_HYP`: share a host page with the hypervisor.
pub const SHARE_HYP: u32 = 0xC600_0020;
/// `UNSHARE_HYP`: end a `SHARE_HYP`.
pub const UNSHARE_HYP: u32 = 0xC600_0021;
/// `VM_CREATE`: create a protected VM from donated metadata pages; returns its handle.
pub const VM_CREATE: u32 = 0xC600_0022;
/// `VCPU_INIT`: set a vCPU's entry point and first argument.
pub const VCPU_INIT: u32 = 0xC600_0023;
/// `DONATE_GUEST`: donate a range of host pages to a VM at a guest frame.
pub const DONATE_GUEST: u32 = 0xC600_0024;
/// `VCPU_RUN`: run a vCPU until it exits; returns the exit reason.
pub const VCPU_RUN: u32 = 0xC600_0025;
/// `VM_TEARDOWN`: start tearing a VM down (it never runs again).
pub const VM_TEARDOWN: u32 = 0xC600_0026;
/// `RECLAIM_GUEST_PAGES`: return a dying VM's pages to the host, zeroed.
pub const RECLAIM_GUEST_PAGES: u32 = 0xC600_0027;
/// `VM_FREE`: finish a teardown; the metadata pages go back to the host.
pub const VM_FREE: u32 = 0xC600_0028;
/// `QUERY_STATUS`: is protected mode on, and if not, why.
pub const QUERY_STATUS: u32 = 0xC600_0029;

/// Function IDs reserved for host hypercalls (the ones above and future ones).
pub const HOST_HYPERCALL_RANGE: core::ops::RangeInclusive<u32> = 0xC600_0020..=0xC600_00FF;

/// Whether `function_id` is in [`HOST_HYPERCALL_RANGE`].
pub const fn owns(function_id: FunctionId) -> bool {
    let value = function_id.without_sve_hint().value();
    value >= *HOST_HYPERCALL_RANGE.start() && value <= *HOST_HYPERCALL_RANGE.end()
}

/// Size of the pages hypercalls count in: 4 KiB.
pub use crate::PAGE_SIZE;
/// Frame numbers (physical and guest) are below this: 52-bit addresses in 4 KiB pages.
pub const FRAME_LIMIT: u64 = 1 << 40;

/// A host physical page frame number: the physical address divided by [`PAGE_SIZE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pfn(pub u64);

impl Pfn {
    /// The physical address of the frame.
    pub const fn address(self) -> u64 {
        self.0.wrapping_mul(PAGE_SIZE)
    }

    /// The frame at a page-aligned physical address below the 52-bit limit.
    pub const fn from_address(address: u64) -> Option<Self> {
        if !address.is_multiple_of(PAGE_SIZE) || address / PAGE_SIZE >= FRAME_LIMIT {
            return None;
        }
        Some(Self(address / PAGE_SIZE))
    }
}

/// A guest frame number: the guest physical address (IPA) divided by [`PAGE_SIZE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gfn(pub u64);

impl Gfn {
    /// The IPA of the frame.
    pub const fn address(self) -> u64 {
        self.0.wrapping_mul(PAGE_SIZE)
    }

    /// The frame at a page-aligned IPA below the 52-bit limit.
    pub const fn from_address(address: u64) -> Option<Self> {
        if !address.is_multiple_of(PAGE_SIZE) || address / PAGE_SIZE >= FRAME_LIMIT {
            return None;
        }
        Some(Self(address / PAGE_SIZE))
    }
}

/// A protected VM, as the hypervisor names it to the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VmHandle(pub u32);

/// A decoded host hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostHypercall {
    /// Share the page with the hypervisor (the host keeps access).
    ShareHyp {
        /// The page.
        pfn: Pfn,
    },
    /// Stop sharing the page with the hypervisor.
    UnshareHyp {
        /// The page.
        pfn: Pfn,
    },
    /// Create a protected VM. Its metadata pages are donated to the hypervisor until `VM_FREE`.
    VmCreate {
        /// Number of vCPUs (at least 1).
        vcpus: u32,
        /// First metadata page.
        metadata_pfn: Pfn,
        /// Number of metadata pages (at least 1).
        metadata_pages: u64,
    },
    /// Set a vCPU's entry point (IPA, 4-byte aligned) and the value of its `x0`.
    VcpuInit {
        /// The VM.
        vm: VmHandle,
        /// vCPU index.
        vcpu: u32,
        /// Where the vCPU starts.
        entry_ipa: u64,
        /// The vCPU's `x0` at entry.
        argument: u64,
    },
    /// Donate `pages` host pages from `pfn` to the VM, mapped from `gfn`.
    DonateGuest {
        /// The VM.
        vm: VmHandle,
        /// First host page.
        pfn: Pfn,
        /// First guest frame.
        gfn: Gfn,
        /// Number of pages (at least 1).
        pages: u64,
    },
    /// Run a vCPU until it exits.
    VcpuRun {
        /// The VM.
        vm: VmHandle,
        /// vCPU index.
        vcpu: u32,
    },
    /// Start tearing the VM down: it never runs again; its pages can then be reclaimed.
    VmTeardown {
        /// The VM.
        vm: VmHandle,
    },
    /// Return the pages behind `pages` guest frames from `gfn` of a dying VM to the host, zeroed.
    /// Named by guest frame: the hypervisor finds each host page in the VM's own stage-2, which
    /// also knows the pages the guest still shares (the host's view has no record of those).
    ReclaimGuestPages {
        /// The VM.
        vm: VmHandle,
        /// First guest frame.
        gfn: Gfn,
        /// Number of pages (at least 1).
        pages: u64,
    },
    /// Finish the teardown: the VM's metadata pages go back to the host; the handle dies.
    VmFree {
        /// The VM.
        vm: VmHandle,
    },
    /// Ask whether protected mode is on.
    QueryStatus,
}

fn u32_argument(args: &Arguments, register: u8) -> Result<u32, DecodeError> {
    u32::try_from(argument(args, register)).map_err(|_| DecodeError::OutOfRange { register })
}

fn vm_argument(args: &Arguments, register: u8) -> Result<VmHandle, DecodeError> {
    u32_argument(args, register).map(VmHandle)
}

fn frame_argument(args: &Arguments, register: u8) -> Result<u64, DecodeError> {
    let frame = argument(args, register);
    if frame < FRAME_LIMIT {
        Ok(frame)
    } else {
        Err(DecodeError::OutOfRange { register })
    }
}

/// A page count of at least 1 such that every start frame given stays below [`FRAME_LIMIT`].
fn pages_argument(args: &Arguments, register: u8, starts: &[u64]) -> Result<u64, DecodeError> {
    let pages = argument(args, register);
    let fits = starts
        .iter()
        .all(|start| pages <= FRAME_LIMIT.saturating_sub(*start));
    if pages != 0 && fits {
        Ok(pages)
    } else {
        Err(DecodeError::OutOfRange { register })
    }
}

impl HostHypercall {
    /// Decodes a host hypercall; never panics.
    pub fn decode(function_id: FunctionId, args: &Arguments) -> Result<Self, DecodeError> {
        Ok(match function_id.without_sve_hint().value() {
            SHARE_HYP => Self::ShareHyp {
                pfn: Pfn(frame_argument(args, 1)?),
            },
            UNSHARE_HYP => Self::UnshareHyp {
                pfn: Pfn(frame_argument(args, 1)?),
            },
            VM_CREATE => {
                let vcpus = u32_argument(args, 1)?;
                if vcpus == 0 {
                    return Err(DecodeError::OutOfRange { register: 1 });
                }
                let metadata_pfn = frame_argument(args, 2)?;
                Self::VmCreate {
                    vcpus,
                    metadata_pfn: Pfn(metadata_pfn),
                    metadata_pages: pages_argument(args, 3, &[metadata_pfn])?,
                }
            }
            VCPU_INIT => {
                let vm = vm_argument(args, 1)?;
                let vcpu = u32_argument(args, 2)?;
                let entry_ipa = argument(args, 3);
                if !entry_ipa.is_multiple_of(4) {
                    return Err(DecodeError::Misaligned { register: 3 });
                }
                if entry_ipa >= FRAME_LIMIT * PAGE_SIZE {
                    return Err(DecodeError::OutOfRange { register: 3 });
                }
                Self::VcpuInit {
                    vm,
                    vcpu,
                    entry_ipa,
                    argument: argument(args, 4),
                }
            }
            DONATE_GUEST => {
                let vm = vm_argument(args, 1)?;
                let pfn = frame_argument(args, 2)?;
                let gfn = frame_argument(args, 3)?;
                Self::DonateGuest {
                    vm,
                    pfn: Pfn(pfn),
                    gfn: Gfn(gfn),
                    pages: pages_argument(args, 4, &[pfn, gfn])?,
                }
            }
            VCPU_RUN => Self::VcpuRun {
                vm: vm_argument(args, 1)?,
                vcpu: u32_argument(args, 2)?,
            },
            VM_TEARDOWN => Self::VmTeardown {
                vm: vm_argument(args, 1)?,
            },
            RECLAIM_GUEST_PAGES => {
                let vm = vm_argument(args, 1)?;
                let gfn = frame_argument(args, 2)?;
                Self::ReclaimGuestPages {
                    vm,
                    gfn: Gfn(gfn),
                    pages: pages_argument(args, 3, &[gfn])?,
                }
            }
            VM_FREE => Self::VmFree {
                vm: vm_argument(args, 1)?,
            },
            QUERY_STATUS => Self::QueryStatus,
            _ => return Err(DecodeError::UnknownFunction(function_id)),
        })
    }

    /// The function ID of this call.
    pub const fn function_id(&self) -> u32 {
        match self {
            Self::ShareHyp { .. } => SHARE_HYP,
            Self::UnshareHyp { .. } => UNSHARE_HYP,
            Self::VmCreate { .. } => VM_CREATE,
            Self::VcpuInit { .. } => VCPU_INIT,
            Self::DonateGuest { .. } => DONATE_GUEST,
            Self::VcpuRun { .. } => VCPU_RUN,
            Self::VmTeardown { .. } => VM_TEARDOWN,
            Self::ReclaimGuestPages { .. } => RECLAIM_GUEST_PAGES,
            Self::VmFree { .. } => VM_FREE,
            Self::QueryStatus => QUERY_STATUS,
        }
    }

    /// The function ID and argument registers of this call, for `smccc::hvc64`.
    pub fn encode(&self) -> (u32, Arguments) {
        let args = match *self {
            Self::ShareHyp { pfn } | Self::UnshareHyp { pfn } => arguments(&[pfn.0]),
            Self::VmCreate {
                vcpus,
                metadata_pfn,
                metadata_pages,
            } => arguments(&[vcpus.into(), metadata_pfn.0, metadata_pages]),
            Self::VcpuInit {
                vm,
                vcpu,
                entry_ipa,
                argument,
            } => arguments(&[vm.0.into(), vcpu.into(), entry_ipa, argument]),
            Self::DonateGuest {
                vm,
                pfn,
                gfn,
                pages,
            } => arguments(&[vm.0.into(), pfn.0, gfn.0, pages]),
            Self::VcpuRun { vm, vcpu } => arguments(&[vm.0.into(), vcpu.into()]),
            Self::VmTeardown { vm } | Self::VmFree { vm } => arguments(&[vm.0.into()]),
            Self::ReclaimGuestPages { vm, gfn, pages } => arguments(&[vm.0.into(), gfn.0, pages]),
            Self::QueryStatus => arguments(&[]),
        };
        (self.function_id(), args)
    }

    /// Decodes the return registers of this call (as the host does after `HVC`).
    pub fn decode_result(&self, results: &Results) -> Result<HypercallOutput, HypercallFailure> {
        let x0 = results[0];
        if x0 != 0 {
            return Err(match HypercallError::from_register(x0) {
                Some(error) => HypercallFailure::Error(error),
                None => HypercallFailure::UnknownStatus(x0),
            });
        }
        let output = match self {
            Self::VmCreate { .. } => u32::try_from(results[1])
                .map(|handle| HypercallOutput::Vm(VmHandle(handle)))
                .map_err(|_| DecodeError::OutOfRange { register: 1 }),
            Self::VcpuRun { .. } => {
                let mut exit = [0; VcpuExit::REGISTERS];
                exit.copy_from_slice(&results[1..]);
                VcpuExit::from_registers(&exit).map(HypercallOutput::Exit)
            }
            Self::QueryStatus => ProtectedModeStatus::from_registers([results[1], results[2]])
                .map(HypercallOutput::Status),
            Self::ShareHyp { .. }
            | Self::UnshareHyp { .. }
            | Self::VcpuInit { .. }
            | Self::DonateGuest { .. }
            | Self::VmTeardown { .. }
            | Self::ReclaimGuestPages { .. }
            | Self::VmFree { .. } => Ok(HypercallOutput::Nothing),
        };
        output.map_err(HypercallFailure::MalformedResult)
    }
}

/// Why a hypercall failed. Each reason has a fixed negative code, returned in `x0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HypercallError {
    /// -1: no such hypercall (same value as SMCCC `NOT_SUPPORTED`).
    NotSupported,
    /// -2: an argument is malformed (e.g. reserved bits set).
    InvalidArgument,
    /// -3: an address is not aligned as the call requires.
    NotAligned,
    /// -4: a value is out of range: zero or absurd page count, a range past the end of memory,
    /// MMIO, or memory that belongs to the monitor or the hypervisor.
    OutOfRange,
    /// -5: the caller does not own a page of the range.
    NotOwned,
    /// -6: a page is owned by the caller but not in the state the call needs (e.g. shared, or
    /// not shared when unsharing).
    IllegalTransition,
    /// -7: the hypervisor's pool of table pages is exhausted; nothing was changed.
    NoMemory,
    /// -8: no VM has this handle.
    UnknownVm,
    /// -9: the VM has no vCPU with this index.
    UnknownVcpu,
    /// -10: the vCPU cannot run: not initialised, or the VM is being torn down.
    VmNotRunnable,
    /// -11: the VM is not in the lifecycle state the call needs (e.g. reclaim before teardown,
    /// free before every page is reclaimed).
    WrongVmState,
    /// -12: the vCPU was already initialised.
    AlreadyInitialised,
    /// -13: a fixed limit is reached (number of VMs, vCPUs per VM).
    LimitReached,
    /// -14: the vCPU is running on another CPU; try again.
    Busy,
    /// -15: the firmware's erratum 4193714 call failed; the operation was rolled back.
    FirmwareCallFailed,
    /// -16: protected mode is off (see `QUERY_STATUS`); protected-VM calls are refused.
    ProtectedModeDisabled,
}

impl HypercallError {
    /// Every error, in code order.
    pub const ALL: [HypercallError; 16] = [
        Self::NotSupported,
        Self::InvalidArgument,
        Self::NotAligned,
        Self::OutOfRange,
        Self::NotOwned,
        Self::IllegalTransition,
        Self::NoMemory,
        Self::UnknownVm,
        Self::UnknownVcpu,
        Self::VmNotRunnable,
        Self::WrongVmState,
        Self::AlreadyInitialised,
        Self::LimitReached,
        Self::Busy,
        Self::FirmwareCallFailed,
        Self::ProtectedModeDisabled,
    ];

    /// The negative code.
    pub const fn code(self) -> i64 {
        match self {
            Self::NotSupported => -1,
            Self::InvalidArgument => -2,
            Self::NotAligned => -3,
            Self::OutOfRange => -4,
            Self::NotOwned => -5,
            Self::IllegalTransition => -6,
            Self::NoMemory => -7,
            Self::UnknownVm => -8,
            Self::UnknownVcpu => -9,
            Self::VmNotRunnable => -10,
            Self::WrongVmState => -11,
            Self::AlreadyInitialised => -12,
            Self::LimitReached => -13,
            Self::Busy => -14,
            Self::FirmwareCallFailed => -15,
            Self::ProtectedModeDisabled => -16,
        }
    }

    /// The value for `x0`.
    pub const fn to_register(self) -> u64 {
        self.code() as u64
    }

    /// The error whose code is in `x0`, if any.
    pub const fn from_register(x0: u64) -> Option<Self> {
        let mut index = 0;
        while index < Self::ALL.len() {
            if Self::ALL[index].to_register() == x0 {
                return Some(Self::ALL[index]);
            }
            index += 1;
        }
        None
    }
}

impl fmt::Display for HypercallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::NotSupported => "not supported",
            Self::InvalidArgument => "invalid argument",
            Self::NotAligned => "address not aligned",
            Self::OutOfRange => "out of range",
            Self::NotOwned => "page not owned by the caller",
            Self::IllegalTransition => "page not in the required state",
            Self::NoMemory => "hypervisor table pool exhausted",
            Self::UnknownVm => "unknown VM",
            Self::UnknownVcpu => "unknown vCPU",
            Self::VmNotRunnable => "vCPU not runnable",
            Self::WrongVmState => "VM not in the required state",
            Self::AlreadyInitialised => "vCPU already initialised",
            Self::LimitReached => "limit reached",
            Self::Busy => "busy",
            Self::FirmwareCallFailed => "erratum 4193714 firmware call failed",
            Self::ProtectedModeDisabled => "protected mode disabled",
        };
        write!(f, "{text} ({})", self.code())
    }
}

impl core::error::Error for HypercallError {}

impl From<HypercallError> for u64 {
    fn from(error: HypercallError) -> u64 {
        error.to_register()
    }
}

impl From<HypercallError> for i64 {
    fn from(error: HypercallError) -> i64 {
        error.code()
    }
}

impl TryFrom<u64> for HypercallError {
    type Error = crate::smccc::UnknownReturnCode;

    fn try_from(x0: u64) -> Result<Self, Self::Error> {
        Self::from_register(x0).ok_or(crate::smccc::UnknownReturnCode(x0))
    }
}

impl From<DecodeError> for HypercallError {
    fn from(error: DecodeError) -> Self {
        match error {
            DecodeError::UnknownFunction(_) => Self::NotSupported,
            DecodeError::ReservedBitsSet { .. } => Self::InvalidArgument,
            DecodeError::OutOfRange { .. } => Self::OutOfRange,
            DecodeError::Misaligned { .. } => Self::NotAligned,
        }
    }
}

/// Number of return registers a hypercall uses (`x0`–`x6`).
pub const RESULT_REGISTERS: usize = 7;
/// Return registers `x0`–`x6` of a hypercall.
pub type Results = [u64; RESULT_REGISTERS];

/// What a successful hypercall returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HypercallOutput {
    /// No value.
    Nothing,
    /// `VM_CREATE`: the new VM's handle.
    Vm(VmHandle),
    /// `VCPU_RUN`: why the vCPU stopped.
    Exit(VcpuExit),
    /// `QUERY_STATUS`.
    Status(ProtectedModeStatus),
}

/// Encodes a hypercall's outcome into its return registers (the hypervisor's side).
pub fn encode_result(result: Result<HypercallOutput, HypercallError>) -> Results {
    let mut results = [0; RESULT_REGISTERS];
    match result {
        Err(error) => results[0] = error.to_register(),
        Ok(HypercallOutput::Nothing) => {}
        Ok(HypercallOutput::Vm(vm)) => results[1] = vm.0.into(),
        Ok(HypercallOutput::Exit(exit)) => results[1..].copy_from_slice(&exit.to_registers()),
        Ok(HypercallOutput::Status(status)) => {
            let [x1, x2] = status.to_registers();
            results[1] = x1;
            results[2] = x2;
        }
    }
    results
}

/// Why the host could not get a value from a hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HypercallFailure {
    /// The hypervisor refused the call.
    Error(HypercallError),
    /// `x0` held neither 0 nor a known error code.
    UnknownStatus(u64),
    /// `x0` was 0 but the output registers do not decode.
    MalformedResult(DecodeError),
}

/// Why a vCPU stopped running (`VCPU_RUN`'s output, in `x1`–`x6`: `x1` the reason code, the rest
/// its details; unused registers zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VcpuExit {
    /// Reason 1: a host interrupt arrived; handle it and run the vCPU again.
    Interrupted,
    /// Reason 2: the guest made a call the hypervisor passes to the host (`x2` ID, `x3`–`x6` args).
    GuestHypercall {
        /// The guest's function ID.
        function_id: u32,
        /// The guest's `x1`–`x4`.
        arguments: [u64; 4],
    },
    /// Reason 3: the guest shared the page at `ipa` with the host (`MEM_SHARE` done).
    MemoryShared {
        /// Guest physical address of the page.
        ipa: u64,
    },
    /// Reason 4: the guest stopped sharing the page at `ipa`; the host has lost it.
    MemoryUnshared {
        /// Guest physical address of the page.
        ipa: u64,
    },
    /// Reason 5: the guest accessed an IPA with no memory behind it.
    DataAbort {
        /// Faulting guest physical address.
        ipa: u64,
        /// Write (true) or read.
        write: bool,
    },
    /// Reason 6: the guest called PSCI `SYSTEM_OFF`.
    SystemOff,
    /// Reason 7: the guest called PSCI `SYSTEM_RESET`.
    SystemReset,
    /// Reason 8: an exit the hypervisor does not handle; `syndrome` is `ESR_EL2`.
    Unknown {
        /// `ESR_EL2` of the exception.
        syndrome: u64,
    },
}

impl VcpuExit {
    /// Number of registers an exit uses (`x1`–`x6`).
    pub const REGISTERS: usize = 6;

    /// Encodes into `x1`–`x6`.
    pub const fn to_registers(&self) -> [u64; Self::REGISTERS] {
        match *self {
            Self::Interrupted => [1, 0, 0, 0, 0, 0],
            Self::GuestHypercall {
                function_id,
                arguments: [a, b, c, d],
            } => [2, function_id as u64, a, b, c, d],
            Self::MemoryShared { ipa } => [3, ipa, 0, 0, 0, 0],
            Self::MemoryUnshared { ipa } => [4, ipa, 0, 0, 0, 0],
            Self::DataAbort { ipa, write } => [5, ipa, write as u64, 0, 0, 0],
            Self::SystemOff => [6, 0, 0, 0, 0, 0],
            Self::SystemReset => [7, 0, 0, 0, 0, 0],
            Self::Unknown { syndrome } => [8, syndrome, 0, 0, 0, 0],
        }
    }

    /// Decodes `x1`–`x6`. Register numbers in errors are the real ones (`x1`...).
    pub fn from_registers(registers: &[u64; Self::REGISTERS]) -> Result<Self, DecodeError> {
        let [reason, first, second, ..] = *registers;
        // Registers from x<used+1> on must be zero.
        let unused_zero = |used: usize| match registers[used..].iter().position(|&r| r != 0) {
            Some(offset) => Err(DecodeError::ReservedBitsSet {
                register: u8::try_from(used + offset + 1).unwrap_or(u8::MAX),
            }),
            None => Ok(()),
        };
        match reason {
            1 => unused_zero(1).map(|()| Self::Interrupted),
            2 => Ok(Self::GuestHypercall {
                function_id: u32::try_from(first)
                    .map_err(|_| DecodeError::OutOfRange { register: 2 })?,
                arguments: [registers[2], registers[3], registers[4], registers[5]],
            }),
            3 => unused_zero(2).map(|()| Self::MemoryShared { ipa: first }),
            4 => unused_zero(2).map(|()| Self::MemoryUnshared { ipa: first }),
            5 => {
                let write = match second {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::OutOfRange { register: 3 }),
                };
                unused_zero(3).map(|()| Self::DataAbort { ipa: first, write })
            }
            6 => unused_zero(1).map(|()| Self::SystemOff),
            7 => unused_zero(1).map(|()| Self::SystemReset),
            8 => unused_zero(2).map(|()| Self::Unknown { syndrome: first }),
            _ => Err(DecodeError::OutOfRange { register: 1 }),
        }
    }
}

/// Whether protected mode is on (`QUERY_STATUS`'s output: `x1` code, `x2` detail).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtectedModeStatus {
    /// Code 0: protected VMs can be created.
    Enabled,
    /// Code 1: a CPU is affected by erratum 4193714 and the firmware's workaround call answered
    /// `firmware_result` (non-zero: missing, or refused): protected mode refused to start.
    ErratumFirmwareMissing {
        /// The firmware call's `x0`.
        firmware_result: u64,
    },
    /// Code 2: the hypervisor failed to initialise for another reason (`detail` is
    /// hypervisor-defined, for logs).
    InitialisationFailed {
        /// Hypervisor-defined detail.
        detail: u64,
    },
}

impl fmt::Display for ProtectedModeStatus {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Enabled => formatter.write_str("on"),
            Self::ErratumFirmwareMissing { firmware_result } => write!(
                formatter,
                "refused: a CPU needs the erratum 4193714 firmware call and the firmware answered {}",
                firmware_result as i64
            ),
            Self::InitialisationFailed { detail } => {
                write!(
                    formatter,
                    "refused: the hypervisor failed to initialise (detail {detail:#x})"
                )
            }
        }
    }
}

impl ProtectedModeStatus {
    /// Encodes into `x1`, `x2`.
    pub const fn to_registers(self) -> [u64; 2] {
        match self {
            Self::Enabled => [0, 0],
            Self::ErratumFirmwareMissing { firmware_result } => [1, firmware_result],
            Self::InitialisationFailed { detail } => [2, detail],
        }
    }

    /// Decodes `x1`, `x2`.
    pub const fn from_registers(registers: [u64; 2]) -> Result<Self, DecodeError> {
        match registers {
            [0, 0] => Ok(Self::Enabled),
            [0, _] => Err(DecodeError::ReservedBitsSet { register: 2 }),
            [1, firmware_result] => Ok(Self::ErratumFirmwareMissing { firmware_result }),
            [2, detail] => Ok(Self::InitialisationFailed { detail }),
            _ => Err(DecodeError::OutOfRange { register: 1 }),
        }
    }

    /// Whether protected VMs can be created.
    pub const fn is_enabled(self) -> bool {
        matches!(self, Self::Enabled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smccc::{ARGUMENT_REGISTERS, CallType, Convention, Owner};
    use crate::test_support::any_arguments;
    use proptest::prelude::*;

    const VM: VmHandle = VmHandle(0x1000);

    fn every_call() -> [(u32, Arguments, HostHypercall); 10] {
        [
            (
                0xC600_0020,
                arguments(&[0x4_0000]),
                HostHypercall::ShareHyp { pfn: Pfn(0x4_0000) },
            ),
            (
                0xC600_0021,
                arguments(&[0x4_0000]),
                HostHypercall::UnshareHyp { pfn: Pfn(0x4_0000) },
            ),
            (
                0xC600_0022,
                arguments(&[4, 0x4_1000, 3]),
                HostHypercall::VmCreate {
                    vcpus: 4,
                    metadata_pfn: Pfn(0x4_1000),
                    metadata_pages: 3,
                },
            ),
            (
                0xC600_0023,
                arguments(&[0x1000, 3, 0x8008_0000, u64::MAX]),
                HostHypercall::VcpuInit {
                    vm: VM,
                    vcpu: 3,
                    entry_ipa: 0x8008_0000,
                    argument: u64::MAX,
                },
            ),
            (
                0xC600_0024,
                arguments(&[0x1000, 0x4_2000, 0x8_0000, 512]),
                HostHypercall::DonateGuest {
                    vm: VM,
                    pfn: Pfn(0x4_2000),
                    gfn: Gfn(0x8_0000),
                    pages: 512,
                },
            ),
            (
                0xC600_0025,
                arguments(&[0x1000, 0]),
                HostHypercall::VcpuRun { vm: VM, vcpu: 0 },
            ),
            (
                0xC600_0026,
                arguments(&[0x1000]),
                HostHypercall::VmTeardown { vm: VM },
            ),
            (
                0xC600_0027,
                arguments(&[0x1000, 0x4_2000, 512]),
                HostHypercall::ReclaimGuestPages {
                    vm: VM,
                    gfn: Gfn(0x4_2000),
                    pages: 512,
                },
            ),
            (
                0xC600_0028,
                arguments(&[0x1000]),
                HostHypercall::VmFree { vm: VM },
            ),
            (0xC600_0029, arguments(&[]), HostHypercall::QueryStatus),
        ]
    }

    #[test]
    fn every_call_decodes_and_encodes() {
        for (id, args, call) in every_call() {
            assert_eq!(
                HostHypercall::decode(FunctionId(id), &args),
                Ok(call),
                "{id:#x}"
            );
            assert_eq!(call.encode(), (id, args));
            let function = FunctionId(id);
            assert_eq!(function.call_type(), CallType::Fast);
            assert_eq!(function.convention(), Convention::Smc64);
            assert_eq!(function.owner(), Owner::VendorHypervisor);
            assert!(owns(function));
            // Never a guest call.
            assert!(crate::guest::GuestCall::decode(function, &args).is_err());
        }
    }

    #[test]
    fn unused_registers_are_ignored() {
        for (id, args, call) in every_call() {
            let mut noisy = args;
            let (_, encoded) = call.encode();
            let used = encoded
                .iter()
                .rposition(|&r| r != 0)
                .map_or(0, |last| last + 1);
            for register in noisy.iter_mut().skip(used.max(4)) {
                *register = u64::MAX;
            }
            assert_eq!(HostHypercall::decode(FunctionId(id), &noisy), Ok(call));
        }
    }

    #[test]
    fn malformed_calls_table() {
        let last_frame = FRAME_LIMIT - 1;
        // (ID, arguments, error, hypervisor answer)
        let table: [(u32, Arguments, DecodeError, HypercallError); 17] = [
            (
                0xC600_0020,
                arguments(&[FRAME_LIMIT]),
                DecodeError::OutOfRange { register: 1 },
                HypercallError::OutOfRange,
            ),
            (
                0xC600_0021,
                arguments(&[u64::MAX]),
                DecodeError::OutOfRange { register: 1 },
                HypercallError::OutOfRange,
            ),
            (
                0xC600_0022,
                arguments(&[0, 1, 1]),
                DecodeError::OutOfRange { register: 1 },
                HypercallError::OutOfRange,
            ),
            (
                0xC600_0022,
                arguments(&[1 << 32, 1, 1]),
                DecodeError::OutOfRange { register: 1 },
                HypercallError::OutOfRange,
            ),
            (
                0xC600_0022,
                arguments(&[1, 1, 0]),
                DecodeError::OutOfRange { register: 3 },
                HypercallError::OutOfRange,
            ),
            (
                0xC600_0022,
                arguments(&[1, last_frame, 2]),
                DecodeError::OutOfRange { register: 3 },
                HypercallError::OutOfRange,
            ),
            (
                0xC600_0023,
                arguments(&[1 << 32, 0, 0]),
                DecodeError::OutOfRange { register: 1 },
                HypercallError::OutOfRange,
            ),
            (
                0xC600_0023,
                arguments(&[1, 1 << 32, 0]),
                DecodeError::OutOfRange { register: 2 },
                HypercallError::OutOfRange,
            ),
            (
                0xC600_0023,
                arguments(&[1, 0, 0x8000_0002]),
                DecodeError::Misaligned { register: 3 },
                HypercallError::NotAligned,
            ),
            (
                0xC600_0023,
                arguments(&[1, 0, 1 << 52]),
                DecodeError::OutOfRange { register: 3 },
                HypercallError::OutOfRange,
            ),
            (
                0xC600_0024,
                arguments(&[1, 1, 1, 0]),
                DecodeError::OutOfRange { register: 4 },
                HypercallError::OutOfRange,
            ),
            (
                0xC600_0024,
                arguments(&[1, 1, last_frame, 2]),
                DecodeError::OutOfRange { register: 4 },
                HypercallError::OutOfRange,
            ),
            (
                0xC600_0024,
                arguments(&[1, 1, 1, u64::MAX]),
                DecodeError::OutOfRange { register: 4 },
                HypercallError::OutOfRange,
            ),
            (
                0xC600_0025,
                arguments(&[1, u64::MAX]),
                DecodeError::OutOfRange { register: 2 },
                HypercallError::OutOfRange,
            ),
            (
                0xC600_0027,
                arguments(&[1, 1, 0]),
                DecodeError::OutOfRange { register: 3 },
                HypercallError::OutOfRange,
            ),
            (
                0xC600_0028,
                arguments(&[u64::MAX]),
                DecodeError::OutOfRange { register: 1 },
                HypercallError::OutOfRange,
            ),
            (
                0xC600_002A,
                arguments(&[]),
                DecodeError::UnknownFunction(FunctionId(0xC600_002A)),
                HypercallError::NotSupported,
            ),
        ];
        for (id, args, error, answer) in table {
            assert_eq!(
                HostHypercall::decode(FunctionId(id), &args),
                Err(error),
                "{id:#x} {args:x?}"
            );
            assert_eq!(HypercallError::from(error), answer);
        }
        // The SMC32 form of a hypercall does not exist.
        assert!(HostHypercall::decode(FunctionId(0x8600_0020), &arguments(&[1])).is_err());
        // The largest range that fits is accepted.
        assert_eq!(
            HostHypercall::decode(FunctionId(DONATE_GUEST), &arguments(&[1, 0, last_frame, 1])),
            Ok(HostHypercall::DonateGuest {
                vm: VmHandle(1),
                pfn: Pfn(0),
                gfn: Gfn(last_frame),
                pages: 1
            })
        );
    }

    #[test]
    fn error_codes_are_fixed_distinct_and_negative() {
        for (index, error) in HypercallError::ALL.iter().enumerate() {
            let expected = -i64::try_from(index + 1).unwrap_or(i64::MAX);
            assert_eq!(error.code(), expected, "{error:?}");
            assert_eq!(HypercallError::try_from(error.to_register()), Ok(*error));
            assert_eq!(u64::from(*error), expected as u64);
        }
        assert_eq!(
            HypercallError::NotSupported.to_register(),
            crate::smccc::ReturnCode::NotSupported.to_register()
        );
        for unknown in [0, 1, (-17i64) as u64, 0xFFFF_FFFF] {
            assert_eq!(HypercallError::from_register(unknown), None, "{unknown:#x}");
        }
    }

    #[test]
    fn exits_round_trip() {
        let exits = [
            VcpuExit::Interrupted,
            VcpuExit::GuestHypercall {
                function_id: 0xC600_0005,
                arguments: [1, 2, 3, u64::MAX],
            },
            VcpuExit::MemoryShared { ipa: 0x8000_1000 },
            VcpuExit::MemoryUnshared { ipa: 0x8000_1000 },
            VcpuExit::DataAbort {
                ipa: 0x9000_0000,
                write: true,
            },
            VcpuExit::DataAbort {
                ipa: 0x9000_0000,
                write: false,
            },
            VcpuExit::SystemOff,
            VcpuExit::SystemReset,
            VcpuExit::Unknown {
                syndrome: 0x9600_0045,
            },
        ];
        for exit in exits {
            assert_eq!(VcpuExit::from_registers(&exit.to_registers()), Ok(exit));
            let results = encode_result(Ok(HypercallOutput::Exit(exit)));
            let run = HostHypercall::VcpuRun { vm: VM, vcpu: 0 };
            assert_eq!(run.decode_result(&results), Ok(HypercallOutput::Exit(exit)));
        }
    }

    #[test]
    fn malformed_exits_table() {
        // (x1..x6, error)
        let table: [([u64; 6], DecodeError); 6] = [
            ([0, 0, 0, 0, 0, 0], DecodeError::OutOfRange { register: 1 }),
            ([9, 0, 0, 0, 0, 0], DecodeError::OutOfRange { register: 1 }),
            (
                [1, 5, 0, 0, 0, 0],
                DecodeError::ReservedBitsSet { register: 2 },
            ),
            (
                [2, 1 << 32, 0, 0, 0, 0],
                DecodeError::OutOfRange { register: 2 },
            ),
            (
                [5, 0x1000, 2, 0, 0, 0],
                DecodeError::OutOfRange { register: 3 },
            ),
            (
                [3, 0x1000, 0, 0, 0, 1],
                DecodeError::ReservedBitsSet { register: 6 },
            ),
        ];
        for (registers, error) in table {
            assert_eq!(
                VcpuExit::from_registers(&registers),
                Err(error),
                "{registers:x?}"
            );
        }
    }

    #[test]
    fn results_table() {
        let create = HostHypercall::VmCreate {
            vcpus: 1,
            metadata_pfn: Pfn(1),
            metadata_pages: 1,
        };
        let status = HostHypercall::QueryStatus;
        let share = HostHypercall::ShareHyp { pfn: Pfn(1) };
        // (call, outcome) round trips
        let table = [
            (create, Ok(HypercallOutput::Vm(VmHandle(7)))),
            (create, Err(HypercallError::NoMemory)),
            (
                status,
                Ok(HypercallOutput::Status(ProtectedModeStatus::Enabled)),
            ),
            (
                status,
                Ok(HypercallOutput::Status(
                    ProtectedModeStatus::ErratumFirmwareMissing {
                        firmware_result: u64::MAX,
                    },
                )),
            ),
            (
                status,
                Ok(HypercallOutput::Status(
                    ProtectedModeStatus::InitialisationFailed { detail: 3 },
                )),
            ),
            (share, Ok(HypercallOutput::Nothing)),
            (share, Err(HypercallError::ProtectedModeDisabled)),
        ];
        for (call, outcome) in table {
            let results = encode_result(outcome);
            assert_eq!(
                call.decode_result(&results),
                outcome.map_err(HypercallFailure::Error)
            );
        }
        assert_eq!(
            share.decode_result(&[5, 0, 0, 0, 0, 0, 0]),
            Err(HypercallFailure::UnknownStatus(5))
        );
        assert_eq!(
            create.decode_result(&[0, 1 << 32, 0, 0, 0, 0, 0]),
            Err(HypercallFailure::MalformedResult(DecodeError::OutOfRange {
                register: 1
            }))
        );
        assert_eq!(
            status.decode_result(&[0, 3, 0, 0, 0, 0, 0]),
            Err(HypercallFailure::MalformedResult(DecodeError::OutOfRange {
                register: 1
            }))
        );
        assert!(!ProtectedModeStatus::ErratumFirmwareMissing { firmware_result: 1 }.is_enabled());
        assert!(ProtectedModeStatus::Enabled.is_enabled());
    }

    #[test]
    fn frames_and_addresses() {
        assert_eq!(Pfn::from_address(0x4000_1000), Some(Pfn(0x4_0001)));
        assert_eq!(Pfn::from_address(0x4000_1001), None);
        assert_eq!(Pfn::from_address(1 << 52), None);
        assert_eq!(Gfn(0x8_0000).address(), 0x8000_0000);
        assert_eq!(Gfn::from_address(0x8000_0000), Some(Gfn(0x8_0000)));
    }

    proptest! {
        #[test]
        fn decode_never_panics_and_round_trips(
            low in 0u32..0x100, smc64 in any::<bool>(), args in any_arguments()
        ) {
            let id = FunctionId(0x8600_0000 | low | u32::from(smc64) << 30);
            if let Ok(call) = HostHypercall::decode(id, &args) {
                let (encoded_id, encoded_args) = call.encode();
                prop_assert_eq!(encoded_id, id.value());
                prop_assert_eq!(HostHypercall::decode(FunctionId(encoded_id), &encoded_args), Ok(call));
                prop_assert!(encoded_args[4..ARGUMENT_REGISTERS].iter().all(|&r| r == 0));
            }
        }

        #[test]
        fn exit_decode_never_panics_and_round_trips(
            reason in 0u64..10, rest in proptest::array::uniform5(prop_oneof![Just(0u64), 0u64..3, any::<u64>()])
        ) {
            let registers = [reason, rest[0], rest[1], rest[2], rest[3], rest[4]];
            if let Ok(exit) = VcpuExit::from_registers(&registers) {
                prop_assert_eq!(exit.to_registers(), registers);
            }
        }

        #[test]
        fn result_decode_never_panics(results in proptest::array::uniform7(any::<u64>())) {
            for (_, args, call) in every_call() {
                let _ = args;
                if let Ok(output) = call.decode_result(&results) {
                    prop_assert_eq!(call.decode_result(&encode_result(Ok(output))), Ok(output));
                }
            }
        }
    }
}
