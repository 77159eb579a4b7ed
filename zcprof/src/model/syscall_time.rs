//! Time in the kernel per syscall: the measured part, the sampled part, and the sampled part's
//! 95 % interval.
//!
//! Each call's time is split where it was first switched out. The tail, from that switch to the
//! return, is measured for every call (a clock read at the switch and at the return, both off
//! the hot path). So a call that blocks for milliseconds, the heavy tail that made a 1-in-16
//! sample swing from 0.3x to 4.5x the elapsed time, is never extrapolated. Only the head, from
//! entry to that switch or to the return, is sampled; it is time on a CPU, short and even.
use zcprof_common::{ALWAYS_TIMED, RANDOM_SQ_SHIFT, SyscallStat};

/// Fewer random timed calls than this, and the sampled part gets no interval: the cell says
/// there were too few.
pub const MIN_TIMED: u64 = 10;

/// The 95 % interval of a syscall's time in the kernel, when part of it was sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TimeInterval {
    /// Random timed calls the sampled part rests on.
    pub samples: u64,
    /// The interval; null when there were fewer than `MIN_TIMED` samples.
    pub low_ns: Option<u64>,
    pub high_ns: Option<u64>,
}

/// A syscall's time in the kernel: the exact sum when every call was timed, else the measured
/// tails plus an estimate of the heads, with its interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallTime {
    pub ns: u64,
    /// The part of `ns` that was measured (the timed calls' heads, every tail); the rest was
    /// extrapolated.
    pub measured_ns: u64,
    /// None when nothing was scaled.
    pub interval: Option<TimeInterval>,
}

/// Estimates a syscall's time from its counts. Calls timed whatever the draw (the first few on
/// each CPU) are not a sample of the others, which may differ (a program's first calls often wait
/// where later ones do not): they count for themselves, and the random sample's mean stands for
/// every call not forced. The interval is the normal one of a sample mean drawn without
/// replacement from those calls; its low end never goes below what was measured.
#[must_use]
#[expect(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "nanosecond sums far below 2^52; the interval is rounded to whole nanoseconds"
)]
pub fn estimate(stat: &SyscallStat) -> SyscallTime {
    let tails = stat.switched_ns;
    if stat.timed == 0 || stat.timed >= stat.count {
        return SyscallTime {
            ns: stat.total_ns + tails,
            measured_ns: stat.total_ns + tails,
            interval: None,
        };
    }
    let forced = stat.forced.min(stat.timed);
    let forced_ns = stat.forced_ns.min(stat.total_ns);
    let random = stat.timed - forced;
    if random == 0 {
        // Only forced calls were timed: their mean is all there is, and no interval.
        let heads = u128::from(stat.total_ns) * u128::from(stat.count) / u128::from(stat.timed);
        return SyscallTime {
            measured_ns: stat.total_ns + tails,
            ns: u64::try_from(heads)
                .unwrap_or(u64::MAX)
                .saturating_add(tails),
            interval: Some(TimeInterval {
                samples: 0,
                low_ns: None,
                high_ns: None,
            }),
        };
    }
    // The random sample stands for every call not forced (itself included).
    let population = stat.count - forced;
    let sampled_ns = stat.total_ns - forced_ns;
    let heads = u128::from(sampled_ns) * u128::from(population) / u128::from(random);
    let ns = u64::try_from(u128::from(forced_ns) + heads)
        .unwrap_or(u64::MAX)
        .saturating_add(tails);
    let interval = if random < MIN_TIMED {
        TimeInterval {
            samples: random,
            low_ns: None,
            high_ns: None,
        }
    } else {
        let (n, big_n) = (random as f64, population as f64);
        let mean = sampled_ns as f64 / n;
        let unit = f64::from(1u32 << RANDOM_SQ_SHIFT);
        let sum_sq = stat.random_sq as f64 * unit * unit;
        let variance = ((sum_sq - n * mean * mean) / (n - 1.0)).max(0.0);
        let finite = (1.0 - n / big_n).max(0.0);
        let half = 1.96 * big_n * (variance / n * finite).sqrt();
        // What was measured is a floor: the forced calls, the sample, every tail.
        let floor = (forced_ns + sampled_ns + tails) as f64;
        TimeInterval {
            samples: random,
            low_ns: Some((ns as f64 - half).max(floor).round() as u64),
            high_ns: Some((ns as f64 + half).round() as u64),
        }
    };
    SyscallTime {
        ns,
        measured_ns: stat.total_ns + tails,
        interval: Some(interval),
    }
}

