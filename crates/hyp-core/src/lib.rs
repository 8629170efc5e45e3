//! The decisions of the protected hypervisor (EL2), apart from the hardware: host hypercalls, guest
//! exits and host SMCs. `firmware/hyp` is the thin bare-metal shell around it (vectors, world switch,
//! system registers, the firmware call); this crate runs in host tests against the recording fakes of
//! `stage2` and a fake [`ProtectionPlatform`].
//!
//! | module | owns |
//! |---|---|
//! | [`Hypervisor`] (this file) | protected VMs and their vCPUs, the host hypercall table, guest exits |
//! | [`boot`] | what the host may map on the board, and the protected-mode decision (erratum 4193714) |
//! | [`devices`] | which devices the host may reach (the allowlist read from the device tree) |
//! | [`errors`] | ownership refusals → host-visible [`HypercallError`] codes |
//! | [`gic`] | the emulated redistributor control page (LPIs not offered), MMIO access decoding |
//! | [`host_smc`] | what happens to an SMC the host makes (forward, refuse, rewrite `CPU_ON`) |
//! | [`vcpu`] | a vCPU's saved registers |
//!
//! Protected mode: when the erratum check refused protected mode ([`ProtectedModeStatus`] other than
//! `Enabled`), every protected-VM hypercall answers [`HypercallError::ProtectedModeDisabled`]; sharing
//! pages with the hypervisor and `QUERY_STATUS` still work, and the host keeps running.
//!
//! Concurrency: the shell keeps one [`Hypervisor`] behind one lock. A vCPU runs *without* the lock:
//! [`Hypervisor::host_hypercall`] hands out a [`RunTicket`] (the vCPU is marked running), guest exits
//! come back through [`Hypervisor::guest_exit`] and the run ends with [`Hypervisor::end_run`].
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod boot;
pub mod devices;
pub mod errors;
pub mod gic;
pub mod host_smc;
pub mod vcpu;

use abi::guest::{FeatureBitmap, GuestCall, KVM_UID};
use abi::hypercall::{
    HostHypercall, HypercallError, HypercallOutput, ProtectedModeStatus, VcpuExit, VmHandle,
};
use abi::psci::PsciCall;
use abi::smccc::{ARGUMENT_REGISTERS, FunctionId, ReturnCode};
use core::ops::Range;
use mem_protect::{MAX_VMS, MemProtect, PAGE_SIZE, PageOwnership, ProtectionPlatform};
use stage2::TablePool;
use vcpu::{VcpuContext, VcpuState};

/// Most vCPUs a protected VM can have.
pub const MAX_VCPUS: usize = 4;
/// Most metadata pages a VM can be given (its stage-2 table pool).
pub const MAX_METADATA_PAGES: u64 = 256;

/// Turns pages the host donated to the hypervisor into a table pool for a VM's stage-2.
pub trait MetadataPools<P: TablePool> {
    /// A pool over the `pages` pages from `address`, which the hypervisor now owns exclusively.
    fn pool(&mut self, address: u64, pages: u64) -> P;
}

/// One vCPU: its state and saved registers.
#[derive(Clone, Copy, Debug)]
struct Vcpu {
    state: VcpuState,
    context: VcpuContext,
}

/// A protected VM as the hypervisor keeps it (its memory lives in [`MemProtect`]).
#[derive(Clone, Debug)]
struct VmRecord {
    handle: VmHandle,
    vcpu_count: u32,
    vcpus: [Vcpu; MAX_VCPUS],
    metadata: Range<u64>,
}

/// A vCPU taken out to run on this CPU: the shell loads `context`, installs `vttbr_el2` and enters
/// the guest; it gives the ticket back with [`Hypervisor::end_run`].
#[derive(Clone, Copy, Debug)]
pub struct RunTicket {
    /// The VM.
    pub vm: VmHandle,
    /// The vCPU index.
    pub vcpu: u32,
    /// `VTTBR_EL2` of the VM's stage-2.
    pub vttbr_el2: u64,
    /// The vCPU's registers while it runs.
    pub context: VcpuContext,
}

