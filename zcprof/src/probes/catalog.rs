//! The one table of measurement points and their hook variants, by program name. The eBPF
//! crate defines a function of each name; a test checks the built object against this table.

pub use crate::caps::HookKind;

/// Something zcprof measures in the kernel.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Point {
    /// Syscall entry: a user-to-kernel mode switch.
    SysEnter,
    /// Syscall return: a kernel-to-user mode switch.
    SysExit,
    /// The scheduler switching a task off its CPU.
    SchedSwitch,
    /// A page fault in user mode.
    PageFaultUser,
    /// A page fault in kernel mode.
    PageFaultKernel,
    /// A block request completing on a device.
    BlockIssue,
    /// A packet handed to a network device.
    NetXmit,
    /// `filemap_read` returning: bytes copied from the page cache to the reader.
    FilemapRead,
    /// `_copy_to_iter` returning: bytes the CPU copied out of the kernel (usually to user memory).
    CopyToIter,
    /// `_copy_from_iter` returning: bytes the CPU copied into the kernel (usually from user memory).
    CopyFromIter,
    /// cpu-clock samples of the measured process with kernel stacks.
    CopySample,
    /// A page or physical range mapped for device DMA through the DMA API.
    DmaMap,
    /// A scatter-gather list mapped for device DMA through the DMA API.
    DmaMapSg,
    /// A socket send returning: bytes the socket took.
    SockSend,
    /// A traced process forking (followed into the child when following is on).
    ProcessFork,
    /// A packet handed to a device driver after software segmentation: payload of the measured
    /// process's TCP sockets in linear data (copied) or page fragments (by reference).
    NetStartXmit,
    /// Socket buffer -> user memory copies (`skb_copy_datagram_iter`).
    SockRecv,
    /// ext4 copying into the page cache (delayed allocation, the default).
    Ext4DaWriteEnd,
    /// ext4 copying into the page cache without delayed allocation.
    Ext4WriteEnd,
    /// A task ending: a thread's syscall in flight (its `exit`) goes with it.
    ProcessExit,
    /// A successful exec: the process is renamed, and a thread that was not the leader takes
    /// the leader's id, with the syscall it is in.
    ProcessExec,
    /// A TCP socket closing: it leaves the table of the traced processes' sockets.
    SockClose,
    /// An `O_DIRECT` transfer between a device and user memory completing (iomap file systems).
    DirectIo,
    /// Any task freed: its id leaves the followed set, so a process given the id again later is
    /// not taken for a child.
    ProcessFree,
    /// Block I/O queued by a traced task itself: the process's own disk transfers.
    BioQueue,
}

impl Point {
    /// Every point, in attach order. What keeps a syscall's entry until its return attaches
    /// before the return, and the return before the entry: once `sys_enter` counts an entry,
    /// `sched_switch` is there to park it when the thread blocks, `sys_exit` to meet it, the
    /// task hooks to move it (exec) or drop it (exit). A return whose entry came before
    /// `sys_enter` is a syscall begun before measuring, which the kernel side recognises.
    pub const ALL: [Point; 25] = [
        Point::SchedSwitch,
        Point::ProcessFork,
        Point::ProcessExit,
        Point::ProcessExec,
        Point::ProcessFree,
        Point::SysExit,
        Point::SysEnter,
        Point::PageFaultUser,
        Point::PageFaultKernel,
        Point::BlockIssue,
        Point::BioQueue,
        Point::NetXmit,
        Point::FilemapRead,
        Point::CopyToIter,
        Point::CopyFromIter,
        Point::CopySample,
        Point::DmaMap,
        Point::DmaMapSg,
        Point::SockClose,
        Point::SockSend,
        Point::NetStartXmit,
        Point::SockRecv,
        Point::Ext4DaWriteEnd,
        Point::Ext4WriteEnd,
        Point::DirectIo,
    ];

    /// Without these no report makes sense; the others are shown as unavailable when missing.
    #[must_use]
    pub fn required(self) -> bool {
        matches!(
            self,
            Point::SysEnter
                | Point::SysExit
                | Point::SchedSwitch
                | Point::ProcessExit
                | Point::ProcessExec
        )
    }

