//! Repeated runs of one method folded into one report: every figure as the median of its runs,
//! with the min, the max and every value, in the spirit of hyperfine.
//!
//! The report that stands for the group is the run with the median elapsed time (its syscall
//! rows, copy ledger and notes are one real run's, not a blend); its figures are replaced by the
//! medians, each carrying its spread.
use super::{Figure, FigureId, RunReport};

/// A figure's spread across the repetitions of a run.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Every repetition's value, in the order they ran (a repetition where the figure could not
    /// be measured is left out).
    pub values: Vec<f64>,
    /// The same three of the per-step value, when the figure has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_transfer: Option<[f64; 3]>,
}

impl Spread {
    /// `(max - min) / median`: how far apart the repetitions lie, relative to the figure.
    #[must_use]
    #[expect(
        clippy::float_cmp,
        reason = "equal repetitions are exactly equal values"
    )]
    pub fn relative(&self) -> f64 {
        if self.median == 0.0 {
            if self.max == self.min {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            (self.max - self.min) / self.median.abs()
        }
    }
}

/// How many runs a folded report rests on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Repeat {
    /// Measured repetitions folded into this report.
    pub runs: u32,
    /// Unmeasured runs of each method before them.
    pub warmup: u32,
}

/// A relative spread (max - min over the median) above this, on a figure whose medians two rows
/// are compared by, gets a warning: the repetitions disagree by more than most differences the
/// table is read for.
pub const WIDE_SPREAD: f64 = 0.25;

/// The median of `values` (the mean of the middle two for an even count); None when empty.
#[must_use]
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some(f64::midpoint(v[n / 2 - 1], v[n / 2])),
    }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// Folds the repetitions of one run (same method, same network path) into one report. A single
/// report is returned as it is.
///
/// # Panics
/// Never: `runs` is not empty (the caller groups existing reports).
#[must_use]
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "medians of nanosecond counts, far below 2^53"
)]
pub fn fold(mut runs: Vec<RunReport>, warmup: u32) -> RunReport {
    let count = u32::try_from(runs.len()).unwrap_or(u32::MAX);
    if runs.len() == 1 {
        let mut only = runs.pop().expect("one run");
        if warmup > 0 {
            only.repeat = Some(Repeat { runs: 1, warmup });
        }
        return only;
    }
    // The run of median elapsed time (the lower middle one for an even count) stands for all.
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by_key(|&i| runs[i].elapsed_ns);
    let standing = order[(runs.len() - 1) / 2];
    let mut folded = runs[standing].clone();
    for (name, figure) in &mut folded.figures {
        let values: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.figures.get(name).and_then(|f| f.value))
            .collect();
        let steps: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.figures.get(name).and_then(|f| f.per_transfer))
            .collect();
        let Some(mid) = median(&values) else {
            continue;
        };
        let (min, max) = min_max(&values);
        let per_transfer = median(&steps).map(|m| {
            let (lo, hi) = min_max(&steps);
            [m, lo, hi]
        });
        // A sampled estimate's interval and note are one run's: said as such, beside the
        // median of all.
        let (estimate, note) = match figure.estimate {
            Some(_) => (
                None,
                format!(
                    "median of {count} runs; in the run of median elapsed time: {}",
                    figure.note
                ),
            ),
            None => (None, figure.note.clone()),
        };
        *figure = Figure {
            value: Some(mid),
            estimate,
            note,
            per_transfer: per_transfer.map(|p| p[0]),
            spread: Some(Spread {
                median: mid,
                min,
                max,
                values,
                per_transfer,
            }),
            ..figure.clone()
        };
    }
    let elapsed: Vec<f64> = runs.iter().map(|r| r.elapsed_ns as f64).collect();
    folded.elapsed_ns = median(&elapsed).map_or(folded.elapsed_ns, |m| m.round() as u64);
    folded.repeat = Some(Repeat {
        runs: count,
        warmup,
    });
    folded
}

/// Groups `runs` by their row (method and network path), keeping the order in which each first
/// ran, and folds every group.
#[must_use]
pub fn fold_all(runs: Vec<RunReport>, warmup: u32) -> Vec<RunReport> {
    type Key = (String, Option<(String, Option<bool>)>);
    let mut groups: Vec<(Key, Vec<RunReport>)> = Vec::new();
    for r in runs {
        let key = (
            r.method.clone(),
            r.net.as_ref().map(|n| (n.kind.clone(), n.scatter_gather)),
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    groups.into_iter().map(|(_, g)| fold(g, warmup)).collect()
}

/// The figures whose repetitions lie too far apart to rank rows on, as `(run, figure,
/// spread)`, for a warning.
#[must_use]
pub fn wide<'a>(
    runs: &'a [RunReport],
    names: &[FigureId],
) -> Vec<(&'a RunReport, FigureId, &'a Spread)> {
    let mut out = Vec::new();
    for r in runs {
        for &name in names {
            if let Some(s) = r.figures.get(&name).and_then(|f| f.spread.as_ref())
                && s.relative() > WIDE_SPREAD
            {
                out.push((r, name, s));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        model::tests::{read_write_counts, report},
        workload::Method,
    };

    fn with_elapsed(ns: u64, copies: f64) -> RunReport {
        let mut counts = read_write_counts();
        counts.last_event_ns = counts.first_event_ns + ns;
        let mut r = report(Method::ReadWrite, &counts, true);
        r.figures.get_mut(&FigureId::CpuCopyBytes).unwrap().value = Some(copies);
        r
    }

    #[test]
    fn medians_with_min_max_and_every_value() {
        let runs = vec![
            with_elapsed(3_000_000, 10.0),
            with_elapsed(1_000_000, 30.0),
            with_elapsed(2_000_000, 20.0),
        ];
        let f = fold(runs, 1);
        assert_eq!(f.repeat, Some(Repeat { runs: 3, warmup: 1 }));
        assert_eq!(f.elapsed_ns, 2_000_000);
        let e = f.figures[&FigureId::ElapsedNs].spread.as_ref().unwrap();
        assert_eq!((e.median, e.min, e.max), (2e6, 1e6, 3e6));
        assert_eq!(e.values, [3e6, 1e6, 2e6]);
        assert_eq!(f.figures[&FigureId::ElapsedNs].value, Some(2e6));
        let c = f.figures[&FigureId::CpuCopyBytes].spread.as_ref().unwrap();
        assert_eq!((c.median, c.min, c.max), (20.0, 10.0, 30.0));
        // Spread 2 ms over a 2 ms median: wide.
        assert!(e.relative() > WIDE_SPREAD);
        assert_eq!(
            wide(std::slice::from_ref(&f), &[FigureId::ElapsedNs]).len(),
            1
        );
        // An even count: the middle two's mean.
        assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn groups_keep_their_first_order_and_a_single_run_is_untouched() {
        let mut s = with_elapsed(1_000_000, 1.0);
        s.method = "sendfile".into();
        let runs = vec![
            with_elapsed(1_000_000, 1.0),
            s.clone(),
            with_elapsed(2_000_000, 1.0),
            s.clone(),
        ];
        let folded = fold_all(runs, 0);
        assert_eq!(folded.len(), 2);
        assert_eq!(folded[0].method, "read-write");
        assert_eq!(folded[1].method, "sendfile");
        assert_eq!(folded[0].repeat.unwrap().runs, 2);
        let one = fold_all(vec![s.clone()], 0);
        assert_eq!(one[0], s);
    }
}
