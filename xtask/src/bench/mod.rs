//! The benchmark harness (`cargo xtask bench`): zcprof's own cost and its workloads' fidelity,
//! each variant measured side by side with an untraced baseline in the same invocation,
//! interleaved, several times. Prints median, min and max as ratios to the baseline, and writes
//! `target/bench/results.json` and `docs/benchmarks.md`.
mod bystander;
mod capacity;
mod fidelity;
mod kernel_stats;
mod overhead;
mod scrape;
mod serve;
mod siege;
mod startup;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::{cargo, is_root, run, setup};

/// How the harness is run.
pub struct Options {
    /// Repetitions of every case.
    pub reps: usize,
    /// Syscalls per loop for the cheap variants (the slow tracers run a hundredth).
    pub syscalls: u64,
    /// Only these cases (`CASES`); empty: all.
    pub only: Vec<String>,
}

/// The cases, in the order they run.
pub const CASES: [&str; 9] = [
    "overhead",
    "bystander",
    "kernel-stats",
    "capacity",
    "startup",
    "fidelity",
    "serve",
    "scrape",
    "siege",
];

impl Options {
    fn wants(&self, case: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|c| c == case)
    }
}

/// The built programs the cases run.
struct Bins {
    zcprof: PathBuf,
    syscall_loop: PathBuf,
    reference: PathBuf,
}

/// Everything measured, for the JSON file and the Markdown table.
#[derive(Default)]
struct Results {
    sections: Vec<(String, String)>,
    json: serde_json::Map<String, Value>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let mid = s.len() / 2;
    if s.len().is_multiple_of(2) {
        f64::midpoint(s[mid - 1], s[mid])
    } else {
        s[mid]
    }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// The distribution-free 95 % interval of the median of `v`: the k-th smallest and k-th
/// largest values, with k the largest rank that a Binomial(n, 1/2) count leaves at most 2.5 %
/// below on each side (the sign-test interval). None for fewer than six values, where even
/// the extremes cover less than 95 %. A dozen lines of exact arithmetic; a statistics crate
/// (statrs) would bring linear algebra into xtask's build for one binomial sum.
fn median_interval(v: &[f64]) -> Option<(f64, f64)> {
    let n = v.len();
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    // P(B = j) and P(B <= j) for B ~ Binomial(n, 1/2), grown term by term.
    let mut term = 0.5f64.powi(i32::try_from(n).ok()?);
    let mut at_most = term;
    let mut k = 0;
    // [x_(k+1), x_(n-k)] covers 1 - 2 P(B <= k); cut one more each side while that stays >= 95 %.
    while 2.0 * at_most <= 0.05 {
        k += 1;
        term *= f64::from(u32::try_from(n - k + 1).ok()?) / f64::from(u32::try_from(k).ok()?);
        at_most += term;
    }
    (k > 0).then(|| (s[k - 1], s[n - k]))
}

/// Where a series of paired ratios stands against a target ratio.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    /// The median ratio reaches the target.
    Met,
    /// The median is below the target and so is the whole of its 95 % interval.
    Below,
    /// The median is below the target, but its interval reaches it: the pairs cannot tell.
    WithinNoise,
}

impl Verdict {
    /// The table's word for it; `within_noise` says what "below, but within the noise" means
    /// for the case.
    fn label(self, within_noise: &str) -> String {
        match self {
            Verdict::Met => "met".to_owned(),
            Verdict::Below => "NOT met".to_owned(),
            Verdict::WithinNoise => within_noise.to_owned(),
        }
    }
}

fn verdict_of(ratios: &[f64], target: f64) -> Verdict {
    if median(ratios) >= target {
        Verdict::Met
    } else if median_interval(ratios).is_some_and(|(_, hi)| hi >= target) {
        Verdict::WithinNoise
    } else {
        Verdict::Below
    }
}

/// Median, min and max of a series, as JSON.
fn stats(v: &[f64]) -> Value {
    json!({ "median": median(v), "min": min(v), "max": max(v), "samples": v })
}

