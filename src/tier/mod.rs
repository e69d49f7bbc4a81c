//! The Redis L2 tier (`redis` feature): [`TieredCache`], several application instances each
//! with its own [`AsideCache`] as L1, sharing one Redis as L2.
//!
//! ```text
//! get_or_load(k) ── L1 hit ─────────────────────────────────────────────▶ value
//!      │ L1 miss (single flight: one task per key and process goes on)
//!      ▼
//!  Redis GET ───── hit ─────────────────────────────── install in L1 ──▶ value
//!      │ miss
//!      ▼
//!  SET lock:k token NX PX lease ── won ──▶ loader ──▶ SET k PX ttl (if still holding the
//!      │ held by another instance                      lease) + release ─▶ L1 ──▶ value
//!      ▼
//!  poll GET every lock_poll, retrying the lock ── value appears ──▶ L1 ──▶ value
//!      │ lock_wait over
//!      ▼
//!  loader (the last resort; the value goes to L1 only) ──────────────────▶ value
//! ```
//!
//! `put` and `invalidate` update the local L1 at once, then, in one Redis transaction, write or
//! delete the value, delete its lock (so a load in flight cannot write back what it read before
//! the change) and `PUBLISH` a message that makes every other instance drop the key from its
//! L1. `docs/deployment.md` discusses TTL choice, failure modes and the backplane's gaps.
//!
//! The L2 is one Redis server ([`TieredCache::builder`]) or a Redis Cluster
//! ([`TieredCache::cluster_builder`]): there the keys carry a hash tag (`prefix{key}`, and
//! `lock:prefix{key}` in the same slot), transactions go to the key's primary,
//! `invalidate_all` scans every primary, and the backplane uses classic pub/sub through one
//! node at a time (`docs/deployment.md`, "Redis Cluster").
//!
//! # Guarantees
//!
//! ## One load per key across instances
//! While Redis is up and loads finish within `lock_lease`, one instance loads a cold key and
//! the others get its value from Redis. In-process single flight sits in front (the L2 fetch
//! and the load run as the L1's loader), so one process sends at most one lock attempt per key
//! at a time. A waiter that runs out of `lock_wait` loads for itself and does not write to
//! Redis.
//!
//! ## Invalidation
//! The invalidating instance's L1 is updated before the call returns; Redis in the same call
//! when it is reachable; other instances when they receive the message (normally within a
//! millisecond or two on a LAN). Own messages are ignored (already applied). A lost
//! subscription is detected by the end of its stream or an unanswered ping (every
//! `backplane_ping`), re-established with a backoff of at most 1 s, and **every
//! re-subscription clears the L1**, because messages published meanwhile are lost. While it is
//! lost, another instance's staleness is bounded by its L1 TTL, or by
//! [`disconnected_l1_ttl`](TierBuilder::disconnected_l1_ttl) (the L1 is cleared that often
//! until the subscription is back) plus the time to notice the loss.
//!
//! ## Degradation
//! Every Redis operation runs under `op_timeout` and a circuit breaker; with Redis down or slow
//! reads fall through to the loader (`degraded_loads`) and no call fails because of Redis.
//! A failed `invalidate`, `put` or `invalidate_all` is queued as a deletion (a deletion is
//! always safe to repeat; a late write-through could resurrect an old value) and replayed, in
//! order and coalesced per key, by one background task **until Redis answers**, however long
//! it is away. The queue holds at most `max_pending_invalidations` keys; past that it becomes
//! one prefix-wide clear (as `invalidate_all`; `invalidation_overflows`), which is still
//! correct. While a key's deletion is queued, this instance's reads do not trust Redis for it
//! (they load, as degraded loads). Recovery is automatic: the breaker half-opens after its
//! open period, the connection is re-established, the queue drains
//! (`pending_invalidations` back to 0), the backplane resubscribes. Pending invalidations
//! are lost if the last clone of the tier is dropped first (Redis then serves the old value
//! until its L2 TTL): [`TieredCache::flush_invalidations`] waits, with a limit, until they
//! have reached Redis.
//!
//! ## Panic and cancellation
//! A panicking loader panics its caller (the L1's waiters get
//! [`LoadError::Panicked`]); a held Redis lock is released by a
//! spawned task (or expires with its lease). A cancelled load releases its lock the same way.
//!
//! # Example
//!
//! With Redis unreachable the tier still answers, from the loader:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use aside::AsideCache;
//! use aside::tier::TieredCache;
//! use std::time::Duration;
//!
//! let l1: AsideCache<u64, String> = AsideCache::builder()
//!     .time_to_live(Duration::from_secs(30))
//!     .build()
//!     .unwrap();
//! // Port 1 refuses connections: Redis is "down".
//! let users = TieredCache::builder(l1, "redis://127.0.0.1:1/")
//!     .l2_ttl(Duration::from_secs(300))
//!     .build()
//!     .await
//!     .unwrap();
//! let name = users
//!     .get_or_load(42, || async { Ok::<_, std::io::Error>(Some("Alice".to_string())) })
//!     .await
//!     .unwrap();
//! assert_eq!(name.as_deref(), Some("Alice"));
//! assert_eq!(users.metrics().degraded_loads, 1);
//! # }
//! ```

