//! A measured run: starts the workload, attaches the probes to its process only, releases it,
//! reads the counts once, detaches, and turns it all into a report.
use std::path::Path;

use crate::{
    caps::Kernel,
    cli::{Cache, DEFAULT_SIZE, Workload},
    collect::{CollectError, Counts},
    model::{self, Devices, DiskRow, FileInfo, NetRow, RunInput, RunReport, Subject},
    probes::{HookPlan, ProbeError, Probes},
    report::Failed,
    workload::{Method, Ready, SourceError, SourceFile, WorkloadError},
};

/// Errors of a measured run.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Collect(#[from] CollectError),
    /// A usage problem found once the file is known.
    #[error("{0}")]
    Usage(String),
}

impl MeasureError {
    /// Ctrl-C, at whatever stage.
    #[must_use]
    pub fn is_interrupt(&self) -> bool {
        matches!(
            self,
            MeasureError::Source(SourceError::Interrupted)
                | MeasureError::Workload(WorkloadError::Interrupted)
        )
    }
}

/// The source file of an invocation, shared by all its methods.
///
/// # Errors
/// When the file cannot be used or written.
pub fn source(opts: &Workload) -> Result<SourceFile, MeasureError> {
    let file = match &opts.file {
        Some(path) => {
            let len = std::fs::metadata(path).map_or(0, |m| m.len());
            let size = opts.size.unwrap_or(len);
            let f = SourceFile::existing(path, size)?;
            f.warm(size).map_err(|e| SourceError::Unreadable {
                path: path.clone(),
                source: e,
            })?;
            f
        }
        None => SourceFile::generate(
            &opts.dir,
            opts.size.unwrap_or(DEFAULT_SIZE),
            crate::cancel::flag(),
        )?,
    };
    let size = opts.size.unwrap_or(file.len());
    if size == 0 {
        return Err(MeasureError::Usage(format!(
            "{} is empty: nothing to transfer",
            file.path().display()
        )));
    }
    if opts.block_size > size {
        return Err(MeasureError::Usage(format!(
            "--block-size {} is larger than the file ({})",
            crate::units::format_bytes(opts.block_size),
            crate::units::format_bytes(size)
        )));
    }
    Ok(file)
}

/// Measures one method.
///
/// # Errors
/// When the workload, the probes or the map reads fail.
pub fn run_one(
    kernel: &Kernel,
    plan: &mut HookPlan,
    source: &SourceFile,
    method: Method,
    opts: &Workload,
) -> Result<RunReport, MeasureError> {
    let size = opts.size.unwrap_or(source.len());
    if opts.cache == Cache::Cold {
        source.evict().map_err(|e| {
            MeasureError::Usage(format!(
                "cannot evict {} from the page cache: {e}",
                source.path().display()
            ))
        })?;
    }
    let ready = Ready::start(method, source, size, opts.block_size)?;
    let probes = Probes::attach(kernel, plan, ready.pid(), false)?;
    let delivery = ready.go()?;
    let counts = Counts::read(&probes.detach())?;
    Ok(model::build(RunInput {
        subject: Subject::Workload(method),
        bytes: size,
        block_size: opts.block_size,
        kernel_release: &kernel.release,
        plan,
        counts: &counts,
        received: delivery.received,
        usage: Some(delivery.usage),
        file: Some(file_info(source, opts.cache)),
        devices: devices(&counts),
    }))
}

fn file_info(source: &SourceFile, cache: Cache) -> FileInfo {
    FileInfo {
        path: source.path().display().to_string(),
        filesystem: source.fs_type.clone(),
        block_device: source.block_backed,
        cache: cache.name(),
    }
}

/// Names the devices the kernel reported by number, from sysfs.
fn devices(counts: &Counts) -> Devices {
    let disk = counts
        .disk_io
        .iter()
        .map(|(&dev, io)| {
            // Kernel dev_t: major << 20 | minor.
            let (major, minor) = (dev >> 20, dev & 0xf_ffff);
            let device = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
                .ok()
                .and_then(|u| {
                    u.lines()
                        .find_map(|l| l.strip_prefix("DEVNAME=").map(str::to_owned))
                })
                .unwrap_or_else(|| format!("{major}:{minor}"));
            DiskRow {
                device,
                read_bytes: io.read_bytes,
                write_bytes: io.write_bytes,
                requests: io.requests,
            }
        })
        .collect();
    let net = counts
        .net_xmit
        .iter()
        .map(|(name, x)| NetRow {
            device: name.clone(),
            bytes: x.bytes,
            packets: x.packets,
            physical: Path::new("/sys/class/net")
                .join(name)
                .join("device")
                .exists(),
            scatter_gather: crate::caps::nic::nic(name).scatter_gather,
        })
        .collect();
    Devices { disk, net }
}

