//! Expiry on a `MockClock`: default, per-entry and sliding TTLs, jitter bounds, saturation at
//! the extremes, clocks that jump backwards, passive expiry and the sweeps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aside::policy::Lru;
use aside::{Cache, MockClock, RemovalCause};

const NS: Duration = Duration::from_nanos(1);
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// How many of `keys` are live, counted without side effects.
fn live(cache: &Cache<u32, u32>, keys: std::ops::Range<u32>) -> usize {
    keys.filter(|k| cache.contains_key(k)).count()
}

#[test]
fn default_ttl_applies_to_plain_inserts() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .time_to_live(secs(60))
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert(1, 1);
    clock.advance(secs(30));
    cache.insert(2, 2);
    assert_eq!(cache.get_or_insert_with(3, || 3), 3);
    clock.advance(secs(30) - NS);
    assert_eq!(cache.get(&1), Some(1), "live strictly before its deadline");
    clock.advance(NS);
    assert_eq!(cache.get(&1), None, "expired at its deadline");
    assert_eq!(cache.get(&2), Some(2));
    // Reads do not extend a fixed TTL.
    clock.advance(secs(30));
    assert_eq!(cache.get(&2), None);
    assert_eq!(cache.get(&3), None);
    cache.validate().unwrap();
}

#[test]
fn per_entry_ttl_overrides_the_default() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .time_to_live(secs(60))
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert_with_ttl(1, 1, secs(10));
    cache.insert_with_ttl(2, 2, secs(120));
    cache.insert(3, 3);
    clock.advance(secs(10));
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get(&3), Some(3));
    clock.advance(secs(50));
    assert_eq!(cache.get(&3), None);
    assert_eq!(cache.get(&2), Some(2));
    clock.advance(secs(60));
    assert_eq!(cache.get(&2), None);

    // Replacing an entry resets its deadline to the new insert's.
    cache.insert_with_ttl(4, 4, secs(5));
    clock.advance(secs(4));
    cache.insert(4, 40);
    clock.advance(secs(59));
    assert_eq!(cache.get(&4), Some(40));
    clock.advance(secs(1));
    assert_eq!(cache.get(&4), None);
    cache.validate().unwrap();
}

#[test]
fn per_entry_ttl_without_a_default() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder().clock(clock.clone()).build().unwrap();
    cache.insert(1, 1);
    cache.insert_with_ttl(2, 2, secs(1));
    clock.advance(secs(1));
    assert_eq!(cache.get(&2), None);
    clock.advance(YEAR);
    assert_eq!(cache.get(&1), Some(1), "no TTL: never expires");
    cache.validate().unwrap();
}

#[test]
fn sliding_ttl_is_extended_by_get_but_not_by_peek() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .time_to_idle(secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert(1, 1);
    cache.insert(2, 2);
    for _ in 0..5 {
        clock.advance(secs(9));
        assert_eq!(cache.get(&1), Some(1));
    }
    // 45 s after its insert, 1 is alive thanks to the gets; 2 expired at 10 s.
    assert_eq!(cache.peek(&2), None);

    // peek and contains_key read but do not slide.
    clock.advance(secs(9));
    assert_eq!(cache.peek(&1), Some(1));
    assert!(cache.contains_key(&1));
    clock.advance(secs(1));
    assert_eq!(cache.peek(&1), None, "10 s since the last get");
    assert_eq!(cache.get(&1), None);

    // A replacement restarts the idle period too.
    cache.insert(3, 3);
    clock.advance(secs(9));
    cache.insert(3, 30);
    clock.advance(secs(9));
    assert_eq!(cache.peek(&3), Some(30));
    cache.validate().unwrap();
}

#[test]
fn per_entry_ttl_in_a_sliding_cache_stays_fixed() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .time_to_idle(secs(10))
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert_with_ttl(1, 1, secs(15));
    cache.insert_with_ttl(2, 2, secs(5));
    for _ in 0..4 {
        clock.advance(secs(1));
        assert_eq!(cache.get(&2), Some(2));
    }
    clock.advance(secs(1)); // 5 s: the gets did not push it to 14 s
    assert_eq!(cache.get(&2), None);
    for _ in 0..9 {
        clock.advance(secs(1));
        assert_eq!(cache.get(&1), Some(1));
    }
    clock.advance(secs(1)); // 15 s
    assert_eq!(cache.get(&1), None);
    cache.validate().unwrap();
}

