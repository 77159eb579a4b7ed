//! Collection: reads the per-CPU maps once, after the measured run, and folds the CPUs.
mod kallsyms;
pub mod serve;
mod task_clock;

pub use kallsyms::Kallsyms;
use std::collections::BTreeMap;
pub use task_clock::TaskClock;

use aya::maps::{PerCpuArray, PerCpuHashMap};
use zcprof_common::{
    Counter, DiskIo, DmaMapped, HookedBytes, IFNAMSIZ, MAX_SYSCALL_NR, NetXmit, OnCpu, ProcStat,
    SyscallStat,
};

use crate::probes::{MapSource, catalog::maps};

/// Errors while reading maps.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A map the object must have is missing or of the wrong type.
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
}

/// Everything the kernel side counted, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Per syscall number, only those that were entered or returned.
    pub syscalls: BTreeMap<u32, SyscallStat>,
    /// Entries and returns through the syscall path, syscalls refused before entry included.
    pub syscall_entries: u64,
    pub syscall_returns: u64,
    /// Returns whose entry was not seen, of any kind (the three below, and those after
    /// detaching began).
    pub unmatched_returns: u64,
    /// Returns of syscalls that were in progress when measuring began (not counted as calls).
    pub returns_before_start: u64,
    /// New threads' and processes' first returns, from the fork or clone their parent made (not
    /// counted as calls).
    pub new_task_returns: u64,
    /// Syscalls refused before entry (a seccomp filter's errno): counted as calls and errors of
    /// their syscall, entries and returns.
    pub refused_syscalls: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    /// Syscall entries that the in-flight table had no room for.
    pub in_flight_lost: u64,
    /// Events of followed processes missing from the per-process totals (table full).
    pub processes_lost: u64,
    /// Children of traced processes that could not be followed (table full).
    pub follow_lost: u64,
    /// Block requests and packets not counted per device (table full).
    pub devices_lost: u64,
    /// Sockets of traced processes whose packets could not be attributed (table full).
    pub sockets_lost: u64,
    pub page_faults_user: u64,
    pub page_faults_kernel: u64,
    pub samples_user: u64,
    /// CPU time of the measured threads: the sum of their cpu-clock samples' periods.
    pub sampled_cpu_ns: u64,
    /// CPU time of the measured process tree from task-clock counters, or why there is none
    /// (filled in by the measuring layer, which owns the counters).
    pub task_clock_ns: Option<Result<u64, String>>,
    /// Followed ids taken out of the set when their task was freed.
    pub pids_forgotten: u64,
    /// Distinct processes summed in the others' row of the per-process table.
    pub processes_folded: u64,
    pub samples_kernel: u64,
    pub samples_lost: u64,
    /// Runs of each program the kernel skipped because a run of it was still in progress on
    /// that CPU (preempted), non-zero only.
    pub program_misses: BTreeMap<String, u64>,
    /// Kernel-mode samples by stack, symbolized leaf first.
    pub kernel_stacks: Vec<(Vec<String>, u64)>,
    pub filemap_read_bytes: u64,
    pub copy_to_iter_bytes: u64,
    pub copy_from_iter_bytes: u64,
    /// DMA API mappings by any driver while measuring.
    pub dma_maps: u64,
    /// Bytes the traced process's socket sends accepted.
    pub sock_send_bytes: u64,
    /// Forks made by traced processes.
    pub forks: u64,
    /// Payload of the traced process's TCP sockets handed to devices in linear packet data
    /// (copied by segmentation or linearisation) and in page fragments (by reference), the
    /// packets, and those sent while no traced task ran (softirq, another task).
    pub xmit_linear_bytes: u64,
    pub xmit_paged_bytes: u64,
    pub xmit_packets: u64,
    pub xmit_other_context: u64,
    /// Bytes a file system copied into the page cache for the traced process.
    pub page_cache_write_bytes: u64,
    /// Bytes copied from socket buffers into the traced process's memory.
    pub sock_recv_bytes: u64,
    /// The same for the built-in receiver (zcprof's own process).
    pub receiver_recv_bytes: u64,
    /// Bytes devices moved straight to or from the traced process's buffers (`O_DIRECT`).
    pub direct_io_bytes: u64,
    /// Hooked copy bytes by the syscall the thread was in (syscall number), non-zero only.
    pub hooked_by_syscall: BTreeMap<u32, HookedBytes>,
    /// Bytes read-type (`[0]`) and write-type (`[1]`) syscalls moved through a descriptor, and
    /// splices into one (`[2]`), by its kind (`zcprof_common::FdKind` as index).
    pub fd_bytes: [[u64; 3]; 9],
    /// Block I/O the traced processes queued themselves (`block_bio_queue`), read and written.
    pub process_disk_read_bytes: u64,
    pub process_disk_write_bytes: u64,
    /// Block I/O completed while measuring, by kernel `dev_t` (major << 20 | minor).
    pub disk_io: BTreeMap<u32, DiskIo>,
    /// Bytes the traced process handed to each network device, by name.
    pub net_xmit: BTreeMap<String, NetXmit>,
    /// Bytes and maps the DMA API mapped towards each device while measuring, by the device's
    /// name (a PCI address): device-wide.
    pub dma_to_device: BTreeMap<String, DmaMapped>,
    /// Kernel clock of the first and last traced event (0 when none).
    pub first_event_ns: u64,
    pub last_event_ns: u64,
    /// Trace events recorded (trace mode).
    pub trace_events: u64,
    /// Trace events lost for want of ring-buffer room, per CPU (trace mode).
    pub trace_lost: Vec<u64>,
    /// Trace events written but not kept: they came after `--trace-limit` (user side).
    pub trace_over_limit: u64,
    /// Per-process totals by tgid, when a process tree was followed.
    pub processes: BTreeMap<u32, Process>,
}

