//! Warm restart (`snapshot` feature): the hottest entries survive a snapshot and a restore for
//! every built-in policy, remaining TTLs count the downtime (on a `MockClock` and explicit
//! wall-clock instants, no sleeps), a truncated, extended or corrupted snapshot is refused
//! and leaves the cache as it was, a property round-trip, and panicking user code.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use aside::policy::{AnyPolicy, EvictionPolicy, Fifo, Lfu, Lru, S3Fifo, SampledTtl, WTinyLfu};
use aside::{
    AsideCache, Cache, MockClock, RestoreOptions, Snapshot, SnapshotError, SnapshotOptions,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

const CAPACITY: u64 = 1_000;
const HOT: usize = 50;

/// Bytes of a snapshot of `cache` with `options`.
fn snapshot_of<P: EvictionPolicy>(
    cache: &Cache<u32, u32, P>,
    options: &SnapshotOptions,
) -> Vec<u8> {
    let mut bytes = Vec::new();
    let summary = cache.snapshot(&mut bytes, options).unwrap();
    assert_eq!(summary.bytes, bytes.len() as u64);
    bytes
}

fn keys(bytes: &[u8]) -> Vec<u32> {
    Snapshot::<u32, u32>::read(bytes).unwrap().into_keys()
}

fn cache_with<P: EvictionPolicy>(
    policy: P,
    shards: usize,
    clock: &MockClock,
) -> Cache<u32, u32, P> {
    // Room to spare with several shards: the fill must not overflow any one of them.
    Cache::builder()
        .max_capacity(CAPACITY * shards.min(2) as u64)
        .seed(7)
        .shards(shards)
        .policy(policy)
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// Fills a cache to capacity (`k → 10k`) and makes keys `0..HOT` hot the way the policy
/// counts it: hits for the policies that see hits, the latest inserts or deadlines for the
/// ones that do not (so those hot keys are `CAPACITY - HOT..CAPACITY`). Returns the hot keys.
fn fill<P: EvictionPolicy>(cache: &Cache<u32, u32, P>, name: &str) -> BTreeSet<u32> {
    let n = CAPACITY as u32;
    match name {
        "fifo" => {
            (0..n).for_each(|k| cache.insert(k, k * 10));
            (n - HOT as u32..n).collect()
        }
        "ttl" => {
            (0..n).for_each(|k| cache.insert_with_ttl(k, k * 10, secs(u64::from(k) + 1)));
            (n - HOT as u32..n).collect()
        }
        _ => {
            (0..n).for_each(|k| cache.insert(k, k * 10));
            for _ in 0..3 {
                (0..HOT as u32).for_each(|k| assert_eq!(cache.get(&k), Some(k * 10)));
            }
            (0..HOT as u32).collect()
        }
    }
}

fn policies() -> Vec<&'static str> {
    vec!["lru", "lfu", "fifo", "ttl", "wtinylfu", "s3fifo"]
}

/// The N hottest survive: with one shard the snapshot is exactly the hot set; after a restore
/// into a fresh cache of the same capacity every snapshotted key is there with its value.
fn hottest_survive<P: EvictionPolicy>(policy: impl Fn() -> P, name: &str) {
    let clock = MockClock::new();
    let cache = cache_with(policy(), 1, &clock);
    let hot = fill(&cache, name);
    let bytes = snapshot_of(&cache, &SnapshotOptions::new().limit(HOT));
    let snapped = keys(&bytes);
    assert_eq!(snapped.len(), HOT, "{name}");
    assert_eq!(
        snapped.iter().copied().collect::<BTreeSet<_>>(),
        hot,
        "{name}: the hot set"
    );
    let fresh = cache_with(policy(), 1, &clock);
    let summary = fresh.restore(&bytes[..]).unwrap();
    assert_eq!(summary.restored, HOT, "{name}");
    for k in &hot {
        assert_eq!(fresh.get(k), Some(k * 10), "{name}: key {k}");
    }
    assert_eq!(fresh.len(), HOT);
    fresh.validate().unwrap();
}

#[test]
fn hottest_survive_for_each_built_in_policy() {
    hottest_survive(Lru::new, "lru");
    hottest_survive(Lfu::new, "lfu");
    hottest_survive(Fifo::new, "fifo");
    hottest_survive(SampledTtl::new, "ttl");
    hottest_survive(WTinyLfu::new, "wtinylfu");
    hottest_survive(S3Fifo::new, "s3fifo");
    for name in policies() {
        hottest_survive(|| AnyPolicy::from_name(name).unwrap(), name);
    }
}

#[test]
fn exact_orders_with_one_shard() {
    let clock = MockClock::new();
    let lru = cache_with(Lru::new(), 1, &clock);
    (0..10).for_each(|k| lru.insert(k, k));
    lru.get(&3);
    assert_eq!(
        keys(&snapshot_of(&lru, &SnapshotOptions::new().limit(4))),
        [3, 9, 8, 7]
    );

    let fifo = cache_with(Fifo::new(), 1, &clock);
    (0..10).for_each(|k| fifo.insert(k, k));
    fifo.get(&3);
    assert_eq!(
        keys(&snapshot_of(&fifo, &SnapshotOptions::new().limit(3))),
        [9, 8, 7]
    );

    let lfu = cache_with(Lfu::new(), 1, &clock);
    (0..10).for_each(|k| lfu.insert(k, k));
    (0..3).for_each(|_| assert_eq!(lfu.get(&5), Some(5)));
    (0..2).for_each(|_| assert_eq!(lfu.get(&2), Some(2)));
    // Highest frequency first, then the most recently used among equals.
    assert_eq!(
        keys(&snapshot_of(&lfu, &SnapshotOptions::new().limit(4))),
        [5, 2, 9, 8]
    );

    let ttl = cache_with(SampledTtl::new(), 1, &clock);
    ttl.insert_with_ttl(1, 1, secs(5));
    ttl.insert(2, 2);
    ttl.insert_with_ttl(3, 3, secs(50));
    assert_eq!(keys(&snapshot_of(&ttl, &SnapshotOptions::new())), [2, 3, 1]);
}

#[test]
fn shards_share_the_limit_fairly() {
    for name in policies() {
        let clock = MockClock::new();
        let cache = cache_with(AnyPolicy::from_name(name).unwrap(), 8, &clock);
        let hot = fill(&cache, name);
        let snapped = keys(&snapshot_of(&cache, &SnapshotOptions::new().limit(HOT)));
        assert_eq!(snapped.len(), HOT, "{name}");
        let found = snapped.iter().filter(|k| hot.contains(k)).count();
        // Each shard's share is proportional to its size, not to its hot keys.
        assert!(found * 10 >= HOT * 8, "{name}: {found} of {HOT} hot keys");
    }
}

#[test]
fn restore_keeps_the_hottest_when_they_do_not_all_fit() {
    let clock = MockClock::new();
    let cache = cache_with(Lru::new(), 1, &clock);
    fill(&cache, "lru");
    let bytes = snapshot_of(&cache, &SnapshotOptions::new().limit(HOT));
    let small: Cache<u32, u32, Lru> = Cache::builder()
        .max_capacity(20)
        .shards(1)
        .policy(Lru::new())
        .build()
        .unwrap();
    let summary = small.restore(&bytes[..]).unwrap();
    assert_eq!((summary.restored, summary.over_capacity), (20, HOT - 20));
    let expected: BTreeSet<u32> = keys(&bytes)[..20].iter().copied().collect();
    let present: BTreeSet<u32> = small.iter().map(|(k, _)| k).collect();
    assert_eq!(present, expected);
}

#[test]
fn remaining_ttl_counts_the_downtime() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder().clock(clock.clone()).build().unwrap();
    cache.insert_with_ttl(1, 10, secs(60));
    cache.insert_with_ttl(2, 20, secs(25));
    cache.insert(3, 30);
    cache.insert_with_ttl(4, 40, secs(5));
    clock.advance(secs(10)); // left: 1 → 50 s, 2 → 15 s, 3 never; 4 has expired
    let mut bytes = Vec::new();
    assert_eq!(
        cache
            .snapshot(&mut bytes, &SnapshotOptions::new())
            .unwrap()
            .entries,
        3
    );

    let snapshot = Snapshot::<u32, u32>::read(&bytes[..]).unwrap();
    let restart = snapshot.written_at() + secs(20);
    let fresh: Cache<u32, u32> = Cache::builder().clock(clock.clone()).build().unwrap();
    let summary = fresh.restore_snapshot(snapshot, &RestoreOptions::new().now(restart));
    assert_eq!((summary.restored, summary.expired), (2, 1));
    assert_eq!(fresh.get(&2), None, "15 s left, 20 s of downtime");
    clock.advance(secs(30) - Duration::from_nanos(1));
    assert_eq!(fresh.get(&1), Some(10));
    clock.advance(Duration::from_nanos(1));
    assert_eq!(
        fresh.get(&1),
        None,
        "60 s after its insert, downtime included"
    );
    clock.advance(secs(1_000_000));
    assert_eq!(fresh.get(&3), Some(30));
}

