//! One regression test per defect of the front door found by trying it as a user would, with
//! faults injected at the exact step that matters (issue #19). Each fails on the code before
//! its fix.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aside::{AsideCache, Clock, MockClock};
use parking_lot::Mutex;

type Hook = Box<dyn FnOnce() + Send>;

/// A [`MockClock`] that runs a hook on a chosen future read: the way to land an `invalidate`
/// between two steps of a read without threads or sleeps.
#[derive(Clone, Default)]
struct HookClock {
    time: MockClock,
    /// Reads left before the hook runs, and the hook.
    armed: Arc<Mutex<Option<(usize, Hook)>>>,
}

impl HookClock {
    /// Runs `hook` during the `nth` read from now (1 = the next one), before it returns.
    fn arm(&self, nth: usize, hook: impl FnOnce() + Send + 'static) {
        *self.armed.lock() = Some((nth, Box::new(hook)));
    }

    fn fired(&self) -> bool {
        self.armed.lock().is_none()
    }
}

impl Clock for HookClock {
    fn now_nanos(&self) -> u64 {
        let due = {
            let mut armed = self.armed.lock();
            match armed.as_mut() {
                Some((n, _)) if *n > 1 => {
                    *n -= 1;
                    None
                }
                Some(_) => armed.take().map(|(_, hook)| hook),
                None => None,
            }
        };
        if let Some(hook) = due {
            hook(); // outside the clock's own lock
        }
        self.time.now_nanos()
    }
}

fn fail_safe_cache(clock: &HookClock) -> AsideCache<u64, String> {
    AsideCache::builder()
        .time_to_live(Duration::from_secs(10))
        .fail_safe(
            aside::FailSafe::new(Duration::from_secs(3600)).retry_interval(Duration::from_secs(60)),
        )
        .no_xfetch()
        .clock(clock.clone())
        .build()
        .unwrap()
}

/// A read's lookup reads the clock twice: the engine's expiry check (under the shard's read
/// lock, where a hook must not write to the cache), then the front door's freshness check.
/// Arming the hook for the second read lands it between the lookup and the join.
const FRESHNESS_CHECK: usize = 2;

/// Fail-safe resurrected an invalidated value: a reader took the stale slot in its lookup and
/// then joined the registry; an `invalidate` landing between the two found no load in flight
/// to mark, so when the reload failed the reader stored the old value again, and reads that
/// began after `invalidate` returned got it, without calling the loader, for the retry
/// interval (and for the whole grace period while reloads kept failing).
#[test]
fn an_invalidate_between_lookup_and_join_is_not_undone_by_fail_safe() {
    let clock = HookClock::default();
    let cache = fail_safe_cache(&clock);
    let v1 = cache.get_or_load_blocking(1, || Ok::<_, String>(Some("v1".to_string())));
    assert_eq!(v1.unwrap().as_deref(), Some("v1"));
    clock.time.advance(Duration::from_secs(11)); // stale, inside the grace period

    let writer = cache.clone();
    clock.arm(FRESHNESS_CHECK, move || writer.invalidate(&1));
    // The read began before the invalidation returned: the stale value is a linearizable
    // answer for it. What matters is what the reads after it see.
    let _ = cache.get_or_load_blocking(1, || Err::<Option<String>, _>("db down".to_string()));
    assert!(
        clock.fired(),
        "the invalidation did not land inside the read"
    );

    assert_eq!(cache.get(&1), None, "the invalidated value is back");
    let loads = AtomicUsize::new(0);
    let v2 = cache.get_or_load_blocking(1, || {
        loads.fetch_add(1, Ordering::SeqCst);
        Ok::<_, String>(Some("v2".to_string()))
    });
    assert_eq!(v2.unwrap().as_deref(), Some("v2"));
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    cache.validate().unwrap();
}

/// The same window on the async path and through a batch load.
#[cfg(feature = "async")]
#[tokio::test]
async fn the_async_and_batch_paths_do_not_undo_an_invalidate_either() {
    use std::collections::HashMap;

    let clock = HookClock::default();
    let cache = fail_safe_cache(&clock);
    for key in [1, 2] {
        let v = cache
            .get_or_load(key, || async { Ok::<_, String>(Some("v1".to_string())) })
            .await;
        assert_eq!(v.unwrap().as_deref(), Some("v1"));
    }
    clock.time.advance(Duration::from_secs(11));

    let writer = cache.clone();
    clock.arm(FRESHNESS_CHECK, move || writer.invalidate(&1));
    let _ = cache
        .get_or_load(1, || async {
            Err::<Option<String>, _>("db down".to_string())
        })
        .await;
    assert!(clock.fired());
    assert_eq!(cache.get(&1), None, "async: the invalidated value is back");

    let writer = cache.clone();
    clock.arm(FRESHNESS_CHECK, move || writer.invalidate(&2));
    let _ = cache
        .get_or_load_many([2], |_| async {
            Err::<HashMap<u64, String>, _>("db down".to_string())
        })
        .await;
    assert!(clock.fired());
    assert_eq!(cache.get(&2), None, "batch: the invalidated value is back");
    cache.validate().unwrap();
}

