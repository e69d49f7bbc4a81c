//! The async front door's guarantees, one test each. Time-dependent tests run on tokio's
//! paused clock (`start_paused`) and the cache's `MockClock`; coordination uses semaphores, so
//! no outcome depends on real sleeps.
#![cfg(feature = "async")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aside::{AsideCache, LeaseExpiry, LoadError, MockClock, RefreshMode};
use tokio::sync::Semaphore;

type Cache = AsideCache<u32, String>;

fn cache() -> Cache {
    AsideCache::builder().seed(1).build().unwrap()
}

#[path = "common/until.rs"]
mod wait;
use wait::until;

/// Awaits a task that must finish well within the default 5 s lease: waiters are woken, not
/// rescued by their lease running out.
async fn prompt<T>(task: tokio::task::JoinHandle<T>) -> Result<T, tokio::task::JoinError> {
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("a waiter was not woken promptly")
}

/// A boxed load, as the gated loaders return it.
type Load = std::pin::Pin<Box<dyn Future<Output = Result<Option<String>, String>> + Send>>;

/// A loader that counts its runs and waits for a permit before returning `value`.
fn gated(
    gate: &Arc<Semaphore>,
    runs: &Arc<AtomicUsize>,
    value: Result<Option<String>, String>,
) -> impl FnOnce() -> Load + use<> {
    let (gate, runs) = (gate.clone(), runs.clone());
    move || {
        Box::pin(async move {
            runs.fetch_add(1, Ordering::SeqCst);
            gate.acquire().await.unwrap().forget();
            value
        })
    }
}

#[tokio::test]
async fn hundred_callers_share_one_load() {
    let cache = cache();
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (cache, load) = (cache.clone(), gated(&gate, &runs, Ok(Some("v".into()))));
            tokio::spawn(async move { cache.get_or_load(1, load).await })
        })
        .collect();
    until(|| cache.load_stats().coalesced == 99).await;
    assert_eq!(cache.in_flight(), 1);
    gate.add_permits(1);
    for t in tasks {
        let v = prompt(t).await.unwrap().unwrap();
        assert_eq!(v.as_deref(), Some("v"));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(cache.load_stats().loads, 1);
    assert_eq!(cache.in_flight(), 0);
    assert_eq!(cache.get(&1).as_deref(), Some("v"));
}

#[tokio::test]
async fn loader_error_reaches_every_waiter_and_nothing_is_cached() {
    let cache = cache();
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (cache, load) = (cache.clone(), gated(&gate, &runs, Err("db down".into())));
            tokio::spawn(async move { cache.get_or_load(1, load).await })
        })
        .collect();
    until(|| cache.load_stats().coalesced == 9).await;
    gate.add_permits(1);
    let mut errors = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            Err(LoadError::Loader(e)) => errors.push(e),
            other => panic!("expected the loader's error, got {other:?}"),
        }
    }
    assert!(
        errors
            .iter()
            .all(|e| Arc::ptr_eq(e, &errors[0]) && **e == "db down")
    );
    assert_eq!(cache.len(), 0);
    assert_eq!(cache.in_flight(), 0);
    assert_eq!(cache.load_stats().load_errors, 1);
    // The next call loads again.
    let v = cache
        .get_or_load(1, || async { Ok::<_, String>(Some("ok".into())) })
        .await;
    assert_eq!(v.unwrap().as_deref(), Some("ok"));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn loader_panic_releases_all_hundred_waiters() {
    let cache = cache();
    let gate = Arc::new(Semaphore::new(0));
    let leader = {
        let (cache, gate) = (cache.clone(), gate.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(1, move || async move {
                    gate.acquire().await.unwrap().forget();
                    panic!("loader bug");
                    #[allow(unreachable_code)]
                    Ok::<Option<String>, String>(None)
                })
                .await
        })
    };
    until(|| cache.in_flight() == 1).await;
    let waiters: Vec<_> = (0..100)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load(1, || async { Ok::<_, String>(Some("x".into())) })
                    .await
            })
        })
        .collect();
    until(|| cache.load_stats().coalesced == 100).await;
    gate.add_permits(1);
    assert!(leader.await.unwrap_err().is_panic());
    for w in waiters {
        assert!(matches!(prompt(w).await.unwrap(), Err(LoadError::Panicked)));
    }
    assert_eq!(cache.in_flight(), 0);
    assert_eq!(cache.load_stats().panics, 1);
    let v = cache
        .get_or_load(1, || async { Ok::<_, String>(Some("again".into())) })
        .await;
    assert_eq!(v.unwrap().as_deref(), Some("again"));
    cache.validate().unwrap();
}

