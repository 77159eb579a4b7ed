//! The command line: raw arguments (clap), then validation into a plan that the rest of zcprof
//! runs. Usage errors are one line.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Output formats of `doctor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DoctorFormat {
    Table,
    Json,
}

use crate::{
    options::{Cache, Net, RunSpec, Switch, Workload},
    report::Format,
    units,
    workload::Method,
};

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
        /// Do not follow the processes it forks.
        #[arg(long)]
        no_follow: bool,
        /// Print the table so far on stderr at this interval (1s, 500ms) while measuring.
        #[arg(long, value_parser = units::parse_duration)]
        interval: Option<std::time::Duration>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        trace: TraceArgs,
        #[command(flatten)]
        no_repeat: NoRepeat,
    },
    /// Start a command and measure it and its descendants from its first instruction; exit with
    /// its exit status.
    Exec {
        /// Do not follow the processes it forks.
        #[arg(long)]
        no_follow: bool,
        /// Print the table so far on stderr at this interval (1s, 500ms) while measuring.
        #[arg(long, value_parser = units::parse_duration)]
        interval: Option<std::time::Duration>,
        /// Output format (without -o, the report goes to stderr for table and markdown, so the
        /// command's own output stays on stdout).
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        output: OutputArgs,
        #[command(flatten)]
        trace: TraceArgs,
        #[command(flatten)]
        no_repeat: NoRepeat,
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
    },
    /// Serve always-on counters to Prometheus at /metrics: bytes sockets took copied or by
    /// reference, disk and NIC bytes, scheduler switches, per process name. Data-path hooks
    /// only, cheap enough to leave running; SIGTERM or Ctrl-C detach and exit 0.
    Serve(ServeArgs),
    /// Show what this kernel allows: each hook type per measurement point, tried for real.
    Doctor {
        /// Output format (table or json: doctor's answer is a list of checks, not rows of runs,
        /// so it has no csv or markdown).
        #[arg(long, value_enum, default_value = "table")]
        format: DoctorFormat,
    },
    /// (internal) The measured transfer process.
    #[command(name = "__transfer", hide = true)]
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

/// Where the report goes, on every measuring command.
#[derive(Clone, Debug, Args)]
pub struct OutputArgs {
    /// Write the report (in whatever --format) to FILE instead of stdout (or stderr), for
    /// example to keep it apart from a command's own output.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Also draw each run's data path to FILE as SVG: the stations from disk to device, DMA,
    /// CPU copies by path and page references with their bytes per step beside the textbook's,
    /// and the mode and scheduler switches of one step (one lane per method).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Also write one self-contained HTML page to FILE (no network needed to open it): the
    /// table, the data-path pictures, the notes and the provenance of every figure.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Recording detail (syscall timing, event tracing), on every measuring command.
#[derive(Clone, Debug, Args)]
pub struct TraceArgs {
    /// Time one syscall in N (a power of two), at random, and scale the sum to all calls; the
    /// first 256 of each syscall per CPU, and time blocked or preempted inside any call, are
    /// always timed. Reading the clock at entry and return costs about 100 ns per syscall; 1
    /// times every call. Default 16; --trace times every call.
    #[arg(long, value_name = "N")]
    pub time_every: Option<u32>,
    /// Also record individual events (syscall spans with their bytes, context switches, copies,
    /// device transfers, page faults) and write them to FILE as Chrome trace JSON, which
    /// ui.perfetto.dev opens; `zcprof report FILE` re-renders the table from it.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Size of the kernel's event ring buffer for --trace (a power of two). Events that find it
    /// full are counted as lost, per CPU, and reported.
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = units::parse_size)]
    pub trace_buffer: u64,
    /// Keep at most N events in the trace (K = thousand, M = million): recording stops there,
    /// the run goes on, later events are counted and the trace is marked incomplete. Bounds
    /// zcprof's memory (about 64 bytes per event, twice that while writing) and the file's size.
    #[arg(long, value_name = "N", default_value = "1M", value_parser = units::parse_count)]
    pub trace_limit: u64,
}

