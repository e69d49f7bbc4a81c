//! The S3-FIFO policy through the public API only: random operations with `validate()` after
//! each and the capacity never exceeded, scan resistance against one-hit wonders, and ghost
//! readmission.

use std::time::Duration;

use aside::policy::{Lru, S3Fifo};
use aside::{Cache, MockClock};
use proptest::prelude::*;

#[path = "common/ops.rs"]
mod ops;
use ops::{Op, op};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_ops_keep_the_cache_valid(
        capacity in 0u64..48,
        shards in prop_oneof![Just(1usize), Just(2), Just(4)],
        weighted in any::<bool>(),
        fraction in prop_oneof![Just(0.1), 0.01f64..0.99],
        ratio in prop_oneof![Just(1.0), 0.0f64..4.0],
        ops in prop::collection::vec(op(64), 1..400),
    ) {
        let clock = MockClock::new();
        let builder = Cache::builder()
            .max_capacity(capacity)
            .shards(shards)
            .seed(7)
            .clock(clock.clone())
            .policy(S3Fifo::new().small_fraction(fraction).ghost_ratio(ratio));
        // Weights 0 to 3: weight-0 entries take no capacity.
        let cache: Cache<u16, u32, S3Fifo> = if weighted {
            builder.weigher(|_, v: &u32| *v % 4).build().unwrap()
        } else {
            builder.build().unwrap()
        };
        for op in ops {
            match op {
                Op::Get(k) => {
                    cache.get(&k);
                }
                Op::Peek(k) => {
                    cache.peek(&k);
                }
                Op::Insert(k, v) => cache.insert(k, v),
                Op::InsertTtl(k, v, t) => {
                    cache.insert_with_ttl(k, v, Duration::from_secs(u64::from(t)));
                }
                Op::Remove(k) => {
                    cache.remove(&k);
                }
                Op::Advance(s) => clock.advance(Duration::from_secs(u64::from(s))),
                Op::Sweep => {
                    cache.sweep_expired();
                }
                Op::Retain(m) => {
                    let m = 2 + u16::from(m % 3);
                    cache.retain(|k, _| k % m != 0);
                }
                Op::Clear => cache.invalidate_all(),
            }
            cache.validate().map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(
                cache.weighted_size() <= capacity,
                "weight {} over capacity {capacity}",
                cache.weighted_size()
            );
            if !weighted {
                prop_assert!(cache.len() as u64 <= capacity);
            }
        }
    }
}

const CAPACITY: u64 = 100;
const HOT: std::ops::Range<u32> = 0..20;
const SCAN: std::ops::Range<u32> = 1_000..11_000;

fn one_shard<P: aside::policy::EvictionPolicy>(policy: P) -> Cache<u32, u32, P> {
    Cache::builder()
        .max_capacity(CAPACITY)
        .shards(1)
        .seed(42)
        .policy(policy)
        .build()
        .unwrap()
}

fn live<P: aside::policy::EvictionPolicy>(
    cache: &Cache<u32, u32, P>,
    keys: impl Iterator<Item = u32>,
) -> usize {
    keys.filter(|k| cache.contains_key(k)).count()
}

/// A hot set read twice, then a scan of 10,000 keys that are never read again.
fn hot_set_then_scan<P: aside::policy::EvictionPolicy>(cache: &Cache<u32, u32, P>) {
    for k in HOT {
        cache.insert(k, k);
    }
    for _ in 0..2 {
        for k in HOT {
            assert_eq!(cache.get(&k), Some(k));
        }
    }
    for k in SCAN {
        cache.insert(k, k);
        cache.validate().unwrap();
    }
}

