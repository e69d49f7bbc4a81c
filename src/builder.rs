//! [`CacheBuilder`] and [`ConfigError`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use ahash::RandomState;
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use crate::cache::Cache;
use crate::engine::expiry::{Clock, Expiration, SystemClock, duration_nanos};
use crate::notify::{Listener, RemovalCause};
use crate::policy::{EvictionPolicy, WTinyLfu};

/// The largest shard count a cache accepts.
pub const MAX_SHARDS: usize = 1 << 16;
/// With the default shard count, shards are halved until each holds at least this much
/// capacity, so that small caches are not split into slivers that evict early.
///
/// 1024: on the replayed traces (`docs/benchmarks.md`), 64 left caches of a few hundred
/// entries in 8 shards of 16 to 128, where per-shard eviction strays from the whole-cache
/// policy (LRU at 1024 entries on the `loop` trace lost 41 points; W-TinyLFU's 1% window
/// shrank to one entry). A cache this small gains little from more shards.
pub const MIN_SHARD_CAPACITY: u64 = 1024;

/// The weigher: the weight of an entry, in the units of the capacity (e.g. bytes).
pub(crate) type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;

/// An invalid cache configuration: names the field and says what is wrong with it.
///
/// # Example
///
/// ```
/// let err = aside::Cache::<u32, u32>::builder().shards(3).build().unwrap_err();
/// assert_eq!(err.field(), "shards");
/// assert_eq!(err.to_string(), "invalid cache configuration: `shards` must be a power of two between 1 and 65536, got 3");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// The name of the offending field, as spelled by the builder method that sets it.
    ///
    /// # Example
    ///
    /// ```
    /// let err = aside::policy::SampledTtl::with_samples(0).unwrap_err();
    /// assert_eq!(err.field(), "samples");
    /// ```
    #[must_use]
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong with it.
    ///
    /// # Example
    ///
    /// ```
    /// let err = aside::policy::SampledTtl::with_samples(0).unwrap_err();
    /// assert!(err.reason().contains("between 1 and 1024"));
    /// ```
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid cache configuration: `{}` {}",
            self.field, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

/// Builds a [`Cache`]. Every setting has a default; [`build`](Self::build) checks them all.
///
/// | setting | default |
/// |---|---|
/// | [`max_capacity`](Self::max_capacity) | unbounded (`u64::MAX`) |
/// | [`policy`](Self::policy) | [`WTinyLfu`](crate::policy::WTinyLfu) |
/// | [`shards`](Self::shards) | 4 × available parallelism, a power of two, halved until each shard holds ≥ [`MIN_SHARD_CAPACITY`]; without a weigher, doubled while a shard would hold more than its entry limit (about 16.7 million) |
/// | [`time_to_live`](Self::time_to_live) / [`time_to_idle`](Self::time_to_idle) | none |
/// | [`ttl_jitter`](Self::ttl_jitter) | none |
/// | [`weigher`](Self::weigher) | none: every entry weighs 1 |
/// | [`seed`](Self::seed) | random (hash keys and sampling cannot be predicted) |
/// | [`clock`](Self::clock) | [`SystemClock`] |
///
/// # Example
///
/// ```
/// use aside::{Cache, policy::Lfu};
/// use std::time::Duration;
///
/// let cache: Cache<String, Vec<u8>, Lfu> = Cache::builder()
///     .max_capacity(64 * 1024 * 1024) // bytes, because of the weigher
///     .weigher(|k: &String, v: &Vec<u8>| (k.len() + v.len()) as u32)
///     .policy(Lfu::new())
///     .time_to_live(Duration::from_secs(300))
///     .ttl_jitter(Duration::from_secs(30))
///     .build()?;
/// cache.insert("user:42".to_string(), b"{...}".to_vec());
/// assert_eq!(cache.weighted_size(), 12);
/// # Ok::<(), aside::ConfigError>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct CacheBuilder<K, V, P = WTinyLfu, S = RandomState> {
    max_capacity: u64,
    shards: Option<usize>,
    policy: P,
    hasher: S,
    seed: Option<u64>,
    ttl: Option<Duration>,
    tti: Option<Duration>,
    jitter: Option<Duration>,
    clock: Option<Arc<dyn Clock>>,
    weigher: Option<Weigher<K, V>>,
    listener: Option<Listener<K, V>>,
    _marker: PhantomData<fn(K, V)>,
}

