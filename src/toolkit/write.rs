//! Write paths (`async` feature): write-through ([`AsideCache::write_through`]) and
//! write-behind ([`WriteBehind`]).
//!
//! **Write-through** updates the source of truth, then the cache, in the caller: the write is
//! durable when the call returns, and the cache is updated with the front door's race-free
//! `put` (a load that started before the write cannot overwrite the written value).
//!
//! **Write-behind** stores the value in the cache and in a bounded *dirty set* at once, and a
//! background flusher writes the dirty entries to a [`WriteSink`] in batches, on an interval
//! and at [`shutdown`](WriteBehind::shutdown). Writes to the same key coalesce (the latest
//! value wins). A failed or panicking flush is retried with exponential backoff; its entries
//! stay dirty until a flush that contains them succeeds (a newer value for a key supersedes
//! the older one), so nothing is dropped silently. When the dirty set is full,
//! [`write`](WriteBehind::write) waits for the flusher to make room and
//! [`try_write`](WriteBehind::try_write) returns [`WriteError::Full`].
//!
//! # Data-loss window
//!
//! Write-behind acknowledges a write before the source has it. If the process dies (crash,
//! `kill -9`, power loss), every entry still in the dirty set is lost: at most the writes
//! made since the last successful flush of their key, and never more than `capacity` keys.
//! Reduce the window with a shorter `interval`, a smaller `capacity`, or use write-through
//! for data that must not be lost. A graceful [`shutdown`](WriteBehind::shutdown) loses
//! nothing: it flushes everything, retrying until the sink accepts it.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::ConfigError;
use crate::aside::load_async::CatchUnwind;
use crate::aside::{AsideCache, PendingWrites};
use crate::policy::{EvictionPolicy, WTinyLfu};

impl<K, V, P> AsideCache<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    /// Write-through: `sink(key, value)` updates the source of truth; once it succeeds the
    /// value is stored in the cache with [`put`](Self::put)'s guarantee: a load of `key` that
    /// started before this write (and so may have read the old row) never overwrites the
    /// written value.
    ///
    /// If the sink fails, panics or this future is dropped before it finishes, the key is
    /// invalidated instead (the source may or may not have applied the write), and the next
    /// read reloads it.
    ///
    /// Concurrent writes of one key should be ordered by the source (a row lock, a version
    /// check): the cache keeps the value of the write whose `put` comes last.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::sync::{Arc, Mutex};
    /// let db = Arc::new(Mutex::new(std::collections::HashMap::new()));
    /// let cache: aside::AsideCache<u32, String> = aside::AsideCache::builder().build().unwrap();
    /// let table = db.clone();
    /// cache
    ///     .write_through(7, "Bob".to_string(), |k, v| async move {
    ///         table.lock().unwrap().insert(k, v); // UPDATE users SET name = ? WHERE id = ?
    ///         Ok::<_, std::io::Error>(())
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(cache.get(&7).as_deref(), Some("Bob"));
    /// assert_eq!(db.lock().unwrap()[&7], "Bob");
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// The sink's error; the key is then invalidated.
    ///
    /// # Panics
    ///
    /// If the sink panics, after invalidating the key.
    pub async fn write_through<E, F, Fut>(&self, key: K, value: V, sink: F) -> Result<(), E>
    where
        F: FnOnce(K, V) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        struct InvalidateUnlessDone<'a, K: Hash + Eq + Clone + Send + Sync + 'static, V, P>
        where
            V: Clone + Send + Sync + 'static,
            P: EvictionPolicy,
        {
            cache: &'a AsideCache<K, V, P>,
            key: Option<K>,
        }
        impl<K, V, P> Drop for InvalidateUnlessDone<'_, K, V, P>
        where
            K: Hash + Eq + Clone + Send + Sync + 'static,
            V: Clone + Send + Sync + 'static,
            P: EvictionPolicy,
        {
            fn drop(&mut self) {
                if let Some(k) = self.key.take() {
                    self.cache.invalidate(&k);
                }
            }
        }
        let mut guard = InvalidateUnlessDone {
            cache: self,
            key: Some(key.clone()),
        };
        sink(key.clone(), value.clone()).await?;
        guard.key = None;
        self.put(key, value);
        Ok(())
    }
}

