//! The built-in workloads' options (run and compare), checked before any privilege is asked.
use std::path::{Path, PathBuf};

use clap::Args;

use super::{OutputArgs, TraceArgs, UsageError};
use crate::{
    options::{Cache, Net, RunSpec, Switch, Workload},
    report::Format,
    units,
    workload::Method,
};

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
    /// With --to: send the token in FILE's first line, for a sink started with the same
    /// --token-file (which refuses runs without it).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
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

/// Everything wrong with --file is a usage error (exit 2), found before measuring: one rule for
/// a missing, empty, special or short file.
fn file_fits(file: Option<&Path>, size: Option<u64>) -> Result<(), UsageError> {
    if let Some(path) = file {
        let meta = std::fs::metadata(path)
            .map_err(|e| UsageError(format!("cannot read --file {}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(UsageError(format!(
                "--file {} is not a regular file",
                path.display()
            )));
        }
        if meta.len() == 0 {
            return Err(UsageError(format!(
                "--file {} is empty: nothing to transfer",
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
    Ok(())
}

/// Checks `--to` against the network options and reads `--token-file`'s token, which only
/// `--to` takes.
fn remote_options(
    to: Option<&str>,
    token_file: Option<&Path>,
    net: Net,
    sg: bool,
) -> Result<Option<crate::sink::Token>, UsageError> {
    if to.is_some() && (net == Net::Veth || sg) {
        return Err(UsageError(
            "--to sends to a remote sink over the host's own route: it cannot be combined with \
             --net veth or --sg"
                .into(),
        ));
    }
    match (token_file, to) {
        (Some(_), None) => Err(UsageError(
            "--token-file is for --to: only a remote sink takes a token".into(),
        )),
        (Some(path), Some(_)) => crate::sink::Token::read(path)
            .map(Some)
            .map_err(|e| UsageError(e.to_string())),
        (None, _) => Ok(None),
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
            token_file,
            repeat,
            warmup,
        } = self;
        let token = remote_options(to.as_deref(), token_file.as_deref(), net, sg.is_some())?;
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
        file_fits(file.as_deref(), size)?;
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
            let free = fs.blocks_available().saturating_mul(fs.fragment_size());
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
            token,
            size,
            block_size,
            file,
            dir,
            cache,
            format,
            repeat,
            warmup,
            // The recording options' (`TraceArgs`), set by the caller that has them.
            time_every: crate::probes::DEFAULT_TIME_EVERY,
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
        crate::workload::beyond::check_payload_fits(m, size)
            .map_err(|e| UsageError(e.to_string()))?;
    }
    Ok(())
}

/// `O_DIRECT` needs aligned blocks.
///
/// # Errors
/// A one-line usage error when direct-io is asked for with a block size that is not a multiple
/// of 4096.
fn direct_io_alignment(methods: &[Method], block_size: u64) -> Result<(), UsageError> {
    if methods.contains(&Method::DirectIo) && !block_size.is_multiple_of(4096) {
        return Err(UsageError(format!(
            "direct-io needs --block-size to be a multiple of 4096 (O_DIRECT alignment), not {block_size}"
        )));
    }
    Ok(())
}