impl TraceArgs {
    /// Checks the options that need no kernel, so a typo fails before privileges are asked.
    ///
    /// # Errors
    /// A `--time-every` that is not a power of two up to 65536, or one above 1 with `--trace`.
    pub fn validate(&self) -> Result<(), UsageError> {
        let Some(n) = self.time_every else {
            return Ok(());
        };
        if !n.is_power_of_two() || n > 1 << 16 {
            return Err(UsageError(format!(
                "--time-every must be a power of two from 1 to 65536, not {n}"
            )));
        }
        if self.trace.is_some() && n != 1 {
            return Err(UsageError(
                "--time-every cannot be combined with --trace: a trace times every syscall"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

impl Command {
    /// The recording options of a measuring command.
    #[must_use]
    pub fn trace_args(&self) -> Option<&TraceArgs> {
        match self {
            Command::Run(r) => Some(&r.trace),
            Command::Compare(c) => Some(&c.trace),
            Command::Attach { trace, .. } | Command::Exec { trace, .. } => Some(trace),
            Command::Report { .. }
            | Command::Doctor { .. }
            | Command::Sink { .. }
            | Command::Serve(_)
            | Command::Transfer(_)
            | Command::EmptyHooks { .. } => None,
        }
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Transfer technique.
    #[arg(long, value_enum)]
    pub method: Method,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub trace: TraceArgs,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Methods to compare, comma-separated (default: the note's six; `all` adds
    /// copy-file-range, vmsplice, msg-zerocopy, io-uring, io-uring-splice and io-uring-send-zc).
    #[arg(long, value_delimiter = ',', value_parser = method_choice())]
    pub methods: Vec<MethodChoice>,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub trace: TraceArgs,
}

#[derive(Debug, Args)]
pub struct WorkloadArgs {
    /// Bytes to transfer (K/M/G suffixes). Default 64M, or the length of --file.
    #[arg(long, value_parser = units::parse_size)]
    pub size: Option<u64>,
    /// Bytes moved per transfer step.
    #[arg(long, default_value = "64K", value_parser = units::parse_size)]
    pub block_size: u64,
    /// Send this existing file instead of a generated temporary one.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Directory for the generated temporary file (removed at exit).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Page cache state of the file when each run starts: warm (cached) or cold (evicted first,
    /// so the disk must deliver it).
    #[arg(long, value_enum, default_value = "warm")]
    pub cache: Cache,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Network path to the receiver: loopback, or a veth pair into a private network namespace
    /// (created for the run and removed after it), whose sender end can switch scatter-gather.
    #[arg(long, value_enum, default_value = "loopback")]
    pub net: Net,
    /// Scatter-gather on the sender's end of the veth pair (needs --net veth). Default on; for
    /// compare, sendfile then also runs with it off, beside the run with it on.
    #[arg(long, value_enum)]
    pub sg: Option<Switch>,
    /// Send to a `zcprof sink` at HOST:PORT (port default 9465) instead of the built-in
    /// receiver: over a real NIC, say, whose DMA then shows. The sink verifies the bytes and
    /// reports its own costs.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_to)]
    pub to: Option<String>,
    /// Measure each run N times, methods interleaved across the repetitions, and report every
    /// figure as the median with its min and max (JSON: median, min, max and every value).
    #[arg(long, value_name = "N", default_value = "1", value_parser = parse_repeat)]
    pub repeat: u32,
    /// Run each method N times unmeasured before the measured runs (the page cache, the TCP
    /// stack and the sender's code warm up; --cache cold still evicts the file before each run).
    #[arg(long, value_name = "N", default_value = "0")]
    pub warmup: u32,
}

/// One item of `compare --methods`: a method, or `all` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodChoice {
    All,
    One(Method),
}

/// Parses `--methods` items, listing the names (and `all`) in clap's error and help.
fn method_choice() -> impl clap::builder::TypedValueParser<Value = MethodChoice> {
    use clap::builder::TypedValueParser as _;
    let names: Vec<&'static str> = Method::ALL
        .iter()
        .map(|m| m.name())
        .chain(["all"])
        .collect();
    clap::builder::PossibleValuesParser::new(names)
        .map(|name| Method::from_name(&name).map_or(MethodChoice::All, MethodChoice::One))
}

impl CompareArgs {
    /// The methods to run, in order, each once: the note's six when none were named.
    #[must_use]
    pub fn resolved_methods(&self) -> Vec<Method> {
        if self.methods.is_empty() {
            return Method::NOTE.to_vec();
        }
        let mut out = Vec::new();
        for choice in &self.methods {
            let add: &[Method] = match choice {
                MethodChoice::All => &Method::ALL,
                MethodChoice::One(m) => std::slice::from_ref(m),
            };
            for m in add {
                if !out.contains(m) {
                    out.push(*m);
                }
            }
        }
        out
    }
}

/// `--repeat`: a count of at least one.
fn parse_repeat(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a number of repetitions from 1 to 1000, not {s:?}"
        )),
    }
}

/// `--repeat` and `--warmup` on `exec` and `attach`, accepted by the parser only to be refused
/// with the reason.
#[derive(Clone, Debug, Args)]
pub struct NoRepeat {
    #[arg(long, hide = true, value_name = "N")]
    repeat: Option<String>,
    #[arg(long, hide = true, value_name = "N")]
    warmup: Option<String>,
}

impl NoRepeat {
    /// # Errors
    /// When either was given.
    pub fn validate(&self, command: &str) -> Result<(), UsageError> {
        let flag = match (&self.repeat, &self.warmup) {
            (Some(_), _) => "--repeat",
            (None, Some(_)) => "--warmup",
            (None, None) => return Ok(()),
        };
        Err(UsageError(format!(
            "{flag} repeats built-in workloads only (run, compare); {command} measures one live \
             program: run it again instead"
        )))
    }
}

#[derive(Debug, Args)]
pub struct TransferArgs {
    #[arg(long, value_enum)]
    pub method: Method,
    #[arg(long)]
    pub path: String,
    #[arg(long)]
    pub size: u64,
    #[arg(long)]
    pub block_size: u64,
    /// The receiver (none for a method that writes a file).
    #[arg(long)]
    pub addr: Option<std::net::IpAddr>,
    #[arg(long)]
    pub port: Option<u16>,
    /// A sink's run token, sent as the first line of each stream.
    #[arg(long)]
    pub token: Option<String>,
    /// The destination file of copy-file-range, created by the parent.
    #[arg(long)]
    pub dest: Option<String>,
    /// A shared memory file the child maps before measuring, for what the kernel told it
    /// (msg-zerocopy's and `io_uring`'s completions) without a syscall in the measured window.
    #[arg(long)]
    pub report_fd: Option<i32>,
}

/// `zcprof serve`'s options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port of the HTTP server. The default answers only this host; give
    /// 0.0.0.0:9464 (or one interface's address) for a scraper elsewhere.
    #[arg(long, value_name = "ADDR:PORT", default_value = crate::serve::DEFAULT_LISTEN, value_parser = parse_serve_listen)]
    pub listen: std::net::SocketAddr,
    /// Count only processes of this name (as /proc/PID/comm shows it, at most 15 bytes);
    /// repeat for several.
    #[arg(long = "comm", value_name = "NAME")]
    pub comms: Vec<String>,
    /// Count only this process (its threads).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Count only tasks in this cgroup v2 (a directory under /sys/fs/cgroup, absolute or
    /// relative to it, e.g. system.slice/nginx.service); every series gets a cgroup label.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// Also count socket -> user copies (zcprof_copy_bytes_total{path="socket_to_user"}). Off by
    /// default: a receiver reaches that hook about a dozen times per 64 KiB, the most of any.
    #[arg(long)]
    pub receives: bool,
}

/// `serve --listen`: an IP address and port.
fn parse_serve_listen(s: &str) -> Result<std::net::SocketAddr, String> {
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

/// `--to`: `HOST:PORT`, `[IPv6]:PORT`, or a host alone (the sink's port), as `HOST:PORT`. The
/// name is resolved when the run starts.
fn parse_to(s: &str) -> Result<String, String> {
    let bad = || format!("expected HOST:PORT, such as 192.0.2.7:9465 or receiver:9465, not {s:?}");
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(s.to_owned());
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, crate::sink::DEFAULT_PORT).to_string());
    }
    let host_ok = |h: &str| {
        !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    };
    match s.rsplit_once(':') {
        Some((host, port)) if host_ok(host) => match port.parse::<u16>() {
            Ok(p) if p > 0 => Ok(s.to_owned()),
            _ => Err(bad()),
        },
        None if host_ok(s) => Ok(format!("{s}:{}", crate::sink::DEFAULT_PORT)),
        _ => Err(bad()),
    }
}

