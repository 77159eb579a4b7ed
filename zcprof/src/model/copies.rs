//! CPU copy evidence beyond syscall semantics: bytes returned by hooked copy routines, and the
//! share of sampled kernel time spent in copy routines. Disagreements with syscall semantics
//! are reported, not hidden.
use std::collections::BTreeMap;

use super::{
    Figure, FigureId, Figures, Source, fmt_bytes, hook,
    syscalls::{self, DataPath},
};
use crate::{
    collect::Counts,
    probes::{HookPlan, catalog::Point},
};

/// Kernel functions whose own time is copying bytes (the `rep movs` of `copy_to/from_user` is
/// inlined into the `iov_iter` routines, or lives in `rep_movs_alternative`).
const COPY_ROUTINES: &[&str] = &[
    "_copy_to_iter",
    "_copy_from_iter",
    "_copy_from_iter_nocache",
    // 5.10's wrapper for a copy that must be whole (tcp_sendmsg's).
    "_copy_from_iter_full",
    "_copy_from_iter_flushcache",
    "copy_page_to_iter",
    "copy_page_from_iter",
    "copy_page_from_iter_atomic",
    "_copy_to_user",
    "_copy_from_user",
    "rep_movs_alternative",
    "copy_user_generic_string",
    "copy_user_enhanced_fast_string",
    "copy_user_generic_unrolled",
    "__copy_user_nocache",
    "__copy_user_flushcache",
    "memcpy",
    "__memcpy",
    "memcpy_orig",
    "memmove",
    "__memmove",
    "copy_page",
    "copy_mc_to_user",
    "copy_mc_to_kernel",
    "csum_partial_copy_generic",
    "__arch_copy_to_user",
    "__arch_copy_from_user",
];

/// The path a sampled copy was on, from its caller chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SampledPath {
    /// Under `filemap_read` (or 5.10's `generic_file_buffered_read`): page cache -> user.
    PageCacheToUser,
    /// Under a socket's sendmsg: user (or page cache) -> socket buffer.
    ToSocket,
    /// Under software segmentation or linearisation: into linear packet data.
    Segmentation,
    /// Under a file system's buffered write: into the page cache.
    ToPageCache,
    /// Under a socket receive: socket buffer -> user.
    SocketToUser,
    /// Under `skb_copy_ubufs`: `MSG_ZEROCOPY` pages copied after all (local delivery).
    DeferredZerocopy,
    /// Pipes and anything else.
    PipeOrOther,
}

/// Caller functions that name a path, checked from the leaf up: the first match wins (a
/// segmentation inside a sendmsg is segmentation).
const PATH_CALLERS: &[(&str, SampledPath)] = &[
    ("skb_copy_ubufs", SampledPath::DeferredZerocopy),
    ("skb_copy_bits", SampledPath::Segmentation),
    ("skb_segment", SampledPath::Segmentation),
    ("__skb_linearize", SampledPath::Segmentation),
    ("__pskb_pull_tail", SampledPath::Segmentation),
    ("skb_copy_datagram_iter", SampledPath::SocketToUser),
    ("tcp_recvmsg_locked", SampledPath::SocketToUser),
    ("generic_perform_write", SampledPath::ToPageCache),
    ("iomap_write_iter", SampledPath::ToPageCache),
    ("shmem_file_write_iter", SampledPath::ToPageCache),
    ("filemap_read", SampledPath::PageCacheToUser),
    ("generic_file_buffered_read", SampledPath::PageCacheToUser),
    ("shmem_file_read_iter", SampledPath::PageCacheToUser),
    ("tcp_sendmsg_locked", SampledPath::ToSocket),
    ("unix_stream_sendmsg", SampledPath::ToSocket),
    ("udp_sendmsg", SampledPath::ToSocket),
    ("tcp_sendpage", SampledPath::ToSocket),
];

/// The path of a copy sample (stack leaf first), or `None` when it was not copying.
#[must_use]
pub fn sampled_path(frames: &[String]) -> Option<SampledPath> {
    if !frames.first().is_some_and(|leaf| is_copy_routine(leaf)) {
        return None;
    }
    Some(
        frames
            .iter()
            .find_map(|f| {
                PATH_CALLERS
                    .iter()
                    .find(|(name, _)| name == f)
                    .map(|(_, p)| *p)
            })
            .unwrap_or(SampledPath::PipeOrOther),
    )
}

