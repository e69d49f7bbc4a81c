//! Periodic sampling of named caches' counters ([`MetricsSampler`]) and their export through the
//! `metrics` facade.
//!
//! A [`Cache`] and an [`AsideCache`] count hits, misses, evictions and loads as they go
//! ([`CacheStats`], [`LoadStats`]). A sampler reads those counters for every cache it was given,
//! under the cache's name, and returns one [`CacheMetric`] per cache: the seeds' `CacheMetric`
//! row (`cache_name`, `hits`, `misses`, `evictions`, `sampled_at`), with the totals since the
//! cache was built, the change since the previous sample, the entry count and hit ratios. Store
//! the rows, print them, or, with the `metrics` feature, let the sampler report them through
//! the [`metrics`](https://docs.rs/metrics) facade, labelled `cache="<name>"`, to whichever
//! exporter the application installs (Prometheus, StatsD, ...):
//!
//! | metric | kind | value |
//! |---|---|---|
//! | `aside_cache_hits_total` | counter | [`CacheCounts::hits`] |
//! | `aside_cache_misses_total` | counter | [`CacheCounts::misses`] |
//! | `aside_cache_evictions_total` | counter | [`CacheCounts::evictions`] (capacity) |
//! | `aside_cache_rejections_total` | counter | [`CacheCounts::rejected`] |
//! | `aside_cache_expirations_total` | counter | [`CacheCounts::expirations`] |
//! | `aside_cache_invalidations_total` | counter | [`CacheCounts::invalidations`] |
//! | `aside_cache_inserts_total` | counter | [`CacheCounts::inserts`] |
//! | `aside_cache_updates_total` | counter | [`CacheCounts::updates`] |
//! | `aside_cache_loads_total` | counter | [`CacheCounts::loads`] (front door only, as the rest of this block) |
//! | `aside_cache_load_errors_total` | counter | [`CacheCounts::load_errors`] |
//! | `aside_cache_load_timeouts_total` | counter | [`CacheCounts::timeouts`] |
//! | `aside_cache_load_panics_total` | counter | [`CacheCounts::panics`] |
//! | `aside_cache_coalesced_total` | counter | [`CacheCounts::coalesced`] |
//! | `aside_cache_early_refreshes_total` | counter | [`CacheCounts::early_refreshes`] |
//! | `aside_cache_stale_served_total` | counter | [`CacheCounts::stale_served`] |
//! | `aside_cache_negative_hits_total` | counter | [`CacheCounts::negative_hits`] |
//! | `aside_cache_discarded_total` | counter | [`CacheCounts::discarded`] |
//! | `aside_cache_load_duration_seconds` | histogram | each load since the previous sample, at its latency bucket's upper bound (within 25%) |
//! | `aside_cache_entries` | gauge | [`CacheMetric::entries`] |
//! | `aside_cache_hit_ratio` | gauge | [`CacheMetric::hit_ratio`] (since the previous sample) |
//! | `aside_tier_*_total` | counter | with the `redis` feature, for a `TieredCache`: every counter of `TierMetrics` (`l2_hits`, `l2_misses`, `l2_errors`, `l2_timeouts`, `l2_skipped`, `codec_errors`, `breaker_opened`, `backplane_sent`, `backplane_received`, `backplane_undecodable`, `backplane_resubscribes`, `disconnected_l1_clears`, `lock_acquired`, `lock_waited`, `lock_fallback_loads`, `lock_lost`, `degraded_loads`, `l2_writes`, `writes_retried`, `writes_dropped`, `invalidation_overflows`) |
//! | `aside_tier_breaker_state` | gauge | 0 closed, 1 half-open, 2 open |
//! | `aside_tier_backplane_connected` | gauge | 1 while subscribed |
//! | `aside_tier_pending_invalidations` | gauge | invalidations waiting for Redis |
//!
//! Counters are set to the cache's totals ([`Counter::absolute`](https://docs.rs/metrics/latest/metrics/struct.Counter.html#method.absolute)),
//! so sampling twice, or from two samplers, never counts twice. Sampling reads a handful of
//! relaxed atomics per shard and takes no lock that a cache operation waits on for long (each
//! shard's lock, shared, to read its write counters).
//!
//! With the `async` feature, `MetricsSampler::spawn` samples on an interval in a tokio task.
//!
//! # Example
//!
//! ```
//! use aside::sampler::MetricsSampler;
//! use aside::Cache;
//! use std::time::{Duration, SystemTime};
//!
//! let users: Cache<u64, String> = Cache::new(100);
//! let mut sampler = MetricsSampler::new();
//! sampler.add("user", users.clone());
//!
//! users.insert(1, "Alice".into());
//! users.get(&1);
//! users.get(&2);
//! let first = sampler.sample(SystemTime::UNIX_EPOCH);
//! assert_eq!((first[0].totals.hits, first[0].totals.misses), (1, 1));
//!
//! users.get(&1);
//! let second = sampler.sample(SystemTime::UNIX_EPOCH + Duration::from_secs(10));
//! assert_eq!(second[0].name, "user");
//! assert_eq!((second[0].delta.hits, second[0].delta.misses), (1, 0));
//! assert_eq!(second[0].hit_ratio, 1.0); // over the last 10 s
//! assert_eq!(second[0].totals.hit_ratio(), 2.0 / 3.0); // since the start
//! ```

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::SystemTime;

