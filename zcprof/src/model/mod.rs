//! The cost report: turns raw kernel counts into figures with provenance, next to the textbook's
//! claims, with footnotes where they differ for a known reason.
mod accounting;
pub mod activity;
mod beyond;
mod copies;
mod copy_path;
mod descriptors;
mod device_figures;
mod figure;
pub mod fleet;
pub mod ledger;
mod notes;
pub mod repeat;
mod sink_side;
mod steps;
pub mod syscall_time;
pub mod syscalls;
pub mod textbook;
mod uring;
mod zerocopy;

use std::collections::BTreeMap;

pub use accounting::{Accounting, PROCESS_ROWS, ProcessRow, TraceSummary};
pub use copies::copy_rate;
pub use copy_path::{CopyPath, How, Route, Station, Whose};
pub use figure::{Estimate, Figure, FigureId, Figures, Finding, MIN_SAMPLES, Source};
pub use steps::build;
use syscalls::DataPath;
pub use textbook::Textbook;

use crate::{
    collect::Counts,
    probes::{HookPlan, catalog::Point},
    sink::SinkReport,
    workload::{ChildUsage, Method},
};

/// One syscall's line in a report.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SyscallRow {
    pub name: String,
    pub count: u64,
    pub errors: u64,
    /// Time in the kernel: the time from each call's first switch-out to its return, measured
    /// for every call, plus the time before it (or to the return), measured over the `timed`
    /// calls and scaled to `count` when only a sample was timed (see `syscall_time`).
    pub total_ns: u64,
    /// When part of `total_ns` was scaled: the random samples and the 95 % interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_estimate: Option<syscall_time::TimeInterval>,
    /// Calls switched out (blocked or preempted) at least once before they returned, where only
    /// a sample was timed (with every call timed, as in a trace, the split is not needed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switched: Option<u64>,
    /// Calls whose entry and return were timed (all of them in trace mode).
    pub timed: u64,
    /// Of the timed calls, those timed whatever the random draw (the first few of a syscall on a
    /// CPU, and exits): counted as they are, not scaled.
    pub forced: u64,
    /// Bytes returned, for syscalls whose return value is a byte count.
    pub bytes: Option<u64>,
    pub data_path: DataPath,
}

/// Block I/O completed on one device while measuring (device-wide).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DiskRow {
    pub device: String,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub requests: u64,
}

/// Bytes the measured process handed to one network device.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NetRow {
    pub device: String,
    pub bytes: u64,
    pub packets: u64,
    /// Backed by hardware (has a /sys/class/net/<dev>/device): its transmits are DMA.
    pub physical: bool,
    /// Scatter-gather on the device (ethtool): with it, spliced pages go out by reference.
    pub scatter_gather: Option<bool>,
    /// What the DMA API mapped towards the NIC while measuring (`dma:*` events, device-wide:
    /// any socket's packets): none where the kernel has no such events or the driver bypasses
    /// the DMA API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dma_mapped: Option<DmaMappedRow>,
}

/// Bytes and maps the DMA API mapped towards one device.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DmaMappedRow {
    /// The device as the DMA API names it (a PCI address).
    pub bus_id: String,
    pub bytes: u64,
    pub maps: u64,
}

/// Device activity seen while measuring.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Devices {
    pub disk: Vec<DiskRow>,
    pub net: Vec<NetRow>,
}

/// The source file and what its file system means for the figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileInfo {
    pub path: String,
    pub filesystem: String,
    pub block_device: bool,
    /// "warm" (pages already cached) or "cold" (evicted before the run).
    pub cache: String,
}

/// The network path a built-in workload sent over, so a row says which device and which
/// scatter-gather state it used.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetPath {
    /// "loopback", "veth" or "remote" (a `zcprof sink` elsewhere, `--to`).
    pub kind: String,
    /// The sender's device (`lo`, the host end of the veth pair, or the interface that carries
    /// the route to a remote sink).
    pub device: String,
    /// Scatter-gather on the sender's device: with it, the socket can take page-cache pages by
    /// reference; without it, the kernel copies them into linear buffers.
    pub scatter_gather: Option<bool>,
    /// Where the receiver listened (`127.0.0.1:port`, the address inside the receiver's network
    /// namespace, or the remote sink's address).
    pub receiver: String,
}

/// What was measured: a built-in transfer method, or a real program (`exec`, `attach`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Workload(Method),
    /// A program, by the name the report shows (`dd`, `pid 1234`).
    Program(String),
}

impl Subject {
    /// The built-in method, if this is one.
    #[must_use]
    pub fn method(&self) -> Option<Method> {
        match self {
            Subject::Workload(m) => Some(*m),
            Subject::Program(_) => None,
        }
    }
}

/// A program has no transfer step: its figures are given per MiB of payload.
pub const PROGRAM_STEP: u64 = 1 << 20;