/// Kernel-mode samples of the measured process, by the copy path they were on.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    /// Sampling ran.
    pub ran: bool,
    pub kernel: u64,
    pub by_path: BTreeMap<SampledPath, u64>,
    /// Samples per second of the measured threads' CPU time.
    pub hz: u64,
    /// Bytes per second this machine's CPU copies (`copy_rate`): how long copying some bytes
    /// takes, so how many samples it should draw.
    pub copy_rate: u64,
}

impl Samples {
    /// Sorts the sampled stacks by path.
    #[must_use]
    pub fn from_counts(plan: &HookPlan, counts: &Counts) -> Samples {
        let mut by_path = BTreeMap::new();
        for (frames, n) in &counts.kernel_stacks {
            if let Some(p) = sampled_path(frames) {
                *by_path.entry(p).or_default() += n;
            }
        }
        Samples {
            ran: plan.chosen(Point::CopySample).is_some(),
            kernel: counts.samples_kernel,
            by_path,
            hz: plan.sample_hz,
            // The rate the run measured, so a trace re-renders with the same verdicts.
            copy_rate: if plan.copy_rate > 0 {
                plan.copy_rate
            } else {
                copy_rate()
            },
        }
    }

    /// Samples a path of `bytes` copied should have drawn: the time copying them takes at this
    /// machine's copy rate, times the sampling frequency.
    #[must_use]
    #[expect(clippy::cast_precision_loss, reason = "an expectation")]
    pub fn expected(&self, bytes: u64) -> f64 {
        if self.copy_rate == 0 {
            return 0.0;
        }
        bytes as f64 / self.copy_rate as f64 * self.hz as f64
    }

    /// Samples on any of `paths` (`None` when sampling did not run).
    #[must_use]
    pub fn on(&self, paths: &[SampledPath]) -> Option<u64> {
        self.ran
            .then(|| paths.iter().filter_map(|p| self.by_path.get(p)).sum())
    }
}

/// Bytes per second this machine's CPU copies, measured once per process: the fastest of a few
/// copies of a 16 MiB buffer (larger than the caches, as payload is), in user space, where the
/// kernel's copy routines run at about the same speed (`rep movsb`, or the same loop).
#[must_use]
pub fn copy_rate() -> u64 {
    static RATE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *RATE.get_or_init(|| {
        const SIZE: usize = 16 << 20;
        let from = vec![1u8; SIZE];
        let mut to = vec![0u8; SIZE];
        let best = (0..4)
            .map(|_| {
                let start = std::time::Instant::now();
                to.copy_from_slice(std::hint::black_box(&from));
                std::hint::black_box(&to);
                start.elapsed()
            })
            .min()
            .unwrap_or_default();
        u64::try_from(SIZE as u128 * 1_000_000_000 / best.as_nanos().max(1)).unwrap_or(u64::MAX)
    })
}

/// True when `name` is a copy routine.
pub fn is_copy_routine(name: &str) -> bool {
    COPY_ROUTINES.contains(&name)
}

/// "leaf <- first caller that is not a copy routine", for a stack stored leaf first.
fn copy_path(frames: &[String]) -> Option<String> {
    let leaf = frames.first()?;
    if !is_copy_routine(leaf) {
        return None;
    }
    let caller = frames.iter().find(|f| !is_copy_routine(f));
    Some(caller.map_or_else(|| leaf.clone(), |c| format!("{leaf} <- {c}")))
}

/// Figures from hooks and samples; `semantic_bytes` is the syscall-semantics copy figure they
/// are checked against.
pub fn figures(
    plan: &HookPlan,
    counts: &Counts,
    transfers: u64,
    semantic_bytes: u64,
    figures: &mut Figures,
    notes: &mut Vec<String>,
) {
    hooked(plan, counts, transfers, semantic_bytes, figures, notes);
    sampled(plan, counts, semantic_bytes, figures, notes);
}