/// The settings, with the policy by type name and the user's hooks by presence.
impl<K, V, P, S> fmt::Debug for CacheBuilder<K, V, P, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("shards", &self.shards)
            .field("policy", &std::any::type_name::<P>())
            .field("seed", &self.seed)
            .field("time_to_live", &self.ttl)
            .field("time_to_idle", &self.tti)
            .field("ttl_jitter", &self.jitter)
            .field("clock", &self.clock.is_some())
            .field("weigher", &self.weigher.is_some())
            .field("eviction_listener", &self.listener.is_some())
            .finish_non_exhaustive()
    }
}

impl<K, V> CacheBuilder<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            max_capacity: u64::MAX,
            shards: None,
            policy: WTinyLfu::new(),
            hasher: RandomState::new(),
            seed: None,
            ttl: None,
            tti: None,
            jitter: None,
            clock: None,
            weigher: None,
            listener: None,
            _marker: PhantomData,
        }
    }
}

impl<K, V, P> CacheBuilder<K, V, P, RandomState> {
    /// A fixed seed for the key hasher and every shard's random sampling, for reproducible
    /// tests and benchmarks. Without it the seed is random, so that nobody can craft keys that
    /// collide in the table or land in one shard.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> =
    ///     aside::Cache::builder().max_capacity(10).seed(7).build().unwrap();
    /// # let _ = cache;
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.hasher = RandomState::with_seeds(
            seed,
            seed ^ 0x243F_6A88_85A3_08D3,
            seed ^ 0x1319_8A2E_0370_7344,
            seed ^ 0xA409_3822_299F_31D0,
        );
        self.seed = Some(seed);
        self
    }
}

impl<K, V, P, S> CacheBuilder<K, V, P, S> {
    /// The capacity: the number of entries, or the total weight when a
    /// [`weigher`](Self::weigher) is set. Zero is allowed: nothing is stored, except entries a
    /// weigher gives weight 0, which (as in Caffeine) take no capacity and are never evicted
    /// for size.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::builder().max_capacity(1).build().unwrap();
    /// cache.insert(1, 1);
    /// cache.insert(2, 2);
    /// assert_eq!(cache.len(), 1);
    /// ```
    pub fn max_capacity(mut self, capacity: u64) -> Self {
        self.max_capacity = capacity;
        self
    }

    /// The number of shards: a power of two from 1 to [`MAX_SHARDS`]. Capacity is split
    /// evenly; an explicit count is kept even when some shards then get no capacity.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::builder().shards(4).build().unwrap();
    /// assert_eq!(cache.shard_count(), 4);
    /// ```
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// The eviction policy; each shard gets a clone.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::{Cache, policy::Fifo};
    /// let cache: Cache<u32, u32, Fifo> = Cache::builder().policy(Fifo::new()).build().unwrap();
    /// # let _ = cache;
    /// ```
    pub fn policy<P2: EvictionPolicy>(self, policy: P2) -> CacheBuilder<K, V, P2, S> {
        CacheBuilder {
            max_capacity: self.max_capacity,
            shards: self.shards,
            policy,
            hasher: self.hasher,
            seed: self.seed,
            ttl: self.ttl,
            tti: self.tti,
            jitter: self.jitter,
            clock: self.clock,
            weigher: self.weigher,
            listener: self.listener,
            _marker: PhantomData,
        }
    }

    /// A custom key hasher instead of the randomly seeded `ahash`.
    ///
    /// # Example
    ///
    /// ```
    /// use std::collections::hash_map::RandomState;
    /// let cache: aside::Cache<u32, u32, aside::policy::WTinyLfu, RandomState> =
    ///     aside::Cache::builder().hasher(RandomState::new()).build().unwrap();
    /// # let _ = cache;
    /// ```
    pub fn hasher<S2>(self, hasher: S2) -> CacheBuilder<K, V, P, S2> {
        CacheBuilder {
            max_capacity: self.max_capacity,
            shards: self.shards,
            policy: self.policy,
            hasher,
            seed: self.seed,
            ttl: self.ttl,
            tti: self.tti,
            jitter: self.jitter,
            clock: self.clock,
            weigher: self.weigher,
            listener: self.listener,
            _marker: PhantomData,
        }
    }

