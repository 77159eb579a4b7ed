//! Trace export for teaching: individual events recorded through a ring buffer, written as Chrome
//! trace-event JSON that ui.perfetto.dev opens, and read back to re-render the cost table.
//!
//! A trace holds each run's events plus what events cannot tell (the workload, the hooks chosen,
//! sampled stacks, lost-event counts), so `zcprof report` rebuilds the same counts from the
//! events and renders them with the same model as a live run.
mod chrome;
mod read;
mod record;

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, BufWriter, Write as _},
    path::{Path, PathBuf},
};

pub use read::{ReadRun, read};
pub use record::{Recorded, Recorder};

use crate::{measure::DeviceNames, model::FileInfo, probes::PlanRecord, workload::ChildUsage};

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
        "--trace-buffer must be a power of two and at least one page ({page} bytes), not {size}"
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
    /// Counts that are not events: returns of syscalls entered before probing, entries the
    /// in-flight map refused, and the cpu-clock samples with their stacks.
    pub unmatched_returns: u64,
    pub in_flight_lost: u64,
    pub samples_user: u64,
    pub samples_kernel: u64,
    pub samples_lost: u64,
    pub kernel_stacks: Vec<(Vec<String>, u64)>,
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
}

/// One command's trace: runs are added as they finish and the file is written at the end. The
/// file is created up front (an unwritable path fails before anything is measured) and removed
/// again if nothing is written.
pub struct Trace {
    path: PathBuf,
    file: Option<File>,
    ring_bytes: u32,
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
    /// Creates the trace file at `path`, with a ring buffer of `ring_bytes` per run.
    ///
    /// # Errors
    /// When the path cannot be written or the size is not a valid ring size.
    pub fn create(path: &Path, ring_bytes: u64) -> Result<Trace, ExportError> {
        let page = crate::probes::page_size();
        let ring = u32::try_from(ring_bytes)
            .ok()
            .filter(|r| r.is_power_of_two() && *r >= page)
            .ok_or(ExportError::RingSize {
                size: ring_bytes,
                page,
            })?;
        let file = File::create(path).map_err(|source| ExportError::Write {
            path: path.to_owned(),
            source,
        })?;
        Ok(Trace {
            path: path.to_owned(),
            file: Some(file),
            ring_bytes: ring,
            origin_ns: monotonic_ns(),
            runs: Vec::new(),
        })
    }

    /// The ring buffer size for each run.
    #[must_use]
    pub fn ring_bytes(&self) -> u32 {
        self.ring_bytes
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
    /// When writing fails (the partial file is removed).
    pub fn write(mut self) -> Result<Written, ExportError> {
        let file = self.file.take().expect("written once");
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let result = chrome::write(&mut out, self.origin_ns, &self.runs)
            .and_then(|records| out.flush().map(|()| records));
        match result {
            Ok(records) => Ok(Written {
                path: self.path.clone(),
                records,
                events: self.runs.iter().map(|r| r.context.events).sum(),
                lost: self.runs.iter().flat_map(|r| &r.context.lost_per_cpu).sum(),
            }),
            Err(source) => {
                let _ = std::fs::remove_file(&self.path);
                Err(ExportError::Write {
                    path: self.path.clone(),
                    source,
                })
            }
        }
    }
}

impl Drop for Trace {
    /// A trace that was never written leaves no empty file behind.
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
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
        devices: ctx.devices.devices(&run.counts),
    });
    report.notes.push(format!(
        "Re-rendered from a saved trace: counts rebuilt from its {} events; cpu-clock samples \
         and unmatched returns come from the run's saved context.",
        ctx.events
    ));
    Ok(report)
}
