//! Process lifetime: forks of traced processes join the traced set, so `exec` and `attach`
//! measure a program together with the children it starts.
use aya_ebpf::{Global, macros::tracepoint, programs::TracePointContext};

use crate::{
    account,
    filter::{following, traced_tid},
    maps::TRACED,
};

/// `sched:sched_process_fork` record offset of `pid_t child_pid`, from the format file.
#[unsafe(no_mangle)]
static FORK_OFF_CHILD_PID: Global<u32> = Global::new(44);

/// Classic tracepoint `sched:sched_process_fork`. It runs in the parent, so the filter asks
/// about the parent; a new thread's id lands in the set too, which is harmless.
#[tracepoint(category = "sched", name = "sched_process_fork")]
pub fn sched_process_fork_tracepoint(ctx: TracePointContext) -> u32 {
    if traced_tid().is_none() {
        return 0;
    }
    // SAFETY: offset from the tracepoint's format file.
    let child = unsafe { ctx.read_at::<i32>(FORK_OFF_CHILD_PID.load() as usize) }.unwrap_or(0);
    account::forked(child);
    if following() && child > 0 {
        #[expect(clippy::cast_sign_loss, reason = "checked positive")]
        let _ = TRACED.insert(&(child as u32), &1, 0);
    }
    0
}
