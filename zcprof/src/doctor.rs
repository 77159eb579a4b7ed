//! `zcprof doctor`: what this kernel allows, point by point. Each hook variant is loaded and
//! attached on its own, so every answer is the kernel's, not a guess from its version.

use crate::{
    caps::{self, Kernel},
    probes::{
        self,
        catalog::{self, HookKind, Point, Variant},
    },
};

/// One variant's outcome.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Check {
    pub hook: HookKind,
    pub target: &'static str,
    pub works: bool,
    /// Why not, in the kernel's words plus what they usually mean.
    pub reason: Option<String>,
}

/// One measurement point: what works, and what a run would use.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PointReport {
    pub point: Point,
    pub required: bool,
    pub chosen: Option<HookKind>,
    pub checks: Vec<Check>,
}

/// The whole diagnosis.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Diagnosis {
    pub kernel: Kernel,
    pub privileged: bool,
    pub points: Vec<PointReport>,
    /// Network interfaces: physical or virtual, scatter-gather and checksum offload.
    pub interfaces: Vec<caps::nic::Nic>,
    /// The hook set `zcprof serve` would use here: each raw tracepoint, tried for real.
    pub serve: Vec<ServeHook>,
}

/// One hook of `zcprof serve`'s always-on set.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServeHook {
    /// The raw tracepoint.
    pub tracepoint: &'static str,
    pub works: bool,
    pub reason: Option<String>,
}

impl Diagnosis {
    /// True when every point a report needs has a working hook.
    #[must_use]
    pub fn usable(&self) -> bool {
        self.privileged
            && self
                .points
                .iter()
                .all(|p| !p.required || p.chosen.is_some())
    }
}

/// Adds the usual meaning of an errno to the kernel's answer.
fn explain(error: &str) -> String {
    if error.contains("os error 1)") || error.contains("Operation not permitted") {
        format!("EPERM from the kernel's security policy (lockdown or an LSM): {error}")
    } else if error.contains("os error 2)") || error.contains("No such file") {
        format!("not available on this kernel: {error}")
    } else {
        error.to_owned()
    }
}

fn check(kernel: &Kernel, object: &mut Result<aya::Ebpf, String>, variant: &Variant) -> Check {
    let result = match kernel.precondition(variant.kind, variant.target) {
        Some(missing) => Err(missing),
        None => match object {
            Ok(ebpf) => {
                probes::attach_variant(ebpf, variant, 0, probes::SAMPLE_HZ).map_err(|e| explain(&e))
            }
            Err(e) => Err(e.clone()),
        },
    };
    Check {
        hook: variant.kind,
        target: variant.target,
        works: result.is_ok(),
        reason: result.err(),
    }
}

/// Probes every variant of every point, each loaded and attached for real. One object holds
/// them all (each program is separate, so one variant's failure does not touch another), and
/// they are detached together at the end: loading the object per variant took seconds.
#[must_use]
pub fn diagnose() -> Diagnosis {
    let kernel = Kernel::detect();
    let privileged = caps::check_privileges().is_ok();
    crate::timing::mark("kernel detected");
    let mut object = if privileged {
        probes::loader()
            .override_global(catalog::globals::TARGET_TGID, &0u32, true)
            .load(probes::OBJECT)
            .map_err(|e| e.to_string())
    } else {
        Err(caps::CapsError::NotPrivileged.to_string())
    };
    crate::timing::mark("object loaded");
    let mut points = Vec::new();
    for point in Point::ALL {
        let checks: Vec<Check> = if privileged {
            catalog::VARIANTS
                .iter()
                .filter(|v| v.point == point)
                .map(|v| check(&kernel, &mut object, v))
                .collect()
        } else {
            Vec::new()
        };
        let chosen = checks.iter().find(|c| c.works).map(|c| c.hook);
        points.push(PointReport {
            point,
            required: point.required(),
            chosen,
            checks,
        });
    }
    crate::timing::mark("every variant tried");
    if let Ok(ebpf) = &mut object {
        probes::unload_all(ebpf);
    }
    crate::timing::mark("programs unloaded");
    let serve = if privileged {
        probes::serve::probe()
            .into_iter()
            .map(|(tracepoint, r)| ServeHook {
                tracepoint,
                works: r.is_ok(),
                reason: r.err().map(|e| explain(&e)),
            })
            .collect()
    } else {
        Vec::new()
    };
    Diagnosis {
        kernel,
        privileged,
        points,
        interfaces: caps::nic::interfaces(),
        serve,
    }
}

