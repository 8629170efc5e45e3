//! `cargo xtask demo --linux` and the stock-pKVM tests: Debian's Linux ≥ 7.1 in protected mode
//! (`kvm-arm.mode=protected`) at EL2 on the monitor, SME Streaming-mode stress on the other CPUs,
//! a protected VM launched from user space (`linux/pvm`), its teardown, and the monitor's own count
//! of the erratum 4193714 calls that upstream pKVM made.
//!
//! Phases are told apart by CPU hotplug: the monitor prints its call count at every `CPU_OFF`, and
//! the init script cycles one CPU after boot, the launcher cycles it after the guest's run (before
//! the teardown), and the script once more after the teardown. Pass or fail is decided from QEMU's
//! exit status and the console log, never from timing.
//!
//! | file | job |
//! | --- | --- |
//! | `mod.rs` | configurations, the `/init` script, running a boot, the demo, the tests, the benchmark's runs |
//! | `log.rs` | reading the console log |
//! | `check.rs` | what a run must show for its configuration |
//! | `summary.rs` | the demo's summary |

use crate::error::XtaskError;
mod check;
mod log;
mod summary;

pub use check::problems;
use log::number_after;
pub use log::{Calls, Observed, observe, phases};
pub use summary::summary;

use crate::demo::DemoArgs;
use crate::linux::{self, KernelKind};
use crate::qemu;
use crate::run::{Level, LinuxBoot};
use std::fmt::Write as _;
use std::time::Duration;

/// The kernel command line: protected KVM; a panic ends QEMU at once (`-no-reboot`).
const BOOTARGS: &str = "console=ttyAMA0 kvm-arm.mode=protected panic=-1";
/// Wall-clock limit of one boot (a run takes 30 to 90 s on a shared 2-core machine).
const TIMEOUT: Duration = Duration::from_secs(420);
/// The line Linux prints when protected KVM is up (`nVHE` or `hVHE`).
const PKVM_ON: &str = "mode initialized successfully";
/// The line Linux ≥ 7.1 prints when the firmware does not answer the erratum call with 0.
pub const PKVM_REFUSED: &str = "pKVM requires firmware support for C1-Pro erratum 4193714";
/// Linux's erratum detection line.
const ERRATUM_DETECTED: &str = "CPU features: detected: C1-Pro SME DVMSync early acknowledgement";

/// What the init script does once Linux is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// The demo: SME stress on the other CPUs, `vms` protected VMs at once (each on its own CPU,
    /// from CPU 0 up), phase marks when there is one VM.
    ProtectedVms {
        /// How many VMs run at the same time.
        vms: usize,
    },
    /// CPU hotplug loops under pKVM (the boot tests' script).
    Hotplug {
        /// Rounds of taking every secondary CPU offline and online again.
        rounds: u32,
    },
}

/// One Linux pKVM run.
#[derive(Clone, Debug)]
pub struct Configuration {
    /// CPU model name (`errata` crate).
    pub cpu: String,
    /// CPUs (2 to 8: one runs the launcher, another marks the phases).
    pub cpus: usize,
    /// Guest memory of each VM in MiB.
    pub memory_mib: u64,
    /// Monitor without the erratum call.
    pub without_fix: bool,
    /// What runs.
    pub workload: Workload,
    /// SME stress on the CPUs without a VM (the demo and tests); off for the benchmark, whose
    /// instruction count must not depend on how long the stress happens to run.
    pub stress: bool,
    /// Under `-icount shift=0,sleep=off` (the counter advances one nanosecond per instruction any
    /// vCPU retires), with the real-time clock and the device tree free of anything that changes
    /// from run to run.
    pub icount: bool,
    /// Idle CPUs poll (`nohlt`) instead of waiting in `WFI`: no vCPU ever sleeps, so the counter at
    /// power-off counts every instruction retired and nothing else (no idle time skipped).
    pub poll_idle: bool,
}

/// What the configuration requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// The CPU model has the erratum (Linux detects it, pKVM makes the calls).
    pub affected: bool,
    /// pKVM must come up (false: Linux must refuse it).
    pub pkvm_on: bool,
}