fn hooked(
    plan: &HookPlan,
    counts: &Counts,
    transfers: u64,
    semantic_bytes: u64,
    figures: &mut Figures,
    notes: &mut Vec<String>,
) {
    let mut one = |key, point, value, what: &str| {
        let figure = match plan.chosen(point) {
            Some(v) => {
                Figure::measured(value, transfers, &Source::Counted(vec![v.describe()]), what)
            }
            None => Figure::unavailable(super::missing(plan, point)),
        };
        figures.insert(key, figure);
    };
    // filemap_read serves read() (a copy into the user buffer) and, on kernels before 6.5,
    // splice reads too (page references into a pipe, no copy): split by the syscall.
    let by_syscall: Vec<(String, u64)> = counts
        .hooked_by_syscall
        .iter()
        .filter(|(_, b)| b.filemap_read > 0)
        .map(|(&nr, b)| (syscalls::name_of(nr), b.filemap_read))
        .collect();
    let to_user: u64 = by_syscall
        .iter()
        .filter(|(name, _)| syscalls::data_path(name) == DataPath::ToUser)
        .map(|(_, b)| b)
        .sum();
    let breakdown = by_syscall
        .iter()
        .map(|(name, b)| format!("{} in {name}", fmt_bytes(*b)))
        .collect::<Vec<_>>()
        .join(", ");
    one(
        FigureId::FilemapReadBytes,
        Point::FilemapRead,
        counts.filemap_read_bytes,
        &format!(
            "bytes filemap_read returned, by syscall: {}",
            if breakdown.is_empty() {
                "none"
            } else {
                &breakdown
            }
        ),
    );
    one(
        FigureId::PageCacheToUserBytes,
        Point::FilemapRead,
        to_user,
        "bytes filemap_read copied from the page cache into user buffers (during read-type syscalls)",
    );
    one(
        FigureId::CopyToIterBytes,
        Point::CopyToIter,
        counts.copy_to_iter_bytes,
        "bytes _copy_to_iter copied out of the kernel (to user memory or another iov_iter)",
    );
    one(
        FigureId::CopyFromIterBytes,
        Point::CopyFromIter,
        counts.copy_from_iter_bytes,
        "bytes _copy_from_iter copied into the kernel (from user memory or another iov_iter)",
    );
    // The socket's own count, split by the syscall it happened in: TCP copies what write-type
    // syscalls hand it into socket buffers; sendfile/splice hand it page references.
    let sock = |path: DataPath| -> u64 {
        counts
            .hooked_by_syscall
            .iter()
            .filter(|(nr, _)| syscalls::data_path(&syscalls::name_of(**nr)) == path)
            .map(|(_, b)| b.sock_send)
            .sum()
    };
    one(
        FigureId::SocketCopyBytes,
        Point::SockSend,
        sock(DataPath::FromUser),
        "bytes sockets took during write-type syscalls: copied from user memory into socket buffers",
    );
    one(
        FigureId::SocketSpliceBytes,
        Point::SockSend,
        sock(DataPath::InKernel),
        "bytes sockets took during sendfile/splice: page-cache pages passed by reference where the \
         device has scatter-gather (before 6.5 sendfile bypasses this hook: 0)",
    );
    iov_iter_check(plan, counts, transfers, semantic_bytes, figures, notes);
}

/// With both directions hooked, the kernel's own `iov_iter` copy routines check the ledger: a
/// figure of their own, and a note where they differ from syscall semantics by over 5 %.
fn iov_iter_check(
    plan: &HookPlan,
    counts: &Counts,
    transfers: u64,
    semantic_bytes: u64,
    figures: &mut Figures,
    notes: &mut Vec<String>,
) {
    let (Some(to), Some(from)) = (
        plan.chosen(Point::CopyToIter),
        plan.chosen(Point::CopyFromIter),
    ) else {
        return;
    };
    let hooked = counts.copy_to_iter_bytes + counts.copy_from_iter_bytes;
    figures.insert(
        FigureId::IovIterCopyBytes,
        Figure::measured(
            hooked,
            transfers,
            &Source::Counted(vec![to.describe(), from.describe()]),
            format!(
                "{} copied out of and {} into the kernel by its iov_iter copy routines (user \
                 buffers and iov_iters of pages; not segmentation copies); syscall semantics \
                 gives {}",
                fmt_bytes(counts.copy_to_iter_bytes),
                fmt_bytes(counts.copy_from_iter_bytes),
                fmt_bytes(semantic_bytes)
            ),
        ),
    );
    #[expect(clippy::cast_precision_loss, reason = "ratio")]
    let off = hooked.abs_diff(semantic_bytes) as f64 / hooked.max(semantic_bytes).max(1) as f64;
    if off > 0.05 {
        notes.push(format!(
            "The hooked iov_iter copy routines counted {} where syscall semantics gives {}: the \
             kernel copied {} than the syscalls' user buffers suggest.",
            fmt_bytes(hooked),
            fmt_bytes(semantic_bytes),
            if hooked > semantic_bytes {
                "more"
            } else {
                "less"
            }
        ));
    }
}

