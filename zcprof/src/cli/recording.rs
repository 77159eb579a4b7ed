//! Recording options of every measuring command: where the report goes, how syscalls are
//! timed, and the event trace.
use std::path::PathBuf;

use clap::Args;

use super::UsageError;
use crate::units;

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
    /// Under the table, say how every figure was measured: the legend of each column with its
    /// hooks, every note, the warnings, and the syscall and process tables in full (the default
    /// is a short form: warnings, the departures from the textbook, the top syscalls).
    #[arg(long, short = 'v')]
    pub explain: bool,
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
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = units::parse_size, requires = "trace")]
    pub trace_buffer: u64,
    /// Keep at most N events in the trace (K = thousand, M = million): recording stops there,
    /// the run goes on, later events are counted and the trace is marked incomplete. Bounds
    /// zcprof's memory (about 64 bytes per event, twice that while writing) and the file's size.
    #[arg(long, value_name = "N", default_value = "1M", value_parser = units::parse_count, requires = "trace")]
    pub trace_limit: u64,
}

impl TraceArgs {
    /// One syscall in this many is timed: `--time-every`, else the default; a trace times
    /// every call whatever this says.
    #[must_use]
    pub fn time_every(&self) -> u32 {
        self.time_every
            .unwrap_or(crate::probes::DEFAULT_TIME_EVERY)
            .max(1)
    }

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
