//! [`Cache`]: lock-striped shards behind one handle.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::time::Duration;

use ahash::RandomState;

use crate::builder::{CacheBuilder, Weigher};
use crate::engine::concurrent::readers::default_stripes;
use crate::engine::expiry::{Clock, Expiration, duration_nanos};
use crate::engine::shard::{Inserted, Lookup, ShardSlot};
use crate::metrics::CacheStats;
use crate::notify::{Listener, Removed};
use crate::policy::{EvictionPolicy, ShardContext, WTinyLfu};
use crate::shim::{AtomicU64, Ordering};

/// Retries of `retain` on a shard that was written to while the predicate ran.
const RETAIN_RETRIES: usize = 4;

/// Keeps each shard's lock and counters on cache lines of their own.
#[repr(align(128))]
struct Padded<T>(T);

pub(crate) struct Parts<K, V, P, S> {
    pub(crate) capacity: u64,
    pub(crate) shards: usize,
    pub(crate) policy: P,
    pub(crate) hasher: S,
    pub(crate) seed: u64,
    pub(crate) expiration: Expiration,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) weigher: Option<Weigher<K, V>>,
    pub(crate) listener: Option<Listener<K, V>>,
}

/// One shard, on cache lines of its own.
type Slot<K, V, P> = Padded<ShardSlot<K, V, P>>;

struct Inner<K, V, P: EvictionPolicy, S> {
    shards: Box<[Slot<K, V, P>]>,
    mask: usize,
    hasher: S,
    capacity: u64,
    clock: Arc<dyn Clock>,
    /// Set once any entry may carry a deadline; until then writes skip reading the clock.
    may_expire: AtomicU64,
    weigher: Option<Weigher<K, V>>,
    listener: Option<Listener<K, V>>,
    /// `get_or_insert_with`'s pending inits, made on first use.
    inits: std::sync::OnceLock<crate::inits::Inits<K, V>>,
}

/// A concurrent, sharded, bounded cache with a pluggable [`EvictionPolicy`].
///
/// `Cache` is `Send + Sync` and cheap to clone: clones share the same storage. Keys are hashed
/// once per operation with a randomly seeded `ahash`; the hash picks the shard (from its upper
/// 32 bits) and, within the shard, the table bucket (from the lower 32 bits, which each entry
/// stores so the table can grow without calling `Hash`). Each shard has a table that lookups
/// read without a lock, and a `parking_lot::Mutex` that serializes its writers and guards its
/// policy.
///
/// # Reads return clones
///
/// [`get`](Self::get) clones the value out inside the lookup's read section, during which a
/// writer that removes or replaces that entry waits before it hands the old value back. For
/// large values, store `Arc<T>` (a clone is then one atomic increment) and keep the value's
/// `Clone` cheap and free of calls into the same cache: it is, with the key's `Eq`, the only
/// user code that runs during a lookup.
///
/// # Example
///
/// ```
/// use aside::Cache;
/// use std::sync::Arc;
///
/// let cache: Cache<u64, Arc<String>> = Cache::new(10_000);
/// let handle = cache.clone();
/// std::thread::spawn(move || handle.insert(1, Arc::new("one".into()))).join().unwrap();
/// assert_eq!(cache.get(&1).as_deref().map(String::as_str), Some("one"));
/// ```
pub struct Cache<K, V, P: EvictionPolicy = WTinyLfu, S = RandomState> {
    inner: Arc<Inner<K, V, P, S>>,
}

impl<K, V, P: EvictionPolicy, S> Clone for Cache<K, V, P, S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V> Cache<K, V> {
    /// A builder with every setting at its default; see [`CacheBuilder`].
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<&str, u32> =
    ///     aside::Cache::builder().max_capacity(100).build().unwrap();
    /// # let _ = cache;
    /// ```
    pub fn builder() -> CacheBuilder<K, V> {
        CacheBuilder::new()
    }
}

