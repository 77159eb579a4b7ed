//! Sampled figures hold: time in the kernel never exceeds the time a single-threaded sender had,
//! the sample agrees with timing every call, and the elapsed window is exact under sampling.
#![cfg(target_os = "linux")]

use serde_json::Value;
use zcprof_tests::{privileged, run_json, scratch_dir};

/// Runs of each kind: the six.
const RUNS: usize = 6;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

/// The summed time in the kernel of a run's syscalls, and its elapsed window, in ns.
#[expect(clippy::cast_precision_loss, reason = "nanoseconds far below 2^52")]
fn kernel_and_elapsed(r: &Value) -> (f64, f64) {
    let sum: u64 = r["syscalls"]
        .as_array()
        .expect("syscall rows")
        .iter()
        .map(|s| s["total_ns"].as_u64().expect("total_ns"))
        .sum();
    let elapsed = r["elapsed_ns"].as_u64().expect("elapsed_ns");
    assert!(elapsed > 0, "empty window: {r}");
    (sum as f64, elapsed as f64)
}

/// Each run's report, with the wall time of the whole zcprof process that made it, in ns.
fn runs(method: &str, block: &str, dir: &str, every: bool) -> Vec<(Value, f64)> {
    let mut args = vec![
        "run",
        "--method",
        method,
        "--size",
        "16M",
        "--block-size",
        block,
        "--dir",
        dir,
    ];
    if every {
        args.extend(["--time-every", "1"]);
    }
    (0..RUNS)
        .map(|_| {
            let start = std::time::Instant::now();
            let r = run_json(&args);
            (r, start.elapsed().as_secs_f64() * 1e9)
        })
        .collect()
}

