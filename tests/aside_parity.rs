//! What the engine offers, on the front door too (#20): per-entry TTLs chosen from the value
//! or by `put`, an eviction listener with causes, iteration, predicate invalidation and
//! borrowed lookups. Time is a `MockClock`; nothing sleeps.

use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use aside::{AsideCache, MockClock, RemovalCause};

type Log = Arc<Mutex<Vec<(u32, String, RemovalCause)>>>;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn the_eviction_listener_hears_every_cause_but_not_negative_entries() {
    let clock = MockClock::new();
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let cache: AsideCache<u32, String, aside::policy::Lru> = AsideCache::builder()
        .max_capacity(2)
        .shards(1)
        .policy(aside::policy::Lru::new())
        .time_to_live(secs(10))
        .negative_ttl(secs(10))
        .eviction_listener(move |k: &u32, v: &String, cause| {
            sink.lock().unwrap().push((*k, v.clone(), cause));
        })
        .clock(clock.clone())
        .build()
        .unwrap();
    let load = |v: &'static str| move || Ok::<_, ()>(Some(v.to_string()));
    cache.get_or_load_blocking(1, load("a")).unwrap();
    cache.put(1, "b".to_string()); // replaces "a"
    cache.invalidate(&1); // explicit
    cache.get_or_load_blocking(2, load("c")).unwrap();
    cache.get_or_load_blocking(3, load("d")).unwrap();
    cache.get_or_load_blocking(4, load("e")).unwrap(); // evicts 2 (LRU)
    clock.advance(secs(10));
    assert_eq!(
        cache.get_or_load_blocking(3, load("f")).unwrap().as_deref(),
        Some("f")
    );
    // A cached "not found" is stored, replaced and removed without a word.
    cache.get_or_load_blocking(9, || Ok::<_, ()>(None)).unwrap();
    cache.invalidate(&9);
    let got = log.lock().unwrap().clone();
    let expected = vec![
        (1, "a".to_string(), RemovalCause::Replaced),
        (1, "b".to_string(), RemovalCause::Explicit),
        (2, "c".to_string(), RemovalCause::Capacity),
        (3, "d".to_string(), RemovalCause::Expired),
    ];
    assert!(got.starts_with(&expected), "{got:?}");
    assert!(
        got[expected.len()..].iter().all(|(k, _, _)| *k == 4),
        "{got:?}"
    );
    cache.validate().unwrap();
}

#[test]
fn a_panicking_listener_leaves_the_front_door_consistent() {
    let cache: AsideCache<u32, u32> = AsideCache::builder()
        .eviction_listener(|_: &u32, _: &u32, _| panic!("listener"))
        .build()
        .unwrap();
    cache.put(1, 1);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.invalidate(&1)));
    assert!(r.is_err());
    assert_eq!(cache.get(&1), None);
    cache.put(2, 2);
    assert_eq!(cache.get(&2), Some(2));
    cache.validate().unwrap();
}

#[test]
fn per_entry_ttls_from_the_value_and_from_put() {
    let clock = MockClock::new();
    let cache: AsideCache<u32, u32> = AsideCache::builder()
        .time_to_live(secs(100))
        // Odd values are volatile: 10 s. Even ones take the default.
        .expire_after(|_: &u32, v: &u32| (v % 2 == 1).then_some(secs(10)))
        .clock(clock.clone())
        .build()
        .unwrap();
    cache
        .get_or_load_blocking(1, || Ok::<_, ()>(Some(11)))
        .unwrap();
    cache
        .get_or_load_blocking(2, || Ok::<_, ()>(Some(22)))
        .unwrap();
    cache.put(3, 33);
    cache.put_with_ttl(4, 33, secs(50)); // odd, but the explicit TTL wins
    clock.advance(secs(10));
    assert_eq!((cache.get(&1), cache.get(&3)), (None, None));
    assert_eq!((cache.get(&2), cache.get(&4)), (Some(22), Some(33)));
    clock.advance(secs(40));
    assert_eq!(cache.get(&4), None);
    assert_eq!(cache.get(&2), Some(22));
    clock.advance(secs(50));
    assert_eq!(cache.get(&2), None);

    // Without a default TTL, a per-entry TTL still expires its value.
    let forever: AsideCache<u32, u32> = AsideCache::builder().clock(clock.clone()).build().unwrap();
    forever.put_with_ttl(1, 1, secs(1));
    forever.put(2, 2);
    clock.advance(secs(1));
    assert_eq!((forever.get(&1), forever.get(&2)), (None, Some(2)));
}

#[test]
fn iteration_yields_what_get_would_serve() {
    let clock = MockClock::new();
    let cache: AsideCache<u32, u32> = AsideCache::builder()
        .time_to_live(secs(10))
        .negative_ttl(secs(100))
        .fail_safe(aside::FailSafe::new(secs(100)).retry_interval(secs(1)))
        .no_xfetch()
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.put(1, 10);
    cache.get_or_load_blocking(2, || Ok::<_, ()>(None)).unwrap(); // "not found"
    clock.advance(secs(10)); // 1 is now stale, kept for fail-safe
    cache.put(3, 30);
    let labels = aside::Labels::new().tag("t");
    cache.put_labelled(4, 40, &labels);
    cache.invalidate_tag("t");
    let mut all: Vec<_> = cache.iter().collect();
    all.sort();
    assert_eq!(all, vec![(3, 30)]);
    assert_eq!(
        cache.len(),
        4,
        "the stale, negative and hidden entries are still stored"
    );
}

#[test]
fn invalidate_if_removes_matching_values_and_keeps_loads_in_flight_out() {
    let cache: AsideCache<String, u32> = AsideCache::builder().build().unwrap();
    for (k, v) in [("a:1", 1), ("a:2", 2), ("b:1", 3)] {
        cache.put(k.to_string(), v);
    }
    let (started, release) = (Barrier::new(2), Barrier::new(2));
    std::thread::scope(|s| {
        let loader = s.spawn(|| {
            cache.get_or_load_blocking("c:1".to_string(), || {
                started.wait();
                release.wait(); // the invalidation happens while this load runs
                Ok::<_, ()>(Some(4))
            })
        });
        started.wait();
        cache.invalidate_if(|k, _| k.starts_with("a:"));
        release.wait();
        assert_eq!(
            loader.join().unwrap().unwrap(),
            Some(4),
            "its caller still gets it"
        );
    });
    let mut left: Vec<_> = cache.iter().collect();
    left.sort();
    assert_eq!(
        left,
        vec![("b:1".to_string(), 3)],
        "c:1 was loaded before: not installed"
    );
    assert_eq!(cache.load_stats().discarded, 1);
    assert_eq!(cache.in_flight(), 0);
}

#[test]
fn lookups_and_invalidations_take_borrowed_keys() {
    let cache: AsideCache<String, u32> = AsideCache::builder().build().unwrap();
    cache.put("user:1".to_string(), 1);
    assert_eq!(cache.get("user:1"), Some(1));
    cache.invalidate("user:1");
    assert_eq!(cache.get("user:1"), None);
    let boxed: AsideCache<Vec<u8>, u32> = AsideCache::builder().build().unwrap();
    boxed.put(vec![1, 2], 3);
    assert_eq!(boxed.get(&[1u8, 2][..]), Some(3));
}
