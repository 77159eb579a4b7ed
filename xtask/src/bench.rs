//! The benchmark harness (`cargo xtask bench`): zcprof's own cost and its workloads' fidelity,
//! each variant measured side by side with an untraced baseline in the same invocation,
//! interleaved, several times. Prints median, min and max as ratios to the baseline, and writes
//! `target/bench/results.json` and `docs/benchmarks.md`.
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
    if s.len() % 2 == 0 {
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
    overhead(&bins, &dir, &file, opts, &mut results)?;
    bystander(&bins, &dir, &file, opts, &mut results)?;
    bpf_stats(&bins, &dir, &file, opts, &mut results)?;
    capacity(&bins, &dir, &file, opts, &mut results)?;
    startup(&bins, opts, &mut results)?;
    fidelity(&bins, &dir, opts, &mut results)?;
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

/// The row of two empty raw tracepoint programs on sys_enter and sys_exit: what any BPF
/// syscall hook costs on this kernel before it does anything.
const FLOOR: &str = "two empty raw_tp programs on sys_enter/sys_exit (`zcprof __empty-hooks`)";

/// Case 1: tracing overhead on the syscall loop.
fn overhead(
    bins: &Bins,
    dir: &Path,
    file: &Path,
    opts: &Options,
    results: &mut Results,
) -> Result<()> {
    let z = bins.zcprof.display().to_string();
    let trace = dir.join("overhead-trace.json").display().to_string();
    let n = opts.syscalls;
    let mut variants = vec![
        Variant {
            name: "untraced",
            wrapper: Vec::new(),
            syscalls: n,
        },
        Variant {
            name: FLOOR,
            wrapper: s(&[&z, "__empty-hooks", "--"]),
            syscalls: n,
        },
        Variant {
            name: "zcprof exec (counting)",
            wrapper: s(&[&z, "exec", "--"]),
            syscalls: n,
        },
        Variant {
            name: "zcprof exec --no-follow (counting)",
            wrapper: s(&[&z, "exec", "--no-follow", "--"]),
            syscalls: n,
        },
        // A third of the syscalls: the trace of 3M syscalls would be a gigabyte of JSON.
        Variant {
            name: "zcprof exec --trace",
            wrapper: s(&[&z, "exec", "--trace", &trace, "--"]),
            syscalls: n / 3,
        },
    ];
    let mut missing = Vec::new();
    if have("bpftrace") {
        variants.push(Variant {
            name: "bpftrace count (pid filter)",
            wrapper: s(&["bpftrace", "-q", "-e", BPFTRACE_COUNT, "-c"]),
            syscalls: n,
        });
        variants.push(Variant {
            name: "bpftrace enter/exit/latency/sched",
            wrapper: s(&["bpftrace", "-q", "-e", BPFTRACE_FULL, "-c"]),
            syscalls: n,
        });
    } else {
        missing.push("bpftrace");
    }
    if have("perf") {
        variants.push(Variant {
            name: "perf stat -e raw_syscalls:sys_enter,context-switches",
            wrapper: s(&[
                "perf",
                "stat",
                "-e",
                "raw_syscalls:sys_enter,context-switches",
                "-o",
                "/dev/null",
                "--",
            ]),
            syscalls: n,
        });
        variants.push(Variant {
            name: "perf trace -s",
            wrapper: s(&["perf", "trace", "-s", "-o", "/dev/null", "--"]),
            syscalls: n / 100,
        });
    } else {
        missing.push("perf");
    }
    if have("strace") {
        variants.push(Variant {
            name: "strace -c -f",
            wrapper: s(&["strace", "-c", "-f", "-o", "/dev/null", "--"]),
            syscalls: n / 100,
        });
    } else {
        missing.push("strace");
    }
    let mut per_syscall: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut errors: BTreeMap<&str, String> = BTreeMap::new();
    // bpftrace -c takes the command as one string.
    for rep in 0..opts.reps {
        for v in &variants {
            let mut wrapper = v.wrapper.clone();
            let result = if wrapper.last().is_some_and(|w| w == "-c") {
                let cmd = format!(
                    "{} {} {} {}",
                    bins.syscall_loop.display(),
                    file.display(),
                    v.syscalls,
                    dir.join("loop-result.txt").display()
                );
                wrapper.push(cmd);
                let _ = std::fs::remove_file(dir.join("loop-result.txt"));
                run_wrapped_string(&wrapper, dir)
            } else {
                loop_once(bins, dir, file, v.syscalls, &wrapper)
            };
            match result {
                Ok(ns) => per_syscall.entry(v.name).or_default().push(ns),
                Err(e) => {
                    errors.insert(v.name, e.to_string());
                }
            }
            eprint!(
                "\rbench: overhead rep {}/{}: {:<55}",
                rep + 1,
                opts.reps,
                v.name
            );
        }
    }
    let _ = std::fs::remove_file(&trace);
    eprintln!();
    let base: Vec<f64> = per_syscall.get("untraced").cloned().unwrap_or_default();
    let base_median = median(&base);
    let mut table = String::from(
        "| variant | syscalls per run | ns/syscall (median) | ratio median | ratio min | ratio max | added ns/syscall |\n|---|---|---|---|---|---|---|\n",
    );
    let mut json_rows = serde_json::Map::new();
    for v in &variants {
        let Some(series) = per_syscall.get(v.name) else {
            let _ = writeln!(
                table,
                "| {} | {} | failed: {} | | | | |",
                v.name,
                v.syscalls,
                errors.get(v.name).map_or("", String::as_str)
            );
            continue;
        };
        // Each rep's ratio to the baseline of the same rep.
        let ratios: Vec<f64> = series.iter().zip(&base).map(|(v, b)| v / b).collect();
        let added = median(series) - base_median;
        let _ = writeln!(
            table,
            "| {} | {} | {:.0} | {:.2}x | {:.2}x | {:.2}x | {:+.0} |",
            v.name,
            v.syscalls,
            median(series),
            median(&ratios),
            min(&ratios),
            max(&ratios),
            added
        );
        json_rows.insert(
            v.name.to_owned(),
            json!({ "syscalls": v.syscalls, "ns_per_syscall": stats(series), "ratio": stats(&ratios), "added_ns_per_syscall": added }),
        );
    }
    let counting = per_syscall
        .get("zcprof exec (counting)")
        .map(|s| median(s) - base_median);
    let bpftrace = per_syscall
        .get("bpftrace enter/exit/latency/sched")
        .map(|s| median(s) - base_median);
    let tracing = per_syscall
        .get("zcprof exec --trace")
        .map(|s| median(s) / base_median);
    let floor = per_syscall.get(FLOOR).map(|s| median(s) - base_median);
    let mut verdict = String::new();
    if let Some(c) = counting {
        let _ = writeln!(
            verdict,
            "- Target: counting mode adds at most 150 ns per syscall: measured {c:+.0} ns: {}.",
            if c <= 150.0 { "met" } else { "NOT met" }
        );
        if let Some(f) = floor {
            let _ = writeln!(
                verdict,
                "  Two programs that return at once on the same two tracepoints add {f:+.0} ns (the empty-programs row): \
                 the kernel's price for running any BPF program at syscall entry and return here (raw tracepoint \
                 dispatch, retpolines and return thunks). zcprof's accounting adds {:+.0} ns on top of it.",
                c - f
            );
        }
        if let Some(b) = bpftrace {
            let _ = writeln!(
                verdict,
                "- Target: at most a fifth of what the equivalent bpftrace script adds ({b:+.0} ns): {:.2} of it: {}.",
                c / b,
                if c <= b / 5.0 { "met" } else { "NOT met" }
            );
        }
    }
    if let Some(t) = tracing {
        let _ = writeln!(
            verdict,
            "- Target: trace mode at most 2x: measured {t:.2}x: {}.",
            if t <= 2.0 { "met" } else { "NOT met" }
        );
    }
    for m in &missing {
        let _ = writeln!(
            verdict,
            "- {m} is not installed: its variants were not measured."
        );
    }
    results.sections.push((
        "1. Tracing overhead: read() 4 KiB from a page-cached 64 MiB file, write() to /dev/null".into(),
        format!(
            "The loop times itself (CLOCK_MONOTONIC around the loop only), so tracer start-up is \
             not counted. Ratios are per syscall, each run against the untraced run of the same \
             repetition. strace and perf trace run a hundredth of the syscalls, trace mode a third.\n\n{table}\n{verdict}"
        ),
    ));
    results
        .json
        .insert("overhead".into(), Value::Object(json_rows));
    Ok(())
}

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
        std::fs::read_dir(format!("/proc/{}/fd", child.id()))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        std::fs::read_link(e.path())
                            .is_ok_and(|l| l.to_string_lossy().contains("bpf-prog"))
                    })
                    .count()
            })
            .unwrap_or(0)
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

