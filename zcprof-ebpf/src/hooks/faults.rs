//! Page faults of traced tasks: user-mode faults are mode switches the textbook leaves out;
//! kernel-mode faults show the kernel faulting in pages while copying (mmap + write).
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

use crate::{account, filter::traced_tid};

/// Raw tracepoint `page_fault_user` (x86 `exceptions` group).
#[raw_tracepoint(tracepoint = "page_fault_user")]
pub fn page_fault_user_raw_tp(_ctx: RawTracePointContext) -> i32 {
    if traced_tid().is_some() {
        account::page_fault(true);
    }
    0
}

/// Raw tracepoint `page_fault_kernel`.
#[raw_tracepoint(tracepoint = "page_fault_kernel")]
pub fn page_fault_kernel_raw_tp(_ctx: RawTracePointContext) -> i32 {
    if traced_tid().is_some() {
        account::page_fault(false);
    }
    0
}

/// Classic tracepoint `exceptions:page_fault_user`.
#[tracepoint(category = "exceptions", name = "page_fault_user")]
pub fn page_fault_user_tracepoint(_ctx: TracePointContext) -> u32 {
    if traced_tid().is_some() {
        account::page_fault(true);
    }
    0
}

/// Classic tracepoint `exceptions:page_fault_kernel`.
#[tracepoint(category = "exceptions", name = "page_fault_kernel")]
pub fn page_fault_kernel_tracepoint(_ctx: TracePointContext) -> u32 {
    if traced_tid().is_some() {
        account::page_fault(false);
    }
    0
}
