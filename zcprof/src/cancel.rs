//! Ctrl-C: one process-wide flag, plus the measured child to kill, so that every layer can stop
//! early and still run its cleanup (detach programs, remove files, reap children).
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static CANCELLED: AtomicBool = AtomicBool::new(false);
static CHILD: AtomicI32 = AtomicI32::new(0);
/// The signal that cancelled the run (SIGINT unless another was recorded).
static SIGNAL: AtomicI32 = AtomicI32::new(libc::SIGINT);

/// The flag that long loops poll.
#[must_use]
pub fn flag() -> &'static AtomicBool {
    &CANCELLED
}

/// True once Ctrl-C (or SIGTERM) arrived.
pub fn requested() -> bool {
    CANCELLED.load(Ordering::SeqCst)
}

/// `request`, remembering that `signal` asked for it, for the exit status.
pub fn request_by(signal: i32) {
    SIGNAL.store(signal, Ordering::SeqCst);
    request();
}

/// The exit status of a cancelled run, as shells report a death by the signal that cancelled
/// it: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP.
#[must_use]
pub fn exit_status() -> u8 {
    u8::try_from(128 + SIGNAL.load(Ordering::SeqCst)).unwrap_or(130)
}

/// Marks the run as cancelled and kills the current workload child, if any. The code waiting
/// for that child then reaps it and unwinds normally.
pub fn request() {
    CANCELLED.store(true, Ordering::SeqCst);
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Registers the child that `request` must kill; cleared when the guard drops.
pub struct ChildGuard(());

impl ChildGuard {
    /// Registers `pid`.
    pub fn register(pid: u32) -> ChildGuard {
        CHILD.store(i32::try_from(pid).unwrap_or(0), Ordering::SeqCst);
        if requested() {
            request();
        }
        ChildGuard(())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        CHILD.store(0, Ordering::SeqCst);
    }
}
