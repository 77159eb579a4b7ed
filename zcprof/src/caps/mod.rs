//! Capability probing: what this kernel and this process allow, decided from the kernel's own
//! answers (files it exposes, loads it accepts), never from its version number alone.
use std::{fs, path::PathBuf};

use crate::probes::catalog::HookKind;

/// Errors that stop zcprof before anything is loaded.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// Not root and without the capabilities to load and attach tracing programs.
    #[error(
        "zcprof needs root (or CAP_BPF and CAP_PERFMON) to load eBPF programs: run it with sudo"
    )]
    NotPrivileged,
}

/// Facts about the running kernel that decide which hook types can work.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Kernel {
    /// `uname -r`.
    pub release: String,
    /// /sys/kernel/btf/vmlinux exists (needed by tp_btf and fentry).
    pub btf: bool,
    /// Where tracefs is mounted, if anywhere (classic tracepoints need it for event ids).
    pub tracefs: Option<PathBuf>,
}

impl Kernel {
    /// Reads the facts from /proc and /sys.
    pub fn detect() -> Kernel {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        let btf = fs::metadata("/sys/kernel/btf/vmlinux").is_ok();
        let tracefs = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.join("events").is_dir());
        Kernel {
            release,
            btf,
            tracefs,
        }
    }

    /// Why `kind` cannot work here, if a precondition is missing. `None` means: try it.
    pub fn precondition(&self, kind: HookKind) -> Option<String> {
        match kind {
            HookKind::TpBtf if !self.btf => {
                Some("the kernel has no BTF (/sys/kernel/btf/vmlinux)".to_owned())
            }
            HookKind::Tracepoint if self.tracefs.is_none() => Some(
                "tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)".to_owned(),
            ),
            _ => None,
        }
    }
}

/// Checks that this process may load and attach tracing programs.
///
/// # Errors
/// `NotPrivileged` when neither root nor CAP_SYS_ADMIN nor CAP_BPF + CAP_PERFMON is effective.
pub fn check_privileges() -> Result<(), CapsError> {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_PERFMON: u32 = 38;
    const CAP_BPF: u32 = 39;
    let effective = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(0);
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        Err(CapsError::NotPrivileged)
    }
}
