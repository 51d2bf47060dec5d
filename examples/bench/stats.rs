//! Percentiles and best-of-N.

use serde::Serialize;

/// Latency percentiles of one cell, in microseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Pcts {
    pub n: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub mean_us: f64,
    pub max_us: f64,
}

impl Pcts {
    /// From samples in nanoseconds (sorted in place). Nearest-rank percentiles.
    pub fn from_ns(samples: &mut [u64]) -> Pcts {
        if samples.is_empty() {
            return Pcts::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let at = |q: f64| {
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            samples[rank - 1] as f64 / 1000.0
        };
        let sum: u128 = samples.iter().map(|&s| s as u128).sum();
        Pcts {
            n,
            p50_us: at(0.50),
            p99_us: at(0.99),
            p999_us: at(0.999),
            mean_us: sum as f64 / n as f64 / 1000.0,
            max_us: samples[n - 1] as f64 / 1000.0,
        }
    }

    /// Best of several rounds, each figure on its own (lowest p50, lowest p99, …).
    pub fn best_of(rounds: &[Pcts]) -> Pcts {
        let min = |f: fn(&Pcts) -> f64| {
            rounds
                .iter()
                .map(f)
                .filter(|v| *v > 0.0)
                .fold(f64::INFINITY, f64::min)
        };
        if rounds.is_empty() {
            return Pcts::default();
        }
        Pcts {
            n: rounds.iter().map(|r| r.n).sum(),
            p50_us: min(|r| r.p50_us),
            p99_us: min(|r| r.p99_us),
            p999_us: min(|r| r.p999_us),
            mean_us: min(|r| r.mean_us),
            max_us: min(|r| r.max_us),
        }
    }
}

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}
