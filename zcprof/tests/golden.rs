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

/// What `zcprof report TRACE --format FORMAT` prints, and with `svg` what it draws.
fn report(trace: &str, format: &str, svg: bool) -> Vec<u8> {
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("golden-{trace}-{format}-{}", std::process::id()));
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
