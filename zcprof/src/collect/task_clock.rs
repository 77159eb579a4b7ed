//! CPU time of the measured process tree as the kernel counts it: one software task-clock perf
//! event per thread, inherited by the threads and processes it creates (perf stat's
//! task-clock). Counting, not sampling: a short-lived child's partial sampling period is not
//! lost, and nothing runs per event.
use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

/// `struct perf_event_attr` as of its first version (`PERF_ATTR_SIZE_VER0`, 64 bytes): every
/// kernel accepts it, and a counter needs nothing newer.
#[repr(C)]
#[derive(Default)]
struct Attr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_TASK_CLOCK: u64 = 1;
/// `attr.inherit`: bit 1 of the flags word.
const INHERIT: u64 = 1 << 1;
/// `PERF_FLAG_FD_CLOEXEC`: the descriptor does not leak into the measured command.
const FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// Task-clock counters of one process's threads.
#[derive(Debug)]
pub struct TaskClock {
    fds: Vec<OwnedFd>,
}

impl TaskClock {
    /// Opens a counter on each of `tids`, counting from now.
    ///
    /// # Errors
    /// The kernel's refusal (no perf events, a thread gone, `perf_event_paranoid`).
    pub fn open(tids: &[u32]) -> io::Result<TaskClock> {
        let attr = Attr {
            kind: PERF_TYPE_SOFTWARE,
            size: u32::try_from(size_of::<Attr>()).unwrap_or(64),
            config: PERF_COUNT_SW_TASK_CLOCK,
            flags: INHERIT,
            ..Attr::default()
        };
        let mut fds = Vec::with_capacity(tids.len());
        for &tid in tids {
            // SAFETY: a valid attr for the syscall's lifetime; the returned descriptor is ours.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_perf_event_open,
                    &raw const attr,
                    libc::pid_t::try_from(tid).unwrap_or(-1),
                    -1,
                    -1,
                    FD_CLOEXEC,
                )
            };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: a fresh descriptor the kernel just returned.
            fds.push(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).unwrap_or(-1)) });
        }
        if fds.is_empty() {
            return Err(io::Error::other("no thread to count"));
        }
        Ok(TaskClock { fds })
    }

    /// Nanoseconds on a CPU so far, summed over the threads and everything they started (a
    /// counter's value includes its inherited children, the exited ones too).
    ///
    /// # Errors
    /// When a counter cannot be read.
    pub fn read(&self) -> io::Result<u64> {
        let mut total = 0u64;
        for fd in &self.fds {
            let mut value = 0u64;
            // SAFETY: reads 8 bytes into a u64 we own.
            let n = unsafe {
                libc::read(
                    fd.as_raw_fd(),
                    (&raw mut value).cast::<libc::c_void>(),
                    size_of::<u64>(),
                )
            };
            if n != 8 {
                return Err(io::Error::last_os_error());
            }
            total = total.saturating_add(value);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attr_is_the_first_version() {
        assert_eq!(size_of::<Attr>(), 64);
    }
}
