//! Tests of the terminal layout: the table fits 80 to 120 columns without breaking a word, a
//! row takes at most two lines at 100 columns, and colour only where it was asked for.
use super::{Failed, Form, Layout, render, row_label};
use crate::{
    model::{
        NetPath, RunReport,
        repeat::fold_all,
        tests::{read_write_counts, report},
    },
    workload::Method,
};

/// Every method, sendfile twice over veth (the longest labels), with repeated runs whose
/// elapsed times differ (ranges) and a failed method.
pub(crate) fn many_runs() -> (Vec<RunReport>, Vec<Failed>) {
    let mut runs = Vec::new();
    for ns in [1_000_000, 3_000_000, 2_000_000] {
        for method in Method::ALL {
            let mut counts = read_write_counts();
            counts.last_event_ns = counts.first_event_ns + ns;
            runs.push(report(method, &counts, true));
        }
        for sg in [false, true] {
            let mut r = report(Method::Sendfile, &read_write_counts(), true);
            r.net = Some(NetPath {
                kind: "veth".into(),
                device: "zcp1s".into(),
                scatter_gather: Some(sg),
                receiver: "10.128.0.2:9465".into(),
            });
            runs.push(r);
        }
    }
    let failed = vec![Failed {
        method: "tee".into(),
        error: "the receiver got 12 of 1048576 bytes on stream 2".into(),
    }];
    (fold_all(runs, 1), failed)
}

/// The words of a rendering, without the table's borders.
fn words(text: &str) -> std::collections::BTreeSet<String> {
    text.split_whitespace()
        .filter(|w| !w.chars().all(|c| "│┆╞═╪╡─┼├┤╭╮╰╯┌┐└┘┬┴┄╌┈┊".contains(c)))
        .map(str::to_owned)
        .collect()
}

fn at(width: usize) -> Layout {
    Layout {
        width: Some(width),
        colour: false,
        form: None,
        explain: false,
    }
}

/// Rows of the compact table: the lines between two row separators.
pub(crate) fn row_heights(text: &str) -> Vec<usize> {
    let mut heights = Vec::new();
    let mut body = false;
    let mut n = 0;
    for line in text.lines() {
        if line.starts_with('╞') {
            body = true;
        } else if body && (line.starts_with('├') || line.starts_with('└')) {
            heights.push(n);
            n = 0;
            if line.starts_with('└') {
                break;
            }
        } else if body {
            n += 1;
        }
    }
    heights
}

#[test]
fn the_table_fits_80_to_120_columns_without_breaking_a_word() {
    let (runs, failed) = many_runs();
    for (width, explain) in [80, 90, 100, 110, 120]
        .into_iter()
        .flat_map(|w| [(w, false), (w, true)])
    {
        let text = render(&runs, &failed, &at(width).explained(explain));
        for line in text.lines() {
            assert!(
                textwrap::core::display_width(line) <= width,
                "{width} columns: {line:?} is wider\n{text}"
            );
        }
        let whole = render(
            &runs,
            &failed,
            &Layout {
                width: None,
                colour: false,
                form: Some(Form::Compact),
                explain,
            },
        );
        let unbroken = words(&whole);
        let broken: Vec<_> = words(&text).difference(&unbroken).cloned().collect();
        assert!(
            broken.is_empty(),
            "{width} columns: words broken: {broken:?}\n{text}"
        );
        assert!(
            !text.contains("syscalls/step"),
            "the compact form at {width}: {text}"
        );
    }
}

#[test]
fn a_row_takes_at_most_two_lines_at_100_columns() {
    let (runs, failed) = many_runs();
    let text = render(&runs, &failed, &at(100).explained(true));
    let heights = row_heights(&text);
    assert_eq!(heights.len(), runs.len() + failed.len(), "{text}");
    assert!(
        heights.iter().all(|h| (1..=2).contains(h)),
        "{heights:?}\n{text}"
    );
    // The labels are whole, and every row's details are under the table.
    for r in &runs {
        assert!(words(&text).contains(row_label(r).split(' ').next().unwrap()));
    }
    assert!(text.contains("CPU copies by path"), "{text}");
    assert!(text.contains("[min-max] of the repeated runs"), "{text}");
    assert!(text.contains("tee failed: the receiver got 12"), "{text}");
}