/// One process's totals while a process tree was followed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Process {
    /// Its command name (after its last exec).
    pub name: String,
    pub syscalls: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub page_faults_user: u64,
    pub page_faults_kernel: u64,
    /// Bytes the hooked copy routines moved for it.
    pub copied_bytes: u64,
    /// Bytes its socket sends accepted.
    pub sock_send_bytes: u64,
    /// When the kernel took `name` (its clock), to pick the latest of the CPUs' copies.
    #[serde(skip)]
    pub named_ns: u64,
}

impl Process {
    /// Adds one CPU's share of a process's totals.
    fn add(&mut self, s: &ProcStat) {
        self.syscalls += s.syscalls;
        self.voluntary_switches += s.voluntary_switches;
        self.involuntary_switches += s.involuntary_switches;
        self.page_faults_user += s.page_faults_user;
        self.page_faults_kernel += s.page_faults_kernel;
        self.copied_bytes += s.copied_bytes;
        self.sock_send_bytes += s.sock_send_bytes;
        // Each CPU's copy of the entry got the name current when it was made there; an exec
        // renames only one of them. The latest name is the process's current one.
        let name = c_name(&s.comm);
        if !name.is_empty() && (self.name.is_empty() || s.named_ns >= self.named_ns) {
            self.name = name;
            self.named_ns = s.named_ns;
        }
    }
}

/// Bytes by descriptor kind and direction, summed over the CPUs.
fn read_fd_bytes(ebpf: &dyn MapSource) -> Result<[[u64; 3]; 9], CollectError> {
    let err = |source| CollectError::Map {
        name: maps::FD_BYTES,
        source,
    };
    let array: PerCpuArray<_, u64> =
        PerCpuArray::try_from(map(ebpf, maps::FD_BYTES)?).map_err(err)?;
    let mut bytes = [[0; 3]; 9];
    for (kind, slot) in bytes.iter_mut().enumerate() {
        for (direction, value) in slot.iter_mut().enumerate() {
            let index = u32::try_from(kind * 3 + direction).unwrap_or(u32::MAX);
            *value = array.get(&index, 0).map_err(err)?.iter().sum();
        }
    }
    Ok(bytes)
}

/// The text of a NUL-padded kernel name.
#[must_use]
pub fn c_name(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// A map of the loaded object by name.
fn map<'a>(
    ebpf: &'a dyn MapSource,
    name: &'static str,
) -> Result<&'a aya::maps::Map, CollectError> {
    ebpf.get(name).ok_or(CollectError::Map {
        name,
        source: aya::maps::MapError::InvalidName { name: name.into() },
    })
}