use crate::policy::EvictionPolicy;
use crate::{AsideCache, Cache, CacheStats, LatencyHistogram, LoadStats};

/// Something whose counters a [`MetricsSampler`] can read: [`Cache`], [`AsideCache`] and (with
/// the `redis` feature) `TieredCache`, or a wrapper of your own.
///
/// # Example
///
/// ```
/// use aside::sampler::StatsSource;
/// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
/// cache.insert(1, 1);
/// assert_eq!(StatsSource::entries(&cache), 1);
/// assert!(cache.load_stats().is_none()); // no front door
/// ```
pub trait StatsSource {
    /// The engine's counters.
    fn cache_stats(&self) -> CacheStats;
    /// The front door's counters, if there is a front door.
    fn load_stats(&self) -> Option<LoadStats> {
        None
    }
    /// The number of entries (a cheap count).
    fn entries(&self) -> u64;
    /// The front door's load-latency histogram, if there is a front door (exported as a
    /// histogram with the `metrics` feature).
    fn load_latency(&self) -> Option<LatencyHistogram> {
        None
    }
    /// The Redis tier's counters, if this is a tiered cache.
    #[cfg(feature = "redis")]
    fn tier_metrics(&self) -> Option<crate::tier::TierMetrics> {
        None
    }
}

impl<T: StatsSource + ?Sized> StatsSource for Arc<T> {
    fn cache_stats(&self) -> CacheStats {
        (**self).cache_stats()
    }

    fn load_stats(&self) -> Option<LoadStats> {
        (**self).load_stats()
    }

    fn entries(&self) -> u64 {
        (**self).entries()
    }

    fn load_latency(&self) -> Option<LatencyHistogram> {
        (**self).load_latency()
    }

    #[cfg(feature = "redis")]
    fn tier_metrics(&self) -> Option<crate::tier::TierMetrics> {
        (**self).tier_metrics()
    }
}

impl<K, V, P: EvictionPolicy, S> StatsSource for Cache<K, V, P, S> {
    fn cache_stats(&self) -> CacheStats {
        self.stats()
    }

    fn entries(&self) -> u64 {
        self.len() as u64
    }
}

impl<K, V, P> StatsSource for AsideCache<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    fn cache_stats(&self) -> CacheStats {
        AsideCache::cache_stats(self)
    }

    fn load_stats(&self) -> Option<LoadStats> {
        Some(AsideCache::load_stats(self))
    }

    fn entries(&self) -> u64 {
        self.len() as u64
    }

    fn load_latency(&self) -> Option<LatencyHistogram> {
        Some(self.load_latency_histogram())
    }
}

/// A tiered cache: its L1's counters, plus the tier's own.
#[cfg(feature = "redis")]
impl<K, V, P> StatsSource for crate::tier::TieredCache<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    fn cache_stats(&self) -> CacheStats {
        self.l1().cache_stats()
    }

    fn load_stats(&self) -> Option<LoadStats> {
        Some(self.l1().load_stats())
    }

    fn entries(&self) -> u64 {
        self.l1().len() as u64
    }

    fn load_latency(&self) -> Option<LatencyHistogram> {
        Some(self.l1().load_latency_histogram())
    }

    fn tier_metrics(&self) -> Option<crate::tier::TierMetrics> {
        Some(self.metrics())
    }
}

