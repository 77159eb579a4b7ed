//! Trace export for teaching: individual events recorded through a ring buffer, written as Chrome
//! trace-event JSON that ui.perfetto.dev opens, and read back to re-render the cost table.
//!
//! A trace holds each run's events plus what events cannot tell (the workload, the hooks chosen,
//! sampled stacks, lost-event counts), so `zcprof report` rebuilds the same counts from the
//! events and renders them with the same model as a live run.
mod chrome;
mod events;
pub mod prometheus;
mod read;
mod record;

use std::{
    collections::BTreeMap,
    fs::File,
    io,
    path::{Path, PathBuf},
};

pub use read::{ReadRun, read};
pub use record::{Recorded, Recorder};

use crate::{
    collect::Counts,
    devices::DeviceNames,
    model::{FileInfo, NetPath},
    probes::PlanRecord,
    sink::SinkReport,
    workload::ChildUsage,
};

/// The layout version of the `zcprof` section; readers refuse other versions.
pub const FORMAT_VERSION: u32 = 1;

/// Errors of writing or reading a trace.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write the trace {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read the trace {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// Malformed, truncated, or not written by zcprof.
    #[error("{path} is not a usable zcprof trace: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// `--trace-buffer` is not a size the kernel accepts for a ring buffer.
    #[error(
        "--trace-buffer must be a power of two from one page ({page} bytes) to 2 GiB (the \
         kernel's largest ring buffer), not {size}"
    )]
    RingSize { size: u64, page: u32 },
}

/// A syscall still in progress when the programs were detached (the process blocked in it, or
/// died in it, like `exit_group`): counted as an entry, drawn as a slice with no end.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct Unfinished {
    pub tgid: u32,
    pub tid: u32,
    pub start_ns: u64,
    pub nr: u32,
}

/// What a run's events cannot tell, saved beside them.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RunContext {
    /// The method or program name.
    pub subject: String,
    /// A built-in workload (else a program under exec or attach).
    pub workload: bool,
    pub bytes: u64,
    pub block_size: u64,
    pub kernel: String,
    pub plan: PlanRecord,
    pub received: Vec<u64>,
    pub usage: Option<ChildUsage>,
    pub file: Option<FileInfo>,
    /// The network path of a built-in workload. Absent from traces written before zcprof
    /// recorded it, which still read (as `None`).
    #[serde(default)]
    pub net: Option<NetPath>,
    /// What a remote sink (`--to`) reported of itself. Absent from older traces (`None`).
    #[serde(default)]
    pub remote_receiver: Option<SinkReport>,
    /// msg-zerocopy's completion verdict. Absent from older traces (`None`).
    #[serde(default)]
    pub zerocopy: Option<crate::workload::Verdict>,
    /// The `io_uring` methods' completions. Absent from older traces (`None`).
    #[serde(default)]
    pub uring: Option<crate::workload::UringTally>,
    pub devices: DeviceNames,
    /// Whether a process tree was followed (the per-process table exists).
    pub followed: bool,
    /// Process names by tgid, where known.
    pub process_names: BTreeMap<u32, String>,
    /// The run's window, in nanoseconds from the start of the trace.
    pub start_ns: u64,
    pub end_ns: u64,
    /// Events the kernel recorded, and those it had no room for, per CPU.
    pub events: u64,
    pub lost_per_cpu: Vec<u64>,
    /// Events written after `--trace-limit` was reached: counted, not kept. Absent from older
    /// traces (0).
    #[serde(default)]
    pub over_limit: u64,
    /// Counts that are not events: returns of syscalls entered before probing, entries the
    /// in-flight map refused, and the cpu-clock samples with their stacks.
    pub unmatched_returns: u64,
    pub in_flight_lost: u64,
    pub samples_user: u64,
    pub samples_kernel: u64,
    pub samples_lost: u64,
    /// The samples' periods summed: CPU time. Absent from older traces (0).
    #[serde(default)]
    pub sampled_cpu_ns: u64,
    /// The task-clock counters' CPU time, where they could be read. Absent from older traces.
    #[serde(default)]
    pub task_clock_ns: Option<u64>,
    pub kernel_stacks: Vec<(Vec<String>, u64)>,
    /// Counters no event carries. Absent from older traces (zeros).
    #[serde(default)]
    pub counters: EventlessCounts,
}

