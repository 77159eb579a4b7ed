//! The transfer techniques, by their command-line names: the textbook's six, and the interfaces
//! people use today that the note does not cover (`copy_file_range`, `vmsplice`, `MSG_ZEROCOPY`,
//! and `io_uring`'s read + send, splice and `SEND_ZC`).
use std::fmt;

/// One way of moving a file to a socket (or, for `copy-file-range`, to another file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// `read()` into a user buffer, `write()` to the socket.
    ReadWrite,
    /// `O_DIRECT` `read()` into an aligned user buffer, `write()` to the socket.
    DirectIo,
    /// `mmap()` the file once, `write()` from the mapping to the socket.
    MmapWrite,
    /// `sendfile()` from the file to the socket.
    Sendfile,
    /// `splice()` file to pipe, then pipe to socket.
    Splice,
    /// `splice()` file to pipe, `tee()` to a second pipe, `splice()` both pipes to two sockets.
    Tee,
    /// `copy_file_range()` from the file to a destination file beside it: file to file.
    CopyFileRange,
    /// The payload read into user memory before measuring; `vmsplice()` into a pipe, then
    /// `splice()` pipe to socket.
    Vmsplice,
    /// `SO_ZEROCOPY` and `send(MSG_ZEROCOPY)` from user memory; completions read from the
    /// socket's error queue.
    MsgZerocopy,
    /// `io_uring`: `IORING_OP_READ_FIXED` into a registered buffer, linked to `IORING_OP_SEND`
    /// from it to the socket.
    IoUring,
    /// `io_uring`: `IORING_OP_SPLICE` file to pipe, linked to `IORING_OP_SPLICE` pipe to socket.
    IoUringSplice,
    /// `io_uring`: the payload read into user memory before measuring; `IORING_OP_SEND_ZC` from
    /// it, with the kernel's notification CQEs.
    IoUringSendZc,
}

impl Method {
    /// The note's methods, in the order the textbook introduces them: what `compare` runs by
    /// default.
    pub const NOTE: [Method; 6] = [
        Method::ReadWrite,
        Method::DirectIo,
        Method::MmapWrite,
        Method::Sendfile,
        Method::Splice,
        Method::Tee,
    ];

    /// Every method: the note's, then those beyond it (`compare --methods all`).
    pub const ALL: [Method; 12] = [
        Method::ReadWrite,
        Method::DirectIo,
        Method::MmapWrite,
        Method::Sendfile,
        Method::Splice,
        Method::Tee,
        Method::CopyFileRange,
        Method::Vmsplice,
        Method::MsgZerocopy,
        Method::IoUring,
        Method::IoUringSplice,
        Method::IoUringSendZc,
    ];

    /// The command-line and JSON name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Method::ReadWrite => "read-write",
            Method::DirectIo => "direct-io",
            Method::MmapWrite => "mmap-write",
            Method::Sendfile => "sendfile",
            Method::Splice => "splice",
            Method::Tee => "tee",
            Method::CopyFileRange => "copy-file-range",
            Method::Vmsplice => "vmsplice",
            Method::MsgZerocopy => "msg-zerocopy",
            Method::IoUring => "io-uring",
            Method::IoUringSplice => "io-uring-splice",
            Method::IoUringSendZc => "io-uring-send-zc",
        }
    }

    /// Parses a command-line name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }

    /// How many receiving sockets the method writes to (tee feeds two consumers,
    /// copy-file-range none: it writes a file).
    #[must_use]
    pub fn streams(self) -> usize {
        match self {
            Method::Tee => 2,
            Method::CopyFileRange => 0,
            _ => 1,
        }
    }

    /// Whether the method sends to a socket, so that the network options (`--net`, `--sg`,
    /// `--to`) mean something for it.
    #[must_use]
    pub fn uses_network(self) -> bool {
        self.streams() > 0
    }

    /// Whether the payload is read into user memory before the measured window, so that the
    /// page cache's state at the start (`--cache cold`) changes nothing measured.
    #[must_use]
    pub fn preloads_payload(self) -> bool {
        matches!(
            self,
            Method::Vmsplice | Method::MsgZerocopy | Method::IoUringSendZc
        )
    }

    /// Whether the transfer goes through `io_uring`: the work is done in the kernel's io-wq
    /// workers and task work, not in the syscall that submits it.
    #[must_use]
    pub fn uses_io_uring(self) -> bool {
        matches!(
            self,
            Method::IoUring | Method::IoUringSplice | Method::IoUringSendZc
        )
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
