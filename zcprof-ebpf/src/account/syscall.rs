//! The syscall path: entry, the in-flight state across switch-outs, return, with the timing of
//! one call in `TIME_MASK + 1`; returns without an entry; thread exit and exec.
use aya_ebpf::Global;
use zcprof_common::{
    ALWAYS_TIMED, CONTROL_STARTED, CONTROL_STOPPING, Counter, EventKind, FORCED_START, InFlight,
    MAX_SYSCALL_NR, OnCpu, RANDOM_SQ_SHIFT, UNTIMED_START,
};

use super::{
    add, control, current_tgid, descriptor, now, on_cpu,
    process::{per_process, per_process_on},
    trace::{Name, emit, emit_for},
};
use crate::{
    filter::{traced, tracing},
    maps::{BEFORE_START, IN_FLIGHT, SYSCALLS},
    task,
};

/// This architecture's numbers of the syscalls that make a task (`clone`, `clone3`, `fork`,
/// `vfork`; `u32::MAX` where there is none), set by the loader: a new task's first return is
/// from one of them, with 0, though it entered none.
#[unsafe(no_mangle)]
static CLONE_NR: Global<u32> = Global::new(56);
#[unsafe(no_mangle)]
static CLONE3_NR: Global<u32> = Global::new(435);
#[unsafe(no_mangle)]
static FORK_NR: Global<u32> = Global::new(57);
#[unsafe(no_mangle)]
static VFORK_NR: Global<u32> = Global::new(58);

/// This architecture's `exit` and `exit_group` numbers, set by the loader. They never return,
/// so they are always timed: their entry is the measured window's last event.
#[unsafe(no_mangle)]
static EXIT_NR: Global<u32> = Global::new(60);
#[unsafe(no_mangle)]
static EXIT_GROUP_NR: Global<u32> = Global::new(231);

/// Which syscalls are timed: those whose random draw has these bits clear (0: every syscall,
/// as in trace mode). Two clock reads cost about 100 ns per syscall on the machines this was
/// measured on, more than the rest of the accounting together.
#[unsafe(no_mangle)]
static TIME_MASK: Global<u32> = Global::new(15);

/// A timestamp for a syscall entry, or `UNTIMED_START` when this one is not timed: one in
/// `TIME_MASK + 1` at random (the draw is independent of the syscall pattern, so alternating
/// reads and writes are sampled alike), plus, whatever the draw, the first entry on each CPU, the
/// first few of each syscall number, and exits. Those forced ones carry `FORCED_START`, so their
/// time is kept apart from the random sample's: only the sample stands for the calls not timed.
/// A timed entry also moves this CPU's window (`first_ns`, `last_ns`), which makes the measured
/// window the kernel's own clock.
#[inline(always)]
pub(super) fn entry_time(on: &mut OnCpu, nr: u32, timed_so_far: u64) -> u64 {
    // xorshift32: a few instructions, no helper call.
    let mut x = if on.rng == 0 { 0x9e37_79b9 } else { on.rng };
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    on.rng = x;
    let forced = || {
        on.first_ns == 0
            || timed_so_far < ALWAYS_TIMED
            || nr == EXIT_NR.load()
            || nr == EXIT_GROUP_NR.load()
    };
    // The untimed path (most calls) asks the same questions in the same order as ever; whether a
    // timed call was forced is asked again on the timed path only.
    if x & TIME_MASK.load() != 0 && !forced() {
        return UNTIMED_START;
    }
    let forced = forced();
    let now = now();
    let start = if forced {
        now | FORCED_START
    } else {
        now & !FORCED_START
    };
    // The window starts (or, for an exit, ends) where a trace draws the syscall.
    if on.first_ns == 0 {
        on.first_ns = start;
    }
    on.last_ns = start;
    start
}

/// Remembers an in-flight syscall in the hash map until it returns (or its thread ends). A
/// full map is counted, never silent.
#[inline(always)]
pub(super) fn park(tid: u32, entry: &InFlight) {
    if IN_FLIGHT.insert(&tid, entry, 0).is_err() {
        add(Counter::InFlightLost, 1);
    }
}

