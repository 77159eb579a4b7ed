//! The always-on counters of `zcprof serve` and `zcprof top`: one record per process name
//! (serve) or per process and name (top), kept by data-path hooks only, read by user space when
//! Prometheus scrapes or top's interval ends.

/// The length of a task's name (`TASK_COMM_LEN`), the key of the per-name counters.
pub const COMM_LEN: usize = 16;

/// Distinct process names the kernel keeps counters for (an LRU map: beyond it the names
/// least recently active are forgotten). User space exports at most `serve::COMM_CAP` of them.
pub const SERVE_COMM_ENTRIES: u32 = 4096;

/// Slots of the per-CPU lost-event counters, by [`ServeLost`].
pub const SERVE_LOST_SLOTS: u32 = 2;

/// Why an event was not counted, the index into the per-CPU lost counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeLost {
    /// A socket could not enter the owners' table (full), so its packets go uncounted.
    SocketTableFull = 0,
    /// A process name could not enter the counters map.
    CommTableFull = 1,
}

/// Totals of one process name (summed over CPUs by user space). Each field only grows, until the
/// name is dropped.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct ServeStat {
    /// Bytes TCP sockets took by copying them from the sender's memory (write, send, ...).
    pub send_copied: u64,
    /// Bytes TCP sockets took as page references (`MSG_SPLICE_PAGES`: sendfile, splice).
    pub send_by_reference: u64,
    /// Bytes copied from socket buffers to the receiver's memory.
    pub recv_copied: u64,
    /// Bytes of block read requests issued by tasks of this name.
    pub disk_read: u64,
    /// Bytes of block write requests issued by tasks of this name.
    pub disk_written: u64,
    /// Packets of this name's TCP sockets handed to a physical network device.
    pub nic_packets: u64,
    /// Bytes of those packets (headers included).
    pub nic_bytes: u64,
    /// Times a task of this name was switched off its CPU.
    pub switches: u64,
    /// TCP payload the name's packets carried in their linear data, on any device (a sender
    /// with scatter-gather puts its copies in page fragments; software segmentation for a
    /// device without it copies everything into the linear data). Appended for `zcprof top`.
    pub packet_linear: u64,
    /// Bytes of sends flagged `MSG_ZEROCOPY` (or `io_uring`'s `SEND_ZC`) that TCP took: pages
    /// pinned by reference unless the kernel copied after all, which it tells only the sender.
    /// Counted here instead of in `send_copied`. Appended for `zcprof top`.
    pub send_zerocopy: u64,
}

#[cfg(feature = "user")]
// SAFETY: plain-old-data with no padding and every bit pattern valid.
unsafe impl aya::Pod for ServeStat {}

#[cfg(feature = "user")]
impl ServeStat {
    /// Adds `other`'s counts to these (per-CPU values summed, or deltas into totals). Every
    /// field is named, so a new counter cannot be left out of the sum.
    pub fn add(&mut self, other: &ServeStat) {
        let ServeStat {
            send_copied,
            send_by_reference,
            recv_copied,
            disk_read,
            disk_written,
            nic_packets,
            nic_bytes,
            switches,
            packet_linear,
            send_zerocopy,
        } = *other;
        self.send_copied += send_copied;
        self.send_by_reference += send_by_reference;
        self.recv_copied += recv_copied;
        self.disk_read += disk_read;
        self.disk_written += disk_written;
        self.nic_packets += nic_packets;
        self.nic_bytes += nic_bytes;
        self.switches += switches;
        self.packet_linear += packet_linear;
        self.send_zerocopy += send_zerocopy;
    }
}

/// Distinct processes the kernel keeps counters for when it counts by process (`zcprof top`;
/// an LRU map, sized to one entry otherwise).
pub const SERVE_PROCESS_ENTRIES: u32 = 8192;

/// Whom a counter is kept for: a process (thread group id) and the name of its task at the
/// event. The key of the per-process counters (`zcprof top`), and a socket's owner. No padding:
/// four bytes of id, sixteen of name.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq, Hash)]
pub struct ServeOwner {
    /// The process (thread group) id.
    pub tgid: u32,
    /// The task's name, NUL-padded.
    pub comm: [u8; COMM_LEN],
}

#[cfg(feature = "user")]
// SAFETY: plain-old-data with no padding and every bit pattern valid.
unsafe impl aya::Pod for ServeOwner {}
