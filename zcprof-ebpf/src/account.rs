//! Shared accounting: every hook variant of a measurement point ends up here, so a kernel that
//! forces another hook type changes where the data comes from, never what is counted.
use aya_ebpf::{
    Global,
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
    },
};
use zcprof_common::{
    Counter, DiskIo, EventKind, IFNAMSIZ, InFlight, MAX_SYSCALL_NR, NO_SYSCALL, NetXmit, OnCpu,
    ProcStat, TraceEvent,
};

use crate::{
    filter::{following, tracing},
    maps::{
        COUNTERS, DISK_IO, EVENTS, HOOKED_BY_SYSCALL, IN_FLIGHT, NET_XMIT, ON_CPU, PROCS,
        STACK_SAMPLES, SYSCALLS,
    },
};

/// This architecture's `execve` number, set by the loader: a successful exec renames the process
/// in the per-process table.
#[unsafe(no_mangle)]
static EXECVE_NR: Global<u32> = Global::new(59);

/// Which name an event carries.
enum Name<'a> {
    None,
    /// The current task's command name.
    Comm,
    Given(&'a [u8; IFNAMSIZ]),
}

/// Writes one trace event. The consumer polls, so no wakeup is sent (a wakeup per event would
/// cost more than the event). A full ring buffer is counted per CPU, never silent.
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "the fields of one record")]
fn emit(kind: EventKind, ts: u64, start: u64, value: i64, arg: u32, aux: u32, name: Name<'_>) {
    // bpf_ringbuf_reserve takes no flags; the wakeup choice is made at submit.
    let Some(mut entry) = EVENTS.reserve::<TraceEvent>(0) else {
        add(Counter::TraceLost, 1);
        return;
    };
    let id = bpf_get_current_pid_tgid();
    #[expect(clippy::cast_possible_truncation, reason = "the halves of pid_tgid")]
    let event = TraceEvent {
        ts_ns: ts,
        start_ns: start,
        value,
        tgid: (id >> 32) as u32,
        tid: id as u32,
        kind: kind as u32,
        arg,
        aux,
        // SAFETY: helper without preconditions.
        cpu: unsafe { bpf_get_smp_processor_id() },
        name: match name {
            Name::None => [0; IFNAMSIZ],
            Name::Comm => bpf_get_current_comm().unwrap_or([0; IFNAMSIZ]),
            Name::Given(n) => *n,
        },
    };
    entry.write(event);
    entry.submit(u64::from(BPF_RB_NO_WAKEUP));
    add(Counter::TraceEvents, 1);
}

/// The current process.
#[inline(always)]
fn current_tgid() -> u32 {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the upper half is the tgid"
    )]
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    tgid
}

/// A timestamp for an event that has none of its own (only taken when tracing).
#[inline(always)]
fn now() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// Updates process `tgid`'s totals (the current process), when following a process tree.
#[inline(always)]
fn per_process(tgid: u32, update: impl FnOnce(&mut ProcStat)) {
    if !following() {
        return;
    }
    if PROCS.get_ptr_mut(&tgid).is_none() {
        let fresh = ProcStat {
            comm: bpf_get_current_comm().unwrap_or([0; IFNAMSIZ]),
            ..ProcStat::default()
        };
        let _ = PROCS.insert(&tgid, &fresh, 0);
    }
    if let Some(p) = PROCS.get_ptr_mut(&tgid) {
        // SAFETY: per-CPU entry.
        update(unsafe { &mut *p });
    }
}

#[inline(always)]
fn add(slot: Counter, n: u64) {
    if let Some(p) = COUNTERS.get_ptr_mut(slot as u32) {
        // SAFETY: per-CPU slot, and eBPF programs do not nest on one CPU for these hooks.
        unsafe { *p += n };
    }
}

/// Remembers the first and last traced event on this CPU, so the measured window is the
/// kernel's own clock from the first entry to the last return.
#[inline(always)]
fn stamp(now: u64) {
    if let Some(first) = COUNTERS.get_ptr_mut(Counter::FirstEventNs as u32) {
        // SAFETY: per-CPU slot.
        unsafe {
            if *first == 0 {
                *first = now;
            }
        }
    }
    if let Some(last) = COUNTERS.get_ptr_mut(Counter::LastEventNs as u32) {
        // SAFETY: per-CPU slot.
        unsafe { *last = now };
    }
}

/// Remembers an in-flight syscall in the hash map, updating the thread's entry in place when it
/// has one (an insert costs an allocation).
#[inline(always)]
fn park(tid: u32, entry: &InFlight) {
    if let Some(slot) = IN_FLIGHT.get_ptr_mut(&tid) {
        // SAFETY: the entry belongs to this thread, which is running here.
        unsafe { *slot = *entry };
    } else if IN_FLIGHT.insert(&tid, entry, 0).is_err() {
        add(Counter::InFlightLost, 1);
    }
}

