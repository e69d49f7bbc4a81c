//! [`AsideBuilder`]: the front door's settings, layered on the engine's [`CacheBuilder`].
//!
//! The engine's settings (capacity, shards, policy, seed, clock, TTLs, jitter, weigher,
//! listener) live in a `CacheBuilder` the front door forwards to, so each is declared once;
//! the front door adds its own (negative caching, fail-safe, early refresh, lease, timeouts,
//! per-entry TTLs). [`build`](AsideBuilder::build) checks both through the one validation the
//! registry shares (`settings.rs`), then the engine's own checks.

use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

#[cfg(doc)]
use super::LoadError;
use super::flight::Registry;
use super::labels::Book;
use super::slot::{EarlyRefresh, Slot};
use super::stats::Counters;
use super::{
    AsideCache, ExpireAfter, FailSafe, Inner, LeaseExpiry, RefreshMode, Settings, settings,
};
use crate::engine::expiry::{Clock, duration_nanos};
use crate::policy::{EvictionPolicy, WTinyLfu};
use crate::{CacheBuilder, ConfigError};

/// Builds an [`AsideCache`]; every setting has a default.
///
/// | setting | default |
/// |---|---|
/// | `max_capacity`, `shards`, `policy`, `seed`, `clock` | as [`CacheBuilder`](crate::CacheBuilder) |
/// | `time_to_live` (fresh period) / `time_to_idle` (sliding) | none: values stay until evicted or invalidated |
/// | `ttl_jitter` | none |
/// | `negative_ttl` | none: "not found" is not cached |
/// | `fail_safe(FailSafe::new(grace).retry_interval(..))` | off (retry interval 30 s when on) |
/// | `soft_timeout` | none |
/// | `xfetch_beta` | 1.0 (XFetch on whenever there is a TTL) |
/// | `refresh_after` | none |
/// | `refresh_mode` | [`RefreshMode::Background`] |
/// | `lease` | 5 s |
/// | `on_lease_expiry` | [`LeaseExpiry::TakeOver`] |
/// | `load_timeout` | none |
///
/// # Example
///
/// ```
/// use aside::AsideCache;
/// use std::time::Duration;
///
/// let products: AsideCache<u64, String> = AsideCache::builder()
///     .max_capacity(50_000)
///     .time_to_live(Duration::from_secs(3600))
///     .ttl_jitter(Duration::from_secs(60))
///     .negative_ttl(Duration::from_secs(30))
///     .fail_safe(aside::FailSafe::new(Duration::from_secs(600)).retry_interval(Duration::from_secs(5)))
///     .lease(Duration::from_millis(500))
///     .build()?;
/// # let _ = products;
/// # Ok::<(), aside::ConfigError>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct AsideBuilder<K, V, P = WTinyLfu> {
    /// The engine's settings (capacity, shards, policy, seed, clock, TTL, sliding TTL,
    /// jitter, the wrapped weigher and listener), declared and checked once, by
    /// [`CacheBuilder`]. The front door keeps the TTL and jitter for itself (see `build`).
    engine: CacheBuilder<K, Slot<V>, P>,
    negative_ttl: Option<Duration>,
    fail_safe: Option<FailSafe>,
    soft_timeout: Option<Duration>,
    beta: Option<f64>,
    refresh_after: Option<f64>,
    refresh: RefreshMode,
    lease: Duration,
    on_lease_expiry: LeaseExpiry,
    load_timeout: Option<Duration>,
    expire_after: Option<ExpireAfter<K, V>>,
}

/// The settings: the engine's as [`CacheBuilder`] shows them (the policy by type name, the
/// user's hooks by presence), then the front door's.
impl<K, V, P> std::fmt::Debug for AsideBuilder<K, V, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsideBuilder")
            .field("engine", &self.engine)
            .field("negative_ttl", &self.negative_ttl)
            .field("fail_safe", &self.fail_safe)
            .field("soft_timeout", &self.soft_timeout)
            .field("xfetch_beta", &self.beta)
            .field("refresh_after", &self.refresh_after)
            .field("refresh_mode", &self.refresh)
            .field("lease", &self.lease)
            .field("on_lease_expiry", &self.on_lease_expiry)
            .field("load_timeout", &self.load_timeout)
            .field("expire_after", &self.expire_after.is_some())
            .finish_non_exhaustive()
    }
}