/// Case 2: an untraced process's loop while zcprof measures another process, beside the floor
/// any raw_syscalls observer sets (perf stat on the same two tracepoints).
fn bystander(
    bins: &Bins,
    dir: &Path,
    file: &Path,
    opts: &Options,
    results: &mut Results,
) -> Result<()> {
    let z = bins.zcprof.display().to_string();
    let observers: Vec<(&str, Vec<String>)> = vec![
        (
            "beside `zcprof attach --pid <sleep>`",
            s(&[&z, "attach", "--pid"]),
        ),
        (
            "beside `zcprof attach --no-follow --pid <sleep>`",
            s(&[&z, "attach", "--no-follow", "--pid"]),
        ),
        (
            "beside two empty raw_tp programs on sys_enter/sys_exit (`zcprof __empty-hooks`)",
            s(&[&z, "__empty-hooks", "--pid"]),
        ),
        (
            "beside `perf stat -e raw_syscalls:sys_enter,raw_syscalls:sys_exit -p <sleep>`",
            s(&[
                "perf",
                "stat",
                "-e",
                "raw_syscalls:sys_enter,raw_syscalls:sys_exit",
                "-o",
                "/dev/null",
                "-p",
            ]),
        ),
    ];
    let mut base = Vec::new();
    let mut series: Vec<Vec<f64>> = vec![Vec::new(); observers.len()];
    for rep in 0..opts.reps {
        eprint!("\rbench: bystander rep {}/{}", rep + 1, opts.reps);
        base.push(loop_once(bins, dir, file, opts.syscalls, &[])?);
        for (i, (name, observer)) in observers.iter().enumerate() {
            if observer[0] == "perf" && !have("perf") {
                continue;
            }
            match beside(bins, dir, file, opts, observer) {
                Ok(ns) => series[i].push(ns),
                Err(e) => eprintln!("bench: {name}: {e}"),
            }
        }
    }
    eprintln!();
    let mut table = format!(
        "| variant | ns/syscall (median) | ratio median | ratio min | ratio max |\n|---|---|---|---|---|\n| alone | {:.0} | 1.00x | | |\n",
        median(&base)
    );
    let mut json_rows = serde_json::Map::new();
    json_rows.insert("alone".into(), json!({ "ns_per_syscall": stats(&base) }));
    let mut slowdown = None;
    for ((name, _), v) in observers.iter().zip(&series) {
        if v.is_empty() {
            continue;
        }
        let ratios: Vec<f64> = v.iter().zip(&base).map(|(a, b)| a / b).collect();
        let _ = writeln!(
            table,
            "| {name} | {:.0} | {:.3}x | {:.3}x | {:.3}x |",
            median(v),
            median(&ratios),
            min(&ratios),
            max(&ratios)
        );
        if slowdown.is_none() {
            slowdown = Some(median(&ratios) - 1.0);
        }
        json_rows.insert(
            (*name).to_owned(),
            json!({ "ns_per_syscall": stats(v), "ratio": stats(&ratios) }),
        );
    }
    let slowdown = slowdown.unwrap_or(f64::NAN);
    results.sections.push((
        "2. Bystander cost: the same loop, untraced, while another process is measured".into(),
        format!(
            "{table}\n- Target: bystander slowdown under 10 %: measured {:+.1} %: {}. While any program or \
             perf event is attached to the raw_syscalls tracepoints, every task on the machine takes \
             the kernel's slow syscall path and runs the attached programs' filter. The perf stat row \
             shows the slow path alone (no BPF); the empty-programs row shows what two BPF programs \
             that return at once cost every syscall of every task here, before any filter runs.\n",
            slowdown * 100.0,
            if slowdown < 0.10 { "met" } else { "NOT met" }
        ),
    ));
    results
        .json
        .insert("bystander".into(), Value::Object(json_rows));
    Ok(())
}

