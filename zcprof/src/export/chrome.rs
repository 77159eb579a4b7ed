//! Chrome trace-event JSON, as ui.perfetto.dev and `chrome://tracing` read it: syscalls as
//! complete slices per thread, with context switches, page faults, copies and packets as instant
//! events inside them; block requests and DMA mappings on a device-wide track; counters of bytes
//! copied; process and thread names as metadata; and the `zcprof` section `report` reads back.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    io::{self, Write},
};

use zcprof_common::{Counter, EventKind, NO_SYSCALL, TraceEvent};

use super::{FORMAT_VERSION, Run, events};
use crate::collect::c_name;

/// The pseudo-process holding device-wide tracks and the run slices (no real process has 0).
pub const DEVICE_PID: u32 = 0;
/// Its threads.
pub const RUNS_TID: u32 = 0;
pub const BLOCK_TID: u32 = 1;
pub const DMA_TID: u32 = 2;

/// Categories, which `report` uses to tell events apart.
pub mod cat {
    pub const SYSCALL: &str = "syscall";
    pub const SCHED: &str = "sched";
    pub const FAULT: &str = "fault";
    pub const COPY: &str = "copy";
    pub const DISK: &str = "disk";
    /// Block I/O a traced task queued itself, on its own thread.
    pub const BIO: &str = "bio";
    pub const NET: &str = "net";
    pub const DMA: &str = "dma";
    pub const PROCESS: &str = "process";
    pub const RUN: &str = "run";
    pub const LOST: &str = "lost";
}

/// Microseconds with nanosecond precision, written exactly (no float rounding).
fn us(ns: u64) -> String {
    format!("{}.{:03}", ns / 1000, ns % 1000)
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"?\"".to_owned())
}

/// The name of a copy slot, as the kernel calls the routine.
#[must_use]
pub fn copy_routine(slot: u32) -> &'static str {
    match slot {
        s if s == Counter::FilemapReadBytes as u32 => "filemap_read",
        s if s == Counter::CopyToIterBytes as u32 => "_copy_to_iter",
        s if s == Counter::CopyFromIterBytes as u32 => "_copy_from_iter",
        s if s == Counter::SockSendBytes as u32 => "sock_send",
        s if s == Counter::PageCacheWriteBytes as u32 => "page cache write (ext4 write_end)",
        s if s == Counter::SockRecvBytes as u32 => "socket receive (skb_copy_datagram_iter)",
        s if s == Counter::XmitLinearBytes as u32 => "copy into linear packet data (segmentation)",
        s if s == Counter::DirectIoBytes as u32 => "O_DIRECT (device <-> user buffer, no CPU copy)",
        _ => "copy",
    }
}

/// Writes records one per line, comma-separated, counting them.
struct Records<'a, W: Write> {
    out: &'a mut W,
    count: u64,
}

impl<W: Write> Records<'_, W> {
    fn push(&mut self, record: &str) -> io::Result<()> {
        if self.count > 0 {
            self.out.write_all(b",\n")?;
        }
        self.out.write_all(record.as_bytes())?;
        self.count += 1;
        Ok(())
    }
}

/// The state of one file being written: records so far, and the names and running totals that
/// later records need.
struct Writer<'a, W: Write> {
    records: Records<'a, W>,
    origin_ns: u64,
    syscall_names: HashMap<u32, String>,
    thread_names: BTreeMap<(u32, u32), String>,
    process_names: BTreeMap<u32, String>,
}

/// The running totals of one run, for its counter tracks.
#[derive(Default)]
struct Totals {
    /// Bytes per copy slot (`copy_total_index`), per process.
    copied: HashMap<u32, [u64; 8]>,
    disk: u64,
}