/// Reads the sampled kernel stacks and symbolizes them (only when there are samples: loading
/// kallsyms costs tens of milliseconds).
fn read_stacks(ebpf: &dyn MapSource) -> Result<Vec<(Vec<String>, u64)>, CollectError> {
    // Kernel symbols do not change during a run: load them once (live views read often).
    static SYMBOLS: std::sync::OnceLock<Kallsyms> = std::sync::OnceLock::new();
    let err = |name| move |source| CollectError::Map { name, source };
    let samples: PerCpuHashMap<_, u32, u64> =
        PerCpuHashMap::try_from(map(ebpf, maps::STACK_SAMPLES)?)
            .map_err(err(maps::STACK_SAMPLES))?;
    let mut by_id = Vec::new();
    for entry in &samples {
        let (id, per_cpu) = entry.map_err(err(maps::STACK_SAMPLES))?;
        by_id.push((id, per_cpu.iter().sum::<u64>()));
    }
    if by_id.is_empty() {
        return Ok(Vec::new());
    }
    let stacks =
        aya::maps::StackTraceMap::try_from(map(ebpf, maps::STACKS)?).map_err(err(maps::STACKS))?;
    let symbols = SYMBOLS.get_or_init(Kallsyms::load);
    let mut out = Vec::new();
    for (id, count) in by_id {
        // A stack evicted by a hash collision still counts, as an unknown stack.
        let frames = stacks.get(&id, 0).map_or_else(
            |_| vec!["[stack lost]".to_owned()],
            |trace| {
                trace
                    .frames()
                    .iter()
                    .map(|f| {
                        symbols
                            .resolve(f.ip)
                            .map_or_else(|| format!("{:#x}", f.ip), str::to_owned)
                    })
                    .collect()
            },
        );
        out.push((frames, count));
    }
    Ok(out)
}

impl Counts {
    /// Reads the maps of a detached object, each folded over the CPUs.
    ///
    /// # Errors
    /// When a map is missing or unreadable.
    pub fn read(ebpf: &dyn MapSource) -> Result<Counts, CollectError> {
        let mut counts = Counts {
            program_misses: ebpf.program_misses(),
            ..Counts::default()
        };
        for read in [
            read_counters,
            read_syscalls,
            read_disk,
            read_net,
            read_processes,
            read_on_cpu,
            read_hooked,
        ] {
            read(ebpf, &mut counts)?;
        }
        counts.kernel_stacks = read_stacks(ebpf)?;
        counts.fd_bytes = read_fd_bytes(ebpf)?;
        Ok(counts)
    }

    /// Nanoseconds between the first and the last traced event.
    #[must_use]
    pub fn window_ns(&self) -> u64 {
        self.last_event_ns.saturating_sub(self.first_event_ns)
    }
}

/// The counters, one slot per `Counter`: sums over the CPUs (the first event's time is the
/// earliest, the last's the latest).
fn read_counters(ebpf: &dyn MapSource, counts: &mut Counts) -> Result<(), CollectError> {
    let map_err = |name| move |source| CollectError::Map { name, source };
    let counters: PerCpuArray<_, u64> =
        PerCpuArray::try_from(map(ebpf, maps::COUNTERS)?).map_err(map_err(maps::COUNTERS))?;
    for counter in Counter::ALL {
        let per_cpu = counters
            .get(&(counter as u32), 0)
            .map_err(map_err(maps::COUNTERS))?;
        let values = per_cpu.iter().copied();
        match counter {
            Counter::FirstEventNs => {
                counts.first_event_ns = values.filter(|&v| v != 0).min().unwrap_or(0);
            }
            Counter::LastEventNs => counts.last_event_ns = values.max().unwrap_or(0),
            Counter::SyscallEntries => counts.syscall_entries = values.sum(),
            Counter::SyscallReturns => counts.syscall_returns = values.sum(),
            Counter::UnmatchedReturns => counts.unmatched_returns = values.sum(),
            Counter::VoluntarySwitches => counts.voluntary_switches = values.sum(),
            Counter::InvoluntarySwitches => counts.involuntary_switches = values.sum(),
            Counter::InFlightLost => counts.in_flight_lost = values.sum(),
            Counter::PageFaultsUser => counts.page_faults_user = values.sum(),
            Counter::PageFaultsKernel => counts.page_faults_kernel = values.sum(),
            Counter::SamplesUser => counts.samples_user = values.sum(),
            Counter::SamplesKernel => counts.samples_kernel = values.sum(),
            Counter::SamplesLost => counts.samples_lost = values.sum(),
            Counter::FilemapReadBytes => counts.filemap_read_bytes = values.sum(),
            Counter::CopyToIterBytes => counts.copy_to_iter_bytes = values.sum(),
            Counter::CopyFromIterBytes => counts.copy_from_iter_bytes = values.sum(),
            Counter::DmaMaps => counts.dma_maps = values.sum(),
            Counter::SockSendBytes => counts.sock_send_bytes = values.sum(),
            Counter::Forks => counts.forks = values.sum(),
            Counter::TraceEvents => counts.trace_events = values.sum(),
            Counter::TraceLost => counts.trace_lost = values.collect(),
            Counter::XmitLinearBytes => counts.xmit_linear_bytes = values.sum(),
            Counter::XmitPagedBytes => counts.xmit_paged_bytes = values.sum(),
            Counter::XmitPackets => counts.xmit_packets = values.sum(),
            Counter::XmitOtherContext => counts.xmit_other_context = values.sum(),
            Counter::PageCacheWriteBytes => counts.page_cache_write_bytes = values.sum(),
            Counter::SockRecvBytes => counts.sock_recv_bytes = values.sum(),
            Counter::ReceiverRecvBytes => counts.receiver_recv_bytes = values.sum(),
            Counter::DirectIoBytes => counts.direct_io_bytes = values.sum(),
            Counter::SampledCpuNs => counts.sampled_cpu_ns = values.sum(),
            Counter::PidsForgotten => counts.pids_forgotten = values.sum(),
            Counter::ProcessesFolded => counts.processes_folded = values.sum(),
            Counter::ReturnsBeforeStart => counts.returns_before_start = values.sum(),
            Counter::NewTaskReturns => counts.new_task_returns = values.sum(),
            Counter::RefusedSyscalls => counts.refused_syscalls = values.sum(),
            Counter::ProcessesLost => counts.processes_lost = values.sum(),
            Counter::FollowLost => counts.follow_lost = values.sum(),
            Counter::DevicesLost => counts.devices_lost = values.sum(),
            Counter::SocketsLost => counts.sockets_lost = values.sum(),
            Counter::ProcessDiskReadBytes => counts.process_disk_read_bytes = values.sum(),
            Counter::ProcessDiskWriteBytes => counts.process_disk_write_bytes = values.sum(),
        }
    }
    Ok(())
}

