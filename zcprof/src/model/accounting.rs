//! What the kernel side could not count, and the per-process rows: returns without an entry,
//! full in-kernel tables, the others' row, and the trace ring's losses.
use crate::collect::Counts;

/// Syscall returns without a seen entry, by cause, and events lost because an in-kernel table
/// was full. Each non-zero one also has a note.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Accounting {
    /// Returns of syscalls in progress when measuring began (a workload's process waiting to be
    /// released, a blocked thread of an attached process): not counted as calls.
    pub returns_before_start: u64,
    /// New threads' and processes' first returns to user mode, from the fork or clone their
    /// parent made: not counted as calls.
    pub new_task_returns: u64,
    /// Syscalls refused before entry, so that only their return was seen (a seccomp filter
    /// returning an errno): counted as calls and errors of their syscall, and as one entry and
    /// one return each, as strace counts them.
    pub refused_syscalls: u64,
    /// Syscall entries the in-flight table had no room for (their time is missing, their return
    /// may be counted as refused).
    pub in_flight_lost: u64,
    /// Events of followed processes missing from the per-process rows.
    pub processes_lost: u64,
    /// Processes beyond the per-process table's capacity: their totals are in its "others" row
    /// (pid 0), so the rows still add up.
    pub processes_folded: u64,
    /// Children of traced processes that could not be followed.
    pub follow_lost: u64,
    /// Block requests and packets not counted per device.
    pub devices_lost: u64,
    /// Sockets of traced processes whose packets could not be attributed.
    pub sockets_lost: u64,
    /// Kernel-mode samples whose stack could not be stored.
    pub samples_lost: u64,
    /// Program runs the kernel skipped, by program, non-zero only: a run of the same program
    /// was preempted on that CPU (syscall tracepoints run preemptible on kernels with full or
    /// lazy preemption). Any task's syscalls there, the measured ones among them, went unseen.
    pub programs_skipped: std::collections::BTreeMap<String, u64>,
}

/// One process of a followed tree, counted in the kernel by its tgid.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProcessRow {
    pub pid: u32,
    pub name: String,
    /// Syscall entries (user->kernel mode switches through the syscall path).
    pub syscalls: u64,
    pub context_switches_voluntary: u64,
    pub context_switches_involuntary: u64,
    pub page_faults_user: u64,
    pub page_faults_kernel: u64,
    /// Bytes the hooked copy routines moved for it (0 where they cannot be hooked).
    pub hooked_copy_bytes: u64,
    pub sock_send_bytes: u64,
}

/// Events recorded for the trace, and those lost for want of ring-buffer room, per CPU.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TraceSummary {
    pub events: u64,
    pub lost: u64,
    pub lost_per_cpu: Vec<u64>,
    /// Events written after `--trace-limit` was reached: counted, not kept in the file.
    pub over_limit: u64,
}

pub(super) fn accounting(counts: &Counts) -> Accounting {
    Accounting {
        returns_before_start: counts.returns_before_start,
        new_task_returns: counts.new_task_returns,
        refused_syscalls: counts.refused_syscalls,
        in_flight_lost: counts.in_flight_lost,
        processes_lost: counts.processes_lost,
        processes_folded: counts.processes_folded,
        follow_lost: counts.follow_lost,
        devices_lost: counts.devices_lost,
        sockets_lost: counts.sockets_lost,
        samples_lost: counts.samples_lost,
        programs_skipped: counts.program_misses.clone(),
    }
}

