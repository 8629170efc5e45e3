//! The benchmark report: the targets of the benchmarks issue judged against the figures, Markdown
//! tables (printed and kept in `docs/results.md` between two marker comments, the rest of the file
//! untouched) and two SVG plots written by hand (a plotting crate would be the only user of its
//! dependencies here).

use super::records::{DonationRow, ErratumRow, Results, TableRow, Target};
use crate::error::XtaskError;
use std::fmt::Write as _;
use std::path::Path;

/// Marks the start and the end of the generated section of `docs/results.md`.
const SECTION_START: &str = "<!-- cargo xtask bench: QEMU section start (generated) -->";
const SECTION_END: &str = "<!-- cargo xtask bench: QEMU section end -->";
const OVERHEAD_PLOT: &str = "bench-overhead.svg";
const CALL_COST_PLOT: &str = "bench-call-cost.svg";
/// The CPU count the donation target names.
const TARGET_CPUS: u64 = 4;

/// Which figure of an erratum row: per erratum call or per null SMC.
type Cost = fn(&ErratumRow) -> f64;

fn erratum_per_call(row: &ErratumRow) -> f64 {
    row.erratum_per_call
}

fn null_smc_per_call(row: &ErratumRow) -> f64 {
    row.null_smc_per_call
}

/// The donation row of a placement, granule and batch size.
fn donation<'a>(
    rows: &'a [DonationRow],
    placement: &str,
    granule: &str,
    pages_per_call: u64,
) -> Option<&'a DonationRow> {
    rows.iter().find(|row| {
        row.placement == placement && row.granule == granule && row.pages_per_call == pages_per_call
    })
}

/// The fix's overhead in percent of the no-fix donation (same granule and batch size).
fn overhead(
    rows: &[DonationRow],
    placement: &str,
    granule: &str,
    pages_per_call: u64,
) -> Option<f64> {
    // Upstream's placement with one page per call is the same as one call per hypercall.
    let placement = if placement == "per-page" && pages_per_call == 1 {
        "per-hypercall"
    } else {
        placement
    };
    let fixed = donation(rows, placement, granule, pages_per_call)?;
    let unfixed = donation(rows, "not-needed", granule, pages_per_call)?;
    let (fixed, unfixed) = (fixed.donate_total as f64, unfixed.donate_total as f64);
    Some((fixed - unfixed) / unfixed * 100.0)
}

/// The erratum call's cost per call (summed over CPUs) for each CPU count, others doing `others`.
fn call_costs(results: &Results, others: &str, cost: Cost) -> Vec<(f64, f64)> {
    results
        .erratum_call
        .iter()
        .filter(|row| row.others == others)
        .map(|row| (row.cpus as f64, cost(row)))
        .collect()
}

/// Whether `costs` grow at most linearly: no point above the line through the first two, i.e. no
/// extra CPU costs more than the first extra CPU did.
fn at_most_linear(costs: &[(f64, f64)]) -> bool {
    let [(cpus_1, cost_1), (cpus_2, cost_2), ..] = costs else {
        return false;
    };
    let slope = (cost_2 - cost_1) / (cpus_2 - cpus_1);
    costs
        .iter()
        .all(|(cpus, cost)| *cost <= cost_1 + slope * (cpus - cpus_1) + 0.5)
}

fn target(name: &str, goal: &str, measured: String, met: bool) -> Target {
    Target {
        target: name.to_string(),
        goal: goal.to_string(),
        measured,
        met,
    }
}

