//! Which tasks are traced. Runs first in every program: tracepoints fire for every task on the
//! machine, so bystanders must pay as little as one helper call and one compare.
use aya_ebpf::{Global, helpers::bpf_get_current_pid_tgid};

use crate::maps::{TRACED, TRACED_BITS};

/// The process (thread group) being measured; set by the loader before load.
#[unsafe(no_mangle)]
static TARGET_TGID: Global<u32> = Global::new(0);

/// Non-zero: also trace the processes in `TRACED` (descendants forked while measured). Off for
/// the built-in workloads, so bystanders pay one compare, not a hash lookup.
#[unsafe(no_mangle)]
static FOLLOW: Global<u32> = Global::new(0);

/// Returns the current thread id when the current task belongs to a traced process.
#[inline(always)]
pub fn traced_tid() -> Option<u32> {
    traced().map(|(_, tid)| tid)
}

/// Returns the current (tgid, tid) when the current task belongs to a traced process.
#[inline(always)]
pub fn traced() -> Option<(u32, u32)> {
    let id = bpf_get_current_pid_tgid();
    #[expect(
        clippy::cast_possible_truncation,
        reason = "the upper half is the tgid"
    )]
    let (tgid, tid) = ((id >> 32) as u32, id as u32);
    let target = TARGET_TGID.load();
    if target != 0 && tgid == target {
        return Some((tgid, tid));
    }
    if FOLLOW.load() != 0 {
        let member = match TRACED_BITS.get(tgid / 64) {
            Some(word) => *word & (1 << (tgid % 64)) != 0,
            // SAFETY: only the presence of the key is used.
            None => unsafe { TRACED.get(&tgid) }.is_some(),
        };
        if member {
            return Some((tgid, tid));
        }
    }
    None
}

/// The measured process.
#[inline(always)]
pub fn target_tgid() -> u32 {
    TARGET_TGID.load()
}

/// Whether descendants are followed.
#[inline(always)]
pub fn following() -> bool {
    FOLLOW.load() != 0
}

/// Non-zero: every accounted event is also written to the `EVENTS` ring buffer (`--trace`).
/// A read-only global, so the verifier drops the trace code when it is off.
#[unsafe(no_mangle)]
static TRACE: Global<u32> = Global::new(0);

/// Whether events are recorded.
#[inline(always)]
pub fn tracing() -> bool {
    TRACE.load() != 0
}

/// The built-in workload's receiver (zcprof's own process), whose socket -> user copies are
/// counted apart from the measured process's; 0 when there is none (exec, attach).
#[unsafe(no_mangle)]
static RECEIVER_TGID: Global<u32> = Global::new(0);

/// The receiver's process id (0: none).
#[inline(always)]
pub fn receiver_tgid() -> u32 {
    RECEIVER_TGID.load()
}
