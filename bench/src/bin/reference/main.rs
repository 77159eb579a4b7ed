//! Minimal reference implementations of the transfer methods, for the workload-fidelity
//! benchmark: the plainest loop of each technique, driven by the same protocol as zcprof's own
//! workload child (connect to the receiver, print `ready`, wait for a byte on stdin, transfer,
//! exit), so the harness times both the same way.
//!
//! Usage: zcprof-reference METHOD FILE SIZE BLOCK PORT (copy-file-range: DEST for PORT)
use std::{
    ffi::CString,
    io::{Read as _, Write as _},
    net::TcpStream,
    os::fd::AsRawFd as _,
};

mod uring;

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

/// Waits for the harness's go byte after saying `ready`.
fn ready_go() {
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut go = [0u8; 1];
    if std::io::stdin().read_exact(&mut go).is_err() {
        std::process::exit(1);
    }
}

/// The whole of the file's first `size` bytes in user memory, read before the go byte (the
/// methods that send from memory).
fn payload(fd: i32, size: usize) -> Vec<u8> {
    let mut buf = vec![0u8; size];
    let mut at = 0;
    while at < size {
        // SAFETY: buf[at..] is writable.
        let n = check(
            unsafe { libc::read(fd, buf[at..].as_mut_ptr().cast(), size - at) },
            "read",
        );
        if n == 0 {
            fail("short file");
        }
        at += n;
    }
    buf
}

/// `copy_file_range()` file to file, in steps of `block`: no socket, DEST in place of PORT.
fn copy_file_range(fd: i32, dest: &str, size: usize, block: usize) -> ! {
    let path = CString::new(dest).expect("dest");
    // SAFETY: valid C string.
    let out = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o600,
        )
    };
    if out < 0 {
        fail("open dest");
    }
    ready_go();
    let mut done = 0;
    while done < size {
        // SAFETY: plain descriptors; the kernel advances both offsets.
        let n = check(
            unsafe {
                libc::copy_file_range(
                    fd,
                    std::ptr::null_mut(),
                    out,
                    std::ptr::null_mut(),
                    block.min(size - done),
                    0,
                )
            },
            "copy_file_range",
        );
        if n == 0 {
            fail("copy_file_range moved nothing");
        }
        done += n;
    }
    // SAFETY: terminates the process.
    unsafe { libc::_exit(0) }
}

/// `send(MSG_ZEROCOPY)` of all of `data`, reading completions from the error queue when the
/// kernel has too many outstanding (ENOBUFS) and at the end until every send completed.
fn msg_zerocopy(sock: i32, data: &[u8], block: usize) {
    let one: i32 = 1;
    // SAFETY: an int option.
    if unsafe {
        libc::setsockopt(
            sock,
            libc::SOL_SOCKET,
            libc::SO_ZEROCOPY,
            (&raw const one).cast(),
            4,
        )
    } < 0
    {
        fail("SO_ZEROCOPY");
    }
    let (mut sends, mut completed) = (0u64, 0u64);
    let mut at = 0;
    while at < data.len() {
        let want = block.min(data.len() - at);
        // SAFETY: data stays unchanged until exit.
        let n = unsafe { libc::send(sock, data[at..].as_ptr().cast(), want, libc::MSG_ZEROCOPY) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
            completed += completion(sock);
            continue;
        }
        at += check(n, "send");
        sends += 1;
    }
    while completed < sends {
        completed += completion(sock);
    }
}

/// Reads one zerocopy notification (waiting for it) and returns how many sends it completes.
fn completion(sock: i32) -> u64 {
    loop {
        let mut control = [0u64; 16];
        // SAFETY: a zeroed msghdr is valid; the control buffer outlives the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control);
        // SAFETY: valid msghdr; error-queue reads do not block.
        if unsafe { libc::recvmsg(sock, &raw mut msg, libc::MSG_ERRQUEUE) } < 0 {
            let mut pfd = libc::pollfd {
                fd: sock,
                events: 0,
                revents: 0,
            };
            // SAFETY: one pollfd.
            unsafe { libc::poll(&raw mut pfd, 1, 10_000) };
            continue;
        }
        // SAFETY: the cmsg recvmsg filled.
        let cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
        if cmsg.is_null() {
            continue;
        }
        // SAFETY: an IP_RECVERR message carries a sock_extended_err.
        let ee: libc::sock_extended_err =
            unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
        return u64::from(ee.ee_data.wrapping_sub(ee.ee_info)) + 1;
    }
}

/// `vmsplice()` each block of user memory into the pipe, then `splice()` it to the socket.
fn vmsplice(data: &[u8], (r, w): (i32, i32), sock: i32, block: usize) {
    let mut at = 0;
    while at < data.len() {
        let iov = libc::iovec {
            iov_base: data[at..].as_ptr().cast_mut().cast(),
            iov_len: block.min(data.len() - at),
        };
        // SAFETY: one iovec over memory that stays unchanged until exit.
        let n = check(
            unsafe { libc::vmsplice(w, &raw const iov, 1, 0) },
            "vmsplice",
        );
        splice_all(r, sock, n);
        at += n;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, method, file, size, block, port] = args.as_slice() else {
        eprintln!("usage: zcprof-reference METHOD FILE SIZE BLOCK PORT (copy-file-range: DEST)");
        std::process::exit(2);
    };
    let size: usize = size.parse().expect("SIZE");
    let block: usize = block.parse().expect("BLOCK");
    if method == "copy-file-range" {
        let path = CString::new(file.as_str()).expect("path");
        // SAFETY: valid C string.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
        if fd < 0 {
            fail("open");
        }
        copy_file_range(fd, port, size, block);
    }
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
        "splice" | "vmsplice" => vec![pipe(block)],
        "tee" => vec![pipe(block), pipe(block)],
        _ => Vec::new(),
    };
    if method.starts_with("io-uring") {
        uring::transfer(method, fd, sock, size, block, ready_go);
        // SAFETY: terminates the process without unwinding, like zcprof's child.
        unsafe { libc::_exit(0) }
    }
    if method == "vmsplice" || method == "msg-zerocopy" {
        let data = payload(fd, size);
        ready_go();
        if method == "vmsplice" {
            vmsplice(&data, pipes[0], sock, block);
        } else {
            msg_zerocopy(sock, &data, block);
        }
        // SAFETY: terminates the process without unwinding, like zcprof's child.
        unsafe { libc::_exit(0) }
    }
    ready_go();
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
