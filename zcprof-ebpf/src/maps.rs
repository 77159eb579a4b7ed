//! Every map zcprof's programs write. User space reads them once, after the measured run (and
//! drains the trace ring buffer while it runs).
use aya_ebpf::{
    macros::map,
    maps::{
        Array, HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArray, PerCpuHashMap, RingBuf,
        StackTrace,
    },
};
use zcprof_common::{
    CONTROL_SLOTS, COUNTER_SLOTS, DiskIo, DmaMapped, FD_BYTES_SLOTS, HookedBytes, IFNAMSIZ,
    InFlight, MAX_SYSCALL_NR, NetXmit, OnCpu, ProcStat, SockOwner, SyscallStat,
    serve::{
        COMM_LEN, SERVE_COMM_ENTRIES, SERVE_LOST_SLOTS, SERVE_PROCESS_ENTRIES, ServeOwner,
        ServeStat,
    },
};

/// Per-syscall totals, indexed by syscall number.
#[map]
pub static SYSCALLS: PerCpuArray<SyscallStat> = PerCpuArray::with_max_entries(MAX_SYSCALL_NR, 0);

/// Scalar counters, indexed by `zcprof_common::Counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Syscalls in progress of threads that were switched out inside them, by thread id. An entry
/// is deleted when its syscall returns and when its thread ends, so the map holds only threads
/// blocked (or preempted) in a syscall right now; an insert that finds it full is counted
/// (`InFlightLost`). Not an LRU: that would evict a syscall blocked since early on without a
/// trace once enough other threads had lived.
#[map]
pub static IN_FLIGHT: HashMap<u32, InFlight> = HashMap::with_max_entries(16384, 0);

/// Threads of the measured process that were not stopped when measuring began (tid -> 1), filled
/// by the loader: each may still return from a syscall it entered before `sys_enter` was
/// attached. Its first return without an entry is that one; the mark goes then, or when the
/// thread ends. The loader sizes it to the threads.
#[map]
pub static BEFORE_START: HashMap<u32, u32> = HashMap::with_max_entries(1, 0);

/// Written by user space, see `zcprof_common::CONTROL_STARTED`.
#[map]
pub static CONTROL: Array<u32> = Array::with_max_entries(CONTROL_SLOTS, 0);

/// Block I/O completed while measuring, by device. Device-wide: completions run in interrupt or
/// kworker context, not in the task that caused them.
#[map]
pub static DISK_IO: PerCpuHashMap<u32, DiskIo> = PerCpuHashMap::with_max_entries(64, 0);

/// Packets the traced task transmitted, by network device name.
#[map]
pub static NET_XMIT: PerCpuHashMap<[u8; IFNAMSIZ], NetXmit> =
    PerCpuHashMap::with_max_entries(64, 0);

/// Bytes the DMA API mapped towards each device, by the device's name (`dma:*` events).
#[map]
pub static DMA_TO_DEVICE: PerCpuHashMap<[u8; IFNAMSIZ], DmaMapped> =
    PerCpuHashMap::with_max_entries(64, 0);

/// Kernel stacks of sampled traced tasks.
#[map]
pub static STACKS: StackTrace = StackTrace::with_max_entries(8192, 0);

/// Kernel-mode samples of traced tasks, by stack id in `STACKS`.
#[map]
pub static STACK_SAMPLES: PerCpuHashMap<u32, u64> = PerCpuHashMap::with_max_entries(8192, 0);

/// Hooked copy bytes by the syscall the traced thread was in.
#[map]
pub static HOOKED_BY_SYSCALL: PerCpuArray<HookedBytes> =
    PerCpuArray::with_max_entries(MAX_SYSCALL_NR, 0);

/// Descendants of the target forked while measured (tgid -> 1), when following is on. Asked only
/// about process ids beyond `TRACED_BITS` (pid_max raised while measuring).
#[map]
pub static TRACED: HashMap<u32, u32> = HashMap::with_max_entries(8192, 0);

/// The same set as a bitmap indexed by process id, one bit each; the loader sizes it to the
/// kernel's pid_max. Every task on the machine asks the filter on every syscall, and an array
/// lookup is inlined by the verifier where a hash lookup is a function call (about 40 ns here).
#[map]
pub static TRACED_BITS: Array<u64> = Array::with_max_entries(512, 0);

