//! The cache-aside front door: [`AsideCache`].
//!
//! `AsideCache` wraps a [`Cache`] with the read path of the cache-aside pattern (cache, miss,
//! load, populate with a TTL) and the safety features around it:
//!
//! - **Single flight with a lease.** At most one loader runs per key; concurrent callers wait
//!   for it and share its value or its error. A waiter stops waiting after the lease and,
//!   per [`LeaseExpiry`], takes the load over or loads on its own.
//! - **Race-free invalidation.** [`invalidate`](AsideCache::invalidate) and
//!   [`put`](AsideCache::put) mark a load in flight for the key stale and detach it; a stale
//!   load's value is returned to the callers already waiting on it but never installed
//!   (memcache leases), and a caller arriving after the invalidation starts a fresh load.
//! - **Early refresh.** XFetch (`now - delta * beta * ln(rand()) >= expiry`, with `delta` the
//!   measured load time) or a deterministic threshold refreshes hot keys before they expire, in
//!   the background or by the caller, single-flight.
//! - **Fail-safe.** Expired values kept for a grace period are served when a reload fails or
//!   exceeds a soft timeout; retries are throttled. An invalidation wins over fail-safe: a
//!   reload that fails after an `invalidate` or `put` returned never stores the old value again.
//! - **Negative caching** of "not found" with its own TTL, and **metrics** ([`LoadStats`]).
//! - **What the engine offers, here too:** per-entry TTLs (`expire_after`, `put_with_ttl`), an
//!   eviction listener with causes, iteration, predicate invalidation (`invalidate_if`) and
//!   lookups by a borrowed key (`get("user:1")` on `String` keys).
//! - **Toolkit** (`docs/toolkit.md`): warming (`warm`, [`read_keys`]), batch loads
//!   ([`get_many`](AsideCache::get_many), `get_or_load_many`), lazy invalidation by tag and
//!   by namespace ([`Labels`], [`Namespace`]), write-through and write-behind (`write_through`,
//!   `WriteBehind`; the async ones need the `async` feature).
//!
//! The async methods (`get_or_load`, `try_get_with`, `get_with`) need the `async` feature and
//! run on tokio without ever blocking an executor thread; the `_blocking` twins need no runtime.
//!
//! # Guarantees
//!
//! ## What waiters see when the loader fails
//! The same error, shared (`LoadError::Loader(Arc<E>)`); nothing is cached (except "not found"
//! with negative caching on); the next call loads again.
//!
//! ## Panic
//! The panicking caller's own call panics; every waiter resolves at once with
//! [`LoadError::Panicked`]; the key is no longer in flight and the next call loads again.
//!
//! ## Cancellation
//! If the leading caller's future is dropped at any await point, its load is abandoned and the
//! first waiter to notice takes it over; no waiter hangs. A waiter that is cancelled or times
//! out does not cancel the shared load or remove it from the registry.
//!
//! ## Timeouts
//! The hard load timeout (`load_timeout`, async only: a blocking loader cannot be interrupted)
//! ends a load with [`LoadError::Timeout`] for its caller and its waiters, and bounds the
//! waiters' own loads under [`LeaseExpiry::LoadIndependently`]. The lease bounds how long each
//! waiter waits for someone else's load.
//!
//! ## Reentrancy
//! A loader that calls the front door for the key it is loading gets
//! [`LoadError::Reentrant`] at once instead of deadlocking; other keys work.
//!
//! ## What a loader may borrow
//! - A **blocking** loader (`get_or_load_blocking` and its twins) may borrow anything from the
//!   caller: it runs to completion on the caller's thread before the call returns.
//! - An **async** loader is a closure that returns a future. The closure may borrow from the
//!   caller (it runs before the call returns, to build the future). The future must be
//!   `Send + 'static`: a load may outlive its caller. An early refresh in the background
//!   mode ([`RefreshMode::Background`]) runs on a spawned task after the caller got the
//!   current value, and a load past the fail-safe soft timeout goes on in the background
//!   after the caller got the stale value. Own what the future needs (clone an `Arc`, move
//!   an owned query), as in the example below; the batch loaders and `warm` take the same
//!   kind of loader.
//!
//! ```
//! # #[cfg(feature = "async")]
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use aside::AsideCache;
//!
//! struct Request<'a> {
//!     tenant: &'a str,
//! }
//!
//! let names: AsideCache<u64, String> = AsideCache::builder().build().unwrap();
//! let request = Request { tenant: "acme" };
//! let req = &request;
//! let name = names
//!     .get_or_load(42, || {
//!         // Borrowed here, while the closure runs; owned by the future.
//!         let query = format!("SELECT name FROM {}.users WHERE id = 42", req.tenant);
//!         async move { Ok::<_, std::io::Error>(Some(format!("row for {query}"))) }
//!     })
//!     .await
//!     .unwrap();
//! assert!(name.unwrap().contains("acme.users"));
//!
//! // A blocking loader may borrow the request itself.
//! let name = names
//!     .get_or_load_blocking(7, || Ok::<_, std::io::Error>(Some(req.tenant.to_string())))
//!     .unwrap();
//! assert_eq!(name.as_deref(), Some("acme"));
//! # });
//! ```

