//! The short form under the table, the default: what a reader came for in a few lines, as perf
//! stat and hyperfine print it. Warnings first, marked; then one line per departure from the
//! textbook, naming its rows and, where a note explains it, why; the syscalls and processes that
//! matter, the rest counted; and the flag that shows every source and note (`--explain`).
use super::{
    cells::{Cell, Form, cells},
    legend::{SPREAD_CHECKED, notes},
    row_label,
    table::{Layout, wrap},
};
use crate::{
    model::{FigureId, RunReport},
    units::format_bytes,
};

/// The columns a departure can be in: the ones with a textbook figure beside them, by the
/// index of their cell.
const COLUMNS: [(usize, FigureId, &str); 4] = [
    (1, FigureId::Syscalls, "syscalls"),
    (2, FigureId::ModeSwitches, "mode switches"),
    (4, FigureId::CpuCopyBytes, "CPU copies"),
    (5, FigureId::DmaBytes, "DMA transfers"),
];

/// Syscall and process rows shown in the short form; the rest are counted.
const TOP_ROWS: usize = 3;

/// Everything under the table in the short form.
pub(super) fn under_table(runs: &[RunReport], form: Form, layout: &Layout) -> String {
    let mut out = String::new();
    let Some(first) = runs.first() else {
        return out;
    };
    let warning = if layout.colour {
        "\x1b[1;33mWarning:\x1b[0m "
    } else {
        "Warning: "
    };
    for w in warnings(runs) {
        out.push_str(&wrap(&w, layout, warning, "  "));
    }
    out.push_str(&wrap(&super::table::about(first), layout, "", "  "));
    out.push_str(&wrap(&step(runs, form), layout, "", "  "));
    for d in departures(runs) {
        out.push_str(&wrap(&d, layout, "", "  "));
    }
    if let [only] = runs {
        out.push_str(&wrap(&top_syscalls(only), layout, "", "  "));
        if let Some(p) = top_processes(only) {
            out.push_str(&wrap(&p, layout, "", "  "));
        }
    }
    if let Some(t) = trace(runs) {
        out.push_str(&wrap(&t, layout, "", "  "));
    }
    out.push_str(&wrap(
        &format!(
            "--explain: how each figure was measured, and {} notes",
            notes(runs).len()
        ),
        layout,
        "",
        "  ",
    ));
    out
}

/// What a step is, and what stands beside a figure.
fn step(runs: &[RunReport], form: Form) -> String {
    let r = &runs[0];
    if r.kind == "program" {
        return format!(
            "step: 1 MiB of payload (the program moved {}; figures are per MiB of it); the \
             textbook has no row for a program",
            format_bytes(r.bytes)
        );
    }
    format!(
        "step: one --block-size {} transfer ({} for {}); {}: the note's figure, highlighted \
         where the measurement departs from it",
        format_bytes(r.block_size),
        r.transfers,
        format_bytes(r.bytes),
        match form {
            Form::Full => "tb n",
            Form::Compact => "(n)",
        }
    )
}

/// Texts that may hold for several rows, each said once with the rows it holds for.
struct Grouped(Vec<(Vec<String>, String)>);

impl Grouped {
    fn add(&mut self, row: String, text: String) {
        match self.0.iter_mut().find(|(_, t)| *t == text) {
            Some((rows, _)) => {
                if !rows.contains(&row) {
                    rows.push(row);
                }
            }
            None => self.0.push((vec![row], text)),
        }
    }

    fn lines(self, all: usize) -> Vec<String> {
        self.0
            .into_iter()
            .map(|(rows, text)| {
                if rows.len() == all && all > 1 {
                    format!("all: {text}")
                } else {
                    format!("{}: {text}", rows.join(", "))
                }
            })
            .collect()
    }
}

/// What the reader must not miss: figures too noisy to rank, copies contradicted or unverified,
/// events lost, the kernel skipping programs enough to move a figure, probes that saw nothing.
fn warnings(runs: &[RunReport]) -> Vec<String> {
    let mut grouped = Grouped(Vec::new());
    for r in runs {
        for text in run_warnings(r) {
            grouped.add(row_label(r), text);
        }
    }
    let mut out = spreads(runs);
    out.extend(grouped.lines(runs.len()));
    out
}

