//! `cargo xtask run`: boots an arm64 Linux kernel `Image` on the monitor in QEMU, interactively, and
//! the Linux boot test of `cargo xtask test` (Debian's kernel, a busybox initramfs that loops CPU
//! hotplug, power-off through PSCI `SYSTEM_OFF`).
//!
//! How a kernel boots here: QEMU ignores `-kernel`/`-initrd`/`-append` for the `virt` board once
//! firmware is given with `-bios`, so the kernel and the initramfs are placed with `-device loader`
//! and the command line and initramfs range go into `/chosen` of QEMU's own device tree, prepared on
//! the host ([`linux::boot_device_tree`]) and handed back with `-dtb`. QEMU puts that tree at the start
//! of DRAM, where the monitor finds it, adds `/psci`, the CPUs' enable method and `/reserved-memory`,
//! and enters the kernel at EL2 with x0 = the tree. With `--hypervisor` the monitor enters the
//! protected hypervisor instead, which reserves its own memory in the tree and enters the kernel at
//! EL1 from the host's entry point.

use crate::error::XtaskError;
use crate::firmware::{self, HOST_ADDRESS, HYPERVISOR, MONITOR, MONITOR_WITHOUT_FIX};
use crate::linux::{self, INITRD_ADDRESS, KERNEL_ADDRESS};
use crate::qemu::{self, Run};
use clap::Args;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// End of DRAM as `qemu::Run` configures it.
const DRAM_END: u64 = qemu::DRAM_BASE + qemu::DEFAULT_DRAM_SIZE;
/// The kernel command line when `--append` is not given.
const DEFAULT_BOOTARGS: &str = "console=ttyAMA0";

/// Options of `cargo xtask run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The arm64 kernel `Image` (uncompressed; e.g. `.cache/linux/Image` after `cargo xtask fetch-linux`).
    #[arg(long)]
    kernel: PathBuf,
    /// An initramfs (cpio, optionally compressed as the kernel supports), loaded at the board's `INITRD_ADDRESS`.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// The kernel command line.
    #[arg(long, default_value = DEFAULT_BOOTARGS)]
    append: String,
    /// Number of CPUs (1 to 8).
    #[arg(long, default_value_t = 4)]
    cpus: usize,
    /// CPU model (max, c1-pro-r0p2, c1-pro-r1p1, c1-pro-r2p0, ...).
    #[arg(long, default_value = "c1-pro-r0p2")]
    cpu: String,
    /// Boot the kernel as the host of the protected hypervisor (at EL1) instead of at EL2.
    #[arg(long)]
    hypervisor: bool,
    /// Put the PCIe bus behind an SMMUv3 (`-M iommu=smmuv3`) and add a virtio-rng-pci device.
    #[arg(long)]
    iommu: bool,
    /// Use a monitor built without the erratum call (it answers `0x81000010` with -1): with
    /// `kvm-arm.mode=protected` on an affected CPU, Linux ≥ 7.1 must refuse pKVM.
    #[arg(long)]
    firmware_without_fix: bool,
}

/// QEMU arguments of `--iommu`: the SMMUv3 in front of the PCIe root complex and a virtio device
/// whose DMA goes through it.
const IOMMU_ARGUMENTS: [&str; 4] = ["-M", "iommu=smmuv3", "-device", "virtio-rng-pci"];

/// What runs at Non-secure EL2 under the monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// The kernel itself, entered at EL2 at [`KERNEL_ADDRESS`] (it may run KVM).
    KernelAtEl2,
    /// The protected hypervisor, which enters the kernel at EL1 at [`HOST_ADDRESS`].
    UnderHypervisor,
}

impl Level {
    /// Where the kernel `Image` is loaded (and entered).
    fn kernel_address(self) -> u64 {
        match self {
            Self::KernelAtEl2 => KERNEL_ADDRESS,
            Self::UnderHypervisor => HOST_ADDRESS,
        }
    }
}