#[test]
fn a_wall_clock_that_went_back_counts_no_downtime() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder().clock(clock.clone()).build().unwrap();
    cache.insert_with_ttl(1, 10, secs(60));
    let mut bytes = Vec::new();
    cache.snapshot(&mut bytes, &SnapshotOptions::new()).unwrap();
    let snapshot = Snapshot::<u32, u32>::read(&bytes[..]).unwrap();
    let earlier = snapshot.written_at() - secs(3600);
    let fresh: Cache<u32, u32> = Cache::builder().clock(clock.clone()).build().unwrap();
    fresh.restore_snapshot(snapshot, &RestoreOptions::new().now(earlier));
    clock.advance(secs(59));
    assert_eq!(fresh.get(&1), Some(10));
    clock.advance(secs(1));
    assert_eq!(fresh.get(&1), None);
}

#[test]
fn idle_entries_restart_their_idle_period_unless_they_idled_out() {
    let clock = MockClock::new();
    let build = || -> Cache<u32, u32> {
        Cache::builder()
            .time_to_idle(secs(30))
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let cache = build();
    cache.insert(1, 10);
    clock.advance(secs(10)); // 20 s of idleness left
    let mut bytes = Vec::new();
    cache.snapshot(&mut bytes, &SnapshotOptions::new()).unwrap();
    for (downtime, survives) in [(secs(19), true), (secs(20), false)] {
        let snapshot = Snapshot::<u32, u32>::read(&bytes[..]).unwrap();
        let restart = snapshot.written_at() + downtime;
        let fresh = build();
        fresh.restore_snapshot(snapshot, &RestoreOptions::new().now(restart));
        assert_eq!(fresh.contains_key(&1), survives, "downtime {downtime:?}");
        if survives {
            clock.advance(secs(29));
            assert_eq!(
                fresh.get(&1),
                Some(10),
                "a full idle period after the restore"
            );
            clock.rewind(secs(29));
        }
    }
}

/// A small snapshot of `(String, String)` entries and a cache holding other entries.
fn corruptible() -> (Vec<u8>, Cache<String, String>) {
    let source: Cache<String, String> = Cache::new(100);
    for i in 0..5 {
        source.insert(format!("key-{i}"), format!("value-{i}"));
    }
    let mut bytes = Vec::new();
    source
        .snapshot(&mut bytes, &SnapshotOptions::new())
        .unwrap();
    let target: Cache<String, String> = Cache::new(100);
    target.insert("mine".into(), "kept".into());
    target.insert("key-0".into(), "not replaced".into());
    (bytes, target)
}

fn contents(cache: &Cache<String, String>) -> BTreeSet<(String, String)> {
    cache.iter().collect()
}

#[test]
fn a_truncated_snapshot_is_refused_at_every_length() {
    let (bytes, target) = corruptible();
    let before = contents(&target);
    for len in 0..bytes.len() {
        let err = target.restore(&bytes[..len]).unwrap_err();
        match err {
            SnapshotError::NotASnapshot => assert!(len < 8, "{len}"),
            SnapshotError::Length { expected, found } => {
                // Until the header is complete, the least a snapshot can be: 30 bytes.
                let whole = if len < 26 { 30 } else { bytes.len() as u64 };
                assert_eq!((expected, found), (whole, len as u64));
            }
            other => panic!("length {len}: {other}"),
        }
        assert!(err_mentions(
            &target.restore(&bytes[..len]).unwrap_err(),
            len
        ));
        assert_eq!(
            contents(&target),
            before,
            "a restore of {len} bytes changed the cache"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        target.restore(&longer[..]),
        Err(SnapshotError::Length { .. })
    ));
    assert_eq!(contents(&target), before);
    assert_eq!(target.restore(&bytes[..]).unwrap().restored, 5);
    assert_eq!(target.len(), 6);
}

/// The message of a refusal says what is wrong.
fn err_mentions(err: &SnapshotError, len: usize) -> bool {
    let text = err.to_string();
    if len < 8 {
        text.contains("not an aside snapshot")
    } else {
        text.contains("truncated")
    }
}

#[test]
fn a_flipped_bit_is_refused_anywhere() {
    let (bytes, target) = corruptible();
    let before = contents(&target);
    for at in 0..bytes.len() {
        for bit in [0, 3, 7] {
            let mut bad = bytes.clone();
            bad[at] ^= 1 << bit;
            let err = target.restore(&bad[..]).unwrap_err();
            let expected = match at {
                0..8 => matches!(err, SnapshotError::NotASnapshot),
                8..10 => matches!(err, SnapshotError::Version { supported: 1, .. }),
                18..26 => matches!(err, SnapshotError::Length { .. }),
                _ => matches!(err, SnapshotError::Checksum { .. }),
            };
            assert!(expected, "byte {at} bit {bit}: {err}");
            assert_eq!(contents(&target), before);
        }
    }
}

#[test]
fn errors_name_their_cause() {
    use std::error::Error;
    struct Broken;
    impl std::io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let cache: Cache<u32, u32> = Cache::new(10);
    cache.insert(1, 1);
    let err = cache.snapshot(Broken, &SnapshotOptions::new()).unwrap_err();
    assert!(matches!(err, SnapshotError::Io(_)));
    assert_eq!(err.source().unwrap().to_string(), "disk full");

    // An intact snapshot of other types: a string where a `u32` was written.
    let words: Cache<u32, String> = Cache::new(10);
    words.insert(1, "x".repeat(300));
    let mut bytes = Vec::new();
    words.snapshot(&mut bytes, &SnapshotOptions::new()).unwrap();
    let err = Snapshot::<u32, u8>::read(&bytes[..]).unwrap_err();
    assert!(matches!(err, SnapshotError::Decode(_)), "{err}");
    assert!(err.source().is_some());
}

#[test]
fn keys_only_snapshots_restore_no_value() {
    let cache: Cache<u32, u32> = Cache::new(100);
    (0..10).for_each(|k| cache.insert(k, k));
    let mut keys_only = Vec::new();
    cache
        .snapshot(&mut keys_only, &SnapshotOptions::new().keys_only())
        .unwrap();
    let mut full = Vec::new();
    cache.snapshot(&mut full, &SnapshotOptions::new()).unwrap();
    assert!(keys_only.len() < full.len());
    let snapshot = Snapshot::<u32, u32>::read(&keys_only[..]).unwrap();
    assert!(!snapshot.has_values());
    assert_eq!(
        snapshot.keys().copied().collect::<BTreeSet<_>>(),
        (0..10).collect()
    );
    let fresh: Cache<u32, u32> = Cache::new(100);
    let summary = fresh.restore(&keys_only[..]).unwrap();
    assert_eq!((summary.restored, summary.without_value), (0, 10));
    assert!(fresh.is_empty());
}

#[test]
fn a_custom_policy_snapshots_in_slab_order() {
    use aside::policy::{Entries, EntryId, HitAccess};
    /// Evicts an arbitrary entry; no `hottest`, so the default applies.
    #[derive(Clone, Default)]
    struct Any;
    impl EvictionPolicy for Any {
        type State = ();
        const HIT: HitAccess = HitAccess::Ignore;
        fn on_insert(&mut self, _: EntryId, _: &mut impl Entries<()>) {}
        fn on_remove(&mut self, _: EntryId, _: &mut impl Entries<()>) {}
        fn victim(&mut self, _: u32, entries: &mut impl Entries<()>) -> Option<EntryId> {
            entries.ids().next()
        }
        fn clear(&mut self) {}
    }
    let cache: Cache<u32, u32, Any> = Cache::builder()
        .max_capacity(10)
        .policy(Any)
        .shards(2)
        .build()
        .unwrap();
    (0..10).for_each(|k| cache.insert(k, k));
    let mut bytes = Vec::new();
    cache
        .snapshot(&mut bytes, &SnapshotOptions::new().limit(4))
        .unwrap();
    assert_eq!(Snapshot::<u32, u32>::read(&bytes[..]).unwrap().len(), 4);
}

/// A value whose `Serialize` or `Clone` panics on demand.
#[derive(Debug, PartialEq, Deserialize)]
struct Touchy(u32);

const BAD_SERIALIZE: u32 = 13;
const BAD_CLONE: u32 = 14;

impl Clone for Touchy {
    fn clone(&self) -> Self {
        assert_ne!(self.0, BAD_CLONE, "clone of a touchy value");
        Touchy(self.0)
    }
}

impl Serialize for Touchy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        assert_ne!(self.0, BAD_SERIALIZE, "serialize of a touchy value");
        s.serialize_u32(self.0)
    }
}

