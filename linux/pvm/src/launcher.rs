//! A protected VM from user space, on stock Linux pKVM (7.1 and later), with `kvm-ioctls`:
//! `KVM_CREATE_VM` with type bit 31 (`KVM_VM_TYPE_ARM_PROTECTED`), ordinary anonymous memory as
//! its one memory slot, one vCPU with PSCI 0.2, the PC set with `KVM_SET_ONE_REG`.
//!
//! pKVM gives each page to the guest lazily, when the guest first touches it: that is where
//! upstream makes its erratum 4193714 call, one per page. After the guest's `SYSTEM_OFF` the
//! launcher reads the status page the guest left shared, then probes every other page through its
//! own mapping (each read must fault: the page is the guest's), tears the VM down, and checks
//! that the pages it gets back hold none of the secret.

use crate::guest::{self, PARAMETERS_OFFSET, PATTERN_OFFSET, STATUS_OFFSET, Status};
use crate::probe;
use kvm_bindings::{
    KVM_ARM_VCPU_PSCI_0_2, KVM_REG_ARM_CORE, KVM_REG_ARM64, KVM_REG_SIZE_U64,
    KVM_SYSTEM_EVENT_SHUTDOWN, kvm_userspace_memory_region, kvm_vcpu_init,
};
use kvm_ioctls::{Kvm, VcpuExit};

/// `KVM_VM_TYPE_ARM_PROTECTED`: bit 31 of the `KVM_CREATE_VM` type (the low bits, the IPA size,
/// left 0 for the default).
const VM_TYPE_PROTECTED: u64 = 1 << 31;
/// Where guest memory starts in the guest's physical address space.
pub const GUEST_BASE: u64 = 0x8000_0000;
/// Bytes per page (the kernel's and pKVM's granule on Debian's arm64 kernels).
const PAGE: usize = 4096;
/// `KVM_REG_ARM_CORE` index of `regs.pc` in `struct kvm_regs`: 31 general registers and `sp`
/// come first, 8 bytes each, and core register ids count 32-bit words.
const CORE_PC_INDEX: u64 = (32 * 8) / 4;

/// What to launch.
#[derive(Clone, Copy, Debug)]
pub struct Launch {
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// The secret the guest writes (`seed ^ address`).
    pub seed: u64,
    /// Probe every page (1) or every n-th page.
    pub probe_stride: u64,
    /// Let the kernel back guest memory with transparent huge pages (`MADV_HUGEPAGE`) instead of
    /// forbidding them (`MADV_NOHUGEPAGE`, the default: 4 KiB pages, the same layout every run).
    pub huge_pages: bool,
    /// A CPU to take offline after the run and before the teardown (`u64::MAX`: none): the
    /// monitor prints its counts at each `CPU_OFF`, which marks the phase boundary. It stays
    /// offline (bringing a CPU back while the others are busy in QEMU can exceed Linux's 5 s
    /// bring-up wait); the init script brings it back once the stress has stopped.
    pub mark_cpu: u64,
}

/// What happened.
#[derive(Debug, Default)]
pub struct Report {
    /// What the guest wrote into its status page.
    pub status: Status,
    /// vCPU exits before `SYSTEM_OFF`.
    pub exits: u64,
    /// Pages probed while the VM lived.
    pub probed: u64,
    /// Probes that faulted.
    pub faulted: u64,
    /// Probes that read a word (a leak, unless it is the shared status page, never probed).
    pub readable: u64,
    /// Words of the secret found in the memory after the teardown.
    pub secret_words_after_teardown: u64,
    /// Pages that still faulted after the teardown.
    pub faulted_after_teardown: u64,
}

/// Anonymous memory, unmapped when dropped.
struct Mapping {
    address: *mut u8,
    length: usize,
}

impl Mapping {
    fn new(length: usize) -> Result<Self, String> {
        // SAFETY: an anonymous private mapping at an address the kernel picks touches no existing
        // memory.
        let address = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                length,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(format!(
                "cannot map {length} bytes: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Self {
            address: address.cast(),
            length,
        })
    }

    /// Asks for (or forbids) transparent huge pages over the whole mapping.
    fn advise_huge_pages(&self, huge: bool) -> Result<(), String> {
        let advice = if huge {
            libc::MADV_HUGEPAGE
        } else {
            libc::MADV_NOHUGEPAGE
        };
        // SAFETY: the range is exactly this mapping; the advice changes only how it is backed.
        if unsafe { libc::madvise(self.address.cast(), self.length, advice) } == 0 {
            Ok(())
        } else {
            Err(format!(
                "madvise failed: {}",
                std::io::Error::last_os_error()
            ))
        }
    }