/// The rendezvous-cost issue's targets (issue 15), others in WFI: the erratum call per CPU count,
/// the cost per extra CPU, the null SMC, and the busy-at-EL1 variant against the WFI one.
fn rendezvous_cost_targets(results: &Results) -> Vec<Target> {
    let mut targets = Vec::new();
    let wfi = call_costs(results, "wfi", erratum_per_call);
    let busy = call_costs(results, "busy-el1", erratum_per_call);
    for (cpus, limit) in [(1.0, 100.0), (2.0, 170.0), (4.0, 300.0), (8.0, 550.0)] {
        let cost = wfi
            .iter()
            .find(|(count, _)| *count == cpus)
            .map_or(f64::NAN, |(_, cost)| *cost);
        targets.push(target(
            &format!(
                "erratum call, {cpus} CPU{} (others wfi)",
                if cpus == 1.0 { "" } else { "s" }
            ),
            &format!("<= {limit} instructions (TF-A v2.15: 1,053 / 1,291 / 1,677 at 1 / 2 / 4)"),
            format!("{cost:.0}"),
            cost <= limit,
        ));
    }
    let per_extra = wfi
        .windows(2)
        .map(|pair| (pair[1].1 - pair[0].1) / (pair[1].0 - pair[0].0))
        .fold(f64::NAN, f64::max);
    targets.push(target(
        "erratum call, cost per extra CPU (others wfi)",
        "<= 60 instructions",
        format!("at most {per_extra:.0} between 1, 2, 4, 8 CPUs"),
        per_extra <= 60.0,
    ));
    let null = call_costs(results, "wfi", null_smc_per_call)
        .iter()
        .map(|(_, cost)| *cost)
        .fold(f64::NAN, f64::max);
    targets.push(target(
        "null SMC (SMCCC_VERSION)",
        "<= 110 instructions (TF-A v2.15: 179)",
        format!("{null:.0}"),
        null <= 110.0,
    ));
    let spread = wfi
        .iter()
        .zip(&busy)
        .map(|((_, idle), (_, spinning))| ((spinning - idle) / idle * 100.0).abs())
        .fold(f64::NAN, f64::max);
    targets.push(target(
        "erratum call, others busy at EL1 against others in WFI",
        "within 2%",
        format!("at most {spread:.2}% apart"),
        spread <= 2.0,
    ));
    targets
}

/// Each target of the benchmarks issue judged against `results`: the figure, met or not.
pub fn targets(results: &Results) -> Vec<Target> {
    let mut targets = Vec::new();
    let rows = &results.donation;
    let batched = overhead(rows, "per-hypercall", "page", 512).unwrap_or(f64::NAN);
    let per_page = overhead(rows, "per-page", "page", 512).unwrap_or(f64::NAN);
    let cpus = donation(rows, "per-hypercall", "page", 512).map_or(0.0, |row| row.cpus as f64);
    targets.push(target(
        "overhead of the fix, 512 pages per call, 4 KiB pages",
        "<= 1% of the no-fix instruction count (4 CPUs)",
        format!(
            "{batched:.2}% with {cpus} CPUs (one call per page, upstream's placement: {per_page:.1}%)"
        ),
        batched <= 1.0 && cpus == TARGET_CPUS as f64,
    ));
    for others in ["wfi", "busy-el1"] {
        let costs = call_costs(results, others, erratum_per_call);
        let increments: Vec<String> = costs
            .windows(2)
            .map(|pair| format!("{:.0}", (pair[1].1 - pair[0].1) / (pair[1].0 - pair[0].0)))
            .collect();
        targets.push(target(
            &format!("erratum call cost against CPUs (others {others})"),
            "grows at most linearly",
            format!(
                "instructions per extra CPU between 1, 2, 4, 8 CPUs: {}",
                increments.join(", ")
            ),
            at_most_linear(&costs),
        ));
    }
    targets.extend(rendezvous_cost_targets(results));
    let tables = &results.table_memory;
    for (granule, row, limit_kib, goal) in [
        ("page", &tables.page, 2.05 * 1024.0, "<= 2.05 MiB per GiB"),
        ("block", &tables.block, 16.0, "<= 16 KiB per GiB"),
    ] {
        let (host, guest) = kib_per_gib(row);
        for (which, kib) in [
            ("guest stage-2", guest),
            ("host stage-2", host),
            ("host and guest together", host + guest),
        ] {
            targets.push(target(
                &format!("table memory, {granule} donation, {which}"),
                goal,
                format!("{kib} KiB per GiB"),
                kib <= limit_kib,
            ));
        }
    }
    targets
}

/// The host's and the guest's stage-2 KiB per GiB of a table row.
fn kib_per_gib(row: &TableRow) -> (f64, f64) {
    (row.host_kib_per_gib as f64, row.guest_kib_per_gib as f64)
}

