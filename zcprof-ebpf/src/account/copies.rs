//! The copy ledger's kernel side: bytes the CPU copied for a traced process, wherever the
//! kernel lets us see them (hooked copy routines, page-cache writes, socket receives, payload
//! that leaves a socket in linear packet data), each kept under the syscall it belongs to so that
//! user space can name the path (page cache -> user, page cache -> socket buffer, ...).
use zcprof_common::{Counter, EventKind, HookedBytes, NO_SYSCALL, SockOwner};

use super::{Name, add, current_tgid, emit, emit_for, in_flight, now, on_cpu, per_process};
use crate::{
    filter::{receiver_tgid, tracing},
    maps::{HOOKED_BY_SYSCALL, SOCKS, STACK_SAMPLES},
};

/// Adds `bytes` to the field of `slot` in the per-syscall totals of syscall `nr`.
#[inline(always)]
fn by_syscall(nr: u32, slot: Counter, bytes: u64) {
    if let Some(by) = HOOKED_BY_SYSCALL.get_ptr_mut(nr) {
        // SAFETY: per-CPU entry.
        let by: &mut HookedBytes = unsafe { &mut *by };
        match slot {
            Counter::FilemapReadBytes => by.filemap_read += bytes,
            Counter::CopyToIterBytes => by.copy_to_iter += bytes,
            Counter::SockSendBytes => by.sock_send += bytes,
            Counter::CopyFromIterBytes => by.copy_from_iter += bytes,
            Counter::XmitLinearBytes => by.xmit_linear += bytes,
            Counter::XmitPagedBytes => by.xmit_paged += bytes,
            Counter::PageCacheWriteBytes => by.page_cache_write += bytes,
            Counter::SockRecvBytes => by.sock_recv += bytes,
            Counter::DirectIoBytes => by.direct_io += bytes,
            _ => {}
        }
    }
}

/// A hooked copy routine (or `filemap_read`, a file system's write_end, a socket receive)
/// returned `ret` bytes for traced thread `tid`; the bytes are also kept under the syscall the
/// thread is in.
#[inline(always)]
pub fn copied(tid: u32, slot: Counter, ret: i64) {
    if ret <= 0 {
        return;
    }
    #[expect(clippy::cast_sign_loss, reason = "checked positive")]
    let bytes = ret as u64;
    if matches!(slot, Counter::SockSendBytes) {
        per_process(current_tgid(), |p| p.sock_send_bytes += bytes);
    } else {
        per_process(current_tgid(), |p| p.copied_bytes += bytes);
    }
    under_syscall(tid, slot, ret);
}

/// A device moved `ret` bytes straight between traced thread `tid`'s user buffer and the disk
/// (`O_DIRECT`): counted under the syscall, but not as a copy of the process.
#[inline(always)]
pub fn direct_io(tid: u32, ret: i64) {
    if ret > 0 {
        under_syscall(tid, Counter::DirectIoBytes, ret);
    }
}

/// Counts `ret` (positive) bytes in `slot`, as a trace event, and under the syscall thread `tid`
/// is in.
#[inline(always)]
fn under_syscall(tid: u32, slot: Counter, ret: i64) {
    #[expect(clippy::cast_sign_loss, reason = "callers checked positive")]
    let bytes = ret as u64;
    add(slot, bytes);
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
    if let Some(nr) = nr {
        by_syscall(nr, slot, bytes);
    }
}

/// A file system copied `bytes` into the page cache for traced thread `tid` (its write_end).
#[inline(always)]
pub fn page_cache_write(tid: u32, bytes: u32) {
    copied(tid, Counter::PageCacheWriteBytes, i64::from(bytes));
}

/// `bytes` were copied from a socket buffer to the current task's memory. The built-in receiver
/// (zcprof's own process) is counted apart from the measured process.
#[inline(always)]
pub fn sock_recv(traced_tid: Option<u32>, bytes: i32) {
    if bytes <= 0 {
        return;
    }
    if let Some(tid) = traced_tid {
        copied(tid, Counter::SockRecvBytes, i64::from(bytes));
        return;
    }
    let receiver = receiver_tgid();
    if receiver != 0 && current_tgid() == receiver {
        #[expect(clippy::cast_sign_loss, reason = "checked positive")]
        add(Counter::ReceiverRecvBytes, bytes as u64);
    }
}

/// Traced process `tgid` sent on socket `sk` in syscall `nr` (`NO_SYSCALL`: unknown): its packets
/// are the process's wherever they leave. Updated in place, so a socket's latest send wins.
#[inline(always)]
pub fn register_socket(sk: u64, tgid: u32, nr: u32) {
    if sk == 0 {
        return;
    }
    if let Some(owner) = SOCKS.get_ptr_mut(&sk) {
        // SAFETY: a map value, valid while the program runs; a torn write of two u32 is
        // harmless here (the next send rewrites it).
        unsafe {
            if (*owner).tgid != tgid || (*owner).nr != nr {
                *owner = SockOwner { tgid, nr };
            }
        }
    } else if SOCKS.insert(&sk, &SockOwner { tgid, nr }, 0).is_err() {
        add(Counter::SocketsLost, 1);
    }
}

