//! Zero-copy sends in the copy ledger (`MSG_ZEROCOPY`, and `io_uring`'s `SEND_ZC`, which uses the
//! same socket machinery): the socket takes the user pages pinned, by reference, and the kernel
//! may copy them later anyway (on local delivery, `skb_orphan_frags_rx` -> `skb_copy_ubufs`; or
//! at send, when the route has no scatter-gather). Its own verdict comes back in the
//! completions: `SO_EE_CODE_ZEROCOPY_COPIED` on the socket's error queue, or
//! `IORING_NOTIF_USAGE_ZC_COPIED` in `io_uring`'s notification CQEs.
use std::fmt::Write as _;

use super::{
    copies::{SampledPath, Samples},
    copy_path::{CopyPath, How, Route, Station, Whose},
    fmt_bytes,
};
use crate::workload::Verdict;

/// From this many kernel-mode samples on, the absence of copy samples is worth a word.
const TELLING_SAMPLES: u64 = 50;

/// Which zero-copy interface asked, and so where its verdict came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    MsgZerocopy,
    SendZc,
}

impl Kind {
    /// The interface of `method` (msg-zerocopy's unless it is io-uring-send-zc).
    #[must_use]
    pub fn of(method: Option<crate::workload::Method>) -> Kind {
        if method == Some(crate::workload::Method::IoUringSendZc) {
            Kind::SendZc
        } else {
            Kind::MsgZerocopy
        }
    }

    /// The ledger's name of the path.
    #[must_use]
    pub fn path(self) -> Route {
        match self {
            Kind::MsgZerocopy => Route::with(
                Station::UserBuffer,
                Station::SocketBuffer,
                How::MsgZerocopyCopiedAfterAll,
            ),
            Kind::SendZc => Route::with(
                Station::UserBuffer,
                Station::SocketBuffer,
                How::SendZcCopiedAfterAll,
            ),
        }
    }

    fn request(self) -> &'static str {
        match self {
            Kind::MsgZerocopy => "MSG_ZEROCOPY",
            Kind::SendZc => "IORING_OP_SEND_ZC",
        }
    }

    fn copied_flag(self) -> &'static str {
        match self {
            Kind::MsgZerocopy => "SO_EE_CODE_ZEROCOPY_COPIED",
            Kind::SendZc => "IORING_NOTIF_USAGE_ZC_COPIED",
        }
    }

    fn verdict_source(self) -> &'static str {
        match self {
            Kind::MsgZerocopy => {
                "derived from the kernel's MSG_ZEROCOPY completions (SO_EE_CODE_ZEROCOPY_COPIED, \
                 read from the socket's error queue by the sender) and the sends' return values; \
                 checked against sampled kernel stacks"
            }
            Kind::SendZc => {
                "derived from the kernel's IORING_OP_SEND_ZC notification CQEs \
                 (IORING_NOTIF_USAGE_ZC_COPIED, asked for with IORING_SEND_ZC_REPORT_USAGE) and \
                 the sends' results; checked against sampled kernel stacks"
            }
        }
    }
}

/// The ledger entry for the bytes of `MSG_ZEROCOPY` sends that the kernel said it copied (none
/// when it copied none). `sent` is what the sockets took during the sends, counted at `hook`.
#[must_use]
pub fn copied_path(
    kind: Kind,
    verdict: &Verdict,
    sent: u64,
    hook: &str,
    transfers: u64,
    samples: &Samples,
) -> Option<CopyPath> {
    let bytes = verdict.copied_bytes;
    if bytes == 0 {
        return None;
    }
    let on_path = samples.on(&[SampledPath::DeferredZerocopy, SampledPath::ToSocket]);
    // The kernel's own verdict is not overruled by sampling: only the sender's threads are
    // sampled, and the deferred copy runs where the packet is delivered, which over a veth to
    // another namespace is often outside them (softirq on the receiving side; on Debian's 6.1
    // VM, 0 of 1,567 samples while the kernel marked 128 of 128 sends copied).
    let unseen = on_path == Some(0) && samples.kernel >= TELLING_SAMPLES;
    let mut note = format!(
        "the kernel's completions marked {} of {} {} sends {}: their {} were copied out of the \
         pinned user pages after all ({} taken by the sockets in all, counted at {hook})",
        verdict.copied,
        verdict.sends,
        kind.request(),
        kind.copied_flag(),
        fmt_bytes(bytes),
        fmt_bytes(sent)
    );
    if let Some(n) = on_path {
        let _ = write!(
            note,
            "; sampled: {n} of {} kernel-mode samples copying in skb_copy_ubufs or a sendmsg",
            samples.kernel
        );
    }
    if unseen {
        note.push_str(
            "; no sample of the sender's threads was copying there: the deferred copy runs where \
             the packet is delivered, which can be outside them, so the kernel's word stands",
        );
    }
    #[expect(clippy::cast_precision_loss, reason = "per-step display")]
    Some(CopyPath {
        path: kind.path(),
        bytes,
        per_transfer: (transfers > 0).then(|| bytes as f64 / transfers as f64),
        source: kind.verdict_source().to_owned(),
        note,
        evidence: "derived",
        whose: Whose::Process,
        samples: on_path,
        contradicted: false,
        short: match kind {
            Kind::MsgZerocopy => "user→sock(zc copied)",
            Kind::SendZc => "user→sock(send_zc copied)",
        },
    })
}

