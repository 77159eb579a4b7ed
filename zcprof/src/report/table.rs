//! The cost table for terminals: fitted to the terminal's width (compact form when the full one
//! does not fit, columns never narrower than their longest word), legend and notes wrapped at
//! word boundaries, and colour only on a terminal that shows it.
use std::{
    fmt::Write as _,
    io::{self, IsTerminal as _},
};

use comfy_table::{
    Attribute, Cell as TableCell, Color, ColumnConstraint, ContentArrangement, Table, Width,
    presets::{UTF8_FULL, UTF8_FULL_CONDENSED},
};

use super::{
    Failed,
    cells::{Cell, Form, cells},
    legend::{legend, notes, spread_warnings},
};
use crate::{
    model::{FigureId, RunReport},
    units::format_bytes,
};

/// The stream a table is printed on, whose terminal (if any) it is fitted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a table is laid out: the width it must fit (none: as wide as its content, for files and
/// pipes), whether to colour it, the form when one is forced, and whether to explain (every
/// source, the legend and the notes) or say the short form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub width: Option<usize>,
    pub colour: bool,
    pub form: Option<Form>,
    pub explain: bool,
}

/// Where nothing else sets a width (a pipe, a file), the legend and notes of `--explain` wrap
/// here instead of making one line of each.
const PIPE_WIDTH: usize = 100;

/// Terminals narrower than this are laid out as if they had it: no word is broken down to here.
const MIN_WIDTH: usize = 60;

impl Layout {
    /// For a file or a pipe: no width to fit and no colour, unless `COLUMNS` asks for a width.
    #[must_use]
    pub fn plain() -> Layout {
        Layout {
            width: columns(),
            colour: false,
            form: forced_form(),
            explain: false,
        }
    }

    /// For `stream`: its terminal's width (`COLUMNS` overrides it) and colour on a terminal,
    /// unless `NO_COLOR` is set (no-color.org) or `TERM` is `dumb`.
    #[must_use]
    pub fn terminal(stream: Stream) -> Layout {
        let (tty, size) = match stream {
            Stream::Stdout => (
                io::stdout().is_terminal(),
                terminal_size::terminal_size_of(io::stdout()),
            ),
            Stream::Stderr => (
                io::stderr().is_terminal(),
                terminal_size::terminal_size_of(io::stderr()),
            ),
        };
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        Layout {
            width: columns().or_else(|| {
                size.filter(|_| tty)
                    .map(|(terminal_size::Width(w), _)| usize::from(w))
            }),
            colour: tty && !no_color && !dumb,
            form: forced_form(),
            explain: false,
        }
    }

    /// This layout, with `--explain`'s legend and notes or the short form.
    #[must_use]
    pub fn explained(self, explain: bool) -> Layout {
        Layout { explain, ..self }
    }
}

/// `COLUMNS`, when it holds a width.
fn columns() -> Option<usize> {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|w| *w > 0)
}

/// `ZCPROF_TABLE=compact` or `full` forces a form; otherwise it follows the width.
fn forced_form() -> Option<Form> {
    match std::env::var("ZCPROF_TABLE").ok()?.as_str() {
        "compact" => Some(Form::Compact),
        "full" => Some(Form::Full),
        _ => None,
    }
}

/// The width text takes on a terminal (arrows and ✗ are one column each; colour codes none).
fn width_of(text: &str) -> usize {
    textwrap::core::display_width(text)
}

/// A table fitted to `layout`: where a width is given, every column is at least as wide as its
/// longest word, so that comfy-table wraps cells between words only.
/// `separated`: a line between rows, so that a row of two lines reads as one.
fn grid(headers: &[&str], rows: &[Vec<Cell>], layout: &Layout, separated: bool) -> Table {
    let mut t = Table::new();
    t.load_preset(if separated {
        UTF8_FULL
    } else {
        UTF8_FULL_CONDENSED
    })
    .force_no_tty();
    if layout.colour {
        t.enforce_styling();
    }
    t.set_header(headers.iter().map(|h| {
        let c = TableCell::new(h);
        if layout.colour {
            c.add_attribute(Attribute::Bold)
        } else {
            c
        }
    }));
    for row in rows {
        t.add_row(row.iter().map(|c| {
            let cell = TableCell::new(&c.text);
            if layout.colour && c.differs {
                cell.fg(Color::Yellow).add_attribute(Attribute::Bold)
            } else {
                cell
            }
        }));
    }
    match layout.width {
        None => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
        Some(w) => {
            t.set_content_arrangement(ContentArrangement::Dynamic)
                .set_width(u16::try_from(w.max(MIN_WIDTH)).unwrap_or(u16::MAX));
            let columns: Vec<Vec<&str>> = (0..headers.len())
                .map(|i| {
                    rows.iter()
                        .filter_map(|r| r.get(i))
                        .map(|c| c.text.as_str())
                        .chain(headers.get(i).copied())
                        .collect()
                })
                .collect();
            // Each column wide enough for its cells in as few lines as the width allows, at
            // worst for its longest word: comfy-table then wraps between words only.
            let border = 1 + 3 * headers.len();
            let bounds = [1, 2, 3, 4]
                .into_iter()
                .map(|lines| columns.iter().map(|c| min_width(c, lines)).collect())
                .find(|b: &Vec<usize>| border + b.iter().sum::<usize>() <= w.max(MIN_WIDTH))
                .unwrap_or_else(|| columns.iter().map(|c| min_width(c, usize::MAX)).collect());
            for (i, bound) in bounds.into_iter().enumerate() {
                if let Some(col) = t.column_mut(i) {
                    // The constraint counts the cell's padding, one space on each side.
                    col.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(
                        u16::try_from(bound + 2).unwrap_or(u16::MAX),
                    )));
                }
            }
        }
    }
    t
}

