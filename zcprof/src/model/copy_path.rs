//! The ledger's vocabulary: the stations payload passes, the routes between them, one path of
//! the ledger (`CopyPath`) with its evidence, and the builder every source of paths adds through.
//! A leaf: the ledger and the methods' own paths (`descriptors`, `uring`, `zerocopy`) import it,
//! it imports none of them.
use std::fmt::Write as _;

use super::{Source, copies::SampledPath, copies::Samples, fmt_bytes};
use crate::{
    collect::Counts,
    probes::{
        HookPlan,
        catalog::{Point, Variant},
    },
    workload::Method,
};

/// Where payload sits on its way from the file to the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Station {
    PageCache,
    /// The page cache as the process's mapping (mmap): a user address, the kernel's pages.
    MappedPageCache,
    UserBuffer,
    /// Somewhere in the kernel that no finer station names (a pipe, device or file written to).
    Kernel,
    SocketBuffer,
    PipeBuffer,
    /// Linear packet data, built for a device that cannot take page fragments.
    Packet,
    /// A character device's driver.
    Device,
    /// The receiving process's user buffer (zcprof's receiver or a sink).
    ReceiverUserBuffer,
}

impl Station {
    /// The name in paths, JSON and notes.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Station::PageCache => "page cache",
            Station::MappedPageCache => "mapped page cache",
            Station::UserBuffer => "user buffer",
            Station::Kernel => "kernel",
            Station::SocketBuffer => "socket buffer",
            Station::PipeBuffer => "pipe buffer",
            Station::Packet => "packet",
            Station::Device => "device",
            Station::ReceiverUserBuffer => "receiver's user buffer",
        }
    }
}

/// What a route's name adds in parentheses, where the two stations do not say all.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum How {
    Plain,
    /// Software segmentation or linearisation copying socket buffers into packets.
    Segmentation,
    /// Write-type syscalls to anything but a socket or a hooked file system.
    PipeDeviceOrFile,
    /// Reads and writes of files the kernel generates (procfs, sysfs).
    GeneratedFile,
    /// A zero-copy send the kernel copied after all, by its completions.
    MsgZerocopyCopiedAfterAll,
    SendZcCopiedAfterAll,
    /// A remote `zcprof sink`, at this address.
    Sink(String),
}

/// A copy's way from one station to another: "page cache -> socket buffer".
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    pub from: Station,
    pub to: Station,
    pub how: How,
}

impl Route {
    /// A route whose stations say all.
    #[must_use]
    pub const fn plain(from: Station, to: Station) -> Route {
        Route {
            from,
            to,
            how: How::Plain,
        }
    }

    /// A route with what it adds in parentheses.
    #[must_use]
    pub const fn with(from: Station, to: Station, how: How) -> Route {
        Route { from, to, how }
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}", self.from.name(), self.to.name())?;
        match &self.how {
            How::Plain => Ok(()),
            How::Segmentation => f.write_str(" (segmentation)"),
            How::PipeDeviceOrFile => f.write_str(" (pipe, device or file)"),
            How::GeneratedFile => f.write_str(" (generated file)"),
            How::MsgZerocopyCopiedAfterAll => f.write_str(" (MSG_ZEROCOPY, copied after all)"),
            How::SendZcCopiedAfterAll => f.write_str(" (SEND_ZC, copied after all)"),
            How::Sink(addr) => write!(f, " (zcprof sink at {addr})"),
        }
    }
}

