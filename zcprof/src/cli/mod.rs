//! The command line: raw arguments (clap), then validation into a plan that the rest of zcprof
//! runs. Usage errors are one line.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod recording;
mod service;
#[cfg(test)]
mod tests;
mod workload;

pub use recording::{OutputArgs, TraceArgs};
pub use service::{SelectorArgs, ServeArgs, TopArgs, TopFormat};

use crate::workload::transfer::TransferArgs;
pub use workload::{CompareArgs, MethodChoice, NoRepeat, RunArgs, WorkloadArgs};

/// Output formats of `doctor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DoctorFormat {
    Table,
    Json,
}

use crate::{report::Format, units};

const EXAMPLES: &str = "\
EXAMPLES:
    sudo zcprof compare                         # the note's six methods, 64 MiB in 64 KiB steps
    sudo zcprof compare --methods all           # and copy-file-range, vmsplice, msg-zerocopy, io-uring...
    sudo zcprof compare --methods io-uring,io-uring-splice,io-uring-send-zc
    sudo zcprof run --method sendfile           # one method, with its syscall breakdown
    sudo zcprof run --method read-write --size 16M --block-size 4K
    sudo zcprof compare --format json > costs.json
    sudo zcprof run --method direct-io --dir /var/tmp   # O_DIRECT needs a disk-backed directory
    sudo zcprof compare --net veth --methods sendfile   # sendfile with scatter-gather off and on
    sudo zcprof run --method splice --net veth --sg off
    zcprof sink --listen 0.0.0.0:9465                   # on the receiving host (no root needed)
    sudo zcprof run --method sendfile --to receiver.example:9465
    sudo zcprof exec -- dd if=big.dat of=/dev/null bs=64k
    sudo zcprof exec --format json -o dd.json -- dd if=big.dat of=copy.dat bs=64k
    sudo zcprof attach --pid 1234 --duration 10s
    sudo zcprof serve --comm nginx                  # Prometheus metrics at 127.0.0.1:9464/metrics
    sudo zcprof top                                 # which processes copy, and how, live
    sudo zcprof top -b --count 3 --by cgroup
    sudo zcprof run --method sendfile --trace sendfile.json   # open it in ui.perfetto.dev
    zcprof report sendfile.json --format markdown";