/// Caps sampled estimates that add up to more than one thread's window: the built-in transfer
/// process has one thread, so its syscalls cannot have taken longer than the window. Time a
/// hypervisor takes from the CPU inside a call (steal time, which no switch-out marks) makes the
/// heads heavy-tailed and can push a 1-in-16 sample past that. The extrapolated parts are scaled
/// down together until the sum fits; measured time is never touched. Returns the factor applied
/// (1: nothing capped).
#[expect(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "nanosecond sums far below 2^52"
)]
pub fn cap_to_window(times: &mut [(u64, u64)], window_ns: u64) -> f64 {
    let total: u64 = times.iter().map(|t| t.0).sum();
    let measured: u64 = times.iter().map(|t| t.1.min(t.0)).sum();
    if window_ns == 0 || total <= window_ns || total <= measured {
        return 1.0;
    }
    let room = window_ns.saturating_sub(measured) as f64;
    let factor = (room / (total - measured) as f64).clamp(0.0, 1.0);
    for (ns, measured) in times.iter_mut() {
        let m = (*measured).min(*ns);
        *ns = m + ((*ns - m) as f64 * factor).round() as u64;
    }
    factor
}

/// How syscalls were timed, for the report.
#[must_use]
pub fn description(every: u32) -> String {
    if every <= 1 {
        "every call timed (bpf_ktime_get_ns at entry and return)".to_owned()
    } else {
        format!(
            "bpf_ktime_get_ns at every switch-out inside a syscall and at the return of a call \
             that was switched out, so time spent blocked or preempted is measured for every \
             call; the time before that switch (or to the return) is sampled: entry and return \
             of 1 call in {every} at random, and of every call of a syscall until \
             {ALWAYS_TIMED} were timed on a CPU. ≈ marks an estimate: the first calls and the \
             random sample's mean scaled to the calls not timed, ± its 95 % interval \
             (--time-every 1 times every call)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(count: u64, timed: u64, total_ns: u64) -> SyscallStat {
        SyscallStat {
            count,
            timed,
            total_ns,
            ..SyscallStat::default()
        }
    }

    #[test]
    fn sampled_heads_are_scaled_to_every_call() {
        // 10 of 160 calls timed, 500 ns each: the 160 calls took about 80 us.
        assert_eq!(estimate(&stat(160, 10, 5_000)).ns, 80_000);
        // Every call timed: the sum itself, with no interval.
        assert_eq!(
            estimate(&stat(3, 3, 900)),
            SyscallTime {
                ns: 900,
                measured_ns: 900,
                interval: None
            }
        );
        // A call still in flight was counted but not returned: nothing to scale.
        assert_eq!(estimate(&stat(4, 3, 900)).ns, 1_200);
        assert_eq!(estimate(&stat(1, 0, 0)).ns, 0);
        assert!(description(1).starts_with("every call"));
        assert!(description(16).contains("1 call in 16"));
    }

    #[test]
    fn forced_calls_count_for_themselves() {
        // 8 forced calls of 10 ms, then 20,000 calls of 300 ns, 1,250 of them drawn: the forced
        // ones count once, the sample stands for the 20,000 (scaled like the rest, the forced
        // calls' time would be 16 times too much).
        let early = SyscallStat {
            count: 20_008,
            timed: 1_258,
            total_ns: 80_000_000 + 1_250 * 300,
            forced: 8,
            forced_ns: 80_000_000,
            random_sq: 1_250 * (300 >> RANDOM_SQ_SHIFT) * (300 >> RANDOM_SQ_SHIFT),
            ..SyscallStat::default()
        };
        let t = estimate(&early);
        assert_eq!(t.ns, 80_000_000 + 20_000 * 300);
        // All sampled heads equal: the interval is (nearly) a point, above the measured floor.
        let i = t.interval.unwrap();
        assert_eq!(i.samples, 1_250);
        assert!(i.low_ns.unwrap() <= t.ns && t.ns <= i.high_ns.unwrap());
        assert!(i.high_ns.unwrap() - i.low_ns.unwrap() < t.ns / 50, "{i:?}");
        // Only forced calls timed: their mean for all, and too few samples for an interval.
        let few = SyscallStat {
            count: 10,
            timed: 8,
            total_ns: 800,
            forced: 8,
            forced_ns: 800,
            ..SyscallStat::default()
        };
        let t = estimate(&few);
        assert_eq!(t.ns, 1_000);
        assert_eq!(t.interval.unwrap().low_ns, None);
    }

    #[test]
    fn switched_tails_are_added_whole() {
        // 100 calls, 20 timed at random with 1 us heads; 3 calls blocked, 5 ms from their
        // switch-out to their return: those 15 ms are measured, not scaled by 5.
        let s = SyscallStat {
            count: 100,
            timed: 20,
            total_ns: 20_000,
            random_sq: 20 * (1_000 >> RANDOM_SQ_SHIFT) * (1_000 >> RANDOM_SQ_SHIFT),
            switched: 3,
            switched_ns: 15_000_000,
            ..SyscallStat::default()
        };
        let t = estimate(&s);
        assert_eq!(t.ns, 100_000 + 15_000_000);
        let i = t.interval.unwrap();
        assert!(i.low_ns.unwrap() >= 20_000 + 15_000_000);
        // Every call timed: heads and tails are both sums.
        let all = SyscallStat {
            count: 4,
            timed: 4,
            total_ns: 4_000,
            switched_ns: 1_000,
            ..SyscallStat::default()
        };
        assert_eq!(estimate(&all).ns, 5_000);
    }

    #[test]
    fn uneven_heads_widen_the_interval() {
        // 16 random heads: 8 of 100 ns and 8 of 10,100 ns (mean 5,100), standing for 160 calls.
        let sq = |ns: u64| (ns >> RANDOM_SQ_SHIFT) * (ns >> RANDOM_SQ_SHIFT);
        let s = SyscallStat {
            count: 160,
            timed: 16,
            total_ns: 8 * 100 + 8 * 10_100,
            random_sq: 8 * sq(100) + 8 * sq(10_100),
            ..SyscallStat::default()
        };
        let t = estimate(&s);
        assert_eq!(t.ns, 160 * 5_100);
        let i = t.interval.unwrap();
        // sd about 5,160; half-width 1.96 * 160 * 5,160 / 4 * sqrt(0.9), about 383,000.
        let half = i.high_ns.unwrap() - t.ns;
        assert!((350_000..420_000).contains(&half), "{i:?}");
        // Fewer than MIN_TIMED samples: no interval.
        let s = SyscallStat { timed: 5, ..s };
        assert_eq!(estimate(&s).interval.unwrap().low_ns, None);
    }

    #[test]
    fn a_single_thread_never_spends_more_than_its_window() {
        // 30 ms estimated of which 10 ms measured, in a 20 ms window: the 20 ms extrapolated
        // shrink to the 10 ms left.
        let mut t = [(20_000_000, 5_000_000), (10_000_000, 5_000_000)];
        let f = cap_to_window(&mut t, 20_000_000);
        assert!((f - 0.5).abs() < 1e-9);
        assert_eq!(t, [(12_500_000, 5_000_000), (7_500_000, 5_000_000)]);
        // Within the window: untouched.
        let mut t = [(1_000, 500)];
        assert!((cap_to_window(&mut t, 2_000) - 1.0).abs() < f64::EPSILON);
        assert_eq!(t, [(1_000, 500)]);
    }
}