impl<K, V> Cache<K, V>
where
    K: Hash + Eq,
    V: Clone,
{
    /// A cache holding at most `capacity` entries, with default settings (the default policy,
    /// [`WTinyLfu`](crate::policy::WTinyLfu)).
    ///
    /// # Panics
    ///
    /// Never: the default configuration is valid.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(100);
    /// assert_eq!(cache.capacity(), 100);
    /// ```
    #[must_use]
    pub fn new(capacity: u64) -> Self {
        Self::builder()
            .max_capacity(capacity)
            .build()
            .expect("the default configuration is valid")
    }
}

impl<K, V, P: EvictionPolicy, S> Cache<K, V, P, S> {
    pub(crate) fn from_parts(parts: Parts<K, V, P, S>) -> Self {
        let n = parts.shards as u64;
        let stripes = default_stripes();
        let shards = (0..parts.shards)
            .map(|i| {
                let i64 = i as u64;
                // Split the capacity exactly: the first `capacity % n` shards get one more.
                let capacity = parts.capacity / n + u64::from(i64 < parts.capacity % n);
                let ctx = ShardContext {
                    index: i,
                    capacity,
                    seed: parts
                        .seed
                        .wrapping_add(i64.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                };
                let max_entries = match parts.weigher {
                    Some(_) => usize::MAX,
                    None => usize::try_from(capacity).unwrap_or(usize::MAX),
                };
                Padded(ShardSlot::new(
                    parts.policy.clone(),
                    ctx,
                    parts.expiration,
                    max_entries,
                    stripes,
                    parts.weigher.is_none(),
                ))
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                shards,
                mask: parts.shards - 1,
                hasher: parts.hasher,
                capacity: parts.capacity,
                clock: parts.clock,
                may_expire: AtomicU64::new(u64::from(parts.expiration.has_default())),
                weigher: parts.weigher,
                listener: parts.listener,
                inits: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The configured capacity: entries, or total weight with a weigher.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(aside::Cache::<u32, u32>::new(5).capacity(), 5);
    /// ```
    pub fn capacity(&self) -> u64 {
        self.inner.capacity
    }

    /// The number of shards.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(aside::Cache::<u32, u32>::new(1_000_000).shard_count().is_power_of_two());
    /// ```
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// The number of entries stored, including expired ones not yet reclaimed. Never exceeds
    /// the capacity (without a weigher) once an insert has returned.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// cache.insert(1, 1);
    /// assert_eq!(cache.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.0.write.lock().len())
            .sum()
    }

    /// Whether the cache holds no entries.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(aside::Cache::<u32, u32>::new(10).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.inner
            .shards
            .iter()
            .all(|s| s.0.write.lock().len() == 0)
    }

    /// The total weight stored (the entry count without a weigher).
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// cache.insert(1, 1);
    /// assert_eq!(cache.weighted_size(), 1);
    /// ```
    pub fn weighted_size(&self) -> u64 {
        self.inner
            .shards
            .iter()
            .map(|s| s.0.write.lock().weight())
            .sum()
    }

    /// A snapshot of the counters, summed over shards.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// cache.get(&1);
    /// assert_eq!(cache.stats().misses, 1);
    /// ```
    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats::default();
        for s in self.inner.shards.iter() {
            let readers = s.0.store.readers();
            let writes = *s.0.write.lock().write_counters();
            stats.add_shard(readers.hits(), readers.misses(), &writes);
        }
        stats
    }

    /// Bytes allocated by the cache's own tables and slabs (excluding what keys and values
    /// allocate themselves, and the policies' side structures).
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u64, u64> = aside::Cache::new(10);
    /// cache.insert(1, 1);
    /// assert!(cache.allocated_bytes() > 0);
    /// ```
    pub fn allocated_bytes(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.0.write.lock().allocated_bytes(&s.0.store))
            .sum()
    }

    /// Checks every internal invariant of every shard: table, slab and policy structure agree,
    /// weights add up, no shard is over capacity. O(n); for tests, fuzzers and debugging.
    ///
    /// # Errors
    ///
    /// [`InvariantError`](crate::InvariantError): the first broken invariant, described and
    /// prefixed with the shard index.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// cache.insert(1, 1);
    /// cache.validate().unwrap();
    /// ```
    pub fn validate(&self) -> Result<(), crate::InvariantError> {
        for (i, s) in self.inner.shards.iter().enumerate() {
            let mut shard = s.0.write.lock();
            shard.drain(&s.0.store);
            shard
                .validate(&s.0.store)
                .map_err(|e| crate::InvariantError::new(format!("shard {i}: {e}")))?;
        }
        Ok(())
    }