/// Counts of one cache: totals since it was built, or the change between two samples.
///
/// # Example
///
/// ```
/// let c = aside::sampler::CacheCounts::default();
/// assert_eq!(c.hit_ratio(), 0.0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheCounts {
    /// Lookups that found a live entry ([`CacheStats::hits`]).
    pub hits: u64,
    /// Lookups that found nothing ([`CacheStats::misses`]).
    pub misses: u64,
    /// Entries evicted for capacity, including rejected newcomers
    /// ([`CacheStats::evicted_capacity`]).
    pub evictions: u64,
    /// Entries removed because they expired ([`CacheStats::expired`]).
    pub expirations: u64,
    /// Entries removed by invalidation or removal ([`CacheStats::removed_explicit`]).
    pub invalidations: u64,
    /// New entries stored ([`CacheStats::inserts`]).
    pub inserts: u64,
    /// Loader runs ([`LoadStats::loads`]; 0 without a front door).
    pub loads: u64,
    /// Loads that failed ([`LoadStats::load_errors`]; 0 without a front door).
    pub load_errors: u64,
    /// Writes that replaced a live entry ([`CacheStats::updates`]).
    pub updates: u64,
    /// Newcomers the policy refused ([`CacheStats::rejected`]; also in `evictions`).
    pub rejected: u64,
    /// Loads past the hard timeout and waiters whose lease expired ([`LoadStats::timeouts`]).
    pub timeouts: u64,
    /// Loads whose loader panicked ([`LoadStats::panics`]).
    pub panics: u64,
    /// Callers that waited on another caller's load ([`LoadStats::coalesced`]).
    pub coalesced: u64,
    /// Early refreshes started ([`LoadStats::early_refreshes`]).
    pub early_refreshes: u64,
    /// Stale values served by fail-safe ([`LoadStats::stale_served`]).
    pub stale_served: u64,
    /// Cached "not found" results served ([`LoadStats::negative_hits`]).
    pub negative_hits: u64,
    /// Loaded values not installed because of an invalidation ([`LoadStats::discarded`]).
    pub discarded: u64,
}

impl CacheCounts {
    fn read(source: &dyn StatsSource) -> Self {
        let s = source.cache_stats();
        let l = source.load_stats().unwrap_or_default();
        Self {
            hits: s.hits,
            misses: s.misses,
            evictions: s.evicted_capacity,
            expirations: s.expired,
            invalidations: s.removed_explicit,
            inserts: s.inserts,
            loads: l.loads,
            load_errors: l.load_errors,
            updates: s.updates,
            rejected: s.rejected,
            timeouts: l.timeouts,
            panics: l.panics,
            coalesced: l.coalesced,
            early_refreshes: l.early_refreshes,
            stale_served: l.stale_served,
            negative_hits: l.negative_hits,
            discarded: l.discarded,
        }
    }

    /// `self - earlier`, field by field (0 where a counter did not grow).
    fn since(self, earlier: Self) -> Self {
        Self {
            hits: self.hits.saturating_sub(earlier.hits),
            misses: self.misses.saturating_sub(earlier.misses),
            evictions: self.evictions.saturating_sub(earlier.evictions),
            expirations: self.expirations.saturating_sub(earlier.expirations),
            invalidations: self.invalidations.saturating_sub(earlier.invalidations),
            inserts: self.inserts.saturating_sub(earlier.inserts),
            loads: self.loads.saturating_sub(earlier.loads),
            load_errors: self.load_errors.saturating_sub(earlier.load_errors),
            updates: self.updates.saturating_sub(earlier.updates),
            rejected: self.rejected.saturating_sub(earlier.rejected),
            timeouts: self.timeouts.saturating_sub(earlier.timeouts),
            panics: self.panics.saturating_sub(earlier.panics),
            coalesced: self.coalesced.saturating_sub(earlier.coalesced),
            early_refreshes: self.early_refreshes.saturating_sub(earlier.early_refreshes),
            stale_served: self.stale_served.saturating_sub(earlier.stale_served),
            negative_hits: self.negative_hits.saturating_sub(earlier.negative_hits),
            discarded: self.discarded.saturating_sub(earlier.discarded),
        }
    }

    /// `hits / (hits + misses)`, or 0.0 without lookups.
    ///
    /// # Example
    ///
    /// ```
    /// let mut c = aside::sampler::CacheCounts::default();
    /// c.hits = 3;
    /// c.misses = 1;
    /// assert_eq!(c.hit_ratio(), 0.75);
    /// ```
    #[must_use]
    pub fn hit_ratio(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }
}

