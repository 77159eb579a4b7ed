//! Options of the long-running commands `serve` and `top`.
use std::path::PathBuf;

use clap::Args;

use super::parse_serve_listen;

/// Which tasks `serve` and `top` count, and whether receives too.
#[derive(Debug, Args)]
pub struct SelectorArgs {
    /// Count only processes of this name (as /proc/PID/comm shows it, at most 15 bytes);
    /// repeat for several.
    #[arg(long = "comm", value_name = "NAME")]
    pub comms: Vec<String>,
    /// Count only this process (its threads).
    #[arg(long)]
    pub pid: Option<u32>,
    /// Count only tasks in this cgroup v2 (a directory under /sys/fs/cgroup, absolute or
    /// relative to it, e.g. system.slice/nginx.service); serve labels every series with it.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// Also count socket -> user copies (serve's
    /// `zcprof_copy_bytes_total{path="socket_to_user"}`, top's RECEIVED column). Off by default:
    /// a receiver reaches that hook about a dozen times per 64 KiB, the most of any.
    #[arg(long)]
    pub receives: bool,
}

impl SelectorArgs {
    /// The selector, checked and resolved (a cgroup path to its id).
    ///
    /// # Errors
    /// A bad name, an unknown process, a path that is not a cgroup v2 directory.
    pub fn resolve(&self) -> Result<crate::serve::Selector, crate::serve::SelectorError> {
        crate::serve::Selector::resolve(
            &self.comms,
            self.pid,
            self.cgroup.as_deref(),
            self.receives,
        )
    }
}

/// `zcprof serve`'s options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port of the HTTP server. The default answers only this host; give
    /// 0.0.0.0:9464 (or one interface's address) for a scraper elsewhere.
    #[arg(long, value_name = "ADDR:PORT", default_value = crate::serve::DEFAULT_LISTEN, value_parser = parse_serve_listen)]
    pub listen: std::net::SocketAddr,
    #[command(flatten)]
    pub selector: SelectorArgs,
    /// Close a connection whose request headers have not all arrived after this long, and a
    /// kept-alive connection idle for this long (e.g. 90s, 5m). Prometheus reconnects.
    #[arg(long, value_name = "DURATION", default_value = "90s", value_parser = crate::units::parse_duration)]
    pub idle_timeout: std::time::Duration,
    /// Connections open at once; one more is closed as it comes (each holds a descriptor).
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_connections: u32,
    /// TLS and basic authentication, in the Prometheus exporters' format (exporter-toolkit): a
    /// certificate and key file, the lowest TLS version, and users with bcrypt hashes. Without
    /// it serve speaks plain HTTP to anyone who connects.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
}

/// `zcprof top`'s output formats: the table (full screen in a terminal, plain otherwise) or one
/// JSON object per line per interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TopFormat {
    Table,
    Json,
}

/// `zcprof top`'s options.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// How often the rows are counted and shown (1s, 500ms, 2s; at least 100ms).
    #[arg(long, short = 'd', value_name = "DURATION", default_value = "1s", value_parser = parse_top_interval)]
    pub interval: std::time::Duration,
    #[command(flatten)]
    pub selector: SelectorArgs,
    /// One row per process, per command name, or per cgroup (a container or a service).
    #[arg(long, value_enum, default_value = "process")]
    pub by: crate::top::By,
    /// The column the rows are ranked by (total: every byte a row moved).
    #[arg(long, value_enum, default_value = "total")]
    pub sort: crate::top::SortKey,
    /// Show at most COUNT rows (default: as many as fit the screen; all in plain output).
    #[arg(short = 'n', long = "rows", value_name = "COUNT", value_parser = clap::value_parser!(u32).range(1..))]
    pub rows: Option<u32>,
    /// Stop after N intervals.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Batch mode: a plain table per interval on stdout, no screen or keys (as `top -b`); the
    /// default when stdout is not a terminal.
    #[arg(short = 'b', long)]
    pub batch: bool,
    /// table, or json: one JSON object per line per interval (implies -b).
    #[arg(long, value_enum, default_value = "table")]
    pub format: TopFormat,
}

/// `top --interval`: a duration of at least 100 ms (shorter intervals measure the reading more
/// than the rates).
fn parse_top_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::units::parse_duration(s)?;
    if d < std::time::Duration::from_millis(100) {
        return Err(format!(
            "{s:?} is shorter than 100ms, the shortest interval"
        ));
    }
    Ok(d)
}
