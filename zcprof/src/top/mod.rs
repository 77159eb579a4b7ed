//! `zcprof top`: which processes on this host move data, and how, live. serve's data-path hooks
//! (no syscall hooks: a bystander pays nothing at syscall entry or return) counting by process
//! and name; each interval the kernel's totals are read, turned into what each process moved
//! (`sample`), and shown full-screen in a terminal (`tui`) or printed as plain tables or JSON
//! lines (`plain`).
pub mod plain;
pub mod sample;
pub mod tui;

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant, SystemTime},
};

use zcprof_common::serve::{ServeOwner, ServeStat};

pub use sample::{By, Moved, ProcessInfo, Row, SortKey};

use crate::{
    collect::serve::{self as collect, ServeCollectError},
    probes::serve::{Filter, ServeProbeError, ServeProbes, maps},
};

/// Errors of `zcprof top`, each one line.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// The hooks could not be set up.
    #[error(transparent)]
    Probes(#[from] ServeProbeError),
    /// A map could not be read.
    #[error(transparent)]
    Collect(#[from] ServeCollectError),
    /// The terminal could not be set up or written.
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
    /// Standard output could not be written (plain or JSON output).
    #[error("writing to standard output: {0}")]
    Output(std::io::Error),
}

/// How the intervals are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// Full screen, with keys (a terminal on stdout).
    Screen,
    /// A plain table per interval (`-b`, or stdout not a terminal).
    Plain,
    /// One JSON object per line per interval (`--format json`).
    Json,
}

/// What `zcprof top` was asked.
#[derive(Clone, Debug)]
pub struct Options {
    pub interval: Duration,
    pub by: By,
    pub sort: SortKey,
    /// The most rows shown (None: as many as fit, or all in plain output).
    pub rows: Option<usize>,
    /// Stop after this many intervals.
    pub count: Option<u64>,
    pub display: Display,
    /// What is counted, in words.
    pub what: String,
}

/// A network device, as the header shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Device {
    pub name: String,
    /// Has a physical device behind it (DMA), rather than being virtual (lo, veth).
    pub physical: bool,
    /// Scatter-gather on (None: the driver did not say).
    pub scatter_gather: Option<bool>,
}

/// One interval as shown: when it ended, how long it was, what each row moved.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Interval {
    /// When it ended, in seconds since the Unix epoch.
    pub time: f64,
    /// Its length in seconds (the rates are bytes divided by it).
    pub interval_s: f64,
    pub by: By,
    pub sort: SortKey,
    /// Whether receives were counted (`--receives`); the RECEIVED column is `-` otherwise.
    pub receives_counted: bool,
    /// Every row's sum.
    pub totals: Moved,
    pub devices: Vec<Device>,
    pub rows: Vec<Row>,
}

impl Interval {
    /// `bytes` of this interval per second.
    #[must_use]
    pub fn rate(&self, bytes: u64) -> f64 {
        #[expect(clippy::cast_precision_loss, reason = "display precision")]
        let b = bytes as f64;
        b / self.interval_s.max(1e-9)
    }
}

/// The network devices of this namespace with their scatter-gather state.
#[must_use]
pub fn devices() -> Vec<Device> {
    crate::caps::nic::interfaces()
        .into_iter()
        .map(|n| Device {
            name: n.name,
            physical: n.physical,
            scatter_gather: n.scatter_gather,
        })
        .collect()
}

/// The hooks, and what was read of them at the end of the last interval.
pub struct Sampler {
    probes: ServeProbes,
    receives: bool,
    last: HashMap<ServeOwner, ServeStat>,
    info: HashMap<u32, ProcessInfo>,
    at: Instant,
}

impl Sampler {
    /// Attaches the hooks for `filter`, counting by process.
    ///
    /// # Errors
    /// The hooks cannot be set up.
    pub fn attach(filter: &Filter) -> Result<Sampler, TopError> {
        let probes = ServeProbes::attach(&Filter {
            by_process: true,
            no_switches: true,
            ..filter.clone()
        })?;
        Ok(Sampler {
            probes,
            receives: filter.receives,
            last: HashMap::new(),
            info: HashMap::new(),
            at: Instant::now(),
        })
    }

