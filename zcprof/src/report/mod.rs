//! Rendering: the cost table for terminals and Markdown, and the JSON contract. Every cell is
//! the measured figure per transfer step with the textbook's figure beside it; the sources of
//! all figures are listed under the table.
use std::fmt::Write as _;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

use crate::{
    model::{Figure, RunReport},
    units::format_bytes,
};

/// Output formats of every table-printing command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Markdown,
    /// One row per run; each figure as `<name>_value` and `<name>_per_step` columns.
    Csv,
}

/// A method that could not be measured, shown as a row with its reason.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Failed {
    pub method: String,
    pub error: String,
}

const HEADERS: [&str; 8] = [
    "method",
    "syscalls/step",
    "mode switches/step",
    "sched switches/step",
    "CPU copies/step",
    "DMA/step",
    "elapsed",
    "throughput",
];

fn tb(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v}"))
}

fn per_step(f: Option<&Figure>) -> String {
    match f {
        // Below what two decimals show, say so: "0.01 (0.00 vol, 0.00 invol)" read as parts that
        // do not add up.
        Some(Figure {
            per_transfer: Some(v),
            ..
        }) if *v > 0.0 && *v < 0.005 => "<0.01".to_owned(),
        Some(Figure {
            per_transfer: Some(v),
            spread,
            ..
        }) => format!(
            "{v:.2}{}",
            range(spread.as_ref().and_then(|s| s.per_transfer), |x| format!(
                "{x:.2}"
            ))
        ),
        Some(Figure { value: None, .. }) | None => "n/a".to_owned(),
        Some(Figure { value: Some(v), .. }) => format!("{v}"),
    }
}

/// A repeated figure's range, ` [min-max]`, from its `[median, min, max]`; nothing when the
/// figure was not repeated or every repetition agreed to the digits shown.
fn range(spread: Option<[f64; 3]>, show: impl Fn(f64) -> String) -> String {
    match spread {
        Some([_, lo, hi]) if show(lo) != show(hi) => format!(" [{}-{}]", show(lo), show(hi)),
        _ => String::new(),
    }
}

/// The `[median, min, max]` of a repeated figure's total value.
fn value_spread(f: Option<&Figure>) -> Option<[f64; 3]> {
    f.and_then(|f| f.spread.as_ref())
        .map(|s| [s.median, s.min, s.max])
}

/// Bytes per step, shown as whole-block equivalents (what the textbook counts as "copies").
#[expect(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "display"
)]
fn blocks(f: Option<&Figure>, block_size: u64) -> String {
    let in_blocks = |b: f64| format!("{:.2}", b / block_size.max(1) as f64);
    f.and_then(|f| f.per_transfer).map_or_else(
        || "n/a".to_owned(),
        |b| {
            format!(
                "{}{} ({}/step)",
                in_blocks(b),
                range(
                    f.and_then(|f| f.spread.as_ref())
                        .and_then(|s| s.per_transfer),
                    in_blocks
                ),
                format_bytes(b.round() as u64)
            )
        },
    )
}

