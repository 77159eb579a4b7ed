//! Per-process totals of a followed tree: the measured process's own in its CPU slot, others
//! in `PROCS`, folded into one row when the table is full.
use zcprof_common::{Counter, OTHER_PROCESSES, OnCpu, ProcStat};

use super::{add, current_tgid, now, on_cpu};
use crate::{
    filter::{following, target_tgid},
    maps::{FOLDED, PROCS},
    task,
};

/// Updates process `tgid`'s totals (the current process), when following a process tree.
#[inline(always)]
pub(crate) fn per_process(tgid: u32, update: impl FnOnce(&mut ProcStat)) {
    if !following() {
        return;
    }
    if tgid == target_tgid() {
        if let Some(on) = on_cpu() {
            update(target_stat(on, tgid));
        }
        return;
    }
    other_process(tgid, update);
}

/// `per_process` for a caller that has this CPU's slot already.
#[inline(always)]
pub(super) fn per_process_on(on: &mut OnCpu, tgid: u32, update: impl FnOnce(&mut ProcStat)) {
    if !following() {
        return;
    }
    if tgid == target_tgid() {
        update(target_stat(on, tgid));
    } else {
        other_process(tgid, update);
    }
}

/// The measured process's totals on this CPU, named the first time they are used here.
#[inline(always)]
pub(super) fn target_stat(on: &mut OnCpu, tgid: u32) -> &mut ProcStat {
    let p = &mut on.target;
    if p.comm[0] == 0 {
        name(p, tgid);
    }
    p
}

/// Names process `tgid`'s totals on this CPU, from the process itself: only when it is the
/// current process (a packet of its socket may leave while another task runs, and that task's
/// name is not its own). Until then the totals stay unnamed. Once per process and CPU, in the
/// end: kept out of line (a BPF subprogram), so the hot path's code stays small.
#[inline(never)]
pub(super) fn name(p: &mut ProcStat, tgid: u32) {
    p.tgid = tgid;
    if current_tgid() == tgid {
        p.comm = task::process_comm();
        p.named_ns = now();
    }
}

/// Makes the `PROCS` entry of process `tgid`, named if it is the current one. Once per process
/// and CPU: out of line.
#[inline(never)]
pub(super) fn add_process(tgid: u32) {
    let mut fresh = ProcStat::default();
    name(&mut fresh, tgid);
    // A full table: `other_process` folds the process into the others' row.
    let _ = PROCS.insert(&tgid, &fresh, 0);
}

/// Totals of a process the table had no room for, summed in the `OTHER_PROCESSES` row. Out of
/// line: only processes beyond the table's capacity come here.
#[inline(never)]
pub(super) fn fold_process(tgid: u32) -> Option<*mut ProcStat> {
    // SAFETY: the value is not kept.
    if unsafe { FOLDED.get(&tgid) }.is_none() {
        let _ = FOLDED.insert(&tgid, &1, 0);
        add(Counter::ProcessesFolded, 1);
    }
    let others = PROCS.get_ptr_mut(&OTHER_PROCESSES);
    if others.is_none() {
        // User space did not make the row: say that these events are missing.
        add(Counter::ProcessesLost, 1);
    }
    others
}

/// Totals of a process other than the measured one, in the `PROCS` hash map.
#[inline(always)]
pub(super) fn other_process(tgid: u32, update: impl FnOnce(&mut ProcStat)) {
    if PROCS.get_ptr_mut(&tgid).is_none() {
        add_process(tgid);
    }
    if let Some(p) = PROCS.get_ptr_mut(&tgid).or_else(|| fold_process(tgid)) {
        // SAFETY: per-CPU entry.
        let p = unsafe { &mut *p };
        if p.comm[0] == 0 && p.tgid == tgid {
            name(p, tgid);
        }
        update(p);
    }
}
