//! Case 1: tracing overhead, zcprof's counting and trace modes beside bpftrace, perf and strace
//! on the syscall loop, each run paired with an untraced run of the same repetition.
#[allow(clippy::wildcard_imports)]
use super::*;

/// Case 1: tracing overhead on the syscall loop.
#[expect(
    clippy::too_many_lines,
    reason = "one benchmark case: its variants, their runs and the table"
)]
pub(super) fn overhead(
    bins: &Bins,
    dir: &Path,
    file: &Path,
    opts: &Options,
    results: &mut Results,
) {
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
        // Each rep's ratio to the baseline of the same rep; what a variant adds is read off that
        // paired ratio, not off two medians taken across reps, which a machine that drifts
        // between reps (a shared host) moves apart.
        let ratios: Vec<f64> = series.iter().zip(&base).map(|(v, b)| v / b).collect();
        let added = (median(&ratios) - 1.0) * base_median;
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
    // The paired median ratio of a variant (see above).
    let ratio = |name: &str| {
        per_syscall.get(name).map(|s| {
            let r: Vec<f64> = s.iter().zip(&base).map(|(v, b)| v / b).collect();
            median(&r)
        })
    };
    let counting = ratio("zcprof exec (counting)").map(|r| (r - 1.0) * base_median);
    let bpftrace = ratio("bpftrace enter/exit/latency/sched").map(|r| (r - 1.0) * base_median);
    let tracing = ratio("zcprof exec --trace");
    let floor = ratio(FLOOR).map(|r| (r - 1.0) * base_median);
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
}
