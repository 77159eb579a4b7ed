//! Workloads: the built-in transfer techniques, each run in its own process against a receiver
//! that drains and counts every byte. Only that process is measured.
pub mod beyond;
mod calls;
mod destination;
mod method;
pub mod net;
mod source;
mod tally;
pub mod transfer;
pub mod uring;
pub mod zerocopy;

use std::{
    io::{self, BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::{Child, ChildStderr, ChildStdin, Command, Stdio},
    thread::JoinHandle,
};

pub use method::Method;
pub use net::{NetError, Network};
pub use source::{SourceError, SourceFile};
pub use tally::{Tally as UringTally, Verdict};

use crate::{
    cancel,
    sink::{Remote, SinkError, SinkReport},
};

/// How long the sender waits for a sink's report after its transfer process exited: what was
/// still in flight must cross the link first, which may be slow.
const SINK_REPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Errors of a workload run.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// The receiver socket or the child process could not be set up.
    #[error("cannot start the {method} workload: {source}")]
    Spawn { method: Method, source: io::Error },
    /// The child failed before or during the transfer; its own message is kept.
    #[error("{method} transfer failed: {message}")]
    Transfer { method: Method, message: String },
    /// The receiver did not get exactly the bytes that were sent.
    #[error("{method}: receiver {stream} got {got} bytes, expected {expected}")]
    ShortDelivery {
        method: Method,
        stream: usize,
        got: u64,
        expected: u64,
    },
    /// A remote sink got other than exactly the bytes that were sent.
    #[error("{method}: the sink at {addr} received {got} of {expected} bytes on stream {stream}")]
    SinkShortDelivery {
        method: Method,
        addr: String,
        stream: usize,
        got: u64,
        expected: u64,
    },
    /// The receiver could not listen on the network path.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The remote sink refused the run, or did not report.
    #[error("{method}: {source}")]
    Sink { method: Method, source: SinkError },
    /// copy-file-range's destination does not hold the source's bytes.
    #[error(
        "{method}: the destination holds {got} of the {expected} bytes of the source, equal and in place"
    )]
    BadCopy {
        method: Method,
        got: u64,
        expected: u64,
    },
    /// msg-zerocopy or an `io_uring` method ended without leaving what its completions said.
    #[error("{method}: the transfer process left no completion verdict")]
    NoVerdict { method: Method },
    /// Ctrl-C.
    #[error("interrupted")]
    Interrupted,
}

/// Scheduler counts the kernel kept for the child over its whole life (wait4's rusage): an
/// independent upper bound for what the probes saw inside the measured window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChildUsage {
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

/// What a finished workload delivered.
#[derive(Debug)]
pub struct Delivery {
    /// Bytes each receiver stream got.
    pub received: Vec<u64>,
    pub usage: ChildUsage,
    /// What a remote sink reported of itself (`--to`).
    pub sink: Option<SinkReport>,
    /// msg-zerocopy and io-uring-send-zc: what the kernel's completions said.
    pub zerocopy: Option<Verdict>,
    /// The `io_uring` methods: what their completions said.
    pub uring: Option<UringTally>,
}

/// A workload whose child is ready and blocked before its first measured syscall.
pub struct Ready {
    method: Method,
    size: u64,
    child: Child,
    stdin: ChildStdin,
    stderr: ChildStderr,
    receivers: Vec<JoinHandle<io::Result<u64>>>,
    /// None for a method that writes a file.
    receiver: Option<SocketAddr>,
    /// copy-file-range's destination, and the source it must equal.
    destination: Option<(destination::Destination, std::path::PathBuf)>,
    verdict: Option<zerocopy::VerdictFile>,
    /// The run at a remote sink, which receives instead of zcprof's own threads.
    remote: Option<Remote>,
    _registered: cancel::ChildGuard,
}

