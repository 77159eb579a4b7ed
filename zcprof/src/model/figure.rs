//! One measured figure with its provenance: every number zcprof prints says how it was obtained.

/// Declares `FigureId`: each variant with the name the JSON contract gives it.
macro_rules! figure_ids {
    ($($variant:ident => $name:literal,)*) => {
        /// What a figure measures: the key of a report's `figures`. Serialised (and ordered, so
        /// that the JSON keeps its alphabetical order) by the contract's name, never matched by
        /// it: code that talks about a figure names its variant.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum FigureId {
            $($variant,)*
        }

        impl FigureId {
            /// Every figure a report can hold.
            pub const ALL: &'static [FigureId] = &[$(FigureId::$variant,)*];

            /// The name in JSON, CSV and the legend.
            #[must_use]
            pub const fn name(self) -> &'static str {
                match self {
                    $(FigureId::$variant => $name,)*
                }
            }
        }
    };
}

figure_ids! {
    ContextSwitches => "context_switches",
    ContextSwitchesInvoluntary => "context_switches_involuntary",
    ContextSwitchesVoluntary => "context_switches_voluntary",
    CopyCpuShare => "copy_cpu_share",
    CopyFromIterBytes => "copy_from_iter_bytes",
    CopyToIterBytes => "copy_to_iter_bytes",
    CpuCopyBytes => "cpu_copy_bytes",
    CpuCopyFromUserBytes => "cpu_copy_from_user_bytes",
    CpuCopyToUserBytes => "cpu_copy_to_user_bytes",
    CpuTimeNs => "cpu_time_ns",
    DiskReadBytes => "disk_read_bytes",
    DiskWriteBytes => "disk_write_bytes",
    DmaApiMaps => "dma_api_maps",
    DmaBytes => "dma_bytes",
    ElapsedNs => "elapsed_ns",
    FilemapReadBytes => "filemap_read_bytes",
    InKernelBytes => "in_kernel_bytes",
    IovIterCopyBytes => "iov_iter_copy_bytes",
    ModeSwitches => "mode_switches",
    NicDmaBytes => "nic_dma_bytes",
    PageCacheToUserBytes => "page_cache_to_user_bytes",
    PageFaultsKernel => "page_faults_kernel",
    PageFaultsUser => "page_faults_user",
    SocketCopyBytes => "socket_copy_bytes",
    SocketSpliceBytes => "socket_splice_bytes",
    Syscalls => "syscalls",
    ThroughputBytesPerSec => "throughput_bytes_per_sec",
    UserBufferCopyBytes => "user_buffer_copy_bytes",
}

impl Ord for FigureId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(other.name())
    }
}

impl PartialOrd for FigureId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for FigureId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for FigureId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Where a row departs from the textbook, in a few words, for the short form under the table:
/// the figure it concerns and why (the footnote says more).
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub figure: FigureId,
    pub why: String,
}

/// A report's figures, by what they measure.
pub type Figures = std::collections::BTreeMap<FigureId, Figure>;

/// How a figure was obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Counted by eBPF programs on these hooks (e.g. "`raw_tp` `sys_enter`").
    Counted(Vec<String>),
    /// Computed from counted syscalls and what those syscalls mean.
    SyscallSemantics(Vec<String>),
    /// Estimated from periodic samples of the measured process.
    Sampled(Vec<String>),
    /// Measured by the kernel clock of the traced events.
    KernelClock(Vec<String>),
    /// The copy ledger: the sum of several paths, each with its own source.
    Ledger(Vec<String>),
    /// Not measured on this kernel or by this version.
    Unavailable,
}

impl Source {
    /// The text put in reports and JSON.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Source::Counted(hooks) => format!("counted in the kernel: {}", hooks.join(" + ")),
            Source::SyscallSemantics(hooks) => {
                format!(
                    "derived from syscall semantics (return values counted by {})",
                    hooks.join(" + ")
                )
            }
            Source::Sampled(hooks) => format!(
                "sampled: {}, kernel stacks symbolized from /proc/kallsyms",
                hooks.join(" + ")
            ),
            Source::KernelClock(hooks) => {
                format!("kernel clock at traced events ({})", hooks.join(" + "))
            }
            Source::Ledger(paths) => format!("copy ledger, by path: {}", paths.join("; ")),
            Source::Unavailable => "unavailable".to_owned(),
        }
    }
}

