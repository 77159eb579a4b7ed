//! The current task as the kernel keeps it: whether a socket is one of its process's own (in its
//! file table), and its process's name (the thread-group leader's). Read through `struct`
//! member offsets from the kernel's BTF, which the loader sets with `TASK_OFFSETS_OK`; where
//! they are unknown no socket is taken for the process's and the name is the current thread's.
use aya_ebpf::{
    Global,
    helpers::{bpf_get_current_comm, bpf_get_current_task, bpf_probe_read_kernel},
};
use zcprof_common::{FdKind, IFNAMSIZ};

/// Reads a `T` at a kernel address.
#[inline(always)]
pub(crate) fn kernel_read<T>(addr: u64) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one is an error, not a fault.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.ok()
}

/// Non-zero: every offset below was found in the kernel's BTF.
#[unsafe(no_mangle)]
static TASK_OFFSETS_OK: Global<u32> = Global::new(0);
/// `task_struct.files`, `.group_leader`, `.comm`.
#[unsafe(no_mangle)]
static TASK_OFF_FILES: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static TASK_OFF_GROUP_LEADER: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static TASK_OFF_COMM: Global<u32> = Global::new(0);
/// `files_struct.fdt`; `fdtable.max_fds` and `.fd`.
#[unsafe(no_mangle)]
static FILES_OFF_FDT: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static FDT_OFF_MAX_FDS: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static FDT_OFF_FD: Global<u32> = Global::new(0);
/// `sock.sk_socket`, `socket.file`.
#[unsafe(no_mangle)]
static SK_OFF_SOCKET: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SOCKET_OFF_FILE: Global<u32> = Global::new(0);

/// `file.f_inode`; `inode.i_mode`, `.i_rdev`, `.i_sb`; `super_block.s_magic`.
#[unsafe(no_mangle)]
static FILE_OFF_INODE: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static INODE_OFF_MODE: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static INODE_OFF_RDEV: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static INODE_OFF_SB: Global<u32> = Global::new(0);
#[unsafe(no_mangle)]
static SB_OFF_MAGIC: Global<u32> = Global::new(0);

/// Descriptors looked at beyond the syscall's own: the lowest ones, where a program that sends
/// through io_uring (whose syscall names only the ring) keeps its few sockets.
const SCAN_FDS: u64 = 16;

#[inline(always)]
fn at<T>(base: u64, offset: &Global<u32>) -> Option<T> {
    kernel_read(base + u64::from(offset.load()))
}

/// Whether `struct sock` `sk` belongs to the current process: the file of its socket is at one
/// of descriptors `fds` (the current syscall's descriptor arguments, `u64::MAX`: none) or among
/// the lowest descriptors of the process's file table. A socket whose packet merely leaves while
/// the process runs (the kernel processes a peer's ACKs, and sends the peer's packets, on
/// whatever task is on the CPU) is not in it.
#[inline(always)]
pub fn owns_socket(sk: u64, fds: [u64; 2]) -> bool {
    owns(sk, fds).unwrap_or(false)
}

#[inline(always)]
fn owns(sk: u64, fds: [u64; 2]) -> Option<bool> {
    if TASK_OFFSETS_OK.load() == 0 {
        return None;
    }
    let socket: u64 = at(sk, &SK_OFF_SOCKET)?;
    let file: u64 = at(socket, &SOCKET_OFF_FILE)?;
    if file == 0 {
        return None;
    }
    let table = FileTable::current()?;
    if table.file(fds[0]) == Some(file) || table.file(fds[1]) == Some(file) {
        return Some(true);
    }
    for fd in 0..SCAN_FDS {
        if table.file(fd) == Some(file) {
            return Some(true);
        }
    }
    Some(false)
}

/// The current task's descriptor table.
struct FileTable {
    /// `fdtable.fd`, an array of `max` file pointers.
    fd: u64,
    max: u64,
}

impl FileTable {
    #[inline(always)]
    fn current() -> Option<FileTable> {
        // SAFETY: helper without preconditions.
        let task = unsafe { bpf_get_current_task() };
        let files: u64 = at(task, &TASK_OFF_FILES)?;
        let fdt: u64 = at(files, &FILES_OFF_FDT)?;
        Some(FileTable {
            max: u64::from(at::<u32>(fdt, &FDT_OFF_MAX_FDS)?),
            fd: at(fdt, &FDT_OFF_FD)?,
        })
    }

    /// The `struct file` at descriptor `fd`, if it is open.
    #[inline(always)]
    fn file(&self, fd: u64) -> Option<u64> {
        if fd >= self.max {
            return None;
        }
        kernel_read::<u64>(self.fd + fd * 8).filter(|&f| f != 0)
    }
}

const S_IFMT: u16 = 0o170_000;
const S_IFREG: u16 = 0o100_000;
const S_IFIFO: u16 = 0o010_000;
const S_IFSOCK: u16 = 0o140_000;
const S_IFCHR: u16 = 0o020_000;
/// File systems whose files the kernel generates as they are read: procfs, sysfs, debugfs,
/// tracefs, cgroup2.
const GENERATED_MAGICS: [u64; 5] = [0x9fa0, 0x6265_6572, 0x6462_6720, 0x7472_6163, 0x6367_7270];

/// What descriptor `fd` of the current task is; `Unknown` where it cannot be read.
#[inline(never)]
pub fn fd_kind(fd: u64) -> FdKind {
    kind_of(fd).unwrap_or(FdKind::Unknown)
}

#[inline(always)]
fn kind_of(fd: u64) -> Option<FdKind> {
    if TASK_OFFSETS_OK.load() == 0 {
        return None;
    }
    let file = FileTable::current()?.file(fd)?;
    let inode: u64 = at(file, &FILE_OFF_INODE)?;
    let mode: u16 = at(inode, &INODE_OFF_MODE)?;
    Some(match mode & S_IFMT {
        S_IFREG => {
            let sb: u64 = at(inode, &INODE_OFF_SB)?;
            let magic: u64 = at(sb, &SB_OFF_MAGIC)?;
            if GENERATED_MAGICS.contains(&magic) {
                FdKind::Generated
            } else {
                FdKind::Regular
            }
        }
        S_IFIFO => FdKind::Pipe,
        S_IFSOCK => FdKind::Socket,
        S_IFCHR => {
            // dev_t in the kernel: major << 20 | minor.
            let rdev: u32 = at(inode, &INODE_OFF_RDEV)?;
            match (rdev >> 20, rdev & 0xf_ffff) {
                (1, 3) => FdKind::DevNull,
                (1, 5) => FdKind::DevZero,
                _ => FdKind::CharDevice,
            }
        }
        _ => FdKind::Other,
    })
}

/// The current process's name: its thread-group leader's command name (a thread may have named
/// itself otherwise), or the current thread's where the offsets are unknown.
#[inline(always)]
pub fn process_comm() -> [u8; IFNAMSIZ] {
    leader_comm().unwrap_or_else(|| bpf_get_current_comm().unwrap_or([0; IFNAMSIZ]))
}

#[inline(always)]
fn leader_comm() -> Option<[u8; IFNAMSIZ]> {
    if TASK_OFFSETS_OK.load() == 0 {
        return None;
    }
    // SAFETY: helper without preconditions.
    let task = unsafe { bpf_get_current_task() };
    let leader: u64 = at(task, &TASK_OFF_GROUP_LEADER)?;
    let comm: [u8; IFNAMSIZ] = at(leader, &TASK_OFF_COMM)?;
    (comm[0] != 0).then_some(comm)
}