/// The counters of a run that no trace event carries: the built-in receiver's socket reads and
/// the accounting of what could not be counted. Kept in the context so that `zcprof report`
/// shows them as the run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventlessCounts {
    pub receiver_recv_bytes: u64,
    pub returns_before_start: u64,
    pub new_task_returns: u64,
    pub refused_syscalls: u64,
    pub processes_lost: u64,
    pub processes_folded: u64,
    pub follow_lost: u64,
    pub devices_lost: u64,
    pub sockets_lost: u64,
    pub pids_forgotten: u64,
    pub program_misses: BTreeMap<String, u64>,
}

impl EventlessCounts {
    /// Those of `counts`.
    #[must_use]
    pub fn of(counts: &Counts) -> EventlessCounts {
        EventlessCounts {
            receiver_recv_bytes: counts.receiver_recv_bytes,
            returns_before_start: counts.returns_before_start,
            new_task_returns: counts.new_task_returns,
            refused_syscalls: counts.refused_syscalls,
            processes_lost: counts.processes_lost,
            processes_folded: counts.processes_folded,
            follow_lost: counts.follow_lost,
            devices_lost: counts.devices_lost,
            sockets_lost: counts.sockets_lost,
            pids_forgotten: counts.pids_forgotten,
            program_misses: counts.program_misses.clone(),
        }
    }

    /// Puts them back into counts rebuilt from events.
    pub fn restore(&self, counts: &mut Counts) {
        counts.receiver_recv_bytes = self.receiver_recv_bytes;
        counts.returns_before_start = self.returns_before_start;
        counts.new_task_returns = self.new_task_returns;
        counts.refused_syscalls = self.refused_syscalls;
        counts.processes_lost = self.processes_lost;
        counts.processes_folded = self.processes_folded;
        counts.follow_lost = self.follow_lost;
        counts.devices_lost = self.devices_lost;
        counts.sockets_lost = self.sockets_lost;
        counts.pids_forgotten = self.pids_forgotten;
        counts.program_misses.clone_from(&self.program_misses);
    }
}

/// One run's recording.
struct Run {
    context: RunContext,
    recorded: Recorded,
    unfinished: Vec<Unfinished>,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Written {
    pub path: PathBuf,
    /// Trace-event records in the file (kernel events plus metadata and counters).
    pub records: u64,
    /// Kernel events recorded and lost, over all runs.
    pub events: u64,
    pub lost: u64,
    /// Events past `--trace-limit`, over all runs, and the limit.
    pub over_limit: u64,
    pub limit: u64,
}

/// One command's trace: runs are added as they finish and the file is written at the end. The
/// file is created up front (an unwritable path fails before anything is measured) and removed
/// again if nothing is written.
pub struct Trace {
    path: PathBuf,
    /// Made by this run: removed again if the trace is never written.
    created: bool,
    file: Option<File>,
    ring_bytes: u32,
    /// Events kept at most, over all runs (`--trace-limit`).
    limit: u64,
    /// `CLOCK_MONOTONIC` (the clock of `bpf_ktime_get_ns`) when the trace began.
    origin_ns: u64,
    runs: Vec<Run>,
}

/// `CLOCK_MONOTONIC` in nanoseconds.
#[must_use]
pub fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u64::try_from(t.tv_nsec()).unwrap_or(0)
    })
}

