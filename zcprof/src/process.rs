//! Real programs as measured subjects: a command started stopped and released once the probes
//! are attached (`exec`), or a process that is already running (`attach`).
use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::{cancel, workload::ChildUsage};

/// Errors about the program to measure.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// No such process, or one this PID namespace cannot see.
    #[error("no process with PID {0} (or it is not visible in this PID namespace)")]
    NoSuchPid(u32),
    /// The command is not an executable file, nor found in PATH.
    #[error("command not found: {0}")]
    NotFound(String),
    /// The command names a file that cannot be executed.
    #[error("cannot execute {0}: {1}")]
    NotExecutable(String, &'static str),
    /// fork or waitpid failed.
    #[error("cannot start {command}: {source}")]
    Spawn { command: String, source: io::Error },
}

/// How a measured command ended.
#[derive(Clone, Copy, Debug)]
pub struct Ended {
    /// Exit status, or 128 + signal number when a signal ended it (as shells report it).
    pub status: u8,
    pub usage: ChildUsage,
}

/// Finds `name` as a shell would: a path when it has a slash, else the first executable file
/// of that name in PATH.
fn resolve(name: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| executable(p))
}

/// Checks that `name` resolves to a program that can run, as `Stopped::spawn` will need: so
/// that a command that cannot run is bad input, said before privileges are even looked at.
///
/// # Errors
/// The reason it cannot run: not found, a directory, or no x permission.
pub fn check_command(name: &str) -> Result<(), ProcessError> {
    resolve(name).map(|_| ()).ok_or_else(|| not_found(name))
}

/// Why `command` could not be resolved: a path to a file that is there but not executable is
/// not "not found".
fn not_found(command: &str) -> ProcessError {
    if command.contains('/') {
        match std::fs::metadata(command) {
            Ok(m) if m.is_dir() => {
                return ProcessError::NotExecutable(command.to_owned(), "it is a directory");
            }
            Ok(_) => {
                return ProcessError::NotExecutable(
                    command.to_owned(),
                    "it is not executable (no x permission)",
                );
            }
            Err(_) => {}
        }
    }
    ProcessError::NotFound(command.to_owned())
}

/// A command that has been forked and stopped itself before `exec`.
pub struct Stopped {
    pid: i32,
    _registered: cancel::ChildGuard,
}

