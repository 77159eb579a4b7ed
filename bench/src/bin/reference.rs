//! Minimal reference implementations of the transfer methods, for the workload-fidelity
//! benchmark: the plainest loop of each technique, driven by the same protocol as zcprof's own
//! workload child (connect to the receiver, print `ready`, wait for a byte on stdin, transfer,
//! exit), so the harness times both the same way.
//!
//! Usage: zcprof-reference METHOD FILE SIZE BLOCK PORT
use std::{
    ffi::CString,
    io::{Read as _, Write as _},
    net::TcpStream,
    os::fd::AsRawFd as _,
};

fn fail(what: &str) -> ! {
    eprintln!("{what}: {}", std::io::Error::last_os_error());
    // SAFETY: terminates the process.
    unsafe { libc::_exit(1) }
}

fn check(ret: isize, what: &str) -> usize {
    if ret < 0 {
        fail(what);
    }
    ret.unsigned_abs()
}

fn pipe(size: usize) -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: room for two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } < 0 {
        fail("pipe");
    }
    let size = i32::try_from(size.next_power_of_two().max(4096)).unwrap_or(i32::MAX);
    // SAFETY: our descriptor.
    if unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, size) } < 0 {
        fail("F_SETPIPE_SZ");
    }
    (fds[0], fds[1])
}

fn write_all(fd: i32, mut ptr: *const u8, mut len: usize) {
    while len > 0 {
        // SAFETY: ptr..ptr+len is readable.
        let n = check(unsafe { libc::write(fd, ptr.cast(), len) }, "write");
        // SAFETY: n <= len.
        ptr = unsafe { ptr.add(n) };
        len -= n;
    }
}

/// Moves `n` bytes from `from` through splice (pipe to socket, or file to pipe).
fn splice_all(from: i32, to: i32, mut n: usize) {
    while n > 0 {
        let moved = check(
            // SAFETY: plain descriptors, no offsets.
            unsafe {
                libc::splice(
                    from,
                    std::ptr::null_mut(),
                    to,
                    std::ptr::null_mut(),
                    n,
                    libc::SPLICE_F_MOVE,
                )
            },
            "splice",
        );
        n -= moved;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, method, file, size, block, port] = args.as_slice() else {
        eprintln!("usage: zcprof-reference METHOD FILE SIZE BLOCK PORT");
        std::process::exit(2);
    };
    let size: usize = size.parse().expect("SIZE");
    let block: usize = block.parse().expect("BLOCK");
    let port: u16 = port.parse().expect("PORT");
    let path = CString::new(file.as_str()).expect("path");
    let flags = if method == "direct-io" {
        libc::O_RDONLY | libc::O_DIRECT
    } else {
        libc::O_RDONLY
    };
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        fail("open");
    }
    let streams = if method == "tee" { 2 } else { 1 };
    let socks: Vec<TcpStream> = (0..streams)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    let sock = socks[0].as_raw_fd();
    // O_DIRECT needs an aligned buffer.
    let layout = std::alloc::Layout::from_size_align(block, 4096).expect("layout");
    // SAFETY: non-zero size.
    let buf = unsafe { std::alloc::alloc(layout) };
    let pipes = match method.as_str() {
        "splice" => vec![pipe(block)],
        "tee" => vec![pipe(block), pipe(block)],
        _ => Vec::new(),
    };
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut go = [0u8; 1];
    if std::io::stdin().read_exact(&mut go).is_err() {
        std::process::exit(1);
    }
    // mmap+write maps the file as its first step (the textbook's mmap(file, len)), so it is
    // inside the timed window, as in zcprof's workload.
    let map = if method == "mmap-write" {
        // SAFETY: read-only shared mapping of our file.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            fail("mmap");
        }
        p.cast::<u8>()
    } else {
        std::ptr::null_mut()
    };
    let mut done = 0usize;
    while done < size {
        let want = block.min(size - done);
        match method.as_str() {
            "read-write" | "direct-io" => {
                // SAFETY: buf holds block bytes.
                let n = check(unsafe { libc::read(fd, buf.cast(), want) }, "read");
                write_all(sock, buf, n);
                done += n;
            }
            "mmap-write" => {
                // SAFETY: done + want <= size, inside the mapping.
                write_all(sock, unsafe { map.add(done) }, want);
                done += want;
            }
            "sendfile" => {
                // SAFETY: plain descriptors; the kernel advances the file offset.
                done += check(
                    unsafe { libc::sendfile(sock, fd, std::ptr::null_mut(), want) },
                    "sendfile",
                );
            }
            "splice" => {
                let (r, w) = pipes[0];
                let n = check(
                    // SAFETY: plain descriptors.
                    unsafe {
                        libc::splice(
                            fd,
                            std::ptr::null_mut(),
                            w,
                            std::ptr::null_mut(),
                            want,
                            libc::SPLICE_F_MOVE,
                        )
                    },
                    "splice",
                );
                splice_all(r, sock, n);
                done += n;
            }
            "tee" => {
                let ((r1, w1), (r2, w2)) = (pipes[0], pipes[1]);
                let n = check(
                    // SAFETY: plain descriptors.
                    unsafe {
                        libc::splice(
                            fd,
                            std::ptr::null_mut(),
                            w1,
                            std::ptr::null_mut(),
                            want,
                            libc::SPLICE_F_MOVE,
                        )
                    },
                    "splice",
                );
                let mut copied = 0;
                while copied < n {
                    // SAFETY: plain descriptors.
                    copied += check(unsafe { libc::tee(r1, w2, n - copied, 0) }, "tee");
                }
                splice_all(r1, sock, n);
                splice_all(r2, socks[1].as_raw_fd(), n);
                done += n;
            }
            other => {
                eprintln!("unknown method {other}");
                std::process::exit(2);
            }
        }
    }
    // SAFETY: terminates the process without unwinding, like zcprof's child.
    unsafe { libc::_exit(0) }
}
