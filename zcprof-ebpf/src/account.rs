//! Shared accounting: every hook variant of a measurement point ends up here, so a kernel that
//! forces another hook type changes where the data comes from, never what is counted.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use zcprof_common::{Counter, InFlight, MAX_SYSCALL_NR};

use crate::maps::{COUNTERS, IN_FLIGHT, SYSCALLS};

#[inline(always)]
fn add(slot: Counter, n: u64) {
    if let Some(p) = COUNTERS.get_ptr_mut(slot as u32) {
        // SAFETY: per-CPU slot, and eBPF programs do not nest on one CPU for these hooks.
        unsafe { *p += n };
    }
}

/// Remembers the first and last traced event on this CPU, so the measured window is the
/// kernel's own clock from the first entry to the last return.
#[inline(always)]
fn stamp(now: u64) {
    if let Some(first) = COUNTERS.get_ptr_mut(Counter::FirstEventNs as u32) {
        // SAFETY: per-CPU slot.
        unsafe {
            if *first == 0 {
                *first = now;
            }
        }
    }
    if let Some(last) = COUNTERS.get_ptr_mut(Counter::LastEventNs as u32) {
        // SAFETY: per-CPU slot.
        unsafe { *last = now };
    }
}

/// A traced thread entered the kernel through a syscall.
#[inline(always)]
pub fn syscall_enter(tid: u32, nr: i64) {
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    add(Counter::SyscallEntries, 1);
    stamp(now);
    if nr < 0 || nr >= i64::from(MAX_SYSCALL_NR) {
        return;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "bounded above"
    )]
    let nr = nr as u32;
    if let Some(stat) = SYSCALLS.get_ptr_mut(nr) {
        // SAFETY: per-CPU entry.
        unsafe { (*stat).count += 1 };
    }
    let entry = InFlight {
        start_ns: now,
        nr,
        pad: 0,
    };
    if IN_FLIGHT.insert(&tid, &entry, 0).is_err() {
        add(Counter::InFlightLost, 1);
    }
}

/// A traced thread returns to user space from a syscall.
#[inline(always)]
pub fn syscall_exit(tid: u32, ret: i64) {
    // SAFETY: the value is copied out before the entry is removed.
    let Some(entry) = (unsafe { IN_FLIGHT.get(&tid) }).copied() else {
        add(Counter::UnmatchedReturns, 1);
        return;
    };
    let _ = IN_FLIGHT.remove(&tid);
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    add(Counter::SyscallReturns, 1);
    stamp(now);
    if let Some(stat) = SYSCALLS.get_ptr_mut(entry.nr) {
        // SAFETY: per-CPU entry.
        unsafe {
            (*stat).total_ns += now.wrapping_sub(entry.start_ns);
            if ret < 0 {
                (*stat).errors += 1;
            } else {
                #[expect(clippy::cast_sign_loss, reason = "checked non-negative")]
                let ret = ret as u64;
                (*stat).ret_sum = (*stat).ret_sum.wrapping_add(ret);
            }
        }
    }
}

/// The scheduler switches a traced task off its CPU.
#[inline(always)]
pub fn context_switch(voluntary: bool) {
    if voluntary {
        add(Counter::VoluntarySwitches, 1);
    } else {
        add(Counter::InvoluntarySwitches, 1);
    }
}