impl serde::Serialize for Route {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One path of the ledger: the JSON `copies` entries.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CopyPath {
    /// Where the bytes were copied from and to, serialised as "page cache -> socket buffer".
    pub path: Route,
    pub bytes: u64,
    /// Bytes per transfer step.
    #[serde(serialize_with = "super::figure::number")]
    pub per_transfer: Option<f64>,
    /// How the bytes were obtained (a hooked function, a tracepoint, syscall semantics).
    pub source: String,
    pub note: String,
    /// "measured" (counted in the kernel where the copy happens), "derived" (from what the
    /// syscalls returned, with samples on the path), "unverified" (derived, too few bytes to
    /// expect a sample), "contradicted" (derived, sampling found no copy where it should have),
    /// or "reported" (by a remote `zcprof sink`, for its own copy).
    pub evidence: &'static str,
    /// Whose copy it is, by what the kernel side tied it to the process.
    pub whose: Whose,
    /// Kernel-mode samples of the process in copy routines on this path, where sampling ran.
    pub samples: Option<u64>,
    /// A derived figure that a measured source contradicts (sampling found the kernel not
    /// copying on this path): shown, but not in the sum.
    pub contradicted: bool,
    /// A short name for the table cell.
    #[serde(skip)]
    pub short: &'static str,
}

/// What ties a copy to the process it is charged to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Whose {
    /// Made in one of the process's own syscalls (or its `io_uring` work), on its own threads.
    #[default]
    Process,
    /// Packets of the process's own sockets (one it sent on, or in its file table), wherever
    /// they left: its syscalls, ACK processing in softirq, another task.
    ProcessSockets,
    /// Through the process's own descriptors of a kind the kernel side classified: pipes,
    /// character devices, generated files.
    ProcessPipes,
    ProcessDevices,
    ProcessGeneratedFiles,
    /// zcprof's built-in receiver, apart from the measured process.
    Receiver,
    /// A remote `zcprof sink`, by its own report.
    Sink,
}

/// Everything the ledger is built from.
pub struct Inputs<'a> {
    pub plan: &'a HookPlan,
    pub counts: &'a Counts,
    pub transfers: u64,
    pub method: Option<Method>,
    /// Bytes read-type and write-type syscalls returned.
    pub to_user: u64,
    pub from_user: u64,
    /// `O_DIRECT` reads from a block device: the device wrote the user buffer.
    pub dma_reads: bool,
    pub samples: &'a Samples,
    /// msg-zerocopy and io-uring-send-zc: the kernel's completion verdict.
    pub zerocopy: Option<&'a crate::workload::Verdict>,
    /// The `io_uring` methods: what their completions said.
    pub uring: Option<&'a crate::workload::UringTally>,
}

/// Below this many kernel-mode samples, the absence of copy samples on a path says nothing.
const CONTRADICTION_SAMPLES: u64 = 50;

/// Samples a path should have drawn for their absence to contradict it: none of 4.6 expected
/// comes by chance 1 time in 100.
const UNLIKELY_UNSEEN: f64 = 4.6;

/// A path a source outside the ledger (the `io_uring` completions, the descriptor kinds) proposes:
/// plain data, which the ledger's builder adds with its evidence.
pub(super) struct Proposed {
    pub route: Route,
    pub short: &'static str,
    pub bytes: u64,
    pub note: String,
    /// The copy routines' callers that confirm it when sampled.
    pub sampled: &'static [SampledPath],
    pub basis: Basis,
    pub whose: Whose,
}

/// What a proposed path rests on.
pub(super) enum Basis {
    /// Counted in the kernel on these hooks.
    Measured(Vec<String>),
    /// Derived from what the kernel answered, as `source` says; checked against sampling.
    Derived(String),
}

/// Adds paths to a ledger, each with its evidence: `ledger::build` and the methods' own paths
/// (`descriptors`, `uring`) drive it.
pub(super) struct Builder<'a> {
    pub(super) inputs: &'a Inputs<'a>,
    pub(super) paths: Vec<CopyPath>,
    /// Whose the paths added next are.
    pub(super) whose: Whose,
}