/// Where a [`WriteBehind`] flushes its dirty entries: the source of truth, one batch at a
/// time. Implemented for every `Fn(Vec<(K, V)>) -> impl Future<Output = Result<(), E>>`.
///
/// A batch holds each key at most once. A failed batch is retried with the same entries,
/// except keys written again meanwhile (their newer value goes out with the next round), so
/// `write_batch` may see an entry more than once: make it idempotent (an upsert).
///
/// # Example
///
/// ```
/// use aside::WriteSink;
/// struct Log;
/// impl WriteSink<u32, String> for Log {
///     type Error = std::io::Error;
///     async fn write_batch(&self, batch: Vec<(u32, String)>) -> Result<(), Self::Error> {
///         println!("INSERT ... ON CONFLICT DO UPDATE: {} rows", batch.len());
///         Ok(())
///     }
/// }
/// ```
pub trait WriteSink<K, V>: Send + 'static {
    /// The sink's error, recorded in [`WriteBehindStats::last_error`].
    type Error: fmt::Display + Send + 'static;

    /// Writes `batch` to the source; an `Err` (or a panic) means the batch is retried.
    fn write_batch(
        &self,
        batch: Vec<(K, V)>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl<K, V, E, F, Fut> WriteSink<K, V> for F
where
    F: Fn(Vec<(K, V)>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
    E: fmt::Display + Send + 'static,
{
    type Error = E;

    fn write_batch(&self, batch: Vec<(K, V)>) -> impl Future<Output = Result<(), E>> + Send {
        self(batch)
    }
}

/// Why a write-behind write was refused; the rejected entry is handed back.
///
/// # Example
///
/// ```
/// let e: aside::WriteError<u32, u32> = aside::WriteError::Full(1, 2);
/// assert_eq!(e.to_string(), "the dirty set is full");
/// assert_eq!(e.into_inner(), (1, 2));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError<K, V> {
    /// The dirty set is full (`try_write` only; `write` waits instead).
    Full(K, V),
    /// The write-behind was shut down.
    Closed(K, V),
}

impl<K, V> WriteError<K, V> {
    /// The entry that was not written.
    ///
    /// # Example
    ///
    /// ```
    /// let e: aside::WriteError<u32, u32> = aside::WriteError::Closed(1, 2);
    /// assert_eq!(e.into_inner(), (1, 2));
    /// ```
    pub fn into_inner(self) -> (K, V) {
        match self {
            Self::Full(k, v) | Self::Closed(k, v) => (k, v),
        }
    }
}

impl<K, V> fmt::Display for WriteError<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(..) => "the dirty set is full",
            Self::Closed(..) => "the write-behind is shut down",
        })
    }
}

impl<K: fmt::Debug, V: fmt::Debug> std::error::Error for WriteError<K, V> {}

/// A write-behind's counters.
///
/// # Example
///
/// ```
/// let s = aside::WriteBehindStats::default();
/// assert_eq!(s.flushed, 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriteBehindStats {
    /// Writes accepted.
    pub writes: u64,
    /// Writes that replaced a dirty value of the same key (coalesced into one flush).
    pub coalesced: u64,
    /// Entries written to the sink by successful batches.
    pub flushed: u64,
    /// Successful batches.
    pub batches: u64,
    /// Failed or panicked batches (each was retried).
    pub failed_batches: u64,
    /// Entries dirty now.
    pub dirty: usize,
    /// The last sink error (or panic message), if any batch failed.
    pub last_error: Option<String>,
}

/// Entries written but not yet flushed: key → (latest value, write sequence number).
struct Dirty<K, V> {
    map: HashMap<K, (V, u64), ahash::RandomState>,
    next_seq: u64,
    closed: bool,
}

#[derive(Default)]
struct Counters {
    writes: AtomicU64,
    coalesced: AtomicU64,
    flushed: AtomicU64,
    batches: AtomicU64,
    failed_batches: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    capacity: usize,
    interval: Duration,
    max_batch: usize,
    backoff_min: Duration,
    backoff_max: Duration,
}

