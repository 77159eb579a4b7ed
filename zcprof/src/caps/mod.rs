//! Capability probing: what this kernel and this process allow, decided from the kernel's own
//! answers (files it exposes, loads it accepts), never from its version number alone.
pub mod btf;
pub mod nic;

use std::{fs, path::PathBuf};

/// How a program is attached to the kernel: what the capability probes decide per kind, and
/// the catalog's variants name.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum HookKind {
    /// BPF trampoline on a kernel function's return; needs BTF and a kernel that allows it.
    Fexit,
    /// kretprobe on a kernel function; needs a kernel built with kprobes.
    Kretprobe,
    /// A perf event (cpu-clock sampling) running the program on each sample.
    PerfEvent,
    /// BTF-typed tracepoint (`BPF_TRACE_RAW_TP` with BTF); needs kernel BTF.
    TpBtf,
    /// Raw tracepoint (`BPF_PROG_TYPE_RAW_TRACEPOINT`); needs no tracefs.
    RawTp,
    /// Classic tracepoint through perf events; needs tracefs for the event id.
    Tracepoint,
}

impl HookKind {
    /// Name used in reports and program names.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Fexit => "fexit",
            HookKind::Kretprobe => "kretprobe",
            HookKind::PerfEvent => "perf_event",
            HookKind::TpBtf => "tp_btf",
            HookKind::RawTp => "raw_tp",
            HookKind::Tracepoint => "tracepoint",
        }
    }
}

/// Errors that stop zcprof before anything is loaded.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// Not root and without the capabilities to load and attach tracing programs.
    #[error(
        "zcprof needs root (or CAP_BPF and CAP_PERFMON) to load eBPF programs: run it with sudo"
    )]
    NotPrivileged,
    /// Not root, and one or both of the two capabilities missing (named).
    #[error(
        "zcprof needs root, or CAP_BPF and CAP_PERFMON, to load eBPF programs: {0} missing (run it \
         with sudo, or grant it, e.g. setpriv --ambient-caps=+bpf,+perfmon)"
    )]
    Missing(String),
    /// tracefs is not mounted and could not be mounted in zcprof's own mount namespace.
    #[error("tracefs cannot be made available: {step}: {source}")]
    Tracefs {
        step: &'static str,
        source: nix::errno::Errno,
    },
}

/// Facts about the running kernel that decide which hook types can work.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Kernel {
    /// `uname -r`.
    pub release: String,
    /// /sys/kernel/btf/vmlinux exists (needed by `tp_btf` and fentry).
    pub btf: bool,
    /// Where tracefs is mounted, if anywhere (classic tracepoints need it for event ids).
    pub tracefs: Option<PathBuf>,
    /// The kernel offers kprobes (the kprobe PMU or tracefs `kprobe_events`).
    pub kprobes: bool,
    /// The preemption model in force (`none`, `voluntary`, `full`, `lazy`), from debugfs'
    /// `sched/preempt` on kernels that can switch it; `None` where it cannot be read.
    pub preemption: Option<String>,
}

impl Kernel {
    /// Reads the facts from /proc and /sys.
    pub fn detect() -> Kernel {
        let release = nix::sys::utsname::uname().map_or_else(
            |_| "unknown".to_owned(),
            |u| u.release().to_string_lossy().into_owned(),
        );
        let btf = fs::metadata("/sys/kernel/btf/vmlinux").is_ok();
        let tracefs = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.join("events").is_dir());
        let kprobes = fs::metadata("/sys/bus/event_source/devices/kprobe").is_ok()
            || tracefs
                .as_ref()
                .is_some_and(|t| t.join("kprobe_events").exists());
        let preemption = fs::read_to_string("/sys/kernel/debug/sched/preempt")
            .ok()
            .as_deref()
            .and_then(preemption_in_force);
        Kernel {
            release,
            btf,
            tracefs,
            kprobes,
            preemption,
        }
    }

    /// Offset of `field` in the record of the classic tracepoint `event` ("group/name"), from
    /// its format file.
    #[must_use]
    pub fn field_offset(&self, event: &str, field: &str) -> Option<u32> {
        let text = fs::read_to_string(
            self.tracefs
                .as_ref()?
                .join("events")
                .join(event)
                .join("format"),
        )
        .ok()?;
        parse_field_offset(&text, field)
    }

    /// Why `kind` on `target` cannot work here, or would miss events, if a precondition is
    /// missing. `None` means: try it.
    #[must_use]
    pub fn precondition(&self, kind: HookKind, target: &str) -> Option<String> {
        match kind {
            // The syscall tracepoints are faultable on recent kernels: raw tracepoint programs
            // on them run with preemption enabled. Under full or lazy preemption a run can be
            // preempted, and the kernel then skips that program for every other task on the
            // CPU until it resumes (on Debian's 7.2, dozens of returns in a 128-step run). The
            // classic tracepoint's perf path keeps preemption off around its program.
            HookKind::RawTp
                if matches!(target, "sys_enter" | "sys_exit")
                    && matches!(self.preemption.as_deref(), Some("full" | "lazy")) =>
            {
                Some(format!(
                    "this kernel preempts kernel code ({} preemption), so a program on the \
                     syscall tracepoints can be preempted mid-run, and the kernel then skips it \
                     for every other task on that CPU",
                    self.preemption.as_deref().unwrap_or("full")
                ))
            }
            HookKind::TpBtf | HookKind::Fexit if !self.btf => {
                Some("the kernel has no BTF (/sys/kernel/btf/vmlinux)".to_owned())
            }
            HookKind::Kretprobe if !self.kprobes => {
                Some("kernel built without kprobes (no kprobe PMU, no kprobe_events)".to_owned())
            }
            HookKind::Tracepoint if self.tracefs.is_none() => Some(
                "tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)".to_owned(),
            ),
            _ => None,
        }
    }
}

