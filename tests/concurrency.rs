//! Multi-threaded smoke tests for every built-in policy, value drop accounting, and the cache's
//! resilience to panicking user code (listener, weigher, `Clone`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use aside::policy::{EvictionPolicy, Fifo, Lfu, Lru, S3Fifo, SampledTtl, WTinyLfu};
use aside::{Cache, MockClock, RemovalCause};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const THREADS: usize = 4;
/// Operations per thread in the smoke tests: `ASIDE_SOAK_OPS` (a soak run, see
/// docs/testing.md), else 20,000.
fn ops() -> usize {
    std::env::var("ASIDE_SOAK_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}
const CAPACITY: u64 = 64;
const KEYS: u32 = 256;

/// Values alive per test (indexed by `SLOT`), so that tests running in parallel do not share
/// a counter.
static LIVE: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];

/// A value that counts its live instances: constructions and clones add one, drops take one.
#[derive(Debug)]
struct Tracked<const SLOT: usize> {
    key: u32,
    version: u64,
}

impl<const SLOT: usize> Tracked<SLOT> {
    fn new(key: u32, version: u64) -> Self {
        LIVE[SLOT].fetch_add(1, Ordering::SeqCst);
        Self { key, version }
    }

    fn live() -> usize {
        LIVE[SLOT].load(Ordering::SeqCst)
    }
}

impl<const SLOT: usize> Clone for Tracked<SLOT> {
    fn clone(&self) -> Self {
        Self::new(self.key, self.version)
    }
}

impl<const SLOT: usize> Drop for Tracked<SLOT> {
    fn drop(&mut self) {
        LIVE[SLOT].fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Announced {
    replaced: AtomicU64,
    removed: AtomicU64,
}

fn smoke<P: EvictionPolicy, const SLOT: usize>(policy: P) {
    assert_eq!(Tracked::<SLOT>::live(), 0);
    let clock = MockClock::new();
    let announced = Arc::new(Announced::default());
    let sink = Arc::clone(&announced);
    let cache: Cache<u32, Tracked<SLOT>, P> = Cache::builder()
        .max_capacity(CAPACITY)
        .shards(4)
        .seed(SLOT as u64)
        .policy(policy)
        .clock(clock.clone())
        .eviction_listener(move |k: &u32, v: &Tracked<SLOT>, cause| {
            assert_eq!(*k, v.key, "the listener gets the entry's own value");
            match cause {
                RemovalCause::Replaced => &sink.replaced,
                _ => &sink.removed,
            }
            .fetch_add(1, Ordering::Relaxed);
        })
        .build()
        .unwrap();
    let max_len = AtomicUsize::new(0);
    let ops = ops();

    std::thread::scope(|s| {
        for t in 0..THREADS {
            let cache = cache.clone();
            let clock = clock.clone();
            let max_len = &max_len;
            s.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(1000 * SLOT as u64 + t as u64);
                for i in 0..ops {
                    let key = rng.random_range(0..KEYS);
                    let version = (t * ops + i) as u64;
                    match rng.random_range(0..1000) {
                        0..400 => {
                            if let Some(v) = cache.get(&key) {
                                assert_eq!(v.key, key);
                            }
                        }
                        400..600 => cache.insert(key, Tracked::new(key, version)),
                        600..700 => {
                            let ttl = Duration::from_millis(rng.random_range(0..20));
                            cache.insert_with_ttl(key, Tracked::new(key, version), ttl);
                        }
                        700..750 => {
                            let v = cache.get_or_insert_with(key, || Tracked::new(key, version));
                            assert_eq!(v.key, key);
                        }
                        750..800 => {
                            if let Some(v) = cache.remove(&key) {
                                assert_eq!(v.key, key);
                            }
                        }
                        800..830 => cache.invalidate(&key),
                        830..880 => {
                            if let Some(v) = cache.peek(&key) {
                                assert_eq!(v.key, key);
                            }
                        }
                        880..930 => {
                            let _ = cache.contains_key(&key);
                        }
                        930..960 => {
                            let _ = cache.sweep_expired();
                        }
                        960..990 => {
                            let _ = cache.stats();
                            let _ = cache.weighted_size();
                        }
                        990..995 => {
                            let pivot = rng.random_range(0..KEYS);
                            cache.retain(|k, v| {
                                assert_eq!(*k, v.key);
                                *k != pivot
                            });
                        }
                        995..998 => {
                            let n = cache.iter().inspect(|(k, v)| assert_eq!(*k, v.key)).count();
                            assert!(n as u64 <= CAPACITY);
                        }
                        998 => cache.validate().unwrap(),
                        _ => {
                            if rng.random_range(0..4) == 0 {
                                cache.invalidate_all();
                            }
                        }
                    }
                    if t == 0 && i % 64 == 0 {
                        clock.advance(Duration::from_millis(rng.random_range(0..5)));
                    }
                    let len = cache.len();
                    assert!(len as u64 <= CAPACITY, "len {len} over capacity");
                    max_len.fetch_max(len, Ordering::Relaxed);
                }
            });
        }
    });

    cache.validate().unwrap();
    assert!(cache.len() as u64 <= CAPACITY);
    let peak = max_len.load(Ordering::Relaxed);
    assert!(
        peak as u64 > CAPACITY / 2,
        "the cache filled up (peak {peak})"
    );

    // Every stored entry either is still here or was removed and counted exactly once.
    let s = cache.stats();
    assert!(
        s.hits > 0 && s.misses > 0 && s.expired > 0 && s.evicted_capacity > 0,
        "{s:?}"
    );
    // Admission policies (W-TinyLFU) may turn newcomers away, counted as capacity evictions.
    if ADMITS_ALL.contains(&std::any::type_name::<P>()) {
        assert_eq!(s.rejected, 0, "these policies admit everything");
    }
    // A refused newcomer is announced and counted as a capacity eviction but was never
    // inserted (no entry here is heavier than the cache).
    assert_eq!(
        s.inserts + s.rejected,
        s.removals() + cache.len() as u64,
        "{s:?}"
    );
    assert_eq!(announced.removed.load(Ordering::Relaxed), s.removals());
    assert_eq!(announced.replaced.load(Ordering::Relaxed), s.updates);

    // The cache holds the only values left; dropping it (and its clones) frees them all.
    assert_eq!(Tracked::<SLOT>::live(), cache.len());
    let clone = cache.clone();
    drop(cache);
    assert_eq!(Tracked::<SLOT>::live(), clone.len());
    drop(clone);
    assert_eq!(Tracked::<SLOT>::live(), 0);
}

#[test]
fn smoke_lru() {
    smoke::<_, 0>(Lru::new());
}

#[test]
fn smoke_lfu() {
    smoke::<_, 1>(Lfu::new());
}

#[test]
fn smoke_fifo() {
    smoke::<_, 2>(Fifo::new());
}

#[test]
fn smoke_sampled_ttl() {
    smoke::<_, 3>(SampledTtl::new());
}

/// The policies without an admission filter.
const ADMITS_ALL: &[&str] = &[
    "aside::policy::lru::Lru",
    "aside::policy::lfu::Lfu",
    "aside::policy::fifo::Fifo",
    "aside::policy::ttl::SampledTtl",
];

#[test]
fn smoke_wtinylfu() {
    smoke::<_, 5>(WTinyLfu::new());
}

#[test]
fn smoke_s3fifo() {
    smoke::<_, 6>(S3Fifo::new());
}

/// Readers only, on one shard: every replay of the access buffer runs under the shared lock,
/// concurrently with other readers' pushes (late stores included). Hits and misses stay exact
/// although the policy's view of them is lossy, and the next write's exclusive replay leaves
/// the policy consistent.
fn readers_only<P: EvictionPolicy>(policy: P) {
    const GETS: u64 = 50_000;
    let cache: Cache<u32, u32, P> = Cache::builder()
        .max_capacity(64)
        .shards(1)
        .policy(policy)
        .build()
        .unwrap();
    for k in 0..64 {
        cache.insert(k, k);
    }
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (cache, barrier) = (&cache, &barrier);
            s.spawn(move || {
                barrier.wait();
                let mut rng = SmallRng::seed_from_u64(t as u64);
                for _ in 0..GETS {
                    let key = rng.random_range(0..80); // 64 present, 16 absent
                    assert_eq!(cache.get(&key), (key < 64).then_some(key));
                }
            });
        }
    });
    let stats = cache.stats();
    assert_eq!(
        stats.hits + stats.misses,
        THREADS as u64 * GETS,
        "{stats:?}"
    );
    assert!(
        stats.misses > 0 && stats.hits > 3 * stats.misses,
        "{stats:?}"
    );
    assert_eq!(cache.len(), 64);
    cache.insert(1000, 0);
    cache.validate().unwrap();
    assert_eq!(cache.len(), 64);
}

