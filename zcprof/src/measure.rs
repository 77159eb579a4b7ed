//! A measured run: starts the workload, attaches the probes to its process only, releases it,
//! reads the counts once, detaches, and turns it all into a report.
use std::{collections::BTreeMap, path::Path};

use crate::{
    caps::Kernel,
    collect::{CollectError, Counts},
    devices::DeviceNames,
    export::{Recorded, Recorder, RunContext, Trace, Unfinished},
    model::{self, FileInfo, RunInput, RunReport, Subject},
    options::{Cache, DEFAULT_SIZE, Net, RunSpec, Workload},
    probes::{HookPlan, Options, ProbeError, Probes},
    report::Failed,
    workload::{NetError, Network, Ready, SourceError, SourceFile, WorkloadError},
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
    #[error(transparent)]
    Net(#[from] NetError),
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

/// The network path of an invocation, shared by all its runs. Set up before the source file
/// is written, so that a veth that cannot be created, or a sink that does not answer, fails at
/// once.
///
/// # Errors
/// When the veth pair or its namespace cannot be set up (nothing is left behind then), or the
/// sink of `--to` cannot be reached.
pub fn network(opts: &Workload) -> Result<Network, MeasureError> {
    if let Some(addr) = &opts.to {
        return Ok(Network::remote(addr, opts.token.clone())?);
    }
    Ok(match opts.net {
        Net::Loopback => Network::Loopback,
        Net::Veth => Network::veth()?,
    })
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

/// Measures one run: a method over `network`, with the scatter-gather state `spec` asks for.
///
/// # Errors
/// When scatter-gather cannot be set, or the workload, the probes or the map reads fail.
pub fn run_one(
    kernel: &Kernel,
    plan: &mut HookPlan,
    source: &SourceFile,
    network: &Network,
    spec: RunSpec,
    opts: &Workload,
    trace: Option<&mut Trace>,
) -> Result<RunReport, MeasureError> {
    let method = spec.method;
    if let Some(on) = spec.scatter_gather {
        network.set_scatter_gather(on)?;
    }
    // What the driver says now, not what was asked: the report shows the state that was used.
    // For a remote sink, the interface the route to it leaves by.
    let scatter_gather = network.scatter_gather();
    let size = opts.size.unwrap_or(source.len());
    if opts.cache == Cache::Cold {
        source.evict().map_err(|e| {
            MeasureError::Usage(format!(
                "cannot evict {} from the page cache: {e}",
                source.describe()
            ))
        })?;
    }
    let ready = Ready::start(method, source, size, opts.block_size, network)?;
    let pid = ready.pid();
    // A method that writes a file has no network path.
    let net = ready.receiver().map(|receiver| model::NetPath {
        kind: network.kind().to_owned(),
        device: network.device().to_owned(),
        scatter_gather,
        receiver: receiver.to_string(),
    });
    let options = Options {
        follow: false,
        trace_ring: None,
        sample_hz: crate::probes::SAMPLE_HZ,
        // The built-in receivers are threads of this process; a remote sink reports its own
        // costs, and nothing of zcprof's receives.
        receiver_tgid: if network.remote_sink().is_some() || !method.uses_network() {
            0
        } else {
            std::process::id()
        },
        time_every: opts.time_every,
    };
    let measured = Measured::attach(kernel, plan, pid, options, trace.as_deref())?;
    let delivery = ready.go()?;
    let (counts, recording) = measured.finish(trace.as_deref())?;
    let names = DeviceNames::resolve(&counts);
    let input = RunInput {
        subject: Subject::Workload(method),
        bytes: size,
        block_size: opts.block_size,
        kernel_release: &kernel.release,
        plan,
        counts: &counts,
        received: delivery.received,
        usage: Some(delivery.usage),
        file: Some(file_info(source, opts.cache)),
        net,
        remote_receiver: delivery.sink,
        zerocopy: delivery.zerocopy,
        uring: delivery.uring,
        devices: names.devices(&counts),
        unmeasured_children: Vec::new(),
    };
    if let (Some(trace), Some(recording)) = (trace, recording) {
        let workload_name = BTreeMap::from([(pid, format!("{method} (zcprof workload)"))]);
        recording.save(trace, &input, names, false, workload_name);
    }
    Ok(model::build(input))
}

/// Measures one run on its own, with the progress line.
///
/// # Errors
/// As `run_one`.
pub fn run_single(
    kernel: &Kernel,
    plan: &mut HookPlan,
    source: &SourceFile,
    network: &Network,
    spec: RunSpec,
    opts: &Workload,
    trace: Option<&mut Trace>,
) -> Result<RunReport, MeasureError> {
    let mut progress = Progress::new(1);
    progress.start(&spec.label());
    let result = run_one(kernel, plan, source, network, spec, opts, trace);
    progress.done();
    result
}

/// Probes attached for one measurement, with the trace's recorder when tracing.
struct Measured {
    probes: Probes,
    recorder: Option<Recorder>,
    start_ns: u64,
    /// The process tree's CPU time, counted from the attach on (or why it cannot be).
    clock: Result<crate::collect::TaskClock, String>,
}

/// What a traced measurement recorded, waiting for its report to be known.
struct Recording {
    recorded: Recorded,
    unfinished: Vec<Unfinished>,
    start_ns: u64,
    end_ns: u64,
}

impl Measured {
    /// Attaches the probes to `pid` with `options` (its trace ring from `trace`, when there is
    /// one).
    fn attach(
        kernel: &Kernel,
        plan: &mut HookPlan,
        pid: u32,
        options: Options,
        trace: Option<&Trace>,
    ) -> Result<Measured, MeasureError> {
        let start_ns = trace.map_or(0, Trace::now_ns);
        // Measured before the programs run (a few 16 MiB copies of zcprof's own), once per
        // process, and kept with the plan, so a trace is judged again at the same rate.
        plan.copy_rate = crate::model::copy_rate();
        let options = Options {
            trace_ring: trace.map(Trace::ring_bytes),
            ..options
        };
        let mut probes = Probes::attach(kernel, plan, pid, options)?;
        crate::timing::mark("probes attached");
        let clock = crate::collect::TaskClock::open(&threads(pid))
            .map_err(|e| format!("no task-clock counter for pid {pid}: {e}"));
        let recorder = trace.and_then(|t| {
            let limit = t.remaining();
            probes
                .take_events()
                .map(|ring| Recorder::start(ring, limit))
        });
        Ok(Measured {
            probes,
            recorder,
            start_ns,
            clock,
        })
    }

    /// Detaches, takes the last events, and reads the counts.
    fn finish(self, trace: Option<&Trace>) -> Result<(Counts, Option<Recording>), MeasureError> {
        crate::timing::mark("measured process done");
        let cpu = self
            .clock
            .and_then(|c| c.read().map_err(|e| format!("reading the task clock: {e}")));
        let maps = self.probes.detach();
        crate::timing::mark("programs detached");
        let recorded = self.recorder.map(Recorder::finish);
        let mut counts = Counts::read(&maps)?;
        counts.trace_over_limit = recorded.as_ref().map_or(0, |r| r.over_limit);
        counts.task_clock_ns = Some(cpu);
        crate::timing::mark("counts read");
        let recording = match (recorded, trace) {
            (Some(recorded), Some(trace)) => Some(Recording {
                recorded,
                unfinished: unfinished(&maps),
                start_ns: self.start_ns,
                end_ns: trace.now_ns(),
            }),
            _ => None,
        };
        Ok((counts, recording))
    }
}

/// The thread ids of process `pid` now (the process itself when they cannot be listed).
fn threads(pid: u32) -> Vec<u32> {
    let tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    if tids.is_empty() { vec![pid] } else { tids }
}

/// Syscalls entered but not returned when the programs were detached: parked in the hash map
/// (the thread was switched out inside the syscall), or still in a CPU's slot.
fn unfinished(maps: &dyn crate::probes::MapSource) -> Vec<Unfinished> {
    use crate::probes::catalog::maps;
    let mut out: Vec<Unfinished> = Vec::new();
    if let Some(map) = maps.get(maps::IN_FLIGHT)
        && let Ok(in_flight) = aya::maps::HashMap::<_, u32, zcprof_common::InFlight>::try_from(map)
    {
        out.extend(
            in_flight
                .iter()
                .filter_map(Result::ok)
                // A return deletes its entry, so what is left is in flight. Only timed syscalls
                // have a start to show (a trace times them all).
                .filter(|(_, f)| f.start_ns > zcprof_common::UNTIMED_START)
                .map(|(tid, f)| Unfinished {
                    tgid: f.tgid,
                    tid,
                    start_ns: f.start_ns,
                    nr: f.nr,
                }),
        );
    }
    if let Some(map) = maps.get(maps::ON_CPU)
        && let Ok(slots) = aya::maps::PerCpuArray::<_, zcprof_common::OnCpu>::try_from(map)
        && let Ok(per_cpu) = slots.get(&0, 0)
    {
        out.extend(
            per_cpu
                .iter()
                .filter(|s| s.start_ns > zcprof_common::UNTIMED_START)
                .map(|s| Unfinished {
                    tgid: s.tgid,
                    tid: s.tid,
                    start_ns: s.start_ns,
                    nr: s.nr,
                }),
        );
    }
    out
}

impl Recording {
    /// Adds the run to the trace with what its events cannot tell.
    fn save(
        self,
        trace: &mut Trace,
        input: &RunInput<'_>,
        devices: DeviceNames,
        followed: bool,
        mut process_names: BTreeMap<u32, String>,
    ) {
        let counts = input.counts;
        for (&pid, p) in &counts.processes {
            process_names.entry(pid).or_insert_with(|| p.name.clone());
        }
        let (subject, workload) = match &input.subject {
            Subject::Workload(m) => (m.to_string(), true),
            Subject::Program(name) => (name.clone(), false),
        };
        let context = RunContext {
            subject,
            workload,
            bytes: input.bytes,
            block_size: input.block_size,
            kernel: input.kernel_release.to_owned(),
            plan: input.plan.record(),
            received: input.received.clone(),
            usage: input.usage,
            file: input.file.clone(),
            net: input.net.clone(),
            remote_receiver: input.remote_receiver.clone(),
            zerocopy: input.zerocopy,
            uring: input.uring,
            devices,
            followed,
            process_names,
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            events: counts.trace_events,
            lost_per_cpu: counts.trace_lost.clone(),
            over_limit: counts.trace_over_limit,
            unmatched_returns: counts.unmatched_returns,
            in_flight_lost: counts.in_flight_lost,
            samples_user: counts.samples_user,
            samples_kernel: counts.samples_kernel,
            samples_lost: counts.samples_lost,
            sampled_cpu_ns: counts.sampled_cpu_ns,
            task_clock_ns: counts.task_clock_ns.clone().and_then(Result::ok),
            kernel_stacks: counts.kernel_stacks.clone(),
            counters: crate::export::EventlessCounts::of(counts),
        };
        trace.add_run(context, self.recorded, self.unfinished);
    }
}

fn file_info(source: &SourceFile, cache: Cache) -> FileInfo {
    FileInfo {
        path: source.describe(),
        filesystem: source.fs_type.clone(),
        block_device: source.block_backed,
        cache: cache.name().to_owned(),
    }
}

/// The results of several methods: what ran, what failed, and whether Ctrl-C cut it short.
#[derive(Default)]
pub struct Outcome {
    pub runs: Vec<RunReport>,
    pub failed: Vec<Failed>,
    pub interrupted: bool,
}

/// Measures each run in turn with one hook plan; a failing run is recorded and the rest still
/// run. With `--repeat`/`--warmup` the whole list runs again and again (methods interleaved, so
/// a drift of the machine touches them alike); warm-up rounds are neither kept nor traced, and
/// the repetitions of each run are folded into one report of medians.
#[must_use]
pub fn run_all(
    kernel: &Kernel,
    source: &SourceFile,
    network: &Network,
    opts: &Workload,
    mut trace: Option<&mut Trace>,
) -> Outcome {
    let mut plan = HookPlan::default();
    let mut outcome = Outcome::default();
    let rounds = opts.warmup + opts.repeat;
    let mut progress = Progress::new(opts.runs.len() * rounds as usize);
    let mut measured = Vec::new();
    'rounds: for round in 0..rounds {
        let warming = round < opts.warmup;
        for &spec in &opts.runs {
            if crate::cancel::requested() {
                outcome.interrupted = true;
                break 'rounds;
            }
            let label = if warming {
                format!("{} (warm-up {}/{})", spec.label(), round + 1, opts.warmup)
            } else if opts.repeat > 1 {
                format!(
                    "{} ({}/{})",
                    spec.label(),
                    round - opts.warmup + 1,
                    opts.repeat
                )
            } else {
                spec.label()
            };
            progress.start(&label);
            let result = run_one(
                kernel,
                &mut plan,
                source,
                network,
                spec,
                opts,
                if warming { None } else { trace.as_deref_mut() },
            );
            progress.done();
            match result {
                Ok(report) if !warming => measured.push(report),
                Ok(_) => {}
                Err(e) if e.is_interrupt() => {
                    outcome.interrupted = true;
                    break 'rounds;
                }
                Err(e) => outcome.failed.push(Failed {
                    method: label,
                    error: e.to_string(),
                }),
            }
        }
    }
    outcome.runs = model::repeat::fold_all(measured, opts.warmup);
    outcome
}

/// Builds the report of a measured program from its counts (and saves the run in the trace).
fn program_report(
    kernel: &Kernel,
    plan: &HookPlan,
    name: String,
    counts: &Counts,
    usage: Option<crate::workload::ChildUsage>,
    save: Option<(&mut Trace, Recording, bool)>,
    unmeasured_children: Vec<model::activity::Child>,
) -> RunReport {
    let names = DeviceNames::resolve(counts);
    let input = RunInput {
        subject: Subject::Program(name),
        bytes: 0,
        block_size: 0,
        kernel_release: &kernel.release,
        plan,
        counts,
        received: Vec::new(),
        usage,
        file: None,
        net: None,
        remote_receiver: None,
        zerocopy: None,
        uring: None,
        devices: names.devices(counts),
        unmeasured_children,
    };
    if let Some((trace, recording, followed)) = save {
        recording.save(trace, &input, names, followed, BTreeMap::new());
    }
    model::build(input)
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
    time_every: u32,
    trace: Option<&mut Trace>,
) -> Result<(RunReport, u8), MeasureError> {
    let stopped =
        crate::process::Stopped::spawn(argv).map_err(|e| MeasureError::Usage(e.to_string()))?;
    let mut plan = HookPlan::default();
    let measured = Measured::attach(
        kernel,
        &mut plan,
        stopped.pid(),
        Options::program(follow, time_every),
        trace.as_deref(),
    )?;
    let name = Path::new(&argv[0])
        .file_name()
        .map_or_else(|| argv[0].clone(), |n| n.to_string_lossy().into_owned());
    let mut live = Live::new(kernel, &plan, &name);
    let ended = stopped.run(interval, || live.tick(&measured.probes));
    let (counts, recording) = measured.finish(trace.as_deref())?;
    let save = trace.zip(recording).map(|(t, r)| (t, r, follow));
    Ok((
        program_report(
            kernel,
            &plan,
            name,
            &counts,
            Some(ended.usage),
            save,
            Vec::new(),
        ),
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
    time_every: u32,
    trace: Option<&mut Trace>,
) -> Result<(RunReport, crate::process::WatchEnd), MeasureError> {
    crate::process::check_pid(pid).map_err(|e| MeasureError::Usage(e.to_string()))?;
    let mut plan = HookPlan::default();
    let measured = Measured::attach(
        kernel,
        &mut plan,
        pid,
        Options::program(follow, time_every),
        trace.as_deref(),
    )?;
    let name = format!("pid {pid}");
    // Children already running are not followed (only those forked from now on): named in the
    // report should the process itself move no data.
    let unmeasured_children = crate::process::children_of(pid)
        .into_iter()
        .map(|(pid, name)| model::activity::Child { pid, name })
        .collect();
    let mut live = Live::new(kernel, &plan, &name);
    let end = crate::process::watch(pid, duration, interval, || live.tick(&measured.probes));
    let (counts, recording) = measured.finish(trace.as_deref())?;
    let save = trace.zip(recording).map(|(t, r)| (t, r, follow));
    Ok((
        program_report(
            kernel,
            &plan,
            name,
            &counts,
            None,
            save,
            unmeasured_children,
        ),
        end,
    ))
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
        let report = program_report(
            self.kernel,
            self.plan,
            self.name.to_owned(),
            &counts,
            None,
            None,
            Vec::new(),
        );
        let table = crate::report::live_table(&report);
        let _ = writeln!(
            std::io::stderr().lock(),
            "--- {:.1} s ---\n{table}",
            self.start.elapsed().as_secs_f64()
        );
    }
}

/// A progress line on stderr for multi-method runs, when stderr is a terminal (as cargo and
/// curl do): which method runs, how many are done, and for how long it has run. The workload
/// thread cannot report while it blocks in the transfer, so a ticker thread redraws the line.
struct Progress {
    total: usize,
    done: usize,
    ticker: Option<(
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        std::thread::JoinHandle<()>,
    )>,
}

impl Progress {
    fn new(total: usize) -> Progress {
        Progress {
            total,
            done: 0,
            ticker: None,
        }
    }

    fn enabled() -> bool {
        use std::io::IsTerminal as _;
        std::io::stderr().is_terminal()
    }

    fn start(&mut self, run: &str) {
        if !Self::enabled() {
            return;
        }
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let (n, total) = (self.done + 1, self.total);
        let run = run.to_owned();
        let started = std::time::Instant::now();
        let handle = std::thread::spawn(move || {
            use std::io::Write as _;
            while !flag.load(std::sync::atomic::Ordering::Acquire) {
                let _ = write!(
                    std::io::stderr().lock(),
                    "\r\x1b[2K[{n}/{total}] measuring {run}... {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        });
        self.ticker = Some((stop, handle));
    }

    fn done(&mut self) {
        self.done += 1;
        if let Some((stop, handle)) = self.ticker.take() {
            stop.store(true, std::sync::atomic::Ordering::Release);
            let _ = handle.join();
        }
    }
}