    /// A fixed time-to-live for every entry inserted without its own TTL.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let cache: aside::Cache<u32, u32> =
    ///     aside::Cache::builder().time_to_live(Duration::from_secs(300)).build().unwrap();
    /// # let _ = cache;
    /// ```
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// A sliding time-to-idle for every entry inserted without its own TTL: each hit (not
    /// `peek`) pushes the deadline back to `now + tti`, as for sessions. Entries inserted
    /// with [`Cache::insert_with_ttl`] keep their fixed deadline. Cannot be combined with
    /// [`time_to_live`](Self::time_to_live).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let cache: aside::Cache<u32, u32> =
    ///     aside::Cache::builder().time_to_idle(Duration::from_secs(1800)).build().unwrap();
    /// # let _ = cache;
    /// ```
    pub fn time_to_idle(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }

    /// Adds `random(0..jitter)` to every TTL (default, sliding and per-entry) when an entry is
    /// written, so that entries written together do not expire together. (A sliding deadline
    /// pushed back by a hit gets no new jitter.)
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let cache: aside::Cache<u32, u32> = aside::Cache::builder()
    ///     .time_to_live(Duration::from_secs(300))
    ///     .ttl_jitter(Duration::from_secs(60))
    ///     .build()
    ///     .unwrap();
    /// # let _ = cache;
    /// ```
    pub fn ttl_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = Some(jitter);
        self
    }

    /// The clock expiry is measured on; tests pass a [`MockClock`](crate::MockClock).
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> =
    ///     aside::Cache::builder().clock(aside::MockClock::new()).build().unwrap();
    /// # let _ = cache;
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Weighs entries: [`max_capacity`](Self::max_capacity) then bounds the total weight.
    /// Weights above `u32::MAX - 1` are clamped. Each shard holds at most `max_capacity /
    /// shards` of the weight, so an entry heavier than its shard's share is not stored; set
    /// [`shards(1)`](Self::shards) to admit entries up to the whole capacity. The weigher runs outside every lock; if it panics, the insert is
    /// abandoned and the cache is unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, String> = aside::Cache::builder()
    ///     .max_capacity(10)
    ///     .shards(1)
    ///     .weigher(|_k: &u32, v: &String| v.len() as u32)
    ///     .build()
    ///     .unwrap();
    /// cache.insert(1, "12345".into());
    /// cache.insert(2, "123456".into()); // 11 > 10: one of the two is evicted
    /// assert_eq!(cache.len(), 1);
    /// ```
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// [`weigher`](Self::weigher) with the weigher already shared (the front door's wrapper).
    pub(crate) fn shared_weigher(mut self, weigher: Weigher<K, V>) -> Self {
        self.weigher = Some(weigher);
        self
    }

    /// The eviction listener, already shared (the front door wraps the user's).
    pub(crate) fn shared_listener(mut self, listener: Listener<K, V>) -> Self {
        self.listener = Some(listener);
        self
    }

    /// The fixed TTL, the sliding TTL and the jitter as set (the front door checks them with
    /// its own settings and keeps the fixed TTL and jitter for itself).
    pub(crate) fn expiry(&self) -> (Option<Duration>, Option<Duration>, Option<Duration>) {
        (self.ttl, self.tti, self.jitter)
    }

    /// The shard count as set.
    pub(crate) fn shard_setting(&self) -> Option<usize> {
        self.shards
    }

    /// Drops the fixed TTL and the jitter: the front door writes every slot with its own TTL.
    pub(crate) fn without_fixed_ttl(mut self) -> Self {
        self.ttl = None;
        self.jitter = None;
        self
    }

    /// The clock as set, or the system clock, which is then set: the front door measures on
    /// the engine's clock.
    pub(crate) fn clock_or_system(&mut self) -> Arc<dyn Clock> {
        Arc::clone(
            self.clock
                .get_or_insert_with(|| Arc::new(SystemClock::new()) as Arc<dyn Clock>),
        )
    }

    /// Called with every entry that leaves the cache and why, after the shard lock is released
    /// (the value is dropped right after). A panicking listener does not stop the others or
    /// corrupt the cache; its panic resumes in the thread whose operation removed the entry.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// let evicted = Arc::new(AtomicUsize::new(0));
    /// let n = evicted.clone();
    /// let cache: aside::Cache<u32, u32> = aside::Cache::builder()
    ///     .max_capacity(1)
    ///     .eviction_listener(move |_k: &u32, _v: &u32, cause: aside::RemovalCause| {
    ///         if cause.was_evicted() { n.fetch_add(1, Ordering::Relaxed); }
    ///     })
    ///     .build()
    ///     .unwrap();
    /// cache.insert(1, 1);
    /// cache.insert(2, 2);
    /// assert_eq!(evicted.load(Ordering::Relaxed), 1);
    /// ```
    pub fn eviction_listener(
        mut self,
        listener: impl Fn(&K, &V, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Checks the settings and builds the cache.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the field: `shards` not a power of two in 1..=65536, or
    /// `time_to_idle` combined with `time_to_live`.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// let err = aside::Cache::<u32, u32>::builder()
    ///     .time_to_live(Duration::from_secs(1))
    ///     .time_to_idle(Duration::from_secs(1))
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.field(), "time_to_idle");
    /// ```
    pub fn build(self) -> Result<Cache<K, V, P, S>, ConfigError>
    where
        P: EvictionPolicy,
    {
        if let Some(n) = self
            .shards
            .filter(|&n| n == 0 || !n.is_power_of_two() || n > MAX_SHARDS)
        {
            return Err(ConfigError::new(
                "shards",
                format!("must be a power of two between 1 and {MAX_SHARDS}, got {n}"),
            ));
        }
        if self.ttl.is_some() && self.tti.is_some() {
            return Err(ConfigError::new(
                "time_to_idle",
                "cannot be combined with `time_to_live`: a cache either slides deadlines or \
                 fixes them (use `insert_with_ttl` for fixed per-entry deadlines)",
            ));
        }
        let max_shard = crate::engine::shard::MAX_SHARD_ENTRIES as u64;
        let bounded = self.weigher.is_none() && self.max_capacity != u64::MAX;
        if let Some(n) = self
            .shards
            .filter(|&n| bounded && self.max_capacity.div_ceil(n as u64) > max_shard)
        {
            return Err(ConfigError::new(
                "shards",
                format!(
                    "{n} shards of a capacity of {} entries hold more than {max_shard} entries \
                     each, a shard's limit: use more shards",
                    self.max_capacity
                ),
            ));
        }
        let shards = self
            .shards
            .unwrap_or_else(|| default_shards(self.max_capacity, bounded));
        let seed = self
            .seed
            .unwrap_or_else(|| SmallRng::from_os_rng().next_u64());
        let expiration = Expiration {
            ttl: self.ttl.map(duration_nanos),
            tti: self.tti.map(duration_nanos),
            jitter: self.jitter.map_or(0, duration_nanos),
        };
        Ok(Cache::from_parts(crate::cache::Parts {
            capacity: self.max_capacity,
            shards,
            policy: self.policy,
            hasher: self.hasher,
            seed,
            expiration,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock::new())),
            weigher: self.weigher,
            listener: self.listener,
        }))
    }
}