#[test]
fn lru_readers_replaying_under_the_shared_lock_count_every_hit() {
    readers_only(Lru::new());
}

#[test]
fn lfu_readers_replaying_under_the_shared_lock_count_every_hit() {
    readers_only(Lfu::new());
}

#[test]
fn wtinylfu_readers_replaying_under_the_shared_lock_count_every_hit() {
    readers_only(WTinyLfu::new());
}

#[test]
fn concurrent_readers_and_writers_on_one_hot_shard() {
    // One shard, all threads on a handful of keys: hits contend on the access buffer while
    // writes drain it.
    let cache: Cache<u32, Tracked<4>> = Cache::builder().max_capacity(8).shards(1).build().unwrap();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let cache = &cache;
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                let mut rng = SmallRng::seed_from_u64(t as u64);
                for i in 0..10_000u64 {
                    let key = rng.random_range(0..12);
                    if t == 0 || i % 8 == 0 {
                        cache.insert(key, Tracked::new(key, i));
                    } else if let Some(v) = cache.get(&key) {
                        assert_eq!(v.key, key);
                    }
                }
            });
        }
    });
    cache.validate().unwrap();
    assert!(cache.len() <= 8);
    assert_eq!(Tracked::<4>::live(), cache.len());
    drop(cache);
    assert_eq!(Tracked::<4>::live(), 0);
}