#[test]
fn panicking_clone_or_serialize_leave_the_cache_usable() {
    for bad in [BAD_SERIALIZE, BAD_CLONE] {
        let cache: Cache<u32, Touchy> = Cache::builder()
            .max_capacity(100)
            .shards(2)
            .build()
            .unwrap();
        for k in 0..20 {
            if k != bad {
                cache.insert(k, Touchy(k * 100 + 1)); // never 13 or 14
            }
        }
        // Stored without cloning it (an insert moves the value).
        cache.insert(bad, Touchy(bad));
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            cache.snapshot(Vec::new(), &SnapshotOptions::new())
        }));
        assert!(panicked.is_err(), "the snapshot met value {bad}");
        cache.validate().unwrap();
        assert_eq!(cache.len(), 20);
        cache.invalidate(&bad); // `remove` would clone the value
        assert!(!cache.contains_key(&bad));
        cache.insert(100, Touchy(100));
        let mut bytes = Vec::new();
        assert_eq!(
            cache
                .snapshot(&mut bytes, &SnapshotOptions::new())
                .unwrap()
                .entries,
            20
        );
        let fresh: Cache<u32, Touchy> = Cache::new(100);
        assert_eq!(fresh.restore(&bytes[..]).unwrap().restored, 20);
        assert_eq!(fresh.get(&100), Some(Touchy(100)));
    }
}