/// 4 × available parallelism rounded up to a power of two, halved while a shard would hold
/// less than [`MIN_SHARD_CAPACITY`]; for a capacity in entries (`entries`), doubled while a
/// shard would hold more than its entry limit. A capacity in weight units says nothing about
/// the entry count, so it gets no more shards than the parallelism asks for: its shards
/// evict at their entry limit, as an unbounded cache's do.
fn default_shards(capacity: u64, entries: bool) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut shards = (cores * 4).next_power_of_two().min(MAX_SHARDS);
    while shards > 1 && capacity / (shards as u64) < MIN_SHARD_CAPACITY {
        shards /= 2;
    }
    // A shard's entry limit: larger caches get more shards (an unbounded one relies on the
    // limit's evictions instead).
    while entries
        && shards < MAX_SHARDS
        && capacity.div_ceil(shards as u64) > crate::engine::shard::MAX_SHARD_ENTRIES as u64
    {
        shards *= 2;
    }
    shards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_shards_shrink_for_small_caches() {
        let most = default_shards(u64::MAX, false);
        assert_eq!(default_shards(0, true), 1);
        assert_eq!(default_shards(2 * MIN_SHARD_CAPACITY - 1, true), 1);
        assert_eq!(default_shards(2 * MIN_SHARD_CAPACITY, true), 2.min(most));
        // The 1,011-key `loop` trace at capacity 1024 needs one shard to stay exact LRU.
        assert_eq!(default_shards(1024, true), 1);
        assert!(most.is_power_of_two());
        let limit = crate::engine::shard::MAX_SHARD_ENTRIES as u64;
        assert!(
            default_shards(64 * limit, true) >= 64,
            "a shard never exceeds its entry limit"
        );
        // Weight units are not entries: a huge weight capacity gets no more shards than the
        // parallelism asks for (the config fuzzer's `max_weight = 33333333333177` made 65,536
        // shards and 2.5 GB of policy tables at `build`).
        assert_eq!(default_shards(64 * limit, false), most);
        let err = Cache::<u32, u32>::builder()
            .max_capacity(2 * limit + 1)
            .shards(2)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "shards");
    }
}