    /// Name used in reports.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Point::SysEnter => "sys_enter",
            Point::SysExit => "sys_exit",
            Point::SchedSwitch => "sched_switch",
            Point::PageFaultUser => "page_fault_user",
            Point::PageFaultKernel => "page_fault_kernel",
            Point::BlockIssue => "block_rq_issue",
            Point::NetXmit => "net_dev_xmit",
            Point::FilemapRead => "filemap_read",
            Point::CopyToIter => "copy_to_iter",
            Point::CopyFromIter => "copy_from_iter",
            Point::CopySample => "copy_sample",
            Point::DmaMap => "dma_map",
            Point::DmaMapSg => "dma_map_sg",
            Point::SockSend => "sock_send",
            Point::ProcessFork => "sched_process_fork",
            Point::NetStartXmit => "net_dev_start_xmit",
            Point::SockRecv => "skb_copy_datagram",
            Point::Ext4DaWriteEnd => "ext4_da_write_end",
            Point::Ext4WriteEnd => "ext4_write_end",
            Point::DirectIo => "iomap_dio_complete",
            Point::ProcessExit => "sched_process_exit",
            Point::ProcessExec => "sched_process_exec",
            Point::SockClose => "inet_sock_set_state",
            Point::ProcessFree => "sched_process_free",
            Point::BioQueue => "block_bio_queue",
        }
    }
}

/// One compiled program: a hook type for a measurement point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    pub point: Point,
    pub kind: HookKind,
    /// Program (function) name in the eBPF object.
    pub program: &'static str,
    /// Tracepoint name; for classic tracepoints `category/name`.
    pub target: &'static str,
}

impl Variant {
    /// How the figure fed by this variant was obtained, for reports.
    #[must_use]
    pub fn describe(&self) -> String {
        format!("{} {}", self.kind.name(), self.target)
    }
}