/// The results of several methods: what ran, what failed, and whether Ctrl-C cut it short.
#[derive(Default)]
pub struct Outcome {
    pub runs: Vec<RunReport>,
    pub failed: Vec<Failed>,
    pub interrupted: bool,
}

/// Measures each method in turn with one hook plan; a failing method is recorded and the rest
/// still run.
#[must_use]
pub fn run_all(kernel: &Kernel, source: &SourceFile, opts: &Workload) -> Outcome {
    let mut plan = HookPlan::default();
    let mut outcome = Outcome::default();
    for &method in &opts.methods {
        if crate::cancel::requested() {
            outcome.interrupted = true;
            break;
        }
        match run_one(kernel, &mut plan, source, method, opts) {
            Ok(report) => outcome.runs.push(report),
            Err(e) if e.is_interrupt() => {
                outcome.interrupted = true;
                break;
            }
            Err(e) => outcome.failed.push(Failed {
                method: method.to_string(),
                error: e.to_string(),
            }),
        }
    }
    outcome
}

/// Builds the report of a measured program from its counts.
fn program_report(
    kernel: &Kernel,
    plan: &HookPlan,
    name: String,
    counts: &Counts,
    usage: Option<crate::workload::ChildUsage>,
) -> RunReport {
    model::build(RunInput {
        subject: Subject::Program(name),
        bytes: 0,
        block_size: 0,
        kernel_release: &kernel.release,
        plan,
        counts,
        received: Vec::new(),
        usage,
        file: None,
        devices: devices(counts),
    })
}

/// Runs `argv` under measurement from its first instruction, following its children unless
/// `follow` is off. Returns the report and the command's exit status.
///
/// # Errors
/// When the command cannot start, or the probes cannot attach.
pub fn exec(
    kernel: &Kernel,
    argv: &[String],
    follow: bool,
    interval: Option<std::time::Duration>,
) -> Result<(RunReport, u8), MeasureError> {
    let stopped =
        crate::process::Stopped::spawn(argv).map_err(|e| MeasureError::Usage(e.to_string()))?;
    let mut plan = HookPlan::default();
    let probes = Probes::attach(kernel, &mut plan, stopped.pid(), follow)?;
    let name = Path::new(&argv[0])
        .file_name()
        .map_or_else(|| argv[0].clone(), |n| n.to_string_lossy().into_owned());
    let mut live = Live::new(kernel, &plan, &name);
    let ended = stopped.run(interval, || live.tick(&probes));
    let counts = Counts::read(&probes.detach())?;
    Ok((
        program_report(kernel, &plan, name, &counts, Some(ended.usage)),
        ended.status,
    ))
}

/// Measures the running process `pid` (and, with `follow`, what it forks meanwhile) until
/// `duration` ends, it exits, or Ctrl-C. The process itself is never signalled.
///
/// # Errors
/// When the PID does not exist or the probes cannot attach.
pub fn attach(
    kernel: &Kernel,
    pid: u32,
    follow: bool,
    duration: Option<std::time::Duration>,
    interval: Option<std::time::Duration>,
) -> Result<(RunReport, crate::process::WatchEnd), MeasureError> {
    crate::process::check_pid(pid).map_err(|e| MeasureError::Usage(e.to_string()))?;
    let mut plan = HookPlan::default();
    let probes = Probes::attach(kernel, &mut plan, pid, follow)?;
    let name = format!("pid {pid}");
    let mut live = Live::new(kernel, &plan, &name);
    let end = crate::process::watch(pid, duration, interval, || live.tick(&probes));
    let counts = Counts::read(&probes.detach())?;
    Ok((program_report(kernel, &plan, name, &counts, None), end))
}

/// The live view of `--interval`: the table so far, on stderr, refreshed every interval while
/// the probes stay attached (the counts move while they are read; the final table does not).
struct Live<'a> {
    kernel: &'a Kernel,
    plan: &'a HookPlan,
    name: &'a str,
    start: std::time::Instant,
}

impl<'a> Live<'a> {
    fn new(kernel: &'a Kernel, plan: &'a HookPlan, name: &'a str) -> Self {
        Live {
            kernel,
            plan,
            name,
            start: std::time::Instant::now(),
        }
    }

    fn tick(&mut self, probes: &Probes) {
        use std::io::Write as _;
        let Ok(counts) = Counts::read(probes) else {
            return;
        };
        let report = program_report(self.kernel, self.plan, self.name.to_owned(), &counts, None);
        let table = crate::report::live_table(&report);
        let _ = writeln!(
            std::io::stderr().lock(),
            "--- {:.1} s ---\n{table}",
            self.start.elapsed().as_secs_f64()
        );
    }
}