mod backplane;
mod breaker;
mod builder;
mod codec;
mod l2;
mod lock;
mod metrics;
mod replay;

use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use tokio::task::JoinHandle;

pub use breaker::BreakerState;
pub use builder::TierBuilder;
pub use codec::{Codec, CodecError, DisplayKey, KeyCodec, Postcard};
pub use metrics::TierMetrics;

use crate::policy::{EvictionPolicy, WTinyLfu};
use crate::{AsideCache, LoadError};
use backplane::{Message, Scope};
use l2::L2;
use lock::LockGuard;
use metrics::Counters;
use replay::Replay;

/// What one Redis `GET` found.
enum Fetched<V> {
    Hit(V),
    Miss,
    Down,
}

#[derive(Debug, Clone)]
struct Settings {
    prefix: String,
    /// Hash-tagged Redis keys (`prefix{encoded}`): a Redis Cluster.
    cluster: bool,
    channel: String,
    l2_ttl_ms: u64,
    l2_jitter_ms: u64,
    lease_ms: u64,
    lock_wait: Duration,
    lock_poll: Duration,
}

struct Inner<K, V, P: EvictionPolicy> {
    l1: AsideCache<K, V, P>,
    l2: Arc<L2>,
    keys: Arc<dyn KeyCodec<K>>,
    codec: Arc<dyn Codec<V>>,
    settings: Settings,
    instance: u128,
    counters: Arc<Counters>,
    subscriber: Mutex<Option<JoinHandle<()>>>,
    replay: Arc<Replay>,
    replayer: JoinHandle<()>,
}

impl<K, V, P: EvictionPolicy> Drop for Inner<K, V, P> {
    fn drop(&mut self) {
        if let Some(task) = self.subscriber.get_mut().take() {
            task.abort();
        }
        self.replayer.abort();
    }
}

/// The Redis key of `encoded` under `prefix`: `prefix` + `encoded` on a single server,
/// `prefix{tag}` in a cluster, where the tag is `encoded` with a `\\` in front when it is
/// empty or begins with `}` or `\\` (injective, and never an empty tag, which Redis would
/// ignore). The lock is `lock:` + this key: with no brace in the prefix (the builder checks),
/// the value and its lock hash to one slot, so the lock scripts and the `DEL k lock:k`
/// transactions never span slots.
fn redis_key(prefix: &str, encoded: &str, cluster: bool) -> String {
    if !cluster {
        return format!("{prefix}{encoded}");
    }
    let escape = encoded.is_empty() || encoded.starts_with(['}', '\\']);
    let lead = if escape { "\\" } else { "" };
    format!("{prefix}{{{lead}{encoded}}}")
}

