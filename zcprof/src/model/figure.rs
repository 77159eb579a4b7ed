//! One measured figure with its provenance: every number zcprof prints says how it was obtained.

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
        }
    }

    /// A measured rate or duration that has no per-step meaning.
    pub fn scalar(value: f64, source: &Source, note: impl Into<String>) -> Figure {
        Figure {
            value: Some(value),
            per_transfer: None,
            source: source.describe(),
            note: note.into(),
        }
    }

    /// A figure this kernel or version cannot measure; `reason` is required.
    pub fn unavailable(reason: impl Into<String>) -> Figure {
        Figure {
            value: None,
            per_transfer: None,
            source: Source::Unavailable.describe(),
            note: reason.into(),
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