/// The syscall thread `tid` is in, if any: on this CPU's slot, else parked in the hash map.
#[inline(always)]
pub(crate) fn in_flight(tid: u32) -> Option<InFlight> {
    if let Some(on) = on_cpu()
        && on.tid == tid
        && on.start_ns != 0
    {
        return Some(on.entry());
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
/// hot path is one per-CPU array access (the slot also holds the hot counters); the hash map is
/// touched only when the thread blocks or is preempted inside a syscall (hash lookups, inserts
/// and deletes on every syscall cost several hundred nanoseconds here).
#[inline(always)]
pub fn syscall_enter(tgid: u32, tid: u32, nr: i64, regs: u64) {
    if let Some(on) = on_cpu() {
        syscall_enter_on(on, tgid, tid, nr, regs);
    }
}

#[inline(always)]
pub(super) fn syscall_enter_on(on: &mut OnCpu, tgid: u32, tid: u32, nr: i64, regs: u64) {
    on.entries += 1;
    if nr < 0 || nr >= i64::from(MAX_SYSCALL_NR) {
        return;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "bounded above"
    )]
    let nr = nr as u32;
    let mut timed_so_far = 0;
    if let Some(stat) = SYSCALLS.get_ptr_mut(nr) {
        // SAFETY: per-CPU entry.
        unsafe {
            (*stat).count += 1;
            timed_so_far = (*stat).timed;
        }
    }
    per_process_on(on, tgid, |p| p.syscalls += 1);
    // A syscall of another thread left here was parked at its switch.
    on.start_ns = entry_time(on, nr, timed_so_far);
    on.tid = tid;
    on.nr = nr;
    on.tgid = tgid;
    on.regs = regs;
}

/// A syscall entry seen by a hook that has the task's saved registers (`regs`, raw tracepoints).
/// This CPU's slot keeps the registers' address of the traced thread that last entered a
/// syscall here until that thread is switched out (`context_switch` clears it), so an equal
/// address is that same thread, still running: its ids come from the slot, without a helper
/// call. Anything else takes the filter.
#[inline(always)]
pub fn syscall_enter_regs(regs: u64, nr: i64) {
    let Some(on) = on_cpu() else {
        return;
    };
    if on.regs == regs && regs != 0 {
        let (tgid, tid) = (on.tgid, on.tid);
        syscall_enter_on(on, tgid, tid, nr, regs);
    } else if let Some((tgid, tid)) = traced() {
        syscall_enter_on(on, tgid, tid, nr, regs);
    }
}

/// The syscall thread `tid` was switched out in, taken out of the in-flight map.
#[inline(always)]
pub(super) fn unpark(tid: u32) -> Option<InFlight> {
    // SAFETY: the value is copied out.
    let parked = (unsafe { IN_FLIGHT.get(&tid) }).copied()?;
    let _ = IN_FLIGHT.remove(&tid);
    Some(parked)
}

/// A traced thread returns to user space from a syscall. `nr` reads the syscall's number from
/// the task's registers: only a return whose entry was not seen needs it.
#[inline(always)]
pub fn syscall_exit(tgid: u32, tid: u32, ret: i64, regs: u64, nr: impl FnOnce() -> i64) {
    let Some(on) = on_cpu() else {
        return;
    };
    let mut entry = None;
    if on.tid == tid && on.start_ns != 0 {
        entry = Some(on.entry());
        on.start_ns = 0;
    }
    if entry.is_none() {
        // Deleted, not kept idle: a thread that ends inside a syscall, or that a later thread
        // with the same id could be taken for, leaves nothing behind.
        entry = unpark(tid);
    }
    match entry {
        Some(entry) => returned(on, tgid, tid, &entry, ret, regs),
        None => unmatched(tgid, tid, ret, nr()),
    }
}

/// A syscall return seen by a hook that has the task's saved registers (`regs`, raw
/// tracepoints). When this CPU's slot holds a syscall entered with the same registers, it is
/// this thread's: a thread returns where it entered unless it was switched out, which empties
/// the slot. That match needs no helper call; anything else takes the filter.
#[inline(always)]
pub fn syscall_exit_regs(regs: u64, ret: i64) {
    if let Some(on) = on_cpu()
        && on.start_ns != 0
        && on.regs == regs
    {
        // Copied out before the slot is marked idle.
        let (tgid, tid, entry) = (on.tgid, on.tid, on.entry());
        on.start_ns = 0;
        returned(on, tgid, tid, &entry, ret, regs);
        return;
    }
    if let Some((tgid, tid)) = traced() {
        syscall_exit(tgid, tid, ret, regs, || syscall_nr(regs));
    }
}

/// Where this architecture's saved registers keep the syscall number (`orig_ax` on x86-64,
/// `syscallno` on arm64; `u32::MAX`: unknown), set by the loader.
#[unsafe(no_mangle)]
static REGS_NR_OFFSET: Global<u32> = Global::new(120);

/// The syscall number in the saved registers at `regs` (-1 when unknown). A helper call: only
/// returns without an entry read it.
#[inline(always)]
pub(super) fn syscall_nr(regs: u64) -> i64 {
    let offset = REGS_NR_OFFSET.load();
    if offset == u32::MAX || regs == 0 {
        return -1;
    }
    // The low 32 bits on both architectures (arm64's syscallno is an int).
    // SAFETY: a kernel read through the helper, which fails cleanly on a bad address.
    unsafe {
        aya_ebpf::helpers::bpf_probe_read_kernel((regs + u64::from(offset)) as *const i32)
            .map_or(-1, i64::from)
    }
}

/// A return of thread `tid` (syscall `nr`, returning `ret`) whose entry was not seen. Rare, so
/// out of line: a syscall begun before measuring, a new task's first return, or a syscall
/// refused before entry.
#[inline(never)]
pub(super) fn unmatched(tgid: u32, tid: u32, ret: i64, nr: i64) {
    add(Counter::UnmatchedReturns, 1);
    if control(CONTROL_STOPPING) {
        // Detaching: the programs go one by one, so an entry may have been missed.
        return;
    }
    let fork = ret == 0
        && (nr == i64::from(CLONE_NR.load())
            || nr == i64::from(CLONE3_NR.load())
            || nr == i64::from(FORK_NR.load())
            || nr == i64::from(VFORK_NR.load()));
    if fork {
        add(Counter::NewTaskReturns, 1);
        return;
    }
    if !control(CONTROL_STARTED) {
        // `sys_enter` is not attached yet (it attaches after `sys_exit`): the syscall began
        // before measuring. The thread's mark stays for a syscall still blocked.
        add(Counter::ReturnsBeforeStart, 1);
        return;
    }
    if BEFORE_START.remove(&tid).is_ok() {
        add(Counter::ReturnsBeforeStart, 1);
        return;
    }
    if nr < 0 || nr >= i64::from(MAX_SYSCALL_NR) {
        // `sys_enter` counted it but keeps no slot for such numbers (or a tracer cancelled it).
        if let Some(on) = on_cpu() {
            on.returns += 1;
        }
        return;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "bounded above"
    )]
    refused(tgid, tid, ret, nr as u32);
}