/// One measured run: the JSON contract of `zcprof run` (and each element of `compare`'s runs).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunReport {
    /// The method's name, or the program's for `exec` and `attach`.
    pub method: String,
    /// "workload" (a built-in method) or "program".
    pub kind: &'static str,
    pub bytes: u64,
    pub block_size: u64,
    pub transfers: u64,
    pub elapsed_ns: u64,
    pub kernel: String,
    /// Hook used for each measurement point, e.g. `"sys_enter": "raw_tp sys_enter"`.
    pub hooks: BTreeMap<&'static str, String>,
    pub syscalls_by_name: BTreeMap<String, u64>,
    pub syscalls: Vec<SyscallRow>,
    /// How the syscalls' time in the kernel was measured.
    pub syscall_timing: String,
    pub figures: Figures,
    /// The copy ledger: every CPU copy of payload the measured process caused, by path; their
    /// sum is `figures.cpu_copy_bytes`.
    pub copies: Vec<CopyPath>,
    /// The receiver's own copies, apart from the sender's: zcprof's built-in receiver, or what
    /// a remote sink reported.
    pub receiver_copies: Vec<CopyPath>,
    pub textbook: Textbook,
    /// Where measurement and textbook differ, and why (when the cause is known).
    pub notes: Vec<String>,
    /// The departures from the textbook the notes explain, in a few words each (the short form
    /// under the table; not in the JSON, whose notes say it all).
    #[serde(skip)]
    pub findings: Vec<Finding>,
    /// Bytes each receiver stream got (each verified equal to `bytes`).
    pub received: Vec<u64>,
    /// The kernel's own rusage of the measured process over its whole life (a cross-check),
    /// where zcprof is its parent.
    pub process_rusage: Option<ChildUsage>,
    /// The source file of a built-in workload.
    pub file: Option<FileInfo>,
    /// The network path of a built-in workload.
    pub net: Option<NetPath>,
    /// What a remote sink (`--to`) reported of itself: bytes per stream, its reads, and the
    /// CPU time and scheduler switches of its draining threads.
    pub sink: Option<SinkReport>,
    /// msg-zerocopy and io-uring-send-zc: the kernel's verdict from the completions (null for
    /// other methods).
    pub zerocopy: Option<crate::workload::Verdict>,
    /// The `io_uring` methods: what their completions said (null for other methods).
    #[serde(rename = "io_uring")]
    pub uring: Option<crate::workload::UringTally>,
    pub devices: Devices,
    /// Per-process totals when a process tree was followed (exec, attach), by pid.
    pub processes: Vec<ProcessRow>,
    /// The event trace of this run, with `--trace`.
    pub trace: Option<TraceSummary>,
    /// Returns the kernel side saw without their entry, and what its tables had no room for.
    pub accounting: Accounting,
    /// Bytes through descriptors by their kind, as the kernel side classified them.
    pub descriptors: descriptors::Descriptors,
    /// With `--repeat` (or `--warmup`): the runs this report folds; its figures are medians.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<repeat::Repeat>,
}

/// Everything a report is made from.
pub struct RunInput<'a> {
    pub subject: Subject,
    pub bytes: u64,
    pub block_size: u64,
    pub kernel_release: &'a str,
    pub plan: &'a HookPlan,
    pub counts: &'a Counts,
    pub received: Vec<u64>,
    pub usage: Option<ChildUsage>,
    pub file: Option<FileInfo>,
    pub net: Option<NetPath>,
    /// The remote sink's report, when a `zcprof sink` received instead of zcprof (its copy
    /// replaces the built-in receiver's).
    pub remote_receiver: Option<SinkReport>,
    /// msg-zerocopy and io-uring-send-zc: the kernel's verdict from the completions.
    pub zerocopy: Option<crate::workload::Verdict>,
    /// The `io_uring` methods: what their completions said.
    pub uring: Option<crate::workload::UringTally>,
    pub devices: Devices,
    /// Children of an attached process that ran before the attach (so were not followed),
    /// named when it moved no data itself.
    pub unmeasured_children: Vec<activity::Child>,
}

/// Transfer steps of `bytes` moved `block_size` at a time.
#[must_use]
pub fn transfers(bytes: u64, block_size: u64) -> u64 {
    bytes.div_ceil(block_size.max(1))
}

fn hook(plan: &HookPlan, point: Point) -> String {
    plan.chosen(point).map_or_else(
        || format!("{} (not attached)", point.name()),
        super::probes::catalog::Variant::describe,
    )
}

fn fmt_bytes(n: u64) -> String {
    crate::units::format_bytes(n)
}

/// How long copying `bytes` takes at `rate` bytes per second, for a note ("3.2 µs").
#[expect(clippy::cast_precision_loss, reason = "display")]
fn fmt_ns_f(bytes: u64, rate: u64) -> String {
    let ns = bytes as f64 / rate.max(1) as f64 * 1e9;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{:.1} ms", ns / 1e6)
    }
}

/// Why a point is not measured, for an unavailable figure.
fn missing(plan: &HookPlan, point: Point) -> String {
    plan.unavailable(point).map_or_else(
        || format!("{} was not attached", point.name()),
        |why| format!("no hook for {} works on this kernel: {why}", point.name()),
    )
}

#[cfg(test)]
pub(crate) mod tests;
