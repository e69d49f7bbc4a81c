//! The public `Cache` API, one behaviour per test: lookups, writes, bulk removal, iteration,
//! capacity bounds (entries and weight), configuration errors and the statistics counters.
//! Time is a `MockClock`; nothing sleeps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aside::policy::{Lru, SampledTtl};
use aside::{Cache, CacheBuilder, ConfigError, MAX_SHARDS, MockClock, RemovalCause};

type Log<K, V> = Arc<Mutex<Vec<(K, V, RemovalCause)>>>;

/// A builder with a listener that records every removal, and the record.
fn logged<K, V>() -> (CacheBuilder<K, V>, Log<K, V>)
where
    K: Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    let log: Log<K, V> = Arc::default();
    let sink = Arc::clone(&log);
    let builder = Cache::builder()
        .seed(11)
        .eviction_listener(move |k: &K, v: &V, cause| {
            sink.lock().unwrap().push((k.clone(), v.clone(), cause));
        });
    (builder, log)
}

fn take<K, V>(log: &Log<K, V>) -> Vec<(K, V, RemovalCause)> {
    std::mem::take(&mut *log.lock().unwrap())
}

fn sorted<K: Ord, V: Ord>(mut v: Vec<(K, V)>) -> Vec<(K, V)> {
    v.sort();
    v
}

#[test]
fn insert_get_peek_contains_key() {
    let cache: Cache<u32, &str> = Cache::builder().max_capacity(100).seed(1).build().unwrap();
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.peek(&1), None);
    assert!(!cache.contains_key(&1));

    cache.insert(1, "one");
    cache.insert(2, "two");
    assert_eq!(cache.get(&1), Some("one"));
    assert_eq!(cache.peek(&2), Some("two"));
    assert!(cache.contains_key(&1) && cache.contains_key(&2) && !cache.contains_key(&3));

    cache.insert(1, "uno");
    assert_eq!(cache.get(&1), Some("uno"));
    assert_eq!(cache.len(), 2);
    cache.validate().unwrap();
}

#[test]
fn peek_and_contains_key_have_no_side_effects() {
    let cache: Cache<u32, u32, Lru> = Cache::builder()
        .max_capacity(2)
        .shards(1)
        .seed(2)
        .policy(Lru::new())
        .build()
        .unwrap();
    cache.insert(1, 1);
    cache.insert(2, 2);
    // Neither counts nor refreshes 1 in the LRU order.
    assert_eq!(cache.peek(&1), Some(1));
    assert!(cache.contains_key(&1));
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.misses), (0, 0));
    cache.insert(3, 3);
    assert!(!cache.contains_key(&1), "1 stayed least recently used");
    assert!(cache.contains_key(&2) && cache.contains_key(&3));

    // A `get`, by contrast, refreshes it.
    assert_eq!(cache.get(&2), Some(2));
    cache.insert(4, 4);
    assert!(cache.contains_key(&2) && !cache.contains_key(&3));
    cache.validate().unwrap();
}

#[test]
fn insert_with_ttl_expires_on_the_mock_clock() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(10)
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert_with_ttl(1, 10, Duration::from_secs(5));
    cache.insert(2, 20);
    clock.advance(Duration::from_secs(5) - Duration::from_nanos(1));
    assert_eq!(cache.get(&1), Some(10));
    clock.advance(Duration::from_nanos(1));
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get(&2), Some(20), "no TTL: never expires");
    cache.validate().unwrap();
}

#[test]
fn get_or_insert_with_runs_init_only_on_a_miss() {
    let clock = MockClock::new();
    let cache: Cache<u32, String> = Cache::builder()
        .max_capacity(10)
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut calls = 0;
    let v = cache.get_or_insert_with(7, || {
        calls += 1;
        "seven".to_string()
    });
    assert_eq!((v.as_str(), calls), ("seven", 1));
    let v = cache.get_or_insert_with(7, || {
        calls += 1;
        "other".to_string()
    });
    assert_eq!((v.as_str(), calls), ("seven", 1));
    assert_eq!(cache.get(&7).as_deref(), Some("seven"));

    // An expired entry counts as absent.
    cache.insert_with_ttl(8, "old".to_string(), Duration::from_secs(1));
    clock.advance(Duration::from_secs(1));
    let v = cache.get_or_insert_with(8, || "new".to_string());
    assert_eq!(v, "new");
    assert_eq!(cache.peek(&8).as_deref(), Some("new"));

    let stats = cache.stats();
    assert_eq!(stats.inserts, 3);
    assert_eq!(stats.hits, 2); // the second call and the explicit get
    assert_eq!(stats.misses, 2); // the first call and the expired one
    cache.validate().unwrap();
}

