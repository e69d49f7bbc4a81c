//! Adversarial streams: a flood of distinct keys through a small cache must keep memory
//! bounded for every policy (slab, table, policy states, sketches and ghost queues included),
//! measured with a counting global allocator. One test function, so that no other test of
//! this binary allocates while it measures.

use std::alloc::System;
use std::time::Duration;

use aside::policy::{EvictionPolicy, Fifo, Lfu, Lru, S3Fifo, SampledTtl, WTinyLfu};
use aside::{Cache, MockClock};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CAPACITY: u64 = 1_000;
/// Distinct keys streamed through the cache; the bytes after the first `WARM` (100 × the
/// capacity: every structure has reached its steady size, e.g. W-TinyLFU's sketch has grown
/// once) are the baseline. 500k keys keep the debug-build test at about 1.5 s per policy.
const KEYS: u64 = 500_000;
const WARM: u64 = 100_000;

fn net(region: &Region<'_, System>) -> i64 {
    let c = region.change();
    c.bytes_allocated as i64 - c.bytes_deallocated as i64
}

/// Streams `KEYS` distinct keys (each read, missed and inserted, half of them with a TTL)
/// through a `CAPACITY` cache; returns the bytes allocated after `WARM` keys, at the end, and
/// still allocated after the cache is dropped.
fn stream<P: EvictionPolicy>(policy: P) -> (i64, i64, i64) {
    let clock = MockClock::new();
    let region = Region::new(GLOBAL);
    let cache: Cache<u64, u64, P> = Cache::builder()
        .max_capacity(CAPACITY)
        .policy(policy)
        .clock(clock.clone())
        .seed(3)
        .build()
        .unwrap();
    let mut warm = 0;
    for k in 0..KEYS {
        if cache.get(&k).is_none() {
            if k % 2 == 0 {
                cache.insert_with_ttl(k, k, Duration::from_secs(1 + k % 7));
            } else {
                cache.insert(k, k);
            }
        }
        if k % 1_000 == 0 {
            clock.advance(Duration::from_millis(300));
        }
        if k + 1 == WARM {
            warm = net(&region);
        }
        assert!(cache.len() as u64 <= CAPACITY);
    }
    cache.validate().unwrap();
    let end = net(&region);
    drop(cache);
    drop(clock);
    (warm, end, net(&region))
}

#[test]
fn a_flood_of_distinct_keys_keeps_memory_bounded_for_every_policy() {
    // The first run pays one-time global initialisations of the process (64 bytes here, e.g.
    // thread-local destructor lists), which stay allocated; warm them up first.
    stream(Fifo::new());
    let runs = [
        ("Lru", stream(Lru::new())),
        ("Lfu", stream(Lfu::new())),
        ("Fifo", stream(Fifo::new())),
        ("SampledTtl", stream(SampledTtl::new())),
        ("WTinyLfu", stream(WTinyLfu::new())),
        ("S3Fifo", stream(S3Fifo::new())),
    ];
    for (name, (warm, end, leaked)) in runs {
        assert!(
            leaked <= 0,
            "{name}: {leaked} bytes still allocated after drop"
        );
        // Bounded: 5x more keys than the warm-up cost at most 10% more memory (measured: 0),
        // and the whole cache stays within 300 bytes per entry of capacity (u64 -> u64).
        assert!(
            end <= warm + warm / 10,
            "{name}: {warm} bytes after {WARM} keys, {end} after {KEYS}"
        );
        assert!(
            end <= 300 * CAPACITY as i64,
            "{name}: {end} bytes for {CAPACITY} entries"
        );
    }
}
