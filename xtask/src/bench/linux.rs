//! The real workload: stock Linux pKVM (Debian's Linux ≥ 7.1, `kvm-arm.mode=protected`) booting on
//! the monitor, running one protected VM of 16 MiB whose guest touches every page, tearing it down
//! and powering off, on 4 affected CPUs (`c1-pro-r0p2`) and on 4 fixed ones (`c1-pro-r2p0`).
//!
//! Measured: the instructions retired by all vCPUs over the whole run (QEMU `-icount shift=0,
//! sleep=off`, idle CPUs polling, read from the monitor's counter at power-off), the erratum calls
//! the monitor counted (by phase), and from the difference between the two runs the instructions
//! each call cost in the real workload. The figures go to `bench/linux-pkvm.json` and to a
//! generated section of `docs/results.md`.

use super::records::{self, DonationRow, LinuxRecord, LinuxRun};
use crate::error::XtaskError;
use crate::linux::{self, KernelKind};
use crate::linux_demo::{self, Measured};
use std::fmt::Write as _;
use std::path::Path;

/// Guest memory of the measured VM.
const MEMORY_MIB: u64 = 16;
const SECTION_START: &str = "<!-- cargo xtask bench: Linux pKVM section start (generated) -->";
const SECTION_END: &str = "<!-- cargo xtask bench: Linux pKVM section end -->";

fn row(cpu: &str, measured: &Measured) -> LinuxRun {
    let [boot, run, teardown] = measured.phases;
    LinuxRun {
        cpu: cpu.to_string(),
        instructions: measured.instructions,
        calls: measured.calls.total(),
        calls_from_el1: measured.calls.el1,
        calls_from_el2: measured.calls.el2,
        calls_boot: boot.total(),
        calls_vm_run: run.total(),
        calls_teardown: teardown.total(),
        guest_pages: measured.guest_pages,
        wall_seconds: measured.seconds,
    }
}

/// Runs the two configurations (the affected one twice, to show the count repeats) and returns
/// the results.
pub fn measure() -> Result<LinuxRecord, XtaskError> {
    let kernel = linux::kernel(KernelKind::Pkvm)?;
    let affected = linux_demo::measure(super::AFFECTED, MEMORY_MIB, true, &kernel)?;
    let repeat = linux_demo::measure(super::AFFECTED, MEMORY_MIB, true, &kernel)?;
    let unaffected = linux_demo::measure(super::UNAFFECTED, MEMORY_MIB, true, &kernel)?;
    // Idle CPUs in WFI: while a call is under way only the caller and the CPUs answering it (and
    // whatever else happens to run) retire instructions.
    let sleeping = linux_demo::measure(super::AFFECTED, MEMORY_MIB, false, &kernel)?;
    let extra = affected
        .instructions
        .saturating_sub(unaffected.instructions);
    let calls = affected.calls.total().max(1);
    Ok(LinuxRecord {
        kernel: format!("{} {} ({})", kernel.package, kernel.version, kernel.suite),
        memory_mib: MEMORY_MIB,
        cpus: 4,
        runs: vec![
            row(super::AFFECTED, &affected),
            row(super::UNAFFECTED, &unaffected),
        ],
        repeat_instructions: repeat.instructions,
        extra_instructions: extra,
        extra_per_call: extra as f64 / calls as f64,
        overhead_percent: 100.0 * extra as f64 / unaffected.instructions.max(1) as f64,
        inside_calls_idle_wfi: sleeping.inside_calls,
        calls_idle_wfi: sleeping.calls.total(),
        inside_per_call: sleeping.inside_calls as f64 / sleeping.calls.total().max(1) as f64,
    })
}

fn grouped(value: u64) -> String {
    let digits = value.to_string();
    let mut text = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            text.push(',');
        }
        text.push(digit);
    }
    text
}

