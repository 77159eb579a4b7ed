//! Shared accounting: every hook variant of a measurement point ends up here, so a kernel that
//! forces another hook type changes where the data comes from, never what is counted.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use zcprof_common::{Counter, DiskIo, IFNAMSIZ, InFlight, MAX_SYSCALL_NR, NetXmit};

use crate::maps::{
    COUNTERS, DISK_IO, HOOKED_BY_SYSCALL, IN_FLIGHT, NET_XMIT, STACK_SAMPLES, SYSCALLS,
};

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

/// A traced task took a page fault, in user mode (`user`) or in kernel mode on its behalf.
#[inline(always)]
pub fn page_fault(user: bool) {
    add(
        if user {
            Counter::PageFaultsUser
        } else {
            Counter::PageFaultsKernel
        },
        1,
    );
}

/// A block request completed on `dev`; `op` is the first rwbs letter (R, W, D, F, ...).
#[inline(always)]
pub fn disk_io(dev: u32, bytes: u64, op: u8) {
    if DISK_IO.get_ptr_mut(&dev).is_none() {
        let _ = DISK_IO.insert(&dev, &DiskIo::default(), 0);
    }
    if let Some(io) = DISK_IO.get_ptr_mut(&dev) {
        // SAFETY: per-CPU entry.
        unsafe {
            match op {
                b'R' => (*io).read_bytes += bytes,
                b'W' => (*io).write_bytes += bytes,
                _ => (*io).other_bytes += bytes,
            }
            (*io).requests += 1;
        }
    }
}

/// A traced task handed a packet of `len` bytes to the device called `name`.
#[inline(always)]
pub fn net_xmit(name: &[u8; IFNAMSIZ], len: u64) {
    if NET_XMIT.get_ptr_mut(name).is_none() {
        let _ = NET_XMIT.insert(name, &NetXmit::default(), 0);
    }
    if let Some(x) = NET_XMIT.get_ptr_mut(name) {
        // SAFETY: per-CPU entry.
        unsafe {
            (*x).bytes += len;
            (*x).packets += 1;
        }
    }
}

/// A hooked copy routine (or `filemap_read`) returned `ret` bytes for traced thread `tid`;
/// the bytes are also kept under the syscall the thread is in.
#[inline(always)]
pub fn copied(tid: u32, slot: Counter, ret: i64) {
    if ret <= 0 {
        return;
    }
    #[expect(clippy::cast_sign_loss, reason = "checked positive")]
    let bytes = ret as u64;
    add(slot, bytes);
    // SAFETY: the value is copied out.
    let Some(nr) = (unsafe { IN_FLIGHT.get(&tid) }).map(|f| f.nr) else {
        return;
    };
    if let Some(by) = HOOKED_BY_SYSCALL.get_ptr_mut(nr) {
        // SAFETY: per-CPU entry.
        unsafe {
            match slot {
                Counter::FilemapReadBytes => (*by).filemap_read += bytes,
                Counter::CopyToIterBytes => (*by).copy_to_iter += bytes,
                Counter::SockSendBytes => (*by).sock_send += bytes,
                _ => (*by).copy_from_iter += bytes,
            }
        }
    }
}

/// A perf sample of a traced task: in user mode (`stack` is an error, there is no kernel
/// stack) or in kernel mode with the id of its stored stack.
#[inline(always)]
pub fn sample(stack: Result<i64, i32>, in_kernel: bool) {
    match stack {
        Ok(id) if id >= 0 => {
            add(Counter::SamplesKernel, 1);
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "stack ids are u32"
            )]
            let id = id as u32;
            match STACK_SAMPLES.get_ptr_mut(&id) {
                // SAFETY: per-CPU entry.
                Some(n) => unsafe { *n += 1 },
                None => {
                    let _ = STACK_SAMPLES.insert(&id, &1, 0);
                }
            }
        }
        _ if in_kernel => add(Counter::SamplesLost, 1),
        _ => add(Counter::SamplesUser, 1),
    }
}

/// A buffer was mapped for device DMA.
#[inline(always)]
pub fn dma_map() {
    add(Counter::DmaMaps, 1);
}

/// One more event of a plain counter.
#[inline(always)]
pub fn count(slot: Counter) {
    add(slot, 1);
}