fn cells(r: &RunReport) -> [String; 8] {
    let fig = |k: &str| r.figures.get(k);
    let t = &r.textbook;
    // Bytes per step, the paths that contributed (the copy ledger), and where sampling ran, the
    // share of kernel time spent copying.
    let mut copies = blocks(fig("cpu_copy_bytes"), r.block_size);
    let paths = crate::model::ledger::short_paths(&r.copies);
    if !paths.is_empty() {
        copies.push_str(&format!(" [{paths}]"));
    }
    // The sampled share with its 95 % interval and the samples behind it; too few samples, and
    // no number is shown.
    if let Some(f) = fig("copy_cpu_share")
        && let Some(share) = f.value
    {
        match f.estimate {
            Some(e) if e.samples < crate::model::MIN_SAMPLES => {
                copies.push_str(&format!(", copy share: too few samples (n={})", e.samples))
            }
            Some(e) => copies.push_str(&format!(
                ", {:.0}% of kernel time ({:.0}-{:.0}%, n={})",
                share * 100.0,
                e.low * 100.0,
                e.high * 100.0,
                e.samples
            )),
            None => copies.push_str(&format!(", {:.0}% of kernel time", share * 100.0)),
        }
    }
    let copies_tb = match (t.cpu_copies, t.cpu_copies_with_sg_dma) {
        (Some(c), Some(sg)) => format!("{c}, SG-DMA {sg}"),
        (c, _) => tb(c),
    };
    let elapsed = fig("elapsed_ns").and_then(|f| f.value);
    let throughput = fig("throughput_bytes_per_sec").and_then(|f| f.value);
    [
        row_label(r),
        format!("{} (tb {})", per_step(fig("syscalls")), tb(t.syscalls)),
        format!(
            "{} (tb {})",
            per_step(fig("mode_switches")),
            tb(t.mode_switches)
        ),
        format!(
            "{} ({} vol, {} invol)",
            per_step(fig("context_switches")),
            per_step(fig("context_switches_voluntary")),
            per_step(fig("context_switches_involuntary"))
        ),
        format!("{copies} (tb {copies_tb})"),
        format!(
            "{} (tb {})",
            blocks(fig("dma_bytes"), r.block_size),
            tb(t.dma_copies)
        ),
        elapsed.map_or_else(
            || "n/a".to_owned(),
            |ns| {
                let ms = |ns: f64| format!("{:.1}", ns / 1e6);
                format!(
                    "{} ms{}",
                    ms(ns),
                    range(value_spread(fig("elapsed_ns")), ms)
                )
            },
        ),
        throughput.map_or_else(
            || "n/a".to_owned(),
            |b| {
                let gib = |b: f64| format!("{:.2}", b / f64::from(1u32 << 30));
                format!(
                    "{} GiB/s{}",
                    gib(b),
                    range(value_spread(fig("throughput_bytes_per_sec")), gib)
                )
            },
        ),
    ]
}

