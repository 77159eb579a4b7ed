//! The cells of the cost table: each measured figure per transfer step beside the textbook's, in
//! a full form (sources of detail in the cell: ranges, copy paths, the sampled share) for wide
//! terminals and Markdown, and a compact form whose details go to the legend.
use std::fmt::Write as _;

use crate::{
    model::{Figure, FigureId, RunReport},
    units::format_bytes,
};

use super::row_label;

/// Which form of the table: the full one holds every detail in its cells; the compact one keeps
/// a row within two lines of a 100-column terminal and says the rest under the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Full,
    Compact,
}

pub const HEADERS: [&str; 8] = [
    "method",
    "syscalls/step",
    "mode switches/step",
    "sched switches/step",
    "CPU copies/step",
    "DMA/step",
    "elapsed",
    "throughput",
];

/// The compact form's headers: every word short enough for an 80-column terminal.
pub const COMPACT_HEADERS: [&str; 8] = [
    "method",
    "syscalls",
    "mode sw.",
    "sched sw.",
    "CPU copies",
    "DMA",
    "elapsed",
    "GiB/s",
];

impl Form {
    #[must_use]
    pub fn headers(self) -> [&'static str; 8] {
        match self {
            Form::Full => HEADERS,
            Form::Compact => COMPACT_HEADERS,
        }
    }
}

/// One cell, and whether its measured figure disagrees with the textbook's (highlighted where
/// the terminal shows colour).
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    pub text: String,
    pub differs: bool,
}

impl Cell {
    fn plain(text: String) -> Cell {
        Cell {
            text,
            differs: false,
        }
    }
}

fn tb(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v}"))
}

/// A figure per step with two decimals, and in the full form its `[min-max]` over repetitions.
pub fn per_step(f: Option<&Figure>) -> String {
    per_step_in(f, Form::Full)
}

fn per_step_in(f: Option<&Figure>, form: Form) -> String {
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
            ranged(form, spread.as_ref().and_then(|s| s.per_transfer), |x| {
                format!("{x:.2}")
            })
        ),
        Some(Figure { value: None, .. }) | None => "n/a".to_owned(),
        Some(Figure { value: Some(v), .. }) => format!("{v}"),
    }
}

/// The range of the full form; the compact form says it in the legend (see `ranges`).
fn ranged(form: Form, spread: Option<[f64; 3]>, show: impl Fn(f64) -> String) -> String {
    match form {
        Form::Full => range(spread, show),
        Form::Compact => String::new(),
    }
}

/// A repeated figure's range, ` [min-max]`, from its `[median, min, max]`; nothing when the
/// figure was not repeated or every repetition agreed to the digits shown.
pub fn range(spread: Option<[f64; 3]>, show: impl Fn(f64) -> String) -> String {
    match spread {
        Some([_, lo, hi]) if show(lo) != show(hi) => format!(" [{}-{}]", show(lo), show(hi)),
        _ => String::new(),
    }
}

/// The `[median, min, max]` of a repeated figure's total value.
pub fn value_spread(f: Option<&Figure>) -> Option<[f64; 3]> {
    f.and_then(|f| f.spread.as_ref())
        .map(|s| [s.median, s.min, s.max])
}

/// Bytes as whole-block equivalents (what the textbook counts as "copies").
#[expect(clippy::cast_precision_loss, reason = "display")]
pub fn in_blocks(bytes: f64, block_size: u64) -> String {
    format!("{:.2}", bytes / block_size.max(1) as f64)
}

/// Bytes per step in blocks; the full form adds the range and the bytes.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "display"
)]
fn blocks(f: Option<&Figure>, block_size: u64, form: Form) -> String {
    let show = |b: f64| in_blocks(b, block_size);
    f.and_then(|f| f.per_transfer).map_or_else(
        || "n/a".to_owned(),
        |b| match form {
            Form::Full => format!(
                "{}{} ({}/step)",
                show(b),
                range(
                    f.and_then(|f| f.spread.as_ref())
                        .and_then(|s| s.per_transfer),
                    show
                ),
                format_bytes(b.round() as u64)
            ),
            Form::Compact => show(b),
        },
    )
}