/// Runs the whole harness.
///
/// # Errors
/// When building fails or a case cannot run at all.
pub fn bench(root: &Path, opts: &Options) -> Result<()> {
    if !is_root() {
        bail!(
            "the benchmarks load eBPF programs and change sysctls: run `sudo -E cargo xtask bench`"
        );
    }
    setup::setup()?;
    setup::install_packages(
        "bench",
        &setup::missing_packages(&[
            ("bpftrace", "bpftrace"),
            ("strace", "strace"),
            ("perf", "linux-perf"),
            ("nginx", "nginx"),
            ("wrk", "wrk"),
            ("curl", "curl"),
        ]),
    )?;
    run(cargo().args([
        "build",
        "--release",
        "--package",
        "zcprof",
        "--package",
        "zcprof-bench",
    ]))?;
    let release = root.join("target/release");
    let bins = Bins {
        zcprof: release.join("zcprof"),
        syscall_loop: release.join("zcprof-syscall-loop"),
        reference: release.join("zcprof-reference"),
    };
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let file = data_file(&dir.join("loop-64M.bin"), 64 << 20)?;
    let mut results = Results::default();
    if opts.wants("overhead") {
        overhead::overhead(&bins, &dir, &file, opts, &mut results);
    }
    if opts.wants("bystander") {
        bystander::bystander(&bins, &dir, &file, opts, &mut results)?;
    }
    if opts.wants("kernel-stats") {
        kernel_stats::bpf_stats(&bins, &dir, &file, opts, &mut results)?;
    }
    if opts.wants("capacity") {
        capacity::capacity(&bins, &dir, &file, opts, &mut results)?;
    }
    if opts.wants("startup") {
        startup::startup(&bins, opts, &mut results)?;
    }
    if opts.wants("fidelity") {
        fidelity::fidelity(&bins, &dir, opts, &mut results)?;
    }
    if opts.wants("serve") {
        serve::serve(&bins, &dir, opts, &mut results)?;
    }
    if opts.wants("scrape") {
        scrape::scrape(&bins, &dir, opts, &mut results)?;
    }
    if opts.wants("siege") {
        siege::siege(&bins, &dir, opts, &mut results)?;
    }
    write_outputs(root, &dir, opts, results)
}

/// A file of `size` pseudo-random bytes, read once so it is in the page cache.
fn data_file(path: &Path, size: usize) -> Result<PathBuf> {
    if std::fs::metadata(path).map(|m| m.len()).ok() != Some(size as u64) {
        let mut bytes = vec![0u8; size];
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for chunk in bytes.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        std::fs::write(path, bytes)?;
    }
    let _ = std::fs::read(path)?;
    Ok(path.to_owned())
}

/// One run of the syscall loop under `wrapper` (empty: untraced): nanoseconds per syscall.
fn loop_once(
    bins: &Bins,
    dir: &Path,
    file: &Path,
    syscalls: u64,
    wrapper: &[String],
) -> Result<f64> {
    let result = dir.join("loop-result.txt");
    let _ = std::fs::remove_file(&result);
    let mut argv: Vec<String> = wrapper.to_vec();
    argv.push(bins.syscall_loop.display().to_string());
    argv.extend([
        file.display().to_string(),
        syscalls.to_string(),
        result.display().to_string(),
    ]);
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", argv[0]))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            argv.join(" "),
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    read_result(&result).with_context(|| argv.join(" "))
}