impl Stopped {
    /// Forks `argv`; the child stops itself (SIGSTOP) and execs only when released, so the
    /// probes see its first instruction.
    ///
    /// # Errors
    /// When the command cannot be found or the fork fails.
    pub fn spawn(argv: &[String]) -> Result<Stopped, ProcessError> {
        let command = argv.first().cloned().unwrap_or_default();
        let path = resolve(&command).ok_or_else(|| not_found(&command))?;
        let spawn_err = |source| ProcessError::Spawn {
            command: command.clone(),
            source,
        };
        // Everything the child needs is built before fork: after it, only async-signal-safe
        // calls are allowed in a multi-threaded parent.
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|e| spawn_err(io::Error::other(e)))?;
        let c_args: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|e| spawn_err(io::Error::other(e)))?;
        let mut c_argv: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
        c_argv.push(std::ptr::null());
        // SAFETY: the child only calls raise, execv and _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(spawn_err(io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY: async-signal-safe calls on data prepared before fork.
            unsafe {
                libc::raise(libc::SIGSTOP);
                libc::execv(c_path.as_ptr(), c_argv.as_ptr());
                libc::_exit(127);
            }
        }
        let registered = cancel::ChildGuard::register(u32::try_from(pid).unwrap_or(0));
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child.
            let ret = unsafe { libc::waitpid(pid, &raw mut status, libc::WUNTRACED) };
            if ret == pid {
                break;
            }
            if ret < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return Err(spawn_err(io::Error::last_os_error()));
            }
        }
        if !libc::WIFSTOPPED(status) {
            return Err(spawn_err(io::Error::other(
                "the child ended before it could be measured",
            )));
        }
        Ok(Stopped {
            pid,
            _registered: registered,
        })
    }

    /// The process id the probes filter on.
    #[must_use]
    pub fn pid(&self) -> u32 {
        u32::try_from(self.pid).unwrap_or(0)
    }

    /// Lets the command run and waits for it to end, calling `tick` every `interval`.
    pub fn run(self, interval: Option<Duration>, mut tick: impl FnMut()) -> Ended {
        // SAFETY: signalling our own stopped child.
        unsafe { libc::kill(self.pid, libc::SIGCONT) };
        let mut status = 0;
        // SAFETY: a zeroed rusage is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // Without an interval, block in wait4; with one, poll it between ticks.
        let flags = if interval.is_some() { libc::WNOHANG } else { 0 };
        let mut last_tick = Instant::now();
        loop {
            // SAFETY: valid out-pointers; waiting for our own child.
            let ret = unsafe { libc::wait4(self.pid, &raw mut status, flags, &raw mut usage) };
            if ret == self.pid
                || (ret < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted)
            {
                break;
            }
            if let Some(every) = interval {
                if last_tick.elapsed() >= every {
                    tick();
                    last_tick = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else if libc::WIFSIGNALED(status) {
            128 + libc::WTERMSIG(status)
        } else {
            1
        };
        Ended {
            status: u8::try_from(code).unwrap_or(1),
            usage: ChildUsage {
                voluntary_switches: u64::try_from(usage.ru_nvcsw).unwrap_or(0),
                involuntary_switches: u64::try_from(usage.ru_nivcsw).unwrap_or(0),
            },
        }
    }
}

/// Checks that `pid` names a process this PID namespace can see.
///
/// # Errors
/// `NoSuchPid` otherwise.
pub fn check_pid(pid: u32) -> Result<(), ProcessError> {
    if pid > 0 && Path::new(&format!("/proc/{pid}/stat")).exists() {
        Ok(())
    } else {
        Err(ProcessError::NoSuchPid(pid))
    }
}

/// The processes whose parent is `pid`, with their names, by pid: read from every
/// `/proc/PID/stat` (the `children` files need a kernel option and list one thread's children
/// only).
#[must_use]
pub fn children_of(pid: u32) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<(u32, String)> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|child| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            // "PID (comm) S PPID ...": the name may hold spaces and parentheses.
            let (head, rest) = stat.rsplit_once(") ")?;
            let name = head.split_once(" (")?.1.to_owned();
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == pid).then_some((child, name))
        })
        .collect();
    out.sort_unstable();
    out
}

/// A live process: present and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// Why watching an attached process stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchEnd {
    Duration,
    Exited,
    Interrupted,
}

/// Waits until `duration` passes, the process exits, or Ctrl-C, calling `tick` every
/// `interval`.
pub fn watch(
    pid: u32,
    duration: Option<Duration>,
    interval: Option<Duration>,
    mut tick: impl FnMut(),
) -> WatchEnd {
    let start = Instant::now();
    let mut last_tick = start;
    loop {
        if interval.is_some_and(|every| last_tick.elapsed() >= every) {
            tick();
            last_tick = Instant::now();
        }
        if cancel::requested() {
            return WatchEnd::Interrupted;
        }
        if !alive(pid) {
            return WatchEnd::Exited;
        }
        if duration.is_some_and(|d| start.elapsed() >= d) {
            return WatchEnd::Duration;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_resolve_like_a_shell() {
        assert!(resolve("sh").is_some_and(|p| p.ends_with("sh")));
        assert!(resolve("/bin/sh").is_some());
        assert!(resolve("zcprof-no-such-command").is_none());
        assert!(resolve("/etc/passwd").is_none(), "not executable");
    }

    #[test]
    fn pids_are_checked() {
        assert!(check_pid(std::process::id()).is_ok());
        assert!(matches!(check_pid(0), Err(ProcessError::NoSuchPid(0))));
        assert!(matches!(
            check_pid(u32::MAX),
            Err(ProcessError::NoSuchPid(_))
        ));
    }
}
