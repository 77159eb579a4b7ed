//! CSV: one row per run, each figure as `<name>_value` and `<name>_per_step` columns (with
//! `_min` and `_max` after them for repeated runs), for spreadsheets and plotting.
use super::Failed;
use crate::model::{FigureId, RunReport};

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
    // Sorted by name, as the JSON's keys are.
    let mut keys: Vec<FigureId> = runs
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
