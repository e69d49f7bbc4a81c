//! The blocking front door: the same guarantees with threads. Coordination uses channels; the
//! only timing is the lease in the takeover test, whose outcome does not depend on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use aside::{AsideCache, LoadError, MockClock};

type Cache = AsideCache<u32, String>;

fn until(mut cond: impl FnMut() -> bool) {
    for _ in 0..1_000_000 {
        if cond() {
            return;
        }
        thread::yield_now();
    }
    panic!("condition never held");
}

#[test]
fn threads_share_one_load() {
    let cache: Cache = AsideCache::builder().build().unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let (release, gate) = mpsc::channel::<()>();
    let gate = Arc::new(std::sync::Mutex::new(gate));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (cache, runs, gate) = (cache.clone(), runs.clone(), gate.clone());
            thread::spawn(move || {
                cache.get_with_blocking(1, || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    gate.lock().unwrap().recv().unwrap();
                    "v".to_string()
                })
            })
        })
        .collect();
    until(|| cache.load_stats().coalesced == 7);
    release.send(()).unwrap();
    for t in threads {
        assert_eq!(t.join().unwrap().unwrap(), "v");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(cache.in_flight(), 0);
}

#[test]
fn panic_in_a_blocking_loader_releases_waiters() {
    let cache: Cache = AsideCache::builder().build().unwrap();
    let (release, gate) = mpsc::channel::<()>();
    let leader = {
        let cache = cache.clone();
        thread::spawn(move || {
            cache.get_with_blocking(1, move || {
                gate.recv().unwrap();
                panic!("loader bug")
            })
        })
    };
    until(|| cache.in_flight() == 1);
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let cache = cache.clone();
            thread::spawn(move || cache.get_with_blocking(1, || "x".to_string()))
        })
        .collect();
    until(|| cache.load_stats().coalesced == 4);
    release.send(()).unwrap();
    assert!(leader.join().is_err(), "the leader's own call panics");
    for w in waiters {
        assert!(matches!(w.join().unwrap(), Err(LoadError::Panicked)));
    }
    assert_eq!(cache.in_flight(), 0);
    assert_eq!(
        cache.get_with_blocking(1, || "again".into()).unwrap(),
        "again"
    );
    cache.validate().unwrap();
}

#[test]
fn blocking_reentrancy_fails_fast() {
    let cache: Cache = AsideCache::builder().build().unwrap();
    let inner = cache.clone();
    let v = cache.get_with_blocking(1, || {
        assert!(matches!(
            inner.get_with_blocking(1, || "never".into()),
            Err(LoadError::Reentrant)
        ));
        assert_eq!(inner.get_with_blocking(2, || "two".into()).unwrap(), "two");
        "one".to_string()
    });
    assert_eq!(v.unwrap(), "one");
}

#[test]
fn blocking_invalidate_during_load_discards_the_value() {
    let cache: Cache = AsideCache::builder().build().unwrap();
    let (loaded, read) = mpsc::channel::<()>();
    let (release, gate) = mpsc::channel::<()>();
    let reader = {
        let cache = cache.clone();
        thread::spawn(move || {
            cache.get_with_blocking(1, move || {
                loaded.send(()).unwrap();
                gate.recv().unwrap();
                "old".to_string()
            })
        })
    };
    read.recv().unwrap();
    cache.invalidate(&1);
    release.send(()).unwrap();
    assert_eq!(reader.join().unwrap().unwrap(), "old");
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.load_stats().discarded, 1);
}

#[test]
fn blocking_waiter_takes_over_a_stalled_load() {
    let cache: Cache = AsideCache::builder()
        .lease(Duration::from_millis(20))
        .build()
        .unwrap();
    let (loaded, read) = mpsc::channel::<()>();
    let (release, gate) = mpsc::channel::<()>();
    let stalled = {
        let cache = cache.clone();
        thread::spawn(move || {
            cache.get_with_blocking(1, move || {
                loaded.send(()).unwrap();
                gate.recv().unwrap();
                "late".to_string()
            })
        })
    };
    read.recv().unwrap();
    assert_eq!(
        cache.get_with_blocking(1, || "fresh".into()).unwrap(),
        "fresh"
    );
    release.send(()).unwrap();
    assert_eq!(stalled.join().unwrap().unwrap(), "late");
    assert_eq!(
        cache.get(&1).as_deref(),
        Some("fresh"),
        "the stalled load did not overwrite"
    );
    assert_eq!(cache.in_flight(), 0);
}

#[test]
fn blocking_errors_are_shared_and_not_cached() {
    let cache: Cache = AsideCache::builder().build().unwrap();
    let e = cache.try_get_with_blocking(1, || Err::<String, _>("down"));
    assert!(matches!(e, Err(LoadError::Loader(ref s)) if **s == "down"));
    assert_eq!(cache.len(), 0);
    assert_eq!(
        cache
            .try_get_with_blocking(1, || Ok::<_, &str>("up".into()))
            .unwrap(),
        "up"
    );
}

#[test]
fn blocking_eager_refresh_runs_in_the_caller() {
    let clock = MockClock::new();
    let cache: Cache = AsideCache::builder()
        .time_to_live(Duration::from_secs(10))
        .refresh_after(0.5)
        .no_xfetch()
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(cache.get_with_blocking(1, || "v1".into()).unwrap(), "v1");
    clock.advance(Duration::from_secs(4));
    assert_eq!(cache.get_with_blocking(1, || "v2".into()).unwrap(), "v1");
    clock.advance(Duration::from_secs(1)); // half the TTL: refresh now
    assert_eq!(cache.get_with_blocking(1, || "v2".into()).unwrap(), "v2");
    assert_eq!(cache.load_stats().early_refreshes, 1);
    assert_eq!(cache.cache_stats().misses, 1);
}

#[test]
fn front_door_configuration_errors_name_the_field() {
    let b = || AsideCache::<u32, u32>::builder();
    assert_eq!(
        b().xfetch_beta(0.0).build().unwrap_err().field(),
        "xfetch_beta"
    );
    assert_eq!(
        b().xfetch_beta(f64::NAN).build().unwrap_err().field(),
        "xfetch_beta"
    );
    assert_eq!(
        b().refresh_after(0.0).build().unwrap_err().field(),
        "refresh_after"
    );
    assert_eq!(
        b().lease(Duration::ZERO).build().unwrap_err().field(),
        "lease"
    );
    assert_eq!(
        b().load_timeout(Duration::ZERO)
            .build()
            .unwrap_err()
            .field(),
        "load_timeout"
    );
    let fs = b().fail_safe(
        aside::FailSafe::new(Duration::from_secs(1)).retry_interval(Duration::from_secs(1)),
    );
    assert_eq!(fs.build().unwrap_err().field(), "fail_safe");
    assert_eq!(b().shards(3).build().unwrap_err().field(), "shards");
    let both = b()
        .time_to_live(Duration::from_secs(1))
        .time_to_idle(Duration::from_secs(1));
    assert_eq!(both.build().unwrap_err().field(), "time_to_idle");
}

#[test]
fn sliding_sessions_stay_while_used() {
    let clock = MockClock::new();
    let sessions: Cache = AsideCache::builder()
        .time_to_idle(Duration::from_secs(30))
        .clock(clock.clone())
        .build()
        .unwrap();
    sessions.put(1, "alice".into());
    for _ in 0..10 {
        clock.advance(Duration::from_secs(20));
        assert_eq!(sessions.get(&1).as_deref(), Some("alice"));
    }
    clock.advance(Duration::from_secs(30));
    assert_eq!(sessions.get(&1), None);
}