struct Shared<K, V, P: EvictionPolicy> {
    cache: AsideCache<K, V, P>,
    dirty: Mutex<Dirty<K, V>>,
    /// Signalled when entries leave the dirty set.
    space: Notify,
    /// Wakes the flusher early (dirty set full, shutdown).
    wake: Notify,
    settings: Settings,
    counters: Counters,
    last_error: Mutex<Option<String>>,
}

/// A write-behind buffer in front of a [`WriteSink`].
///
/// [`write`](Self::write) stores the value in the cache and in a bounded dirty set at once;
/// a background flusher writes the dirty entries to the sink in batches of at most
/// `max_batch`, every `interval` and at [`shutdown`](Self::shutdown). Writes to one key
/// coalesce (the latest value wins). A failed or panicking batch is retried with exponential
/// backoff and its entries stay dirty until a batch containing them succeeds; a newer value
/// for a key supersedes the one being retried. When the dirty set is full, `write` waits
/// for a flush to make room (and wakes the flusher) and [`try_write`](Self::try_write)
/// returns [`WriteError::Full`].
///
/// # Data-loss window
///
/// Write-behind acknowledges a write before the source has it. If the process dies (crash,
/// `kill -9`, power loss), every entry still in the dirty set is lost: at most the writes
/// made since the last successful flush of their key, and never more than `capacity` keys.
/// Reduce the window with a shorter `interval`, a smaller `capacity`, or use write-through
/// for data that must not be lost. A graceful [`shutdown`](WriteBehind::shutdown) loses
/// nothing: it flushes everything, retrying until the sink accepts it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use aside::WriteBehind;
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// let cache: aside::AsideCache<u32, u64> = aside::AsideCache::builder().build().unwrap();
/// let db = Arc::new(Mutex::new(Vec::new()));
/// let table = db.clone();
/// let sink = move |batch: Vec<(u32, u64)>| {
///     let table = table.clone();
///     async move {
///         table.lock().unwrap().extend(batch); // one multi-row upsert
///         Ok::<_, std::io::Error>(())
///     }
/// };
/// let counters = WriteBehind::builder(cache.clone(), sink)
///     .interval(Duration::from_millis(100))
///     .capacity(10_000)
///     .build()
///     .unwrap();
/// for n in 1..=3 {
///     counters.write(1, n).await.unwrap(); // coalesced: only the latest value is flushed
/// }
/// assert_eq!(cache.get(&1), Some(3)); // readable at once
/// counters.shutdown().await.unwrap(); // flushes everything
/// assert_eq!(*db.lock().unwrap(), [(1, 3)]);
/// # }
/// ```
pub struct WriteBehind<K, V, P: EvictionPolicy = WTinyLfu> {
    shared: Arc<Shared<K, V, P>>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

/// Builds a [`WriteBehind`].
///
/// | setting | default |
/// |---|---|
/// | `capacity` (dirty keys) | 10 000 |
/// | `interval` | 1 s |
/// | `max_batch` | 500 |
/// | `retry_backoff(min, max)` | 100 ms doubling up to 30 s |
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
/// let sink = |batch: Vec<(u32, u32)>| async move { Ok::<_, String>(()) };
/// let err = aside::WriteBehind::builder(cache, sink).capacity(0).build().err().unwrap();
/// assert_eq!(err.field(), "capacity");
/// # }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct WriteBehindBuilder<K, V, P: EvictionPolicy, S> {
    cache: AsideCache<K, V, P>,
    sink: S,
    settings: Settings,
}

impl<K, V, P: EvictionPolicy, S> fmt::Debug for WriteBehindBuilder<K, V, P, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBehindBuilder")
            .field("cache", &self.cache)
            .field("sink", &std::any::type_name::<S>())
            .field("settings", &self.settings)
            .finish()
    }
}