/// One cache's counters at one time: the seeds' `CacheMetric` row.
///
/// # Example
///
/// ```
/// use aside::sampler::MetricsSampler;
/// use std::time::SystemTime;
/// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
/// let mut sampler = MetricsSampler::new();
/// sampler.add("c", cache.clone());
/// cache.get(&1);
/// let m = &sampler.sample(SystemTime::UNIX_EPOCH)[0];
/// assert_eq!((m.name.as_str(), m.at, m.totals.misses, m.entries), ("c", SystemTime::UNIX_EPOCH, 1, 0));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CacheMetric {
    /// The cache's name.
    pub name: String,
    /// When the sample was taken.
    pub at: SystemTime,
    /// Totals since the cache was built.
    pub totals: CacheCounts,
    /// The change since this sampler's previous sample (the totals at the first sample).
    pub delta: CacheCounts,
    /// Entries held.
    pub entries: u64,
    /// The hit ratio since the previous sample (`delta.hit_ratio()`); see
    /// [`totals.hit_ratio()`](CacheCounts::hit_ratio) for the lifetime ratio.
    pub hit_ratio: f64,
}

impl fmt::Display for CacheMetric {
    /// One line: `user: 120 hits, 30 misses (80.0%), 5 evictions, 2 expirations, 1 invalidations, 40 loads, 0 load errors, 95 entries`
    /// (the change since the previous sample).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.delta;
        write!(
            f,
            "{}: {} hits, {} misses ({:.1}%), {} evictions, {} expirations, {} invalidations, \
             {} loads, {} load errors, {} entries",
            self.name,
            d.hits,
            d.misses,
            100.0 * self.hit_ratio,
            d.evictions,
            d.expirations,
            d.invalidations,
            d.loads,
            d.load_errors,
            self.entries
        )
    }
}

struct Source {
    name: String,
    source: Arc<dyn StatsSource + Send + Sync>,
    last: CacheCounts,
    /// The latency histogram at the previous sample (its growth is exported).
    #[cfg(feature = "metrics")]
    last_latency: LatencyHistogram,
}

/// Samples the counters of named caches; see the [module docs](self).
///
/// # Example
///
/// ```
/// use aside::sampler::MetricsSampler;
/// use aside::{AsideCache, Cache};
/// use std::time::SystemTime;
///
/// let users: AsideCache<u64, String> = AsideCache::builder().max_capacity(100).build()?;
/// let products: Cache<u64, String> = Cache::new(100);
/// let mut sampler = MetricsSampler::new();
/// sampler.add("user", users.clone()).add("product", products.clone());
///
/// users.get_with_blocking(1, || "Alice".to_string()).unwrap();
/// let rows = sampler.sample(SystemTime::now());
/// assert_eq!(rows.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["user", "product"]);
/// assert_eq!(rows[0].delta.loads, 1);
/// # Ok::<(), aside::ConfigError>(())
/// ```
#[derive(Default)]
pub struct MetricsSampler {
    sources: Vec<Source>,
    #[cfg(feature = "metrics")]
    described: bool,
}

