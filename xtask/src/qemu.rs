//! Runs images in QEMU the way the firmware expects it (BRIEF §8): `-M <board's machine> -cpu
//! max[,midr=..] -smp N -m 1G -nographic -nic none -semihosting -no-reboot -bios monitor.bin`, the
//! Non-secure payload loaded at the board's Non-secure entry with `-device loader`, an optional
//! test-parameter block, a timeout, and the serial log (the console UART, which the monitor and every
//! payload print to) kept in a file under `target/qemu-logs/`. Every address and the machine's QEMU
//! options come from the `board` crate, the crate the firmware reads, for the board `--machine`
//! names ([`Machine`]).

use crate::error::XtaskError;
use board::Platform;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The board of the Linux runs (`cargo xtask run`, `test-linux`, the Linux demo and benchmarks):
/// QEMU `virt`, whose tree QEMU fills with every device a stock kernel needs.
pub type Board = board::QemuVirt;
/// QEMU's `-M` value for [`Board`].
#[cfg(test)]
pub const MACHINE: &str = Board::QEMU_MACHINE;
/// Start of [`Board`]'s DRAM.
pub const DRAM_BASE: u64 = Board::DRAM_BASE as u64;
/// DRAM a run has unless its extra arguments choose their own size (`-m 1G`).
pub const DEFAULT_DRAM_SIZE: u64 = 1 << 30;

/// A QEMU board the firmware can be built for and run on (`--machine`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Machine {
    /// QEMU `virt` (`board::QemuVirt`).
    #[default]
    Virt,
    /// QEMU `sbsa-ref` (`board::SbsaRef`).
    SbsaRef,
}

/// What xtask needs of a board: QEMU's options and where it loads things. `usize` to `u64` is
/// lossless on every host xtask runs on (64-bit).
#[derive(Clone, Copy, Debug)]
pub struct MachineFacts {
    /// QEMU's `-M` value.
    pub qemu_machine: &'static str,
    /// Further QEMU arguments the board needs.
    pub qemu_arguments: &'static [&'static str],
    /// The `board` crate feature that selects it for the firmware (`None`: the default board).
    pub board_feature: Option<&'static str>,
    /// Where the Non-secure payload is loaded and entered.
    pub payload_address: u64,
    /// Where test parameters are written.
    pub test_parameters_address: u64,
    /// Where the hypervisor enters the host.
    pub host_address: u64,
    /// Where QEMU loads the demo's guest image.
    pub guest_image_address: u64,
    /// Most CPUs the firmware supports there.
    pub max_cpus: usize,
}

impl MachineFacts {
    fn of<P: Platform>(board_feature: Option<&'static str>) -> Self {
        Self {
            qemu_machine: P::QEMU_MACHINE,
            qemu_arguments: P::QEMU_ARGUMENTS,
            board_feature,
            payload_address: P::NON_SECURE_ENTRY as u64,
            test_parameters_address: P::TEST_PARAMETERS_ADDRESS as u64,
            host_address: P::HOST_ENTRY as u64,
            guest_image_address: P::GUEST_IMAGE.base as u64,
            max_cpus: P::MAX_CPUS,
        }
    }
}

impl Machine {
    /// Every board, in the order `cargo xtask test` runs them.
    pub const ALL: [Self; 2] = [Self::Virt, Self::SbsaRef];

    /// The board's facts, from the `board` crate.
    pub fn facts(self) -> MachineFacts {
        match self {
            Self::Virt => MachineFacts::of::<board::QemuVirt>(None),
            Self::SbsaRef => MachineFacts::of::<board::SbsaRef>(Some("sbsa-ref")),
        }
    }

    /// A suffix for names of runs and images: empty for `virt` (names stay as they were), the
    /// board's name otherwise.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Virt => "",
            Self::SbsaRef => "-sbsa-ref",
        }
    }
}

/// One QEMU run.
#[derive(Clone, Debug)]
pub struct Run {
    /// Name of the run; names the log file.
    pub name: String,
    /// The board.
    pub machine: Machine,
    /// The monitor image (`-bios`).
    pub monitor: PathBuf,
    /// The Non-secure payload, loaded at the board's Non-secure entry.
    pub payload: Option<PathBuf>,
    /// 64-bit words written from the board's test parameter address on.
    pub parameters: Vec<u64>,
    /// `-cpu` value (e.g. `max` or `max,midr=0x410fd8b2`).
    pub cpu: String,
    /// `-smp`.
    pub cpus: usize,
    /// Extra QEMU arguments (e.g. `-icount shift=0,sleep=off`).
    pub extra: Vec<String>,
    /// Wall-clock limit.
    pub timeout: Duration,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// QEMU's exit status (`None` when killed on timeout).
    pub status: Option<i32>,
    /// Everything QEMU printed (the serial console).
    pub log: String,
    /// Where the log was saved.
    pub log_path: PathBuf,
    /// Wall-clock time.
    pub elapsed: Duration,
}