/// Writes the whole file; returns the number of trace-event records.
pub fn write<W: Write>(out: &mut W, origin_ns: u64, runs: &[Run]) -> io::Result<u64> {
    out.write_all(b"{\"traceEvents\": [\n")?;
    let mut w = Writer {
        records: Records { out, count: 0 },
        origin_ns,
        syscall_names: HashMap::new(),
        thread_names: BTreeMap::new(),
        process_names: BTreeMap::new(),
    };
    for (index, run) in runs.iter().enumerate() {
        w.run(index, run)?;
    }
    w.names()?;
    let count = w.records.count;
    section(out, count, runs)?;
    Ok(count)
}

impl<W: Write> Writer<'_, W> {
    fn rel(&self, ns: u64) -> u64 {
        ns.saturating_sub(self.origin_ns)
    }

    fn syscall_name(&mut self, nr: u32) -> String {
        self.syscall_names
            .entry(nr)
            .or_insert_with(|| crate::model::syscalls::name_of(nr))
            .clone()
    }

    /// One run: its slice, its events in time order, its unfinished syscalls and its markers.
    fn run(&mut self, index: usize, run: &Run) -> io::Result<()> {
        let ctx = &run.context;
        self.records.push(&format!(
            "{{\"ph\":\"X\",\"cat\":\"{}\",\"name\":{},\"pid\":{DEVICE_PID},\"tid\":{RUNS_TID},\"ts\":{},\"dur\":{},\"args\":{{\"run\":{index}}}}}",
            cat::RUN,
            json_str(&format!("run {}: {}", index + 1, ctx.subject)),
            us(ctx.start_ns),
            us(ctx.end_ns.saturating_sub(ctx.start_ns)),
        ))?;
        let mut events: Vec<&TraceEvent> = run.recorded.events.iter().collect();
        events.sort_by_key(|e| {
            if e.kind == EventKind::Syscall as u32 {
                e.start_ns
            } else {
                e.ts_ns
            }
        });
        let mut totals = Totals::default();
        for e in events {
            self.event(run, e, &mut totals)?;
        }
        self.unfinished(run)?;
        self.markers(run)?;
        for (&pid, name) in &ctx.process_names {
            self.process_names.insert(pid, name.clone());
        }
        Ok(())
    }

    /// One event's record (and, for copies and block requests, its counter's new value).
    fn event(&mut self, run: &Run, e: &TraceEvent, totals: &mut Totals) -> io::Result<()> {
        let (pid, tid) = (e.tgid, e.tid);
        let ts = us(self.rel(e.ts_ns));
        let Some(kind) = EventKind::from_u32(e.kind) else {
            return Ok(());
        };
        let line = match kind {
            EventKind::Syscall => {
                let name = self.syscall_name(e.arg);
                syscall(e, &name, &us(self.rel(e.start_ns)))
            }
            EventKind::Exit => {
                let name = self.syscall_name(e.arg);
                thread_end(e, &name, &us(self.rel(e.start_ns)))
            }
            EventKind::Switch => {
                self.name_thread(e);
                switch(e, &ts)
            }
            EventKind::Fault => fault(e, &ts),
            EventKind::Copy => {
                self.records.push(&copy(e, &ts))?;
                let sums = totals.copied.entry(pid).or_default();
                sums[copy_total_index(e.arg)] += e.value.unsigned_abs();
                copy_counter(pid, &ts, sums)
            }
            EventKind::Disk => {
                self.records.push(&disk(e, &ts))?;
                totals.disk += e.value.unsigned_abs();
                format!(
                    "{{\"ph\":\"C\",\"name\":\"block bytes issued\",\"pid\":{DEVICE_PID},\"ts\":{ts},\"args\":{{\"bytes\":{}}}}}",
                    totals.disk
                )
            }
            EventKind::Bio => bio(e, &ts),
            EventKind::Net => net(e, &ts),
            EventKind::Dma => format!(
                "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"{}\",\"name\":\"DMA mapping\",\"pid\":{DEVICE_PID},\"tid\":{DMA_TID},\"ts\":{ts},\"args\":{}}}",
                cat::DMA,
                events::encode(&events::Dma { issuer: pid })
            ),
            EventKind::Fork => {
                self.name_thread(e);
                format!(
                    "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"{}\",\"name\":\"fork\",\"pid\":{pid},\"tid\":{tid},\"ts\":{ts},\"args\":{}}}",
                    cat::PROCESS,
                    events::encode(&events::Fork { child: e.value })
                )
            }
        };
        // Device-wide events are on the device's tracks, not the issuer's thread.
        if !matches!(kind, EventKind::Disk | EventKind::Dma) {
            self.thread_names.entry((pid, tid)).or_insert_with(|| {
                run.recorded
                    .thread_names
                    .get(&tid)
                    .filter(|n| !n.is_empty())
                    .cloned()
                    .unwrap_or_else(|| format!("thread {tid}"))
            });
        }
        self.records.push(&line)
    }

    /// The thread's name as the kernel gave it in the event, if it did.
    fn name_thread(&mut self, e: &TraceEvent) {
        let comm = c_name(&e.name);
        if !comm.is_empty() {
            self.thread_names.insert((e.tgid, e.tid), comm);
        }
    }

    /// Syscalls still in progress when the programs were detached: slices with no end.
    fn unfinished(&mut self, run: &Run) -> io::Result<()> {
        for u in &run.unfinished {
            let name = self.syscall_name(u.nr);
            let args = events::Unfinished {
                nr: u.nr.into(),
                open: true,
                thread_ended: false,
            };
            self.records.push(&format!(
                "{{\"ph\":\"B\",\"cat\":\"{}\",\"name\":\"{name}\",\"pid\":{},\"tid\":{},\"ts\":{},\"args\":{}}}",
                cat::SYSCALL,
                u.tgid,
                u.tid,
                us(self.rel(u.start_ns)),
                events::encode(&args)
            ))?;
            self.thread_names
                .entry((u.tgid, u.tid))
                .or_insert_with(|| format!("thread {}", u.tid));
        }
        Ok(())
    }

    /// Global markers nobody can miss in the timeline: events lost, and where the kept events
    /// end when the trace reached its limit (the run went on; its later events were not kept).
    fn markers(&mut self, run: &Run) -> io::Result<()> {
        let ctx = &run.context;
        let lost: u64 = ctx.lost_per_cpu.iter().sum();
        if lost > 0 {
            self.records.push(&format!(
                "{{\"ph\":\"i\",\"s\":\"g\",\"cat\":\"{}\",\"name\":\"{lost} EVENTS LOST: this run's trace is incomplete\",\"pid\":{DEVICE_PID},\"tid\":{RUNS_TID},\"ts\":{},\"args\":{{\"lost\":{lost},\"lost_per_cpu\":{:?}}}}}",
                cat::LOST,
                us(ctx.end_ns),
                ctx.lost_per_cpu
            ))?;
        }
        if ctx.over_limit > 0 {
            let last_kept = run
                .recorded
                .events
                .iter()
                .map(|e| e.ts_ns)
                .max()
                .unwrap_or(0);
            self.records.push(&format!(
                "{{\"ph\":\"i\",\"s\":\"g\",\"cat\":\"{}\",\"name\":\"TRACE LIMIT REACHED: {} later events not kept\",\"pid\":{DEVICE_PID},\"tid\":{RUNS_TID},\"ts\":{},\"args\":{{\"over_limit\":{}}}}}",
                cat::LOST,
                ctx.over_limit,
                us(self.rel(last_kept)),
                ctx.over_limit
            ))?;
        }
        Ok(())
    }

    /// Names: a process is named by the run context, else by its main thread; then the
    /// threads, and the device pseudo-process's tracks.
    fn names(&mut self) -> io::Result<()> {
        let pids: BTreeSet<u32> = self.thread_names.keys().map(|&(p, _)| p).collect();
        for pid in pids {
            let name = self.process_names.get(&pid).cloned().unwrap_or_else(|| {
                self.thread_names
                    .get(&(pid, pid))
                    .cloned()
                    .unwrap_or_else(|| format!("process {pid}"))
            });
            self.records.push(&format!(
                "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{pid},\"tid\":{pid},\"args\":{{\"name\":{}}}}}",
                json_str(&name)
            ))?;
        }
        for ((pid, tid), name) in &self.thread_names {
            self.records.push(&format!(
                "{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"name\":{}}}}}",
                json_str(name)
            ))?;
        }
        for (tid, name) in [
            (RUNS_TID, "runs"),
            (BLOCK_TID, "block requests (device-wide)"),
            (DMA_TID, "DMA mappings (device-wide)"),
        ] {
            self.records.push(&format!(
                "{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":{DEVICE_PID},\"tid\":{tid},\"args\":{{\"name\":\"{name}\"}}}}"
            ))?;
        }
        self.records.push(&format!(
            "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{DEVICE_PID},\"tid\":{RUNS_TID},\"args\":{{\"name\":\"zcprof: runs and devices\"}}}}"
        ))
    }
}

