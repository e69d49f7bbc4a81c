//! The Redis L2 tier against a real `redis-server`: every test starts its own server on a free
//! loopback port (no persistence, a temporary directory) and kills it on drop. Several tier
//! instances, each with its own L1 and its own connections, stand for several application
//! instances. Coordination uses semaphores and counters; where a real server has to act
//! (pub/sub delivery, reconnection), the test polls with a generous bound and never asserts on
//! a fixed sleep.
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aside::tier::{BreakerState, TierMetrics, TieredCache};
use aside::{AsideCache, LoadError};
use tokio::sync::Semaphore;

#[path = "common/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer;

type Tier = TieredCache<u64, String>;

fn l1() -> AsideCache<u64, String> {
    AsideCache::builder()
        .max_capacity(10_000)
        .time_to_live(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A tier with short timers; the op timeout is generous (1 s) so that a loaded CI machine
/// does not turn a slow reply into a degraded load, except where a test needs it short.
async fn tier(server: &RedisServer) -> Tier {
    tier_with(server, Duration::from_secs(1)).await
}

async fn tier_with(server: &RedisServer, op_timeout: Duration) -> Tier {
    TieredCache::builder(l1(), server.url())
        .key_prefix("test:")
        .l2_ttl(Duration::from_secs(300))
        .lock_lease(Duration::from_secs(3))
        .lock_wait(Duration::from_secs(4))
        .lock_poll(Duration::from_millis(10))
        .op_timeout(op_timeout)
        .breaker(3, Duration::from_millis(300))
        .backplane_ping(Duration::from_millis(200))
        .build()
        .await
        .unwrap()
}

/// A loader that counts its calls and answers `value`.
fn counted(
    calls: &Arc<AtomicUsize>,
    value: &str,
) -> impl FnOnce() -> std::future::Ready<Result<Option<String>, String>> + Send + 'static {
    let (calls, value) = (Arc::clone(calls), value.to_string());
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Some(value)))
    }
}

/// Polls `cond` every 10 ms for at most 10 s.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 10 s: {what}");
}

async fn exists(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(conn)
        .await
        .unwrap()
        == 1
}

