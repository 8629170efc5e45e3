//! The summary at the end of `cargo xtask demo --linux`.

use super::{Configuration, Observed, PKVM_REFUSED, Workload, phases};
use crate::linux;
use std::fmt::Write as _;

/// The summary printed at the end of the demo.
pub fn summary(
    configuration: &Configuration,
    kernel: &linux::Kernel,
    observed: &Observed,
    problems: &[String],
) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "==== Linux pKVM on the pkvm-rs monitor: summary ====");
    let _ = writeln!(
        text,
        "kernel:         {} {} ({})",
        kernel.package, kernel.version, kernel.suite
    );
    let _ = writeln!(
        text,
        "machine:        {} x {}, firmware {} the erratum call; erratum detected by Linux: {}",
        configuration.cpus,
        configuration.cpu,
        if configuration.without_fix {
            "WITHOUT"
        } else {
            "with"
        },
        if observed.erratum_detected {
            "yes"
        } else {
            "no"
        }
    );
    let pkvm = match (&observed.pkvm_on, observed.pkvm_refused) {
        (Some(line), _) => format!("on (\"{line}\")"),
        (None, true) => format!("refused (\"{PKVM_REFUSED}\")"),
        (None, false) => "off".to_string(),
    };
    let _ = writeln!(text, "pKVM:           {pkvm}");
    if let Some(total) = observed.total {
        let _ = writeln!(
            text,
            "erratum calls:  {} in all (from EL1 {}, from EL2 {}); deadline misses {}; longest wait {}",
            total.total(),
            total.el1,
            total.el2,
            observed.deadline_misses.unwrap_or(0),
            observed.longest_wait.as_deref().unwrap_or("?")
        );
    }
    if let Some([boot, run, teardown]) = phases(observed)
        && matches!(configuration.workload, Workload::ProtectedVms { vms: 1 })
    {
        let _ = writeln!(
            text,
            "  by phase:     boot {} (EL1 {}, EL2 {}), VM run {}, teardown {}",
            boot.total(),
            boot.el1,
            boot.el2,
            run.total(),
            teardown.total()
        );
    }
    let answered: Vec<String> = observed
        .cpus
        .iter()
        .enumerate()
        .map(|(cpu, line)| format!("CPU {cpu}: {}", line.answered))
        .collect();
    if !answered.is_empty() {
        let _ = writeln!(text, "SGIs answered:  {}", answered.join(", "));
    }
    let skipped: u64 = observed.cpus.iter().map(|line| line.skipped).sum();
    let _ = writeln!(text, "CPUs skipped as off or suspended: {skipped}");
    if !observed.stress.is_empty() {
        let stress: Vec<String> = observed
            .stress
            .iter()
            .map(|(cpu, length)| format!("CPU {cpu} (SVL {length} bytes)"))
            .collect();
        let _ = writeln!(text, "SME stress:     {}", stress.join(", "));
    }
    for vm in &observed.vms {
        let _ = writeln!(
            text,
            "protected VM {}: {} MiB, {} pages written by the guest; host probes: {} pages, {} faulted, {} readable\n  after the teardown (stock pKVM's reclaim, reported, not judged): {} words of the secret readable by the host",
            vm.tag,
            configuration.memory_mib,
            vm.pages,
            vm.probed,
            vm.faulted,
            vm.readable,
            vm.secret_after_teardown
        );
    }
    let faults: u64 = observed.vms.iter().map(|vm| vm.faulted).sum();
    let _ = writeln!(text, "faults seen:    {faults}");
    if problems.is_empty() {
        let _ = writeln!(text, "RESULT: PASS");
    } else {
        let _ = writeln!(text, "RESULT: FAIL: {}", problems.join("; "));
    }
    text
}