impl Ready {
    /// Starts the child for `method` and waits until it has opened the file, connected to the
    /// receiver over `network` and allocated its buffers. The receiver is zcprof's own threads,
    /// or on the remote path a run opened at the sink, whose token each stream sends first.
    ///
    /// # Errors
    /// When the child cannot start or fails during preparation, or the sink refuses the run.
    pub fn start(
        method: Method,
        source: &SourceFile,
        size: u64,
        block_size: u64,
        network: &Network,
    ) -> Result<Ready, WorkloadError> {
        let spawn_err = |source| WorkloadError::Spawn { method, source };
        let (listener, remote) = match network.remote_sink() {
            _ if !method.uses_network() => (None, None),
            Some(sink) => {
                let remote = Remote::open(&sink.addr, method.streams(), size, sink.token.as_ref())
                    .map_err(|source| WorkloadError::Sink { method, source })?;
                (None, Some(remote))
            }
            None => (Some(network.listen()?), None),
        };
        let receiver = match (&listener, &remote) {
            (Some(l), _) => Some(l.local_addr().map_err(spawn_err)?),
            (None, Some(r)) => Some(r.peer),
            (None, None) => None,
        };
        let destination = if method == Method::CopyFileRange {
            let d = destination::Destination::create(source.dir()).map_err(spawn_err)?;
            Some((d, source.path().to_owned()))
        } else {
            None
        };
        let verdict = if method == Method::MsgZerocopy || method.uses_io_uring() {
            Some(zerocopy::VerdictFile::create().map_err(spawn_err)?)
        } else {
            None
        };
        let utf8 = |path: &std::path::Path| {
            path.to_str().map(str::to_owned).ok_or_else(|| {
                spawn_err(io::Error::other(format!("{} is not UTF-8", path.display())))
            })
        };
        let args = transfer::TransferArgs {
            method,
            path: utf8(source.path())?,
            size,
            block_size,
            addr: receiver.map(|r| r.ip()),
            port: receiver.map(|r| r.port()),
            token: remote.as_ref().map(|r| r.token.clone()),
            dest: destination
                .as_ref()
                .map(|(d, _)| utf8(d.path()))
                .transpose()?,
            report_fd: verdict.as_ref().map(zerocopy::VerdictFile::raw),
        };
        let mut command = Command::new(std::env::current_exe().map_err(spawn_err)?);
        command.args(args.to_argv());
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        let registered = cancel::ChildGuard::register(child.id());
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("all three were piped");
        };
        let mut ready = Ready {
            method,
            size,
            child,
            stdin,
            stderr,
            receivers: Vec::new(),
            receiver,
            destination,
            verdict,
            remote,
            _registered: registered,
        };

        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        // Anything but "ready" (an error, or end of file because the child failed while
        // preparing, say when it cannot connect) must not reach the accepts below: they would
        // wait for a connection that never comes.
        if read.is_err() || line != "ready\n" {
            return Err(ready.failure());
        }
        let Some(listener) = listener else {
            // The sink accepted the child's streams.
            return Ok(ready);
        };
        // The child connected before saying ready, so these accepts do not block.
        for _ in 0..method.streams() {
            let (stream, _) = listener.accept().map_err(spawn_err)?;
            ready
                .receivers
                .push(std::thread::spawn(move || drain(stream)));
        }
        Ok(ready)
    }

    /// The child's process id: the tgid the probes filter on.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the receiver listens (the first stream's address and port); none for a method
    /// that writes a file.
    #[must_use]
    pub fn receiver(&self) -> Option<SocketAddr> {
        self.receiver
    }

    /// Releases the child, waits for it to finish and checks what the receivers got.
    ///
    /// # Errors
    /// When the transfer fails, is interrupted, or delivers the wrong byte count.
    pub fn go(mut self) -> Result<Delivery, WorkloadError> {
        if self.stdin.write_all(b"g").is_err() {
            return Err(self.failure());
        }
        let (status, usage) = wait4(self.child.id());
        if cancel::requested() {
            self.reap_receivers();
            return Err(WorkloadError::Interrupted);
        }
        if status != Some(0) {
            let mut message = String::new();
            let _ = self.stderr.read_to_string(&mut message);
            self.reap_receivers();
            return Err(WorkloadError::Transfer {
                method: self.method,
                message: one_line(&message, status),
            });
        }
        let zerocopy = match &self.verdict {
            Some(file) if matches!(self.method, Method::MsgZerocopy | Method::IoUringSendZc) => {
                Some(file.read().ok_or(WorkloadError::NoVerdict {
                    method: self.method,
                })?)
            }
            _ => None,
        };
        let uring = match &self.verdict {
            Some(file) if self.method.uses_io_uring() => {
                Some(file.read_uring().ok_or(WorkloadError::NoVerdict {
                    method: self.method,
                })?)
            }
            _ => None,
        };
        if let Some(remote) = self.remote.take() {
            let mut delivery = self.remote_delivery(remote, usage)?;
            delivery.zerocopy = zerocopy;
            delivery.uring = uring;
            return Ok(delivery);
        }
        if let Some((dest, source)) = &self.destination {
            let got = dest
                .verify(source, self.size)
                .map_err(|source| WorkloadError::Spawn {
                    method: self.method,
                    source,
                })?;
            if got != self.size {
                return Err(WorkloadError::BadCopy {
                    method: self.method,
                    got,
                    expected: self.size,
                });
            }
            return Ok(Delivery {
                received: vec![got],
                usage,
                sink: None,
                zerocopy,
                uring,
            });
        }
        let received = self.reap_receivers();
        for (stream, got) in received.iter().enumerate() {
            if *got != self.size {
                return Err(WorkloadError::ShortDelivery {
                    method: self.method,
                    stream,
                    got: *got,
                    expected: self.size,
                });
            }
        }
        Ok(Delivery {
            received,
            usage,
            sink: None,
            zerocopy,
            uring,
        })
    }

    /// The sink's report of a transfer that ended well on this side: every stream must have
    /// delivered every byte there.
    fn remote_delivery(
        &self,
        remote: Remote,
        usage: ChildUsage,
    ) -> Result<Delivery, WorkloadError> {
        let addr = remote.addr().to_owned();
        let report = remote
            .finish(SINK_REPORT_WAIT)
            .map_err(|source| WorkloadError::Sink {
                method: self.method,
                source,
            })?;
        for stream in 0..self.method.streams() {
            let got = report.received.get(stream).copied().unwrap_or(0);
            if got != self.size {
                return Err(WorkloadError::SinkShortDelivery {
                    method: self.method,
                    addr,
                    stream,
                    got,
                    expected: self.size,
                });
            }
        }
        Ok(Delivery {
            received: report.received.clone(),
            usage,
            sink: Some(report),
            zerocopy: None,
            uring: None,
        })
    }

    fn reap_receivers(&mut self) -> Vec<u64> {
        self.receivers
            .drain(..)
            .map(|r| r.join().ok().and_then(Result::ok).unwrap_or(0))
            .collect()
    }

    /// The child stopped early: kill and reap it, and return its own words as the error.
    fn failure(&mut self) -> WorkloadError {
        let _ = self.child.kill();
        let status = self.child.wait().ok().and_then(|s| s.code());
        if cancel::requested() {
            return WorkloadError::Interrupted;
        }
        let mut message = String::new();
        let _ = self.stderr.read_to_string(&mut message);
        WorkloadError::Transfer {
            method: self.method,
            message: one_line(&message, status),
        }
    }
}

impl Drop for Ready {
    fn drop(&mut self) {
        // Never leave a child behind, whatever path got us here.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn one_line(message: &str, status: Option<i32>) -> String {
    let text = message
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if text.is_empty() {
        format!("the transfer process ended with status {status:?}")
    } else {
        text
    }
}

/// Reads a socket to its end, counting bytes.
fn drain(mut stream: TcpStream) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Waits for the child and returns its exit code (None when killed) and its rusage. std's
/// `Child::wait` drops the rusage, which is an independent check on the probes.
fn wait4(pid: u32) -> (Option<i32>, ChildUsage) {
    let pid = i32::try_from(pid).unwrap_or(0);
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid out-pointers.
        let ret = unsafe { libc::wait4(pid, &raw mut status, 0, &raw mut usage) };
        if ret == pid {
            break;
        }
        if ret < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return (None, ChildUsage::default());
        }
    }
    let code = if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else {
        None
    };
    let usage = ChildUsage {
        voluntary_switches: u64::try_from(usage.ru_nvcsw).unwrap_or(0),
        involuntary_switches: u64::try_from(usage.ru_nivcsw).unwrap_or(0),
    };
    (code, usage)
}
