//! `cargo xtask bench --profile`: where the instructions of one erratum call go, by part and by CPU.
//!
//! Runs the benchmark scenario (the other CPUs in `WFI`) with 1, 2, 4 and 8 CPUs under
//! `-icount shift=0,sleep=off` with QEMU's `-d in_asm,exec,nochain` trace: `in_asm` gives each
//! translated block's instruction addresses, `exec` (with chaining off) one line per block executed,
//! and "Stopped execution of TB chain" marks a block that did not start (its line is taken back).
//! The payload reads the PMU six times (before and after the empty, the null-SMC and the erratum
//! loop); the blocks executed between the fifth and sixth read, minus those between the first and
//! second, are the erratum loop. Their instructions, summed, must equal the PMU's count of the same
//! run (checked: a profile that does not add up is an error).
//!
//! Each instruction is named with the monitor's and the payload's debug information (`addr2line`):
//! the innermost inlined function of our own code (core library frames are skipped), or the ELF
//! symbol for the assembly (vectors). CPU 0 is the caller; the other CPUs are responders, shown
//! as their average.

use crate::error::XtaskError;
use crate::firmware::{self, FIRMWARE_TARGET, MONITOR_BENCHMARK, PAYLOAD};
use crate::qemu::{self, Run};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// Calls per profiled run: enough to average out the first call, few enough for a short trace.
const ITERATIONS: u64 = 20;
/// The PMU reads that open the three measured loops: the empty loop (the measurement's own
/// overhead), the null SMC loop and the erratum call loop; each closes at the next read.
const WINDOWS: [usize; 3] = [1, 3, 5];
/// PMU reads in a run.
const PMU_READS: usize = 6;

/// One translated block: its instruction addresses, and whether it reads the PMU counter.
struct Block {
    addresses: Vec<u64>,
    reads_pmu: bool,
}

/// Instructions executed per (CPU, address) in one window.
type Counts = HashMap<(usize, u64), i64>;

/// What one profiled run measured.
struct Profile {
    cpus: usize,
    /// Instructions per call, per part: (caller, all responders together).
    parts: BTreeMap<String, (f64, f64)>,
    /// The PMU's count of the same run, per call.
    pmu_per_call: f64,
    /// The trace's count, per call.
    traced_per_call: f64,
    /// The PMU's count of a null SMC (`SMCCC_VERSION`) in the same run, per call.
    null_per_call: f64,
    /// Instructions per null SMC, per part (all on the caller).
    null_parts: BTreeMap<String, f64>,
}

/// `cargo xtask bench --profile`: profiles, prints the tables, and writes them to
/// `bench/profile.md`.
pub fn run(root: &Path) -> Result<(), XtaskError> {
    let monitor = firmware::build(MONITOR_BENCHMARK)?;
    let payload = firmware::build(PAYLOAD)?;
    let names = Names::new(root)?;
    let mut text = String::new();
    for cpus in [1usize, 2, 4, 8] {
        let profile = profile(&monitor, &payload, cpus, &names)?;
        let table = table(&profile);
        print!("{table}");
        text.push_str(&summary(&profile));
        text.push_str(&table);
        if (profile.traced_per_call - profile.pmu_per_call).abs() > 0.001 {
            return Err(XtaskError::Check(format!(
                "the trace counts {} instructions per call with {cpus} CPUs, the PMU {}",
                profile.traced_per_call, profile.pmu_per_call
            )));
        }
    }
    let path = root.join("bench").join("profile.md");
    std::fs::write(&path, text).map_err(|error| XtaskError::file("write", &path, error))
}

/// The ELF files of the monitor and payload builds that `firmware::build` made.
fn elf(root: &Path, package: &str, features: &str) -> PathBuf {
    let suffix = if features.is_empty() {
        String::new()
    } else {
        format!("-{}", features.replace(',', "-"))
    };
    root.join("target")
        .join(format!("firmware{suffix}"))
        .join(FIRMWARE_TARGET)
        .join("release")
        .join(package)
}