fn grouped(value: f64) -> String {
    if !value.is_finite() {
        return "–".to_string();
    }
    let rounded = value.round() as i64;
    let digits = rounded.unsigned_abs().to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if rounded < 0 { format!("-{out}") } else { out }
}

fn placement_label(placement: &str) -> &'static str {
    match placement {
        "not-needed" => "no fix needed (c1-pro-r2p0)",
        "per-hypercall" => "one call per hypercall (ours)",
        "per-page" => "one call per page (upstream placement)",
        _ => "?",
    }
}

/// The Markdown tables of the QEMU benchmarks.
pub fn tables(results: &Results) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "Conditions: {}; {}.\n",
        results.qemu, results.conditions
    );
    text.push_str("### The erratum call against a null SMC\n\n");
    text.push_str(
        "Retired instructions per call, summed over all CPUs (the caller at EL2 and EL3, the others \
         answering the rendezvous at EL3). Null SMC: `SMCCC_VERSION`. Busy CPUs spin at EL1 with \
         every interrupt masked in a loop that yields each iteration; the few instructions of their \
         loop that run while the caller waits are counted too.\n\n",
    );
    text.push_str(
        "| CPUs | null SMC, others in WFI | erratum call, others in WFI | null SMC, others busy at EL1 | erratum call, others busy at EL1 |\n| ---: | ---: | ---: | ---: | ---: |\n",
    );
    for cpus in [1u64, 2, 4, 8] {
        let find = |others: &str| {
            results
                .erratum_call
                .iter()
                .find(|row| row.cpus == cpus && row.others == others)
        };
        let cell = |others: &str, cost: Cost| find(others).map_or(f64::NAN, cost);
        let _ = writeln!(
            text,
            "| {cpus} | {} | {} | {} | {} |",
            grouped(cell("wfi", null_smc_per_call)),
            grouped(cell("wfi", erratum_per_call)),
            grouped(cell("busy-el1", null_smc_per_call)),
            grouped(cell("busy-el1", erratum_per_call)),
        );
    }
    text.push_str(&format!(
        "\n![Erratum call cost against CPU count]({CALL_COST_PLOT})\n\n"
    ));
    text.push_str(
        "### Donating 64 MiB to a protected VM in 4 KiB pages (4 CPUs, others in WFI)\n\n",
    );
    text.push_str(
        "Retired instructions from the host's first `DONATE_GUEST` to its last return (host, \
         hypervisor, monitor, and the other CPUs' rendezvous), per page donated; the range is one \
         page off a 2 MiB boundary so every mapping is a page. Overhead: against the same run on an \
         unaffected CPU. Teardown and reclaim: `VM_TEARDOWN` and `RECLAIM_GUEST_PAGES` of 512 pages \
         each (zeroing included), per page. Firmware calls: the hypervisor's count for the whole run, \
         which includes `VM_CREATE`'s donation of the VM's metadata pages (one call, or one per page \
         in upstream's placement).\n\n",
    );
    text.push_str(
        "| pages per call | firmware calls (whole run) | placement | instructions per page | overhead of the fix | teardown and reclaim per page |\n| ---: | ---: | --- | ---: | ---: | ---: |\n",
    );
    for pages_per_call in [1u64, 16, 512] {
        for placement in ["not-needed", "per-hypercall", "per-page"] {
            let Some(row) = donation(&results.donation, placement, "page", pages_per_call) else {
                continue;
            };
            let firmware_calls = row.firmware_calls_whole_run as f64;
            let overhead = overhead(&results.donation, placement, "page", pages_per_call)
                .filter(|_| placement != "not-needed")
                .map_or("–".to_string(), |value| format!("{value:.2}%"));
            let _ = writeln!(
                text,
                "| {pages_per_call} | {} | {} | {} | {overhead} | {} |",
                grouped(firmware_calls),
                placement_label(placement),
                grouped(row.donate_per_page),
                grouped(row.reclaim_per_page),
            );
        }
    }
    text.push_str(
        "\nWith one page per call, upstream's placement and ours make the same single call.\n\n",
    );
    text.push_str(&format!(
        "![Overhead of the fix against batch size]({OVERHEAD_PLOT})\n\n"
    ));
    text.push_str("### The same donation in 2 MiB blocks (512 pages per call, 2 MiB aligned)\n\n");
    text.push_str(
        "| placement | firmware calls (whole run) | instructions per page | overhead of the fix | teardown and reclaim per page |\n| --- | ---: | ---: | ---: | ---: |\n",
    );
    for placement in ["not-needed", "per-hypercall", "per-page"] {
        let Some(row) = donation(&results.donation, placement, "block", 512) else {
            continue;
        };
        let firmware_calls = row.firmware_calls_whole_run as f64;
        let overhead = overhead(&results.donation, placement, "block", 512)
            .filter(|_| placement != "not-needed")
            .map_or("–".to_string(), |value| format!("{value:.2}%"));
        let _ = writeln!(
            text,
            "| {} | {} | {} | {overhead} | {} |",
            placement_label(placement),
            grouped(firmware_calls),
            grouped(row.donate_per_page),
            grouped(row.reclaim_per_page),
        );
    }
    text.push_str("\n### Stage-2 table memory per GiB donated\n\n");
    let tables = &results.table_memory;
    let _ = writeln!(
        text,
        "Source: {}; the hypervisor keeps no table counter the host could read. Guest root ({} KiB, \
         once per VM) excluded.\n",
        tables.source, tables.page.guest_root_kib
    );
    text.push_str("| donation | host stage-2 added | guest stage-2 | together |\n| --- | ---: | ---: | ---: |\n");
    for (row, label) in [
        (&tables.page, "4 KiB pages"),
        (&tables.block, "2 MiB blocks"),
    ] {
        let (host, guest) = kib_per_gib(row);
        let _ = writeln!(
            text,
            "| {label} | {} KiB | {} KiB | {} KiB |",
            grouped(host),
            grouped(guest),
            grouped(host + guest)
        );
    }
    text.push_str("\n### Targets (benchmarks issue)\n\n| target | goal | measured | met |\n| --- | --- | --- | --- |\n");
    for row in &results.targets {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} |",
            row.target,
            row.goal,
            row.measured,
            if row.met { "yes" } else { "**no**" }
        );
    }
    text
}

