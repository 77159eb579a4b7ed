//! `io_uring` in the report: the copy its fixed-buffer reads make (no read syscall returns those
//! bytes: the completions do), and the notes on where its work ran and what one mode switch
//! stands for when a single `io_uring_enter` submits and reaps a batch.
use super::{
    copies::SampledPath,
    copy_path::{Basis, Proposed, Route, Station, Whose},
    fmt_bytes,
};
use crate::{
    collect::Counts,
    workload::{Method, UringTally},
};

/// Kernel functions that only io-wq workers (`iou-wrk-*`) run: a sampled stack holding one was
/// taken in a worker, not in the submitting thread.
const IO_WQ_FRAMES: &[&str] = &["io_wq_worker", "io_worker_handle_work", "io_wq_submit_work"];

/// How the completions' figures are known: the sender read them off its completion queue.
const FROM_COMPLETIONS: &str = "derived from the results of the io_uring completions (CQE res), \
                                read by the sender; checked against sampled kernel stacks";

/// io-uring's page cache -> user buffer path: what its `READ_FIXED` completions put in the
/// registered buffer, measured at `filemap_read` where it can be hooked (`hook`: all of the
/// process's `filemap_read`, it reads nothing else), else derived from the completions.
pub(super) fn read_path(hook: Option<String>, counts: &Counts, tally: &UringTally) -> Proposed {
    let (bytes, note, basis) = match hook {
        Some(hook) => (
            counts.filemap_read_bytes,
            format!(
                "bytes filemap_read copied for IORING_OP_READ_FIXED into the registered buffer, in \
                 io_uring_enter or an io-wq worker ({} completions returned {})",
                tally.reads,
                fmt_bytes(tally.read_bytes)
            ),
            Basis::Measured(vec![hook]),
        ),
        None => (
            tally.read_bytes,
            format!(
                "{} IORING_OP_READ_FIXED completions returned {} read into the registered user \
                 buffer; filemap_read cannot be hooked here, and no read syscall carries these \
                 bytes",
                tally.reads,
                fmt_bytes(tally.read_bytes)
            ),
            Basis::Derived(FROM_COMPLETIONS.to_owned()),
        ),
    };
    Proposed {
        route: Route::plain(Station::PageCache, Station::UserBuffer),
        short: "pc→user",
        bytes,
        note,
        sampled: &[SampledPath::PageCacheToUser],
        basis,
        whose: Whose::Process,
    }
}

/// Bytes `io_uring` requests moved through user memory (its reads into the registered buffer and
/// its sends from user memory), which no read or write syscall returns.
pub(super) fn user_bytes(method: Option<Method>, tally: Option<&UringTally>) -> u64 {
    match (method, tally) {
        (Some(Method::IoUringSplice), _) | (_, None) => 0,
        (_, Some(t)) => t.read_bytes + t.sent_bytes,
    }
}

/// io-uring's user buffer -> socket buffer path where no socket send can be counted: the bytes
/// its `SEND` completions returned.
pub(super) fn send_path(tally: &UringTally, missing: &str) -> Proposed {
    Proposed {
        route: Route::plain(Station::UserBuffer, Station::SocketBuffer),
        short: "user→sock",
        bytes: tally.sent_bytes,
        note: format!(
            "IORING_OP_SEND completions returned {} sent from the registered user buffer; \
             socket sends cannot be counted here ({missing})",
            fmt_bytes(tally.sent_bytes)
        ),
        sampled: &[SampledPath::ToSocket],
        basis: Basis::Derived(FROM_COMPLETIONS.to_owned()),
        whose: Whose::Process,
    }
}

/// The release's major and minor version ("6.18.44-fc" -> (6, 18)).
fn version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Kernel-mode samples taken in io-wq workers.
fn io_wq_samples(counts: &Counts) -> u64 {
    counts
        .kernel_stacks
        .iter()
        .filter(|(frames, _)| frames.iter().any(|f| IO_WQ_FRAMES.contains(&f.as_str())))
        .map(|(_, n)| n)
        .sum()
}