#[test]
fn get_or_insert_with_propagates_a_panicking_init() {
    let cache: Cache<u32, u32> = Cache::new(10);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cache.get_or_insert_with(1, || panic!("loader failed"))
    }));
    assert!(r.is_err());
    assert!(cache.is_empty());
    assert_eq!(cache.get_or_insert_with(1, || 5), 5);
    cache.validate().unwrap();
}

/// Four threads miss one key together: one `init` runs, the other three wait for its value
/// (the `init` is held until every caller has missed, so all four overlap).
#[test]
fn get_or_insert_with_runs_one_init_for_concurrent_misses() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const CALLERS: u64 = 4;
    let cache: Cache<u32, u32> = Cache::new(10);
    let calls = AtomicUsize::new(0);
    let values: Vec<u32> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CALLERS)
            .map(|_| {
                s.spawn(|| {
                    cache.get_or_insert_with(1, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        while cache.stats().misses < CALLERS {
                            std::thread::yield_now();
                        }
                        7
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(values, vec![7; CALLERS as usize]);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "init ran more than once");
    cache.validate().unwrap();
}

/// The leader's `init` panics while others wait: they retry, one of them runs its own `init`,
/// and every caller but the leader gets that value.
#[test]
fn a_panicking_init_lets_its_waiters_retry() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let cache: Cache<u32, u32> = Cache::new(10);
    let calls = AtomicUsize::new(0);
    let results: Vec<std::thread::Result<u32>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    cache.get_or_insert_with(1, || {
                        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                            while cache.stats().misses < 3 {
                                std::thread::yield_now();
                            }
                            panic!("the first init fails");
                        }
                        9
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    assert!(results.iter().flatten().all(|&v| v == 9));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.get(&1), Some(9));
    cache.validate().unwrap();
}

/// An `init` that asks for its own key on the same thread would wait for itself: that inner
/// call panics, the outer call propagates it, and the key works afterwards.
#[test]
fn a_reentrant_get_or_insert_with_panics_instead_of_deadlocking() {
    let cache: Cache<u32, u32> = Cache::new(10);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cache.get_or_insert_with(1, || cache.get_or_insert_with(1, || 2))
    }));
    let message = r.unwrap_err();
    let text = message
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| message.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(text.contains("asked for the key it is computing"), "{text}");
    assert_eq!(cache.get_or_insert_with(1, || 3), 3);
    // Other keys inside an init are fine.
    assert_eq!(
        cache.get_or_insert_with(2, || cache.get_or_insert_with(4, || 4) + 1),
        5
    );
    cache.validate().unwrap();
}

#[test]
fn remove_returns_the_live_value_and_announces_it() {
    let clock = MockClock::new();
    let (builder, log) = logged::<u32, u32>();
    let cache = builder
        .max_capacity(10)
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert(1, 10);
    assert_eq!(cache.remove(&1), Some(10));
    assert_eq!(cache.remove(&1), None);
    assert_eq!(take(&log), vec![(1, 10, RemovalCause::Explicit)]);

    // An expired entry is removed but not returned, and announced as expired.
    cache.insert_with_ttl(2, 20, Duration::from_secs(1));
    clock.advance(Duration::from_secs(2));
    assert_eq!(cache.remove(&2), None);
    assert_eq!(take(&log), vec![(2, 20, RemovalCause::Expired)]);
    assert!(cache.is_empty());

    let stats = cache.stats();
    assert_eq!((stats.removed_explicit, stats.expired), (1, 1));
    cache.validate().unwrap();
}