/// Six default runs against six with every call timed (twelve when six disagree): every sampled
/// run's time in the kernel is at most 1.05x its window (one thread cannot spend more), and the
/// medians of the time in the kernel agree within 25 %, and the elapsed window is not cut short.
fn check_sampled_time(test: &str, method: &str, block: &str) {
    if !privileged(test) {
        return;
    }
    let dir = scratch_dir(test, env!("CARGO_TARGET_TMPDIR"));
    let dir = dir.to_str().unwrap();
    let mut sampled = runs(method, block, dir, false);
    let mut every = runs(method, block, dir, true);
    // Sequential sampling: when six of each disagree on the kernel's share, six more of each
    // decide, all twelve counted (one clean-clone run under a loaded host saw 0.573 against
    // 0.811 for read-write, where every other run agreed within a few per cent).
    let share = |rs: &[(Value, f64)]| {
        median(
            rs.iter()
                .map(|(r, _)| kernel_and_elapsed(r))
                .map(|(k, e)| k / e)
                .collect(),
        )
    };
    if (share(&sampled) - share(&every)).abs() > 0.25 * share(&every) {
        eprintln!(
            "{method}: kernel share {:.3} sampled, {:.3} timed in six runs each: six more of each",
            share(&sampled),
            share(&every)
        );
        sampled.extend(runs(method, block, dir, false));
        every.extend(runs(method, block, dir, true));
    }
    for (r, _) in &sampled {
        assert!(
            r["syscall_timing"]
                .as_str()
                .unwrap()
                .contains("1 call in 16"),
            "{}",
            r["syscall_timing"]
        );
        let (kernel, elapsed) = kernel_and_elapsed(r);
        assert!(
            kernel <= 1.05 * elapsed,
            "{method}: {kernel} ns in syscalls in a {elapsed} ns window: {}",
            r["syscalls"]
        );
    }
    // Every window, sampled or not, is no longer than the zcprof process that measured it,
    // setup included: a window that began before the first entry (at 0, or at the loader) would
    // be.
    for (r, wall) in sampled.iter().chain(&every) {
        let elapsed = kernel_and_elapsed(r).1;
        assert!(
            elapsed <= *wall,
            "{method}: a {elapsed} ns window from a zcprof run that took {wall} ns"
        );
    }
    let (sampled, every): (Vec<Value>, Vec<Value>) = (
        sampled.into_iter().map(|x| x.0).collect(),
        every.into_iter().map(|x| x.0).collect(),
    );
    let stat = |rs: &[Value], f: fn((f64, f64)) -> f64| {
        median(rs.iter().map(|r| f(kernel_and_elapsed(r))).collect())
    };
    // Compared as a share of each run's window: how long a run takes swings far more than how
    // it splits its time (on one emulated CPU a 16 MiB sendfile took 90 to 350 ms, as the
    // receiver's thread got the CPU or not), and the estimate's bias is what is tested here.
    let (k_sampled, k_every) = (stat(&sampled, |x| x.0 / x.1), stat(&every, |x| x.0 / x.1));
    assert!(
        (k_sampled - k_every).abs() <= 0.25 * k_every,
        "{method}: median share of the window in the kernel {k_sampled:.3} sampled, \
         {k_every:.3} with every call timed"
    );
    // Elapsed within the noise of the fully timed runs. The fault guarded against ended the
    // window at the last timed event, and the window fell to a third of the true one. Across runs
    // the window swings far (fully timed runs on one VM took 64 to 192 ms and the sampled median
    // was 298 ms; on another the sampled median was 81 ms against 85 to 432 ms), and timing every
    // call costs time of its own, so the noise band is the fully timed runs' range widened by a
    // factor of two each way. Each run's window is also bounded within the run, above.
    let e_sampled = stat(&sampled, |x| x.1);
    let e_every: Vec<f64> = every.iter().map(|r| kernel_and_elapsed(r).1).collect();
    let (lo, hi) = (
        e_every.iter().copied().fold(f64::INFINITY, f64::min),
        e_every.iter().copied().fold(0.0, f64::max),
    );
    assert!(
        (0.5 * lo..=2.0 * hi).contains(&e_sampled),
        "{method}: median elapsed {e_sampled} ns sampled, {e_every:?} ns with every call timed"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sampled_sendfile_time_stays_within_the_window() {
    check_sampled_time("timing_sendfile", "sendfile", "64K");
}

#[test]
fn sampled_read_write_time_stays_within_the_window() {
    check_sampled_time("timing_read_write", "read-write", "4K");
}

/// Where part of a syscall's time was scaled, the JSON carries the samples and a 95 % interval
/// around the estimate, and the table marks it.
#[test]
fn scaled_time_carries_its_interval() {
    if !privileged("timing_interval") {
        return;
    }
    let dir = scratch_dir("timing-interval", env!("CARGO_TARGET_TMPDIR"));
    let d = dir.to_str().unwrap();
    // 64 MiB in 4 KiB steps: 16,384 reads, far more than the 256 always timed.
    let r = run_json(&[
        "run",
        "--method",
        "read-write",
        "--size",
        "64M",
        "--block-size",
        "4K",
        "--dir",
        d,
    ]);
    let read = r["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "read")
        .expect("read row");
    let (count, timed) = (
        read["count"].as_u64().unwrap(),
        read["timed"].as_u64().unwrap(),
    );
    assert!(timed < count, "{read}");
    let est = &read["time_estimate"];
    let (samples, low, high) = (
        est["samples"].as_u64().unwrap(),
        est["low_ns"].as_u64().unwrap(),
        est["high_ns"].as_u64().unwrap(),
    );
    let total = read["total_ns"].as_u64().unwrap();
    assert!(samples >= 100, "{read}");
    assert!(low <= total && total <= high && low < high, "{read}");
    let table = zcprof_tests::run(&[
        "run",
        "--method",
        "read-write",
        "--size",
        "64M",
        "--block-size",
        "4K",
        "--dir",
        d,
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("read") && l.contains('≈') && l.contains('±')),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `compare --repeat 3`: every figure that was measured in the runs is a median with its min,
/// max and all three values; the CSV and Markdown carry the spread; a trace of the repeated
/// runs re-renders as the same folded rows.
#[test]
fn repeated_compare_reports_median_min_max_and_every_value() {
    if !privileged("timing_repeat") {
        return;
    }
    let dir = scratch_dir("timing-repeat", env!("CARGO_TARGET_TMPDIR"));
    let d = dir.to_str().unwrap();
    let trace = dir.join("repeat.json");
    let common = [
        "compare",
        "--methods",
        "read-write,sendfile",
        "--size",
        "4M",
        "--dir",
        d,
        "--repeat",
        "3",
        "--warmup",
        "1",
    ];
    let mut traced = common.to_vec();
    traced.extend(["--trace", trace.to_str().unwrap()]);
    let r = run_json(&traced);
    let runs = r["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "one folded row per method: {r}");
    for run in runs {
        assert_eq!(run["repeat"]["runs"], 3, "{}", run["repeat"]);
        assert_eq!(run["repeat"]["warmup"], 1);
        for (name, f) in run["figures"].as_object().unwrap() {
            if f["value"].is_null() {
                continue;
            }
            let s = &f["spread"];
            let values: Vec<f64> = s["values"]
                .as_array()
                .unwrap_or_else(|| panic!("{name} has no values: {f}"))
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(values.len(), 3, "{name}: {f}");
            let (min, max, median) = (
                s["min"].as_f64().unwrap(),
                s["max"].as_f64().unwrap(),
                s["median"].as_f64().unwrap(),
            );
            assert!(min <= median && median <= max, "{name}: {f}");
            assert!(
                values.iter().all(|v| (min..=max).contains(v)),
                "{name}: {f}"
            );
            // The value is the median, as the JSON rounds it (four decimals).
            let value = f["value"].as_f64().unwrap();
            assert!(
                (value - median).abs() <= 1e-3 * median.abs().max(1.0),
                "{name}: {f}"
            );
        }
        // The syscalls are the same every time: 2 per step for read-write, 1 for sendfile, at
        // median, min and max alike.
        let per_step = &run["figures"]["syscalls"]["spread"]["per_transfer"];
        assert!(per_step[1].as_f64().unwrap() >= 1.0, "{per_step}");
    }
    // The trace holds the three measured rounds (not the warm-up), and re-renders folded.
    let report = zcprof_tests::run(&["report", trace.to_str().unwrap(), "--format", "json"]);
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let again: Value = serde_json::from_slice(&report.stdout).unwrap();
    let again = again["runs"].as_array().expect("runs");
    assert_eq!(again.len(), 2);
    assert!(
        again.iter().all(|run| run["repeat"]["runs"] == 3),
        "{again:?}"
    );

    let mut csv = common.to_vec();
    csv.extend(["--format", "csv"]);
    let out = zcprof_tests::run(&csv);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text.lines().next().unwrap();
    assert!(
        header.contains(",repeat,") && header.contains("elapsed_ns_min,elapsed_ns_max"),
        "{header}"
    );
    let mut md = common.to_vec();
    md.extend(["--format", "markdown"]);
    let out = zcprof_tests::run(&md);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("the median of 3 runs"), "{text}");
    // Elapsed differs from run to run by more than a tenth of a millisecond: a range shows.
    assert!(
        text.lines()
            .filter(|l| l.starts_with("| "))
            .any(|l| l.contains(" ms [")),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The sum of `total_ns` over the named syscalls of a run.
fn syscall_ns(r: &Value, names: &[&str]) -> u64 {
    r["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| names.contains(&s["name"].as_str().unwrap_or("")))
        .map(|s| s["total_ns"].as_u64().unwrap())
        .sum()
}

/// A program that sleeps a second and then copies /dev/zero to /dev/null: its time on a CPU
/// (sampled) is a small part of the window, agrees with the time its reads and writes took in
/// the kernel (hooked: they never block), and a note says what the window held.
#[test]
fn cpu_time_says_how_much_of_the_window_was_busy() {
    if !privileged("timing_cpu_time") {
        return;
    }
    let out = zcprof_tests::run(&[
        "exec",
        "--time-every",
        "1",
        "--format",
        "json",
        "--",
        "sh",
        "-c",
        "sleep 1; dd if=/dev/zero of=/dev/null bs=64k count=30000 2>/dev/null",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cpu = r["figures"]["cpu_time_ns"]["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("no cpu time: {}", r["figures"]["cpu_time_ns"]));
    let elapsed = r["elapsed_ns"].as_f64().unwrap();
    #[expect(clippy::cast_precision_loss, reason = "nanoseconds")]
    let rw = syscall_ns(&r, &["read", "write"]) as f64;
    assert!(elapsed > 1e9, "{elapsed}");
    // The second of sleep holds no CPU time, however slow the machine runs dd.
    assert!(
        cpu > 0.0 && cpu + 0.9e9 <= elapsed,
        "cpu {cpu} ns of {elapsed} ns"
    );
    assert!(
        cpu >= 0.7 * rw && cpu <= 2.0 * rw + 50e6,
        "cpu {cpu} ns sampled against {rw} ns in dd's reads and writes"
    );
    // The note is for windows mostly off a CPU (dd is quick on real hardware, not under
    // emulation).
    let notes = r["notes"].to_string();
    if cpu * 2.0 < elapsed {
        assert!(
            notes.contains("on a CPU") && notes.contains("off a CPU"),
            "{notes}"
        );
    }
}

/// Attached to a shell that only waits for its child, which does the copying: the report says
/// the process moved no data and names the child.
#[test]
fn an_idle_attach_target_names_its_busy_children() {
    use std::os::unix::process::CommandExt as _;
    if !privileged("timing_idle_target") {
        return;
    }
    let mut sh = std::process::Command::new("sh")
        .args(["-c", "cat /dev/zero > /dev/null & wait"])
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = i32::try_from(sh.id()).unwrap();
    // The child must exist before the attach.
    let mut waited = 0;
    while !std::fs::read_to_string(format!("/proc/{}/task/{}/children", sh.id(), sh.id()))
        .is_ok_and(|c| !c.trim().is_empty())
        && waited < 50
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
        waited += 1;
    }
    let pid = sh.id().to_string();
    let out = zcprof_tests::run(&[
        "attach",
        "--pid",
        &pid,
        "--duration",
        "1s",
        "--format",
        "json",
    ]);
    // SAFETY: signalling our own process group.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = sh.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let notes = r["notes"].to_string();
    assert!(notes.contains("made no data transfers"), "{notes}");
    assert!(notes.contains("(cat)"), "{notes}");
}