/// Per-syscall statistics, by number.
fn read_syscalls(ebpf: &dyn MapSource, counts: &mut Counts) -> Result<(), CollectError> {
    let map_err = |name| move |source| CollectError::Map { name, source };
    let syscalls: PerCpuArray<_, SyscallStat> =
        PerCpuArray::try_from(map(ebpf, maps::SYSCALLS)?).map_err(map_err(maps::SYSCALLS))?;
    for nr in 0..MAX_SYSCALL_NR {
        let per_cpu = syscalls.get(&nr, 0).map_err(map_err(maps::SYSCALLS))?;
        let mut total = SyscallStat::default();
        for s in per_cpu.iter() {
            total.count += s.count;
            total.errors += s.errors;
            total.total_ns += s.total_ns;
            total.timed += s.timed;
            total.forced += s.forced;
            total.forced_ns += s.forced_ns;
            total.random_sq = total.random_sq.saturating_add(s.random_sq);
            total.switched += s.switched;
            total.switched_ns += s.switched_ns;
            total.ret_sum = total.ret_sum.wrapping_add(s.ret_sum);
        }
        if total != SyscallStat::default() {
            counts.syscalls.insert(nr, total);
        }
    }
    Ok(())
}

/// Block I/O by device.
fn read_disk(ebpf: &dyn MapSource, counts: &mut Counts) -> Result<(), CollectError> {
    let map_err = |name| move |source| CollectError::Map { name, source };
    let disk: PerCpuHashMap<_, u32, DiskIo> =
        PerCpuHashMap::try_from(map(ebpf, maps::DISK_IO)?).map_err(map_err(maps::DISK_IO))?;
    for entry in &disk {
        let (dev, per_cpu) = entry.map_err(map_err(maps::DISK_IO))?;
        let total = per_cpu.iter().fold(DiskIo::default(), |a, b| DiskIo {
            read_bytes: a.read_bytes + b.read_bytes,
            write_bytes: a.write_bytes + b.write_bytes,
            other_bytes: a.other_bytes + b.other_bytes,
            requests: a.requests + b.requests,
        });
        counts.disk_io.insert(dev, total);
    }
    Ok(())
}

/// Packets by network device, and what the DMA API mapped towards each device.
fn read_net(ebpf: &dyn MapSource, counts: &mut Counts) -> Result<(), CollectError> {
    let map_err = |name| move |source| CollectError::Map { name, source };
    let net: PerCpuHashMap<_, [u8; IFNAMSIZ], NetXmit> =
        PerCpuHashMap::try_from(map(ebpf, maps::NET_XMIT)?).map_err(map_err(maps::NET_XMIT))?;
    for entry in &net {
        let (name, per_cpu) = entry.map_err(map_err(maps::NET_XMIT))?;
        let total = per_cpu.iter().fold(NetXmit::default(), |a, b| NetXmit {
            bytes: a.bytes + b.bytes,
            packets: a.packets + b.packets,
        });
        counts.net_xmit.insert(c_name(&name), total);
    }
    let dma: PerCpuHashMap<_, [u8; IFNAMSIZ], DmaMapped> =
        PerCpuHashMap::try_from(map(ebpf, maps::DMA_TO_DEVICE)?)
            .map_err(map_err(maps::DMA_TO_DEVICE))?;
    for entry in &dma {
        let (name, per_cpu) = entry.map_err(map_err(maps::DMA_TO_DEVICE))?;
        let total = per_cpu.iter().fold(DmaMapped::default(), |a, b| DmaMapped {
            bytes: a.bytes + b.bytes,
            maps: a.maps + b.maps,
        });
        counts.dma_to_device.insert(c_name(&name), total);
    }
    Ok(())
}

