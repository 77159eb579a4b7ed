//! The contract between zcprof's eBPF programs and its loader: map layouts and counter slots.
//!
//! Everything here is `#[repr(C)]` because the kernel side writes these bytes and user space
//! reads them back through maps; both sides must agree on the layout to the byte.
#![no_std]

pub mod serve;

/// Syscall numbers at or above this are not kept per syscall (x86-64 ends near 470).
pub const MAX_SYSCALL_NR: u32 = 512;

/// Slots of the per-CPU `COUNTERS` array.
pub const COUNTER_SLOTS: u32 = 48;

/// Per-syscall totals of the traced tasks, one entry per syscall number and CPU.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct SyscallStat {
    /// Entries into the syscall.
    pub count: u64,
    /// Returns with a negative value (an errno).
    pub errors: u64,
    /// Nanoseconds from entry to the first switch-out inside the call, or to its return when it
    /// was not switched out, summed over the timed returns (see `timed`). The rest of a call's
    /// time, from its first switch-out on, is in `switched_ns` for every call, timed or not: a
    /// call that blocks (the heavy tail) is then measured whole, and only the on-CPU head of a
    /// call is sampled.
    pub total_ns: u64,
    /// Sum of non-negative return values. Only meaningful for syscalls that return byte
    /// counts; user space decides which those are, so the kernel side stays arch-neutral.
    pub ret_sum: u64,
    /// Returns whose duration is in `total_ns`. Outside trace mode only a sample of syscalls is
    /// timed (a clock read costs about 50 ns here), so this can be below `count`.
    pub timed: u64,
    /// Of `timed`: the calls timed whatever the random draw (the first `ALWAYS_TIMED` of the
    /// syscall on a CPU, the first syscall on a CPU, and calls refused before entry, which take
    /// no time), and their nanoseconds, part of `total_ns`. The others are a random sample of
    /// the calls that were not forced, so only they may be scaled up to those calls.
    pub forced: u64,
    pub forced_ns: u64,
    /// Of the random (not forced) timed calls: the sum of the squares of their `total_ns` parts,
    /// in units of 16 ns (so that a 4 ms head still leaves room for 10^8 of them), for the
    /// sampling error of the estimate.
    pub random_sq: u64,
    /// Calls switched out at least once before they returned, timed or not, and the nanoseconds
    /// from each one's first switch-out to its return.
    pub switched: u64,
    pub switched_ns: u64,
}

/// `SyscallStat::random_sq` is kept in units of `1 << RANDOM_SQ_SHIFT` nanoseconds.
pub const RANDOM_SQ_SHIFT: u32 = 4;

/// The per-process table's key for the processes that found it full: their totals are summed
/// there, so the table's rows always add up to what was counted. User space makes this entry
/// before the programs run.
pub const OTHER_PROCESSES: u32 = u32::MAX;

/// Every syscall of one number is timed until this many were, on each CPU; sampling starts
/// after that. Rare syscalls (an execve, a wait4) are then timed exactly, and so is a short run
/// of large transfers (a 16 MiB sendfile in 64 KiB steps is 256 calls), where a 1-in-16 sample
/// of a few dozen uneven calls would swing by tens of percent. A long loop of small calls, where
/// the clock reads would cost, pays for this only at its start.
pub const ALWAYS_TIMED: u64 = 256;

/// `start_ns` of a syscall in flight that is not timed; 0 marks an idle slot.
pub const UNTIMED_START: u64 = 1;

/// The low bit of a timed `start_ns` says why it is timed: set when the call was timed whatever
/// the draw (see `SyscallStat::forced`), clear when the draw picked it. A timed start is never
/// `UNTIMED_START`, so this costs the clock one nanosecond of precision and no field.
pub const FORCED_START: u64 = 1;

/// A syscall in progress on one thread, kept between `sys_enter` and `sys_exit`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct InFlight {
    /// `bpf_ktime_get_ns` at entry, or `UNTIMED_START`.
    pub start_ns: u64,
    /// Syscall number.
    pub nr: u32,
    /// Thread group of the thread, so a trace can place a syscall still in flight at the end.
    pub tgid: u32,
    /// `bpf_ktime_get_ns` when the thread was first switched out inside this syscall (0: it
    /// was not), taken whether or not the call is timed (see `SyscallStat::switched_ns`).
    pub switched_ns: u64,
}