#[test]
fn invalidate_and_invalidate_all() {
    let (builder, log) = logged::<u32, u32>();
    let cache = builder.max_capacity(100).build().unwrap();
    for i in 0..10 {
        cache.insert(i, i * 10);
    }
    cache.invalidate(&3);
    cache.invalidate(&3); // absent: nothing happens
    cache.invalidate(&99);
    assert!(!cache.contains_key(&3));
    assert_eq!(cache.len(), 9);
    assert_eq!(take(&log), vec![(3, 30, RemovalCause::Explicit)]);

    cache.get(&1);
    cache.invalidate_all();
    assert!(cache.is_empty());
    assert_eq!(cache.len(), 0);
    assert_eq!(cache.weighted_size(), 0);
    let removed = take(&log);
    assert_eq!(removed.len(), 9);
    assert!(
        removed
            .iter()
            .all(|(k, v, c)| *c == RemovalCause::Explicit && *v == k * 10)
    );

    // Counters survive `invalidate_all`, and the cache is reusable.
    let stats = cache.stats();
    assert_eq!(
        (stats.inserts, stats.hits, stats.removed_explicit),
        (10, 1, 10)
    );
    cache.insert(1, 1);
    assert_eq!(cache.get(&1), Some(1));
    cache.validate().unwrap();
}

#[test]
fn retain_and_invalidate_if() {
    let (builder, log) = logged::<String, u32>();
    let cache = builder.max_capacity(100).build().unwrap();
    for i in 0..20u32 {
        let prefix = if i % 2 == 0 { "user" } else { "product" };
        cache.insert(format!("{prefix}:{i}"), i);
    }
    cache.retain(|_k, v| *v < 15);
    assert_eq!(cache.len(), 15);
    let removed = take(&log);
    assert_eq!(removed.len(), 5);
    assert!(
        removed
            .iter()
            .all(|(_, v, c)| *v >= 15 && *c == RemovalCause::Explicit)
    );

    cache.invalidate_if(|k, _v| k.starts_with("user:"));
    let mut left: Vec<u32> = cache.iter().map(|(_, v)| v).collect();
    left.sort_unstable();
    assert_eq!(left, vec![1, 3, 5, 7, 9, 11, 13]);
    assert_eq!(take(&log).len(), 8);
    assert_eq!(cache.stats().removed_explicit, 13);

    // A predicate that keeps everything removes nothing.
    cache.retain(|_, _| true);
    assert_eq!(cache.len(), 7);
    assert!(take(&log).is_empty());
    cache.validate().unwrap();
}

#[test]
fn retain_sees_only_live_entries() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(100)
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert_with_ttl(1, 1, Duration::from_secs(1));
    cache.insert(2, 2);
    clock.advance(Duration::from_secs(1));
    let mut seen = Vec::new();
    cache.retain(|k, _| {
        seen.push(*k);
        true
    });
    assert_eq!(seen, vec![2]);
    cache.validate().unwrap();
}

#[test]
fn len_is_empty_capacity_weighted_size_shard_count() {
    let cache: Cache<u32, u32> = Cache::builder().max_capacity(50).shards(2).build().unwrap();
    assert!(cache.is_empty());
    assert_eq!((cache.len(), cache.weighted_size()), (0, 0));
    assert_eq!((cache.capacity(), cache.shard_count()), (50, 2));
    for i in 0..10 {
        cache.insert(i, i);
    }
    cache.insert(0, 100); // a replacement does not add an entry
    assert!(!cache.is_empty());
    assert_eq!((cache.len(), cache.weighted_size()), (10, 10));
    assert_eq!(Cache::<u8, u8>::new(7).capacity(), 7);
    cache.validate().unwrap();
}

