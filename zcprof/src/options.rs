//! The validated options of a workload run: what `cli` checked and `measure` carries out. They
//! live below both so that measuring never depends on how the command line was spelled.
use std::path::PathBuf;

use crate::{report::Format, workload::Method};

/// Default `--size`.
pub const DEFAULT_SIZE: u64 = 64 << 20;

/// Page cache state at the start of each run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Cache {
    Warm,
    Cold,
}

impl Cache {
    /// Name used in reports.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Cache::Warm => "warm",
            Cache::Cold => "cold",
        }
    }
}

/// The network path between the sender and the receiver (`--net`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Net {
    /// 127.0.0.1 over `lo`, whose scatter-gather is always on.
    Loopback,
    /// A veth pair into a private network namespace, whose sender end can switch
    /// scatter-gather.
    Veth,
}

/// An on/off switch on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

impl Switch {
    #[must_use]
    pub fn on(self) -> bool {
        self == Switch::On
    }
}

/// One measured run of an invocation: a method, and on veth the scatter-gather state of the
/// sender's device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunSpec {
    pub method: Method,
    /// `None` on loopback, where it is fixed.
    pub scatter_gather: Option<bool>,
}

impl RunSpec {
    /// The run's name in progress lines and failed rows: the method, marked when scatter-gather
    /// is off (the note's plain "sendfile" row, beside "sendfile + SG-DMA").
    #[must_use]
    pub fn label(&self) -> String {
        match self.scatter_gather {
            Some(false) => format!("{} (SG off)", self.method),
            _ => self.method.to_string(),
        }
    }

    /// The runs of `methods` over `net`. `sg` is `--sg`; without it a veth sender has
    /// scatter-gather on, and with `contrast` (compare) sendfile also runs with it off, just
    /// before, so the note's two sendfile rows stand side by side.
    #[must_use]
    pub fn plan(methods: &[Method], net: Net, sg: Option<Switch>, contrast: bool) -> Vec<RunSpec> {
        let run = |method, scatter_gather| RunSpec {
            method,
            scatter_gather,
        };
        match (net, sg) {
            (Net::Loopback, _) => methods.iter().map(|&m| run(m, None)).collect(),
            (Net::Veth, Some(sg)) => methods.iter().map(|&m| run(m, Some(sg.on()))).collect(),
            (Net::Veth, None) => methods
                .iter()
                .flat_map(|&m| {
                    let off = (contrast && m == Method::Sendfile).then(|| run(m, Some(false)));
                    off.into_iter().chain([run(m, Some(true))])
                })
                .collect(),
        }
    }
}

/// Validated workload options.
#[derive(Clone, Debug)]
pub struct Workload {
    pub methods: Vec<Method>,
    /// What is measured, in order: `methods` with their scatter-gather states.
    pub runs: Vec<RunSpec>,
    pub net: Net,
    /// `--to`: a `zcprof sink` at `HOST:PORT` receives instead of the built-in receiver.
    pub to: Option<String>,
    /// `--token-file`'s token, sent to the sink of `--to`.
    pub token: Option<crate::sink::Token>,
    /// `None` when --file was not given and --size is the default.
    pub size: Option<u64>,
    pub block_size: u64,
    pub file: Option<PathBuf>,
    pub dir: PathBuf,
    pub cache: Cache,
    pub format: Format,
    /// Measured repetitions of every run (1: once).
    pub repeat: u32,
    /// Unmeasured runs of each before them.
    pub warmup: u32,
    /// One syscall in this many is timed outside trace mode (`--time-every`).
    pub time_every: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_over_veth_adds_sendfile_without_scatter_gather() {
        let runs = RunSpec::plan(&Method::NOTE, Net::Veth, None, true);
        let labels: Vec<String> = runs.iter().map(RunSpec::label).collect();
        assert_eq!(
            labels,
            [
                "read-write",
                "direct-io",
                "mmap-write",
                "sendfile (SG off)",
                "sendfile",
                "splice",
                "tee"
            ]
        );
        assert!(
            runs.iter()
                .filter(|r| r.method != Method::Sendfile)
                .all(|r| r.scatter_gather == Some(true))
        );
    }

    #[test]
    fn an_explicit_state_or_a_single_run_is_not_doubled() {
        let methods = [Method::Sendfile, Method::Splice];
        for sg in [Switch::On, Switch::Off] {
            let runs = RunSpec::plan(&methods, Net::Veth, Some(sg), true);
            assert_eq!(runs.len(), 2);
            assert!(runs.iter().all(|r| r.scatter_gather == Some(sg.on())));
        }
        let run = RunSpec::plan(&[Method::Sendfile], Net::Veth, None, false);
        assert_eq!(
            run,
            [RunSpec {
                method: Method::Sendfile,
                scatter_gather: Some(true)
            }]
        );
        let lo = RunSpec::plan(&methods, Net::Loopback, None, true);
        assert!(lo.iter().all(|r| r.scatter_gather.is_none()));
    }
}