impl<K, V, P> WriteBehind<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    /// A builder for a write-behind that writes to `cache` and flushes to `sink`.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let b = aside::WriteBehind::builder(cache, |b: Vec<(u32, u32)>| async move {
    ///     Ok::<_, String>(())
    /// });
    /// # drop(b);
    /// ```
    pub fn builder<S: WriteSink<K, V>>(
        cache: AsideCache<K, V, P>,
        sink: S,
    ) -> WriteBehindBuilder<K, V, P, S> {
        WriteBehindBuilder {
            cache,
            sink,
            settings: Settings {
                capacity: 10_000,
                interval: Duration::from_secs(1),
                max_batch: 500,
                backoff_min: Duration::from_millis(100),
                backoff_max: Duration::from_secs(30),
            },
        }
    }
}

impl<K, V, P, S> WriteBehindBuilder<K, V, P, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
    S: WriteSink<K, V>,
{
    /// The most keys that may be dirty at once (the bound of the data-loss window).
    ///
    /// # Example
    ///
    /// ```
    /// # let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// # let sink = |b: Vec<(u32, u32)>| async move { Ok::<_, String>(()) };
    /// let b = aside::WriteBehind::builder(cache, sink).capacity(1_000);
    /// # drop(b);
    /// ```
    pub fn capacity(mut self, keys: usize) -> Self {
        self.settings.capacity = keys;
        self
    }

    /// How often the flusher writes the dirty set out.
    ///
    /// # Example
    ///
    /// ```
    /// # let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// # let sink = |b: Vec<(u32, u32)>| async move { Ok::<_, String>(()) };
    /// let b = aside::WriteBehind::builder(cache, sink)
    ///     .interval(std::time::Duration::from_millis(250));
    /// # drop(b);
    /// ```
    pub fn interval(mut self, interval: Duration) -> Self {
        self.settings.interval = interval;
        self
    }

    /// The most entries per `write_batch` call.
    ///
    /// # Example
    ///
    /// ```
    /// # let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// # let sink = |b: Vec<(u32, u32)>| async move { Ok::<_, String>(()) };
    /// let b = aside::WriteBehind::builder(cache, sink).max_batch(100);
    /// # drop(b);
    /// ```
    pub fn max_batch(mut self, entries: usize) -> Self {
        self.settings.max_batch = entries;
        self
    }

    /// Backoff between retries of a failed batch: `min`, doubling up to `max`.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// # let sink = |b: Vec<(u32, u32)>| async move { Ok::<_, String>(()) };
    /// let b = aside::WriteBehind::builder(cache, sink)
    ///     .retry_backoff(Duration::from_millis(50), Duration::from_secs(5));
    /// # drop(b);
    /// ```
    pub fn retry_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.settings.backoff_min = min;
        self.settings.backoff_max = max;
        self
    }

    /// Checks the settings and starts the flusher on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the field: `capacity`, `max_batch` or `interval` zero,
    /// `retry_backoff` with a zero minimum or a minimum above the maximum, or `runtime` when
    /// called outside a tokio runtime.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let sink = |b: Vec<(u32, u32)>| async move { Ok::<_, String>(()) };
    /// // No runtime here.
    /// let err = aside::WriteBehind::builder(cache, sink).build().err().unwrap();
    /// assert_eq!(err.field(), "runtime");
    /// ```
    pub fn build(self) -> Result<WriteBehind<K, V, P>, ConfigError> {
        let s = self.settings;
        if s.capacity == 0 {
            return Err(ConfigError::new("capacity", "must be at least 1 key"));
        }
        if s.max_batch == 0 {
            return Err(ConfigError::new("max_batch", "must be at least 1 entry"));
        }
        if s.interval.is_zero() {
            return Err(ConfigError::new("interval", "must be longer than zero"));
        }
        if s.backoff_min.is_zero() || s.backoff_min > s.backoff_max {
            return Err(ConfigError::new(
                "retry_backoff",
                format!(
                    "needs 0 < min <= max, got {:?}..{:?}",
                    s.backoff_min, s.backoff_max
                ),
            ));
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError::new(
                "runtime",
                "a write-behind needs a tokio runtime to flush on",
            )
        })?;
        let shared = Arc::new(Shared {
            cache: self.cache,
            dirty: Mutex::new(Dirty {
                map: HashMap::with_hasher(ahash::RandomState::new()),
                next_seq: 0,
                closed: false,
            }),
            space: Notify::new(),
            wake: Notify::new(),
            settings: s,
            counters: Counters::default(),
            last_error: Mutex::new(None),
        });
        // Reads that would load a key still dirty take its dirty value instead: the source
        // of truth does not have it yet.
        let weak = Arc::downgrade(&shared);
        shared.cache.inner.add_pending_writes(weak);
        let flusher = handle.spawn(flusher(Arc::clone(&shared), self.sink));
        Ok(WriteBehind {
            shared,
            flusher: Mutex::new(Some(flusher)),
        })
    }
}