    /// Runs `f` on shard `index` under its lock (tests and fuzzers only).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn with_shard<R>(
        &self,
        index: usize,
        f: impl FnOnce(&mut crate::engine::shard::Shard<K, V, P>) -> R,
    ) -> R {
        f(&mut self.inner.shards[index].0.write.lock())
    }
}

impl<K, V, P, S> Cache<K, V, P, S>
where
    K: Hash + Eq,
    V: Clone,
    P: EvictionPolicy,
    S: BuildHasher,
{
    #[inline]
    fn locate<Q: Hash + ?Sized>(&self, key: &Q) -> (&ShardSlot<K, V, P>, u32) {
        let hash = self.inner.hasher.hash_one(key);
        let shard = &self.inner.shards[(hash >> 32) as usize & self.inner.mask].0;
        (shard, hash as u32)
    }

    /// The clock reading for a write, or 0 while no entry can carry a deadline.
    #[inline]
    fn write_now(&self, ttl: Option<u64>) -> u64 {
        if ttl.is_some() {
            self.inner.may_expire.store(1, Ordering::Relaxed);
        } else if self.inner.may_expire.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.inner.clock.now_nanos()
    }

    fn notify(&self, removed: Removed<K, V>) {
        removed.notify(self.inner.listener.as_ref());
    }

    /// Announces and drops entries a `_deferred` write removed; call it with no lock held.
    pub(crate) fn notify_removed(&self, removed: Removed<K, V>) {
        self.notify(removed);
    }

    /// `insert`/`insert_with_ttl` (TTL in nanoseconds) that hands back what it removed instead
    /// of announcing it, for callers that write under a lock of their own.
    pub(crate) fn insert_deferred(&self, key: K, value: V, ttl: Option<u64>) -> Removed<K, V> {
        let mut removed = Removed::new();
        self.insert_into(key, value, ttl, false, &mut removed);
        removed
    }

    /// Hashes and weighs (user code, outside the lock), then stores `key → value` under its
    /// shard's lock. What the
    /// write removed goes to `removed`: replaced, evicted and expired entries, then a newcomer
    /// the policy rejected.
    fn insert_into(
        &self,
        key: K,
        value: V,
        ttl: Option<u64>,
        only_if_absent: bool,
        removed: &mut Removed<K, V>,
    ) -> Inserted<V> {
        let (slot, fragment) = self.locate(&key);
        let weight = self.inner.weigher.as_ref().map_or(1, |w| w(&key, &value));
        let now = self.write_now(ttl);
        let mut rejected = Removed::new();
        let inserted = slot.write(removed, |shard, store| {
            shard.insert(
                store,
                fragment,
                key,
                value,
                weight,
                ttl,
                now,
                only_if_absent,
                &mut rejected,
            )
        });
        rejected.append_to(removed);
        inserted
    }

    /// `invalidate` that hands back what it removed.
    pub(crate) fn invalidate_deferred<Q>(&self, key: &Q) -> Removed<K, V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (slot, fragment) = self.locate(key);
        let now = self.write_now(None);
        let mut removed = Removed::new();
        slot.write(&mut removed, |shard, store| {
            shard.remove(store, fragment, key, now)
        });
        removed
    }

    /// `invalidate_all` that hands back what it removed, per shard.
    pub(crate) fn invalidate_all_deferred(&self) -> Vec<Removed<K, V>> {
        self.inner
            .shards
            .iter()
            .map(|s| {
                let mut removed = Removed::new();
                s.0.write(&mut removed, |shard, store| shard.clear(store));
                removed
            })
            .collect()
    }

    #[inline]
    fn lookup<Q>(&self, key: &Q, access: bool) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (slot, fragment) = self.locate(key);
        match slot.get(fragment, key, &self.inner.clock, access, V::clone) {
            Lookup::Hit { value, drain } => {
                if drain {
                    slot.try_drain();
                }
                Some(value)
            }
            Lookup::Miss => None,
            Lookup::Expired => {
                if access {
                    let mut removed = Removed::new();
                    let now = self.inner.clock.now_nanos();
                    slot.write(&mut removed, |shard, store| {
                        shard.remove_expired(store, fragment, key, now);
                    });
                    self.notify(removed);
                }
                None
            }
        }
    }

    /// The value for `key`, cloned, if present and not expired. Counts a hit or a miss,
    /// tells the policy about the hit and slides a sliding deadline. An expired entry found
    /// here is removed (passive expiry) and announced with [`RemovalCause::Expired`](crate::RemovalCause::Expired).
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<String, u32> = aside::Cache::new(10);
    /// cache.insert("a".to_string(), 1);
    /// assert_eq!(cache.get("a"), Some(1)); // borrowed lookups work
    /// assert_eq!(cache.get("b"), None);
    /// ```
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lookup(key, true)
    }

    /// Like [`get`](Self::get) but without side effects: no policy update, no sliding, no
    /// counters, no removal.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// cache.insert(1, 1);
    /// assert_eq!(cache.peek(&1), Some(1));
    /// assert_eq!(cache.stats().hits, 0);
    /// ```
    pub fn peek<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.lookup(key, false)
    }

    /// Whether a live entry for `key` exists; no side effects, no clone.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// cache.insert(1, 1);
    /// assert!(cache.contains_key(&1) && !cache.contains_key(&2));
    /// ```
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (slot, fragment) = self.locate(key);
        matches!(
            slot.get(fragment, key, &self.inner.clock, false, |_| ()),
            Lookup::Hit { .. }
        )
    }

    fn store(&self, key: K, value: V, ttl: Option<u64>, only_if_absent: bool) -> Inserted<V> {
        let mut removed = Removed::new();
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.insert_into(key, value, ttl, only_if_absent, &mut removed)
        }));
        self.finish_write(removed, result)
    }

    /// Announces what a write removed, then returns its result or resumes its panic. User
    /// code under the lock (the key's `Eq`, the value's `Clone`) may panic after the write
    /// already removed entries (its sweep, or `remove` cloning the value it returns): those
    /// removals are announced all the same, so a listener never misses one.
    fn finish_write<R>(&self, removed: Removed<K, V>, result: std::thread::Result<R>) -> R {
        match result {
            Ok(r) => {
                self.notify(removed);
                r
            }
            Err(panic) => {
                // The user code's panic is the one to report; a listener's would hide it.
                let _ = catch_unwind(AssertUnwindSafe(|| self.notify(removed)));
                resume_unwind(panic)
            }
        }
    }

    /// Stores `value` under `key` with the cache's default expiry, replacing any value (which
    /// is announced with [`RemovalCause::Replaced`](crate::RemovalCause::Replaced)). Evicts as
    /// needed: once `insert` returns, the shard is within capacity. Rejected or evicted
    /// entries are dropped, and announced to the listener, after the lock is released.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, &str> = aside::Cache::new(10);
    /// cache.insert(1, "a");
    /// cache.insert(1, "b");
    /// assert_eq!(cache.get(&1), Some("b"));
    /// ```
    pub fn insert(&self, key: K, value: V) {
        self.store(key, value, None, false);
    }

    /// Stores `value` under `key`, expiring `ttl` from now (plus the configured jitter),
    /// whatever the cache's default. A zero TTL stores an entry that is already expired;
    /// `Duration::MAX` saturates at about 292 years.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// let clock = aside::MockClock::new();
    /// let cache: aside::Cache<u32, u32> =
    ///     aside::Cache::builder().clock(clock.clone()).build().unwrap();
    /// cache.insert_with_ttl(1, 1, Duration::from_secs(5));
    /// clock.advance(Duration::from_secs(5));
    /// assert_eq!(cache.get(&1), None);
    /// ```
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        self.store(key, value, Some(duration_nanos(ttl)), false);
    }

    /// The value for `key`; on a miss, `init` computes it (outside every lock) and it is
    /// inserted unless another thread stored one meanwhile, in which case that value is
    /// returned and `init`'s is dropped.
    ///
    /// Concurrent callers that miss the same key together run **one** `init`: the others
    /// block until it finishes and get its value (quick_cache's and moka's `get_with`
    /// contract). Waiting blocks the thread; on an async executor use
    /// [`AsideCache::get_or_load`](crate::AsideCache), which waits without blocking and adds
    /// a lease, timeouts and fail-safe.
    ///
    /// # Panics
    ///
    /// If `init` panics, the panic propagates to this caller and the cache is unchanged; the
    /// callers waiting on it retry (one of them runs its own `init`). If `init` calls
    /// `get_or_insert_with` for the same key on the same thread, that inner call panics
    /// instead of waiting for itself forever.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, String> = aside::Cache::new(10);
    /// let v = cache.get_or_insert_with(7, || "seven".to_string());
    /// assert_eq!(v, "seven");
    /// let v = cache.get_or_insert_with(7, || unreachable!("cached"));
    /// assert_eq!(v, "seven");
    /// ```
    pub fn get_or_insert_with(&self, key: K, init: impl FnOnce() -> V) -> V
    where
        K: Clone,
    {
        use crate::inits::{Inits, Joined};
        let mut init = Some(init);
        loop {
            if let Some(v) = self.get(&key) {
                return v;
            }
            let inits = self
                .inner
                .inits
                .get_or_init(|| Inits::new(self.inner.shards.len()));
            let hash = crate::inits::hash_of(&self.inner.hasher, &key);
            let lead = match inits.join(hash, &key) {
                Joined::Wait(other) => match other.wait() {
                    Some(v) => return v,
                    None => continue, // its `init` panicked: try again
                },
                Joined::Lead(lead) => lead,
            };
            // Until `complete`, a panic (in `init`, the weigher or the listener) abandons the
            // init, so that its waiters retry instead of waiting forever.
            let guard = AbandonOnDrop {
                inits,
                hash,
                init: &lead,
            };
            // A caller that stored between this one's `get` and its `join` left its value.
            if let Some(v) = self.peek(&key) {
                std::mem::forget(guard);
                inits.complete(hash, &lead, v.clone());
                return v;
            }
            let make = init.take().expect("a caller leads at most once");
            let value = make();
            let value = match self.store(key, value.clone(), None, true) {
                Inserted::Stored => value,
                Inserted::Present(existing) => existing,
            };
            std::mem::forget(guard);
            inits.complete(hash, &lead, value.clone());
            return value;
        }
    }

    /// Removes `key`, returning its value if it was live. The listener sees
    /// [`RemovalCause::Explicit`](crate::RemovalCause::Explicit) (or `Expired`, when the entry
    /// had expired, in which case `None` is returned).
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// cache.insert(1, 10);
    /// assert_eq!(cache.remove(&1), Some(10));
    /// assert_eq!(cache.remove(&1), None);
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (slot, fragment) = self.locate(key);
        let now = self.write_now(None);
        let mut removed = Removed::new();
        let value = catch_unwind(AssertUnwindSafe(|| {
            let live = slot.write(&mut removed, |shard, store| {
                shard.remove(store, fragment, key, now)
            });
            // Cloned after the lock is released; announced before it is handed back.
            if live { removed.first_value() } else { None }
        }));
        self.finish_write(removed, value)
    }

    /// Removes `key` if present, without returning the value: the cache-aside write path
    /// ("update the database, then invalidate").
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// cache.insert(1, 10);
    /// cache.invalidate(&1);
    /// assert!(!cache.contains_key(&1));
    /// ```
    pub fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.notify(self.invalidate_deferred(key));
    }

    /// Removes every entry, shard by shard (each announced as `Explicit`). Counters are kept.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// cache.insert(1, 1);
    /// cache.invalidate_all();
    /// assert!(cache.is_empty());
    /// ```
    pub fn invalidate_all(&self) {
        for removed in self.invalidate_all_deferred() {
            self.notify(removed);
        }
    }

    /// Keeps only the entries for which `keep` returns `true`; removes the rest explicitly.
    ///
    /// The predicate never runs under a shard lock: each shard is snapshotted (keys and values
    /// cloned), the predicate runs on the snapshot, and the chosen entries are removed if the
    /// shard saw no insert or replacement meanwhile; otherwise that shard is retried (up to
    /// four times, after which entries whose key is unchanged are removed even if their value
    /// was replaced concurrently). Entries inserted while `retain` runs may or may not be seen.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// for i in 0..6 { cache.insert(i, i); }
    /// cache.retain(|_k, v| v % 2 == 0);
    /// assert_eq!(cache.len(), 3);
    /// ```
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool)
    where
        K: Clone,
    {
        for s in self.inner.shards.iter() {
            let slot = &s.0;
            for attempt in 0.. {
                let now = self.inner.clock.now_nanos();
                let (generation, snapshot) = {
                    let shard = slot.write.lock();
                    (shard.generation(), shard.snapshot(&slot.store, now))
                };
                let victims: Vec<_> = snapshot
                    .into_iter()
                    .filter(|(_, k, v)| !keep(k, v))
                    .map(|(id, k, _)| (id, k))
                    .collect();
                if victims.is_empty() {
                    break;
                }
                let mut removed = Removed::new();
                // The key's `Eq` runs here, under the lock.
                let done = catch_unwind(AssertUnwindSafe(|| {
                    slot.write(&mut removed, |shard, store| {
                        if shard.generation() != generation && attempt < RETAIN_RETRIES {
                            return false;
                        }
                        shard.remove_ids(store, victims);
                        true
                    })
                }));
                if matches!(done, Ok(false)) {
                    continue;
                }
                self.finish_write(removed, done);
                break;
            }
        }
    }

    /// Removes every entry for which `predicate` returns `true`: `retain` with the test
    /// inverted.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<String, u32> = aside::Cache::new(10);
    /// cache.insert("user:1".into(), 1);
    /// cache.insert("product:1".into(), 2);
    /// cache.invalidate_if(|k, _| k.starts_with("user:"));
    /// assert_eq!(cache.len(), 1);
    /// ```
    pub fn invalidate_if(&self, mut predicate: impl FnMut(&K, &V) -> bool)
    where
        K: Clone,
    {
        self.retain(|k, v| !predicate(k, v));
    }

    /// Removes expired entries now, running the Redis-style random-sample sweep on every shard
    /// (up to 16 rounds of 20 samples each, repeating while over a quarter of a sample had
    /// expired). Writes already run a short sweep every 16 writes per shard, so calling this
    /// is optional. Returns how many entries it removed.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// let clock = aside::MockClock::new();
    /// let cache: aside::Cache<u32, u32> = aside::Cache::builder()
    ///     .time_to_live(Duration::from_secs(1))
    ///     .clock(clock.clone())
    ///     .build()
    ///     .unwrap();
    /// for i in 0..10 { cache.insert(i, i); }
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(cache.sweep_expired(), 10);
    /// assert!(cache.is_empty());
    /// ```
    pub fn sweep_expired(&self) -> usize {
        let mut total = 0;
        for s in self.inner.shards.iter() {
            let mut removed = Removed::new();
            let now = self.inner.clock.now_nanos();
            total += s.0.write(&mut removed, |shard, store| {
                shard.sweep(store, crate::engine::expiry::SWEEP_MAX_ROUNDS, now)
            });
            self.notify(removed);
        }
        total
    }

    /// An iterator over a snapshot of the live entries, taken one shard at a time (keys and
    /// values cloned under the shard's lock, yielded outside it). Weakly consistent:
    /// writes during iteration may or may not be seen. Touches no policy state.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// for i in 0..3 { cache.insert(i, i * 10); }
    /// let mut all: Vec<_> = cache.iter().collect();
    /// all.sort();
    /// assert_eq!(all, vec![(0, 0), (1, 10), (2, 20)]);
    /// ```
    pub fn iter(&self) -> Iter<K, V, P, S>
    where
        K: Clone,
    {
        Iter {
            cache: self.clone(),
            next_shard: 0,
            current: Vec::new().into_iter(),
        }
    }
}

