//! Reading the console log of a Linux pKVM run: the monitor's counts (at each `CPU_OFF` and at
//! power-off), Linux's pKVM lines, and what the Linux-side programs printed.

use super::{ERRATUM_DETECTED, PKVM_ON, PKVM_REFUSED};

/// The calls the monitor counted up to some point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    /// From Non-secure EL1 (the host kernel's probe).
    pub el1: u64,
    /// From Non-secure EL2 (pKVM).
    pub el2: u64,
}

impl Calls {
    /// Both together.
    pub fn total(self) -> u64 {
        self.el1 + self.el2
    }

    fn since(self, earlier: Self) -> Self {
        Self {
            el1: self.el1.saturating_sub(earlier.el1),
            el2: self.el2.saturating_sub(earlier.el2),
        }
    }
}

/// One CPU's line in the monitor's final statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuLine {
    /// Calls it made.
    pub calls: u64,
    /// SGIs it sent.
    pub sent: u64,
    /// SGIs it answered.
    pub answered: u64,
    /// CPUs its calls skipped as off or suspended.
    pub skipped: u64,
}

/// One launcher's summary line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmLine {
    /// Its tag (`pvm0`).
    pub tag: String,
    /// Pages the guest wrote.
    pub pages: u64,
    /// Pages probed.
    pub probed: u64,
    /// Probes that faulted.
    pub faulted: u64,
    /// Probes that read.
    pub readable: u64,
    /// Words of the secret after the teardown.
    pub secret_after_teardown: u64,
    /// It printed `RESULT PASS`.
    pub passed: bool,
}

/// What a run's console log shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Linux detected the erratum.
    pub erratum_detected: bool,
    /// Linux's pKVM line (on), if any.
    pub pkvm_on: Option<String>,
    /// Linux's refusal, if any.
    pub pkvm_refused: bool,
    /// The monitor's counts at each `CPU_OFF`, in order.
    pub marks: Vec<Calls>,
    /// The monitor's final counts.
    pub total: Option<Calls>,
    /// Its deadline misses.
    pub deadline_misses: Option<u64>,
    /// Its longest wait, as printed (`12.345 us`).
    pub longest_wait: Option<String>,
    /// Per CPU.
    pub cpus: Vec<CpuLine>,
    /// Launchers.
    pub vms: Vec<VmLine>,
    /// `(cpu, SVL bytes)` of each running SME stress.
    pub stress: Vec<(u64, u64)>,
    /// Failures the programs printed.
    pub failures: Vec<String>,
    /// The init script finished.
    pub done: bool,
    /// The machine powered off through PSCI.
    pub powered_off: bool,
}

/// The unsigned numbers in `text`, in order.
fn numbers(text: &str) -> Vec<u64> {
    text.split(|character: char| !character.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .filter_map(|part| part.parse().ok())
        .collect()
}

/// The number right after `key` in `text`.
pub(super) fn number_after(text: &str, key: &str) -> Option<u64> {
    let rest = &text[text.find(key)? + key.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The EL1 and EL2 counts of a monitor line (`... (from EL1 a, from EL2 b)`).
fn calls_in(text: &str) -> Option<Calls> {
    Some(Calls {
        el1: number_after(text, "from EL1 ")?,
        el2: number_after(text, "from EL2 ")?,
    })
}

/// `key=value` of a summary line.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|item| item.strip_prefix(&format!("{key}=")))
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// Reads the console log.
pub fn observe(log: &str) -> Observed {
    let mut observed = Observed::default();
    for line in log.lines() {
        let line = line.trim_end_matches('\r');
        if line.contains(ERRATUM_DETECTED) {
            observed.erratum_detected = true;
        }
        if line.contains(PKVM_ON) && line.contains("Protected") {
            observed.pkvm_on = line.split("] ").nth(1).map(str::to_string);
        }
        if line.contains(PKVM_REFUSED) {
            observed.pkvm_refused = true;
        }
        if let Some(position) = line.find(" off; erratum calls so far:")
            && let Some(calls) = calls_in(&line[position..])
        {
            observed.marks.push(calls);
        }
        if let Some(rest) = line.strip_prefix("monitor: erratum 4193714 calls: ") {
            observed.total = calls_in(rest);
            observed.deadline_misses = number_after(rest, "deadline misses ");
            observed.longest_wait = rest.split("longest wait ").nth(1).map(str::to_string);
        }
        if let Some(rest) = line.strip_prefix("monitor:   CPU ")
            && let [_, calls, sent, answered, skipped] = numbers(rest)[..]
        {
            observed.cpus.push(CpuLine {
                calls,
                sent,
                answered,
                skipped,
            });
        }
        if line.starts_with("pvm") && line.contains(": summary: ") {
            observed.vms.push(VmLine {
                tag: line.split(':').next().unwrap_or("pvm").to_string(),
                pages: field(line, "pages"),
                probed: field(line, "probed"),
                faulted: field(line, "faulted"),
                readable: field(line, "readable"),
                secret_after_teardown: field(line, "secret_after_teardown"),
                passed: false,
            });
        }
        if line.starts_with("pvm") && line.ends_with(": RESULT PASS") {
            let tag = line.split(':').next().unwrap_or("");
            if let Some(vm) = observed.vms.iter_mut().find(|vm| vm.tag == tag) {
                vm.passed = true;
            }
        }
        if (line.starts_with("pvm") && line.contains("RESULT FAIL"))
            || line.starts_with("sme-stress: FAIL")
            || line.starts_with("pkvm-demo: FAIL")
            || line.starts_with("pkvm-init: FAIL")
        {
            observed.failures.push(line.to_string());
        }
        if let Some(rest) = line.strip_prefix("sme-stress: CPU ")
            && rest.contains("streaming stores running")
            && let [cpu, length, ..] = numbers(rest)[..]
        {
            observed.stress.push((cpu, length));
        }
        if line == "pkvm-demo: done" || line == "pkvm-init: done" {
            observed.done = true;
        }
        if line.contains("reboot: Power down") {
            observed.powered_off = true;
        }
    }
    observed
}

/// The erratum calls per phase: boot (up to the first mark), VM run (first to second mark),
/// teardown (second to third). `None` when the log has fewer marks.
pub fn phases(observed: &Observed) -> Option<[Calls; 3]> {
    match observed.marks[..] {
        [boot, run, teardown, ..] => Some([boot, run.since(boot), teardown.since(run)]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::GOOD_LOG;
    use super::*;

    #[test]
    fn the_log_is_read_into_phases_and_counts() {
        let observed = observe(GOOD_LOG);
        assert!(observed.erratum_detected && !observed.pkvm_refused);
        assert_eq!(observed.total, Some(Calls { el1: 1, el2: 7227 }));
        assert_eq!(observed.deadline_misses, Some(0));
        assert_eq!(observed.longest_wait.as_deref(), Some("31549.040 us"));
        assert_eq!(
            phases(&observed),
            Some([
                Calls { el1: 1, el2: 3114 },
                Calls { el1: 0, el2: 4113 },
                Calls::default()
            ])
        );
        assert_eq!(observed.cpus.len(), 4);
        assert_eq!(
            observed.cpus[3],
            CpuLine {
                calls: 0,
                sent: 0,
                answered: 7228,
                skipped: 2
            }
        );
        assert_eq!(observed.stress, [(1, 32), (2, 32), (3, 32)]);
        assert_eq!(observed.vms.len(), 1);
        assert!(observed.vms[0].passed && observed.vms[0].faulted == 4095);
        assert!(observed.done && observed.powered_off);
    }
}
