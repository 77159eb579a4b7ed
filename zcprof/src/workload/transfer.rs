//! The measured side of a workload: runs in its own process (a re-exec of zcprof), prepares
//! everything, reports `ready`, waits for `go`, moves the bytes and exits with `_exit`, so that
//! the measured window holds only the transfer loop and the final `exit_group`.
//!
//! Raw libc calls on purpose: each line here is exactly one syscall, so what the kernel counts
//! is what the code says.
use std::{
    ffi::CString,
    io::{self, Read as _, Write as _},
    net::{IpAddr, TcpStream},
    os::fd::{AsRawFd, RawFd},
};

use super::{
    Method, beyond,
    calls::{check, drain, os_err, splice_fd},
    uring, zerocopy,
};

/// What the parent asks the child to do: the hidden `__transfer` subcommand's options, written
/// once. The parent turns them into the child's argv (`to_argv`), clap parses them back.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct TransferArgs {
    #[arg(long, value_enum)]
    pub method: Method,
    #[arg(long)]
    pub path: String,
    #[arg(long)]
    pub size: u64,
    #[arg(long)]
    pub block_size: u64,
    /// The receiver: 127.0.0.1, the peer of a veth pair, or a `zcprof sink` (none for a method
    /// that writes a file).
    #[arg(long)]
    pub addr: Option<IpAddr>,
    #[arg(long)]
    pub port: Option<u16>,
    /// A sink's run token: each stream says it first (`sink::Remote::data_hello`), before the
    /// measured window.
    #[arg(long)]
    pub token: Option<String>,
    /// copy-file-range's destination file, created by the parent (which removes it).
    #[arg(long)]
    pub dest: Option<String>,
    /// msg-zerocopy and the `io_uring` methods: a shared memory file the child maps before
    /// measuring, for what the kernel's completions said, without a syscall in the window.
    #[arg(long)]
    pub report_fd: Option<i32>,
}

/// The hidden subcommand that runs the measured transfer.
pub const SUBCOMMAND: &str = "__transfer";

impl TransferArgs {
    /// The child's arguments after the program name: the subcommand and every option set.
    #[must_use]
    pub fn to_argv(&self) -> Vec<String> {
        let mut argv = vec![
            SUBCOMMAND.to_owned(),
            "--method".into(),
            self.method.name().into(),
            "--path".into(),
            self.path.clone(),
            "--size".into(),
            self.size.to_string(),
            "--block-size".into(),
            self.block_size.to_string(),
        ];
        let optional = [
            ("--addr", self.addr.map(|a| a.to_string())),
            ("--port", self.port.map(|p| p.to_string())),
            ("--token", self.token.clone()),
            ("--dest", self.dest.clone()),
            ("--report-fd", self.report_fd.map(|fd| fd.to_string())),
        ];
        for (flag, value) in optional {
            if let Some(value) = value {
                argv.extend([flag.to_owned(), value]);
            }
        }
        argv
    }
}

/// Entry point of the hidden `__transfer` subcommand. Never returns.
pub fn child_main(args: &TransferArgs) -> ! {
    // Die with the parent: a killed zcprof must not leave a sender behind.
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let code = match run(args) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("{err}");
            1
        }
    };
    // _exit: no atexit handlers, no stdio flush, one exit_group syscall.
    // SAFETY: terminates the process.
    unsafe { libc::_exit(code) }
}

/// Everything opened before `go`, so that setup costs stay outside the measured window.
struct Prepared {
    file: RawFd,
    socks: Vec<TcpStream>,
    pipes: Vec<(RawFd, RawFd)>,
    /// copy-file-range's destination.
    dest: Option<RawFd>,
}

fn open_source(args: &TransferArgs) -> io::Result<RawFd> {
    let path =
        CString::new(args.path.as_str()).map_err(|_| io::Error::other("path has a NUL byte"))?;
    let mut flags = libc::O_RDONLY | libc::O_CLOEXEC;
    if args.method == Method::DirectIo {
        flags |= libc::O_DIRECT;
    }
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        if args.method == Method::DirectIo && err.raw_os_error() == Some(libc::EINVAL) {
            return Err(io::Error::other(format!(
                "the file system of {} refuses O_DIRECT: point --dir at a directory on a disk-backed \
                 file system (ext4, xfs, btrfs)",
                args.path
            )));
        }
        return Err(io::Error::new(
            err.kind(),
            format!("open {}: {err}", args.path),
        ));
    }
    Ok(fd)
}

