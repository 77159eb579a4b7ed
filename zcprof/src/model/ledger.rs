//! The copy ledger: every copy of payload the CPU made for the measured process, by path (page
//! cache -> user buffer, user buffer -> socket buffer, page cache -> socket buffer, ...), each
//! with the evidence it rests on. Kernel-internal copies count as much as those through user
//! buffers: the note's sendfile row has "1 CPU copy (page cache -> socket buffer)". The built-in
//! receiver's own copy is kept apart.
use zcprof_common::HookedBytes;

pub use super::copy_path::Inputs;
use super::{
    Figure, Source,
    copies::SampledPath,
    copy_path::{Builder, CopyPath, How, Route, Station, Whose},
    descriptors::{self, ByKind},
    fmt_bytes, missing,
    syscalls::{self, DataPath},
};
use crate::{
    collect::Counts,
    probes::{
        HookPlan,
        catalog::{Point, Variant},
    },
    workload::Method,
};

/// The ledger of one run.
pub struct Ledger {
    pub sender: Vec<CopyPath>,
    pub receiver: Vec<CopyPath>,
}

impl Ledger {
    /// Bytes the sender's CPU copies add up to (contradicted paths left out).
    #[must_use]
    pub fn sender_bytes(&self) -> u64 {
        self.sender
            .iter()
            .filter(|p| !p.contradicted)
            .map(|p| p.bytes)
            .sum()
    }
}

/// Hooked and tracepoint bytes, summed by the data path of the syscall they were counted in.
fn by_path(counts: &Counts, path: DataPath, field: fn(&HookedBytes) -> u64) -> u64 {
    counts
        .hooked_by_syscall
        .iter()
        .filter(|(nr, _)| syscalls::data_path(&syscalls::name_of(**nr)) == path)
        .map(|(_, b)| field(b))
        .sum()
}

/// Payload in linear packet data by where it came from: the page cache (sockets fed by
/// sendfile and splice) and socket buffers that write-type syscalls had already filled. A packet
/// is charged to its socket's latest send, but carries bytes of every send it was built from: a
/// response's first packet holds the headers `write()` gave the socket and the first pages
/// sendfile gave it. What packets hold of write-type sends cannot exceed what those sends gave
/// the sockets (`sent`, where the socket sends are counted): the rest came from the page cache,
/// when in-kernel sends fed the same sockets.
fn linear_by_origin(counts: &Counts, sends_counted: bool) -> (u64, u64) {
    let in_kernel = by_path(counts, DataPath::InKernel, |h| h.xmit_linear);
    let copied_before = by_path(counts, DataPath::FromUser, |h| h.xmit_linear);
    let other = counts
        .xmit_linear_bytes
        .saturating_sub(in_kernel + copied_before);
    let again = copied_before + other;
    let fed_in_kernel = by_path(counts, DataPath::InKernel, |h| {
        h.sock_send + h.xmit_linear + h.xmit_paged
    }) > 0;
    if !(sends_counted && fed_in_kernel) {
        return (in_kernel, again);
    }
    let sent = by_path(counts, DataPath::FromUser, |h| h.sock_send);
    let excess = again.saturating_sub(sent);
    (in_kernel + excess, again - excess)
}

/// The hooks the ledger's paths rest on, where this kernel has them.
struct Hooks {
    sock_recv: Option<String>,
    direct_io: Option<String>,
    sock_send: Option<String>,
    xmit: Option<String>,
    /// ext4's write-end hooks: copies into page-cache folios.
    ext4: Vec<String>,
}

impl Hooks {
    fn of(b: &Builder<'_>) -> Hooks {
        Hooks {
            sock_recv: b.hook(Point::SockRecv),
            direct_io: b.hook(Point::DirectIo),
            sock_send: b.hook(Point::SockSend),
            xmit: b.hook(Point::NetStartXmit),
            ext4: [Point::Ext4DaWriteEnd, Point::Ext4WriteEnd]
                .into_iter()
                .filter_map(|p| b.hook(p))
                .collect(),
        }
    }
}