#[test]
fn a_wide_terminal_gets_the_full_form() {
    let runs = [report(Method::Splice, &read_write_counts(), true)];
    let text = render(&runs, &[], &at(400));
    assert!(text.contains("syscalls/step"), "{text}");
    assert!(text.contains("(tb "), "{text}");
    assert!(!text.contains("mode sw."), "{text}");
}

#[test]
fn colour_only_when_asked_and_on_disagreement() {
    let runs = [
        report(Method::ReadWrite, &read_write_counts(), true),
        report(Method::Sendfile, &read_write_counts(), true),
    ];
    let plain = render(&runs, &[], &at(100));
    assert!(!plain.contains('\x1b'), "{plain}");
    assert!(!super::table(&runs, &[]).contains('\x1b'));
    let coloured = render(
        &runs,
        &[],
        &Layout {
            colour: true,
            ..at(100)
        },
    );
    // sendfile's 2 copies per step where the textbook has 1 (or 0 with SG-DMA) is yellow.
    let yellow = "\x1b[38;5;11m";
    assert!(coloured.contains(yellow), "{coloured:?}");
    let agreeing = render(
        &runs[..1],
        &[],
        &Layout {
            colour: true,
            ..at(100)
        },
    );
    assert!(!agreeing.contains(yellow), "{agreeing:?}");
}

/// The note's six methods as compare runs them once each.
fn note_runs() -> Vec<RunReport> {
    Method::NOTE
        .iter()
        .map(|&m| report(m, &read_write_counts(), true))
        .collect()
}

/// Issue 22: by default one screen at 100 columns: `compare` of six methods at most 35 lines,
/// one run at most 20, with the departures from the textbook naming their rows, and every
/// source one flag away.
#[test]
fn the_short_form_fits_one_screen_at_100_columns() {
    let six = note_runs();
    let text = render(&six, &[], &at(100));
    assert!(
        text.lines().count() <= 35,
        "{} lines\n{text}",
        text.lines().count()
    );
    let one = render(&six[3..4], &[], &at(100));
    assert!(
        one.lines().count() <= 20,
        "{} lines\n{one}",
        one.lines().count()
    );
    assert!(one.contains("syscalls (calls, time in kernel): "), "{one}");
    assert!(
        text.contains("--explain: how each figure was measured"),
        "{text}"
    );
    assert!(!text.contains("Notes:"), "{text}");
    // sendfile's syscalls: 2.06 where the note says 1, and why, on the row's own line.
    assert!(
        text.lines().any(|l| l.starts_with(
            "sendfile: 2.06 syscalls per step where the note \
                                           says 1 (calls moved less than a block"
        )),
        "{text}"
    );
    let explained = render(&six, &[], &at(100).explained(true));
    assert!(explained.contains("Notes:"), "{explained}");
    assert!(explained.contains("counted in the kernel"), "{explained}");
}

/// Issue 22: no sentence is said twice, in the short form or with --explain.
#[test]
fn no_sentence_is_said_twice() {
    let (many, failed) = many_runs();
    for runs in [note_runs(), many] {
        for explain in [false, true] {
            let text = render(&runs, &failed, &at(100).explained(explain));
            // Sentences of the prose under the table, unwrapped.
            let prose: String = text
                .lines()
                .filter(|l| !l.starts_with(['│', '├', '┌', '└', '╞']))
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ");
            let mut seen = std::collections::BTreeSet::new();
            for sentence in prose.split(". ").map(str::trim).filter(|s| s.len() > 20) {
                assert!(
                    seen.insert(sentence.to_owned()),
                    "said twice (explain: {explain}): {sentence:?}\n{text}"
                );
            }
        }
    }
}