/// The narrowest width at which every one of `texts` wraps into at most `lines` lines without
/// breaking a word.
fn min_width(texts: &[&str], lines: usize) -> usize {
    let longest = texts
        .iter()
        .flat_map(|t| t.split_whitespace())
        .map(width_of)
        .max()
        .unwrap_or(0);
    let widest = texts.iter().map(|t| width_of(t)).max().unwrap_or(0);
    (longest.max(1)..widest.max(1))
        .find(|w| {
            texts.iter().all(|t| {
                let options = textwrap::Options::new(*w)
                    .break_words(false)
                    .word_splitter(textwrap::WordSplitter::NoHyphenation);
                textwrap::wrap(t, options).len() <= lines
            })
        })
        .unwrap_or(widest.max(1))
}

/// `text` as lines of at most the layout's width, broken between words only (a word longer
/// than the width stays whole); continuation lines indented by `rest`.
#[must_use]
pub fn wrap(text: &str, layout: &Layout, first: &str, rest: &str) -> String {
    match layout.width {
        None => format!("{first}{text}\n"),
        Some(w) => {
            let options = textwrap::Options::new(w.max(MIN_WIDTH))
                .initial_indent(first)
                .subsequent_indent(rest)
                .break_words(false)
                .word_splitter(textwrap::WordSplitter::NoHyphenation);
            textwrap::fill(text, options) + "\n"
        }
    }
}

/// The form for `layout`: the forced one, else the full form where it fits the width.
fn form_for(runs: &[RunReport], failed: &[Failed], layout: &Layout) -> Form {
    if let Some(form) = layout.form {
        return form;
    }
    let Some(width) = layout.width else {
        return Form::Full;
    };
    let unbounded = Layout {
        width: None,
        colour: false,
        form: Some(Form::Full),
        explain: false,
    };
    let full = cost_grid(runs, failed, Form::Full, &unbounded).to_string();
    if full.lines().map(width_of).max().unwrap_or(0) <= width {
        Form::Full
    } else {
        Form::Compact
    }
}

/// The cost rows, and the failed methods (their reasons under the compact table).
fn cost_grid(runs: &[RunReport], failed: &[Failed], form: Form, layout: &Layout) -> Table {
    let mut rows: Vec<Vec<Cell>> = runs.iter().map(|r| cells(r, form).to_vec()).collect();
    for f in failed {
        let text = match form {
            Form::Full => format!("failed: {}", f.error),
            Form::Compact => "failed (see below)".to_owned(),
        };
        rows.push(vec![
            Cell {
                text: f.method.clone(),
                differs: false,
            },
            Cell {
                text,
                differs: false,
            },
        ]);
    }
    grid(&form.headers(), &rows, layout, form == Form::Compact)
}

/// The kernel and the source file of the runs.
pub(super) fn about(first: &RunReport) -> String {
    match &first.file {
        Some(file) => format!(
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
        ),
        None => format!("kernel {}", first.kernel),
    }
}

/// The cost table of one or more runs laid out for `layout`, with the failed methods under
/// it, and the form it took (`super::render` adds the short form or `explained`).
pub(super) fn head(runs: &[RunReport], failed: &[Failed], layout: &Layout) -> (String, Form) {
    let form = form_for(runs, failed, layout);
    let mut out = format!("{}\n", cost_grid(runs, failed, form, layout));
    if form == Form::Compact {
        for f in failed {
            out.push_str(&wrap(
                &format!("{} failed: {}", f.method, f.error),
                layout,
                "",
                "  ",
            ));
        }
    }
    (out, form)
}

