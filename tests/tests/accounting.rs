//! Accounting that stays right for threads and other shapes of real programs. The workloads are
//! this test executable itself, run again under `zcprof exec` with `ZCPROF_TEST_WORKLOAD` set (so
//! they exist wherever the tests run, the VMs included). Without root these tests skip.
use std::path::Path;

use serde_json::Value;
use zcprof_tests::{privileged, scratch_dir, skip};

/// Runs a workload of this executable under `zcprof exec`, returning its report.
fn exec_workload(name: &str, arg: &Path) -> Value {
    exec_workload_with(name, arg, &[])
}

/// `exec_workload` with more options of `zcprof exec` (before the `--`).
fn exec_workload_with(name: &str, arg: &Path, options: &[&str]) -> Value {
    let exe = std::env::current_exe().unwrap();
    // The test harness writes to stdout too: the report goes to a file.
    let report = arg.with_extension(format!("{name}.json"));
    let out = std::process::Command::new(zcprof_tests::zcprof_bin())
        .args(["exec", "--format", "json", "-o"])
        .arg(&report)
        .args(options)
        .arg("--")
        .arg(exe)
        .args(["--exact", "workload", "--nocapture", "--test-threads=1"])
        .env("ZCPROF_TEST_WORKLOAD", name)
        .env("ZCPROF_TEST_ARG", arg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&report).unwrap()).expect("JSON")
}

/// The workloads: a no-op unless `ZCPROF_TEST_WORKLOAD` names one.
#[test]
fn workload() {
    let Ok(name) = std::env::var("ZCPROF_TEST_WORKLOAD") else {
        return;
    };
    let arg = std::env::var("ZCPROF_TEST_ARG").unwrap_or_default();
    match name.as_str() {
        "reads-main" => page_cache_reads(&arg),
        "reads-worker" => std::thread::spawn(move || page_cache_reads(&arg))
            .join()
            .unwrap(),
        "early-slow-calls" => early_slow_calls(),
        other => panic!("unknown workload {other}"),
    }
}

/// Many small page-cache reads: kernel time, much of it in copy routines.
fn page_cache_reads(path: &str) {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 4096];
    for i in 0..200_000u64 {
        file.read_at(&mut buf, (i % 256) * 4096).unwrap();
    }
}

fn kernel_samples(r: &Value) -> u64 {
    // "N of M kernel-mode samples were in a copy routine ..."
    let note = r["figures"]["copy_cpu_share"]["note"]
        .as_str()
        .unwrap_or("");
    note.split(" of ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn worker_threads_are_sampled_like_the_main_thread() {
    if !privileged("accounting_thread_sampling") {
        return;
    }
    let dir = scratch_dir("acct-threads", env!("CARGO_TARGET_TMPDIR"));
    let file = dir.join("data.bin");
    std::fs::write(&file, vec![7u8; 1 << 20]).unwrap();
    let main = exec_workload("reads-main", &file);
    let worker = exec_workload("reads-worker", &file);
    if main["figures"]["copy_cpu_share"]["value"].is_null() {
        skip(
            "accounting_thread_sampling",
            &format!(
                "no sampling here: {}",
                main["figures"]["copy_cpu_share"]["note"]
            ),
        );
        return;
    }
    let (m, w) = (kernel_samples(&main), kernel_samples(&worker));
    assert!(m >= 20, "the main-thread case got {m} kernel samples");
    // The same work on a worker thread is sampled about as often (it was 1 against 582).
    assert!(
        w * 3 >= m && w <= m * 3,
        "worker-thread samples {w} against main-thread samples {m}"
    );
}

/// A report's syscall row called `name`.
fn row<'a>(r: &'a Value, name: &str) -> Option<&'a Value> {
    r["syscalls"].as_array()?.iter().find(|s| s["name"] == name)
}

/// 8 `ppoll` calls that sleep 10 ms, then 20,000 that return at once.
fn early_slow_calls() {
    let ppoll = |ns| {
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: ns,
        };
        // SAFETY: no descriptors, a valid timeout, no signal mask.
        unsafe {
            libc::syscall(
                libc::SYS_ppoll,
                std::ptr::null_mut::<libc::pollfd>(),
                0,
                &raw const timeout,
                std::ptr::null::<libc::sigset_t>(),
                8,
            )
        }
    };
    for _ in 0..8 {
        assert_eq!(ppoll(10_000_000), 0);
    }
    for _ in 0..20_000 {
        assert_eq!(ppoll(0), 0);
    }
}

#[test]
fn sampled_time_keeps_early_calls_apart() {
    if !privileged("accounting_early_calls") {
        return;
    }
    let dir = scratch_dir("acct-early", env!("CARGO_TARGET_TMPDIR"));
    let sampled = exec_workload("early-slow-calls", &dir.join("sampled"));
    let every = exec_workload_with(
        "early-slow-calls",
        &dir.join("every"),
        &["--time-every", "1"],
    );
    let time = |r: &Value| {
        let ppoll = row(r, "ppoll").expect("ppoll counted");
        assert_eq!(ppoll["count"], 20_008, "{ppoll}");
        ppoll["total_ns"].as_u64().unwrap()
    };
    let (estimate, measured) = (time(&sampled), time(&every));
    // The 8 slow calls alone take 80 ms: the estimate must not scale them like the rest.
    assert!(measured >= 80_000_000, "{measured}");
    assert!(
        estimate.abs_diff(measured) * 4 <= measured,
        "sampled estimate {estimate} ns against {measured} ns with every call timed"
    );
}