/// One Linux boot on the monitor.
pub struct LinuxBoot<'a> {
    /// The kernel `Image`.
    pub kernel: &'a Path,
    /// The initramfs, if any.
    pub initrd: Option<&'a Path>,
    /// The kernel command line.
    pub bootargs: &'a str,
    /// `-smp`.
    pub cpus: usize,
    /// CPU model name of the `errata` crate.
    pub cpu_model: &'a str,
    /// Kernel at EL2, or under the hypervisor.
    pub level: Level,
    /// The SMMUv3 and a virtio-rng-pci device ([`IOMMU_ARGUMENTS`]).
    pub iommu: bool,
    /// Whether the monitor is built without the erratum call.
    pub firmware_without_fix: bool,
    /// Leave QEMU's random seeds out of the device tree (benchmarks under `-icount`).
    pub deterministic: bool,
}

/// What the arm64 `Image` header (Linux `Documentation/arch/arm64/booting.rst`) says about a kernel.
#[derive(Debug, PartialEq, Eq)]
pub struct KernelHeader {
    /// Offset from a 2 MiB aligned base at which the image must be placed (0 for kernels since 5.8).
    pub text_offset: u64,
    /// Memory the kernel occupies from its load address, `.bss` included (0 in kernels before 3.17).
    pub image_size: u64,
}

/// Why a file cannot be booted as an arm64 kernel here.
#[derive(Debug, PartialEq, Eq)]
pub enum KernelError {
    /// Shorter than the 64-byte header.
    Truncated,
    /// No `ARM\x64` magic at offset 56: not an uncompressed arm64 `Image` (a `vmlinuz.gz` or EFI zboot
    /// image must be decompressed first).
    NotAnArm64Image,
    /// `text_offset` is not 0: the image would have to start at a 2 MiB boundary plus this offset,
    /// but the entry point is the 2 MiB aligned load address itself.
    TextOffset(u64),
    /// The kernel (`image_size`, or the file size when the header gives none) would reach this
    /// address, past the start of the initramfs.
    OverlapsInitrd(u64),
}

impl std::fmt::Display for KernelError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated => formatter.write_str("shorter than an arm64 Image header"),
            Self::NotAnArm64Image => formatter.write_str(
                "not an uncompressed arm64 Image (no ARM\\x64 magic at offset 56); decompress it first",
            ),
            Self::TextOffset(offset) => write!(
                formatter,
                "text_offset {offset:#x} is not 0 (kernels before 5.8 are not supported)"
            ),
            Self::OverlapsInitrd(end) => write!(
                formatter,
                "the kernel reaches {end:#x}, past the initramfs at {INITRD_ADDRESS:#x}"
            ),
        }
    }
}

impl std::error::Error for KernelError {}

