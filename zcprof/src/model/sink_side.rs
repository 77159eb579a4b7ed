//! A remote sink's side of a run: the copy its reads made, and what draining cost it.
use super::{
    copy_path::{CopyPath, How, Route, Station, Whose},
    fmt_bytes,
};
use crate::sink::SinkReport;

/// The receiving copy a remote sink reported: every byte its `read()` calls returned crossed from
/// a socket buffer into its user buffer.
pub(super) fn sink_copy(sink: &SinkReport, addr: &str, transfers: u64) -> CopyPath {
    let bytes: u64 = sink.received.iter().sum();
    CopyPath {
        path: Route::with(
            Station::SocketBuffer,
            Station::ReceiverUserBuffer,
            How::Sink(addr.to_owned()),
        ),
        bytes,
        #[expect(clippy::cast_precision_loss, reason = "per-step display")]
        per_transfer: (transfers > 0).then(|| bytes as f64 / transfers as f64),
        source: "reported by the sink: bytes its read() calls returned (syscall semantics) and \
                 getrusage(RUSAGE_THREAD) of its draining threads"
            .to_owned(),
        note: format!(
            "{}; the copy on the receiving side, apart from the sender's",
            sink_costs(sink)
        ),
        evidence: "reported",
        whose: Whose::Sink,
        samples: None,
        contradicted: false,
        short: "recv",
    }
}

/// What a remote sink says it spent draining the streams.
pub(super) fn sink_costs(sink: &SinkReport) -> String {
    #[expect(clippy::cast_precision_loss, reason = "display precision")]
    let ms = |ns: u64| ns as f64 / 1e6;
    format!(
        "{} received in {} reads, {:.1} ms CPU ({:.1} ms user, {:.1} ms system), {} voluntary and \
         {} involuntary switches of its draining threads, {:.1} ms from first byte to last (kernel \
         {})",
        fmt_bytes(sink.received.iter().sum()),
        sink.reads,
        ms(sink.user_ns + sink.system_ns),
        ms(sink.user_ns),
        ms(sink.system_ns),
        sink.voluntary_switches,
        sink.involuntary_switches,
        ms(sink.elapsed_ns),
        sink.kernel
    )
}