/// The notes of an `io_uring` run: the batch a mode switch covers, and where the work ran.
#[must_use]
#[expect(clippy::cast_precision_loss, reason = "display precision")]
pub(super) fn notes(
    method: Method,
    tally: &UringTally,
    counts: &Counts,
    transfers: u64,
    kernel: &str,
) -> Vec<String> {
    let per_enter = tally.submitted as f64 / tally.enters.max(1) as f64;
    let mut notes = Vec::new();
    if version(kernel).is_some_and(|v| v < (5, 12)) {
        // Before 5.12 (which brought create_io_thread), io-wq workers
        // were kernel threads (io_wqe_worker-*) of kthreadd, not threads of the process.
        notes.push(format!(
            "io_uring on {kernel}: the io-wq workers are kernel threads (io_wqe_worker-*), not \
             threads of the measured process (they are since 5.12), so the work io_uring hands \
             them (every IORING_OP_SPLICE, blocking reads and sends) is not counted in this row."
        ));
    }
    notes.push(format!(
        "{} io_uring_enter calls submitted {} requests and reaped {} completions \
         ({per_enter:.1} requests per call, {:.2} calls per step): a mode switch here covers a \
         batch of operations, not one.",
        tally.enters,
        tally.submitted,
        tally.completions,
        tally.enters as f64 / transfers.max(1) as f64,
    ));
    // Said in the same words for every io_uring method, so compare shows it once.
    notes.push(
        "io_uring's work runs inline in io_uring_enter, in task work on the submitting thread, \
         or in the process's io-wq workers (iou-wrk-*); those are threads of the measured \
         process (the kernel creates them with create_io_thread, which does not fire \
         sched_process_fork, so they are caught by their thread group, not followed as forks), \
         and their scheduler switches, copies and samples count with it; the perf events on its \
         threads (cpu-clock sampling, task-clock) are inherited by them in copy_process, as \
         their samples below show."
            .to_owned(),
    );
    let in_workers = io_wq_samples(counts);
    if counts.samples_kernel > 0 {
        notes.push(format!(
            "{in_workers} of {} kernel-mode samples were taken in io_uring's io-wq workers \
             (io_wq_worker on the stack).",
            counts.samples_kernel
        ));
    }
    match method {
        Method::IoUring => notes.push(format!(
            "IORING_OP_READ_FIXED copies page cache -> the registered user buffer \
             (registration pins the pages once, so no per-call pinning, but the bytes are copied \
             as read() copies them), and IORING_OP_SEND copies user buffer -> socket buffer as \
             send() does: {} read, {} sent, two CPU copies per byte.{}",
            fmt_bytes(tally.read_bytes),
            fmt_bytes(tally.sent_bytes),
            if tally.cancelled > 0 {
                format!(
                    " {} linked sends were cancelled after a short read and sent again.",
                    tally.cancelled
                )
            } else {
                String::new()
            }
        )),
        Method::IoUringSplice => notes.push(format!(
            "IORING_OP_SPLICE always runs in an io-wq worker (the kernel never \
             tries it inline), which splices as splice() does: page-cache page references into \
             the pipe, then on to the socket; {} spliced in, {} out, no copy where the device \
             has scatter-gather.",
            fmt_bytes(tally.spliced_bytes),
            fmt_bytes(tally.sent_bytes)
        )),
        _ => {}
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally() -> UringTally {
        UringTally {
            enters: 128,
            submitted: 256,
            completions: 256,
            reads: 128,
            read_bytes: 8 << 20,
            sent_bytes: 8 << 20,
            spliced_bytes: 0,
            cancelled: 0,
        }
    }

    #[test]
    fn a_mode_switch_covers_a_batch_and_workers_samples_are_counted() {
        let counts = Counts {
            samples_kernel: 10,
            kernel_stacks: vec![
                (
                    [
                        "memcpy",
                        "splice_to_socket",
                        "io_wq_submit_work",
                        "io_wq_worker",
                    ]
                    .map(str::to_owned)
                    .to_vec(),
                    7,
                ),
                (vec!["io_cqring_wait".to_owned()], 3),
            ],
            ..Counts::default()
        };
        let notes = notes(Method::IoUringSplice, &tally(), &counts, 128, "6.18.4");
        assert!(
            notes[0].contains("2.0 requests per call, 1.00 calls per step"),
            "{}",
            notes[0]
        );
        assert!(notes[0].contains("covers a batch"));
        assert!(notes[1].contains("io-wq workers"), "{}", notes[1]);
        assert!(
            notes[2].contains("7 of 10 kernel-mode samples"),
            "{}",
            notes[2]
        );
        assert!(notes[3].starts_with("IORING_OP_SPLICE"), "{}", notes[3]);
    }

    #[test]
    fn before_5_12_the_workers_are_not_the_process() {
        let old = notes(
            Method::IoUring,
            &tally(),
            &Counts::default(),
            128,
            "5.10.209",
        );
        assert!(old[0].contains("not counted in this row"), "{}", old[0]);
        let new = notes(
            Method::IoUring,
            &tally(),
            &Counts::default(),
            128,
            "6.1.0-18",
        );
        assert!(!new[0].contains("not counted in this row"));
        assert_eq!(version("6.12.7+deb13"), Some((6, 12)));
    }

    #[test]
    fn only_reads_and_sends_from_user_memory_cross_a_user_buffer() {
        let t = tally();
        assert_eq!(user_bytes(Some(Method::IoUring), Some(&t)), 16 << 20);
        assert_eq!(user_bytes(Some(Method::IoUringSplice), Some(&t)), 0);
        assert_eq!(user_bytes(Some(Method::IoUring), None), 0);
    }
}