/// A usage error, printed as one line with exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl WorkloadArgs {
    /// Checks what can be checked without touching the kernel, for `methods`; `compare` adds
    /// the scatter-gather contrast of `--net veth` (see `RunSpec::plan`).
    ///
    /// # Errors
    /// A one-line usage error.
    pub fn validate(self, methods: Vec<Method>, compare: bool) -> Result<Workload, UsageError> {
        let WorkloadArgs {
            size,
            block_size,
            file,
            dir,
            cache,
            format,
            net,
            sg,
            to,
            repeat,
            warmup,
        } = self;
        if to.is_some() && (net == Net::Veth || sg.is_some()) {
            return Err(UsageError(
                "--to sends to a remote sink over the host's own route: it cannot be combined with \
                 --net veth or --sg"
                    .into(),
            ));
        }
        if sg.is_some() && net != Net::Veth {
            return Err(UsageError(
                "--sg needs --net veth: loopback's scatter-gather is fixed on".into(),
            ));
        }
        if file.is_some() && dir.is_some() {
            return Err(UsageError(
                "--dir is for the generated file; it cannot be combined with --file".into(),
            ));
        }
        if let Some(size) = size
            && file.is_none()
            && block_size > size
        {
            return Err(UsageError(format!(
                "--block-size {} is larger than the file (--size {})",
                units::format_bytes(block_size),
                units::format_bytes(size)
            )));
        }
        method_options(&methods, net, sg.is_some(), to.is_some(), cache)?;
        payload_fits(&methods, size, file.as_deref())?;
        direct_io_alignment(&methods, block_size)?;
        // Everything wrong with --file is a usage error (exit 2), found before measuring: one
        // rule for a missing, empty, special or short file.
        if let Some(path) = &file {
            let meta = std::fs::File::open(path)
                .and_then(|f| f.metadata())
                .map_err(|e| UsageError(format!("cannot read --file {}: {e}", path.display())))?;
            if !meta.is_file() {
                return Err(UsageError(format!(
                    "--file {} is not a regular file",
                    path.display()
                )));
            }
            if let Some(size) = size
                && meta.len() < size
            {
                return Err(UsageError(format!(
                    "--file {} holds {} bytes, fewer than --size {size}",
                    path.display(),
                    meta.len()
                )));
            }
        }
        let dir = dir.unwrap_or_else(std::env::temp_dir);
        if file.is_none() && !dir.is_dir() {
            return Err(UsageError(format!(
                "--dir {} is not a directory",
                dir.display()
            )));
        }
        // The generated file must fit: filling a RAM-backed tmpfs until it runs out would take
        // the machine's memory with it.
        if file.is_none()
            && let Some(size) = size
            && let Ok(fs) = nix::sys::statvfs::statvfs(&dir)
            // Pseudo file systems (/proc) report no blocks at all: writing there fails on its own.
            && fs.blocks() > 0
        {
            let free = u64::from(fs.blocks_available()).saturating_mul(fs.fragment_size());
            if size > free {
                return Err(UsageError(format!(
                    "--size {} does not fit in --dir {}: {} free",
                    crate::units::format_bytes(size),
                    dir.display(),
                    crate::units::format_bytes(free)
                )));
            }
        }
        Ok(Workload {
            runs: RunSpec::plan(&methods, net, sg, compare),
            methods,
            net,
            to,
            size,
            block_size,
            file,
            dir,
            cache,
            format,
            repeat,
            warmup,
        })
    }
}

