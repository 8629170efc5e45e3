//! The records the benchmarks write and read (`bench/results.json`, `bench/baseline.json`,
//! `bench/linux-pkvm.json`), typed: reading a file whose field is missing, misspelt or of the wrong
//! type fails with serde's message naming the field, instead of a figure turning into NaN.
//!
//! The files keep their layout: the records are written through [`serde_json::Value`], whose
//! objects sort their keys, as the untyped records did.

use crate::error::XtaskError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One erratum-call measurement: a CPU count, what the other CPUs do, and the counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErratumRow {
    /// CPUs online.
    pub cpus: u64,
    /// What the other CPUs do (`wfi` or `busy-el1`).
    pub others: String,
    /// Calls measured.
    pub iterations: u64,
    /// Instructions of all the null SMCs.
    pub null_smc_total: u64,
    /// Instructions of all the erratum calls.
    pub erratum_total: u64,
    /// Instructions per null SMC.
    pub null_smc_per_call: f64,
    /// Instructions per erratum call.
    pub erratum_per_call: f64,
}

/// One donation measurement (64 MiB donated and reclaimed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DonationRow {
    /// Where the firmware call is made ([`super::Placement::name`]).
    pub placement: String,
    /// `page` or `block`.
    pub granule: String,
    /// Pages per `DONATE_GUEST` call.
    pub pages_per_call: u64,
    /// The CPU model.
    pub cpu: String,
    /// CPUs online.
    pub cpus: u64,
    /// Pages donated.
    pub pages: u64,
    /// `DONATE_GUEST` calls.
    pub calls: u64,
    /// The hypervisor's count of firmware calls over the whole run.
    pub firmware_calls_whole_run: u64,
    /// Instructions of the donation.
    pub donate_total: u64,
    /// Instructions of the teardown and reclaim.
    pub reclaim_total: u64,
    /// Donation instructions per page.
    pub donate_per_page: f64,
    /// Teardown and reclaim instructions per page.
    pub reclaim_per_page: f64,
}

/// Stage-2 table memory for 1 GiB donated at one granule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRow {
    /// Pages per donation call.
    pub pages_per_call: u64,
    /// Host stage-2 memory the donation added, KiB.
    pub host_kib_per_gib: u64,
    /// Guest stage-2 memory without its root, KiB.
    pub guest_kib_per_gib: u64,
    /// The guest stage-2 root, KiB (once per VM).
    pub guest_root_kib: u64,
}

/// Stage-2 table memory per GiB donated, in pages and in blocks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableMemory {
    /// Donated one 4 KiB page per call.
    pub page: TableRow,
    /// Donated one 2 MiB block per call.
    pub block: TableRow,
    /// How the figures were obtained.
    pub source: String,
}

/// A target of the benchmarks issue judged against the figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// What is measured.
    pub target: String,
    /// The goal.
    pub goal: String,
    /// The figure, as text.
    pub measured: String,
    /// Whether the goal is met.
    pub met: bool,
}

/// The QEMU benchmarks' results (`bench/results.json`, `bench/baseline.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Results {
    /// Version of this layout.
    pub schema: u32,
    /// `qemu-system-aarch64 --version`'s first line.
    pub qemu: String,
    /// How the figures were measured.
    pub conditions: String,
    /// The erratum call against a null SMC.
    pub erratum_call: Vec<ErratumRow>,
    /// Donating 64 MiB.
    pub donation: Vec<DonationRow>,
    /// Stage-2 table memory.
    pub table_memory: TableMemory,
    /// The targets, judged ([`super::report::targets`]).
    pub targets: Vec<Target>,
}

/// One run of the real workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinuxRun {
    /// The CPU model.
    pub cpu: String,
    /// Instructions retired by all vCPUs over the run.
    pub instructions: u64,
    /// Erratum calls.
    pub calls: u64,
    /// Calls from EL1.
    pub calls_from_el1: u64,
    /// Calls from EL2.
    pub calls_from_el2: u64,
    /// Calls at boot.
    pub calls_boot: u64,
    /// Calls during the VM's run.
    pub calls_vm_run: u64,
    /// Calls during the VM's teardown.
    pub calls_teardown: u64,
    /// Pages the guest wrote.
    pub guest_pages: u64,
    /// Wall-clock time, seconds.
    pub wall_seconds: f64,
}

/// The real workload's record (`bench/linux-pkvm.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinuxRecord {
    /// The kernel package, version and suite.
    pub kernel: String,
    /// Guest memory of the VM.
    pub memory_mib: u64,
    /// CPUs online.
    pub cpus: u64,
    /// The affected run, then the unaffected one.
    pub runs: Vec<LinuxRun>,
    /// Instructions of the affected run made again.
    pub repeat_instructions: u64,
    /// Affected minus unaffected instructions.
    pub extra_instructions: u64,
    /// That difference per call.
    pub extra_per_call: f64,
    /// That difference against the unaffected run, percent.
    pub overhead_percent: f64,
    /// Counter time inside the calls with idle CPUs in WFI.
    pub inside_calls_idle_wfi: u64,
    /// Calls of that run.
    pub calls_idle_wfi: u64,
    /// Counter time inside a call with idle CPUs in WFI.
    pub inside_per_call: f64,
}

/// `record` as pretty JSON with its keys sorted (the files' layout).
pub fn to_text<T: Serialize>(record: &T) -> Result<String, XtaskError> {
    serde_json::to_value(record)
        .and_then(|value| serde_json::to_string_pretty(&value))
        .map_err(|error| {
            XtaskError::Unexpected(format!("cannot encode a benchmark record: {error}"))
        })
}

/// `text`, the content of `path`, as a `T`; a missing, unknown or mistyped field is an error
/// naming `path` and the field.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, XtaskError> {
    serde_json::from_str(text)
        .map_err(|error| XtaskError::Unexpected(format!("{}: {error}", path.display())))
}

/// Reads `path` as a `T` ([`parse`]).
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, XtaskError> {
    let text =
        std::fs::read_to_string(path).map_err(|error| XtaskError::file("read", path, error))?;
    parse(path, &text)
}