/// The Markdown section for `docs/results.md`; `erratum_per_call` is the microbenchmark's cost of
/// one call with 4 CPUs in WFI, if measured, and `donation` our hypervisor's donation rows.
pub fn section(
    linux: &LinuxRecord,
    erratum_per_call: Option<f64>,
    donation: &[DonationRow],
) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "{SECTION_START}");
    let _ = writeln!(
        text,
        "## Stock Linux pKVM on the monitor (`cargo xtask bench`, real workload)\n"
    );
    let _ = writeln!(
        text,
        "{}, `kvm-arm.mode=protected`, at EL2 on the monitor with 4 CPUs and 1 GiB; one protected VM of \
         {} MiB launched from user space (`linux/pvm`) whose guest writes every page, shares and \
         unshares one; host probes; teardown; power-off. No SME stress (its instructions would depend \
         on how long the run takes). Instructions: retired by all vCPUs from reset to power-off, read \
         from the monitor's counter under `-icount shift=0,sleep=off` with idle CPUs polling (`nohlt`), \
         so nothing but executed instructions advances it.\n",
        linux.kernel, linux.memory_mib
    );
    let _ = writeln!(
        text,
        "| CPUs | erratum calls (EL1 / EL2) | at boot | during the VM's run | teardown | guest pages | instructions, whole run |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for run in &linux.runs {
        let _ = writeln!(
            text,
            "| 4 x {} | {} ({} / {}) | {} | {} | {} | {} | {} |",
            run.cpu,
            grouped(run.calls),
            run.calls_from_el1,
            grouped(run.calls_from_el2),
            grouped(run.calls_boot),
            grouped(run.calls_vm_run),
            run.calls_teardown,
            grouped(run.guest_pages),
            grouped(run.instructions),
        );
    }
    let per_call = linux.extra_per_call;
    // The affected run (the first) against its repetition.
    let first = linux.runs.first().map_or(0, |run| run.instructions);
    let repeat = linux.repeat_instructions;
    let spread = first.abs_diff(repeat);
    let extra = linux.extra_instructions;
    let verdict = if extra > 2 * spread {
        "more than twice the spread between the two affected runs, so it stands"
    } else {
        "within twice the spread between the two affected runs, so it only says that the fix is \
         small against everything else Linux does"
    };
    let _ = writeln!(
        text,
        "\nThe same affected run again: {} instructions ({} apart; a 4-vCPU Linux under `-icount` \
         repeats only nearly). The whole-run difference between the two CPU models is {} instructions \
         ({:.2}%; {per_call:.0} per call): {verdict}.",
        grouped(repeat),
        grouped(spread),
        grouped(extra),
        linux.overhead_percent,
    );
    let inside = linux.inside_per_call;
    let _ = writeln!(
        text,
        "\nThe calls themselves, measured inside the real run: with idle CPUs in `WFI` (no `nohlt`), \
         the counter advanced by {} instructions in all while the {} calls were under way, \
         **{inside:.0} per call**: the caller's EL3 handler, the three other CPUs taking the SGI at \
         EL3, and what the SGI costs them besides: woken from `WFI` in Linux's idle loop, each goes \
         round that loop once before it sleeps again, and those instructions run while the caller \
         waits. Whatever else ran meanwhile is included too, so this is an upper bound for the \
         call's cost to the system.",
        grouped(linux.inside_calls_idle_wfi),
        grouped(linux.calls_idle_wfi),
    );
    if let Some(cost) = erratum_per_call {
        let _ = writeln!(
            text,
            "Measured alone (EL2 test payload, 4 CPUs, the others in `WFI`, a 4-instruction calling \
             loop included) one call costs {cost:.0} instructions."
        );
    }
    let page = |placement: &str, pages_per_call: u64| {
        donation.iter().find(|row| {
            row.placement == placement
                && row.granule == "page"
                && row.pages_per_call == pages_per_call
        })
    };
    if let (Some(affected), Some(ours), Some(upstream)) = (
        linux.runs.first(),
        page("per-hypercall", 512),
        page("per-page", 512),
    ) {
        let _ = writeln!(
            text,
            "\nUpstream makes one call per page it gives away: {} calls for this VM's {} guest pages \
             (plus metadata and memcache pages), and {} at boot for the hypervisor's own pages. Our \
             hypervisor makes one call per donation operation: donating 64 MiB in batches of 512 pages \
             takes {} calls where upstream's placement takes {} (see the donation table above: {:.2}% \
             against {:.2}% overhead).",
            grouped(affected.calls_vm_run),
            grouped(affected.guest_pages),
            grouped(affected.calls_boot),
            grouped(ours.firmware_calls_whole_run),
            grouped(upstream.firmware_calls_whole_run),
            overhead(donation, ours),
            overhead(donation, upstream),
        );
    }
    let _ = writeln!(text, "{SECTION_END}");
    text
}

