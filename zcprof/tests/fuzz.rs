//! Fuzzing the inputs a user hands zcprof: the size and duration parsers and the trace reader
//! (`zcprof report FILE`). Whatever the input, they answer Ok or a one-line error, never a panic
//! or a hang. proptest, with a fixed case count so the suite's time stays bounded (seconds).
use std::io::Write as _;

use proptest::prelude::*;

/// A real trace (`zcprof run --method read-write --size 256K --trace`), to mutate.
const TRACE: &[u8] = include_bytes!("fixtures/read-write-256k.trace.json");

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Reads `bytes` as a trace and renders it: Ok, or an error of one line.
fn read_trace(bytes: &[u8]) -> Result<(), String> {
    let mut file = tempfile().expect("temporary file");
    file.1.write_all(bytes).unwrap();
    let out = match zcprof::export::read(&file.0) {
        Ok(runs) => {
            for run in &runs {
                if let Ok(report) = zcprof::export::report_of(run) {
                    let _ = zcprof::report::table(std::slice::from_ref(&report), &[]);
                }
            }
            Ok(())
        }
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains('\n'), "a two-line error: {text}");
            Err(text)
        }
    };
    let _ = std::fs::remove_file(&file.0);
    out
}

/// A fresh file in cargo's target tmp dir.
fn tempfile() -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "fuzz-{}-{}.json",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let f = std::fs::File::create(&path)?;
    Ok((path, f))
}

#[test]
fn the_fixture_reads() {
    assert_eq!(read_trace(TRACE), Ok(()));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sizes_parse_or_refuse(text in ".{0,24}") {
        if let Err(e) = zcprof::units::parse_size(&text) {
            prop_assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn size_like_text_parses_or_refuses(n in any::<u64>(), unit in "[kKmMgGtTpPeE]?[iI]?[bB]?") {
        let _ = zcprof::units::parse_size(&format!("{n}{unit}"));
    }

    #[test]
    fn durations_parse_or_refuse(text in "[0-9]{0,22}(\\.[0-9]{0,5})?(ns|us|ms|s|m|h|d)?") {
        if let Err(e) = zcprof::units::parse_duration(&text) {
            prop_assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn a_cut_trace_is_refused_or_read(cut in 0..TRACE.len()) {
        let _ = read_trace(&TRACE[..cut]);
    }

    #[test]
    fn a_damaged_trace_is_refused_or_read(
        flips in proptest::collection::vec((0..TRACE.len(), any::<u8>()), 1..8)
    ) {
        let mut bytes = TRACE.to_vec();
        for (at, b) in flips {
            bytes[at] = b;
        }
        let _ = read_trace(&bytes);
    }

    #[test]
    fn edited_numbers_are_refused_or_read(
        at in 0..TRACE.len(),
        n in prop_oneof![Just(u64::MAX), Just(0u64), any::<u64>()],
    ) {
        // Replace the number that starts at or after `at` with `n`.
        let text = String::from_utf8_lossy(TRACE).into_owned();
        if let Some(start) = text[at..].find(|c: char| c.is_ascii_digit()).map(|i| at + i) {
            let end = text[start..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(text.len(), |i| start + i);
            let edited = format!("{}{n}{}", &text[..start], &text[end..]);
            let _ = read_trace(edited.as_bytes());
        }
    }

    #[test]
    fn any_bytes_are_refused_or_read(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        prop_assert!(read_trace(&bytes).is_err());
    }
}