#[tokio::test]
async fn cancelled_leader_is_taken_over_by_a_waiter() {
    let cache = cache();
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let leader = {
        let (cache, load) = (
            cache.clone(),
            gated(&gate, &runs, Ok(Some("leader".into()))),
        );
        tokio::spawn(async move { cache.get_or_load(1, load).await })
    };
    until(|| runs.load(Ordering::SeqCst) == 1).await;
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load(1, || async { Ok::<_, String>(Some("waiter".into())) })
                .await
        })
    };
    until(|| cache.load_stats().coalesced == 1).await;
    leader.abort(); // drops the leader's future mid-load
    assert!(leader.await.unwrap_err().is_cancelled());
    assert_eq!(
        prompt(waiter).await.unwrap().unwrap().as_deref(),
        Some("waiter")
    );
    assert_eq!(cache.in_flight(), 0);
    assert_eq!(cache.get(&1).as_deref(), Some("waiter"));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_gives_up_does_not_cancel_the_load() {
    let cache = cache();
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let leader = {
        let (cache, load) = (cache.clone(), gated(&gate, &runs, Ok(Some("v".into()))));
        tokio::spawn(async move { cache.get_or_load(1, load).await })
    };
    until(|| runs.load(Ordering::SeqCst) == 1).await;
    let impatient = tokio::time::timeout(
        Duration::from_millis(10),
        cache.get_or_load(1, || async { Ok::<_, String>(Some("no".into())) }),
    )
    .await;
    assert!(impatient.is_err(), "the waiter timed out");
    assert_eq!(cache.in_flight(), 1, "the shared load is still registered");
    gate.add_permits(1);
    assert_eq!(leader.await.unwrap().unwrap().as_deref(), Some("v"));
    assert_eq!(cache.in_flight(), 0);
    assert_eq!(cache.get(&1).as_deref(), Some("v"));
}

#[tokio::test]
async fn reentrant_load_of_the_same_key_fails_fast_other_keys_work() {
    let cache = cache();
    let inner = cache.clone();
    let result = cache
        .get_or_load(1, move || async move {
            let same = inner
                .get_or_load(1, || async { Ok::<_, String>(Some("never".into())) })
                .await;
            assert!(matches!(same, Err(LoadError::Reentrant)));
            let other = inner
                .get_or_load(2, || async { Ok::<_, String>(Some("two".into())) })
                .await;
            assert_eq!(other.unwrap().as_deref(), Some("two"));
            Ok::<_, String>(Some("one".into()))
        })
        .await;
    assert_eq!(result.unwrap().as_deref(), Some("one"));
    assert_eq!(cache.in_flight(), 0);
}

#[tokio::test]
async fn a_slow_loader_never_delays_other_keys() {
    let cache: Cache = AsideCache::builder().shards(1).build().unwrap(); // same shard
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let slow = {
        let (cache, load) = (cache.clone(), gated(&gate, &runs, Ok(Some("slow".into()))));
        tokio::spawn(async move { cache.get_or_load(1, load).await })
    };
    until(|| runs.load(Ordering::SeqCst) == 1).await;
    for k in 2..50 {
        let v = cache
            .get_or_load(
                k,
                move || async move { Ok::<_, String>(Some(k.to_string())) },
            )
            .await;
        assert_eq!(v.unwrap(), Some(k.to_string()));
        cache.put(k + 100, "p".into());
        assert_eq!(cache.get(&(k + 100)).as_deref(), Some("p"));
    }
    assert!(!slow.is_finished());
    gate.add_permits(1);
    assert_eq!(slow.await.unwrap().unwrap().as_deref(), Some("slow"));
}