/// A figure of the JSON contract: `value` is null only when it could not be measured, and then
/// `note` says why.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Figure {
    #[serde(serialize_with = "number")]
    pub value: Option<f64>,
    #[serde(serialize_with = "number")]
    pub per_transfer: Option<f64>,
    pub source: String,
    pub note: String,
    /// For a sampled estimate: the samples it rests on and its 95 % interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
    /// With `--repeat`: `value` and `per_transfer` are medians, and this is their spread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<super::repeat::Spread>,
}

/// How far a sampled proportion can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// Samples the proportion was computed from.
    pub samples: u64,
    /// 95 % interval of the proportion (Wilson score interval).
    pub low: f64,
    pub high: f64,
}

/// Fewer samples than this, and a sampled share is not shown as a number.
pub const MIN_SAMPLES: u64 = 30;

impl Estimate {
    /// The Wilson score interval of `hits` out of `n` at 95 %: it stays inside [0, 1] and is
    /// sound for small `n` and proportions near 0 or 1, where the normal approximation is not.
    /// A formula of three lines: no statistics crate is needed for it.
    #[must_use]
    #[expect(clippy::cast_precision_loss, reason = "sample counts far below 2^52")]
    pub fn wilson(hits: u64, n: u64) -> Estimate {
        const Z: f64 = 1.96;
        if n == 0 {
            return Estimate {
                samples: 0,
                low: 0.0,
                high: 1.0,
            };
        }
        let (k, n_f) = (hits as f64, n as f64);
        let p = k / n_f;
        let denom = 1.0 + Z * Z / n_f;
        let centre = (p + Z * Z / (2.0 * n_f)) / denom;
        let half = Z * (p * (1.0 - p) / n_f + Z * Z / (4.0 * n_f * n_f)).sqrt() / denom;
        Estimate {
            samples: n,
            low: (centre - half).max(0.0),
            high: (centre + half).min(1.0),
        }
    }
}

impl Figure {
    /// A measured total, also given per transfer step.
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    pub fn measured(
        value: u64,
        transfers: u64,
        source: &Source,
        note: impl Into<String>,
    ) -> Figure {
        Figure {
            value: Some(value as f64),
            per_transfer: (transfers > 0).then(|| value as f64 / transfers as f64),
            source: source.describe(),
            note: note.into(),
            estimate: None,
            spread: None,
        }
    }

    /// A measured rate or duration that has no per-step meaning.
    pub fn scalar(value: f64, source: &Source, note: impl Into<String>) -> Figure {
        Figure {
            value: Some(value),
            per_transfer: None,
            source: source.describe(),
            note: note.into(),
            estimate: None,
            spread: None,
        }
    }

    /// A figure this kernel or version cannot measure; `reason` is required.
    pub fn unavailable(reason: impl Into<String>) -> Figure {
        Figure {
            value: None,
            per_transfer: None,
            source: Source::Unavailable.describe(),
            note: reason.into(),
            estimate: None,
            spread: None,
        }
    }
}

/// Whole numbers as JSON integers, others as floats rounded to 4 decimals.
#[expect(clippy::ref_option, reason = "serde's serialize_with signature")]
pub(super) fn number<S: serde::Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        None => s.serialize_none(),
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "checked whole and in range"
        )]
        Some(v) if v.fract() == 0.0 && *v >= 0.0 && *v < 9.0e15 => s.serialize_u64(*v as u64),
        Some(v) => s.serialize_f64((v * 10_000.0).round() / 10_000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure_names_are_unique_and_ordered_as_the_json_is() {
        let mut names: Vec<&str> = FigureId::ALL.iter().map(|f| f.name()).collect();
        let declared = names.clone();
        names.sort_unstable();
        names.dedup();
        assert_eq!(
            names, declared,
            "declare FigureId's variants in their names' order, once"
        );
    }

    #[test]
    fn wilson_intervals() {
        // 50 of 100: about 0.40 to 0.60.
        let e = Estimate::wilson(50, 100);
        assert!(
            (e.low - 0.404).abs() < 0.005 && (e.high - 0.596).abs() < 0.005,
            "{e:?}"
        );
        // None of 10: the interval still reaches 0.28, not a point at 0.
        let e = Estimate::wilson(0, 10);
        assert!(
            e.low.abs() < f64::EPSILON && (e.high - 0.278).abs() < 0.005,
            "{e:?}"
        );
        assert!((Estimate::wilson(0, 0).high - 1.0).abs() < f64::EPSILON);
    }
}