#[test]
fn iter_is_a_snapshot_of_live_entries_and_touches_no_policy_state() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32, Lru> = Cache::builder()
        .max_capacity(100)
        .shards(4)
        .clock(clock.clone())
        .policy(Lru::new())
        .build()
        .unwrap();
    for i in 0..20 {
        cache.insert(i, i * 2);
    }
    cache.insert_with_ttl(100, 0, Duration::from_secs(1));
    let all = sorted(cache.iter().collect());
    assert_eq!(all.len(), 21);
    clock.advance(Duration::from_secs(1));
    let all = sorted(cache.iter().collect());
    assert_eq!(all, (0..20).map(|i| (i, i * 2)).collect::<Vec<_>>());
    assert_eq!(cache.stats().hits, 0);

    // Writes after the snapshot of a shard was taken are not required to show; the iterator
    // is usable while the cache changes and never yields a removed-before-start entry.
    let it = cache.iter();
    cache.invalidate(&0);
    let after: Vec<_> = it.collect();
    assert!(after.len() <= 20 && after.len() >= 19);

    // Iteration does not refresh LRU order.
    let lru: Cache<u32, u32, Lru> = Cache::builder()
        .max_capacity(2)
        .shards(1)
        .policy(Lru::new())
        .build()
        .unwrap();
    lru.insert(1, 1);
    lru.insert(2, 2);
    assert_eq!(lru.iter().count(), 2);
    lru.insert(3, 3);
    assert!(!lru.contains_key(&1));
    cache.validate().unwrap();
    lru.validate().unwrap();
}

#[test]
fn sweep_expired_removes_expired_entries_and_counts_them() {
    let clock = MockClock::new();
    let (builder, log) = logged::<u32, u32>();
    let cache = builder
        .max_capacity(1000)
        .shards(2)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(cache.sweep_expired(), 0);
    for i in 0..10 {
        cache.insert_with_ttl(i, i, Duration::from_secs(1));
    }
    cache.insert(100, 100);
    assert_eq!(cache.sweep_expired(), 0, "nothing expired yet");
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.sweep_expired(), 10);
    assert_eq!(cache.len(), 1);
    assert!(
        take(&log)
            .iter()
            .all(|(k, _, c)| *k < 10 && *c == RemovalCause::Expired)
    );
    let stats = cache.stats();
    assert_eq!((stats.expired, stats.sweep_expired), (10, 10));
    cache.validate().unwrap();
}

#[test]
fn borrowed_lookups_with_string_keys() {
    let cache: Cache<String, u32> = Cache::new(100);
    cache.insert("alpha".to_string(), 1);
    cache.insert("beta".to_string(), 2);
    cache.insert("gamma".to_string(), 3);
    assert_eq!(cache.get("alpha"), Some(1));
    assert_eq!(cache.peek("beta"), Some(2));
    assert!(cache.contains_key("gamma"));
    assert!(!cache.contains_key("delta"));
    assert_eq!(cache.remove("alpha"), Some(1));
    cache.invalidate("beta");
    assert_eq!(cache.len(), 1);
    let key = String::from("gamma");
    assert_eq!(cache.get(key.as_str()), Some(3));
    assert_eq!(cache.get(&key), Some(3));

    let bytes: Cache<Vec<u8>, u8> = Cache::new(10);
    bytes.insert(vec![1, 2, 3], 6);
    assert_eq!(bytes.get(&[1u8, 2, 3][..]), Some(6));
    cache.validate().unwrap();
    bytes.validate().unwrap();
}

#[test]
fn capacity_zero_stores_nothing() {
    let (builder, log) = logged::<u32, u32>();
    let cache = builder.max_capacity(0).build().unwrap();
    cache.insert(1, 1);
    cache.insert_with_ttl(2, 2, Duration::from_secs(60));
    assert_eq!(
        cache.get_or_insert_with(3, || 3),
        3,
        "the loaded value is returned"
    );
    assert!(cache.is_empty());
    assert_eq!((cache.len(), cache.weighted_size()), (0, 0));
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get(&3), None);
    assert_eq!(
        take(&log),
        vec![
            (1, 1, RemovalCause::Capacity),
            (2, 2, RemovalCause::Capacity),
            (3, 3, RemovalCause::Capacity)
        ]
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.inserts, stats.evicted_capacity, stats.rejected),
        (0, 3, 0)
    );
    cache.validate().unwrap();

    // Also with explicit shards, each of which gets no capacity.
    let sharded: Cache<u32, u32> = Cache::builder().max_capacity(0).shards(8).build().unwrap();
    for i in 0..100 {
        sharded.insert(i, i);
    }
    assert!(sharded.is_empty());
    sharded.validate().unwrap();
}

