//! `cargo xtask demo` and the hypervisor's QEMU scenarios (issue 4): the monitor boots the protected
//! hypervisor (`firmware/hyp`), which enters the host demo (`firmware/host-demo`); the host runs a
//! protected guest (`firmware/guest-demo`) or, in the hostile scenario, attacks the hypervisor with
//! bad hypercalls. Pass or fail is decided from QEMU's exit status and the serial log: the lines the
//! hypervisor and the host print must match what the configuration requires (protected mode on or
//! refused, firmware calls made or not, their number).

use crate::error::XtaskError;
use crate::firmware::{self, GUEST, HOST, HYPERVISOR, MONITOR, MONITOR_WITHOUT_FIX};
use crate::qemu::{self, Machine, Run};
use clap::Args;
use std::time::Duration;

/// Options of `cargo xtask demo`.
#[derive(Args, Clone, Debug)]
pub struct DemoArgs {
    /// CPU model (max, c1-pro-r0p2, c1-pro-r1p1, c1-pro-r2p0, ...).
    #[arg(long, default_value = "c1-pro-r1p1")]
    pub cpu: String,
    /// Number of CPUs (1 to 8).
    #[arg(long, default_value_t = 4)]
    pub cpus: usize,
    /// Guest memory in MiB (1 to 256).
    #[arg(long, default_value_t = 16)]
    pub memory: u64,
    /// Use a monitor built without the erratum call: the hypervisor must refuse protected mode.
    #[arg(long)]
    pub firmware_without_fix: bool,
    /// Stock Linux pKVM instead of our hypervisor: Debian's Linux >= 7.1 in protected mode at EL2
    /// runs a protected VM of --memory MiB (see `linux_demo.rs`).
    #[arg(long)]
    pub linux: bool,
    /// The board (stock Linux pKVM runs on `virt` only).
    #[arg(long, value_enum, default_value_t)]
    pub machine: Machine,
}

/// Which host scenario runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Demo,
    HostileHost,
    /// The attack suite (`firmware/host-demo/src/attacks.rs`), under `-icount` so the PMU counts
    /// instructions, with 5 GiB of DRAM so a page lies above 4 GiB.
    Attacks,
    /// DMA with QEMU's `edu` device behind the SMMUv3 (`-M iommu=smmuv3`): the host's own pages
    /// must be reachable, a guest's and the hypervisor's not.
    Dma,
}

impl Scenario {
    /// The host demo's scenario word (`host-demo`'s parameter block, word 0).
    fn mode(self) -> u64 {
        match self {
            Self::Demo => 1,
            Self::HostileHost => 2,
            Self::Attacks => 4,
            Self::Dma => 5,
        }
    }

