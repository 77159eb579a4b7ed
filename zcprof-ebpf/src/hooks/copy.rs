//! CPU copies, from the kernel's own copy routines where the kernel lets us hook them (fexit or
//! kretprobe: the return value is the bytes copied), and from perf sampling of kernel stacks
//! where it does not (the share of time spent in copy routines).
use aya_ebpf::{
    EbpfContext as _, Global,
    bindings::bpf_perf_event_data,
    macros::{fexit, kretprobe, perf_event, tracepoint},
    programs::{
        FExitContext, PerfEventContext, RetProbeContext, TracePointContext,
        tracing::StackIdContext as _,
    },
};
use zcprof_common::Counter;

use crate::{account, filter::traced_tid, maps::STACKS};

// fexit sees the arguments first, then the return value: all three functions take three
// arguments (filemap_read(iocb, iter, already_read), _copy_to_iter(addr, bytes, iter),
// _copy_from_iter(addr, bytes, iter)), so the return value is argument 3.
const FEXIT_RET: usize = 3;

macro_rules! copy_exit {
    ($fexit:ident, $kretprobe:ident, $function:literal, $slot:expr) => {
        #[doc = concat!("fexit on `", $function, "`.")]
        #[fexit(function = $function)]
        pub fn $fexit(ctx: FExitContext) -> i32 {
            if let Some(tid) = traced_tid() {
                account::copied(tid, $slot, ctx.arg::<i64>(FEXIT_RET));
            }
            0
        }

        #[doc = concat!("kretprobe on `", $function, "`.")]
        #[kretprobe]
        pub fn $kretprobe(ctx: RetProbeContext) -> u32 {
            if let Some(tid) = traced_tid() {
                account::copied(tid, $slot, ctx.ret::<i64>());
            }
            0
        }
    };
}

copy_exit!(
    filemap_read_fexit,
    filemap_read_kretprobe,
    "filemap_read",
    Counter::FilemapReadBytes
);
copy_exit!(
    copy_to_iter_fexit,
    copy_to_iter_kretprobe,
    "_copy_to_iter",
    Counter::CopyToIterBytes
);
copy_exit!(
    copy_from_iter_fexit,
    copy_from_iter_kretprobe,
    "_copy_from_iter",
    Counter::CopyFromIterBytes
);

/// Kernel address space starts in the upper half on the 64-bit architectures zcprof runs on.
const KERNEL_SPACE: u64 = 1 << 63;

/// cpu-clock samples of the measured process: kernel stacks go to `STACKS` for user space to
/// symbolize; user-mode samples are only counted.
#[perf_event]
pub fn copy_sample_perf_event(ctx: PerfEventContext) -> u32 {
    if traced_tid().is_some() {
        // SAFETY: a perf-event program's context is bpf_perf_event_data.
        let ip = unsafe { instruction_pointer(&*(ctx.as_ptr() as *const bpf_perf_event_data)) };
        let in_kernel = ip & KERNEL_SPACE != 0;
        let stack = if in_kernel {
            ctx.get_stackid(&STACKS, 0)
        } else {
            Err(0)
        };
        account::sample(stack, in_kernel);
    }
    0
}

#[cfg(bpf_target_arch = "x86_64")]
fn instruction_pointer(data: &bpf_perf_event_data) -> u64 {
    data.regs.rip
}

#[cfg(bpf_target_arch = "aarch64")]
fn instruction_pointer(data: &bpf_perf_event_data) -> u64 {
    data.regs.pc
}

// tcp_sendmsg(sk, msg, size) returns the bytes the socket took: copied into socket buffers
// during write-type syscalls, taken as page references during sendfile/splice (6.5+, with SG).
copy_exit!(
    tcp_sendmsg_fexit,
    tcp_sendmsg_kretprobe,
    "tcp_sendmsg",
    Counter::SockSendBytes
);

/// `sock:sock_send_length` record offset of `int ret`, from the format file (Linux >= 6.3).
#[unsafe(no_mangle)]
static SOCK_OFF_RET: Global<u32> = Global::new(20);

/// Classic tracepoint `sock:sock_send_length`, fired as every sendmsg on a socket returns.
#[tracepoint(category = "sock", name = "sock_send_length")]
pub fn sock_send_length_tracepoint(ctx: TracePointContext) -> u32 {
    if let Some(tid) = traced_tid() {
        // SAFETY: offset from the tracepoint's format file.
        if let Ok(ret) = unsafe { ctx.read_at::<i32>(SOCK_OFF_RET.load() as usize) } {
            account::copied(tid, Counter::SockSendBytes, i64::from(ret));
        }
    }
    0
}
