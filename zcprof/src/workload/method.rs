//! The transfer techniques of the textbook, by their command-line names.
use std::fmt;

/// One way of moving a file to a socket.
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
}

impl Method {
    /// Every method, in the order the textbook introduces them.
    pub const ALL: [Method; 6] = [
        Method::ReadWrite,
        Method::DirectIo,
        Method::MmapWrite,
        Method::Sendfile,
        Method::Splice,
        Method::Tee,
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
        }
    }

    /// Parses a command-line name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name)
    }

    /// How many receiving sockets the method writes to (tee feeds two consumers).
    #[must_use]
    pub fn streams(self) -> usize {
        if self == Method::Tee { 2 } else { 1 }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
