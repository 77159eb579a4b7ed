//! Process lifetime: forks of traced processes join the traced set, so `exec` and `attach`
//! measure a program together with the children it starts.
use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{Global, macros::tracepoint, programs::TracePointContext};

use crate::{
    account,
    filter::{following, traced_tid},
    maps::{TRACED, TRACED_BITS},
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
        let child = child as u32;
        let _ = TRACED.insert(&child, &1, 0);
        if let Some(word) = TRACED_BITS.get_ptr_mut(child / 64) {
            let bit = 1u64 << (child % 64);
            // SAFETY: a map value, valid while the program runs. Parents on other CPUs may set
            // other bits of this word at the same time, so the bit is added atomically; it is
            // added only when clear, so the add is an OR (a process id is forked once at a time).
            unsafe {
                if *word & bit == 0 {
                    // The BPF target has no atomic types; the intrinsic becomes BPF's atomic add.
                    atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(word, bit);
                }
            }
        }
    }
    0
}