/// Every variant, in order of preference within each point (cheapest first).
pub const VARIANTS: &[Variant] = &[
    Variant {
        point: Point::SysEnter,
        kind: HookKind::RawTp,
        program: "sys_enter_raw_tp",
        target: "sys_enter",
    },
    Variant {
        point: Point::SysEnter,
        kind: HookKind::Tracepoint,
        program: "sys_enter_tracepoint",
        target: "raw_syscalls/sys_enter",
    },
    Variant {
        point: Point::SysExit,
        kind: HookKind::RawTp,
        program: "sys_exit_raw_tp",
        target: "sys_exit",
    },
    Variant {
        point: Point::SysExit,
        kind: HookKind::Tracepoint,
        program: "sys_exit_tracepoint",
        target: "raw_syscalls/sys_exit",
    },
    Variant {
        point: Point::SchedSwitch,
        kind: HookKind::TpBtf,
        program: "sched_switch_tp_btf",
        target: "sched_switch",
    },
    Variant {
        point: Point::SchedSwitch,
        kind: HookKind::RawTp,
        program: "sched_switch_raw_tp",
        target: "sched_switch",
    },
    Variant {
        point: Point::SchedSwitch,
        kind: HookKind::Tracepoint,
        program: "sched_switch_tracepoint",
        target: "sched/sched_switch",
    },
    Variant {
        point: Point::PageFaultUser,
        kind: HookKind::RawTp,
        program: "page_fault_user_raw_tp",
        target: "page_fault_user",
    },
    Variant {
        point: Point::PageFaultUser,
        kind: HookKind::Tracepoint,
        program: "page_fault_user_tracepoint",
        target: "exceptions/page_fault_user",
    },
    Variant {
        point: Point::PageFaultKernel,
        kind: HookKind::RawTp,
        program: "page_fault_kernel_raw_tp",
        target: "page_fault_kernel",
    },
    Variant {
        point: Point::PageFaultKernel,
        kind: HookKind::Tracepoint,
        program: "page_fault_kernel_tracepoint",
        target: "exceptions/page_fault_kernel",
    },
    Variant {
        point: Point::BlockIssue,
        kind: HookKind::Tracepoint,
        program: "block_rq_issue_tracepoint",
        target: "block/block_rq_issue",
    },
    Variant {
        point: Point::BioQueue,
        kind: HookKind::Tracepoint,
        program: "block_bio_queue_tracepoint",
        target: "block/block_bio_queue",
    },
    Variant {
        point: Point::NetXmit,
        kind: HookKind::Tracepoint,
        program: "net_dev_xmit_tracepoint",
        target: "net/net_dev_xmit",
    },
    Variant {
        point: Point::FilemapRead,
        kind: HookKind::Fexit,
        program: "filemap_read_fexit",
        target: "filemap_read",
    },
    Variant {
        point: Point::FilemapRead,
        kind: HookKind::Kretprobe,
        program: "filemap_read_kretprobe",
        target: "filemap_read",
    },
    // 5.10's name for filemap_read: the first that exists wins.
    Variant {
        point: Point::FilemapRead,
        kind: HookKind::Fexit,
        program: "generic_file_buffered_read_fexit",
        target: "generic_file_buffered_read",
    },
    Variant {
        point: Point::FilemapRead,
        kind: HookKind::Kretprobe,
        program: "generic_file_buffered_read_kretprobe",
        target: "generic_file_buffered_read",
    },
    Variant {
        point: Point::CopyToIter,
        kind: HookKind::Fexit,
        program: "copy_to_iter_fexit",
        target: "_copy_to_iter",
    },
    Variant {
        point: Point::CopyToIter,
        kind: HookKind::Kretprobe,
        program: "copy_to_iter_kretprobe",
        target: "_copy_to_iter",
    },
    Variant {
        point: Point::CopyFromIter,
        kind: HookKind::Fexit,
        program: "copy_from_iter_fexit",
        target: "_copy_from_iter",
    },
    Variant {
        point: Point::CopyFromIter,
        kind: HookKind::Kretprobe,
        program: "copy_from_iter_kretprobe",
        target: "_copy_from_iter",
    },
    Variant {
        point: Point::CopySample,
        kind: HookKind::PerfEvent,
        program: "copy_sample_perf_event",
        target: "cpu-clock",
    },
    // dma_map_page became dma_map_phys in 6.18: same point, the first that exists wins.
    Variant {
        point: Point::DmaMap,
        kind: HookKind::Tracepoint,
        program: "dma_map_phys_tracepoint",
        target: "dma/dma_map_phys",
    },
    Variant {
        point: Point::DmaMap,
        kind: HookKind::Tracepoint,
        program: "dma_map_page_tracepoint",
        target: "dma/dma_map_page",
    },
    Variant {
        point: Point::DmaMapSg,
        kind: HookKind::Tracepoint,
        program: "dma_map_sg_tracepoint",
        target: "dma/dma_map_sg",
    },
    Variant {
        point: Point::SockSend,
        kind: HookKind::Fexit,
        program: "tcp_sendmsg_fexit",
        target: "tcp_sendmsg",
    },
    Variant {
        point: Point::SockSend,
        kind: HookKind::Kretprobe,
        program: "tcp_sendmsg_kretprobe",
        target: "tcp_sendmsg",
    },
    Variant {
        point: Point::SockSend,
        kind: HookKind::Tracepoint,
        program: "sock_send_length_tracepoint",
        target: "sock/sock_send_length",
    },
    Variant {
        point: Point::ProcessFork,
        kind: HookKind::Tracepoint,
        program: "sched_process_fork_tracepoint",
        target: "sched/sched_process_fork",
    },
    Variant {
        point: Point::NetStartXmit,
        kind: HookKind::RawTp,
        program: "net_dev_start_xmit_raw_tp",
        target: "net_dev_start_xmit",
    },
    Variant {
        point: Point::NetStartXmit,
        kind: HookKind::Tracepoint,
        program: "net_dev_start_xmit_tracepoint",
        target: "net/net_dev_start_xmit",
    },
    Variant {
        point: Point::SockRecv,
        kind: HookKind::RawTp,
        program: "skb_copy_datagram_iovec_raw_tp",
        target: "skb_copy_datagram_iovec",
    },
    Variant {
        point: Point::SockRecv,
        kind: HookKind::Tracepoint,
        program: "skb_copy_datagram_iovec_tracepoint",
        target: "skb/skb_copy_datagram_iovec",
    },
    Variant {
        point: Point::Ext4DaWriteEnd,
        kind: HookKind::RawTp,
        program: "ext4_da_write_end_raw_tp",
        target: "ext4_da_write_end",
    },
    Variant {
        point: Point::Ext4DaWriteEnd,
        kind: HookKind::Tracepoint,
        program: "ext4_da_write_end_tracepoint",
        target: "ext4/ext4_da_write_end",
    },
    Variant {
        point: Point::Ext4WriteEnd,
        kind: HookKind::RawTp,
        program: "ext4_write_end_raw_tp",
        target: "ext4_write_end",
    },
    Variant {
        point: Point::Ext4WriteEnd,
        kind: HookKind::Tracepoint,
        program: "ext4_write_end_tracepoint",
        target: "ext4/ext4_write_end",
    },
    Variant {
        point: Point::DirectIo,
        kind: HookKind::RawTp,
        program: "iomap_dio_complete_raw_tp",
        target: "iomap_dio_complete",
    },
    Variant {
        point: Point::DirectIo,
        kind: HookKind::Tracepoint,
        program: "iomap_dio_complete_tracepoint",
        target: "iomap/iomap_dio_complete",
    },
    Variant {
        point: Point::ProcessExit,
        kind: HookKind::RawTp,
        program: "sched_process_exit_raw_tp",
        target: "sched_process_exit",
    },
    Variant {
        point: Point::ProcessExit,
        kind: HookKind::Tracepoint,
        program: "sched_process_exit_tracepoint",
        target: "sched/sched_process_exit",
    },
    Variant {
        point: Point::ProcessFree,
        kind: HookKind::Tracepoint,
        program: "sched_process_free_tracepoint",
        target: "sched/sched_process_free",
    },
    Variant {
        point: Point::ProcessExec,
        kind: HookKind::RawTp,
        program: "sched_process_exec_raw_tp",
        target: "sched_process_exec",
    },
    Variant {
        point: Point::ProcessExec,
        kind: HookKind::Tracepoint,
        program: "sched_process_exec_tracepoint",
        target: "sched/sched_process_exec",
    },
    Variant {
        point: Point::SockClose,
        kind: HookKind::RawTp,
        program: "inet_sock_set_state_raw_tp",
        target: "inet_sock_set_state",
    },
    Variant {
        point: Point::SockClose,
        kind: HookKind::Tracepoint,
        program: "inet_sock_set_state_tracepoint",
        target: "sock/inet_sock_set_state",
    },
];