/// Entries a snapshot copies per acquisition of a shard's lock.
#[cfg(feature = "snapshot")]
const SNAPSHOT_BATCH: usize = 256;

#[cfg(feature = "snapshot")]
impl<K, V, P, S> Cache<K, V, P, S>
where
    K: Hash + Eq,
    V: Clone,
    P: EvictionPolicy,
    S: BuildHasher,
{
    /// The cache clock's reading.
    pub(crate) fn now_nanos(&self) -> u64 {
        self.inner.clock.now_nanos()
    }

    /// Whether the cache weighs its entries.
    pub(crate) fn has_weigher(&self) -> bool {
        self.inner.weigher.is_some()
    }

    /// About the `limit` hottest live entries of the whole cache, hottest first, as `copy`
    /// makes them (`None` skips an entry), each with its deadline; and the clock reading
    /// they were taken at.
    ///
    /// Each shard gives a share of `limit` proportional to its length, its hottest first in
    /// its policy's order ([`EvictionPolicy::hottest`]); the shares are merged by relative
    /// rank (an entry ranked `r` of `q` in its shard sorts at `(r + 1/2) / q`), so the result
    /// approximates the hottest `limit` overall. The order is computed under each shard's
    /// lock once; keys and values are then cloned by `copy` under the lock,
    /// [`SNAPSHOT_BATCH`] at a time, so that writers wait for one batch at most. An entry
    /// removed between two batches is skipped; weakly consistent, like [`iter`](Self::iter).
    pub(crate) fn hottest_copies<W>(
        &self,
        limit: usize,
        mut copy: impl FnMut(&K, &V) -> Option<W>,
    ) -> (Vec<(W, crate::engine::expiry::Deadline)>, u64) {
        let now = self.now_nanos();
        let shards = &self.inner.shards;
        let lens: Vec<usize> = shards.iter().map(|s| s.0.write.lock().len()).collect();
        let total: usize = lens.iter().sum();
        let mut ranked: Vec<(f64, W, crate::engine::expiry::Deadline)> = Vec::new();
        if total == 0 || limit == 0 {
            return (Vec::new(), now);
        }
        for (slot, &len) in shards.iter().map(|s| &s.0).zip(&lens) {
            // ceil(limit * len / total), at most the shard's length.
            let share = (limit as u128 * len as u128).div_ceil(total as u128);
            let quota = usize::try_from(share).unwrap_or(usize::MAX).min(len);
            if quota == 0 {
                continue;
            }
            let mut removed = Removed::new();
            let ids = slot.write(&mut removed, |shard, store| shard.hottest(store, quota));
            self.notify(removed);
            let mut copies = Vec::with_capacity(ids.len());
            for (i, batch) in ids.chunks(SNAPSHOT_BATCH).enumerate() {
                let shard = slot.write.lock();
                shard.copy_out(
                    &slot.store,
                    batch,
                    now,
                    &mut copy,
                    &mut copies,
                    i * SNAPSHOT_BATCH,
                );
            }
            let q = ids.len().max(1) as f64;
            ranked.extend(
                copies
                    .into_iter()
                    .map(|(rank, w, d)| ((rank as f64 + 0.5) / q, w, d)),
            );
        }
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
        ranked.truncate(limit);
        (ranked.into_iter().map(|(_, w, d)| (w, d)).collect(), now)
    }
}