/// The loop's `<syscalls> <nanoseconds>`, as nanoseconds per syscall.
fn read_result(path: &Path) -> Result<f64> {
    let text = std::fs::read_to_string(path).context("the loop wrote no result")?;
    let mut it = text.split_whitespace().map(str::parse::<f64>);
    let (Some(Ok(calls)), Some(Ok(ns))) = (it.next(), it.next()) else {
        bail!("bad loop result {text:?}");
    };
    Ok(ns / calls)
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// bpftrace's count of entries for the child it runs (`cpid`): the cheapest useful script.
const BPFTRACE_COUNT: &str = "tracepoint:raw_syscalls:sys_enter /pid == cpid/ { @n = count(); }";

/// The bpftrace equivalent of zcprof's counting set: entries, exits with per-thread latency, and
/// context switches of the traced process.
const BPFTRACE_FULL: &str = "tracepoint:raw_syscalls:sys_enter /pid == cpid/ { @n = count(); @start[tid] = nsecs; } \
tracepoint:raw_syscalls:sys_exit /@start[tid]/ { @lat = sum(nsecs - @start[tid]); delete(@start[tid]); } \
tracepoint:sched:sched_switch /pid == cpid/ { @cs = count(); }";

/// A variant of the overhead case: its wrapper command and how many syscalls its loop makes.
struct Variant {
    name: &'static str,
    wrapper: Vec<String>,
    syscalls: u64,
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|&x| x.to_owned()).collect()
}

/// The row of two empty raw tracepoint programs on `sys_enter` and `sys_exit`: what any BPF
/// syscall hook costs on this kernel before it does anything.
const FLOOR: &str = "two empty raw_tp programs on sys_enter/sys_exit (`zcprof __empty-hooks`)";

/// Runs a wrapper whose last argument is the whole loop command line (bpftrace -c).
fn run_wrapped_string(argv: &[String], dir: &Path) -> Result<f64> {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            argv[0],
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    read_result(&dir.join("loop-result.txt"))
}

/// Starts `zcprof attach` (or exec) and waits until its programs are loaded: its bpf-prog file
/// descriptors stop growing in number.
fn wait_loaded(child: &Child) -> Result<()> {
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", child.id())).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().contains("bpf-prog"))
                })
                .count()
        })
    };
    let start = Instant::now();
    let mut last = (0, Instant::now());
    while start.elapsed() < Duration::from_secs(20) {
        let n = fds();
        if n != last.0 {
            last = (n, Instant::now());
        } else if n > 0 && last.1.elapsed() > Duration::from_millis(300) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("zcprof did not attach within 20 s")
}

fn interrupt(child: &mut Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().cast_signed(), libc::SIGINT) };
    let _ = child.wait();
}

/// Runs the loop untraced while `observer` (given the pid of an idle `sleep`) watches that other
/// process; returns ns per syscall of the loop.
fn beside(
    bins: &Bins,
    dir: &Path,
    file: &Path,
    opts: &Options,
    observer: &[String],
) -> Result<f64> {
    let mut target = Command::new("sleep").arg("600").spawn()?;
    let mut argv: Vec<String> = observer.to_vec();
    argv.push(target.id().to_string());
    let mut watcher = Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let measured = if argv[0].ends_with("zcprof") {
        wait_loaded(&watcher)
    } else {
        // perf has no readiness signal: give it time to open its events.
        std::thread::sleep(Duration::from_millis(1500));
        Ok(())
    }
    .and_then(|()| loop_once(bins, dir, file, opts.syscalls, &[]));
    interrupt(&mut watcher);
    let _ = target.kill();
    let _ = target.wait();
    measured
}

/// The machine the numbers come from.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "kernel {}, {cores} cores ({cpu}), {}",
        kernel.trim(),
        mem.split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
            .replace("kB", "kB RAM")
    )
}

