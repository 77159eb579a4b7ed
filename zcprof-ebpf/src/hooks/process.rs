//! Process lifetime: forks of traced processes join the traced set, so `exec` and `attach`
//! measure a program together with the children it starts.
use crate::{
    account,
    filter::{traced, traced_tid},
};
use aya_ebpf::{
    Global,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

/// `sched:sched_process_fork` record offset of `pid_t child_pid`, from the format file.
#[unsafe(no_mangle)]
static FORK_OFF_CHILD_PID: Global<u32> = Global::new(44);

/// Classic tracepoint `sched:sched_process_fork`. It runs in the parent, before the child can
/// run, so the filter asks about the parent; a new thread's id lands in the set too, which is
/// harmless. The child of an untraced parent leaves the set: its id may be one a traced task
/// held whose `sched_process_free` has not come yet (an RCU callback, which a kernel with lazy
/// RCU defers by seconds; 7.2 in a VM handed the id out again first).
#[tracepoint(category = "sched", name = "sched_process_fork")]
pub fn sched_process_fork_tracepoint(ctx: TracePointContext) -> u32 {
    // SAFETY: offset from the tracepoint's format file.
    let child = unsafe { ctx.read_at::<i32>(FORK_OFF_CHILD_PID.load() as usize) }.unwrap_or(0);
    if traced_tid().is_none() {
        account::forget(child);
        return 0;
    }
    account::forked(child);
    account::follow(child);
    0
}

/// `sched:sched_process_free` record offset of `pid_t pid`, from the format file.
#[unsafe(no_mangle)]
static FREE_OFF_PID: Global<u32> = Global::new(12);

/// Classic tracepoint `sched:sched_process_free`, when any task's last reference goes (from an
/// RCU callback, not in the task): its id leaves the followed set (see `account::forget`).
#[tracepoint(category = "sched", name = "sched_process_free")]
pub fn sched_process_free_tracepoint(ctx: TracePointContext) -> u32 {
    // SAFETY: offset from the tracepoint's format file.
    let pid = unsafe { ctx.read_at::<i32>(FREE_OFF_PID.load() as usize) }.unwrap_or(0);
    account::forget(pid);
    0
}

/// Raw tracepoint `sched_process_exit(struct task_struct *p, ...)`, run by every task that ends,
/// in that task: a traced thread's syscall in flight goes with it (see `account::thread_exit`).
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn sched_process_exit_raw_tp(_ctx: RawTracePointContext) -> i32 {
    if let Some((tgid, tid)) = traced() {
        account::thread_exit(tgid, tid);
    }
    0
}

/// Classic tracepoint `sched:sched_process_exit`.
#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit_tracepoint(_ctx: TracePointContext) -> u32 {
    if let Some((tgid, tid)) = traced() {
        account::thread_exit(tgid, tid);
    }
    0
}

/// `sched:sched_process_exec` record offset of `pid_t old_pid`, from the format file.
#[unsafe(no_mangle)]
static EXEC_OFF_OLD_PID: Global<u32> = Global::new(16);

/// Raw tracepoint `sched_process_exec(struct task_struct *p, pid_t old_pid, struct linux_binprm
/// *bprm)`, in the task once its exec (execve or execveat) succeeded; `old_pid` is its thread id
/// before, which differs from the one it has now when a thread other than the leader exec'd.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec_raw_tp(ctx: RawTracePointContext) -> i32 {
    if let Some((tgid, tid)) = traced() {
        #[expect(clippy::cast_possible_truncation, reason = "a pid_t")]
        account::process_exec(tgid, tid, ctx.arg::<u64>(1) as u32);
    }
    0
}

/// Classic tracepoint `sched:sched_process_exec`.
#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec_tracepoint(ctx: TracePointContext) -> u32 {
    if let Some((tgid, tid)) = traced() {
        // SAFETY: offset from the tracepoint's format file.
        let old = unsafe { ctx.read_at::<u32>(EXEC_OFF_OLD_PID.load() as usize) }.unwrap_or(tid);
        account::process_exec(tgid, tid, old);
    }
    0
}