/// Measures what a file transfer really costs the kernel: syscalls, mode switches, scheduler
/// context switches and copies, counted with eBPF, beside the textbook's figures.
#[derive(Debug, Parser)]
#[command(name = "zcprof", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one transfer method and print its cost table.
    Run(RunArgs),
    /// Run every method with the same options and print one table.
    Compare(CompareArgs),
    /// Measure a running process (all its threads, and what it forks meanwhile) until the
    /// duration ends, it exits, or Ctrl-C.
    Attach {
        /// Process to measure (a PID as this namespace sees it).
        #[arg(long)]
        pid: u32,
        /// Stop after this long (10s, 500ms, 2m); default: until it exits or Ctrl-C.
        #[arg(long, value_parser = units::parse_duration)]
        duration: Option<std::time::Duration>,
        #[command(flatten)]
        program: ProgramArgs,
    },
    /// Start a command and measure it and its descendants from its first instruction; exit with
    /// its exit status.
    Exec {
        #[command(flatten)]
        program: ProgramArgs,
        /// The command and its arguments, after `--`.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Re-render the cost table from a trace saved with --trace (no privileges needed).
    Report {
        /// The trace file.
        trace: PathBuf,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Also draw each run's data path to FILE as SVG (see `run --svg`).
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
        /// Also write the self-contained HTML page to FILE (see `run --html`).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Every source, legend line and note under the table (see `run --explain`).
        #[arg(long, short = 'v')]
        explain: bool,
    },
    /// Receive the transfers of `run`/`compare --to` (from another host or network namespace),
    /// check their byte counts and report the receiving side's costs back. Needs no privileges.
    Sink {
        /// Address and port to listen on. The default answers only this host; listen on
        /// 0.0.0.0:9465 (or one interface's address) to receive from others.
        #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN, value_parser = parse_listen)]
        listen: std::net::SocketAddr,
        /// Exit after N runs (each method of a compare is one run): 0 when every byte of each
        /// arrived, else 1. Default: serve until Ctrl-C (exit 0).
        #[arg(long, value_name = "N", value_parser = parse_runs)]
        runs: Option<u64>,
        /// Open runs only for senders that give the token in FILE's first line (their
        /// `--token-file`); anyone else's run is refused and not counted.
        #[arg(long, value_name = "FILE")]
        token_file: Option<std::path::PathBuf>,
    },
    /// Serve always-on counters to Prometheus at /metrics: bytes sockets took copied or by
    /// reference, disk and NIC bytes, scheduler switches, per process name. Data-path hooks
    /// only, cheap enough to leave running; SIGTERM or Ctrl-C detach and exit 0.
    Serve(ServeArgs),
    /// Which processes on this host move data, and how, live: bytes sent copied, by reference
    /// and with `MSG_ZEROCOPY`, received, copied into packets, read from disk, per process (or
    /// command name, or cgroup). serve's data-path hooks; q quits.
    Top(TopArgs),
    /// Show what this kernel allows: each hook type per measurement point, tried for real.
    Doctor {
        /// Output format (table or json: doctor's answer is a list of checks, not rows of runs,
        /// so it has no csv or markdown).
        #[arg(long, value_enum, default_value = "table")]
        format: DoctorFormat,
        /// Every hook variant tried at every point, with the kernel's answer (the default names
        /// the chosen hook of each point and groups what is unavailable by its reason).
        #[arg(long, short = 'v')]
        explain: bool,
    },
    /// (internal) The measured transfer process.
    #[command(name = crate::workload::transfer::SUBCOMMAND, hide = true)]
    Transfer(TransferArgs),
    /// (benchmark) Attach two raw tracepoint programs that return at once to `sys_enter` and
    /// `sys_exit`, then run the command (or wait for Ctrl-C): the cost any BPF syscall hook pays
    /// on this kernel, whatever it does.
    #[command(name = "__empty-hooks", hide = true)]
    EmptyHooks {
        /// Accepted and ignored: the programs filter nothing (the benchmark passes every
        /// observer a process id).
        #[arg(long)]
        pid: Option<u32>,
        /// The command and its arguments, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

impl Command {
    /// The recording options of a measuring command.
    #[must_use]
    pub fn trace_args(&self) -> Option<&TraceArgs> {
        match self {
            Command::Run(r) => Some(&r.trace),
            Command::Compare(c) => Some(&c.trace),
            Command::Attach { program, .. } | Command::Exec { program, .. } => Some(&program.trace),
            Command::Report { .. }
            | Command::Doctor { .. }
            | Command::Sink { .. }
            | Command::Serve(_)
            | Command::Top(_)
            | Command::Transfer(_)
            | Command::EmptyHooks { .. } => None,
        }
    }
}

/// What attach and exec share: a live program, its children, and where its report goes.
#[derive(Debug, Args)]
pub struct ProgramArgs {
    /// Do not follow the processes it forks.
    #[arg(long)]
    pub no_follow: bool,
    /// Print the table so far on stderr at this interval (1s, 500ms) while measuring.
    #[arg(long, value_parser = units::parse_duration)]
    pub interval: Option<std::time::Duration>,
    /// Output format (without -o, table and markdown go to stderr, as perf stat's do, so the
    /// program's own output stays on stdout).
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub trace: TraceArgs,
    #[command(flatten)]
    pub no_repeat: NoRepeat,
}

/// `serve --listen`: an IP address and port.
pub(super) fn parse_serve_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("expected ADDR:PORT with an IP address, such as 127.0.0.1:9464, not {s:?}")
    })
}

/// `zcprof sink`'s default address: this host only, on the sink's port.
const DEFAULT_LISTEN: &str = "127.0.0.1:9465";

/// `--listen`: an IP address and port (`0.0.0.0:9465`, `[::]:9465`), or an address alone (the
/// sink's port).
fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    s.parse()
        .or_else(|_| {
            s.parse::<std::net::IpAddr>()
                .map(|ip| std::net::SocketAddr::new(ip, crate::sink::DEFAULT_PORT))
        })
        .map_err(|_| {
            format!("expected ADDR:PORT with an IP address, such as 0.0.0.0:9465, not {s:?}")
        })
}

/// `--runs`: a count of at least one.
fn parse_runs(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a number of runs, 1 or more, not {s:?}")),
    }
}

/// A usage error, printed as one line with exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses the command line. Help and version go to stdout with status 0; errors are one line
/// on stderr with status 2.
///
/// # Errors
/// The exit code to leave with when parsing did not produce a command.
pub fn parse() -> Result<Cli, std::process::ExitCode> {
    Cli::try_parse().map_err(|err| {
        use clap::error::ErrorKind;
        if matches!(
            err.kind(),
            ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        ) {
            let _ = err.print();
            return if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::SUCCESS
            };
        }
        eprintln!("{}", one_line(&err.render().to_string()));
        std::process::ExitCode::from(2)
    })
}

/// Folds clap's multi-line error into one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
        })
        .collect::<Vec<_>>()
        .join(" ")
}
