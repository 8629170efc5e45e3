//! What a Linux pKVM run must show for its configuration.

use super::{Configuration, Expectation, Observed, PKVM_REFUSED, Workload, phases};

/// Checks a run's log against the configuration; returns the problems found.
pub fn problems(
    configuration: &Configuration,
    expected: Expectation,
    status: Option<i32>,
    observed: &Observed,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut require = |condition: bool, what: String| {
        if !condition {
            problems.push(what);
        }
    };
    require(
        status == Some(0),
        format!("QEMU exit status {status:?} (0 expected)"),
    );
    require(observed.done, "the init script did not finish".into());
    require(
        observed.powered_off,
        "Linux did not power off through PSCI".into(),
    );
    for failure in &observed.failures {
        require(false, format!("the log reports: {failure}"));
    }
    require(
        observed.erratum_detected == expected.affected,
        format!(
            "Linux {} the erratum on {}",
            if observed.erratum_detected {
                "detected"
            } else {
                "did not detect"
            },
            configuration.cpu
        ),
    );
    let Some(total) = observed.total else {
        require(false, "the monitor printed no statistics".into());
        return problems;
    };
    require(
        observed.deadline_misses == Some(0),
        format!(
            "the monitor missed {:?} deadlines",
            observed.deadline_misses
        ),
    );
    if !expected.pkvm_on {
        require(
            observed.pkvm_refused && observed.pkvm_on.is_none(),
            format!("Linux did not refuse pKVM with \"{PKVM_REFUSED}\""),
        );
        require(
            total.el1 >= 1 && total.el2 == 0,
            format!(
                "the host kernel's probe should reach the monitor from EL1 and nothing from EL2, got {total:?}"
            ),
        );
        return problems;
    }
    require(
        observed.pkvm_on.is_some() && !observed.pkvm_refused,
        "pKVM did not initialise".into(),
    );
    if !expected.affected {
        require(
            total.total() == 0,
            format!(
                "{} erratum calls on a CPU without the erratum",
                total.total()
            ),
        );
    } else {
        require(
            total.el1 >= 1 && total.el2 >= 1000,
            format!("too few erratum calls for pKVM's start: {total:?}"),
        );
        for (cpu, line) in observed.cpus.iter().enumerate() {
            require(
                line.answered > 0 || line.calls == total.total(),
                format!("CPU {cpu} answered no rendezvous SGI"),
            );
        }
    }
    let Workload::ProtectedVms { vms } = configuration.workload else {
        return problems;
    };
    require(
        observed.vms.len() == vms && observed.vms.iter().all(|vm| vm.passed),
        format!(
            "{} of {vms} protected VMs passed",
            observed.vms.iter().filter(|vm| vm.passed).count()
        ),
    );
    let stress_cpus = if configuration.stress {
        configuration.cpus - vms
    } else {
        0
    };
    require(
        observed.stress.len() == stress_cpus,
        format!(
            "{} of {stress_cpus} SME stress programs ran",
            observed.stress.len()
        ),
    );
    if vms > 1 && expected.affected {
        // Each VM's pages are given to it on the CPU its launcher (and so its vCPU) is pinned
        // to: every one of those CPUs must have been a caller.
        for (cpu, vm) in observed.vms.iter().enumerate() {
            let calls = observed.cpus.get(cpu).map_or(0, |line| line.calls);
            require(
                calls >= vm.pages,
                format!(
                    "CPU {cpu} made {calls} calls for a VM of {} pages run on it",
                    vm.pages
                ),
            );
        }
    }
    for vm in &observed.vms {
        require(
            vm.probed > 0 && vm.faulted == vm.probed && vm.readable == 0,
            format!("{}: {} of {} probes faulted", vm.tag, vm.faulted, vm.probed),
        );
    }
    if vms == 1
        && let (Some([boot, run, teardown]), Some(vm)) = (phases(observed), observed.vms.first())
    {
        if expected.affected {
            require(
                boot.el2 >= 1000,
                format!("{} calls during boot", boot.total()),
            );
            // One per page donated on the guest's fault, one for the unshare, more for metadata
            // and memcache pages.
            require(
                run.el2 > vm.pages,
                format!(
                    "{} calls during the VM's run for {} donated pages",
                    run.el2, vm.pages
                ),
            );
        }
        require(
            teardown.total() == 0,
            format!(
                "{} calls during the teardown (upstream makes none)",
                teardown.total()
            ),
        );
    } else if vms == 1 {
        require(false, "the log lacks the three phase marks".into());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{GOOD_LOG, demo};
    use super::super::observe;
    use super::*;

    /// (label, configuration, log, fragments of the expected problems; none: it passes)
    type Case = (&'static str, Configuration, String, &'static [&'static str]);

    #[test]
    fn problems_table() {
        let refused_log = "\
[    0.000000] CPU features: detected: C1-Pro SME DVMSync early acknowledgement
[    2.000000] kvm [1]: pKVM requires firmware support for C1-Pro erratum 4193714
[    2.000001] kvm [1]: error initializing Hyp mode: -19
monitor: CPU 3 off; erratum calls so far: 1 (from EL1 1, from EL2 0)
pkvm-demo: done
reboot: Power down
monitor: erratum 4193714 calls: 1 (from EL1 1, from EL2 0); deadline misses 0; longest wait 0.000 us
";
        let unaffected_log = GOOD_LOG
            .replace("[    0.000000] CPU features: detected: C1-Pro SME DVMSync early acknowledgement\r\n", "")
            .replace("7228 (from EL1 1, from EL2 7227)", "0 (from EL1 0, from EL2 0)")
            .replace("3115 (from EL1 1, from EL2 3114)", "0 (from EL1 0, from EL2 0)");
        let table: [Case; 8] = [
            ("good", demo("c1-pro-r0p2", false), GOOD_LOG.into(), &[]),
            (
                "refusal",
                demo("c1-pro-r0p2", true),
                refused_log.into(),
                &[],
            ),
            (
                "fixed revision",
                demo("c1-pro-r2p0", false),
                unaffected_log.clone(),
                &[],
            ),
            (
                "pKVM on although the firmware lacks the fix",
                demo("c1-pro-r0p2", true),
                GOOD_LOG.into(),
                &["did not refuse", "from EL2"],
            ),
            (
                "calls on a fixed revision",
                demo("c1-pro-r2p0", false),
                GOOD_LOG.into(),
                &["detected the erratum", "7228 erratum calls"],
            ),
            (
                "a probe read guest memory",
                demo("c1-pro-r0p2", false),
                GOOD_LOG.replace("faulted=4095 readable=0", "faulted=4094 readable=1"),
                &["4094 of 4095 probes faulted"],
            ),
            (
                "a call during teardown",
                demo("c1-pro-r0p2", false),
                GOOD_LOG.replacen(
                    "7228 (from EL1 1, from EL2 7227)\r\npkvm-demo",
                    "7229 (from EL1 1, from EL2 7228)\r\npkvm-demo",
                    1,
                ),
                &["1 calls during the teardown"],
            ),
            (
                "timeout and no stress",
                demo("c1-pro-r0p2", false),
                GOOD_LOG
                    .replace("deadline misses 0", "deadline misses 3")
                    .replace("sme-stress: CPU 2: streaming", "sme-stress: FAIL CPU 2"),
                &["FAIL CPU 2", "missed Some(3)", "2 of 3 SME stress"],
            ),
        ];
        for (label, configuration, log, expected) in table {
            let expectation = configuration.expectation().expect("known CPU");
            let found = problems(&configuration, expectation, Some(0), &observe(&log));
            assert_eq!(found.len(), expected.len(), "{label}: {found:?}");
            for (problem, fragment) in found.iter().zip(expected) {
                assert!(problem.contains(fragment), "{label}: {problem}");
            }
        }
    }
}
