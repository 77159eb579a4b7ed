//! Floods under `--trace`: a process making syscalls as fast as it can, traced with the default
//! ring and with a one-page ring. Every event the kernel wrote is kept or counted past
//! `--trace-limit`, every event it had no room for is counted as lost, and zcprof's memory and the
//! file's size stay within what the README states per event.
#![cfg(target_os = "linux")]

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;
use zcprof_tests::{privileged, scratch_dir, zcprof_bin};

/// How long the flood of the default ring lasts: the minute.
const FLOOD: Duration = Duration::from_secs(60);
/// The one-page ring loses most events within a second; a shorter flood shows the same.
const FLOOD_TINY_RING: Duration = Duration::from_secs(15);
/// The README's figures: bytes of zcprof's memory per kept event (64 in the ring's copy, up to
/// twice that while the vector grows and the file is written) and bytes of file per event.
const MEMORY_PER_EVENT: u64 = 128;
const FILE_PER_EVENT: u64 = 160;

/// The workload: `getppid` in a loop for `ZCPROF_TEST_FLOOD_MS`. A no-op in a normal test run.
#[test]
fn workload() {
    let Ok(ms) = std::env::var("ZCPROF_TEST_FLOOD_MS") else {
        return;
    };
    let until = std::time::Instant::now() + Duration::from_millis(ms.parse().unwrap());
    while std::time::Instant::now() < until {
        for _ in 0..1000 {
            // SAFETY: no arguments, no memory.
            unsafe { libc::getppid() };
        }
    }
}

/// What a flood under `zcprof exec --trace` left: the report, the trace, the file's size and
/// zcprof's peak resident memory in bytes.
struct Flood {
    report: Value,
    /// The trace's `zcprof` section, and the kernel's events in the file.
    zcprof: Value,
    kernel_events: u64,
    file_bytes: u64,
    max_rss: u64,
}

fn flood(dir: &Path, how_long: Duration, options: &[&str]) -> Flood {
    let file = dir.join("flood.json");
    let out = dir.join("flood.report.json");
    let (code, max_rss) = zcprof_tests::exit_and_peak_rss(
        Command::new(zcprof_bin())
            .args(["exec", "--format", "json", "-o"])
            .arg(&out)
            .arg("--trace")
            .arg(&file)
            .args(options)
            .arg("--")
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", &zcprof_tests::workload_test(module_path!())])
            .args(["--nocapture", "--test-threads=1"])
            .env("ZCPROF_TEST_FLOOD_MS", how_long.as_millis().to_string()),
    );
    assert_eq!(code, 0, "zcprof exec failed");
    let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let file_bytes = std::fs::metadata(&file).unwrap().len();
    // Read line by line: a million events parsed into one JSON value take over a gigabyte,
    // more than the VMs have.
    let text = std::fs::read_to_string(&file).unwrap();
    let (kernel_events, zcprof) = kernel_events_in(&text);
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&out);
    Flood {
        report,
        zcprof,
        kernel_events,
        file_bytes,
        max_rss,
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The kernel's events in the file (one record per line: every record but metadata, counters,
/// run and loss markers, and the opening halves of syscalls unfinished at the end), and the
/// file's `zcprof` section.
fn kernel_events_in(text: &str) -> (u64, Value) {
    let events = text
        .lines()
        .filter(|l| l.starts_with("{\"ph\":"))
        .filter(|l| {
            !l.starts_with("{\"ph\":\"M\"")
                && !l.starts_with("{\"ph\":\"C\"")
                && !l.contains("\"cat\":\"run\"")
                && !l.contains("\"cat\":\"lost\"")
                && !l.contains("\"unfinished\":true")
        })
        .count() as u64;
    let at = text.rfind("\n\"zcprof\": ").expect("a zcprof section");
    let section = text[at + "\n\"zcprof\": ".len()..]
        .trim_end()
        .strip_suffix('}')
        .expect("the file's closing brace");
    (
        events,
        serde_json::from_str(section).expect("the zcprof section is JSON"),
    )
}

/// Checks what holds for any flood: the kernel's written count equals the events in the file
/// plus those past the limit; the loss is counted per CPU; the trace says it is incomplete.
fn check(f: &Flood, limit: u64) -> (u64, u64, u64) {
    let t = &f.report["trace"];
    let (written, lost, over) = (u(&t["events"]), u(&t["lost"]), u(&t["over_limit"]));
    let kept = f.kernel_events;
    assert_eq!(written, kept + over, "{t}: {kept} events in the file");
    assert!(kept <= limit, "{kept} kept over a limit of {limit}");
    let per_cpu: u64 = t["lost_per_cpu"].as_array().unwrap().iter().map(u).sum();
    assert_eq!(per_cpu, lost);
    assert_eq!(f.zcprof["over_limit"], over);
    // Every syscall return the table counted tried to write one event.
    let returns: u64 = f.report["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| u(&s["count"]))
        .sum();
    assert!(
        written + lost + 16 >= returns,
        "{written} written + {lost} lost < {returns} returns"
    );
    assert!(
        f.file_bytes <= FILE_PER_EVENT * kept + (1 << 20),
        "{} bytes of trace for {kept} events",
        f.file_bytes
    );
    (kept, over, lost)
}

#[test]
fn a_minute_of_flood_is_kept_to_the_limit_with_bounded_memory() {
    if !privileged("flood_default_ring") {
        return;
    }
    let dir = scratch_dir("flood-default", env!("CARGO_TARGET_TMPDIR"));
    // The same flood kept to one event: zcprof's own memory without the trace's.
    let floor = flood(&dir, Duration::from_secs(2), &["--trace-limit", "1"]);
    check(&floor, 1);
    let limit = 1_000_000; // the default
    let f = flood(&dir, FLOOD, &[]);
    let (kept, over, lost) = check(&f, limit);
    // Getppid at full speed for a minute writes tens of millions of events (128 million on the
    // development machine); the default keeps the first million and counts the rest.
    let written = u(&f.report["trace"]["events"]);
    assert_eq!(kept, written.min(limit), "over {over}, lost {lost}");
    if written <= limit {
        zcprof_tests::skip(
            "flood_default_ring",
            &format!(
                "the limit was not reached: a minute of flood wrote only {written} events here"
            ),
        );
        return;
    }
    assert!(over > 0);
    assert_eq!(f.zcprof["complete"], false);
    let notes = f.report["notes"].to_string();
    assert!(notes.contains("--trace-limit"), "{notes}");
    assert!(
        f.max_rss <= floor.max_rss + MEMORY_PER_EVENT * limit,
        "peak {} bytes against {} without the trace",
        f.max_rss,
        floor.max_rss
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_flood_into_a_one_page_ring_counts_every_loss() {
    if !privileged("flood_tiny_ring") {
        return;
    }
    let dir = scratch_dir("flood-tiny", env!("CARGO_TARGET_TMPDIR"));
    let limit = 50_000;
    let f = flood(
        &dir,
        FLOOD_TINY_RING,
        &["--trace-buffer", "4K", "--trace-limit", "50K"],
    );
    let (kept, _, lost) = check(&f, limit);
    assert!(
        lost > 0,
        "a one-page ring kept pace with a flood: {}",
        f.report["trace"]
    );
    assert!(kept <= limit);
    assert_eq!(f.zcprof["complete"], false);
    let _ = std::fs::remove_dir_all(dir);
}