#[test]
fn capacity_one_keeps_the_latest_entry() {
    let (builder, log) = logged::<u32, u32>();
    let cache = builder.max_capacity(1).build().unwrap();
    assert_eq!(cache.shard_count(), 1);
    for i in 0..10 {
        cache.insert(i, i);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&i), Some(i));
    }
    cache.insert(9, 90);
    assert_eq!(cache.get(&9), Some(90));
    let removed = take(&log);
    assert_eq!(removed.len(), 10);
    assert_eq!(
        removed[..9]
            .iter()
            .filter(|r| r.2 == RemovalCause::Capacity)
            .count(),
        9
    );
    assert_eq!(removed[9], (9, 9, RemovalCause::Replaced));
    cache.validate().unwrap();
}

#[test]
fn len_never_exceeds_capacity_with_default_sharding() {
    for capacity in [1u64, 2, 7, 63, 64, 65, 100, 128, 129, 1000, 4096] {
        let cache: Cache<u64, u64> = Cache::builder()
            .max_capacity(capacity)
            .seed(capacity)
            .build()
            .unwrap();
        for i in 0..capacity * 4 + 10 {
            cache.insert(i, i);
            // Re-inserting an existing key must not grow the cache either.
            cache.insert(i / 2, i);
            assert!(
                cache.len() as u64 <= capacity,
                "capacity {capacity}: len {} after inserting {i}",
                cache.len()
            );
        }
        assert!(cache.weighted_size() <= capacity);
        if capacity >= 64 {
            assert_eq!(cache.len() as u64, capacity, "every shard fills up");
        }
        cache.validate().unwrap();
    }
}

#[test]
fn len_never_exceeds_capacity_with_eight_shards_of_one() {
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(8)
        .shards(8)
        .seed(3)
        .build()
        .unwrap();
    for i in 0..2000 {
        cache.insert(i, i);
        assert!(cache.len() <= 8, "len {} after {i}", cache.len());
    }
    assert_eq!(cache.len(), 8, "each shard holds its one entry");
    cache.validate().unwrap();

    // Uneven split: 100 over 8 shards is 13 × 4 + 12 × 4.
    let uneven: Cache<u32, u32> = Cache::builder()
        .max_capacity(100)
        .shards(8)
        .seed(4)
        .build()
        .unwrap();
    for i in 0..5000 {
        uneven.insert(i, i);
        assert!(uneven.len() <= 100);
    }
    assert_eq!(uneven.len(), 100);
    uneven.validate().unwrap();
}

#[test]
fn weigher_bounds_total_weight_and_rejects_oversized_entries() {
    let (builder, log) = logged::<u32, String>();
    let cache = builder
        .max_capacity(10)
        .shards(1)
        .policy(Lru::new())
        .weigher(|_k: &u32, v: &String| v.len() as u32)
        .build()
        .unwrap();

    // Heavier than the whole capacity: never stored.
    cache.insert(1, "x".repeat(11));
    assert!(cache.is_empty());
    assert_eq!(
        take(&log),
        vec![(1, "x".repeat(11), RemovalCause::Capacity)]
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.inserts, stats.evicted_capacity, stats.rejected),
        (0, 1, 0)
    );

    // Exactly the capacity fits.
    cache.insert(2, "y".repeat(10));
    assert_eq!(cache.weighted_size(), 10);
    assert_eq!(cache.len(), 1);

    // Room is made by evicting least recently used entries.
    cache.insert(3, "abc".into());
    assert_eq!(cache.weighted_size(), 3);
    assert!(!cache.contains_key(&2));
    cache.insert(4, "defg".into());
    cache.insert(5, "hij".into());
    assert_eq!((cache.len(), cache.weighted_size()), (3, 10));
    cache.get(&3);
    cache.insert(6, "k".into()); // 11 > 10: evicts 4, the least recent
    assert!(cache.contains_key(&3) && !cache.contains_key(&4));
    assert_eq!(cache.weighted_size(), 7);

    // A replacement that grows an entry evicts others, never leaving the shard too heavy.
    cache.insert(6, "z".repeat(8));
    assert!(cache.weighted_size() <= 10);
    assert_eq!(cache.peek(&6).map(|s| s.len()), Some(8));
    let mut causes: Vec<_> = take(&log).into_iter().map(|(k, _, c)| (k, c)).collect();
    causes.sort_by_key(|(k, _)| *k);
    assert!(causes.contains(&(2, RemovalCause::Capacity)));
    assert!(causes.contains(&(4, RemovalCause::Capacity)));
    assert!(causes.contains(&(6, RemovalCause::Replaced)));
    cache.validate().unwrap();
}