/// Builds the ledger: the sender's paths in the order the data flows, then the receiver's.
#[must_use]
pub fn build(inputs: &Inputs<'_>) -> Ledger {
    let mut b = Builder {
        inputs,
        paths: Vec::new(),
        whose: Whose::Process,
    };
    let hooks = Hooks::of(&b);
    let kinds = ByKind::of(inputs.counts);
    page_cache_to_user(&mut b, &hooks, kinds);
    // io-uring's reads into its registered buffer: no read-type syscall returns them.
    if inputs.method == Some(Method::IoUring)
        && let Some(tally) = inputs.uring
    {
        let path = super::uring::read_path(b.hook(Point::FilemapRead), inputs.counts, tally);
        b.add(path);
    }
    let sent_copied = user_to_socket(&mut b, &hooks, kinds);
    user_to_page_cache_and_others(&mut b, &hooks, kinds, sent_copied);
    if kinds.classified() {
        let hooks = [Point::SysEnter, Point::SysExit]
            .into_iter()
            .filter_map(|p| b.hook(p))
            .collect();
        for path in descriptors::paths(kinds, hooks) {
            b.add(path);
        }
    }
    packet_copies(&mut b, &hooks);
    b.whose = Whose::Process;
    page_cache_to_page_cache(&mut b, &hooks);
    // The measured process's own receives.
    if let Some(hook) = &hooks.sock_recv {
        b.measured(
            Route::plain(Station::SocketBuffer, Station::UserBuffer),
            "sock→user",
            inputs.counts.sock_recv_bytes,
            vec![hook.clone()],
            "bytes the measured process received from sockets (skb_copy_datagram_iter)".to_owned(),
            &[SampledPath::SocketToUser],
        );
    }
    Ledger {
        sender: b.paths,
        receiver: receiver_paths(inputs, hooks.sock_recv),
    }
}

/// Page cache -> user buffer: `filemap_read` where it can be hooked, else what read-type
/// syscalls returned less what came from sockets (and, where the kernel side classified the
/// descriptors, from pipes and devices, which have paths of their own).
fn page_cache_to_user(b: &mut Builder<'_>, hooks: &Hooks, kinds: ByKind<'_>) {
    let (inputs, counts) = (b.inputs, b.inputs.counts);
    let route = || Route::plain(Station::PageCache, Station::UserBuffer);
    if let Some(hook) = b.hook(Point::FilemapRead) {
        let bytes = by_path(counts, DataPath::ToUser, |h| h.filemap_read);
        b.measured(
            route(),
            "pc→user",
            bytes,
            vec![hook],
            "bytes filemap_read copied into user buffers during read-type syscalls".to_owned(),
            &[SampledPath::PageCacheToUser],
        );
        return;
    }
    if hooks.direct_io.is_none() && inputs.dma_reads {
        return;
    }
    let classified = kinds.classified();
    let from_sockets = if hooks.sock_recv.is_some() {
        by_path(counts, DataPath::ToUser, |h| h.sock_recv)
    } else {
        0
    };
    // O_DIRECT reads, in any process: the device wrote the user buffer (the note's "user
    // direct I/O"), measured where the file system completes them.
    let from_device = by_path(counts, DataPath::ToUser, |h| h.direct_io);
    let apart = if classified { kinds.apart(true) } else { 0 };
    let bytes = inputs
        .to_user
        .saturating_sub(from_sockets)
        .saturating_sub(from_device)
        .saturating_sub(apart);
    let less = |present: bool, text: String| if present { text } else { String::new() };
    let note = format!(
        "read-type syscalls returned {}{}{}{}; filemap_read cannot be hooked here ({}){}",
        fmt_bytes(inputs.to_user),
        less(
            hooks.sock_recv.is_some(),
            format!(", less {} copied from sockets", fmt_bytes(from_sockets))
        ),
        hooks
            .direct_io
            .as_ref()
            .map_or_else(String::new, |hook| format!(
                ", less {} the device wrote into user buffers with O_DIRECT ({hook})",
                fmt_bytes(from_device)
            )),
        less(
            classified,
            format!(
                ", less {} through pipes, devices and generated files (descriptor kinds from the \
                 kernel)",
                fmt_bytes(apart)
            )
        ),
        missing(inputs.plan, Point::FilemapRead),
        if classified {
            ""
        } else {
            ", so reads from pipes and devices would count here too"
        }
    );
    let sampled: &[SampledPath] = if classified {
        &[SampledPath::PageCacheToUser]
    } else {
        &[SampledPath::PageCacheToUser, SampledPath::PipeOrOther]
    };
    b.derived(route(), "pc→user", bytes, note, sampled);
}