/// Device transfers per step, split into the disk's and the NIC's where both moved data (the
/// note's two DMA copies, each with its own source in the legend).
fn dma(r: &RunReport, form: Form) -> String {
    let fig = |k: FigureId| r.figures.get(&k);
    let all = blocks(fig(FigureId::DmaBytes), r.block_size, form);
    let part = |k: FigureId| fig(k).and_then(|f| f.per_transfer).filter(|v| *v > 0.0);
    match (
        form,
        part(FigureId::DiskReadBytes),
        part(FigureId::NicDmaBytes),
    ) {
        (Form::Full, Some(disk), Some(nic)) => format!(
            "{all}: disk {} + NIC {}",
            in_blocks(disk, r.block_size),
            in_blocks(nic, r.block_size)
        ),
        _ => all,
    }
}

/// The measured figure lies away from every figure the textbook gives for the row (it counts
/// whole events per step, so a few extra calls over a run, as the final `exit_group`, agree).
#[must_use]
pub fn disagrees(measured: Option<f64>, textbook: &[Option<f64>]) -> bool {
    let given: Vec<f64> = textbook.iter().flatten().copied().collect();
    match measured {
        Some(m) if !given.is_empty() => given.iter().all(|t| (m - t).abs() > 0.1 + 0.1 * t),
        _ => false,
    }
}

/// The sampled share of kernel time in copy routines, with its 95 % interval and samples; too
/// few samples, and no number is shown.
pub fn copy_share(r: &RunReport) -> Option<String> {
    let f = r.figures.get(&FigureId::CopyCpuShare)?;
    let share = f.value?;
    Some(match f.estimate {
        Some(e) if e.samples < crate::model::MIN_SAMPLES => {
            format!("copy share: too few samples (n={})", e.samples)
        }
        Some(e) => format!(
            "{:.0}% of kernel time ({:.0}-{:.0}%, n={})",
            share * 100.0,
            e.low * 100.0,
            e.high * 100.0,
            e.samples
        ),
        None => format!("{:.0}% of kernel time", share * 100.0),
    })
}

/// A measured value beside the textbook's: `2.06 (tb 2)` in full, `2.06 (2)` compact (the
/// legend says what the parentheses hold), the measured value alone where the note is silent.
fn beside(measured: String, textbook: &str, form: Form) -> String {
    match form {
        Form::Full => format!("{measured} (tb {textbook})"),
        Form::Compact if textbook == "-" => measured,
        Form::Compact => format!("{measured} ({textbook})"),
    }
}

/// The cells of one row.
#[must_use]
pub fn cells(r: &RunReport, form: Form) -> [Cell; 8] {
    let fig = |k: FigureId| r.figures.get(&k);
    let t = &r.textbook;
    let ms = |ns: f64| format!("{:.1}", ns / 1e6);
    let gib = |b: f64| format!("{:.2}", b / f64::from(1u32 << 30));
    [
        Cell::plain(row_label(r)),
        per_step_cell(r, FigureId::Syscalls, t.syscalls, form),
        per_step_cell(r, FigureId::ModeSwitches, t.mode_switches, form),
        Cell::plain(switches(r, form)),
        copies_cell(r, form),
        Cell {
            text: beside(dma(r, form), &tb(t.dma_copies), form),
            differs: disagrees(blocks_of(r, FigureId::DmaBytes), &[t.dma_copies]),
        },
        Cell::plain(fig(FigureId::ElapsedNs).and_then(|f| f.value).map_or_else(
            || "n/a".to_owned(),
            |ns| {
                format!(
                    "{} ms{}",
                    ms(ns),
                    ranged(form, value_spread(fig(FigureId::ElapsedNs)), ms)
                )
            },
        )),
        Cell::plain(
            fig(FigureId::ThroughputBytesPerSec)
                .and_then(|f| f.value)
                .map_or_else(
                    || "n/a".to_owned(),
                    |b| match form {
                        Form::Full => format!(
                            "{} GiB/s{}",
                            gib(b),
                            range(value_spread(fig(FigureId::ThroughputBytesPerSec)), gib)
                        ),
                        Form::Compact => gib(b),
                    },
                ),
        ),
    ]
}

/// A figure per step beside the textbook's, marked where they disagree.
fn per_step_cell(r: &RunReport, id: FigureId, textbook: Option<f64>, form: Form) -> Cell {
    let f = r.figures.get(&id);
    Cell {
        text: beside(per_step_in(f, form), &tb(textbook), form),
        differs: disagrees(f.and_then(|f| f.per_transfer), &[textbook]),
    }
}