#[test]
fn a_panicking_listener_leaves_the_cache_consistent() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let cache: Cache<u32, Tracked<5>, Lru> = Cache::builder()
        .max_capacity(4)
        .shards(1)
        .policy(Lru::new())
        .eviction_listener(move |k, _v, cause| {
            counter.fetch_add(1, Ordering::SeqCst);
            if *k == 0 || cause == RemovalCause::Explicit {
                panic!("listener failed on {k} ({cause:?})");
            }
        })
        .build()
        .unwrap();
    for k in 0..4 {
        cache.insert(k, Tracked::new(k, 0));
    }
    // Evicting 0 panics in the listener; the insert itself is done.
    let r = catch_unwind(AssertUnwindSafe(|| cache.insert(4, Tracked::new(4, 0))));
    assert!(r.is_err());
    assert!(cache.contains_key(&4) && !cache.contains_key(&0));
    assert_eq!(cache.len(), 4);
    cache.validate().unwrap();

    // A panic for one removed entry does not stop the others from being announced.
    let before = calls.load(Ordering::SeqCst);
    let r = catch_unwind(AssertUnwindSafe(|| cache.invalidate_all()));
    assert!(r.is_err());
    assert_eq!(calls.load(Ordering::SeqCst) - before, 4);
    assert!(cache.is_empty());
    cache.validate().unwrap();

    // Still usable, and no value leaked.
    cache.insert(10, Tracked::new(10, 1));
    assert_eq!(cache.get(&10).map(|v| v.key), Some(10));
    assert!(catch_unwind(AssertUnwindSafe(|| cache.remove(&10))).is_err());
    assert!(cache.is_empty());
    cache.validate().unwrap();
    assert_eq!(Tracked::<5>::live(), 0);
}

