//! Bytes that read- and write-type syscalls moved through a descriptor, by what the descriptor
//! is (a regular file, a pipe, `/dev/zero`, ...): whether they were a copy, and of what, depends
//! on it. Classified at the return, from the file's inode, for the syscalls the loader marked in
//! `RW_SYSCALLS`.
use zcprof_common::{FdKind, RW_READ, RW_SPLICE, RW_WRITE};

use crate::{
    maps::{FD_BYTES, RW_SYSCALLS},
    task,
};

/// Offsets of the first and third syscall arguments in the saved registers.
#[cfg(bpf_target_arch = "x86_64")]
const REGS_ARG0: u64 = 112; // di
#[cfg(bpf_target_arch = "x86_64")]
const REGS_ARG2: u64 = 96; // dx
#[cfg(bpf_target_arch = "aarch64")]
const REGS_ARG0: u64 = 0; // regs[0]
#[cfg(bpf_target_arch = "aarch64")]
const REGS_ARG2: u64 = 16; // regs[2]

/// Syscall `nr`, whose saved registers are at `regs` (0: unknown), returned `ret` (positive)
/// bytes: when it is one of `RW_SYSCALLS`, its descriptor (a read's or write's first argument,
/// a splice's output) is classified and the bytes counted under that kind. Returns the kind's number, 0 for the other syscalls.
#[inline(always)]
pub fn moved(nr: u32, regs: u64, ret: i64) -> u32 {
    let direction = match RW_SYSCALLS.get(nr) {
        Some(&RW_READ) => 0,
        Some(&RW_WRITE) => 1,
        Some(&RW_SPLICE) => 2,
        _ => return 0,
    };
    count(direction, regs, ret)
}

/// Out of line: only read- and write-type returns come here.
#[inline(never)]
fn count(direction: u32, regs: u64, ret: i64) -> u32 {
    let arg = if direction == 2 { REGS_ARG2 } else { REGS_ARG0 };
    let kind = if regs == 0 {
        FdKind::Unknown
    } else {
        task::kernel_read::<u64>(regs + arg).map_or(FdKind::Unknown, task::fd_kind)
    };
    if let Some(bytes) = FD_BYTES.get_ptr_mut(kind as u32 * 3 + direction) {
        #[expect(clippy::cast_sign_loss, reason = "the caller checked positive")]
        // SAFETY: per-CPU slot.
        unsafe {
            *bytes += ret as u64;
        }
    }
    kind as u32
}