/// Notes on returns without an entry and on events lost to full in-kernel tables.
pub(super) fn accounting_notes(a: &Accounting) -> Vec<String> {
    let refused = (a.refused_syscalls > 0).then(|| {
        format!(
            "{} syscalls were refused before entry (a seccomp filter returning an errno stops a \
             call before sys_enter fires; sys_exit still fires): each is counted as a call and an \
             error of its syscall, and as one entry and one return, as strace counts them.",
            a.refused_syscalls
        )
    });
    let folded = (a.processes_folded > 0).then(|| {
        format!(
            "The per-process table holds {} processes: {} more were summed in its \"others\" row \
             (pid 0), so the rows still add up to the totals.",
            PROCESS_ROWS - 1,
            a.processes_folded
        )
    });
    [
        refused,
        uncounted_returns(a),
        tables_full(a),
        programs_skipped(a),
        folded,
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Returns without an entry of their own, which are not calls of the measured window.
fn uncounted_returns(a: &Accounting) -> Option<String> {
    let mut uncounted = Vec::new();
    if a.returns_before_start > 0 {
        uncounted.push(format!(
            "{} of syscalls in progress when measuring began",
            a.returns_before_start
        ));
    }
    if a.new_task_returns > 0 {
        uncounted.push(format!(
            "{} first returns of new threads or processes (from the clone or fork their parent \
             made)",
            a.new_task_returns
        ));
    }
    (!uncounted.is_empty()).then(|| {
        format!(
            "Returns without an entry of their own, not counted as calls: {}.",
            uncounted.join("; ")
        )
    })
}

/// The in-kernel tables that were full, and what is missing for it.
fn tables_full(a: &Accounting) -> Option<String> {
    let lost: Vec<String> = [
        (
            a.in_flight_lost,
            "syscall entries (in-flight table: their time is missing and their return may be \
             counted as a refused call)",
        ),
        (
            a.processes_lost,
            "events of followed processes (per-process table: missing from their rows)",
        ),
        (
            a.follow_lost,
            "children of traced processes that were not followed (traced-process table)",
        ),
        (
            a.devices_lost,
            "block requests or packets (device tables: missing from the device rows)",
        ),
        (
            a.sockets_lost,
            "sockets whose packets were not attributed (socket table)",
        ),
    ]
    .into_iter()
    .filter(|&(n, _)| n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    (!lost.is_empty()).then(|| {
        format!(
            "In-kernel tables were full, so some events are missing from the figures: {}.",
            lost.join("; ")
        )
    })
}

/// Runs of zcprof's programs the kernel skipped (recursion protection), by program.
fn programs_skipped(a: &Accounting) -> Option<String> {
    if a.programs_skipped.is_empty() {
        return None;
    }
    let total: u64 = a.programs_skipped.values().sum();
    let by: Vec<String> = a
        .programs_skipped
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    Some(format!(
        "The kernel skipped {total} runs of zcprof's programs ({}): a program is not run on a \
         CPU where a run of it is still in progress (preempted: the syscall tracepoints run \
         preemptible on kernels with full or lazy preemption), nor a classic tracepoint or \
         perf-event program while another one runs there (interrupted by a softirq), so \
         those events went unseen, the measured process's or another's. A skipped sys_enter \
         shows as a call refused before entry, a skipped sys_exit as a call that never \
         returned; the figures those programs feed are off by at most these counts.",
        by.join(", ")
    ))
}

/// The per-process rows of a followed tree, busiest first.
pub(super) fn process_rows(counts: &Counts) -> Vec<ProcessRow> {
    use zcprof_common::OTHER_PROCESSES;
    let mut rows: Vec<ProcessRow> = counts
        .processes
        .iter()
        // The others' row exists from the start; it is shown once something went there.
        .filter(|&(&pid, p)| {
            pid != OTHER_PROCESSES || p.syscalls > 0 || counts.processes_folded > 0
        })
        .map(|(&pid, p)| ProcessRow {
            pid: if pid == OTHER_PROCESSES { 0 } else { pid },
            name: if pid == OTHER_PROCESSES {
                format!(
                    "others ({} processes beyond the table's {} rows)",
                    counts.processes_folded,
                    PROCESS_ROWS - 1
                )
            } else {
                p.name.clone()
            },
            syscalls: p.syscalls,
            context_switches_voluntary: p.voluntary_switches,
            context_switches_involuntary: p.involuntary_switches,
            page_faults_user: p.page_faults_user,
            page_faults_kernel: p.page_faults_kernel,
            hooked_copy_bytes: p.copied_bytes,
            sock_send_bytes: p.sock_send_bytes,
        })
        .collect();
    // Busiest first, the others' row (pid 0) last.
    rows.sort_by(|a, b| {
        (a.pid == 0)
            .cmp(&(b.pid == 0))
            .then(b.syscalls.cmp(&a.syscalls))
            .then(a.pid.cmp(&b.pid))
    });
    rows
}

/// Entries of the kernel side's per-process table (`PROCS`), the others' row included.
pub const PROCESS_ROWS: usize = 4096;

pub(super) fn trace_summary(counts: &Counts) -> Option<TraceSummary> {
    let lost: u64 = counts.trace_lost.iter().sum();
    (counts.trace_events > 0 || lost > 0).then(|| TraceSummary {
        events: counts.trace_events,
        lost,
        lost_per_cpu: counts.trace_lost.clone(),
        over_limit: counts.trace_over_limit,
    })
}