/// Escapes Redis glob characters so that `prefix` matches itself in `SCAN MATCH`.
fn glob_escape(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A duration in whole milliseconds for Redis's `PX`, at least 1.
fn ttl_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl<K, V, P> Inner<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    fn value_key(&self, encoded: &str) -> String {
        redis_key(&self.settings.prefix, encoded, self.settings.cluster)
    }

    fn l2_ttl_ms(&self) -> u64 {
        let s = &self.settings;
        let jitter = if s.l2_jitter_ms == 0 {
            0
        } else {
            rand::rng().random_range(0..s.l2_jitter_ms)
        };
        s.l2_ttl_ms.saturating_add(jitter)
    }

    async fn l2_get(&self, rkey: &str) -> Fetched<V> {
        let got = self
            .l2
            .run(|mut c| async move {
                redis::cmd("GET")
                    .arg(rkey)
                    .query_async::<Option<Vec<u8>>>(&mut c)
                    .await
            })
            .await;
        match got {
            Ok(Some(bytes)) => match self.codec.decode(&bytes) {
                Ok(v) => {
                    Counters::bump(&self.counters.l2_hits);
                    Fetched::Hit(v)
                }
                Err(_) => {
                    Counters::bump(&self.counters.codec_errors);
                    Fetched::Miss
                }
            },
            Ok(None) => Fetched::Miss,
            Err(_) => Fetched::Down,
        }
    }

    async fn load_degraded<E, F, Fut>(&self, loader: F) -> Result<Option<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        Counters::bump(&self.counters.degraded_loads);
        Counters::bump(&self.counters.loads);
        loader().await
    }

    /// The L1's loader: Redis, the distributed lock, the user's loader.
    /// The Redis expiry of `value` for `key`, in ms: the L1's `expire_after` choice when it
    /// makes one (the copy in Redis lives as long as the entry's own TTL), else the L2 TTL.
    fn l2_ttl_for(&self, key: &K, value: &V) -> u64 {
        self.l1
            .chosen_ttl(key, value)
            .map_or_else(|| self.l2_ttl_ms(), ttl_ms)
    }

    async fn fetch_or_load<E, F, Fut>(
        self: Arc<Self>,
        key: K,
        encoded: String,
        loader: F,
    ) -> Result<Option<V>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        let rkey = self.value_key(&encoded);
        if self.replay.is_pending(&rkey) {
            // Redis may still hold what a queued invalidation is about to delete.
            return self.load_degraded(loader).await;
        }
        match self.l2_get(&rkey).await {
            Fetched::Hit(v) => {
                // Inside the front door's `aside.load` span: this load was an L2 hit.
                #[cfg(feature = "tracing")]
                tracing::debug!(target: "aside::tier", "L2 hit");
                return Ok(Some(v));
            }
            Fetched::Miss => Counters::bump(&self.counters.l2_misses),
            Fetched::Down => return self.load_degraded(loader).await,
        }
        let s = &self.settings;
        let lock_key = format!("lock:{rkey}");
        let token = lock::new_token(self.instance);
        let now = tokio::time::Instant::now();
        // The builder bounds lock_wait to a day; checked all the same.
        let deadline = now.checked_add(s.lock_wait).unwrap_or(now);
        let mut waited = false;
        let guard = loop {
            match lock::try_acquire(&self.l2, &lock_key, &token, s.lease_ms).await {
                Ok(true) => break LockGuard::new(Arc::clone(&self.l2), lock_key, token),
                Ok(false) => {}
                Err(_) => return self.load_degraded(loader).await,
            }
            if !waited {
                waited = true;
                Counters::bump(&self.counters.lock_waited);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                // The holder may have crashed or be slow: load ourselves, write nothing.
                Counters::bump(&self.counters.lock_fallback_loads);
                Counters::bump(&self.counters.loads);
                return loader().await;
            }
            tokio::time::sleep(s.lock_poll.min(deadline - now)).await;
            match self.l2_get(&rkey).await {
                Fetched::Hit(v) => return Ok(Some(v)),
                Fetched::Miss => {}
                Fetched::Down => return self.load_degraded(loader).await,
            }
        };
        Counters::bump(&self.counters.lock_acquired);
        // The previous holder may have installed between our GET and our SET NX.
        if let Fetched::Hit(v) = self.l2_get(&rkey).await {
            guard.release().await;
            return Ok(Some(v));
        }
        Counters::bump(&self.counters.loads);
        let result = loader().await;
        match &result {
            Ok(Some(v)) => match self.codec.encode(v) {
                Ok(bytes) => match guard.install(&rkey, &bytes, self.l2_ttl_for(&key, v)).await {
                    Ok(true) => Counters::bump(&self.counters.l2_writes),
                    Ok(false) => Counters::bump(&self.counters.lock_lost),
                    // Not retried: the next miss writes again. The guard's drop releases the
                    // lock.
                    Err(_) => self.counters.writes_dropped(1, "loaded value"),
                },
                Err(_) => {
                    Counters::bump(&self.counters.codec_errors);
                    guard.release().await;
                }
            },
            _ => guard.release().await,
        }
        result
    }
}

