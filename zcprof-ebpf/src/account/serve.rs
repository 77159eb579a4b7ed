//! The always-on accounting of `zcprof serve` and `zcprof top`: which tasks are counted (a
//! process, a cgroup, a list of process names, or all) and their totals by process name (serve)
//! or by process and name (top, `SERVE_BY_PROCESS`). Nothing here runs at syscall entry or
//! return: every caller is a data-path hook.
use aya_ebpf::maps::LruPerCpuHashMap;
use aya_ebpf::{
    Global,
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid},
};
use zcprof_common::serve::{COMM_LEN, ServeLost, ServeOwner, ServeStat};

use crate::maps::{
    SERVE_COMMS, SERVE_HOW, SERVE_LOST, SERVE_NICS, SERVE_PROCS, SERVE_SOCKS, SERVE_STATS,
};

/// `--pid`: the one process counted (0: any).
#[unsafe(no_mangle)]
static SERVE_PID: Global<u32> = Global::new(0);
/// `--cgroup`: the cgroup v2 id the task must be in (0: any).
#[unsafe(no_mangle)]
static SERVE_CGROUP: Global<u64> = Global::new(0);
/// Non-zero: only the names in `SERVE_COMMS` are counted (`--comm`).
#[unsafe(no_mangle)]
static SERVE_BY_COMM: Global<u32> = Global::new(0);
/// Non-zero: totals by process and name in `SERVE_PROCS` (`zcprof top`), else by name in
/// `SERVE_STATS` (`zcprof serve`).
#[unsafe(no_mangle)]
static SERVE_BY_PROCESS: Global<u32> = Global::new(0);

/// How the socket took the bytes of the send in progress, by thread (see `SERVE_HOW`); none
/// once the send returned.
const HOW_NONE: u8 = 0;
const HOW_COPIED: u8 = 1;
const HOW_BY_REFERENCE: u8 = 2;
const HOW_ZEROCOPY: u8 = 3;

/// `MSG_SPLICE_PAGES` (include/linux/socket.h, 6.5+): the message's pages are to be taken by
/// reference; sendfile, splice and vmsplice+splice send this way.
const MSG_SPLICE_PAGES: u32 = 0x0800_0000;
/// `MSG_ZEROCOPY` (include/linux/socket.h): pin the sender's pages instead of copying them, if
/// the socket and the route allow it; io_uring's `SEND_ZC` sets it too.
const MSG_ZEROCOPY: u32 = 0x0400_0000;

/// The current task's process id.
#[inline(always)]
fn tgid() -> u32 {
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the upper half is the tgid"
    )]
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    tgid
}

/// The current task as an owner: its process and name.
#[inline(always)]
fn current() -> Option<ServeOwner> {
    Some(ServeOwner {
        tgid: tgid(),
        comm: bpf_get_current_comm().ok()?,
    })
}

/// The current task when the selector takes it. The cheap checks go first: a bystander of
/// `--pid` pays one helper call.
#[inline(always)]
pub fn selected() -> Option<ServeOwner> {
    let pid = SERVE_PID.load();
    let tgid = tgid();
    if pid != 0 && tgid != pid {
        return None;
    }
    let cgroup = SERVE_CGROUP.load();
    // SAFETY: a helper without arguments.
    if cgroup != 0 && unsafe { bpf_get_current_cgroup_id() } != cgroup {
        return None;
    }
    let comm = bpf_get_current_comm().ok()?;
    // SAFETY: only the presence of the key is used.
    if SERVE_BY_COMM.load() != 0 && unsafe { SERVE_COMMS.get(&comm) }.is_none() {
        return None;
    }
    Some(ServeOwner { tgid, comm })
}

/// Applies `f` to this CPU's totals of `owner`: by process and name for top, by name for serve.
#[inline(always)]
fn update(owner: &ServeOwner, f: impl FnOnce(&mut ServeStat)) {
    if SERVE_BY_PROCESS.load() != 0 {
        update_in(&SERVE_PROCS, owner, f);
    } else {
        update_in(&SERVE_STATS, &owner.comm, f);
    }
}

/// Applies `f` to this CPU's totals of `key` in `map`, making them on first use.
#[inline(always)]
fn update_in<K>(map: &LruPerCpuHashMap<K, ServeStat>, key: &K, f: impl FnOnce(&mut ServeStat)) {
    let stat = match map.get_ptr_mut(key) {
        Some(stat) => stat,
        None => {
            // Another CPU may make it first (EEXIST): the lookup below finds it either way.
            let _ = map.insert(key, &ServeStat::default(), u64::from(BPF_NOEXIST));
            let Some(stat) = map.get_ptr_mut(key) else {
                lost(ServeLost::CommTableFull);
                return;
            };
            stat
        }
    };
    // SAFETY: this CPU's copy of a map value.
    f(unsafe { &mut *stat });
}

/// Counts an event that could not be kept, on this CPU.
#[inline(always)]
fn lost(why: ServeLost) {
    if let Some(n) = SERVE_LOST.get_ptr_mut(why as u32) {
        // SAFETY: per-CPU slot.
        unsafe { *n += 1 };
    }
}

