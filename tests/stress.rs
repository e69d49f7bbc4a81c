//! Stress and soak of the front door and the engine together: many threads doing random
//! operations, bounded by an operation count (`ASIDE_SOAK_OPS` per thread, default 5,000) rather
//! than by time, on a small cache of drop-counting values. Throughout: `len <= capacity`, every
//! value served belongs to its key; at the end: `validate()` on every shard, no load in flight,
//! and no value left alive once the cache is dropped.
//!
//! Under `RUSTFLAGS="--cfg aside_deadlock_detection"` (.ci/reliability), parking_lot's
//! deadlock detector watches the same run from the test thread and fails the test if any set
//! of threads is stuck in a lock cycle (a self-test first proves the detector sees a real
//! cycle).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use aside::policy::{EvictionPolicy, Lfu, Lru, S3Fifo, WTinyLfu};
use aside::{AsideCache, LoadError};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const THREADS: usize = 6;
const CAPACITY: u64 = 32;
const KEYS: u64 = 96;

/// Live values per test (indexed by `SLOT`).
static LIVE: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];

#[derive(Debug)]
struct Tracked<const SLOT: usize> {
    key: u64,
}

impl<const SLOT: usize> Tracked<SLOT> {
    fn new(key: u64) -> Self {
        LIVE[SLOT].fetch_add(1, Ordering::SeqCst);
        Self { key }
    }
}

impl<const SLOT: usize> Clone for Tracked<SLOT> {
    fn clone(&self) -> Self {
        Self::new(self.key)
    }
}

impl<const SLOT: usize> Drop for Tracked<SLOT> {
    fn drop(&mut self) {
        LIVE[SLOT].fetch_sub(1, Ordering::SeqCst);
    }
}

fn ops() -> usize {
    std::env::var("ASIDE_SOAK_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000)
}

/// Runs the mixed workload on `cache` from `THREADS` threads; `watch` runs on the test thread
/// meanwhile, until `done` is set.
fn soak<P: EvictionPolicy, const SLOT: usize>(
    cache: &AsideCache<u64, Tracked<SLOT>, P>,
    watch: impl FnOnce(&AtomicBool),
) {
    let ops = ops();
    let done = AtomicBool::new(false);
    let finished = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (cache, finished, done) = (cache, &finished, &done);
            s.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(0xA51DE + t as u64);
                for _ in 0..ops {
                    let key = rng.random_range(0..KEYS);
                    match rng.random_range(0..100) {
                        0..50 => {
                            let fail = rng.random_range(0..10) == 0;
                            let r = cache.get_or_load_blocking(key, || {
                                if fail {
                                    Err("source down")
                                } else if key % 7 == 0 {
                                    Ok(None)
                                } else {
                                    Ok(Some(Tracked::new(key)))
                                }
                            });
                            match r {
                                Ok(Some(v)) => assert_eq!(v.key, key),
                                Ok(None) => assert!(key % 7 == 0 || fail),
                                Err(LoadError::Loader(_)) => {}
                                Err(e) => panic!("{e:?}"),
                            }
                        }
                        50..70 => {
                            if let Some(v) = cache.get(&key) {
                                assert_eq!(v.key, key);
                            }
                        }
                        70..80 => cache.put(key, Tracked::new(key)),
                        80..92 => cache.invalidate(&key),
                        92..99 => {
                            let v = cache.get_with_blocking(key, || Tracked::new(key));
                            assert_eq!(v.unwrap().key, key);
                        }
                        _ => cache.invalidate_all(),
                    }
                    assert!(cache.len() as u64 <= CAPACITY, "len {}", cache.len());
                }
                if finished.fetch_add(1, Ordering::SeqCst) + 1 == THREADS {
                    done.store(true, Ordering::SeqCst);
                }
            });
        }
        watch(&done);
    });
    assert_eq!(cache.in_flight(), 0);
    cache.validate().unwrap();
    let stats = cache.load_stats();
    assert!(stats.loads > 0 && stats.load_errors > 0, "{stats:?}");
}

fn front_door<P: EvictionPolicy, const SLOT: usize>(
    policy: P,
) -> AsideCache<u64, Tracked<SLOT>, P> {
    AsideCache::builder()
        .max_capacity(CAPACITY)
        .shards(2)
        .policy(policy)
        .negative_ttl(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn run<P: EvictionPolicy, const SLOT: usize>(policy: P) {
    let cache = front_door::<P, SLOT>(policy);
    soak(&cache, |_| {});
    drop(cache);
    assert_eq!(LIVE[SLOT].load(Ordering::SeqCst), 0, "values leaked");
}

#[test]
fn front_door_soak_lru() {
    run::<_, 0>(Lru::new());
}

#[test]
fn front_door_soak_lfu() {
    run::<_, 1>(Lfu::new());
}

#[test]
fn front_door_soak_wtinylfu_and_s3fifo() {
    run::<_, 2>(WTinyLfu::new());
    run::<_, 2>(S3Fifo::new());
}

#[cfg(aside_deadlock_detection)]
mod deadlocks {
    use super::*;
    use std::sync::{Arc, Barrier};

    /// The cycles parking_lot's detector found since its last call, described.
    fn cycles() -> Vec<String> {
        parking_lot::deadlock::check_deadlock()
            .iter()
            .map(|threads| {
                threads
                    .iter()
                    .map(|t| format!("thread {:?}:\n{:?}", t.thread_id(), t.backtrace()))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect()
    }

    #[test]
    fn no_lock_cycle_under_the_soak() {
        // Self-test: two threads taking two parking_lot mutexes in opposite orders do
        // deadlock, and the detector reports it, once (the two threads stay parked until the
        // test process exits).
        let (a, b) = (
            Arc::new(parking_lot::Mutex::new(())),
            Arc::new(parking_lot::Mutex::new(())),
        );
        let both = Arc::new(Barrier::new(2));
        for flip in [false, true] {
            let (first, second) = if flip {
                (Arc::clone(&b), Arc::clone(&a))
            } else {
                (Arc::clone(&a), Arc::clone(&b))
            };
            let both = Arc::clone(&both);
            std::thread::spawn(move || {
                let _g = first.lock();
                both.wait();
                let _h = second.lock();
            });
        }
        let mut seen = Vec::new();
        for _ in 0..400 {
            seen = cycles();
            if !seen.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25)); // polling, not the assertion
        }
        assert_eq!(seen.len(), 1, "the detector missed a real cycle");

        // The soak, watched: any cycle among the cache's locks fails the test.
        let cache = front_door::<_, 3>(Lru::new());
        let mut checks = 0;
        soak(&cache, |done| {
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20)); // polling, not the assertion
                let found = cycles();
                assert!(found.is_empty(), "deadlock:\n{}", found.join("\n\n"));
                checks += 1;
            }
        });
        assert!(cycles().is_empty());
        drop(cache);
        assert_eq!(LIVE[3].load(Ordering::SeqCst), 0, "values leaked");
        eprintln!("deadlock detector: {checks} checks, no cycle");
    }
}
