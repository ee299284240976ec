//! Latency figures: one histogram type and one percentile definition, used by the runtime
//! (store commit and ack latency, search latency, task durations, replication lag) and by
//! every benchmark, so two p99s side by side were computed the same way.
//!
//! [`LatencyHistogram`] wraps an [HdrHistogram](https://hdrhistogram.github.io/HdrHistogram/)
//! (the `hdrhistogram` crate) that counts values in whole microseconds at 3 significant
//! digits: every value below 2,048 µs is exact, larger values share a bucket with
//! neighbours within 0.1%. The sum and the maximum are also kept exactly beside it.
//!
//! **The percentile definition** ([`LatencyHistogram::percentile_us`]): *nearest rank*.
//! The q-percentile is the smallest recorded value v such that at least `ceil(q·n)`
//! samples (at least one) are ≤ v. This is hdrhistogram's `value_at_quantile`, which
//! reports v as the highest value of v's bucket; edgeswarm caps it at the exact maximum,
//! so a percentile never exceeds a real sample. Hence, for the exact nearest-rank value
//! `t`: `t ≤ percentile ≤ min(max, t + 0.1%)` (and `percentile == t` below 2,048 µs).
//! Nearest rank never interpolates between samples, so every figure is a latency some
//! request really saw (within the resolution), and merging histograms from several
//! threads gives the same answer as one histogram over all samples.
//!
//! [`SharedLatency`] is the thread-safe form for runtime counters (a mutex around the
//! histogram; recording is a few nanoseconds of arithmetic, and a batch of values is
//! recorded under one lock).

use hdrhistogram::Histogram;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Significant decimal digits the histogram keeps: values within 0.1% share a bucket.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// The bucket index of `v` among `n` power-of-two buckets: index i counts values with
/// `2^(i-1) < v <= 2^i` (index 0: `v <= 1`); the last bucket also takes everything
/// larger. The one bucketing rule behind every `*_hist` vector the store and the facade
/// export (batch sizes, latencies in µs).
pub fn pow2_bucket(v: u64, n: usize) -> usize {
    ((64 - v.max(1).saturating_sub(1).leading_zeros()) as usize).min(n.max(1) - 1)
}