impl fmt::Debug for MetricsSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsSampler")
            .field(
                "caches",
                &self.sources.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl MetricsSampler {
    /// A sampler of no caches yet.
    ///
    /// # Example
    ///
    /// ```
    /// let sampler = aside::sampler::MetricsSampler::new();
    /// assert_eq!(sampler.names().count(), 0);
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a cache under `name` (pass a clone: caches are cheap to clone and share their
    /// counters). Samples list the caches in the order they were added. Adding a name twice
    /// replaces the earlier cache.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// let mut sampler = aside::sampler::MetricsSampler::new();
    /// sampler.add("a", cache.clone()).add("a", cache);
    /// assert_eq!(sampler.names().collect::<Vec<_>>(), ["a"]);
    /// ```
    pub fn add(
        &mut self,
        name: impl Into<String>,
        cache: impl StatsSource + Send + Sync + 'static,
    ) -> &mut Self {
        let name = name.into();
        let source = Source {
            name,
            source: Arc::new(cache),
            last: CacheCounts::default(),
            #[cfg(feature = "metrics")]
            last_latency: LatencyHistogram::default(),
        };
        match self.sources.iter_mut().find(|s| s.name == source.name) {
            Some(existing) => *existing = source,
            None => self.sources.push(source),
        }
        self
    }

    /// The names of the caches sampled, in the order they were added.
    ///
    /// # Example
    ///
    /// ```
    /// let mut sampler = aside::sampler::MetricsSampler::new();
    /// sampler.add("user", aside::Cache::<u32, u32>::new(10));
    /// assert_eq!(sampler.names().collect::<Vec<_>>(), ["user"]);
    /// ```
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.sources.iter().map(|s| s.name.as_str())
    }

    /// Reads every cache's counters, stamped `at`: one [`CacheMetric`] per cache, with the
    /// change since this sampler's previous call. With the `metrics` feature, also reports
    /// them to the installed `metrics` recorder (the [module docs](self) list the names).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::SystemTime;
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// let mut sampler = aside::sampler::MetricsSampler::new();
    /// sampler.add("c", cache.clone());
    /// cache.insert(1, 1);
    /// assert_eq!(sampler.sample(SystemTime::now())[0].delta.inserts, 1);
    /// assert_eq!(sampler.sample(SystemTime::now())[0].delta.inserts, 0);
    /// ```
    pub fn sample(&mut self, at: SystemTime) -> Vec<CacheMetric> {
        // Read every source before updating any baseline: if a `StatsSource` of the
        // caller's panics, the sampler is unchanged and the next sample's deltas are whole.
        let metrics: Vec<CacheMetric> = self
            .sources
            .iter()
            .map(|s| {
                let totals = CacheCounts::read(&*s.source);
                let delta = totals.since(s.last);
                CacheMetric {
                    name: s.name.clone(),
                    at,
                    totals,
                    delta,
                    entries: s.source.entries(),
                    hit_ratio: delta.hit_ratio(),
                }
            })
            .collect();
        #[cfg(feature = "metrics")]
        let extras: Vec<_> = self
            .sources
            .iter()
            .map(|s| {
                (
                    s.source.load_latency(),
                    #[cfg(feature = "redis")]
                    s.source.tier_metrics(),
                )
            })
            .collect();
        for (s, m) in self.sources.iter_mut().zip(&metrics) {
            s.last = m.totals;
        }
        #[cfg(feature = "metrics")]
        {
            if !self.described {
                export::describe();
                self.described = true;
            }
            for ((m, s), extra) in metrics.iter().zip(&mut self.sources).zip(extras) {
                export::record(m);
                if let Some(latency) = extra.0 {
                    export::latency(&m.name, latency.since(&s.last_latency));
                    s.last_latency = latency;
                }
                #[cfg(feature = "redis")]
                if let Some(tier) = extra.1 {
                    export::tier(&m.name, &tier);
                }
            }
        }
        metrics
    }

    /// Samples every `every` in a tokio task, first at once, and hands each sample to
    /// `on_sample` (store it, log it; with the `metrics` feature the sample is also exported).
    /// Stamps come from [`SystemTime::now`]; the interval runs on tokio's clock, so tests
    /// with paused time step it deterministically. A slow `on_sample` delays later ticks
    /// rather than bunching them. Stop it with [`JoinHandle::abort`](tokio::task::JoinHandle::abort).
    ///
    /// # Panics
    ///
    /// If `every` is zero, or when called outside a tokio runtime. A panicking `on_sample`
    /// ends the task (the `JoinHandle` reports the panic); the caches are not affected.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use aside::sampler::MetricsSampler;
    /// use std::time::Duration;
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// let mut sampler = MetricsSampler::new();
    /// sampler.add("c", cache.clone());
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// let task = sampler.spawn(Duration::from_secs(10), move |rows| {
    ///     let _ = tx.send(rows.to_vec());
    /// });
    /// let first = rx.recv().await.unwrap();
    /// assert_eq!(first[0].name, "c");
    /// task.abort();
    /// # }
    /// ```
    #[cfg(feature = "async")]
    pub fn spawn(
        mut self,
        every: std::time::Duration,
        mut on_sample: impl FnMut(&[CacheMetric]) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        assert!(
            !every.is_zero(),
            "MetricsSampler::spawn: `every` must be > 0"
        );
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let sample = self.sample(SystemTime::now());
                on_sample(&sample);
            }
        })
    }
}

#[cfg(feature = "metrics")]
mod export {
    use super::{CacheCounts, CacheMetric};
    use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