impl Configuration {
    /// The expectation for this configuration.
    pub fn expectation(&self) -> Result<Expectation, XtaskError> {
        let affected = qemu::parse_cpu_model(&self.cpu)?.affected_in_qemu();
        Ok(Expectation {
            affected,
            pkvm_on: !(affected && self.without_fix),
        })
    }

    /// The CPU whose hotplug marks phase boundaries: the last one.
    fn mark_cpu(&self) -> usize {
        self.cpus - 1
    }

    /// The run's name (and log file name).
    fn name(&self) -> String {
        let workload = match self.workload {
            Workload::ProtectedVms { vms: 1 } => format!("pvm{}m", self.memory_mib),
            Workload::ProtectedVms { vms } => format!("{vms}pvms{}m", self.memory_mib),
            Workload::Hotplug { rounds } => format!("hotplug{rounds}"),
        };
        format!(
            "linux-pkvm-{workload}-{}-smp{}{}{}",
            self.cpu,
            self.cpus,
            if self.without_fix { "-without-fix" } else { "" },
            match (self.icount, self.poll_idle) {
                (true, true) => "-icount-nohlt",
                (true, false) => "-icount",
                _ => "",
            }
        )
    }

    fn check(&self) -> Result<(), XtaskError> {
        if !(2..=8).contains(&self.cpus) {
            return Err(XtaskError::Usage(format!(
                "the Linux pKVM demo needs 2 to 8 CPUs (one launches, one marks phases), not {}",
                self.cpus
            )));
        }
        if !(1..=256).contains(&self.memory_mib) {
            return Err(XtaskError::Usage(format!(
                "--memory must be 1 to 256 MiB, not {}",
                self.memory_mib
            )));
        }
        if let Workload::ProtectedVms { vms } = self.workload
            && !(1..self.cpus).contains(&vms)
        {
            return Err(XtaskError::Usage(format!(
                "{vms} VMs on {} CPUs: each VM needs its own CPU and one CPU marks phases",
                self.cpus
            )));
        }
        Ok(())
    }

    /// The `/init` script.
    pub fn init_script(&self) -> String {
        let vms = match self.workload {
            Workload::Hotplug { rounds } => return linux::hotplug_init_script(rounds),
            Workload::ProtectedVms { vms } => vms,
        };
        let mark = self.mark_cpu();
        let stress: Vec<String> = if self.stress {
            (vms..self.cpus).map(|cpu| cpu.to_string()).collect()
        } else {
            Vec::new()
        };
        let mut launchers = String::new();
        for vm in 0..vms {
            // With one VM the launcher marks the end of the run itself, before the teardown.
            let mark_option = if vms == 1 {
                format!(" --mark-cpu {mark}")
            } else {
                String::new()
            };
            let _ = writeln!(
                launchers,
                "    pvm-launch --memory-mib {} --cpu {vm} --seed {}{mark_option} & launchers=\"$launchers $!\"",
                self.memory_mib,
                0x5EC2_E7C0_0000_0000_u64 + vm as u64
            );
        }
        format!(
            r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() {{ echo "pkvm-demo: $*"; }}
cycle() {{
    echo 0 > /sys/devices/system/cpu/cpu$1/online || say "FAIL cannot take cpu$1 offline"
    echo 1 > /sys/devices/system/cpu/cpu$1/online || say "FAIL cannot bring cpu$1 online"
}}
say "started, kernel $(uname -r), $(nproc) cpus online: $(cat /sys/devices/system/cpu/online)"
if dmesg | grep -q "{PKVM_ON}"; then pkvm=on; else pkvm=off; fi
say "pkvm $pkvm"
# Only emergencies on the console from now on: the monitor prints its marks on the same UART, and a
# kernel message printed at the same moment would cut into them.
echo 1 > /proc/sys/kernel/printk
say "mark boot (cpu{mark})"
cycle {mark}
if [ $pkvm = on ]; then
    stress=""
    stress_cpus="{stress}"
    for cpu in $stress_cpus; do
        sme-stress --cpu $cpu & stress="$stress $!"
    done
    launchers=""
{launchers}    for pid in $launchers; do
        wait $pid || say "FAIL a launcher exited with status $?"
    done
    kill $stress
    for pid in $stress; do wait $pid; done
    say "stress stopped"
    [ "$(cat /sys/devices/system/cpu/cpu{mark}/online)" = 1 ] || echo 1 > /sys/devices/system/cpu/cpu{mark}/online
    say "mark teardown (cpu{mark})"
    cycle {mark}
fi
say "online: $(cat /sys/devices/system/cpu/online)"
say "done"
poweroff -f
"#,
            stress = stress.join(" "),
        )
    }
}

