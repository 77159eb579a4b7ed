//! The report of one run, built in steps. Each step reads what the run measured (`Run`) and
//! returns figures and notes (`Parts`); `build` calls them in the order the notes are printed.
//! A new figure is a new step here, or a line in the step whose counts it shares.
use std::collections::BTreeMap;

use super::{
    Devices, FigureId, Figures, FileInfo, Finding, NetPath, PROGRAM_STEP, RunInput, RunReport,
    Subject, SyscallRow, Textbook, accounting, activity, copies, descriptors, device_figures,
    fmt_bytes, hook, ledger, missing, notes, sink_side, syscall_time,
    syscalls::{self, DataPath},
    textbook, transfers, uring, zerocopy,
};
use super::{Figure, Source};
use crate::{
    collect::Counts,
    probes::{HookPlan, catalog::Point},
    sink::SinkReport,
    workload::{ChildUsage, Method, UringTally, Verdict},
};

/// What every step reads: the run's input with its step size settled and its payload summed.
struct Run<'a> {
    subject: &'a Subject,
    method: Option<Method>,
    plan: &'a HookPlan,
    counts: &'a Counts,
    kernel_release: &'a str,
    /// The payload (for a program, what it moved) and the step it is counted in.
    bytes: u64,
    block_size: u64,
    transfers: u64,
    moved: Moved,
    /// `O_DIRECT` reads from a block device: the device wrote the user buffer, not the CPU.
    dma_reads: bool,
    usage: Option<ChildUsage>,
    file: Option<&'a FileInfo>,
    net: Option<&'a NetPath>,
    remote_receiver: Option<&'a SinkReport>,
    zerocopy: Option<&'a Verdict>,
    uring: Option<&'a UringTally>,
    devices: &'a Devices,
    unmeasured_children: &'a [activity::Child],
}

/// Bytes the syscalls' return values say were moved, by data path.
#[derive(Clone, Copy, Default)]
struct Moved {
    to_user: u64,
    from_user: u64,
    /// Counted once where it leaves the process's data path (`descriptors::in_kernel_once`).
    in_kernel: u64,
}

impl Moved {
    /// The payload of a program: the largest of its three paths.
    fn payload(self) -> u64 {
        self.to_user.max(self.from_user).max(self.in_kernel)
    }
}

/// What a step adds to the report.
#[derive(Default)]
struct Parts {
    figures: Figures,
    notes: Vec<String>,
}

impl Parts {
    fn add(&mut self, more: Parts) {
        self.figures.extend(more.figures);
        self.notes.extend(more.notes);
    }
}

/// The syscall table, and what it says was moved.
struct SyscallTable {
    rows: Vec<SyscallRow>,
    by_name: BTreeMap<String, u64>,
    moved: Moved,
    /// The factor the sampled time was scaled by to fit the window, when it was.
    capped: Option<f64>,
}

