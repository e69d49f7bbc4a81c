//! [`TierBuilder`]: the settings of a [`TieredCache`], checked by `build`.

use std::fmt;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::Rng;
use redis::IntoConnectionInfo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::backplane::Subscriber;
use super::breaker::Breaker;
use super::codec::{Codec, DisplayKey, KeyCodec, Postcard};
use super::l2::{Endpoint, L2};
use super::metrics::Counters;
use super::replay::Replay;
use super::{Inner, Settings, TieredCache};
use crate::engine::expiry::{Clock, SystemClock, duration_nanos};
use crate::policy::{EvictionPolicy, WTinyLfu};
use crate::{AsideCache, ConfigError};

/// The longest `l2_ttl` and `l2_ttl_jitter`: far beyond any useful TTL, far below what Redis's
/// `PX` accepts.
const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The longest timer setting (`lock_lease`, `lock_wait`, `lock_poll`, `op_timeout`, the
/// breaker's open period, `write_retry_window`, `backplane_ping`): a longer one is a mistake
/// (a crashed lock holder would block its key, a hung Redis every caller, for that long).
const MAX_TIMER: Duration = Duration::from_secs(24 * 3600);

/// Builds a [`TieredCache`]; every setting but the L1 and the Redis address has a default.
///
/// | setting | default |
/// |---|---|
/// | `key_prefix` | `"aside:"` (Redis key = prefix + encoded key; lock = `lock:` + Redis key) |
/// | `channel` | prefix + `"invalidations"` |
/// | `l2_ttl` | 10 min |
/// | `l2_ttl_jitter` | a tenth of `l2_ttl` |
/// | `lock_lease` | 2 s: longer than your slowest normal load |
/// | `lock_wait` | `lock_lease` + 100 ms (the seeds' choice) |
/// | `lock_poll` | 20 ms |
/// | `op_timeout` | 250 ms, per Redis operation, connecting included |
/// | `breaker(failures, open_for)` | 5 consecutive failures, open for 5 s |
/// | `max_pending_invalidations` | 100 000 keys queued for replay, then one prefix-wide clear |
/// | `write_retry_window` | 30 s: how long Redis may answer a queued invalidation with errors (zero: failed invalidations are dropped at once) |
/// | `backplane_ping` | 1 s |
/// | `disconnected_l1_ttl` | none: while disconnected, the L1's own TTL bounds staleness |
/// | `clock` | the system clock (the breaker's time) |
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use aside::AsideCache;
/// use aside::tier::TieredCache;
/// use std::time::Duration;
///
/// let l1: AsideCache<u64, u64> = AsideCache::builder().build().unwrap();
/// let err = TieredCache::builder(l1, "redis://127.0.0.1/")
///     .op_timeout(Duration::ZERO)
///     .build()
///     .await
///     .unwrap_err();
/// assert_eq!(err.field(), "op_timeout");
/// # }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct TierBuilder<K, V, P: EvictionPolicy = WTinyLfu> {
    l1: AsideCache<K, V, P>,
    endpoint: Result<Endpoint, ConfigError>,
    keys: Arc<dyn KeyCodec<K>>,
    codec: Arc<dyn Codec<V>>,
    prefix: String,
    channel: Option<String>,
    l2_ttl: Duration,
    l2_jitter: Option<Duration>,
    lease: Duration,
    lock_wait: Option<Duration>,
    lock_poll: Duration,
    op_timeout: Duration,
    breaker: (u32, Duration),
    write_retry_window: Duration,
    max_pending: usize,
    disconnected_l1_ttl: Option<Duration>,
    backplane_ping: Duration,
    clock: Option<Arc<dyn Clock>>,
}

/// The settings; the Redis address without its password (only whether it parsed).
impl<K, V, P: EvictionPolicy> fmt::Debug for TierBuilder<K, V, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TierBuilder")
            .field("l1", &self.l1)
            .field("redis_address_valid", &self.endpoint.is_ok())
            .field(
                "cluster",
                &self.endpoint.as_ref().is_ok_and(Endpoint::is_cluster),
            )
            .field("key_prefix", &self.prefix)
            .field("channel", &self.channel)
            .field("l2_ttl", &self.l2_ttl)
            .field("l2_ttl_jitter", &self.l2_jitter)
            .field("lock_lease", &self.lease)
            .field("lock_wait", &self.lock_wait)
            .field("lock_poll", &self.lock_poll)
            .field("op_timeout", &self.op_timeout)
            .field("breaker", &self.breaker)
            .field("write_retry_window", &self.write_retry_window)
            .field("max_pending_invalidations", &self.max_pending)
            .field("disconnected_l1_ttl", &self.disconnected_l1_ttl)
            .field("backplane_ping", &self.backplane_ping)
            .field("clock", &self.clock.is_some())
            .finish_non_exhaustive()
    }
}

