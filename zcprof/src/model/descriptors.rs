//! Copies through descriptors that are neither sockets nor regular files: what read- and
//! write-type syscalls moved through pipes, character devices and generated files, by the kind
//! the kernel side read off each descriptor's inode at the syscall's return. A pipe read is a
//! copy (pipe buffer -> user buffer); a `/dev/zero` read clears the buffer and a `/dev/null`
//! write discards it, so neither copies payload.
use std::collections::BTreeMap;

use zcprof_common::FdKind;

use super::{
    copies::SampledPath,
    copy_path::{Basis, How, Proposed, Route, Station, Whose},
    fmt_bytes,
};
use crate::{collect::Counts, model::Source};

/// Bytes read-type and write-type syscalls moved, by descriptor kind.
#[derive(Clone, Copy)]
pub struct ByKind<'a> {
    bytes: &'a [[u64; 3]; 9],
}

impl<'a> ByKind<'a> {
    #[must_use]
    pub fn of(counts: &'a Counts) -> ByKind<'a> {
        ByKind {
            bytes: &counts.fd_bytes,
        }
    }

    /// Bytes read (into user memory) through descriptors of `kind`.
    #[must_use]
    pub fn read(self, kind: FdKind) -> u64 {
        self.bytes[kind as usize][0]
    }

    /// Bytes written (out of user memory) through descriptors of `kind`.
    #[must_use]
    pub fn written(self, kind: FdKind) -> u64 {
        self.bytes[kind as usize][1]
    }

    /// Bytes spliced into descriptors of `kind`.
    #[must_use]
    pub fn spliced_into(self, kind: FdKind) -> u64 {
        self.bytes[kind as usize][2]
    }

    /// Whether any descriptor was classified (the kernel side could read the descriptors).
    #[must_use]
    pub fn classified(self) -> bool {
        FdKind::ALL
            .iter()
            .filter(|&&k| k != FdKind::Unknown)
            .any(|&k| self.bytes[k as usize].iter().sum::<u64>() > 0)
    }

    /// Bytes of the kinds that have paths of their own here, or copy nothing: subtracted from
    /// what the ledger derives for page cache and "other" paths.
    #[must_use]
    pub fn apart(self, read: bool) -> u64 {
        let of = |k| if read { self.read(k) } else { self.written(k) };
        [
            FdKind::Pipe,
            FdKind::DevNull,
            FdKind::DevZero,
            FdKind::CharDevice,
            FdKind::Generated,
        ]
        .into_iter()
        .map(of)
        .sum()
    }
}

/// One path through a descriptor kind.
struct KindPath {
    kind: FdKind,
    read: bool,
    path: Route,
    short: &'static str,
    what: &'static str,
}

const PATHS: [KindPath; 6] = [
    KindPath {
        kind: FdKind::Pipe,
        read: true,
        path: Route::plain(Station::PipeBuffer, Station::UserBuffer),
        short: "pipe→user",
        what: "reads from pipes: the kernel copies the pipe's buffer into user memory",
    },
    KindPath {
        kind: FdKind::CharDevice,
        read: true,
        path: Route::plain(Station::Device, Station::UserBuffer),
        short: "dev→user",
        what: "reads from character devices (/dev/urandom, a tty, ...): the driver's bytes are \
               copied into user memory",
    },
    KindPath {
        kind: FdKind::Generated,
        read: true,
        path: Route::with(Station::Kernel, Station::UserBuffer, How::GeneratedFile),
        short: "gen→user",
        what: "reads of files the kernel generates (procfs, sysfs, ...), copied into user memory",
    },
    KindPath {
        kind: FdKind::Pipe,
        read: false,
        path: Route::plain(Station::UserBuffer, Station::PipeBuffer),
        short: "user→pipe",
        what: "writes to pipes: the kernel copies user memory into the pipe's buffer",
    },
    KindPath {
        kind: FdKind::CharDevice,
        read: false,
        path: Route::plain(Station::UserBuffer, Station::Device),
        short: "user→dev",
        what: "writes to character devices (a tty, ...): the driver copies user memory",
    },
    KindPath {
        kind: FdKind::Generated,
        read: false,
        path: Route::with(Station::UserBuffer, Station::Kernel, How::GeneratedFile),
        short: "user→gen",
        what: "writes to procfs, sysfs, ... control files",
    },
];

/// The paths of pipes, character devices and generated files, derived from what the syscalls
/// returned through each kind of descriptor (`syscall_hooks` counted them), to be checked
/// against sampling.
pub(super) fn paths(kinds: ByKind<'_>, syscall_hooks: Vec<String>) -> Vec<Proposed> {
    let source = format!(
        "{}, each descriptor's kind read off its inode in the kernel at the return",
        Source::SyscallSemantics(syscall_hooks).describe()
    );
    PATHS
        .iter()
        .map(|p| {
            let bytes = if p.read {
                kinds.read(p.kind)
            } else {
                kinds.written(p.kind)
            };
            Proposed {
                route: p.path.clone(),
                short: p.short,
                bytes,
                note: format!("{}: {}", p.what, fmt_bytes(bytes)),
                sampled: &[SampledPath::PipeOrOther],
                basis: Basis::Derived(source.clone()),
                whose: match p.kind {
                    FdKind::Pipe => Whose::ProcessPipes,
                    FdKind::CharDevice => Whose::ProcessDevices,
                    _ => Whose::ProcessGeneratedFiles,
                },
            }
        })
        .collect()
}

/// The note for bytes that moved through `/dev/zero` and `/dev/null`, which copy nothing.
#[must_use]
pub fn uncopied_note(kinds: ByKind<'_>) -> Option<String> {
    let (zero, null) = (kinds.read(FdKind::DevZero), kinds.written(FdKind::DevNull));
    (zero + null > 0).then(|| {
        format!(
            "No copy of payload through /dev/zero and /dev/null: {} read from /dev/zero (the \
             kernel clears the user buffer), {} written to /dev/null (discarded unread); \
             descriptor kinds read off each file's inode in the kernel.",
            fmt_bytes(zero),
            fmt_bytes(null)
        )
    })
}

/// Payload moved in the kernel, counted once where it leaves the process's data path. A splice
/// into a pipe, a `tee` (pipe to pipe) and a `vmsplice` (user pages into a pipe) fill a pipe
/// whose contents a later splice moves on: where the kernel side classified splice's output,
/// they are not counted again (a splicing proxy's socket -> pipe -> socket is its payload once,
/// not twice). Without descriptor kinds: every in-kernel syscall's bytes, as they returned.
#[must_use]
pub fn in_kernel_once(sum: u64, counts: &Counts) -> u64 {
    let kinds = ByKind::of(counts);
    if !kinds.classified() {
        return sum;
    }
    let feeding_pipes: u64 = counts
        .syscalls
        .iter()
        .filter(|(nr, _)| matches!(super::syscalls::name_of(**nr).as_str(), "tee" | "vmsplice"))
        .map(|(_, s)| s.ret_sum)
        .sum();
    sum.saturating_sub(feeding_pipes + kinds.spliced_into(FdKind::Pipe))
}

/// The JSON's `descriptors`: bytes by descriptor kind, as the kernel side classified them.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Descriptors {
    /// Whether the kernel side classified a descriptor in this run (it needs the raw syscall
    /// tracepoints, for the saved registers, and struct offsets from BTF; a run without read,
    /// write or splice calls has nothing to classify).
    pub classified: bool,
    /// Bytes read-type syscalls returned, by kind (`regular`, `pipe`, `socket`, `dev_null`,
    /// `dev_zero`, `char_device`, `generated`, `other`, `unknown`); non-zero only.
    pub read: BTreeMap<String, u64>,
    /// The same for write-type syscalls.
    pub written: BTreeMap<String, u64>,
    /// Bytes splice moved, by the kind of its output.
    pub spliced_into: BTreeMap<String, u64>,
}

/// The kind's name in the JSON.
#[must_use]
pub fn kind_name(kind: FdKind) -> &'static str {
    match kind {
        FdKind::Unknown => "unknown",
        FdKind::Regular => "regular",
        FdKind::Pipe => "pipe",
        FdKind::Socket => "socket",
        FdKind::DevNull => "dev_null",
        FdKind::DevZero => "dev_zero",
        FdKind::CharDevice => "char_device",
        FdKind::Generated => "generated",
        FdKind::Other => "other",
    }
}

impl Descriptors {
    #[must_use]
    pub fn of(counts: &Counts) -> Descriptors {
        let kinds = ByKind::of(counts);
        let by = |direction: usize| -> BTreeMap<String, u64> {
            FdKind::ALL
                .into_iter()
                .map(|k| (kind_name(k).to_owned(), kinds.bytes[k as usize][direction]))
                .filter(|(_, b)| *b > 0)
                .collect()
        };
        Descriptors {
            classified: kinds.classified(),
            read: by(0),
            written: by(1),
            spliced_into: by(2),
        }
    }
}