/// The syscall thread `tid` is in, if any: on this CPU's slot, else parked in the hash map.
#[inline(always)]
fn in_flight(tid: u32) -> Option<InFlight> {
    if let Some(on) = ON_CPU.get_ptr_mut(0) {
        // SAFETY: per-CPU slot.
        let on = unsafe { *on };
        if on.tid == tid && on.start_ns != 0 {
            return Some(on.entry());
        }
    }
    // SAFETY: the value is copied out.
    (unsafe { IN_FLIGHT.get(&tid) })
        .copied()
        .filter(|f| f.start_ns != 0)
}

/// A traced thread entered the kernel through a syscall.
///
/// The syscall is kept in this CPU's slot: a thread returns on the CPU it entered on unless it
/// was switched out meanwhile, and a switch parks the slot in the `IN_FLIGHT` hash map. So the
/// hot path is a per-CPU array access; the hash map is touched only when the thread blocks or is
/// preempted inside a syscall (hash lookups, inserts and deletes on every syscall cost several
/// hundred nanoseconds here).
#[inline(always)]
pub fn syscall_enter(tgid: u32, tid: u32, nr: i64) {
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    add(Counter::SyscallEntries, 1);
    stamp(now);
    if nr < 0 || nr >= i64::from(MAX_SYSCALL_NR) {
        return;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "bounded above"
    )]
    let nr = nr as u32;
    if let Some(stat) = SYSCALLS.get_ptr_mut(nr) {
        // SAFETY: per-CPU entry.
        unsafe { (*stat).count += 1 };
    }
    per_process(tgid, |p| p.syscalls += 1);
    if let Some(on) = ON_CPU.get_ptr_mut(0) {
        // SAFETY: per-CPU slot; a syscall of another thread left here was parked at its switch.
        unsafe {
            *on = OnCpu {
                start_ns: now,
                tid,
                nr,
                tgid,
                pad: 0,
            };
        }
    }
}

/// A traced thread returns to user space from a syscall.
#[inline(always)]
pub fn syscall_exit(tgid: u32, tid: u32, ret: i64) {
    let mut entry = None;
    if let Some(on) = ON_CPU.get_ptr_mut(0) {
        // SAFETY: per-CPU slot.
        unsafe {
            if (*on).tid == tid && (*on).start_ns != 0 {
                entry = Some((*on).entry());
                (*on).start_ns = 0;
            }
        }
    }
    if entry.is_none()
        && let Some(parked) = IN_FLIGHT.get_ptr_mut(&tid)
    {
        // SAFETY: the entry belongs to this thread; copied out, then marked idle (start 0).
        unsafe {
            if (*parked).start_ns != 0 {
                entry = Some(*parked);
                (*parked).start_ns = 0;
            }
        }
    }
    let Some(entry) = entry else {
        add(Counter::UnmatchedReturns, 1);
        return;
    };
    let now = now();
    add(Counter::SyscallReturns, 1);
    stamp(now);
    if tracing() {
        emit(
            EventKind::Syscall,
            now,
            entry.start_ns,
            ret,
            entry.nr,
            0,
            Name::None,
        );
    }
    if ret == 0 && entry.nr == EXECVE_NR.load() {
        // The process has a new name now.
        per_process(tgid, |p| p.comm = bpf_get_current_comm().unwrap_or(p.comm));
    }
    if let Some(stat) = SYSCALLS.get_ptr_mut(entry.nr) {
        // SAFETY: per-CPU entry.
        unsafe {
            (*stat).total_ns += now.wrapping_sub(entry.start_ns);
            if ret < 0 {
                (*stat).errors += 1;
            } else {
                #[expect(clippy::cast_sign_loss, reason = "checked non-negative")]
                let ret = ret as u64;
                (*stat).ret_sum = (*stat).ret_sum.wrapping_add(ret);
            }
        }
    }
}

/// The scheduler switches a traced task off its CPU.
#[inline(always)]
pub fn context_switch(tid: u32, voluntary: bool) {
    // Leaving the CPU inside a syscall: park it, the slot is for whoever runs next.
    if let Some(on) = ON_CPU.get_ptr_mut(0) {
        // SAFETY: per-CPU slot.
        let current = unsafe { *on };
        if current.tid == tid && current.start_ns != 0 {
            park(tid, &current.entry());
            // SAFETY: as above.
            unsafe { (*on).start_ns = 0 };
        }
    }
    if voluntary {
        add(Counter::VoluntarySwitches, 1);
        per_process(current_tgid(), |p| p.voluntary_switches += 1);
    } else {
        add(Counter::InvoluntarySwitches, 1);
        per_process(current_tgid(), |p| p.involuntary_switches += 1);
    }
    if tracing() {
        emit(
            EventKind::Switch,
            now(),
            0,
            0,
            u32::from(voluntary),
            0,
            Name::Comm,
        );
    }
}