/// An L1 [`AsideCache`] in front of a shared Redis L2; see the [module docs](self) for the
/// read path and the guarantees.
///
/// Cheap to clone (an `Arc`); clones share the L1, the connection and the subscriber task.
/// Build one per application instance (and per cache), each with its own connections.
///
/// # Example
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use aside::AsideCache;
/// use aside::tier::TieredCache;
/// use std::time::Duration;
///
/// let l1: AsideCache<u64, String> = AsideCache::builder()
///     .max_capacity(10_000)
///     .time_to_live(Duration::from_secs(30)) // short: the L1 is a copy
///     .build()?;
/// let users = TieredCache::builder(l1, "redis://127.0.0.1:6379/")
///     .key_prefix("app:user:")
///     .l2_ttl(Duration::from_secs(300))
///     .build()
///     .await?;
///
/// let name = users
///     .get_or_load(42, || async { Ok::<_, std::io::Error>(Some("Alice".to_string())) })
///     .await?;
/// assert_eq!(name.as_deref(), Some("Alice"));
///
/// // After writing the database: drop the key everywhere.
/// users.invalidate(&42).await;
/// # Ok(())
/// # }
/// ```
pub struct TieredCache<K, V, P: EvictionPolicy = WTinyLfu> {
    inner: Arc<Inner<K, V, P>>,
}

impl<K, V, P: EvictionPolicy> Clone for TieredCache<K, V, P> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V, P: EvictionPolicy> fmt::Debug for TieredCache<K, V, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredCache")
            .field("instance", &format_args!("{:032x}", self.inner.instance))
            .field("prefix", &self.inner.settings.prefix)
            .field("channel", &self.inner.settings.channel)
            .finish_non_exhaustive()
    }
}

/// The error of an L1 load that only looked in Redis ([`TieredCache::get`]).
struct NotInL2;