impl Builder<'_> {
    pub(super) fn hook(&self, point: Point) -> Option<String> {
        self.inputs.plan.chosen(point).map(Variant::describe)
    }

    #[expect(clippy::cast_precision_loss, reason = "per-step display")]
    fn per_step(&self, bytes: u64) -> Option<f64> {
        (self.inputs.transfers > 0).then(|| bytes as f64 / self.inputs.transfers as f64)
    }

    /// Adds a path counted in the kernel (skipped when nothing was copied on it).
    pub(super) fn measured(
        &mut self,
        path: Route,
        short: &'static str,
        bytes: u64,
        hooks: Vec<String>,
        note: String,
        sampled: &[SampledPath],
    ) {
        if bytes == 0 {
            return;
        }
        let samples = self.inputs.samples.on(sampled);
        self.paths.push(CopyPath {
            path,
            bytes,
            per_transfer: self.per_step(bytes),
            source: Source::Counted(hooks).describe(),
            note: with_samples(note, samples, self.inputs.samples),
            evidence: "measured",
            whose: self.whose,
            samples,
            contradicted: false,
            short,
        });
    }

    /// Adds a proposed path, as its own.
    pub(super) fn add(&mut self, p: Proposed) {
        let whose = std::mem::replace(&mut self.whose, p.whose);
        match p.basis {
            Basis::Measured(hooks) => {
                self.measured(p.route, p.short, p.bytes, hooks, p.note, p.sampled);
            }
            Basis::Derived(source) => {
                self.derived_from(p.route, p.short, p.bytes, p.note, p.sampled, source);
            }
        }
        self.whose = whose;
    }

    /// Adds a path derived from syscall semantics; sampling that saw many kernel samples and
    /// none copying on this path contradicts it.
    pub(super) fn derived(
        &mut self,
        path: Route,
        short: &'static str,
        bytes: u64,
        note: String,
        sampled: &[SampledPath],
    ) {
        let hooks = vec![
            self.hook(Point::SysEnter).unwrap_or_default(),
            self.hook(Point::SysExit).unwrap_or_default(),
        ];
        let source = Source::SyscallSemantics(hooks).describe();
        self.derived_from(path, short, bytes, note, sampled, source);
    }

    /// Adds a path derived from what the kernel answered (`source` says where), checked
    /// against sampling as in `derived`.
    pub(super) fn derived_from(
        &mut self,
        path: Route,
        short: &'static str,
        bytes: u64,
        note: String,
        sampled: &[SampledPath],
        source: String,
    ) {
        if bytes == 0 {
            return;
        }
        let s = self.inputs.samples;
        let samples = s.on(sampled);
        // Seeing no sample on a path says something only when the path should have drawn
        // some: with `expected` samples due, none comes with probability e^-expected (Poisson).
        let expected = s.expected(bytes);
        let unseen = samples == Some(0);
        let contradicted =
            unseen && s.kernel >= CONTRADICTION_SAMPLES && expected >= UNLIKELY_UNSEEN;
        let unverified = unseen && !contradicted;
        let mut note = with_samples(note, samples, s);
        if unverified {
            note.push_str(&format!(
                "; UNVERIFIED: copying {} takes this machine's CPU about {}, worth {expected:.2} \
                 samples, too few for their absence to say anything; counted, marked ?",
                fmt_bytes(bytes),
                super::fmt_ns_f(bytes, s.copy_rate),
            ));
        }
        if contradicted {
            note.push_str(&format!(
                "; CONTRADICTED: none of {} kernel-mode samples was in a copy routine on this path, \
                 so the kernel did not copy these bytes (e.g. /dev/zero fills a buffer without \
                 copying, /dev/null discards it); left out of the total",
                s.kernel
            ));
        }
        self.paths.push(CopyPath {
            path,
            bytes,
            per_transfer: self.per_step(bytes),
            source,
            note,
            evidence: if contradicted {
                "contradicted"
            } else if unverified {
                "unverified"
            } else {
                "derived"
            },
            whose: self.whose,
            samples,
            contradicted,
            short,
        });
    }
}

fn with_samples(mut note: String, samples: Option<u64>, s: &Samples) -> String {
    if let Some(n) = samples {
        let _ = write!(
            note,
            "; sampled: {n} of {} kernel-mode samples in copy routines on this path",
            s.kernel
        );
    }
    note
}
