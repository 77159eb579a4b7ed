//! Start-up timing: with `ZCPROF_TIMING` set, each stage says on stderr how long after start it
//! was reached (the benchmark's start-up case reads these lines). A module of its own so that
//! every layer can mark a stage without depending on the command runner.
use std::{sync::OnceLock, time::Instant};

/// When the process started; set once by `main`.
pub static STARTED: OnceLock<Instant> = OnceLock::new();

/// With `ZCPROF_TIMING` set, says on stderr how long after start `what` happened.
pub fn mark(what: &str) {
    if std::env::var_os("ZCPROF_TIMING").is_some()
        && let Some(start) = STARTED.get()
    {
        eprintln!(
            "zcprof: timing: {what} after {:.1} ms",
            start.elapsed().as_secs_f64() * 1e3
        );
    }
}