mod builder;
mod error;
pub(crate) mod flight;
mod labels;
#[cfg(feature = "async")]
pub(crate) mod load_async;
mod load_blocking;
pub(crate) mod settings;
pub(crate) mod slot;
#[cfg(feature = "snapshot")]
mod snapshot;
pub(crate) mod stats;
mod trace;

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

pub use builder::AsideBuilder;
pub use error::LoadError;
pub use labels::{Labels, Namespace};
pub use stats::{LatencyHistogram, LatencySummary, LoadStats};
// The toolkit's types, at the paths they have always had (`aside::aside::Warmer`).
#[cfg(feature = "async")]
pub use crate::toolkit::warm::Warmer;
pub use crate::toolkit::warm::{KeyFileError, WarmProgress, WarmSummary, parse_keys, read_keys};
#[cfg(feature = "async")]
pub use crate::toolkit::write::{
    WriteBehind, WriteBehindBuilder, WriteBehindStats, WriteError, WriteSink,
};

use crate::engine::expiry::{Clock, duration_nanos};
use crate::policy::{EvictionPolicy, WTinyLfu};
use crate::{Cache, CacheStats};
use flight::{Lead, Outcome, Registry};
use labels::{Book, Mark};
use slot::{EarlyRefresh, Freshness, Slot};
use stats::Counters;

/// What a waiter does when the load it waits on outlives the lease.
///
/// # Example
///
/// ```
/// use aside::{AsideCache, LeaseExpiry};
/// let cache: AsideCache<u32, u32> = AsideCache::builder()
///     .on_lease_expiry(LeaseExpiry::LoadIndependently)
///     .build()
///     .unwrap();
/// # let _ = cache;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LeaseExpiry {
    /// One waiter replaces the stalled load with its own (single flight continues; the stalled
    /// load's result will not be installed). The default.
    #[default]
    TakeOver,
    /// Each waiter runs its own loader and returns its result without installing it (a
    /// last resort that gives up single flight). The hard `load_timeout` bounds these loads
    /// too, and with fail-safe on a failed or timed-out one returns the stale value.
    LoadIndependently,
}

/// Fail-safe settings for [`AsideBuilder::fail_safe`]: how long an expired value is kept to be
/// served when its reload fails (the grace period, counted from its expiry), and how often a
/// key whose reload keeps failing is retried (the retry interval; meanwhile callers get the
/// stale value without calling the loader). The durations are named so that they cannot be
/// swapped by mistake.
///
/// # Example
///
/// ```
/// use aside::FailSafe;
/// use std::time::Duration;
///
/// let f = FailSafe::new(Duration::from_secs(3600)).retry_interval(Duration::from_secs(10));
/// assert_eq!(f.grace(), Duration::from_secs(3600));
/// assert_eq!(f.retry(), Duration::from_secs(10));
/// assert_eq!(FailSafe::new(Duration::from_secs(60)).retry(), FailSafe::DEFAULT_RETRY_INTERVAL);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailSafe {
    grace: Duration,
    retry_interval: Duration,
}

