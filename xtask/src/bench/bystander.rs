//! Case 2: what a process that is not traced pays while zcprof measures another one.
#[allow(clippy::wildcard_imports)]
use super::*;

/// Case 2: an untraced process's loop while zcprof measures another process, beside the floor
/// any `raw_syscalls` observer sets (perf stat on the same two tracepoints).
pub(super) fn bystander(
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
