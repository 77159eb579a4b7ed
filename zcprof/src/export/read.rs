//! Reading a saved trace back into counts, so `zcprof report` renders the cost table of a run
//! recorded elsewhere. Anything malformed, truncated or edited is refused, never half-read.
use std::path::Path;

use zcprof_common::{Counter, HookedBytes};

use super::{ExportError, FORMAT_VERSION, RunContext, chrome, events};
use crate::collect::{Counts, Process};

#[derive(serde::Deserialize)]
struct File {
    #[serde(rename = "traceEvents")]
    trace_events: Vec<Record>,
    zcprof: Option<Section>,
}

#[derive(serde::Deserialize)]
struct Section {
    version: u32,
    records: u64,
    runs: Vec<RunContext>,
}

#[derive(serde::Deserialize)]
struct Record {
    ph: String,
    #[serde(default)]
    cat: String,
    #[serde(default)]
    pid: u32,
    ts: Option<f64>,
    dur: Option<f64>,
    #[serde(default)]
    args: serde_json::Value,
}

impl Record {
    fn ts_ns(&self) -> Option<u64> {
        self.ts.map(us_to_ns)
    }

    /// The record's `args` as its kind's type (`events`), the one the writer wrote.
    fn args<T: events::Args>(&self) -> Result<T, String> {
        events::decode(&self.cat, &self.args)
    }
}

#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "trace times are non-negative and far below 2^53 ns"
)]
fn us_to_ns(us: f64) -> u64 {
    // Capped where sums of many stay below 2^64: a century of nanoseconds is 2^62.
    (us * 1000.0).round().clamp(0.0, MAX_NS as f64) as u64
}

/// The largest unsigned number anywhere in `v`.
fn largest(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::Array(a) => a.iter().filter_map(largest).max(),
        serde_json::Value::Object(o) => o.values().filter_map(largest).max(),
        _ => None,
    }
}

/// The largest timestamp or duration a trace may hold, in ns (about 36 years).
const MAX_NS: u64 = 1 << 60;

/// One run read back: its context and the counts rebuilt from its events.
pub struct ReadRun {
    pub context: RunContext,
    pub counts: Counts,
}

/// Whether the JSON at `path` is one of zcprof's reports (a run, or compare's runs) rather than a
/// trace.
fn is_report(path: &Path) -> bool {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| {
            (v.get("runs").is_some() && v.get("failed").is_some())
                || (v.get("method").is_some() && v.get("figures").is_some())
        })
}

/// Reads the trace at `path`.
///
/// # Errors
/// When the file cannot be read, is not JSON, is truncated, was not written by this version of
/// zcprof, or holds events that do not add up.
pub fn read(path: &Path) -> Result<Vec<ReadRun>, ExportError> {
    let invalid = |reason: String| ExportError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let file = crate::files::open_regular(path).map_err(|source| ExportError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parsed: File = serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| {
        invalid(if e.is_eof() {
            format!("it ends early (truncated?): {e}")
        } else if e.is_data() && is_report(path) {
            "it is a zcprof report (the JSON of run, compare, exec or attach), not a trace: \
             `zcprof report` reads the files written by --trace FILE"
                .to_owned()
        } else {
            e.to_string()
        })
    })?;
    let section = parsed.zcprof.ok_or_else(|| {
        invalid("it has no \"zcprof\" section (was it recorded with zcprof --trace?)".into())
    })?;
    // The runs' counts are summed and scaled when the table is rebuilt: a number beyond what
    // any run can reach was edited in, and would overflow there.
    for run in &section.runs {
        let value = serde_json::to_value(run).map_err(|e| invalid(e.to_string()))?;
        if let Some(n) = largest(&value).filter(|&n| n > MAX_NS) {
            return Err(invalid(format!(
                "its run context holds the number {n}, beyond any real count (edited?)"
            )));
        }
    }
    for (i, run) in section.runs.iter().enumerate() {
        if let Some(why) = impossible(run) {
            return Err(invalid(format!("its run {i} {why} (edited?)")));
        }
    }
    if section.version != FORMAT_VERSION {
        return Err(invalid(format!(
            "format version {} (this zcprof reads version {FORMAT_VERSION})",
            section.version
        )));
    }
    let records = parsed.trace_events.len() as u64;
    if records != section.records {
        return Err(invalid(format!(
            "it holds {records} trace events where it was written with {} (cut or edited)",
            section.records
        )));
    }
    if section.runs.is_empty() {
        return Err(invalid("it holds no runs".into()));
    }
    let mut runs: Vec<ReadRun> = section
        .runs
        .into_iter()
        .map(|context| ReadRun {
            counts: seed(&context),
            context,
        })
        .collect();
    for (i, record) in parsed.trace_events.iter().enumerate() {
        add(&mut runs, record).map_err(|why| invalid(format!("trace event {i}: {why}")))?;
    }
    for run in &mut runs {
        run.counts.syscall_entries = run.counts.syscalls.values().map(|s| s.count).sum();
    }
    Ok(runs)
}

