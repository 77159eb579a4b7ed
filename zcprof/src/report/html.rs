//! The `--html` page: one self-contained file (no network needed to open it) with the cost
//! table, the data-path pictures, the legend and notes, and the provenance of every figure and
//! copy path, so a class can work from a recorded run.
use std::fmt::Write as _;

use super::{
    Failed,
    cells::{Form, HEADERS, cells},
    legend::{legend, notes, spread_warnings},
    picture, row_label,
};
use crate::{model::RunReport, units::format_bytes};

/// Text for HTML: the five characters that could open markup or end an attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;max-width:80em}\
table{border-collapse:collapse;margin:0.5em 0}\
th,td{border:1px solid #bbb;padding:0.25em 0.5em;text-align:left;vertical-align:top}\
th{background:#eee}td.differs{background:#fff3c4;font-weight:bold}\
.picture svg{max-width:100%;height:auto}.warning{color:#8a5a00}\
caption{text-align:left;font-weight:bold}";

/// The cost table, in its full form; a figure away from the textbook's is marked.
fn cost_table(runs: &[RunReport], failed: &[Failed]) -> String {
    let mut out = String::from("<table id=\"costs\">\n<tr>");
    for h in HEADERS {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr>\n");
    for r in runs {
        let _ = write!(
            out,
            "<tr class=\"run\" data-row=\"{}\">",
            escape(&row_label(r))
        );
        for c in cells(r, Form::Full) {
            let _ = write!(
                out,
                "<td{}>{}</td>",
                if c.differs {
                    " class=\"differs\" title=\"away from the textbook's figure\""
                } else {
                    ""
                },
                escape(&c.text)
            );
        }
        out.push_str("</tr>\n");
    }
    for f in failed {
        let _ = writeln!(
            out,
            "<tr class=\"failed\"><td>{}</td><td colspan=\"{}\">failed: {}</td></tr>",
            escape(&f.method),
            HEADERS.len() - 1,
            escape(&f.error)
        );
    }
    out.push_str("</table>\n");
    out
}

/// Every figure of a run with its value, per-step value, source and note, then its copy ledger
/// and the hooks it used.
fn provenance(r: &RunReport) -> String {
    let num = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}"));
    let mut out = format!(
        "<table class=\"provenance\" data-row=\"{0}\">\n<caption>{0}: every figure and how it \
         was obtained</caption>\n<tr><th>figure</th><th>value</th><th>per step</th>\
         <th>source</th><th>note</th></tr>\n",
        escape(&row_label(r))
    );
    for (name, f) in &r.figures {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name.name()),
            num(f.value),
            num(f.per_transfer),
            escape(&f.source),
            escape(&f.note)
        );
    }
    out.push_str("</table>\n");
    let _ = write!(
        out,
        "<table class=\"ledger\">\n<caption>{}: the copy ledger</caption>\n<tr><th>path</th>\
         <th>bytes</th><th>per step</th><th>evidence</th><th>source</th><th>note</th></tr>\n",
        escape(&row_label(r))
    );
    for p in r.copies.iter().chain(&r.receiver_copies) {
        let _ = writeln!(
            out,
            "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&p.path.to_string()),
            if p.contradicted {
                " (contradicted)"
            } else {
                ""
            },
            escape(&format_bytes(p.bytes)),
            num(p.per_transfer),
            p.evidence,
            escape(&p.source),
            escape(&p.note)
        );
    }
    out.push_str("</table>\n<p>Hooks: ");
    let hooks: Vec<String> = r
        .hooks
        .iter()
        .map(|(point, hook)| format!("{point}: {}", escape(hook)))
        .collect();
    out.push_str(&hooks.join("; "));
    out.push_str("</p>\n");
    out
}

/// The page of `runs`.
#[must_use]
pub fn html(runs: &[RunReport], failed: &[Failed]) -> String {
    let title = match runs {
        [only] => format!("zcprof: {}", row_label(only)),
        _ => "zcprof: compare".to_owned(),
    };
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    if let Some(first) = runs.first() {
        let _ = writeln!(
            out,
            "<p id=\"about\">kernel {}{}</p>",
            escape(&first.kernel),
            first
                .file
                .as_ref()
                .map_or_else(String::new, |f| escape(&format!(
                    "; file {} on {} (page cache {})",
                    f.path, f.filesystem, f.cache
                )))
        );
    }
    out.push_str("<h2>Costs per transfer step, beside the textbook</h2>\n");
    out.push_str(&cost_table(runs, failed));
    if !runs.is_empty() {
        out.push_str("<ul id=\"legend\">\n");
        for line in legend(runs, Form::Full) {
            let _ = writeln!(out, "<li>{}</li>", escape(&line));
        }
        out.push_str("</ul>\n<h2>The data path, measured</h2>\n<div class=\"picture\">\n");
        // The picture inline: the page needs no second file.
        out.push_str(&picture::svg(runs));
        out.push_str("\n</div>\n<h2>Notes</h2>\n<ol id=\"notes\">\n");
        for n in notes(runs) {
            let _ = writeln!(out, "<li>{}</li>", escape(&n));
        }
        out.push_str("</ol>\n");
        for w in spread_warnings(runs) {
            let _ = writeln!(out, "<p class=\"warning\">Warning: {}</p>", escape(&w));
        }
        out.push_str("<h2>Provenance</h2>\n");
        for r in runs {
            out.push_str(&provenance(r));
        }
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::tests::{read_write_counts, report},
        workload::Method,
    };

    #[test]
    fn the_page_holds_table_picture_notes_and_provenance_and_nothing_outside() {
        let runs = [
            report(Method::ReadWrite, &read_write_counts(), true),
            report(Method::Sendfile, &read_write_counts(), true),
        ];
        let page = html(
            &runs,
            &[Failed {
                method: "tee".into(),
                error: "a <b> & \"c\"".into(),
            }],
        );
        assert!(page.contains("<table id=\"costs\">"));
        assert_eq!(page.matches("<tr class=\"run\"").count(), 2);
        assert!(
            page.contains("failed: a &lt;b&gt; &amp; &quot;c&quot;"),
            "{page}"
        );
        assert_eq!(page.matches("class=\"lane\"").count(), 2);
        assert!(page.contains("<ol id=\"notes\">"));
        assert_eq!(page.matches("class=\"provenance\"").count(), 2);
        assert!(page.contains("counted in the kernel"));
        // Self-contained: nothing to fetch (the SVG namespace is a name, not a fetch).
        assert!(
            !page.contains(" src=") && !page.contains(" href="),
            "{page}"
        );
        assert!(
            !page
                .replace("http://www.w3.org/2000/svg", "")
                .contains("http")
        );
    }
}