/// Refuses the options that mean nothing for one of `methods`: the network options for a method
/// that writes a file, and `--cache cold` for one that reads its payload before measuring.
///
/// # Errors
/// A one-line usage error naming the method and the option.
fn method_options(
    methods: &[Method],
    net: Net,
    sg: bool,
    to: bool,
    cache: Cache,
) -> Result<(), UsageError> {
    let network = [(net == Net::Veth, "--net veth"), (sg, "--sg"), (to, "--to")];
    for &m in methods {
        if !m.uses_network()
            && let Some((_, flag)) = network.iter().find(|(given, _)| *given)
        {
            return Err(UsageError(format!(
                "{flag} does not apply to {m}: it copies the file to another file, not to a \
                 socket (leave {m} out of --methods)"
            )));
        }
        if m.preloads_payload() && cache == Cache::Cold {
            return Err(UsageError(format!(
                "--cache cold does not apply to {m}: it reads the file into user memory before \
                 measuring, so the disk would deliver nothing measured (leave {m} out of --methods)"
            )));
        }
    }
    Ok(())
}

/// The methods that send from user memory must find room for the whole payload there: checked
/// before the file is written.
///
/// # Errors
/// A one-line usage error when the payload is more than half the available memory.
fn payload_fits(
    methods: &[Method],
    size: Option<u64>,
    file: Option<&std::path::Path>,
) -> Result<(), UsageError> {
    let size = size
        .or_else(|| {
            file.and_then(|f| std::fs::metadata(f).ok())
                .map(|m| m.len())
        })
        .unwrap_or(crate::options::DEFAULT_SIZE);
    for &m in methods.iter().filter(|m| m.preloads_payload()) {
        crate::workload::beyond::check_payload_fits(m, size).map_err(UsageError)?;
    }
    Ok(())
}

