//! Runs a parsed command: checks privileges, measures under a Ctrl-C watch, prints the report,
//! and maps the outcome to an exit code.
use std::{io::Write as _, process::ExitCode};

use crate::{
    cancel,
    caps::{self, Kernel},
    cli::{Command, OutputArgs, ProgramArgs, TraceArgs, UsageError},
    export::{ExportError, Trace},
    measure::{self, MeasureError, Outcome},
    model::RunReport,
    options::Workload,
    output::{Destination, ReportFile},
    report::{self, Format},
};

/// Runs `command` to completion; Ctrl-C or SIGTERM cancel it cleanly.
#[must_use]
pub fn main(command: Command) -> ExitCode {
    if let Some(Err(UsageError(msg))) = command.trace_args().map(TraceArgs::validate) {
        return fail(2, &msg);
    }
    let (opts, output, trace) = match command {
        Command::Run(run) => (
            run.workload.validate(vec![run.method], false),
            run.output,
            run.trace,
        ),
        Command::Compare(cmp) => {
            let methods = cmp.resolved_methods();
            (cmp.workload.validate(methods, true), cmp.output, cmp.trace)
        }
        Command::Doctor { format, explain } => return doctor(format, explain),
        Command::Serve(args) => return serve(&args),
        Command::Top(args) => return top(&args),
        // No eBPF and no privileges: a sink only reads sockets.
        Command::Sink {
            listen,
            runs,
            token_file,
        } => {
            let token = match token_file
                .as_deref()
                .map(crate::sink::Token::read)
                .transpose()
            {
                Ok(token) => token,
                Err(e) => return fail(2, &e.to_string()),
            };
            return watched(move || sink(listen, runs, token));
        }
        Command::Report {
            trace,
            format,
            svg,
            html,
            explain,
        } => {
            let files = match open_output(&OutputArgs {
                output: None,
                svg,
                html,
                explain,
            }) {
                Ok(f) => f,
                Err(code) => return code,
            };
            return report_trace(&trace, format, files);
        }
        Command::Exec { program, command } => {
            // A command that cannot run is bad input, whoever runs zcprof (root or not).
            if let Some(Err(e)) = command.first().map(|c| crate::process::check_command(c)) {
                return fail(2, &e.to_string());
            }
            return program_command("exec", program, move |watch, output, t| {
                exec(&command, watch, output, t)
            });
        }
        Command::Attach {
            pid,
            duration,
            program,
        } => {
            return program_command("attach", program, move |watch, output, t| {
                attach(pid, duration, watch, output, t)
            });
        }
        Command::EmptyHooks { pid: _, command } => {
            return privileged(move || empty_hooks(&command));
        }
        Command::Transfer(_) => unreachable!("handled before the runtime starts"),
    };
    let opts = match opts {
        Ok(opts) => Workload {
            time_every: trace.time_every(),
            ..opts
        },
        Err(UsageError(msg)) => return fail(2, &msg),
    };
    let output = match open_output(&output) {
        Ok(o) => o,
        Err(code) => return code,
    };
    privileged(move || with_trace(&trace, |t| workloads(&opts, output, t)))
}

/// The checks and setup of attach and exec before `job` measures: `--repeat` refused, the
/// report's files created, privileges taken and the trace opened.
fn program_command(
    command: &'static str,
    program: ProgramArgs,
    job: impl FnOnce(Watch, Outputs, Option<&mut Trace>) -> ExitCode + Send + 'static,
) -> ExitCode {
    let ProgramArgs {
        no_follow,
        interval,
        format,
        output,
        trace,
        no_repeat,
    } = program;
    if let Err(UsageError(msg)) = no_repeat.validate(command) {
        return fail(2, &msg);
    }
    let output = match open_output(&output) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let watch = Watch {
        follow: !no_follow,
        interval,
        time_every: trace.time_every(),
        format,
    };
    privileged(move || with_trace(&trace, |t| job(watch, output, t)))
}