/// Writes the plots and the QEMU section of `docs/results.md`.
pub fn write_docs(root: &Path, results: &Results) -> Result<(), XtaskError> {
    let docs = root.join("docs");
    let write = |name: &str, text: &str| {
        let path = docs.join(name);
        std::fs::write(&path, text).map_err(|error| XtaskError::file("write", &path, error))
    };
    write(OVERHEAD_PLOT, &overhead_plot(results))?;
    write(CALL_COST_PLOT, &call_cost_plot(results))?;
    let path = docs.join("results.md");
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    let section = format!(
        "{SECTION_START}\n## The fix in QEMU, in retired instructions (`cargo xtask bench`)\n\n{}{SECTION_END}\n",
        tables(results)
    );
    write("results.md", &replace_section(&existing, &section))
}

/// `document` with its generated section replaced by `section` (appended when there is none).
fn replace_section(document: &str, section: &str) -> String {
    match (document.find(SECTION_START), document.find(SECTION_END)) {
        (Some(start), Some(end)) if end > start => {
            let after = &document[end + SECTION_END.len()..];
            let after = after.strip_prefix('\n').unwrap_or(after);
            format!("{}{section}{after}", &document[..start])
        }
        _ => {
            let separator = if document.ends_with("\n\n") || document.is_empty() {
                ""
            } else if document.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            format!("{document}{separator}{section}")
        }
    }
}

fn overhead_plot(results: &Results) -> String {
    let series = ["per-hypercall", "per-page"].map(|placement| {
        let points = [1u64, 16, 512]
            .iter()
            .filter_map(|&batch| {
                overhead(&results.donation, placement, "page", batch)
                    .map(|value| (batch as f64, value))
            })
            .collect();
        Series {
            name: placement_label(placement),
            points,
        }
    });
    Chart {
        title: "Overhead of the fix, 64 MiB donated in 4 KiB pages, 4 CPUs",
        x_label: "pages per DONATE_GUEST call (log scale)",
        y_label: "overhead over no fix, % (log scale)",
        log_x: true,
        log_y: true,
        series: &series,
    }
    .svg()
}

