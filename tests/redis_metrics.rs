//! The tier's counters through the `metrics` facade: a `TieredCache` added to a
//! `MetricsSampler` exports its L1's counters and the tier's own (`aside_tier_*`), checked by
//! name, label and value with `metrics-util`'s test recorder against a real redis-server.
#![cfg(all(feature = "redis", feature = "metrics"))]

use std::time::{Duration, SystemTime};

use aside::AsideCache;
use aside::sampler::MetricsSampler;
use aside::tier::TieredCache;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[path = "common/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer;

/// `(name, value)` of every metric labelled `cache="user"` (histograms: their sample count).
fn user_metrics(recorder: &DebuggingRecorder) -> Vec<(String, f64)> {
    let mut seen: Vec<(String, f64)> = recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().labels().any(|l| l.value() == "user"))
        .map(|(key, _, _, value)| {
            let v = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(g) => g.0,
                DebugValue::Histogram(h) => h.len() as f64,
            };
            (key.key().name().to_string(), v)
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    seen
}

fn value(seen: &[(String, f64)], name: &str) -> f64 {
    seen.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} not exported: {seen:#?}"))
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiered_cache_exports_its_l1_and_tier_counters() {
    let server = RedisServer::start();
    let l1: AsideCache<u64, String> = AsideCache::builder().max_capacity(100).build().unwrap();
    let tier: TieredCache<u64, String> = TieredCache::builder(l1, server.url())
        .op_timeout(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let load = || async { Ok::<_, std::io::Error>(Some("v".to_string())) };
    tier.get_or_load(1, load).await.unwrap(); // L1 miss, L2 miss, load, SET
    tier.get_or_load(1, load).await.unwrap(); // L1 hit
    tier.invalidate(&1).await;

    let mut sampler = MetricsSampler::new();
    sampler.add("user", tier.clone());
    let recorder = DebuggingRecorder::new();
    metrics::with_local_recorder(&recorder, || sampler.sample(SystemTime::now()));
    let seen = user_metrics(&recorder);

    let m = tier.metrics();
    for (name, expected) in [
        ("aside_cache_hits_total", 1.0),
        ("aside_cache_loads_total", 1.0),
        ("aside_cache_load_duration_seconds", 1.0),
        ("aside_tier_l2_misses_total", m.l2_misses as f64),
        ("aside_tier_l2_writes_total", m.l2_writes as f64),
        ("aside_tier_lock_acquired_total", m.lock_acquired as f64),
        ("aside_tier_backplane_sent_total", m.backplane_sent as f64),
        ("aside_tier_breaker_state", 0.0),
        ("aside_tier_pending_invalidations", 0.0),
    ] {
        assert_eq!(value(&seen, name), expected, "{name}");
    }
    assert_eq!(m.l2_misses, 1);
    assert!(
        m.l2_writes >= 1,
        "the SET (the invalidation's DEL counts too)"
    );
    assert!(m.backplane_sent >= 1);
    // Every tier metric is there, labelled with the cache's name.
    let tier_metrics = seen
        .iter()
        .filter(|(n, _)| n.starts_with("aside_tier_"))
        .count();
    assert_eq!(tier_metrics, 24, "{seen:#?}");
    tier.shutdown().await;
}
