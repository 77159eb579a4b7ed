//! The followed process set: ids that join it when a traced process forks, and leave it when
//! their task is freed, so that an id the kernel hands out again names no one traced.
use core::intrinsics::{AtomicOrdering, atomic_xadd};

use zcprof_common::Counter;

use super::add;
use crate::{
    filter::following,
    maps::{TRACED, TRACED_BITS},
};

/// A traced task forked `child` (a process, or a thread: its id lands in the set too, which is
/// harmless while it lives and is undone when it is freed).
#[inline(always)]
pub fn follow(child: i32) {
    if !following() || child <= 0 {
        return;
    }
    #[expect(clippy::cast_sign_loss, reason = "checked positive")]
    let child = child as u32;
    let Some(word) = TRACED_BITS.get_ptr_mut(child / 64) else {
        // Beyond the bitmap (pid_max raised while measuring): the hash map, which can fill.
        if TRACED.insert(&child, &1, 0).is_err() {
            add(Counter::FollowLost, 1);
        }
        return;
    };
    let bit = 1u64 << (child % 64);
    // SAFETY: a map value, valid while the program runs. Parents on other CPUs may set other
    // bits of this word at the same time, so the bit is added atomically; it is added only when
    // clear, so the add is an OR (a process id is forked once at a time).
    unsafe {
        if *word & bit == 0 {
            // The BPF target has no atomic types; the intrinsic becomes BPF's atomic add.
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(word, bit);
        }
    }
}

/// The task with id `pid` was freed (`sched_process_free`): a thread, or a process's leader,
/// which is freed only after every thread of its group. Its id leaves the set, so the
/// unrelated process the kernel may give that id to later is not traced.
///
/// The kernel frees the id a grace period before the task (seconds with lazy RCU): an untraced
/// process forked on the id in that time is taken out of the set at its fork
/// (`sched_process_fork`); a traced process's child forked on it then would lose its bit here,
/// which needs the whole id space to come round within that time. Clearing subtracts the bit
/// when it is set: kernels before 5.12 have no atomic AND, and an atomic subtract of a set bit
/// touches no other.
#[inline(always)]
pub fn forget(pid: i32) {
    if !following() || pid <= 0 {
        return;
    }
    #[expect(clippy::cast_sign_loss, reason = "checked positive")]
    let pid = pid as u32;
    match TRACED_BITS.get_ptr_mut(pid / 64) {
        Some(word) => {
            let bit = 1u64 << (pid % 64);
            // SAFETY: as in `follow`.
            unsafe {
                if *word & bit != 0 {
                    atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(word, bit.wrapping_neg());
                    add(Counter::PidsForgotten, 1);
                }
            }
        }
        None => {
            if TRACED.remove(&pid).is_ok() {
                add(Counter::PidsForgotten, 1);
            }
        }
    }
}
