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
}

impl Counter {
    /// Every slot, for readers that want them all.
    pub const ALL: [Counter; 8] = [
        Counter::SyscallEntries,
        Counter::SyscallReturns,
        Counter::UnmatchedReturns,
        Counter::VoluntarySwitches,
        Counter::InvoluntarySwitches,
        Counter::FirstEventNs,
        Counter::LastEventNs,
        Counter::InFlightLost,
    ];
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data structs with no padding and every bit pattern valid.
    unsafe impl aya::Pod for super::SyscallStat {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::InFlight {}
}