/// Latency samples in whole microseconds: count, exact sum and max, and percentiles by
/// the nearest-rank definition in the module docs. Not thread-safe by itself; see
/// [`SharedLatency`].
#[derive(Clone)]
pub struct LatencyHistogram {
    /// Sample counts per value bucket (µs, 3 significant digits, grows as larger values
    /// arrive): what the percentiles and bucket counts are read from.
    hist: Histogram<u64>,
    /// Exact sum of the recorded values (µs), so the mean and an exporter's `_sum` carry
    /// no bucket rounding.
    sum_us: u64,
    /// Exact largest recorded value (µs): caps percentiles, so none exceeds a real sample.
    max_us: u64,
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count())
            .field("sum_us", &self.sum_us)
            .field("max_us", &self.max_us)
            .finish()
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        let hist = match Histogram::new(SIGNIFICANT_DIGITS) {
            Ok(h) => h,
            // hdrhistogram accepts 0..=5 significant digits; 3 is a constant in range.
            Err(e) => unreachable!("hdrhistogram refused {SIGNIFICANT_DIGITS} significant digits: {e:?}"),
        };
        LatencyHistogram {
            hist,
            sum_us: 0,
            max_us: 0,
        }
    }

    /// A histogram holding `samples_ms` (milliseconds).
    pub fn from_ms(samples_ms: impl IntoIterator<Item = f64>) -> Self {
        let mut h = Self::new();
        for ms in samples_ms {
            h.record_ms(ms);
        }
        h
    }

    /// Records one value in microseconds.
    pub fn record_us(&mut self, us: u64) {
        // `record` grows the histogram to fit (auto-resize); it fails only for values near
        // u64::MAX, which are then counted at the largest trackable value.
        if self.hist.record(us).is_err() {
            self.hist.saturating_record(us);
        }
        self.sum_us = self.sum_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
    }

    /// Records one duration (truncated to whole microseconds).
    pub fn record(&mut self, d: Duration) {
        self.record_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records one value in milliseconds (rounded to the microsecond; negative or NaN
    /// counts as 0).
    pub fn record_ms(&mut self, ms: f64) {
        let us = (ms * 1000.0).round();
        self.record_us(if us.is_finite() && us > 0.0 { us as u64 } else { 0 });
    }

    /// Adds every sample of `other` (e.g. per-thread histograms into one).
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // With auto-resize on (the default of `Histogram::new`) adding cannot fail; should
        // it ever, fall back to recording `other`'s values one bucket at a time.
        if self.hist.add(&other.hist).is_err() {
            for v in other.hist.iter_recorded() {
                let _ = self.hist.record_n(v.value_iterated_to(), v.count_at_value());
            }
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.max_us = self.max_us.max(other.max_us);
    }

    /// Drops every sample.
    pub fn reset(&mut self) {
        self.hist.reset();
        self.sum_us = 0;
        self.max_us = 0;
    }

    /// Number of samples.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Exact sum of the samples (µs).
    pub fn sum_us(&self) -> u64 {
        self.sum_us
    }

    /// Exact mean (ms); 0 when empty.
    pub fn mean_ms(&self) -> f64 {
        match self.count() {
            0 => 0.0,
            n => self.sum_us as f64 / n as f64 / 1000.0,
        }
    }

    /// Exact largest sample (µs); 0 when empty.
    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    /// Exact largest sample (ms); 0 when empty.
    pub fn max_ms(&self) -> f64 {
        self.max_us as f64 / 1000.0
    }

    /// The q-percentile (q in 0..=1, clamped) in µs by the nearest-rank definition in the
    /// module docs; 0 when empty.
    pub fn percentile_us(&self, q: f64) -> u64 {
        if self.is_empty() {
            return 0;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        self.hist.value_at_quantile(q).min(self.max_us)
    }

    /// [`percentile_us`](Self::percentile_us) in milliseconds.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        self.percentile_us(q) as f64 / 1000.0
    }

    /// Samples ≤ `bound_us` (a Prometheus `le` bucket; at the histogram's resolution:
    /// a sample counts if its bucket starts at or below the bound).
    pub fn count_le_us(&self, bound_us: u64) -> u64 {
        self.hist
            .iter_recorded()
            .take_while(|v| self.hist.lowest_equivalent(v.value_iterated_to()) <= bound_us)
            .map(|v| v.count_at_value())
            .sum()
    }

    /// Sample counts in `n` power-of-two µs buckets as [`pow2_bucket`] numbers them (not
    /// cumulative): the shape of the `*_us_hist` vectors the store and the facade export.
    pub fn pow2_buckets(&self, n: usize) -> Vec<u64> {
        let mut out = vec![0u64; n.max(1)];
        for v in self.hist.iter_recorded() {
            out[pow2_bucket(self.hist.lowest_equivalent(v.value_iterated_to()), n)] += v.count_at_value();
        }
        out
    }

    /// Count, sum, mean, max and the usual percentiles in one small copyable value.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count(),
            sum_us: self.sum_us,
            mean_ms: self.mean_ms(),
            max_ms: self.max_ms(),
            p50_ms: self.percentile_ms(0.50),
            p90_ms: self.percentile_ms(0.90),
            p95_ms: self.percentile_ms(0.95),
            p99_ms: self.percentile_ms(0.99),
            p999_ms: self.percentile_ms(0.999),
        }
    }
}

/// A histogram's figures at one moment (see [`LatencyHistogram::summary`]): what a status
/// view or a summary-type exporter needs without holding the histogram.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencySummary {
    /// Number of samples (an exporter's `_count`).
    pub count: u64,
    /// Exact sum of the samples in µs (an exporter's `_sum`).
    pub sum_us: u64,
    /// Exact mean, ms.
    pub mean_ms: f64,
    /// Exact maximum, ms.
    pub max_ms: f64,
    /// Median (nearest rank), ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
}

/// A [`LatencyHistogram`] shared between threads: writers record under a mutex (one
/// lock per value, or per batch with [`SharedLatency::lock`]); readers take a copy.
#[derive(Debug, Default)]
pub struct SharedLatency {
    /// The histogram; a poisoned lock is recovered (a panic mid-record leaves at worst
    /// one sample half-counted).
    inner: Mutex<LatencyHistogram>,
}

impl SharedLatency {
    /// An empty shared histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Exclusive access, e.g. to record a whole batch under one lock.
    pub fn lock(&self) -> MutexGuard<'_, LatencyHistogram> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one duration.
    pub fn record(&self, d: Duration) {
        self.lock().record(d);
    }