impl FailSafe {
    /// The retry interval unless set: 30 s (FusionCache's throttle default).
    pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(30);

    /// Keep expired values for `grace` after their TTL; retry every
    /// [`DEFAULT_RETRY_INTERVAL`](Self::DEFAULT_RETRY_INTERVAL).
    ///
    /// # Example
    ///
    /// ```
    /// let f = aside::FailSafe::new(std::time::Duration::from_secs(600));
    /// # let _ = f;
    /// ```
    #[must_use]
    pub const fn new(grace: Duration) -> Self {
        Self {
            grace,
            retry_interval: Self::DEFAULT_RETRY_INTERVAL,
        }
    }

    /// Retry a failing key at most this often (zero: on every read after a failure).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// let f = aside::FailSafe::new(Duration::from_secs(600)).retry_interval(Duration::ZERO);
    /// assert_eq!(f.retry(), Duration::ZERO);
    /// ```
    #[must_use]
    pub const fn retry_interval(mut self, every: Duration) -> Self {
        self.retry_interval = every;
        self
    }

    /// The grace period.
    ///
    /// # Example
    ///
    /// ```
    /// let f = aside::FailSafe::new(std::time::Duration::from_secs(600));
    /// assert_eq!(f.grace().as_secs(), 600);
    /// ```
    #[must_use]
    pub const fn grace(&self) -> Duration {
        self.grace
    }

    /// The retry interval.
    ///
    /// # Example
    ///
    /// ```
    /// let f = aside::FailSafe::new(std::time::Duration::from_secs(600));
    /// assert_eq!(f.retry().as_secs(), 30);
    /// ```
    #[must_use]
    pub const fn retry(&self) -> Duration {
        self.retry_interval
    }
}

/// Who performs an early refresh.
///
/// # Example
///
/// ```
/// use aside::{AsideCache, RefreshMode};
/// let cache: AsideCache<u32, u32> =
///     AsideCache::builder().refresh_mode(RefreshMode::Caller).build().unwrap();
/// # let _ = cache;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RefreshMode {
    /// A background task reloads while callers keep getting the current value
    /// (refresh-ahead / stale-while-revalidate). Needs a tokio runtime; without one (and in
    /// the blocking twins) the caller refreshes. The default.
    #[default]
    Background,
    /// The caller that triggers the refresh reloads and returns the new value (or the current
    /// one if the reload fails).
    Caller,
}

#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "async"), allow(dead_code))]
pub(crate) struct Settings {
    ttl: Option<u64>,
    jitter: u64,
    negative_ttl: Option<u64>,
    grace: u64,
    retry_interval: u64,
    soft_timeout: Option<Duration>,
    early: EarlyRefresh,
    refresh: RefreshMode,
    pub(crate) lease: Duration,
    pub(crate) on_lease_expiry: LeaseExpiry,
    pub(crate) load_timeout: Option<Duration>,
}

/// A per-entry TTL chosen from the key and the loaded value.
type ExpireAfter<K, V> = Arc<dyn Fn(&K, &V) -> Option<Duration> + Send + Sync>;

/// Values written but not yet in the source of truth (a write-behind's dirty set): a leader
/// takes its value from here instead of loading what the source still holds.
pub(crate) trait PendingWrites<K, V>: Send + Sync {
    /// The value written for `key` and not yet flushed, if any.
    fn pending(&self, key: &K) -> Option<V>;
}

pub(crate) struct Inner<K, V, P: EvictionPolicy> {
    pub(crate) cache: Cache<K, Slot<V>, P>,
    pub(crate) registry: Arc<Registry<K, V>>,
    pub(crate) settings: Settings,
    expire_after: Option<ExpireAfter<K, V>>,
    /// Write-behinds over this cache (see [`PendingWrites`]).
    /// Held weakly: the cache must not keep a write-behind alive, and a dropped one's entry
    /// goes at the next registration.
    pub(crate) pending_writes: parking_lot::RwLock<Vec<std::sync::Weak<dyn PendingWrites<K, V>>>>,
    clock: Arc<dyn Clock>,
    pub(crate) stats: Counters,
    pub(crate) book: Book,
}