#[test]
fn the_front_door_restores_fresh_values_only() {
    let clock = MockClock::new();
    let build = || -> AsideCache<u32, String> {
        AsideCache::builder()
            .max_capacity(100)
            .time_to_live(secs(300))
            .negative_ttl(secs(300))
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let old = build();
    old.put(1, "one".into());
    old.put_with_ttl(2, "two".into(), secs(10));
    assert_eq!(
        old.get_or_load_blocking(3, || Ok::<_, String>(None))
            .unwrap(),
        None
    );
    clock.advance(secs(100)); // 1 has 200 s left, 2 is stale, 3 is "not found"
    let mut bytes = Vec::new();
    let written = old.snapshot(&mut bytes, &SnapshotOptions::new()).unwrap();
    assert_eq!(written.entries, 1);
    let new = build();
    let summary = new.restore(&bytes[..]).unwrap();
    assert_eq!(summary.restored, 1);
    assert_eq!(new.get(&1).as_deref(), Some("one"));
    clock.advance(secs(200));
    assert_eq!(
        new.get(&1),
        None,
        "the fresh period went on from the snapshot"
    );
    let before = new.len();
    assert!(new.restore(&bytes[..bytes.len() - 2]).is_err());
    assert_eq!(new.len(), before);
}

#[cfg(feature = "async")]
#[tokio::test]
async fn keys_only_restores_load_through_the_loader() {
    let old: AsideCache<u32, String> = AsideCache::builder().max_capacity(100).build().unwrap();
    for k in 0..10 {
        old.put(k, format!("old {k}"));
    }
    let mut bytes = Vec::new();
    old.snapshot(&mut bytes, &SnapshotOptions::new().keys_only().limit(5))
        .unwrap();
    let new: AsideCache<u32, String> = AsideCache::builder().max_capacity(100).build().unwrap();
    let snapshot = Snapshot::read(&bytes[..]).unwrap();
    let summary = new
        .restore_keys(snapshot, |k: u32| async move {
            Ok::<_, String>(Some(format!("new {k}")))
        })
        .await;
    assert_eq!(summary.loaded, 5);
    assert_eq!(new.len(), 5);
    for (k, v) in new.iter() {
        assert_eq!(v, format!("new {k}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever was live, with whatever TTL, comes back the same: same entries now, and the
    /// same entries at every later instant an entry expires at.
    #[test]
    fn round_trip(
        shards in prop_oneof![Just(1usize), Just(4)],
        ops in prop::collection::vec((0u16..200, any::<u16>(), prop::option::of(1u64..100)), 0..150),
        elapsed in 0u64..50,
    ) {
        let clock = MockClock::new();
        let build = || -> Cache<u16, String, Lru> {
            Cache::builder()
                .max_capacity(64)
                .seed(3) // the same shard for a key in both caches
                .shards(shards)
                .policy(Lru::new())
                .clock(clock.clone())
                .build()
                .unwrap()
        };
        let cache = build();
        for (k, v, ttl) in ops {
            match ttl {
                Some(t) => cache.insert_with_ttl(k, v.to_string(), secs(t)),
                None => cache.insert(k, v.to_string()),
            }
        }
        clock.advance(secs(elapsed));
        let mut bytes = Vec::new();
        cache.snapshot(&mut bytes, &SnapshotOptions::new()).unwrap();
        let snapshot = Snapshot::<u16, String>::read(&bytes[..]).unwrap();
        let at = snapshot.written_at();
        let fresh = build();
        fresh.restore_snapshot(snapshot, &RestoreOptions::new().now(at));
        for _ in 0..100 {
            let a: BTreeSet<_> = cache.iter().collect();
            let b: BTreeSet<_> = fresh.iter().collect();
            prop_assert_eq!(&a, &b);
            if a.is_empty() {
                break;
            }
            clock.advance(secs(1));
        }
        fresh.validate().unwrap();
    }
}
