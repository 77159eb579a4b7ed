//! Golden files: `zcprof report` on recorded traces must print exactly what it printed when the
//! goldens were made, in every format. The traces were recorded on a 6.18 kernel (every method
//! of `compare --methods all`, a `--repeat 3` compare, a veth run with scatter-gather off, an
//! `exec` and an `attach`); the report of a trace is a pure function of it, so any byte that moves is a change
//! of behaviour: the JSON contract, the CSV columns, the tables' cells and notes, or the
//! picture's lanes.
//!
//! A deliberate change is blessed with `ZCPROF_BLESS=1 cargo test -p zcprof --test golden`, and
//! the diff of `tests/fixtures/golden` then shows what changed, for review.
use std::{path::PathBuf, process::Command};

const TRACES: [&str; 5] = ["all", "repeat", "veth", "exec", "attach"];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

/// Calls of `report`: the tests run in parallel in one process, each call has a directory of its
/// own.
static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// What `zcprof report TRACE --format FORMAT` prints (with `--explain` where `format` ends in
/// it), and with `svg` what it draws.
fn report(trace: &str, format: &str, svg: bool) -> Vec<u8> {
    let (format, explain) = match format.strip_suffix(" --explain") {
        Some(f) => (f, true),
        None => (format, false),
    };
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("golden-{trace}-{}-{call}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let picture = out_dir.join("picture.svg");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zcprof"));
    // The table's width is the terminal's: in a pipe, and without COLUMNS, a fixed one.
    cmd.env_remove("COLUMNS")
        .arg("report")
        .arg(dir().join(format!("{trace}.trace.json")))
        .args(["--format", format]);
    if svg {
        cmd.arg("--svg").arg(&picture);
    }
    if explain {
        cmd.arg("--explain");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "report {trace} --format {format}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = if svg {
        std::fs::read(&picture).unwrap()
    } else {
        out.stdout
    };
    std::fs::remove_dir_all(&out_dir).unwrap();
    bytes
}

/// Compares `actual` with the golden file `name`, or writes it when blessing.
fn check(name: &str, actual: &[u8]) -> Result<(), String> {
    let path = dir().join(name);
    if std::env::var_os("ZCPROF_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return Ok(());
    }
    let expected = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if expected == actual {
        return Ok(());
    }
    let (expected, actual) = (
        String::from_utf8_lossy(&expected),
        String::from_utf8_lossy(actual),
    );
    let line = expected
        .lines()
        .zip(actual.lines())
        .position(|(e, a)| e != a)
        .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
    Err(format!(
        "{name} differs from line {}:\n  golden: {}\n  now:    {}",
        line + 1,
        expected.lines().nth(line).unwrap_or("(end)"),
        actual.lines().nth(line).unwrap_or("(end)")
    ))
}

#[test]
fn reports_of_recorded_traces_are_byte_identical_to_their_goldens() {
    let mut failures = Vec::new();
    for trace in TRACES {
        for (format, ext) in [
            ("json", "json"),
            ("csv", "csv"),
            ("markdown", "md"),
            ("table", "txt"),
            ("table --explain", "explain.txt"),
        ] {
            let name = format!("{trace}.report.{ext}");
            failures.extend(check(&name, &report(trace, format, false)).err());
        }
        let name = format!("{trace}.picture.svg");
        failures.extend(check(&name, &report(trace, "json", true)).err());
    }
    assert!(
        failures.is_empty(),
        "{} golden file(s) differ (bless a deliberate change with ZCPROF_BLESS=1):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Whitespace collapsed: wrapping moves line breaks, never words.
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Issue 22: the short form hides provenance, `--explain` shows all of it. Every source the
/// legend names (each column's figure, each copy path's) and every note of the JSON appear in
/// `report --explain`, for every recorded trace.
#[test]
fn explain_shows_every_source_and_note_of_the_json() {
    let legend_figures = [
        "syscalls",
        "mode_switches",
        "context_switches",
        "copy_cpu_share",
        "elapsed_ns",
    ];
    for trace in TRACES {
        let json: serde_json::Value =
            serde_json::from_slice(&report(trace, "json", false)).unwrap();
        let runs = json["runs"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![json.clone()]);
        let explained = flat(&String::from_utf8_lossy(&report(
            trace,
            "table --explain",
            false,
        )));
        let mut wanted: Vec<String> = Vec::new();
        for run in &runs {
            for name in legend_figures {
                wanted.extend(run["figures"][name]["source"].as_str().map(str::to_owned));
            }
            let dma = &run["figures"]["dma_bytes"];
            if !dma["value"].is_null() {
                wanted.extend(dma["source"].as_str().map(str::to_owned));
            }
            for path in run["copies"].as_array().into_iter().flatten() {
                wanted.extend(path["source"].as_str().map(str::to_owned));
            }
            for note in run["notes"].as_array().into_iter().flatten() {
                wanted.extend(note.as_str().map(str::to_owned));
            }
        }
        let missing: Vec<&String> = wanted
            .iter()
            .filter(|w| !explained.contains(&flat(w)))
            .collect();
        assert!(
            missing.is_empty(),
            "{trace}: not in --explain: {missing:#?}"
        );
        // And the short form says where to find them.
        let short = String::from_utf8_lossy(&report(trace, "table", false)).into_owned();
        assert!(
            short.contains("--explain: how each figure was measured"),
            "{short}"
        );
    }
}

/// Issue 22: no sentence said twice, for compare (every method), exec and attach, in the short
/// form and with `--explain`.
#[test]
fn no_sentence_is_said_twice() {
    for trace in ["all", "exec", "attach"] {
        for form in ["table", "table --explain"] {
            let text = String::from_utf8_lossy(&report(trace, form, false)).into_owned();
            let prose = flat(
                &text
                    .lines()
                    .filter(|l| !l.starts_with(['│', '├', '┌', '└', '╞']))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
            let mut seen = std::collections::BTreeSet::new();
            for sentence in prose.split(". ").map(str::trim).filter(|s| s.len() > 20) {
                assert!(
                    seen.insert(sentence.to_owned()),
                    "{trace} ({form}): said twice: {sentence:?}"
                );
            }
        }
    }
}
