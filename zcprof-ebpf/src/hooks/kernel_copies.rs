//! Copies the kernel makes on its own, seen at tracepoints that work without fentry or kprobes:
//! payload that leaves a traced socket in a packet's linear data (copied there by software
//! segmentation or linearisation when the device lacks scatter-gather) or in page fragments (by
//! reference), bytes a file system copies into the page cache, and socket -> user copies.
//! Record offsets come from this kernel's format files and `sk_buff` field offsets from its BTF,
//! both set by the loader.
use aya_ebpf::{
    Global,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use zcprof_common::{IFNAMSIZ, NO_SYSCALL};

use super::device::clear_after_nul;
pub(crate) use crate::task::kernel_read;
use crate::{
    account,
    filter::{traced, traced_tid},
    task,
};

#[unsafe(no_mangle)]
static XMIT_OFF_SKB: Global<u32> = Global::new(16);
#[unsafe(no_mangle)]
static XMIT_OFF_PROTOCOL: Global<u32> = Global::new(30);
#[unsafe(no_mangle)]
static XMIT_OFF_LEN: Global<u32> = Global::new(36);
#[unsafe(no_mangle)]
static XMIT_OFF_DATA_LEN: Global<u32> = Global::new(40);
#[unsafe(no_mangle)]
static XMIT_OFF_NETWORK: Global<u32> = Global::new(44);
#[unsafe(no_mangle)]
static XMIT_OFF_TRANSPORT_VALID: Global<u32> = Global::new(48);
#[unsafe(no_mangle)]
static XMIT_OFF_TRANSPORT: Global<u32> = Global::new(52);
/// `struct sk_buff` member offsets, from the kernel's BTF (the loader attaches the programs only
/// when it found them all).
#[unsafe(no_mangle)]
pub(crate) static SKB_OFF_SK: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SKB_OFF_DATA: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SKB_OFF_HEAD: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
pub(crate) static SKB_OFF_LEN: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SKB_OFF_DATA_LEN: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SKB_OFF_PROTOCOL: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SKB_OFF_NETWORK_HEADER: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SKB_OFF_TRANSPORT_HEADER: Global<u32> = Global::new(0);
/// `struct net_device` offset of `name`, from the kernel's BTF.
#[unsafe(no_mangle)]
pub(crate) static DEV_OFF_NAME: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static XMIT_OFF_NAME: Global<u32> = Global::new(8);
#[unsafe(no_mangle)]
static DGRAM_OFF_LEN: Global<u32> = Global::new(16);
#[unsafe(no_mangle)]
static EXT4_DA_OFF_COPIED: Global<u32> = Global::new(36);
#[unsafe(no_mangle)]
static DIO_OFF_RET: Global<u32> = Global::new(56);
#[unsafe(no_mangle)]
static EXT4_OFF_COPIED: Global<u32> = Global::new(36);

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;

/// A record field of type `T` at the offset held in `global`.
#[inline(always)]
fn field<T>(ctx: &TracePointContext, global: &Global<u32>) -> Option<T> {
    // SAFETY: offsets from the tracepoint's format file.
    unsafe { ctx.read_at::<T>(global.load() as usize) }.ok()
}

/// What the transmit programs need to know of a packet.
pub(crate) struct Packet {
    pub(crate) sk: u64,
    /// `skb->data`, where the device's headers start.
    data: u64,
    pub(crate) len: u32,
    /// Bytes in page fragments.
    data_len: u32,
    /// Host-order ethertype.
    protocol: u16,
    /// Offsets of the network and transport headers from `data`.
    network: u64,
    transport: u64,
    /// The device's name.
    pub(crate) device: [u8; IFNAMSIZ],
}

/// A `T` member of the `sk_buff` at `skb`, at the offset held in `global`.
#[inline(always)]
fn skb_member<T>(skb: u64, global: &Global<u32>) -> Option<T> {
    kernel_read(skb + u64::from(global.load()))
}

/// Raw tracepoint `net_dev_start_xmit(const struct sk_buff *skb, const struct net_device *dev)`:
/// a packet is handed to a device driver, after software segmentation. Preferred over the
/// classic tracepoint: cheaper, and not skipped when the packet leaves from a softirq that
/// interrupted another tracing program (classic tracepoints share one per-CPU busy flag with
/// kprobes and skip instead of nesting; 3.5% of a transfer's packets went unseen that way here).
#[raw_tracepoint(tracepoint = "net_dev_start_xmit")]
pub fn net_dev_start_xmit_raw_tp(ctx: RawTracePointContext) -> i32 {
    let _ = packet_from_skb(ctx.arg::<u64>(0), ctx.arg::<u64>(1)).map(|p| sent(&p));
    0
}

#[inline(always)]
pub(crate) fn packet_from_skb(skb: u64, dev: u64) -> Option<Packet> {
    let sk: u64 = skb_member(skb, &SKB_OFF_SK)?;
    if sk == 0 {
        return None;
    }
    let head: u64 = skb_member(skb, &SKB_OFF_HEAD)?;
    let data: u64 = skb_member(skb, &SKB_OFF_DATA)?;
    let network_header: u16 = skb_member(skb, &SKB_OFF_NETWORK_HEADER)?;
    let transport_header: u16 = skb_member(skb, &SKB_OFF_TRANSPORT_HEADER)?;
    // An unset header offset is all ones.
    if transport_header == u16::MAX || data < head {
        return None;
    }
    let data_off = data - head;
    let protocol: u16 = skb_member(skb, &SKB_OFF_PROTOCOL)?;
    let mut device: [u8; IFNAMSIZ] = kernel_read(dev + u64::from(DEV_OFF_NAME.load()))?;
    clear_after_nul(&mut device);
    Some(Packet {
        device,
        sk,
        data,
        len: skb_member(skb, &SKB_OFF_LEN)?,
        data_len: skb_member(skb, &SKB_OFF_DATA_LEN)?,
        protocol: u16::from_be(protocol),
        network: u64::from(network_header).checked_sub(data_off)?,
        transport: u64::from(transport_header).checked_sub(data_off)?,
    })
}

/// Classic tracepoint `net:net_dev_start_xmit`, where raw tracepoints are refused.
#[tracepoint(category = "net", name = "net_dev_start_xmit")]
pub fn net_dev_start_xmit_tracepoint(ctx: TracePointContext) -> u32 {
    let _ = packet_from_record(&ctx).map(|p| sent(&p));
    0
}

#[inline(always)]
fn packet_from_record(ctx: &TracePointContext) -> Option<Packet> {
    let skb: u64 = field(ctx, &XMIT_OFF_SKB)?;
    let sk: u64 = kernel_read(skb + u64::from(SKB_OFF_SK.load()))?;
    if sk == 0 {
        return None;
    }
    let network: i32 = field(ctx, &XMIT_OFF_NETWORK)?;
    let transport_valid: u8 = field(ctx, &XMIT_OFF_TRANSPORT_VALID)?;
    let transport: i32 = field(ctx, &XMIT_OFF_TRANSPORT)?;
    if transport_valid == 0 || network < 0 || transport < 0 {
        return None;
    }
    let loc: u32 = field(ctx, &XMIT_OFF_NAME)?;
    // __data_loc: the low 16 bits are the string's offset in the record.
    // SAFETY: the string lies inside the record; at most IFNAMSIZ bytes are read.
    let mut device = unsafe { ctx.read_at::<[u8; IFNAMSIZ]>((loc & 0xffff) as usize) }.ok()?;
    clear_after_nul(&mut device);
    #[expect(clippy::cast_sign_loss, reason = "checked non-negative")]
    Some(Packet {
        device,
        sk,
        data: kernel_read(skb + u64::from(SKB_OFF_DATA.load()))?,
        len: field(ctx, &XMIT_OFF_LEN)?,
        data_len: field(ctx, &XMIT_OFF_DATA_LEN)?,
        protocol: field(ctx, &XMIT_OFF_PROTOCOL)?,
        network: network as u64,
        transport: transport as u64,
    })
}

/// A TCP packet's payload: the bytes in its linear data after the headers, and in page
/// fragments. None for anything but TCP over IPv4 or IPv6.
#[inline(always)]
pub(crate) fn tcp_payload(p: &Packet) -> Option<(u64, u64)> {
    let ip_protocol: u8 = match p.protocol {
        ETH_P_IP => kernel_read(p.data + p.network + 9)?,
        ETH_P_IPV6 => kernel_read(p.data + p.network + 6)?,
        _ => return None,
    };
    if ip_protocol != IPPROTO_TCP {
        return None;
    }
    let doff: u8 = kernel_read(p.data + p.transport + 12)?;
    let headers = p.transport + u64::from(doff >> 4) * 4;
    let linear = u64::from(p.len.saturating_sub(p.data_len)).saturating_sub(headers);
    Some((linear, u64::from(p.data_len)))
}

/// Accounts a packet of a traced process's TCP socket: its payload in linear data (copied) and
/// in page fragments (by reference).
#[inline(always)]
fn sent(p: &Packet) -> Option<()> {
    let current = traced();
    let known = account::socket_owner(p.sk);
    if known.is_none() && current.is_none() {
        return None;
    }
    let (linear, paged) = tcp_payload(p)?;
    let owner = match known {
        Some(owner) => owner,
        None => {
            // First seen here (a send's first packets leave before `sock_send_length` fires at
            // its return; sendpage before 6.5 has no such hook at all): the socket is the traced
            // task's when it carries payload from inside a syscall and sits in the task's file
            // table. Loopback and veth
            // deliveries process a peer's ACKs, and send its packets, on whatever task is on
            // the CPU: those sockets are not in its table.
            let (tgid, tid) = current?;
            let nr = account::syscall_of(tid)?;
            if linear + paged == 0
                || nr == NO_SYSCALL
                || !task::owns_socket(p.sk, account::syscall_fds(tid))
            {
                return None;
            }
            account::register_socket(p.sk, tgid, nr);
            account::socket_owner(p.sk)?
        }
    };
    account::xmit(owner, linear, paged, current.is_some());
    // The device counts too, by socket rather than by whoever runs here.
    account::net_xmit(&p.device, u64::from(p.len));
    Some(())
}

/// Raw tracepoint `skb_copy_datagram_iovec(const struct sk_buff *skb, int len)`: socket buffer ->
/// user memory, in the receiving task's context.
#[raw_tracepoint(tracepoint = "skb_copy_datagram_iovec")]
pub fn skb_copy_datagram_iovec_raw_tp(ctx: RawTracePointContext) -> i32 {
    #[expect(clippy::cast_possible_truncation, reason = "an int argument")]
    account::sock_recv(traced_tid(), ctx.arg::<u64>(1) as i32);
    0
}

/// Raw tracepoint `ext4_da_write_end(struct inode *inode, loff_t pos, unsigned int len,
/// unsigned int copied)`: ext4 (delayed allocation) copied `copied` bytes into the page cache.
#[raw_tracepoint(tracepoint = "ext4_da_write_end")]
pub fn ext4_da_write_end_raw_tp(ctx: RawTracePointContext) -> i32 {
    if let Some(tid) = traced_tid() {
        #[expect(clippy::cast_possible_truncation, reason = "an unsigned int argument")]
        account::page_cache_write(tid, ctx.arg::<u64>(3) as u32);
    }
    0
}

/// Raw tracepoint `ext4_write_end`, the same without delayed allocation.
#[raw_tracepoint(tracepoint = "ext4_write_end")]
pub fn ext4_write_end_raw_tp(ctx: RawTracePointContext) -> i32 {
    if let Some(tid) = traced_tid() {
        #[expect(clippy::cast_possible_truncation, reason = "an unsigned int argument")]
        account::page_cache_write(tid, ctx.arg::<u64>(3) as u32);
    }
    0
}

/// Classic tracepoint `skb:skb_copy_datagram_iovec`: socket buffer -> user memory, in the
/// receiving task's context.
#[tracepoint(category = "skb", name = "skb_copy_datagram_iovec")]
pub fn skb_copy_datagram_iovec_tracepoint(ctx: TracePointContext) -> u32 {
    if let Some(len) = field::<i32>(&ctx, &DGRAM_OFF_LEN) {
        account::sock_recv(traced_tid(), len);
    }
    0
}

/// Classic tracepoint `ext4:ext4_da_write_end`: ext4 (delayed allocation) copied `copied` bytes
/// into a page-cache folio.
#[tracepoint(category = "ext4", name = "ext4_da_write_end")]
pub fn ext4_da_write_end_tracepoint(ctx: TracePointContext) -> u32 {
    if let Some(tid) = traced_tid()
        && let Some(copied) = field::<u32>(&ctx, &EXT4_DA_OFF_COPIED)
    {
        account::page_cache_write(tid, copied);
    }
    0
}

/// Classic tracepoint `ext4:ext4_write_end`: the same without delayed allocation.
#[tracepoint(category = "ext4", name = "ext4_write_end")]
pub fn ext4_write_end_tracepoint(ctx: TracePointContext) -> u32 {
    if let Some(tid) = traced_tid()
        && let Some(copied) = field::<u32>(&ctx, &EXT4_OFF_COPIED)
    {
        account::page_cache_write(tid, copied);
    }
    0
}

/// Raw tracepoint `iomap_dio_complete(struct kiocb *iocb, int error, ssize_t ret)`: an `O_DIRECT`
/// transfer of `ret` bytes between the device and user memory ended (in the caller's context for
/// synchronous I/O). The device did it: not a CPU copy, but it tells a read-type syscall's bytes
/// from a page-cache copy.
#[raw_tracepoint(tracepoint = "iomap_dio_complete")]
pub fn iomap_dio_complete_raw_tp(ctx: RawTracePointContext) -> i32 {
    if let Some(tid) = traced_tid() {
        account::direct_io(tid, ctx.arg::<i64>(2));
    }
    0
}

/// Classic tracepoint `iomap:iomap_dio_complete`.
#[tracepoint(category = "iomap", name = "iomap_dio_complete")]
pub fn iomap_dio_complete_tracepoint(ctx: TracePointContext) -> u32 {
    if let Some(tid) = traced_tid()
        && let Some(ret) = field::<i64>(&ctx, &DIO_OFF_RET)
    {
        account::direct_io(tid, ret);
    }
    0
}
