//! The cost report: turns raw kernel counts into figures with provenance, next to the textbook's
//! claims, with footnotes where they differ for a known reason.
mod accounting;
pub mod activity;
mod beyond;
mod copies;
mod descriptors;
mod device_figures;
mod figure;
pub mod fleet;
pub mod ledger;
mod notes;
pub mod repeat;
mod sink_side;
pub mod syscall_time;
pub mod syscalls;
pub mod textbook;
mod uring;
mod zerocopy;

use std::collections::BTreeMap;

pub use accounting::{Accounting, PROCESS_ROWS, ProcessRow, TraceSummary};
use accounting::{accounting, accounting_notes, process_rows, trace_summary};
pub use copies::copy_rate;
use device_figures::{dma_figures, page_fault_figures};
pub use figure::{Estimate, Figure, FigureId, Figures, MIN_SAMPLES, Source};
pub use ledger::CopyPath;
use sink_side::{sink_copy, sink_costs};
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

/// Builds the report of one run.
#[expect(
    clippy::too_many_lines,
    reason = "one figure after another, kept in one place"
)]
pub fn build(input: RunInput<'_>) -> RunReport {
    let RunInput {
        subject,
        bytes,
        block_size,
        kernel_release,
        plan,
        counts,
        received,
        usage,
        file,
        net,
        remote_receiver,
        zerocopy,
        uring,
        devices,
        unmeasured_children,
    } = input;
    let method = subject.method();
    let enter = hook(plan, Point::SysEnter);
    let exit = hook(plan, Point::SysExit);
    let sched = hook(plan, Point::SchedSwitch);
    let hooks = Point::ALL
        .into_iter()
        .map(|p| (p.name(), hook(plan, p)))
        .collect();

    let mut rows = Vec::new();
    let mut measured_ns = Vec::new();
    let mut by_name = BTreeMap::new();
    let (mut to_user, mut from_user, mut in_kernel) = (0u64, 0u64, 0u64);
    for (&nr, stat) in &counts.syscalls {
        let name = syscalls::name_of(nr);
        let path = syscalls::data_path(&name);
        match path {
            DataPath::ToUser => to_user += stat.ret_sum,
            DataPath::FromUser => from_user += stat.ret_sum,
            DataPath::InKernel => in_kernel += stat.ret_sum,
            DataPath::NoData => {}
        }
        by_name.insert(name.clone(), stat.count);
        let time = syscall_time::estimate(stat);
        measured_ns.push(time.measured_ns);
        rows.push(SyscallRow {
            name,
            count: stat.count,
            errors: stat.errors,
            total_ns: time.ns,
            time_estimate: time.interval,
            switched: (plan.time_every > 1).then_some(stat.switched),
            timed: stat.timed,
            // With every call timed (trace mode) nothing is scaled, and a trace keeps no such
            // mark: none is forced.
            forced: if plan.time_every <= 1 {
                0
            } else {
                stat.forced.min(stat.timed)
            },
            bytes: (path != DataPath::NoData).then_some(stat.ret_sum),
            data_path: path,
        });
    }
    let in_kernel = descriptors::in_kernel_once(in_kernel, counts);
    // The built-in transfer process has one thread: its syscalls fit in its window.
    let mut capped = None;
    if matches!(subject, Subject::Workload(_)) {
        let mut times: Vec<(u64, u64)> = rows
            .iter()
            .zip(&measured_ns)
            .map(|(r, &m)| (r.total_ns, m))
            .collect();
        let factor = syscall_time::cap_to_window(&mut times, counts.window_ns());
        if factor < 1.0 {
            for (r, &(ns, _)) in rows.iter_mut().zip(&times) {
                r.total_ns = ns;
                if let Some(i) = r.time_estimate.as_mut() {
                    i.low_ns = i.low_ns.map(|l| l.min(ns));
                    i.high_ns = i.high_ns.map(|h| h.min(ns));
                }
            }
            capped = Some(factor);
        }
    }
    rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    // A program has no step of its own: its figures are per MiB of the payload it moved.
    let (bytes, block_size) = match subject {
        Subject::Workload(_) => (bytes, block_size),
        Subject::Program(_) => (to_user.max(from_user).max(in_kernel), PROGRAM_STEP),
    };
    let transfers = transfers(bytes, block_size);

    let counted_sys = Source::Counted(vec![enter.clone()]);
    let counted_mode = Source::Counted(vec![enter.clone(), exit.clone()]);
    let counted_sched = Source::Counted(vec![sched.clone()]);
    let semantics = Source::SyscallSemantics(vec![enter.clone(), exit.clone()]);
    let clock = Source::KernelClock(vec![enter.clone(), exit.clone()]);
    let mut figures = BTreeMap::new();
    let mut notes = Vec::new();

    figures.insert(
        FigureId::Syscalls,
        Figure::measured(
            counts.syscall_entries,
            transfers,
            &counted_sys,
            "every syscall the transfer process entered while measured, including its final exit_group",
        ),
    );
    let mode = counts.syscall_entries + counts.syscall_returns;
    figures.insert(
        FigureId::ModeSwitches,
        Figure::measured(
            mode,
            transfers,
            &counted_mode,
            format!(
                "{} user->kernel entries and {} kernel->user returns through the syscall path; {} page \
                 faults in user mode (see page_faults_user) and interrupts also switch modes and are \
                 not included",
                counts.syscall_entries, counts.syscall_returns, counts.page_faults_user
            ),
        ),
    );
    let switches = counts.voluntary_switches + counts.involuntary_switches;
    figures.insert(
        FigureId::ContextSwitches,
        Figure::measured(
            switches,
            transfers,
            &counted_sched,
            format!(
                "scheduler switches of the transfer process: {} voluntary (it blocked), {} involuntary \
                 (preempted); the kernel's rusage for its whole life: {} and {}",
                counts.voluntary_switches,
                counts.involuntary_switches,
                usage.map_or_else(|| "unknown".to_owned(), |u| u.voluntary_switches.to_string()),
                usage.map_or_else(|| "unknown".to_owned(), |u| u.involuntary_switches.to_string())
            ),
        ),
    );
    figures.insert(
        FigureId::ContextSwitchesVoluntary,
        Figure::measured(
            counts.voluntary_switches,
            transfers,
            &counted_sched,
            "switched out because it blocked",
        ),
    );
    figures.insert(
        FigureId::ContextSwitchesInvoluntary,
        Figure::measured(
            counts.involuntary_switches,
            transfers,
            &counted_sched,
            "switched out while still runnable",
        ),
    );

    // O_DIRECT reads from a block device are filled by the device, not copied by the CPU.
    let dma_reads =
        method == Some(Method::DirectIo) && file.as_ref().is_some_and(|f| f.block_device);
    let cpu_to_user = if dma_reads { 0 } else { to_user };
    let mut copy_note = format!(
        "bytes copied between user buffers and the kernel: {} kernel->user by read-type syscalls, {} \
         user->kernel by write-type syscalls",
        fmt_bytes(cpu_to_user),
        fmt_bytes(from_user)
    );
    if dma_reads {
        copy_note.push_str(&format!(
            "; the {} read with O_DIRECT from {} were written into the user buffer by the device, not \
             copied by the CPU",
            fmt_bytes(to_user),
            file.as_ref().map_or("?", |f| f.filesystem.as_str())
        ));
    }
    if in_kernel > 0 {
        copy_note.push_str(&format!(
            "; {} moved inside the kernel by sendfile/splice/tee, where this source cannot see whether the \
             CPU copied them",
            fmt_bytes(in_kernel)
        ));
    }
    figures.insert(
        FigureId::UserBufferCopyBytes,
        Figure::measured(cpu_to_user + from_user, transfers, &semantics, copy_note),
    );
    figures.insert(
        FigureId::CpuCopyToUserBytes,
        Figure::measured(
            cpu_to_user,
            transfers,
            &semantics,
            "kernel->user copies (read family)",
        ),
    );
    figures.insert(
        FigureId::CpuCopyFromUserBytes,
        Figure::measured(
            from_user,
            transfers,
            &semantics,
            "user->kernel copies (write family)",
        ),
    );
    figures.insert(
        FigureId::InKernelBytes,
        Figure::measured(
            in_kernel,
            transfers,
            &semantics,
            "payload moved by sendfile, splice or copy_file_range without passing a user buffer, \
             counted once where it leaves the process's data path (where splice's output could \
             be classified, what fills a pipe for a later splice is not counted again)",
        ),
    );
    copies::figures(
        plan,
        counts,
        transfers,
        cpu_to_user + from_user + uring::user_bytes(method, uring.as_ref()),
        &mut figures,
        &mut notes,
    );
    let samples = copies::Samples::from_counts(plan, counts);
    let mut ledger = ledger::build(&ledger::Inputs {
        plan,
        counts,
        transfers,
        method,
        to_user,
        from_user,
        dma_reads,
        samples: &samples,
        zerocopy: zerocopy.as_ref(),
        uring: uring.as_ref(),
    });
    if let Some(v) = &zerocopy {
        let device = net.as_ref().map(|n| n.device.as_str());
        let kind = zerocopy::Kind::of(method);
        notes.push(zerocopy::note(
            kind, v, device, block_size, transfers, &samples,
        ));
    }
    if let (Some(m), Some(t)) = (method, &uring) {
        notes.extend(uring::notes(m, t, counts, transfers, kernel_release));
    }
    if let Some(sink) = &remote_receiver {
        ledger.receiver = vec![sink_copy(
            sink,
            net.as_ref().map_or("?", |n| n.receiver.as_str()),
            transfers,
        )];
    }
    figures.insert(
        FigureId::CpuCopyBytes,
        ledger::figure(&ledger, transfers, &ledger::watched(plan)),
    );
    notes.extend(ledger::contradiction_notes(&ledger.sender));
    notes.extend(descriptors::uncopied_note(descriptors::ByKind::of(counts)));
    for r in &ledger.receiver {
        #[expect(clippy::cast_precision_loss, reason = "display precision")]
        notes.push(format!(
            "Receiver, apart from the sender: {} {} ({:.2} blocks per step), {}. The note counts \
             only the sending side.",
            r.path,
            fmt_bytes(r.bytes),
            r.per_transfer.unwrap_or(0.0) / block_size.max(1) as f64,
            r.source
        ));
    }
    if let Some(sink) = &remote_receiver {
        notes.push(format!("The sink's own costs: {}.", sink_costs(sink)));
    }
    dma_figures(plan, counts, &devices, transfers, &mut figures);
    let dma_api: Vec<String> = [Point::DmaMap, Point::DmaMapSg]
        .into_iter()
        .filter_map(|p| plan.chosen(p))
        .map(|v| format!("{} (device-wide)", v.describe()))
        .collect();
    figures.insert(
        FigureId::DmaApiMaps,
        if dma_api.is_empty() {
            Figure::unavailable(missing(plan, Point::DmaMap))
        } else {
            Figure::measured(
                counts.dma_maps,
                transfers,
                &Source::Counted(dma_api),
                "buffers mapped for device DMA through the DMA API while measuring, by any driver; \
                 drivers that bypass it (virtio without an IOMMU) do not show here",
            )
        },
    );
    page_fault_figures(plan, counts, transfers, &mut figures);
    let program = matches!(subject, Subject::Program(_));
    activity::cpu_time(plan, counts, program, bytes, &mut figures, &mut notes);
    if let Subject::Program(name) = &subject
        && let Some(note) = activity::idle_target(
            name,
            counts.syscall_entries,
            to_user.max(from_user).max(in_kernel),
            &unmeasured_children,
        )
    {
        notes.push(note);
    }
    let elapsed = counts.window_ns();
    #[expect(clippy::cast_precision_loss, reason = "display precision")]
    if elapsed > 0 {
        figures.insert(
            FigureId::ElapsedNs,
            Figure::scalar(
                elapsed as f64,
                &clock,
                "first syscall entry to the last timed syscall event of the measured process (its \
                 exit is always timed, and so is the return of every call that was switched out; \
                 with sampled timing a process that does not exit ends its window at most a few \
                 syscalls early)",
            ),
        );
        figures.insert(
            FigureId::ThroughputBytesPerSec,
            Figure::scalar(
                bytes as f64 * 1e9 / elapsed as f64,
                &clock,
                "bytes delivered / elapsed_ns",
            ),
        );
    } else {
        figures.insert(
            FigureId::ElapsedNs,
            Figure::unavailable("no traced event was seen"),
        );
        figures.insert(
            FigureId::ThroughputBytesPerSec,
            Figure::unavailable("no traced event was seen"),
        );
    }

    let textbook = method.map_or_else(textbook::program, |m| {
        textbook::for_method(m, net.as_ref().and_then(|n| n.scatter_gather))
    });
    notes.extend(notes::differences(&notes::Inputs {
        method,
        transfers,
        block_size,
        counts,
        figures: &figures,
        textbook: &textbook,
        file: file.as_ref(),
        to_user,
        devices: &devices,
        net: net.as_ref(),
        copies: &ledger.sender,
    }));
    if let Some(factor) = capped {
        notes.push(format!(
            "The sampled time in the kernel added up to more than the single-threaded sender's \
             window (time taken from the CPU inside calls without a switch-out, such as a \
             hypervisor's, makes a 1-in-16 sample uneven): the extrapolated part was scaled by \
             {factor:.2} to fit, measured time untouched. --time-every 1 times every call."
        ));
    }
    let accounting = accounting(counts);
    notes.extend(accounting_notes(&accounting));

    let trace = trace_summary(counts);
    if let Some(t) = trace.as_ref().filter(|t| t.lost > 0) {
        notes.push(format!(
            "The event trace is incomplete: {} of {} events were lost for want of ring-buffer room \
             (per CPU: {:?}); the table's counts are complete, the trace's are not. A larger \
             --trace-buffer keeps more.",
            t.lost,
            t.events + t.lost,
            t.lost_per_cpu
        ));
    }
    if let Some(t) = trace.as_ref().filter(|t| t.over_limit > 0) {
        notes.push(format!(
            "The event trace stopped at --trace-limit: it keeps the first {} of {} events written \
             ({} later ones were counted, not kept); the table's counts are complete.",
            t.events - t.over_limit,
            t.events,
            t.over_limit
        ));
    }
    if let Subject::Program(_) = &subject {
        // Per MiB of the exact payload, not per whole step counted up (32.01 MiB is 32.01 MiB,
        // not 33 steps).
        per_exact_mib(bytes, &mut figures, &mut ledger);
        notes.push(format!(
            "No built-in workload: a step is 1 MiB of payload ({} moved in all: {} read into user \
             buffers, {} written from them, {} moved inside the kernel).",
            fmt_bytes(bytes),
            fmt_bytes(to_user),
            fmt_bytes(from_user),
            fmt_bytes(in_kernel)
        ));
    }
    RunReport {
        method: match &subject {
            Subject::Workload(m) => m.to_string(),
            Subject::Program(name) => name.clone(),
        },
        kind: if method.is_some() {
            "workload"
        } else {
            "program"
        },
        bytes,
        block_size,
        transfers,
        elapsed_ns: elapsed,
        kernel: kernel_release.to_owned(),
        hooks,
        syscall_timing: syscall_time::description(plan.time_every),
        syscalls_by_name: by_name,
        syscalls: rows,
        figures,
        copies: ledger.sender,
        receiver_copies: ledger.receiver,
        textbook,
        notes,
        received,
        process_rusage: usage,
        file,
        net,
        sink: remote_receiver,
        zerocopy,
        uring,
        devices,
        processes: process_rows(counts),
        trace,
        accounting,
        descriptors: descriptors::Descriptors::of(counts),
        repeat: None,
    }
}

/// Rescales every per-step figure of a program to per MiB of its exact payload.
#[expect(clippy::cast_precision_loss, reason = "display precision")]
fn per_exact_mib(bytes: u64, figures: &mut Figures, ledger: &mut ledger::Ledger) {
    if bytes == 0 {
        return;
    }
    let mib = bytes as f64 / PROGRAM_STEP as f64;
    let rescale = |value: f64, per: &mut Option<f64>| {
        if per.is_some() {
            *per = Some(value / mib);
        }
    };
    for f in figures.values_mut() {
        if let Some(v) = f.value {
            rescale(v, &mut f.per_transfer);
        }
    }
    for p in ledger.sender.iter_mut().chain(ledger.receiver.iter_mut()) {
        rescale(p.bytes as f64, &mut p.per_transfer);
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
