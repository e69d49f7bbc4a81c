//! Per-shard counters and the [`CacheStats`] snapshot.
//!
//! Hits and misses happen without a lock and are counted in the reading thread's own stripe of
//! its shard (`engine/concurrent/readers.rs`); everything else happens under the shard's lock
//! and is counted in plain integers. There is no global counter to contend on: a snapshot sums the
//! shards.

/// Counters a shard's writer side updates under its lock.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct WriteCounters {
    pub(crate) inserts: u64,
    pub(crate) updates: u64,
    pub(crate) evicted_capacity: u64,
    pub(crate) rejected: u64,
    pub(crate) expired: u64,
    pub(crate) sweep_expired: u64,
    pub(crate) removed_explicit: u64,
}

/// A point-in-time snapshot of a cache's counters, summed over its shards.
///
/// Counters only grow (until [`Cache::invalidate_all`](crate::Cache::invalidate_all), which
/// keeps them). Hits and misses count [`get`](crate::Cache::get)-style lookups; `peek` and
/// `contains_key` count nothing.
///
/// # Example
///
/// ```
/// use aside::Cache;
/// let cache: Cache<u32, u32> = Cache::new(10);
/// cache.insert(1, 1);
/// cache.get(&1);
/// cache.get(&2);
/// let stats = cache.stats();
/// assert_eq!((stats.hits, stats.misses, stats.inserts), (1, 1, 1));
/// assert_eq!(stats.hit_ratio(), 0.5);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing or an expired entry.
    pub misses: u64,
    /// New entries stored.
    pub inserts: u64,
    /// Values replaced for existing keys.
    pub updates: u64,
    /// Entries evicted to keep within capacity, including rejected newcomers.
    pub evicted_capacity: u64,
    /// Newcomers the policy's admission rejected (a subset of `evicted_capacity`).
    pub rejected: u64,
    /// Entries removed because they expired (on access, by the sweep, or found by a write).
    pub expired: u64,
    /// Expired entries the random-sample sweep reclaimed (a subset of `expired`).
    pub sweep_expired: u64,
    /// Entries removed by `remove`, `invalidate`, `invalidate_all` and `retain`.
    pub removed_explicit: u64,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or 0.0 before any lookup.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(aside::CacheStats::default().hit_ratio(), 0.0);
    /// ```
    #[must_use]
    pub fn hit_ratio(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }

    /// All evictions and removals: capacity, expiry and explicit.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(aside::CacheStats::default().removals(), 0);
    /// ```
    #[must_use]
    pub fn removals(&self) -> u64 {
        self.evicted_capacity + self.expired + self.removed_explicit
    }

    pub(crate) fn add_shard(&mut self, hits: u64, misses: u64, writes: &WriteCounters) {
        self.hits += hits;
        self.misses += misses;
        self.inserts += writes.inserts;
        self.updates += writes.updates;
        self.evicted_capacity += writes.evicted_capacity;
        self.rejected += writes.rejected;
        self.expired += writes.expired;
        self.sweep_expired += writes.sweep_expired;
        self.removed_explicit += writes.removed_explicit;
    }
}