/// What a host hypercall leads to.
#[derive(Clone, Copy, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "moved once per VCPU_RUN; boxing needs a heap"
)]
pub enum HostCallOutcome {
    /// Answer the host with this.
    Done(Result<HypercallOutput, HypercallError>),
    /// `VCPU_RUN` was accepted: run the guest.
    Run(RunTicket),
}

/// Why the guest left EL1 (decoded by the shell from `ESR_EL2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestTrap {
    /// `HVC` or `SMC` (the shell has already stepped over an `SMC`): `x0` and `x1`-`x4`.
    Call {
        /// `w0`.
        function_id: u32,
        /// `x1`-`x4`.
        arguments: [u64; 4],
    },
    /// Stage-2 data or instruction abort at this IPA.
    Abort {
        /// Faulting IPA.
        ipa: u64,
        /// A write.
        write: bool,
    },
    /// A physical interrupt arrived while the guest ran.
    Interrupt,
    /// Anything else; `ESR_EL2`.
    Other {
        /// `ESR_EL2`.
        syndrome: u64,
    },
}

/// What to do after a guest exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestExitAction {
    /// Enter the guest again.
    Resume,
    /// Return from `VCPU_RUN` with this exit.
    ReturnToHost(VcpuExit),
}

/// The hypervisor's state.
pub struct Hypervisor<'a, P: TablePool, F: ProtectionPlatform, M: MetadataPools<P>> {
    memory: MemProtect<'a, P, F>,
    pools: M,
    vms: [Option<VmRecord>; MAX_VMS],
    status: ProtectedModeStatus,
}

fn sign_extended(code: ReturnCode) -> u64 {
    code.to_register()
}

impl<'a, P: TablePool, F: ProtectionPlatform, M: MetadataPools<P>> Hypervisor<'a, P, F, M> {
    /// The hypervisor over `memory`, in protected mode or not (`status`).
    pub fn new(memory: MemProtect<'a, P, F>, pools: M, status: ProtectedModeStatus) -> Self {
        Self {
            memory,
            pools,
            vms: core::array::from_fn(|_| None),
            status,
        }
    }