/// The column legend: what each column counts and how it was obtained (from the first report;
/// one invocation uses one hook plan).
/// A text that may differ between rows: said once when every row has it, else per row, each
/// prefixed by the rows it describes (a legend line must hold for every row).
fn per_row(runs: &[RunReport], text: impl Fn(&RunReport) -> String) -> String {
    let mut groups: Vec<(Vec<String>, String)> = Vec::new();
    for r in runs {
        let t = text(r);
        match groups.iter_mut().find(|(_, g)| *g == t) {
            Some((rows, _)) => rows.push(row_label(r)),
            None => groups.push((vec![row_label(r)], t)),
        }
    }
    if let [(_, only)] = groups.as_slice() {
        return only.clone();
    }
    groups
        .into_iter()
        .map(|(rows, t)| format!("{}: {t}", rows.join(", ")))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The name of a row: the method, and the network path when it is not loopback (compare
/// --net veth has sendfile twice).
#[must_use]
pub fn row_label(r: &RunReport) -> String {
    match &r.net {
        Some(n) if n.kind != "loopback" => format!(
            "{} ({}, SG {})",
            r.method,
            n.kind,
            match n.scatter_gather {
                Some(true) => "on",
                Some(false) => "off",
                None => "?",
            }
        ),
        _ => r.method.clone(),
    }
}

fn legend(runs: &[RunReport]) -> Vec<String> {
    let Some(r) = runs.first() else {
        return Vec::new();
    };
    let src = |k: &str| {
        r.figures
            .get(k)
            .map_or_else(String::new, |f| f.source.clone())
    };
    let src_per_row = |k: &'static str| {
        per_row(runs, |r| {
            r.figures
                .get(k)
                .map_or_else(String::new, |f| f.source.clone())
        })
    };
    // A measured DMA figure names its hooks; an unavailable one says why.
    let dma = per_row(runs, |r| {
        r.figures.get("dma_bytes").map_or_else(String::new, |f| {
            if f.value.is_some() {
                format!("{}; {}", f.source, f.note)
            } else {
                format!("unavailable: {}", f.note)
            }
        })
    });
    vec![
        if r.kind == "program" {
            format!(
                "step: 1 MiB of payload moved by the program ({}, figures per MiB of it); the \
                 textbook has no row for a program",
                format_bytes(r.bytes)
            )
        } else {
            format!(
                "step: one transfer of --block-size {} ({} steps for {})",
                format_bytes(r.block_size),
                r.transfers,
                format_bytes(r.bytes)
            )
        },
        "tb: the textbook's figure per step (shared/TEXTBOOK.md); '-' where the note gives none"
            .to_owned(),
        repetitions(runs),
        format!("syscalls: {}", src("syscalls")),
        format!(
            "mode switches: user->kernel entries plus kernel->user returns, {}",
            src("mode_switches")
        ),
        format!(
            "sched switches: the scheduler switching the measured process off its CPU, {}",
            src("context_switches")
        ),
        format!(
            "CPU copies: every copy of payload the CPU made for the measured process, kernel-internal \
             ones included, in blocks per step, with the paths in brackets (pc: page cache, sock: \
             socket buffer, pkt: linear packet data, map: a mapping of the page cache; ✗: derived from \
             syscall semantics, contradicted by sampling and left out of the sum); {}. Share \
             of the measured process's kernel time in copy routines: {}",
            src_per_row("cpu_copy_bytes"),
            src("copy_cpu_share")
        ),
        format!("DMA: device transfers in blocks per step: {dma}"),
        format!("elapsed, throughput: {}", src("elapsed_ns")),
    ]
}

/// How many runs each row rests on: one, or the median of several with `[min-max]`.
fn repetitions(runs: &[RunReport]) -> String {
    per_row(runs, |r| match r.repeat {
        Some(rep) if rep.runs > 1 => format!(
            "each cell: the median of {} runs (methods interleaved{}), [min-max] where they differ",
            rep.runs,
            if rep.warmup > 0 {
                format!(", after {} each", warmups(rep.warmup))
            } else {
                String::new()
            }
        ),
        Some(rep) => format!(
            "one measured run, after {} (--repeat N for medians and spread)",
            warmups(rep.warmup)
        ),
        None => "one run (--repeat N for medians and spread)".to_owned(),
    })
}

fn warmups(n: u32) -> String {
    if n == 1 {
        "1 unmeasured warm-up run".to_owned()
    } else {
        format!("{n} unmeasured warm-up runs")
    }
}

/// The table's figures whose repetitions are too far apart to rank rows on.
const SPREAD_CHECKED: [&str; 7] = [
    "syscalls",
    "mode_switches",
    "context_switches",
    "cpu_copy_bytes",
    "dma_bytes",
    "elapsed_ns",
    "throughput_bytes_per_sec",
];

/// One warning per figure and row whose repetitions lie further apart than
/// `repeat::WIDE_SPREAD` of their median.
#[must_use]
pub fn spread_warnings(runs: &[RunReport]) -> Vec<String> {
    use crate::model::repeat::{WIDE_SPREAD, wide};
    wide(runs, &SPREAD_CHECKED)
        .into_iter()
        .map(|(r, name, s)| {
            let (lo, hi) = match (name, s.per_transfer) {
                ("elapsed_ns", _) => (
                    format!("{:.1} ms", s.min / 1e6),
                    format!("{:.1} ms", s.max / 1e6),
                ),
                ("throughput_bytes_per_sec", _) => {
                    let gib = f64::from(1u32 << 30);
                    (
                        format!("{:.2} GiB/s", s.min / gib),
                        format!("{:.2} GiB/s", s.max / gib),
                    )
                }
                (_, Some([_, lo, hi])) => (format!("{lo:.2}"), format!("{hi:.2} per step")),
                _ => (format!("{}", s.min), format!("{}", s.max)),
            };
            format!(
                "{name} of {} ranges from {lo} to {hi} over {} runs ({:.0}% of its median, more \
                 than {:.0}%): too wide to rank methods on; use more --repeat, --warmup, or a \
                 quieter machine",
                row_label(r),
                s.values.len(),
                s.relative() * 100.0,
                WIDE_SPREAD * 100.0
            )
        })
        .collect()
}

/// Notes of all runs, each said once, prefixed by the methods it applies to.
fn notes(runs: &[RunReport]) -> Vec<String> {
    let mut out: Vec<(Vec<String>, String)> = Vec::new();
    for r in runs {
        for n in &r.notes {
            match out.iter_mut().find(|(_, text)| text == n) {
                Some((methods, _)) => methods.push(row_label(r)),
                None => out.push((vec![row_label(r)], n.clone())),
            }
        }
    }
    out.into_iter()
        .map(|(methods, text)| {
            if methods.len() == runs.len() && runs.len() > 1 {
                format!("all: {text}")
            } else {
                format!("{}: {text}", methods.join(", "))
            }
        })
        .collect()
}

/// The terminal table of one or more runs.
#[must_use]
pub fn table(runs: &[RunReport], failed: &[Failed]) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(HEADERS);
    for r in runs {
        t.add_row(cells(r));
    }
    for f in failed {
        t.add_row(vec![f.method.clone(), format!("failed: {}", f.error)]);
    }
    let mut out = format!("{t}\n");
    if let Some(first) = runs.first() {
        match &first.file {
            Some(file) => {
                let _ = writeln!(
                    out,
                    "kernel {}; file {} on {} ({}, page cache {})",
                    first.kernel,
                    file.path,
                    file.filesystem,
                    if file.block_device {
                        "block device"
                    } else {
                        "no block device"
                    },
                    file.cache
                );
            }
            None => {
                let _ = writeln!(out, "kernel {}", first.kernel);
            }
        }
        for line in legend(runs) {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(out, "Notes:");
        for (i, n) in notes(runs).iter().enumerate() {
            let _ = writeln!(out, "  [{}] {n}", i + 1);
        }
        for w in spread_warnings(runs) {
            let _ = writeln!(out, "Warning: {w}");
        }
    }
    if let [only] = runs {
        out.push_str(&syscall_table(only));
        if !only.processes.is_empty() {
            out.push_str(&process_table(only));
        }
    }
    for r in runs {
        if let Some(t) = &r.trace {
            let _ = writeln!(
                out,
                "Trace of {}: {} events recorded, {} lost{}",
                r.method,
                t.events,
                t.lost,
                if t.lost > 0 {
                    format!(" (per CPU: {:?}): the trace is incomplete", t.lost_per_cpu)
                } else {
                    String::new()
                }
            );
        }
    }
    out
}

/// Per-process totals of a followed process tree, with the total row the main table holds.
fn process_table(r: &RunReport) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header([
        "pid",
        "process",
        "syscalls",
        "sched switches (vol/invol)",
        "page faults (user/kernel)",
        "hooked copies",
        "socket sends",
    ]);
    let copies = |n: u64| {
        // Not one copy routine could be hooked on this kernel: the bytes are unknown, not 0.
        let hooked = [
            "filemap_read_bytes",
            "copy_to_iter_bytes",
            "copy_from_iter_bytes",
        ]
        .iter()
        .any(|k| r.figures.get(k).is_some_and(|f| f.value.is_some()));
        if hooked {
            format_bytes(n)
        } else {
            "n/a".to_owned()
        }
    };
    for p in &r.processes {
        t.add_row(vec![
            p.pid.to_string(),
            p.name.clone(),
            p.syscalls.to_string(),
            format!(
                "{} ({}/{})",
                p.context_switches_voluntary + p.context_switches_involuntary,
                p.context_switches_voluntary,
                p.context_switches_involuntary
            ),
            format!("{}/{}", p.page_faults_user, p.page_faults_kernel),
            copies(p.hooked_copy_bytes),
            format_bytes(p.sock_send_bytes),
        ]);
    }
    let sum = |f: fn(&crate::model::ProcessRow) -> u64| r.processes.iter().map(f).sum::<u64>();
    let (vol, invol) = (
        sum(|p| p.context_switches_voluntary),
        sum(|p| p.context_switches_involuntary),
    );
    t.add_row(vec![
        String::new(),
        "total".to_owned(),
        sum(|p| p.syscalls).to_string(),
        format!("{} ({vol}/{invol})", vol + invol),
        format!(
            "{}/{}",
            sum(|p| p.page_faults_user),
            sum(|p| p.page_faults_kernel)
        ),
        copies(sum(|p| p.hooked_copy_bytes)),
        format_bytes(sum(|p| p.sock_send_bytes)),
    ]);
    format!("Per process (counted in the kernel by process id):\n{t}\n")
}