/// What no run zcprof recorded can say of itself: a built-in workload of no bytes or no blocks
/// (both are checked before measuring), a block larger than the payload, a window that ends
/// before it starts.
fn impossible(run: &RunContext) -> Option<String> {
    if run.workload && (run.bytes == 0 || run.block_size == 0 || run.block_size > run.bytes) {
        return Some(format!(
            "says a built-in workload moved {} bytes in blocks of {}",
            run.bytes, run.block_size
        ));
    }
    (run.end_ns < run.start_ns).then(|| {
        format!(
            "ends at {} ns, before it starts at {} ns",
            run.end_ns, run.start_ns
        )
    })
}

/// The counts a run's context holds (those that are not events).
fn seed(context: &RunContext) -> Counts {
    let mut counts = Counts {
        unmatched_returns: context.unmatched_returns,
        in_flight_lost: context.in_flight_lost,
        samples_user: context.samples_user,
        samples_kernel: context.samples_kernel,
        samples_lost: context.samples_lost,
        sampled_cpu_ns: context.sampled_cpu_ns,
        task_clock_ns: context.task_clock_ns.map(Ok),
        kernel_stacks: context.kernel_stacks.clone(),
        trace_events: context.events,
        trace_lost: context.lost_per_cpu.clone(),
        trace_over_limit: context.over_limit,
        ..Counts::default()
    };
    context.counters.restore(&mut counts);
    counts
}

/// The run whose window holds `ns`.
fn run_at(runs: &mut [ReadRun], ns: u64) -> Result<&mut ReadRun, String> {
    runs.iter_mut()
        .find(|r| (r.context.start_ns..=r.context.end_ns).contains(&ns))
        .ok_or_else(|| format!("its time {ns} ns lies outside every run"))
}

fn process(run: &mut ReadRun, pid: u32) -> Option<&mut Process> {
    if !run.context.followed {
        return None;
    }
    let name = run.context.process_names.get(&pid).cloned();
    Some(run.counts.processes.entry(pid).or_insert_with(|| Process {
        name: name.unwrap_or_default(),
        ..Process::default()
    }))
}

fn stamp(counts: &mut Counts, first: u64, last: u64) {
    if counts.first_event_ns == 0 || first < counts.first_event_ns {
        counts.first_event_ns = first;
    }
    counts.last_event_ns = counts.last_event_ns.max(last);
}

/// Adds one record's counts to the run it falls in: one decoding function per event kind,
/// the pair of `chrome`'s encoding one.
fn add(runs: &mut [ReadRun], r: &Record) -> Result<(), String> {
    // Metadata, counters and zcprof's own markers carry no counts.
    if matches!(r.ph.as_str(), "M" | "C")
        || matches!(r.cat.as_str(), chrome::cat::RUN | chrome::cat::LOST)
    {
        return Ok(());
    }
    let ts = r
        .ts_ns()
        .ok_or_else(|| format!("a {} event without ts", r.cat))?;
    let run = run_at(runs, ts)?;
    match r.cat.as_str() {
        chrome::cat::SYSCALL => syscall(run, r, ts)?,
        chrome::cat::SCHED => switch(run, r)?,
        chrome::cat::FAULT => fault(run, r)?,
        chrome::cat::COPY => copy(run, r)?,
        chrome::cat::DISK => disk(run, r)?,
        chrome::cat::BIO => {
            let a: events::Bio = r.args()?;
            match a.op.as_deref() {
                Some("R") => run.counts.process_disk_read_bytes += a.bytes,
                Some("W") => run.counts.process_disk_write_bytes += a.bytes,
                _ => {}
            }
        }
        chrome::cat::NET => {
            let a: events::Net = r.args()?;
            let x = run.counts.net_xmit.entry(a.device).or_default();
            x.bytes += a.bytes;
            x.packets += 1;
        }
        chrome::cat::DMA => run.counts.dma_maps += 1,
        chrome::cat::PROCESS => run.counts.forks += 1,
        other => return Err(format!("unknown category {other:?}")),
    }
    Ok(())
}

/// A syscall: a complete slice (`X`), or one that never returned (`B`).
fn syscall(run: &mut ReadRun, r: &Record, ts: u64) -> Result<(), String> {
    let number = |nr: u64| u32::try_from(nr).map_err(|e| e.to_string());
    match r.ph.as_str() {
        "X" => {
            let dur = r.dur.map(us_to_ns).ok_or("a syscall slice without dur")?;
            let events::Syscall { nr, ret, fd_kind } = r.args()?;
            let nr = number(nr)?;
            let stat = run.counts.syscalls.entry(nr).or_default();
            stat.count += 1;
            stat.total_ns = stat.total_ns.saturating_add(dur);
            stat.timed += 1;
            if ret < 0 {
                stat.errors += 1;
            } else {
                stat.ret_sum = stat.ret_sum.wrapping_add(ret.unsigned_abs());
            }
            if let Some(kind) = fd_kind
                && ret > 0
            {
                fd_bytes(&mut run.counts, nr, kind, ret.unsigned_abs());
            }
            run.counts.syscall_returns += 1;
            stamp(&mut run.counts, ts, ts.saturating_add(dur));
        }
        "B" => {
            let nr = number(r.args::<events::Unfinished>()?.nr)?;
            run.counts.syscalls.entry(nr).or_default().count += 1;
            stamp(&mut run.counts, ts, ts);
        }
        other => return Err(format!("a syscall event of phase {other:?}")),
    }
    if let Some(p) = process(run, r.pid) {
        p.syscalls += 1;
    }
    Ok(())
}