/// With `LeaseExpiry::LoadIndependently`, the waiters' own loads ignored `load_timeout`: with
/// a loader that never completes, the leader got `Timeout` but every waiter hung forever.
#[cfg(feature = "async")]
#[tokio::test(start_paused = true)]
async fn load_independently_is_bounded_by_the_load_timeout() {
    let cache: AsideCache<u64, String> = AsideCache::builder()
        .lease(Duration::from_millis(100))
        .on_lease_expiry(aside::LeaseExpiry::LoadIndependently)
        .load_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let never = || std::future::pending::<Result<Option<String>, String>>();
    let started = tokio::time::Instant::now();
    let leader = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get_or_load(1, never).await }
    });
    tokio::task::yield_now().await; // the leader registers its flight first
    let waiter = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get_or_load(1, never).await }
    });
    // Paused time: the runtime jumps to each timer, so "hung forever" would be a deadline
    // miss here, not a slow test.
    let outcomes = tokio::time::timeout(Duration::from_secs(3600), async {
        (leader.await.unwrap(), waiter.await.unwrap())
    })
    .await
    .expect("a waiter's own load outlived the load timeout");
    assert!(
        matches!(outcomes.0, Err(aside::LoadError::Timeout)),
        "{:?}",
        outcomes.0
    );
    assert!(
        matches!(outcomes.1, Err(aside::LoadError::Timeout)),
        "{:?}",
        outcomes.1
    );
    // The waiter gave up on the lease at 100 ms and then on its own load 300 ms later.
    assert!(started.elapsed() <= Duration::from_millis(400));
    assert_eq!(cache.in_flight(), 0);
}

/// The `weigher` docs promised values up to "the whole capacity", but the limit holds per
/// shard (`max_capacity / shards`). The docs now say so; this pins the behaviour they state.
#[test]
fn a_value_heavier_than_its_shards_share_is_served_but_not_cached() {
    let door = |shards| {
        AsideCache::<u64, Vec<u8>>::builder()
            .max_capacity(100)
            .shards(shards)
            .weigher(|_: &u64, v: &Vec<u8>| v.len() as u32)
            .build()
            .unwrap()
    };
    let load = || Ok::<_, ()>(Some(vec![0u8; 30]));
    let four = door(4); // 25 per shard
    let v = four.get_or_load_blocking(1, load).unwrap();
    assert_eq!(v.map(|v| v.len()), Some(30), "served to its caller");
    assert_eq!((four.len(), four.weighted_size()), (0, 0), "not cached");
    let one = door(1);
    one.get_or_load_blocking(1, load).unwrap();
    assert_eq!((one.len(), one.weighted_size()), (1, 30));
    four.validate().unwrap();
    one.validate().unwrap();
}

/// Write-behind with a TTL (found by the consistency harness): a value written behind that
/// expired (or was evicted) before its flush was reloaded from the source, which still held
/// the older row, and cached for a whole TTL. A leader now takes the dirty value instead of
/// loading, in a plain miss, an early refresh and a batch alike.
#[cfg(feature = "async")]
#[tokio::test(start_paused = true)]
async fn a_value_written_behind_is_served_until_its_flush_even_after_it_expires() {
    use std::collections::HashMap;

    let clock = MockClock::new();
    let cache: AsideCache<u64, String> = AsideCache::builder()
        .time_to_live(Duration::from_secs(10))
        .refresh_after(0.5)
        .clock(clock.clone())
        .build()
        .unwrap();
    // The source of truth still holds v1; the sink's flush never completes in this test.
    let sink = |_batch: Vec<(u64, String)>| std::future::pending::<Result<(), String>>();
    let behind = aside::WriteBehind::builder(cache.clone(), sink)
        .interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let source = || async { Ok::<_, String>(Some("v1".to_string())) };
    for key in [1, 2, 3] {
        behind.write(key, "v2".to_string()).await.unwrap();
    }
    clock.advance(Duration::from_secs(6)); // past refresh_after: a read refreshes early
    let v = cache.get_or_load(1, source).await.unwrap();
    assert_eq!(v.as_deref(), Some("v2"));
    clock.advance(Duration::from_secs(5)); // expired
    let v = cache.get_or_load(2, source).await.unwrap();
    assert_eq!(
        v.as_deref(),
        Some("v2"),
        "a miss loaded the row the flush has not written"
    );
    let many = cache
        .get_or_load_many([3], |_| async {
            Ok::<_, String>(HashMap::from([(3, "v1".to_string())]))
        })
        .await
        .unwrap();
    assert_eq!(many[&3], "v2");
    assert_eq!(
        cache.get(&1).as_deref(),
        Some("v2"),
        "the refresh installed the old row"
    );
    assert_eq!(cache.load_stats().loads, 0, "the source was never asked");
    cache.validate().unwrap();
}
