//! The Redis L2 tier against a real three-node Redis Cluster (`redis-server --cluster-enabled
//! yes`, created with `redis-cli --cluster create`, no replicas): every test starts its own
//! cluster on free loopback ports and kills it on drop. Several tier instances stand for
//! several application instances. Where the cluster has to act (pub/sub delivery, a node
//! rejoining), the test polls with a deadline; no sleep decides an outcome.
#![cfg(feature = "redis")]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aside::AsideCache;
use aside::tier::{TierMetrics, TieredCache};
use redis::cluster_async::ClusterConnection;

#[path = "common/redis_cluster.rs"]
mod redis_cluster;
use redis_cluster::RedisCluster;

type Tier = TieredCache<u64, String>;

fn l1() -> AsideCache<u64, String> {
    AsideCache::builder()
        .max_capacity(10_000)
        .time_to_live(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn tier(cluster: &RedisCluster, op_timeout: Duration) -> Tier {
    TieredCache::cluster_builder(l1(), cluster.urls())
        .key_prefix("test:")
        .l2_ttl(Duration::from_secs(300))
        .lock_lease(Duration::from_secs(3))
        .lock_wait(Duration::from_secs(4))
        .lock_poll(Duration::from_millis(10))
        .op_timeout(op_timeout)
        .breaker(5, Duration::from_millis(300))
        .backplane_ping(Duration::from_millis(200))
        .build()
        .await
        .unwrap()
}

fn m(t: &Tier) -> TierMetrics {
    t.metrics()
}

/// The Redis key of `k` under the tests' prefix, in a cluster.
fn rkey(k: u64) -> String {
    format!("test:{{{k}}}")
}

/// Polls `cond` every 10 ms until `limit`.
async fn eventually(what: &str, limit: Duration, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within {limit:?}: {what}");
}

async fn raw_get(raw: &mut ClusterConnection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query_async(raw).await.unwrap()
}

fn encoded(v: &str) -> Vec<u8> {
    postcard::to_allocvec(&v.to_string()).unwrap()
}

fn ok_loader(
    calls: &Arc<AtomicUsize>,
    value: &str,
) -> impl FnOnce() -> std::future::Ready<Result<Option<String>, String>> + Send + 'static {
    let (calls, value) = (Arc::clone(calls), value.to_string());
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Some(value)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_l2_and_see_each_others_invalidations() {
    let started = Instant::now();
    let cluster = RedisCluster::start();
    let (a, b) = (
        tier(&cluster, Duration::from_secs(1)).await,
        tier(&cluster, Duration::from_secs(1)).await,
    );
    assert!(m(&a).backplane_connected && m(&b).backplane_connected);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut raw = cluster.raw().await;

    // 30 keys, spread over the three primaries: A loads, B reads them from Redis.
    for k in 0..30 {
        let v = a.get_or_load(k, ok_loader(&calls, "v1")).await.unwrap();
        assert_eq!(v.as_deref(), Some("v1"));
        let v = b.get_or_load(k, ok_loader(&calls, "never")).await.unwrap();
        assert_eq!(v.as_deref(), Some("v1"));
        assert_eq!(raw_get(&mut raw, &rkey(k)).await, Some(encoded("v1")));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 30);
    assert_eq!((m(&a).l2_writes, m(&a).lock_lost), (30, 0));
    assert_eq!((m(&b).l2_hits, m(&b).loads), (30, 0));
    assert_eq!(
        m(&a).l2_errors + m(&b).l2_errors,
        0,
        "no CROSSSLOT or other error"
    );
    for i in 0..3 {
        assert!(cluster.dbsize(i) > 0, "node {i} holds some of the keys");
    }

    // Delete-on-write on A: gone from Redis, from B's L1 once the message lands.
    let t = Instant::now();
    for k in 0..30 {
        a.invalidate(&k).await;
        assert_eq!(raw_get(&mut raw, &rkey(k)).await, None);
    }
    eventually("B drops every key", Duration::from_secs(10), async || {
        (0..30).all(|k| b.l1().get(&k).is_none())
    })
    .await;
    eprintln!("30 invalidations applied by B within {:?}", t.elapsed());
    assert_eq!(m(&b).backplane_received, 30);
    eventually(
        "A ignores its own messages",
        Duration::from_secs(10),
        async || m(&a).backplane_own == 30,
    )
    .await;

    // Write-through on B: A's next read gets the new value from Redis.
    a.get_or_load(7, ok_loader(&calls, "v1")).await.unwrap();
    b.put(7, "v2".to_string()).await;
    assert_eq!(raw_get(&mut raw, &rkey(7)).await, Some(encoded("v2")));
    eventually("A drops its v1", Duration::from_secs(10), async || {
        a.l1().get(&7).is_none()
    })
    .await;
    let v = a.get_or_load(7, ok_loader(&calls, "never")).await.unwrap();
    assert_eq!(v.as_deref(), Some("v2"));
    assert_eq!(m(&a).l2_errors + m(&b).l2_errors, 0);
    assert_eq!(m(&a).pending_invalidations + m(&b).pending_invalidations, 0);
    eprintln!("two_instances (cluster): {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stampede_lock_lets_one_of_several_instances_load_a_cold_key() {
    let started = Instant::now();
    let cluster = RedisCluster::start();
    let mut tiers = Vec::new();
    for _ in 0..4 {
        tiers.push(tier(&cluster, Duration::from_secs(1)).await);
    }
    // 12 cold keys (on every node), each requested by the four instances at once; the
    // loader holds its lock until all four have asked, so every other instance has to wait
    // for the holder's value.
    let loads: Arc<HashMap<u64, AtomicUsize>> =
        Arc::new((0..12).map(|k| (k, AtomicUsize::new(0))).collect());
    let mut tasks = Vec::new();
    for k in 0..12u64 {
        let asked = Arc::new(tokio::sync::Barrier::new(4));
        for t in &tiers {
            let (t, loads, asked) = (t.clone(), Arc::clone(&loads), Arc::clone(&asked));
            tasks.push(tokio::spawn(async move {
                let loader = {
                    let loads = Arc::clone(&loads);
                    move || async move {
                        loads[&k].fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, String>(Some(format!("value {k}")))
                    }
                };
                let asking = asked.wait();
                let (v, _) = tokio::join!(t.get_or_load(k, loader), asking);
                assert_eq!(v.unwrap().as_deref(), Some(format!("value {k}").as_str()));
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let per_key: Vec<usize> = (0..12).map(|k| loads[&k].load(Ordering::SeqCst)).collect();
    eprintln!("loads per key: {per_key:?}");
    assert!(
        per_key.iter().all(|&n| n == 1),
        "one load per key: {per_key:?}"
    );
    let total = |f: fn(&TierMetrics) -> u64| tiers.iter().map(|t| f(&m(t))).sum::<u64>();
    // A waiter may still win the lock after the holder installed; it then finds the value.
    assert!(total(|m| m.lock_acquired) >= 12);
    assert_eq!(total(|m| m.loads), 12);
    assert_eq!(total(|m| m.lock_fallback_loads), 0);
    assert_eq!(total(|m| m.lock_lost), 0);
    assert_eq!(
        total(|m| m.l2_errors),
        0,
        "no CROSSSLOT from the lock scripts"
    );
    eprintln!("stampede (cluster): {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_all_clears_every_node() {
    let started = Instant::now();
    let cluster = RedisCluster::start();
    let (a, b) = (
        tier(&cluster, Duration::from_secs(1)).await,
        tier(&cluster, Duration::from_secs(1)).await,
    );
    let calls = Arc::new(AtomicUsize::new(0));
    for k in 0..300 {
        a.get_or_load(k, ok_loader(&calls, "x")).await.unwrap();
        b.get_or_load(k, ok_loader(&calls, "never")).await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 300);
    let mut raw = cluster.raw().await;
    // A stray lock (as a crashed holder leaves) and a key of someone else.
    redis::cmd("SET")
        .arg(format!("lock:{}", rkey(5000)))
        .arg("t")
        .query_async::<()>(&mut raw)
        .await
        .unwrap();
    for k in 0..3 {
        redis::cmd("SET")
            .arg(format!("other:{k}"))
            .arg("kept")
            .query_async::<()>(&mut raw)
            .await
            .unwrap();
    }
    let before: Vec<i64> = (0..3).map(|i| cluster.dbsize(i)).collect();
    assert!(
        before.iter().all(|&n| n > 50),
        "keys on every node: {before:?}"
    );

    a.invalidate_all().await;
    assert!(a.l1().is_empty());
    eventually("B clears its L1", Duration::from_secs(10), async || {
        b.l1().is_empty()
    })
    .await;
    let after: Vec<i64> = (0..3).map(|i| cluster.dbsize(i)).collect();
    assert_eq!(after.iter().sum::<i64>(), 3, "only other:* left: {after:?}");
    for k in 0..3 {
        let v: Option<String> = redis::cmd("GET")
            .arg(format!("other:{k}"))
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some("kept"));
    }
    assert_eq!((m(&a).pending_invalidations, m(&a).l2_errors), (0, 0));
    eprintln!("keys per node before {before:?}, after {after:?}");
    eprintln!("invalidate_all (cluster): {:?}", started.elapsed());
}

/// The source of truth: one version per key; the loader reads it.
struct Db {
    versions: Vec<AtomicU64>,
}

impl Db {
    fn value(&self, k: u64) -> String {
        format!("v{}", self.versions[k as usize].load(Ordering::SeqCst))
    }
}

fn db_loader(
    db: &Arc<Db>,
    k: u64,
) -> impl FnOnce() -> std::future::Ready<Result<Option<String>, String>> + Send + 'static {
    let db = Arc::clone(db);
    move || std::future::ready(Ok(Some(db.value(k))))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_and_restarted_during_invalidations_leaves_no_stale_read() {
    const KEYS: u64 = 60;
    const WRITES: usize = 1_200;
    let started = Instant::now();
    let mut cluster = RedisCluster::start();
    let db = Arc::new(Db {
        versions: (0..KEYS).map(|_| AtomicU64::new(0)).collect(),
    });
    let mut tiers = Vec::new();
    for _ in 0..3 {
        tiers.push(tier(&cluster, Duration::from_millis(250)).await);
    }
    for t in &tiers {
        for k in 0..KEYS {
            t.get_or_load(k, db_loader(&db, k)).await.unwrap();
        }
    }
    // Readers race the writers on every instance the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for (n, t) in tiers.iter().enumerate() {
        let (t, db, stop) = (t.clone(), Arc::clone(&db), Arc::clone(&stop));
        readers.push(tokio::spawn(async move {
            let mut k = n as u64;
            while !stop.load(Ordering::SeqCst) {
                k = (k + 7) % KEYS;
                let _ = t.get_or_load(k, db_loader(&db, k)).await;
                tokio::task::yield_now().await;
            }
        }));
    }
    // The subscribers all start on node 0 (the first listed): kill that one.
    let mut killed_at = None;
    let mut restarted_at = None;
    for i in 0..WRITES {
        if i == WRITES / 4 {
            cluster.kill(0);
            killed_at = Some(Instant::now());
        }
        if i == WRITES / 2 {
            cluster.spawn(0);
            restarted_at = Some(Instant::now());
        }
        let k = (i as u64 * 13) % KEYS;
        db.versions[k as usize].fetch_add(1, Ordering::SeqCst);
        let writer = &tiers[i % 3];
        if i % 3 == 0 {
            writer.put(k, db.value(k)).await;
        } else {
            writer.invalidate(&k).await;
        }
        // Spread the writes over time, so that some land while the node is down.
        tokio::time::sleep(Duration::from_millis(8)).await;
    }
    let (killed_at, restarted_at) = (killed_at.unwrap(), restarted_at.unwrap());
    let down_for = restarted_at - killed_at;
    cluster.wait_ok(Duration::from_secs(20));
    let cluster_ok_after = restarted_at.elapsed();
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.await.unwrap();
    }
    eventually(
        "every queued invalidation replayed and every subscriber back",
        Duration::from_secs(20),
        async || {
            tiers.iter().all(|t| {
                let m = m(t);
                m.pending_invalidations == 0 && m.backplane_connected
            })
        },
    )
    .await;
    let recovered_after = restarted_at.elapsed();

    // Redis first (the instances' reads below would refill it), then every instance.
    let mut raw = cluster.raw().await;
    let mut stale_in_redis = 0;
    for k in 0..KEYS {
        if let Some(bytes) = raw_get(&mut raw, &rkey(k)).await
            && bytes != encoded(&db.value(k))
        {
            stale_in_redis += 1;
        }
    }
    let mut stale_in_instances = [0usize; 3];
    for (n, t) in tiers.iter().enumerate() {
        for k in 0..KEYS {
            let v = t.get_or_load(k, db_loader(&db, k)).await.unwrap();
            if v.as_deref() != Some(db.value(k).as_str()) {
                stale_in_instances[n] += 1;
                eprintln!(
                    "instance {n}, key {k} (slot on node {:?}): read {v:?}, the database has {:?}",
                    cluster.node_of(&rkey(k)),
                    db.value(k)
                );
            }
        }
    }
    let ms: Vec<TierMetrics> = tiers.iter().map(m).collect();
    eprintln!(
        "node 0 down for {down_for:?} during {WRITES} writes ({} puts, {} invalidations); \
         cluster ok {cluster_ok_after:?} after the restart, tiers recovered after \
         {recovered_after:?}",
        WRITES / 3,
        WRITES - WRITES / 3
    );
    for (n, m) in ms.iter().enumerate() {
        eprintln!(
            "instance {n}: writes_retried {}, writes_dropped {}, degraded_loads {}, \
             resubscribes {}, breaker_opened {}, l2_errors {}, l2_timeouts {}",
            m.writes_retried,
            m.writes_dropped,
            m.degraded_loads,
            m.backplane_resubscribes,
            m.breaker_opened,
            m.l2_errors,
            m.l2_timeouts
        );
    }
    eprintln!("stale reads: Redis {stale_in_redis}, instances {stale_in_instances:?}");
    assert_eq!(stale_in_redis, 0);
    assert_eq!(stale_in_instances, [0, 0, 0]);
    assert!(
        ms.iter().map(|m| m.backplane_resubscribes).sum::<u64>() >= 3,
        "every subscriber was on the killed node and moved"
    );
    // Writes to the dead node's keys failed and were queued; with 1,200 writes every key is
    // written again after the recovery, and a write that reaches Redis forgets the key's
    // queued deletion instead of replaying it, so `writes_retried` may stay 0 here.
    assert!(
        ms.iter().map(|m| m.l2_errors).sum::<u64>() > 0,
        "the outage reached the tiers (failed Redis operations)"
    );
    eprintln!("node kill (cluster): {:?}", started.elapsed());
}

#[tokio::test]
async fn invalid_cluster_configuration_is_an_error_naming_the_field() {
    let none: [&str; 0] = [];
    let err = TieredCache::cluster_builder(l1(), none)
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.field(), "cluster_nodes");
    let err = TieredCache::cluster_builder(l1(), ["redis://127.0.0.1:7000/", "not a url"])
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.field(), "cluster_nodes");
    assert!(err.to_string().contains("node 1"), "{err}");
    let err = TieredCache::cluster_builder(l1(), ["redis://127.0.0.1:1/"])
        .key_prefix("app:{user}:")
        .build()
        .await
        .unwrap_err();
    assert_eq!(err.field(), "key_prefix");
    // The same prefix is fine on a single server, where keys carry no hash tag.
    TieredCache::builder(l1(), "redis://127.0.0.1:1/")
        .key_prefix("app:{user}:")
        .build()
        .await
        .unwrap();
}