/// `O_DIRECT` needs aligned blocks.
///
/// # Errors
/// A one-line usage error when direct-io is asked for with a block size that is not a multiple
/// of 4096.
fn direct_io_alignment(methods: &[Method], block_size: u64) -> Result<(), UsageError> {
    if methods.contains(&Method::DirectIo) && block_size % 4096 != 0 {
        return Err(UsageError(format!(
            "direct-io needs --block-size to be a multiple of 4096 (O_DIRECT alignment), not {block_size}"
        )));
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("zcprof").chain(args.iter().copied()))
    }

    #[test]
    fn run_defaults() {
        let cli = parse_args(&["run", "--method", "sendfile"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.method, Method::Sendfile);
        assert_eq!(run.workload.block_size, 64 << 10);
        assert_eq!(run.workload.size, None);
        assert_eq!(run.workload.format, Format::Table);
    }

    #[test]
    fn every_method_name_parses() {
        for m in Method::ALL {
            let cli = parse_args(&["run", "--method", m.name()]).unwrap();
            let Command::Run(run) = cli.command else {
                panic!("not run")
            };
            assert_eq!(run.method, m);
        }
    }

    #[test]
    fn bad_input_is_one_line() {
        for args in [
            &["run", "--method", "carrier-pigeon"][..],
            &["run", "--method", "sendfile", "--size", "0"],
            &["run", "--method", "sendfile", "--size", "lots"],
            &["compare", "--block-size", "0"],
            // doctor prints checks, not rows of runs: no csv or markdown (issue 17 item 5).
            &["doctor", "--format", "csv"],
            &["doctor", "--format", "markdown"],
        ] {
            let err = parse_args(args).unwrap_err();
            let line = one_line(&err.render().to_string());
            assert!(
                !line.contains('\n') && line.starts_with("error:"),
                "{args:?}: {line}"
            );
        }
        let line = one_line(
            &parse_args(&["run", "--method", "nope"])
                .unwrap_err()
                .render()
                .to_string(),
        );
        assert!(
            line.contains("read-write") && line.contains("tee"),
            "{line}"
        );
    }

    fn compare_workload(args: &[&str]) -> Result<Workload, UsageError> {
        let cli = parse_args(args).unwrap();
        let Command::Compare(cmp) = cli.command else {
            panic!("not compare")
        };
        let methods = cmp.resolved_methods();
        cmp.workload.validate(methods, true)
    }

    #[test]
    fn compare_keeps_the_notes_methods_and_all_adds_the_others() {
        let names =
            |w: Workload| -> Vec<&'static str> { w.methods.iter().map(|m| m.name()).collect() };
        let default = compare_workload(&["compare"]).unwrap();
        assert_eq!(
            names(default),
            [
                "read-write",
                "direct-io",
                "mmap-write",
                "sendfile",
                "splice",
                "tee"
            ]
        );
        let all = compare_workload(&["compare", "--methods", "all"]).unwrap();
        assert_eq!(all.methods, Method::ALL);
        let listed = compare_workload(&["compare", "--methods", "vmsplice,all,sendfile"]).unwrap();
        assert_eq!(listed.methods.len(), Method::ALL.len(), "each once");
        assert_eq!(listed.methods[0], Method::Vmsplice, "in the order given");
        let one = compare_workload(&["compare", "--methods", "msg-zerocopy"]).unwrap();
        assert_eq!(one.methods, [Method::MsgZerocopy]);
        let rings = compare_workload(&[
            "compare",
            "--methods",
            "io-uring,io-uring-splice,io-uring-send-zc",
        ])
        .unwrap();
        assert_eq!(
            rings.methods,
            [
                Method::IoUring,
                Method::IoUringSplice,
                Method::IoUringSendZc
            ]
        );
        assert!(Method::ALL.contains(&Method::IoUringSendZc));
        assert!(!Method::NOTE.contains(&Method::IoUring), "not by default");
    }

    #[test]
    fn options_that_mean_nothing_for_a_method_are_refused() {
        for (args, flag) in [
            (
                &["compare", "--methods", "copy-file-range", "--net", "veth"][..],
                "--net veth",
            ),
            (
                &["compare", "--methods", "all", "--to", "192.0.2.7:9465"],
                "--to",
            ),
            (
                &[
                    "compare",
                    "--methods",
                    "copy-file-range",
                    "--net",
                    "veth",
                    "--sg",
                    "off",
                ],
                "--net veth",
            ),
            (
                &["compare", "--methods", "vmsplice", "--cache", "cold"],
                "--cache cold",
            ),
            (
                &["compare", "--methods", "msg-zerocopy", "--cache", "cold"],
                "--cache cold",
            ),
            (
                &[
                    "compare",
                    "--methods",
                    "io-uring-send-zc",
                    "--cache",
                    "cold",
                ],
                "--cache cold",
            ),
        ] {
            let err = compare_workload(args).unwrap_err();
            assert!(
                err.0.starts_with(flag) && !err.0.contains('\n') && !err.0.contains("  "),
                "{args:?}: {}",
                err.0
            );
        }
        assert!(
            compare_workload(&["compare", "--methods", "copy-file-range", "--cache", "cold"])
                .is_ok()
        );
        assert!(
            compare_workload(&[
                "compare",
                "--methods",
                "msg-zerocopy,vmsplice",
                "--net",
                "veth"
            ])
            .is_ok()
        );
        // io-uring and io-uring-splice read the file inside the window and send to a socket:
        // every option applies.
        assert!(
            compare_workload(&[
                "compare",
                "--methods",
                "io-uring,io-uring-splice",
                "--cache",
                "cold",
                "--net",
                "veth",
                "--sg",
                "off",
            ])
            .is_ok()
        );
        assert!(parse_args(&["compare", "--methods", "everything"]).is_err());
    }

    #[test]
    fn sg_needs_veth() {
        let workload = |args: &[&str]| {
            let cli = parse_args(args).unwrap();
            let Command::Compare(cmp) = cli.command else {
                panic!("not compare")
            };
            let methods = cmp.resolved_methods();
            cmp.workload.validate(methods, true)
        };
        let err = workload(&["compare", "--sg", "off"]).unwrap_err();
        assert!(err.0.contains("--sg needs --net veth"), "{}", err.0);
        let w = workload(&["compare", "--net", "veth", "--methods", "sendfile"]).unwrap();
        assert_eq!(w.runs.len(), 2, "sendfile with SG off and on");
        let w = workload(&[
            "compare",
            "--net",
            "veth",
            "--sg",
            "off",
            "--methods",
            "sendfile",
        ])
        .unwrap();
        assert_eq!(w.runs.len(), 1);
        assert!(parse_args(&["run", "--method", "sendfile", "--net", "wifi"]).is_err());
    }

    #[test]
    fn to_takes_a_host_and_port_and_refuses_veth() {
        let workload = |args: &[&str]| {
            let cli = parse_args(args)?;
            let Command::Run(run) = cli.command else {
                panic!("not run")
            };
            Ok::<_, clap::Error>(run.workload.validate(vec![run.method], false))
        };
        for (given, meant) in [
            ("192.0.2.7:9000", "192.0.2.7:9000"),
            ("192.0.2.7", "192.0.2.7:9465"),
            ("[2001:db8::1]:9000", "[2001:db8::1]:9000"),
            ("2001:db8::1", "[2001:db8::1]:9465"),
            ("receiver.example:9000", "receiver.example:9000"),
            ("receiver", "receiver:9465"),
        ] {
            let w = workload(&["run", "--method", "sendfile", "--to", given])
                .unwrap()
                .unwrap();
            assert_eq!(w.to.as_deref(), Some(meant), "{given}");
            assert_eq!(w.runs[0].scatter_gather, None);
        }
        for bad in [
            "",
            ":9000",
            "host:",
            "host:0",
            "host:70000",
            "a b:1",
            "host:port",
        ] {
            assert!(
                workload(&["run", "--method", "sendfile", "--to", bad]).is_err(),
                "{bad:?}"
            );
        }
        for extra in [
            &["--net", "veth"][..],
            &["--sg", "on"],
            &["--net", "veth", "--sg", "off"],
        ] {
            let mut args = vec!["run", "--method", "sendfile", "--to", "192.0.2.7"];
            args.extend(extra);
            let err = workload(&args).unwrap().unwrap_err();
            assert!(
                err.0.starts_with("--to sends to a remote sink"),
                "{}",
                err.0
            );
        }
    }

    #[test]
    fn sink_listens_on_this_host_by_default() {
        let Command::Sink { listen, runs } = parse_args(&["sink"]).unwrap().command else {
            panic!("not sink")
        };
        assert_eq!(listen.to_string(), "127.0.0.1:9465");
        assert_eq!(runs, None);
        let Command::Sink { listen, runs } =
            parse_args(&["sink", "--listen", "0.0.0.0:9000", "--runs", "3"])
                .unwrap()
                .command
        else {
            panic!("not sink")
        };
        assert_eq!(listen.to_string(), "0.0.0.0:9000");
        assert_eq!(runs, Some(3));
        for bad in [
            &["sink", "--listen", "localhost"][..],
            &["sink", "--listen", "0.0.0.0:99999"],
            &["sink", "--runs", "0"],
        ] {
            let line = one_line(&parse_args(bad).unwrap_err().render().to_string());
            assert!(
                line.starts_with("error:") && !line.contains('\n'),
                "{bad:?}: {line}"
            );
        }
    }

    #[test]
    fn validation() {
        let w = |size: Option<u64>, block: u64, methods: Vec<Method>| {
            let args = WorkloadArgs {
                size,
                block_size: block,
                file: None,
                dir: None,
                cache: Cache::Warm,
                format: Format::Table,
                net: Net::Loopback,
                sg: None,
                to: None,
                repeat: 1,
                warmup: 0,
            };
            args.validate(methods, false)
        };
        assert!(
            w(Some(4096), 8192, vec![Method::Sendfile])
                .unwrap_err()
                .0
                .contains("larger than the file")
        );
        assert!(
            w(Some(1 << 20), 1000, vec![Method::DirectIo])
                .unwrap_err()
                .0
                .contains("multiple of 4096")
        );
        assert!(w(Some(1 << 20), 1000, vec![Method::Sendfile]).is_ok());
        let args = WorkloadArgs {
            size: None,
            block_size: 4096,
            file: None,
            dir: Some("/nonexistent/zcprof".into()),
            cache: Cache::Warm,
            format: Format::Table,
            net: Net::Loopback,
            sg: None,
            to: None,
            repeat: 1,
            warmup: 0,
        };
        assert!(
            args.validate(vec![Method::Splice], false)
                .unwrap_err()
                .0
                .contains("not a directory")
        );
    }
}
