//! The syscall-heavy loop of the overhead benchmark: read() 4 KiB from a page-cached file and
//! write() it to /dev/null, rewinding at the end, for a given number of syscalls. It times only
//! its own loop (CLOCK_MONOTONIC), so a tracer's start-up and tear-down are not counted, and
//! writes `<syscalls> <nanoseconds>` to the result file.
//!
//! Usage: zcprof-syscall-loop FILE SYSCALLS RESULT
use std::{ffi::CString, io::Write as _};

const BLOCK: usize = 4096;

fn now_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut t) };
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

fn open(path: &str, flags: i32) -> i32 {
    let c = CString::new(path).expect("path without NUL");
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open {path}: {}", std::io::Error::last_os_error());
    fd
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, syscalls, result] = args.as_slice() else {
        eprintln!("usage: zcprof-syscall-loop FILE SYSCALLS RESULT");
        std::process::exit(2);
    };
    let wanted: u64 = syscalls.parse().expect("SYSCALLS is a number");
    let src = open(file, libc::O_RDONLY);
    let null = open("/dev/null", libc::O_WRONLY);
    let mut buf = [0u8; BLOCK];
    let mut calls = 0u64;
    let start = now_ns();
    while calls < wanted {
        // SAFETY: buf has BLOCK bytes.
        let n = unsafe { libc::read(src, buf.as_mut_ptr().cast(), BLOCK) };
        calls += 1;
        if n <= 0 {
            // SAFETY: plain lseek on our descriptor.
            unsafe { libc::lseek(src, 0, libc::SEEK_SET) };
            calls += 1;
            continue;
        }
        // SAFETY: n bytes of buf are initialised.
        unsafe { libc::write(null, buf.as_ptr().cast(), n.unsigned_abs()) };
        calls += 1;
    }
    let elapsed = now_ns() - start;
    let mut out = std::fs::File::create(result).expect("result file");
    writeln!(out, "{calls} {elapsed}").expect("result written");
}