    /// Records one value in microseconds.
    pub fn record_us(&self, us: u64) {
        self.lock().record_us(us);
    }

    /// A copy of the histogram as it is now.
    pub fn snapshot(&self) -> LatencyHistogram {
        self.lock().clone()
    }

    /// The summary as it is now (cheaper than a snapshot: nothing is copied).
    pub fn summary(&self) -> LatencySummary {
        self.lock().summary()
    }

    /// Power-of-two bucket counts and the exact sum (µs) as they are now, read under one
    /// lock.
    pub fn pow2_buckets(&self, n: usize) -> (Vec<u64>, u64) {
        let h = self.lock();
        (h.pow2_buckets(n), h.sum_us())
    }

    /// Drops every sample.
    pub fn reset(&self) {
        self.lock().reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        assert_eq!(pow2_bucket(0, 16), 0);
        assert_eq!(pow2_bucket(1, 16), 0);
        assert_eq!(pow2_bucket(2, 16), 1);
        assert_eq!(pow2_bucket(3, 16), 2);
        assert_eq!(pow2_bucket(4096, 16), 12);
        assert_eq!(pow2_bucket(u64::MAX, 16), 15);
    }

    #[test]
    fn nearest_rank_exact_below_2048_us() {
        let h = LatencyHistogram::from_ms((1..=100).map(|i| i as f64 / 100.0)); // 10..=1000 µs
        assert_eq!(h.count(), 100);
        assert_eq!(h.percentile_us(0.50), 500);
        assert_eq!(h.percentile_us(0.95), 950);
        assert_eq!(h.percentile_us(0.99), 990);
        assert_eq!(h.percentile_us(1.0), 1000);
        assert_eq!(h.percentile_us(0.0), 10);
        assert_eq!(h.max_us(), 1000);
        assert_eq!(h.sum_us(), (1..=100).map(|i| i * 10).sum::<u64>());
        // Nearest rank, not interpolation and not round((n-1)·q): 4 samples, p50 is the 2nd.
        let h = LatencyHistogram::from_ms([0.001, 0.002, 0.003, 0.004]);
        assert_eq!(h.percentile_us(0.5), 2);
        assert_eq!(h.percentile_us(0.51), 3);
    }

    #[test]
    fn large_values_within_resolution_and_capped_at_max() {
        let h = LatencyHistogram::from_ms((1..=100).map(|i| i as f64)); // 1..=100 ms
        for (q, want) in [(0.5, 50.0), (0.95, 95.0), (0.99, 99.0)] {
            let got = h.percentile_ms(q);
            assert!(got >= want && got <= want * 1.001, "p{q}: {got} vs {want}");
        }
        assert_eq!(h.percentile_ms(1.0), 100.0, "capped at the exact max");
        assert_eq!(h.max_ms(), 100.0);
        assert!((h.mean_ms() - 50.5).abs() < 1e-9);
    }

    #[test]
    fn empty_merge_and_buckets() {
        let mut a = LatencyHistogram::new();
        assert_eq!((a.count(), a.percentile_ms(0.99), a.mean_ms(), a.max_ms()), (0, 0.0, 0.0, 0.0));
        let b = LatencyHistogram::from_ms([0.001, 0.003, 0.004, 5.0]);
        a.record_us(2);
        a.merge(&b);
        assert_eq!(a.count(), 5);
        assert_eq!(a.percentile_us(0.4), 2);
        assert_eq!(a.max_us(), 5000);
        assert_eq!(a.pow2_buckets(24)[..4], [1, 1, 2, 0]);
        assert_eq!(a.pow2_buckets(24)[13], 1, "5000 µs: 4096 < v <= 8192");
        assert_eq!(a.count_le_us(4), 4);
        assert_eq!(a.count_le_us(u64::MAX), 5);
        a.reset();
        assert!(a.is_empty());
        let s = SharedLatency::new();
        s.record(Duration::from_micros(7));
        s.lock().record_us(9);
        assert_eq!(s.summary().count, 2);
        assert_eq!(s.pow2_buckets(8), (vec![0, 0, 0, 1, 1, 0, 0, 0], 16));
        assert_eq!(s.snapshot().max_us(), 9);
    }
}