/// The syscall the traced thread running on a CPU is in (start 0: none), one slot per CPU. The
/// syscall hot path needs no hash map this way; a thread switched out inside a syscall is
/// parked in the `IN_FLIGHT` hash map.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct OnCpu {
    pub start_ns: u64,
    pub tid: u32,
    pub nr: u32,
    pub tgid: u32,
    /// This CPU's random state, which picks the syscalls that are timed.
    pub rng: u32,
    /// Address of the thread's saved user registers, where the hook sees them (raw
    /// tracepoints; else 0). It identifies the thread at its return without a helper call.
    pub regs: u64,
    /// The syscall path's counters on this CPU, here rather than in `COUNTERS` so that the hot
    /// path looks up one map value: entries, returns (whose entry was seen), and the first and
    /// last timed syscall event (`bpf_ktime_get_ns`; 0: none).
    pub entries: u64,
    pub returns: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// The measured process's totals on this CPU (following only; `tgid` 0: none yet).
    pub target: ProcStat,
}

impl OnCpu {
    /// The in-flight record of this slot.
    #[inline(always)]
    #[expect(
        clippy::inline_always,
        reason = "the eBPF programs' syscall hot path: a BPF-to-BPF call would cost more than the copy"
    )]
    #[must_use]
    pub fn entry(&self) -> InFlight {
        InFlight {
            start_ns: self.start_ns,
            nr: self.nr,
            tgid: self.tgid,
            switched_ns: 0,
        }
    }
}

/// Named slots of the `COUNTERS` array. The numbers are part of the contract; append only.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// User-to-kernel entries through the syscall path (`sys_enter`). Counted in `OnCpu`; the
    /// slot stays for older readers.
    SyscallEntries = 0,
    /// Kernel-to-user returns from a syscall whose entry was seen (`sys_exit`). Counted in
    /// `OnCpu`, like the two timestamps below.
    SyscallReturns = 1,
    /// Returns whose entry was not seen, for whatever reason (the slots from
    /// `ReturnsBeforeStart` on say which).
    UnmatchedReturns = 2,
    /// Scheduler switches away from a traced task that had blocked (it slept).
    VoluntarySwitches = 3,
    /// Scheduler switches away from a traced task that was still runnable (preempted).
    InvoluntarySwitches = 4,
    /// Earliest `bpf_ktime_get_ns` of a traced event on this CPU (0: none yet).
    FirstEventNs = 5,
    /// Latest `bpf_ktime_get_ns` of a traced event on this CPU.
    LastEventNs = 6,
    /// Syscalls whose entry could not be kept because the in-flight map was full: their return
    /// goes unmatched (and is counted as refused) and their time is missing.
    InFlightLost = 7,
    /// Page faults taken in user mode by a traced task (each one a user-to-kernel entry).
    PageFaultsUser = 8,
    /// Page faults taken in kernel mode while serving a traced task (e.g. copying from an
    /// mmap'd file that is not mapped in yet).
    PageFaultsKernel = 9,
    /// Perf samples of a traced task taken in user mode (no kernel stack).
    SamplesUser = 10,
    /// Perf samples of a traced task taken in kernel mode (a kernel stack was recorded).
    SamplesKernel = 11,
    /// Kernel-mode samples whose stack could not be stored (stack map full or busy).
    SamplesLost = 12,
    /// Bytes `filemap_read` returned: page cache copied to the reader's `iov_iter`.
    FilemapReadBytes = 13,
    /// Bytes `_copy_to_iter` copied (kernel memory to an `iov_iter`, usually user memory).
    CopyToIterBytes = 14,
    /// Bytes `_copy_from_iter` copied (an `iov_iter`, usually user memory, into the kernel).
    CopyFromIterBytes = 15,
    /// Buffers mapped for device DMA through the DMA API, by any driver (device-wide).
    DmaMaps = 16,
    /// Bytes a traced task's socket sends accepted (`tcp_sendmsg` / `sock_sendmsg` return).
    SockSendBytes = 17,
    /// Forks (processes and threads) made by traced processes.
    Forks = 18,
    /// Trace events written to the ring buffer (trace mode).
    TraceEvents = 19,
    /// Trace events the ring buffer had no room for (trace mode), per CPU.
    TraceLost = 20,
    /// Payload bytes that left a traced process's TCP sockets for a device in the packets'
    /// linear data (`net:net_dev_start_xmit`): the kernel copied them there, segmenting or
    /// linearising for a device without scatter-gather.
    XmitLinearBytes = 21,
    /// Payload bytes that left a traced process's TCP sockets as page fragments: passed to the
    /// device by reference.
    XmitPagedBytes = 22,
    /// Packets counted in the two slots above.
    XmitPackets = 23,
    /// Bytes the kernel copied into the page cache for a traced task (`ext4:*write_end`).
    PageCacheWriteBytes = 24,
    /// Bytes copied from socket buffers to a traced task's memory
    /// (`skb:skb_copy_datagram_iovec`).
    SockRecvBytes = 25,
    /// The same for the built-in receiver (zcprof's own process), kept apart from the sender.
    ReceiverRecvBytes = 26,
    /// Packets of traced sockets that went out while no traced task was running (from ACK
    /// processing in softirq or another task's context).
    XmitOtherContext = 27,
    /// Returns of syscalls that were in progress when measuring began (their entry came before
    /// `sys_enter` was attached): the first unmatched return of each thread that was not stopped
    /// then. Not counted as calls.
    ReturnsBeforeStart = 28,
    /// A new thread's or process's first return to user mode, from the fork or clone its parent
    /// made (it entered no syscall itself). Not counted as calls.
    NewTaskReturns = 29,
    /// Every other return without an entry: syscalls refused before entry (a seccomp filter
    /// returning an errno runs before `sys_enter` fires). Counted as calls and errors of their
    /// syscall, entries and returns, as strace counts them.
    RefusedSyscalls = 30,
    /// Events of followed processes missing from the per-process totals (`PROCS` full).
    ProcessesLost = 31,
    /// Children of traced processes that could not be followed (`TRACED` full, for process ids
    /// beyond the bitmap).
    FollowLost = 32,
    /// Block requests and packets not counted per device (a device table full).
    DevicesLost = 33,
    /// Sockets of traced processes whose owner could not be kept (`SOCKS` full): their packets
    /// are not attributed.
    SocketsLost = 34,
    /// Bytes a device moved straight between a traced task's user buffer and the disk
    /// (`O_DIRECT`, `iomap_dio_complete`): DMA, not a CPU copy.
    DirectIoBytes = 35,
    /// Nanoseconds of CPU time of the traced threads, summed over their cpu-clock samples'
    /// periods (each sample stands for the CPU time since the one before it).
    SampledCpuNs = 36,
    /// Ids of followed tasks taken out of the followed set when their task was freed.
    PidsForgotten = 37,
    /// Distinct processes whose totals went to the `OTHER_PROCESSES` row because the
    /// per-process table was full (counted once each, up to the memory of `FOLDED`).
    ProcessesFolded = 38,
    /// Bytes of block I/O a traced task queued itself (`block_bio_queue`, in the submitting
    /// task): its own disk reads and writes, apart from the device-wide requests of `DISK_IO`.
    ProcessDiskReadBytes = 39,
    ProcessDiskWriteBytes = 40,
}