/// Programs that return at once, by hook target: the benchmark's floor for any BPF syscall hook
/// (`zcprof __empty-hooks`). No measurement uses them.
pub const EMPTY_HOOKS: [(&str, &str); 2] = [
    ("empty_sys_enter_raw_tp", "sys_enter"),
    ("empty_sys_exit_raw_tp", "sys_exit"),
];

/// The variants of one point, in order of preference.
pub fn variants_of(point: Point) -> impl Iterator<Item = &'static Variant> {
    VARIANTS.iter().filter(move |v| v.point == point)
}

/// Map names in the eBPF object.
pub mod maps {
    pub const SYSCALLS: &str = "SYSCALLS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const IN_FLIGHT: &str = "IN_FLIGHT";
    pub const DISK_IO: &str = "DISK_IO";
    pub const NET_XMIT: &str = "NET_XMIT";
    pub const DMA_TO_DEVICE: &str = "DMA_TO_DEVICE";
    pub const STACKS: &str = "STACKS";
    pub const STACK_SAMPLES: &str = "STACK_SAMPLES";
    pub const HOOKED_BY_SYSCALL: &str = "HOOKED_BY_SYSCALL";
    pub const TRACED: &str = "TRACED";
    pub const EVENTS: &str = "EVENTS";
    pub const PROCS: &str = "PROCS";
    pub const ON_CPU: &str = "ON_CPU";
    pub const TRACED_BITS: &str = "TRACED_BITS";
    pub const SOCKS: &str = "SOCKS";
    pub const BEFORE_START: &str = "BEFORE_START";
    pub const CONTROL: &str = "CONTROL";
    pub const FOLDED: &str = "FOLDED";
    pub const RW_SYSCALLS: &str = "RW_SYSCALLS";
    pub const FD_BYTES: &str = "FD_BYTES";
    /// Every map, for the object check.
    pub const ALL: [&str; 20] = [
        SYSCALLS,
        COUNTERS,
        IN_FLIGHT,
        DISK_IO,
        NET_XMIT,
        DMA_TO_DEVICE,
        STACKS,
        STACK_SAMPLES,
        HOOKED_BY_SYSCALL,
        TRACED,
        EVENTS,
        PROCS,
        ON_CPU,
        TRACED_BITS,
        SOCKS,
        BEFORE_START,
        CONTROL,
        FOLDED,
        RW_SYSCALLS,
        FD_BYTES,
    ];
}