/// Program id -> name of every loaded program.
fn program_names() -> BTreeMap<u32, String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| (p.id(), p.name_as_str().unwrap_or("?").to_owned()))
        .collect()
}

/// (prog_id, run_time_ns, run_cnt) of the programs process `pid` holds, from its fdinfo.
fn program_stats(pid: u32) -> Vec<(u32, u64, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|info| info.contains("prog_type"))
        .filter_map(|info| {
            let field = |key: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .and_then(|v| v.trim().parse::<u64>().ok())
            };
            Some((
                u32::try_from(field("prog_id:")?).ok()?,
                field("run_time_ns:")?,
                field("run_cnt:")?,
            ))
        })
        .collect()
}

/// Case 3: the kernel's own accounting of each zcprof program (`kernel.bpf_stats_enabled`).
fn bpf_stats(
    bins: &Bins,
    dir: &Path,
    file: &Path,
    opts: &Options,
    results: &mut Results,
) -> Result<()> {
    const SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";
    eprintln!("bench: bpf_stats");
    let before = std::fs::read_to_string(SYSCTL).unwrap_or_else(|_| "0".into());
    std::fs::write(SYSCTL, "1").context("enabling kernel.bpf_stats_enabled")?;
    let measured = run_with_stats(bins, dir, file, opts, "exec");
    // The same loop under two programs that return at once: bpf_stats' own clock reads and the
    // dispatch, which every row above includes.
    let empty =
        measured.and_then(|m| Ok((m, run_with_stats(bins, dir, file, opts, "__empty-hooks")?)));
    let _ = std::fs::write(SYSCTL, before.trim());
    let (measured, empty) = empty?;
    let mut table =
        String::from("| program | runs | run_time_ns | ns per run |\n|---|---|---|---|\n");
    let mut rows = serde_json::Map::new();
    for (name, time, count) in measured.iter().chain(&empty) {
        let per = *time as f64 / *count as f64;
        let _ = writeln!(table, "| {name} | {count} | {time} | {per:.1} |");
        rows.insert(
            name.clone(),
            json!({ "run_cnt": count, "run_time_ns": time, "ns_per_run": per }),
        );
    }
    results.sections.push((
        "3. Per-program cost, from the kernel (`kernel.bpf_stats_enabled`, restored afterwards)"
            .into(),
        format!(
            "`zcprof exec` on the loop ({} syscalls), then `zcprof __empty-hooks` on it (the \
             `empty_*` rows: programs that return at once). Names are the kernel's, cut to 15 bytes; \
             the last reading before zcprof detached. Programs that never ran are left out. \
             bpf_stats times every run with two clock reads of its own, so the empty programs' ns \
             per run is that instrumentation plus dispatch; a program's own work is its ns per \
             run minus the empty program's on the same tracepoint.\n\n{table}",
            opts.syscalls
        ),
    ));
    results.json.insert("bpf_stats".into(), Value::Object(rows));
    Ok(())
}