impl<K, V> Removed<K, V> {
    /// The value of the first removed entry, cloned (used by `remove`).
    fn first_value(&self) -> Option<V>
    where
        V: Clone,
    {
        self.first().map(|(_, v, _)| v.clone())
    }
}

/// Abandons a `get_or_insert_with` init if its leader unwinds before completing it.
/// A key's slot in the pending inits, led by its holder until dropped ([`Cache::lead_key`]).
pub(crate) struct KeySlot<'a, K: Hash + Eq + Clone, V: Clone> {
    inits: &'a crate::inits::Inits<K, V>,
    hash: u64,
    init: Arc<crate::inits::Init<V>>,
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for KeySlot<'_, K, V> {
    fn drop(&mut self) {
        // Its waiters look again.
        self.inits.abandon(self.hash, &self.init);
    }
}

impl<K, V, P, S> Cache<K, V, P, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    P: EvictionPolicy,
    S: BuildHasher,
{
    /// Leads `key`'s slot in the pending inits, after waiting for whoever leads it now (a
    /// `get_or_insert_with` init or a `compute`): until the returned guard drops, every other
    /// caller of those two for `key` waits.
    ///
    /// # Panics
    ///
    /// If this thread already leads `key` (it would wait for itself).
    pub(crate) fn lead_key(&self, key: &K) -> KeySlot<'_, K, V> {
        use crate::inits::{Inits, Joined};
        let inits = self
            .inner
            .inits
            .get_or_init(|| Inits::new(self.inner.shards.len()));
        let hash = crate::inits::hash_of(&self.inner.hasher, key);
        loop {
            match inits.join(hash, key) {
                // Whatever the leader did, look again once it is done.
                Joined::Wait(other) => drop(other.wait()),
                Joined::Lead(init) => return KeySlot { inits, hash, init },
            }
        }
    }
}

