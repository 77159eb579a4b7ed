//! Rendering: the cost table for terminals, Markdown and CSV, and the JSON contract. Every cell
//! is the measured figure per transfer step with the textbook's figure beside it; the sources of
//! all figures are listed under the table.
mod cells;
mod csv;
mod html;
mod legend;
mod picture;
mod short;
mod table;

#[cfg(test)]
mod fit_tests;

use std::fmt::Write as _;

pub use cells::{Form, HEADERS};
pub use csv::csv;
pub use html::html;
pub use legend::spread_warnings;
pub use picture::svg;
pub use table::{Layout, Stream, live_table, wrap};

/// The terminal table of one or more runs, laid out for `layout`: the short form under it, or
/// with `explain` every source, the legend, the notes and the syscall table.
#[must_use]
pub fn render(runs: &[RunReport], failed: &[Failed], layout: &Layout) -> String {
    let (mut out, form) = table::head(runs, failed, layout);
    if !layout.explain {
        out.push_str(&short::under_table(runs, form, layout));
        return out;
    }
    table::explained(runs, form, layout, out)
}

use crate::model::RunReport;

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

/// The terminal table as `--explain` writes it to a file or a pipe: the full form, as wide as
/// its content, without colour, with every source and note.
#[must_use]
pub fn table(runs: &[RunReport], failed: &[Failed]) -> String {
    render(runs, failed, &Layout::default().explained(true))
}

/// The same table in Markdown, for docs and teaching material: always the full form (a
/// Markdown viewer wraps cells itself).
#[must_use]
pub fn markdown(runs: &[RunReport], failed: &[Failed]) -> String {
    // One separator cell per header: a ninth would make renderers show plain text.
    let mut out = format!(
        "| {} |\n|{}\n",
        HEADERS.join(" | "),
        "---|".repeat(HEADERS.len())
    );
    for r in runs {
        let _ = writeln!(out, "| {} |", cells::texts(r, Form::Full).join(" | "));
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
        for line in legend::legend(runs, Form::Full) {
            let _ = writeln!(out, "- {line}");
        }
        out.push_str("\nNotes:\n\n");
        for (i, n) in legend::notes(runs).iter().enumerate() {
            let _ = writeln!(out, "{}. {n}", i + 1);
        }
        for w in spread_warnings(runs) {
            let _ = writeln!(out, "\n**Warning:** {w}");
        }
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