fn make_pipe(size: u64) -> io::Result<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(os_err("pipe2"));
    }
    // A pipe must hold one whole block, or splice and tee would move partial blocks.
    let want = i32::try_from(size.next_power_of_two().max(4096)).unwrap_or(i32::MAX);
    // SAFETY: fcntl on a descriptor we own.
    if unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, want) } < 0 {
        return Err(os_err(
            "F_SETPIPE_SZ (the block size needs a pipe that large)",
        ));
    }
    Ok((fds[0], fds[1]))
}

fn prepare(args: &TransferArgs) -> io::Result<Prepared> {
    let file = open_source(args)?;
    let mut socks = Vec::new();
    let receiver = match (args.addr, args.port) {
        (Some(addr), Some(port)) => Some((addr, port)),
        _ => None,
    };
    if args.method.streams() > 0 && receiver.is_none() {
        return Err(io::Error::other(format!(
            "{} sends to a socket: no receiver was given",
            args.method
        )));
    }
    for (stream, (addr, port)) in receiver
        .into_iter()
        .cycle()
        .take(args.method.streams())
        .enumerate()
    {
        let what = |e: io::Error, doing: &str| {
            io::Error::new(
                e.kind(),
                format!("{doing} the receiver at {addr}:{port}: {e}"),
            )
        };
        let mut sock = TcpStream::connect((addr, port)).map_err(|e| what(e, "connect to"))?;
        if let Some(token) = &args.token {
            sock.write_all(crate::sink::Remote::data_hello(token, stream).as_bytes())
                .map_err(|e| what(e, "say hello to"))?;
        }
        socks.push(sock);
    }
    let pipes = match args.method {
        Method::Splice | Method::Vmsplice | Method::IoUringSplice => {
            vec![make_pipe(args.block_size)?]
        }
        Method::Tee => vec![make_pipe(args.block_size)?, make_pipe(args.block_size)?],
        _ => Vec::new(),
    };
    let dest = match &args.dest {
        Some(path) => Some(open_dest(path)?),
        None if args.method == Method::CopyFileRange => {
            return Err(io::Error::other("copy-file-range needs a destination file"));
        }
        None => None,
    };
    Ok(Prepared {
        file,
        socks,
        pipes,
        dest,
    })
}

/// Opens the destination the parent created, emptied.
fn open_dest(path: &str) -> io::Result<RawFd> {
    let c = CString::new(path).map_err(|_| io::Error::other("path has a NUL byte"))?;
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_TRUNC | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(os_err(&format!("open the destination {path}")));
    }
    Ok(fd)
}

/// Reads the first `size` bytes of the file into `buf`, before the measured window: the payload
/// of the methods that send from user memory.
fn preload(file: RawFd, buf: &mut [u8]) -> io::Result<()> {
    let mut at = 0;
    while at < buf.len() {
        let rest = &mut buf[at..];
        // SAFETY: rest is a valid mutable slice; the offset is explicit.
        let n = check(
            unsafe {
                libc::pread(
                    file,
                    rest.as_mut_ptr().cast(),
                    rest.len(),
                    i64::try_from(at).unwrap_or(i64::MAX),
                )
            },
            "read the payload into memory",
        )?;
        if n == 0 {
            return Err(io::Error::other(
                "the file ended before --size bytes were read",
            ));
        }
        at += n;
    }
    Ok(())
}

fn run(args: &TransferArgs) -> io::Result<()> {
    let prep = prepare(args)?;
    let mut held = Held::prepare(args, &prep)?;
    ready_then_wait()?;
    // ---- measured window starts here ----
    let result = held.transfer(args, &prep);
    // exit_group closes everything; dropping here would add close() calls (and, in debug
    // builds, std's fcntl check of each descriptor) to the measured window.
    std::mem::forget(prep);
    std::mem::forget(held);
    result
}

/// Tells the parent the child is ready, then blocks until it says go: the parent attaches the
/// probes in between.
fn ready_then_wait() -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(b"ready\n")?;
    out.flush()?;
    drop(out);
    let mut go = [0u8; 1];
    io::stdin().read_exact(&mut go)
}

/// What a method holds in user memory and the kernel before the window: buffers allocated and
/// touched (first-touch page faults are setup cost), the payload preloaded, the zero-copy
/// sender and the ring set up.
struct Held {
    buffer: Option<AlignedBuf>,
    zerocopy: Option<zerocopy::Sender>,
    ring: Option<uring::Ring>,
}