/// The default rendering, one screen: the kernel's facts in one line, the hook each point
/// uses, the points without one grouped by why, the interfaces, serve's hooks, and the flag
/// for every variant tried.
#[must_use]
pub fn summary(d: &Diagnosis) -> String {
    let k = &d.kernel;
    let mut lines = vec![format!(
        "kernel {}; BTF {}; tracefs {}; kprobes {}; preemption {}; privileges {}",
        k.release,
        if k.btf { "yes" } else { "no" },
        k.tracefs
            .as_ref()
            .map_or_else(|| "not mounted".to_owned(), |p| p.display().to_string()),
        if k.kprobes { "yes" } else { "not built" },
        k.preemption.as_deref().unwrap_or("unknown"),
        if d.privileged {
            "ok"
        } else {
            "missing: run as root to probe hooks"
        }
    )];
    let hooked: Vec<String> = d
        .points
        .iter()
        .filter_map(|p| Some(format!("{} {}", p.point.name(), p.chosen?.name())))
        .collect();
    lines.push(format!(
        "hooks ({} of {} points): {}",
        hooked.len(),
        d.points.len(),
        hooked.join(", ")
    ));
    lines.extend(unhooked(d));
    let nics: Vec<String> = d
        .interfaces
        .iter()
        .map(|n| {
            format!(
                "{} ({}, scatter-gather {})",
                n.name,
                if n.physical { "physical" } else { "virtual" },
                match n.scatter_gather {
                    Some(true) => "on",
                    Some(false) => "off",
                    None => "unknown",
                }
            )
        })
        .collect();
    lines.push(format!("interfaces: {}", nics.join(", ")));
    if !d.serve.is_empty() {
        let works = d.serve.iter().filter(|h| h.reason.is_none()).count();
        lines.push(format!(
            "serve: {works} of {} raw tracepoints work",
            d.serve.len()
        ));
    }
    lines.push("--explain: every hook variant tried, with the kernel's answer".to_owned());
    let layout = crate::report::Layout::terminal(crate::report::Stream::Stdout);
    lines
        .iter()
        .map(|l| crate::report::wrap(l, &layout, "", "  "))
        .collect()
}

/// The points without a working hook, grouped by the reasons of their variants (the kernel's
/// words up to their first colon: "EPERM from the kernel's security policy (...)").
fn unhooked(d: &Diagnosis) -> Vec<String> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for p in d.points.iter().filter(|p| p.chosen.is_none()) {
        let mut why: Vec<String> = Vec::new();
        for c in &p.checks {
            let head = c
                .reason
                .as_deref()
                .map_or("", |r| r.split(": ").next().unwrap_or(r));
            let text = format!("{} {head}", c.hook.name());
            if !why.contains(&text) {
                why.push(text);
            }
        }
        let why = why.join("; ");
        let name = format!(
            "{}{}",
            p.point.name(),
            if p.required { " (required)" } else { "" }
        );
        match groups.iter_mut().find(|(w, _)| *w == why) {
            Some((_, names)) => names.push(name),
            None => groups.push((why, vec![name])),
        }
    }
    groups
        .into_iter()
        .map(|(why, names)| format!("no hook for {}: {why}", names.join(", ")))
        .collect()
}

/// The terminal rendering with `--explain`: every variant tried at every point.
pub fn render(d: &Diagnosis) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let k = &d.kernel;
    let _ = writeln!(out, "kernel      {}", k.release);
    let _ = writeln!(
        out,
        "BTF         {}",
        if k.btf {
            "yes (/sys/kernel/btf/vmlinux)"
        } else {
            "no"
        }
    );
    let _ = writeln!(
        out,
        "tracefs     {}",
        k.tracefs
            .as_ref()
            .map_or_else(|| "not mounted".to_owned(), |p| format!("{}", p.display()))
    );
    let _ = writeln!(
        out,
        "kprobes     {}",
        if k.kprobes {
            "offered by the kernel"
        } else {
            "kernel built without kprobes"
        }
    );
    let _ = writeln!(
        out,
        "preemption  {}",
        k.preemption.as_deref().map_or_else(
            || "unknown (debugfs sched/preempt not readable)".to_owned(),
            |m| format!("{m} (the model in force)")
        )
    );
    let _ = writeln!(
        out,
        "privileges  {}",
        if d.privileged {
            "ok"
        } else {
            "missing: run as root to probe hooks"
        }
    );
    for p in &d.points {
        let chosen = p.chosen.map_or("none", HookKind::name);
        let role = if p.required { "" } else { " (optional)" };
        let _ = writeln!(out, "\n{}{role}: chosen {chosen}", p.point.name());
        for c in &p.checks {
            match &c.reason {
                None => {
                    let _ = writeln!(out, "  {:<10} works   ({})", c.hook.name(), c.target);
                }
                Some(why) => {
                    let _ = writeln!(out, "  {:<10} refused ({}): {why}", c.hook.name(), c.target);
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "\ninterfaces (sendfile skips the last CPU copy only with scatter-gather):"
    );
    let onoff = |v: Option<bool>| match v {
        Some(true) => "on",
        Some(false) => "off",
        None => "unknown",
    };
    for nic in &d.interfaces {
        let _ = writeln!(
            out,
            "  {:<12} {:<8} scatter-gather {:<7} tx-checksum {}",
            nic.name,
            if nic.physical { "physical" } else { "virtual" },
            onoff(nic.scatter_gather),
            onoff(nic.tx_checksum)
        );
    }
    if !d.serve.is_empty() {
        let _ = writeln!(
            out,
            "\nserve (always-on; raw tracepoints on the data path, none at syscall entry or return):"
        );
        for h in &d.serve {
            match &h.reason {
                None => {
                    let _ = writeln!(out, "  raw_tp     works   ({})", h.tracepoint);
                }
                Some(why) => {
                    let _ = writeln!(out, "  raw_tp     refused ({}): {why}", h.tracepoint);
                }
            }
        }
    }
    out
}
