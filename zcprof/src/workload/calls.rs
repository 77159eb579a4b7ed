//! The workload's syscall wrappers that several methods share: a checked return value, and
//! moving what a pipe holds onward. A leaf: the methods import it, it imports none of them.
use std::{io, os::fd::RawFd};

/// The last OS error, named by `what`.
pub(super) fn os_err(what: &str) -> io::Error {
    let err = io::Error::last_os_error();
    io::Error::new(err.kind(), format!("{what}: {err}"))
}

/// A syscall's return value as a byte count, or the error it set (named by `what`).
pub(super) fn check(ret: isize, what: &str) -> io::Result<usize> {
    #[expect(clippy::cast_sign_loss, reason = "checked non-negative")]
    if ret < 0 {
        Err(os_err(what))
    } else {
        Ok(ret as usize)
    }
}

/// `more`: `SPLICE_F_MORE`, which tells a socket that more data follows, so it may hold back a
/// partly filled segment.
pub(super) fn splice_fd(
    from: RawFd,
    to: RawFd,
    len: usize,
    more: bool,
    what: &str,
) -> io::Result<usize> {
    // SAFETY: null offsets: file positions advance.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            if more {
                libc::SPLICE_F_MOVE | libc::SPLICE_F_MORE
            } else {
                libc::SPLICE_F_MOVE
            },
        )
    };
    check(n, what)
}

/// Moves exactly `len` bytes that are already in a pipe onward.
pub(super) fn drain(
    pipe_r: RawFd,
    to: RawFd,
    mut len: usize,
    more: bool,
    what: &str,
) -> io::Result<()> {
    while len > 0 {
        let n = splice_fd(pipe_r, to, len, more, what)?;
        if n == 0 {
            return Err(io::Error::other(format!("{what}: pipe emptied early")));
        }
        len -= n;
    }
    Ok(())
}