struct AbandonOnDrop<'a, K: Hash + Eq + Clone, V: Clone> {
    inits: &'a crate::inits::Inits<K, V>,
    hash: u64,
    init: &'a Arc<crate::inits::Init<V>>,
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for AbandonOnDrop<'_, K, V> {
    fn drop(&mut self) {
        self.inits.abandon(self.hash, self.init);
    }
}

/// A snapshot iterator over a cache's entries; see [`Cache::iter`].
pub struct Iter<K, V, P: EvictionPolicy, S> {
    cache: Cache<K, V, P, S>,
    next_shard: usize,
    current: std::vec::IntoIter<(crate::policy::EntryId, K, V)>,
}

impl<K, V, P: EvictionPolicy, S> fmt::Debug for Iter<K, V, P, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("cache", &self.cache)
            .field("next_shard", &self.next_shard)
            .field("buffered", &self.current.len())
            .finish()
    }
}

impl<K, V, P, S> Iterator for Iter<K, V, P, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    P: EvictionPolicy,
    S: BuildHasher,
{
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        loop {
            if let Some((_, k, v)) = self.current.next() {
                return Some((k, v));
            }
            let shard = self.cache.inner.shards.get(self.next_shard)?;
            self.next_shard += 1;
            let now = self.cache.inner.clock.now_nanos();
            let slot = &shard.0;
            self.current = slot.write.lock().snapshot(&slot.store, now).into_iter();
        }
    }
}