/// Boots one configuration; returns the log, what it showed and the problems.
fn run(
    configuration: &Configuration,
    kernel: &linux::Kernel,
) -> Result<(qemu::Outcome, Observed, Vec<String>), XtaskError> {
    configuration.check()?;
    let expected = configuration.expectation()?;
    let programs = match configuration.workload {
        Workload::ProtectedVms { .. } => linux::pvm::build()?,
        Workload::Hotplug { .. } => Vec::new(),
    };
    let initramfs = linux::build_initramfs(&configuration.init_script(), &programs)?;
    let bootargs = if configuration.poll_idle {
        format!("{BOOTARGS} nohlt")
    } else {
        BOOTARGS.to_string()
    };
    let boot = LinuxBoot {
        kernel: &kernel.image,
        initrd: Some(&initramfs),
        bootargs: &bootargs,
        cpus: configuration.cpus,
        cpu_model: &configuration.cpu,
        level: Level::KernelAtEl2,
        firmware_without_fix: configuration.without_fix,
        deterministic: configuration.icount,
        iommu: false,
    };
    let mut qemu_run = boot.prepare(&configuration.name(), TIMEOUT)?;
    if configuration.icount {
        qemu_run.extra.extend(
            [
                "-icount",
                "shift=0,sleep=off",
                "-rtc",
                "base=2026-01-01T00:00:00,clock=vm",
            ]
            .map(String::from),
        );
    }
    let outcome = qemu_run.execute()?;
    let observed = observe(&outcome.log);
    let mut problems = problems(configuration, expected, outcome.status, &observed);
    if let Workload::Hotplug { .. } = configuration.workload
        && let Err(problem) = linux::check_linux_boot_log(&outcome.log, configuration.cpus)
    {
        problems.push(problem.to_string());
    }
    Ok((outcome, observed, problems))
}

/// One run of stock Linux pKVM measured for `cargo xtask bench`.
#[derive(Clone, Debug)]
pub struct Measured {
    /// Instructions retired by all vCPUs from reset to power-off (the monitor's counter under
    /// `-icount shift=0` with no vCPU ever sleeping).
    pub instructions: u64,
    /// The monitor's call counts.
    pub calls: Calls,
    /// Calls at boot, during the VM's run, during its teardown.
    pub phases: [Calls; 3],
    /// Pages the guest wrote (each given to it on its first touch).
    pub guest_pages: u64,
    /// Counter time inside the erratum calls, as instructions (`-icount shift=0`: one per
    /// nanosecond), summed over all calls.
    pub inside_calls: u64,
    /// Wall-clock time of the run.
    pub seconds: f64,
}

/// Boots stock Linux pKVM with one protected VM of `memory_mib` MiB on 4 `cpu` CPUs, without
/// stress, under `-icount`, and reads what it cost.
pub fn measure(
    cpu: &str,
    memory_mib: u64,
    poll_idle: bool,
    kernel: &linux::Kernel,
) -> Result<Measured, XtaskError> {
    let configuration = Configuration {
        cpu: cpu.to_string(),
        cpus: 4,
        memory_mib,
        without_fix: false,
        workload: Workload::ProtectedVms { vms: 1 },
        stress: false,
        icount: true,
        poll_idle,
    };
    let (outcome, observed, problems) = run(&configuration, kernel)?;
    qemu::report(&configuration.name(), &outcome, &problems, "")?;
    let counter = outcome
        .log
        .lines()
        .find_map(|line| line.split("monitor: counter at power-off: ").nth(1))
        .ok_or_else(|| {
            XtaskError::Unexpected(format!("{}: no counter line", configuration.name()))
        })?;
    let ticks = u128::from(number_after(counter, "").unwrap_or(0));
    let frequency = u128::from(number_after(counter, "ticks at ").unwrap_or(0)).max(1);
    let missing = || {
        XtaskError::Unexpected(format!(
            "{}: the log lacks the phase marks",
            configuration.name()
        ))
    };
    let inside = outcome
        .log
        .lines()
        .find_map(|line| line.split("monitor: time inside erratum calls: ").nth(1))
        .and_then(|text| number_after(text, ""))
        .ok_or_else(|| {
            XtaskError::Unexpected(format!(
                "{}: no time inside the calls",
                configuration.name()
            ))
        })?;
    Ok(Measured {
        instructions: u64::try_from(ticks * 1_000_000_000 / frequency).unwrap_or(u64::MAX),
        calls: observed.total.ok_or_else(missing)?,
        phases: phases(&observed).ok_or_else(missing)?,
        guest_pages: observed.vms.first().map_or(0, |vm| vm.pages),
        inside_calls: u64::try_from(u128::from(inside) * 1_000_000_000 / frequency)
            .unwrap_or(u64::MAX),
        seconds: outcome.elapsed.as_secs_f64(),
    })
}