fn m(t: &Tier) -> TierMetrics {
    t.metrics()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_l2_and_see_each_others_invalidations() {
    let server = RedisServer::start();
    let (a, b) = (tier(&server).await, tier(&server).await);
    assert!(m(&a).backplane_connected && m(&b).backplane_connected);
    let calls = Arc::new(AtomicUsize::new(0));

    // A loads; B finds it in Redis; both now hold it in their L1.
    let v = a.get_or_load(1, counted(&calls, "v1")).await.unwrap();
    assert_eq!(v.as_deref(), Some("v1"));
    let v = b.get_or_load(1, counted(&calls, "never")).await.unwrap();
    assert_eq!(v.as_deref(), Some("v1"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        (m(&a).l2_misses, m(&a).lock_acquired, m(&a).l2_writes),
        (1, 1, 1)
    );
    assert_eq!((m(&b).l2_hits, m(&b).loads), (1, 0));
    assert_eq!(b.l1().get(&1).as_deref(), Some("v1"));

    // Delete-on-write on A: gone from Redis at once, from B's L1 once the message lands.
    a.invalidate(&1).await;
    assert_eq!(a.l1().get(&1), None);
    let mut raw = server.raw().await;
    assert!(!exists(&mut raw, "test:1").await);
    eventually("B drops key 1", async || b.l1().get(&1).is_none()).await;
    assert_eq!(m(&b).backplane_received, 1);
    eventually("A ignores its own message", async || {
        m(&a).backplane_own == 1
    })
    .await;
    assert_eq!(m(&a).backplane_received, 0);

    // Write-through on B: A's next read gets the new value from Redis, not from a loader.
    b.get_or_load(1, counted(&calls, "v1")).await.unwrap();
    a.get_or_load(1, counted(&calls, "never")).await.unwrap();
    b.put(1, "v2".to_string()).await;
    eventually("A drops its v1", async || a.l1().get(&1).is_none()).await;
    let v = a.get_or_load(1, counted(&calls, "never")).await.unwrap();
    assert_eq!(v.as_deref(), Some("v2"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // get never loads; invalidate_all clears Redis under the prefix and every L1.
    assert_eq!(b.get(&1).await.as_deref(), Some("v2"));
    assert_eq!(b.get(&99).await, None);
    for k in 10..20 {
        a.get_or_load(k, counted(&calls, "x")).await.unwrap();
        b.get_or_load(k, counted(&calls, "never")).await.unwrap();
    }
    redis::cmd("SET")
        .arg("other:1")
        .arg("kept")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    a.invalidate_all().await;
    assert!(a.l1().is_empty());
    eventually("B clears its L1", async || b.l1().is_empty()).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(keys, vec!["other:1".to_string()]);
    assert_eq!(calls.load(Ordering::SeqCst), 12);
    a.l1().validate().unwrap();
    b.l1().validate().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_lets_exactly_one_of_four_instances_load_a_cold_key() {
    let server = RedisServer::start();
    let mut tiers = Vec::new();
    for _ in 0..4 {
        tiers.push(tier(&server).await);
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    // Three callers per instance: 12 callers, 4 lock attempts at most (single flight per
    // process), one load.
    let mut tasks = Vec::new();
    for t in &tiers {
        for _ in 0..3 {
            let (t, calls, gate) = (t.clone(), calls.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                t.get_or_load(7, move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    gate.acquire().await.unwrap().forget();
                    Ok::<_, String>(Some("seven".to_string()))
                })
                .await
            }));
        }
    }
    // Hold the load until the three other instances are waiting on the lock.
    eventually("three instances wait on the lock", async || {
        tiers.iter().map(|t| m(t).lock_waited).sum::<u64>() == 3
    })
    .await;
    gate.add_permits(1);
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().as_deref(), Some("seven"));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one load across four instances"
    );
    let sum = |f: fn(&TierMetrics) -> u64| tiers.iter().map(|t| f(&m(t))).sum::<u64>();
    // A waiter may win the lock right after the holder's install released it; its re-check
    // then finds the value and it does not load.
    assert!((1..=4).contains(&sum(|m| m.lock_acquired)));
    assert_eq!(sum(|m| m.lock_fallback_loads), 0);
    assert_eq!(sum(|m| m.loads), 1);
    assert_eq!(
        sum(|m| m.l2_hits),
        3,
        "the waiters found the holder's value"
    );
    let mut raw = server.raw().await;
    assert!(exists(&mut raw, "test:7").await);
    assert!(
        !exists(&mut raw, "lock:test:7").await,
        "the holder released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_holder_costs_waiters_lock_wait_then_they_load_themselves() {
    let server = RedisServer::start();
    let mut raw = server.raw().await;
    // A holder that died holding the lock for a minute.
    redis::cmd("SET")
        .arg("lock:test:5")
        .arg("dead-instance")
        .arg("PX")
        .arg(60_000)
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    let t = TieredCache::builder(l1(), server.url())
        .key_prefix("test:")
        .lock_wait(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let v = t.get_or_load(5, counted(&calls, "five")).await.unwrap();
    assert_eq!(v.as_deref(), Some("five"));
    assert!(started.elapsed() >= Duration::from_millis(300));
    let mt = m(&t);
    assert_eq!(
        (mt.lock_waited, mt.lock_fallback_loads, mt.loads),
        (1, 1, 1)
    );
    assert!(
        !exists(&mut raw, "test:5").await,
        "a fallback load writes nothing"
    );
    assert_eq!(t.l1().get(&5).as_deref(), Some("five"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_during_a_load_keeps_the_stale_value_out_of_redis_and_l1() {
    let server = RedisServer::start();
    let (a, b) = (tier(&server).await, tier(&server).await);
    let gate = Arc::new(Semaphore::new(0));
    let loading = {
        let (a, gate) = (a.clone(), gate.clone());
        tokio::spawn(async move {
            a.get_or_load(3, move || async move {
                gate.acquire().await.unwrap().forget();
                Ok::<_, String>(Some("read before the write".to_string()))
            })
            .await
        })
    };
    let mut raw = server.raw().await;
    eventually("A holds the lock", async || {
        exists(&mut raw, "lock:test:3").await
    })
    .await;
    b.invalidate(&3).await; // the database changed
    eventually("A hears it", async || m(&a).backplane_received == 1).await;
    gate.add_permits(1);
    let v = loading.await.unwrap().unwrap();
    assert_eq!(v.as_deref(), Some("read before the write")); // its caller still gets it
    assert_eq!(m(&a).lock_lost, 1);
    assert!(!exists(&mut raw, "test:3").await, "not installed in Redis");
    assert_eq!(a.l1().get(&3), None, "not installed in A's L1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_loader_releases_the_lock_and_the_key_loads_again() {
    let server = RedisServer::start();
    let (a, b) = (tier(&server).await, tier(&server).await);
    let panicked = {
        let a = a.clone();
        tokio::spawn(async move {
            a.get_or_load(9, || async {
                panic!("loader bug") as Result<Option<String>, String>
            })
            .await
        })
    };
    assert!(panicked.await.unwrap_err().is_panic());
    let mut raw = server.raw().await;
    eventually("the lock is released", async || {
        !exists(&mut raw, "lock:test:9").await
    })
    .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let v = b.get_or_load(9, counted(&calls, "nine")).await.unwrap();
    assert_eq!(v.as_deref(), Some("nine"));
    assert_eq!((m(&b).lock_waited, m(&b).lock_acquired), (0, 1));
    let v = a.get_or_load(9, counted(&calls, "never")).await.unwrap();
    assert_eq!(v.as_deref(), Some("nine"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A loader error is shared in-process and nothing is written.
    let err = a
        .get_or_load(10, || async {
            Err::<Option<String>, _>("db down".to_string())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::Loader(ref e) if **e == "db down"));
    assert!(!exists(&mut raw, "test:10").await);
    assert!(!exists(&mut raw, "lock:test:10").await);
    a.l1().validate().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_then_restarted_degrades_then_recovers() {
    let mut server = RedisServer::start();
    let (a, b) = (tier(&server).await, tier(&server).await);
    let calls = Arc::new(AtomicUsize::new(0));
    a.get_or_load(1, counted(&calls, "one")).await.unwrap();

    server.kill();
    // Reads keep being answered (L1 hits, then the loader), within the op timeout each.
    for k in 100..110 {
        let started = Instant::now();
        let v = a
            .get_or_load(k, counted(&calls, "from the db"))
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some("from the db"));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "refused at once, no hang"
        );
    }
    assert_eq!(
        a.get_or_load(1, counted(&calls, "x"))
            .await
            .unwrap()
            .as_deref(),
        Some("one")
    );
    let ma = m(&a);
    assert_eq!(ma.degraded_loads, 10);
    assert_eq!(ma.breaker, BreakerState::Open);
    assert!(ma.breaker_opened >= 1 && ma.l2_skipped >= 1, "{ma:?}");
    // Writes do not fail the caller.
    a.invalidate(&1).await;
    a.put(2, "two".to_string()).await;
    eventually("B notices the lost subscription", async || {
        !m(&b).backplane_connected
    })
    .await;

    server.restart();
    // L2 serves again: what A loads, B reads from Redis without loading.
    let mut k = 1000;
    eventually("B gets an L2 hit", async || {
        k += 1;
        let before = calls.load(Ordering::SeqCst);
        a.get_or_load(k, counted(&calls, "fresh")).await.unwrap();
        b.get_or_load(k, counted(&calls, "fresh")).await.unwrap();
        calls.load(Ordering::SeqCst) == before + 1 && m(&a).l2_writes > 0
    })
    .await;
    assert_eq!(m(&a).breaker, BreakerState::Closed);
    // The invalidate and the put made while Redis was down were retried as deletions.
    eventually("the failed writes are retried", async || {
        m(&a).writes_retried == 2
    })
    .await;
    assert_eq!(m(&a).writes_dropped, 0);
    // The backplane resubscribed (clearing B's L1) and carries invalidations again.
    eventually("B resubscribes", async || {
        m(&b).backplane_resubscribes >= 1 && m(&b).backplane_connected
    })
    .await;
    eventually("A resubscribes", async || m(&a).backplane_connected).await;
    b.get_or_load(5000, counted(&calls, "cached on B"))
        .await
        .unwrap();
    assert!(b.l1().get(&5000).is_some());
    a.invalidate(&5000).await;
    eventually("B drops 5000", async || b.l1().get(&5000).is_none()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_times_out_fast_and_the_tier_recovers_when_it_resumes() {
    let server = RedisServer::start();
    let op_timeout = Duration::from_millis(200);
    let (a, b) = (
        tier_with(&server, op_timeout).await,
        tier_with(&server, op_timeout).await,
    );
    let calls = Arc::new(AtomicUsize::new(0));
    b.get_or_load(1, counted(&calls, "one")).await.unwrap();
    server.signal("-STOP");
    let started = Instant::now();
    let v = a.get_or_load(2, counted(&calls, "two")).await.unwrap();
    assert_eq!(v.as_deref(), Some("two"));
    // One GET that times out, then the loader: bounded by the op timeout, not by the hang.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(m(&a).l2_timeouts >= 1);
    eventually("B's ping notices the hang", async || {
        !m(&b).backplane_connected
    })
    .await;
    server.signal("-CONT");
    eventually("B resubscribes and clears its L1", async || {
        m(&b).backplane_connected && m(&b).backplane_resubscribes >= 1
    })
    .await;
    assert!(b.l1().get(&1).is_none());
    let mut k = 100;
    eventually("A reaches Redis again", async || {
        k += 1;
        a.get_or_load(k, counted(&calls, "x")).await.unwrap();
        m(&a).l2_writes >= 1
    })
    .await;
}

#[tokio::test]
async fn invalid_configuration_is_an_error_naming_the_field() {
    let url = "redis://127.0.0.1:1/";
    let cases: Vec<(&str, aside::tier::TierBuilder<u64, String>)> = vec![
        ("redis_url", TieredCache::builder(l1(), "nope://x")),
        ("key_prefix", TieredCache::builder(l1(), url).key_prefix("")),
        ("channel", TieredCache::builder(l1(), url).channel("")),
        (
            "l2_ttl",
            TieredCache::builder(l1(), url).l2_ttl(Duration::from_micros(10)),
        ),
        (
            "lock_lease",
            TieredCache::builder(l1(), url).lock_lease(Duration::ZERO),
        ),
        (
            "lock_poll",
            TieredCache::builder(l1(), url).lock_poll(Duration::ZERO),
        ),
        (
            "op_timeout",
            TieredCache::builder(l1(), url).op_timeout(Duration::ZERO),
        ),
        (
            "backplane_ping",
            TieredCache::builder(l1(), url).backplane_ping(Duration::ZERO),
        ),
        (
            "breaker",
            TieredCache::builder(l1(), url).breaker(0, Duration::from_secs(1)),
        ),
        (
            "breaker",
            TieredCache::builder(l1(), url).breaker(1, Duration::ZERO),
        ),
        (
            "max_pending_invalidations",
            TieredCache::builder(l1(), url).max_pending_invalidations(0),
        ),
        (
            "op_timeout",
            TieredCache::builder(l1(), url).op_timeout(Duration::MAX),
        ),
        (
            "lock_lease",
            TieredCache::builder(l1(), url).lock_lease(Duration::MAX),
        ),
    ];
    for (field, builder) in cases {
        let err = builder.build().await.unwrap_err();
        assert_eq!(err.field(), field, "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l2_ttl_has_jitter_and_l1_expiry_falls_back_to_l2() {
    let server = RedisServer::start();
    let clock = aside::MockClock::new();
    let l1: AsideCache<u64, String> = AsideCache::builder()
        .time_to_live(Duration::from_secs(5))
        .no_xfetch()
        .clock(clock.clone())
        .build()
        .unwrap();
    let t = TieredCache::builder(l1, server.url())
        .key_prefix("ttl:")
        .l2_ttl(Duration::from_secs(100))
        .l2_ttl_jitter(Duration::from_secs(10))
        .build()
        .await
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut raw = server.raw().await;
    for k in 0..20 {
        t.get_or_load(k, counted(&calls, "v")).await.unwrap();
        let pttl: i64 = redis::cmd("PTTL")
            .arg(format!("ttl:{k}"))
            .query_async(&mut raw)
            .await
            .unwrap();
        assert!((90_000..=110_000).contains(&pttl), "PTTL {pttl}");
    }
    // The L1 copy expires long before the L2 one: the next read is an L2 hit, not a load.
    clock.advance(Duration::from_secs(6));
    assert_eq!(t.l1().get(&0), None);
    let v = t.get_or_load(0, counted(&calls, "never")).await.unwrap();
    assert_eq!(v.as_deref(), Some("v"));
    assert_eq!((calls.load(Ordering::SeqCst), m(&t).l2_hits), (20, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_built_while_redis_is_down_starts_degraded_and_clears_its_l1_once_subscribed() {
    let mut server = RedisServer::reserve();
    let t = tier(&server).await; // nothing listens yet: not an error
    assert!(!m(&t).backplane_connected);
    let calls = Arc::new(AtomicUsize::new(0));
    t.get_or_load(1, counted(&calls, "loaded while Redis was down"))
        .await
        .unwrap();
    assert_eq!(m(&t).degraded_loads, 1);
    assert!(t.l1().get(&1).is_some());
    server.spawn();
    // Invalidations published before the subscription were never heard: the L1 is cleared.
    eventually("subscribed", async || m(&t).backplane_connected).await;
    assert_eq!(m(&t).backplane_resubscribes, 1);
    assert_eq!(t.l1().get(&1), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_runs_on_the_injected_clock() {
    let mut server = RedisServer::start();
    let clock = aside::MockClock::new();
    let t = TieredCache::builder(l1(), server.url())
        .key_prefix("test:")
        .op_timeout(Duration::from_millis(200))
        .breaker(2, Duration::from_secs(30))
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    server.kill();
    for k in 0..2 {
        t.get_or_load(k, counted(&calls, "v")).await.unwrap();
    }
    assert_eq!(
        (m(&t).breaker, m(&t).breaker_opened),
        (BreakerState::Open, 1)
    );
    server.restart();
    // Redis is back, but the open period is measured on the mock clock: still skipped.
    let skipped = m(&t).l2_skipped;
    t.get_or_load(10, counted(&calls, "v")).await.unwrap();
    assert_eq!(m(&t).l2_skipped, skipped + 1);
    assert_eq!(m(&t).breaker, BreakerState::Open);
    clock.advance(Duration::from_secs(30));
    // The next operation is the half-open probe; a dead pooled connection may fail it once
    // and open the breaker again, so advance and retry until a probe closes it.
    let mut k = 100;
    eventually("a probe closes the breaker", async || {
        k += 1;
        t.get_or_load(k, counted(&calls, "v")).await.unwrap();
        if m(&t).breaker == BreakerState::Open {
            clock.advance(Duration::from_secs(30));
        }
        m(&t).breaker == BreakerState::Closed
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst) as u64, m(&t).loads);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_and_undecodable_messages_are_counted_and_handled_safely() {
    let server = RedisServer::start();
    let t = tier(&server).await;
    let calls = Arc::new(AtomicUsize::new(0));
    t.get_or_load(1, counted(&calls, "one")).await.unwrap();
    t.get_or_load(2, counted(&calls, "two")).await.unwrap();
    let mut raw = server.raw().await;
    let publish = async |raw: &mut redis::aio::MultiplexedConnection, text: &str| {
        redis::cmd("PUBLISH")
            .arg("test:invalidations")
            .arg(text)
            .query_async::<i64>(raw)
            .await
            .unwrap()
    };
    // Not our format: counted, ignored.
    assert_eq!(publish(&mut raw, "hello").await, 1);
    eventually("counted", async || m(&t).backplane_undecodable == 1).await;
    assert_eq!(t.l1().len(), 2);
    // Another instance's message for key 1: dropped.
    publish(&mut raw, &format!("aside1 {:032x} 0 key 1", 7u128)).await;
    eventually("key 1 dropped", async || t.l1().get(&1).is_none()).await;
    assert!(t.l1().get(&2).is_some());
    // A key this instance cannot decode: the safe answer is to clear everything.
    publish(
        &mut raw,
        &format!("aside1 {:032x} 0 key not-a-number", 7u128),
    )
    .await;
    eventually("L1 cleared", async || t.l1().is_empty()).await;
    assert_eq!(m(&t).backplane_undecodable, 2);
    assert_eq!(m(&t).backplane_received, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_all_deletes_only_its_own_prefix_even_with_glob_characters() {
    let server = RedisServer::start();
    let build = |prefix: &'static str| {
        TieredCache::builder(l1(), server.url())
            .key_prefix(prefix)
            .build()
    };
    let (globby, other) = (
        build("a*[x]:").await.unwrap(),
        build("ab[x]:").await.unwrap(),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    for k in 0..5 {
        globby.get_or_load(k, counted(&calls, "g")).await.unwrap();
        other.get_or_load(k, counted(&calls, "o")).await.unwrap();
    }
    globby.invalidate_all().await;
    let mut raw = server.raw().await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw)
        .await
        .unwrap();
    keys.sort();
    let expected: Vec<String> = (0..5).map(|k| format!("ab[x]:{k}")).collect();
    assert_eq!(keys, expected, "a `*` in the prefix is matched literally");
    // The other cache listens on its own channel: by the time the message came back to its
    // sender, it would have reached the other cache too, had they shared the channel.
    eventually("globby hears itself", async || {
        m(&globby).backplane_own == 1
    })
    .await;
    assert_eq!(other.l1().len(), 5);
    assert_eq!(m(&other).backplane_received, 0);
}

/// Every setter with extreme values (zero, a nanosecond, `Duration::MAX`, zero and huge
/// counts, odd strings) gives a `ConfigError` naming its field or a tier that answers reads and
/// writes, never a panic (#19: `op_timeout(Duration::MAX)` overflowed `op_timeout * 2`, and
/// `lock_lease(Duration::MAX)` overflowed `lease + 100 ms`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_settings_give_an_error_naming_the_field_or_a_working_tier() {
    type Builder = aside::tier::TierBuilder<u64, String>;
    let server = RedisServer::start();
    let url = server.url();
    let base = || {
        TieredCache::builder(l1(), url.as_str())
            .key_prefix("extreme:")
            .lock_lease(Duration::from_millis(200))
            .lock_wait(Duration::from_millis(50))
            .op_timeout(Duration::from_millis(500))
    };
    let durations = [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(1),
        Duration::from_secs(3600 * 24 * 365 * 1000),
        Duration::MAX,
    ];
    type Setter = fn(Builder, Duration) -> Builder;
    let setters: [(&str, Setter); 9] = [
        ("l2_ttl", |b, d| b.l2_ttl(d)),
        ("l2_ttl_jitter", |b, d| b.l2_ttl_jitter(d)),
        ("lock_lease", |b, d| b.lock_lease(d)),
        ("lock_wait", |b, d| b.lock_wait(d)),
        ("lock_poll", |b, d| b.lock_poll(d)),
        ("op_timeout", |b, d| b.op_timeout(d)),
        ("write_retry_window", |b, d| b.write_retry_window(d)),
        ("backplane_ping", |b, d| b.backplane_ping(d)),
        ("breaker", |b, d| b.breaker(1, d)),
    ];
    let mut cases: Vec<(String, &str, Builder)> = Vec::new();
    for (field, set) in setters {
        for d in durations {
            cases.push((format!("{field}({d:?})"), field, set(base(), d)));
        }
    }
    // `lock_lease` alone: the default `lock_wait` is derived from it.
    for d in durations {
        let b = TieredCache::builder(l1(), url.as_str())
            .key_prefix("extreme:")
            .lock_lease(d);
        cases.push((format!("lock_lease({d:?}) alone"), "lock_lease", b));
    }
    for n in [0, 1, u32::MAX] {
        for d in [Duration::from_nanos(1), Duration::MAX] {
            cases.push((
                format!("breaker({n}, {d:?})"),
                "breaker",
                base().breaker(n, d),
            ));
        }
    }
    for n in [0, 1, usize::MAX] {
        cases.push((
            format!("max_pending_invalidations({n})"),
            "max_pending_invalidations",
            base().max_pending_invalidations(n),
        ));
    }
    for odd in [
        "",
        " ",
        "\n",
        "*",
        "?[]\\",
        "\0",
        "é🦀",
        &"k".repeat(10_000),
    ] {
        cases.push((
            format!("key_prefix({odd:.20?})"),
            "key_prefix",
            base().key_prefix(odd),
        ));
        cases.push((
            format!("channel({odd:.20?})"),
            "channel",
            base().channel(odd),
        ));
    }
    let (mut ok, mut rejected) = (0, 0);
    for (what, field, builder) in cases {
        let built = tokio::spawn(async move {
            let t = builder.build().await?;
            // Exercise the paths that compute with the settings: a miss (lock, install), a
            // put, an invalidation, a read.
            let calls = Arc::new(AtomicUsize::new(0));
            t.get_or_load(1, counted(&calls, "one")).await.unwrap();
            t.put(2, "two".to_string()).await;
            t.invalidate(&1).await;
            t.get(&2).await;
            t.invalidate_all().await;
            Ok::<_, aside::ConfigError>(t.metrics())
        })
        .await
        .unwrap_or_else(|e| panic!("{what} panicked: {e}"));
        match built {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.field(), field, "{what}: {e}");
                rejected += 1;
            }
        }
    }
    assert!(
        ok > 30 && rejected > 20,
        "{ok} working, {rejected} rejected"
    );
}

/// The front door's per-entry TTL, predicate invalidation, iteration and borrowed keys, on the
/// tier: `put_with_ttl` sets the Redis expiry too, `invalidate_if` drops the matching keys from
/// this L1, Redis and the other instance's L1, `get`/`invalidate` take `&str` for `String` keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_entry_ttl_predicate_invalidation_iteration_and_borrowed_keys() {
    let server = RedisServer::start();
    let build = async || {
        let l1: AsideCache<String, u32> = AsideCache::builder()
            .max_capacity(1_000)
            .time_to_live(Duration::from_secs(60))
            .build()
            .unwrap();
        TieredCache::builder(l1, server.url())
            .key_prefix("parity:")
            .l2_ttl(Duration::from_secs(300))
            .op_timeout(Duration::from_secs(1))
            .backplane_ping(Duration::from_millis(200))
            .build()
            .await
            .unwrap()
    };
    let (a, b) = (build().await, build().await);
    let mut raw = server.raw().await;

    // Per-entry TTL in both tiers: Redis's expiry is the entry's, not the 300 s L2 TTL.
    a.put_with_ttl("session".to_string(), 1, Duration::from_secs(5))
        .await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg("parity:session")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!((1..=5_000).contains(&pttl), "PTTL {pttl}");
    a.put("profile".to_string(), 2).await;
    let pttl: i64 = redis::cmd("PTTL")
        .arg("parity:profile")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(pttl > 5_000, "PTTL {pttl}");

    // Borrowed keys.
    assert_eq!(a.get("profile").await, Some(2));
    assert_eq!(b.get("profile").await, Some(2)); // from Redis, now in B's L1 too
    a.invalidate("session").await;
    assert!(!exists(&mut raw, "parity:session").await);

    // Predicate invalidation reaches Redis and the other instance.
    for (k, v) in [("t1:a", 10), ("t1:b", 11), ("t2:a", 20)] {
        a.put(k.to_string(), v).await;
        assert_eq!(b.get(k).await, Some(v));
    }
    let mut seen: Vec<(String, u32)> = a.iter().collect();
    seen.sort();
    assert_eq!(seen.len(), 4, "{seen:?}"); // profile and the three
    let dropped = a.invalidate_if(|k, _| k.starts_with("t1:")).await;
    assert_eq!(dropped, 2);
    assert_eq!((a.l1().get("t1:a"), a.l1().get("t2:a")), (None, Some(20)));
    assert!(!exists(&mut raw, "parity:t1:a").await && !exists(&mut raw, "parity:t1:b").await);
    assert!(exists(&mut raw, "parity:t2:a").await);
    eventually("B drops t1:*", async || {
        b.l1().get("t1:a").is_none() && b.l1().get("t1:b").is_none()
    })
    .await;
    // What the predicate did not match stays readable on B. Not necessarily from B's L1:
    // the message of A's own `put` of `t2:a` may reach B after B cached the new value, and
    // a late invalidation drops a fresh copy by design (it costs a read from Redis), as does
    // a resubscription after a missed ping on a loaded machine (a CI run failed on the L1
    // check).
    assert_eq!(b.get("t2:a").await, Some(20));
}

/// A TTL the L1's `expire_after` chooses for a value is its Redis lifetime too, for a loaded
/// value and a put one; values it leaves alone get the L2 TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_l1s_expire_after_sets_the_redis_expiry() {
    let server = RedisServer::start();
    let l1: AsideCache<u64, String> = AsideCache::builder()
        .max_capacity(100)
        .time_to_live(Duration::from_secs(60))
        .expire_after(|_, v: &String| v.starts_with("volatile").then_some(Duration::from_secs(5)))
        .build()
        .unwrap();
    let tier = TieredCache::builder(l1, server.url())
        .key_prefix("ea:")
        .l2_ttl(Duration::from_secs(300))
        .op_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let mut raw = server.raw().await;
    let pttl = async |raw: &mut redis::aio::MultiplexedConnection, key: &str| -> i64 {
        redis::cmd("PTTL").arg(key).query_async(raw).await.unwrap()
    };
    let calls = Arc::new(AtomicUsize::new(0));
    tier.get_or_load(1, counted(&calls, "volatile stock level"))
        .await
        .unwrap();
    tier.get_or_load(2, counted(&calls, "product name"))
        .await
        .unwrap();
    tier.put(3, "volatile price".to_string()).await;
    let (p1, p2, p3) = (
        pttl(&mut raw, "ea:1").await,
        pttl(&mut raw, "ea:2").await,
        pttl(&mut raw, "ea:3").await,
    );
    assert!((1..=5_000).contains(&p1), "loaded, chosen: PTTL {p1}");
    assert!(p2 > 5_000, "loaded, default: PTTL {p2}");
    assert!((1..=5_000).contains(&p3), "put, chosen: PTTL {p3}");
}