impl<K, V, P: EvictionPolicy, S> fmt::Debug for Cache<K, V, P, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("len", &self.len())
            .field("capacity", &self.inner.capacity)
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(aside_shuttle)))]
mod tests {
    use super::*;

    /// Two threads that miss on one key at once: the second one's lookup runs while the first
    /// one's insert holds the shard's lock. It waits for that write and finds the key.
    #[test]
    fn a_miss_during_a_write_waits_for_it_and_sees_its_insert() {
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(100)
            .shards(1)
            .build()
            .unwrap();
        let (slot, fragment) = cache.locate(&7);
        let mut write = slot.write.lock();
        std::thread::scope(|s| {
            let reader = s.spawn(|| cache.get(&7));
            // The reader's first look misses, finds the lock held and counts as no lookup
            // before it waits: only then does the write store the key.
            while slot.store.readers().uncounted() == 0 {
                assert!(
                    !reader.is_finished(),
                    "the reader did not wait for the write"
                );
                std::thread::yield_now();
            }
            let mut out = Removed::new();
            write.insert(&slot.store, fragment, 7, 70, 1, None, 0, false, &mut out);
            write.reclaim(&slot.store, &mut out);
            drop(write);
            assert!(out.is_empty());
            assert_eq!(reader.join().unwrap(), Some(70));
        });
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (1, 0), "one lookup, one hit");
        // With no write in flight, a miss is a miss at once.
        assert_eq!(cache.get(&8), None);
        assert_eq!(cache.stats().misses, 1);
        cache.validate().unwrap();
    }
}
