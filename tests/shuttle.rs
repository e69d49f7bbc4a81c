//! Schedule exploration with [shuttle](https://docs.rs/shuttle): compiled only under
//! `RUSTFLAGS="--cfg aside_shuttle"`, where `src/shim.rs` hands the crate shuttle's locks and
//! atomics, so that every lock and atomic operation is a point where shuttle may switch threads.
//!
//! ```sh
//! RUSTFLAGS="--cfg aside_shuttle" CARGO_TARGET_DIR=target/shuttle \
//!     cargo test --release --features async --test shuttle
//! ```
//!
//! Each test runs `ASIDE_SHUTTLE_ITERS` random schedules (default 300) from a fixed seed
//! (`ASIDE_SHUTTLE_SEED`, default per test), half with shuttle's random scheduler and half with
//! PCT. A failing schedule is printed by shuttle as an encoded string; replay it with
//! `ASIDE_SHUTTLE_REPLAY='<schedule>' ... --test shuttle <test name>`.
#![cfg(aside_shuttle)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aside::policy::{EvictionPolicy, Fifo, Lfu, Lru, S3Fifo, WTinyLfu};
use aside::{AsideCache, Cache, LeaseExpiry, LoadError};
use shuttle::sync::atomic::AtomicU64;
use shuttle::thread;

#[path = "common/explore.rs"]
mod explore;
use explore::explore;