#[test]
fn jitter_keeps_default_deadlines_within_ttl_plus_jitter() {
    const N: u32 = 1000;
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .time_to_live(secs(100))
        .ttl_jitter(secs(10))
        .shards(1)
        .seed(5)
        .clock(clock.clone())
        .build()
        .unwrap();
    for k in 0..N {
        cache.insert(k, k);
    }
    clock.advance(secs(100) - NS);
    assert_eq!(
        live(&cache, 0..N),
        N as usize,
        "nothing expires before the TTL"
    );
    clock.advance(NS);
    let mut previous = live(&cache, 0..N);
    // Each second of the jitter window sees roughly a tenth of the entries expire.
    for second in 1..10 {
        clock.advance(secs(1));
        let now = live(&cache, 0..N);
        let expired = previous - now;
        assert!(
            (40..=160).contains(&expired),
            "{expired} expired in second {second} of the jitter window"
        );
        previous = now;
    }
    assert!(previous > 0, "some deadlines fall in the last second");
    clock.advance(secs(1)); // ttl + jitter: every deadline is behind
    assert_eq!(live(&cache, 0..N), 0);
    assert_eq!(cache.iter().count(), 0);
    assert_eq!(cache.len(), N as usize, "contains_key reclaims nothing");
    let mut reclaimed = 0;
    while !cache.is_empty() {
        let n = cache.sweep_expired();
        assert!(
            n > 0,
            "a sweep over a fully expired shard always finds some"
        );
        reclaimed += n;
    }
    assert_eq!(reclaimed, N as usize);
    cache.validate().unwrap();
}

#[test]
fn jitter_applies_to_per_entry_and_sliding_ttls() {
    const N: u32 = 500;
    let clock = MockClock::new();
    let fixed: Cache<u32, u32> = Cache::builder()
        .ttl_jitter(secs(10))
        .seed(6)
        .clock(clock.clone())
        .build()
        .unwrap();
    let sliding: Cache<u32, u32> = Cache::builder()
        .time_to_idle(secs(20))
        .ttl_jitter(secs(10))
        .seed(7)
        .clock(clock.clone())
        .build()
        .unwrap();
    for k in 0..N {
        fixed.insert_with_ttl(k, k, secs(20));
        sliding.insert(k, k);
    }
    clock.advance(secs(20) - NS);
    assert_eq!(live(&fixed, 0..N), N as usize);
    assert_eq!(live(&sliding, 0..N), N as usize);
    clock.advance(secs(5) + NS);
    let (f, s) = (live(&fixed, 0..N), live(&sliding, 0..N));
    assert!(f > 0 && f < N as usize, "fixed: {f} of {N} live mid-window");
    assert!(
        s > 0 && s < N as usize,
        "sliding: {s} of {N} live mid-window"
    );
    clock.advance(secs(5));
    assert_eq!(live(&fixed, 0..N), 0);
    assert_eq!(live(&sliding, 0..N), 0);
    fixed.validate().unwrap();
    sliding.validate().unwrap();
}

#[test]
fn sliding_deadline_after_a_hit_is_within_tti_plus_jitter() {
    const N: u32 = 200;
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .time_to_idle(secs(20))
        .ttl_jitter(secs(10))
        .seed(8)
        .clock(clock.clone())
        .build()
        .unwrap();
    for k in 0..N {
        cache.insert(k, k);
    }
    clock.advance(secs(5));
    for k in 0..N {
        assert_eq!(cache.get(&k), Some(k));
    }
    clock.advance(secs(20) - NS);
    assert_eq!(live(&cache, 0..N), N as usize);
    clock.advance(secs(10) + NS);
    assert_eq!(live(&cache, 0..N), 0);
    cache.validate().unwrap();
}

#[test]
fn zero_ttl_is_never_returned() {
    let clock = MockClock::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let cache: Cache<u32, u32> = Cache::builder()
        .clock(clock.clone())
        .eviction_listener(move |k, _v, cause| sink.lock().unwrap().push((*k, cause)))
        .build()
        .unwrap();
    cache.insert_with_ttl(1, 1, Duration::ZERO);
    assert_eq!(cache.peek(&1), None);
    assert!(!cache.contains_key(&1));
    assert_eq!(cache.iter().count(), 0);
    assert_eq!(cache.get(&1), None);
    assert_eq!(*log.lock().unwrap(), vec![(1, RemovalCause::Expired)]);
    assert_eq!(cache.get_or_insert_with(2, || 2), 2);
    cache.insert_with_ttl(2, 20, Duration::ZERO);
    assert_eq!(
        cache.get(&2),
        None,
        "a zero-TTL replacement hides the old value too"
    );

    // A cache whose default TTL is zero never returns anything.
    let never: Cache<u32, u32> = Cache::builder()
        .time_to_live(Duration::ZERO)
        .clock(clock.clone())
        .build()
        .unwrap();
    for k in 0..100 {
        never.insert(k, k);
        assert_eq!(never.get(&k), None);
        assert_eq!(never.get_or_insert_with(k, || k), k);
        assert!(!never.contains_key(&k));
    }
    assert_eq!(never.stats().hits, 0);
    cache.validate().unwrap();
    never.validate().unwrap();
}

