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

/// The name libtest gives the test `workload` of the module whose `module_path!()` is
/// `module_path` (which starts with the crate's name; libtest's names do not).
#[must_use]
pub fn workload_test(module_path: &str) -> String {
    match module_path.split_once("::") {
        Some((_, module)) => format!("{module}::workload"),
        None => "workload".to_owned(),
    }
}

/// Runs this test executable again as the workload `name` under `zcprof exec` (with `options`
/// before the `--`), the workload's inputs in `env`, and returns the report. The workload is the
/// test `workload` of the calling module (`module_path!()` there), a no-op unless
/// `ZCPROF_TEST_WORKLOAD` names one: so
/// the workloads exist wherever the tests run, the VMs included. The report goes to `report`,
/// since the test harness writes to stdout too.
///
/// # Panics
/// When zcprof fails or its report is not JSON.
#[must_use]
pub fn exec_self(
    module_path: &str,
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
        .args(["--exact", &workload_test(module_path)])
        .args(["--nocapture", "--test-threads=1"])
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

// ---- processes, programs and links a test must find gone ----

/// Children of every thread of `pid` (the transfer process is spawned from a worker thread).
#[must_use]
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Whether process `pid` exists and is not a zombie.
#[must_use]
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// The kernel frees a program after its last reference goes, in deferred work: wait a bounded
/// while for that, then report what is still there.
#[must_use]
pub fn programs_left() -> Vec<String> {
    for _ in 0..500 {
        let left = zcprof_programs_loaded(&catalog_programs());
        if left.is_empty() {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    zcprof_programs_loaded(&catalog_programs())
}

/// Kills zcprof if the test fails midway, so one failure does not leave programs for the next.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (bounded) until zcprof's programs are attached, so a signal lands while measuring.
///
/// # Panics
/// When zcprof ends before attaching, or never attaches.
pub fn wait_attached(zcprof: &mut std::process::Child) {
    for _ in 0..2000 {
        if !zcprof_programs_loaded(&catalog_programs()).is_empty() {
            return;
        }
        assert!(
            zcprof.try_wait().unwrap().is_none(),
            "zcprof ended before attaching"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("zcprof never attached");
}

/// Sends SIGINT to `child`, as Ctrl-C on a terminal does.
///
/// # Panics
/// When the signal cannot be sent.
pub fn sigint(child: &std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
}

/// Whether `ip` (iproute2) is there for `--net veth`; says why not on stderr.
#[must_use]
pub fn veth_possible(test: &str) -> bool {
    if !privileged(test) {
        return false;
    }
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("ip").is_file()));
    if !found {
        skip(test, "--net veth needs iproute2's ip in PATH");
    }
    found
}

/// Interfaces of this namespace whose names start with `zcp` (`ip -o link`: "N: name@peer: ...").
///
/// # Panics
/// When `ip` cannot run.
#[must_use]
pub fn zcp_links() -> Vec<String> {
    let out = Command::new("ip").args(["-o", "link"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or_default().to_owned())
        .filter(|n| n.starts_with("zcp"))
        .collect()
}

/// The `zcp` links left by the zcprof of `pid`, or by any zcprof that is gone. Links of another
/// zcprof that still runs (a concurrent test elsewhere) are its own business.
#[must_use]
pub fn leftover_links(pid: u32) -> Vec<String> {
    zcp_links()
        .into_iter()
        .filter(|name| {
            let owner: Option<u32> = name
                .strip_prefix("zcp")
                .and_then(|n| n.strip_suffix(['s', 'p']))
                .and_then(|n| n.parse().ok());
            owner.is_none_or(|o| o == pid || !alive(o))
        })
        .collect()
}

/// Polls up to five seconds for the kernel to free a dead zcprof's namespace and its links.
#[must_use]
pub fn links_left_after(pid: u32) -> Vec<String> {
    for _ in 0..500 {
        if leftover_links(pid).is_empty() {
            return Vec::new();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    leftover_links(pid)
}

/// Live processes whose command line contains `needle` (zombies excluded).
///
/// # Panics
/// When /proc cannot be read.
#[must_use]
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            }) && alive(pid)
        })
        .collect()
}
