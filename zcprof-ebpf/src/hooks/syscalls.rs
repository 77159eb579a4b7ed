//! Syscall entry and return (the user/kernel mode switches of the syscall path).
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

use crate::{account, filter::traced};

// raw_syscalls:sys_enter/sys_exit record layout (stable since 3.x, see the tracefs format file):
// 8: long id; 16: unsigned long args[6] (enter) or long ret (exit).
const TP_ID_OFFSET: usize = 8;
const TP_RET_OFFSET: usize = 16;

/// Raw tracepoint `sys_enter(struct pt_regs *regs, long id)`: cheapest, needs no tracefs.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter_raw_tp(ctx: RawTracePointContext) -> i32 {
    account::syscall_enter_regs(ctx.arg::<u64>(0), ctx.arg::<i64>(1));
    0
}

/// Raw tracepoint `sys_exit(struct pt_regs *regs, long ret)`.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit_raw_tp(ctx: RawTracePointContext) -> i32 {
    account::syscall_exit_regs(ctx.arg::<u64>(0), ctx.arg::<i64>(1));
    0
}

/// Classic tracepoint `raw_syscalls:sys_enter`, for kernels that refuse raw tracepoints.
#[tracepoint(category = "raw_syscalls", name = "sys_enter")]
pub fn sys_enter_tracepoint(ctx: TracePointContext) -> u32 {
    if let Some((tgid, tid)) = traced() {
        // SAFETY: offset from the tracepoint's fixed record layout.
        if let Ok(nr) = unsafe { ctx.read_at::<i64>(TP_ID_OFFSET) } {
            account::syscall_enter(tgid, tid, nr, 0);
        }
    }
    0
}

/// Classic tracepoint `raw_syscalls:sys_exit`.
#[tracepoint(category = "raw_syscalls", name = "sys_exit")]
pub fn sys_exit_tracepoint(ctx: TracePointContext) -> u32 {
    if let Some((tgid, tid)) = traced() {
        // SAFETY: offset from the tracepoint's fixed record layout.
        if let Ok(ret) = unsafe { ctx.read_at::<i64>(TP_RET_OFFSET) } {
            account::syscall_exit(tgid, tid, ret, 0, || {
                // SAFETY: as above. The record's id is the number in the saved registers.
                unsafe { ctx.read_at::<i64>(TP_ID_OFFSET) }.unwrap_or(-1)
            });
        }
    }
    0
}

/// Returns at once: attached alone by `zcprof __empty-hooks`, it measures what the kernel charges
/// every syscall of every task for running any BPF program on `sys_enter` (the benchmark's floor).
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn empty_sys_enter_raw_tp(_ctx: RawTracePointContext) -> i32 {
    0
}

/// The same on `sys_exit`.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn empty_sys_exit_raw_tp(_ctx: RawTracePointContext) -> i32 {
    0
}