    /// Ends an interval: what each process and name moved since the last, grouped by `by` and
    /// sorted by `sort`. Processes gone and idle are forgotten here and in the kernel.
    ///
    /// # Errors
    /// The kernel's map cannot be read.
    pub fn sample(&mut self, by: By, sort: SortKey) -> Result<Interval, TopError> {
        self.probes.refresh_nics();
        let map = self.probes.map(maps::PROCS).ok_or(ServeProbeError::Map {
            name: maps::PROCS,
            reason: "missing from the object".to_owned(),
        })?;
        let now = collect::by_process(map)?;
        let seconds = self.at.elapsed().as_secs_f64();
        self.at = Instant::now();
        let mut moved = HashMap::new();
        let mut gone = Vec::new();
        for (owner, stat) in &now {
            let before = self.last.get(owner).copied().unwrap_or_default();
            let m = sample::moved(stat, &before);
            // Read while the process lives: a row keeps its name and cgroup after it exits.
            self.info
                .entry(owner.tgid)
                .or_insert_with(|| process_info(owner.tgid));
            if m.total() == 0 && !alive(owner.tgid) {
                gone.push(*owner);
                continue;
            }
            moved.insert(*owner, m);
        }
        self.forget(&gone, &now);
        let rows = sample::rows(&moved, &self.info, by, sort);
        Ok(Interval {
            time: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            interval_s: seconds,
            by,
            sort,
            receives_counted: self.receives,
            totals: sample::totals(&rows),
            devices: devices(),
            rows,
        })
    }

    /// Keeps `now` for the next interval, without `gone` (deleted from the kernel's map too).
    fn forget(&mut self, gone: &[ServeOwner], now: &HashMap<ServeOwner, ServeStat>) {
        self.last.clone_from(now);
        for owner in gone {
            self.last.remove(owner);
        }
        if !gone.is_empty() {
            if let Some(map) = self.probes.map_mut(maps::PROCS) {
                collect::forget_processes(map, gone);
            }
            let living: HashSet<u32> = self.last.keys().map(|o| o.tgid).collect();
            self.info.retain(|tgid, _| living.contains(tgid));
        }
    }
}

/// Whether process `tgid` still exists.
fn alive(tgid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{tgid}")).exists()
}

/// /proc's name and cgroup v2 path of `tgid` (none once it exited).
fn process_info(tgid: u32) -> ProcessInfo {
    let command = std::fs::read_to_string(format!("/proc/{tgid}/comm"))
        .ok()
        .map(|c| c.trim_end().to_owned());
    // cgroup v2: the line "0::/path".
    let cgroup = std::fs::read_to_string(format!("/proc/{tgid}/cgroup"))
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        });
    ProcessInfo { command, cgroup }
}

/// Runs `zcprof top` until `count` intervals, q, or `stop` (Ctrl-C, SIGTERM).
///
/// # Errors
/// Hooks that cannot be attached, maps that cannot be read, a terminal that fails.
pub fn run(filter: &Filter, opts: &Options, stop: &AtomicBool) -> Result<(), TopError> {
    let mut sampler = Sampler::attach(filter)?;
    match opts.display {
        Display::Screen => tui::run(&mut sampler, opts, stop),
        Display::Plain | Display::Json => {
            let mut shown = 0;
            while opts.count.is_none_or(|n| shown < n) {
                if !sleep_unless(opts.interval, stop) {
                    break;
                }
                let interval = sampler.sample(opts.by, opts.sort)?;
                match plain::print(&interval, opts) {
                    Ok(()) => {}
                    // The reader went (`zcprof top -b | head`): the end it asked for.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
                    Err(e) => return Err(TopError::Output(e)),
                }
                shown += 1;
            }
            Ok(())
        }
    }
}

/// Sleeps `d`, looking at `stop` every 50 ms; false when it was set.
fn sleep_unless(d: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(50)));
    }
    !stop.load(Ordering::SeqCst)
}