    type Field = fn(&CacheCounts) -> u64;

    /// Counter names and descriptions, with the field each reports.
    const COUNTERS: [(&str, &str, Field); 17] = [
        (
            "aside_cache_hits_total",
            "Lookups that found a live entry",
            |c| c.hits,
        ),
        (
            "aside_cache_misses_total",
            "Lookups that found nothing",
            |c| c.misses,
        ),
        (
            "aside_cache_evictions_total",
            "Entries evicted for capacity (including rejected newcomers)",
            |c| c.evictions,
        ),
        (
            "aside_cache_rejections_total",
            "Newcomers the eviction policy refused (also counted as evictions)",
            |c| c.rejected,
        ),
        (
            "aside_cache_expirations_total",
            "Entries removed because they expired",
            |c| c.expirations,
        ),
        (
            "aside_cache_invalidations_total",
            "Entries removed by invalidation or removal",
            |c| c.invalidations,
        ),
        ("aside_cache_inserts_total", "New entries stored", |c| {
            c.inserts
        }),
        (
            "aside_cache_updates_total",
            "Writes that replaced a live entry",
            |c| c.updates,
        ),
        ("aside_cache_loads_total", "Loader runs (front door)", |c| {
            c.loads
        }),
        (
            "aside_cache_load_errors_total",
            "Loads that failed (front door)",
            |c| c.load_errors,
        ),
        (
            "aside_cache_load_timeouts_total",
            "Loads past the hard timeout and waiters whose lease expired (front door)",
            |c| c.timeouts,
        ),
        (
            "aside_cache_load_panics_total",
            "Loads whose loader panicked (front door)",
            |c| c.panics,
        ),
        (
            "aside_cache_coalesced_total",
            "Callers that waited on another caller's load instead of loading (front door)",
            |c| c.coalesced,
        ),
        (
            "aside_cache_early_refreshes_total",
            "Early refreshes started, XFetch or threshold (front door)",
            |c| c.early_refreshes,
        ),
        (
            "aside_cache_stale_served_total",
            "Stale values served by fail-safe (front door)",
            |c| c.stale_served,
        ),
        (
            "aside_cache_negative_hits_total",
            "Cached \"not found\" results served (front door)",
            |c| c.negative_hits,
        ),
        (
            "aside_cache_discarded_total",
            "Loaded values not installed because an invalidation landed meanwhile (front door)",
            |c| c.discarded,
        ),
    ];

    /// The load-latency histogram's name.
    pub(super) const LATENCY: &str = "aside_cache_load_duration_seconds";

    pub(super) fn describe() {
        for (name, help, _) in COUNTERS {
            describe_counter!(name, Unit::Count, help);
        }
        describe_gauge!("aside_cache_entries", Unit::Count, "Entries held");
        describe_gauge!(
            "aside_cache_hit_ratio",
            "Hit ratio since the previous sample (0 to 1)"
        );
        describe_histogram!(
            LATENCY,
            Unit::Seconds,
            "Load latency (front door), each load at its bucket's upper bound (within 25%)"
        );
        #[cfg(feature = "redis")]
        tier_describe();
    }

    pub(super) fn record(m: &CacheMetric) {
        for (name, _, field) in COUNTERS {
            counter!(name, "cache" => m.name.clone()).absolute(field(&m.totals));
        }
        #[allow(clippy::cast_precision_loss)] // a gauge is an f64
        gauge!("aside_cache_entries", "cache" => m.name.clone()).set(m.entries as f64);
        gauge!("aside_cache_hit_ratio", "cache" => m.name.clone()).set(m.hit_ratio);
    }

    /// Records the loads since the previous sample, each at its bucket's upper bound.
    pub(super) fn latency(name: &str, grown: impl Iterator<Item = (std::time::Duration, u64)>) {
        let h = metrics::histogram!(LATENCY, "cache" => name.to_string());
        for (bound, n) in grown {
            h.record_many(
                bound.as_secs_f64(),
                usize::try_from(n).unwrap_or(usize::MAX),
            );
        }
    }

    #[cfg(feature = "redis")]
    type TierField = fn(&crate::tier::TierMetrics) -> u64;