/// The table's figures whose repetitions lie too far apart to rank rows on: one line per row.
fn spreads(runs: &[RunReport]) -> Vec<String> {
    use crate::model::repeat::{WIDE_SPREAD, wide};
    let mut by_row: Vec<(&RunReport, Vec<String>, usize)> = Vec::new();
    for (r, figure, s) in wide(runs, &SPREAD_CHECKED) {
        let part = format!("{} {:.0}%", column_name(figure), s.relative() * 100.0);
        match by_row.iter_mut().find(|(row, _, _)| std::ptr::eq(*row, r)) {
            Some((_, parts, _)) => parts.push(part),
            None => by_row.push((r, vec![part], s.values.len())),
        }
    }
    by_row
        .into_iter()
        .map(|(r, parts, n)| {
            format!(
                "{}: {} apart over {n} runs (more than {:.0}% of the median): too wide to rank \
                 on; more --repeat, --warmup or a quieter machine",
                row_label(r),
                parts.join(", "),
                WIDE_SPREAD * 100.0
            )
        })
        .collect()
}

/// A figure by its column's name.
fn column_name(figure: FigureId) -> &'static str {
    match figure {
        FigureId::Syscalls => "syscalls",
        FigureId::ModeSwitches => "mode switches",
        FigureId::ContextSwitches => "sched switches",
        FigureId::CpuCopyBytes => "CPU copies",
        FigureId::DmaBytes => "DMA",
        FigureId::ElapsedNs => "elapsed",
        FigureId::ThroughputBytesPerSec => "throughput",
        other => other.name(),
    }
}

/// One run's warnings, without its name.
#[expect(clippy::cast_precision_loss, reason = "display precision")]
fn run_warnings(r: &RunReport) -> Vec<String> {
    let mut out = Vec::new();
    if r.figures
        .get(&FigureId::Syscalls)
        .and_then(|f| f.value)
        .is_some_and(|v| v == 0.0)
    {
        out.push("no syscall of the process was seen: the probes did not fire".to_owned());
    }
    let paths = |keep: fn(&crate::model::CopyPath) -> bool| {
        r.copies
            .iter()
            .filter(|p| keep(p))
            .map(|p| p.path.to_string())
            .collect::<Vec<_>>()
    };
    let contradicted = paths(|p| p.contradicted);
    if !contradicted.is_empty() {
        out.push(format!(
            "{} contradicted by sampling: left out of CPU copies (✗)",
            contradicted.join(" and ")
        ));
    }
    let unverified = paths(|p| !p.contradicted && p.evidence == "unverified");
    if !unverified.is_empty() {
        out.push(format!(
            "{} unverified: too few bytes for sampling to confirm, counted (?)",
            unverified.join(" and ")
        ));
    }
    if let Some(t) = r.trace.as_ref().filter(|t| t.lost > 0) {
        out.push(format!(
            "the event trace lost {} events: its counts are incomplete",
            t.lost
        ));
    }
    let a = &r.accounting;
    let missing =
        a.in_flight_lost + a.processes_lost + a.follow_lost + a.devices_lost + a.sockets_lost;
    if missing > 0 {
        out.push(format!(
            "in-kernel tables were full: {missing} events are missing from the figures"
        ));
    }
    // A skipped run moves a per-step figure by 1/transfers; below its rounding it moves none.
    let skipped: u64 = a.programs_skipped.values().sum();
    let moved = skipped as f64 / r.transfers.max(1) as f64;
    if moved >= 0.005 {
        out.push(format!(
            "the kernel skipped {skipped} runs of zcprof's programs: figures per step may be off \
             by up to {moved:.2}"
        ));
    }
    out
}