/// Lines of the console log worth showing while the demo runs (the rest is the kernel's boot).
fn interesting(line: &str) -> bool {
    line.starts_with("monitor:")
        || line.starts_with("pkvm-demo:")
        || line.starts_with("pvm")
        || line.starts_with("sme-stress:")
        || [
            ERRATUM_DETECTED,
            PKVM_ON,
            PKVM_REFUSED,
            "Hyp mode",
            "reboot:",
        ]
        .iter()
        .any(|marker| line.contains(marker))
}

/// `cargo xtask demo --linux`.
pub fn demo(args: &DemoArgs) -> Result<(), XtaskError> {
    crate::setup::ensure_qemu()?;
    let configuration = Configuration {
        cpu: args.cpu.clone(),
        cpus: args.cpus,
        memory_mib: args.memory,
        without_fix: args.firmware_without_fix,
        workload: Workload::ProtectedVms { vms: 1 },
        stress: true,
        icount: false,
        poll_idle: false,
    };
    configuration.check()?;
    let expected = configuration.expectation()?;
    let kernel = linux::kernel(KernelKind::Pkvm)?;
    println!(
        "xtask: Linux pKVM demo: {} {} on {} x {}, firmware {} the erratum call, a protected VM of {} MiB; expected: pKVM {}, erratum calls {}",
        kernel.package,
        kernel.version,
        configuration.cpus,
        configuration.cpu,
        if configuration.without_fix {
            "WITHOUT"
        } else {
            "with"
        },
        configuration.memory_mib,
        if expected.pkvm_on { "on" } else { "refused" },
        match (expected.pkvm_on, expected.affected) {
            (false, _) => "only the host kernel's probe",
            (true, true) => "one per page given away",
            (true, false) => "none",
        }
    );
    let (outcome, observed, problems) = run(&configuration, &kernel)?;
    for line in outcome.log.lines().map(|line| line.trim_end_matches('\r')) {
        if interesting(line) {
            println!("{line}");
        }
    }
    print!("{}", summary(&configuration, &kernel, &observed, &problems));
    println!(
        "xtask: whole log: {} ({:.1} s)",
        outcome.log_path.display(),
        outcome.elapsed.as_secs_f64()
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(XtaskError::Check(format!(
            "the Linux pKVM demo failed {}",
            qemu::log_hint(&outcome.log_path)
        )))
    }
}

/// The stock-pKVM tests of `cargo xtask test` (in `cargo xtask test-linux`): the demo on affected
/// CPUs, the refusal with firmware lacking the fix, no calls on a fixed revision, CPU hotplug under
/// pKVM, and two protected VMs at once (two real callers of the rendezvous at the same time).
pub fn run_tests() -> Result<(), XtaskError> {
    let kernel = linux::kernel(KernelKind::Pkvm).map_err(|error| {
        XtaskError::Check(format!(
            "the Linux pKVM tests need Debian's Linux >= 7.1 for arm64: {error}"
        ))
    })?;
    let configuration = |cpu: &str, without_fix, memory_mib, workload| Configuration {
        cpu: cpu.to_string(),
        cpus: 4,
        memory_mib,
        without_fix,
        workload,
        stress: true,
        icount: false,
        poll_idle: false,
    };
    let one = Workload::ProtectedVms { vms: 1 };
    let configurations = [
        configuration("c1-pro-r0p2", false, 16, one),
        configuration("c1-pro-r0p2", true, 16, one),
        configuration("c1-pro-r2p0", false, 16, one),
        configuration("c1-pro-r1p1", false, 0, Workload::Hotplug { rounds: 3 }),
        configuration("c1-pro-r0p2", false, 4, Workload::ProtectedVms { vms: 2 }),
    ];
    for configuration in &configurations {
        let configuration = Configuration {
            memory_mib: configuration.memory_mib.max(1),
            ..configuration.clone()
        };
        let (outcome, observed, problems) = run(&configuration, &kernel)?;
        let calls = observed.total.map_or("no statistics".to_string(), |total| {
            format!("{} erratum calls", total.total())
        });
        qemu::report(&configuration.name(), &outcome, &problems, &calls)?;
    }
    Ok(())
}

