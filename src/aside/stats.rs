//! Front-door counters and the load-latency summary.

use crate::shim::{AtomicU64, Ordering};
use std::time::Duration;

/// Sub-buckets per power of two in the latency histogram (about 19% resolution).
const SUB: usize = 4;
const BUCKETS: usize = 64 * SUB;

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) loads: AtomicU64,
    pub(crate) load_errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) coalesced: AtomicU64,
    pub(crate) early_refreshes: AtomicU64,
    pub(crate) stale_served: AtomicU64,
    pub(crate) negative_hits: AtomicU64,
    pub(crate) discarded: AtomicU64,
    pub(crate) latency: Latency,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A lock-free log-linear histogram of load latencies in nanoseconds.
pub(crate) struct Latency {
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }
}

fn bucket(nanos: u64) -> usize {
    if nanos < SUB as u64 {
        return nanos as usize;
    }
    let log = 63 - nanos.leading_zeros() as usize; // >= 2
    let sub = ((nanos >> (log - 2)) & (SUB as u64 - 1)) as usize;
    (log * SUB + sub).min(BUCKETS - 1)
}

/// The upper bound of a bucket, in nanoseconds.
fn bucket_high(b: usize) -> u64 {
    if b < SUB {
        return b as u64;
    }
    let (log, sub) = (b / SUB, (b % SUB) as u128);
    let high = ((SUB as u128 + sub + 1) << (log - 2)) - 1;
    u64::try_from(high).unwrap_or(u64::MAX)
}

/// A load-latency histogram: how many loads took at most each bucket's upper bound (and more
/// than the previous bucket's). Buckets are log-linear, four per power of two of nanoseconds,
/// so a bound is within 25% of any latency it counts.
///
/// # Example
///
/// ```
/// use aside::sampler::StatsSource;
/// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
/// cache.get_with_blocking(1, || 1).unwrap();
/// let h = cache.load_latency().unwrap();
/// assert_eq!(h.buckets().map(|(_, n)| n).sum::<u64>(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
}

impl LatencyHistogram {
    /// The non-empty buckets, fastest first: `(upper bound, loads)`.
    ///
    /// # Example
    ///
    /// ```
    /// let h = aside::LatencyHistogram::default();
    /// assert_eq!(h.buckets().count(), 0);
    /// ```
    pub fn buckets(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(b, c)| (Duration::from_nanos(bucket_high(b)), *c))
    }

    /// Per bucket, the loads counted since `earlier` (a snapshot of the same cache), as
    /// `(upper bound, loads)`, non-empty buckets only.
    #[cfg(feature = "metrics")]
    pub(crate) fn since<'a>(
        &'a self,
        earlier: &'a LatencyHistogram,
    ) -> impl Iterator<Item = (Duration, u64)> + 'a {
        self.counts.iter().enumerate().filter_map(move |(b, &c)| {
            let before = earlier.counts.get(b).copied().unwrap_or(0);
            let d = c.saturating_sub(before);
            (d > 0).then(|| (Duration::from_nanos(bucket_high(b)), d))
        })
    }
}

impl Latency {
    pub(crate) fn histogram(&self) -> LatencyHistogram {
        LatencyHistogram {
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }

    pub(crate) fn record(&self, d: Duration) {
        let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket(n)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(n, Ordering::Relaxed);
        self.max.fetch_max(n, Ordering::Relaxed);
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count: u64 = counts.iter().sum();
        let max = self.max.load(Ordering::Relaxed);
        // A bucket's upper bound can exceed the largest sample seen: never report more.
        let quantile = |q: f64| {
            if count == 0 {
                return Duration::ZERO;
            }
            let rank = ((count as f64 * q).ceil() as u64).max(1);
            let mut seen = 0;
            for (b, &c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Duration::from_nanos(bucket_high(b).min(max));
                }
            }
            Duration::ZERO
        };
        LatencySummary {
            count,
            mean: Duration::from_nanos(
                self.sum
                    .load(Ordering::Relaxed)
                    .checked_div(count)
                    .unwrap_or(0),
            ),
            max: Duration::from_nanos(max),
            p50: quantile(0.5),
            p99: quantile(0.99),
        }
    }
}

/// Load latency: count, mean, max and quantiles (quantiles are bucket upper bounds, within
/// about 19%, capped at `max`).
///
/// # Example
///
/// ```
/// let s = aside::LatencySummary::default();
/// assert_eq!(s.count, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LatencySummary {
    /// Loads measured.
    pub count: u64,
    /// Mean load time.
    pub mean: Duration,
    /// Longest load.
    pub max: Duration,
    /// Median load time.
    pub p50: Duration,
    /// 99th percentile load time.
    pub p99: Duration,
}

/// A snapshot of the front door's counters. See [`AsideCache::load_stats`](crate::AsideCache::load_stats).
///
/// # Example
///
/// ```
/// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
/// let v = cache.get_with_blocking(1, || 10).unwrap();
/// assert_eq!(v, 10);
/// assert_eq!(cache.load_stats().loads, 1);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadStats {
    /// Loader runs (leaders, early refreshes and takeovers).
    pub loads: u64,
    /// Loads that returned an error.
    pub load_errors: u64,
    /// Loads that hit the hard timeout, and waiters whose lease expired.
    pub timeouts: u64,
    /// Loads whose loader panicked.
    pub panics: u64,
    /// Callers that waited for another caller's load instead of loading themselves.
    pub coalesced: u64,
    /// Early refreshes started (XFetch or the eager threshold).
    pub early_refreshes: u64,
    /// Stale values served by the fail-safe.
    pub stale_served: u64,
    /// Cached "not found" results served.
    pub negative_hits: u64,
    /// Loaded values not installed because the key was invalidated or written meanwhile.
    pub discarded: u64,
    /// Load latency.
    pub latency: LatencySummary,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> LoadStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LoadStats {
            loads: g(&self.loads),
            load_errors: g(&self.load_errors),
            timeouts: g(&self.timeouts),
            panics: g(&self.panics),
            coalesced: g(&self.coalesced),
            early_refreshes: g(&self.early_refreshes),
            stale_served: g(&self.stale_served),
            negative_hits: g(&self.negative_hits),
            discarded: g(&self.discarded),
            latency: self.latency.summary(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_bound_their_values() {
        let mut last = 0;
        for n in [
            0u64,
            1,
            3,
            4,
            5,
            7,
            8,
            100,
            1_000,
            65_535,
            1 << 40,
            u64::MAX,
        ] {
            let b = bucket(n);
            assert!(b >= last);
            assert!(
                bucket_high(b) >= n,
                "{n} in bucket {b} high {}",
                bucket_high(b)
            );
            last = b;
        }
    }

    #[test]
    fn summary_quantiles() {
        let l = Latency::default();
        for i in 1..=100u64 {
            l.record(Duration::from_micros(i));
        }
        let s = l.summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.max, Duration::from_micros(100));
        assert!(s.p50 >= Duration::from_micros(50) && s.p50 <= Duration::from_micros(60));
        assert!(s.p99 >= Duration::from_micros(99) && s.p99 <= s.max);

        // One sample: every quantile is that sample, not its bucket's upper bound.
        let one = Latency::default();
        one.record(Duration::from_nanos(1_000_001));
        let s = one.summary();
        assert_eq!((s.p50, s.p99), (s.max, s.max));
    }
}
