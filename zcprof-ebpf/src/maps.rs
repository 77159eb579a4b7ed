//! Every map zcprof's programs write. User space reads them once, after the measured run.
use aya_ebpf::{
    macros::map,
    maps::{LruHashMap, PerCpuArray},
};
use zcprof_common::{COUNTER_SLOTS, InFlight, MAX_SYSCALL_NR, SyscallStat};

/// Per-syscall totals, indexed by syscall number.
#[map]
pub static SYSCALLS: PerCpuArray<SyscallStat> = PerCpuArray::with_max_entries(MAX_SYSCALL_NR, 0);

/// Scalar counters, indexed by `zcprof_common::Counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Syscalls in progress, by thread id. LRU, so threads that die inside a syscall (exit_group)
/// cannot fill it up during a long attach.
#[map]
pub static IN_FLIGHT: LruHashMap<u32, InFlight> = LruHashMap::with_max_entries(16384, 0);