fn switch(run: &mut ReadRun, r: &Record) -> Result<(), String> {
    let events::Switch { voluntary } = r.args()?;
    if voluntary {
        run.counts.voluntary_switches += 1;
    } else {
        run.counts.involuntary_switches += 1;
    }
    if let Some(p) = process(run, r.pid) {
        if voluntary {
            p.voluntary_switches += 1;
        } else {
            p.involuntary_switches += 1;
        }
    }
    Ok(())
}

fn fault(run: &mut ReadRun, r: &Record) -> Result<(), String> {
    let events::Fault { user } = r.args()?;
    if user {
        run.counts.page_faults_user += 1;
    } else {
        run.counts.page_faults_kernel += 1;
    }
    if let Some(p) = process(run, r.pid) {
        if user {
            p.page_faults_user += 1;
        } else {
            p.page_faults_kernel += 1;
        }
    }
    Ok(())
}

/// A hooked copy routine's bytes, in the run's total of its slot and, when it happened inside a
/// syscall, under that syscall.
fn copy(run: &mut ReadRun, r: &Record) -> Result<(), String> {
    let events::Copy {
        slot,
        bytes,
        syscall,
    } = r.args()?;
    let counts = &mut run.counts;
    let (total, field): (&mut u64, fn(&mut HookedBytes) -> &mut u64) = match slot {
        s if s == Counter::FilemapReadBytes as u64 => {
            (&mut counts.filemap_read_bytes, |h| &mut h.filemap_read)
        }
        s if s == Counter::CopyToIterBytes as u64 => {
            (&mut counts.copy_to_iter_bytes, |h| &mut h.copy_to_iter)
        }
        s if s == Counter::CopyFromIterBytes as u64 => {
            (&mut counts.copy_from_iter_bytes, |h| &mut h.copy_from_iter)
        }
        s if s == Counter::SockSendBytes as u64 => {
            (&mut counts.sock_send_bytes, |h| &mut h.sock_send)
        }
        s if s == Counter::PageCacheWriteBytes as u64 => {
            (&mut counts.page_cache_write_bytes, |h| {
                &mut h.page_cache_write
            })
        }
        s if s == Counter::SockRecvBytes as u64 => {
            (&mut counts.sock_recv_bytes, |h| &mut h.sock_recv)
        }
        s if s == Counter::DirectIoBytes as u64 => {
            (&mut counts.direct_io_bytes, |h| &mut h.direct_io)
        }
        s if s == Counter::XmitLinearBytes as u64 => {
            (&mut counts.xmit_linear_bytes, |h| &mut h.xmit_linear)
        }
        other => return Err(format!("a copy event of unknown slot {other}")),
    };
    *total += bytes;
    if let Some(nr) = syscall {
        let by = counts
            .hooked_by_syscall
            .entry(u32::try_from(nr).unwrap_or(u32::MAX))
            .or_default();
        *field(by) += bytes;
    }
    // O_DIRECT is the device's transfer, not a copy of the process.
    if let Some(p) = process(run, r.pid)
        && slot != Counter::DirectIoBytes as u64
    {
        if slot == Counter::SockSendBytes as u64 {
            p.sock_send_bytes += bytes;
        } else {
            p.copied_bytes += bytes;
        }
    }
    Ok(())
}

/// A block request (device-wide), by device and direction.
fn disk(run: &mut ReadRun, r: &Record) -> Result<(), String> {
    let events::Disk { dev, op, bytes, .. } = r.args()?;
    let dev = u32::try_from(dev).map_err(|e| e.to_string())?;
    let op = op.unwrap_or_default();
    let io = run.counts.disk_io.entry(dev).or_default();
    match op.as_str() {
        "R" => io.read_bytes += bytes,
        "W" => io.write_bytes += bytes,
        _ => io.other_bytes += bytes,
    }
    io.requests += 1;
    Ok(())
}

/// Adds a read- or write-type syscall's bytes under its descriptor's kind.
fn fd_bytes(counts: &mut crate::collect::Counts, nr: u32, kind: u64, bytes: u64) {
    use crate::model::syscalls::{DataPath, data_path, name_of};
    let name = name_of(nr);
    let direction = match data_path(&name) {
        DataPath::ToUser => 0,
        DataPath::FromUser => 1,
        DataPath::InKernel if name == "splice" => 2,
        _ => return,
    };
    if let Some(slot) = usize::try_from(kind)
        .ok()
        .and_then(|k| counts.fd_bytes.get_mut(k))
    {
        slot[direction] += bytes;
    }
}
