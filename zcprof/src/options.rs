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

/// Validated workload options.
#[derive(Clone, Debug)]
pub struct Workload {
    pub methods: Vec<Method>,
    /// `None` when --file was not given and --size is the default.
    pub size: Option<u64>,
    pub block_size: u64,
    pub file: Option<PathBuf>,
    pub dir: PathBuf,
    pub cache: Cache,
    pub format: Format,
}