impl Counter {
    /// Every slot, for readers that want them all.
    pub const ALL: [Counter; 41] = [
        Counter::SyscallEntries,
        Counter::SyscallReturns,
        Counter::UnmatchedReturns,
        Counter::VoluntarySwitches,
        Counter::InvoluntarySwitches,
        Counter::FirstEventNs,
        Counter::LastEventNs,
        Counter::InFlightLost,
        Counter::PageFaultsUser,
        Counter::PageFaultsKernel,
        Counter::SamplesUser,
        Counter::SamplesKernel,
        Counter::SamplesLost,
        Counter::FilemapReadBytes,
        Counter::CopyToIterBytes,
        Counter::CopyFromIterBytes,
        Counter::DmaMaps,
        Counter::SockSendBytes,
        Counter::Forks,
        Counter::TraceEvents,
        Counter::TraceLost,
        Counter::XmitLinearBytes,
        Counter::XmitPagedBytes,
        Counter::XmitPackets,
        Counter::PageCacheWriteBytes,
        Counter::SockRecvBytes,
        Counter::ReceiverRecvBytes,
        Counter::XmitOtherContext,
        Counter::ReturnsBeforeStart,
        Counter::NewTaskReturns,
        Counter::RefusedSyscalls,
        Counter::ProcessesLost,
        Counter::FollowLost,
        Counter::DevicesLost,
        Counter::SocketsLost,
        Counter::DirectIoBytes,
        Counter::SampledCpuNs,
        Counter::PidsForgotten,
        Counter::ProcessesFolded,
        Counter::ProcessDiskReadBytes,
        Counter::ProcessDiskWriteBytes,
    ];
}

