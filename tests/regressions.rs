//! One test per bug found by the reliability suite (fuzzing, shuttle, stress, panic-safety),
//! each named after what broke and reproducing it without the tool that found it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use aside::{AsideCache, Cache, MockClock};

/// Found by shuttle (`concurrent_loads_of_one_key_run_the_loader_once`): a caller whose lookup
/// missed while another caller's load was running, and who joined the registry just after
/// that load finished, led a second load of the same key. Leaders now look again before
/// loading. Two threads race over the same fresh keys; every key must be loaded once.
#[test]
fn a_load_finishing_between_lookup_and_join_is_not_repeated() {
    const KEYS: u64 = 100_000;
    const THREADS: usize = 2;
    let cache: AsideCache<u64, u64> = AsideCache::builder().max_capacity(KEYS).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let (cache, calls, barrier) = (&cache, &calls, &barrier);
            s.spawn(move || {
                for k in 0..KEYS {
                    if k % 256 == 0 {
                        barrier.wait(); // keep the threads on the same keys
                    }
                    let v = cache.get_or_load_blocking(k, || {
                        calls.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, ()>(Some(k))
                    });
                    assert!(matches!(v, Ok(Some(x)) if x == k), "{v:?}");
                }
            });
        }
    });
    assert_eq!(
        calls.load(Ordering::Relaxed) as u64,
        KEYS,
        "some keys were loaded twice"
    );
    assert_eq!(cache.in_flight(), 0);
}

/// Found by tests/adversarial.rs (`a_clock_jumping_by_years_breaks_nothing`): with
/// `refresh_after`, a read after the clock went back past the value's store time computed
/// `now - stored_at` unchecked (an overflow panic in debug builds, a spurious refresh in
/// release).
#[test]
fn a_clock_going_back_past_a_store_does_not_overflow_the_refresh_threshold() {
    let clock = MockClock::new();
    let cache: AsideCache<u64, u64> = AsideCache::builder()
        .time_to_live(Duration::from_secs(60))
        .refresh_after(0.5)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(cache.get_with_blocking(1, || 10).unwrap(), 10);
    clock.rewind(Duration::from_secs(10));
    // Fresh, and not due for an early refresh: the loader must not run.
    assert_eq!(cache.get_with_blocking(1, || 11).unwrap(), 10);
    assert_eq!(cache.load_stats().early_refreshes, 0);
}

/// Found by tests/adversarial.rs (`extreme_ttls_saturate_instead_of_overflowing`): a blocking
/// waiter computed its lease deadline as `Instant::now() + lease`, which overflows (panics) for
/// `lease(Duration::MAX)`.
#[test]
fn a_blocking_waiter_with_a_duration_max_lease_does_not_overflow() {
    let cache: AsideCache<u64, u64> = AsideCache::builder().lease(Duration::MAX).build().unwrap();
    let (started, release) = (Barrier::new(2), Barrier::new(2));
    std::thread::scope(|s| {
        let leader = s.spawn(|| {
            cache.get_with_blocking(5, || {
                started.wait();
                release.wait();
                5
            })
        });
        started.wait();
        let waiter = s.spawn(|| cache.get_with_blocking(5, || 6));
        while cache.load_stats().coalesced == 0 {
            std::thread::yield_now();
        }
        release.wait();
        assert_eq!(leader.join().unwrap().unwrap(), 5);
        assert_eq!(
            waiter.join().unwrap().unwrap(),
            5,
            "the waiter shares the load"
        );
    });
}

/// A value whose `Clone` panics while `BOMB_ARMED` is set.
#[derive(Debug)]
struct Bomb(u32);

static BOMB_ARMED: AtomicBool = AtomicBool::new(false);

impl Clone for Bomb {
    fn clone(&self) -> Self {
        assert!(!BOMB_ARMED.load(Ordering::SeqCst), "clone failed");
        Bomb(self.0)
    }
}

/// A key whose `Eq` panics on key 13 while `EQ_ARMED` is set; every key hashes alike, so
/// lookups compare against every stored key.
#[derive(Debug, Clone)]
struct Colliding(u32);

static EQ_ARMED: AtomicBool = AtomicBool::new(false);

impl std::hash::Hash for Colliding {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        0u8.hash(state);
    }
}

impl PartialEq for Colliding {
    fn eq(&self, other: &Self) -> bool {
        let armed = EQ_ARMED.load(Ordering::SeqCst);
        assert!(!(armed && (self.0 == 13 || other.0 == 13)), "eq failed");
        self.0 == other.0
    }
}

impl Eq for Colliding {}

/// Found by tests/panic_safety.rs: when user code panicked under the shard lock after the
/// write had already removed entries (the sweep a write runs, or `remove` cloning the value
/// it returns), those removals were dropped without reaching the eviction listener, so a
/// listener keeping an external index fell out of step with the cache. They are announced
/// now, and the panic resumed afterwards.
#[test]
fn removals_made_before_a_panic_under_the_lock_are_still_announced() {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let clock = MockClock::new();
    let cache: Cache<Colliding, Bomb> = Cache::builder()
        .max_capacity(100)
        .shards(1)
        .clock(clock.clone())
        .eviction_listener(move |_, _, _| {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    // `remove` takes the entry out, then clones the value it returns: the clone panics.
    cache.insert(Colliding(1), Bomb(1));
    BOMB_ARMED.store(true, Ordering::SeqCst);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.remove(&Colliding(1))));
    BOMB_ARMED.store(false, Ordering::SeqCst);
    assert!(r.is_err());
    assert_eq!(seen.load(Ordering::SeqCst), 1, "the removal was announced");

    // Writes run a sweep every 16 writes: 31 writes (29 of entries that then expire), and the
    // 32nd runs the sweep, which removes expired entries, then meets key 13, whose `Eq` panics.
    cache.insert(Colliding(13), Bomb(13));
    for k in 100..129 {
        cache.insert_with_ttl(Colliding(k), Bomb(k), Duration::from_secs(1));
    }
    clock.advance(Duration::from_secs(2));
    EQ_ARMED.store(true, Ordering::SeqCst);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cache.insert(Colliding(200), Bomb(200))
    }));
    EQ_ARMED.store(false, Ordering::SeqCst);
    assert!(r.is_err());
    let stats = cache.stats();
    assert!(stats.sweep_expired > 0, "{stats:?}");
    assert_eq!(
        seen.load(Ordering::SeqCst) as u64,
        stats.removals(),
        "every removal counted was announced"
    );
    cache.validate().unwrap();
}
