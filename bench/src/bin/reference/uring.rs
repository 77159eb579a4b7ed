//! The io_uring references: the plainest loop of each technique, one `io_uring_enter` per step,
//! waiting for the step's completions.
use io_uring::{IoUring, opcode, squeue, types::Fd};

use crate::fail;

fn ring() -> IoUring {
    IoUring::new(8).unwrap_or_else(|_| fail("io_uring_setup"))
}

/// Submits `entries` and waits for as many completions; returns their results in order of
/// user data.
fn run(ring: &mut IoUring, entries: &[squeue::Entry]) -> Vec<i32> {
    // SAFETY: the buffers and descriptors named in the entries outlive the wait below.
    if unsafe { ring.submission().push_multiple(entries) }.is_err() {
        fail("io_uring: submission queue full");
    }
    let mut results = vec![0; entries.len()];
    let mut got = 0;
    while got < entries.len() {
        if ring.submit_and_wait(entries.len() - got).is_err() {
            fail("io_uring_enter");
        }
        for cqe in ring.completion() {
            results[usize::try_from(cqe.user_data()).unwrap_or(0)] = cqe.result();
            got += 1;
        }
    }
    if let Some(bad) = results.iter().find(|r| **r < 0) {
        eprintln!("io_uring: {}", std::io::Error::from_raw_os_error(-bad));
        std::process::exit(1);
    }
    results
}

fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Prepares what each method needs before the go byte, then runs its loop.
pub fn transfer(method: &str, file: i32, sock: i32, size: usize, block: usize, go: impl FnOnce()) {
    let mut ring = ring();
    match method {
        "io-uring" => {
            let mut buf = vec![0u8; block];
            let iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: block,
            };
            // SAFETY: buf outlives the ring.
            if unsafe { ring.submitter().register_buffers(&[iov]) }.is_err() {
                fail("io_uring_register");
            }
            go();
            let mut at = 0;
            while at < size {
                let len = block.min(size - at);
                let read = opcode::ReadFixed::new(Fd(file), buf.as_mut_ptr(), len32(len), 0)
                    .offset(at as u64)
                    .build()
                    .flags(squeue::Flags::IO_LINK)
                    .user_data(0);
                let send = opcode::Send::new(Fd(sock), buf.as_ptr(), len32(len))
                    .flags(libc::MSG_WAITALL)
                    .build()
                    .user_data(1);
                let r = run(&mut ring, &[read, send]);
                if r[0] as usize != len || r[1] as usize != len {
                    fail("io_uring: a short read or send");
                }
                at += len;
            }
        }
        "io-uring-splice" => {
            let (pr, pw) = crate::pipe(block);
            go();
            let mut at = 0;
            while at < size {
                let len = block.min(size - at);
                let into = opcode::Splice::new(Fd(file), at as i64, Fd(pw), -1, len32(len))
                    .flags(libc::SPLICE_F_MOVE)
                    .build()
                    .flags(squeue::Flags::IO_LINK)
                    .user_data(0);
                let out = opcode::Splice::new(Fd(pr), -1, Fd(sock), -1, len32(len))
                    .flags(libc::SPLICE_F_MOVE)
                    .build()
                    .user_data(1);
                let r = run(&mut ring, &[into, out]);
                if r[0] as usize != len {
                    fail("io_uring: a short splice");
                }
                // What the socket did not take yet stays in the pipe: move it on.
                crate::splice_all(pr, sock, len - r[1] as usize);
                at += len;
            }
        }
        _ => {
            let data = crate::payload(file, size);
            go();
            let (mut sends, mut notes) = (0u64, 0u64);
            for chunk in data.chunks(block) {
                let send = opcode::SendZc::new(Fd(sock), chunk.as_ptr(), len32(chunk.len()))
                    .flags(libc::MSG_WAITALL)
                    .build()
                    .user_data(0);
                // SAFETY: data stays unchanged until exit.
                if unsafe { ring.submission().push(&send) }.is_err() {
                    fail("io_uring: submission queue full");
                }
                sends += 1;
                let mut sent = false;
                while !sent {
                    if ring.submit_and_wait(1).is_err() {
                        fail("io_uring_enter");
                    }
                    for cqe in ring.completion() {
                        if io_uring::cqueue::notif(cqe.flags()) {
                            notes += 1;
                        } else if cqe.result() as usize == chunk.len() {
                            sent = true;
                        } else {
                            fail("IORING_OP_SEND_ZC: a short or failed send");
                        }
                    }
                }
            }
            while notes < sends {
                if ring.submit_and_wait(1).is_err() {
                    fail("io_uring_enter");
                }
                notes += ring
                    .completion()
                    .filter(|c| io_uring::cqueue::notif(c.flags()))
                    .count() as u64;
            }
        }
    }
}