impl<K, V, P> TieredCache<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    /// The value for `key`: from the L1, else from Redis, else from `loader` (run by one
    /// instance for all, under the distributed lock), then stored in Redis (with the L2 TTL)
    /// and in the L1 (with the L1's TTL). The loader returns `Ok(None)` for "not found", which
    /// is not stored in Redis (the L1 caches it only with its `negative_ttl`).
    ///
    /// # Errors
    ///
    /// As [`AsideCache::get_or_load`]: the loader's error (shared by the in-process waiters),
    /// [`LoadError::Timeout`], [`LoadError::Panicked`], [`LoadError::Reentrant`]. Redis
    /// failures are never errors: the loader answers instead.
    ///
    /// # Panics
    ///
    /// If this caller's own loader panics, after the in-process waiters have been released and
    /// the Redis lock handed to a release task.
    ///
    /// # Cancellation
    ///
    /// Dropping the future abandons the load as in the L1 (a waiter takes over); a held Redis
    /// lock is released by a spawned task.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # #[tokio::main]
    /// # async fn main() {
    /// # let l1: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
    /// # let users = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/").build().await.unwrap();
    /// let name = users
    ///     .get_or_load(42, || async { Ok::<_, std::io::Error>(Some("Alice".to_string())) })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(name.as_deref(), Some("Alice"));
    /// # }
    /// ```
    pub async fn get_or_load<E, F, Fut>(&self, key: K, loader: F) -> Result<Option<V>, LoadError<E>>
    where
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
    {
        let encoded = self.inner.keys.encode(&key);
        let inner = Arc::clone(&self.inner);
        let owned = key.clone();
        self.inner
            .l1
            .get_or_load(key, move || inner.fetch_or_load(owned, encoded, loader))
            .await
    }

    /// The value for `key` from the L1 or Redis (installed in the L1 on a Redis hit); never
    /// loads. `None` when neither has it or Redis is unavailable. `key` may be a borrowed form
    /// of `K` (`&str` for `String` keys); it is made owned to encode the Redis key.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # #[tokio::main]
    /// # async fn main() {
    /// # let l1: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
    /// # let users = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/").build().await.unwrap();
    /// users.put(7, "Bob".to_string()).await;
    /// assert_eq!(users.get(&7).await.as_deref(), Some("Bob"));
    /// # }
    /// ```
    pub async fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: ToOwned<Owned = K> + ?Sized,
    {
        let key: K = key.to_owned();
        let rkey = self.inner.value_key(&self.inner.keys.encode(&key));
        let inner = Arc::clone(&self.inner);
        let found = self
            .inner
            .l1
            .try_get_with(key, move || async move {
                if inner.replay.is_pending(&rkey) {
                    return Err(NotInL2);
                }
                match inner.l2_get(&rkey).await {
                    Fetched::Hit(v) => Ok(v),
                    Fetched::Miss => {
                        Counters::bump(&inner.counters.l2_misses);
                        Err(NotInL2)
                    }
                    Fetched::Down => Err(NotInL2),
                }
            })
            .await;
        found.ok()
    }

    /// Write-through after writing the source of truth: stores `value` in the L1 at once, then
    /// in Redis (with the L2 TTL, or the lifetime the L1's
    /// [`expire_after`](crate::AsideBuilder::expire_after) chooses for it, deleting any lock on
    /// the key so a load in flight cannot overwrite it) and publishes an invalidation so that other instances drop their copy.
    /// If Redis is unavailable, the deletion of the Redis copy and the message are queued and
    /// replayed when Redis answers again (see [Degradation](self#degradation)).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # #[tokio::main]
    /// # async fn main() {
    /// # let l1: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
    /// # let users = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/").build().await.unwrap();
    /// users.put(42, "Alice Smith".to_string()).await;
    /// # }
    /// ```
    pub async fn put(&self, key: K, value: V) {
        self.put_inner(key, value, None).await;
    }

    /// [`put`](Self::put) with this entry's own time to live, in both tiers: the L1 keeps it
    /// fresh for `ttl` ([`AsideCache::put_with_ttl`]) and Redis expires it after `ttl`
    /// (`SET ... PX`, at least a millisecond) instead of the tier's L2 TTL.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # #[tokio::main]
    /// # async fn main() {
    /// # let l1: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
    /// # let users = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/").build().await.unwrap();
    /// use std::time::Duration;
    /// // A session that ends in 90 s, whatever the tier's default TTLs.
    /// users.put_with_ttl(7, "session".to_string(), Duration::from_secs(90)).await;
    /// # }
    /// ```
    pub async fn put_with_ttl(&self, key: K, value: V, ttl: Duration) {
        self.put_inner(key, value, Some(ttl)).await;
    }

    async fn put_inner(&self, key: K, value: V, ttl: Option<Duration>) {
        let inner = &self.inner;
        let encoded = inner.keys.encode(&key);
        let bytes = inner.codec.encode(&value);
        // The entry's lifetime in both tiers: the caller's, else what `expire_after` chooses
        // (asked once, before the value moves into the L1), else each tier's default.
        let ttl = ttl.or_else(|| inner.l1.chosen_ttl(&key, &value));
        let redis_ttl = ttl.map_or_else(|| inner.l2_ttl_ms(), ttl_ms);
        match ttl {
            Some(ttl) => inner.l1.put_with_ttl(key, value, ttl),
            None => inner.l1.put(key, value),
        }
        let rkey = inner.value_key(&encoded);
        let message = Message::new(inner.instance, Scope::Key(encoded)).encode();
        let Ok(bytes) = bytes else {
            Counters::bump(&inner.counters.codec_errors);
            return self.delete_everywhere(rkey, message).await;
        };
        let channel = &inner.settings.channel;
        let written = inner
            .l2
            .run(|mut c| {
                let (rkey, message) = (&rkey, &message);
                async move {
                    let mut pipe = redis::pipe();
                    pipe.atomic()
                        .cmd("SET")
                        .arg(rkey)
                        .arg(bytes)
                        .arg("PX")
                        .arg(redis_ttl)
                        .ignore()
                        .cmd("DEL")
                        .arg(format!("lock:{rkey}"))
                        .ignore()
                        .cmd("PUBLISH")
                        .arg(channel)
                        .arg(message)
                        .ignore();
                    c.pipe_on::<()>(&pipe, rkey).await
                }
            })
            .await;
        match written {
            Ok(()) => {
                Counters::bump(&inner.counters.l2_writes);
                Counters::bump(&inner.counters.backplane_sent);
                inner.replay.succeeded_key(&rkey);
            }
            Err(_) => inner.replay.failed_key(rkey, message),
        }
    }

    async fn delete_everywhere(&self, rkey: String, message: String) {
        let inner = &self.inner;
        let deleted =
            replay::delete_and_publish(&inner.l2, &rkey, &inner.settings.channel, &message).await;
        match deleted {
            Ok(()) => {
                Counters::bump(&inner.counters.l2_writes);
                Counters::bump(&inner.counters.backplane_sent);
                inner.replay.succeeded_key(&rkey);
            }
            Err(_) => inner.replay.failed_key(rkey, message),
        }
    }

    /// Delete-on-write after writing the source of truth: drops `key` from the L1 at once (a
    /// load in flight will not install), deletes it and its lock in Redis and publishes an
    /// invalidation so that other instances drop it too. If Redis is unavailable, the deletion
    /// and the message are queued and replayed when Redis answers again, coalesced with later
    /// invalidations of the key (see [Degradation](self#degradation)).
    ///
    /// # Example
    ///
    /// ```no_run
    /// # #[tokio::main]
    /// # async fn main() {
    /// # let l1: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
    /// # let users = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/").build().await.unwrap();
    /// users.invalidate(&42).await;
    /// assert_eq!(users.l1().get(&42), None);
    /// # }
    /// ```
    pub async fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: ToOwned<Owned = K> + ?Sized,
    {
        let key: K = key.to_owned();
        let key = &key;
        let inner = &self.inner;
        inner.l1.invalidate::<K>(key);
        let encoded = inner.keys.encode(key);
        let rkey = inner.value_key(&encoded);
        let message = Message::new(inner.instance, Scope::Key(encoded)).encode();
        self.delete_everywhere(rkey, message).await;
        // Again, now that Redis no longer holds the key (or its deletion is queued, and reads
        // skip Redis for it): a read of this instance between the first L1 invalidation and
        // the Redis delete may have fetched the old value from Redis and installed it, and
        // this instance ignores its own message.
        inner.l1.invalidate::<K>(key);
    }

    /// Clears the L1, deletes every key under the prefix in Redis (`SCAN` + `UNLINK`, not
    /// atomic: a value loaded during the scan may survive) and tells every instance to clear
    /// its L1. If Redis is unavailable, the clear is queued (superseding queued per-key
    /// deletions) and replayed when Redis answers again.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # #[tokio::main]
    /// # async fn main() {
    /// # let l1: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
    /// # let users = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/").build().await.unwrap();
    /// users.invalidate_all().await;
    /// assert!(users.l1().is_empty());
    /// # }
    /// ```
    pub async fn invalidate_all(&self) {
        let inner = &self.inner;
        inner.l1.invalidate_all();
        let message = Message::new(inner.instance, Scope::All).encode();
        let (prefix, channel) = (&inner.settings.prefix, &inner.settings.channel);
        let cleared = replay::clear_and_publish(&inner.l2, prefix, channel, &message).await;
        if cleared.is_ok() {
            Counters::bump(&inner.counters.l2_writes);
            Counters::bump(&inner.counters.backplane_sent);
            inner.replay.succeeded_all();
        } else {
            inner.replay.failed_all(message);
        }
        // As in `invalidate`: what this instance's reads fetched from Redis during the clear.
        inner.l1.invalidate_all();
    }

    /// Invalidates every entry of this instance's L1 for which `predicate` returns `true`, as
    /// [`invalidate`](Self::invalidate) does each key: dropped from the L1 at once (race-free
    /// with loads in flight, as [`AsideCache::invalidate_if`]), deleted from Redis and
    /// announced to the other instances, which drop their copies. Returns how many keys
    /// matched.
    ///
    /// The predicate sees keys and values, so it can only be evaluated where they are: keys
    /// that only Redis or other instances hold are not tested. To drop a whole family of keys
    /// everywhere, give them a common tag or namespace in the L1 and clear Redis by
    /// [`invalidate_all`](Self::invalidate_all), or invalidate the keys by name.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # #[tokio::main]
    /// # async fn main() {
    /// # let l1: aside::AsideCache<String, u32> = aside::AsideCache::builder().build().unwrap();
    /// # let users = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/").build().await.unwrap();
    /// users.put("tenant-1:user-7".to_string(), 7).await;
    /// let dropped = users.invalidate_if(|key, _| key.starts_with("tenant-1:")).await;
    /// assert_eq!(dropped, 1);
    /// # }
    /// ```
    pub async fn invalidate_if(&self, mut predicate: impl FnMut(&K, &V) -> bool) -> usize {
        let inner = &self.inner;
        let mut matched = Vec::new();
        inner.l1.invalidate_if(|k, v| {
            let hit = predicate(k, v);
            if hit {
                matched.push(k.clone());
            }
            hit
        });
        for key in &matched {
            let encoded = inner.keys.encode(key);
            let rkey = inner.value_key(&encoded);
            let message = Message::new(inner.instance, Scope::Key(encoded)).encode();
            self.delete_everywhere(rkey, message).await;
        }
        // As in `invalidate`: what reads fetched from Redis before its copies were deleted.
        for key in &matched {
            inner.l1.invalidate(key);
        }
        matched.len()
    }

    /// The values this instance's L1 would serve, as `(key, value)` clones
    /// ([`AsideCache::iter`]); Redis is not scanned.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # #[tokio::main]
    /// # async fn main() {
    /// # let l1: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
    /// # let users = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/").build().await.unwrap();
    /// users.put(7, "Bob".to_string()).await;
    /// assert_eq!(users.iter().count(), 1);
    /// # }
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        self.inner.l1.iter()
    }

    /// The tier's counters, with the L1's hits and misses and the breaker's state.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let l1: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
    /// let users = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1:1/")
    ///     .build()
    ///     .await
    ///     .unwrap();
    /// let m = users.metrics();
    /// assert_eq!(m.loads, 0);
    /// assert!(!m.backplane_connected); // nothing listens on port 1
    /// # }
    /// ```
    pub fn metrics(&self) -> TierMetrics {
        let inner = &self.inner;
        let mut m = inner.counters.snapshot();
        let l1 = inner.l1.cache_stats();
        m.l1_hits = l1.hits;
        m.l1_misses = l1.misses;
        m.breaker = inner.l2.breaker.state();
        m.breaker_opened = inner.l2.breaker.times_opened();
        m.pending_invalidations = inner.replay.len() as u64;
        m
    }

    /// The L1 front door (its own statistics, direct reads).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let l1: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
    /// let users = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1:1/").build().await.unwrap();
    /// assert!(users.l1().is_empty());
    /// # }
    /// ```
    pub fn l1(&self) -> &AsideCache<K, V, P> {
        &self.inner.l1
    }

    /// This instance's id, as carried by its backplane messages and lock tokens.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let l1: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
    /// let users = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1:1/").build().await.unwrap();
    /// assert_eq!(users.instance_id(), users.clone().instance_id());
    /// # }
    /// ```
    pub fn instance_id(&self) -> u128 {
        self.inner.instance
    }

    /// Waits, for at most `limit`, until every invalidation that Redis did not take when it
    /// was made (queued for replay, see [Degradation](self#degradation)) has reached it. Call
    /// it before dropping the last clone of a tier that may have lost Redis: the replay stops
    /// with the tier, and a deletion still queued then leaves the old value in Redis for
    /// every other instance until its L2 TTL.
    ///
    /// # Errors
    ///
    /// The number of invalidations still queued when `limit` ran out (Redis still away): per-key
    /// deletions, plus one for a prefix-wide clear, as
    /// [`TierMetrics::pending_invalidations`] counts them.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::time::Duration;
    /// # let l1: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
    /// let users = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1:1/").build().await.unwrap();
    /// // Nothing was invalidated: nothing to wait for.
    /// assert_eq!(users.flush_invalidations(Duration::from_secs(5)).await, Ok(()));
    /// # }
    /// ```
    pub async fn flush_invalidations(&self, limit: Duration) -> Result<(), usize> {
        let replay = &self.inner.replay;
        if tokio::time::timeout(limit, replay.drained()).await.is_ok() {
            return Ok(());
        }
        match replay.len() {
            0 => Ok(()),
            pending => Err(pending),
        }
    }

    /// Stops the backplane subscriber (also stopped when the last clone is dropped). The
    /// cache still reads and writes through Redis afterwards but no longer hears other
    /// instances' invalidations, so call it when the instance is going away. The replay of
    /// queued invalidations goes on until the last clone is dropped, and what is still queued
    /// then is lost: call [`flush_invalidations`](Self::flush_invalidations) first.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// # let l1: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
    /// let users = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1:1/").build().await.unwrap();
    /// users.shutdown().await;
    /// assert!(!users.metrics().backplane_connected);
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        let task = self.inner.subscriber.lock().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        self.inner
            .counters
            .backplane_connected
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Runs `f`, swallowing a panic from user code reached through it (eviction listeners run by
/// L1 invalidations): the subscriber must outlive them.
pub(crate) fn shielded(f: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(f));
}