/// One row per syscall number, most frequent first, summing the bytes of each data path.
fn syscall_rows(plan: &HookPlan, counts: &Counts, one_thread: bool) -> SyscallTable {
    let mut rows = Vec::new();
    let mut measured_ns = Vec::new();
    let mut by_name = BTreeMap::new();
    let mut moved = Moved::default();
    for (&nr, stat) in &counts.syscalls {
        let name = syscalls::name_of(nr);
        let path = syscalls::data_path(&name);
        match path {
            DataPath::ToUser => moved.to_user += stat.ret_sum,
            DataPath::FromUser => moved.from_user += stat.ret_sum,
            DataPath::InKernel => moved.in_kernel += stat.ret_sum,
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
    moved.in_kernel = descriptors::in_kernel_once(moved.in_kernel, counts);
    // The built-in transfer process has one thread: its syscalls fit in its window.
    let capped = if one_thread {
        cap_to_window(&mut rows, &measured_ns, counts.window_ns())
    } else {
        None
    };
    rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    SyscallTable {
        rows,
        by_name,
        moved,
        capped,
    }
}

/// Scales the rows' sampled time down to fit `window_ns`, returning the factor when it did.
fn cap_to_window(rows: &mut [SyscallRow], measured_ns: &[u64], window_ns: u64) -> Option<f64> {
    let mut times: Vec<(u64, u64)> = rows
        .iter()
        .zip(measured_ns)
        .map(|(r, &m)| (r.total_ns, m))
        .collect();
    let factor = syscall_time::cap_to_window(&mut times, window_ns);
    if factor >= 1.0 {
        return None;
    }
    for (r, &(ns, _)) in rows.iter_mut().zip(&times) {
        r.total_ns = ns;
        if let Some(i) = r.time_estimate.as_mut() {
            i.low_ns = i.low_ns.map(|l| l.min(ns));
            i.high_ns = i.high_ns.map(|h| h.min(ns));
        }
    }
    Some(factor)
}

/// Syscalls and the mode switches of their entries and returns.
fn syscall_figures(run: &Run<'_>) -> Parts {
    let (enter, exit) = (
        hook(run.plan, Point::SysEnter),
        hook(run.plan, Point::SysExit),
    );
    let c = run.counts;
    let mut parts = Parts::default();
    parts.figures.insert(
        FigureId::Syscalls,
        Figure::measured(
            c.syscall_entries,
            run.transfers,
            &Source::Counted(vec![enter.clone()]),
            "every syscall the transfer process entered while measured, including its final exit_group",
        ),
    );
    parts.figures.insert(
        FigureId::ModeSwitches,
        Figure::measured(
            c.syscall_entries + c.syscall_returns,
            run.transfers,
            &Source::Counted(vec![enter, exit]),
            format!(
                "{} user->kernel entries and {} kernel->user returns through the syscall path; {} page \
                 faults in user mode (see page_faults_user) and interrupts also switch modes and are \
                 not included",
                c.syscall_entries, c.syscall_returns, c.page_faults_user
            ),
        ),
    );
    parts
}

/// Scheduler switches of the measured process, voluntary and involuntary.
fn switch_figures(run: &Run<'_>) -> Parts {
    let counted = Source::Counted(vec![hook(run.plan, Point::SchedSwitch)]);
    let c = run.counts;
    let rusage = |f: fn(&ChildUsage) -> u64| {
        run.usage
            .as_ref()
            .map_or_else(|| "unknown".to_owned(), |u| f(u).to_string())
    };
    let mut parts = Parts::default();
    parts.figures.insert(
        FigureId::ContextSwitches,
        Figure::measured(
            c.voluntary_switches + c.involuntary_switches,
            run.transfers,
            &counted,
            format!(
                "scheduler switches of the transfer process: {} voluntary (it blocked), {} involuntary \
                 (preempted); the kernel's rusage for its whole life: {} and {}",
                c.voluntary_switches,
                c.involuntary_switches,
                rusage(|u| u.voluntary_switches),
                rusage(|u| u.involuntary_switches)
            ),
        ),
    );
    parts.figures.insert(
        FigureId::ContextSwitchesVoluntary,
        Figure::measured(
            c.voluntary_switches,
            run.transfers,
            &counted,
            "switched out because it blocked",
        ),
    );
    parts.figures.insert(
        FigureId::ContextSwitchesInvoluntary,
        Figure::measured(
            c.involuntary_switches,
            run.transfers,
            &counted,
            "switched out while still runnable",
        ),
    );
    parts
}

/// What the syscalls' semantics say was copied between user buffers and the kernel.
fn user_copy_figures(run: &Run<'_>) -> Parts {
    let semantics = Source::SyscallSemantics(vec![
        hook(run.plan, Point::SysEnter),
        hook(run.plan, Point::SysExit),
    ]);
    let Moved {
        from_user,
        in_kernel,
        ..
    } = run.moved;
    let to_user = run.cpu_to_user();
    let mut parts = Parts::default();
    let mut one = |id, bytes, note: String| {
        parts
            .figures
            .insert(id, Figure::measured(bytes, run.transfers, &semantics, note));
    };
    one(
        FigureId::UserBufferCopyBytes,
        to_user + from_user,
        user_copy_note(run),
    );
    one(
        FigureId::CpuCopyToUserBytes,
        to_user,
        "kernel->user copies (read family)".to_owned(),
    );
    one(
        FigureId::CpuCopyFromUserBytes,
        from_user,
        "user->kernel copies (write family)".to_owned(),
    );
    one(
        FigureId::InKernelBytes,
        in_kernel,
        "payload moved by sendfile, splice or copy_file_range without passing a user buffer, \
         counted once where it leaves the process's data path (where splice's output could \
         be classified, what fills a pipe for a later splice is not counted again)"
            .to_owned(),
    );
    parts
}

/// The note of `user_buffer_copy_bytes`: both directions, and what the CPU did not copy.
fn user_copy_note(run: &Run<'_>) -> String {
    let mut note = format!(
        "bytes copied between user buffers and the kernel: {} kernel->user by read-type syscalls, {} \
         user->kernel by write-type syscalls",
        fmt_bytes(run.cpu_to_user()),
        fmt_bytes(run.moved.from_user)
    );
    if run.dma_reads {
        note.push_str(&format!(
            "; the {} read with O_DIRECT from {} were written into the user buffer by the device, not \
             copied by the CPU",
            fmt_bytes(run.moved.to_user),
            run.file.map_or("?", |f| f.filesystem.as_str())
        ));
    }
    if run.moved.in_kernel > 0 {
        note.push_str(&format!(
            "; {} moved inside the kernel by sendfile/splice/tee, where this source cannot see whether the \
             CPU copied them",
            fmt_bytes(run.moved.in_kernel)
        ));
    }
    note
}

impl Run<'_> {
    /// Bytes the CPU copied into user buffers (none where the device wrote them).
    fn cpu_to_user(&self) -> u64 {
        if self.dma_reads {
            0
        } else {
            self.moved.to_user
        }
    }
}

/// The kernel's own copy routines, hooked and sampled, checked against the syscalls' semantics.
fn copy_routine_figures(run: &Run<'_>) -> Parts {
    let semantic =
        run.cpu_to_user() + run.moved.from_user + uring::user_bytes(run.method, run.uring);
    let mut parts = Parts::default();
    copies::figures(
        run.plan,
        run.counts,
        run.transfers,
        semantic,
        &mut parts.figures,
        &mut parts.notes,
    );
    parts
}

/// The copy ledger, the methods' completion notes, and `cpu_copy_bytes`, its sum.
fn copy_ledger(run: &Run<'_>, samples: &copies::Samples) -> (ledger::Ledger, Parts) {
    let mut ledger = ledger::build(&ledger::Inputs {
        plan: run.plan,
        counts: run.counts,
        transfers: run.transfers,
        method: run.method,
        to_user: run.moved.to_user,
        from_user: run.moved.from_user,
        dma_reads: run.dma_reads,
        samples,
        zerocopy: run.zerocopy,
        uring: run.uring,
    });
    let mut parts = Parts::default();
    if let Some(v) = run.zerocopy {
        let device = run.net.map(|n| n.device.as_str());
        let kind = zerocopy::Kind::of(run.method);
        parts.notes.push(zerocopy::note(
            kind,
            v,
            device,
            run.block_size,
            run.transfers,
            samples,
        ));
    }
    if let (Some(m), Some(t)) = (run.method, run.uring) {
        parts.notes.extend(uring::notes(
            m,
            t,
            run.counts,
            run.transfers,
            run.kernel_release,
        ));
    }
    if let Some(sink) = run.remote_receiver {
        let addr = run.net.map_or("?", |n| n.receiver.as_str());
        ledger.receiver = vec![sink_side::sink_copy(sink, addr, run.transfers)];
    }
    parts.figures.insert(
        FigureId::CpuCopyBytes,
        ledger::figure(&ledger, run.transfers, &ledger::watched(run.plan)),
    );
    parts.notes.extend(ledger_notes(run, &ledger));
    (ledger, parts)
}

/// What the ledger contradicts, what was moved uncopied, and the receiver's own copies.
fn ledger_notes(run: &Run<'_>, ledger: &ledger::Ledger) -> Vec<String> {
    let mut notes = ledger::contradiction_notes(&ledger.sender);
    notes.extend(descriptors::uncopied_note(descriptors::ByKind::of(
        run.counts,
    )));
    for r in &ledger.receiver {
        #[expect(clippy::cast_precision_loss, reason = "display precision")]
        notes.push(format!(
            "Receiver, apart from the sender (the note counts only the sending side): {} {} \
             ({:.2} blocks per step), {}.",
            r.path,
            fmt_bytes(r.bytes),
            r.per_transfer.unwrap_or(0.0) / run.block_size.max(1) as f64,
            r.source
        ));
    }
    if let Some(sink) = run.remote_receiver {
        notes.push(format!(
            "The sink's own costs: {}.",
            sink_side::sink_costs(sink)
        ));
    }
    notes
}

/// Disk and NIC transfers, DMA API mappings and page faults.
fn device_step(run: &Run<'_>) -> Parts {
    let mut parts = Parts::default();
    device_figures::dma_figures(
        run.plan,
        run.counts,
        run.devices,
        run.transfers,
        &mut parts.figures,
    );
    let dma_api: Vec<String> = [Point::DmaMap, Point::DmaMapSg]
        .into_iter()
        .filter_map(|p| run.plan.chosen(p))
        .map(|v| format!("{} (device-wide)", v.describe()))
        .collect();
    parts.figures.insert(
        FigureId::DmaApiMaps,
        if dma_api.is_empty() {
            Figure::unavailable(missing(run.plan, Point::DmaMap))
        } else {
            Figure::measured(
                run.counts.dma_maps,
                run.transfers,
                &Source::Counted(dma_api),
                "buffers mapped for device DMA through the DMA API while measuring, by any driver; \
                 drivers that bypass it (virtio without an IOMMU) do not show here",
            )
        },
    );
    device_figures::page_fault_figures(run.plan, run.counts, run.transfers, &mut parts.figures);
    parts
}

/// The process's time on a CPU, and a program that moved nothing.
fn activity_step(run: &Run<'_>) -> Parts {
    let mut parts = Parts::default();
    let program = matches!(run.subject, Subject::Program(_));
    activity::cpu_time(
        run.plan,
        run.counts,
        program,
        run.bytes,
        &mut parts.figures,
        &mut parts.notes,
    );
    if let Subject::Program(name) = run.subject
        && let Some(note) = activity::idle_target(
            name,
            run.counts.syscall_entries,
            run.moved.payload(),
            run.unmeasured_children,
        )
    {
        parts.notes.push(note);
    }
    parts
}

/// The measured window and the throughput over it.
fn clock_figures(run: &Run<'_>) -> Parts {
    let clock = Source::KernelClock(vec![
        hook(run.plan, Point::SysEnter),
        hook(run.plan, Point::SysExit),
    ]);
    let elapsed = run.counts.window_ns();
    let mut parts = Parts::default();
    if elapsed == 0 {
        for id in [FigureId::ElapsedNs, FigureId::ThroughputBytesPerSec] {
            parts
                .figures
                .insert(id, Figure::unavailable("no traced event was seen"));
        }
        return parts;
    }
    #[expect(clippy::cast_precision_loss, reason = "display precision")]
    let (elapsed, bytes) = (elapsed as f64, run.bytes as f64);
    parts.figures.insert(
        FigureId::ElapsedNs,
        Figure::scalar(
            elapsed,
            &clock,
            "first syscall entry to the last timed syscall event of the measured process (its \
             exit is always timed, and so is the return of every call that was switched out; \
             with sampled timing a process that does not exit ends its window at most a few \
             syscalls early)",
        ),
    );
    parts.figures.insert(
        FigureId::ThroughputBytesPerSec,
        Figure::scalar(
            bytes * 1e9 / elapsed,
            &clock,
            "bytes delivered / elapsed_ns",
        ),
    );
    parts
}

/// The textbook's figures for this run, and where the measurement departs from them.
fn textbook_step(
    run: &Run<'_>,
    figures: &Figures,
    ledger: &ledger::Ledger,
    capped: Option<f64>,
) -> (Textbook, Vec<String>, Vec<Finding>) {
    let textbook = run.method.map_or_else(textbook::program, |m| {
        textbook::for_method(m, run.net.and_then(|n| n.scatter_gather))
    });
    let footnotes = notes::differences(&notes::Inputs {
        method: run.method,
        transfers: run.transfers,
        block_size: run.block_size,
        counts: run.counts,
        figures,
        textbook: &textbook,
        file: run.file,
        to_user: run.moved.to_user,
        devices: run.devices,
        net: run.net,
        copies: &ledger.sender,
    });
    let findings = footnotes
        .iter()
        .flat_map(|f| f.findings.iter().cloned())
        .collect();
    let mut notes: Vec<String> = footnotes.into_iter().map(|f| f.text).collect();
    if let Some(factor) = capped {
        notes.push(format!(
            "The sampled time in the kernel added up to more than the single-threaded sender's \
             window (time taken from the CPU inside calls without a switch-out, such as a \
             hypervisor's, makes a 1-in-16 sample uneven): the extrapolated part was scaled by \
             {factor:.2} to fit, measured time untouched. --time-every 1 times every call."
        ));
    }
    (textbook, notes, findings)
}

/// What the event trace missed or cut off.
fn trace_notes(trace: Option<&accounting::TraceSummary>) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(t) = trace.filter(|t| t.lost > 0) {
        notes.push(format!(
            "The event trace is incomplete: {} of {} events were lost for want of ring-buffer room \
             (per CPU: {:?}); the table's counts are complete, the trace's are not. A larger \
             --trace-buffer keeps more.",
            t.lost,
            t.events + t.lost,
            t.lost_per_cpu
        ));
    }
    if let Some(t) = trace.filter(|t| t.over_limit > 0) {
        notes.push(format!(
            "The event trace stopped at --trace-limit: it keeps the first {} of {} events written \
             ({} later ones were counted, not kept); the table's counts are complete.",
            t.events - t.over_limit,
            t.events,
            t.over_limit
        ));
    }
    notes
}

