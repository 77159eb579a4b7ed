//! What is said under the table: the legend (what each column counts and how it was obtained,
//! and in the compact form the details its cells leave out), the notes, and the warnings about
//! repetitions too far apart to rank methods on.
use std::fmt::Write as _;

use super::{
    cells::{Form, copy_share, in_blocks, range, value_spread},
    row_label,
};
use crate::{
    model::{FigureId, RunReport},
    units::format_bytes,
};

/// The rows' texts, each with the labels of the rows that have it, in the rows' order.
fn grouped(runs: &[RunReport], text: impl Fn(&RunReport) -> String) -> Vec<(Vec<String>, String)> {
    let mut groups: Vec<(Vec<String>, String)> = Vec::new();
    for r in runs {
        let t = text(r);
        match groups.iter_mut().find(|(_, g)| *g == t) {
            Some((rows, _)) => rows.push(row_label(r)),
            None => groups.push((vec![row_label(r)], t)),
        }
    }
    groups
}

/// A text that may differ between rows: said once when every row has it, else per row, each
/// prefixed by the rows it describes (a legend line must hold for every row).
fn per_row(runs: &[RunReport], text: impl Fn(&RunReport) -> String) -> String {
    let groups = grouped(runs, text);
    if let [(_, only)] = groups.as_slice() {
        return only.clone();
    }
    groups
        .into_iter()
        .map(|(rows, t)| format!("{}: {t}", rows.join(", ")))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A text that may differ between rows, as a short list under its legend line: one item per
/// group of rows that share it (none when every row has the same, which the caller says once).
fn per_row_list(runs: &[RunReport], text: impl Fn(&RunReport) -> String) -> Vec<String> {
    let groups = grouped(runs, text);
    if groups.len() < 2 {
        return Vec::new();
    }
    groups
        .into_iter()
        .map(|(rows, t)| format!("  {}: {t}", rows.join(", ")))
        .collect()
}

/// The copy ledger's sources: each path's, once, over every row (a row without a path names
/// the hooks it watched).
fn ledger_sources(runs: &[RunReport]) -> String {
    let mut sources: Vec<String> = Vec::new();
    for r in runs {
        let parts: Vec<String> = if r.copies.is_empty() {
            r.figures
                .get(&FigureId::CpuCopyBytes)
                .map(|f| {
                    let hooks = f
                        .source
                        .strip_prefix("copy ledger, by path: ")
                        .unwrap_or(&f.source);
                    format!("nothing copied where these watched: {hooks}")
                })
                .into_iter()
                .collect()
        } else {
            r.copies
                .iter()
                .map(|p| format!("{}: {}", p.path, p.source))
                .collect()
        };
        for p in parts {
            if !sources.contains(&p) {
                sources.push(p);
            }
        }
    }
    sources.join("; ")
}

/// The column legend: what each column counts and how it was obtained (from the first report;
/// one invocation uses one hook plan). An entry whose details differ between rows is said once,
/// with the differences as a short list under it (items indented by two spaces).
#[must_use]
pub fn legend(runs: &[RunReport], form: Form) -> Vec<String> {
    let Some(r) = runs.first() else {
        return Vec::new();
    };
    let src = |k: FigureId| {
        r.figures
            .get(&k)
            .map_or_else(String::new, |f| f.source.clone())
    };
    // A measured DMA figure names its hooks; an unavailable one says why.
    let dma_of = |r: &RunReport| {
        r.figures
            .get(&FigureId::DmaBytes)
            .map_or_else(String::new, |f| {
                if f.value.is_some() {
                    format!("{}; {}", f.source, f.note)
                } else {
                    format!("unavailable: {}", f.note)
                }
            })
    };
    let compact = form == Form::Compact;
    let mut lines = vec![
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
        textbook_line(runs, compact),
        repetitions(runs),
        format!("syscalls: {}", src(FigureId::Syscalls)),
        format!(
            "mode switches{}: user->kernel entries plus kernel->user returns, {}",
            if compact { " (mode sw.)" } else { "" },
            src(FigureId::ModeSwitches)
        ),
        format!(
            "sched switches{}: the scheduler switching the measured process off its CPU, {}",
            if compact {
                " (sched sw.: total (voluntary + involuntary))"
            } else {
                ""
            },
            src(FigureId::ContextSwitches)
        ),
        format!(
            "CPU copies: every copy of payload the CPU made for the measured process, kernel-internal \
             ones included, in blocks per step, with the paths {} (pc: page cache, sock: \
             socket buffer, pkt: linear packet data, map: a mapping of the page cache; ✗: derived from \
             syscall semantics, contradicted by sampling and left out of the sum; ?: derived, \
             unverified: too few bytes to expect a sample, counted); copy ledger, by path: {}. \
             Share of the measured process's kernel time in copy routines: {}",
            if compact {
                "listed below"
            } else {
                "in brackets"
            },
            ledger_sources(runs),
            src(FigureId::CopyCpuShare)
        ),
    ];
    if compact {
        let by_row = per_row_list(runs, copies_by_path);
        if by_row.is_empty() {
            lines.push(format!(
                "CPU copies by path, in blocks per step: {}",
                copies_by_path(r)
            ));
        } else {
            lines.push("CPU copies by path, in blocks per step:".to_owned());
            lines.extend(by_row);
        }
    }
    lines.extend(dma_lines(runs, dma_of));
    lines.push(format!(
        "elapsed, throughput{}: {}",
        if compact { " (GiB/s)" } else { "" },
        src(FigureId::ElapsedNs)
    ));
    if compact && let Some(ranges) = ranges(runs) {
        lines.push(ranges);
    }
    lines
}

/// The DMA column's legend: its source said once where every row shares it, and each row's
/// devices and bytes (`dma_of` for a row whose source differs) in the list under it.
fn dma_lines(runs: &[RunReport], dma_of: impl Fn(&RunReport) -> String) -> Vec<String> {
    let figure = |r: &RunReport| r.figures.get(&FigureId::DmaBytes).cloned();
    let first = runs.first().and_then(figure);
    let shared = first
        .as_ref()
        .filter(|f| f.value.is_some())
        .map(|f| f.source.clone())
        .filter(|source| {
            runs.iter()
                .all(|r| figure(r).is_some_and(|f| f.value.is_some() && f.source == *source))
        });
    let by_row = match &shared {
        Some(_) => per_row_list(runs, |r| figure(r).map(|f| f.note).unwrap_or_default()),
        None => per_row_list(runs, &dma_of),
    };
    if by_row.is_empty() {
        return vec![format!(
            "DMA: device transfers in blocks per step: {}",
            runs.first().map(&dma_of).unwrap_or_default()
        )];
    }
    let mut lines = vec![match shared {
        Some(source) => format!("DMA: device transfers in blocks per step, {source}; by row:"),
        None => "DMA: device transfers in blocks per step, by row:".to_owned(),
    }];
    lines.extend(by_row);
    lines
}

/// What stands beside a measured figure: the textbook's, as `tb n` or, compact, `(n)`.
fn textbook_line(runs: &[RunReport], compact: bool) -> String {
    if compact {
        format!(
            "(n) after a figure: the textbook's figure per step (shared/TEXTBOOK.md), none \
             where the note gives none{}. A figure away from the textbook's is highlighted \
             where the terminal shows colour",
            if runs
                .iter()
                .any(|r| r.textbook.cpu_copies_with_sg_dma.is_some())
            {
                "; (1; SG 0) is sendfile's row and its SG-DMA row"
            } else {
                ""
            }
        )
    } else {
        "tb: the textbook's figure per step (shared/TEXTBOOK.md); '-' where the note gives none"
            .to_owned()
    }
}

/// One row's copy ledger in words: each path's blocks per step, the bytes, the sampled share.
fn copies_by_path(r: &RunReport) -> String {
    let mut parts: Vec<String> = r
        .copies
        .iter()
        .map(|p| {
            format!(
                "{}{} {}",
                p.short,
                if p.contradicted {
                    "✗"
                } else if p.evidence == "unverified" {
                    "?"
                } else {
                    ""
                },
                p.per_transfer
                    .map_or_else(|| "n/a".to_owned(), |b| in_blocks(b, r.block_size))
            )
        })
        .collect();
    if parts.is_empty() {
        parts.push("none".to_owned());
    }
    let mut text = parts.join(", ");
    if let Some(bytes) = r
        .figures
        .get(&FigureId::CpuCopyBytes)
        .and_then(|f| f.per_transfer)
    {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "display"
        )]
        let _ = write!(text, " ({}/step)", format_bytes(bytes.round() as u64));
    }
    if let Some(share) = copy_share(r) {
        let _ = write!(text, ", {share}");
    }
    text
}