impl<K, V> AsideCache<K, V> {
    /// A builder with every setting at its default.
    ///
    /// # Example
    ///
    /// ```
    /// let c: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// # let _ = c;
    /// ```
    pub fn builder() -> AsideBuilder<K, V> {
        AsideBuilder::on(CacheBuilder::new())
    }
}

impl<K, V, P> AsideBuilder<K, V, P> {
    /// A front-door builder over `engine`'s settings, the front door's at their defaults
    /// (the registry fills the engine's from a file).
    pub(crate) fn on(engine: CacheBuilder<K, Slot<V>, P>) -> Self {
        AsideBuilder {
            engine,
            negative_ttl: None,
            fail_safe: None,
            soft_timeout: None,
            beta: Some(1.0),
            refresh_after: None,
            refresh: RefreshMode::Background,
            lease: Duration::from_secs(5),
            on_lease_expiry: LeaseExpiry::TakeOver,
            load_timeout: None,
            expire_after: None,
        }
    }

    /// Capacity in entries (see [`CacheBuilder::max_capacity`](crate::CacheBuilder::max_capacity)).
    ///
    /// # Example
    ///
    /// ```
    /// let b = aside::AsideCache::<u32, u32>::builder().max_capacity(100);
    /// # let _ = b;
    /// ```
    pub fn max_capacity(mut self, max_capacity: u64) -> Self {
        self.engine = self.engine.max_capacity(max_capacity);
        self
    }

    /// Shard count, a power of two (see [`CacheBuilder::shards`](crate::CacheBuilder::shards)).
    ///
    /// # Example
    ///
    /// ```
    /// let b = aside::AsideCache::<u32, u32>::builder().shards(4);
    /// # let _ = b;
    /// ```
    pub fn shards(mut self, shards: usize) -> Self {
        self.engine = self.engine.shards(shards);
        self
    }