/// Per-process totals of a followed tree.
fn read_processes(ebpf: &dyn MapSource, counts: &mut Counts) -> Result<(), CollectError> {
    let map_err = |name| move |source| CollectError::Map { name, source };
    let procs: PerCpuHashMap<_, u32, ProcStat> =
        PerCpuHashMap::try_from(map(ebpf, maps::PROCS)?).map_err(map_err(maps::PROCS))?;
    for entry in &procs {
        let (tgid, per_cpu) = entry.map_err(map_err(maps::PROCS))?;
        let p = counts.processes.entry(tgid).or_default();
        for s in per_cpu.iter() {
            p.add(s);
        }
    }
    Ok(())
}

/// Each CPU's slot: the syscall path's counters and the measured process's totals (marked
/// with its id where it ran).
fn read_on_cpu(ebpf: &dyn MapSource, counts: &mut Counts) -> Result<(), CollectError> {
    let map_err = |name| move |source| CollectError::Map { name, source };
    let slots: PerCpuArray<_, OnCpu> =
        PerCpuArray::try_from(map(ebpf, maps::ON_CPU)?).map_err(map_err(maps::ON_CPU))?;
    let per_cpu = slots.get(&0, 0).map_err(map_err(maps::ON_CPU))?;
    for on in per_cpu.iter() {
        counts.syscall_entries += on.entries;
        counts.syscall_returns += on.returns;
        if on.first_ns != 0 && (counts.first_event_ns == 0 || on.first_ns < counts.first_event_ns) {
            counts.first_event_ns = on.first_ns;
        }
        counts.last_event_ns = counts.last_event_ns.max(on.last_ns);
        if on.target.tgid != 0 {
            counts
                .processes
                .entry(on.target.tgid)
                .or_default()
                .add(&on.target);
        }
    }
    Ok(())
}

/// Hooked copy bytes by the syscall they happened in.
fn read_hooked(ebpf: &dyn MapSource, counts: &mut Counts) -> Result<(), CollectError> {
    let map_err = |name| move |source| CollectError::Map { name, source };
    let hooked: PerCpuArray<_, HookedBytes> =
        PerCpuArray::try_from(map(ebpf, maps::HOOKED_BY_SYSCALL)?)
            .map_err(map_err(maps::HOOKED_BY_SYSCALL))?;
    for nr in 0..MAX_SYSCALL_NR {
        let per_cpu = hooked
            .get(&nr, 0)
            .map_err(map_err(maps::HOOKED_BY_SYSCALL))?;
        let total = per_cpu
            .iter()
            .fold(HookedBytes::default(), |a, b| HookedBytes {
                filemap_read: a.filemap_read + b.filemap_read,
                copy_to_iter: a.copy_to_iter + b.copy_to_iter,
                copy_from_iter: a.copy_from_iter + b.copy_from_iter,
                sock_send: a.sock_send + b.sock_send,
                xmit_linear: a.xmit_linear + b.xmit_linear,
                xmit_paged: a.xmit_paged + b.xmit_paged,
                page_cache_write: a.page_cache_write + b.page_cache_write,
                sock_recv: a.sock_recv + b.sock_recv,
                direct_io: a.direct_io + b.direct_io,
            });
        if total != HookedBytes::default() {
            counts.hooked_by_syscall.insert(nr, total);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, named_ns: u64, syscalls: u64) -> ProcStat {
        let mut comm = [0u8; IFNAMSIZ];
        comm[..name.len()].copy_from_slice(name.as_bytes());
        ProcStat {
            comm,
            named_ns,
            syscalls,
            ..ProcStat::default()
        }
    }

    #[test]
    fn a_process_is_named_by_its_latest_name_on_any_cpu() {
        // CPU 0 saw the exec (renamed at 300); CPU 1 made its copy before it (at 100).
        for order in [[0, 1], [1, 0]] {
            let cpus = [named("sh", 300, 5), named("tokio-rt-worker", 100, 2)];
            let mut p = Process::default();
            for i in order {
                p.add(&cpus[i]);
            }
            assert_eq!((p.name.as_str(), p.syscalls), ("sh", 7));
        }
    }
}
