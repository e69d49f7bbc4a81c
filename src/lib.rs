//! `aside`: an in-process cache for Rust applications that read through a database or a
//! remote service: a cache-aside front door over a sharded cache engine with pluggable
//! eviction.
//!
//! # The front door: [`AsideCache`]
//!
//! Read: look in the cache; on a miss, load from the source of truth (once, however many
//! callers miss together) and populate with a TTL. Write: update the source of truth, then
//! invalidate. Loads in flight when the invalidation lands never install the value they read.
//!
//! ```
//! # #[cfg(feature = "async")]
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use aside::AsideCache;
//! use std::time::Duration;
//!
//! let users: AsideCache<u64, String> = AsideCache::builder()
//!     .max_capacity(10_000)
//!     .time_to_live(Duration::from_secs(300))
//!     .build()?;
//!
//! // Read: concurrent misses of one key share one load; `Ok(None)` is "not found".
//! let alice = users
//!     .get_or_load(42, || async { Ok::<_, std::io::Error>(Some("Alice".to_string())) })
//!     .await?;
//! assert_eq!(alice.as_deref(), Some("Alice"));
//!
//! // Write: update the database, then invalidate.
//! users.invalidate(&42);
//! assert_eq!(users.get(&42), None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! The async methods need the `async` feature (tokio); every one has a `_blocking` twin that
//! needs no runtime. Around the read path: XFetch early refresh, fail-safe stale serving,
//! negative caching and per-entry TTLs. Around the front door, a toolkit built on it: tags
//! and namespaces, batch loads, warming, write-through and write-behind, named caches from a
//! file and sampled metrics (below). Behind it, a Redis L2 tier (`redis` feature).
//!
//! The source tree follows these layers: the engine in `src/engine/` (with [`Cache`] and its
//! builder beside it), one eviction policy a file in `src/policy/`, the front door in
//! `src/aside/`, the toolkit in `src/toolkit/`, the Redis tier in `src/tier/`
//! (`docs/design.md` has the file map).
//!
//! # The engine: [`Cache`]
//!
//! A [`Cache`] is split into shards; each shard is a table that lookups read without a lock,
//! the entries' records behind the shard's mutex, and an
//! [`EvictionPolicy`](policy::EvictionPolicy):
//! [`WTinyLfu`](policy::WTinyLfu) (Caffeine's window TinyLFU, its window's share tuned per
//! shard by simulation; the default), [`Lru`](policy::Lru), [`Lfu`](policy::Lfu) with
//! dynamic aging, [`Fifo`](policy::Fifo), [`SampledTtl`](policy::SampledTtl) (Redis
//! `volatile-ttl`), [`S3Fifo`](policy::S3Fifo) (SOSP'23), or one of your own.
//!
//! ```
//! use aside::Cache;
//! use std::time::Duration;
//!
//! let cache: Cache<u64, String> = Cache::builder()
//!     .max_capacity(10_000)
//!     .time_to_live(Duration::from_secs(300))
//!     .build()?;
//! cache.insert(42, "Alice".to_string());
//! assert_eq!(cache.get(&42).as_deref(), Some("Alice"));
//! cache.invalidate(&42);
//! assert_eq!(cache.get(&42), None);
//! # Ok::<(), aside::ConfigError>(())
//! ```
//!
//! # Thread safety
//!
//! `Cache` is `Send + Sync` and cheap to clone (an `Arc`). Reads take no lock: a lookup
//! probes its shard's table inside a read section that writes only its own thread's counters,
//! and records a hit for the policy in a lossy ring of its own, replayed in batches under the
//! shard's lock by whoever holds it (or, for policies that only count hits, such as S3-FIFO,
//! and for the default policy's hot entries, raises a counter in the entry itself:
//! [`policy::HitAccess`]). Writes take their shard's mutex; a writer that removes an
//! entry waits until no lookup can still be reading it, then hands it back. No user code runs
//! under a shard lock except the key's `Eq` and the value's `Clone` (in `iter` and `retain`'s
//! snapshots): hashing, weighers, loaders, listeners and the drop of evicted values all happen
//! outside.
//!
//! # Expiry
//!
//! A default fixed TTL or sliding time-to-idle per cache, per-entry TTLs, and jitter. Expired
//! entries are never returned; they are reclaimed when touched, when a write finds them, by the
//! eviction policy, and by a Redis-style random-sample sweep that writes run every 16 writes
//! per shard (or [`Cache::sweep_expired`] on demand). Time comes from a [`Clock`], which tests
//! replace with a [`MockClock`].
//!
//! # Memory per entry
//!
//! For `K → V` with a policy state of `s` bytes (LRU and FIFO 8, LFU 16 plus 4 in its heap,
//! sampled TTL 0):
//!
//! ```text
//! node  = round_up(size_of::<K>() + size_of::<V>() + 16, align)   // what lookups read
//! meta  = 12 + s                                                 // the slab record and policy state
//! table ≈ 4 / load                                               // u32 buckets, load 3/8 to 3/4
//! bytes per entry ≈ node + meta + table
//! ```
//!
//! The node's 16 bytes are the deadline (8), the 32-bit hash fragment (4) and the entry's id
//! (4); the record holds the node's index, the fragment and the weight. For `u64 → u64` under
//! LRU that is 52 + 5.3 to 10.7 bytes, an overhead of 41 to 47 bytes over the 16 bytes of
//! payload. `docs/design.md` derives it.
//!
//! # Named caches and metrics
//!
//! [`registry::Registry`] reads one table per named cache (TTL, size, policy, jitter, early
//! refresh, lease, ...) from a file an operator can edit (TOML, or any serde format), and
//! hands out builders by name; the policy is then chosen at run time
//! ([`policy::AnyPolicy`]). [`sampler::MetricsSampler`] samples each named cache's counters
//! (totals and deltas) and, with the `metrics` feature, exports them through the `metrics`
//! facade labelled by cache name. `docs/toolkit.md` has the details.
//!
//! # Cargo features
//!
//! | feature | enables | cost |
//! |---|---|---|
//! | `async` | `AsideCache::get_or_load`, `try_get_with`, `get_with` on tokio; warming, batch loads, write-through and write-behind | a dependency on `tokio` (`rt`, `time`, `sync`) |
//! | `redis` | `tier::TieredCache`: Redis as a shared L2 with a distributed stampede lock, an invalidation backplane and a circuit breaker (implies `async`) | `redis` (`tokio-comp`, `script`, `cluster-async`), `serde`, `postcard`, `futures-util`; tokio `sync`, `macros` |
//! | `config` | [`registry`]: named caches configured from a TOML file or any serde format | dependencies on `serde`, `toml`, `humantime` and `serde_path_to_error` |
//! | `metrics` | [`sampler`] reports sampled counters through the `metrics` facade | a dependency on `metrics` (the facade only; the application picks the exporter) |
//! | `snapshot` | warm restart: [`Cache::snapshot`] writes the hottest entries (policy order, values optional, remaining TTL) through serde, [`Cache::restore`] checks and reloads them at boot; the same on `AsideCache` | dependencies on `serde` and `postcard` |
//! | `tracing` | an `aside.load` span per load the front door leads (key hash, waiters, outcome) and events for panics and timeouts | a dependency on `tracing` (the facade only); without it the spans compile to nothing |
//!
//! Without features the crate depends on no runtime.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod aside;
mod builder;
mod cache;
mod compute;
mod engine;
mod inits;
mod invariant;
mod metrics;
mod notify;
pub mod policy;
mod shim;
#[cfg(feature = "snapshot")]
mod snapshot;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod tier;
mod toolkit;