#[test]
fn weigher_applies_per_shard_capacity() {
    // 10 split over two shards is 5 each: an entry of weight 6 fits in no shard.
    let cache: Cache<u32, u32> = Cache::builder()
        .max_capacity(10)
        .shards(2)
        .weigher(|_k, v: &u32| *v)
        .build()
        .unwrap();
    cache.insert(1, 6);
    assert!(cache.is_empty());
    assert_eq!(cache.stats().evicted_capacity, 1);
    cache.insert(2, 5);
    assert_eq!(cache.weighted_size(), 5);
    cache.validate().unwrap();
}

#[test]
fn weights_are_clamped_not_overflowed() {
    let cache: Cache<u32, u32> = Cache::builder()
        .shards(1)
        .weigher(|_k, _v| u32::MAX)
        .build()
        .unwrap();
    for i in 0..4 {
        cache.insert(i, i);
    }
    assert_eq!(cache.len(), 4);
    assert_eq!(cache.weighted_size(), 4 * u64::from(u32::MAX - 1));
    cache.validate().unwrap();
}

fn build_err(builder: CacheBuilder<u32, u32>) -> ConfigError {
    builder.build().unwrap_err()
}

#[test]
fn config_errors_name_the_field() {
    for n in [0, 3, 6, 100, MAX_SHARDS + 1, MAX_SHARDS * 2, usize::MAX] {
        let err = build_err(Cache::builder().shards(n));
        assert_eq!(err.field(), "shards", "shards({n})");
        assert!(err.reason().contains(&n.to_string()), "{err}");
        assert!(err.to_string().contains("`shards`"), "{err}");
    }
    for n in [1, 2, 64, 1024] {
        let cache: Cache<u32, u32> = Cache::builder().shards(n).build().unwrap();
        assert_eq!(cache.shard_count(), n);
        cache.validate().unwrap();
    }
    let max: Cache<u32, u32> = Cache::builder().shards(MAX_SHARDS).build().unwrap();
    assert_eq!(max.shard_count(), MAX_SHARDS);
    drop(max);

    let err = build_err(
        Cache::builder()
            .time_to_idle(Duration::from_secs(1))
            .time_to_live(Duration::from_secs(1)),
    );
    assert_eq!(err.field(), "time_to_idle");
    assert!(err.to_string().contains("time_to_live"), "{err}");
    let as_error: &dyn std::error::Error = &err;
    assert!(
        as_error
            .to_string()
            .starts_with("invalid cache configuration")
    );

    for n in [0, 1025, usize::MAX] {
        let err = SampledTtl::with_samples(n).unwrap_err();
        assert_eq!(err.field(), "samples");
        assert!(err.reason().contains(&n.to_string()), "{err}");
    }
    assert_eq!(SampledTtl::with_samples(1).unwrap().samples(), 1);
    assert_eq!(SampledTtl::with_samples(1024).unwrap().samples(), 1024);
    assert_eq!(SampledTtl::new().samples(), SampledTtl::DEFAULT_SAMPLES);
}