/// How attach and exec watch their program and report on it.
#[derive(Clone, Copy)]
struct Watch {
    /// Follow the processes it forks.
    follow: bool,
    /// The live view's interval.
    interval: Option<std::time::Duration>,
    /// One syscall in this many is timed (`--time-every`, checked before privileges).
    time_every: u32,
    format: Format,
}

/// The files a measuring command writes besides stdout and stderr.
struct Outputs {
    /// `-o`: the report.
    report: Option<ReportFile>,
    /// `--svg`: the data-path picture.
    svg: Option<ReportFile>,
    /// `--html`: the self-contained page.
    html: Option<ReportFile>,
    /// `--explain`: every source and note under the table.
    explain: bool,
}

/// Creates the files of `-o` and `--svg` after the usage checks and before privileges and
/// measuring, so a path that cannot be written fails in a moment (exit 1), not after the run.
fn open_output(args: &OutputArgs) -> Result<Outputs, ExitCode> {
    Ok(Outputs {
        report: create(args.output.as_deref())?,
        svg: create(args.svg.as_deref())?,
        html: create(args.html.as_deref())?,
        explain: args.explain,
    })
}

fn create(path: Option<&std::path::Path>) -> Result<Option<ReportFile>, ExitCode> {
    path.map(ReportFile::create)
        .transpose()
        .map_err(|e| fail(1, &e.to_string()))
}

/// Draws the picture of `runs` into the file of `--svg` and writes the page of `--html`; with no
/// run, the files are removed.
fn write_files(
    svg: Option<ReportFile>,
    html: Option<ReportFile>,
    runs: &[RunReport],
    failed: &[report::Failed],
) -> Result<(), ExitCode> {
    if runs.is_empty() {
        return Ok(());
    }
    if let Some(f) = svg {
        f.write(&report::svg(runs))
            .map_err(|e| fail(1, &e.to_string()))?;
    }
    if let Some(f) = html {
        f.write(&report::html(runs, failed))
            .map_err(|e| fail(1, &e.to_string()))?;
    }
    Ok(())
}

/// `zcprof __empty-hooks`: the benchmark's floor. Attaches the empty programs, runs `command`
/// (or waits for Ctrl-C), detaches.
fn empty_hooks(command: &[String]) -> ExitCode {
    let mut ebpf = match crate::probes::attach_empty_syscall_hooks() {
        Ok(ebpf) => ebpf,
        Err(e) => return fail(1, &e.to_string()),
    };
    let code = if let Some((program, args)) = command.split_first() {
        match std::process::Command::new(program).args(args).spawn() {
            Ok(mut child) => {
                let guard = cancel::ChildGuard::register(child.id());
                let status = child.wait();
                drop(guard);
                match status {
                    Ok(s) if s.success() => ExitCode::SUCCESS,
                    Ok(_) => ExitCode::FAILURE,
                    Err(e) => fail(1, &format!("waiting for {program}: {e}")),
                }
            }
            Err(e) => fail(1, &format!("cannot run {program}: {e}")),
        }
    } else {
        while !cancel::requested() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        ExitCode::SUCCESS
    };
    crate::probes::unload_all(&mut ebpf);
    code
}

/// Runs `job` with the trace `args` ask for, then writes it, also after Ctrl-C (what was
/// measured so far); a trace with no runs leaves no file.
fn with_trace(args: &TraceArgs, job: impl FnOnce(Option<&mut Trace>) -> ExitCode) -> ExitCode {
    let Some(path) = &args.trace else {
        return job(None);
    };
    let mut trace = match Trace::create(path, args.trace_buffer, args.trace_limit) {
        Ok(t) => t,
        Err(e) => return failed(&e),
    };
    let code = job(Some(&mut trace));
    if trace.is_empty() {
        return code;
    }
    match trace.write() {
        Ok(w) => {
            eprintln!(
                "zcprof: trace written to {}: {} events{}{} ({} records; open it in ui.perfetto.dev)",
                w.path.display(),
                w.events,
                if w.lost > 0 {
                    format!(", {} LOST (incomplete: raise --trace-buffer)", w.lost)
                } else {
                    ", none lost".to_owned()
                },
                if w.over_limit > 0 {
                    format!(
                        ", {} past --trace-limit {} not kept (incomplete: the trace holds the first {})",
                        w.over_limit,
                        w.limit,
                        w.events - w.over_limit
                    )
                } else {
                    String::new()
                },
                w.records
            );
            code
        }
        Err(e) => fail(1, &e.to_string()),
    }
}