#[test]
fn one_hit_wonders_do_not_evict_the_hot_set() {
    let cache = one_shard(S3Fifo::new());
    hot_set_then_scan(&cache);
    // The first eviction found the 20 hot keys (hit twice) at the small queue's old end and
    // moved them to the main queue. From then on the small queue (80 entries, over its target
    // of 10) takes every eviction: the scan only ever displaces itself.
    assert_eq!(live(&cache, HOT), 20);
    assert_eq!(live(&cache, SCAN), 80);
    assert_eq!(
        live(&cache, SCAN.end - 80..SCAN.end),
        80,
        "the newest 80 scan keys"
    );
    assert_eq!(cache.len(), 100);
    let stats = cache.stats();
    assert_eq!(stats.evicted_capacity, 10_000 + 20 - 100);
    assert_eq!(stats.hits, 40);
    for k in HOT {
        assert_eq!(cache.get(&k), Some(k));
    }
    assert_eq!(cache.stats().hits, 60);

    // The same sequence under LRU: the scan flushes the whole hot set.
    let lru = one_shard(Lru::new());
    hot_set_then_scan(&lru);
    assert_eq!(live(&lru, HOT), 0);
    assert_eq!(live(&lru, SCAN), 100);
}

#[test]
fn a_hot_set_read_less_often_than_lru_can_hold_comes_back_and_stays() {
    let cache = one_shard(S3Fifo::new());
    let lru = one_shard(Lru::new());
    let mut hot_hits = [0u64; 2];
    for (i, k) in SCAN.enumerate() {
        // Every 150 scan inserts (more than the cache holds), one round over the hot set,
        // inserting what missed: 67 rounds.
        if i % 150 == 0 {
            for h in HOT {
                if cache.get(&h).is_some() {
                    hot_hits[0] += 1;
                } else {
                    cache.insert(h, h);
                }
                if lru.get(&h).is_some() {
                    hot_hits[1] += 1;
                } else {
                    lru.insert(h, h);
                }
            }
        }
        cache.insert(k, k);
        lru.insert(k, k);
    }
    cache.validate().unwrap();
    // S3-FIFO: round 1 inserts the hot keys into the small queue, where the scan evicts them
    // unread, leaving their hashes in the ghost. Round 2 misses too, but re-inserts them
    // through the ghost into the main queue, which the scan (evicted from the small queue
    // only) never touches: every later round hits.
    assert_eq!(hot_hits[0], (67 - 2) * 20);
    assert_eq!(live(&cache, HOT), 20);
    // LRU: each round's keys are flushed by the next 150 inserts.
    assert_eq!(hot_hits[1], 0);
    assert_eq!(live(&lru, HOT), 0);
}

#[test]
fn a_key_evicted_from_the_small_queue_comes_back_into_the_main_queue() {
    let cache = one_shard(S3Fifo::new());
    cache.insert(0, 0);
    for k in 1..=100 {
        cache.insert(k, k);
    }
    // Key 0 was the first one-hit wonder out of the small queue: its hash is in the ghost.
    assert!(!cache.contains_key(&0));
    // Re-inserted, it goes straight to the main queue, never read, and outlives a long scan
    // that only evicts from the small queue.
    cache.insert(0, 0);
    for k in 1_000..5_000 {
        cache.insert(k, k);
    }
    assert!(cache.contains_key(&0));
    // A key that did not come back through the ghost is long gone.
    assert!(!cache.contains_key(&50));
    cache.validate().unwrap();

    // Without a ghost, the same key is just another one-hit wonder.
    let cache = one_shard(S3Fifo::new().ghost_ratio(0.0));
    cache.insert(0, 0);
    for k in 1..=100 {
        cache.insert(k, k);
    }
    cache.insert(0, 0);
    for k in 1_000..5_000 {
        cache.insert(k, k);
    }
    assert!(!cache.contains_key(&0));
}

#[test]
#[should_panic(expected = "small_fraction")]
fn small_fraction_is_range_checked() {
    let _ = S3Fifo::new().small_fraction(1.0);
}

#[test]
#[should_panic(expected = "ghost_ratio")]
fn ghost_ratio_is_range_checked() {
    let _ = S3Fifo::new().ghost_ratio(-1.0);
}