/// A traced task took a page fault, in user mode (`user`) or in kernel mode on its behalf.
#[inline(always)]
pub fn page_fault(user: bool) {
    if user {
        add(Counter::PageFaultsUser, 1);
        per_process(current_tgid(), |p| p.page_faults_user += 1);
    } else {
        add(Counter::PageFaultsKernel, 1);
        per_process(current_tgid(), |p| p.page_faults_kernel += 1);
    }
    if tracing() {
        emit(
            EventKind::Fault,
            now(),
            0,
            0,
            u32::from(user),
            0,
            Name::None,
        );
    }
}

/// A block request completed on `dev`; `op` is the first rwbs letter (R, W, D, F, ...).
#[inline(always)]
pub fn disk_io(dev: u32, bytes: u64, op: u8) {
    if DISK_IO.get_ptr_mut(&dev).is_none() {
        let _ = DISK_IO.insert(&dev, &DiskIo::default(), 0);
    }
    if let Some(io) = DISK_IO.get_ptr_mut(&dev) {
        // SAFETY: per-CPU entry.
        unsafe {
            match op {
                b'R' => (*io).read_bytes += bytes,
                b'W' => (*io).write_bytes += bytes,
                _ => (*io).other_bytes += bytes,
            }
            (*io).requests += 1;
        }
    }
    if tracing() {
        #[expect(
            clippy::cast_possible_wrap,
            reason = "request sizes are far below 2^63"
        )]
        emit(
            EventKind::Disk,
            now(),
            0,
            bytes as i64,
            dev,
            u32::from(op),
            Name::None,
        );
    }
}

/// A traced task handed a packet of `len` bytes to the device called `name`.
#[inline(always)]
pub fn net_xmit(name: &[u8; IFNAMSIZ], len: u64) {
    if NET_XMIT.get_ptr_mut(name).is_none() {
        let _ = NET_XMIT.insert(name, &NetXmit::default(), 0);
    }
    if let Some(x) = NET_XMIT.get_ptr_mut(name) {
        // SAFETY: per-CPU entry.
        unsafe {
            (*x).bytes += len;
            (*x).packets += 1;
        }
    }
    if tracing() {
        #[expect(clippy::cast_possible_wrap, reason = "packet lengths are small")]
        emit(
            EventKind::Net,
            now(),
            0,
            len as i64,
            0,
            0,
            Name::Given(name),
        );
    }
}

/// A hooked copy routine (or `filemap_read`) returned `ret` bytes for traced thread `tid`;
/// the bytes are also kept under the syscall the thread is in.
#[inline(always)]
pub fn copied(tid: u32, slot: Counter, ret: i64) {
    if ret <= 0 {
        return;
    }
    #[expect(clippy::cast_sign_loss, reason = "checked positive")]
    let bytes = ret as u64;
    add(slot, bytes);
    if matches!(slot, Counter::SockSendBytes) {
        per_process(current_tgid(), |p| p.sock_send_bytes += bytes);
    } else {
        per_process(current_tgid(), |p| p.copied_bytes += bytes);
    }
    let nr = in_flight(tid).map(|f| f.nr);
    if tracing() {
        emit(
            EventKind::Copy,
            now(),
            0,
            ret,
            slot as u32,
            nr.unwrap_or(NO_SYSCALL),
            Name::None,
        );
    }
    let Some(nr) = nr else {
        return;
    };
    if let Some(by) = HOOKED_BY_SYSCALL.get_ptr_mut(nr) {
        // SAFETY: per-CPU entry.
        unsafe {
            match slot {
                Counter::FilemapReadBytes => (*by).filemap_read += bytes,
                Counter::CopyToIterBytes => (*by).copy_to_iter += bytes,
                Counter::SockSendBytes => (*by).sock_send += bytes,
                _ => (*by).copy_from_iter += bytes,
            }
        }
    }
}

/// A perf sample of a traced task: in user mode (`stack` is an error, there is no kernel
/// stack) or in kernel mode with the id of its stored stack.
#[inline(always)]
pub fn sample(stack: Result<i64, i32>, in_kernel: bool) {
    match stack {
        Ok(id) if id >= 0 => {
            add(Counter::SamplesKernel, 1);
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "stack ids are u32"
            )]
            let id = id as u32;
            match STACK_SAMPLES.get_ptr_mut(&id) {
                // SAFETY: per-CPU entry.
                Some(n) => unsafe { *n += 1 },
                None => {
                    let _ = STACK_SAMPLES.insert(&id, &1, 0);
                }
            }
        }
        _ if in_kernel => add(Counter::SamplesLost, 1),
        _ => add(Counter::SamplesUser, 1),
    }
}

/// A buffer was mapped for device DMA.
#[inline(always)]
pub fn dma_map() {
    add(Counter::DmaMaps, 1);
    if tracing() {
        emit(EventKind::Dma, now(), 0, 0, 0, 0, Name::None);
    }
}

/// A traced process forked `child` (a process or a thread).
#[inline(always)]
pub fn forked(child: i32) {
    add(Counter::Forks, 1);
    if tracing() {
        emit(
            EventKind::Fork,
            now(),
            0,
            i64::from(child),
            0,
            0,
            Name::Comm,
        );
    }
}