/// `--explain`: the legend, the notes, the warnings, the syscall and process tables and the
/// traces, after `out` (the table). In a pipe the legend and notes wrap at 100 columns.
pub(super) fn explained(
    runs: &[RunReport],
    form: Form,
    layout: &Layout,
    mut out: String,
) -> String {
    let text = Layout {
        width: layout.width.or(Some(PIPE_WIDTH)),
        ..*layout
    };
    if let Some(first) = runs.first() {
        out.push_str(&wrap(&about(first), &text, "", "  "));
        for line in legend(runs, form) {
            out.push_str(&wrap(&line, &text, "  ", "    "));
        }
        out.push_str("Notes:\n");
        for (i, n) in notes(runs).iter().enumerate() {
            let mark = format!("  [{}] ", i + 1);
            let indent = " ".repeat(mark.len());
            out.push_str(&wrap(n, &text, &mark, &indent));
        }
        let warning = if layout.colour {
            "\x1b[1;33mWarning:\x1b[0m "
        } else {
            "Warning: "
        };
        for w in spread_warnings(runs) {
            out.push_str(&wrap(w.as_str(), &text, warning, "  "));
        }
    }
    if let [only] = runs {
        out.push_str(&syscall_table(only, layout));
        if !only.processes.is_empty() {
            out.push_str(&process_table(only, layout));
        }
    }
    for r in runs {
        if let Some(t) = &r.trace {
            let line = format!(
                "Trace of {}: {} events recorded, {} lost{}",
                r.method,
                t.events,
                t.lost,
                if t.lost > 0 {
                    format!(" (per CPU: {:?}): the trace is incomplete", t.lost_per_cpu)
                } else {
                    String::new()
                }
            ) + &if t.over_limit > 0 {
                format!(
                    "; {} past --trace-limit not kept (the trace holds the first {})",
                    t.over_limit,
                    t.events - t.over_limit
                )
            } else {
                String::new()
            };
            out.push_str(&wrap(&line, layout, "", "  "));
        }
    }
    out
}

fn plain_row(texts: Vec<String>) -> Vec<Cell> {
    texts
        .into_iter()
        .map(|text| Cell {
            text,
            differs: false,
        })
        .collect()
}

/// Per-process totals of a followed process tree, with the total row the main table holds.
fn process_table(r: &RunReport, layout: &Layout) -> String {
    let copies = |n: u64| {
        // Not one copy routine could be hooked on this kernel: the bytes are unknown, not 0.
        let hooked = [
            FigureId::FilemapReadBytes,
            FigureId::CopyToIterBytes,
            FigureId::CopyFromIterBytes,
        ]
        .iter()
        .any(|k| r.figures.get(k).is_some_and(|f| f.value.is_some()));
        if hooked {
            format_bytes(n)
        } else {
            "n/a".to_owned()
        }
    };
    let mut rows = Vec::new();
    for p in &r.processes {
        rows.push(plain_row(vec![
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
        ]));
    }
    let sum = |f: fn(&crate::model::ProcessRow) -> u64| r.processes.iter().map(f).sum::<u64>();
    let (vol, invol) = (
        sum(|p| p.context_switches_voluntary),
        sum(|p| p.context_switches_involuntary),
    );
    rows.push(plain_row(vec![
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
    ]));
    let t = grid(
        &[
            "pid",
            "process",
            "syscalls",
            "sched switches (vol/invol)",
            "page faults (user/kernel)",
            "hooked copies",
            "socket sends",
        ],
        &rows,
        layout,
        false,
    );
    format!("Per process (counted in the kernel by process id):\n{t}\n")
}

/// The table of a live snapshot on stderr: the cost row only, no legend or notes.
#[must_use]
pub fn live_table(r: &RunReport) -> String {
    let layout = Layout::terminal(Stream::Stderr);
    let form = form_for(std::slice::from_ref(r), &[], &layout);
    grid(&form.headers(), &[cells(r, form).to_vec()], &layout, false).to_string()
}

/// A syscall's time in the kernel: exact, or ≈ an estimate ± the half-width of its 95 %
/// interval in percent (the larger side), or "too few timed" where the sample says nothing.
#[expect(clippy::cast_precision_loss, reason = "display")]
pub(super) fn time_cell(s: &crate::model::SyscallRow) -> String {
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
fn syscall_table(r: &RunReport, layout: &Layout) -> String {
    let rows: Vec<Vec<Cell>> = r
        .syscalls
        .iter()
        .map(|s| {
            plain_row(vec![
                s.name.clone(),
                s.count.to_string(),
                s.errors.to_string(),
                s.bytes.map_or_else(|| "-".to_owned(), format_bytes),
                time_cell(s),
            ])
        })
        .collect();
    let t = grid(
        &[
            "syscall",
            "calls",
            "errors",
            "bytes returned",
            "time in kernel",
        ],
        &rows,
        layout,
        false,
    );
    let mut out = format!(
        "Syscalls of the measured process ({}):\n{t}\n",
        r.hooks.get("sys_enter").cloned().unwrap_or_default(),
    );
    let _ = write!(
        out,
        "{}",
        wrap(
            &format!("Time in kernel: {}.", r.syscall_timing),
            layout,
            "",
            "  "
        )
    );
    out
}