/// A syscall as a complete slice, with its number, return value and descriptor kind (where the
/// kernel side classified it).
fn syscall(e: &TraceEvent, name: &str, start: &str) -> String {
    let args = events::Syscall {
        nr: e.arg.into(),
        ret: e.value,
        fd_kind: (e.aux != 0).then_some(e.aux.into()),
    };
    format!(
        "{{\"ph\":\"X\",\"cat\":\"{}\",\"name\":\"{name}\",\"pid\":{},\"tid\":{},\"ts\":{start},\"dur\":{},\"args\":{}}}",
        cat::SYSCALL,
        e.tgid,
        e.tid,
        us(e.ts_ns.saturating_sub(e.start_ns)),
        events::encode(&args)
    )
}

/// A thread that ended in `exit` or `exit_group`: a slice with no end, like a syscall still in
/// progress when the programs were detached.
fn thread_end(e: &TraceEvent, name: &str, start: &str) -> String {
    let args = events::Unfinished {
        nr: e.arg.into(),
        open: true,
        thread_ended: true,
    };
    format!(
        "{{\"ph\":\"B\",\"cat\":\"{}\",\"name\":\"{name}\",\"pid\":{},\"tid\":{},\"ts\":{start},\"args\":{}}}",
        cat::SYSCALL,
        e.tgid,
        e.tid,
        events::encode(&args)
    )
}

