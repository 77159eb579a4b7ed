//! `zcprof top` full-screen: ratatui over crossterm (the terminal's alternate screen and raw
//! mode, restored on every way out: q, Ctrl-C, SIGTERM through the stop flag, a panic through
//! ratatui's hook and the guard's drop). Keys: `s`/`S` (or the arrows) change the sort, `p` or
//! space pauses the view, `/` filters rows by name, `h` shows how each column is measured, `q`
//! quits.
use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use ratatui::{
    DefaultTerminal, Frame,
    crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Cell, Paragraph, Row as TableRow, Table, Wrap},
};

use super::{
    Interval, Options, Sampler, SortKey, TopError,
    plain::{
        COLUMNS, LEGEND, by_name, cell, devices_line, first_heading, id_cell, second_cell,
        sort_name, totals_line,
    },
    sample,
};

/// The terminal in full-screen mode; left as it was found when dropped (unwinding included).
struct Screen(DefaultTerminal);

impl Screen {
    /// Raw mode and the alternate screen (and ratatui's panic hook that leaves them).
    fn enter() -> std::io::Result<Screen> {
        Ok(Screen(ratatui::try_init()?))
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = self.0.show_cursor();
        ratatui::restore();
    }
}

/// What the body of the screen shows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Panel {
    Rows,
    /// How each column is measured (`h`).
    Legend,
}

/// What the keys change.
struct View {
    sort: SortKey,
    paused: bool,
    /// Rows shown only when their name holds this.
    filter: String,
    /// `/` was pressed: keys type into the filter until Enter or Esc.
    editing: bool,
    panel: Panel,
    /// The interval shown.
    shown: Option<Interval>,
}

/// Runs the screen until `opts.count` intervals, q, or `stop`.
///
/// # Errors
/// The terminal fails, or the kernel's map cannot be read.
pub fn run(sampler: &mut Sampler, opts: &Options, stop: &AtomicBool) -> Result<(), TopError> {
    let mut screen = Screen::enter()?;
    let mut view = View {
        sort: opts.sort,
        paused: false,
        filter: String::new(),
        editing: false,
        panel: Panel::Rows,
        shown: None,
    };
    let mut next = Instant::now() + opts.interval;
    let mut intervals = 0;
    while !stop.load(Ordering::SeqCst) {
        if Instant::now() >= next {
            let interval = sampler.sample(opts.by, view.sort)?;
            if !view.paused {
                view.shown = Some(interval);
            }
            intervals += 1;
            next += opts.interval;
            if opts.count.is_some_and(|n| intervals >= n) {
                break;
            }
        }
        screen.0.draw(|f| draw(f, &view, opts))?;
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        if event::poll(wait)?
            && let Event::Key(key) = event::read()?
            && key.kind == KeyEventKind::Press
            && on_key(&mut view, key)
        {
            break;
        }
    }
    Ok(())
}

/// What a key does; true when it quits.
fn on_key(view: &mut View, key: KeyEvent) -> bool {
    if view.editing {
        match key.code {
            KeyCode::Enter => view.editing = false,
            KeyCode::Esc => {
                view.editing = false;
                view.filter.clear();
            }
            KeyCode::Backspace => {
                view.filter.pop();
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                view.filter.push(c);
            }
            _ => {}
        }
        return false;
    }
    let resort = |view: &mut View, forward: bool| {
        view.sort = view.sort.step(forward);
        if let Some(shown) = &mut view.shown {
            shown.sort = view.sort;
            sample::sort(&mut shown.rows, view.sort);
        }
    };
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => return true,
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return true,
        KeyCode::Char('s') | KeyCode::Right => resort(view, true),
        KeyCode::Char('S') | KeyCode::Left => resort(view, false),
        KeyCode::Char('p' | ' ') => view.paused = !view.paused,
        KeyCode::Char('/') => {
            view.editing = true;
            view.filter.clear();
        }
        KeyCode::Char('h' | '?') => {
            view.panel = match view.panel {
                Panel::Rows => Panel::Legend,
                Panel::Legend => Panel::Rows,
            };
        }
        _ => {}
    }
    false
}

fn draw(f: &mut Frame, view: &View, opts: &Options) {
    let width = usize::from(f.area().width.max(20));
    let title = format!(
        "zcprof top  by {}  sorted by {}  every {:.1} s  counting {}{}",
        by_name(opts.by),
        sort_name(view.sort),
        opts.interval.as_secs_f64(),
        opts.what,
        if view.paused { "  [paused]" } else { "" }
    );
    let (totals, devices) = view.shown.as_ref().map_or_else(
        || ("waiting for the first interval".to_owned(), String::new()),
        |i| (totals_line(i), devices_line(&i.devices)),
    );
    // The heading wraps at the screen's width, between words, rather than run off its edge.
    let mut heading = vec![Line::styled(
        title,
        Style::new().add_modifier(Modifier::BOLD),
    )];
    for text in [totals, devices] {
        heading.extend(
            textwrap::wrap(&text, width)
                .into_iter()
                .map(|l| Line::raw(l.into_owned())),
        );
    }
    let height = u16::try_from(heading.len()).unwrap_or(u16::MAX);
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(height),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(Paragraph::new(heading).wrap(Wrap { trim: true }), head);
    if view.panel == Panel::Legend {
        let lines: Vec<Line> = LEGEND.iter().map(|l| Line::raw(*l)).collect();
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), body);
    } else if let Some(i) = &view.shown {
        f.render_widget(table(i, view, opts), body);
    }
    let keys = if view.editing {
        format!("filter: {}_  (Enter: keep, Esc: clear)", view.filter)
    } else if view.filter.is_empty() {
        "q quit  s/S sort  p pause  / filter  h how measured  (bytes/s)".to_owned()
    } else {
        format!(
            "q quit  s/S sort  p pause  / filter [{}]  h how measured",
            view.filter
        )
    };
    f.render_widget(
        Paragraph::new(keys).style(Style::new().add_modifier(Modifier::REVERSED)),
        foot,
    );
}

/// The rows that pass the filter, as a table; the sorted column's heading marked.
fn table<'a>(i: &'a Interval, view: &View, opts: &Options) -> Table<'a> {
    let (first, second) = first_heading(i);
    let mut heading = vec![Cell::from(first), Cell::from(second)];
    for c in COLUMNS {
        let style = if c.key == view.sort {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
        };
        heading.push(Cell::from(Line::from(c.heading).right_aligned()).style(style));
    }
    let rows = i
        .rows
        .iter()
        .filter(|r| {
            view.filter.is_empty()
                || r.command.contains(&view.filter)
                || r.cgroup
                    .as_deref()
                    .is_some_and(|c| c.contains(&view.filter))
        })
        .take(opts.rows.unwrap_or(usize::MAX))
        .map(|r| {
            let mut cells = vec![
                Cell::from(Line::from(id_cell(r)).right_aligned()),
                Cell::from(second_cell(i, r)),
            ];
            for c in &COLUMNS {
                cells.push(Cell::from(Line::from(cell(i, c, &r.moved)).right_aligned()));
            }
            TableRow::new(cells)
        });
    let mut widths = vec![Constraint::Length(7), Constraint::Min(10)];
    widths.extend([Constraint::Length(8); COLUMNS.len()]);
    Table::new(rows, widths)
        .header(TableRow::new(heading).style(Style::new().add_modifier(Modifier::BOLD)))
}