    /// A fixed seed for hashing and sampling (reproducible tests).
    ///
    /// # Example
    ///
    /// ```
    /// let b = aside::AsideCache::<u32, u32>::builder().seed(1);
    /// # let _ = b;
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.engine = self.engine.seed(seed);
        self
    }

    /// How long a loaded value is fresh (plus jitter).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = aside::AsideCache::<u32, u32>::builder().time_to_live(Duration::from_secs(300));
    /// # let _ = b;
    /// ```
    pub fn time_to_live(mut self, time_to_live: Duration) -> Self {
        self.engine = self.engine.time_to_live(time_to_live);
        self
    }

    /// A sliding TTL instead: every hit keeps the value another `time_to_idle` (sessions).
    /// Early refresh and fail-safe do not apply to sliding entries.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = aside::AsideCache::<u32, u32>::builder().time_to_idle(Duration::from_secs(1800));
    /// # let _ = b;
    /// ```
    pub fn time_to_idle(mut self, time_to_idle: Duration) -> Self {
        self.engine = self.engine.time_to_idle(time_to_idle);
        self
    }

    /// Adds `random(0..jitter)` to every TTL so that values loaded together do not expire
    /// together.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = aside::AsideCache::<u32, u32>::builder().ttl_jitter(Duration::from_secs(30));
    /// # let _ = b;
    /// ```
    pub fn ttl_jitter(mut self, ttl_jitter: Duration) -> Self {
        self.engine = self.engine.ttl_jitter(ttl_jitter);
        self
    }

    /// Caches "not found" (a loader's `Ok(None)`) for this long.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = aside::AsideCache::<u32, u32>::builder().negative_ttl(Duration::from_secs(30));
    /// # let _ = b;
    /// ```
    pub fn negative_ttl(mut self, negative_ttl: Duration) -> Self {
        self.negative_ttl = Some(negative_ttl);
        self
    }

    /// With fail-safe on, how long a reload may take before the caller gets the stale value
    /// (the reload goes on in the background, up to the hard `load_timeout`). Async only.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = aside::AsideCache::<u32, u32>::builder().soft_timeout(Duration::from_millis(50));
    /// # let _ = b;
    /// ```
    pub fn soft_timeout(mut self, soft_timeout: Duration) -> Self {
        self.soft_timeout = Some(soft_timeout);
        self
    }

    /// XFetch's `beta` (> 0; larger refreshes earlier). Default 1.0.
    ///
    /// # Example
    ///
    /// ```
    /// let b = aside::AsideCache::<u32, u32>::builder().xfetch_beta(2.0);
    /// # let _ = b;
    /// ```
    pub fn xfetch_beta(mut self, xfetch_beta: f64) -> Self {
        self.beta = Some(xfetch_beta);
        self
    }

    /// A deterministic early refresh once this fraction (0 < f < 1) of the TTL has passed.
    ///
    /// # Example
    ///
    /// ```
    /// let b = aside::AsideCache::<u32, u32>::builder().refresh_after(0.8);
    /// # let _ = b;
    /// ```
    pub fn refresh_after(mut self, refresh_after: f64) -> Self {
        self.refresh_after = Some(refresh_after);
        self
    }

    /// Who performs early refreshes.
    ///
    /// # Example
    ///
    /// ```
    /// let b = aside::AsideCache::<u32, u32>::builder().refresh_mode(aside::RefreshMode::Caller);
    /// # let _ = b;
    /// ```
    pub fn refresh_mode(mut self, refresh_mode: RefreshMode) -> Self {
        self.refresh = refresh_mode;
        self
    }

    /// How long a waiter waits for another caller's load (the seeds' `PX 500`).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = aside::AsideCache::<u32, u32>::builder().lease(Duration::from_millis(500));
    /// # let _ = b;
    /// ```
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// What a waiter does when the lease runs out.
    ///
    /// # Example
    ///
    /// ```
    /// let b = aside::AsideCache::<u32, u32>::builder().on_lease_expiry(aside::LeaseExpiry::TakeOver);
    /// # let _ = b;
    /// ```
    pub fn on_lease_expiry(mut self, on_lease_expiry: LeaseExpiry) -> Self {
        self.on_lease_expiry = on_lease_expiry;
        self
    }

    /// The hard limit on one load (async): past it the load fails with
    /// [`LoadError::Timeout`].
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = aside::AsideCache::<u32, u32>::builder().load_timeout(Duration::from_secs(2));
    /// # let _ = b;
    /// ```
    pub fn load_timeout(mut self, load_timeout: Duration) -> Self {
        self.load_timeout = Some(load_timeout);
        self
    }

    /// Turns XFetch off (it is on by default).
    ///
    /// # Example
    ///
    /// ```
    /// let b = aside::AsideCache::<u32, u32>::builder().no_xfetch();
    /// # let _ = b;
    /// ```
    pub fn no_xfetch(mut self) -> Self {
        self.beta = None;
        self
    }

    /// Fail-safe (see [`FailSafe`]): keep expired values for its grace period and serve them
    /// when a reload fails (or, with a soft timeout, is slow), retrying a failing key at most
    /// every retry interval.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// use aside::FailSafe;
    /// let b = aside::AsideCache::<u32, u32>::builder().fail_safe(
    ///     FailSafe::new(Duration::from_secs(600)).retry_interval(Duration::from_secs(5)),
    /// );
    /// # let _ = b;
    /// ```
    pub fn fail_safe(mut self, fail_safe: FailSafe) -> Self {
        self.fail_safe = Some(fail_safe);
        self
    }

    /// The clock TTLs, XFetch and load times are measured on (tests pass a
    /// [`MockClock`](crate::MockClock)).
    ///
    /// # Example
    ///
    /// ```
    /// let b = aside::AsideCache::<u32, u32>::builder().clock(aside::MockClock::new());
    /// # let _ = b;
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.engine = self.engine.clock(clock);
        self
    }

    /// The eviction policy of the underlying cache.
    ///
    /// # Example
    ///
    /// ```
    /// let b = aside::AsideCache::<u32, u32>::builder().policy(aside::policy::Lfu::new());
    /// # let _ = b;
    /// ```
    pub fn policy<P2: EvictionPolicy>(self, policy: P2) -> AsideBuilder<K, V, P2> {
        AsideBuilder {
            engine: self.engine.policy(policy),
            negative_ttl: self.negative_ttl,
            fail_safe: self.fail_safe,
            soft_timeout: self.soft_timeout,
            beta: self.beta,
            refresh_after: self.refresh_after,
            refresh: self.refresh,
            lease: self.lease,
            on_lease_expiry: self.on_lease_expiry,
            load_timeout: self.load_timeout,
            expire_after: self.expire_after,
        }
    }

    /// Size the cache by weight instead of entries: `max_capacity` is then a total weight and
    /// each cached value weighs what `weigher` says (a cached "not found" weighs 1). As
    /// [`CacheBuilder::weigher`](crate::CacheBuilder::weigher): it runs outside the shard
    /// locks. The weight limit holds per shard: each of the `shards` holds at most
    /// `max_capacity / shards`, so a value heavier than that share is returned to its caller
    /// but not cached. Set `shards(1)` to cache values up to the whole capacity.
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "async")]
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let pages: aside::AsideCache<u32, Vec<u8>> = aside::AsideCache::builder()
    ///     .max_capacity(64 * 1024) // bytes
    ///     .weigher(|_: &u32, page: &Vec<u8>| page.len() as u32)
    ///     .build()
    ///     .unwrap();
    /// let page = pages.get_or_load(7, || async { Ok::<_, ()>(Some(vec![0u8; 4096])) }).await;
    /// assert_eq!(page.unwrap().unwrap().len(), 4096);
    /// assert_eq!(pages.weighted_size(), 4096);
    /// # });
    /// ```
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self
    where
        K: 'static,
        V: 'static,
    {
        self.engine = self
            .engine
            .shared_weigher(Arc::new(move |k: &K, slot: &Slot<V>| {
                slot.value.as_ref().map_or(1, |v| weigher(k, v))
            }));
        self
    }

    /// Calls `listener` with each value that leaves the cache and why
    /// ([`RemovalCause`](crate::RemovalCause)): evicted for room, expired (past the TTL and any
    /// fail-safe grace), replaced (by a reload, a `put`, or fail-safe re-storing a stale value
    /// with its retry throttle), or explicitly invalidated. Cached "not found" entries are not
    /// announced. As [`CacheBuilder::eviction_listener`](crate::CacheBuilder::eviction_listener):
    /// it runs after every lock is released, and a panic in it propagates to the caller whose
    /// operation removed the entry, leaving the cache consistent.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use aside::RemovalCause;
    ///
    /// let log = Arc::new(Mutex::new(Vec::new()));
    /// let sink = Arc::clone(&log);
    /// let cache: aside::AsideCache<u32, String> = aside::AsideCache::builder()
    ///     .eviction_listener(move |k: &u32, v: &String, cause| {
    ///         sink.lock().unwrap().push((*k, v.clone(), cause));
    ///     })
    ///     .build()
    ///     .unwrap();
    /// cache.put(1, "one".to_string());
    /// cache.invalidate(&1);
    /// assert_eq!(*log.lock().unwrap(), vec![(1, "one".to_string(), RemovalCause::Explicit)]);
    /// ```
    pub fn eviction_listener(
        mut self,
        listener: impl Fn(&K, &V, crate::RemovalCause) + Send + Sync + 'static,
    ) -> Self
    where
        K: 'static,
        V: 'static,
    {
        self.engine = self
            .engine
            .shared_listener(Arc::new(move |k: &K, slot: &Slot<V>, cause| {
                if let Some(v) = &slot.value {
                    listener(k, v, cause);
                }
            }));
        self
    }

    /// A TTL per entry, chosen from its key and value (moka's `Expiry`, FusionCache's adaptive
    /// caching): `Some(ttl)` keeps that value fresh for `ttl` instead of the default
    /// `time_to_live`, `None` keeps the default. It runs when a loaded value is installed and
    /// on `put`, outside every lock. Jitter applies to the default TTL only; fail-safe's grace
    /// and early refresh apply to every TTL. A value with a per-entry TTL expires even in a
    /// cache without a default TTL.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// let clock = aside::MockClock::new();
    /// // Rows that say they are volatile live 10 s, the others an hour.
    /// let rows: aside::AsideCache<u32, (String, bool)> = aside::AsideCache::builder()
    ///     .time_to_live(Duration::from_secs(3600))
    ///     .expire_after(|_id: &u32, row: &(String, bool)| row.1.then_some(Duration::from_secs(10)))
    ///     .clock(clock.clone())
    ///     .build()
    ///     .unwrap();
    /// rows.put(1, ("stock level".to_string(), true));
    /// rows.put(2, ("product name".to_string(), false));
    /// clock.advance(Duration::from_secs(11));
    /// assert!(rows.get(&1).is_none());
    /// assert!(rows.get(&2).is_some());
    /// ```
    pub fn expire_after(
        mut self,
        ttl: impl Fn(&K, &V) -> Option<Duration> + Send + Sync + 'static,
    ) -> Self {
        self.expire_after = Some(Arc::new(ttl));
        self
    }

    /// Checks the settings and builds the front door.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the field: a zero `time_to_live`, `time_to_idle`,
    /// `negative_ttl`, fail-safe grace, `soft_timeout`, `lease` or `load_timeout`;
    /// `xfetch_beta` not finite and positive; `refresh_after` outside (0, 1); `time_to_idle`
    /// with `time_to_live`; a `ttl_jitter` longer than the TTL; fail-safe or early refresh
    /// without a `time_to_live`; `soft_timeout` without fail-safe; and every error of
    /// [`CacheBuilder::build`](crate::CacheBuilder::build). The registry's configuration files
    /// go through the same checks.
    ///
    /// # Example
    ///
    /// ```
    /// let err = aside::AsideCache::<u32, u32>::builder().refresh_after(1.5).build().unwrap_err();
    /// assert_eq!(err.field(), "refresh_after");
    /// ```
    pub fn build(self) -> Result<AsideCache<K, V, P>, ConfigError>
    where
        K: Hash + Eq + Clone,
        V: Clone,
        P: EvictionPolicy,
    {
        // The front door keeps the TTL and its jitter: they make each slot's fresh period, and
        // each slot is written with its own engine TTL (fresh period plus fail-safe grace),
        // which the engine's jitter must not lengthen. The sliding TTL stays with the engine.
        let (ttl, tti, jitter) = self.engine.expiry();
        let checked = settings::Settings {
            shards: self.engine.shard_setting(),
            ttl,
            tti,
            jitter,
            negative_ttl: self.negative_ttl,
            grace: self.fail_safe.map(|f| f.grace),
            retry_interval: self.fail_safe.map(|f| f.retry_interval),
            soft_timeout: self.soft_timeout,
            xfetch_beta: self.beta,
            refresh_after: self.refresh_after,
            lease: Some(self.lease),
            load_timeout: self.load_timeout,
        };
        settings::check(&checked).map_err(|e| ConfigError::new(e.field.setter(), e.reason))?;
        let mut engine = self.engine.without_fixed_ttl();
        let clock = engine.clock_or_system();
        let cache = engine.build()?;
        let registry_shards = cache.shard_count().max(16);
        let (grace, retry_interval) = self.fail_safe.map_or((0, 0), |f| {
            (duration_nanos(f.grace), duration_nanos(f.retry_interval))
        });
        Ok(AsideCache {
            inner: Arc::new(Inner {
                cache,
                registry: Arc::new(Registry::new(registry_shards)),
                settings: Settings {
                    ttl: ttl.map(duration_nanos),
                    jitter: jitter.map_or(0, duration_nanos),
                    negative_ttl: self.negative_ttl.map(duration_nanos),
                    grace,
                    retry_interval,
                    soft_timeout: self.soft_timeout,
                    early: EarlyRefresh {
                        beta: self.beta.filter(|_| ttl.is_some()),
                        after_fraction: self.refresh_after,
                    },
                    refresh: self.refresh,
                    lease: self.lease,
                    on_lease_expiry: self.on_lease_expiry,
                    load_timeout: self.load_timeout,
                },
                expire_after: self.expire_after,
                pending_writes: parking_lot::RwLock::new(Vec::new()),
                clock,
                stats: Counters::default(),
                book: Book::new(),
            }),
        })
    }
}