fn sampled(
    plan: &HookPlan,
    counts: &Counts,
    semantic_bytes: u64,
    figures: &mut Figures,
    notes: &mut Vec<String>,
) {
    if plan.chosen(Point::CopySample).is_none() {
        figures.insert(
            FigureId::CopyCpuShare,
            Figure::unavailable(super::missing(plan, Point::CopySample)),
        );
        return;
    }
    let source = Source::Sampled(vec![format!(
        "{} at {} Hz",
        hook(plan, Point::CopySample),
        plan.sample_hz
    )]);
    let kernel = counts.samples_kernel;
    if kernel == 0 {
        figures.insert(
            FigureId::CopyCpuShare,
            Figure::unavailable(format!(
                "no kernel-mode sample ({} user-mode): the run was too short for {} Hz sampling",
                counts.samples_user, plan.sample_hz
            )),
        );
        return;
    }
    // Without CAP_SYSLOG (CAP_BPF and CAP_PERFMON alone) /proc/kallsyms shows zero addresses:
    // no frame gets a name, and a share computed from that would read as "no copy".
    let named = counts.kernel_stacks.iter().any(|(frames, _)| {
        frames
            .iter()
            .any(|f| !f.starts_with("0x") && !f.starts_with('['))
    });
    if !named {
        figures.insert(
            FigureId::CopyCpuShare,
            Figure::unavailable(format!(
                "{kernel} kernel-mode samples, but no frame could be named: /proc/kallsyms shows \
                 zero addresses to this process (it needs root or CAP_SYSLOG)"
            )),
        );
        return;
    }
    let mut paths: BTreeMap<String, u64> = BTreeMap::new();
    let mut copying = 0;
    for (frames, n) in &counts.kernel_stacks {
        if let Some(path) = copy_path(frames) {
            copying += n;
            *paths.entry(path).or_default() += n;
        }
    }
    let mut top: Vec<_> = paths.into_iter().collect();
    top.sort_by_key(|p| std::cmp::Reverse(p.1));
    #[expect(clippy::cast_precision_loss, reason = "ratio")]
    let share = copying as f64 / kernel as f64;
    let top_text = top
        .iter()
        .take(3)
        .map(|(p, n)| format!("{p} {}%", n * 100 / kernel))
        .collect::<Vec<_>>()
        .join(", ");
    let note = format!(
        "{copying} of {kernel} kernel-mode samples were in a copy routine ({} user-mode, {} lost){}",
        counts.samples_user,
        counts.samples_lost,
        if top_text.is_empty() {
            String::new()
        } else {
            format!("; top: {top_text}")
        }
    );
    let mut figure = Figure::scalar(share, &source, note);
    figure.estimate = Some(super::figure::Estimate::wilson(copying, kernel));
    figures.insert(FigureId::CopyCpuShare, figure);
    if semantic_bytes == 0 && share > 0.10 {
        notes.push(format!(
            "Sampling found the kernel copying for {:.0}% of its time although no byte crossed a user \
             buffer: these copies are kernel-internal ({top_text}).",
            share * 100.0
        ));
    } else if semantic_bytes > 0 && copying == 0 && kernel >= 50 {
        notes.push(format!(
            "Syscall semantics counts {} of user-buffer copies, yet none of {kernel} kernel samples was \
             in a known copy routine: the copy routine may have another name on this kernel.",
            fmt_bytes(semantic_bytes)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_paths_name_the_caller() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            copy_path(&s(&[
                "rep_movs_alternative",
                "_copy_to_iter",
                "copy_page_to_iter",
                "filemap_read"
            ])),
            Some("rep_movs_alternative <- filemap_read".to_owned())
        );
        assert_eq!(
            copy_path(&s(&["_copy_from_iter", "tcp_sendmsg_locked"])),
            Some("_copy_from_iter <- tcp_sendmsg_locked".to_owned())
        );
        assert_eq!(
            copy_path(&s(&["tcp_sendmsg_locked", "_copy_from_iter"])),
            None
        );
        assert_eq!(copy_path(&[]), None);
    }
}