fn write_outputs(root: &Path, dir: &Path, opts: &Options, results: Results) -> Result<()> {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut md = format!(
        "# Benchmarks\n\nProduced by `sudo -E cargo xtask bench` (repetitions: {reps}, loop: {n} syscalls) on \
         {date}, commit {commit}.\n\nMachine: {}.\n\nEvery figure is measured in this one run; each \
         variant is interleaved with its untraced baseline, {reps} times, and shown as median, min \
         and max. Nothing here is a test: no threshold fails a build; the targets of issue 5 are \
         read off these tables.\n",
        machine(),
        reps = opts.reps,
        n = opts.syscalls
    );
    let docs = root.join("docs");
    std::fs::create_dir_all(&docs)?;
    if opts.only.is_empty() {
        for (title, body) in &results.sections {
            let _ = write!(md, "\n## {title}\n\n{body}");
        }
    } else {
        // Only some cases ran: their sections replace the same-numbered ones of the last run.
        let mark = format!(
            "*Re-run alone (`cargo xtask bench --only {}`, repetitions: {}) on {date}, commit \
             {commit}; the rest of this page comes from the run its heading names.*\n\n",
            opts.only.join(" --only "),
            opts.reps
        );
        let old = std::fs::read_to_string(docs.join("benchmarks.md")).unwrap_or_default();
        md = merge_sections(&old, &results.sections, &mark);
    }
    std::fs::write(docs.join("benchmarks.md"), &md)?;
    let mut json = results.json;
    json.insert("machine".into(), Value::String(machine()));
    json.insert("date".into(), Value::String(date));
    json.insert("commit".into(), Value::String(commit));
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_string_pretty(&Value::Object(json))?,
    )?;
    println!("{md}");
    eprintln!(
        "bench: wrote docs/benchmarks.md and {}",
        dir.join("results.json").display()
    );
    Ok(())
}

/// `old` (a benchmarks page) with each of `sections` in place of the section of the same
/// number ("7. ..."), or after the last, its body led by `mark`.
fn merge_sections(old: &str, sections: &[(String, String)], mark: &str) -> String {
    let number = |title: &str| title.split_once('.').map(|(n, _)| n.trim().to_owned());
    let mut parts: Vec<String> = old.split("\n## ").map(str::to_owned).collect();
    for (title, body) in sections {
        let fresh = format!("{title}\n\n{mark}{body}");
        let at = parts
            .iter()
            .skip(1)
            .position(|p| number(p) == number(title))
            .map(|i| i + 1);
        match at {
            Some(i) => parts[i] = fresh,
            None => parts.push(fresh),
        }
    }
    parts.join("\n## ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_run_alone_replaces_its_own_section() {
        let old = "# Benchmarks\n\nhead\n\n## 1. One\n\nold one\n\n## 7. Seven\n\nold seven\n";
        let new = vec![
            ("7. Seven".to_owned(), "new seven\n".to_owned()),
            ("8. Eight".to_owned(), "new eight\n".to_owned()),
        ];
        let md = merge_sections(old, &new, "*alone* ");
        assert_eq!(
            md,
            "# Benchmarks\n\nhead\n\n## 1. One\n\nold one\n\n## 7. Seven\n\n*alone* new seven\n\n## \
             8. Eight\n\n*alone* new eight\n"
        );
    }

    #[test]
    fn median_interval_takes_the_sign_test_ranks() {
        // n = 15: the 4th and 12th values (coverage 96.5 %), as the tables give.
        let v: Vec<f64> = (1..=15).map(f64::from).collect();
        assert_eq!(median_interval(&v), Some((4.0, 12.0)));
        // n = 6: only the extremes (96.9 %); n = 5 has no 95 % interval.
        let v: Vec<f64> = (1..=6).map(f64::from).collect();
        assert_eq!(median_interval(&v), Some((1.0, 6.0)));
        assert_eq!(median_interval(&[1.0, 2.0, 3.0, 4.0, 5.0]), None);
    }

    #[test]
    fn a_low_median_is_below_only_when_its_interval_is() {
        let noisy: Vec<f64> = [0.6, 0.7, 0.8, 0.9, 0.93, 0.94, 0.94, 1.1, 1.2, 1.3, 1.4].to_vec();
        assert_eq!(verdict_of(&noisy, 0.95), Verdict::WithinNoise);
        assert_eq!(verdict_of(&[0.8; 15], 0.95), Verdict::Below);
        assert_eq!(verdict_of(&[0.95; 15], 0.95), Verdict::Met);
        assert_eq!(verdict_of(&[0.97; 15], 0.98), Verdict::Below);
    }
}