/// The flusher task: on each tick (or wake-up) flushes every entry dirty at that moment, in
/// batches, retrying failed batches with backoff; after shutdown, flushes everything and
/// exits.
async fn flusher<K, V, P, S>(shared: Arc<Shared<K, V, P>>, sink: S)
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
    S: WriteSink<K, V>,
{
    let s = shared.settings;
    // Ticks on a fixed schedule (a slow round does not push the next tick back).
    let mut tick = tokio::time::Instant::now() + s.interval;
    loop {
        let closed = shared.dirty.lock().closed;
        if !closed {
            // A tick, or an early wake-up (full, shutdown): the result does not matter.
            let _ = tokio::time::timeout_at(tick, shared.wake.notified()).await;
            let now = tokio::time::Instant::now();
            while tick <= now {
                tick += s.interval;
            }
        }
        // Everything written before this point is flushed in this round.
        let watermark = shared.dirty.lock().next_seq;
        let mut backoff = s.backoff_min;
        loop {
            let batch: Vec<(K, V, u64)> = {
                let dirty = shared.dirty.lock();
                dirty
                    .map
                    .iter()
                    .filter(|(_, (_, seq))| *seq < watermark)
                    .take(s.max_batch)
                    .map(|(k, (v, seq))| (k.clone(), v.clone(), *seq))
                    .collect()
            };
            if batch.is_empty() {
                break;
            }
            let entries = batch
                .iter()
                .map(|(k, v, _)| (k.clone(), v.clone()))
                .collect();
            let result = CatchUnwind(Box::pin(sink.write_batch(entries))).await;
            let error = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(panic) => Some(panic_message(&*panic)),
            };
            if let Some(error) = error {
                shared
                    .counters
                    .failed_batches
                    .fetch_add(1, Ordering::Relaxed);
                *shared.last_error.lock() = Some(error);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(s.backoff_max);
                continue;
            }
            backoff = s.backoff_min;
            let n = batch.len() as u64;
            {
                let mut dirty = shared.dirty.lock();
                for (k, _, seq) in batch {
                    // A newer write of the key stays dirty: it was not in this batch.
                    if dirty.map.get(&k).is_some_and(|(_, s)| *s == seq) {
                        dirty.map.remove(&k);
                    }
                }
            }
            shared.counters.flushed.fetch_add(n, Ordering::Relaxed);
            shared.counters.batches.fetch_add(1, Ordering::Relaxed);
            shared.space.notify_waiters();
        }
        let dirty = shared.dirty.lock();
        if dirty.closed && dirty.map.is_empty() {
            return;
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let msg = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown payload".to_string());
    format!("sink panicked: {msg}")
}

impl<K, V, P> WriteBehind<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    /// Tries to record the write under the dirty-set lock; `Err` hands the entry back.
    fn record(&self, key: K, value: V) -> Result<(), WriteError<K, V>> {
        let mut dirty = self.shared.dirty.lock();
        if dirty.closed {
            return Err(WriteError::Closed(key, value));
        }
        let present = dirty.map.contains_key(&key);
        if !present && dirty.map.len() >= self.shared.settings.capacity {
            return Err(WriteError::Full(key, value));
        }
        let seq = dirty.next_seq;
        dirty.next_seq += 1;
        dirty.map.insert(key.clone(), (value.clone(), seq));
        // Under the dirty-set lock, so that the cache and the dirty set agree on the order
        // of two writes of one key. `put` runs no user code but `K`'s and `V`'s impls.
        self.shared.cache.put(key, value);
        drop(dirty);
        let c = &self.shared.counters;
        c.writes.fetch_add(1, Ordering::Relaxed);
        if present {
            c.coalesced.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Writes `value` to the cache and marks it dirty; the flusher writes it to the sink
    /// later. When the dirty set is full (and `key` is not already dirty), waits until a
    /// flush makes room (back-pressure) and wakes the flusher at once.
    ///
    /// # Errors
    ///
    /// [`WriteError::Closed`] after [`shutdown`](Self::shutdown).
    ///
    /// # Cancellation
    ///
    /// Dropping the future while it waits for room writes nothing.
    ///
    /// # Example
    ///
    /// See [`WriteBehind`].
    pub async fn write(&self, key: K, value: V) -> Result<(), WriteError<K, V>> {
        let (mut key, mut value) = (key, value);
        loop {
            let mut room = pin!(self.shared.space.notified());
            room.as_mut().enable();
            match self.record(key, value) {
                Err(WriteError::Full(k, v)) => (key, value) = (k, v),
                done => return done,
            }
            self.shared.wake.notify_one();
            room.await;
        }
    }

    /// [`write`](Self::write) without waiting.
    ///
    /// # Errors
    ///
    /// [`WriteError::Full`] when the dirty set is full (the flusher is woken), or
    /// [`WriteError::Closed`] after shutdown; both hand the entry back.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use aside::{WriteBehind, WriteError};
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let sink = |b: Vec<(u32, u32)>| async move { Ok::<_, String>(()) };
    /// let wb = WriteBehind::builder(cache, sink).capacity(1).build().unwrap();
    /// wb.try_write(1, 1).unwrap();
    /// wb.try_write(1, 2).unwrap(); // same key: coalesced, needs no room
    /// assert_eq!(wb.try_write(2, 2), Err(WriteError::Full(2, 2)));
    /// # }
    /// ```
    pub fn try_write(&self, key: K, value: V) -> Result<(), WriteError<K, V>> {
        let r = self.record(key, value);
        if matches!(r, Err(WriteError::Full(..))) {
            self.shared.wake.notify_one();
        }
        r
    }

    /// Entries dirty now (written, not yet flushed).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let sink = |b: Vec<(u32, u32)>| async move { Ok::<_, String>(()) };
    /// let wb = aside::WriteBehind::builder(cache, sink).build().unwrap();
    /// wb.write(1, 1).await.unwrap();
    /// assert_eq!(wb.dirty_len(), 1);
    /// # }
    /// ```
    pub fn dirty_len(&self) -> usize {
        self.shared.dirty.lock().map.len()
    }

    /// The counters.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let sink = |b: Vec<(u32, u32)>| async move { Ok::<_, String>(()) };
    /// let wb = aside::WriteBehind::builder(cache, sink).build().unwrap();
    /// wb.write(1, 1).await.unwrap();
    /// wb.write(1, 2).await.unwrap();
    /// let s = wb.stats();
    /// assert_eq!((s.writes, s.coalesced, s.dirty), (2, 1, 1));
    /// # }
    /// ```
    pub fn stats(&self) -> WriteBehindStats {
        let c = &self.shared.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WriteBehindStats {
            writes: g(&c.writes),
            coalesced: g(&c.coalesced),
            flushed: g(&c.flushed),
            batches: g(&c.batches),
            failed_batches: g(&c.failed_batches),
            dirty: self.dirty_len(),
            last_error: self.shared.last_error.lock().clone(),
        }
    }

    /// Refuses new writes, flushes every dirty entry (retrying failed batches with backoff
    /// for as long as it takes) and stops the flusher.
    ///
    /// # Errors
    ///
    /// Only if the flusher task itself was aborted (its runtime shut down first): the
    /// entries still dirty are handed back.
    ///
    /// # Example
    ///
    /// See [`WriteBehind`].
    pub async fn shutdown(&self) -> Result<(), Vec<(K, V)>> {
        self.close();
        let flusher = self.flusher.lock().take();
        if let Some(f) = flusher {
            let _ = f.await;
        }
        self.leftovers()
    }

    /// [`shutdown`](Self::shutdown) that gives up after `limit` (a sink that stays down):
    /// the flusher is stopped and the entries still dirty are handed back, in write order,
    /// for the caller to keep elsewhere. They may include entries of a batch that was in
    /// progress when it gave up (the sink may have applied them: it is idempotent).
    ///
    /// # Errors
    ///
    /// The entries not flushed within `limit`.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// use std::time::Duration;
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let down = |b: Vec<(u32, u32)>| async move { Err::<(), _>("database down") };
    /// let wb = aside::WriteBehind::builder(cache, down).build().unwrap();
    /// wb.write(1, 10).await.unwrap();
    /// let kept = wb.shutdown_timeout(Duration::from_secs(60)).await.unwrap_err();
    /// assert_eq!(kept, [(1, 10)]);
    /// assert_eq!(wb.stats().last_error.as_deref(), Some("database down"));
    /// # }
    /// ```
    pub async fn shutdown_timeout(&self, limit: Duration) -> Result<(), Vec<(K, V)>> {
        self.close();
        let flusher = self.flusher.lock().take();
        if let Some(mut f) = flusher {
            if tokio::time::timeout(limit, &mut f).await.is_err() {
                f.abort();
                let _ = f.await;
            }
        }
        self.leftovers()
    }

    fn close(&self) {
        self.shared.dirty.lock().closed = true;
        self.shared.wake.notify_one();
        // Writers waiting for room see `closed`.
        self.shared.space.notify_waiters();
    }

    fn leftovers(&self) -> Result<(), Vec<(K, V)>> {
        let mut dirty = self.shared.dirty.lock();
        if dirty.map.is_empty() {
            return Ok(());
        }
        let mut left: Vec<(K, V, u64)> = dirty.map.drain().map(|(k, (v, s))| (k, v, s)).collect();
        left.sort_by_key(|e| e.2);
        Err(left.into_iter().map(|(k, v, _)| (k, v)).collect())
    }
}

impl<K, V, P> PendingWrites<K, V> for Shared<K, V, P>
where
    K: Hash + Eq + Send + Sync,
    V: Clone + Send + Sync,
    P: EvictionPolicy,
{
    fn pending(&self, key: &K) -> Option<V> {
        self.dirty.lock().map.get(key).map(|(v, _)| v.clone())
    }
}

impl<K, V, P: EvictionPolicy> Drop for WriteBehind<K, V, P> {
    /// Without a `shutdown`, the flusher still flushes every dirty entry in the background
    /// (retrying) and then exits, as long as the runtime runs.
    fn drop(&mut self) {
        self.shared.dirty.lock().closed = true;
        self.shared.wake.notify_one();
        self.shared.space.notify_waiters();
    }
}

impl<K, V, P: EvictionPolicy> fmt::Debug for WriteBehind<K, V, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBehind")
            .field("dirty", &self.shared.dirty.lock().map.len())
            .field("capacity", &self.shared.settings.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache keeps one registration per live write-behind: a dropped one's dirty-set hook
    /// goes when the next registers, so a cache that outlives many write-behinds does not
    /// walk a growing list on every miss.
    #[test]
    fn dropped_write_behinds_leave_no_registration_behind() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let cache: AsideCache<u32, u64> = AsideCache::builder().build().unwrap();
            let sink = |_: Vec<(u32, u64)>| async { Ok::<_, std::io::Error>(()) };
            for n in 0..3 {
                let wb = WriteBehind::builder(cache.clone(), sink).build().unwrap();
                wb.write(n, u64::from(n)).await.unwrap();
                wb.shutdown().await.unwrap();
            }
            let live = WriteBehind::builder(cache.clone(), sink).build().unwrap();
            assert_eq!(cache.inner.pending_writes.read().len(), 1);
            // The live one's hook still answers: a dirty key is served from its dirty set.
            live.write(7, 70).await.unwrap();
            cache.invalidate(&7);
            let loaded = cache.get_or_load(7, || async { Ok::<_, std::io::Error>(Some(0)) });
            assert_eq!(loaded.await.unwrap(), Some(70));
            live.shutdown().await.unwrap();
        });
    }
}