impl Run {
    /// The QEMU command line.
    pub fn arguments(&self) -> Vec<String> {
        let facts = self.machine.facts();
        let mut arguments: Vec<String> = vec!["-M".into(), facts.qemu_machine.into()];
        arguments.extend(
            facts
                .qemu_arguments
                .iter()
                .map(|argument| argument.to_string()),
        );
        // DEFAULT_DRAM_SIZE unless the extra arguments choose their own size.
        if !self.extra.iter().any(|argument| argument == "-m") {
            arguments.extend(["-m".into(), format!("{}M", DEFAULT_DRAM_SIZE >> 20)]);
        }
        arguments
            .extend(["-nographic", "-nic", "none", "-semihosting", "-no-reboot"].map(String::from));
        arguments.extend([
            "-cpu".into(),
            self.cpu.clone(),
            "-smp".into(),
            self.cpus.to_string(),
        ]);
        arguments.extend(["-bios".into(), self.monitor.display().to_string()]);
        if let Some(payload) = &self.payload {
            arguments.extend([
                "-device".into(),
                format!(
                    "loader,file={},addr={:#x},force-raw=on",
                    payload.display(),
                    facts.payload_address
                ),
            ]);
        }
        for (index, value) in self.parameters.iter().enumerate() {
            let address = facts.test_parameters_address + 8 * index as u64;
            arguments.extend([
                "-device".into(),
                format!("loader,addr={address:#x},data={value:#x},data-len=8"),
            ]);
        }
        arguments.extend(self.extra.iter().cloned());
        arguments
    }

    /// Runs QEMU until it exits or the timeout passes; the log goes to `target/qemu-logs/<name>.log`.
    pub fn execute(&self) -> Result<Outcome, XtaskError> {
        let logs = crate::firmware::workspace_root()
            .join("target")
            .join("qemu-logs");
        std::fs::create_dir_all(&logs).map_err(|error| XtaskError::file("create", &logs, error))?;
        let log_path = logs.join(format!("{}.log", self.name));
        let start = Instant::now();
        let mut child = Command::new("qemu-system-aarch64")
            .args(self.arguments())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| XtaskError::spawn("qemu-system-aarch64", error))?;
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| XtaskError::Unexpected("no QEMU stdout".into()))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| XtaskError::Unexpected("no QEMU stderr".into()))?;
        let reader = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = stdout.read_to_end(&mut text);
            let _ = stderr.read_to_end(&mut text);
            text
        });
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|error| XtaskError::Unexpected(format!("waiting for QEMU: {error}")))?
            {
                break status.code();
            }
            if start.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let elapsed = start.elapsed();
        let log = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
        std::fs::write(&log_path, &log)
            .map_err(|error| XtaskError::file("write", &log_path, error))?;
        Ok(Outcome {
            status,
            log,
            log_path,
            elapsed,
        })
    }
}

/// The CPU model named on the command line, or an error listing the models there are.
pub fn parse_cpu_model(name: &str) -> Result<errata::CpuModel, XtaskError> {
    errata::CpuModel::parse(name)
        .map_err(|error| XtaskError::Unexpected(format!("{name:?}: {error}")))
}

/// The `-cpu` value for a CPU model name of the `errata` crate (`max`, `c1-pro-r0p2`, ...).
pub fn cpu_argument(model: &str) -> Result<String, XtaskError> {
    let parsed = parse_cpu_model(model)?;
    Ok(match parsed.midr() {
        Some(midr) => format!("max,midr={midr:#x}"),
        None => "max".to_string(),
    })
}

/// Prints a run's verdict line (`xtask: qemu NAME ok|FAILED (seconds; detail)`); the error names every
/// problem and the log.
pub fn report(
    name: &str,
    outcome: &Outcome,
    problems: &[String],
    detail: &str,
) -> Result<(), XtaskError> {
    let verdict = if problems.is_empty() { "ok" } else { "FAILED" };
    let detail = if detail.is_empty() {
        String::new()
    } else {
        format!("; {detail}")
    };
    println!(
        "xtask: qemu {name:<52} {verdict} ({:.1} s{detail})",
        outcome.elapsed.as_secs_f64()
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(XtaskError::Check(format!(
            "{name}: {} {}",
            problems.join("; "),
            log_hint(&outcome.log_path)
        )))
    }
}

/// Shows where a log is, for error messages.
pub fn log_hint(path: &Path) -> String {
    format!("(log: {})", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU's command line follows the board `--machine` names: its `-M` and options, and the load
    /// addresses of the payload and the parameter block.
    #[test]
    fn each_machine_starts_qemu_with_its_boards_facts() {
        let command_line = |machine| {
            Run {
                machine,
                name: "test".into(),
                monitor: "monitor.bin".into(),
                payload: Some("payload.bin".into()),
                parameters: vec![7],
                cpu: "max".into(),
                cpus: 2,
                extra: Vec::new(),
                timeout: Duration::from_secs(1),
            }
            .arguments()
            .join(" ")
        };
        let virt = command_line(Machine::Virt);
        assert!(
            virt.starts_with("-M virt,secure=on,virtualization=on,gic-version=3 -m 1024M"),
            "{virt}"
        );
        assert!(virt.contains("loader,file=payload.bin,addr=0x40200000,force-raw=on"));
        assert!(virt.contains("loader,addr=0x401ff000,data=0x7,data-len=8"));
        let sbsa = command_line(Machine::SbsaRef);
        assert!(
            sbsa.starts_with("-M sbsa-ref -global VGA.romfile= -m 1024M"),
            "{sbsa}"
        );
        assert!(sbsa.contains("loader,file=payload.bin,addr=0x10000200000,force-raw=on"));
        assert!(sbsa.contains("loader,addr=0x100001ff000,data=0x7,data-len=8"));
        assert_eq!(Machine::SbsaRef.facts().board_feature, Some("sbsa-ref"));
        assert_eq!(Machine::Virt.facts().board_feature, None);
    }
}
