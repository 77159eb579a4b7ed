//! Scheduler context switches of traced tasks. `sched_switch` runs while `current` is still the
//! task being switched out, so the tgid filter applies to the switched-out task.
use aya_ebpf::{
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};

use crate::{account, filter::traced_tid};

// sched:sched_switch record: 32: long prev_state. The kernel reports a preemption as
// TASK_REPORT_MAX (0x100) and a sleep as one of the state bits below it.
const TP_PREV_STATE_OFFSET: usize = 32;
const TP_SLEEP_STATE_BITS: i64 = 0xff;

/// Voluntary exactly when the kernel itself counts `nvcsw`: not a preemption and the task was
/// no longer runnable (see `__schedule`).
#[inline(always)]
fn voluntary(preempt: u64, prev_state: u64) -> bool {
    preempt & 0xff == 0 && prev_state != 0
}

/// tp_btf `sched_switch(bool preempt, prev, next, unsigned int prev_state)` (Linux >= 5.18).
#[btf_tracepoint(function = "sched_switch")]
pub fn sched_switch_tp_btf(ctx: BtfTracePointContext) -> i32 {
    if let Some(tid) = traced_tid() {
        account::context_switch(tid, voluntary(ctx.arg::<u64>(0), ctx.arg::<u64>(3)));
    }
    0
}

/// Raw tracepoint with the same arguments; attaching fails on kernels with fewer arguments.
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn sched_switch_raw_tp(ctx: RawTracePointContext) -> i32 {
    if let Some(tid) = traced_tid() {
        account::context_switch(tid, voluntary(ctx.arg::<u64>(0), ctx.arg::<u64>(3)));
    }
    0
}

/// Classic tracepoint `sched:sched_switch`.
#[tracepoint(category = "sched", name = "sched_switch")]
pub fn sched_switch_tracepoint(ctx: TracePointContext) -> u32 {
    if let Some(tid) = traced_tid() {
        // SAFETY: offset from the tracepoint's fixed record layout.
        if let Ok(state) = unsafe { ctx.read_at::<i64>(TP_PREV_STATE_OFFSET) } {
            account::context_switch(tid, state & TP_SLEEP_STATE_BITS != 0);
        }
    }
    0
}