fn switch(e: &TraceEvent, ts: &str) -> String {
    let voluntary = e.arg != 0;
    format!(
        "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"{}\",\"name\":\"{}\",\"pid\":{},\"tid\":{},\"ts\":{ts},\"args\":{}}}",
        cat::SCHED,
        if voluntary {
            "switched out (blocked)"
        } else {
            "switched out (preempted)"
        },
        e.tgid,
        e.tid,
        events::encode(&events::Switch { voluntary })
    )
}

fn fault(e: &TraceEvent, ts: &str) -> String {
    let user = e.arg != 0;
    format!(
        "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"{}\",\"name\":\"{}\",\"pid\":{},\"tid\":{},\"ts\":{ts},\"args\":{}}}",
        cat::FAULT,
        if user {
            "page fault (user mode)"
        } else {
            "page fault (kernel mode)"
        },
        e.tgid,
        e.tid,
        events::encode(&events::Fault { user })
    )
}

fn copy(e: &TraceEvent, ts: &str) -> String {
    let args = events::Copy {
        slot: e.arg.into(),
        bytes: e.value.unsigned_abs(),
        syscall: (e.aux != NO_SYSCALL).then_some(e.aux.into()),
    };
    format!(
        "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"{}\",\"name\":\"{}\",\"pid\":{},\"tid\":{},\"ts\":{ts},\"args\":{}}}",
        cat::COPY,
        copy_routine(e.arg),
        e.tgid,
        e.tid,
        events::encode(&args)
    )
}

