//! `zcprof serve`: always-on counters for Prometheus. Binds the port, attaches the data-path
//! hook set, and answers each scrape of `/metrics` by reading the kernel's per-name counters
//! (a pull model: no per-event work in user space, nothing done between scrapes).
pub mod http;
pub mod selector;
pub mod web_config;

use std::{net::SocketAddr, sync::atomic::AtomicBool};

pub use http::Limits;
use http::{Answer, Asked, HttpError};

pub use selector::{Selector, SelectorError};
pub use web_config::{WebConfig, WebConfigError};

use crate::{
    collect::serve::{self as collect, ServeCollectError},
    export::prometheus::{self, ExpositionError, Scrape},
    model::fleet::Fleet,
    probes::serve::{ServeProbeError, ServeProbes, maps},
};

/// The default address: this host only (a scraper elsewhere needs `--listen 0.0.0.0:9464`);
/// `zcprof sink` has the next port, 9465.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// Connections the kernel queues for serve to accept (net.core.somaxconn's default).
const LISTEN_BACKLOG: i32 = 4096;

/// Errors of `zcprof serve`, each one line.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound (in use, not this host's, a privileged port).
    #[error("cannot listen on {addr}: {why}")]
    Listen { addr: SocketAddr, why: String },
    /// The hooks could not be set up.
    #[error(transparent)]
    Probes(#[from] ServeProbeError),
    /// A map could not be read.
    #[error(transparent)]
    Collect(#[from] ServeCollectError),
    /// The metrics could not be rendered.
    #[error(transparent)]
    Exposition(#[from] ExpositionError),
    /// The HTTP front failed: no runtime, or the listening socket failed for good.
    #[error("{0}")]
    Http(String),
}

/// A bound, not yet serving, listening socket.
pub struct Listener {
    socket: std::net::TcpListener,
    addr: SocketAddr,
}

/// Binds `addr`, before anything is loaded, so a port in use is one line at once.
///
/// # Errors
/// When the address cannot be bound.
pub fn listen(addr: SocketAddr) -> Result<Listener, ServeError> {
    let socket = std::net::TcpListener::bind(addr).map_err(|e| {
        // "Address already in use (os error 98)" -> "address already in use (os error 98)".
        let text = e.to_string();
        let mut chars = text.chars();
        let why = chars.next().map_or_else(String::new, |c| {
            c.to_lowercase().collect::<String>() + chars.as_str()
        });
        ServeError::Listen { addr, why }
    })?;
    // std listens with a backlog of 128: 2,000 clients connecting at once overflowed it, and a
    // scrape's SYN dropped on the full queue waited a second for its retry. Listening again
    // only sets the backlog (the kernel caps it at net.core.somaxconn).
    // SAFETY: listen on a socket this function owns.
    unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&socket), LISTEN_BACKLOG) };
    let addr = socket.local_addr().unwrap_or(addr);
    Ok(Listener { socket, addr })
}

/// Serves `/metrics` until `stop` is set (SIGINT, SIGTERM), then detaches everything.
///
/// # Errors
/// Hooks that cannot be attached, maps that cannot be read, a listening socket that fails.
pub fn run(
    listener: Listener,
    limits: Limits,
    web: WebConfig,
    selector: &Selector,
    what: &str,
    stop: &AtomicBool,
) -> Result<(), ServeError> {
    let mut probes = ServeProbes::attach(&selector.filter)?;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let refused: Vec<String> = probes
        .attached
        .iter()
        .filter_map(|(t, r)| r.as_ref().err().map(|why| format!("{t} ({why})")))
        .collect();
    eprintln!(
        "zcprof serve: counting {what} at {}://{}/metrics{}",
        if web.tls.is_some() { "https" } else { "http" },
        listener.addr,
        if web.users.is_empty() {
            ""
        } else {
            " (basic authentication)"
        }
    );
    if !refused.is_empty() {
        eprintln!(
            "zcprof serve: not counted, this kernel refused: {}",
            refused.join("; ")
        );
    }
    let selector = selector.clone();
    let mut fleet = Fleet::default();
    let mut living = Living::default();
    // The probes live in the handler: they detach when serving ends, however it ends.
    let handler = move |asked| {
        let mut state = State {
            probes: &mut probes,
            fleet: &mut fleet,
            living: &mut living,
        };
        answer(asked, &mut state, &selector, &kernel)
    };
    http::serve(listener.socket, limits, web, stop, handler).map_err(|e| match e {
        HttpError::Handler(e) => e,
        e => ServeError::Http(e.to_string()),
    })
}