/// Names instructions from the images' debug information.
struct Names {
    loaders: Vec<(&'static str, addr2line::Loader)>,
    cache: std::cell::RefCell<HashMap<u64, Rc<str>>>,
}

impl Names {
    fn new(root: &Path) -> Result<Self, XtaskError> {
        let mut loaders = Vec::new();
        // The payload first: it lies above the monitor, so the monitor's last symbol would claim
        // its addresses.
        for (label, image) in [("EL2 payload", PAYLOAD), ("EL3", MONITOR_BENCHMARK)] {
            let path = elf(root, image.package, image.features);
            let loader = addr2line::Loader::new(&path)
                .map_err(|error| XtaskError::Unexpected(format!("{}: {error}", path.display())))?;
            loaders.push((label, loader));
        }
        Ok(Self {
            loaders,
            cache: std::cell::RefCell::new(HashMap::new()),
        })
    }

    /// The part an instruction belongs to.
    fn name(&self, address: u64) -> Rc<str> {
        if let Some(name) = self.cache.borrow().get(&address) {
            return name.clone();
        }
        let name: Rc<str> = self.lookup(address).into();
        self.cache.borrow_mut().insert(address, name.clone());
        name
    }

    fn lookup(&self, address: u64) -> String {
        for (label, loader) in &self.loaders {
            let Some(symbol) = loader.find_symbol(address) else {
                continue;
            };
            let symbol = simplify(&addr2line::demangle_auto(symbol.into(), None));
            let mut innermost_own = None;
            if let Ok(mut frames) = loader.find_frames(address) {
                while let Ok(Some(frame)) = frames.next() {
                    let file = frame
                        .location
                        .as_ref()
                        .and_then(|location| location.file)
                        .unwrap_or("");
                    if is_library(file) {
                        continue;
                    }
                    let Some(function) = frame.function else {
                        continue;
                    };
                    let Ok(name) = function.demangle() else {
                        continue;
                    };
                    innermost_own = Some(simplify(&name));
                    break;
                }
            }
            return match innermost_own {
                Some(name) => format!("{label}: {name}"),
                None if VECTOR_LABELS.contains(&symbol.as_str()) => {
                    format!("{label}: {}", vector_name(address))
                }
                None => format!("{label}: {symbol}"),
            };
        }
        format!("unknown {address:#x}")
    }
}

/// The labels inside `monitor_vectors` (`exceptions.S`): their instructions are named by vector.
const VECTOR_LABELS: [&str; 5] = [
    "monitor_vectors",
    "smc_entry_start",
    "smc_return_from_x1",
    "fiq_fast_entry_start",
    "fiq_fast_return",
];

/// Which vector of `monitor_vectors` an address is in.
fn vector_name(address: u64) -> String {
    match (address & 0x7FF) / 0x80 {
        0x8 => "SMC vector (save, test, restore)".into(),
        0x6 => "FIQ vector (save)".into(),
        0xA => "FIQ vector (fast path: save, test, restore)".into(),
        slot => format!("vector {:#x}", slot * 0x80),
    }
}

/// Source files of the Rust libraries and of other crates: an instruction inlined from them is
/// named after our code that called it.
fn is_library(file: &str) -> bool {
    [
        "/rustc/",
        "/library/core/",
        "/library/alloc/",
        "/.cargo/registry/",
        "/lib/rustlib/",
    ]
    .iter()
    .any(|part| file.contains(part))
}

/// Drops generic arguments, hashes and the crate path but the last two components.
fn simplify(name: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for character in name.chars() {
        match character {
            '<' => depth += 1,
            '>' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(character),
            _ => {}
        }
    }
    let out = out.replace("::::", "::");
    let parts: Vec<&str> = out
        .split("::")
        .filter(|part| !(part.is_empty() || part.starts_with('h') && part.len() == 17))
        .collect();
    let keep = parts.len().saturating_sub(3);
    parts[keep..].join("::")
}

/// Runs one traced benchmark and attributes its erratum loop.
fn profile(
    monitor: &Path,
    payload: &Path,
    cpus: usize,
    names: &Names,
) -> Result<Profile, XtaskError> {
    let trace_directory = firmware::workspace_root().join("target").join("profile");
    std::fs::create_dir_all(&trace_directory)
        .map_err(|error| XtaskError::file("create", &trace_directory, error))?;
    let trace = trace_directory.join(format!("trace-smp{cpus}.log"));
    let _ = std::fs::remove_file(&trace);
    let run = Run {
        name: format!("profile-smp{cpus}"),
        machine: qemu::Machine::Virt,
        monitor: monitor.to_path_buf(),
        payload: Some(payload.to_path_buf()),
        parameters: vec![6, 0, ITERATIONS],
        cpu: qemu::cpu_argument(super::AFFECTED)?,
        cpus,
        extra: vec![
            "-icount".into(),
            "shift=0,sleep=off".into(),
            "-d".into(),
            "in_asm,exec,nochain".into(),
            "-D".into(),
            trace.display().to_string(),
        ],
        timeout: Duration::from_secs(300),
    };
    let outcome = run.execute()?;
    let line = outcome
        .log
        .lines()
        .find(|line| line.contains("payload: benchmark: cpus="))
        .ok_or_else(|| {
            XtaskError::Check(format!(
                "profile run {} printed no benchmark line {}",
                run.name,
                qemu::log_hint(&outcome.log_path)
            ))
        })?;
    let fields = super::fields(line);
    let pmu_total = super::field(&fields, "erratum_total")?;
    let null_total = super::field(&fields, "null_smc_total")?;
    let [overhead, null, erratum] = read_trace(&trace)?;
    let mut parts: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    let mut null_parts: BTreeMap<String, f64> = BTreeMap::new();
    let mut traced = 0i64;
    let keys: std::collections::HashSet<(usize, u64)> = erratum
        .keys()
        .chain(overhead.keys())
        .chain(null.keys())
        .copied()
        .collect();
    for key in keys {
        let base = overhead.get(&key).copied().unwrap_or(0);
        let (cpu, address) = key;
        let null_count = null.get(&key).copied().unwrap_or(0) - base;
        if null_count != 0 {
            *null_parts
                .entry(names.name(address).to_string())
                .or_default() += null_count as f64 / ITERATIONS as f64;
        }
        let count = erratum.get(&key).copied().unwrap_or(0) - base;
        if count == 0 {
            continue;
        }
        traced += count;
        let entry = parts.entry(names.name(address).to_string()).or_default();
        let per_call = count as f64 / ITERATIONS as f64;
        if cpu == 0 {
            entry.0 += per_call;
        } else {
            entry.1 += per_call;
        }
    }
    Ok(Profile {
        cpus,
        parts,
        pmu_per_call: pmu_total as f64 / ITERATIONS as f64,
        traced_per_call: traced as f64 / ITERATIONS as f64,
        null_per_call: null_total as f64 / ITERATIONS as f64,
        null_parts,
    })
}

/// Reads a QEMU trace: the instructions executed per (CPU, address) in each of the [`WINDOWS`].
fn read_trace(path: &Path) -> Result<[Counts; 3], XtaskError> {
    let file = std::fs::File::open(path).map_err(|error| XtaskError::file("read", path, error))?;
    let mut blocks: HashMap<String, Rc<Block>> = HashMap::new();
    // The block being read from `in_asm`, waiting for the exec line that names its host address.
    let mut translating: Option<Block> = None;
    let mut pending: Vec<Rc<Block>> = Vec::new();
    let mut pmu_reads = 0usize;
    let mut windows: [Counts; 3] = Default::default();
    // The last block executed (CPU, block, window it was counted in), to take it back if it did not
    // start.
    let mut last: Option<(usize, Rc<Block>, Option<usize>)> = None;
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|error| XtaskError::file("read", path, error))?;
        if line.starts_with("IN:") {
            if let Some(block) = translating.take() {
                pending.push(Rc::new(block));
            }
            translating = Some(Block {
                addresses: Vec::new(),
                reads_pmu: false,
            });
            continue;
        }
        if let Some(block) = translating.as_mut()
            && let Some(address) = instruction_address(&line)
        {
            block.addresses.push(address);
            if line.contains("pmevcntr0_el0") && line.contains("mrs") {
                block.reads_pmu = true;
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("Trace ") {
            if let Some(block) = translating.take() {
                pending.push(Rc::new(block));
            }
            let (cpu, host, pc) = parse_exec(rest).ok_or_else(|| {
                XtaskError::Unexpected(format!("{}: cannot read {line:?}", path.display()))
            })?;
            if let Some(position) = pending
                .iter()
                .position(|block| block.addresses.first() == Some(&pc))
            {
                blocks.insert(host.to_string(), pending.remove(position));
            }
            let block = blocks.get(host).cloned().ok_or_else(|| {
                XtaskError::Unexpected(format!(
                    "{}: block {host} executed before it was translated",
                    path.display()
                ))
            })?;
            if block.reads_pmu {
                pmu_reads += 1;
                last = None;
                continue;
            }
            let window = WINDOWS.iter().position(|&opening| opening == pmu_reads);
            if let Some(window) = window {
                for &address in &block.addresses {
                    *windows[window].entry((cpu, address)).or_default() += 1;
                }
            }
            last = Some((cpu, block, window));
            continue;
        }
        if line.starts_with("Stopped execution of TB chain")
            && let Some((cpu, block, Some(window))) = last.take()
        {
            for &address in &block.addresses {
                *windows[window].entry((cpu, address)).or_default() -= 1;
            }
        }
    }
    if pmu_reads != PMU_READS {
        return Err(XtaskError::Unexpected(format!(
            "{}: {pmu_reads} PMU reads traced, {PMU_READS} expected",
            path.display()
        )));
    }
    Ok(windows)
}

/// The address of an `in_asm` instruction line (`0x0000000000001234:  d503201f  nop`).
fn instruction_address(line: &str) -> Option<u64> {
    let (address, rest) = line.split_once(':')?;
    let digits = address.strip_prefix("0x")?;
    if !rest.starts_with("  ") {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// The CPU, host address and guest PC of an exec line (`0: 0x7f.. [00000000/0000000000001234/...]`).
fn parse_exec(rest: &str) -> Option<(usize, &str, u64)> {
    let (cpu, rest) = rest.split_once(':')?;
    let rest = rest.trim_start();
    let (host, rest) = rest.split_once(' ')?;
    let inside = rest.strip_prefix('[')?.split(']').next()?;
    let pc = inside.split('/').nth(1)?;
    Some((
        cpu.trim().parse().ok()?,
        host,
        u64::from_str_radix(pc, 16).ok()?,
    ))
}

/// The groups of the summary table, each with the parts that belong to it (a part belongs to the
/// first group one of whose patterns it contains); the rest is "other".
const GROUPS: &[(&str, &[&str])] = &[
    ("EL2 calling loop / interrupted idle loop", &["EL2 payload"]),
    (
        "SMC entry, dispatch, register restore, ERET",
        &[
            "SMC vector",
            "smc_other",
            "handle_smc",
            "exception_return",
            "handle_lower_el_sync",
            "services::dispatch",
            "handle_erratum_call",
        ],
    ),
    (
        "FIQ entry, acknowledge, end, return",
        &[
            "FIQ vector",
            "fiq_return",
            "fiq_slow",
            "handle_fiq",
            "acknowledge_group0",
            "end_group0",
        ],
    ),
    (
        "call set-up and statistics",
        &[
            "erratum_call",
            "count_caller",
            "caller_exception_level",
            "add_to_own_counter",
            "CpuSet::len",
            "Deadline::after",
            "EL3: now",
            "cpu_service::",
            "smccc::",
            "EL3: handle",
            "owns",
            "SmcReturn",
        ],
    ),
    (
        "wait: WFE, deadline timer",
        &["wait_for_event", "stop_deadline_timer"],
    ),
    ("SGI send", &["send_rendezvous_sgi", "send_sgi"]),
    (
        "read counter, DSB, publish, SEV (all roles)",
        &[
            "load_request_counter",
            "local_dsb",
            "store_serviced",
            "send_event",
            "increment_request_counter",
        ],
    ),
    (
        "protocol bookkeeping: scan of CPU records, wait passes, role set-up",
        &[
            "flat::",
            "CallerRole",
            "request_workaround",
            "scan_record",
            "load_cpu_record",
            "from_bits",
            "load_serviced",
            "has_serviced",
            "newer_request",
            "CpuSet",
            "CpuIndex",
            "check_cpu",
            "has_passed",
            "handle_sgi",
            "RendezvousStorage::memory",
            "power::cpu_count",
            "cpu_index",
            "eq",
        ],
    ),
];

/// The summary of one profile: instructions per call by group, caller and each responder.
fn summary(profile: &Profile) -> String {
    let responders = profile.cpus.saturating_sub(1).max(1) as f64;
    let mut groups: Vec<(&str, f64, f64)> =
        GROUPS.iter().map(|(name, _)| (*name, 0.0, 0.0)).collect();
    let mut other = (0.0, 0.0);
    for (part, (on_caller, on_responders)) in &profile.parts {
        match GROUPS
            .iter()
            .position(|(_, patterns)| patterns.iter().any(|pattern| part.contains(pattern)))
        {
            Some(index) => {
                groups[index].1 += on_caller;
                groups[index].2 += on_responders;
            }
            None => {
                other.0 += on_caller;
                other.1 += on_responders;
            }
        }
    }
    let mut text = format!(
        "\n#### Summary, {} CPU{}: {:.1} instructions per call\n\n| part | caller (CPU 0) | each responder |\n|---|---:|---:|\n",
        profile.cpus,
        if profile.cpus == 1 { "" } else { "s" },
        profile.traced_per_call
    );
    for (name, on_caller, on_responders) in groups {
        let _ = writeln!(
            text,
            "| {name} | {on_caller:.1} | {:.1} |",
            on_responders / responders
        );
    }
    let _ = writeln!(
        text,
        "| other | {:.1} | {:.1} |",
        other.0,
        other.1 / responders
    );
    text
}

/// The table of one profile: parts with at least 0.5 instructions per call, largest first.
fn table(profile: &Profile) -> String {
    let responders = profile.cpus.saturating_sub(1).max(1) as f64;
    let mut rows: Vec<(&String, &(f64, f64))> = profile.parts.iter().collect();
    rows.sort_by(|a, b| {
        (b.1.0 + b.1.1)
            .partial_cmp(&(a.1.0 + a.1.1))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let (caller, answering): (f64, f64) = profile
        .parts
        .values()
        .fold((0.0, 0.0), |(c, r), (a, b)| (c + a, r + b));
    let mut text = String::new();
    let _ = writeln!(
        text,
        "\n### Erratum call, {} CPU{} (others in WFI): {:.1} instructions per call (PMU {:.1}; null SMC {:.1})\n",
        profile.cpus,
        if profile.cpus == 1 { "" } else { "s" },
        profile.traced_per_call,
        profile.pmu_per_call,
        profile.null_per_call
    );
    let _ = writeln!(text, "| part | caller (CPU 0) | each responder |");
    let _ = writeln!(text, "|---|---:|---:|");
    let mut small = (0.0, 0.0);
    for (name, (on_caller, on_responders)) in rows {
        if on_caller.abs() < 0.5 && (on_responders / responders).abs() < 0.5 {
            small.0 += on_caller;
            small.1 += on_responders;
            continue;
        }
        let _ = writeln!(
            text,
            "| {name} | {on_caller:.1} | {:.1} |",
            on_responders / responders
        );
    }
    let _ = writeln!(
        text,
        "| (parts under 0.5) | {:.1} | {:.1} |",
        small.0,
        small.1 / responders
    );
    let _ = writeln!(
        text,
        "| **total** | **{caller:.1}** | **{:.1}** |",
        answering / responders
    );
    if profile.cpus == 1 {
        let mut rows: Vec<(&String, &f64)> = profile.null_parts.iter().collect();
        rows.sort_by(|a, b| b.1.partial_cmp(a.1).unwrap_or(std::cmp::Ordering::Equal));
        let _ = writeln!(
            text,
            "\n### Null SMC (`SMCCC_VERSION`), 1 CPU: {:.1} instructions per call\n",
            profile.null_per_call
        );
        let _ = writeln!(text, "| part | instructions |\n|---|---:|");
        for (name, count) in rows {
            let _ = writeln!(text, "| {name} | {count:.1} |");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_lines_are_parsed() {
        assert_eq!(
            instruction_address("0x0000000000001234:  d503201f  nop"),
            Some(0x1234)
        );
        assert_eq!(instruction_address("IN: monitor_vectors"), None);
        assert_eq!(
            parse_exec("3: 0x7f0012 [00000000/0000000040001000/00000001/00000000] sym"),
            Some((3, "0x7f0012", 0x4000_1000))
        );
        assert_eq!(
            simplify("rendezvous::roles::CallerRole<_>::step::h0123456789abcdef"),
            "roles::CallerRole::step"
        );
    }
}