/// The copy counter track's column for a copy slot.
fn copy_total_index(slot: u32) -> usize {
    match slot {
        a if a == Counter::FilemapReadBytes as u32 => 0,
        a if a == Counter::CopyToIterBytes as u32 => 1,
        a if a == Counter::CopyFromIterBytes as u32 => 2,
        a if a == Counter::PageCacheWriteBytes as u32 => 4,
        a if a == Counter::SockRecvBytes as u32 => 5,
        a if a == Counter::XmitLinearBytes as u32 => 6,
        a if a == Counter::DirectIoBytes as u32 => 7,
        _ => 3,
    }
}

/// A process's bytes through each hooked routine so far, as a counter track.
fn copy_counter(pid: u32, ts: &str, t: &[u64; 8]) -> String {
    format!(
        "{{\"ph\":\"C\",\"name\":\"bytes through hooked routines\",\"pid\":{pid},\"ts\":{ts},\"args\":{{\"filemap_read\":{},\"_copy_to_iter\":{},\"_copy_from_iter\":{},\"sock_send\":{},\"page_cache_write\":{},\"sock_recv\":{},\"segmentation\":{},\"o_direct\":{}}}}}",
        t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]
    )
}

/// The rwbs letter of a block event.
fn block_op(e: &TraceEvent) -> char {
    char::from(u8::try_from(e.aux).unwrap_or(b'?'))
}

fn disk(e: &TraceEvent, ts: &str) -> String {
    let op = block_op(e);
    let args = events::Disk {
        dev: e.arg.into(),
        op: Some(op.to_string()),
        bytes: e.value.unsigned_abs(),
        issuer: e.tgid,
    };
    format!(
        "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"{}\",\"name\":\"block request ({op})\",\"pid\":{DEVICE_PID},\"tid\":{BLOCK_TID},\"ts\":{ts},\"args\":{}}}",
        cat::DISK,
        events::encode(&args)
    )
}

fn bio(e: &TraceEvent, ts: &str) -> String {
    let op = block_op(e);
    let args = events::Bio {
        dev: e.arg.into(),
        op: Some(op.to_string()),
        bytes: e.value.unsigned_abs(),
    };
    format!(
        "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"{}\",\"name\":\"block I/O queued ({op})\",\"pid\":{},\"tid\":{},\"ts\":{ts},\"args\":{}}}",
        cat::BIO,
        e.tgid,
        e.tid,
        events::encode(&args)
    )
}

fn net(e: &TraceEvent, ts: &str) -> String {
    let args = events::Net {
        device: c_name(&e.name),
        bytes: e.value.unsigned_abs(),
    };
    format!(
        "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"{}\",\"name\":\"packet to device\",\"pid\":{},\"tid\":{},\"ts\":{ts},\"args\":{}}}",
        cat::NET,
        e.tgid,
        e.tid,
        events::encode(&args)
    )
}

/// The end of the file: `report`'s section, with every run's context and whether the trace is
/// complete.
fn section<W: Write>(out: &mut W, count: u64, runs: &[Run]) -> io::Result<()> {
    let lost: u64 = runs.iter().flat_map(|r| &r.context.lost_per_cpu).sum();
    let over_limit: u64 = runs.iter().map(|r| r.context.over_limit).sum();
    let contexts: Vec<&super::RunContext> = runs.iter().map(|r| &r.context).collect();
    let section = serde_json::json!({
        "version": FORMAT_VERSION,
        "records": count,
        "complete": lost == 0 && over_limit == 0,
        "lost": lost,
        "over_limit": over_limit,
        "runs": contexts,
    });
    write!(
        out,
        "\n],\n\"displayTimeUnit\": \"ns\",\n\"otherData\": {{\"generator\": \"zcprof {}\", \"complete\": \"{}\"}},\n\"zcprof\": {}\n}}\n",
        env!("CARGO_PKG_VERSION"),
        match (lost, over_limit) {
            (0, 0) => "yes".to_owned(),
            (lost, 0) => format!("no: {lost} events lost"),
            (0, over) => format!("no: stopped at --trace-limit, {over} later events not kept"),
            (lost, over) => format!(
                "no: {lost} events lost, and stopped at --trace-limit ({over} later events not kept)"
            ),
        },
        section
    )
}