impl Trace {
    /// Creates the trace file at `path`, with a ring buffer of `ring_bytes` per run, keeping at
    /// most `limit` events in all.
    ///
    /// # Errors
    /// When the path cannot be written or the size is not a valid ring size.
    pub fn create(path: &Path, ring_bytes: u64, limit: u64) -> Result<Trace, ExportError> {
        let page = crate::probes::page_size();
        let ring = u32::try_from(ring_bytes)
            .ok()
            .filter(|r| r.is_power_of_two() && *r >= page)
            .ok_or(ExportError::RingSize {
                size: ring_bytes,
                page,
            })?;
        let err = |source| ExportError::Write {
            path: path.to_owned(),
            source,
        };
        // Opened, not truncated: a file that exists keeps its contents until the trace is
        // written, so a run that fails or is interrupted destroys nothing.
        let (file, created) = crate::files::open_to_write(path).map_err(err)?;
        Ok(Trace {
            path: path.to_owned(),
            created,
            file: Some(file),
            ring_bytes: ring,
            limit,
            origin_ns: monotonic_ns(),
            runs: Vec::new(),
        })
    }

    /// The ring buffer size for each run.
    #[must_use]
    pub fn ring_bytes(&self) -> u32 {
        self.ring_bytes
    }

    /// Events the next run may still keep under the limit.
    #[must_use]
    pub fn remaining(&self) -> u64 {
        let kept: u64 = self
            .runs
            .iter()
            .map(|r| r.recorded.events.len() as u64)
            .sum();
        self.limit.saturating_sub(kept)
    }

    /// Nanoseconds since the trace began.
    #[must_use]
    pub fn now_ns(&self) -> u64 {
        monotonic_ns().saturating_sub(self.origin_ns)
    }

    /// Adds a finished run.
    pub fn add_run(
        &mut self,
        context: RunContext,
        recorded: Recorded,
        unfinished: Vec<Unfinished>,
    ) {
        self.runs.push(Run {
            context,
            recorded,
            unfinished,
        });
    }

    /// Whether no run was added (nothing measured: the file is not written).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Writes the file.
    ///
    /// # Errors
    /// When writing fails (a file that existed keeps its contents; one made for the trace goes).
    ///
    /// # Panics
    /// Only if the file was taken before, which taking `self` rules out.
    pub fn write(mut self) -> Result<Written, ExportError> {
        let file = self.file.take().expect("written once");
        // Written whole beside the file and renamed over it: what was there survives a
        // failure, and a FIFO is simply written.
        let result = crate::files::replace(&self.path, file, |mut out| {
            chrome::write(&mut out, self.origin_ns, &self.runs)
        });
        match result {
            Ok(records) => Ok(Written {
                path: self.path.clone(),
                records,
                events: self.runs.iter().map(|r| r.context.events).sum(),
                lost: self.runs.iter().flat_map(|r| &r.context.lost_per_cpu).sum(),
                over_limit: self.runs.iter().map(|r| r.context.over_limit).sum(),
                limit: self.limit,
            }),
            Err(source) => {
                // An empty file of ours goes; one that was there keeps its contents.
                if self.created {
                    let _ = std::fs::remove_file(&self.path);
                }
                Err(ExportError::Write {
                    path: self.path.clone(),
                    source,
                })
            }
        }
    }
}