#[tokio::test]
async fn invalidate_during_a_load_keeps_the_stale_value_out() {
    let cache = cache();
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let reader = {
        let (cache, load) = (cache.clone(), gated(&gate, &runs, Ok(Some("old".into()))));
        tokio::spawn(async move { cache.get_or_load(1, load).await })
    };
    until(|| runs.load(Ordering::SeqCst) == 1).await; // the loader has read "old"
    cache.invalidate(&1); // the database was updated meanwhile
    gate.add_permits(1);
    assert_eq!(reader.await.unwrap().unwrap().as_deref(), Some("old"));
    assert_eq!(cache.get(&1), None, "the stale value was not installed");
    assert_eq!(cache.load_stats().discarded, 1);
    assert_eq!(cache.in_flight(), 0);
}

#[tokio::test]
async fn a_caller_after_invalidate_never_joins_the_stale_load() {
    let cache = cache();
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let early = {
        let (cache, load) = (cache.clone(), gated(&gate, &runs, Ok(Some("v1".into()))));
        tokio::spawn(async move { cache.get_or_load(1, load).await })
    };
    until(|| runs.load(Ordering::SeqCst) == 1).await; // the first load has read v1
    cache.invalidate(&1); // the database now holds v2
    // A caller that starts after `invalidate` returned must see v2, not wait for v1.
    let fresh = Arc::new(AtomicUsize::new(0));
    let late = {
        let (cache, load) = (cache.clone(), gated(&gate, &fresh, Ok(Some("v2".into()))));
        tokio::spawn(async move { cache.get_or_load(1, load).await })
    };
    // Before the fix the late caller joined the stale flight and this never held.
    until(|| fresh.load(Ordering::SeqCst) == 1).await;
    gate.add_permits(2);
    assert_eq!(prompt(late).await.unwrap().unwrap().as_deref(), Some("v2"));
    assert_eq!(prompt(early).await.unwrap().unwrap().as_deref(), Some("v1"));
    assert_eq!(
        cache.get(&1).as_deref(),
        Some("v2"),
        "only the fresh load installed"
    );
    assert_eq!(cache.load_stats().loads, 2);
    assert_eq!(cache.in_flight(), 0);
}

#[tokio::test]
async fn put_during_a_load_wins_over_the_load() {
    let cache = cache();
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let reader = {
        let (cache, load) = (cache.clone(), gated(&gate, &runs, Ok(Some("old".into()))));
        tokio::spawn(async move { cache.get_or_load(1, load).await })
    };
    until(|| runs.load(Ordering::SeqCst) == 1).await;
    cache.put(1, "new".into()); // write-through
    gate.add_permits(1);
    assert_eq!(reader.await.unwrap().unwrap().as_deref(), Some("old"));
    assert_eq!(cache.get(&1).as_deref(), Some("new"));
}

#[tokio::test(start_paused = true)]
async fn stalled_leader_is_taken_over_after_the_lease() {
    let cache: Cache = AsideCache::builder()
        .lease(Duration::from_millis(100))
        .build()
        .unwrap();
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let stalled = {
        let (cache, load) = (cache.clone(), gated(&gate, &runs, Ok(Some("late".into()))));
        tokio::spawn(async move { cache.get_or_load(1, load).await })
    };
    until(|| runs.load(Ordering::SeqCst) == 1).await;
    let v = cache
        .get_or_load(1, || async { Ok::<_, String>(Some("fresh".into())) })
        .await;
    assert_eq!(v.unwrap().as_deref(), Some("fresh"));
    assert_eq!(cache.load_stats().timeouts, 1, "one lease expired");
    // The stalled load finishing later does not overwrite the newer value.
    gate.add_permits(1);
    assert_eq!(stalled.await.unwrap().unwrap().as_deref(), Some("late"));
    assert_eq!(cache.get(&1).as_deref(), Some("fresh"));
    assert_eq!(cache.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn lease_expiry_can_load_independently_without_installing() {
    let cache: Cache = AsideCache::builder()
        .lease(Duration::from_millis(100))
        .on_lease_expiry(LeaseExpiry::LoadIndependently)
        .build()
        .unwrap();
    let (gate, runs) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicUsize::new(0)));
    let stalled = {
        let (cache, load) = (
            cache.clone(),
            gated(&gate, &runs, Ok(Some("leader".into()))),
        );
        tokio::spawn(async move { cache.get_or_load(1, load).await })
    };
    until(|| runs.load(Ordering::SeqCst) == 1).await;
    let v = cache
        .get_or_load(1, || async { Ok::<_, String>(Some("own".into())) })
        .await;
    assert_eq!(v.unwrap().as_deref(), Some("own"));
    assert_eq!(cache.get(&1), None, "an independent load installs nothing");
    gate.add_permits(1);
    stalled.await.unwrap().unwrap();
    assert_eq!(cache.get(&1).as_deref(), Some("leader"));
}

