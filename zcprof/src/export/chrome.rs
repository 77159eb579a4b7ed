//! Chrome trace-event JSON, as ui.perfetto.dev and `chrome://tracing` read it: syscalls as
//! complete slices per thread, with context switches, page faults, copies and packets as instant
//! events inside them; block requests and DMA mappings on a device-wide track; counters of bytes
//! copied; process and thread names as metadata; and the `zcprof` section `report` reads back.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt::Write as _,
    io::{self, Write},
};

use zcprof_common::{Counter, EventKind, NO_SYSCALL, TraceEvent};

use super::{FORMAT_VERSION, Run};
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

/// Writes the whole file; returns the number of trace-event records.
#[expect(
    clippy::too_many_lines,
    reason = "one record kind after another, in the order of the file"
)]
pub fn write<W: Write>(out: &mut W, origin_ns: u64, runs: &[Run]) -> io::Result<u64> {
    out.write_all(b"{\"traceEvents\": [\n")?;
    let mut records = Records { out, count: 0 };
    let mut syscall_names: HashMap<u32, String> = HashMap::new();
    let mut thread_names: BTreeMap<(u32, u32), String> = BTreeMap::new();
    let mut process_names: BTreeMap<u32, String> = BTreeMap::new();
    let rel = |ns: u64| ns.saturating_sub(origin_ns);
    for (index, run) in runs.iter().enumerate() {
        let ctx = &run.context;
        let mut events: Vec<&TraceEvent> = run.recorded.events.iter().collect();
        events.sort_by_key(|e| {
            if e.kind == EventKind::Syscall as u32 {
                e.start_ns
            } else {
                e.ts_ns
            }
        });
        records.push(&format!(
            "{{\"ph\":\"X\",\"cat\":\"{}\",\"name\":{},\"pid\":{DEVICE_PID},\"tid\":{RUNS_TID},\"ts\":{},\"dur\":{},\"args\":{{\"run\":{index}}}}}",
            cat::RUN,
            json_str(&format!("run {}: {}", index + 1, ctx.subject)),
            us(ctx.start_ns),
            us(ctx.end_ns.saturating_sub(ctx.start_ns)),
        ))?;
        let mut copied: HashMap<u32, [u64; 8]> = HashMap::new();
        let mut disk_total = 0u64;
        for e in events {
            let (pid, tid) = (e.tgid, e.tid);
            let ts = us(rel(e.ts_ns));
            let mut line = String::with_capacity(160);
            match EventKind::from_u32(e.kind) {
                Some(EventKind::Syscall) => {
                    let name = syscall_names
                        .entry(e.arg)
                        .or_insert_with(|| crate::model::syscalls::name_of(e.arg));
                    // The descriptor's kind, where the kernel side classified it.
                    let fd = if e.aux == 0 {
                        String::new()
                    } else {
                        format!(",\"fd_kind\":{}", e.aux)
                    };
                    let _ = write!(
                        line,
                        "{{\"ph\":\"X\",\"cat\":\"{}\",\"name\":\"{name}\",\"pid\":{pid},\"tid\":{tid},\"ts\":{},\"dur\":{},\"args\":{{\"nr\":{},\"ret\":{}{fd}}}}}",
                        cat::SYSCALL,
                        us(rel(e.start_ns)),
                        us(e.ts_ns.saturating_sub(e.start_ns)),
                        e.arg,
                        e.value
                    );
                }
                Some(EventKind::Exit) => {
                    // A thread that ended in `exit` or `exit_group`: a slice with no end, like a
                    // syscall still in progress when the programs were detached.
                    let name = syscall_names
                        .entry(e.arg)
                        .or_insert_with(|| crate::model::syscalls::name_of(e.arg));
                    let _ = write!(
                        line,
                        "{{\"ph\":\"B\",\"cat\":\"{}\",\"name\":\"{name}\",\"pid\":{pid},\"tid\":{tid},\"ts\":{},\"args\":{{\"nr\":{},\"unfinished\":true,\"thread_ended\":true}}}}",
                        cat::SYSCALL,
                        us(rel(e.start_ns)),
                        e.arg
                    );
                }
                Some(EventKind::Switch) => {
                    let voluntary = e.arg != 0;
                    let _ = write!(
                        line,
                        "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"{}\",\"name\":\"{}\",\"pid\":{pid},\"tid\":{tid},\"ts\":{ts},\"args\":{{\"voluntary\":{voluntary}}}}}",
                        cat::SCHED,
                        if voluntary {
                            "switched out (blocked)"
                        } else {
                            "switched out (preempted)"
                        }
                    );
                    let comm = c_name(&e.name);
                    if !comm.is_empty() {
                        thread_names.insert((pid, tid), comm);
                    }
                }
                Some(EventKind::Fault) => {
                    let user = e.arg != 0;
                    let _ = write!(
                        line,
                        "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"{}\",\"name\":\"{}\",\"pid\":{pid},\"tid\":{tid},\"ts\":{ts},\"args\":{{\"user\":{user}}}}}",
                        cat::FAULT,
                        if user {
                            "page fault (user mode)"
                        } else {
                            "page fault (kernel mode)"
                        }
                    );
                }
                Some(EventKind::Copy) => {
                    let syscall = if e.aux == NO_SYSCALL {
                        "null".to_owned()
                    } else {
                        e.aux.to_string()
                    };
                    let _ = write!(
                        line,
                        "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"{}\",\"name\":\"{}\",\"pid\":{pid},\"tid\":{tid},\"ts\":{ts},\"args\":{{\"slot\":{},\"bytes\":{},\"syscall\":{syscall}}}}}",
                        cat::COPY,
                        copy_routine(e.arg),
                        e.arg,
                        e.value
                    );
                    let totals = copied.entry(pid).or_default();
                    let i = match e.arg {
                        a if a == Counter::FilemapReadBytes as u32 => 0,
                        a if a == Counter::CopyToIterBytes as u32 => 1,
                        a if a == Counter::CopyFromIterBytes as u32 => 2,
                        a if a == Counter::PageCacheWriteBytes as u32 => 4,
                        a if a == Counter::SockRecvBytes as u32 => 5,
                        a if a == Counter::XmitLinearBytes as u32 => 6,
                        a if a == Counter::DirectIoBytes as u32 => 7,
                        _ => 3,
                    };
                    totals[i] += e.value.unsigned_abs();
                    records.push(&line)?;
                    line = format!(
                        "{{\"ph\":\"C\",\"name\":\"bytes through hooked routines\",\"pid\":{pid},\"ts\":{ts},\"args\":{{\"filemap_read\":{},\"_copy_to_iter\":{},\"_copy_from_iter\":{},\"sock_send\":{},\"page_cache_write\":{},\"sock_recv\":{},\"segmentation\":{},\"o_direct\":{}}}}}",
                        totals[0],
                        totals[1],
                        totals[2],
                        totals[3],
                        totals[4],
                        totals[5],
                        totals[6],
                        totals[7]
                    );
                }
                Some(EventKind::Disk) => {
                    let op = char::from(u8::try_from(e.aux).unwrap_or(b'?'));
                    let _ = write!(
                        line,
                        "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"{}\",\"name\":\"block request ({op})\",\"pid\":{DEVICE_PID},\"tid\":{BLOCK_TID},\"ts\":{ts},\"args\":{{\"dev\":{},\"op\":\"{op}\",\"bytes\":{},\"issuer\":{pid}}}}}",
                        cat::DISK,
                        e.arg,
                        e.value
                    );
                    disk_total += e.value.unsigned_abs();
                    records.push(&line)?;
                    line = format!(
                        "{{\"ph\":\"C\",\"name\":\"block bytes issued\",\"pid\":{DEVICE_PID},\"ts\":{ts},\"args\":{{\"bytes\":{disk_total}}}}}"
                    );
                }
                Some(EventKind::Bio) => {
                    let op = char::from(u8::try_from(e.aux).unwrap_or(b'?'));
                    let _ = write!(
                        line,
                        "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"{}\",\"name\":\"block I/O queued ({op})\",\"pid\":{pid},\"tid\":{tid},\"ts\":{ts},\"args\":{{\"dev\":{},\"op\":\"{op}\",\"bytes\":{}}}}}",
                        cat::BIO,
                        e.arg,
                        e.value
                    );
                }
                Some(EventKind::Net) => {
                    let _ = write!(
                        line,
                        "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"{}\",\"name\":\"packet to device\",\"pid\":{pid},\"tid\":{tid},\"ts\":{ts},\"args\":{{\"device\":{},\"bytes\":{}}}}}",
                        cat::NET,
                        json_str(&c_name(&e.name)),
                        e.value
                    );
                }
                Some(EventKind::Dma) => {
                    let _ = write!(
                        line,
                        "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"{}\",\"name\":\"DMA mapping\",\"pid\":{DEVICE_PID},\"tid\":{DMA_TID},\"ts\":{ts},\"args\":{{\"issuer\":{pid}}}}}",
                        cat::DMA
                    );
                }
                Some(EventKind::Fork) => {
                    let _ = write!(
                        line,
                        "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"{}\",\"name\":\"fork\",\"pid\":{pid},\"tid\":{tid},\"ts\":{ts},\"args\":{{\"child\":{}}}}}",
                        cat::PROCESS,
                        e.value
                    );
                    let comm = c_name(&e.name);
                    if !comm.is_empty() {
                        thread_names.insert((pid, tid), comm);
                    }
                }
                None => continue,
            }
            if !matches!(
                EventKind::from_u32(e.kind),
                Some(EventKind::Disk | EventKind::Dma)
            ) {
                thread_names.entry((pid, tid)).or_insert_with(|| {
                    run.recorded
                        .thread_names
                        .get(&tid)
                        .filter(|n| !n.is_empty())
                        .cloned()
                        .unwrap_or_else(|| format!("thread {tid}"))
                });
            }
            records.push(&line)?;
        }
        for u in &run.unfinished {
            let name = syscall_names
                .entry(u.nr)
                .or_insert_with(|| crate::model::syscalls::name_of(u.nr));
            records.push(&format!(
                "{{\"ph\":\"B\",\"cat\":\"{}\",\"name\":\"{name}\",\"pid\":{},\"tid\":{},\"ts\":{},\"args\":{{\"nr\":{},\"unfinished\":true}}}}",
                cat::SYSCALL,
                u.tgid,
                u.tid,
                us(rel(u.start_ns)),
                u.nr
            ))?;
            thread_names
                .entry((u.tgid, u.tid))
                .or_insert_with(|| format!("thread {}", u.tid));
        }
        let lost: u64 = ctx.lost_per_cpu.iter().sum();
        if lost > 0 {
            // A global marker nobody can miss in the timeline.
            records.push(&format!(
                "{{\"ph\":\"i\",\"s\":\"g\",\"cat\":\"{}\",\"name\":\"{lost} EVENTS LOST: this run's trace is incomplete\",\"pid\":{DEVICE_PID},\"tid\":{RUNS_TID},\"ts\":{},\"args\":{{\"lost\":{lost},\"lost_per_cpu\":{:?}}}}}",
                cat::LOST,
                us(ctx.end_ns),
                ctx.lost_per_cpu
            ))?;
        }
        if ctx.over_limit > 0 {
            // Where the kept events end: the run went on, its later events were not kept.
            let last_kept = run
                .recorded
                .events
                .iter()
                .map(|e| e.ts_ns)
                .max()
                .unwrap_or(0);
            records.push(&format!(
                "{{\"ph\":\"i\",\"s\":\"g\",\"cat\":\"{}\",\"name\":\"TRACE LIMIT REACHED: {} later events not kept\",\"pid\":{DEVICE_PID},\"tid\":{RUNS_TID},\"ts\":{},\"args\":{{\"over_limit\":{}}}}}",
                cat::LOST,
                ctx.over_limit,
                us(rel(last_kept)),
                ctx.over_limit
            ))?;
        }
        for (&pid, name) in &ctx.process_names {
            process_names.insert(pid, name.clone());
        }
    }
    // Names: a process is named by the run context, else by its main thread.
    let pids: BTreeSet<u32> = thread_names.keys().map(|&(p, _)| p).collect();
    for pid in pids {
        let name = process_names.get(&pid).cloned().unwrap_or_else(|| {
            thread_names
                .get(&(pid, pid))
                .cloned()
                .unwrap_or_else(|| format!("process {pid}"))
        });
        records.push(&format!(
            "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{pid},\"tid\":{pid},\"args\":{{\"name\":{}}}}}",
            json_str(&name)
        ))?;
    }
    for ((pid, tid), name) in &thread_names {
        records.push(&format!(
            "{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":{pid},\"tid\":{tid},\"args\":{{\"name\":{}}}}}",
            json_str(name)
        ))?;
    }
    for (tid, name) in [
        (RUNS_TID, "runs"),
        (BLOCK_TID, "block requests (device-wide)"),
        (DMA_TID, "DMA mappings (device-wide)"),
    ] {
        records.push(&format!(
            "{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":{DEVICE_PID},\"tid\":{tid},\"args\":{{\"name\":\"{name}\"}}}}"
        ))?;
    }
    records.push(&format!(
        "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":{DEVICE_PID},\"tid\":{RUNS_TID},\"args\":{{\"name\":\"zcprof: runs and devices\"}}}}"
    ))?;
    let count = records.count;
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
    )?;
    Ok(count)
}
