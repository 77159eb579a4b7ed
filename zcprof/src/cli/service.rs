//! Options of the long-running command `serve`.
use std::path::PathBuf;

use clap::Args;

use super::parse_serve_listen;

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
    /// Also count socket -> user copies (`zcprof_copy_bytes_total{path="socket_to_user"}`). Off by
    /// default: a receiver reaches that hook about a dozen times per 64 KiB, the most of any.
    #[arg(long)]
    pub receives: bool,
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