/// Checks the first bytes of a kernel file (`file_size` bytes in all) loaded at `load_address`.
pub fn check_kernel_header(
    header: &[u8],
    file_size: u64,
    load_address: u64,
) -> Result<KernelHeader, KernelError> {
    let field = |offset: usize| -> Result<u64, KernelError> {
        let bytes = header
            .get(offset..offset + 8)
            .ok_or(KernelError::Truncated)?;
        let mut array = [0; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    };
    let magic = header.get(56..60).ok_or(KernelError::Truncated)?;
    if magic != b"ARM\x64" {
        return Err(KernelError::NotAnArm64Image);
    }
    let parsed = KernelHeader {
        text_offset: field(8)?,
        image_size: field(16)?,
    };
    if parsed.text_offset != 0 {
        return Err(KernelError::TextOffset(parsed.text_offset));
    }
    let footprint = parsed.image_size.max(file_size);
    let end = load_address.saturating_add(footprint);
    if end > INITRD_ADDRESS {
        return Err(KernelError::OverlapsInitrd(end));
    }
    Ok(parsed)
}

fn file_size(path: &Path) -> Result<u64, XtaskError> {
    std::fs::metadata(path)
        .map(|metadata| metadata.len())
        .map_err(|error| XtaskError::Unexpected(format!("{}: {error}", path.display())))
}

impl LinuxBoot<'_> {
    /// Builds the firmware, checks the kernel and the initramfs, prepares the device tree, and returns
    /// the QEMU run (named `name`, killed after `timeout` when run with [`Run::execute`]).
    pub fn prepare(&self, name: &str, timeout: Duration) -> Result<Run, XtaskError> {
        if !(1..=8).contains(&self.cpus) {
            return Err(XtaskError::Usage(format!(
                "--cpus must be 1 to 8, not {}",
                self.cpus
            )));
        }
        let cpu = qemu::cpu_argument(self.cpu_model)?;
        let load_address = self.level.kernel_address();
        let mut header = Vec::with_capacity(64);
        std::fs::File::open(self.kernel)
            .and_then(|file| file.take(64).read_to_end(&mut header))
            .map_err(|error| {
                XtaskError::Unexpected(format!("{}: {error}", self.kernel.display()))
            })?;
        check_kernel_header(&header, file_size(self.kernel)?, load_address).map_err(|error| {
            XtaskError::Unexpected(format!("{}: {error}", self.kernel.display()))
        })?;
        let initrd = match self.initrd {
            Some(path) => {
                let size = file_size(path)?;
                if size == 0 || INITRD_ADDRESS.saturating_add(size) > DRAM_END {
                    return Err(XtaskError::Usage(format!(
                        "{}: {size} bytes do not fit between {INITRD_ADDRESS:#x} and the end of DRAM ({DRAM_END:#x})",
                        path.display()
                    )));
                }
                Some((
                    path,
                    device_tree::MemoryRange {
                        base: INITRD_ADDRESS,
                        size,
                    },
                ))
            }
            None => None,
        };
        let monitor = firmware::build(if self.firmware_without_fix {
            MONITOR_WITHOUT_FIX
        } else {
            MONITOR
        })?;
        let (payload, mut extra) = match self.level {
            Level::KernelAtEl2 => (self.kernel.to_path_buf(), Vec::new()),
            Level::UnderHypervisor => (
                firmware::build(HYPERVISOR)?,
                vec![
                    "-device".to_string(),
                    format!(
                        "loader,file={},addr={load_address:#x},force-raw=on",
                        self.kernel.display()
                    ),
                ],
            ),
        };
        if self.iommu {
            extra.extend(IOMMU_ARGUMENTS.map(String::from));
        }
        if let Some((path, _)) = initrd {
            extra.extend([
                "-device".to_string(),
                format!(
                    "loader,file={},addr={INITRD_ADDRESS:#x},force-raw=on",
                    path.display()
                ),
            ]);
        }
        let mut run = Run {
            // Linux boots on QEMU `virt` only: its tree describes the devices a kernel needs.
            machine: qemu::Machine::Virt,
            name: name.to_string(),
            monitor,
            payload: Some(payload),
            parameters: Vec::new(),
            cpu,
            cpus: self.cpus,
            extra,
            timeout,
        };
        let tree = linux::boot_device_tree(
            &run.arguments(),
            self.bootargs,
            initrd.map(|(_, range)| range),
            self.deterministic,
        )?;
        run.extra
            .extend(["-dtb".to_string(), tree.display().to_string()]);
        Ok(run)
    }
}

/// `cargo xtask run`: boots the kernel with QEMU's serial console on this terminal (Ctrl-A X quits).
pub fn run(args: &RunArgs) -> Result<(), XtaskError> {
    crate::setup::ensure_qemu()?;
    let boot = LinuxBoot {
        kernel: &args.kernel,
        initrd: args.initrd.as_deref(),
        bootargs: &args.append,
        cpus: args.cpus,
        cpu_model: &args.cpu,
        level: if args.hypervisor {
            Level::UnderHypervisor
        } else {
            Level::KernelAtEl2
        },
        iommu: args.iommu,
        firmware_without_fix: args.firmware_without_fix,
        deterministic: false,
    };
    // The timeout only applies to `Run::execute`; this run is interactive and has none.
    let run = boot.prepare("linux-interactive", Duration::MAX)?;
    eprintln!(
        "xtask: booting {} on {} x {}, firmware {} the erratum call (Ctrl-A X quits QEMU)\nxtask: qemu-system-aarch64 {}",
        args.kernel.display(),
        args.cpus,
        args.cpu,
        if args.firmware_without_fix {
            "WITHOUT"
        } else {
            "with"
        },
        run.arguments().join(" ")
    );
    let status = Command::new("qemu-system-aarch64")
        .args(run.arguments())
        .status()
        .map_err(|error| XtaskError::spawn("qemu-system-aarch64", error))?;
    if status.success() {
        Ok(())
    } else {
        Err(XtaskError::Check(format!("QEMU exited with {status}")))
    }
}