/// Block I/O completed on one device (kernel `dev_t` encoding: major << 20 | minor).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct DiskIo {
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Discards, flushes and anything else that is neither read nor write.
    pub other_bytes: u64,
    pub requests: u64,
}

/// Bytes the hooked copy routines returned while a traced thread was inside one syscall
/// (indexed by that syscall's number), so user space can tell a `read()` copy from a `sendfile()`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct HookedBytes {
    pub filemap_read: u64,
    pub copy_to_iter: u64,
    pub copy_from_iter: u64,
    pub sock_send: u64,
    /// Payload that left the process's sockets in linear packet data (copied by segmentation
    /// or linearisation), by the syscall that last sent on the socket.
    pub xmit_linear: u64,
    /// Payload that left in page fragments (by reference), by the same syscall.
    pub xmit_paged: u64,
    /// Bytes copied into the page cache (file system `write_end` tracepoints).
    pub page_cache_write: u64,
    /// Bytes copied from socket buffers to user memory.
    pub sock_recv: u64,
    /// Bytes moved by `O_DIRECT` between the device and user memory (no CPU copy).
    pub direct_io: u64,
}

/// The traced process that last sent on a socket, and in which syscall: packets of that socket
/// are attributed to it wherever they leave (ACK-clocked sends run in softirq context).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct SockOwner {
    pub tgid: u32,
    /// Syscall number of the last send (`NO_SYSCALL` when unknown).
    pub nr: u32,
}

/// Depth of stored kernel stacks (`PERF_MAX_STACK_DEPTH`).
pub const STACK_DEPTH: usize = 127;

/// Length of the device-name key of `NET_XMIT` (IFNAMSIZ).
pub const IFNAMSIZ: usize = 16;

/// Packets a traced task handed to one network device.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct NetXmit {
    pub bytes: u64,
    pub packets: u64,
}

/// What a trace event records (the `kind` of a [`TraceEvent`]). Append only.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A syscall returned: `arg` is its number, `start_ns` its entry, `value` its return value.
    Syscall = 1,
    /// The scheduler switched the thread out: `arg` is 1 when it blocked, 0 when preempted.
    Switch = 2,
    /// A page fault: `arg` is 1 in user mode, 0 in kernel mode.
    Fault = 3,
    /// A hooked copy routine returned: `arg` is its `Counter` slot, `aux` the syscall the
    /// thread was in (`NO_SYSCALL` when none), `value` the bytes.
    Copy = 4,
    /// A block request was issued (device-wide): `arg` is the `dev_t`, `aux` the rwbs letter,
    /// `value` the bytes.
    Disk = 5,
    /// A packet was handed to the network device named in `name`: `value` is its length.
    Net = 6,
    /// A buffer was mapped for device DMA (device-wide).
    Dma = 7,
    /// The process forked: `value` is the child's id.
    Fork = 8,
    /// A thread ended inside a syscall that never returns (`exit`, `exit_group`): `start_ns` and
    /// `ts_ns` are its entry, `arg` its number.
    Exit = 9,
    /// A traced task queued block I/O itself (`block_bio_queue`): `arg` is the `dev_t`, `aux`
    /// the rwbs letter, `value` the bytes.
    Bio = 10,
}

impl EventKind {
    /// The kind of a raw `kind` field.
    #[must_use]
    pub fn from_u32(kind: u32) -> Option<EventKind> {
        Some(match kind {
            1 => EventKind::Syscall,
            2 => EventKind::Switch,
            3 => EventKind::Fault,
            4 => EventKind::Copy,
            5 => EventKind::Disk,
            6 => EventKind::Net,
            7 => EventKind::Dma,
            8 => EventKind::Fork,
            9 => EventKind::Exit,
            10 => EventKind::Bio,
            _ => return None,
        })
    }
}

/// What the descriptor of a read- or write-type syscall (`read`, `pread64`, `readv`, `preadv`,
/// `preadv2` and their write twins) is, classified in the kernel at the syscall's return from
/// its file's inode: the kind decides whether its bytes were a copy, and of what. Append only.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FdKind {
    /// Not classified (the saved registers or the kernel's struct offsets were unknown).
    Unknown = 0,
    /// A regular file of a file system with a page cache.
    Regular = 1,
    /// A pipe or FIFO.
    Pipe = 2,
    Socket = 3,
    /// `/dev/null` (character device 1:3): writes are discarded, nothing is copied.
    DevNull = 4,
    /// `/dev/zero` (1:5): reads clear the user buffer, no payload is copied.
    DevZero = 5,
    /// Any other character device (`/dev/urandom`, a tty, ...).
    CharDevice = 6,
    /// A file whose contents the kernel generates when read (procfs, sysfs, tracefs, ...).
    Generated = 7,
    /// Anything else (a block device, an eventfd, ...).
    Other = 8,
}