/// User buffer -> socket buffer: what sockets took during write-type syscalls; for io-uring,
/// whatever its sockets took wherever (in `io_uring_enter`, task work or an io-wq worker): it
/// sends only from its registered user buffer. Returns the bytes the sockets took so.
fn user_to_socket(b: &mut Builder<'_>, hooks: &Hooks, kinds: ByKind<'_>) -> u64 {
    let (inputs, counts) = (b.inputs, b.inputs.counts);
    let sent_copied = if inputs.method == Some(Method::IoUring) {
        counts.sock_send_bytes
    } else {
        by_path(counts, DataPath::FromUser, |h| h.sock_send)
    };
    let mmap = inputs.method == Some(Method::MmapWrite);
    match &hooks.sock_send {
        // MSG_ZEROCOPY: the socket took the pages by reference; what the kernel copied after
        // all is what its completions say, checked by sampling.
        Some(hook) if inputs.zerocopy.is_some() => {
            if let Some(v) = inputs.zerocopy
                && let Some(p) = super::zerocopy::copied_path(
                    super::zerocopy::Kind::of(inputs.method),
                    v,
                    if inputs.method == Some(Method::IoUringSendZc) {
                        counts.sock_send_bytes
                    } else {
                        sent_copied
                    },
                    hook,
                    inputs.transfers,
                    inputs.samples,
                )
            {
                b.paths.push(p);
            }
        }
        Some(hook) => {
            let (from, short, what) = if mmap {
                (
                    Station::MappedPageCache,
                    "map→sock",
                    "the process's mapping of the page cache",
                )
            } else {
                (Station::UserBuffer, "user→sock", "user memory")
            };
            b.measured(
                Route::plain(from, Station::SocketBuffer),
                short,
                sent_copied,
                vec![hook.clone()],
                format!(
                    "bytes sockets took during write-type syscalls, copied from {what} into \
                     socket buffers"
                ),
                &[SampledPath::ToSocket],
            );
        }
        None if inputs.method == Some(Method::IoUring) => {
            if let Some(tally) = inputs.uring {
                b.add(super::uring::send_path(
                    tally,
                    &missing(inputs.plan, Point::SockSend),
                ));
            }
        }
        None => b.derived(
            Route::plain(Station::UserBuffer, Station::Kernel),
            "user→kernel",
            inputs.from_user.saturating_sub(if kinds.classified() {
                kinds.apart(false)
            } else {
                0
            }),
            format!(
                "write-type syscalls returned {}; socket sends cannot be counted here ({})",
                fmt_bytes(inputs.from_user),
                missing(inputs.plan, Point::SockSend)
            ),
            &[
                SampledPath::ToSocket,
                SampledPath::ToPageCache,
                SampledPath::PipeOrOther,
            ],
        ),
    }
    sent_copied
}