#[test]
fn duration_max_saturates_without_panicking() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .ttl_jitter(Duration::MAX)
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert_with_ttl(1, 1, Duration::MAX);
    clock.advance(YEAR * 100);
    assert_eq!(cache.get(&1), Some(1));
    cache.validate().unwrap();

    let ttl: Cache<u32, u32> = Cache::builder()
        .time_to_live(Duration::MAX)
        .clock(clock.clone())
        .build()
        .unwrap();
    let tti: Cache<u32, u32> = Cache::builder()
        .time_to_idle(Duration::MAX)
        .ttl_jitter(Duration::MAX)
        .clock(clock.clone())
        .build()
        .unwrap();
    ttl.insert(1, 1);
    tti.insert(1, 1);
    clock.advance(YEAR * 100);
    assert_eq!(ttl.get(&1), Some(1));
    assert_eq!(tti.get(&1), Some(1), "and sliding it saturates too");
    clock.advance(YEAR * 10);
    assert_eq!(tti.get(&1), Some(1));
    assert_eq!(ttl.sweep_expired(), 0);
    ttl.validate().unwrap();
    tti.validate().unwrap();

    // Even a clock pushed to the end of time does not panic; the saturated deadline is finite.
    clock.advance(Duration::MAX);
    assert_eq!(ttl.get(&1), None);
    ttl.insert(2, 2);
    cache.insert_with_ttl(3, 3, Duration::MAX);
    assert_eq!(cache.get(&3), None);
    ttl.validate().unwrap();
}

#[test]
fn clock_rewound_then_forward() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .time_to_live(secs(60))
        .clock(clock.clone())
        .build()
        .unwrap();
    let sliding: Cache<u32, u32> = Cache::builder()
        .time_to_idle(secs(60))
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.insert_with_ttl(1, 1, secs(1)); // deadline: START + 1 s
    sliding.insert(1, 1);

    clock.rewind(YEAR * 10); // saturates at the clock's origin
    assert_eq!(
        cache.get(&1),
        Some(1),
        "a backwards jump only delays expiry"
    );
    assert_eq!(sliding.get(&1), Some(1)); // slides to now + 60 s
    cache.insert_with_ttl(2, 2, secs(1)); // inserted while rewound
    cache.insert(3, 3);
    cache.validate().unwrap();

    clock.advance(secs(1) - NS);
    assert_eq!(cache.get(&2), Some(2));
    clock.advance(NS);
    assert_eq!(
        cache.get(&2),
        None,
        "expires once the clock passes its deadline"
    );
    assert_eq!(cache.get(&1), Some(1));
    clock.advance(secs(60));
    assert_eq!(cache.get(&3), None);
    assert_eq!(
        sliding.get(&1),
        None,
        "the slide happened at the rewound time"
    );

    // Forward again past the original deadline of 1.
    clock.advance(MockClock::START);
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.sweep_expired(), 0);
    assert!(cache.is_empty() && sliding.is_empty());
    cache.validate().unwrap();
    sliding.validate().unwrap();
}

#[test]
fn expired_entries_found_on_access_are_removed_and_announced() {
    let clock = MockClock::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let cache: Cache<u32, u32> = Cache::builder()
        .time_to_live(secs(1))
        .shards(1)
        .clock(clock.clone())
        .eviction_listener(move |k, v, cause| sink.lock().unwrap().push((*k, *v, cause)))
        .build()
        .unwrap();
    for k in 0..4 {
        cache.insert(k, k * 10);
    }
    clock.advance(secs(1));

    // peek and contains_key leave the expired entry in place.
    assert_eq!(cache.peek(&0), None);
    assert!(!cache.contains_key(&0));
    assert_eq!(cache.len(), 4);
    assert!(log.lock().unwrap().is_empty());

    assert_eq!(cache.get(&0), None);
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.remove(&1), None);
    cache.insert(2, 22); // a write over an expired entry: expired, not replaced
    assert_eq!(cache.get(&2), Some(22));
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            (0, 0, RemovalCause::Expired),
            (1, 10, RemovalCause::Expired),
            (2, 20, RemovalCause::Expired)
        ]
    );
    let s = cache.stats();
    assert_eq!((s.expired, s.sweep_expired, s.updates), (3, 0, 0));
    assert_eq!((s.removed_explicit, s.misses), (0, 1));
    assert!(log.lock().unwrap().iter().all(|(_, _, c)| c.was_evicted()));
    cache.validate().unwrap();
}