/// Hotplug rounds of the Linux boot test: every secondary CPU goes offline and online again this
/// many times.
const HOTPLUG_ROUNDS: u32 = 5;
/// CPUs of the Linux boot test.
const TEST_CPUS: usize = 4;
/// CPU model of the Linux boot test: affected by erratum 4193714.
const TEST_CPU_MODEL: &str = "c1-pro-r0p2";
/// Kernel command line of the Linux boot test: a panic reboots at once (`SYSTEM_RESET`, which ends
/// QEMU because of `-no-reboot`), so a broken boot fails fast instead of waiting for the timeout.
const TEST_BOOTARGS: &str = "console=ttyAMA0 panic=-1";

/// The Linux boot tests (in `cargo xtask test`): Debian's arm64 cloud kernel (fetched and cached on
/// first use through the private apt, see [`linux::kernel`]) with the hotplug initramfs
/// boots on 4 C1-Pro r0p2 CPUs, loops CPU hotplug of every secondary CPU, and powers off; once at EL2
/// right on the monitor, once as the host (EL1) of the protected hypervisor. The log must show PSCI
/// 1.1, every CPU started at the expected level, all CPUs online after the loops and
/// `reboot: Power down`, and QEMU must exit 0.
pub fn linux_boot_test() -> Result<(), XtaskError> {
    crate::setup::ensure_qemu()?;
    let kernel = linux::kernel(linux::KernelKind::Bookworm).map_err(|error| {
        XtaskError::Check(format!(
            "the Linux boot test needs Debian's arm64 kernel, cached in {}: {error}",
            linux::cache_dir().display()
        ))
    })?;
    let initramfs = linux::build_initramfs(&linux::hotplug_init_script(HOTPLUG_ROUNDS), &[])?;
    for level in [Level::KernelAtEl2, Level::UnderHypervisor] {
        boot_test(&kernel, &initramfs, level)?;
    }
    linux_iommu_test()
}

/// Lines the SMMU boot test must print, in this order.
const IOMMU_MARKERS: [&str; 5] = [
    "hyp: smmu: translating every PCIe stream",
    "PCIe DMA contained by the SMMU: yes",
    "pkvm-init: rng: virtio_rng",
    "pkvm-init: hwrng: ",
    "reboot: Power down",
];

/// The SMMU boot test (in `cargo xtask test-linux`): Debian's kernel as the host of the hypervisor on
/// a machine with `iommu=smmuv3` and a virtio-rng-pci device; the hypervisor owns the SMMU and hides
/// it, Linux drives the PCIe bus without IOMMU (and with INTx), and reads 64 bytes from the device,
/// whose DMA goes through the hypervisor's IO page table.
pub fn linux_iommu_test() -> Result<(), XtaskError> {
    crate::setup::ensure_qemu()?;
    let kernel = linux::kernel(linux::KernelKind::Bookworm).map_err(|error| {
        XtaskError::Check(format!(
            "the SMMU boot test needs Debian's arm64 kernel, cached in {}: {error}",
            linux::cache_dir().display()
        ))
    })?;
    let modules = linux::virtio_rng_modules(&kernel)?;
    let initramfs = linux::build_initramfs(&linux::virtio_rng_init_script(), &modules)?;
    let cpus = 2;
    let boot = LinuxBoot {
        kernel: &kernel.image,
        initrd: Some(&initramfs),
        bootargs: TEST_BOOTARGS,
        cpus,
        cpu_model: TEST_CPU_MODEL,
        level: Level::UnderHypervisor,
        iommu: true,
        firmware_without_fix: false,
        deterministic: false,
    };
    let name = format!("linux-hyp-smmu-virtio-rng-{TEST_CPU_MODEL}-smp{cpus}");
    let run = boot.prepare(&name, Duration::from_secs(180))?;
    let outcome = run.execute()?;
    let log = outcome.log.replace("\r\n", "\n");
    let mut problems = Vec::new();
    if outcome.status != Some(0) {
        problems.push(format!(
            "QEMU exit status {:?} (0 expected)",
            outcome.status
        ));
    }
    if let Some(failure) = log.lines().find(|line| line.contains("pkvm-init: FAIL")) {
        problems.push(format!("the init script reported: {}", failure.trim()));
    }
    let mut from = 0;
    for marker in IOMMU_MARKERS {
        match log[from..].find(marker) {
            Some(position) => from += position + marker.len(),
            None => {
                problems.push(format!("the boot log lacks `{marker}` (in order)"));
                break;
            }
        }
    }
    qemu::report(
        &run.name,
        &outcome,
        &problems,
        &format!("{} {}", kernel.package, kernel.version),
    )
}