/// Syscall `nr` of thread `tid` returned `ret` without entering: refused before entry (a seccomp
/// filter's errno). Counted as strace counts it, a call and an error of that syscall, one entry
/// and one return, timed as taking no time.
#[inline(always)]
pub(super) fn refused(tgid: u32, tid: u32, ret: i64, nr: u32) {
    add(Counter::RefusedSyscalls, 1);
    let Some(on) = on_cpu() else {
        return;
    };
    on.entries += 1;
    on.returns += 1;
    let now = now();
    if on.first_ns == 0 {
        on.first_ns = now;
    }
    on.last_ns = now;
    if let Some(stat) = SYSCALLS.get_ptr_mut(nr) {
        // SAFETY: per-CPU entry.
        unsafe {
            (*stat).count += 1;
            (*stat).timed += 1;
            (*stat).forced += 1;
            if ret < 0 {
                (*stat).errors += 1;
            } else {
                #[expect(clippy::cast_sign_loss, reason = "checked non-negative")]
                let ret = ret as u64;
                (*stat).ret_sum = (*stat).ret_sum.wrapping_add(ret);
            }
        }
    }
    per_process_on(on, tgid, |p| p.syscalls += 1);
    if tracing() {
        emit_for(
            (u64::from(tgid) << 32) | u64::from(tid),
            EventKind::Syscall,
            now,
            now,
            ret,
            nr,
            0,
            Name::None,
        );
    }
}

