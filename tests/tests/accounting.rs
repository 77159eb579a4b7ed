//! Accounting that stays right for threads and other shapes of real programs. The workloads are
//! this test executable itself, run again under `zcprof exec` with `ZCPROF_TEST_WORKLOAD` set (so
//! they exist wherever the tests run, the VMs included). Without root these tests skip.
use std::path::Path;

use serde_json::Value;
use zcprof_tests::{privileged, scratch_dir, skip};

/// Runs a workload of this executable under `zcprof exec`, returning its report.
fn exec_workload(name: &str, arg: &Path) -> Value {
    let exe = std::env::current_exe().unwrap();
    // The test harness writes to stdout too: the report goes to a file.
    let report = arg.with_extension(format!("{name}.json"));
    let out = std::process::Command::new(zcprof_tests::zcprof_bin())
        .args(["exec", "--format", "json", "-o"])
        .arg(&report)
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