/// A program's figures per MiB of its exact payload, and the note that says so.
fn per_mib_of_program(run: &Run<'_>, figures: &mut Figures, ledger: &mut ledger::Ledger) -> String {
    // Per MiB of the exact payload, not per whole step counted up (32.01 MiB is 32.01 MiB,
    // not 33 steps).
    per_exact_mib(run.bytes, figures, ledger);
    format!(
        "No built-in workload: a step is 1 MiB of payload ({} moved in all: {} read into user \
         buffers, {} written from them, {} moved inside the kernel).",
        fmt_bytes(run.bytes),
        fmt_bytes(run.moved.to_user),
        fmt_bytes(run.moved.from_user),
        fmt_bytes(run.moved.in_kernel)
    )
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

/// Builds the report of one run: the steps above, in the order their notes are printed.
#[must_use]
pub fn build(input: RunInput<'_>) -> RunReport {
    let workload = matches!(input.subject, Subject::Workload(_));
    let table = syscall_rows(input.plan, input.counts, workload);
    let run = settle(&input, table.moved);
    let mut parts = Parts::default();
    parts.add(syscall_figures(&run));
    parts.add(switch_figures(&run));
    parts.add(user_copy_figures(&run));
    parts.add(copy_routine_figures(&run));
    let samples = copies::Samples::from_counts(run.plan, run.counts);
    let (mut ledger, ledger_parts) = copy_ledger(&run, &samples);
    parts.add(ledger_parts);
    parts.add(device_step(&run));
    parts.add(activity_step(&run));
    parts.add(clock_figures(&run));
    let (textbook, differences, findings) =
        textbook_step(&run, &parts.figures, &ledger, table.capped);
    parts.notes.extend(differences);
    let accounting = accounting::accounting(run.counts);
    parts
        .notes
        .extend(accounting::accounting_notes(&accounting));
    let trace = accounting::trace_summary(run.counts);
    parts.notes.extend(trace_notes(trace.as_ref()));
    if !workload {
        let note = per_mib_of_program(&run, &mut parts.figures, &mut ledger);
        parts.notes.push(note);
    }
    let (bytes, block_size, transfers) = (run.bytes, run.block_size, run.transfers);
    let elapsed_ns = run.counts.window_ns();
    RunReport {
        method: match &input.subject {
            Subject::Workload(m) => m.to_string(),
            Subject::Program(name) => name.clone(),
        },
        kind: if workload { "workload" } else { "program" },
        bytes,
        block_size,
        transfers,
        elapsed_ns,
        kernel: input.kernel_release.to_owned(),
        hooks: Point::ALL
            .into_iter()
            .map(|p| (p.name(), hook(input.plan, p)))
            .collect(),
        syscall_timing: syscall_time::description(input.plan.time_every),
        syscalls_by_name: table.by_name,
        syscalls: table.rows,
        figures: parts.figures,
        copies: ledger.sender,
        receiver_copies: ledger.receiver,
        textbook,
        notes: parts.notes,
        findings,
        received: input.received,
        process_rusage: input.usage,
        file: input.file,
        net: input.net,
        sink: input.remote_receiver,
        zerocopy: input.zerocopy,
        uring: input.uring,
        devices: input.devices,
        processes: accounting::process_rows(input.counts),
        trace,
        accounting,
        descriptors: descriptors::Descriptors::of(input.counts),
        repeat: None,
    }
}

/// The run every step reads: a program's payload becomes its bytes, in steps of 1 MiB.
fn settle<'a>(input: &'a RunInput<'a>, moved: Moved) -> Run<'a> {
    let method = input.subject.method();
    // A program has no step of its own: its figures are per MiB of the payload it moved.
    let (bytes, block_size) = match input.subject {
        Subject::Workload(_) => (input.bytes, input.block_size),
        Subject::Program(_) => (moved.payload(), PROGRAM_STEP),
    };
    Run {
        subject: &input.subject,
        method,
        plan: input.plan,
        counts: input.counts,
        kernel_release: input.kernel_release,
        bytes,
        block_size,
        transfers: transfers(bytes, block_size),
        moved,
        dma_reads: method == Some(Method::DirectIo)
            && input.file.as_ref().is_some_and(|f| f.block_device),
        usage: input.usage,
        file: input.file.as_ref(),
        net: input.net.as_ref(),
        remote_receiver: input.remote_receiver.as_ref(),
        zerocopy: input.zerocopy.as_ref(),
        uring: input.uring.as_ref(),
        devices: &input.devices,
        unmeasured_children: &input.unmeasured_children,
    }
}