/// An async cache-aside front door over a sharded [`Cache`]; see the [module docs](self) for
/// the guarantees.
///
/// Cheap to clone (an `Arc`); every clone shares the cache and the in-flight registry.
///
/// # Example
///
/// ```
/// use aside::AsideCache;
/// use std::time::Duration;
///
/// let users: AsideCache<u64, String> = AsideCache::builder()
///     .max_capacity(10_000)
///     .time_to_live(Duration::from_secs(300))
///     .build()?;
///
/// // Read: cache, miss, load (once, whatever the concurrency), populate.
/// let name = users.get_with_blocking(42, || "Alice".to_string()).unwrap();
/// assert_eq!(name, "Alice");
///
/// // Write: update the database, then invalidate (race-free against loads in flight).
/// users.invalidate(&42);
/// # Ok::<(), aside::ConfigError>(())
/// ```
pub struct AsideCache<K, V, P: EvictionPolicy = WTinyLfu> {
    pub(crate) inner: Arc<Inner<K, V, P>>,
}

impl<K, V, P: EvictionPolicy> std::fmt::Debug for AsideCache<K, V, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsideCache")
            .field("cache", &self.inner.cache)
            .finish_non_exhaustive()
    }
}

impl<K, V, P: EvictionPolicy> Clone for AsideCache<K, V, P> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// What a new leader found when it looked again ([`Inner::recheck`]).
pub(crate) enum Recheck<V> {
    /// A value fresh enough to serve: no load needed.
    Serve(Option<V>),
    /// Load; on failure, fall back on `stale` (fail-safe), the slot the cache holds now.
    Load { stale: Option<Slot<V>> },
}

/// What a lookup in the front door found.
pub(crate) enum Found<V> {
    Fresh(Option<V>),
    RefreshEarly(Option<V>),
    Stale(Slot<V>),
    Miss,
}