/// The model in force in debugfs' `sched/preempt`, which lists the models with the active one in
/// parentheses: "none voluntary (full) lazy".
fn preemption_in_force(text: &str) -> Option<String> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix('(')?.strip_suffix(')'))
        .map(str::to_owned)
}

/// Checks that this process may load and attach tracing programs.
///
/// # Errors
/// `NotPrivileged` when neither root nor `CAP_SYS_ADMIN` nor `CAP_BPF` + `CAP_PERFMON` is effective.
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
        return Ok(());
    }
    // Name what is missing: a user who granted one of the two should hear about the other.
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(cap, _)| !has(cap))
        .map(|(_, name)| name)
        .collect();
    Err(CapsError::Missing(missing.join(" and ")))
}

/// Finds `field`'s offset in a tracefs format file: lines like
/// `field:unsigned int nr_sector;<TAB>offset:24;<TAB>size:4;<TAB>signed:0;`.
fn parse_field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?.split(';').next()?;
        // The name is the last word of the declaration, before any array suffix.
        let name = decl.split_whitespace().last()?.split('[').next()?;
        if name != field {
            return None;
        }
        line.split("offset:")
            .nth(1)?
            .split(';')
            .next()?
            .trim()
            .parse()
            .ok()
    })
}

/// Classic tracepoints need tracefs for their event ids. When it is not mounted, mount it in a
/// mount namespace of zcprof's own, so that nothing stays mounted after zcprof exits. Must run
/// before any thread is started (`unshare(CLONE_NEWNS)` refuses multi-threaded callers).
///
/// # Errors
/// The reason, when tracefs cannot be made available.
pub fn ensure_tracefs() -> Result<(), CapsError> {
    use nix::mount::{MsFlags, mount};
    let tracefs = Kernel::detect().tracefs.is_some();
    // debugfs tells the preemption model (`Kernel::preemption`).
    let debugfs = fs::metadata("/sys/kernel/debug/sched").is_ok();
    if tracefs && debugfs {
        return Ok(());
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|source| {
        CapsError::Tracefs {
            step: "unshare(CLONE_NEWNS)",
            source,
        }
    })?;
    // Keep our mounts from propagating back to the host's namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|source| CapsError::Tracefs {
        step: "making / private",
        source,
    })?;
    if !debugfs {
        // Optional: without it the preemption model is unknown, and raw tracepoints stay first.
        let _ = mount(
            Some("nodev"),
            "/sys/kernel/debug",
            Some("debugfs"),
            MsFlags::empty(),
            None::<&str>,
        );
    }
    if tracefs {
        return Ok(());
    }
    mount(
        Some("nodev"),
        "/sys/kernel/tracing",
        Some("tracefs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|source| CapsError::Tracefs {
        step: "mount tracefs",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preemption_model_in_force_is_the_one_in_parentheses() {
        assert_eq!(
            preemption_in_force("none voluntary (full) lazy\n").as_deref(),
            Some("full")
        );
        assert_eq!(
            preemption_in_force("full (lazy) \n").as_deref(),
            Some("lazy")
        );
        assert_eq!(preemption_in_force("none voluntary full lazy"), None);
    }

    #[test]
    fn format_offsets() {
        let format = "name: block_rq_complete
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:unsigned int nr_sector;\toffset:24;\tsize:4;\tsigned:0;
\tfield:char rwbs[10];\toffset:34;\tsize:10;\tsigned:0;
\tfield:__data_loc char[] cmd;\toffset:44;\tsize:4;\tsigned:0;
";
        assert_eq!(parse_field_offset(format, "dev"), Some(8));
        assert_eq!(parse_field_offset(format, "nr_sector"), Some(24));
        assert_eq!(parse_field_offset(format, "rwbs"), Some(34));
        assert_eq!(parse_field_offset(format, "cmd"), Some(44));
        assert_eq!(parse_field_offset(format, "sector"), None);
    }
}