/// Trace events (trace mode only). The loader sizes it: one page when tracing is off.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4096, 0);

/// Per-process totals by tgid, kept only while following a process tree (exec, attach), for
/// every process but the measured one (whose totals are in its CPU's `ON_CPU` slot: it makes
/// most of the syscalls, and the slot costs it no hash lookup).
#[map]
pub static PROCS: PerCpuHashMap<u32, ProcStat> = PerCpuHashMap::with_max_entries(4096, 0);

/// Processes folded into the `OTHER_PROCESSES` row, so each is counted once. An LRU: beyond its
/// size a process folded long ago may be counted again, and the memory stays bounded.
#[map]
pub static FOLDED: LruHashMap<u32, u8> = LruHashMap::with_max_entries(65536, 0);

/// One slot per CPU, see `OnCpu`.
#[map]
pub static ON_CPU: PerCpuArray<OnCpu> = PerCpuArray::with_max_entries(1, 0);

/// Sockets a traced process sent on (`struct sock` address -> owner), so that its packets are
/// recognised when they leave from softirq or another task's context. An entry goes when its
/// socket closes (`inet_sock_set_state` to TCP_CLOSE), so a long attach that sees many short
/// connections does not fill it, and a new socket at a freed address inherits no owner; an
/// insert that finds it full is counted (`SocketsLost`). Not an LRU, which evicts silently.
#[map]
pub static SOCKS: HashMap<u64, SockOwner> = HashMap::with_max_entries(16384, 0);

/// `zcprof serve`: totals by process name (summed over CPUs by user space). An LRU, so a host
/// that runs more names than it holds forgets the least recently active ones.
#[map]
pub static SERVE_STATS: LruPerCpuHashMap<[u8; COMM_LEN], ServeStat> =
    LruPerCpuHashMap::with_max_entries(SERVE_COMM_ENTRIES, 0);

/// `zcprof top`: totals by process and task name (summed over CPUs by user space), in place of
/// `SERVE_STATS` when `SERVE_BY_PROCESS` is set; user space sizes the unused one to one entry.
#[map]
pub static SERVE_PROCS: LruPerCpuHashMap<ServeOwner, ServeStat> =
    LruPerCpuHashMap::with_max_entries(SERVE_PROCESS_ENTRIES, 0);

/// `zcprof serve --comm`: the names counted (name -> 1), filled by user space.
#[map]
pub static SERVE_COMMS: HashMap<[u8; COMM_LEN], u8> = HashMap::with_max_entries(64, 0);

/// `zcprof serve`: how the socket takes the current send of a thread (tid -> copied or by
/// reference), from TCP's packet building until the send returns.
#[map]
pub static SERVE_HOW: LruHashMap<u32, u8> = LruHashMap::with_max_entries(16384, 0);

/// `zcprof serve` and `top`: the process and name that last sent on a TCP socket (`struct sock`
/// address -> owner), so its packets are counted wherever they leave; an entry goes when its
/// socket closes.
#[map]
pub static SERVE_SOCKS: HashMap<u64, ServeOwner> = HashMap::with_max_entries(65536, 0);

/// `zcprof serve`: the physical network devices by name (name -> 1), filled by user space.
#[map]
pub static SERVE_NICS: HashMap<[u8; IFNAMSIZ], u8> = HashMap::with_max_entries(256, 0);

/// `zcprof serve`: events not counted, per CPU, by `zcprof_common::serve::ServeLost`.
#[map]
pub static SERVE_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(SERVE_LOST_SLOTS, 0);

/// Which syscalls move bytes through a descriptor into or out of user memory (syscall number ->
/// `RW_READ`, `RW_WRITE`, or 0), filled by the loader.
#[map]
pub static RW_SYSCALLS: Array<u8> = Array::with_max_entries(MAX_SYSCALL_NR, 0);

/// Bytes those syscalls returned, by the kind of their descriptor and direction (see
/// `zcprof_common::FD_BYTES_SLOTS`).
#[map]
pub static FD_BYTES: PerCpuArray<u64> = PerCpuArray::with_max_entries(FD_BYTES_SLOTS, 0);