impl<K, V, P> Inner<K, V, P>
where
    K: Hash + Eq + Clone,
    V: Clone,
    P: EvictionPolicy,
{
    pub(crate) fn now(&self) -> u64 {
        self.clock.now_nanos()
    }

    /// Registers a write-behind's dirty set (see [`PendingWrites`]).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn add_pending_writes(&self, pending: std::sync::Weak<dyn PendingWrites<K, V>>) {
        let mut all = self.pending_writes.write();
        all.retain(|p| p.strong_count() > 0);
        all.push(pending);
    }

    /// A value written behind for `key` and not yet flushed, if any.
    fn pending_write(&self, key: &K) -> Option<V> {
        let pending = self.pending_writes.read();
        pending.iter().find_map(|p| p.upgrade()?.pending(key))
    }

    /// A new leader whose key has a write still on its way to the source of truth installs
    /// that value instead of loading the older one the source holds. (A write-behind's value
    /// can expire, or be evicted, before its flush; a load then would read the old row and
    /// cache it for a whole TTL.) `None`: load as usual.
    pub(crate) fn take_pending(
        &self,
        lead: Lead<K, V>,
        key: &K,
        labels: Option<&Labels>,
    ) -> Result<V, Lead<K, V>> {
        let Some(v) = self.pending_write(key) else {
            return Err(lead);
        };
        let mark = self.book.mark(labels);
        self.finish_loaded(lead, key, Some(v.clone()), 0, mark);
        Ok(v)
    }

    pub(crate) fn lookup<Q>(&self, key: &Q) -> Found<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(slot) = self.cache.get(key) else {
            return Found::Miss;
        };
        if slot.mark.as_ref().is_some_and(|m| self.book.hidden(m)) {
            return Found::Miss; // invalidated by tag or namespace
        }
        let random: f64 = 1.0 - rand::rng().random::<f64>(); // (0, 1]
        match slot.freshness(self.now(), &self.settings.early, random) {
            Freshness::Fresh => {
                if slot.value.is_none() {
                    Counters::bump(&self.stats.negative_hits);
                }
                Found::Fresh(slot.value)
            }
            Freshness::RefreshEarly => Found::RefreshEarly(slot.value),
            Freshness::StaleThrottled => {
                Counters::bump(&self.stats.stale_served);
                Found::Fresh(slot.value)
            }
            Freshness::Stale => Found::Stale(slot),
        }
    }

    /// What a caller that has just become a flight's leader finds when it looks again.
    ///
    /// - A fresh value: another caller's load may have finished between this caller's lookup
    ///   and its join; it installed its value before leaving the registry, so looking again
    ///   (without side effects) avoids loading twice. Found by the shuttle schedule
    ///   exploration (tests/shuttle.rs).
    /// - The fail-safe fallback: the stale slot this load may serve and re-store if it fails.
    ///   It must be read here, after the join, and not taken from the caller's lookup: an
    ///   `invalidate` that ran between the lookup and the join found no flight to mark, so a
    ///   slot from the lookup would be the invalidated value, and storing it again would undo
    ///   the invalidation. From the join on, every invalidation marks this flight stale, and a
    ///   stale flight installs nothing.
    pub(crate) fn recheck(&self, key: &K, accept_none: bool) -> Recheck<V> {
        let Some(slot) = self.cache.peek(key) else {
            return Recheck::Load { stale: None };
        };
        if slot.mark.as_ref().is_some_and(|m| self.book.hidden(m)) {
            // Invalidated by tag or namespace: load it again, with nothing to fall back on.
            return Recheck::Load { stale: None };
        }
        // `random = 1.0`: no XFetch lead, so only a value fresh enough to serve counts.
        match slot.freshness(self.now(), &self.settings.early, 1.0) {
            Freshness::Fresh if slot.value.is_some() || accept_none => Recheck::Serve(slot.value),
            Freshness::Stale | Freshness::StaleThrottled if slot.value.is_some() => {
                Recheck::Load { stale: Some(slot) }
            }
            _ => Recheck::Load { stale: None },
        }
    }

    /// The slot and engine TTL for a loaded value, or `None` when it is not to be cached.
    ///
    /// A value's fresh period is `ttl` when given (`put_with_ttl`), else what `expire_after`
    /// chooses for it, else the default TTL plus jitter.
    fn make_slot(
        &self,
        key: &K,
        value: Option<V>,
        ttl: Option<u64>,
        now: u64,
        delta: u64,
        mark: Option<Arc<Mark>>,
    ) -> Option<(Slot<V>, Option<u64>)> {
        let s = &self.settings;
        let (fresh_for, grace) = match (&value, s.negative_ttl) {
            (None, None) => return None,
            (None, Some(neg)) => (Some(neg), 0),
            (Some(v), _) => {
                let chosen = ttl.or_else(|| {
                    let f = self.expire_after.as_ref()?;
                    f(key, v).map(duration_nanos)
                });
                let fresh_for = chosen.or_else(|| {
                    let jitter = if s.jitter == 0 {
                        0
                    } else {
                        rand::rng().random_range(0..s.jitter)
                    };
                    s.ttl.map(|t| t.saturating_add(jitter))
                });
                (fresh_for, s.grace)
            }
        };
        let fresh_until = fresh_for.map_or(u64::MAX, |f| now.saturating_add(f));
        let engine_ttl = fresh_for.map(|f| f.saturating_add(grace));
        Some((
            Slot {
                value,
                stored_at: now,
                fresh_until,
                delta,
                retry_after: 0,
                mark,
            },
            engine_ttl,
        ))
    }

    /// Writes a slot into the engine; the listener runs after every lock is released.
    fn store_slot(
        &self,
        key: K,
        slot: Slot<V>,
        ttl: Option<u64>,
    ) -> crate::notify::Removed<K, Slot<V>> {
        self.cache.insert_deferred(key, slot, ttl)
    }

    /// Completes a successful load: installs it unless the key was invalidated meanwhile.
    /// Returns whether it was allowed to install (an invalidation did not land meanwhile).
    pub(crate) fn finish_loaded(
        &self,
        lead: Lead<K, V>,
        key: &K,
        value: Option<V>,
        delta: u64,
        mark: Option<Arc<Mark>>,
    ) -> bool {
        let now = self.now();
        // Made before the registry's lock: `expire_after` is user code.
        let made = self.make_slot(key, value.clone(), None, now, delta, mark);
        let (allowed, removed) = lead.complete(Outcome::Loaded(value), |may_install| {
            if !may_install {
                Counters::bump(&self.stats.discarded);
                return (false, None);
            }
            (
                true,
                made.map(|(slot, ttl)| self.store_slot(key.clone(), slot, ttl)),
            )
        });
        if let Some(r) = removed {
            self.cache.notify_removed(r);
        }
        allowed
    }

    /// Completes a failed load; with a stale slot (fail-safe), re-stores it throttled.
    pub(crate) fn finish_failed(
        &self,
        lead: Lead<K, V>,
        key: &K,
        outcome: Outcome<V>,
        stale: Option<&Slot<V>>,
    ) {
        let now = self.now();
        let removed = lead.complete(outcome, |may_install| {
            let stale = stale.filter(|_| may_install)?;
            let remaining = stale
                .fresh_until
                .saturating_add(self.settings.grace)
                .saturating_sub(now);
            let mut throttled = stale.clone();
            throttled.retry_after = now.saturating_add(self.settings.retry_interval);
            Some(self.store_slot(key.clone(), throttled, Some(remaining)))
        });
        if let Some(r) = removed {
            self.cache.notify_removed(r);
        }
    }

    /// `put`, with labels: stores `value` and detaches a load in flight for `key`.
    pub(crate) fn put_marked(&self, key: K, value: V, labels: Option<&Labels>) {
        self.put_with(key, value, None, labels);
    }

    /// `put`, with labels and an explicit TTL (ns). The slot (and `expire_after`, user code)
    /// is made before the registry's lock is taken.
    fn put_with(&self, key: K, value: V, ttl: Option<u64>, labels: Option<&Labels>) {
        let now = self.now();
        let mark = self.book.mark(labels);
        let (slot, ttl) = self
            .make_slot(&key, Some(value), ttl, now, 0, mark)
            .expect("values are always cached");
        let removed = self
            .registry
            .invalidate_with(&key, || self.store_slot(key.clone(), slot, ttl));
        self.cache.notify_removed(removed);
    }

    pub(crate) fn served_stale(&self, stale: &Slot<V>) -> Option<V> {
        Counters::bump(&self.stats.stale_served);
        stale.value.clone()
    }

    /// Turns a waiter's view of a finished flight into its result; `None`: load again.
    pub(crate) fn waiter_result<E: Send + Sync + 'static>(
        &self,
        outcome: Outcome<V>,
        stale: Option<&Slot<V>>,
        accept_none: bool,
    ) -> Option<Result<Option<V>, LoadError<E>>> {
        match outcome {
            Outcome::Loaded(v) if v.is_some() || accept_none => Some(Ok(v)),
            Outcome::Loaded(_) | Outcome::Abandoned => None,
            Outcome::Failed(e) => match e.downcast::<E>() {
                Ok(e) => Some(match stale {
                    Some(s) => Ok(self.served_stale(s)),
                    None => Err(LoadError::Loader(e)),
                }),
                Err(_) => None, // another error type's loader: load with ours
            },
            Outcome::TimedOut => Some(match stale {
                Some(s) => Ok(self.served_stale(s)),
                None => Err(LoadError::Timeout),
            }),
            Outcome::Panicked => Some(Err(LoadError::Panicked)),
        }
    }

    /// The result of a load a waiter ran on its own after its lease expired
    /// ([`LeaseExpiry::LoadIndependently`]; `None`: it exceeded the hard timeout). Never
    /// installed. Like a shared load's waiters, it falls back on the stale value its lookup
    /// found (fail-safe) when the load fails or times out.
    fn independent_result<E>(
        &self,
        result: Option<Result<Option<V>, E>>,
        stale: Option<&Slot<V>>,
    ) -> Result<Option<V>, LoadError<E>> {
        let error = match result {
            Some(Ok(v)) => return Ok(v),
            Some(Err(e)) => {
                Counters::bump(&self.stats.load_errors);
                LoadError::Loader(Arc::new(e))
            }
            None => {
                Counters::bump(&self.stats.timeouts);
                LoadError::Timeout
            }
        };
        match stale {
            Some(s) => Ok(self.served_stale(s)),
            None => Err(error),
        }
    }
}