    fn word(&self, offset: usize) -> *mut u64 {
        self.address.wrapping_add(offset).cast()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `Mapping::new` with this length and nothing else
        // refers to it once it is dropped.
        unsafe {
            libc::munmap(self.address.cast(), self.length);
        }
    }
}

/// Lifts the locked-memory limit: pKVM pins a protected guest's pages.
fn unlimited_memlock() -> Result<(), String> {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `limit` is a valid `rlimit`.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } == 0 {
        Ok(())
    } else {
        Err(format!(
            "cannot lift RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// Creates, runs, probes and tears down one protected VM; prints its progress prefixed `tag`.
pub fn launch(launch: &Launch, tag: &str) -> Result<Report, String> {
    let length = usize::try_from(launch.memory_mib)
        .ok()
        .and_then(|mib| mib.checked_mul(1 << 20))
        .filter(|&length| length > PATTERN_OFFSET + PAGE)
        .ok_or_else(|| format!("guest memory of {} MiB is not usable", launch.memory_mib))?;
    unlimited_memlock()?;
    probe::install()?;
    let memory = Mapping::new(length)?;
    memory.advise_huge_pages(launch.huge_pages)?;
    let code = guest::code();
    if code.len() > PARAMETERS_OFFSET {
        return Err(format!(
            "the guest code ({} bytes) overlaps its parameters",
            code.len()
        ));
    }
    // SAFETY: the mapping is `length` bytes, larger than a page; the code and the two parameter
    // words lie in its first page.
    unsafe {
        core::ptr::copy_nonoverlapping(code.as_ptr(), memory.address, code.len());
        memory.word(PARAMETERS_OFFSET).write(length as u64);
        memory.word(PARAMETERS_OFFSET + 8).write(launch.seed);
    }

    let kvm = Kvm::new().map_err(|error| format!("cannot open /dev/kvm: {error}"))?;
    let vm = kvm.create_vm_with_type(VM_TYPE_PROTECTED).map_err(|error| {
        format!("KVM_CREATE_VM(protected) failed: {error} (is the kernel in kvm-arm.mode=protected?)")
    })?;
    let region = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: GUEST_BASE,
        memory_size: length as u64,
        userspace_addr: memory.address as u64,
    };
    // SAFETY: the region is the whole of `memory`, which outlives the VM (dropped after it below).
    unsafe { vm.set_user_memory_region(region) }
        .map_err(|error| format!("KVM_SET_USER_MEMORY_REGION failed: {error}"))?;
    let mut vcpu = vm
        .create_vcpu(0)
        .map_err(|error| format!("KVM_CREATE_VCPU failed: {error}"))?;
    let mut init = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut init)
        .map_err(|error| format!("KVM_ARM_PREFERRED_TARGET failed: {error}"))?;
    init.features[0] |= 1 << KVM_ARM_VCPU_PSCI_0_2;
    vcpu.vcpu_init(&init)
        .map_err(|error| format!("KVM_ARM_VCPU_INIT failed: {error}"))?;
    let pc_id = KVM_REG_ARM64 | KVM_REG_SIZE_U64 | u64::from(KVM_REG_ARM_CORE) | CORE_PC_INDEX;
    vcpu.set_one_reg(pc_id, &GUEST_BASE.to_le_bytes())
        .map_err(|error| format!("KVM_SET_ONE_REG(pc) failed: {error}"))?;
    println!(
        "{tag}: protected VM created: {} MiB at IPA {GUEST_BASE:#x}, guest code {} bytes",
        launch.memory_mib,
        code.len()
    );

    let mut report = Report::default();
    loop {
        match vcpu.run() {
            Ok(VcpuExit::SystemEvent(kind, _)) if kind == KVM_SYSTEM_EVENT_SHUTDOWN => break,
            Ok(VcpuExit::SystemEvent(kind, data)) => {
                return Err(format!("unexpected system event {kind} {data:?}"));
            }
            Ok(VcpuExit::Intr) => report.exits += 1,
            Ok(other) => return Err(format!("unexpected vCPU exit: {other:?}")),
            Err(error) if error.errno() == libc::EINTR || error.errno() == libc::EAGAIN => {
                report.exits += 1;
            }
            Err(error) => return Err(format!("KVM_RUN failed: {error}")),
        }
    }
    let mut words = [0u64; 6];
    for (index, word) in words.iter_mut().enumerate() {
        // SAFETY: the status page is in the mapping and the guest shares it: the read succeeds or,
        // if the guest did not share it, faults into the probe handler.
        *word = unsafe { probe::read(memory.word(STATUS_OFFSET + 8 * index)) }
            .ok_or("the guest's status page is not readable: it was not shared")?;
    }
    report.status = Status::from_words(&words);
    println!(
        "{tag}: guest finished: share {:#x}, share+unshare {:#x}/{:#x}, {} pages written, {} of 512 words intact after unshare, {} exits",
        report.status.share_status,
        report.status.share_pattern,
        report.status.unshare_pattern,
        report.status.pattern_pages,
        report.status.intact_after_unshare,
        report.exits
    );

    // Every page but the shared status page is the guest's now: each read must fault.
    let stride = usize::try_from(launch.probe_stride.max(1)).unwrap_or(1) * PAGE;
    for offset in (0..length).step_by(stride) {
        if offset == STATUS_OFFSET {
            continue;
        }
        report.probed += 1;
        // SAFETY: `offset` is page-aligned and within the mapping.
        match unsafe { probe::read(memory.word(offset + 8)) } {
            None => report.faulted += 1,
            Some(_) => report.readable += 1,
        }
    }
    println!(
        "{tag}: probes of guest memory through the launcher's mapping: {} pages, {} faulted, {} readable",
        report.probed, report.faulted, report.readable
    );
    if launch.mark_cpu != u64::MAX {
        let cpu = usize::try_from(launch.mark_cpu).unwrap_or(usize::MAX);
        crate::cpu::take_offline(cpu)?;
        println!("{tag}: phase mark: CPU {cpu} taken offline (guest run done, teardown next)");
    }

    drop(vcpu);
    drop(vm);
    println!("{tag}: protected VM torn down");
    for page in (PATTERN_OFFSET..length).step_by(PAGE) {
        for word in 0..PAGE / 8 {
            let offset = page + 8 * word;
            // SAFETY: within the mapping, 8-byte aligned.
            match unsafe { probe::read(memory.word(offset)) } {
                Some(value) => {
                    let address = GUEST_BASE + offset as u64;
                    if value == guest::pattern(launch.seed, address) {
                        report.secret_words_after_teardown += 1;
                    }
                }
                None => {
                    report.faulted_after_teardown += 1;
                    break;
                }
            }
        }
    }
    println!(
        "{tag}: after teardown: {} words of the secret readable, {} pages still faulting",
        report.secret_words_after_teardown, report.faulted_after_teardown
    );
    drop(memory);
    Ok(report)
}

/// The problems of a finished run (empty: while the VM lived, its memory was the guest's alone).
pub fn problems(launch: &Launch, report: &Report) -> Vec<String> {
    let mut problems = Vec::new();
    let status = &report.status;
    let pages = launch.memory_mib * 256 - (PATTERN_OFFSET / PAGE) as u64;
    if status.done != guest::DONE_MAGIC {
        problems.push(format!(
            "the guest did not finish (status word {:#x})",
            status.done
        ));
    }
    for (what, value) in [
        ("MEM_SHARE of the status page", status.share_status),
        ("MEM_SHARE of a pattern page", status.share_pattern),
        ("MEM_UNSHARE of it", status.unshare_pattern),
    ] {
        if value != 0 {
            problems.push(format!("{what} returned {value:#x}"));
        }
    }
    if status.pattern_pages != pages {
        problems.push(format!(
            "the guest wrote {} pages, {pages} expected",
            status.pattern_pages
        ));
    }
    if status.intact_after_unshare != (PAGE / 8) as u64 {
        problems.push(format!(
            "{} of {} words of the unshared page intact in the guest",
            status.intact_after_unshare,
            PAGE / 8
        ));
    }
    if report.readable != 0 || report.faulted != report.probed {
        problems.push(format!(
            "{} of {} probed guest pages were readable by the host",
            report.readable, report.probed
        ));
    }
    // Words of the secret the host can read after the teardown are reported, not judged here:
    // giving the pages back clean is stock pKVM's teardown, not anything the firmware does, and
    // Linux 7.3.4 under QEMU 7.2 does it in some runs and not in others, on affected and fixed
    // CPUs alike (see docs/results.md).
    problems
}