/// A traced thread ends (`sched_process_exit`, run by the thread itself). The syscall it is in
/// (`exit` or `exit_group`, which never return) leaves this CPU's slot and the in-flight map: the
/// thread's last switch does not park it, and a thread given the same id later inherits
/// nothing. A trace keeps it as a syscall without an end. Once per thread: out of line.
#[inline(never)]
pub fn thread_exit(tgid: u32, tid: u32) {
    let mut entry = None;
    if let Some(on) = on_cpu()
        && on.tid == tid
    {
        if on.start_ns != 0 {
            entry = Some(on.entry());
        }
        on.start_ns = 0;
        on.regs = 0;
    }
    let parked = unpark(tid);
    if entry.is_none() {
        entry = parked;
    }
    let _ = BEFORE_START.remove(&tid);
    if tracing()
        && let Some(entry) = entry
        && entry.start_ns != UNTIMED_START
    {
        emit_for(
            (u64::from(tgid) << 32) | u64::from(tid),
            EventKind::Exit,
            entry.start_ns,
            entry.start_ns,
            0,
            entry.nr,
            0,
            Name::None,
        );
    }
}

/// A traced process exec'd (`sched_process_exec`, once the exec succeeded, whichever syscall
/// made it: execve or execveat). It has a new name now; and a thread that was not the leader
/// (`old_tid`) has taken the leader's id (`tid`), so the syscall it is in, the exec, moves to that
/// id to meet its return. Once per exec: out of line.
#[inline(never)]
pub fn process_exec(tgid: u32, tid: u32, old_tid: u32) {
    per_process(tgid, |p| {
        p.comm = task::process_comm();
        p.named_ns = now();
    });
    if old_tid == tid || old_tid == 0 {
        return;
    }
    if let Some(on) = on_cpu()
        && on.tid == old_tid
    {
        on.tid = tid;
    }
    if let Some(parked) = unpark(old_tid) {
        park(tid, &parked);
    }
    // It entered the exec while measured: nothing of it began before.
    let _ = BEFORE_START.remove(&old_tid);
}

/// Accounts a syscall of thread `tid` of process `tgid`, entered as `entry`, returning `ret`.
#[inline(always)]
pub(super) fn returned(on: &mut OnCpu, tgid: u32, tid: u32, entry: &InFlight, ret: i64, regs: u64) {
    on.returns += 1;
    // Bytes that went through a descriptor into or out of user memory: by what it is.
    let kind = if ret > 0 {
        descriptor::moved(entry.nr, regs, ret)
    } else {
        0
    };
    let timed = entry.start_ns != UNTIMED_START;
    let switched = entry.switched_ns != 0;
    // A call that was switched out is timed from that switch on, drawn or not: only a parked
    // call (the slow path already) pays this clock read.
    let now = if timed || switched { now() } else { 0 };
    if timed || switched {
        on.last_ns = now;
    }
    if tracing() {
        // Trace mode times every syscall (TIME_MASK 0).
        emit_for(
            (u64::from(tgid) << 32) | u64::from(tid),
            EventKind::Syscall,
            now,
            entry.start_ns,
            ret,
            entry.nr,
            kind,
            Name::None,
        );
    }
    if let Some(stat) = SYSCALLS.get_ptr_mut(entry.nr) {
        // SAFETY: per-CPU entry.
        unsafe {
            // The head (entry to the first switch-out, or to the return) is sampled; the tail
            // (from that switch on) is measured for every call.
            let head_end = if switched {
                (*stat).switched += 1;
                (*stat).switched_ns += now.wrapping_sub(entry.switched_ns);
                entry.switched_ns
            } else {
                now
            };
            if timed {
                let ns = head_end.saturating_sub(entry.start_ns);
                (*stat).total_ns += ns;
                (*stat).timed += 1;
                if entry.start_ns & FORCED_START != 0 {
                    (*stat).forced += 1;
                    (*stat).forced_ns += ns;
                } else {
                    let units = ns >> RANDOM_SQ_SHIFT;
                    (*stat).random_sq = (*stat).random_sq.saturating_add(units * units);
                }
            }
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
    if let Some(on) = on_cpu()
        && on.tid == tid
    {
        if on.start_ns != 0 {
            let mut entry = on.entry();
            entry.switched_ns = now();
            park(tid, &entry);
        }
        // The registers' address no longer names the task running here (see
        // `syscall_enter_regs`).
        on.start_ns = 0;
        on.regs = 0;
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