impl<K, V, P> AsideCache<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    /// The fresh value for `key`, if cached; never loads. A cached "not found" is `None`.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// cache.put(1, 10);
    /// assert_eq!(cache.get(&1), Some(10));
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.inner.lookup(key) {
            Found::Fresh(v) | Found::RefreshEarly(v) => v,
            Found::Stale(_) | Found::Miss => None,
        }
    }

    /// Delete-on-write: removes `key`, and any load of `key` already in flight will not install
    /// the (possibly stale) value it read. Call it after writing the source of truth.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// cache.put(1, 10);
    /// cache.invalidate(&1);
    /// assert_eq!(cache.get(&1), None);
    /// ```
    pub fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let removed = self
            .inner
            .registry
            .invalidate_with(key, || self.inner.cache.invalidate_deferred(key));
        self.inner.cache.notify_removed(removed);
    }

    /// Update-on-write (write-through): stores `value` for `key` with the configured TTL; a
    /// load of `key` already in flight will not overwrite it.
    ///
    /// # Panics
    ///
    /// Never: a value (unlike "not found") is always cacheable.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// cache.put(1, 10);
    /// assert_eq!(cache.get_with_blocking(1, || 0).unwrap(), 10);
    /// ```
    pub fn put(&self, key: K, value: V) {
        self.inner.put_marked(key, value, None);
    }

    /// [`put`](Self::put) with a TTL for this value: it stays fresh for `ttl` whatever the
    /// default `time_to_live` and `expire_after` say (no jitter; fail-safe's grace still
    /// follows). A zero `ttl` stores a value that is stale at once.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// let clock = aside::MockClock::new();
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder()
    ///     .time_to_live(Duration::from_secs(3600))
    ///     .clock(clock.clone())
    ///     .build()
    ///     .unwrap();
    /// cache.put_with_ttl(1, 10, Duration::from_secs(5));
    /// clock.advance(Duration::from_secs(5));
    /// assert_eq!(cache.get(&1), None);
    /// ```
    pub fn put_with_ttl(&self, key: K, value: V, ttl: Duration) {
        self.inner
            .put_with(key, value, Some(duration_nanos(ttl)), None);
    }

    /// Removes every value for which `predicate` returns `true` (moka's
    /// `invalidate_entries_if`, run at once). The predicate runs outside every lock, on a
    /// snapshot of each shard, and sees only values (not cached "not found" entries).
    ///
    /// Race-free like [`invalidate`](Self::invalidate): the values of loads in flight when it
    /// is called cannot be tested yet, so none of them is installed (their callers still get
    /// them, and the next read loads again).
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<String, u32> = aside::AsideCache::builder().build().unwrap();
    /// cache.put("tenant-1:user-7".to_string(), 7);
    /// cache.put("tenant-2:user-9".to_string(), 9);
    /// cache.invalidate_if(|key, _| key.starts_with("tenant-1:"));
    /// assert_eq!(cache.get("tenant-1:user-7"), None);
    /// assert_eq!(cache.get("tenant-2:user-9"), Some(9));
    /// ```
    pub fn invalidate_if(&self, mut predicate: impl FnMut(&K, &V) -> bool) {
        self.inner.registry.invalidate_matching(|_| true);
        self.inner
            .cache
            .invalidate_if(|k, slot| slot.value.as_ref().is_some_and(|v| predicate(k, v)));
    }

    /// The values [`get`](Self::get) would serve, as `(key, value)` clones, shard by shard (a
    /// snapshot per shard, taken under its lock). Stale values kept for fail-safe and
    /// due for a reload, cached "not found" entries and values hidden by a tag or namespace
    /// invalidation are skipped. No side effects: no counters, no policy update, no sliding.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// for i in 0..3 {
    ///     cache.put(i, i * 10);
    /// }
    /// let mut all: Vec<(u32, u32)> = cache.iter().collect();
    /// all.sort();
    /// assert_eq!(all, vec![(0, 0), (1, 10), (2, 20)]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        self.inner.cache.iter().filter_map(|(k, slot)| {
            if slot
                .mark
                .as_ref()
                .is_some_and(|m| self.inner.book.hidden(m))
            {
                return None;
            }
            let now = self.inner.now();
            if now >= slot.fresh_until && now >= slot.retry_after {
                return None; // stale, kept for fail-safe only
            }
            Some((k, slot.value?))
        })
    }

    /// Removes everything; loads in flight will not install.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// cache.put(1, 10);
    /// cache.invalidate_all();
    /// assert_eq!(cache.len(), 0);
    /// ```
    pub fn invalidate_all(&self) {
        let removed = self
            .inner
            .registry
            .invalidate_all_with(|| self.inner.cache.invalidate_all_deferred());
        for r in removed {
            self.inner.cache.notify_removed(r);
        }
    }

    /// Entries stored (including cached "not found" and stale values).
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// assert_eq!(cache.len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.inner.cache.len()
    }

    /// Whether nothing is stored.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// assert!(cache.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.inner.cache.is_empty()
    }

    /// Loads in flight right now (zero whenever the cache is quiet).
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// cache.get_with_blocking(1, || 1).unwrap();
    /// assert_eq!(cache.in_flight(), 0);
    /// ```
    pub fn in_flight(&self) -> usize {
        self.inner.registry.len()
    }

    /// The front door's counters: loads, errors, timeouts, coalesced waiters, early refreshes,
    /// stale values served, load latency.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// assert_eq!(cache.load_stats().loads, 0);
    /// ```
    pub fn load_stats(&self) -> LoadStats {
        self.inner.stats.snapshot()
    }

    /// The load-latency histogram (what [`LoadStats::latency`] summarizes), for exporters.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// cache.get_with_blocking(1, || 1).unwrap();
    /// assert_eq!(cache.load_latency_histogram().buckets().map(|(_, n)| n).sum::<u64>(), 1);
    /// ```
    pub fn load_latency_histogram(&self) -> LatencyHistogram {
        self.inner.stats.latency.histogram()
    }

    /// The underlying cache's counters (hits, misses, evictions).
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// cache.get_with_blocking(1, || 1).unwrap();
    /// assert_eq!(cache.cache_stats().misses, 1);
    /// ```
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// The total weight of the cached values (their count without a
    /// [`weigher`](AsideBuilder::weigher); a cached "not found" weighs 1).
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, String> = aside::AsideCache::builder()
    ///     .max_capacity(100)
    ///     .weigher(|_: &u32, v: &String| v.len() as u32)
    ///     .build()
    ///     .unwrap();
    /// cache.put(1, "hello".to_string());
    /// assert_eq!(cache.weighted_size(), 5);
    /// ```
    pub fn weighted_size(&self) -> u64 {
        self.inner.cache.weighted_size()
    }

    /// Checks the underlying cache's invariants; see [`Cache::validate`].
    ///
    /// # Errors
    ///
    /// The first broken invariant.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// cache.validate().unwrap();
    /// ```
    pub fn validate(&self) -> Result<(), crate::InvariantError> {
        self.inner.cache.validate()
    }
}

impl<K, V, P: EvictionPolicy> AsideCache<K, V, P> {
    /// The time to live `expire_after` chooses for `value` (user code: call it outside every
    /// lock), `None` without one or when it keeps the default. The Redis tier gives its copy
    /// the same lifetime.
    #[cfg(feature = "redis")]
    pub(crate) fn chosen_ttl(&self, key: &K, value: &V) -> Option<Duration> {
        self.inner.expire_after.as_ref().and_then(|f| f(key, value))
    }
}