/// Lines a boot at `level` must print, besides those [`linux::check_linux_boot_log`] checks.
fn level_markers(level: Level) -> &'static [&'static str] {
    match level {
        Level::KernelAtEl2 => &["CPU: All CPU(s) started at EL2"],
        Level::UnderHypervisor => &["hyp: protected mode on", "CPU: All CPU(s) started at EL1"],
    }
}

/// The problems of a finished boot test run: QEMU's exit status and what the log lacks.
fn problems(status: Option<i32>, timeout: Duration, log: &str, level: Level) -> Vec<String> {
    let mut problems = Vec::new();
    match status {
        Some(0) => {}
        Some(status) => problems.push(format!("QEMU exit status {status} (0 expected)")),
        None => problems.push(format!("killed after the {} s timeout", timeout.as_secs())),
    }
    for marker in level_markers(level) {
        if !log.contains(marker) {
            problems.push(format!("the boot log lacks `{marker}`"));
        }
    }
    if let Err(problem) = linux::check_linux_boot_log(log, TEST_CPUS) {
        problems.push(problem.to_string());
    }
    problems
}

fn boot_test(kernel: &linux::Kernel, initramfs: &Path, level: Level) -> Result<(), XtaskError> {
    let boot = LinuxBoot {
        kernel: &kernel.image,
        initrd: Some(initramfs),
        bootargs: TEST_BOOTARGS,
        cpus: TEST_CPUS,
        cpu_model: TEST_CPU_MODEL,
        level,
        iommu: false,
        firmware_without_fix: false,
        deterministic: false,
    };
    let name = format!(
        "linux{}-{TEST_CPU_MODEL}-smp{TEST_CPUS}",
        match level {
            Level::KernelAtEl2 => "",
            Level::UnderHypervisor => "-hyp",
        }
    );
    let run = boot.prepare(&name, Duration::from_secs(180))?;
    let outcome = run.execute()?;
    let problems = problems(outcome.status, run.timeout, &outcome.log, level);
    qemu::report(
        &run.name,
        &outcome,
        &problems,
        &format!(
            "{} {}, {HOTPLUG_ROUNDS} hotplug rounds",
            kernel.package, kernel.version
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64-byte arm64 Image header with the given fields.
    fn header(text_offset: u64, image_size: u64, magic: &[u8; 4]) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[8..16].copy_from_slice(&text_offset.to_le_bytes());
        bytes[16..24].copy_from_slice(&image_size.to_le_bytes());
        bytes[56..60].copy_from_slice(magic);
        bytes
    }

    /// (label, header, file size, load address, expected)
    type HeaderCase = (
        &'static str,
        Vec<u8>,
        u64,
        u64,
        Result<KernelHeader, KernelError>,
    );

    #[test]
    fn kernel_header_table() {
        let room = INITRD_ADDRESS - KERNEL_ADDRESS;
        let magic = b"ARM\x64";
        let table: [HeaderCase; 8] = [
            (
                "Debian 6.1 cloud",
                header(0, 27 << 20, magic),
                26 << 20,
                KERNEL_ADDRESS,
                Ok(KernelHeader {
                    text_offset: 0,
                    image_size: 27 << 20,
                }),
            ),
            (
                "exactly up to the initramfs",
                header(0, room, magic),
                1 << 20,
                KERNEL_ADDRESS,
                Ok(KernelHeader {
                    text_offset: 0,
                    image_size: room,
                }),
            ),
            (
                "one byte too large",
                header(0, room + 1, magic),
                1 << 20,
                KERNEL_ADDRESS,
                Err(KernelError::OverlapsInitrd(INITRD_ADDRESS + 1)),
            ),
            (
                "no image_size: the file size counts",
                header(0, 0, magic),
                room + 1,
                KERNEL_ADDRESS,
                Err(KernelError::OverlapsInitrd(INITRD_ADDRESS + 1)),
            ),
            (
                "under the hypervisor the kernel starts later",
                header(0, room, magic),
                1 << 20,
                HOST_ADDRESS,
                Err(KernelError::OverlapsInitrd(
                    HOST_ADDRESS + INITRD_ADDRESS - KERNEL_ADDRESS,
                )),
            ),
            (
                "old kernel",
                header(0x8_0000, 20 << 20, magic),
                20 << 20,
                KERNEL_ADDRESS,
                Err(KernelError::TextOffset(0x8_0000)),
            ),
            (
                "gzip",
                {
                    let mut bytes = header(0, 0, b"\0\0\0\0");
                    bytes[..2].copy_from_slice(&[0x1f, 0x8b]);
                    bytes
                },
                10 << 20,
                KERNEL_ADDRESS,
                Err(KernelError::NotAnArm64Image),
            ),
            (
                "truncated",
                header(0, 0, magic)[..40].to_vec(),
                40,
                KERNEL_ADDRESS,
                Err(KernelError::Truncated),
            ),
        ];
        for (label, bytes, size, address, expected) in table {
            assert_eq!(
                check_kernel_header(&bytes, size, address),
                expected,
                "{label}"
            );
        }
    }

    /// A log that passes `linux::check_linux_boot_log` for 4 CPUs.
    const GOOD_LOG: &str = "psci: PSCIv1.1 detected in firmware.\n\
        smp: Brought up 1 node, 4 CPUs\n\
        CPU: All CPU(s) started at EL2\n\
        Run /init as init process\n\
        pkvm-init: online: 0-3\n\
        pkvm-init: done\n\
        reboot: Power down\n";

    /// (label, QEMU exit status, log, level, fragments of the expected problems)
    type ProblemCase = (
        &'static str,
        Option<i32>,
        String,
        Level,
        &'static [&'static str],
    );

    #[test]
    fn boot_test_problem_table() {
        let timeout = Duration::from_secs(180);
        let under_hypervisor = format!(
            "hyp: protected mode on\n{}",
            GOOD_LOG.replace("at EL2", "at EL1")
        );
        let table: [ProblemCase; 7] = [
            (
                "good at EL2",
                Some(0),
                GOOD_LOG.into(),
                Level::KernelAtEl2,
                &[],
            ),
            (
                "good under the hypervisor",
                Some(0),
                under_hypervisor.clone(),
                Level::UnderHypervisor,
                &[],
            ),
            (
                "at EL1 without the hypervisor",
                Some(0),
                under_hypervisor,
                Level::KernelAtEl2,
                &["started at EL2"],
            ),
            (
                "at EL2 under the hypervisor",
                Some(0),
                GOOD_LOG.into(),
                Level::UnderHypervisor,
                &["hyp: protected mode on", "started at EL1"],
            ),
            (
                "timeout",
                None,
                GOOD_LOG.into(),
                Level::KernelAtEl2,
                &["180 s timeout"],
            ),
            (
                "exit status",
                Some(1),
                GOOD_LOG.into(),
                Level::KernelAtEl2,
                &["exit status 1"],
            ),
            (
                "no power-off",
                Some(0),
                GOOD_LOG.replace("reboot: Power down", ""),
                Level::KernelAtEl2,
                &["Power down"],
            ),
        ];
        for (label, status, log, level, expected) in table {
            let found = problems(status, timeout, &log, level);
            assert_eq!(found.len(), expected.len(), "{label}: {found:?}");
            for (problem, fragment) in found.iter().zip(expected) {
                assert!(problem.contains(fragment), "{label}: {problem}");
            }
        }
    }
}
