//! `io_uring` transfers: one ring set up before the measured window (`io_uring_setup`, the
//! opcode probe, the registered buffer, a first `NOP` that makes the kernel's per-task
//! context), then loops that queue linked requests and wait for their completions with
//! `io_uring_enter`. What the completions said is handed back to the parent through the shared
//! file of `zerocopy`, so telling it costs no syscall in the window.
//!
//! The ring comes from the `io-uring` crate (tokio-rs): its submission and completion queues are
//! shared memory with the kernel, with memory-ordering rules that hand-written ring code gets
//! wrong easily, and the crate keeps up with the kernel's opcodes and flags.
use std::{io, os::fd::RawFd};

use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types::Fd};

use super::{
    Method,
    calls::check,
    tally::{Tally, Verdict},
    zerocopy::SharedReport,
};

/// `IORING_SEND_ZC_REPORT_USAGE` (`include/uapi/linux/io_uring.h`, 6.2): the notification CQE
/// says whether the kernel copied after all.
const SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`: set in a notification's `res` when the kernel copied.
const NOTIF_USAGE_ZC_COPIED: i32 = i32::MIN;
/// `/proc/sys/kernel/io_uring_disabled` (6.6): 0 allowed, 1 only for `io_uring_group`, 2 off.
const DISABLED_SYSCTL: &str = "/proc/sys/kernel/io_uring_disabled";
/// Entries of the submission ring: a step queues at most two linked requests.
const RING_ENTRIES: u32 = 8;

/// The kernel's refusal of `io_uring`, in one line with its reason.
fn refused(what: &str, err: &io::Error) -> io::Error {
    let sysctl = std::fs::read_to_string(DISABLED_SYSCTL)
        .ok()
        .map(|s| s.trim().to_owned());
    let why = match (err.raw_os_error(), sysctl.as_deref()) {
        (Some(libc::EPERM), Some("2")) => " (kernel.io_uring_disabled = 2: io_uring is off)".into(),
        (Some(libc::EPERM), Some("1")) => {
            " (kernel.io_uring_disabled = 1: only members of kernel.io_uring_group may use it)"
                .into()
        }
        (Some(libc::EPERM), _) => " (a security policy such as seccomp refused it)".into(),
        (Some(libc::ENOSYS), _) => " (the kernel was built without io_uring)".into(),
        _ => String::new(),
    };
    io::Error::new(err.kind(), format!("{what}: {err}{why}"))
}

/// The ring and what it is used for, prepared before the measured window.
pub(super) struct Ring {
    uring: IoUring,
    method: Method,
    shared: SharedReport,
    tally: Tally,
    verdict: Verdict,
    /// send-zc: bytes of each send, by user data, for the verdict's byte counts.
    zc_len: Vec<u32>,
}

impl Ring {
    /// Sets up the ring, checks that the kernel has the opcodes `method` needs, registers
    /// `buffer` (io-uring's fixed buffer) and runs one `NOP`, so that the kernel's per-task
    /// `io_uring` context exists before the window.
    pub(super) fn prepare(
        method: Method,
        buffer: Option<&mut [u8]>,
        report_fd: Option<RawFd>,
        steps: usize,
    ) -> io::Result<Ring> {
        let uring = IoUring::new(RING_ENTRIES).map_err(|e| refused("io_uring_setup", &e))?;
        let mut probe = Probe::new();
        uring
            .submitter()
            .register_probe(&mut probe)
            .map_err(|e| refused("io_uring_register IORING_REGISTER_PROBE", &e))?;
        let needs: &[(u8, &str, &str)] = match method {
            Method::IoUring => &[
                (opcode::ReadFixed::CODE, "IORING_OP_READ_FIXED", "5.1"),
                (opcode::Send::CODE, "IORING_OP_SEND", "5.6"),
            ],
            Method::IoUringSplice => &[(opcode::Splice::CODE, "IORING_OP_SPLICE", "5.7")],
            _ => &[(opcode::SendZc::CODE, "IORING_OP_SEND_ZC", "6.0")],
        };
        for (code, name, since) in needs {
            if !probe.is_supported(*code) {
                return Err(io::Error::other(format!(
                    "this kernel's io_uring does not support {name} (IORING_REGISTER_PROBE; it \
                     appeared in Linux {since})"
                )));
            }
        }
        if let Some(buf) = buffer {
            let iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: the buffer stays allocated (and is never freed) until the process exits.
            unsafe { uring.submitter().register_buffers(&[iov]) }
                .map_err(|e| refused("io_uring_register IORING_REGISTER_BUFFERS", &e))?;
        }
        let mut ring = Ring {
            uring,
            method,
            shared: SharedReport::map(report_fd)?,
            tally: Tally::default(),
            verdict: Verdict::default(),
            zc_len: Vec::with_capacity(steps * 2 + 64),
        };
        ring.push(&[opcode::Nop::new().build()])?;
        ring.enter(1)?;
        let nop = ring.reap();
        if let Some(res) = nop.iter().map(|c| c.1).find(|&r| r < 0) {
            return Err(refused(
                "IORING_OP_NOP",
                &io::Error::from_raw_os_error(-res),
            ));
        }
        ring.tally = Tally::default();
        Ok(ring)
    }

    fn push(&mut self, entries: &[squeue::Entry]) -> io::Result<()> {
        // SAFETY: every buffer an entry names lives until the process exits.
        unsafe { self.uring.submission().push_multiple(entries) }
            .map_err(|_| io::Error::other("the io_uring submission queue is full"))?;
        self.tally.submitted += entries.len() as u64;
        Ok(())
    }

    /// One `io_uring_enter`: submits what is queued and waits for `want` completions.
    fn enter(&mut self, want: usize) -> io::Result<()> {
        loop {
            self.tally.enters += 1;
            match self.uring.submit_and_wait(want) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io::Error::new(e.kind(), format!("io_uring_enter: {e}"))),
            }
        }
    }

    /// The completions now in the ring: (user data, result, flags).
    fn reap(&mut self) -> Vec<(u64, i32, u32)> {
        let done: Vec<(u64, i32, u32)> = self
            .uring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        self.tally.completions += done.len() as u64;
        done
    }

    /// Submits `entries` (linked) and waits until each has completed.
    fn run(&mut self, entries: &[squeue::Entry]) -> io::Result<Vec<(u64, i32, u32)>> {
        self.push(entries)?;
        let mut done = Vec::with_capacity(entries.len());
        while done.len() < entries.len() {
            self.enter(entries.len() - done.len())?;
            done.extend(self.reap());
        }
        done.sort_by_key(|c| c.0);
        Ok(done)
    }

    /// A completion's result as bytes, or the kernel's error. `-ECANCELED` of a linked
    /// request (the one before it fell short) is zero bytes: the caller moves the rest.
    fn bytes(&mut self, res: i32, what: &str) -> io::Result<usize> {
        if res == -libc::ECANCELED {
            self.tally.cancelled += 1;
            return Ok(0);
        }
        check(res as isize, what).map_err(|_| {
            let err = io::Error::from_raw_os_error(-res);
            io::Error::new(err.kind(), format!("{what}: {err}"))
        })
    }

    /// Reads each block into the registered buffer (`READ_FIXED`) linked to a `SEND` of it:
    /// one `io_uring_enter` per step when nothing falls short.
    pub(super) fn read_send(
        &mut self,
        file: RawFd,
        sock: RawFd,
        buf: &mut [u8],
        size: usize,
    ) -> io::Result<()> {
        let block = buf.len();
        let mut at = 0usize;
        while at < size {
            let len = block.min(size - at);
            let into_buf = opcode::ReadFixed::new(Fd(file), buf.as_mut_ptr(), to_u32(len), 0)
                .offset(at as u64)
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(0);
            let to_sock = opcode::Send::new(Fd(sock), buf.as_ptr(), to_u32(len))
                .flags(libc::MSG_WAITALL)
                .build()
                .user_data(1);
            let done = self.run(&[into_buf, to_sock])?;
            let n = self.bytes(done[0].1, "IORING_OP_READ_FIXED")?;
            let took = self.bytes(done[1].1, "IORING_OP_SEND")?;
            if n == 0 {
                return Err(io::Error::other(
                    "the file ended before --size bytes were read",
                ));
            }
            self.tally.reads += 1;
            self.tally.read_bytes += n as u64;
            self.tally.sent_bytes += took as u64;
            // A short read cancelled the send (or a send fell short): send what is owed.
            self.send_rest(sock, &buf[took.min(n)..n])?;
            at += n;
        }
        self.publish();
        Ok(())
    }

    fn send_rest(&mut self, sock: RawFd, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let send = opcode::Send::new(Fd(sock), data.as_ptr(), to_u32(data.len()))
                .flags(libc::MSG_WAITALL)
                .build()
                .user_data(1);
            let done = self.run(&[send])?;
            let n = self.bytes(done[0].1, "IORING_OP_SEND")?;
            if n == 0 {
                return Err(io::Error::other("IORING_OP_SEND took nothing"));
            }
            self.tally.sent_bytes += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    /// Splices each block from the file into the pipe, linked to a splice from the pipe to the
    /// socket. `io_uring` runs splices in its io-wq workers (`iou-wrk-*`), never inline.
    pub(super) fn splice(
        &mut self,
        file: RawFd,
        pipe: (RawFd, RawFd),
        sock: RawFd,
        size: usize,
        block: usize,
    ) -> io::Result<()> {
        let mut at = 0usize;
        while at < size {
            let len = block.min(size - at);
            let offset = i64::try_from(at).map_err(io::Error::other)?;
            let into = opcode::Splice::new(Fd(file), offset, Fd(pipe.1), -1, to_u32(len))
                .flags(libc::SPLICE_F_MOVE)
                .build()
                .flags(squeue::Flags::IO_LINK)
                .user_data(0);
            let out = opcode::Splice::new(Fd(pipe.0), -1, Fd(sock), -1, to_u32(len))
                .flags(libc::SPLICE_F_MOVE)
                .build()
                .user_data(1);
            let done = self.run(&[into, out])?;
            let n = self.bytes(done[0].1, "IORING_OP_SPLICE file to pipe")?;
            let mut sent = self.bytes(done[1].1, "IORING_OP_SPLICE pipe to socket")?;
            if n == 0 {
                return Err(io::Error::other(
                    "the file ended before --size bytes were spliced",
                ));
            }
            self.tally.spliced_bytes += n as u64;
            while sent < n {
                let out = opcode::Splice::new(Fd(pipe.0), -1, Fd(sock), -1, to_u32(n - sent))
                    .flags(libc::SPLICE_F_MOVE)
                    .build()
                    .user_data(1);
                let done = self.run(&[out])?;
                let more = self.bytes(done[0].1, "IORING_OP_SPLICE pipe to socket")?;
                if more == 0 {
                    return Err(io::Error::other("IORING_OP_SPLICE: the pipe emptied early"));
                }
                sent += more;
            }
            self.tally.sent_bytes += sent as u64;
            at += n;
        }
        self.publish();
        Ok(())
    }

    /// `SEND_ZC` of each block of `payload` (user memory), asking for the usage report: each
    /// send completes twice, with its result (`IORING_CQE_F_MORE`) and, once the kernel is done
    /// with the pages, with a notification whose `res` says whether it copied them.
    pub(super) fn send_zc(&mut self, sock: RawFd, payload: &[u8], block: usize) -> io::Result<()> {
        for chunk in payload.chunks(block.max(1)) {
            let mut at = 0;
            while at < chunk.len() {
                let rest = &chunk[at..];
                let id = self.zc_len.len() as u64;
                let send = opcode::SendZc::new(Fd(sock), rest.as_ptr(), to_u32(rest.len()))
                    .flags(libc::MSG_WAITALL)
                    .zc_flags(SEND_ZC_REPORT_USAGE)
                    .build()
                    .user_data(id);
                self.zc_len.push(0);
                self.push(&[send])?;
                // Wait for this send's result; notifications come when they come.
                let mut n = None;
                while n.is_none() {
                    self.enter(1)?;
                    for (data, res, flags) in self.reap() {
                        if let Some(sent) = self.zc_completion(data, res, flags)? {
                            n = Some(sent);
                        }
                    }
                }
                let n = n.unwrap_or(0);
                if n == 0 {
                    return Err(io::Error::other("IORING_OP_SEND_ZC took nothing"));
                }
                at += n;
            }
        }
        while self.verdict.completed < self.verdict.sends {
            self.enter(1)?;
            for (data, res, flags) in self.reap() {
                self.zc_completion(data, res, flags)?;
            }
        }
        self.publish();
        Ok(())
    }

    /// Counts one `SEND_ZC` completion: the send's result (`Some(bytes)`), or its notification.
    fn zc_completion(&mut self, data: u64, res: i32, flags: u32) -> io::Result<Option<usize>> {
        let id = usize::try_from(data).unwrap_or(usize::MAX);
        if cqueue::notif(flags) {
            let bytes = u64::from(self.zc_len.get(id).copied().unwrap_or(0));
            self.verdict.notifications += 1;
            self.verdict.completed += 1;
            if res & NOTIF_USAGE_ZC_COPIED != 0 {
                self.verdict.copied += 1;
                self.verdict.copied_bytes += bytes;
            } else {
                self.verdict.zerocopy_bytes += bytes;
            }
            return Ok(None);
        }
        if res == -libc::EINVAL && self.verdict.sends == 0 {
            // 6.0 and 6.1 have SEND_ZC but reject flags they do not know.
            return Err(io::Error::other(
                "IORING_OP_SEND_ZC refused IORING_SEND_ZC_REPORT_USAGE (EINVAL): this kernel's \
                 io_uring cannot say whether it copied (Linux 6.2+)",
            ));
        }
        let n = self.bytes(res, "IORING_OP_SEND_ZC")?;
        if let Some(len) = self.zc_len.get_mut(id) {
            *len = u32::try_from(n).unwrap_or(u32::MAX);
        }
        self.tally.sent_bytes += n as u64;
        // A send without IORING_CQE_F_MORE gets no notification (it failed or sent nothing).
        if cqueue::more(flags) {
            self.verdict.sends += 1;
        }
        Ok(Some(n))
    }

    /// Leaves the tally (and send-zc's verdict) in the shared file.
    fn publish(&self) {
        let verdict = (self.method == Method::IoUringSendZc).then_some(self.verdict);
        self.shared.publish(verdict, Some(self.tally));
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_one_line_with_the_kernels_reason() {
        let e = refused(
            "io_uring_setup",
            &io::Error::from_raw_os_error(libc::ENOSYS),
        );
        let text = e.to_string();
        assert!(text.starts_with("io_uring_setup: "), "{text}");
        assert!(
            text.contains("built without io_uring") && !text.contains('\n'),
            "{text}"
        );
    }
}
