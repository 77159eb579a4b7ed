//! The contract between zcprof's eBPF programs and its loader: map layouts and counter slots.
//!
//! Everything here is `#[repr(C)]` because the kernel side writes these bytes and user space
//! reads them back through maps; both sides must agree on the layout to the byte.
#![no_std]

/// Syscall numbers at or above this are not kept per syscall (x86-64 ends near 470).
pub const MAX_SYSCALL_NR: u32 = 512;

/// Slots of the per-CPU `COUNTERS` array.
pub const COUNTER_SLOTS: u32 = 32;

/// Per-syscall totals of the traced tasks, one entry per syscall number and CPU.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct SyscallStat {
    /// Entries into the syscall.
    pub count: u64,
    /// Returns with a negative value (an errno).
    pub errors: u64,
    /// Nanoseconds from entry to return, summed over the returns seen.
    pub total_ns: u64,
    /// Sum of non-negative return values. Only meaningful for syscalls that return byte
    /// counts; user space decides which those are, so the kernel side stays arch-neutral.
    pub ret_sum: u64,
}

/// A syscall in progress on one thread, kept between `sys_enter` and `sys_exit`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct InFlight {
    /// `bpf_ktime_get_ns` at entry.
    pub start_ns: u64,
    /// Syscall number.
    pub nr: u32,
    /// Keeps the struct free of implicit padding (the verifier dislikes uninitialised bytes).
    pub pad: u32,
}

/// Named slots of the `COUNTERS` array. The numbers are part of the contract; append only.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// User-to-kernel entries through the syscall path (`sys_enter`).
    SyscallEntries = 0,
    /// Kernel-to-user returns from a syscall whose entry was seen (`sys_exit`).
    SyscallReturns = 1,
    /// Returns whose entry was not seen: the syscall was in flight when probing began.
    UnmatchedReturns = 2,
    /// Scheduler switches away from a traced task that had blocked (it slept).
    VoluntarySwitches = 3,
    /// Scheduler switches away from a traced task that was still runnable (preempted).
    InvoluntarySwitches = 4,
    /// Earliest `bpf_ktime_get_ns` of a traced event on this CPU (0: none yet).
    FirstEventNs = 5,
    /// Latest `bpf_ktime_get_ns` of a traced event on this CPU.
    LastEventNs = 6,
    /// Entries that could not be remembered because the in-flight map refused the insert.
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
}

impl Counter {
    /// Every slot, for readers that want them all.
    pub const ALL: [Counter; 19] = [
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
    unsafe impl aya::Pod for super::HookedBytes {}
}