/// User buffer -> page cache where ext4 is hooked, and whatever write-type syscalls moved that
/// no socket or hooked file system took (pipes, devices, other file systems), where socket
/// sends are counted.
fn user_to_page_cache_and_others(
    b: &mut Builder<'_>,
    hooks: &Hooks,
    kinds: ByKind<'_>,
    sent_copied: u64,
) {
    let (inputs, counts) = (b.inputs, b.inputs.counts);
    let written_to_cache = by_path(counts, DataPath::FromUser, |h| h.page_cache_write);
    let ext4 = !hooks.ext4.is_empty();
    if ext4 {
        b.measured(
            Route::plain(Station::UserBuffer, Station::PageCache),
            "user→pc",
            written_to_cache,
            hooks.ext4.clone(),
            "bytes ext4 copied into page-cache folios during write-type syscalls".to_owned(),
            &[SampledPath::ToPageCache],
        );
    }
    if hooks.sock_send.is_none() {
        return;
    }
    // O_DIRECT writes: the device read the user buffer.
    let to_device = by_path(counts, DataPath::FromUser, |h| h.direct_io);
    let hooked = sent_copied + to_device + if ext4 { written_to_cache } else { 0 };
    // Pipes and devices have paths of their own, /dev/null copies nothing.
    let apart = if kinds.classified() {
        kinds.apart(false)
    } else {
        0
    };
    let rest = inputs.from_user.saturating_sub(hooked + apart);
    if rest <= inputs.from_user / 100 {
        return;
    }
    let (cache, other_fs) = if ext4 {
        (
            format!(
                " and {} into ext4's page cache",
                fmt_bytes(written_to_cache)
            ),
            " of other file systems".to_owned(),
        )
    } else {
        (
            String::new(),
            format!(" ({})", missing(inputs.plan, Point::Ext4DaWriteEnd)),
        )
    };
    b.derived(
        Route::with(Station::UserBuffer, Station::Kernel, How::PipeDeviceOrFile),
        "user→other",
        rest,
        format!(
            "write-type syscalls returned {}, of which {} went to sockets{cache}; the rest went to \
             pipes, devices or files{other_fs}",
            fmt_bytes(inputs.from_user),
            fmt_bytes(sent_copied),
        ),
        &[SampledPath::ToPageCache, SampledPath::PipeOrOther],
    );
}

/// Payload that left the process's sockets in linear packet data: copied by software
/// segmentation or linearisation, because the device could not take page fragments.
fn packet_copies(b: &mut Builder<'_>, hooks: &Hooks) {
    let Some(hook) = &hooks.xmit else {
        return;
    };
    let counts = b.inputs.counts;
    b.whose = Whose::ProcessSockets;
    let (in_kernel, again) = linear_by_origin(counts, hooks.sock_send.is_some());
    let context = if counts.xmit_other_context > 0 {
        format!(
            "; {} of {} packets left from ACK processing (softirq or another task), attributed by \
             their socket",
            counts.xmit_other_context, counts.xmit_packets
        )
    } else {
        String::new()
    };
    b.measured(
        Route::plain(Station::PageCache, Station::SocketBuffer),
        "pc→sock",
        in_kernel,
        vec![hook.clone()],
        format!(
            "payload of sockets fed by sendfile/splice that reached the device in linear packet \
             data: the kernel copied the page-cache pages there (software segmentation or \
             linearisation for a device without scatter-gather){context}"
        ),
        &[SampledPath::Segmentation],
    );
    b.measured(
        Route::with(Station::SocketBuffer, Station::Packet, How::Segmentation),
        "sock→pkt",
        again,
        vec![hook.clone()],
        format!(
            "payload already copied into socket buffers that software segmentation or \
             linearisation copied again into linear packet data{context}"
        ),
        &[SampledPath::Segmentation],
    );
}

