//! How busy the measured process was inside its window: its time on a CPU, and a process that
//! moved no data at all (an idle server, or the master of one whose workers do the work).
use std::fmt::Write as _;

use super::{Figure, FigureId, Figures, Source, hook};
use crate::{
    collect::Counts,
    probes::{HookPlan, catalog::Point},
};

/// A process that existed as a child of the attached one before the attach (not followed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Child {
    pub pid: u32,
    pub name: String,
}

/// At most this many children are named in a note.
const NAMED_CHILDREN: usize = 8;

/// `cpu_time_ns`: the measured process tree's time on a CPU, from its task-clock counters, else
/// from the cpu-clock samples' periods (each sample stands for the CPU time since the one
/// before it); and for a program, a note when the window held much idle time.
#[expect(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "display precision; byte rates are positive and far below 2^64"
)]
pub fn cpu_time(
    plan: &HookPlan,
    counts: &Counts,
    program: bool,
    bytes: u64,
    figures: &mut Figures,
    notes: &mut Vec<String>,
) {
    let samples = counts.samples_user + counts.samples_kernel + counts.samples_lost;
    let sampling = plan.chosen(Point::CopySample).is_some();
    let ns = match &counts.task_clock_ns {
        Some(Ok(ns)) => {
            let check = if sampling {
                format!(
                    "; sampling saw {:.1} ms in {samples} cpu-clock samples (a short-lived \
                     child's last partial period is not sampled, so that is lower)",
                    counts.sampled_cpu_ns as f64 / 1e6
                )
            } else {
                String::new()
            };
            figures.insert(
                FigureId::CpuTimeNs,
                Figure::scalar(
                    *ns as f64,
                    &Source::Counted(vec![
                        "perf_event task-clock, one counter per thread, inherited by the threads \
                         and processes they start"
                            .to_owned(),
                    ]),
                    format!(
                        "time the measured process tree spent on a CPU (user and kernel) while \
                         measured{check}"
                    ),
                ),
            );
            *ns
        }
        // No counter (a trace re-read, a live view, a kernel that refused it): the samples'
        // periods, where sampling ran.
        other if sampling => {
            let source = Source::Sampled(vec![format!(
                "{} at {} Hz",
                hook(plan, Point::CopySample),
                plan.sample_hz
            )]);
            let why = match other {
                Some(Err(e)) => format!(" ({e})"),
                _ => String::new(),
            };
            figures.insert(
                FigureId::CpuTimeNs,
                Figure::scalar(
                    counts.sampled_cpu_ns as f64,
                    &source,
                    format!(
                        "time the measured threads spent on a CPU (user and kernel) while \
                         measured: the sum of the sampling periods of their {samples} cpu-clock \
                         samples, no counter{why}"
                    ),
                ),
            );
            counts.sampled_cpu_ns
        }
        other => {
            let why = match other {
                Some(Err(e)) => e.clone(),
                _ => super::missing(plan, Point::CopySample),
            };
            figures.insert(FigureId::CpuTimeNs, Figure::unavailable(why));
            return;
        }
    };
    let window = counts.window_ns();
    if !program || window == 0 || ns == 0 {
        return;
    }
    // Said when the window held mostly waiting: a server between requests, a program blocked on
    // a disk. Throughput over the window then reads as a slow transfer.
    if ns * 2 < window {
        let busy = (ns as f64 / 1e9).max(f64::MIN_POSITIVE);
        notes.push(format!(
            "The measured window of {:.1} ms (elapsed) held {:.1} ms on a CPU: \
             the process spent {:.0}% of it off a CPU (blocked or asleep: waiting for requests, a \
             disk, the network, a timer). \
             Throughput over the window is {}/s; over its time on a CPU, {}/s.",
            window as f64 / 1e6,
            ns as f64 / 1e6,
            100.0 * (1.0 - ns as f64 / window as f64),
            super::fmt_bytes((bytes as f64 * 1e9 / window as f64) as u64),
            super::fmt_bytes((bytes as f64 / busy) as u64),
        ));
    }
}

/// A note for a program that moved no payload while measured, naming the children that may
/// have (they were running before the attach, so they were not measured).
#[must_use]
pub fn idle_target(name: &str, syscalls: u64, moved: u64, children: &[Child]) -> Option<String> {
    if moved > 0 {
        return None;
    }
    let mut note = format!(
        "{name} made no data transfers while measured: {syscalls} syscalls, none of which \
         returned payload bytes (read, write, sendfile and the like), so every copy and DMA \
         figure is 0."
    );
    if !children.is_empty() {
        let named: Vec<String> = children
            .iter()
            .take(NAMED_CHILDREN)
            .map(|c| format!("{} ({})", c.pid, c.name))
            .collect();
        let _ = write!(
            note,
            " Its children, running before the attach and so not measured, may do the work \
             (a server's master leaves the transfers to its workers): {}{}; attach to one of \
             them (--pid {}).",
            named.join(", "),
            if children.len() > NAMED_CHILDREN {
                format!(" and {} more", children.len() - NAMED_CHILDREN)
            } else {
                String::new()
            },
            children[0].pid
        );
    }
    Some(note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_master_names_its_workers() {
        let kids = [
            Child {
                pid: 11,
                name: "nginx".into(),
            },
            Child {
                pid: 12,
                name: "nginx".into(),
            },
        ];
        let n = idle_target("pid 10", 57, 0, &kids).unwrap();
        assert!(
            n.contains("no data transfers") && n.contains("57 syscalls"),
            "{n}"
        );
        assert!(
            n.contains("11 (nginx), 12 (nginx)") && n.contains("--pid 11"),
            "{n}"
        );
        assert!(idle_target("pid 10", 57, 4096, &kids).is_none());
        let alone = idle_target("pid 10", 0, 0, &[]).unwrap();
        assert!(!alone.contains("children"), "{alone}");
    }
}