/// Runs the loop under `zcprof <command> --` with bpf_stats on, and returns (name, run_time_ns,
/// run_cnt) of each of zcprof's programs that ran.
fn run_with_stats(
    bins: &Bins,
    dir: &Path,
    file: &Path,
    opts: &Options,
    command: &str,
) -> Result<Vec<(String, u64, u64)>> {
    let result = dir.join("loop-result.txt");
    let mut zcprof = Command::new(&bins.zcprof)
        .args([command, "--"])
        .arg(&bins.syscall_loop)
        .arg(file)
        .arg(opts.syscalls.to_string())
        .arg(&result)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // The programs go away with zcprof: keep the last reading taken while they ran.
    // The latest reading of each program: while zcprof detaches, its programs vanish one by one.
    let mut last: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    let mut names = BTreeMap::new();
    while zcprof.try_wait()?.is_none() {
        let now = program_stats(zcprof.id());
        // Names come from the kernel's program list; refreshed when a new program shows up.
        if now.iter().any(|(id, ..)| !names.contains_key(id)) {
            names = program_names();
        }
        for (id, time, count) in now {
            last.insert(id, (time, count));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(last
        .into_iter()
        .filter(|(_, (_, count))| *count > 0)
        .map(|(id, (time, count))| {
            let name = names
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("id {id}"));
            (name, time, count)
        })
        .collect())
}

/// Case 5: events per second a trace records with the default ring buffer, and exact loss
/// counting with a small one.
fn capacity(
    bins: &Bins,
    dir: &Path,
    file: &Path,
    opts: &Options,
    results: &mut Results,
) -> Result<()> {
    eprintln!("bench: trace capacity");
    let trace = dir.join("capacity-trace.json");
    let mut table = String::from(
        "| ring buffer | loops x syscalls | events recorded | events lost | recorded events/s | recorded + lost >= syscall returns |\n|---|---|---|---|---|---|\n",
    );
    let mut rows = serde_json::Map::new();
    let n = opts.syscalls / 3;
    let mut default_ok = None;
    // Two loops (one per core) offer twice the event rate one thread can.
    for (ring, loops) in [("16M", 1), ("16M", 2), ("64K", 1)] {
        let result = dir.join("loop-result.txt");
        let script = (0..loops)
            .map(|i| {
                format!(
                    "{} {} {n} {}{i}",
                    bins.syscall_loop.display(),
                    file.display(),
                    result.display()
                )
            })
            .collect::<Vec<_>>()
            .join(" & ");
        let out = Command::new(&bins.zcprof)
            .args(["exec", "--format", "json", "--trace"])
            .arg(&trace)
            .args(["--trace-buffer", ring, "--", "sh", "-c"])
            .arg(format!("{script}; wait"))
            .output()?;
        if !out.status.success() {
            bail!(
                "zcprof exec --trace failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let report: Value = serde_json::from_slice(&out.stdout)?;
        // The loops overlap: the longest one is the window of the whole event stream.
        let loop_ns: f64 = (0..loops)
            .filter_map(|i| {
                std::fs::read_to_string(format!("{}{i}", result.display()))
                    .ok()?
                    .split_whitespace()
                    .nth(1)?
                    .parse::<f64>()
                    .ok()
            })
            .fold(f64::NAN, f64::max);
        let events = report["trace"]["events"].as_u64().unwrap_or(0);
        let lost = report["trace"]["lost"].as_u64().unwrap_or(0);
        let returns: u64 = report["syscalls"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["count"].as_u64()).sum::<u64>())
            .unwrap_or(0)
            .saturating_sub(1);
        let rate = events as f64 / (loop_ns / 1e9);
        let covered = events + lost >= returns;
        let _ = writeln!(
            table,
            "| {ring}{} | {loops} x {n} | {events} | {lost} | {:.2} M | {} |",
            if ring == "16M" { " (default)" } else { "" },
            rate / 1e6,
            if covered { "yes" } else { "NO" }
        );
        if ring == "16M" && default_ok.is_none_or(|(_, r)| rate > r) {
            default_ok = Some((lost == 0, rate));
        }
        rows.insert(
            format!("{ring}/{loops}"),
            json!({ "loops": loops, "events": events, "lost": lost, "events_per_sec": rate, "syscall_returns": returns }),
        );
    }
    let _ = std::fs::remove_file(&trace);
    let verdict = match default_ok {
        Some((true, rate)) => format!(
            "- Target: at least 1M events/s recorded without loss with the default ring: {:.2}M events/s, none lost: {}. \
             This is the fastest rate the loops produce here (one event per syscall; two cores, shared with the consumer), so it is a lower bound of the capacity.\n",
            rate / 1e6,
            if rate >= 1e6 { "met" } else { "NOT met" }
        ),
        Some((false, rate)) => format!(
            "- Target: at least 1M events/s without loss: NOT met; loss began at {:.2}M events/s.\n",
            rate / 1e6
        ),
        None => String::new(),
    };
    results.sections.push((
        "5. Trace capacity: `zcprof exec --trace` on the loop".into(),
        format!("{table}\n{verdict}- Beyond capacity (the 64 KiB ring), every event is recorded or counted as lost: recorded + lost covers every syscall return.\n"),
    ));
    results.json.insert("capacity".into(), Value::Object(rows));
    Ok(())
}

/// Case 6: start-up, from the `ZCPROF_TIMING` line and wall time.
fn startup(bins: &Bins, opts: &Options, results: &mut Results) -> Result<()> {
    eprintln!("bench: start-up");
    let (mut attached, mut doctor, mut exec_true) = (Vec::new(), Vec::new(), Vec::new());
    let (mut doctor_tried, mut doctor_detach) = (Vec::new(), Vec::new());
    // The milliseconds of one `ZCPROF_TIMING` mark.
    let mark = |stderr: &[u8], what: &str| {
        let prefix = format!("zcprof: timing: {what} after ");
        String::from_utf8_lossy(stderr).lines().find_map(|l| {
            l.strip_prefix(prefix.as_str())
                .and_then(|r| r.trim_end_matches(" ms").parse::<f64>().ok())
        })
    };
    for _ in 0..opts.reps {
        let out = Command::new(&bins.zcprof)
            .args(["run", "--method", "sendfile", "--size", "1M"])
            .env("ZCPROF_TIMING", "1")
            .output()?;
        if let Some(ms) = mark(&out.stderr, "probes attached") {
            attached.push(ms);
        }
        let t = Instant::now();
        let out = Command::new(&bins.zcprof)
            .arg("doctor")
            .env("ZCPROF_TIMING", "1")
            .output()?;
        doctor.push(t.elapsed().as_secs_f64() * 1e3);
        if let (Some(tried), Some(unloaded)) = (
            mark(&out.stderr, "every variant tried"),
            mark(&out.stderr, "programs unloaded"),
        ) {
            doctor_tried.push(tried);
            doctor_detach.push(unloaded - tried);
        }
        let t = Instant::now();
        let _ = Command::new(&bins.zcprof)
            .args(["exec", "--", "true"])
            .output()?;
        exec_true.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let row = |name: &str, v: &[f64]| {
        format!(
            "| {name} | {:.0} | {:.0} | {:.0} | {} |\n",
            median(v),
            min(v),
            max(v),
            if median(v) < 500.0 { "met" } else { "NOT met" }
        )
    };
    // A part of a step: no target of its own.
    let part = |name: &str, v: &[f64]| {
        if v.is_empty() {
            return String::new();
        }
        format!(
            "| {name} | {:.0} | {:.0} | {:.0} | (part of the above) |\n",
            median(v),
            min(v),
            max(v)
        )
    };
    results.sections.push((
        "6. Start-up (release build)".into(),
        format!(
            "| step | median ms | min ms | max ms | target < 500 ms |\n|---|---|---|---|---|\n{}{}{}{}{}\n\
             doctor attaches every variant of every point, classic tracepoints among them. The kernel \
             tears each classic tracepoint's perf event down under its global event_mutex and waits \
             for RCU grace periods there, so those detaches run one after another however many \
             threads ask; the detach row is that wait.\n",
            row("`zcprof run --method sendfile --size 1M`: start to probes attached", &attached),
            row("`zcprof doctor`: whole run (tries every hook variant)", &doctor),
            part("`zcprof doctor`: start to every variant loaded and attached", &doctor_tried),
            part("`zcprof doctor`: detaching them (in parallel threads)", &doctor_detach),
            row("`zcprof exec -- true`: whole run (load, attach, detach, report)", &exec_true),
        ),
    ));
    results.json.insert(
        "startup_ms".into(),
        json!({
            "run_to_attached": stats(&attached),
            "doctor": stats(&doctor),
            "doctor_attach": stats(&doctor_tried),
            "doctor_detach": stats(&doctor_detach),
            "exec_true": stats(&exec_true),
        }),
    );
    Ok(())
}

/// One transfer through the child protocol (connect, `ready`, go byte, transfer, exit), timed
/// from the go byte to the last byte received. Returns bytes per second.
fn transfer_once(cmd: &mut Command, streams: usize, size: u64) -> Result<f64> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    let port = listener.local_addr()?.port();
    let mut child = cmd
        .arg(port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("stdout")?).read_line(&mut line)?;
    if line.trim() != "ready" {
        let mut err = String::new();
        let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
        let _ = child.wait();
        bail!("transfer child did not get ready: {}", err.trim());
    }
    let mut receivers = Vec::new();
    for _ in 0..streams {
        let (mut sock, _) = listener.accept()?;
        receivers.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            let mut got = 0u64;
            while let Ok(n) = sock.read(&mut buf) {
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            got
        }));
    }
    let start = Instant::now();
    child.stdin.take().context("stdin")?.write_all(b"g")?;
    let mut got = 0;
    for r in receivers {
        got += r.join().unwrap_or(0);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let status = child.wait()?;
    if !status.success() || got != size * streams as u64 {
        bail!("transfer failed: {status}, {got} bytes");
    }
    Ok(size as f64 / elapsed)
}

/// Case 4: zcprof's built-in workloads against minimal reference implementations, untraced.
fn fidelity(bins: &Bins, dir: &Path, opts: &Options, results: &mut Results) -> Result<()> {
    const SIZE: u64 = 256 << 20;
    let file = data_file(&dir.join("fidelity-256M.bin"), SIZE as usize)?;
    let methods = [
        "read-write",
        "mmap-write",
        "sendfile",
        "splice",
        "tee",
        "direct-io",
    ];
    let mut table = String::from(
        "| method | block | zcprof GB/s (median) | reference GB/s (median) | ratio median | ratio min | ratio max | target >= 0.95 |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut rows = serde_json::Map::new();
    let mut unmet = Vec::new();
    // A transfer takes a tenth of a second and this machine's throughput swings by tens of
    // percent from one to the next: three times the repetitions make the medians hold still.
    let fidelity_reps = opts.reps * 3;
    for method in methods {
        for block in [64u64 << 10, 1 << 20] {
            let streams = if method == "tee" { 2 } else { 1 };
            let (mut ours, mut theirs) = (Vec::new(), Vec::new());
            for rep in 0..fidelity_reps {
                eprint!(
                    "\rbench: fidelity {method} {}K rep {}/{fidelity_reps}        ",
                    block >> 10,
                    rep + 1,
                );
                let mut zc = Command::new(&bins.zcprof);
                zc.args(["__transfer", "--method", method, "--path"])
                    .arg(&file)
                    .args([
                        "--size",
                        &SIZE.to_string(),
                        "--block-size",
                        &block.to_string(),
                        "--addr",
                        "127.0.0.1",
                        "--port",
                    ]);
                let mut rf = Command::new(&bins.reference);
                rf.arg(method)
                    .arg(&file)
                    .args([SIZE.to_string(), block.to_string()]);
                // Alternate which goes first, so neither gains from the order (a warm receiver,
                // the other's freed memory).
                if rep % 2 == 0 {
                    ours.push(transfer_once(&mut zc, streams, SIZE)?);
                    theirs.push(transfer_once(&mut rf, streams, SIZE)?);
                } else {
                    theirs.push(transfer_once(&mut rf, streams, SIZE)?);
                    ours.push(transfer_once(&mut zc, streams, SIZE)?);
                }
            }
            let ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(a, b)| a / b).collect();
            let met = median(&ratios) >= 0.95;
            if !met {
                unmet.push(format!("{method} {} KiB", block >> 10));
            }
            let _ = writeln!(
                table,
                "| {method} | {} KiB | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
                block >> 10,
                median(&ours) / 1e9,
                median(&theirs) / 1e9,
                median(&ratios),
                min(&ratios),
                max(&ratios),
                if met { "met" } else { "NOT met" }
            );
            rows.insert(
                format!("{method}/{}K", block >> 10),
                json!({ "zcprof_bytes_per_sec": stats(&ours), "reference_bytes_per_sec": stats(&theirs), "ratio": stats(&ratios) }),
            );
        }
    }
    eprintln!();
    results.sections.push((
        "4. Workload fidelity: 256 MiB over loopback, untraced, zcprof's workload child vs a minimal reference".into(),
        format!(
            "Both speak the same protocol (ready, go, transfer, exit) and are timed by the harness from \
             the go byte to the last byte received; the reference is `bench/src/bin/reference.rs`. \
             Each repetition runs both, alternating which goes first; this case runs three times \
             the repetitions of the others ({fidelity_reps}). \
             The file is page-cached except for direct-io, which reads the disk with O_DIRECT.\n\n{table}\n{}",
            if unmet.is_empty() {
                "- Every method reaches 95 % of its reference.\n".to_owned()
            } else {
                format!("- Below 95 % of the reference: {}.\n", unmet.join(", "))
            }
        ),
    ));
    results.json.insert("fidelity".into(), Value::Object(rows));
    Ok(())
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
    for (title, body) in &results.sections {
        let _ = write!(md, "\n## {title}\n\n{body}");
    }
    let docs = root.join("docs");
    std::fs::create_dir_all(&docs)?;
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