/// The footnote: what was asked, what the kernel answered, what was measured.
#[must_use]
#[expect(clippy::cast_precision_loss, reason = "display precision")]
pub fn note(
    kind: Kind,
    verdict: &Verdict,
    device: Option<&str>,
    block_size: u64,
    transfers: u64,
    samples: &Samples,
) -> String {
    let on = device.map_or_else(String::new, |d| format!(" over {d}"));
    let per_step = if transfers > 0 {
        verdict.copied_bytes as f64 / transfers as f64 / block_size.max(1) as f64
    } else {
        0.0
    };
    let seen = match samples.on(&[SampledPath::DeferredZerocopy]) {
        Some(n) if n > 0 => format!(
            " Sampling saw the copy itself: {n} of {} kernel-mode samples in skb_copy_ubufs, the \
             deferred copy the kernel makes when a zerocopy packet is delivered to a local socket \
             (skb_orphan_frags_rx), so that a receiver cannot hold the sender's pages for ever.",
            samples.kernel
        ),
        Some(_) => format!(
            " Sampling found no sample in skb_copy_ubufs ({} kernel-mode samples).",
            samples.kernel
        ),
        None => String::new(),
    };
    format!(
        "{}{on}: requested for {} sends of {} (the sockets pinned the user pages and took them \
         by reference); the kernel's verdict in {} completion notification(s): {} of {} ids \
         copied ({}), {} sent by reference: {per_step:.2} block copies per step on this \
         path.{seen}{}",
        kind.request(),
        verdict.sends,
        fmt_bytes(verdict.copied_bytes + verdict.zerocopy_bytes),
        verdict.notifications,
        verdict.copied,
        verdict.completed,
        kind.copied_flag(),
        fmt_bytes(verdict.zerocopy_bytes),
        if verdict.enobufs > 0 {
            format!(
                " {} sends were refused with ENOBUFS (too many completions outstanding) and sent \
                 again after reading completions.",
                verdict.enobufs
            )
        } else {
            String::new()
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(copied: u64, sends: u64) -> Verdict {
        Verdict {
            sends,
            completed: sends,
            copied,
            copied_bytes: copied << 16,
            zerocopy_bytes: (sends - copied) << 16,
            notifications: 1,
            enobufs: 0,
        }
    }

    fn samples(kernel: u64, in_copy: u64) -> Samples {
        Samples {
            ran: true,
            kernel,
            by_path: [(SampledPath::DeferredZerocopy, in_copy)].into(),
            // Copying as slowly as 1 MB/s: every path here is worth many samples.
            hz: 10_000,
            copy_rate: 1_000_000,
        }
    }

    #[test]
    fn the_copied_sends_are_the_path_and_the_zero_copied_are_not() {
        let p = copied_path(
            Kind::MsgZerocopy,
            &verdict(128, 128),
            128 << 16,
            "tp",
            128,
            &samples(10, 2),
        )
        .unwrap();
        assert_eq!(p.bytes, 128 << 16);
        assert_eq!(p.per_transfer, Some(65536.0));
        assert!(!p.contradicted);
        assert_eq!(p.samples, Some(2));
        let none = copied_path(
            Kind::MsgZerocopy,
            &verdict(0, 128),
            128 << 16,
            "tp",
            128,
            &samples(10, 0),
        );
        assert!(none.is_none(), "a send by reference is no copy");
        let half = copied_path(
            Kind::MsgZerocopy,
            &verdict(64, 128),
            128 << 16,
            "tp",
            128,
            &samples(10, 1),
        )
        .unwrap();
        assert_eq!(half.bytes, 64 << 16);
    }

    #[test]
    fn send_zc_names_its_own_flag_and_path() {
        let kind = Kind::of(Some(crate::workload::Method::IoUringSendZc));
        assert_eq!(kind, Kind::SendZc);
        let p = copied_path(kind, &verdict(4, 4), 4 << 16, "tp", 4, &samples(10, 1)).unwrap();
        assert!(
            p.path.to_string().contains("SEND_ZC")
                && p.note.contains("IORING_NOTIF_USAGE_ZC_COPIED")
        );
        let n = note(kind, &verdict(4, 4), None, 65536, 4, &samples(10, 1));
        assert!(
            n.starts_with("IORING_OP_SEND_ZC: requested for 4 sends"),
            "{n}"
        );
        assert_eq!(Kind::of(None), Kind::MsgZerocopy);
    }

    #[test]
    fn many_samples_and_none_copying_leave_the_kernels_verdict_standing() {
        let p = copied_path(
            Kind::MsgZerocopy,
            &verdict(8, 8),
            8 << 16,
            "tp",
            8,
            &samples(500, 0),
        )
        .unwrap();
        assert!(!p.contradicted);
        assert!(p.note.contains("the kernel's word stands"), "{}", p.note);
        let n = note(
            Kind::MsgZerocopy,
            &verdict(8, 8),
            Some("lo"),
            65536,
            8,
            &samples(500, 0),
        );
        assert!(
            n.contains("8 of 8 ids copied") && n.contains("over lo"),
            "{n}"
        );
    }

    #[test]
    fn sampling_finds_the_deferred_copy_by_its_caller() {
        let frames: Vec<String> = [
            "memcpy",
            "skb_copy_ubufs",
            "__netif_receive_skb_core",
            "tcp_sendmsg_locked",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            super::super::copies::sampled_path(&frames),
            Some(SampledPath::DeferredZerocopy)
        );
    }
}