#[cfg(any(test, fuzzing))]
pub mod testing;
#[cfg(test)]
mod tests;

pub use aside::{
    AsideBuilder, AsideCache, FailSafe, KeyFileError, Labels, LatencyHistogram, LatencySummary,
    LeaseExpiry, LoadError, LoadStats, Namespace, RefreshMode, WarmProgress, WarmSummary,
    parse_keys, read_keys,
};
#[cfg(feature = "async")]
pub use aside::{WriteBehind, WriteBehindBuilder, WriteBehindStats, WriteError, WriteSink};
// The toolkit's modules, at the crate root where they have always been.
pub use builder::{CacheBuilder, ConfigError, MAX_SHARDS, MIN_SHARD_CAPACITY};
pub use cache::{Cache, Iter};
pub use compute::{Compute, Computed};
pub use engine::expiry::{Clock, MockClock, SystemClock};
pub use invariant::InvariantError;
pub use metrics::CacheStats;
pub use notify::RemovalCause;
#[cfg(feature = "snapshot")]
#[cfg_attr(docsrs, doc(cfg(feature = "snapshot")))]
pub use snapshot::{
    RestoreOptions, RestoreSummary, Snapshot, SnapshotError, SnapshotOptions, SnapshotSummary,
};
#[cfg(feature = "config")]
pub use toolkit::registry;
pub use toolkit::sampler;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