#[test]
fn an_expired_victim_is_announced_as_expired() {
    let clock = MockClock::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let cache: Cache<u32, u32, Lru> = Cache::builder()
        .max_capacity(2)
        .shards(1)
        .clock(clock.clone())
        .policy(Lru::new())
        .eviction_listener(move |k, _v, cause| sink.lock().unwrap().push((*k, cause)))
        .build()
        .unwrap();
    cache.insert_with_ttl(1, 1, secs(1));
    cache.insert(2, 2);
    clock.advance(secs(1));
    cache.insert(3, 3); // LRU victim is 1, which has expired
    cache.insert(4, 4); // victim 2 is live
    assert_eq!(
        *log.lock().unwrap(),
        vec![(1, RemovalCause::Expired), (2, RemovalCause::Capacity)]
    );
    let s = cache.stats();
    assert_eq!((s.expired, s.evicted_capacity), (1, 1));
    cache.validate().unwrap();
}

#[test]
fn sweep_expired_reclaims_expired_entries_and_leaves_live_ones() {
    const N: u32 = 1000;
    let clock = MockClock::new();
    let expired = Arc::new(Mutex::new(Vec::new()));
    let sink = expired.clone();
    let cache: Cache<u32, u32> = Cache::builder()
        .shards(4)
        .seed(9)
        .clock(clock.clone())
        .eviction_listener(move |k, _v, cause| {
            assert_eq!(cause, RemovalCause::Expired);
            sink.lock().unwrap().push(*k);
        })
        .build()
        .unwrap();
    // Even keys expire after 1 s, odd keys after an hour, interleaved in every shard.
    for k in 0..N {
        let ttl = if k % 2 == 0 { secs(1) } else { secs(3600) };
        cache.insert_with_ttl(k, k, ttl);
    }
    clock.advance(secs(2));
    assert_eq!(
        cache.len(),
        N as usize,
        "nothing reclaimed before the sweep"
    );

    let first = cache.sweep_expired();
    assert!(first > 0, "the first sweep reclaims something");
    // The sweep is a bounded random sample per call; repeated calls converge.
    let mut total = first;
    let mut calls = 1;
    while cache.len() > (N / 2) as usize && calls < 10_000 {
        total += cache.sweep_expired();
        calls += 1;
    }
    assert_eq!(total, (N / 2) as usize, "after {calls} calls");
    assert_eq!(cache.len(), (N / 2) as usize);
    assert_eq!(cache.sweep_expired(), 0);
    for k in 0..N {
        assert_eq!(cache.contains_key(&k), k % 2 == 1, "key {k}");
    }
    let mut reclaimed = expired.lock().unwrap().clone();
    reclaimed.sort_unstable();
    assert_eq!(reclaimed, (0..N).step_by(2).collect::<Vec<_>>());
    let s = cache.stats();
    assert_eq!((s.expired, s.sweep_expired), (500, 500));
    cache.validate().unwrap();
}

#[test]
fn sweep_expired_reclaims_a_fully_expired_cache_in_one_call() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .time_to_live(secs(1))
        .shards(16)
        .seed(10)
        .clock(clock.clone())
        .build()
        .unwrap();
    for k in 0..1000 {
        cache.insert(k, k);
    }
    clock.advance(secs(1));
    // Every sample is fully expired, so each round repeats until the shard is empty or the
    // round limit is hit; with ~62 entries per shard, one call suffices.
    assert_eq!(cache.sweep_expired(), 1000);
    assert!(cache.is_empty());
    cache.validate().unwrap();
}

#[test]
fn writes_alone_eventually_reclaim_expired_entries() {
    let clock = MockClock::new();
    let cache: Cache<u32, u32> = Cache::builder()
        .shards(4)
        .seed(12)
        .clock(clock.clone())
        .build()
        .unwrap();
    for k in 0..400 {
        cache.insert_with_ttl(k, k, secs(1));
    }
    clock.advance(secs(2));
    for k in 1000..5000 {
        cache.insert(k, k);
    }
    let s = cache.stats();
    assert!(s.sweep_expired > 0, "{s:?}");
    assert_eq!(s.expired, s.sweep_expired, "nothing else touched them");
    assert_eq!(cache.len(), 4400 - s.sweep_expired as usize);
    assert!((1000..5000).all(|k| cache.contains_key(&k)));
    cache.validate().unwrap();
}
