//! Shared accounting: every hook variant of a measurement point ends up here, so a kernel that
//! forces another hook type changes where the data comes from, never what is counted.
use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns};
use zcprof_common::{Counter, OnCpu};

mod copies;
mod descriptor;
mod device;
mod follow;
mod process;
pub mod serve;
mod syscall;
mod trace;

pub use copies::{
    copied, direct_io, forget_socket, page_cache_write, register_socket, sample, sampled_cpu,
    sock_recv, socket_owner, syscall_fds, syscall_of, xmit,
};
pub use device::{bio_queued, disk_io, dma_map, dma_to_device, forked, net_xmit, page_fault};
pub use follow::{follow, forget};
pub(crate) use process::per_process;
pub(crate) use syscall::in_flight;
pub use syscall::{
    context_switch, process_exec, syscall_enter, syscall_enter_regs, syscall_exit,
    syscall_exit_regs, thread_exit,
};
pub(crate) use trace::{Name, emit, emit_for};

use crate::maps::{CONTROL, COUNTERS, ON_CPU};

/// The current process.
#[inline(always)]
pub(crate) fn current_tgid() -> u32 {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the upper half is the tgid"
    )]
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    tgid
}

/// The kernel's monotonic clock (a helper call and a clock source read: about 50 ns here).
#[inline(always)]
pub(crate) fn now() -> u64 {
    // SAFETY: helper without preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// This CPU's slot (see `OnCpu`): the syscall in flight and the hot counters.
#[inline(always)]
pub(crate) fn on_cpu() -> Option<&'static mut OnCpu> {
    // SAFETY: a per-CPU value, valid while the program runs; programs of these hooks do not nest
    // on one CPU.
    ON_CPU.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

#[inline(always)]
pub(crate) fn add(slot: Counter, n: u64) {
    if let Some(p) = COUNTERS.get_ptr_mut(slot as u32) {
        // SAFETY: per-CPU slot, and eBPF programs do not nest on one CPU for these hooks.
        unsafe { *p += n };
    }
}

/// Whether `control`'s slot of the `CONTROL` array is set by user space.
#[inline(always)]
fn control(slot: u32) -> bool {
    CONTROL.get(slot).is_some_and(|v| *v != 0)
}