/// Page cache -> page cache: a file system copying during `copy_file_range`, splice or sendfile
/// into a file (no reflink, no shared extents).
fn page_cache_to_page_cache(b: &mut Builder<'_>, hooks: &Hooks) {
    if hooks.ext4.is_empty() {
        return;
    }
    let bytes = by_path(b.inputs.counts, DataPath::InKernel, |h| h.page_cache_write);
    b.measured(
        Route::plain(Station::PageCache, Station::PageCache),
        "pc→pc",
        bytes,
        hooks.ext4.clone(),
        "bytes ext4 copied into page-cache folios during copy_file_range, splice or sendfile: the \
         file system could not share the source's pages or extents"
            .to_owned(),
        &[SampledPath::ToPageCache],
    );
}

/// zcprof's built-in receiver's own copy, apart from the sender's (a method that writes a file,
/// copy-file-range, has no receiver).
fn receiver_paths(inputs: &Inputs<'_>, sock_recv: Option<String>) -> Vec<CopyPath> {
    let (Some(hook), true) = (sock_recv, inputs.method.is_some_and(Method::uses_network)) else {
        return Vec::new();
    };
    let bytes = inputs.counts.receiver_recv_bytes;
    #[expect(clippy::cast_precision_loss, reason = "per-step display")]
    let per_transfer = (inputs.transfers > 0).then(|| bytes as f64 / inputs.transfers as f64);
    vec![CopyPath {
        path: Route::plain(Station::SocketBuffer, Station::ReceiverUserBuffer),
        bytes,
        per_transfer,
        source: Source::Counted(vec![hook]).describe(),
        note: "zcprof's receiver reading the sockets (its own process, not measured as the \
               sender): the copy on the receiving side, apart from the sender's"
            .to_owned(),
        evidence: "measured",
        whose: Whose::Receiver,
        samples: None,
        contradicted: false,
        short: "recv",
    }]
}

/// The CPU-copies figure: the sender's ledger summed, with the sources of its paths.
#[must_use]
pub fn figure(ledger: &Ledger, transfers: u64, watched: &[String]) -> Figure {
    let total = ledger.sender_bytes();
    let parts: Vec<String> = ledger
        .sender
        .iter()
        .map(|p| {
            format!(
                "{} {} ({}{})",
                p.path,
                fmt_bytes(p.bytes),
                p.evidence,
                if p.contradicted { ", contradicted" } else { "" }
            )
        })
        .collect();
    let note = if parts.is_empty() {
        format!(
            "no CPU copy of payload on any watched path (watched: {})",
            watched.join(", ")
        )
    } else {
        format!("copy ledger, by path: {}", parts.join("; "))
    };
    let mut sources: Vec<String> = Vec::new();
    for p in &ledger.sender {
        let s = format!("{}: {}", p.path, p.source);
        if !sources.contains(&s) {
            sources.push(s);
        }
    }
    let mut figure = Figure::measured(total, transfers, &Source::Ledger(sources), note);
    if ledger.sender.is_empty() {
        figure.source = Source::Ledger(watched.to_vec()).describe();
    }
    figure
}

/// The hooks the ledger watched, for a run with nothing to show.
#[must_use]
pub fn watched(plan: &HookPlan) -> Vec<String> {
    [
        Point::FilemapRead,
        Point::SockSend,
        Point::NetStartXmit,
        Point::Ext4DaWriteEnd,
        Point::SockRecv,
        Point::SysEnter,
    ]
    .into_iter()
    .filter_map(|p| plan.chosen(p).map(Variant::describe))
    .collect()
}

/// A footnote for each derived path that sampling contradicted: the table's sum leaves it out,
/// and says why here rather than only in the JSON.
#[must_use]
pub fn contradiction_notes(paths: &[CopyPath]) -> Vec<String> {
    paths
        .iter()
        .filter(|p| p.contradicted)
        .map(|p| {
            format!(
                "Syscall semantics says {} went {}, but none of the kernel-mode samples was \
                 copying on that path: the CPU did not copy these bytes, and CPU copies leaves \
                 them out (marked ✗).",
                fmt_bytes(p.bytes),
                p.path
            )
        })
        .collect()
}