/// One line per departure from the textbook: the column, the rows and their figures, the
/// note's, and why where a note says.
fn departures(runs: &[RunReport]) -> Vec<String> {
    let mut grouped: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for r in runs {
        let row: Vec<Cell> = cells(r, Form::Compact).to_vec();
        for (index, figure, name) in COLUMNS {
            if !row[index].differs {
                continue;
            }
            let why: Vec<&str> = r
                .findings
                .iter()
                .filter(|f| f.figure == figure)
                .map(|f| f.why.as_str())
                .collect();
            let key = format!(
                "{name} per step where the note says {}{}",
                textbook(r, figure),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", why.join("; "))
                }
            );
            let value = per_step(r, figure);
            match grouped.iter_mut().find(|(k, _, _)| *k == key) {
                Some((_, rows, values)) => {
                    rows.push(row_label(r));
                    if !values.contains(&value) {
                        values.push(value);
                    }
                }
                None => grouped.push((key, vec![row_label(r)], vec![value])),
            }
        }
    }
    grouped
        .into_iter()
        .map(|(key, rows, values)| format!("{}: {} {key}", rows.join(", "), values.join(", ")))
        .collect()
}

/// A figure per step as the compact table shows it: blocks for copies and DMA.
#[expect(clippy::cast_precision_loss, reason = "display precision")]
fn per_step(r: &RunReport, figure: FigureId) -> String {
    let per = r.figures.get(&figure).and_then(|f| f.per_transfer);
    match (figure, per) {
        (_, None) => "n/a".to_owned(),
        (FigureId::CpuCopyBytes | FigureId::DmaBytes, Some(b)) => {
            format!("{:.2}", b / r.block_size.max(1) as f64)
        }
        (_, Some(v)) => format!("{v:.2}"),
    }
}

/// The textbook's figure for a column.
fn textbook(r: &RunReport, figure: FigureId) -> String {
    let t = &r.textbook;
    let value = match figure {
        FigureId::Syscalls => t.syscalls,
        FigureId::ModeSwitches => t.mode_switches,
        FigureId::DmaBytes => t.dma_copies,
        _ => t.cpu_copies,
    };
    let plain = value.map_or_else(|| "-".to_owned(), |v| format!("{v}"));
    match (figure, t.cpu_copies_with_sg_dma) {
        (FigureId::CpuCopyBytes, Some(sg)) => format!("{plain} ({sg} with SG-DMA)"),
        _ => plain,
    }
}

/// The syscalls that matter: the most frequent, with their time; the rest counted.
fn top_syscalls(r: &RunReport) -> String {
    let shown: Vec<String> = r
        .syscalls
        .iter()
        .take(TOP_ROWS)
        .map(|s| {
            // The same time cell as --explain's table: an estimate keeps its ≈ and interval.
            let time = super::table::time_cell(s);
            if s.total_ns == 0 || time == "-" {
                format!("{} {}", s.name, s.count)
            } else {
                format!("{} {} ({time})", s.name, s.count)
            }
        })
        .collect();
    let more = r.syscalls.len().saturating_sub(TOP_ROWS);
    format!(
        "syscalls (calls, time in kernel): {}{}",
        shown.join(", "),
        if more > 0 {
            format!("; {more} more with --explain")
        } else {
            String::new()
        }
    )
}

/// The busiest processes of a followed tree; the rest counted.
fn top_processes(r: &RunReport) -> Option<String> {
    if r.processes.len() < 2 {
        return None;
    }
    let shown: Vec<String> = r
        .processes
        .iter()
        .take(TOP_ROWS)
        .map(|p| format!("{} ({}) {}", p.name, p.pid, p.syscalls))
        .collect();
    let more = r.processes.len().saturating_sub(TOP_ROWS);
    Some(format!(
        "processes (syscalls): {}{}",
        shown.join(", "),
        if more > 0 {
            format!("; {more} more with --explain")
        } else {
            String::new()
        }
    ))
}

/// The event traces of the runs, summed.
fn trace(runs: &[RunReport]) -> Option<String> {
    let traces: Vec<_> = runs.iter().filter_map(|r| r.trace.as_ref()).collect();
    if traces.is_empty() {
        return None;
    }
    let events: u64 = traces.iter().map(|t| t.events).sum();
    let lost: u64 = traces.iter().map(|t| t.lost).sum();
    let over: u64 = traces.iter().map(|t| t.over_limit).sum();
    Some(format!(
        "trace: {events} events recorded, {}{}",
        if lost == 0 {
            "none lost".to_owned()
        } else {
            format!("{lost} lost")
        },
        if over > 0 {
            format!("; {over} past --trace-limit not kept")
        } else {
            String::new()
        }
    ))
}