/// Socket `sk` closed (any process's): it has no owner any more, and a socket made later at the
/// same address is not taken for it.
#[inline(always)]
pub fn forget_socket(sk: u64) {
    let _ = SOCKS.remove(&sk);
}

/// The syscall thread `tid` is in (`NO_SYSCALL` when it is in none).
#[inline(always)]
pub fn syscall_of(tid: u32) -> Option<u32> {
    Some(in_flight(tid).map_or(NO_SYSCALL, |f| f.nr))
}

/// The descriptor arguments of the syscall thread `tid` is running on this CPU (the first and
/// the third: `write`, `sendto`, `sendmsg`, `sendfile` name the socket first, `splice` third),
/// read from its saved registers; `u64::MAX` where they cannot be read.
#[inline(always)]
pub fn syscall_fds(tid: u32) -> [u64; 2] {
    let Some(on) = on_cpu().filter(|on| on.tid == tid && on.start_ns != 0 && on.regs != 0) else {
        return [u64::MAX; 2];
    };
    let arg = |offset: u64| crate::task::kernel_read::<u64>(on.regs + offset).unwrap_or(u64::MAX);
    [arg(REGS_ARG0), arg(REGS_ARG2)]
}

/// Offsets of the first and third syscall arguments in the saved registers.
#[cfg(bpf_target_arch = "x86_64")]
const REGS_ARG0: u64 = 112; // di
#[cfg(bpf_target_arch = "x86_64")]
const REGS_ARG2: u64 = 96; // dx
#[cfg(bpf_target_arch = "aarch64")]
const REGS_ARG0: u64 = 0; // regs[0]
#[cfg(bpf_target_arch = "aarch64")]
const REGS_ARG2: u64 = 16; // regs[2]

/// The owner of socket `sk`, when a traced process sent on it.
#[inline(always)]
pub fn socket_owner(sk: u64) -> Option<SockOwner> {
    // SAFETY: the value is copied out.
    unsafe { SOCKS.get(&sk) }.copied()
}

/// A packet of a traced process's socket is handed to a device: `linear` payload bytes sit in
/// the packet's own data (the kernel copied them there), `paged` in page fragments (passed by
/// reference). `in_context`: a traced task is running (else softirq or another task sent it).
#[inline(always)]
pub fn xmit(owner: SockOwner, linear: u64, paged: u64, in_context: bool) {
    add(Counter::XmitPackets, 1);
    if !in_context {
        add(Counter::XmitOtherContext, 1);
    }
    if linear > 0 {
        add(Counter::XmitLinearBytes, linear);
        by_syscall(owner.nr, Counter::XmitLinearBytes, linear);
        per_process(owner.tgid, |p| p.copied_bytes += linear);
    }
    if paged > 0 {
        add(Counter::XmitPagedBytes, paged);
        by_syscall(owner.nr, Counter::XmitPagedBytes, paged);
    }
    if tracing() && linear > 0 {
        // Attributed to the owner's main thread, not to whoever runs here (a softirq may).
        #[expect(clippy::cast_possible_wrap, reason = "packet lengths are small")]
        emit_for(
            (u64::from(owner.tgid) << 32) | u64::from(owner.tgid),
            EventKind::Copy,
            now(),
            0,
            linear as i64,
            Counter::XmitLinearBytes as u32,
            owner.nr,
            Name::None,
        );
    }
}

/// A cpu-clock sample of a traced thread stands for `period_ns` of its CPU time, whatever
/// becomes of its stack.
#[inline(always)]
pub fn sampled_cpu(period_ns: u64) {
    add(Counter::SampledCpuNs, period_ns);
}

/// A perf sample of a traced task: in user mode (`stack` is an error, there is no kernel
/// stack) or in kernel mode with the id of its stored stack.
#[inline(always)]
pub fn sample(stack: Result<i64, i32>, in_kernel: bool) {
    match stack {
        Ok(id) if id >= 0 => {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "stack ids are u32"
            )]
            let id = id as u32;
            let kept = match STACK_SAMPLES.get_ptr_mut(&id) {
                // SAFETY: per-CPU entry.
                Some(n) => unsafe {
                    *n += 1;
                    true
                },
                None => STACK_SAMPLES.insert(&id, &1, 0).is_ok(),
            };
            // A sample whose stack has no room is lost, not counted without its stack.
            add(
                if kept {
                    Counter::SamplesKernel
                } else {
                    Counter::SamplesLost
                },
                1,
            );
        }
        _ if in_kernel => add(Counter::SamplesLost, 1),
        _ => add(Counter::SamplesUser, 1),
    }
}