#[cfg(test)]
mod tests {
    use super::{glob_escape, redis_key};

    /// The slot rule of Redis Cluster: the hash tag, if any.
    fn tag(key: &str) -> &str {
        match key.find('{') {
            Some(open) => match key[open + 1..].find('}') {
                Some(0) | None => key,
                Some(len) => &key[open + 1..open + 1 + len],
            },
            None => key,
        }
    }

    #[test]
    fn cluster_keys_share_the_slot_of_their_lock_and_stay_distinct() {
        assert_eq!(redis_key("app:", "42", false), "app:42");
        assert_eq!(redis_key("app:", "42", true), "app:{42}");
        let encodings = ["42", "", "}", "}x", "\\", "\\}", "a}b", "{x}", "a b"];
        let mut seen = std::collections::HashSet::new();
        for e in encodings {
            let key = redis_key("app:", e, true);
            assert!(seen.insert(key.clone()), "{e:?} collides");
            let lock = format!("lock:{key}");
            assert_ne!(tag(&key), key, "{e:?}: no hash tag in {key}");
            assert_eq!(tag(&key), tag(&lock), "{e:?}: {key} and {lock}");
        }
    }

    #[test]
    fn glob_escape_quotes_every_pattern_character() {
        assert_eq!(glob_escape("app:user:"), "app:user:");
        assert_eq!(glob_escape(r"a*b?[c]\d"), r"a\*b\?\[c\]\\d");
    }
}
