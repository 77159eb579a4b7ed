//! Helpers for the privileged tests: finding the zcprof binary, skipping loudly without root,
//! running zcprof and reading its JSON.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

/// The zcprof binary under test: `$ZCPROF_BIN`, else the one cargo built beside this test.
///
/// # Panics
/// When no binary can be found (run through `cargo xtask test`).
#[must_use]
pub fn zcprof_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ZCPROF_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test> -> target/<profile>/zcprof
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|d| d.join("zcprof"))
        .expect("target dir");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build -p zcprof` first, or `cargo xtask test`",
        bin.display()
    );
    bin
}

/// True when the test may load eBPF. Otherwise it says why on stderr and returns false (tests
/// return early on false), unless root is required (see [`root_required`]): then the test fails,
/// naming itself, instead of being counted as passed.
///
/// # Panics
/// Without root when root is required.
#[must_use]
pub fn privileged(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let why = "loading eBPF programs needs root (run `sudo -E cargo xtask test`)";
    assert!(
        !root_required(),
        "{test} needed root and did not run: {why}; under CI=true or ZCPROF_REQUIRE_ROOT=1 that \
         is a failure, not a skip"
    );
    skip(test, why);
    false
}

/// Whether a privileged test that cannot run must fail rather than skip: under CI (`CI=true`,
/// as CI services set it) or `ZCPROF_REQUIRE_ROOT=1`.
#[must_use]
pub fn root_required() -> bool {
    let set = |name: &str| {
        std::env::var(name).is_ok_and(|v| v.eq_ignore_ascii_case("true") || v.trim() == "1")
    };
    set("CI") || set("ZCPROF_REQUIRE_ROOT")
}

/// Says on the real stderr that `test` skips (part of) its checks, and why. `eprintln!` inside a
/// test is captured and hidden when the test passes; a direct write is not.
pub fn skip(test: &str, why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "skipping {test}: {why}");
}

/// A fresh directory under cargo's target tmp dir: on the project's disk, so `O_DIRECT` and block
/// devices behave as on a real file system.
///
/// # Panics
/// When the directory cannot be created.
#[must_use]
pub fn scratch_dir(name: &str, tmp: &str) -> PathBuf {
    let dir = PathBuf::from(tmp).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Runs zcprof with `args`.
///
/// # Panics
/// When zcprof cannot be started.
#[must_use]
pub fn run(args: &[&str]) -> Output {
    Command::new(zcprof_bin())
        .args(args)
        .output()
        .expect("zcprof runs")
}

/// Runs zcprof with `args` plus `--format json` and parses its output.
///
/// # Panics
/// When zcprof fails (with its stderr) or its output is not JSON.
#[must_use]
pub fn run_json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let out = run(&all);
    assert!(
        out.status.success(),
        "zcprof {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

/// Program names of zcprof's eBPF programs currently loaded anywhere (kernel names are cut to
/// 15 bytes).
pub fn zcprof_programs_loaded(catalog: &[&str]) -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| p.name_as_str().map(str::to_owned))
        .filter(|name| {
            catalog
                .iter()
                .any(|c| c.starts_with(name.as_str()) && !name.is_empty())
        })
        .collect()
}

/// The program names of the probe catalog (`run`, `compare`, `exec`, `attach`), as the code
/// lists them.
#[must_use]
pub fn catalog_programs() -> Vec<&'static str> {
    zcprof::probes::catalog::VARIANTS
        .iter()
        .map(|v| v.program)
        .collect()
}

/// The program names of `zcprof serve`, as the code lists them.
#[must_use]
pub fn serve_programs() -> Vec<&'static str> {
    zcprof::probes::serve::PROGRAMS
        .iter()
        .map(|&(program, _, _)| program)
        .collect()
}

/// Runs this test executable again as the workload `name` under `zcprof exec` (with `options`
/// before the `--`), the workload's inputs in `env`, and returns the report. The workload is the
/// test `workload` of the calling test file, a no-op unless `ZCPROF_TEST_WORKLOAD` names one: so
/// the workloads exist wherever the tests run, the VMs included. The report goes to `report`,
/// since the test harness writes to stdout too.
///
/// # Panics
/// When zcprof fails or its report is not JSON.
#[must_use]
pub fn exec_self(
    name: &str,
    env: &[(&str, &std::path::Path)],
    options: &[&str],
    report: &std::path::Path,
) -> serde_json::Value {
    let mut cmd = Command::new(zcprof_bin());
    cmd.args(["exec", "--format", "json", "-o"])
        .arg(report)
        .args(options)
        .arg("--")
        .arg(std::env::current_exe().expect("current exe"))
        .args(["--exact", "workload", "--nocapture", "--test-threads=1"])
        .env("ZCPROF_TEST_WORKLOAD", name);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().expect("zcprof runs");
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(report).expect("the report")).expect("JSON")
}

/// Runs `cmd` (its stdout and stderr as set by the caller) and returns its exit code (-1 when
/// killed by a signal) and its peak resident memory in bytes: wait4's rusage of this child alone,
/// not the maximum over every child the test process reaped.
///
/// # Panics
/// When the command cannot be started or waited for.
#[must_use]
pub fn exit_and_peak_rss(cmd: &mut Command) -> (i32, u64) {
    let child = cmd.spawn().expect("the command starts");
    let pid = i32::try_from(child.id()).expect("a pid");
    let mut status = 0;
    // SAFETY: all zeroes is a valid rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: out-pointers to a local int and a local rusage.
    let reaped = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    // Reaped here: dropping `child` neither waits nor kills.
    drop(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024)
}

/// A run's count of `name` calls (0 when it made none).
#[must_use]
pub fn calls(r: &Value, name: &str) -> u64 {
    r["syscalls_by_name"]
        .get(name)
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// A run's figure `key` as a whole number.
///
/// # Panics
/// When the figure is missing or not a whole number.
#[must_use]
pub fn fig(r: &Value, key: &str) -> u64 {
    r["figures"][key]["value"]
        .as_u64()
        .unwrap_or_else(|| panic!("figure {key} is not a whole number: {}", r["figures"][key]))
}

/// Writes `size` bytes of a fixed pseudo-random sequence (xorshift) to `dir/data.bin`: data no
/// file system can compress or share, the same in every run.
///
/// # Panics
/// When the file cannot be written.
#[must_use]
pub fn data_file(dir: &Path, size: u64) -> PathBuf {
    let path = dir.join("data.bin");
    let mut bytes = vec![0u8; usize::try_from(size).expect("a size that fits in memory")];
    let mut x = 0x2545_f491_4f6c_dd1d_u64;
    for b in &mut bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x.to_le_bytes()[0];
    }
    std::fs::write(&path, bytes).expect("the data file");
    path
}

/// The file system type of the mount holding `dir` (the longest mount point that prefixes it).
///
/// # Panics
/// When `dir` or /proc/mounts cannot be read.
#[must_use]
pub fn filesystem_of(dir: &Path) -> String {
    let dir = dir.canonicalize().expect("the directory");
    let mounts = std::fs::read_to_string("/proc/mounts").expect("/proc/mounts");
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, fs) = (f.next()?, f.next()?, f.next()?);
            dir.starts_with(point).then(|| (point.len(), fs.to_owned()))
        })
        .max()
        .map_or_else(|| "unknown".to_owned(), |(_, fs)| fs)
}
