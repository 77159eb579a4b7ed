//! CPU copies, from the kernel's own copy routines where the kernel lets us hook them (fexit or
//! kretprobe: the return value is the bytes copied), and from perf sampling of kernel stacks
//! where it does not (the share of time spent in copy routines).
use aya_ebpf::{
    EbpfContext as _, Global,
    bindings::bpf_perf_event_data,
    macros::{fexit, kretprobe, perf_event, raw_tracepoint, tracepoint},
    programs::{
        FExitContext, PerfEventContext, RawTracePointContext, RetProbeContext, TracePointContext,
        tracing::StackIdContext as _,
    },
};
use zcprof_common::Counter;

use crate::{
    account,
    filter::{traced, traced_tid},
    maps::STACKS,
};

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
// Before 5.12 (Debian 5.10) the same function was called generic_file_buffered_read, with the
// same three arguments and the same return value.
copy_exit!(
    generic_file_buffered_read_fexit,
    generic_file_buffered_read_kretprobe,
    "generic_file_buffered_read",
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
        let data = unsafe { &*(ctx.as_ptr() as *const bpf_perf_event_data) };
        account::sampled_cpu(data.sample_period);
        let ip = instruction_pointer(data);
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

/// fexit on `tcp_sendmsg`; also remembers the socket as the process's (see `register_socket`).
#[fexit(function = "tcp_sendmsg")]
pub fn tcp_sendmsg_fexit(ctx: FExitContext) -> i32 {
    if let Some((tgid, tid)) = traced() {
        let ret = ctx.arg::<i64>(FEXIT_RET);
        account::copied(tid, Counter::SockSendBytes, ret);
        if ret > 0
            && let Some(nr) = account::syscall_of(tid)
        {
            account::register_socket(ctx.arg::<u64>(0), tgid, nr);
        }
    }
    0
}

/// kretprobe on `tcp_sendmsg` (the socket is not known at return: packets register it).
#[kretprobe]
pub fn tcp_sendmsg_kretprobe(ctx: RetProbeContext) -> u32 {
    if let Some(tid) = traced_tid() {
        account::copied(tid, Counter::SockSendBytes, ctx.ret::<i64>());
    }
    0
}

/// `sock:sock_send_length` record offsets of `void *sk`, `__u16 family`, `__u16 protocol` and
/// `int ret`, from the format file (Linux >= 6.3).
#[unsafe(no_mangle)]
static SOCK_OFF_SK: Global<u32> = Global::new(8);
#[unsafe(no_mangle)]
static SOCK_OFF_FAMILY: Global<u32> = Global::new(16);
#[unsafe(no_mangle)]
static SOCK_OFF_PROTOCOL: Global<u32> = Global::new(18);
#[unsafe(no_mangle)]
static SOCK_OFF_RET: Global<u32> = Global::new(20);

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u16 = 6;

/// Classic tracepoint `sock:sock_send_length`, fired as every sendmsg on a socket returns. A TCP
/// socket that took bytes is remembered as the process's, so that its packets are recognised
/// wherever they leave.
#[tracepoint(category = "sock", name = "sock_send_length")]
pub fn sock_send_length_tracepoint(ctx: TracePointContext) -> u32 {
    if let Some((tgid, tid)) = traced() {
        // SAFETY: offsets from the tracepoint's format file.
        let (ret, sk, family, protocol) = unsafe {
            (
                ctx.read_at::<i32>(SOCK_OFF_RET.load() as usize),
                ctx.read_at::<u64>(SOCK_OFF_SK.load() as usize),
                ctx.read_at::<u16>(SOCK_OFF_FAMILY.load() as usize),
                ctx.read_at::<u16>(SOCK_OFF_PROTOCOL.load() as usize),
            )
        };
        if let Ok(ret) = ret {
            account::copied(tid, Counter::SockSendBytes, i64::from(ret));
            if ret > 0
                && let (Ok(sk), Ok(family), Ok(IPPROTO_TCP)) = (sk, family, protocol)
                && (family == AF_INET || family == AF_INET6)
                && let Some(nr) = account::syscall_of(tid)
            {
                account::register_socket(sk, tgid, nr);
            }
        }
    }
    0
}

/// TCP's `TCP_CLOSE` state: the socket is done, no packet of it leaves any more.
const TCP_CLOSE: i32 = 7;

/// Raw tracepoint `inet_sock_set_state(const struct sock *sk, int oldstate, int newstate)`, for
/// every TCP socket of the machine: a socket that closes leaves the owners' table (see
/// `account::forget_socket`).
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state_raw_tp(ctx: RawTracePointContext) -> i32 {
    #[expect(clippy::cast_possible_truncation, reason = "an int")]
    if ctx.arg::<u64>(2) as i32 == TCP_CLOSE {
        account::forget_socket(ctx.arg::<u64>(0));
    }
    0
}

/// `sock:inet_sock_set_state` record offsets of `const void *skaddr` and `int newstate`, from
/// the format file.
#[unsafe(no_mangle)]
static SOCKSTATE_OFF_SKADDR: Global<u32> = Global::new(8);
#[unsafe(no_mangle)]
static SOCKSTATE_OFF_NEWSTATE: Global<u32> = Global::new(20);

/// Classic tracepoint `sock:inet_sock_set_state`.
#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state_tracepoint(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from the tracepoint's format file.
    let (sk, state) = unsafe {
        (
            ctx.read_at::<u64>(SOCKSTATE_OFF_SKADDR.load() as usize),
            ctx.read_at::<i32>(SOCKSTATE_OFF_NEWSTATE.load() as usize),
        )
    };
    if let (Ok(sk), Ok(TCP_CLOSE)) = (sk, state) {
        account::forget_socket(sk);
    }
    0
}