    /// The ownership state.
    pub fn memory(&self) -> &MemProtect<'a, P, F> {
        &self.memory
    }

    /// The ownership state, writable (host stage-2 faults).
    pub fn memory_mut(&mut self) -> &mut MemProtect<'a, P, F> {
        &mut self.memory
    }

    /// Whether protected mode is on.
    pub fn status(&self) -> ProtectedModeStatus {
        self.status
    }

    /// Whether the host may give `address` as a PSCI entry point: memory the host owns (it would
    /// otherwise make the hypervisor jump into a page it cannot read).
    pub fn host_entry_allowed(&self, address: u64) -> bool {
        matches!(
            self.memory.page_ownership(address),
            Ok(PageOwnership::Host | PageOwnership::SharedWithHypervisor)
        )
    }

    fn error(&self, error: mem_protect::MemProtectError) -> HypercallError {
        errors::hypercall_error(error, &self.memory.layout().hypervisor)
    }

    fn slot(&self, vm: VmHandle) -> Result<usize, HypercallError> {
        self.vms
            .iter()
            .position(|record| record.as_ref().is_some_and(|record| record.handle == vm))
            .ok_or(HypercallError::UnknownVm)
    }

    fn record(&mut self, slot: usize) -> Result<&mut VmRecord, HypercallError> {
        self.vms[slot].as_mut().ok_or(HypercallError::UnknownVm)
    }

    fn is_live(&self, handle: VmHandle) -> bool {
        self.memory
            .vm(handle)
            .is_some_and(|vm| vm.lifecycle() == mem_protect::VmLifecycle::Live)
    }

    /// Handles a decoded host hypercall.
    pub fn host_hypercall(&mut self, call: HostHypercall) -> HostCallOutcome {
        let needs_protected_mode = !matches!(
            call,
            HostHypercall::ShareHyp { .. }
                | HostHypercall::UnshareHyp { .. }
                | HostHypercall::QueryStatus
        );
        if needs_protected_mode && !self.status.is_enabled() {
            return HostCallOutcome::Done(Err(HypercallError::ProtectedModeDisabled));
        }
        let nothing = |result: Result<(), HypercallError>| {
            HostCallOutcome::Done(result.map(|()| HypercallOutput::Nothing))
        };
        match call {
            HostHypercall::ShareHyp { pfn } => nothing(
                self.memory
                    .host_share_hypervisor(pfn.address())
                    .map_err(|error| self.error(error)),
            ),
            HostHypercall::UnshareHyp { pfn } => nothing(
                self.memory
                    .host_unshare_hypervisor(pfn.address())
                    .map_err(|error| self.error(error)),
            ),
            HostHypercall::QueryStatus => {
                HostCallOutcome::Done(Ok(HypercallOutput::Status(self.status)))
            }
            HostHypercall::VmCreate {
                vcpus,
                metadata_pfn,
                metadata_pages,
            } => HostCallOutcome::Done(
                self.create_vm(vcpus, metadata_pfn.address(), metadata_pages)
                    .map(HypercallOutput::Vm),
            ),
            HostHypercall::VcpuInit {
                vm,
                vcpu,
                entry_ipa,
                argument,
            } => nothing(self.init_vcpu(vm, vcpu, entry_ipa, argument)),
            HostHypercall::DonateGuest {
                vm,
                pfn,
                gfn,
                pages,
            } => nothing(self.slot(vm).and_then(|slot| {
                let handle = self.record(slot)?.handle;
                self.memory
                    .host_donate_guest(handle, pfn.address(), gfn.address(), pages)
                    .map_err(|error| self.error(error))
            })),
            HostHypercall::VcpuRun { vm, vcpu } => match self.begin_run(vm, vcpu) {
                Ok(ticket) => HostCallOutcome::Run(ticket),
                Err(error) => HostCallOutcome::Done(Err(error)),
            },
            HostHypercall::VmTeardown { vm } => nothing(self.teardown(vm)),
            HostHypercall::ReclaimGuestPages { vm, gfn, pages } => {
                nothing(self.slot(vm).and_then(|slot| {
                    let handle = self.record(slot)?.handle;
                    self.memory
                        .reclaim_guest_pages(handle, gfn.address(), pages)
                        .map_err(|error| self.error(error))
                }))
            }
            HostHypercall::VmFree { vm } => nothing(self.free(vm)),
        }
    }

    fn create_vm(
        &mut self,
        vcpus: u32,
        metadata: u64,
        pages: u64,
    ) -> Result<VmHandle, HypercallError> {
        if usize::try_from(vcpus).map_or(true, |vcpus| vcpus > MAX_VCPUS) {
            return Err(HypercallError::LimitReached);
        }
        if pages > MAX_METADATA_PAGES {
            return Err(HypercallError::OutOfRange);
        }
        let slot = self
            .vms
            .iter()
            .position(Option::is_none)
            .ok_or(HypercallError::LimitReached)?;
        self.memory
            .host_donate_hypervisor(metadata, pages)
            .map_err(|error| self.error(error))?;
        let pool = self.pools.pool(metadata, pages);
        let handle = match self.memory.create_vm(pool) {
            Ok(handle) => handle,
            Err(error) => {
                // The pages were just donated: giving them back cannot fail.
                let _ = self.memory.hypervisor_donate_host(metadata, pages);
                return Err(self.error(error));
            }
        };
        let idle = Vcpu {
            state: VcpuState::Uninitialised,
            context: VcpuContext::default(),
        };
        self.vms[slot] = Some(VmRecord {
            handle,
            vcpu_count: vcpus,
            vcpus: [idle; MAX_VCPUS],
            metadata: metadata..metadata + pages * PAGE_SIZE,
        });
        Ok(handle)
    }

    fn vcpu_index(record: &VmRecord, vcpu: u32) -> Result<usize, HypercallError> {
        if vcpu >= record.vcpu_count {
            return Err(HypercallError::UnknownVcpu);
        }
        usize::try_from(vcpu).map_err(|_| HypercallError::UnknownVcpu)
    }

    fn init_vcpu(
        &mut self,
        vm: VmHandle,
        vcpu: u32,
        entry: u64,
        argument: u64,
    ) -> Result<(), HypercallError> {
        let slot = self.slot(vm)?;
        let handle = self.record(slot)?.handle;
        if !self.is_live(handle) {
            return Err(HypercallError::WrongVmState);
        }
        let record = self.record(slot)?;
        let index = Self::vcpu_index(record, vcpu)?;
        let target = &mut record.vcpus[index];
        if target.state != VcpuState::Uninitialised {
            return Err(HypercallError::AlreadyInitialised);
        }
        *target = Vcpu {
            state: VcpuState::Ready,
            context: VcpuContext::at_entry(entry, argument, vcpu),
        };
        Ok(())
    }

    fn begin_run(&mut self, vm: VmHandle, vcpu: u32) -> Result<RunTicket, HypercallError> {
        let slot = self.slot(vm)?;
        let handle = self.record(slot)?.handle;
        if !self.is_live(handle) {
            return Err(HypercallError::VmNotRunnable);
        }
        let vttbr_el2 = match self.memory.vm(handle) {
            Some(protected) => protected.stage2().vttbr_el2(),
            None => return Err(HypercallError::UnknownVm),
        };
        let record = self.record(slot)?;
        let index = Self::vcpu_index(record, vcpu)?;
        let target = &mut record.vcpus[index];
        match target.state {
            VcpuState::Ready => {}
            VcpuState::Running => return Err(HypercallError::Busy),
            VcpuState::Uninitialised | VcpuState::Stopped => {
                return Err(HypercallError::VmNotRunnable);
            }
        }
        target.state = VcpuState::Running;
        Ok(RunTicket {
            vm,
            vcpu,
            vttbr_el2,
            context: target.context,
        })
    }

    /// Decides what a guest exit means; may change the ticket's registers (the guest's results).
    pub fn guest_exit(&mut self, ticket: &mut RunTicket, trap: GuestTrap) -> GuestExitAction {
        match trap {
            GuestTrap::Call {
                function_id,
                arguments,
            } => self.guest_call(ticket, function_id, arguments),
            GuestTrap::Abort { ipa, write } => {
                GuestExitAction::ReturnToHost(VcpuExit::DataAbort { ipa, write })
            }
            GuestTrap::Interrupt => GuestExitAction::ReturnToHost(VcpuExit::Interrupted),
            GuestTrap::Other { syndrome } => {
                GuestExitAction::ReturnToHost(VcpuExit::Unknown { syndrome })
            }
        }
    }

    fn guest_call(
        &mut self,
        ticket: &mut RunTicket,
        function_id: u32,
        arguments: [u64; 4],
    ) -> GuestExitAction {
        let mut registers = [0; ARGUMENT_REGISTERS];
        registers[..4].copy_from_slice(&arguments);
        let id = FunctionId(function_id);
        let results = &mut ticket.context.registers;
        let handle = match self.slot(ticket.vm).and_then(|slot| self.record(slot)) {
            Ok(record) => record.handle,
            Err(_) => return GuestExitAction::ReturnToHost(VcpuExit::SystemOff),
        };
        let call = match GuestCall::decode(id, &registers) {
            Ok(call) => Some(call),
            Err(abi::DecodeError::UnknownFunction(_)) => None,
            Err(error) => {
                // One of our calls, malformed: answer it like KVM does, the host need not know.
                results[0] = abi::guest::answer_for(error).to_register();
                return GuestExitAction::Resume;
            }
        };
        if let Some(call) = call {
            return match call {
                GuestCall::Features => {
                    results[0] = u64::from(FeatureBitmap::SUPPORTED.0);
                    GuestExitAction::Resume
                }
                GuestCall::Uid => {
                    results[..4].copy_from_slice(&KVM_UID.to_return_registers());
                    GuestExitAction::Resume
                }
                GuestCall::HypMeminfo => {
                    results[0] = PAGE_SIZE;
                    GuestExitAction::Resume
                }
                GuestCall::MemShare { ipa } => match self.memory.guest_share_host(handle, ipa) {
                    Ok(_) => {
                        results[0] = 0;
                        GuestExitAction::ReturnToHost(VcpuExit::MemoryShared { ipa })
                    }
                    Err(_) => {
                        results[0] = sign_extended(ReturnCode::InvalidParameter);
                        GuestExitAction::Resume
                    }
                },
                GuestCall::MemUnshare { ipa } => {
                    match self.memory.guest_unshare_host(handle, ipa) {
                        Ok(_) => {
                            results[0] = 0;
                            GuestExitAction::ReturnToHost(VcpuExit::MemoryUnshared { ipa })
                        }
                        Err(_) => {
                            results[0] = sign_extended(ReturnCode::InvalidParameter);
                            GuestExitAction::Resume
                        }
                    }
                }
            };
        }
        if abi::psci::owns(id) {
            return match PsciCall::decode(id, &registers) {
                Ok(PsciCall::SystemOff) => GuestExitAction::ReturnToHost(VcpuExit::SystemOff),
                Ok(PsciCall::SystemReset) => GuestExitAction::ReturnToHost(VcpuExit::SystemReset),
                Ok(PsciCall::Version) => {
                    results[0] = (u64::from(abi::psci::VERSION.major) << 16)
                        | u64::from(abi::psci::VERSION.minor);
                    GuestExitAction::Resume
                }
                _ => {
                    results[0] = sign_extended(ReturnCode::NotSupported);
                    GuestExitAction::Resume
                }
            };
        }
        // Not ours: the host's VMM may know it. The guest sees NOT_SUPPORTED unless the host says
        // otherwise (it cannot: protected guests' registers are not the host's to write).
        results[0] = sign_extended(ReturnCode::NotSupported);
        GuestExitAction::ReturnToHost(VcpuExit::GuestHypercall {
            function_id,
            arguments,
        })
    }

    /// Gives a running vCPU back after its last exit (`exit`, which went to the host).
    pub fn end_run(&mut self, ticket: RunTicket, exit: &VcpuExit) {
        let Ok(slot) = self.slot(ticket.vm) else {
            return;
        };
        let Some(record) = self.vms[slot].as_mut() else {
            return;
        };
        let Ok(index) = Self::vcpu_index(record, ticket.vcpu) else {
            return;
        };
        let stopped = matches!(
            exit,
            VcpuExit::SystemOff | VcpuExit::SystemReset | VcpuExit::Unknown { .. }
        );
        record.vcpus[index] = Vcpu {
            state: if stopped {
                VcpuState::Stopped
            } else {
                VcpuState::Ready
            },
            context: ticket.context,
        };
    }

    fn teardown(&mut self, vm: VmHandle) -> Result<(), HypercallError> {
        let slot = self.slot(vm)?;
        let record = self.record(slot)?;
        if record
            .vcpus
            .iter()
            .any(|vcpu| vcpu.state == VcpuState::Running)
        {
            return Err(HypercallError::Busy);
        }
        let handle = record.handle;
        self.memory
            .teardown_vm(handle)
            .map_err(|error| self.error(error))
    }

    fn free(&mut self, vm: VmHandle) -> Result<(), HypercallError> {
        let slot = self.slot(vm)?;
        let record = self.record(slot)?;
        let handle = record.handle;
        let metadata = record.metadata.clone();
        let pool = self
            .memory
            .free_vm(handle)
            .map_err(|error| self.error(error))?;
        drop(pool);
        self.vms[slot] = None;
        // The pages held the VM's stage-2 tables: its memory layout is the guest's business.
        for page in metadata.clone().step_by(PAGE_SIZE as usize) {
            self.memory.platform_mut().zero_page(page);
        }
        let pages = (metadata.end - metadata.start) / PAGE_SIZE;
        self.memory
            .hypervisor_donate_host(metadata.start, pages)
            .map_err(|error| self.error(error))
    }
}

#[cfg(test)]
mod tests;
