//! Program runs the kernel skipped: a program is not re-entered on a CPU where a run of it is
//! still in progress, and the kernel counts each skipped run as a recursion miss.
//!
//! A run can be in progress there only when it was preempted or interrupted. Since the syscall
//! tracepoints became faultable, programs on `sys_enter` and `sys_exit` run with preemption
//! enabled, so on a kernel with full or lazy preemption (Debian's 7.x kernels) another task on
//! the same CPU can reach the tracepoint while the first run waits: that task's entry or return
//! is then never seen. These counts say how often.
use std::{
    collections::BTreeMap,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::{Ebpf, programs::Program};
use aya_obj::generated::bpf_prog_info;

/// `BPF_OBJ_GET_INFO_BY_FD`.
const OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// The `info` member of `union bpf_attr`.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// Recursion misses of every loaded program with any, by program name.
pub fn of(ebpf: &Ebpf) -> BTreeMap<String, u64> {
    ebpf.programs()
        .filter_map(|(name, program)| {
            let misses = misses(program)?;
            (misses > 0).then(|| (name.to_owned(), misses))
        })
        .collect()
}

/// One program's misses (`None` when it is not loaded or the kernel does not say).
fn misses(program: &Program) -> Option<u64> {
    let fd = program.fd().ok()?;
    // SAFETY: a plain C struct of integers; all zeroes is valid.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr {
        bpf_fd: u32::try_from(fd.as_fd().as_raw_fd()).ok()?,
        info_len: u32::try_from(size_of::<bpf_prog_info>()).ok()?,
        info: std::ptr::from_mut(&mut info) as u64,
    };
    // SAFETY: the kernel writes at most `info_len` bytes into `info`, which outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            OBJ_GET_INFO_BY_FD,
            std::ptr::from_mut(&mut attr),
            size_of::<InfoAttr>(),
        )
    };
    // A kernel older than the member (5.12) writes less: then it is not there to read.
    let end = std::mem::offset_of!(bpf_prog_info, recursion_misses) + size_of::<u64>();
    (ret == 0 && attr.info_len as usize >= end).then_some(info.recursion_misses)
}
