//! Trace emission: one `TraceEvent` per event into the ring buffer, with `--trace`.
use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id},
};
use zcprof_common::{Counter, EventKind, IFNAMSIZ, TraceEvent};

use super::add;
use crate::maps::EVENTS;

/// Which name an event carries.
pub(crate) enum Name<'a> {
    None,
    /// The current task's command name.
    Comm,
    Given(&'a [u8; IFNAMSIZ]),
}

/// Writes one trace event. The consumer polls, so no wakeup is sent (a wakeup per event would
/// cost more than the event). A full ring buffer is counted per CPU, never silent.
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "the fields of one record")]
pub(crate) fn emit(
    kind: EventKind,
    ts: u64,
    start: u64,
    value: i64,
    arg: u32,
    aux: u32,
    name: Name<'_>,
) {
    emit_for(
        bpf_get_current_pid_tgid(),
        kind,
        ts,
        start,
        value,
        arg,
        aux,
        name,
    );
}

/// `emit` for a caller that already knows the current task's pid_tgid (`id`).
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "the fields of one record")]
pub(crate) fn emit_for(
    id: u64,
    kind: EventKind,
    ts: u64,
    start: u64,
    value: i64,
    arg: u32,
    aux: u32,
    name: Name<'_>,
) {
    // bpf_ringbuf_reserve takes no flags; the wakeup choice is made at submit.
    let Some(mut entry) = EVENTS.reserve::<TraceEvent>(0) else {
        add(Counter::TraceLost, 1);
        return;
    };
    #[expect(clippy::cast_possible_truncation, reason = "the halves of pid_tgid")]
    let event = TraceEvent {
        ts_ns: ts,
        start_ns: start,
        value,
        tgid: (id >> 32) as u32,
        tid: id as u32,
        kind: kind as u32,
        arg,
        aux,
        // SAFETY: helper without preconditions.
        cpu: unsafe { bpf_get_smp_processor_id() },
        name: match name {
            Name::None => [0; IFNAMSIZ],
            Name::Comm => bpf_get_current_comm().unwrap_or([0; IFNAMSIZ]),
            Name::Given(n) => *n,
        },
    };
    entry.write(event);
    entry.submit(u64::from(BPF_RB_NO_WAKEUP));
    add(Counter::TraceEvents, 1);
}
