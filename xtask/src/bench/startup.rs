//! Case 6: start-up time, from zcprof's own timing line and wall time.
#[allow(clippy::wildcard_imports)]
use super::*;

/// Case 6: start-up, from the `ZCPROF_TIMING` line and wall time.
pub(super) fn startup(bins: &Bins, opts: &Options, results: &mut Results) -> Result<()> {
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