    /// The tier's counters (`aside_tier_*_total`).
    #[cfg(feature = "redis")]
    const TIER_COUNTERS: [(&str, &str, TierField); 21] = [
        ("aside_tier_l2_hits_total", "Reads answered by Redis", |t| {
            t.l2_hits
        }),
        (
            "aside_tier_l2_misses_total",
            "Reads Redis did not have",
            |t| t.l2_misses,
        ),
        (
            "aside_tier_l2_errors_total",
            "Redis operations that failed",
            |t| t.l2_errors,
        ),
        (
            "aside_tier_l2_timeouts_total",
            "Redis operations past the op timeout",
            |t| t.l2_timeouts,
        ),
        (
            "aside_tier_l2_skipped_total",
            "Redis operations skipped while the breaker was open",
            |t| t.l2_skipped,
        ),
        (
            "aside_tier_codec_errors_total",
            "Values Redis returned that did not decode",
            |t| t.codec_errors,
        ),
        (
            "aside_tier_breaker_opened_total",
            "Times the circuit breaker opened",
            |t| t.breaker_opened,
        ),
        (
            "aside_tier_backplane_sent_total",
            "Invalidation messages published",
            |t| t.backplane_sent,
        ),
        (
            "aside_tier_backplane_received_total",
            "Invalidation messages from other instances applied",
            |t| t.backplane_received,
        ),
        (
            "aside_tier_backplane_undecodable_total",
            "Backplane messages that did not decode",
            |t| t.backplane_undecodable,
        ),
        (
            "aside_tier_backplane_resubscribes_total",
            "Backplane resubscriptions (each clears the L1)",
            |t| t.backplane_resubscribes,
        ),
        (
            "aside_tier_disconnected_l1_clears_total",
            "L1 clears while unsubscribed (disconnected_l1_ttl)",
            |t| t.disconnected_l1_clears,
        ),
        (
            "aside_tier_lock_acquired_total",
            "Stampede locks acquired",
            |t| t.lock_acquired,
        ),
        (
            "aside_tier_lock_waited_total",
            "Loads that waited on another instance's lock",
            |t| t.lock_waited,
        ),
        (
            "aside_tier_lock_fallback_loads_total",
            "Loads run without the lock after waiting too long",
            |t| t.lock_fallback_loads,
        ),
        (
            "aside_tier_lock_lost_total",
            "Loads whose lock expired before they installed",
            |t| t.lock_lost,
        ),
        (
            "aside_tier_degraded_loads_total",
            "Loads that skipped Redis (breaker open, pending invalidation)",
            |t| t.degraded_loads,
        ),
        (
            "aside_tier_l2_writes_total",
            "Values written to Redis",
            |t| t.l2_writes,
        ),
        (
            "aside_tier_writes_retried_total",
            "Failed invalidations replayed once Redis answered",
            |t| t.writes_retried,
        ),
        ("aside_tier_writes_dropped_total", "Writes given up", |t| {
            t.writes_dropped
        }),
        (
            "aside_tier_invalidation_overflows_total",
            "Times the pending-invalidation budget overflowed into a prefix-wide clear",
            |t| t.invalidation_overflows,
        ),
    ];

    #[cfg(feature = "redis")]
    fn tier_describe() {
        for (name, help, _) in TIER_COUNTERS {
            describe_counter!(name, Unit::Count, help);
        }
        describe_gauge!(
            "aside_tier_breaker_state",
            "The circuit breaker: 0 closed, 1 half-open, 2 open"
        );
        describe_gauge!(
            "aside_tier_backplane_connected",
            "1 while the invalidation backplane is subscribed"
        );
        describe_gauge!(
            "aside_tier_pending_invalidations",
            Unit::Count,
            "Invalidations waiting for Redis to answer"
        );
    }

    #[cfg(feature = "redis")]
    pub(super) fn tier(name: &str, t: &crate::tier::TierMetrics) {
        use crate::tier::BreakerState;
        for (metric, _, field) in TIER_COUNTERS {
            counter!(metric, "cache" => name.to_string()).absolute(field(t));
        }
        let breaker = match t.breaker {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        };
        gauge!("aside_tier_breaker_state", "cache" => name.to_string()).set(breaker);
        let connected = if t.backplane_connected { 1.0 } else { 0.0 };
        gauge!("aside_tier_backplane_connected", "cache" => name.to_string()).set(connected);
        #[allow(clippy::cast_precision_loss)] // a gauge is an f64
        gauge!("aside_tier_pending_invalidations", "cache" => name.to_string())
            .set(t.pending_invalidations as f64);
    }
}
