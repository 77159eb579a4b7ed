//! The measured loops of the methods beyond the note: `copy_file_range()` file to file, and
//! `vmsplice()` of user memory into a pipe spliced on to the socket. (`MSG_ZEROCOPY`, with its
//! completions, is `zerocopy`.) Raw libc calls, as in `transfer`: one line, one syscall.
use std::{io, os::fd::RawFd};

use super::calls::{check, drain};

/// `copy_file_range()` of `size` bytes in steps of `block` from `file` to `dest`, both at their
/// file positions. ext4 has no shared extents: the kernel copies page cache to page cache (a
/// splice through an internal pipe into the destination's buffered write).
pub(super) fn copy_file_range(
    file: RawFd,
    dest: RawFd,
    size: usize,
    block: usize,
) -> io::Result<()> {
    let mut left = size;
    while left > 0 {
        // SAFETY: null offsets: both file positions advance.
        let n = check(
            unsafe {
                libc::copy_file_range(
                    file,
                    std::ptr::null_mut(),
                    dest,
                    std::ptr::null_mut(),
                    block.min(left),
                    0,
                )
            },
            "copy_file_range",
        )?;
        if n == 0 {
            return Err(io::Error::other(
                "the file ended before --size bytes were copied",
            ));
        }
        left -= n;
    }
    Ok(())
}

/// `vmsplice()` each block of `payload` (user memory) into the pipe, then `splice()` it from the
/// pipe to the socket. Without `SPLICE_F_GIFT` the pipe holds references to the user pages, which
/// must not change until the socket is done with them: `payload` is never written again.
pub(super) fn vmsplice(
    payload: &[u8],
    pipe: (RawFd, RawFd),
    sock: RawFd,
    block: usize,
) -> io::Result<()> {
    for chunk in payload.chunks(block) {
        let mut at = 0;
        while at < chunk.len() {
            let rest = &chunk[at..];
            let iov = libc::iovec {
                iov_base: rest.as_ptr().cast_mut().cast(),
                iov_len: rest.len(),
            };
            // SAFETY: one iovec over memory that stays mapped and unchanged until exit.
            let n = check(
                unsafe { libc::vmsplice(pipe.1, &raw const iov, 1, 0) },
                "vmsplice",
            )?;
            if n == 0 {
                return Err(io::Error::other("vmsplice moved nothing"));
            }
            drain(pipe.0, sock, n, true, "splice pipe to socket")?;
            at += n;
        }
    }
    Ok(())
}

/// A payload sent from user memory that would not fit in it.
#[derive(Debug, thiserror::Error)]
#[error(
    "{method} sends from user memory: --size {} is more than half the {} available (choose a \
     smaller --size)",
    crate::units::format_bytes(*size),
    crate::units::format_bytes(*available)
)]
pub struct PayloadTooLarge {
    pub method: super::Method,
    pub size: u64,
    /// `MemAvailable` of /proc/meminfo.
    pub available: u64,
}

/// Refuses a payload that would take more than half the memory the kernel says is available:
/// vmsplice and msg-zerocopy send the whole payload from user memory, and filling memory would
/// take the machine down with the run.
///
/// # Errors
/// The reason, in one line, when it does not fit.
pub fn check_payload_fits(method: super::Method, size: u64) -> Result<(), PayloadTooLarge> {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map(|kib| kib.saturating_mul(1024));
    match available {
        Some(available) if size > available / 2 => Err(PayloadTooLarge {
            method,
            size,
            available,
        }),
        _ => Ok(()),
    }
}