    /// The name of its runs.
    fn name(self) -> &'static str {
        match self {
            Self::Demo => "demo",
            Self::HostileHost => "hostile-host",
            Self::Attacks => "attacks",
            Self::Dma => "dma",
        }
    }

    /// Parameter words after the common three (scenario, guest MiB, guest image size).
    fn extra_parameters(self) -> Vec<u64> {
        match self {
            Self::Attacks => vec![0, 0, HIGH_PAGE],
            Self::Demo | Self::HostileHost | Self::Dma => Vec::new(),
        }
    }

    /// QEMU arguments beyond the common ones: for the attack suite 5 GiB of DRAM, `-icount` (the
    /// PMU counts instructions only then) and a virtio-rng device on virtio-mmio; for the DMA scenario the SMMUv3 in front of the PCIe root
    /// complex and the `edu` device, its DMA not limited to 28 bits (its default mask).
    fn qemu_arguments(self) -> Vec<String> {
        match self {
            Self::Demo | Self::HostileHost => Vec::new(),
            Self::Attacks => [
                "-m",
                "5G",
                "-icount",
                "shift=0,sleep=off",
                "-device",
                "virtio-rng-device",
            ]
            .map(String::from)
            .to_vec(),
            Self::Dma => [
                "-M",
                "iommu=smmuv3",
                "-device",
                "edu,dma_mask=0xffffffffffffffff",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// A host page above 4 GiB for the attack suite (with `-m 5G` DRAM is 5 GiB from the board's base).
const HIGH_PAGE: u64 = crate::qemu::DRAM_BASE + (4 << 30);

/// What the configuration requires of the run.
#[derive(Debug, PartialEq, Eq)]
struct Expectation {
    protected_mode: bool,
    /// Whether ownership changes must make the erratum call.
    firmware_calls: bool,
}

fn expectation(cpu: &str, without_fix: bool) -> Result<Expectation, XtaskError> {
    let model = qemu::parse_cpu_model(cpu)?;
    let affected = model.affected_in_qemu();
    Ok(Expectation {
        protected_mode: !(affected && without_fix),
        firmware_calls: affected,
    })
}

/// The numbers after `prefix` on the first line containing it.
fn number_after(log: &str, prefix: &str) -> Option<u64> {
    let line = log.lines().find(|line| line.contains(prefix))?;
    let rest = &line[line.find(prefix)? + prefix.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The two numbers of "`prefix` A of B" on the first line containing `prefix`.
fn two_numbers_after(log: &str, prefix: &str) -> Option<(u64, u64)> {
    let first = number_after(log, prefix)?;
    let line = log.lines().find(|line| line.contains(prefix))?;
    let second = number_after(line, &format!("{first} of"))?;
    Some((first, second))
}

/// Lines the DMA scenario must print, and what their absence means.
const DMA_MARKERS: [(&str, &str); 6] = [
    (
        "hyp: smmu: translating every PCIe stream",
        "the hypervisor did not take the SMMU",
    ),
    (
        "host: dma: own pages reachable: yes",
        "DMA to the host's own pages failed",
    ),
    (
        "host: dma: guest secret read by DMA: no",
        "DMA read a protected guest's page",
    ),
    (
        "host: dma: guest page written by DMA: no",
        "DMA wrote a protected guest's page",
    ),
    (
        "host: dma: hypervisor memory written and read by DMA: no",
        "DMA reached the hypervisor's memory",
    ),
    (
        "host: dma: hypervisor alive: yes",
        "the hypervisor stopped answering",
    ),
];

/// Checks the log against the configuration; returns the problems found.
fn check_log(log: &str, expected: &Expectation, scenario: Scenario) -> Vec<String> {
    let mut problems: Vec<String> = Vec::new();
    let require = |problems: &mut Vec<String>, condition: bool, what: &str| {
        if !condition {
            problems.push(what.to_string());
        }
    };
    require(
        &mut problems,
        log.contains("host: RESULT: PASS"),
        "the host did not print RESULT: PASS",
    );
    if !expected.protected_mode {
        require(
            &mut problems,
            log.contains("hyp: erratum 4193714:") && log.contains("protected mode refused"),
            "the hypervisor did not print its refusal naming erratum 4193714",
        );
        require(
            &mut problems,
            log.contains("ProtectedModeDisabled"),
            "VM_CREATE was not refused",
        );
        return problems;
    }
    require(
        &mut problems,
        log.contains("hyp: protected mode on"),
        "the hypervisor did not enable protected mode",
    );
    if scenario == Scenario::HostileHost {
        require(
            &mut problems,
            !log.contains(": FAIL"),
            "a hostile-host check failed",
        );
        return problems;
    }
    if scenario == Scenario::Attacks {
        for line in log.lines().filter(|line| line.contains(": HOLE")) {
            problems.push(format!("attack not refused: {line}"));
        }
        require(
            &mut problems,
            log.contains("host: attack: summary: every attack refused, nothing lost"),
            "the attack suite did not finish with every attack refused",
        );
        require(
            &mut problems,
            !log.contains(": FAIL"),
            "an attack-suite check failed",
        );
        return problems;
    }
    if scenario == Scenario::Dma {
        for (line, what) in DMA_MARKERS {
            require(&mut problems, log.contains(line), what);
        }
        return problems;
    }
    let needed = number_after(log, "host: firmware calls needed on an affected CPU:");
    let made = number_after(log, "firmware calls so far:");
    match (needed, made) {
        (Some(needed), Some(made)) => {
            let wanted = if expected.firmware_calls { needed } else { 0 };
            if made != wanted {
                problems.push(format!(
                    "the hypervisor made {made} firmware calls, {wanted} expected"
                ));
            }
        }
        _ => problems.push("no firmware call count in the log".to_string()),
    }
    match two_numbers_after(log, "host: CPUs that answered the rendezvous SGI:") {
        Some((answered, others)) => {
            let wanted = if expected.firmware_calls { others } else { 0 };
            if answered != wanted {
                problems.push(format!(
                    "{answered} of {others} other CPUs answered the rendezvous, {wanted} expected"
                ));
            }
        }
        None => problems.push("no rendezvous count in the log".to_string()),
    }
    if expected.firmware_calls {
        require(
            &mut problems,
            log.contains("mitigated by the firmware DVMSync call"),
            "the mitigation was not enabled",
        );
    } else {
        require(
            &mut problems,
            log.contains("no firmware call needed"),
            "the hypervisor did not skip the firmware call",
        );
    }
    problems
}

/// Refuses CPU counts and guest memory sizes the demo does not support.
fn check_sizes(args: &DemoArgs) -> Result<(), XtaskError> {
    let max_cpus = args.machine.facts().max_cpus.min(8);
    if !(1..=max_cpus).contains(&args.cpus) {
        return Err(XtaskError::Usage(format!(
            "--cpus must be 1 to {max_cpus}, not {}",
            args.cpus
        )));
    }
    if !(1..=256).contains(&args.memory) {
        return Err(XtaskError::Usage(format!(
            "--memory must be 1 to 256 MiB, not {}",
            args.memory
        )));
    }
    Ok(())
}

/// Builds the images and runs one configuration; returns the log when it behaved as required.
fn run_configuration(
    args: &DemoArgs,
    scenario: Scenario,
    show_log: bool,
) -> Result<String, XtaskError> {
    check_sizes(args)?;
    let expected = expectation(&args.cpu, args.firmware_without_fix)?;
    let machine = args.machine;
    let facts = machine.facts();
    let monitor = firmware::build_for(
        machine,
        if args.firmware_without_fix {
            MONITOR_WITHOUT_FIX
        } else {
            MONITOR
        },
    )?;
    let hypervisor = firmware::build_for(machine, HYPERVISOR)?;
    let host = firmware::build_for(machine, HOST)?;
    let guest = firmware::build_for(machine, GUEST)?;
    let guest_size = std::fs::metadata(&guest)
        .map_err(|error| XtaskError::Unexpected(format!("{}: {error}", guest.display())))?
        .len();
    let name = format!(
        "{}-{}-smp{}{}{}",
        scenario.name(),
        args.cpu,
        args.cpus,
        if args.firmware_without_fix {
            "-without-fix"
        } else {
            ""
        },
        machine.suffix()
    );
    let run = Run {
        machine,
        name,
        monitor,
        payload: Some(hypervisor),
        parameters: [scenario.mode(), args.memory, guest_size]
            .into_iter()
            .chain(scenario.extra_parameters())
            .collect(),
        cpu: qemu::cpu_argument(&args.cpu)?,
        cpus: args.cpus,
        extra: [
            "-device".into(),
            format!(
                "loader,file={},addr={:#x},force-raw=on",
                host.display(),
                facts.host_address
            ),
            "-device".into(),
            format!(
                "loader,file={},addr={:#x},force-raw=on",
                guest.display(),
                facts.guest_image_address
            ),
        ]
        .into_iter()
        .chain(scenario.qemu_arguments())
        .collect(),
        timeout: Duration::from_secs(120),
    };
    let outcome = run.execute()?;
    if show_log {
        print!("{}", outcome.log);
    }
    let mut problems = check_log(&outcome.log, &expected, scenario);
    if outcome.status != Some(0) {
        problems.insert(
            0,
            format!("QEMU exit status {:?} (0 expected)", outcome.status),
        );
    }
    qemu::report(&run.name, &outcome, &problems, "")?;
    Ok(outcome.log)
}

/// `cargo xtask demo`.
pub fn demo(args: &DemoArgs) -> Result<(), XtaskError> {
    if args.linux {
        if args.machine != Machine::Virt {
            return Err(XtaskError::Usage(
                "stock Linux pKVM runs on --machine virt only".into(),
            ));
        }
        return crate::linux_demo::demo(args);
    }
    crate::setup::ensure_qemu()?;
    let expected = expectation(&args.cpu, args.firmware_without_fix)?;
    check_sizes(args)?;
    println!(
        "xtask: demo on {} x {} CPUs, {} MiB of guest memory, {}; expected: protected mode {}, firmware calls {}",
        args.cpus,
        args.cpu,
        args.memory,
        if args.firmware_without_fix {
            "firmware WITHOUT the erratum fix"
        } else {
            "firmware with the erratum fix"
        },
        if expected.protected_mode {
            "on"
        } else {
            "refused"
        },
        match (expected.protected_mode, expected.firmware_calls) {
            (false, _) => "none (no protected VM)",
            (true, true) => "one per revocation",
            (true, false) => "never made",
        },
    );
    run_configuration(args, Scenario::Demo, true).map(|_| ())
}

/// The hypervisor's QEMU scenarios (called by `cargo xtask test`).
pub fn run_qemu_tests() -> Result<(), XtaskError> {
    let configuration = |cpu: &str, cpus, without_fix| DemoArgs {
        cpu: cpu.to_string(),
        cpus,
        memory: 16,
        firmware_without_fix: without_fix,
        linux: false,
        machine: Machine::Virt,
    };
    let demos = [
        configuration("c1-pro-r1p1", 4, false),
        configuration("c1-pro-r2p0", 4, false),
        configuration("max", 4, false),
        configuration("c1-pro-r1p1", 4, true),
        configuration("c1-pro-r0p2", 1, false),
        // Firmware without the fix does not matter where no CPU is affected.
        configuration("c1-pro-r2p0", 2, true),
        DemoArgs {
            memory: 64,
            ..configuration("c1-pro-r0p2", 2, false)
        },
    ];
    for args in &demos {
        run_configuration(args, Scenario::Demo, false)?;
    }
    let hostile = DemoArgs {
        memory: 2,
        ..configuration("c1-pro-r1p1", 2, false)
    };
    run_configuration(&hostile, Scenario::HostileHost, false)?;
    run_configuration(&attack_configuration(), Scenario::Attacks, false)?;
    run_dma_scenario(false)?;
    // QEMU sbsa-ref: DRAM at 1 TiB (48-bit maps and stage-2), 8-CPU clusters, a device tree the
    // monitor completes; a protected guest on affected CPUs, and the refusal without the fix.
    let sbsa = |without_fix| DemoArgs {
        machine: Machine::SbsaRef,
        ..configuration("c1-pro-r1p1", 4, without_fix)
    };
    for args in [sbsa(false), sbsa(true)] {
        run_configuration(&args, Scenario::Demo, false)?;
    }
    Ok(())
}

/// The attack suite's machine: one affected CPU (under `-icount` a second CPU's store loop would
/// take most of the machine's time), 2 MiB of guest memory.
fn attack_configuration() -> DemoArgs {
    DemoArgs {
        cpu: "c1-pro-r1p1".to_string(),
        cpus: 1,
        memory: 2,
        firmware_without_fix: false,
        linux: false,
        machine: Machine::Virt,
    }
}

/// `cargo xtask attacks`: the attack suite with its log on the terminal.
pub fn attacks() -> Result<(), XtaskError> {
    crate::setup::ensure_qemu()?;
    run_configuration(&attack_configuration(), Scenario::Attacks, true).map(|_| ())
}

/// The DMA scenario on 2 affected CPUs with 2 MiB of guest memory; `show_log` prints the serial log.
pub fn run_dma_scenario(show_log: bool) -> Result<(), XtaskError> {
    let args = DemoArgs {
        cpu: "c1-pro-r1p1".to_string(),
        cpus: 2,
        memory: 2,
        firmware_without_fix: false,
        linux: false,
        machine: Machine::Virt,
    };
    run_configuration(&args, Scenario::Dma, show_log).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_per_configuration() {
        let table = [
            ("c1-pro-r1p1", false, true, true),
            ("c1-pro-r1p1", true, false, true),
            ("c1-pro-r2p0", false, true, false),
            ("c1-pro-r2p0", true, true, false),
            ("max", false, true, false),
        ];
        for (cpu, without_fix, protected_mode, firmware_calls) in table {
            assert_eq!(
                expectation(cpu, without_fix).ok(),
                Some(Expectation {
                    protected_mode,
                    firmware_calls
                }),
                "{cpu} without fix {without_fix}"
            );
        }
        assert!(expectation("pentium", false).is_err());
    }

    #[test]
    fn log_checks_find_wrong_firmware_call_counts() {
        let affected = Expectation {
            protected_mode: true,
            firmware_calls: true,
        };
        let good = "hyp: protected mode on; erratum 4193714 mitigated by the firmware DVMSync call\n\
                    host: firmware calls needed on an affected CPU: 18\n\
                    hyp: protected VM 1 freed; erratum 4193714 firmware calls so far: 18; aborts\n\
                    host: CPUs that answered the rendezvous SGI: 3 of 3 other CPUs\n\
                    host: RESULT: PASS\n";
        assert_eq!(
            check_log(good, &affected, Scenario::Demo),
            Vec::<String>::new()
        );
        let wrong = good.replace("so far: 18", "so far: 17");
        assert_eq!(check_log(&wrong, &affected, Scenario::Demo).len(), 1);
        let unaffected = Expectation {
            protected_mode: true,
            firmware_calls: false,
        };
        assert_eq!(check_log(good, &unaffected, Scenario::Demo).len(), 3);
        let silent = good.replace("3 of 3 other", "2 of 3 other");
        assert_eq!(check_log(&silent, &affected, Scenario::Demo).len(), 1);
        let refused = Expectation {
            protected_mode: false,
            firmware_calls: true,
        };
        assert_eq!(check_log(good, &refused, Scenario::Demo).len(), 2);
    }
}