/// A one-shard cache of capacity 3: three threads insert, read, remove, retain and sweep on it,
/// one reader hits often enough to replay the access buffer under the shared lock. Afterwards
/// every invariant holds and every inserted entry is either present or was removed once.
fn insert_evict_race<P: EvictionPolicy>(policy: P) {
    let removed = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&removed);
    let cache: Cache<u32, u32, P> = Cache::builder()
        .max_capacity(3)
        .shards(1)
        .seed(1)
        .policy(policy)
        .eviction_listener(move |k: &u32, v: &u32, cause| {
            assert_eq!(*v / 100, *k, "the listener sees the entry's own value");
            if cause != aside::RemovalCause::Replaced {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build()
        .unwrap();
    let writers: Vec<_> = (0..2u32)
        .map(|t| {
            let cache = cache.clone();
            thread::spawn(move || {
                for k in 0..5 {
                    let key = (k + 2 * t) % 6;
                    cache.insert(key, key * 100 + t);
                    if let Some(v) = cache.get(&key) {
                        assert_eq!(v / 100, key);
                    }
                    assert!(cache.len() <= 3);
                }
                if t == 1 {
                    cache.remove(&3);
                    cache.sweep_expired();
                } else {
                    // Snapshot, predicate outside the lock, removal if unchanged (or retried).
                    cache.retain(|k, v| {
                        assert_eq!(v / 100, *k);
                        k % 5 != 0
                    });
                }
            })
        })
        .collect();
    let reader = {
        let cache = cache.clone();
        thread::spawn(move || {
            // More hits than the access buffer holds (64): a drain runs under the shared lock.
            for i in 0..70u32 {
                if let Some(v) = cache.get(&(i % 3)) {
                    assert_eq!(v / 100, i % 3);
                }
            }
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    reader.join().unwrap();
    cache.validate().unwrap();
    assert!(cache.len() <= 3);
    let s = cache.stats();
    assert_eq!(s.inserts, s.removals() + cache.len() as u64, "{s:?}");
    assert_eq!(removed.load(Ordering::Relaxed) as u64, s.removals());
}

/// Three threads call `Cache::get_or_insert_with` for one missing key: in every schedule,
/// `init` runs once and every caller gets its value (the leader stores before it releases
/// the waiters, so a late caller either waits or hits).
#[test]
fn get_or_insert_with_runs_one_init_in_every_schedule() {
    explore(30, || {
        let cache: Cache<u32, u32, Lru> = Cache::builder()
            .max_capacity(8)
            .shards(1)
            .policy(Lru::new())
            .build()
            .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (cache, calls) = (cache.clone(), Arc::clone(&calls));
                thread::spawn(move || {
                    cache.get_or_insert_with(1, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        thread::yield_now();
                        7
                    })
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 7);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "init ran more than once");
        cache.validate().unwrap();
    });
}

#[test]
fn insert_and_evict_race_on_one_shard_lru() {
    explore(1, || insert_evict_race(Lru::new()));
}

#[test]
fn insert_and_evict_race_on_one_shard_lfu() {
    explore(2, || insert_evict_race(Lfu::new()));
}

#[test]
fn insert_and_evict_race_on_one_shard_fifo() {
    explore(3, || insert_evict_race(Fifo::new()));
}

#[test]
fn insert_and_evict_race_on_one_shard_wtinylfu() {
    explore(4, || insert_evict_race(WTinyLfu::new()));
}

#[test]
fn insert_and_evict_race_on_one_shard_s3fifo() {
    explore(5, || insert_evict_race(S3Fifo::new()));
}

/// A value that knows whether it was dropped: cloning a dropped one (what a reader would do
/// if a writer reclaimed a node the reader still held) fails the schedule.
struct Tracked {
    key: u32,
    alive: Arc<shuttle::sync::atomic::AtomicBool>,
}

impl Tracked {
    fn new(key: u32) -> Self {
        Self {
            key,
            alive: Arc::new(shuttle::sync::atomic::AtomicBool::new(true)),
        }
    }
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        assert!(
            self.alive.load(Ordering::SeqCst),
            "a reader cloned the value of key {} after it was dropped",
            self.key
        );
        Self::new(self.key)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::SeqCst);
    }
}

/// The lock-free read path's protocol (src/engine/concurrent/): two readers look keys up and
/// clone their values without the shard's lock while a writer replaces, evicts, removes and
/// clears them. No schedule lets a writer drop a value a reader is still cloning, every value
/// read belongs to its key, and every lookup counts once, as a hit or a miss (a lookup that
/// misses while the writer holds the lock waits for it and looks again, and only the second
/// look counts).
fn readers_against_a_writer<P: EvictionPolicy>(policy: P) {
    let cache: Cache<u32, Tracked, P> = Cache::builder()
        .max_capacity(2)
        .shards(1)
        .seed(3)
        .policy(policy)
        .build()
        .unwrap();
    for k in 0..2 {
        cache.insert(k, Tracked::new(k));
    }
    let readers: Vec<_> = (0..2u32)
        .map(|t| {
            let cache = cache.clone();
            thread::spawn(move || {
                let mut hits = 0u64;
                for i in 0..4 {
                    let key = (i + t) % 3;
                    if let Some(v) = cache.get(&key) {
                        assert_eq!(v.key, key);
                        hits += 1;
                    }
                }
                hits
            })
        })
        .collect();
    for i in 0..3u32 {
        cache.insert(i % 3, Tracked::new(i % 3));
        cache.invalidate(&((i + 1) % 3));
    }
    cache.invalidate_all();
    let hits: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (hits, 8 - hits));
    cache.validate().unwrap();
}

#[test]
fn lock_free_reads_never_see_a_dropped_value_lru() {
    explore(6, || readers_against_a_writer(Lru::new()));
}

#[test]
fn lock_free_reads_never_see_a_dropped_value_wtinylfu() {
    explore(7, || readers_against_a_writer(WTinyLfu::new()));
}

/// A lease no schedule can outlive (see `src/shim.rs`): waiters never time out.
const LONG_LEASE: Duration = Duration::from_secs(3600);
/// A lease short enough that shuttle may time a waiter out at any point.
const SHORT_LEASE: Duration = Duration::from_secs(1);

fn front_door(lease: Duration, on_expiry: LeaseExpiry) -> AsideCache<u32, u64> {
    AsideCache::builder()
        .max_capacity(16)
        .shards(1)
        .seed(1)
        .lease(lease)
        .on_lease_expiry(on_expiry)
        .build()
        .unwrap()
}

#[test]
fn concurrent_loads_of_one_key_run_the_loader_once() {
    explore(10, || {
        let cache = front_door(LONG_LEASE, LeaseExpiry::TakeOver);
        let calls = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let (cache, calls) = (cache.clone(), Arc::clone(&calls));
                thread::spawn(move || {
                    cache.get_or_load_blocking(7, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        thread::yield_now();
                        Ok::<_, ()>(Some(42))
                    })
                })
            })
            .collect();
        for h in handles {
            let v = h.join().unwrap();
            assert!(matches!(v, Ok(Some(42))), "{v:?}");
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the loader ran more than once"
        );
        assert_eq!(cache.in_flight(), 0);
        assert_eq!(cache.get(&7), Some(42));
        cache.validate().unwrap();
    });
}

#[test]
fn a_loader_panic_reaches_every_waiter() {
    explore(11, || {
        let cache = front_door(LONG_LEASE, LeaseExpiry::TakeOver);
        let calls = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let (cache, calls) = (cache.clone(), Arc::clone(&calls));
                thread::spawn(move || {
                    catch_unwind(AssertUnwindSafe(|| {
                        cache.get_or_load_blocking(7, || {
                            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                            thread::yield_now();
                            assert!(!first, "the first load fails");
                            Ok::<_, ()>(Some(42))
                        })
                    }))
                })
            })
            .collect();
        let (mut panicked, mut told, mut loaded) = (0, 0, 0);
        for h in handles {
            match h.join().unwrap() {
                Err(_) => panicked += 1,
                Ok(Err(LoadError::Panicked)) => told += 1,
                Ok(Ok(Some(42))) => loaded += 1,
                Ok(other) => panic!("unexpected result {other:?}"),
            }
        }
        // Exactly the leader of the first load panicked; its waiters (if any) were told, the
        // others loaded again. Nobody hung (shuttle reports a deadlock otherwise).
        assert_eq!(panicked, 1);
        assert_eq!(panicked + told + loaded, 3);
        assert_eq!(loaded > 0, calls.load(Ordering::SeqCst) > 1);
        assert_eq!(cache.in_flight(), 0);
        assert_eq!(
            cache.get_with_blocking(7, || 5).unwrap(),
            if loaded > 0 { 42 } else { 5 }
        );
        cache.validate().unwrap();
    });
}