#[test]
fn a_panicking_weigher_leaves_the_cache_unchanged() {
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(100)
        .shards(1)
        .weigher(|k: &u32, v: &u32| {
            assert!(*k != 13 && *v != u32::MAX, "weigher failed");
            *v
        })
        .build()
        .unwrap();
    cache.insert(1, 10);
    cache.insert(2, 20);
    let r = catch_unwind(AssertUnwindSafe(|| cache.insert(13, 1)));
    assert!(r.is_err());
    assert!(!cache.contains_key(&13));
    // A failed replacement keeps the old value.
    let r = catch_unwind(AssertUnwindSafe(|| cache.insert(1, u32::MAX)));
    assert!(r.is_err());
    assert_eq!(cache.get(&1), Some(10));
    assert_eq!((cache.len(), cache.weighted_size()), (2, 30));
    let r = catch_unwind(AssertUnwindSafe(|| cache.get_or_insert_with(13, || 5)));
    assert!(r.is_err());
    cache.validate().unwrap();

    cache.insert(3, 30);
    assert_eq!(cache.weighted_size(), 60);
    let s = cache.stats();
    assert_eq!((s.inserts, s.updates), (3, 0));
    cache.validate().unwrap();
}

/// A value whose `Clone` panics while `explode` is set.
struct Bomb {
    id: u32,
    explode: Arc<AtomicBool>,
}

impl Clone for Bomb {
    fn clone(&self) -> Self {
        assert!(
            !self.explode.load(Ordering::SeqCst),
            "clone of {} failed",
            self.id
        );
        Self {
            id: self.id,
            explode: Arc::clone(&self.explode),
        }
    }
}

#[test]
fn a_panicking_clone_on_get_leaves_the_cache_usable() {
    let armed = Arc::new(AtomicBool::new(true));
    let safe = Arc::new(AtomicBool::new(false));
    let bomb = |id, flag: &Arc<AtomicBool>| Bomb {
        id,
        explode: Arc::clone(flag),
    };
    let clock = MockClock::new();
    let cache: Cache<u32, Bomb> = Cache::builder()
        .max_capacity(4)
        .shards(1)
        .time_to_idle(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert(1, bomb(1, &armed));
    cache.insert(2, bomb(2, &safe));

    for _ in 0..100 {
        assert!(catch_unwind(AssertUnwindSafe(|| cache.get(&1))).is_err());
    }
    assert!(catch_unwind(AssertUnwindSafe(|| cache.peek(&1))).is_err());
    assert!(catch_unwind(AssertUnwindSafe(|| cache.iter().count())).is_err());
    let r = catch_unwind(AssertUnwindSafe(|| {
        cache.get_or_insert_with(1, || bomb(1, &safe))
    }));
    assert!(r.is_err());
    cache.validate().unwrap();

    // The shard's locks were released: reads and writes on the same shard still work,
    // from this thread and another.
    assert!(cache.contains_key(&1));
    assert_eq!(cache.get(&2).map(|b| b.id), Some(2));
    cache.insert(3, bomb(3, &safe));
    std::thread::scope(|s| {
        s.spawn(|| cache.insert(4, bomb(4, &safe)));
    });
    assert_eq!(cache.len(), 4);
    cache.invalidate(&1); // needs no clone
    assert!(!cache.contains_key(&1));
    cache.insert(5, bomb(5, &safe));
    assert_eq!(cache.get(&5).map(|b| b.id), Some(5));
    cache.validate().unwrap();

    // Defused, the value reads normally.
    cache.insert(6, bomb(6, &armed));
    armed.store(false, Ordering::SeqCst);
    assert_eq!(cache.get(&6).map(|b| b.id), Some(6));
    clock.advance(Duration::from_secs(1));
    cache.validate().unwrap();
}