/// What scrapes carry from one to the next.
struct State<'a> {
    probes: &'a mut ServeProbes,
    fleet: &'a mut Fleet,
    living: &'a mut Living,
}

/// How old the names of the living tasks may be when every name the kernel holds is among them.
const LIVING_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// The names of the tasks alive, read from /proc (every task's `comm`: the walk took most of a
/// 3 ms scrape on an idle host). Read again when older than `LIVING_MAX_AGE` or when the kernel
/// holds a name not among them (a new name, or one whose tasks went), so back-to-back scrapes
/// share one walk and an exit is seen within a second.
#[derive(Default)]
struct Living {
    names: std::collections::HashSet<collect::Comm>,
    read_at: Option<std::time::Instant>,
}

impl Living {
    fn names(
        &mut self,
        pid: u32,
        held: &std::collections::HashMap<collect::Comm, zcprof_common::serve::ServeStat>,
    ) -> &std::collections::HashSet<collect::Comm> {
        let fresh = self.read_at.is_some_and(|at| at.elapsed() < LIVING_MAX_AGE);
        if !fresh || held.keys().any(|c| !self.names.contains(c)) {
            self.names = collect::alive(pid);
            self.read_at = Some(std::time::Instant::now());
        }
        &self.names
    }
}

/// The answer to what a client asked.
fn answer(
    asked: Asked,
    state: &mut State,
    selector: &Selector,
    kernel: &str,
) -> Result<Answer, ServeError> {
    Ok(match asked {
        Asked::Metrics { openmetrics } => Answer {
            status: 200,
            content_type: if openmetrics {
                prometheus::OPENMETRICS
            } else {
                prometheus::PROMETHEUS_TEXT
            },
            body: scrape(state, selector, kernel, openmetrics)?,
        },
        Asked::Index => Answer {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: "zcprof serve: the metrics are at /metrics\n".to_owned(),
        },
        Asked::Unknown => Answer {
            status: 404,
            content_type: "text/plain; charset=utf-8",
            body: "not found\n".to_owned(),
        },
    })
}

/// One scrape: the kernel's counters folded into the series, rendered.
fn scrape(
    state: &mut State,
    selector: &Selector,
    kernel: &str,
    openmetrics: bool,
) -> Result<String, ServeError> {
    let State {
        probes,
        fleet,
        living,
    } = state;
    probes.refresh_nics();
    let missing = |name: &'static str| ServeProbeError::Map {
        name,
        reason: "missing from the object".to_owned(),
    };
    let raw = collect::stats(
        probes
            .map(maps::STATS)
            .ok_or_else(|| missing(maps::STATS))?,
    )?;
    let alive = living.names(selector.filter.pid, &raw);
    let forget = fleet.scrape(&raw, alive);
    if !forget.is_empty()
        && let Some(map) = probes.map_mut(maps::STATS)
    {
        collect::forget(map, &forget);
    }
    let lost = collect::lost(probes.map(maps::LOST).ok_or_else(|| missing(maps::LOST))?)?;
    let reasons = ["socket_table_full", "comm_table_full"];
    let scrape = Scrape {
        totals: Some(fleet.totals()),
        cgroup: selector.cgroup_label.as_deref(),
        lost: reasons.into_iter().zip(lost).collect(),
        hooks: probes
            .attached
            .iter()
            .map(|(target, r)| (*target, r.is_ok()))
            .collect(),
        kernel,
        receives: selector.filter.receives,
    };
    Ok(prometheus::render(&scrape, openmetrics)?)
}