fn call_cost_plot(results: &Results) -> String {
    let series: [(&'static str, &str, Cost); 3] = [
        ("erratum call, others in WFI", "wfi", erratum_per_call),
        (
            "erratum call, others busy at EL1",
            "busy-el1",
            erratum_per_call,
        ),
        ("null SMC, others in WFI", "wfi", null_smc_per_call),
    ];
    let series = series.map(|(name, others, cost)| Series {
        name,
        points: call_costs(results, others, cost),
    });
    Chart {
        title: "Cost of one call against CPUs online (all CPUs summed)",
        x_label: "CPUs online",
        y_label: "retired instructions per call",
        log_x: false,
        log_y: false,
        series: &series,
    }
    .svg()
}

/// A named line of (x, y) points.
struct Series {
    name: &'static str,
    points: Vec<(f64, f64)>,
}

/// A line chart.
struct Chart<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    log_x: bool,
    log_y: bool,
    series: &'a [Series],
}

const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 400.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

/// Axis values: the range shown and the tick positions, in the chart's own (maybe log) scale.
fn axis(values: &[f64], log: bool) -> (f64, f64, Vec<f64>) {
    let finite: Vec<f64> = values
        .iter()
        .copied()
        .filter(|value| value.is_finite() && (!log || *value > 0.0))
        .collect();
    let low = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let high = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !low.is_finite() {
        return (0.0, 1.0, vec![0.0, 1.0]);
    }
    if log {
        let low = low.log10().floor();
        let high = high.log10().ceil().max(low + 1.0);
        let ticks = (low as i32..=high as i32).map(f64::from).collect();
        (low, high, ticks)
    } else {
        let high = high * 1.1;
        let step = nice_step(high / 5.0);
        let top = (high / step).ceil() * step;
        let ticks = (0..=(top / step) as usize)
            .map(|index| index as f64 * step)
            .collect();
        (0.0, top, ticks)
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|factor| factor * power)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * power)
}

fn label(value: f64, log: bool) -> String {
    if log {
        let actual = 10f64.powf(value);
        if actual >= 1.0 {
            grouped(actual)
        } else {
            let decimals = usize::try_from(-(value.round() as i64)).unwrap_or(0);
            format!("{actual:.decimals$}")
        }
    } else {
        grouped(value)
    }
}