/// `zcprof report TRACE`: the cost table of a saved trace.
fn report_trace(path: &std::path::Path, format: Format, files: Outputs) -> ExitCode {
    let runs = match crate::export::read(path) {
        Ok(r) => r,
        Err(e) => return fail(1, &e.to_string()),
    };
    let reports: Vec<RunReport> = match runs
        .iter()
        .map(|r| crate::export::report_of(r).map_err(|e| e.at(path)))
        .collect()
    {
        Ok(r) => r,
        Err(e) => return fail(1, &e.to_string()),
    };
    let lost: u64 = reports
        .iter()
        .filter_map(|r| r.trace.as_ref())
        .map(|t| t.lost)
        .sum();
    if lost > 0 {
        eprintln!(
            "zcprof: warning: this trace lost {lost} events; its totals are lower than what happened"
        );
    }
    let over_limit: u64 = runs.iter().map(|r| r.context.over_limit).sum();
    if over_limit > 0 {
        eprintln!(
            "zcprof: warning: this trace stopped at its --trace-limit: {over_limit} later events \
             were not kept; its totals cover only the recorded part"
        );
    }
    // A trace of repeated runs holds each repetition: fold them as the live run did.
    let reports = crate::model::repeat::fold_all(reports, 0);
    finish(
        &Outcome {
            runs: reports,
            ..Outcome::default()
        },
        format,
        runs.len() == 1,
        (Destination::Stdout, files.explain),
        (files.svg, files.html),
    )
}

/// The preamble of every measuring command: privileges, memlock, tracefs (before any thread
/// starts: see `caps::ensure_tracefs`), then `job` under a Ctrl-C watch.
fn privileged(job: impl FnOnce() -> ExitCode + Send + 'static) -> ExitCode {
    if let Err(e) = caps::check_privileges() {
        return fail(1, &e.to_string());
    }
    raise_memlock();
    if let Err(why) = caps::ensure_tracefs() {
        // Not fatal: raw tracepoints need no tracefs; the points that do say why they are missing.
        log::debug!("tracefs unavailable: {why}");
    }
    watched(job)
}

/// Runs the blocking `job` under a Ctrl-C (and SIGTERM) watch.
fn watched(job: impl FnOnce() -> ExitCode + Send + 'static) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(1, &format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(under_watch(job))
}

/// Runs the blocking `job` while Ctrl-C, SIGTERM and SIGHUP (a closed terminal) request
/// cancellation; the job notices, cleans up and returns normally.
async fn under_watch(job: impl FnOnce() -> ExitCode + Send + 'static) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    // The handlers are in place before the job starts: a signal in its first instant (while it
    // creates the source file, say) is a request to stop, never the default death that would
    // leave the file behind.
    let mut sigint = signal(SignalKind::interrupt()).ok();
    let mut sigterm = signal(SignalKind::terminate()).ok();
    let mut sighup = signal(SignalKind::hangup()).ok();
    let mut task = tokio::task::spawn_blocking(job);
    let result = loop {
        tokio::select! {
            r = &mut task => break r,
            Some(()) = recv(sigint.as_mut()) => cancel::request_by(libc::SIGINT),
            Some(()) = recv(sigterm.as_mut()) => cancel::request_by(libc::SIGTERM),
            Some(()) = recv(sighup.as_mut()) => cancel::request_by(libc::SIGHUP),
        }
    };
    result.unwrap_or_else(|e| fail(1, &format!("internal error: {e}")))
}