/// Loader-set globals in the eBPF object.
pub mod globals {
    pub const TARGET_TGID: &str = "TARGET_TGID";
    pub const FOLLOW: &str = "FOLLOW";
    pub const TRACE: &str = "TRACE";
    pub const CLONE_NR: &str = "CLONE_NR";
    pub const CLONE3_NR: &str = "CLONE3_NR";
    pub const FORK_NR: &str = "FORK_NR";
    pub const VFORK_NR: &str = "VFORK_NR";
    pub const REGS_NR_OFFSET: &str = "REGS_NR_OFFSET";
    pub const EXIT_NR: &str = "EXIT_NR";
    pub const EXIT_GROUP_NR: &str = "EXIT_GROUP_NR";
    pub const TIME_MASK: &str = "TIME_MASK";
    pub const RECEIVER_TGID: &str = "RECEIVER_TGID";
    pub const XMIT_BY_SOCKET: &str = "XMIT_BY_SOCKET";
    /// Kernel struct member offsets from the kernel's BTF: (global, struct, member).
    pub const BTF_OFFSETS: [(&str, &str, &str); 9] = [
        ("SKB_OFF_SK", "sk_buff", "sk"),
        ("SKB_OFF_DATA", "sk_buff", "data"),
        ("SKB_OFF_HEAD", "sk_buff", "head"),
        ("SKB_OFF_LEN", "sk_buff", "len"),
        ("SKB_OFF_DATA_LEN", "sk_buff", "data_len"),
        ("SKB_OFF_PROTOCOL", "sk_buff", "protocol"),
        ("SKB_OFF_NETWORK_HEADER", "sk_buff", "network_header"),
        ("SKB_OFF_TRANSPORT_HEADER", "sk_buff", "transport_header"),
        ("DEV_OFF_NAME", "net_device", "name"),
    ];
    pub const TASK_OFFSETS_OK: &str = "TASK_OFFSETS_OK";
    /// Members the programs read of the current task (its file table, to tell its own sockets
    /// from a peer's, and its leader's name), from the kernel's BTF: (global, struct, member).
    pub const TASK_OFFSETS: [(&str, &str, &str); 13] = [
        ("TASK_OFF_FILES", "task_struct", "files"),
        ("TASK_OFF_GROUP_LEADER", "task_struct", "group_leader"),
        ("TASK_OFF_COMM", "task_struct", "comm"),
        ("FILES_OFF_FDT", "files_struct", "fdt"),
        ("FDT_OFF_MAX_FDS", "fdtable", "max_fds"),
        ("FDT_OFF_FD", "fdtable", "fd"),
        ("SK_OFF_SOCKET", "sock", "sk_socket"),
        ("SOCKET_OFF_FILE", "socket", "file"),
        ("FILE_OFF_INODE", "file", "f_inode"),
        ("INODE_OFF_MODE", "inode", "i_mode"),
        ("INODE_OFF_RDEV", "inode", "i_rdev"),
        ("INODE_OFF_SB", "inode", "i_sb"),
        ("SB_OFF_MAGIC", "super_block", "s_magic"),
    ];
    /// Record offsets of classic tracepoints: (global, event, field).
    pub const OFFSETS: [(&str, &str, &str); 37] = [
        // dma_map_page became dma_map_phys in 6.18: a kernel has one of them.
        ("DMA_OFF_DEVICE", "dma/dma_map_page", "device"),
        ("DMA_OFF_SIZE", "dma/dma_map_page", "size"),
        ("DMA_OFF_DIR", "dma/dma_map_page", "dir"),
        ("DMA_OFF_DEVICE", "dma/dma_map_phys", "device"),
        ("DMA_OFF_SIZE", "dma/dma_map_phys", "size"),
        ("DMA_OFF_DIR", "dma/dma_map_phys", "dir"),
        ("DMA_SG_OFF_DEVICE", "dma/dma_map_sg", "device"),
        ("DMA_SG_OFF_DIR", "dma/dma_map_sg", "dir"),
        ("BLK_OFF_DEV", "block/block_rq_issue", "dev"),
        ("BLK_OFF_BYTES", "block/block_rq_issue", "bytes"),
        ("BLK_OFF_RWBS", "block/block_rq_issue", "rwbs"),
        ("BIO_OFF_DEV", "block/block_bio_queue", "dev"),
        ("BIO_OFF_NR_SECTOR", "block/block_bio_queue", "nr_sector"),
        ("BIO_OFF_RWBS", "block/block_bio_queue", "rwbs"),
        ("NET_OFF_LEN", "net/net_dev_xmit", "len"),
        ("NET_OFF_NAME", "net/net_dev_xmit", "name"),
        ("SOCK_OFF_RET", "sock/sock_send_length", "ret"),
        ("SOCK_OFF_SK", "sock/sock_send_length", "sk"),
        ("SOCK_OFF_FAMILY", "sock/sock_send_length", "family"),
        ("SOCK_OFF_PROTOCOL", "sock/sock_send_length", "protocol"),
        ("XMIT_OFF_SKB", "net/net_dev_start_xmit", "skbaddr"),
        ("XMIT_OFF_NAME", "net/net_dev_start_xmit", "name"),
        ("XMIT_OFF_PROTOCOL", "net/net_dev_start_xmit", "protocol"),
        ("XMIT_OFF_LEN", "net/net_dev_start_xmit", "len"),
        ("XMIT_OFF_DATA_LEN", "net/net_dev_start_xmit", "data_len"),
        (
            "XMIT_OFF_NETWORK",
            "net/net_dev_start_xmit",
            "network_offset",
        ),
        (
            "XMIT_OFF_TRANSPORT_VALID",
            "net/net_dev_start_xmit",
            "transport_offset_valid",
        ),
        (
            "XMIT_OFF_TRANSPORT",
            "net/net_dev_start_xmit",
            "transport_offset",
        ),
        ("DGRAM_OFF_LEN", "skb/skb_copy_datagram_iovec", "len"),
        ("EXT4_DA_OFF_COPIED", "ext4/ext4_da_write_end", "copied"),
        ("EXT4_OFF_COPIED", "ext4/ext4_write_end", "copied"),
        ("DIO_OFF_RET", "iomap/iomap_dio_complete", "ret"),
        (
            "FORK_OFF_CHILD_PID",
            "sched/sched_process_fork",
            "child_pid",
        ),
        ("EXEC_OFF_OLD_PID", "sched/sched_process_exec", "old_pid"),
        ("FREE_OFF_PID", "sched/sched_process_free", "pid"),
        ("SOCKSTATE_OFF_SKADDR", "sock/inet_sock_set_state", "skaddr"),
        (
            "SOCKSTATE_OFF_NEWSTATE",
            "sock/inet_sock_set_state",
            "newstate",
        ),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table and the built object agree: every program, map and global named here exists,
    /// and every program in the object is in the table.
    #[test]
    fn every_name_exists_in_the_built_object() {
        let object =
            aya_obj::Object::parse(crate::probes::OBJECT).expect("the embedded object parses");
        for v in VARIANTS {
            assert!(
                object.programs.contains_key(v.program),
                "program {} missing from the object",
                v.program
            );
        }
        // serve's programs are in their own table (probes::serve), checked by its test.
        for name in object.programs.keys() {
            assert!(
                VARIANTS.iter().any(|v| v.program == name)
                    || EMPTY_HOOKS.iter().any(|(p, _)| p == name)
                    || super::super::serve::PROGRAMS
                        .iter()
                        .any(|(p, _, _)| p == name),
                "program {name} is not in the catalog"
            );
        }
        for name in maps::ALL {
            assert!(
                object.maps.contains_key(name),
                "map {name} missing from the object"
            );
        }
        // Globals are symbols of .rodata; the symbol table is private to aya-obj, the string
        // table is not.
        let wanted = globals::TARGET_TGID.as_bytes();
        assert!(
            crate::probes::OBJECT
                .windows(wanted.len())
                .any(|w| w == wanted),
            "global {} missing",
            globals::TARGET_TGID
        );
    }

    /// A syscall entry is kept until its return only if what parks it (`sched_switch`), moves
    /// it (exec), drops it (exit) and meets it (`sys_exit`) is there before `sys_enter` counts
    /// it: attached the other way round, entries of threads that blocked meanwhile were lost.
    #[test]
    fn what_keeps_an_entry_attaches_before_the_entry() {
        let at = |p: Point| Point::ALL.iter().position(|&q| q == p).unwrap();
        for p in [
            Point::SchedSwitch,
            Point::ProcessFork,
            Point::ProcessExit,
            Point::ProcessExec,
            Point::SysExit,
        ] {
            assert!(
                at(p) < at(Point::SysEnter),
                "{p:?} attaches after sys_enter"
            );
        }
        // Every point of the table once.
        for v in VARIANTS {
            assert!(
                Point::ALL.contains(&v.point),
                "{:?} is not attached",
                v.point
            );
        }
        let mut all = Point::ALL.to_vec();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), Point::ALL.len());
    }

    #[test]
    fn every_point_has_a_variant_without_btf_or_tracefs() {
        // raw tracepoints need neither BTF nor tracefs: the last resort exists for every point
        // a report cannot do without.
        for p in Point::ALL.into_iter().filter(|p| p.required()) {
            assert!(
                variants_of(p).any(|v| v.kind == HookKind::RawTp),
                "{p:?} has no raw_tp variant"
            );
        }
    }
}