#[cfg(test)]
mod fixtures {
    use super::*;

    /// The lines of a passing demo on 4 affected CPUs, as the monitor, Linux and the programs
    /// print them.
    pub const GOOD_LOG: &str = "\
[    0.000000] CPU features: detected: C1-Pro SME DVMSync early acknowledgement\r
[    6.757653] kvm [1]: Protected hVHE mode initialized successfully\r
pkvm-demo: pkvm on\r
monitor: CPU 3 off; erratum calls so far: 3115 (from EL1 1, from EL2 3114)\r
sme-stress: CPU 1: streaming stores running, SVL 32 bytes, 8192 stores per batch\r
sme-stress: CPU 2: streaming stores running, SVL 32 bytes, 8192 stores per batch\r
sme-stress: CPU 3: streaming stores running, SVL 32 bytes, 8192 stores per batch\r
monitor: CPU 3 off; erratum calls so far: 7228 (from EL1 1, from EL2 7227)\r
pvm0: summary: pages=4094 probed=4095 faulted=4095 readable=0 secret_after_teardown=0\r
pvm0: RESULT PASS\r
monitor: CPU 3 off; erratum calls so far: 7228 (from EL1 1, from EL2 7227)\r
pkvm-demo: done\r
[   82.794379] reboot: Power down\r
monitor: erratum 4193714 calls: 7228 (from EL1 1, from EL2 7227); deadline misses 0; longest wait 31549.040 us\r
monitor:   CPU 0: calls 4113, SGIs sent 12339, SGIs answered 3115, CPUs skipped as off or suspended 0\r
monitor:   CPU 1: calls 3115, SGIs sent 9345, SGIs answered 4113, CPUs skipped as off or suspended 0\r
monitor:   CPU 2: calls 0, SGIs sent 0, SGIs answered 7228, CPUs skipped as off or suspended 0\r
monitor:   CPU 3: calls 0, SGIs sent 0, SGIs answered 7228, CPUs skipped as off or suspended 2\r
monitor: PowerOff\r
";

    pub fn demo(cpu: &str, without_fix: bool) -> Configuration {
        Configuration {
            cpu: cpu.into(),
            cpus: 4,
            memory_mib: 16,
            without_fix,
            workload: Workload::ProtectedVms { vms: 1 },
            stress: true,
            icount: false,
            poll_idle: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::demo;
    use super::*;

    #[test]
    fn init_scripts_mark_phases_and_place_programs() {
        let script = demo("c1-pro-r0p2", false).init_script();
        assert!(script.contains("mount -t devtmpfs devtmpfs /dev"));
        assert!(script.contains("pvm-launch --memory-mib 16 --cpu 0 --seed "));
        assert!(script.contains("--mark-cpu 3 &"));
        assert!(script.contains("stress_cpus=\"1 2 3\""));
        assert!(script.trim_end().ends_with("poweroff -f"));
        let two = Configuration {
            workload: Workload::ProtectedVms { vms: 2 },
            ..demo("c1-pro-r0p2", false)
        };
        let script = two.init_script();
        assert!(script.contains("--cpu 0 --seed") && script.contains("--cpu 1 --seed"));
        assert!(!script.contains("--mark-cpu"));
        assert!(script.contains("stress_cpus=\"2 3\""));
        let too_many = Configuration {
            workload: Workload::ProtectedVms { vms: 4 },
            ..demo("c1-pro-r0p2", false)
        };
        assert!(too_many.check().is_err());
    }
}