#[tokio::test(start_paused = true)]
async fn hard_load_timeout_fails_leader_and_waiters() {
    let cache: Cache = AsideCache::builder()
        .load_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let slow = || async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok::<_, String>(Some("late".into()))
    };
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            until(|| cache.in_flight() == 1).await;
            cache.get_or_load(1, slow).await
        })
    };
    let leader = cache.get_or_load(1, slow).await;
    assert!(matches!(leader, Err(LoadError::Timeout)));
    assert!(matches!(waiter.await.unwrap(), Err(LoadError::Timeout)));
    assert_eq!(cache.in_flight(), 0);
    assert_eq!(cache.len(), 0);
}

#[tokio::test]
async fn negative_caching_remembers_not_found() {
    let clock = MockClock::new();
    let cache: Cache = AsideCache::builder()
        .negative_ttl(Duration::from_secs(30))
        .clock(clock.clone())
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let lookup = || {
        let runs = runs.clone();
        move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Ok::<Option<String>, String>(None)
        }
    };
    assert_eq!(cache.get_or_load(1, lookup()).await.unwrap(), None);
    assert_eq!(cache.get_or_load(1, lookup()).await.unwrap(), None);
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(cache.load_stats().negative_hits, 1);
    clock.advance(Duration::from_secs(30));
    assert_eq!(cache.get_or_load(1, lookup()).await.unwrap(), None);
    assert_eq!(runs.load(Ordering::SeqCst), 2);

    // Without a negative TTL, "not found" is not cached.
    let plain = self::cache();
    plain.get_or_load(1, lookup()).await.unwrap();
    plain.get_or_load(1, lookup()).await.unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn fail_safe_serves_stale_and_throttles_retries() {
    let clock = MockClock::new();
    let cache: Cache = AsideCache::builder()
        .time_to_live(Duration::from_secs(10))
        .fail_safe(
            aside::FailSafe::new(Duration::from_secs(60)).retry_interval(Duration::from_secs(5)),
        )
        .no_xfetch()
        .clock(clock.clone())
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let load = |r: Result<&'static str, &'static str>| {
        let runs = runs.clone();
        move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            r.map(|v| Some(v.to_string()))
        }
    };
    assert_eq!(
        cache
            .get_or_load(1, load(Ok("v1")))
            .await
            .unwrap()
            .as_deref(),
        Some("v1")
    );
    clock.advance(Duration::from_secs(11)); // expired, inside the grace period
    let v = cache.get_or_load(1, load(Err("db down"))).await.unwrap();
    assert_eq!(v.as_deref(), Some("v1"), "stale value served");
    let v = cache.get_or_load(1, load(Err("db down"))).await.unwrap();
    assert_eq!(v.as_deref(), Some("v1"));
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the retry was throttled");
    assert_eq!(cache.load_stats().stale_served, 2);
    clock.advance(Duration::from_secs(5));
    let v = cache.get_or_load(1, load(Ok("v2"))).await.unwrap();
    assert_eq!(v.as_deref(), Some("v2"));
    // Past the grace period the hard limit holds: errors surface.
    clock.advance(Duration::from_secs(100));
    let e = cache.get_or_load(1, load(Err("db down"))).await;
    assert!(matches!(e, Err(LoadError::Loader(_))));
}