impl FdKind {
    /// Every kind, by its number.
    pub const ALL: [FdKind; 9] = [
        FdKind::Unknown,
        FdKind::Regular,
        FdKind::Pipe,
        FdKind::Socket,
        FdKind::DevNull,
        FdKind::DevZero,
        FdKind::CharDevice,
        FdKind::Generated,
        FdKind::Other,
    ];

    /// The kind of a raw number (`Unknown` for a number it does not know).
    #[must_use]
    pub fn from_u32(n: u32) -> FdKind {
        FdKind::ALL
            .get(n as usize)
            .copied()
            .unwrap_or(FdKind::Unknown)
    }
}

/// Slots of the `FD_BYTES` array: bytes by descriptor kind and direction, at
/// `kind * 3 + direction` (`RW_READ - 1`: into user memory, `RW_WRITE - 1`: out of it,
/// `RW_SPLICE - 1`: spliced into that kind of descriptor).
pub const FD_BYTES_SLOTS: u32 = 27;
/// Values of the `RW_SYSCALLS` array, by syscall number: 0 for the others. A read or write
/// classifies its first argument; a splice its output (the third).
pub const RW_READ: u8 = 1;
pub const RW_WRITE: u8 = 2;
pub const RW_SPLICE: u8 = 3;

/// `aux` of a copy event made outside any syscall.
pub const NO_SYSCALL: u32 = u32::MAX;

/// Slots of the `CONTROL` array, written by user space: 1 once `sys_enter` is attached (returns
/// without an entry before that are of syscalls begun before measuring), 1 once detaching
/// began (returns without an entry after that are not classified).
pub const CONTROL_STARTED: u32 = 0;
pub const CONTROL_STOPPING: u32 = 1;
pub const CONTROL_SLOTS: u32 = 2;

/// Default size of the trace ring buffer, in bytes (a power of two).
pub const DEFAULT_RING_BYTES: u32 = 16 << 20;

/// One record of the trace ring buffer. 64 bytes, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// `bpf_ktime_get_ns` of the event (a syscall's return).
    pub ts_ns: u64,
    /// A syscall's entry (0 for other kinds).
    pub start_ns: u64,
    pub value: i64,
    pub tgid: u32,
    pub tid: u32,
    /// An [`EventKind`].
    pub kind: u32,
    pub arg: u32,
    pub aux: u32,
    pub cpu: u32,
    /// The task's command name (switch and fork events) or the network device's name.
    pub name: [u8; IFNAMSIZ],
}

/// Per-process totals of a followed process tree (exec and attach).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub syscalls: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub page_faults_user: u64,
    pub page_faults_kernel: u64,
    /// Bytes the hooked copy routines moved for this process (all directions).
    pub copied_bytes: u64,
    /// Bytes this process's socket sends accepted.
    pub sock_send_bytes: u64,
    /// The command name when the entry was made, or after its last successful exec.
    pub comm: [u8; IFNAMSIZ],
    /// The process, in the measured process's own slot (`TARGET_PROC`); 0 in `PROCS`, whose
    /// key is the process.
    pub tgid: u32,
    pub pad: u32,
    /// When `comm` was taken (`bpf_ktime_get_ns`). Each CPU keeps its own copy of an entry,
    /// named when it was made there; the latest name is the process's current one.
    pub named_ns: u64,
}

/// Buffers the DMA API mapped for one device towards it (`DMA_TO_DEVICE`): the bytes the device
/// will read from memory (a NIC's transmits), from the `dma:dma_map_page`/`dma_map_phys` events;
/// `dma_map_sg` adds maps without bytes. Device-wide, by the device's name (a PCI address).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct DmaMapped {
    pub bytes: u64,
    pub maps: u64,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data structs with no padding and every bit pattern valid.
    unsafe impl aya::Pod for super::SyscallStat {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::InFlight {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DiskIo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::NetXmit {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DmaMapped {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::HookedBytes {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TraceEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ProcStat {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::OnCpu {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockOwner {}
}