/// The compact form's ranges: each repeated figure whose runs differ, by row.
fn ranges(runs: &[RunReport]) -> Option<String> {
    let rows: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            let step = |k: FigureId| {
                r.figures
                    .get(&k)
                    .and_then(|f| f.spread.as_ref())
                    .and_then(|s| s.per_transfer)
            };
            let blocks = |b: f64| in_blocks(b, r.block_size);
            let two = |x: f64| format!("{x:.2}");
            let parts: Vec<String> = [
                ("syscalls", range(step(FigureId::Syscalls), two)),
                ("mode sw.", range(step(FigureId::ModeSwitches), two)),
                ("sched sw.", range(step(FigureId::ContextSwitches), two)),
                ("CPU copies", range(step(FigureId::CpuCopyBytes), blocks)),
                ("DMA", range(step(FigureId::DmaBytes), blocks)),
                (
                    "elapsed (ms)",
                    range(value_spread(r.figures.get(&FigureId::ElapsedNs)), |ns| {
                        format!("{:.1}", ns / 1e6)
                    }),
                ),
                (
                    "GiB/s",
                    range(
                        value_spread(r.figures.get(&FigureId::ThroughputBytesPerSec)),
                        |b| format!("{:.2}", b / f64::from(1u32 << 30)),
                    ),
                ),
            ]
            .into_iter()
            .filter(|(_, range)| !range.is_empty())
            .map(|(name, range)| format!("{name}{range}"))
            .collect();
            (!parts.is_empty()).then(|| format!("{}: {}", row_label(r), parts.join(", ")))
        })
        .collect();
    (!rows.is_empty()).then(|| {
        format!(
            "[min-max] of the repeated runs, where they differ: {}",
            rows.join("; ")
        )
    })
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
pub(super) const SPREAD_CHECKED: [FigureId; 7] = [
    FigureId::Syscalls,
    FigureId::ModeSwitches,
    FigureId::ContextSwitches,
    FigureId::CpuCopyBytes,
    FigureId::DmaBytes,
    FigureId::ElapsedNs,
    FigureId::ThroughputBytesPerSec,
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
                (FigureId::ElapsedNs, _) => (
                    format!("{:.1} ms", s.min / 1e6),
                    format!("{:.1} ms", s.max / 1e6),
                ),
                (FigureId::ThroughputBytesPerSec, _) => {
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
#[must_use]
pub fn notes(runs: &[RunReport]) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::tests::{read_write_counts, report},
        workload::Method,
    };

    /// A legend line that differs between rows names the rows; one that all share is said once
    /// (issue 17 item 2), and so is a note all share.
    #[test]
    fn legends_and_notes_hold_for_every_row() {
        let runs = [
            report(Method::ReadWrite, &read_write_counts(), true),
            report(Method::Splice, &crate::collect::Counts::default(), true),
        ];
        let lines = legend(&runs, Form::Full);
        let copies = lines
            .iter()
            .find(|l| l.starts_with("CPU copies:"))
            .expect("a CPU copies line");
        // Each path's source once, over every row; a row without a path names what watched.
        assert!(
            copies.contains("page cache -> user buffer: ")
                && copies.contains("nothing copied where these watched: "),
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

    /// What the compact cells leave out is in the compact legend: the paths and bytes of each
    /// row's copies, and the ranges of repeated runs.
    #[test]
    fn the_compact_legend_holds_the_cells_details() {
        use crate::model::repeat::fold_all;
        let mut runs = Vec::new();
        for ns in [1_000_000, 3_000_000, 2_000_000] {
            let mut counts = read_write_counts();
            counts.last_event_ns = counts.first_event_ns + ns;
            runs.push(report(Method::ReadWrite, &counts, true));
        }
        let folded = fold_all(runs, 1);
        let lines = legend(&folded, Form::Compact);
        let by_path = lines
            .iter()
            .find(|l| l.starts_with("CPU copies by path"))
            .expect("a copies-by-path line");
        assert!(
            by_path.contains("pc→user 1.00, user→kernel 1.00 (128 KiB/step)"),
            "{by_path}"
        );
        let ranges = lines
            .iter()
            .find(|l| l.starts_with("[min-max]"))
            .expect("a ranges line");
        assert!(
            ranges.contains("read-write: elapsed (ms) [1.0-3.0]"),
            "{ranges}"
        );
        assert!(
            !legend(&folded, Form::Full)
                .iter()
                .any(|l| l.starts_with("[min-max]"))
        );
    }
}
