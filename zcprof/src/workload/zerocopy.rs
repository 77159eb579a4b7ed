//! `MSG_ZEROCOPY`: the measured sender (`SO_ZEROCOPY`, `send(MSG_ZEROCOPY)`, completions read from
//! the socket's error queue) and the kernel's verdict it hands back to the parent through a
//! shared memory file, so that telling it costs no syscall inside the measured window.
use std::{io, os::fd::RawFd};

use super::{
    calls::check,
    tally::{Tally, Verdict},
};

/// `SO_ZEROCOPY` (include/uapi/asm-generic/socket.h), Linux 4.14+.
const SO_ZEROCOPY: libc::c_int = 60;
/// `SO_EE_ORIGIN_ZEROCOPY` (include/uapi/linux/errqueue.h): a zerocopy completion.
const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_CODE_ZEROCOPY_COPIED`: the kernel copied the data after all.
const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;
/// How long the sender waits for a completion before it gives up.
const COMPLETION_WAIT_MS: libc::c_int = 10_000;
/// Marks a filled verdict in the shared file.
const MAGIC: u64 = 0x7a63_7072_6f66_7a63;

/// The shared file's layout: `magic` is written last, when the transfer finished.
#[repr(C)]
struct Shared {
    magic: u64,
    has_verdict: u64,
    verdict: Verdict,
    has_uring: u64,
    uring: Tally,
}

/// The child's mapping of the shared file, made before the measured window.
pub(super) struct SharedReport {
    shared: *mut Shared,
}

impl SharedReport {
    /// Maps the parent's file and touches it: a fault at the end would be a mode switch in the
    /// window.
    pub(super) fn map(report_fd: Option<RawFd>) -> io::Result<SharedReport> {
        let fd = report_fd.ok_or_else(|| io::Error::other("no file for the verdict"))?;
        // SAFETY: maps the parent's 4096-byte shared file.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let shared = map.cast::<Shared>();
        // SAFETY: the mapping is 4096 bytes, larger than Shared.
        unsafe { (*shared).magic = 0 };
        Ok(SharedReport { shared })
    }

    /// Leaves what the kernel said for the parent, and marks it finished.
    pub(super) fn publish(&self, verdict: Option<Verdict>, uring: Option<Tally>) {
        // SAFETY: the shared mapping, touched in map.
        unsafe {
            (*self.shared).has_verdict = u64::from(verdict.is_some());
            (*self.shared).verdict = verdict.unwrap_or_default();
            (*self.shared).has_uring = u64::from(uring.is_some());
            (*self.shared).uring = uring.unwrap_or_default();
            (*self.shared).magic = MAGIC;
        }
    }
}

/// The parent's side: an anonymous shared file the child inherits.
pub struct VerdictFile {
    fd: std::os::fd::OwnedFd,
}

impl VerdictFile {
    /// Creates the file, inheritable by the child (no close-on-exec).
    ///
    /// # Errors
    /// When `memfd_create` or `ftruncate` fail.
    pub fn create() -> io::Result<VerdictFile> {
        use std::os::fd::FromRawFd as _;
        // SAFETY: a constant C string; flags 0 keep the descriptor across exec.
        let fd = unsafe { libc::memfd_create(c"zcprof-zerocopy".as_ptr(), 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor we just created and now own.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let file = std::fs::File::from(fd);
        file.set_len(4096)?;
        Ok(VerdictFile { fd: file.into() })
    }

    /// The descriptor number the child is told.
    #[must_use]
    pub fn raw(&self) -> RawFd {
        use std::os::fd::AsRawFd as _;
        self.fd.as_raw_fd()
    }

    /// What the child left, if it finished.
    fn shared(&self) -> Option<Shared> {
        use std::os::unix::fs::FileExt as _;
        let file = std::fs::File::from(self.fd.try_clone().ok()?);
        let mut bytes = [0u8; size_of::<Shared>()];
        file.read_exact_at(&mut bytes, 0).ok()?;
        // SAFETY: Shared is plain old data of exactly this size.
        let shared: Shared = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        (shared.magic == MAGIC).then_some(shared)
    }

    /// The zero-copy verdict the child left, if it finished and sent with zero-copy.
    #[must_use]
    pub fn read(&self) -> Option<Verdict> {
        self.shared()
            .and_then(|s| (s.has_verdict != 0).then_some(s.verdict))
    }

    /// What `io_uring`'s completions said, if the child finished and used `io_uring`.
    #[must_use]
    pub fn read_uring(&self) -> Option<Tally> {
        self.shared()
            .and_then(|s| (s.has_uring != 0).then_some(s.uring))
    }
}

/// The child's side, prepared before the measured window.
pub(super) struct Sender {
    sock: RawFd,
    shared: SharedReport,
    /// Bytes of each send, by completion id.
    sent: Vec<u32>,
    block: usize,
    verdict: Verdict,
}

impl Sender {
    /// Turns `SO_ZEROCOPY` on, maps the shared file and reserves room for every send's size, so
    /// the measured loop makes no other syscall than its sends and completion reads.
    pub(super) fn prepare(
        sock: RawFd,
        report_fd: Option<RawFd>,
        size: usize,
        block: usize,
    ) -> io::Result<Sender> {
        let on: libc::c_int = 1;
        // SAFETY: a c_int option value of the right size.
        let ret = unsafe {
            libc::setsockopt(
                sock,
                libc::SOL_SOCKET,
                SO_ZEROCOPY,
                (&raw const on).cast(),
                libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap_or(4),
            )
        };
        check(ret as isize, "setsockopt SO_ZEROCOPY")?;
        let shared = SharedReport::map(report_fd)?;
        let steps = size.div_ceil(block.max(1));
        Ok(Sender {
            sock,
            shared,
            sent: Vec::with_capacity(steps * 2 + 64),
            block: block.max(1),
            verdict: Verdict::default(),
        })
    }

    /// Sends all of `payload` in steps of the block size, then waits for every completion and
    /// leaves the verdict in the shared file.
    pub(super) fn send_all(&mut self, payload: &[u8]) -> io::Result<()> {
        for chunk in payload.chunks(self.block) {
            let mut at = 0;
            while at < chunk.len() {
                let rest = &chunk[at..];
                // SAFETY: the payload stays mapped and unchanged until exit, as MSG_ZEROCOPY
                // needs (the kernel may still read the pages after send returns).
                let sent = unsafe {
                    libc::send(
                        self.sock,
                        rest.as_ptr().cast(),
                        rest.len(),
                        libc::MSG_ZEROCOPY,
                    )
                };
                if sent < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                    // Too many completions outstanding: read some, then send again.
                    self.verdict.enobufs += 1;
                    self.read_completions()?;
                    continue;
                }
                let n = check(sent, "send MSG_ZEROCOPY")?;
                if n == 0 {
                    return Err(io::Error::other("send took nothing"));
                }
                self.sent.push(u32::try_from(n).unwrap_or(u32::MAX));
                self.verdict.sends += 1;
                at += n;
            }
        }
        while self.verdict.completed < self.verdict.sends {
            self.read_completions()?;
        }
        self.shared.publish(Some(self.verdict), None);
        Ok(())
    }

    /// Reads one notification from the error queue, waiting (poll) until one is there.
    fn read_completions(&mut self) -> io::Result<()> {
        loop {
            let mut control = [0u64; 16];
            // SAFETY: zeroed msghdr is valid; the control buffer outlives the call.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = size_of_val(&control);
            // SAFETY: msg is valid; error-queue reads never block.
            let ret = unsafe { libc::recvmsg(self.sock, &raw mut msg, libc::MSG_ERRQUEUE) };
            if ret < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EAGAIN) {
                    return Err(io::Error::new(
                        err.kind(),
                        format!("recvmsg MSG_ERRQUEUE: {err}"),
                    ));
                }
                self.wait_error_queue()?;
                continue;
            }
            self.notification(&msg);
            return Ok(());
        }
    }

    /// Waits until the error queue holds a notification (POLLERR).
    fn wait_error_queue(&self) -> io::Result<()> {
        let mut pfd = libc::pollfd {
            fd: self.sock,
            events: 0,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ret = unsafe { libc::poll(&raw mut pfd, 1, COMPLETION_WAIT_MS) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(io::Error::new(err.kind(), format!("poll: {err}")));
        }
        if ret == 0 {
            return Err(io::Error::other(format!(
                "no MSG_ZEROCOPY completion for {} s ({} of {} sends completed)",
                COMPLETION_WAIT_MS / 1000,
                self.verdict.completed,
                self.verdict.sends
            )));
        }
        Ok(())
    }

    /// Counts one notification: ids `ee_info..=ee_data`, copied or not.
    fn notification(&mut self, msg: &libc::msghdr) {
        // SAFETY: the cmsg walk stays inside the control buffer recvmsg filled.
        let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
        while !cmsg.is_null() {
            // SAFETY: cmsg points into the control buffer.
            let (level, kind) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
            let recverr = (level == libc::SOL_IP && kind == libc::IP_RECVERR)
                || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR);
            if recverr {
                // SAFETY: an IP_RECVERR message carries a sock_extended_err.
                let ee: libc::sock_extended_err =
                    unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
                if ee.ee_errno == 0 && ee.ee_origin == SO_EE_ORIGIN_ZEROCOPY {
                    self.verdict.notifications += 1;
                    self.complete(
                        ee.ee_info,
                        ee.ee_data,
                        ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0,
                    );
                }
            }
            // SAFETY: as above.
            cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
        }
    }

    fn complete(&mut self, lo: u32, hi: u32, copied: bool) {
        let ids = u64::from(hi.wrapping_sub(lo)) + 1;
        let bytes: u64 = (0..ids)
            .filter_map(|i| {
                let id = usize::try_from(lo.wrapping_add(u32::try_from(i).ok()?)).ok()?;
                self.sent.get(id).copied()
            })
            .map(u64::from)
            .sum();
        self.verdict.completed += ids;
        if copied {
            self.verdict.copied += ids;
            self.verdict.copied_bytes += bytes;
        } else {
            self.verdict.zerocopy_bytes += bytes;
        }
    }
}