/// The overhead of a donation row against the unaffected run of the same batch size.
fn overhead(donation: &[DonationRow], row: &DonationRow) -> f64 {
    let baseline = donation.iter().find(|other| {
        other.placement == "not-needed"
            && other.granule == row.granule
            && other.pages_per_call == row.pages_per_call
    });
    match baseline {
        Some(baseline) => {
            let before = baseline.donate_total as f64;
            let after = row.donate_total as f64;
            100.0 * (after - before) / before
        }
        None => f64::NAN,
    }
}

/// Writes `bench/linux-pkvm.json` and replaces (or appends) the generated section of
/// `docs/results.md`.
pub fn write(root: &Path, section_text: &str, linux: &LinuxRecord) -> Result<(), XtaskError> {
    let json = records::to_text(linux)?;
    super::write(&root.join("bench").join("linux-pkvm.json"), &json)?;
    let path = root.join("docs").join("results.md");
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    let updated = match (existing.find(SECTION_START), existing.find(SECTION_END)) {
        (Some(start), Some(end)) if end > start => {
            let after = &existing[end + SECTION_END.len()..];
            let after = after.strip_prefix('\n').unwrap_or(after);
            format!("{}{section_text}{after}", &existing[..start])
        }
        _ => format!("{}\n{section_text}", existing.trim_end()),
    };
    super::write(&path, &updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_names_calls_phases_and_the_difference() {
        let linux: LinuxRecord = records::parse(Path::new("test"), &serde_json::json!({
            "kernel": "linux-binary-7.3.4+deb13-arm64 7.3.4-1~bpo13+1 (trixie-backports)",
            "memory_mib": 16,
            "cpus": 4,
            "runs": [
                {"cpu": "c1-pro-r0p2", "calls": 7228, "calls_from_el1": 1, "calls_from_el2": 7227,
                 "calls_boot": 3115, "calls_vm_run": 4113, "calls_teardown": 0, "guest_pages": 4094,
                 "instructions": 2_000_000_000u64, "wall_seconds": 20.0},
                {"cpu": "c1-pro-r2p0", "calls": 0, "calls_from_el1": 0, "calls_from_el2": 0,
                 "calls_boot": 0, "calls_vm_run": 0, "calls_teardown": 0, "guest_pages": 4094,
                 "instructions": 1_990_000_000u64, "wall_seconds": 20.0},
            ],
            "repeat_instructions": 2_000_000_000u64,
            "extra_instructions": 10_000_000u64,
            "extra_per_call": 1383.5,
            "overhead_percent": 0.5,
            "inside_calls_idle_wfi": 7_228_000u64,
            "calls_idle_wfi": 7228,
            "inside_per_call": 1000.0,
        }).to_string())
        .expect("a complete record");
        let text = section(&linux, Some(803.0), &[]);
        assert!(text.starts_with(SECTION_START) && text.trim_end().ends_with(SECTION_END));
        assert!(text.contains(
            "| 4 x c1-pro-r0p2 | 7,228 (1 / 7,227) | 3,115 | 4,113 | 0 | 4,094 | 2,000,000,000 |"
        ));
        assert!(
            text.contains("is 10,000,000 instructions (0.50%; 1384 per call): more than twice")
        );
        assert!(text.contains("7,228,000 instructions in all while the 7,228 calls"));
        assert!(text.contains("**1000 per call**"));
        assert!(text.contains("one call costs 803 instructions"));
    }
}