/// The next delivery of a signal that could be watched; never, for one that could not.
async fn recv(s: Option<&mut tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// `zcprof serve`: selectors and the web config checked (exit 2), the port bound (exit 1), then
/// privileges, then
/// `/metrics` until SIGINT or SIGTERM, which detach and end with status 0.
fn serve(args: &crate::cli::ServeArgs) -> ExitCode {
    use crate::serve;
    let selector = match args.selector.resolve() {
        Ok(s) => s,
        Err(e) => return fail(2, &e.to_string()),
    };
    let web = match args.web_config_file.as_deref().map(serve::WebConfig::load) {
        None => serve::WebConfig::default(),
        Some(Ok(web)) => web,
        Some(Err(e)) => return fail(2, &e.to_string()),
    };
    let listener = match serve::listen(args.listen) {
        Ok(l) => l,
        Err(e) => return fail(1, &e.to_string()),
    };
    let what = selector.describe(&args.selector.comms);
    let limits = serve::Limits {
        connections: args.max_connections as usize,
        idle: args.idle_timeout,
    };
    privileged(
        move || match serve::run(listener, limits, web, &selector, &what, cancel::flag()) {
            Ok(()) => {
                eprintln!("zcprof serve: stopped, programs detached");
                ExitCode::SUCCESS
            }
            Err(e) => fail(1, &e.to_string()),
        },
    )
}

/// `zcprof top`: selectors checked (exit 2), then privileges, then intervals until `--count`,
/// q, SIGINT or SIGTERM, which detach and end with status 0.
fn top(args: &crate::cli::TopArgs) -> ExitCode {
    use std::io::IsTerminal as _;

    use crate::top;
    let selector = match args.selector.resolve() {
        Ok(s) => s,
        Err(e) => return fail(2, &e.to_string()),
    };
    let display = match args.format {
        crate::cli::TopFormat::Json => top::Display::Json,
        _ if args.batch || !std::io::stdout().is_terminal() => top::Display::Plain,
        crate::cli::TopFormat::Table => top::Display::Screen,
    };
    let opts = top::Options {
        interval: args.interval,
        by: args.by,
        sort: args.sort,
        rows: args.rows.map(|n| n as usize),
        count: args.count,
        display,
        what: selector.describe(&args.selector.comms),
    };
    privileged(move || {
        if opts.display != top::Display::Screen {
            eprintln!(
                "zcprof top: counting {} every {:?}",
                opts.what, opts.interval
            );
            let wrap = textwrap::Options::new(100)
                .initial_indent("  ")
                .subsequent_indent("    ");
            for line in top::plain::LEGEND {
                eprintln!("{}", textwrap::fill(line, &wrap));
            }
        }
        match top::run(&selector.filter, &opts, cancel::flag()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(1, &e.to_string()),
        }
    })
}

/// `zcprof sink`: serves runs until `runs` ended or Ctrl-C, only those with `token` when given.
fn sink(
    listen: std::net::SocketAddr,
    runs: Option<u64>,
    token: Option<crate::sink::Token>,
) -> ExitCode {
    match crate::sink::serve(&listen.to_string(), runs, token, cancel::flag()) {
        Err(e) => fail(1, &e.to_string()),
        // Ctrl-C is how a sink without --runs ends.
        Ok(served) if cancel::requested() => {
            eprintln!(
                "zcprof sink: stopped after {} runs ({} failed)",
                served.runs, served.failed
            );
            ExitCode::SUCCESS
        }
        Ok(served) if served.failed > 0 => fail(
            1,
            &format!(
                "sink: {} of {} runs did not deliver every byte announced",
                served.failed, served.runs
            ),
        ),
        Ok(_) => ExitCode::SUCCESS,
    }
}

fn workloads(opts: &Workload, output: Outputs, trace: Option<&mut Trace>) -> ExitCode {
    let format = opts.format;
    let single = opts.runs.len() == 1;
    match measure_all(opts, trace) {
        Ok(outcome) => finish(
            &outcome,
            format,
            single,
            (
                Destination::or(output.report, Destination::Stdout),
                output.explain,
            ),
            (output.svg, output.html),
        ),
        Err(e) if e.is_interrupt() => fail(cancel::exit_status(), "interrupted"),
        Err(e) => failed(&e),
    }
}

/// Writes one program's report: JSON and CSV on stdout, tables on stderr (as perf stat does) so
/// that the measured command's own output stays clean; all of them to the file of `-o`.
fn emit_program(report: &RunReport, format: Format, output: Outputs) -> Result<(), ExitCode> {
    let one = std::slice::from_ref(report);
    write_files(output.svg, output.html, one, &[])?;
    let to = |default| Destination::or(output.report, default);
    let (text, to) = match format {
        Format::Json => (
            report::json_run(report).unwrap_or_default() + "\n",
            to(Destination::Stdout),
        ),
        Format::Table => {
            let to = to(Destination::Stderr);
            let layout = layout(&to).explained(output.explain);
            (report::render(one, &[], &layout), to)
        }
        Format::Markdown => (report::markdown(one, &[]), to(Destination::Stderr)),
        Format::Csv => (report::csv(one, &[]), to(Destination::Stdout)),
    };
    to.write(&text).map_err(|e| fail(1, &e.to_string()))
}

fn exec(argv: &[String], watch: Watch, output: Outputs, trace: Option<&mut Trace>) -> ExitCode {
    let kernel = Kernel::detect();
    match measure::exec(
        &kernel,
        argv,
        watch.follow,
        watch.interval,
        watch.time_every,
        trace,
    ) {
        Ok((report, status)) => {
            if let Err(code) = emit_program(&report, watch.format, output) {
                return code;
            }
            if cancel::requested() {
                fail(
                    cancel::exit_status(),
                    "interrupted: the command was stopped; the table holds what ran",
                )
            } else {
                ExitCode::from(status)
            }
        }
        Err(e) => failed(&e),
    }
}

fn attach(
    pid: u32,
    duration: Option<std::time::Duration>,
    watch: Watch,
    output: Outputs,
    trace: Option<&mut Trace>,
) -> ExitCode {
    let kernel = Kernel::detect();
    match measure::attach(
        &kernel,
        pid,
        watch.follow,
        duration,
        watch.interval,
        watch.time_every,
        trace,
    ) {
        // Ctrl-C is the ordinary way to end an attach (as with perf and bcc tools): exit 0.
        Ok((report, _)) => match emit_program(&report, watch.format, output) {
            Ok(()) => ExitCode::SUCCESS,
            Err(code) => code,
        },
        Err(e) => failed(&e),
    }
}

fn measure_all(opts: &Workload, trace: Option<&mut Trace>) -> Result<Outcome, MeasureError> {
    let kernel = Kernel::detect();
    // Dropped on every early return below, which tears a veth pair down; the normal end
    // closes it explicitly, so that a pair that will not go is an error, not a warning.
    let network = measure::network(opts)?;
    let source = measure::source(opts)?;
    let outcome = if let [spec] = opts.runs[..]
        && opts.repeat == 1
        && opts.warmup == 0
    {
        // A single run reports its own error, not a failed row.
        let mut plan = crate::probes::HookPlan::default();
        let report = measure::run_single(&kernel, &mut plan, &source, &network, spec, opts, trace)?;
        Outcome {
            runs: vec![report],
            ..Outcome::default()
        }
    } else {
        measure::run_all(&kernel, &source, &network, opts, trace)
    };
    network.close()?;
    Ok(outcome)
}

/// The table's layout for where it goes: fitted to a terminal, as wide as it is in a file.
fn layout(to: &Destination) -> report::Layout {
    match to {
        Destination::Stdout => report::Layout::terminal(report::Stream::Stdout),
        Destination::Stderr => report::Layout::terminal(report::Stream::Stderr),
        Destination::File(_) => report::Layout::plain(),
    }
}

fn finish(
    outcome: &Outcome,
    format: Format,
    single: bool,
    (to, explain): (Destination, bool),
    (svg, html): (Option<ReportFile>, Option<ReportFile>),
) -> ExitCode {
    if let Err(code) = write_files(svg, html, &outcome.runs, &outcome.failed) {
        return code;
    }
    let text = match format {
        Format::Table => report::render(
            &outcome.runs,
            &outcome.failed,
            &layout(&to).explained(explain),
        ),
        Format::Markdown => report::markdown(&outcome.runs, &outcome.failed),
        Format::Csv => report::csv(&outcome.runs, &outcome.failed),
        Format::Json if single && outcome.failed.is_empty() && outcome.runs.len() == 1 => {
            report::json_run(&outcome.runs[0]).unwrap_or_default() + "\n"
        }
        Format::Json => {
            report::json_compare(&outcome.runs, &outcome.failed).unwrap_or_default() + "\n"
        }
    };
    if let Err(e) = to.write(&text) {
        return fail(1, &e.to_string());
    }
    if outcome.interrupted {
        return fail(
            cancel::exit_status(),
            "interrupted: the table above holds the methods that finished",
        );
    }
    if let Some(f) = outcome.failed.first() {
        return fail(
            1,
            &format!(
                "{} of {} methods failed; first: {}: {}",
                outcome.failed.len(),
                outcome.failed.len() + outcome.runs.len(),
                f.method,
                f.error
            ),
        );
    }
    ExitCode::SUCCESS
}

fn doctor(format: crate::cli::DoctorFormat, explain: bool) -> ExitCode {
    if caps::check_privileges().is_ok() {
        raise_memlock();
        if let Err(why) = caps::ensure_tracefs() {
            log::debug!("tracefs unavailable: {why}");
        }
    }
    let diagnosis = crate::doctor::diagnose();
    let text = match format {
        crate::cli::DoctorFormat::Json => {
            serde_json::to_string_pretty(&diagnosis).unwrap_or_default() + "\n"
        }
        crate::cli::DoctorFormat::Table if explain => crate::doctor::render(&diagnosis),
        crate::cli::DoctorFormat::Table => crate::doctor::summary(&diagnosis),
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    if diagnosis.usable() {
        ExitCode::SUCCESS
    } else if !diagnosis.privileged {
        fail(1, &caps::CapsError::NotPrivileged.to_string())
    } else {
        fail(
            1,
            "no usable hook for a required measurement point (see above)",
        )
    }
}

/// The one place that says which errors are bad input (exit 2: the command line asked for
/// something that cannot be) and which are the machine's or the measurement's (exit 1).
trait ExitStatus: std::fmt::Display {
    fn exit_status(&self) -> u8;
}

impl ExitStatus for MeasureError {
    fn exit_status(&self) -> u8 {
        if matches!(self, MeasureError::Usage(_)) {
            2
        } else {
            1
        }
    }
}

impl ExitStatus for ExportError {
    fn exit_status(&self) -> u8 {
        if matches!(self, ExportError::RingSize { .. }) {
            2
        } else {
            1
        }
    }
}

/// Says `e` on stderr in one line and exits with its status.
fn failed(e: &impl ExitStatus) -> ExitCode {
    fail(e.exit_status(), &e.to_string())
}

fn fail(code: u8, message: &str) -> ExitCode {
    eprintln!("zcprof: {message}");
    ExitCode::from(code)
}

/// Kernels before 5.11 charge BPF maps to `RLIMIT_MEMLOCK`; newer ones ignore it.
fn raise_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain setrlimit with a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const unlimited) } != 0 {
        log::debug!(
            "could not raise RLIMIT_MEMLOCK: {}",
            std::io::Error::last_os_error()
        );
    }
}