#[tokio::test(start_paused = true)]
async fn soft_timeout_serves_stale_while_the_reload_finishes_in_background() {
    let clock = MockClock::new();
    let cache: Cache = AsideCache::builder()
        .time_to_live(Duration::from_secs(10))
        .fail_safe(
            aside::FailSafe::new(Duration::from_secs(60)).retry_interval(Duration::from_secs(5)),
        )
        .soft_timeout(Duration::from_millis(50))
        .no_xfetch()
        .clock(clock.clone())
        .build()
        .unwrap();
    cache
        .get_or_load(1, || async { Ok::<_, String>(Some("v1".into())) })
        .await
        .unwrap();
    clock.advance(Duration::from_secs(11));
    let v = cache
        .get_or_load(1, || async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, String>(Some("v2".into()))
        })
        .await
        .unwrap();
    assert_eq!(
        v.as_deref(),
        Some("v1"),
        "served stale after the soft timeout"
    );
    assert_eq!(cache.in_flight(), 1, "the reload goes on");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(cache.in_flight(), 0);
    assert_eq!(cache.get(&1).as_deref(), Some("v2"));
}

/// A hot key read every 100 ms for 100 s (ten TTLs): background refresh ahead of expiry means
/// no reader ever misses after the first load.
#[tokio::test]
async fn hot_key_never_misses_at_expiry_with_background_refresh() {
    let clock = MockClock::new();
    let cache: Cache = AsideCache::builder()
        .time_to_live(Duration::from_secs(10))
        .refresh_after(0.8)
        .no_xfetch()
        .clock(clock.clone())
        .build()
        .unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    for _ in 0..1000 {
        let runs = runs.clone();
        let v = cache
            .get_or_load(1, move || async move {
                let n = runs.fetch_add(1, Ordering::SeqCst);
                Ok::<_, String>(Some(format!("v{n}")))
            })
            .await;
        assert!(v.unwrap().is_some());
        tokio::task::yield_now().await; // let a background refresh run
        clock.advance(Duration::from_millis(100));
    }
    assert_eq!(cache.cache_stats().misses, 1, "only the cold load missed");
    let refreshes = cache.load_stats().early_refreshes;
    assert!(
        (10..=13).contains(&refreshes),
        "one refresh per 8 s: {refreshes}"
    );
}

/// XFetch with the caller refreshing: the recompute time (`delta`, here 1 s on the mock clock)
/// makes refreshes start early enough that the key never expires under steady reads.
#[tokio::test]
async fn hot_key_never_misses_at_expiry_with_xfetch() {
    let clock = MockClock::new();
    let cache: Cache = AsideCache::builder()
        .time_to_live(Duration::from_secs(10))
        .xfetch_beta(2.0)
        .refresh_mode(RefreshMode::Caller)
        .clock(clock.clone())
        .build()
        .unwrap();
    for _ in 0..1000 {
        let clock2 = clock.clone();
        cache
            .get_or_load(1, move || async move {
                clock2.advance(Duration::from_secs(1)); // the recompute takes 1 s
                Ok::<_, String>(Some("v".to_string()))
            })
            .await
            .unwrap();
        clock.advance(Duration::from_millis(100));
    }
    let stats = cache.load_stats();
    assert_eq!(cache.cache_stats().misses, 1, "only the cold load missed");
    assert!(stats.early_refreshes >= 10, "{stats:?}");
}

#[tokio::test]
async fn try_get_with_and_get_with() {
    let cache = cache();
    let v = cache
        .try_get_with(1, || async { Ok::<_, String>("a".to_string()) })
        .await;
    assert_eq!(v.unwrap(), "a");
    let v = cache.get_with(2, || async { "b".to_string() }).await;
    assert_eq!(v.unwrap(), "b");
    let e = cache
        .try_get_with(3, || async { Err::<String, _>("nope".to_string()) })
        .await;
    assert!(matches!(e, Err(LoadError::Loader(ref s)) if **s == "nope"));
    assert_eq!(cache.load_stats().latency.count, 3);
}