impl Drop for Trace {
    /// A trace that was never written leaves no empty file behind, and a file that was there
    /// before as it was.
    fn drop(&mut self) {
        if self.file.take().is_some() && self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl ExportError {
    /// The error naming the trace file `path`, where it was made without knowing it.
    #[must_use]
    pub fn at(self, path: &std::path::Path) -> ExportError {
        match self {
            ExportError::Invalid { path: p, reason } if p.as_os_str().is_empty() => {
                ExportError::Invalid {
                    path: path.to_owned(),
                    reason,
                }
            }
            other => other,
        }
    }
}

/// The report of a run read back from a trace, made by the same model as a live run.
///
/// # Errors
/// When the trace names a method this zcprof does not know.
pub fn report_of(run: &ReadRun) -> Result<crate::model::RunReport, ExportError> {
    use crate::model::{RunInput, Subject};
    let ctx = &run.context;
    let subject = if ctx.workload {
        let method = crate::workload::Method::ALL
            .into_iter()
            .find(|m| m.name() == ctx.subject)
            .ok_or_else(|| ExportError::Invalid {
                path: PathBuf::new(),
                reason: format!("unknown method {:?}", ctx.subject),
            })?;
        Subject::Workload(method)
    } else {
        Subject::Program(ctx.subject.clone())
    };
    let plan = crate::probes::HookPlan::from_record(&ctx.plan);
    let mut report = crate::model::build(RunInput {
        subject,
        bytes: ctx.bytes,
        block_size: ctx.block_size,
        kernel_release: &ctx.kernel,
        plan: &plan,
        counts: &run.counts,
        received: ctx.received.clone(),
        usage: ctx.usage,
        file: ctx.file.clone(),
        net: ctx.net.clone(),
        remote_receiver: ctx.remote_receiver.clone(),
        zerocopy: ctx.zerocopy,
        uring: ctx.uring,
        devices: ctx.devices.devices(&run.counts),
        unmeasured_children: Vec::new(),
    });
    report.notes.push(format!(
        "Re-rendered from a saved trace: counts rebuilt from its {} events; cpu-clock samples \
         and unmatched returns come from the run's saved context.",
        ctx.events
    ));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use zcprof_common::{Counter, EventKind, NO_SYSCALL, TraceEvent};

    use super::*;

    const PID: u32 = 4242;

    fn event(kind: EventKind, ts: u64, start: u64, value: i64, arg: u32, aux: u32) -> TraceEvent {
        let mut name = [0u8; 16];
        name[..2].copy_from_slice(b"lo");
        TraceEvent {
            ts_ns: ts,
            start_ns: start,
            value,
            tgid: PID,
            tid: PID + 1,
            kind: kind as u32,
            arg,
            aux,
            cpu: 0,
            name,
        }
    }

    fn run() -> Run {
        let events = vec![
            event(EventKind::Syscall, 2_000, 1_000, 4096, 0, 0),
            event(
                EventKind::Copy,
                1_500,
                0,
                4096,
                Counter::FilemapReadBytes as u32,
                0,
            ),
            event(
                EventKind::Copy,
                3_000,
                0,
                10,
                Counter::CopyToIterBytes as u32,
                NO_SYSCALL,
            ),
            event(EventKind::Syscall, 4_000, 3_500, -11, 0, 0),
            event(EventKind::Switch, 3_600, 0, 0, 1, 0),
            event(EventKind::Switch, 4_100, 0, 0, 0, 0),
            event(EventKind::Fault, 4_200, 0, 0, 1, 0),
            event(EventKind::Disk, 4_300, 0, 8192, 8 << 20, u32::from(b'W')),
            event(EventKind::Net, 4_400, 0, 100, 0, 0),
            event(EventKind::Dma, 4_500, 0, 0, 0, 0),
            event(EventKind::Fork, 4_600, 0, 4243, 0, 0),
        ];
        Run {
            context: RunContext {
                subject: "test".into(),
                workload: false,
                bytes: 4096,
                block_size: 4096,
                kernel: "6.18".into(),
                plan: PlanRecord::default(),
                received: Vec::new(),
                usage: None,
                file: None,
                net: None,
                remote_receiver: None,
                zerocopy: None,
                uring: None,
                devices: DeviceNames::default(),
                followed: true,
                process_names: BTreeMap::from([(PID, "tester".to_owned())]),
                start_ns: 0,
                end_ns: 10_000,
                events: events.len() as u64,
                lost_per_cpu: vec![0, 0],
                over_limit: 0,
                unmatched_returns: 1,
                in_flight_lost: 0,
                samples_user: 2,
                samples_kernel: 3,
                samples_lost: 0,
                sampled_cpu_ns: 0,
                task_clock_ns: None,
                kernel_stacks: vec![(vec!["filemap_read".into()], 3)],
                counters: EventlessCounts {
                    receiver_recv_bytes: 8192,
                    refused_syscalls: 2,
                    processes_folded: 1,
                    ..EventlessCounts::default()
                },
            },
            recorded: Recorded {
                events,
                thread_names: BTreeMap::new(),
                over_limit: 0,
            },
            unfinished: vec![Unfinished {
                tgid: PID,
                tid: PID + 1,
                start_ns: 5_000,
                nr: 231,
            }],
        }
    }

    fn written(name: &str) -> (PathBuf, String) {
        let mut out = Vec::new();
        chrome::write(&mut out, 0, &[run()]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let path = std::env::temp_dir().join(format!("zcprof-{name}-{}.json", std::process::id()));
        std::fs::write(&path, &text).unwrap();
        (path, text)
    }

    /// The writer's golden: the synthetic run with an event of every kind, written byte for
    /// byte as when the golden was made (`ZCPROF_BLESS=1` rewrites it for a deliberate change).
    #[test]
    fn the_written_trace_is_byte_identical_to_its_golden() {
        let mut r = run();
        r.recorded.events.push(event(
            EventKind::Bio,
            4_700,
            0,
            4096,
            8 << 20,
            u32::from(b'R'),
        ));
        r.recorded
            .events
            .push(event(EventKind::Exit, 4_800, 4_800, 0, 231, 0));
        r.recorded.thread_names.insert(PID + 1, "worker".into());
        r.context.lost_per_cpu = vec![0, 3];
        r.context.over_limit = 2;
        let mut out = Vec::new();
        chrome::write(&mut out, 0, &[r, run()]).unwrap();
        let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/golden/synthetic.trace.json");
        if std::env::var_os("ZCPROF_BLESS").is_some() {
            std::fs::write(&golden, &out).unwrap();
        }
        let expected = std::fs::read_to_string(&golden).unwrap();
        let text = String::from_utf8(out).unwrap();
        if let Some((n, (e, a))) = expected
            .lines()
            .zip(text.lines())
            .enumerate()
            .find(|(_, (e, a))| e != a)
        {
            panic!("line {}:\n  golden: {e}\n  now:    {a}", n + 1);
        }
        assert_eq!(expected, text);
    }

    #[test]
    fn a_trace_past_its_limit_is_marked_and_read_back_incomplete() {
        let mut r = run();
        r.context.over_limit = 7;
        let mut out = Vec::new();
        chrome::write(&mut out, 0, &[r]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["zcprof"]["complete"], false);
        assert_eq!(v["zcprof"]["over_limit"], 7);
        assert!(text.contains("TRACE LIMIT REACHED: 7 later events not kept"));
        let path = std::env::temp_dir().join(format!("zcprof-limit-{}.json", std::process::id()));
        std::fs::write(&path, &text).unwrap();
        let runs = read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(runs[0].counts.trace_over_limit, 7);
        assert_eq!(runs[0].context.over_limit, 7);
    }

    #[test]
    fn events_written_read_back_as_the_same_counts() {
        let (path, _) = written("roundtrip");
        let runs = read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let c = &runs[0].counts;
        let read_stat = c.syscalls[&0];
        assert_eq!(
            (read_stat.count, read_stat.errors, read_stat.ret_sum),
            (2, 1, 4096)
        );
        assert_eq!(read_stat.total_ns, 1_000 + 500);
        assert_eq!(
            c.syscalls[&231].count, 1,
            "the unfinished exit_group is an entry"
        );
        assert_eq!((c.syscall_entries, c.syscall_returns), (3, 2));
        assert_eq!((c.filemap_read_bytes, c.copy_to_iter_bytes), (4096, 10));
        assert_eq!(c.hooked_by_syscall[&0].filemap_read, 4096);
        assert_eq!((c.voluntary_switches, c.involuntary_switches), (1, 1));
        assert_eq!((c.page_faults_user, c.page_faults_kernel), (1, 0));
        assert_eq!(c.disk_io[&(8 << 20)].write_bytes, 8192);
        assert_eq!(c.net_xmit["lo"].bytes, 100);
        assert_eq!((c.dma_maps, c.forks), (1, 1));
        assert_eq!((c.first_event_ns, c.last_event_ns), (1_000, 5_000));
        // Counters no event carries come back from the context.
        assert_eq!(
            (
                c.receiver_recv_bytes,
                c.refused_syscalls,
                c.processes_folded
            ),
            (8192, 2, 1)
        );
        let p = &c.processes[&PID];
        assert_eq!(
            (p.name.as_str(), p.syscalls, p.copied_bytes),
            ("tester", 3, 4106)
        );
        assert_eq!((c.unmatched_returns, c.samples_kernel), (1, 3));
    }

    #[test]
    fn the_network_path_is_kept_and_older_traces_still_read() {
        let net = NetPath {
            kind: "veth".into(),
            device: "zcp4242s".into(),
            scatter_gather: Some(false),
            receiver: "10.128.66.10:5000".into(),
        };
        let mut with_net = run();
        with_net.context.workload = true;
        with_net.context.subject = "sendfile".into();
        with_net.context.net = Some(net.clone());
        let mut out = Vec::new();
        chrome::write(&mut out, 0, &[with_net]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let path = std::env::temp_dir().join(format!("zcprof-netpath-{}.json", std::process::id()));
        std::fs::write(&path, &text).unwrap();
        let runs = read(&path).unwrap();
        assert_eq!(runs[0].context.net.as_ref(), Some(&net));
        assert_eq!(report_of(&runs[0]).unwrap().net, Some(net));
        // A trace from before the field existed: no "net" key at all.
        let old = text.replacen("\"net\":{\"device\"", "\"old_net\":{\"device\"", 1);
        assert_ne!(old, text);
        std::fs::write(&path, &old).unwrap();
        let runs = read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(runs[0].context.net, None);
    }

    #[test]
    fn a_remote_sinks_report_is_kept_and_older_traces_still_read() {
        let sink = SinkReport {
            received: vec![4096],
            reads: 3,
            user_ns: 1_000,
            system_ns: 2_000,
            kernel: "6.12".into(),
            ..SinkReport::default()
        };
        let mut remote = run();
        remote.context.workload = true;
        remote.context.subject = "sendfile".into();
        remote.context.bytes = 4096;
        remote.context.block_size = 4096;
        remote.context.net = Some(NetPath {
            kind: "remote".into(),
            device: "eth0".into(),
            scatter_gather: Some(true),
            receiver: "192.0.2.7:9465".into(),
        });
        remote.context.remote_receiver = Some(sink.clone());
        let mut out = Vec::new();
        chrome::write(&mut out, 0, &[remote]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let path = std::env::temp_dir().join(format!("zcprof-sink-{}.json", std::process::id()));
        std::fs::write(&path, &text).unwrap();
        let runs = read(&path).unwrap();
        let report = report_of(&runs[0]).unwrap();
        assert_eq!(report.sink.as_ref(), Some(&sink));
        assert_eq!(report.receiver_copies.len(), 1);
        assert_eq!(report.receiver_copies[0].bytes, 4096);
        assert!(
            report.receiver_copies[0]
                .path
                .to_string()
                .contains("zcprof sink at 192.0.2.7:9465")
        );
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.starts_with("The sink's own costs: 4 KiB received in 3 reads")),
            "{:?}",
            report.notes
        );
        // A trace from before the field existed.
        let mut plain = run();
        plain.context.workload = true;
        plain.context.subject = "sendfile".into();
        let mut out = Vec::new();
        chrome::write(&mut out, 0, &[plain]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let old = text.replacen("\"remote_receiver\":null,", "", 1);
        assert_ne!(old, text);
        std::fs::write(&path, &old).unwrap();
        let runs = read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(runs[0].context.remote_receiver, None);
        assert_eq!(report_of(&runs[0]).unwrap().sink, None);
    }

    #[test]
    fn truncated_edited_and_foreign_files_are_refused() {
        let (path, text) = written("refused");
        let cut = text.len() / 2;
        let edited = text
            .replacen(text.lines().nth(3).unwrap(), "", 1)
            .replacen("\n\n", "\n", 1);
        let newer = text.replace("\"version\":1", "\"version\":99");
        // A built-in workload of zero-byte blocks: no run can say that.
        let impossible = text
            .replace("\"workload\":false", "\"workload\":true")
            .replace("\"block_size\":4096", "\"block_size\":0");
        assert_ne!(impossible, text);
        for (body, want) in [
            (
                impossible.as_str(),
                "moved 4096 bytes in blocks of 0 (edited?)",
            ),
            (&text[..cut], "ends early"),
            (edited.as_str(), "cut or edited"),
            (newer.as_str(), "format version 99"),
            ("{\"traceEvents\": []}", "no \"zcprof\" section"),
            ("{\"traceEvents\": [{\"ph\": \"X\"", "ends early"),
            ("[1, 2]", "invalid type"),
        ] {
            std::fs::write(&path, body).unwrap();
            let err = read(&path).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(err.contains(want), "{want}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_trace_is_chrome_json_with_names_and_nesting() {
        let (path, text) = written("chrome");
        let _ = std::fs::remove_file(&path);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let events = v["traceEvents"].as_array().unwrap();
        let slice = events
            .iter()
            .find(|e| e["cat"] == "syscall" && e["ph"] == "X")
            .unwrap();
        assert_eq!(
            (
                slice["name"].as_str(),
                slice["ts"].as_f64(),
                slice["dur"].as_f64()
            ),
            (Some("read"), Some(1.0), Some(1.0))
        );
        let copy = events.iter().find(|e| e["cat"] == "copy").unwrap();
        assert!(copy["ts"].as_f64() > slice["ts"].as_f64() && copy["ts"].as_f64() < Some(2.0));
        assert!(events.iter().any(|e| e["ph"] == "M"
            && e["name"] == "process_name"
            && e["args"]["name"] == "tester"));
        assert!(
            events
                .iter()
                .any(|e| e["ph"] == "B" && e["name"] == "exit_group")
        );
        assert_eq!(v["zcprof"]["complete"], true);
        assert_eq!(v["zcprof"]["records"].as_u64(), Some(events.len() as u64));
    }

    #[test]
    fn ring_sizes_must_be_powers_of_two_and_paths_writable() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("zcprof-ring-{}.json", std::process::id()));
        assert!(matches!(
            Trace::create(&path, 5000, 1),
            Err(ExportError::RingSize { .. })
        ));
        assert!(matches!(
            Trace::create(&path, 0, 1),
            Err(ExportError::RingSize { .. })
        ));
        assert!(!path.exists(), "a refused size creates no file");
        let t = Trace::create(&path, 1 << 20, 1).unwrap();
        assert!(path.exists());
        drop(t);
        assert!(!path.exists(), "an unwritten trace leaves no file");
        // An existing file survives a run that never wrote its trace (it failed or was
        // interrupted): issue 27 item 5.
        std::fs::write(&path, "data\n").unwrap();
        drop(Trace::create(&path, 1 << 20, 1).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data\n");
        let _ = std::fs::remove_file(&path);
        assert!(matches!(
            Trace::create(Path::new("/nonexistent-dir/x.json"), 1 << 20, 1),
            Err(ExportError::Write { .. })
        ));
    }

    #[test]
    fn an_unusable_trace_is_named() {
        let err = ExportError::Invalid {
            path: PathBuf::new(),
            reason: "unknown method \"sendfilX\"".into(),
        }
        .at(std::path::Path::new("edited.json"));
        assert_eq!(
            err.to_string(),
            "edited.json is not a usable zcprof trace: unknown method \"sendfilX\""
        );
    }
}