/// A byte figure per step, in blocks.
#[expect(clippy::cast_precision_loss, reason = "display")]
fn blocks_of(r: &RunReport, id: FigureId) -> Option<f64> {
    r.figures
        .get(&id)
        .and_then(|f| f.per_transfer)
        .map(|b| b / r.block_size.max(1) as f64)
}

/// Scheduler switches per step, with their voluntary and involuntary parts.
fn switches(r: &RunReport, form: Form) -> String {
    let fig = |k: FigureId| r.figures.get(&k);
    let (all, voluntary, involuntary) = (
        fig(FigureId::ContextSwitches),
        fig(FigureId::ContextSwitchesVoluntary),
        fig(FigureId::ContextSwitchesInvoluntary),
    );
    match form {
        Form::Full => format!(
            "{} ({} vol, {} invol)",
            per_step(all),
            per_step(voluntary),
            per_step(involuntary)
        ),
        Form::Compact => format!(
            "{} ({} + {})",
            per_step_in(all, form),
            per_step_in(voluntary, form),
            per_step_in(involuntary, form)
        ),
    }
}

/// CPU copies in blocks per step, the paths that contributed (the copy ledger), and where
/// sampling ran, the share of kernel time spent copying; beside the textbook's, with and without
/// scatter-gather DMA.
fn copies_cell(r: &RunReport, form: Form) -> Cell {
    let t = &r.textbook;
    let mut copies = blocks(r.figures.get(&FigureId::CpuCopyBytes), r.block_size, form);
    if form == Form::Full {
        let paths = crate::model::ledger::short_paths(&r.copies);
        if !paths.is_empty() {
            let _ = write!(copies, " [{paths}]");
        }
        if let Some(share) = copy_share(r) {
            let _ = write!(copies, ", {share}");
        }
    }
    let copies_tb = match (t.cpu_copies, t.cpu_copies_with_sg_dma, form) {
        (Some(c), Some(sg), Form::Full) => format!("{c}, SG-DMA {sg}"),
        (Some(c), Some(sg), Form::Compact) => format!("{c}; SG {sg}"),
        (c, _, _) => tb(c),
    };
    Cell {
        text: beside(copies, &copies_tb, form),
        differs: disagrees(
            blocks_of(r, FigureId::CpuCopyBytes),
            &[t.cpu_copies, t.cpu_copies_with_sg_dma],
        ),
    }
}

/// The texts of a row's cells.
#[must_use]
pub fn texts(r: &RunReport, form: Form) -> [String; 8] {
    cells(r, form).map(|c| c.text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::tests::{read_write_counts, report},
        workload::Method,
    };

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

    #[test]
    fn disagreement_is_away_from_every_textbook_figure() {
        assert!(!disagrees(Some(2.06), &[Some(2.0)]));
        assert!(disagrees(Some(0.0), &[Some(1.0)]));
        // sendfile's row gives 1, and 0 with SG-DMA: either agrees.
        assert!(!disagrees(Some(0.0), &[Some(1.0), Some(0.0)]));
        assert!(!disagrees(Some(5.0), &[None]));
        assert!(!disagrees(None, &[Some(1.0)]));
    }

    #[test]
    fn compact_cells_keep_the_figures_and_drop_the_details() {
        let r = report(Method::ReadWrite, &read_write_counts(), true);
        let full = texts(&r, Form::Full);
        let compact = cells(&r, Form::Compact);
        assert_eq!(full[1], "2.06 (tb 2)");
        assert_eq!(compact[1].text, "2.06 (2)");
        assert!(full[4].contains("[pc→user, user→kernel]"), "{}", full[4]);
        assert_eq!(compact[4].text, "2.00 (2)");
        assert!(!compact[4].differs);
        let sendfile = report(Method::Sendfile, &read_write_counts(), true);
        let c = cells(&sendfile, Form::Compact);
        assert!(c[4].text.ends_with("(1; SG 0)"), "{}", c[4].text);
        // 2 copies measured where the textbook says 1, or 0 with SG-DMA.
        assert!(c[4].differs);
        // splice: the textbook gives no syscall figure, so nothing stands beside it.
        let splice = report(Method::Splice, &read_write_counts(), true);
        assert_eq!(texts(&splice, Form::Compact)[1], "2.06");
    }
}