#[test]
fn stats_count_every_kind_of_event() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32, Lru> = Cache::builder()
        .max_capacity(2)
        .shards(1)
        .clock(clock.clone())
        .policy(Lru::new())
        .build()
        .unwrap();
    assert_eq!(cache.stats().hit_ratio(), 0.0);

    assert_eq!(cache.get(&1), None); // miss
    cache.insert(1, 1); // insert
    assert_eq!(cache.get(&1), Some(1)); // hit
    cache.insert(1, 11); // update
    cache.insert(2, 2); // insert
    cache.insert(3, 3); // insert, evicts 1 (least recent)
    cache.insert_with_ttl(4, 4, Duration::from_secs(1)); // insert, evicts 2
    let s = cache.stats();
    assert_eq!((s.hits, s.misses, s.inserts, s.updates), (1, 1, 4, 1));
    assert_eq!((s.evicted_capacity, s.rejected, s.expired), (2, 0, 0));

    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.get(&4), None); // miss, expired on access
    assert_eq!(cache.remove(&3), Some(3)); // explicit
    cache.insert_with_ttl(5, 5, Duration::from_secs(1));
    cache.insert(6, 6);
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.sweep_expired(), 1); // 5
    assert_eq!(cache.peek(&6), Some(6)); // counts nothing
    assert!(cache.contains_key(&6)); // counts nothing
    assert_eq!(cache.get(&6), Some(6)); // hit

    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (2, 2));
    assert_eq!((s.inserts, s.updates), (6, 1));
    assert_eq!(s.evicted_capacity, 2);
    assert_eq!((s.expired, s.sweep_expired), (2, 1));
    assert_eq!(s.removed_explicit, 1);
    assert_eq!(s.removals(), 5);
    assert_eq!(s.hit_ratio(), 0.5);

    cache.invalidate_all();
    let s = cache.stats();
    assert_eq!(s.removed_explicit, 2);
    assert_eq!(s.inserts, 6, "counters are kept");
    // Everything inserted has left: inserts = removals + len.
    assert_eq!(s.inserts, s.removals() + cache.len() as u64);
    cache.validate().unwrap();
}

#[test]
fn hit_ratio_is_hits_over_lookups() {
    let cache: Cache<u32, u32> = Cache::new(100);
    for i in 0..10 {
        cache.insert(i, i);
    }
    for i in 0..40 {
        cache.get(&i); // 10 hits, 30 misses
    }
    let s = cache.stats();
    assert_eq!((s.hits, s.misses), (10, 30));
    assert!((s.hit_ratio() - 0.25).abs() < 1e-12);
}

#[test]
fn clones_share_storage_and_debug_names_the_shape() {
    let cache: Cache<u32, u32> = Cache::builder().max_capacity(10).shards(2).build().unwrap();
    let other = cache.clone();
    other.insert(1, 1);
    assert_eq!(cache.get(&1), Some(1));
    let text = format!("{cache:?}");
    assert!(
        text.contains("len: 1") && text.contains("capacity: 10"),
        "{text}"
    );
    assert!(cache.allocated_bytes() > 0);
    cache.validate().unwrap();
}

/// Every error with a cause hands it on through `source()`, so error chains show it.
#[test]
fn errors_with_a_cause_expose_it_as_their_source() {
    use std::error::Error;
    let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    let err = cache
        .try_get_with_blocking(1, || Err::<u32, _>(std::io::Error::other("database down")))
        .unwrap_err();
    let io = err.source().unwrap().downcast_ref::<std::io::Error>();
    assert_eq!(io.unwrap().to_string(), "database down");
    assert!(
        aside::LoadError::<std::io::Error>::Timeout
            .source()
            .is_none()
    );

    let missing = std::env::temp_dir().join(format!("aside-no-such-file-{}", std::process::id()));
    let err = aside::read_keys::<u64>(&missing).unwrap_err();
    let io = err.source().unwrap().downcast_ref::<std::io::Error>();
    assert_eq!(io.unwrap().kind(), std::io::ErrorKind::NotFound);
    assert!(
        aside::parse_keys::<u64>("x")
            .unwrap_err()
            .source()
            .is_none()
    );

    #[cfg(feature = "config")]
    {
        use aside::registry::Registry;
        let err = Registry::from_path(&missing).unwrap_err();
        let io = err.source().unwrap().downcast_ref::<std::io::Error>();
        assert_eq!(io.unwrap().kind(), std::io::ErrorKind::NotFound);
        let err = Registry::from_toml_str("[caches").unwrap_err();
        assert!(err.source().is_some(), "the TOML syntax error: {err}");
        let err = Registry::from_toml_str("[caches.a]\nmax_entries = 0").unwrap_err();
        assert!(
            err.source().is_none(),
            "a field's error has no further cause"
        );
    }
}
