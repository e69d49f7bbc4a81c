//! The Redis tier's invalidations under faults (#19): a hung Redis (SIGSTOP), a full queue of
//! pending invalidations, a Redis killed and restarted from its snapshot. Each test caches
//! [`KEYS`] keys in Redis, invalidates them all while Redis cannot take it, lets Redis come
//! back, waits (polling, bounded) until the invalidating instance's queue is empty, then counts
//! the reads that still return the old value, from a fresh instance and from the invalidating
//! one. Before the replay queue, the SIGSTOP test (then with 400 keys) counted 144 stale keys
//! of 400 in the fresh instance (the 256-write retry limit dropped the rest).
#![cfg(feature = "redis")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aside::AsideCache;
use aside::tier::{TierMetrics, TieredCache};

#[path = "common/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer;

type Tier = TieredCache<u64, String>;

const KEYS: u64 = 1_000;
const OLD: &str = "old";
const NEW: &str = "new";

/// A tier with short timers: a hung Redis is noticed within 200 ms, the breaker retries every
/// 300 ms, the subscriber pings every 200 ms.
async fn tier(server: &RedisServer, max_pending: usize) -> Tier {
    let l1: AsideCache<u64, String> = AsideCache::builder()
        .max_capacity(10_000)
        .time_to_live(Duration::from_secs(60))
        .build()
        .unwrap();
    TieredCache::builder(l1, server.url())
        .key_prefix("faults:")
        .l2_ttl(Duration::from_secs(300))
        .op_timeout(Duration::from_millis(200))
        .breaker(3, Duration::from_millis(300))
        .backplane_ping(Duration::from_millis(200))
        .max_pending_invalidations(max_pending)
        .build()
        .await
        .unwrap()
}

fn m(t: &Tier) -> TierMetrics {
    t.metrics()
}

/// Polls `cond` every 10 ms for at most 15 s.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 15 s: {what}");
}

/// Loads every key through `t`: the old value lands in Redis and in `t`'s L1.
async fn cache_old_values(t: &Tier) {
    for k in 0..KEYS {
        let v = t
            .get_or_load(k, || async { Ok::<_, String>(Some(OLD.to_string())) })
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(OLD));
    }
    assert_eq!(m(t).l2_writes, KEYS);
}

/// How many keys `t` still answers with the old value, its loader answering the new one.
async fn stale_reads(t: &Tier) -> usize {
    let mut stale = 0;
    for k in 0..KEYS {
        let v = t
            .get_or_load(k, || async { Ok::<_, String>(Some(NEW.to_string())) })
            .await
            .unwrap();
        if v.as_deref() == Some(OLD) {
            stale += 1;
        }
    }
    stale
}

/// How many of the keys Redis itself still holds.
async fn left_in_redis(server: &RedisServer) -> usize {
    let mut raw = server.raw().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("faults:*")
        .query_async(&mut raw)
        .await
        .unwrap();
    keys.len()
}