/// The compact table of a live snapshot: the cost row only, no legend or notes.
#[must_use]
pub fn live_table(r: &RunReport) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(HEADERS);
    t.add_row(cells(r));
    t.to_string()
}

/// A syscall's time in the kernel: exact, or ≈ an estimate ± the half-width of its 95 %
/// interval in percent (the larger side), or "too few timed" where the sample says nothing.
fn time_cell(s: &crate::model::SyscallRow) -> String {
    let ms = |ns: u64| ns as f64 / 1e6;
    if s.timed == 0 && s.switched.unwrap_or(0) == 0 {
        return "-".to_owned();
    }
    match s.time_estimate {
        None => format!("{:.3} ms", ms(s.total_ns)),
        Some(i) => match (i.low_ns, i.high_ns) {
            (Some(low), Some(high)) if s.total_ns > 0 => {
                let half = (high - s.total_ns).max(s.total_ns - low) as f64;
                format!(
                    "≈{:.3} ms ±{:.0}%",
                    ms(s.total_ns),
                    100.0 * half / s.total_ns as f64
                )
            }
            _ => format!("≈{:.3} ms (too few timed)", ms(s.total_ns)),
        },
    }
}

/// Per-syscall breakdown of one run.
fn syscall_table(r: &RunReport) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header([
        "syscall",
        "calls",
        "errors",
        "bytes returned",
        "time in kernel",
    ]);
    for s in &r.syscalls {
        t.add_row(vec![
            s.name.clone(),
            s.count.to_string(),
            s.errors.to_string(),
            s.bytes.map_or_else(|| "-".to_owned(), format_bytes),
            time_cell(s),
        ]);
    }
    format!(
        "Syscalls of the measured process ({}):\n{t}\nTime in kernel: {}.\n",
        r.hooks.get("sys_enter").cloned().unwrap_or_default(),
        r.syscall_timing
    )
}