/// The current thread's id.
#[inline(always)]
fn tid() -> u32 {
    #[expect(clippy::cast_possible_truncation, reason = "the lower half is the tid")]
    let tid = bpf_get_current_pid_tgid() as u32;
    tid
}

/// TCP is building packets for the current thread's send, whose message flags `flags` reads
/// (only for a selected task: the read is a helper call): remembered until the send returns
/// (`sent`), which says how many bytes the socket took.
#[inline(always)]
pub fn tcp_sending(flags: impl FnOnce() -> Option<u32>) {
    if selected().is_none() {
        return;
    }
    let Some(msg_flags) = flags() else {
        return;
    };
    let how = if msg_flags & MSG_SPLICE_PAGES != 0 {
        HOW_BY_REFERENCE
    } else if msg_flags & MSG_ZEROCOPY != 0 {
        HOW_ZEROCOPY
    } else {
        HOW_COPIED
    };
    let tid = tid();
    // Written in place: an LRU insert takes a lock and a free-list node, a lookup does not, and
    // a sending thread keeps its entry from send to send. A thread that dies leaves an entry
    // that ages out of the LRU.
    match SERVE_HOW.get_ptr_mut(&tid) {
        // SAFETY: a map value, valid while the program runs.
        Some(slot) => unsafe {
            if *slot != how {
                *slot = how;
            }
        },
        None => {
            let _ = SERVE_HOW.insert(&tid, &how, 0);
        }
    }
}

/// A send on socket `sk` returned `ret`. Only TCP sends were marked by `tcp_sending`; others
/// (UDP, Unix sockets) pass.
#[inline(always)]
pub fn sent(sk: u64, ret: i32) {
    // Only a thread `tcp_sending` took (selected, on TCP) has a mark: any other pays this one
    // lookup.
    let Some(slot) = SERVE_HOW.get_ptr_mut(&tid()) else {
        return;
    };
    // SAFETY: a map value, valid while the program runs; consumed, so that a later non-TCP
    // send of the thread is not taken for TCP.
    let how = unsafe { core::mem::replace(&mut *slot, HOW_NONE) };
    if how == HOW_NONE || ret <= 0 {
        return;
    }
    let Some(owner) = current() else {
        return;
    };
    #[expect(clippy::cast_sign_loss, reason = "checked positive")]
    let bytes = ret as u64;
    update(&owner, |s| match how {
        HOW_BY_REFERENCE => s.send_by_reference += bytes,
        HOW_ZEROCOPY => s.send_zerocopy += bytes,
        _ => s.send_copied += bytes,
    });
    // The socket's packets are this owner's wherever they leave (softirq, another task).
    // SAFETY: the value is compared, not kept.
    if unsafe { SERVE_SOCKS.get(&sk) } != Some(&owner)
        && SERVE_SOCKS.insert(&sk, &owner, 0).is_err()
    {
        lost(ServeLost::SocketTableFull);
    }
}

/// The owner of socket `sk`: whoever last sent on it (none for a socket no counted task sent
/// on).
#[inline(always)]
pub fn socket_owner(sk: u64) -> Option<ServeOwner> {
    // SAFETY: copied out.
    unsafe { SERVE_SOCKS.get(&sk) }.copied()
}

/// Socket `sk` closed: it has no owner any more.
#[inline(always)]
pub fn socket_closed(sk: u64) {
    let _ = SERVE_SOCKS.remove(&sk);
}

/// A packet of `owner`'s socket of `len` bytes, `linear` of its TCP payload in linear data, is
/// handed to device `device`: the linear payload is counted wherever it goes, the packet when
/// the device is a physical NIC (user space fills `SERVE_NICS`).
#[inline(always)]
pub fn xmit(owner: &ServeOwner, device: &[u8; COMM_LEN], len: u32, linear: u64) {
    // SAFETY: only the presence of the key is used.
    let nic = unsafe { SERVE_NICS.get(device) }.is_some();
    if !nic && linear == 0 {
        return;
    }
    update(owner, |s| {
        s.packet_linear += linear;
        if nic {
            s.nic_packets += 1;
            s.nic_bytes += u64::from(len);
        }
    });
}

/// `bytes` were copied from a socket buffer to the current task's memory.
#[inline(always)]
pub fn received(bytes: i32) {
    if bytes <= 0 {
        return;
    }
    if let Some(owner) = selected() {
        #[expect(clippy::cast_sign_loss, reason = "checked positive")]
        update(&owner, |s| s.recv_copied += bytes as u64);
    }
}

/// The current task issued a block request of `bytes`; `write` tells its direction.
#[inline(always)]
pub fn disk(bytes: u32, write: bool) {
    if let Some(owner) = selected() {
        update(&owner, |s| {
            if write {
                s.disk_written += u64::from(bytes);
            } else {
                s.disk_read += u64::from(bytes);
            }
        });
    }
}

/// The current task is switched off its CPU.
#[inline(always)]
pub fn switched() {
    if let Some(owner) = selected() {
        update(&owner, |s| s.switches += 1);
    }
}