impl<K, V, P> TieredCache<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    /// A builder over `l1` and the Redis at `redis` (a URL such as `"redis://127.0.0.1:6379/"`
    /// or a [`redis::ConnectionInfo`]), with keys encoded by [`DisplayKey`] and values by
    /// [`Postcard`].
    ///
    /// # Example
    ///
    /// ```
    /// let l1: aside::AsideCache<String, Vec<u8>> = aside::AsideCache::builder().build().unwrap();
    /// let b = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/");
    /// # let _ = b;
    /// ```
    pub fn builder(l1: AsideCache<K, V, P>, redis: impl IntoConnectionInfo) -> TierBuilder<K, V, P>
    where
        K: fmt::Display + FromStr,
        V: Serialize + DeserializeOwned,
    {
        Self::builder_with_codecs(l1, redis, DisplayKey, Postcard)
    }

    /// A builder with your own key and value codecs (for types without `Display`/`FromStr` or
    /// serde).
    ///
    /// # Example
    ///
    /// ```
    /// use aside::tier::{Codec, CodecError, DisplayKey, TieredCache};
    ///
    /// struct Raw;
    /// impl Codec<Vec<u8>> for Raw {
    ///     fn encode(&self, v: &Vec<u8>) -> Result<Vec<u8>, CodecError> { Ok(v.clone()) }
    ///     fn decode(&self, b: &[u8]) -> Result<Vec<u8>, CodecError> { Ok(b.to_vec()) }
    /// }
    /// let l1: aside::AsideCache<u64, Vec<u8>> = aside::AsideCache::builder().build().unwrap();
    /// let b = TieredCache::builder_with_codecs(l1, "redis://127.0.0.1/", DisplayKey, Raw);
    /// # let _ = b;
    /// ```
    pub fn builder_with_codecs(
        l1: AsideCache<K, V, P>,
        redis: impl IntoConnectionInfo,
        keys: impl KeyCodec<K>,
        codec: impl Codec<V>,
    ) -> TierBuilder<K, V, P> {
        let endpoint = redis::Client::open(redis)
            .map(Endpoint::Single)
            .map_err(|e| ConfigError::new("redis_url", format!("does not parse: {e}")));
        TierBuilder::new(l1, endpoint, Arc::new(keys), Arc::new(codec))
    }

    /// A builder over `l1` and the Redis Cluster reached through `nodes` (URLs such as
    /// `"redis://10.0.0.1:7000/"`, or [`redis::ConnectionInfo`]s; list several, the client
    /// discovers the rest), with keys encoded by [`DisplayKey`] and values by [`Postcard`].
    ///
    /// In a cluster the Redis key is `key_prefix{encoded key}` (a hash tag, so that a value
    /// and its `lock:` share a slot) and the backplane subscribes through one node at a time,
    /// moving to the next listed node when it is lost; `docs/deployment.md` ("Redis
    /// Cluster") has the details. `build` checks the list: an empty list or an address that
    /// does not parse is a [`ConfigError`] for the field `cluster_nodes`.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let l1: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
    /// let b = aside::tier::TieredCache::cluster_builder(
    ///     l1,
    ///     ["redis://127.0.0.1:7000/", "redis://127.0.0.1:7001/", "redis://127.0.0.1:7002/"],
    /// )
    /// .key_prefix("app:user:");
    /// # let _ = b;
    /// let l1: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
    /// let none: [&str; 0] = [];
    /// let err = aside::tier::TieredCache::cluster_builder(l1, none).build().await.unwrap_err();
    /// assert_eq!(err.field(), "cluster_nodes");
    /// # }
    /// ```
    pub fn cluster_builder<N: IntoConnectionInfo>(
        l1: AsideCache<K, V, P>,
        nodes: impl IntoIterator<Item = N>,
    ) -> TierBuilder<K, V, P>
    where
        K: fmt::Display + FromStr,
        V: Serialize + DeserializeOwned,
    {
        Self::cluster_builder_with_codecs(l1, nodes, DisplayKey, Postcard)
    }

    /// [`cluster_builder`](Self::cluster_builder) with your own key and value codecs.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::tier::{DisplayKey, Postcard, TieredCache};
    ///
    /// let l1: aside::AsideCache<u64, Vec<u8>> = aside::AsideCache::builder().build().unwrap();
    /// let b = TieredCache::cluster_builder_with_codecs(
    ///     l1,
    ///     ["redis://127.0.0.1:7000/"],
    ///     DisplayKey,
    ///     Postcard,
    /// );
    /// # let _ = b;
    /// ```
    pub fn cluster_builder_with_codecs<N: IntoConnectionInfo>(
        l1: AsideCache<K, V, P>,
        nodes: impl IntoIterator<Item = N>,
        keys: impl KeyCodec<K>,
        codec: impl Codec<V>,
    ) -> TierBuilder<K, V, P> {
        let endpoint = nodes
            .into_iter()
            .enumerate()
            .map(|(i, node)| {
                node.into_connection_info().map_err(|e| {
                    ConfigError::new("cluster_nodes", format!("node {i} does not parse: {e}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .and_then(|nodes| {
                if nodes.is_empty() {
                    Err(ConfigError::new(
                        "cluster_nodes",
                        "must list at least one node of the cluster",
                    ))
                } else {
                    Ok(Endpoint::Cluster(nodes))
                }
            });
        TierBuilder::new(l1, endpoint, Arc::new(keys), Arc::new(codec))
    }
}

impl<K, V, P: EvictionPolicy> TierBuilder<K, V, P> {
    fn new(
        l1: AsideCache<K, V, P>,
        endpoint: Result<Endpoint, ConfigError>,
        keys: Arc<dyn KeyCodec<K>>,
        codec: Arc<dyn Codec<V>>,
    ) -> Self {
        Self {
            l1,
            endpoint,
            keys,
            codec,
            prefix: "aside:".to_string(),
            channel: None,
            l2_ttl: Duration::from_secs(600),
            l2_jitter: None,
            lease: Duration::from_secs(2),
            lock_wait: None,
            lock_poll: Duration::from_millis(20),
            op_timeout: Duration::from_millis(250),
            breaker: (5, Duration::from_secs(5)),
            write_retry_window: Duration::from_secs(30),
            max_pending: 100_000,
            disconnected_l1_ttl: None,
            backplane_ping: Duration::from_secs(1),
            clock: None,
        }
    }
}

macro_rules! setter {
    ($(#[$doc:meta])* $name:ident: $ty:ty => $field:ident = $value:expr) => {
        $(#[$doc])*
        pub fn $name(mut self, $name: $ty) -> Self {
            self.$field = $value($name);
            self
        }
    };
}

impl<K, V, P: EvictionPolicy> TierBuilder<K, V, P> {
    setter!(
        /// How long a value lives in Redis (plus jitter). Longer than the L1's TTL: Redis is
        /// shared and invalidated, the L1 is a short-lived copy.
        ///
        /// # Example
        ///
        /// ```
        /// # use std::time::Duration;
        /// # let l1: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
        /// let b = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/")
        ///     .l2_ttl(Duration::from_secs(3600));
        /// # let _ = b;
        /// ```
        l2_ttl: Duration => l2_ttl = |v| v
    );
    setter!(
        /// Adds `random(0..jitter)` to every L2 TTL, so that values loaded together do not
        /// expire together.
        ///
        /// # Example
        ///
        /// ```
        /// # use std::time::Duration;
        /// # let l1: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
        /// let b = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/")
        ///     .l2_ttl_jitter(Duration::from_secs(30));
        /// # let _ = b;
        /// ```
        l2_ttl_jitter: Duration => l2_jitter = Some
    );
    setter!(
        /// The distributed lock's lease (`PX`): longer than the expected load time, short
        /// enough that a crashed holder does not block the key for long.
        ///
        /// # Example
        ///
        /// ```
        /// # use std::time::Duration;
        /// # let l1: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
        /// let b = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/")
        ///     .lock_lease(Duration::from_millis(500));
        /// # let _ = b;
        /// ```
        lock_lease: Duration => lease = |v| v
    );
    setter!(
        /// How long an instance that did not get the lock polls Redis for the holder's value
        /// before loading itself. Zero: load at once. Keep the L1's `lease` longer than this
        /// plus the load time, so that in-process waiters do not start a second attempt.
        ///
        /// # Example
        ///
        /// ```
        /// # use std::time::Duration;
        /// # let l1: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
        /// let b = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/")
        ///     .lock_wait(Duration::from_millis(600));
        /// # let _ = b;
        /// ```
        lock_wait: Duration => lock_wait = Some
    );
    setter!(
        /// The interval of a lock waiter's polls (`GET`, then `SET NX` again in case the holder
        /// gave up).
        ///
        /// # Example
        ///
        /// ```
        /// # use std::time::Duration;
        /// # let l1: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
        /// let b = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/")
        ///     .lock_poll(Duration::from_millis(10));
        /// # let _ = b;
        /// ```
        lock_poll: Duration => lock_poll = |v| v
    );
    setter!(
        /// The limit on each Redis operation, connecting included; past it the operation counts
        /// as a failure and reads fall through to the loader.
        ///
        /// # Example
        ///
        /// ```
        /// # use std::time::Duration;
        /// # let l1: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
        /// let b = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/")
        ///     .op_timeout(Duration::from_millis(100));
        /// # let _ = b;
        /// ```
        op_timeout: Duration => op_timeout = |v| v
    );
    setter!(
        /// How long a queued invalidation (a failed `put`, `invalidate` or `invalidate_all`,
        /// replayed as a deletion) may keep getting **error replies** from a live Redis (an ACL
        /// denial, `READONLY` during a failover) before it is dropped (`writes_dropped`). While
        /// Redis does not answer at all (refused, timed out, breaker open), queued invalidations
        /// wait without limit: they are retried until Redis answers. Zero: failed invalidations
        /// are dropped at once, not queued (Redis then serves the old value until its L2 TTL).
        ///
        /// # Example
        ///
        /// ```
        /// # use std::time::Duration;
        /// # let l1: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
        /// let b = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/")
        ///     .write_retry_window(Duration::from_secs(10));
        /// # let _ = b;
        /// ```
        write_retry_window: Duration => write_retry_window = |v| v
    );
    setter!(
        /// How often the subscriber pings its connection (an unanswered ping within
        /// `op_timeout` counts as a lost subscription).
        ///
        /// # Example
        ///
        /// ```
        /// # use std::time::Duration;
        /// # let l1: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
        /// let b = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/")
        ///     .backplane_ping(Duration::from_millis(500));
        /// # let _ = b;
        /// ```
        backplane_ping: Duration => backplane_ping = |v| v
    );

    /// How many keys' invalidations may wait for Redis (queued after a failed `invalidate` or
    /// `put`, coalesced per key; each costs about three times the Redis key's length plus 150 bytes). One more
    /// key turns the queue into a single prefix-wide clear (as `invalidate_all`, counted in
    /// `invalidation_overflows`): correct, at the cost of a cold L2 and cleared L1s after the
    /// outage. At least 1.
    ///
    /// # Example
    ///
    /// ```
    /// # let l1: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let b = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/")
    ///     .max_pending_invalidations(10_000);
    /// # let _ = b;
    /// ```
    pub fn max_pending_invalidations(mut self, keys: usize) -> Self {
        self.max_pending = keys;
        self
    }

    /// How stale this instance's L1 may get while it cannot hear other instances'
    /// invalidations (its subscription is lost: Redis down, hung, or cut off from this
    /// instance): every `ttl` of disconnection clears the L1, so that no value it serves
    /// was loaded more than `ttl` before the read, plus the time to notice the loss (at most
    /// `backplane_ping` + `op_timeout`) and one resubscription attempt (`op_timeout`). Unset
    /// (the default), the L1's own TTL is the bound.
    /// The price: each clear sends the next reads of every key to Redis or, with Redis away,
    /// to the source of truth.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let l1: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let b = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/")
    ///     .disconnected_l1_ttl(Duration::from_secs(5));
    /// # let _ = b;
    /// ```
    pub fn disconnected_l1_ttl(mut self, ttl: Duration) -> Self {
        self.disconnected_l1_ttl = Some(ttl);
        self
    }

    /// The circuit breaker: open after `failures` consecutive failed operations, stay open for
    /// `open_for`, then let one probe through (half-open).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let l1: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let b = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/")
    ///     .breaker(3, Duration::from_secs(2));
    /// # let _ = b;
    /// ```
    pub fn breaker(mut self, failures: u32, open_for: Duration) -> Self {
        self.breaker = (failures, open_for);
        self
    }

    /// The prefix of every Redis key of this cache (one prefix per cache and value layout).
    /// `invalidate_all` deletes every key under it, so it must not be empty.
    ///
    /// # Example
    ///
    /// ```
    /// # let l1: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let b = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/").key_prefix("shop:product:v2:");
    /// # let _ = b;
    /// ```
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The pub/sub channel of the invalidation backplane (every instance of one cache must
    /// use the same one; different caches, different ones).
    ///
    /// # Example
    ///
    /// ```
    /// # let l1: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let b = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/").channel("shop:invalidate");
    /// # let _ = b;
    /// ```
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// Replaces the value codec.
    ///
    /// # Example
    ///
    /// ```
    /// # let l1: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let b = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/").codec(aside::tier::Postcard);
    /// # let _ = b;
    /// ```
    pub fn codec(mut self, codec: impl Codec<V>) -> Self {
        self.codec = Arc::new(codec);
        self
    }

    /// Replaces the key codec.
    ///
    /// # Example
    ///
    /// ```
    /// # let l1: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let b = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/").key_codec(aside::tier::DisplayKey);
    /// # let _ = b;
    /// ```
    pub fn key_codec(mut self, keys: impl KeyCodec<K>) -> Self {
        self.keys = Arc::new(keys);
        self
    }

    /// The clock the breaker measures its open period on (tests pass a
    /// [`MockClock`](crate::MockClock)).
    ///
    /// # Example
    ///
    /// ```
    /// # let l1: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let b = aside::tier::TieredCache::builder(l1, "redis://127.0.0.1/").clock(aside::MockClock::new());
    /// # let _ = b;
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Checks the settings, starts the backplane subscriber and waits (at most about
    /// `op_timeout`) for its first subscription. An unreachable Redis is not an error: the
    /// tier starts degraded and recovers when Redis answers (clearing the L1 when the
    /// subscription finally succeeds).
    ///
    /// Call it inside a tokio runtime (it spawns the subscriber task).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the field: `redis_url` that does not parse, an empty
    /// `key_prefix` or `channel`, an `l2_ttl` under 1 ms, a `lock_lease` under 1 ms, a zero
    /// `lock_poll`, `op_timeout` or `backplane_ping`, a `breaker` with zero failures or a
    /// zero open period, a zero `max_pending_invalidations`; an `l2_ttl` or `l2_ttl_jitter` over 10 years; a `lock_lease`,
    /// `lock_wait`, `lock_poll`, `op_timeout`, breaker open period, `write_retry_window` or
    /// `backplane_ping` over one day.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let l1: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let err = aside::tier::TieredCache::builder(l1, "not a url").build().await.unwrap_err();
    /// assert_eq!(err.field(), "redis_url");
    /// # }
    /// ```
    pub async fn build(self) -> Result<TieredCache<K, V, P>, ConfigError>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let endpoint = self.endpoint?;
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let prefix = self.prefix;
        let named = |reason: &str| format!("{reason} (cache with key prefix {prefix:?})");
        if prefix.is_empty() {
            return Err(ConfigError::new(
                "key_prefix",
                "must not be empty: invalidate_all deletes every key under it",
            ));
        }
        if endpoint.is_cluster() && prefix.contains(['{', '}']) {
            return Err(ConfigError::new(
                "key_prefix",
                named("must not contain `{` or `}` in a cluster: the tier adds the hash tag"),
            ));
        }
        if self.channel.as_ref().is_some_and(String::is_empty) {
            return Err(ConfigError::new("channel", named("must not be empty")));
        }
        let at_most = |field: &'static str, d: Duration, max: Duration, what: &str| {
            if d > max {
                Err(ConfigError::new(
                    field,
                    named(&format!("must be at most {what}, got {d:?}")),
                ))
            } else {
                Ok(())
            }
        };
        if ms(self.l2_ttl) == 0 {
            return Err(ConfigError::new("l2_ttl", named("must be at least 1 ms")));
        }
        at_most("l2_ttl", self.l2_ttl, MAX_TTL, "10 years")?;
        if let Some(jitter) = self.l2_jitter {
            at_most("l2_ttl_jitter", jitter, MAX_TTL, "10 years")?;
        }
        if ms(self.lease) == 0 {
            return Err(ConfigError::new(
                "lock_lease",
                named("must be at least 1 ms"),
            ));
        }
        for (field, d) in [
            ("lock_poll", self.lock_poll),
            ("op_timeout", self.op_timeout),
            ("backplane_ping", self.backplane_ping),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(field, named("must be longer than zero")));
            }
        }
        let (failures, open_for) = self.breaker;
        if failures == 0 || open_for.is_zero() {
            return Err(ConfigError::new(
                "breaker",
                named("needs at least 1 failure and an open period longer than zero"),
            ));
        }
        if self.max_pending == 0 {
            return Err(ConfigError::new(
                "max_pending_invalidations",
                named("must be at least 1 (a full queue becomes one prefix-wide clear)"),
            ));
        }
        for (field, d) in [
            ("lock_lease", Some(self.lease)),
            ("lock_wait", self.lock_wait),
            ("lock_poll", Some(self.lock_poll)),
            ("op_timeout", Some(self.op_timeout)),
            ("breaker", Some(open_for)),
            ("write_retry_window", Some(self.write_retry_window)),
            ("backplane_ping", Some(self.backplane_ping)),
            ("disconnected_l1_ttl", self.disconnected_l1_ttl),
        ] {
            if let Some(d) = d {
                at_most(field, d, MAX_TIMER, "one day")?;
            }
        }
        if self.disconnected_l1_ttl.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "disconnected_l1_ttl",
                named("must be longer than zero"),
            ));
        }
        let channel = self
            .channel
            .unwrap_or_else(|| format!("{prefix}invalidations"));
        let clock = self
            .clock
            .unwrap_or_else(|| Arc::new(SystemClock::new()) as Arc<dyn Clock>);
        let counters = Arc::new(Counters::default());
        let l2 = L2::new(
            &endpoint,
            self.op_timeout,
            Breaker::new(failures, duration_nanos(open_for), clock),
            Arc::clone(&counters),
        )
        .map_err(|e| ConfigError::new("cluster_nodes", named(&format!("refused: {e}"))))?;
        let l2 = Arc::new(l2);
        let instance: u128 = rand::rng().random();
        let replay = Arc::new(Replay::new(
            Arc::clone(&l2),
            prefix.clone(),
            channel.clone(),
            instance,
            self.max_pending,
            self.write_retry_window,
            Arc::clone(&counters),
        ));
        let replayer = tokio::spawn(Arc::clone(&replay).run());
        let subscriber = Subscriber {
            clients: endpoint.subscription_clients(),
            channel: channel.clone(),
            instance,
            l1: self.l1.clone(),
            keys: Arc::clone(&self.keys),
            counters: Arc::clone(&counters),
            op_timeout: self.op_timeout,
            ping_every: self.backplane_ping,
            disconnected_l1_ttl: self.disconnected_l1_ttl,
            cluster: endpoint.is_cluster(),
        };
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(subscriber.run(first_tx));
        let _ = tokio::time::timeout(self.op_timeout.saturating_mul(2), first_rx).await;
        let jitter = self.l2_jitter.unwrap_or(self.l2_ttl / 10);
        Ok(TieredCache {
            inner: Arc::new(Inner {
                l1: self.l1,
                l2,
                keys: self.keys,
                codec: self.codec,
                settings: Settings {
                    prefix,
                    cluster: endpoint.is_cluster(),
                    channel,
                    l2_ttl_ms: ms(self.l2_ttl),
                    l2_jitter_ms: ms(jitter),
                    lease_ms: ms(self.lease),
                    lock_wait: self
                        .lock_wait
                        .unwrap_or(self.lease.saturating_add(Duration::from_millis(100))),
                    lock_poll: self.lock_poll,
                },
                instance,
                counters,
                subscriber: Mutex::new(Some(task)),
                replay,
                replayer,
            }),
        })
    }
}