/// The same table in Markdown, for docs and teaching material.
#[must_use]
pub fn markdown(runs: &[RunReport], failed: &[Failed]) -> String {
    // One separator cell per header: a ninth would make renderers show plain text.
    let mut out = format!(
        "| {} |\n|{}\n",
        HEADERS.join(" | "),
        "---|".repeat(HEADERS.len())
    );
    for r in runs {
        let _ = writeln!(out, "| {} |", cells(r).join(" | "));
    }
    for f in failed {
        let _ = writeln!(
            out,
            "| {} | failed: {} |{}",
            f.method,
            f.error.replace('|', "\\|"),
            " |".repeat(HEADERS.len() - 2)
        );
    }
    if !runs.is_empty() {
        out.push('\n');
        for line in legend(runs) {
            let _ = writeln!(out, "- {line}");
        }
        out.push_str("\nNotes:\n\n");
        for (i, n) in notes(runs).iter().enumerate() {
            let _ = writeln!(out, "{}. {n}", i + 1);
        }
        for w in spread_warnings(runs) {
            let _ = writeln!(out, "\n**Warning:** {w}");
        }
    }
    out
}

/// A CSV field, quoted when it needs to be.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// CSV: one row per run (failed runs carry only their method and error).
#[must_use]
pub fn csv(runs: &[RunReport], failed: &[Failed]) -> String {
    let mut keys: Vec<&str> = runs
        .iter()
        .flat_map(|r| r.figures.keys().copied())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut header = vec![
        "method".to_owned(),
        "kind".into(),
        "bytes".into(),
        "block_size".into(),
        "transfers".into(),
        "elapsed_ns".into(),
    ];
    // Repeated runs: the value is the median, and its min and max follow it.
    let repeated = runs.iter().any(|r| r.repeat.is_some_and(|p| p.runs > 1));
    if repeated {
        header.push("repeat".into());
    }
    for k in &keys {
        header.push(format!("{k}_value"));
        header.push(format!("{k}_per_step"));
        if repeated {
            header.push(format!("{k}_min"));
            header.push(format!("{k}_max"));
        }
    }
    header.push("error".into());
    let mut out = header.join(",") + "\n";
    let num = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v}"));
    for r in runs {
        let mut row = vec![
            csv_field(&r.method),
            r.kind.to_owned(),
            r.bytes.to_string(),
            r.block_size.to_string(),
            r.transfers.to_string(),
            r.elapsed_ns.to_string(),
        ];
        if repeated {
            row.push(r.repeat.map_or(1, |p| p.runs).to_string());
        }
        for k in &keys {
            let f = r.figures.get(k);
            row.push(num(f.and_then(|f| f.value)));
            row.push(num(f.and_then(|f| f.per_transfer)));
            if repeated {
                let s = f.and_then(|f| f.spread.as_ref());
                row.push(num(s.map(|s| s.min)));
                row.push(num(s.map(|s| s.max)));
            }
        }
        row.push(String::new());
        out.push_str(&(row.join(",") + "\n"));
    }
    for f in failed {
        let mut row = vec![csv_field(&f.method)];
        row.extend(std::iter::repeat_n(String::new(), header.len() - 2));
        row.push(csv_field(&f.error));
        out.push_str(&(row.join(",") + "\n"));
    }
    out
}