/// The short names of the paths, for the table cell; a contradicted path is marked `✗` (shown,
/// not counted).
#[must_use]
pub fn short_paths(paths: &[CopyPath]) -> String {
    paths
        .iter()
        .map(|p| {
            if p.contradicted {
                format!("{}✗", p.short)
            } else if p.evidence == "unverified" {
                format!("{}?", p.short)
            } else {
                p.short.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::copies::Samples;

    /// A derived path with no sample on it: contradicted only when it should have drawn enough
    /// samples that seeing none is improbable; else unverified, counted and marked (issue 21,
    /// item 4: caddy's 512-byte sniff reads had been contradicted, dd's 6 samples had passed).
    #[test]
    fn an_unseen_path_is_contradicted_only_when_it_should_have_been_seen() {
        let counts = Counts::default();
        let plan = HookPlan::default();
        let samples = Samples {
            ran: true,
            kernel: 200,
            by_path: BTreeMap::new(),
            hz: 10_000,
            copy_rate: 10_000_000_000,
        };
        let inputs = Inputs {
            plan: &plan,
            counts: &counts,
            transfers: 1,
            method: None,
            to_user: 0,
            from_user: 0,
            dma_reads: false,
            samples: &samples,
            zerocopy: None,
            uring: None,
        };
        let mut b = Builder {
            inputs: &inputs,
            paths: Vec::new(),
            whose: Whose::Process,
        };
        let sampled = &[SampledPath::PipeOrOther];
        // 25 KiB take 2.6 µs: 0.03 samples due.
        let route = Route::plain(Station::PipeBuffer, Station::UserBuffer);
        b.derived_from(
            route.clone(),
            "s",
            25 << 10,
            String::new(),
            sampled,
            String::new(),
        );
        // 1 GiB takes 107 ms: 1,074 samples due, none seen.
        b.derived_from(route, "l", 1 << 30, String::new(), sampled, String::new());
        let (small, large) = (&b.paths[0], &b.paths[1]);
        assert_eq!(small.evidence, "unverified");
        assert!(!small.contradicted && small.note.contains("UNVERIFIED"));
        assert_eq!(large.evidence, "contradicted");
        assert!(large.contradicted);
        assert_eq!(short_paths(&b.paths), "s?, l✗");
    }

    /// issue 21, item 2: caddy over a veth without scatter-gather wrote 13,960 B of headers and
    /// sent its files with sendfile; the packets that held headers and pages together were all
    /// charged to the headers' write, 1.3 MB of "socket buffer -> packet" for 14 KB written.
    #[test]
    fn linear_packet_bytes_are_split_by_where_they_came_from() {
        let nr = |n: libc::c_long| u32::try_from(n).unwrap();
        let mut counts = Counts::default();
        counts.hooked_by_syscall.insert(
            nr(libc::SYS_write),
            HookedBytes {
                sock_send: 14_000,
                xmit_linear: 1_300_000,
                ..HookedBytes::default()
            },
        );
        counts.hooked_by_syscall.insert(
            nr(libc::SYS_sendfile),
            HookedBytes {
                sock_send: 20 << 20,
                xmit_linear: 19 << 20,
                ..HookedBytes::default()
            },
        );
        counts.xmit_linear_bytes = 1_300_000 + (19 << 20);
        let (from_cache, again) = linear_by_origin(&counts, true);
        assert_eq!(again, 14_000, "no more than write() gave the sockets");
        assert_eq!(from_cache + again, counts.xmit_linear_bytes, "nothing lost");
        // A plain read-write sender: everything its packets hold came from its writes.
        let mut counts = Counts::default();
        counts.hooked_by_syscall.insert(
            nr(libc::SYS_write),
            HookedBytes {
                sock_send: 8 << 20,
                xmit_linear: 8 << 20,
                ..HookedBytes::default()
            },
        );
        counts.xmit_linear_bytes = 8 << 20;
        assert_eq!(linear_by_origin(&counts, true), (0, 8 << 20));
    }
}