impl Held {
    fn prepare(args: &TransferArgs, prep: &Prepared) -> io::Result<Held> {
        let block = usize::try_from(args.block_size).map_err(io::Error::other)?;
        let size = usize::try_from(args.size).map_err(io::Error::other)?;
        let mut buffer = match args.method {
            Method::ReadWrite | Method::DirectIo | Method::IoUring => Some(AlignedBuf::new(block)?),
            // The whole payload in user memory, read now: the measured loop sends from memory.
            m if m.preloads_payload() => {
                beyond::check_payload_fits(m, args.size).map_err(io::Error::other)?;
                let mut b = AlignedBuf::new(size)?;
                preload(prep.file, &mut b.as_mut_slice()[..size])?;
                Some(b)
            }
            _ => None,
        };
        let zerocopy = match args.method {
            Method::MsgZerocopy => Some(zerocopy::Sender::prepare(
                prep.socks[0].as_raw_fd(),
                args.report_fd,
                size,
                block,
            )?),
            _ => None,
        };
        let ring = if args.method.uses_io_uring() {
            // io-uring registers its block buffer; send-zc sends from the payload unregistered,
            // as MSG_ZEROCOPY does.
            let fixed = match args.method {
                Method::IoUring => buffer.as_mut().map(AlignedBuf::as_mut_slice),
                _ => None,
            };
            Some(uring::Ring::prepare(
                args.method,
                fixed,
                args.report_fd,
                size.div_ceil(block.max(1)),
            )?)
        } else {
            None
        };
        Ok(Held {
            buffer,
            zerocopy,
            ring,
        })
    }

    /// The measured transfer: each method's loop, each line one syscall.
    fn transfer(&mut self, args: &TransferArgs, prep: &Prepared) -> io::Result<()> {
        let block = usize::try_from(args.block_size).map_err(io::Error::other)?;
        let size = usize::try_from(args.size).map_err(io::Error::other)?;
        let sock = prep.socks.first().map_or(-1, AsRawFd::as_raw_fd);
        let buf = self
            .buffer
            .as_mut()
            .map(AlignedBuf::as_mut_slice)
            .unwrap_or_default();
        match args.method {
            Method::ReadWrite | Method::DirectIo => read_write(prep.file, sock, buf, size),
            Method::MmapWrite => mmap_write(prep.file, sock, size, block),
            Method::Sendfile => sendfile(prep.file, sock, size, block),
            Method::Splice => splice(prep.file, prep.pipes[0], sock, size, block),
            Method::Tee => tee(
                prep.file,
                prep.pipes[0],
                prep.pipes[1],
                sock,
                prep.socks[1].as_raw_fd(),
                size,
                block,
            ),
            Method::CopyFileRange => {
                beyond::copy_file_range(prep.file, prep.dest.unwrap_or(-1), size, block)
            }
            Method::Vmsplice => beyond::vmsplice(&buf[..size], prep.pipes[0], sock, block),
            Method::MsgZerocopy => self.zerocopy.as_mut().map_or_else(
                || Err(io::Error::other("MSG_ZEROCOPY was not prepared")),
                |z| z.send_all(&buf[..size]),
            ),
            Method::IoUring | Method::IoUringSplice | Method::IoUringSendZc => {
                through_io_uring(args.method, self.ring.as_mut(), prep, buf, size, block)
            }
        }
    }
}

/// The `io_uring` methods' loops, on the ring prepared before the window.
fn through_io_uring(
    method: Method,
    ring: Option<&mut uring::Ring>,
    prep: &Prepared,
    buf: &mut [u8],
    size: usize,
    block: usize,
) -> io::Result<()> {
    let ring = ring.ok_or_else(|| io::Error::other("io_uring was not prepared"))?;
    let sock = prep.socks.first().map_or(-1, AsRawFd::as_raw_fd);
    match method {
        Method::IoUring => ring.read_send(prep.file, sock, buf, size),
        Method::IoUringSplice => ring.splice(prep.file, prep.pipes[0], sock, size, block),
        _ => ring.send_zc(sock, &buf[..size], block),
    }
}

fn write_all(sock: RawFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: data is a valid slice.
        let n = check(
            unsafe { libc::write(sock, data.as_ptr().cast(), data.len()) },
            "write to socket",
        )?;
        data = &data[n..];
    }
    Ok(())
}

