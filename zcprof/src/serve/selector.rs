//! Which tasks `zcprof serve` counts: `--comm` names, one `--pid`, one `--cgroup` (v2), or
//! every task; checked and resolved (a cgroup path to its id) before anything is loaded.
use std::{os::unix::fs::MetadataExt as _, path::Path};

use crate::{collect::serve::comm_key, probes::serve::Filter};

/// Where cgroup v2 is mounted; relative `--cgroup` paths start here.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// `statfs` magic of cgroup v2 (`CGROUP2_SUPER_MAGIC`).
const CGROUP2_MAGIC: i64 = 0x6367_7270;

/// The most `--comm` names (the size of the kernel's table of them).
pub const MAX_COMMS: usize = 64;

/// Bad selectors, each one line.
#[derive(Debug, thiserror::Error)]
pub enum SelectorError {
    /// A name the kernel cannot hold: task names are at most 15 bytes.
    #[error("--comm {0:?} is longer than 15 bytes, the most a process name has")]
    LongComm(String),
    /// An empty `--comm`.
    #[error("--comm needs a process name")]
    EmptyComm,
    /// More names than the kernel's table holds.
    #[error("--comm is given {0} times: at most {MAX_COMMS} names")]
    TooManyComms(usize),
    /// `--pid` names no process.
    #[error("--pid {0}: no such process")]
    NoProcess(u32),
    /// `--cgroup` is not a cgroup v2 directory.
    #[error("--cgroup {path}: {why}")]
    Cgroup { path: String, why: String },
}

/// The resolved selector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    /// What the kernel side checks.
    pub filter: Filter,
    /// The `cgroup` label of every series (the path under the cgroup root), with `--cgroup`.
    pub cgroup_label: Option<String>,
}

impl Selector {
    /// Checks and resolves the selectors.
    ///
    /// # Errors
    /// A name longer than 15 bytes or empty, too many names, a process that does not exist, a
    /// path that is not a cgroup v2 directory.
    pub fn resolve(
        comms: &[String],
        pid: Option<u32>,
        cgroup: Option<&Path>,
        receives: bool,
    ) -> Result<Selector, SelectorError> {
        if comms.len() > MAX_COMMS {
            return Err(SelectorError::TooManyComms(comms.len()));
        }
        let mut keys = Vec::new();
        for comm in comms {
            if comm.is_empty() {
                return Err(SelectorError::EmptyComm);
            }
            if comm.len() > 15 {
                return Err(SelectorError::LongComm(comm.clone()));
            }
            keys.push(comm_key(comm.as_bytes()));
        }
        if let Some(pid) = pid
            && (pid == 0 || !Path::new(&format!("/proc/{pid}")).exists())
        {
            return Err(SelectorError::NoProcess(pid));
        }
        let (cgroup_id, cgroup_label) = match cgroup {
            Some(path) => {
                let (id, label) = resolve_cgroup(path)?;
                (id, Some(label))
            }
            None => (0, None),
        };
        Ok(Selector {
            filter: Filter {
                pid: pid.unwrap_or(0),
                cgroup: cgroup_id,
                comms: keys,
                receives,
                by_process: false,
                no_switches: false,
            },
            cgroup_label,
        })
    }

    /// What is counted, in words, for the start-up line.
    #[must_use]
    pub fn describe(&self, comms: &[String]) -> String {
        let mut parts = Vec::new();
        if !comms.is_empty() {
            parts.push(format!("process names {}", comms.join(", ")));
        }
        if self.filter.pid != 0 {
            parts.push(format!("process {}", self.filter.pid));
        }
        if let Some(label) = &self.cgroup_label {
            parts.push(format!("cgroup {label}"));
        }
        if parts.is_empty() {
            "every process".to_owned()
        } else {
            parts.join(" in ")
        }
    }
}

/// A cgroup v2 directory's id (its inode number in cgroupfs, which `bpf_get_current_cgroup_id`
/// returns) and its path under the root.
fn resolve_cgroup(path: &Path) -> Result<(u64, String), SelectorError> {
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        Path::new(CGROUP_ROOT).join(path)
    };
    let err = |why: String| SelectorError::Cgroup {
        path: path.display().to_string(),
        why,
    };
    let meta = std::fs::metadata(&full).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => err(format!(
            "no such cgroup ({} does not exist{})",
            full.display(),
            cgroup2_elsewhere()
        )),
        _ => err(e.to_string()),
    })?;
    if !meta.is_dir() {
        return Err(err(format!(
            "{} is a file, not a cgroup (a cgroup is a directory: give the one that holds it)",
            full.display()
        )));
    }
    let fs = nix::sys::statfs::statfs(&full).map_err(|e| err(e.to_string()))?;
    if fs.filesystem_type().0 != CGROUP2_MAGIC {
        return Err(err(format!(
            "{} is not in a cgroup v2 file system",
            full.display()
        )));
    }
    let label = full
        .strip_prefix(CGROUP_ROOT)
        .map_or_else(|_| full.display().to_string(), |p| p.display().to_string());
    let label = if label.is_empty() {
        "/".to_owned()
    } else {
        label
    };
    Ok((meta.ino(), label))
}

/// Where the cgroup v2 hierarchy is mounted when it is not at `CGROUP_ROOT` (a host with v1
/// controllers mounts it at `/sys/fs/cgroup/unified`), for a message; empty otherwise.
fn cgroup2_elsewhere() -> String {
    let root_is_v2 = nix::sys::statfs::statfs(CGROUP_ROOT)
        .is_ok_and(|fs| fs.filesystem_type().0 == CGROUP2_MAGIC);
    if root_is_v2 {
        return String::new();
    }
    // mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ... - FSTYPE SOURCE SUPER".
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let v2 = mounts.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2").then(|| left.split(' ').nth(4))?
    });
    match v2 {
        Some(at) => format!("; {CGROUP_ROOT} is not the cgroup v2 hierarchy here, {at} is"),
        None => "; no cgroup v2 hierarchy is mounted".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_longer_than_the_kernels_are_refused() {
        let err =
            Selector::resolve(&["a-very-long-name-x".to_owned()], None, None, false).unwrap_err();
        assert!(err.to_string().contains("longer than 15 bytes"), "{err}");
        let ok = Selector::resolve(&["nginx".to_owned()], None, None, false).unwrap();
        assert_eq!(ok.filter.comms, vec![comm_key(b"nginx")]);
    }

    #[test]
    fn an_unknown_cgroup_is_one_line() {
        let err = Selector::resolve(&[], None, Some(Path::new("no.slice/none.service")), false)
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(
                "--cgroup no.slice/none.service: no such cgroup \
                 (/sys/fs/cgroup/no.slice/none.service does not exist"
            ),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1);
    }

    #[test]
    fn a_file_in_a_cgroup_is_not_a_cgroup() {
        let v2 = [CGROUP_ROOT, "/sys/fs/cgroup/unified"]
            .into_iter()
            .map(|root| Path::new(root).join("cgroup.procs"))
            .find(|p| p.is_file());
        let Some(procs) = v2 else {
            eprintln!("skipped: no cgroup v2 hierarchy at /sys/fs/cgroup or its unified/");
            return;
        };
        let err = Selector::resolve(&[], None, Some(&procs), false).unwrap_err();
        assert!(err.to_string().contains("is a file, not a cgroup"), "{err}");
    }

    #[test]
    fn a_directory_outside_cgroupfs_is_refused() {
        let err = Selector::resolve(&[], None, Some(Path::new("/tmp")), false).unwrap_err();
        assert!(err.to_string().contains("not in a cgroup v2"), "{err}");
    }
}