impl Chart<'_> {
    fn svg(&self) -> String {
        let scale = |value: f64, log: bool| if log { value.log10() } else { value };
        let xs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|series| series.points.iter().map(|point| scale(point.0, self.log_x)))
            .collect();
        let ys: Vec<f64> = self
            .series
            .iter()
            .flat_map(|series| series.points.iter().map(|point| point.1))
            .collect();
        let (x_low, x_high, _) = axis(
            &xs.iter()
                .map(|x| if self.log_x { 10f64.powf(*x) } else { *x })
                .collect::<Vec<_>>(),
            self.log_x,
        );
        let (x_low, x_high) = if self.log_x {
            // Exactly the points' range: the batch sizes are the only ticks.
            let low = xs.iter().copied().fold(f64::INFINITY, f64::min);
            let high = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (low, high.max(low + 1.0))
        } else {
            (x_low.min(0.0), x_high)
        };
        let (y_low, y_high, y_ticks) = axis(&ys, self.log_y);
        let plot_width = WIDTH - LEFT - RIGHT;
        let plot_height = HEIGHT - TOP - BOTTOM;
        let x_position =
            |x: f64| LEFT + (scale(x, self.log_x) - x_low) / (x_high - x_low) * plot_width;
        let y_position = |y: f64| {
            let y = if self.log_y {
                y.max(f64::MIN_POSITIVE).log10()
            } else {
                y
            };
            TOP + plot_height - (y - y_low) / (y_high - y_low) * plot_height
        };
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
            WIDTH / 2.0,
            self.title
        );
        for tick in &y_ticks {
            let y = TOP + plot_height - (tick - y_low) / (y_high - y_low) * plot_height;
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                label(*tick, self.log_y)
            );
        }
        let mut x_ticks: Vec<f64> = self
            .series
            .iter()
            .flat_map(|series| series.points.iter().map(|point| point.0))
            .collect();
        x_ticks.sort_by(f64::total_cmp);
        x_ticks.dedup();
        for tick in x_ticks {
            let x = x_position(tick);
            let _ = writeln!(
                svg,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + plot_height,
                TOP + plot_height + 18.0,
                grouped(tick)
            );
        }
        let _ = writeln!(
            svg,
            r##"<rect x="{LEFT}" y="{TOP}" width="{plot_width}" height="{plot_height}" fill="none" stroke="#333"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + plot_width / 2.0,
            HEIGHT - 16.0,
            self.x_label
        );
        let _ = writeln!(
            svg,
            r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + plot_height / 2.0,
            self.y_label
        );
        for (index, series) in self.series.iter().enumerate() {
            let colour = COLOURS[index % COLOURS.len()];
            let points: Vec<String> = series
                .points
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", x_position(*x), y_position(*y)))
                .collect();
            // Every other line dashed, so lines that lie on each other both show.
            let dash = if index % 2 == 1 {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
                points.join(" ")
            );
            for (x, y) in &series.points {
                let _ = writeln!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{colour}"><title>{}: {x} -> {y:.2}</title></circle>"#,
                    x_position(*x),
                    y_position(*y),
                    series.name
                );
            }
            let legend_y = TOP + 16.0 + 16.0 * index as f64;
            let _ = writeln!(
                svg,
                r#"<line x1="{:.1}" y1="{legend_y:.1}" x2="{:.1}" y2="{legend_y:.1}" stroke="{colour}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                LEFT + 12.0,
                LEFT + 36.0,
                LEFT + 42.0,
                legend_y + 4.0,
                series.name
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_growth_is_judged_against_the_first_extra_cpu() {
        // (costs at 1, 2, 4, 8 CPUs, at most linear?)
        let cases: &[([f64; 4], bool)] = &[
            ([500.0, 1100.0, 2300.0, 4700.0], true),
            ([500.0, 1100.0, 1800.0, 3200.0], true),
            ([500.0, 1100.0, 2400.0, 4700.0], false),
            ([500.0, 600.0, 800.0, 1600.0], false),
        ];
        for (costs, expected) in cases {
            let points: Vec<(f64, f64)> = [1.0, 2.0, 4.0, 8.0]
                .into_iter()
                .zip(costs.iter().copied())
                .collect();
            assert_eq!(at_most_linear(&points), *expected, "{costs:?}");
        }
    }

    #[test]
    fn the_generated_section_replaces_only_itself() {
        let section = format!("{SECTION_START}\nnew\n{SECTION_END}\n");
        let cases: &[(&str, String)] = &[
            ("# Results\n", format!("# Results\n\n{section}")),
            (
                &format!("# R\n\n{SECTION_START}\nold\n{SECTION_END}\nafter\n"),
                format!("# R\n\n{section}after\n"),
            ),
        ];
        for (document, expected) in cases {
            assert_eq!(&replace_section(document, &section), expected);
        }
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        let cases = [
            (0.0, "0"),
            (999.4, "999"),
            (1834.0, "1,834"),
            (-1234567.0, "-1,234,567"),
        ];
        for (value, expected) in cases {
            assert_eq!(grouped(value), expected);
        }
    }

    #[test]
    fn the_overhead_compares_with_the_unaffected_run() {
        let row = |placement: &str, donate_total: u64| DonationRow {
            placement: placement.to_string(),
            granule: "page".to_string(),
            pages_per_call: 1,
            cpu: String::new(),
            cpus: 4,
            pages: 1,
            calls: 1,
            firmware_calls_whole_run: 0,
            donate_total,
            reclaim_total: 0,
            donate_per_page: 0.0,
            reclaim_per_page: 0.0,
        };
        let rows = [row("not-needed", 1000), row("per-hypercall", 1250)];
        assert_eq!(overhead(&rows, "per-hypercall", "page", 1), Some(25.0));
        assert_eq!(overhead(&rows, "per-page", "page", 1), Some(25.0));
        assert_eq!(overhead(&rows, "per-page", "page", 16), None);
    }
}