/// Two loaders of a key race a writer that updates the source and then invalidates the key
/// (`all`: every key): once the writer is done, the cache never holds the old value.
fn invalidation_race(all: bool) {
    let cache = front_door(LONG_LEASE, LeaseExpiry::TakeOver);
    // The source of truth; a shuttle atomic, so reads and writes of it are scheduling points.
    let db = Arc::new(AtomicU64::new(1));
    let loaders: Vec<_> = (0..2)
        .map(|_| {
            let (cache, db) = (cache.clone(), Arc::clone(&db));
            thread::spawn(move || {
                let v = cache.get_or_load_blocking(7, || {
                    let v = db.load(Ordering::SeqCst);
                    thread::yield_now();
                    Ok::<_, ()>(Some(v))
                });
                assert!(matches!(v, Ok(Some(1 | 2))), "{v:?}");
            })
        })
        .collect();
    let writer = {
        let (cache, db) = (cache.clone(), Arc::clone(&db));
        thread::spawn(move || {
            db.store(2, Ordering::SeqCst);
            if all {
                cache.invalidate_all();
            } else {
                cache.invalidate(&7);
            }
        })
    };
    for h in loaders {
        h.join().unwrap();
    }
    writer.join().unwrap();
    // Once the write and its invalidation are done, the cache holds nothing or the new value.
    assert!(
        matches!(cache.get(&7), None | Some(2)),
        "stale {:?}",
        cache.get(&7)
    );
    assert_eq!(cache.in_flight(), 0);
    cache.validate().unwrap();
}

#[test]
fn invalidate_racing_a_load_never_installs_a_stale_value() {
    explore(12, || invalidation_race(false));
}

#[test]
fn invalidate_all_racing_a_load_never_installs_a_stale_value() {
    explore(16, || invalidation_race(true));
}

#[test]
fn put_racing_a_load_is_never_overwritten() {
    explore(13, || {
        let cache = front_door(LONG_LEASE, LeaseExpiry::TakeOver);
        let db = Arc::new(AtomicU64::new(1));
        let loader = {
            let (cache, db) = (cache.clone(), Arc::clone(&db));
            thread::spawn(move || {
                cache.get_or_load_blocking(7, || {
                    let v = db.load(Ordering::SeqCst);
                    thread::yield_now();
                    Ok::<_, ()>(Some(v))
                })
            })
        };
        let writer = {
            let (cache, db) = (cache.clone(), Arc::clone(&db));
            thread::spawn(move || {
                db.store(2, Ordering::SeqCst);
                cache.put(7, 2);
            })
        };
        let v = loader.join().unwrap();
        writer.join().unwrap();
        assert!(matches!(v, Ok(Some(1 | 2))), "{v:?}");
        assert_eq!(cache.get(&7), Some(2));
        cache.validate().unwrap();
    });
}

/// Waiters whose lease runs out (at any point shuttle picks) take the load over or load on
/// their own; nobody hangs, every caller gets a loaded value, the registry empties, and the
/// cached value is one a loader returned.
fn lease_expiry(on_expiry: LeaseExpiry) {
    let cache = front_door(SHORT_LEASE, on_expiry);
    let calls = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (cache, calls) = (cache.clone(), Arc::clone(&calls));
            thread::spawn(move || {
                cache.get_or_load_blocking(7, || {
                    let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                    thread::yield_now();
                    Ok::<_, ()>(Some(n))
                })
            })
        })
        .collect();
    let mut seen = Vec::new();
    for h in handles {
        match h.join().unwrap() {
            Ok(Some(v)) => seen.push(v),
            other => panic!("unexpected result {other:?}"),
        }
    }
    let calls = calls.load(Ordering::SeqCst);
    assert!(seen.iter().all(|&v| (1..=calls).contains(&v)), "{seen:?}");
    assert_eq!(cache.in_flight(), 0);
    if let Some(v) = cache.get(&7) {
        assert!((1..=calls).contains(&v));
    }
    cache.validate().unwrap();
}

#[test]
fn a_waiter_whose_lease_runs_out_takes_the_load_over() {
    explore(14, || lease_expiry(LeaseExpiry::TakeOver));
}

#[test]
fn a_waiter_whose_lease_runs_out_loads_independently() {
    explore(15, || lease_expiry(LeaseExpiry::LoadIndependently));
}
