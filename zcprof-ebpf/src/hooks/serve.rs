//! The always-on exporter's hooks (`zcprof serve`): raw tracepoints on the data path only (TCP
//! sends, socket receives, block requests, packets to devices, scheduler switches), never at
//! syscall entry or return, so tasks that move no data pay nothing. Each is a thin wrapper over
//! `account::serve`. Structure member offsets come from the kernel's BTF, set by the loader.
use aya_ebpf::{Global, macros::raw_tracepoint, programs::RawTracePointContext};

use super::kernel_copies::{SKB_OFF_SK, kernel_read, packet_from_skb, tcp_payload};
use crate::account::serve;

/// `struct msghdr` offset of `msg_flags`.
#[unsafe(no_mangle)]
static MSG_OFF_FLAGS: Global<u32> = Global::new(0);
/// `struct request` offsets of `__data_len` and `cmd_flags`.
#[unsafe(no_mangle)]
static RQ_OFF_DATA_LEN: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static RQ_OFF_CMD_FLAGS: Global<u32> = Global::new(0);

/// The operation in a request's `cmd_flags` (`REQ_OP_MASK`: the low 8 bits; 1 is a write).
const REQ_OP_MASK: u32 = 0xff;
const REQ_OP_WRITE: u32 = 1;
/// TCP's `TCP_CLOSE` state.
const TCP_CLOSE: i32 = 7;

/// Raw tracepoint `tcp_sendmsg_locked(sk, msg, skb, size_goal)` (recent kernels), as TCP takes
/// each chunk of a send: the message's flags say whether its pages are taken by reference.
#[raw_tracepoint(tracepoint = "tcp_sendmsg_locked")]
pub fn serve_tcp_sendmsg_locked_raw_tp(ctx: RawTracePointContext) -> i32 {
    let msg = ctx.arg::<u64>(1);
    serve::tcp_sending(|| kernel_read::<u32>(msg + u64::from(MSG_OFF_FLAGS.load())));
    0
}

/// Raw tracepoint `sock_send_length(sk, ret, flags)` (Linux >= 6.3), as every send on a socket
/// returns.
#[raw_tracepoint(tracepoint = "sock_send_length")]
pub fn serve_sock_send_length_raw_tp(ctx: RawTracePointContext) -> i32 {
    #[expect(clippy::cast_possible_truncation, reason = "an int")]
    serve::sent(ctx.arg::<u64>(0), ctx.arg::<u64>(1) as i32);
    0
}

/// Raw tracepoint `inet_sock_set_state(sk, oldstate, newstate)`: a closed socket leaves the
/// owners' table.
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn serve_inet_sock_set_state_raw_tp(ctx: RawTracePointContext) -> i32 {
    #[expect(clippy::cast_possible_truncation, reason = "an int")]
    if ctx.arg::<u64>(2) as i32 == TCP_CLOSE {
        serve::socket_closed(ctx.arg::<u64>(0));
    }
    0
}

/// Raw tracepoint `net_dev_start_xmit(skb, dev)`: a packet handed to a device driver. Only a
/// packet of a socket a counted task sent on is looked into.
#[raw_tracepoint(tracepoint = "net_dev_start_xmit")]
pub fn serve_net_dev_start_xmit_raw_tp(ctx: RawTracePointContext) -> i32 {
    let (skb, dev) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1));
    let Some(sk) = kernel_read::<u64>(skb + u64::from(SKB_OFF_SK.load())) else {
        return 0;
    };
    if sk == 0 {
        return 0;
    }
    let Some(owner) = serve::socket_owner(sk) else {
        return 0;
    };
    if let Some(packet) = packet_from_skb(skb, dev) {
        let linear = tcp_payload(&packet).map_or(0, |(linear, _)| linear);
        serve::xmit(&owner, &packet.device, packet.len, linear);
    }
    0
}

/// Raw tracepoint `skb_copy_datagram_iovec(skb, len)`: socket buffer -> the receiver's memory.
#[raw_tracepoint(tracepoint = "skb_copy_datagram_iovec")]
pub fn serve_skb_copy_datagram_iovec_raw_tp(ctx: RawTracePointContext) -> i32 {
    #[expect(clippy::cast_possible_truncation, reason = "an int")]
    serve::received(ctx.arg::<u64>(1) as i32);
    0
}

/// Raw tracepoint `block_rq_issue(rq)`: a block request handed to the driver, in the task that
/// issued it (writeback shows as the kernel's flusher threads).
#[raw_tracepoint(tracepoint = "block_rq_issue")]
pub fn serve_block_rq_issue_raw_tp(ctx: RawTracePointContext) -> i32 {
    let rq = ctx.arg::<u64>(0);
    let bytes = kernel_read::<u32>(rq + u64::from(RQ_OFF_DATA_LEN.load()));
    let flags = kernel_read::<u32>(rq + u64::from(RQ_OFF_CMD_FLAGS.load()));
    if let (Some(bytes), Some(flags)) = (bytes, flags)
        && bytes > 0
    {
        serve::disk(bytes, flags & REQ_OP_MASK == REQ_OP_WRITE);
    }
    0
}

/// Raw tracepoint `sched_switch(preempt, prev, next, prev_state)`, run while `current` is still
/// the task switched out.
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn serve_sched_switch_raw_tp(_ctx: RawTracePointContext) -> i32 {
    serve::switched();
    0
}