/// JSON for `run`: the report object itself.
///
/// # Errors
/// Never in practice (serialising owned data).
pub fn json_run(r: &RunReport) -> serde_json::Result<String> {
    serde_json::to_string_pretty(r)
}

/// JSON for `compare`: `{"runs": [...], "failed": [...]}`.
///
/// # Errors
/// Never in practice.
pub fn json_compare(runs: &[RunReport], failed: &[Failed]) -> serde_json::Result<String> {
    serde_json::to_string_pretty(&serde_json::json!({ "runs": runs, "failed": failed }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::tests::{read_write_counts, report},
        workload::Method,
    };

    #[test]
    fn table_shows_measured_beside_textbook_and_sources() {
        let runs = [
            report(Method::ReadWrite, &read_write_counts(), true),
            report(Method::Sendfile, &read_write_counts(), true),
        ];
        let t = table(
            &runs,
            &[Failed {
                method: "tee".into(),
                error: "boom".into(),
            }],
        );
        assert!(t.contains("2.06 (tb 2)"), "{t}");
        assert!(t.contains("4.06 (tb 4)"), "{t}");
        assert!(t.contains("tb 1, SG-DMA 0"), "{t}");
        assert!(t.contains("failed: boom"));
        assert!(t.contains("counted in the kernel"));
        assert!(t.contains("derived from syscall semantics"));
        assert!(t.contains("DMA: device transfers in blocks per step: unavailable"));
    }

    #[test]
    fn markdown_has_a_row_per_run() {
        let runs = [report(Method::Splice, &read_write_counts(), true)];
        let md = markdown(&runs, &[]);
        assert!(md.lines().any(|l| l.starts_with("| splice |")), "{md}");
        assert!(md.contains("Notes:"));
    }

    /// A legend line that differs between rows names the rows; one that all share is said once
    /// (issue 17 item 2), and so is a note all share.
    #[test]
    fn legends_and_notes_hold_for_every_row() {
        let runs = [
            report(Method::ReadWrite, &read_write_counts(), true),
            report(Method::Splice, &crate::collect::Counts::default(), true),
        ];
        let lines = legend(&runs);
        let copies = lines
            .iter()
            .find(|l| l.starts_with("CPU copies:"))
            .expect("a CPU copies line");
        assert!(
            copies.contains("read-write: ") && copies.contains("splice: "),
            "{copies}"
        );
        let syscalls = lines.iter().find(|l| l.starts_with("syscalls:")).unwrap();
        assert!(!syscalls.contains("read-write:"), "{syscalls}");
        let switch_notes: Vec<_> = notes(&runs)
            .into_iter()
            .filter(|n| n.contains("\"context switches\""))
            .collect();
        assert_eq!(switch_notes.len(), 1, "{switch_notes:?}");
        assert!(switch_notes[0].starts_with("all: "), "{switch_notes:?}");
    }

    #[test]
    fn tiny_per_step_values_are_not_rounded_to_zero() {
        let f = |v: f64| Figure {
            value: Some(v),
            per_transfer: Some(v),
            source: String::new(),
            note: String::new(),
            estimate: None,
            spread: None,
        };
        assert_eq!(per_step(Some(&f(0.001))), "<0.01");
        assert_eq!(per_step(Some(&f(0.0))), "0.00");
        assert_eq!(per_step(Some(&f(0.012))), "0.01");
    }

    /// README's list of the JSON contract's fields is the list the binary writes.
    #[test]
    fn readme_lists_every_json_field() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("`--format json` is the stable contract")
            .expect("README has the JSON section");
        let para = &readme[start..];
        let para = &para[..para.find("The elapsed and throughput").expect("its end")];
        let documented: std::collections::BTreeSet<&str> = para
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            // The command named in passing.
            .filter(|w| *w != "compare")
            .collect();
        let r = report(Method::ReadWrite, &read_write_counts(), true);
        let v = serde_json::to_value(&r).unwrap();
        let written: std::collections::BTreeSet<&str> =
            v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(documented, written);
    }

    #[test]
    fn markdown_renders_as_a_table() {
        use pulldown_cmark::{Event, Options, Parser, Tag};
        let runs = [
            report(Method::ReadWrite, &read_write_counts(), true),
            report(Method::Splice, &read_write_counts(), true),
        ];
        let failed = [Failed {
            method: "tee".into(),
            error: "a | in the error".into(),
        }];
        let md = markdown(&runs, &failed);
        let (mut tables, mut rows, mut cells) = (0, 0, 0);
        for event in Parser::new_ext(&md, Options::ENABLE_TABLES) {
            match event {
                Event::Start(Tag::Table(_)) => tables += 1,
                Event::Start(Tag::TableRow | Tag::TableHead) => rows += 1,
                Event::Start(Tag::TableCell) => cells += 1,
                _ => {}
            }
        }
        assert_eq!(tables, 1, "{md}");
        // The header and three rows of eight cells each.
        assert_eq!((rows, cells), (4, 4 * HEADERS.len()), "{md}");
    }

    #[test]
    fn csv_has_a_header_and_a_row_per_run() {
        let runs = [report(Method::ReadWrite, &read_write_counts(), true)];
        let text = csv(
            &runs,
            &[Failed {
                method: "tee".into(),
                error: "a, b".into(),
            }],
        );
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let header: Vec<_> = lines[0].split(',').collect();
        let row: Vec<_> = lines[1].split(',').collect();
        assert_eq!(header.len(), row.len());
        let col = header.iter().position(|h| *h == "syscalls_value").unwrap();
        assert_eq!(row[col], "33");
        assert!(lines[2].starts_with("tee,") && lines[2].ends_with("\"a, b\""));
    }

    #[test]
    fn compare_json_has_runs() {
        let runs = [report(Method::Tee, &read_write_counts(), true)];
        let v: serde_json::Value =
            serde_json::from_str(&json_compare(&runs, &[]).unwrap()).unwrap();
        assert_eq!(v["runs"][0]["method"], "tee");
    }

    #[test]
    fn repeated_runs_show_medians_ranges_and_warnings_in_every_format() {
        use crate::model::repeat::fold_all;
        let mut runs = Vec::new();
        for ns in [1_000_000, 3_000_000, 2_000_000] {
            let mut counts = read_write_counts();
            counts.last_event_ns = counts.first_event_ns + ns;
            runs.push(report(Method::ReadWrite, &counts, true));
        }
        let folded = fold_all(runs, 1);
        assert_eq!(folded.len(), 1);
        let t = table(&folded, &[]);
        assert!(t.contains("2.0 ms [1.0-3.0]"), "{t}");
        assert!(t.contains("the median of 3 runs"), "{t}");
        assert!(t.contains("after 1 unmeasured warm-up run each"), "{t}");
        // Every repetition made the same syscalls: no range where they agree.
        assert!(t.contains("2.06 (tb 2)"), "{t}");
        assert!(
            t.contains(
                "Warning: elapsed_ns of read-write ranges from 1.0 ms to 3.0 ms over 3 runs"
            ),
            "{t}"
        );
        let md = markdown(&folded, &[]);
        assert!(
            md.contains("2.0 ms [1.0-3.0]") && md.contains("**Warning:**"),
            "{md}"
        );
        let csv = csv(&folded, &[]);
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let row: Vec<&str> = lines.next().unwrap().split(',').collect();
        let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
        assert_eq!(col("repeat"), "3");
        assert_eq!(col("elapsed_ns_value"), "2000000");
        assert_eq!(col("elapsed_ns_min"), "1000000");
        assert_eq!(col("elapsed_ns_max"), "3000000");
        let json: serde_json::Value =
            serde_json::from_str(&json_compare(&folded, &[]).unwrap()).unwrap();
        let e = &json["runs"][0]["figures"]["elapsed_ns"]["spread"];
        assert_eq!(e["values"].as_array().unwrap().len(), 3);
        assert_eq!(json["runs"][0]["repeat"]["runs"], 3);
    }
}