fn read_write(file: RawFd, sock: RawFd, buf: &mut [u8], size: usize) -> io::Result<()> {
    let mut left = size;
    while left > 0 {
        // O_DIRECT needs whole aligned blocks, so always ask for the full buffer and send only
        // what is still owed.
        // SAFETY: buf is a valid mutable slice.
        let n = check(
            unsafe { libc::read(file, buf.as_mut_ptr().cast(), buf.len()) },
            "read",
        )?;
        if n == 0 {
            return Err(io::Error::other(
                "the file ended before --size bytes were read",
            ));
        }
        let n = n.min(left);
        write_all(sock, &buf[..n])?;
        left -= n;
    }
    Ok(())
}

fn mmap_write(file: RawFd, sock: RawFd, size: usize, block: usize) -> io::Result<()> {
    // One mapping for the whole file, as real programs do; the textbook's `mmap(file, len)`.
    // SAFETY: read-only shared mapping of a file we own.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file,
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(os_err("mmap"));
    }
    // SAFETY: the mapping is `size` bytes long and stays mapped until munmap below.
    let data = unsafe { std::slice::from_raw_parts(map.cast::<u8>(), size) };
    let result = data
        .chunks(block)
        .try_for_each(|chunk| write_all(sock, chunk));
    // SAFETY: unmapping what we mapped.
    unsafe { libc::munmap(map, size) };
    result
}

fn sendfile(file: RawFd, sock: RawFd, size: usize, block: usize) -> io::Result<()> {
    let mut left = size;
    while left > 0 {
        // SAFETY: null offset: the file position advances.
        let n = check(
            unsafe { libc::sendfile(sock, file, std::ptr::null_mut(), block.min(left)) },
            "sendfile",
        )?;
        if n == 0 {
            return Err(io::Error::other(
                "the file ended before --size bytes were sent",
            ));
        }
        left -= n;
    }
    Ok(())
}

fn splice(
    file: RawFd,
    pipe: (RawFd, RawFd),
    sock: RawFd,
    size: usize,
    block: usize,
) -> io::Result<()> {
    let mut left = size;
    while left > 0 {
        let n = splice_fd(file, pipe.1, block.min(left), true, "splice file to pipe")?;
        if n == 0 {
            return Err(io::Error::other(
                "the file ended before --size bytes were spliced",
            ));
        }
        drain(pipe.0, sock, n, true, "splice pipe to socket")?;
        left -= n;
    }
    Ok(())
}

fn tee(
    file: RawFd,
    first: (RawFd, RawFd),
    second: (RawFd, RawFd),
    sock: RawFd,
    copy_sock: RawFd,
    size: usize,
    block: usize,
) -> io::Result<()> {
    let mut left = size;
    while left > 0 {
        let n = splice_fd(file, first.1, block.min(left), true, "splice file to pipe")?;
        if n == 0 {
            return Err(io::Error::other(
                "the file ended before --size bytes were spliced",
            ));
        }
        // tee does not consume its input, so a partial tee cannot be resumed: the second pipe is
        // empty and as large as the first, so it takes everything at once.
        // SAFETY: plain syscall on descriptors we own.
        let t = check(unsafe { libc::tee(first.0, second.1, n, 0) }, "tee")?;
        if t != n {
            return Err(io::Error::other(format!("tee duplicated {t} of {n} bytes")));
        }
        // No SPLICE_F_MORE towards the sockets: each is left alone while the other is written,
        // and a held-back tail would keep its receiver waiting that long (measured: tee at 1 MiB
        // blocks went from 0.93-0.96 of the reference's throughput to 1.01-1.06 without it).
        drain(first.0, sock, n, false, "splice pipe to socket")?;
        drain(second.0, copy_sock, n, false, "splice tee copy to socket")?;
        left -= n;
    }
    Ok(())
}

/// A page-aligned, pre-touched buffer (`O_DIRECT` needs the alignment).
struct AlignedBuf {
    ptr: *mut u8,
    layout: std::alloc::Layout,
}

impl AlignedBuf {
    fn new(len: usize) -> io::Result<Self> {
        let layout =
            std::alloc::Layout::from_size_align(len.max(1), 4096).map_err(io::Error::other)?;
        // SAFETY: non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) };
        if ptr.is_null() {
            return Err(io::Error::other("out of memory for the transfer buffer"));
        }
        // Touch every page now (a large allocation is lazily mapped), so first-touch faults
        // stay outside the measured window.
        // SAFETY: ptr is valid for layout.size() bytes.
        unsafe { std::ptr::write_bytes(ptr, 0x5a, layout.size()) };
        Ok(Self { ptr, layout })
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for layout.size() bytes and uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) };
    }
}