/// Waits until `a` has replayed everything it queued.
async fn drained(a: &Tier) {
    eventually("A's queue drains", async || m(a).pending_invalidations == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_made_while_redis_hangs_are_replayed_when_it_resumes() {
    let started = Instant::now();
    let server = RedisServer::start();
    let a = tier(&server, 100_000).await;
    cache_old_values(&a).await;

    server.signal("-STOP");
    for k in 0..KEYS {
        a.invalidate(&k).await; // the database changed
    }
    let during = m(&a);
    // The first few timed out, the rest found the breaker open: all queued.
    assert_eq!(during.pending_invalidations, KEYS, "{during:?}");
    assert_eq!(during.invalidation_overflows, 0);
    // A flush cannot finish while Redis hangs: it reports what is still queued.
    let limit = Duration::from_millis(100);
    assert_eq!(a.flush_invalidations(limit).await, Err(KEYS as usize));
    server.signal("-CONT");

    // It returns as soon as the replay has emptied the queue.
    a.flush_invalidations(Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(m(&a).pending_invalidations, 0);
    assert_eq!(left_in_redis(&server).await, 0);
    let fresh = tier(&server, 100_000).await;
    assert_eq!(
        stale_reads(&fresh).await,
        0,
        "stale reads in a fresh instance"
    );
    assert_eq!(
        stale_reads(&a).await,
        0,
        "stale reads in the invalidating one"
    );
    let after = m(&a);
    assert_eq!(after.writes_dropped, 0);
    assert_eq!(after.writes_retried, KEYS, "{after:?}");
    eprintln!("SIGSTOP test: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_becomes_one_prefix_wide_clear_that_reaches_every_instance() {
    let started = Instant::now();
    let server = RedisServer::start();
    let (a, b) = (tier(&server, 100).await, tier(&server, 100).await);
    cache_old_values(&a).await;
    assert_eq!(
        stale_reads(&b).await as u64,
        KEYS,
        "B holds every old value"
    );
    let mut raw = server.raw().await;
    redis::cmd("SET")
        .arg("other:1")
        .arg("kept")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    drop(raw);

    server.signal("-STOP");
    for k in 0..KEYS {
        a.invalidate(&k).await;
    }
    let during = m(&a);
    assert_eq!(during.invalidation_overflows, 1, "{during:?}");
    assert_eq!(during.pending_invalidations, 1, "one clear: {during:?}");
    // Before Redis answers, A does not trust it for any key.
    assert_eq!(stale_reads(&a).await, 0);
    server.signal("-CONT");

    drained(&a).await;
    assert_eq!(left_in_redis(&server).await, 0);
    let mut raw = server.raw().await;
    let other: Option<String> = redis::cmd("GET")
        .arg("other:1")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(other.as_deref(), Some("kept"), "only our prefix is cleared");
    // B heard the `all` message, or resubscribed (clearing its L1) after the hang.
    eventually("B cleared its L1 and listens again", async || {
        let mb = m(&b);
        (mb.backplane_received >= 1 || mb.backplane_resubscribes >= 1) && mb.backplane_connected
    })
    .await;
    assert_eq!(stale_reads(&b).await, 0, "stale reads in B");
    assert_eq!(stale_reads(&a).await, 0, "stale reads in A");
    let fresh = tier(&server, 100).await;
    assert_eq!(
        stale_reads(&fresh).await,
        0,
        "stale reads in a fresh instance"
    );
    assert_eq!(m(&a).writes_dropped, 0);
    eprintln!("overflow test: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_survive_redis_being_killed_and_restarted_from_its_snapshot() {
    let started = Instant::now();
    let mut server = RedisServer::start();
    let a = tier(&server, 100_000).await;
    cache_old_values(&a).await;
    let half = KEYS / 2;
    for k in 0..half {
        a.invalidate(&k).await;
    }
    assert_eq!(m(&a).pending_invalidations, 0);
    // A snapshot with the second half's old values; the restarted server loads it.
    let mut raw = server.raw().await;
    redis::cmd("SAVE")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    drop(raw);

    server.kill();
    for k in half..KEYS {
        a.invalidate(&k).await;
    }
    let during = m(&a);
    assert_eq!(during.pending_invalidations, KEYS - half, "{during:?}");
    server.spawn();
    // The snapshot brought the old values back (unless the replay already ran).
    eprintln!("after the restart: {} keys", left_in_redis(&server).await);

    drained(&a).await;
    assert_eq!(left_in_redis(&server).await, 0);
    let fresh = tier(&server, 100_000).await;
    assert_eq!(
        stale_reads(&fresh).await,
        0,
        "stale reads in a fresh instance"
    );
    assert_eq!(
        stale_reads(&a).await,
        0,
        "stale reads in the invalidating one"
    );
    assert_eq!(m(&a).writes_retried, KEYS - half);
    eprintln!("kill/restart test: {:?}", started.elapsed());
}

/// A key invalidated again while queued is replayed once; a direct success forgets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_invalidations_are_coalesced_per_key() {
    let server = RedisServer::start();
    let a = tier(&server, 100_000).await;
    let calls = Arc::new(AtomicUsize::new(0));
    for k in 0..3 {
        let calls = Arc::clone(&calls);
        a.get_or_load(k, move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(Some(OLD.to_string()))
        })
        .await
        .unwrap();
    }
    server.signal("-STOP");
    for _ in 0..5 {
        for k in 0..3 {
            a.invalidate(&k).await;
        }
        a.put(1, NEW.to_string()).await;
    }
    assert_eq!(m(&a).pending_invalidations, 3);
    server.signal("-CONT");
    drained(&a).await;
    assert_eq!(m(&a).writes_retried, 3);
    assert_eq!(left_in_redis(&server).await, 0);
    assert_eq!(m(&a).writes_dropped, 0);
}

/// A live Redis that refuses the deletion (here an ACL) is not waited for forever: after
/// `write_retry_window` of error replies the queued invalidation is dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_replies_for_longer_than_the_retry_window_drop_the_invalidation() {
    let server = RedisServer::start();
    let l1: AsideCache<u64, String> = AsideCache::builder().build().unwrap();
    let a = TieredCache::builder(l1, server.url())
        .key_prefix("faults:")
        .write_retry_window(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    a.put(1, OLD.to_string()).await;
    let mut raw = server.raw().await;
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("-del")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    let started = Instant::now();
    a.invalidate(&1).await;
    assert_eq!(m(&a).pending_invalidations, 1);
    eventually("dropped after the window", async || {
        m(&a).writes_dropped == 1
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let ma = m(&a);
    assert_eq!((ma.pending_invalidations, ma.writes_retried), (0, 0));
    assert_eq!(
        ma.breaker,
        aside::tier::BreakerState::Closed,
        "Redis answered"
    );
}

/// An instance that cannot hear other instances' invalidations (its subscription lost: here
/// Redis hung) clears its L1 every `disconnected_l1_ttl`, values loaded before the loss and
/// during it alike, so its staleness is bounded by that setting instead of the L1's TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_instance_clears_its_l1_every_disconnected_l1_ttl() {
    let server = RedisServer::start();
    let l1: AsideCache<u64, String> = AsideCache::builder()
        .max_capacity(100)
        .time_to_live(Duration::from_secs(3600)) // far longer than the outage
        .build()
        .unwrap();
    let b = TieredCache::builder(l1, server.url())
        .key_prefix("disconnected:")
        .op_timeout(Duration::from_millis(200))
        .breaker(3, Duration::from_millis(300))
        .backplane_ping(Duration::from_millis(200))
        .disconnected_l1_ttl(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let load = |v: &'static str| move || async move { Ok::<_, String>(Some(v.to_string())) };
    b.get_or_load(1, load(OLD)).await.unwrap();
    assert_eq!(b.l1().get(&1).as_deref(), Some(OLD));
    eventually("subscribed", async || m(&b).backplane_connected).await;

    server.signal("-STOP");
    let stopped = Instant::now();
    eventually("the loss is noticed", async || !m(&b).backplane_connected).await;
    eventually("the L1 is cleared", async || b.l1().get(&1).is_none()).await;
    let cleared_after = stopped.elapsed();
    // A value loaded while disconnected (from the source: Redis does not answer) goes too.
    let v = b.get_or_load(2, load(NEW)).await.unwrap();
    assert_eq!(v.as_deref(), Some(NEW));
    eventually("the next clear", async || b.l1().get(&2).is_none()).await;
    assert!(m(&b).disconnected_l1_clears >= 2, "{:?}", m(&b));
    println!(
        "L1 cleared {cleared_after:?} after Redis stopped (bound: ping 200 ms + op timeout \
         200 ms + disconnected_l1_ttl 300 ms + a resubscription attempt 200 ms = 900 ms, plus \
         scheduling); {} clears",
        m(&b).disconnected_l1_clears
    );

    server.signal("-CONT");
    eventually("subscribed again", async || m(&b).backplane_connected).await;
    let clears = m(&b).disconnected_l1_clears;
    b.get_or_load(3, load(NEW)).await.unwrap();
    assert_eq!(
        b.l1().get(&3).as_deref(),
        Some(NEW),
        "connected: no more clears"
    );
    assert_eq!(m(&b).disconnected_l1_clears, clears);
    b.shutdown().await;
}
