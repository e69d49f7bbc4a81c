//! Metrics sampling and export (`aside::sampler`): totals and deltas per named cache on a mock
//! clock, front-door load counts, the export through the `metrics` facade (a test recorder
//! checks every name, label and value) and the interval task on tokio's paused clock.

use std::time::{Duration, SystemTime};

use aside::policy::Lru;
use aside::sampler::{CacheCounts, CacheMetric, MetricsSampler};
use aside::{AsideCache, Cache, MockClock};

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// `[hits, misses, evictions, expirations, invalidations, inserts, loads, load_errors]`.
fn counts(
    [
        hits,
        misses,
        evictions,
        expirations,
        invalidations,
        inserts,
        loads,
        load_errors,
    ]: [u64; 8],
) -> CacheCounts {
    let mut c = CacheCounts::default();
    c.hits = hits;
    c.misses = misses;
    c.evictions = evictions;
    c.expirations = expirations;
    c.invalidations = invalidations;
    c.inserts = inserts;
    c.loads = loads;
    c.load_errors = load_errors;
    c
}

/// Two caches driven on a mock clock: capacity evictions, expiry, invalidation, hits and
/// misses.
fn two_caches() -> (Cache<u32, u32, Lru>, AsideCache<u32, u32>, MockClock) {
    let clock = MockClock::new();
    let users: Cache<u32, u32, Lru> = Cache::builder()
        .max_capacity(4)
        .shards(1)
        .clock(clock.clone())
        .policy(Lru::new())
        .build()
        .unwrap();
    let products: AsideCache<u32, u32> = AsideCache::builder()
        .max_capacity(100)
        .time_to_live(Duration::from_secs(60))
        .no_xfetch()
        .clock(clock.clone())
        .build()
        .unwrap();
    (users, products, clock)
}

#[test]
fn samples_totals_and_deltas_per_cache() {
    let (users, products, clock) = two_caches();
    let mut sampler = MetricsSampler::new();
    sampler
        .add("user", users.clone())
        .add("product", products.clone());
    assert_eq!(sampler.names().collect::<Vec<_>>(), ["user", "product"]);

    // Before anything: zeros.
    let s0 = sampler.sample(at(0));
    assert_eq!(s0.len(), 2);
    assert!(
        s0.iter()
            .all(|m| m.totals == CacheCounts::default() && m.hit_ratio == 0.0)
    );

    // user: 6 inserts into 4 slots (2 evictions), 3 hits, 2 misses, 1 invalidation, 1 expiry.
    for k in 0..6 {
        users.insert(k, k);
    }
    users.get(&5);
    users.get(&4);
    users.get(&3);
    users.get(&0);
    users.get(&1);
    users.invalidate(&5);
    users.insert_with_ttl(9, 9, Duration::from_secs(1)); // fits: 3 live after the invalidation
    clock.advance(Duration::from_secs(2));
    assert_eq!(users.get(&9), None); // expired: a miss and an expiration

    // product: 3 loads (one failing), then 2 hits.
    for k in 0..2 {
        products.get_with_blocking(k, || k * 10).unwrap();
    }
    let failed = products.try_get_with_blocking(7, || Err::<u32, _>("db down"));
    assert!(failed.is_err());
    products.get_with_blocking(0, || unreachable!()).unwrap();
    products.get_with_blocking(1, || unreachable!()).unwrap();

    let s1 = sampler.sample(at(10));
    let (u, p) = (&s1[0], &s1[1]);
    assert_eq!((u.name.as_str(), u.at), ("user", at(10)));
    assert_eq!(u.totals, counts([3, 3, 2, 1, 1, 7, 0, 0]));
    assert_eq!(
        u.delta, u.totals,
        "the first sample after zeros: delta = totals"
    );
    assert_eq!(u.entries, 3);
    assert_eq!(u.hit_ratio, 0.5);

    assert_eq!(p.name, "product");
    // Each load is preceded by a miss; 2 hits after.
    assert_eq!((p.totals.hits, p.totals.misses), (2, 3));
    assert_eq!((p.totals.loads, p.totals.load_errors), (3, 1));
    assert_eq!(p.totals.inserts, 2);
    assert_eq!(p.entries, 2);

    // Ten more seconds: products expire (60 s TTL) only later; users see 2 hits.
    users.get(&3);
    users.get(&4);
    let s2 = sampler.sample(at(20));
    assert_eq!(s2[0].delta, counts([2, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(s2[0].totals.hits, 5);
    assert_eq!(s2[0].hit_ratio, 1.0);
    assert_eq!(s2[0].totals.hit_ratio(), 5.0 / 8.0);
    assert_eq!(s2[1].delta, CacheCounts::default());
    assert_eq!(s2[1].hit_ratio, 0.0, "no lookups in the interval");

    // The products' TTL passes: the next reads miss and reload.
    clock.advance(Duration::from_secs(60));
    products.get_with_blocking(0, || 1).unwrap();
    let s3 = sampler.sample(at(30));
    assert_eq!(s3[1].delta.misses, 1);
    assert_eq!(s3[1].delta.loads, 1);
    assert_eq!(
        s3[1].to_string(),
        "product: 0 hits, 1 misses (0.0%), 0 evictions, 1 expirations, 0 invalidations, \
         1 loads, 0 load errors, 2 entries"
    );
}

#[test]
fn re_adding_a_name_replaces_the_cache_and_restarts_its_deltas() {
    let a: Cache<u32, u32> = Cache::new(10);
    let b: Cache<u32, u32> = Cache::new(10);
    let mut sampler = MetricsSampler::new();
    sampler.add("x", a.clone()).add("y", a.clone());
    a.get(&1);
    assert_eq!(sampler.sample(at(0))[0].delta.misses, 1);
    sampler.add("x", b.clone());
    b.insert(1, 1);
    let s = sampler.sample(at(1));
    assert_eq!(sampler.names().collect::<Vec<_>>(), ["x", "y"]);
    assert_eq!(s[0].totals, counts([0, 0, 0, 0, 0, 1, 0, 0]));
    assert_eq!(s[1].delta, CacheCounts::default());
}

/// A panicking loader is counted and leaves the sampler (and the cache) working.
#[test]
fn panicking_loader_is_sampled_as_a_load() {
    let cache: AsideCache<u32, u32> = AsideCache::builder().build().unwrap();
    let mut sampler = MetricsSampler::new();
    sampler.add("c", cache.clone());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cache.get_with_blocking(1, || panic!("loader bug"))
    }));
    assert!(r.is_err());
    assert_eq!(cache.get_with_blocking(1, || 5).unwrap(), 5);
    let m: CacheMetric = sampler.sample(at(0)).remove(0);
    assert_eq!(m.totals.loads, 2);
    assert_eq!(m.entries, 1);
}

#[cfg(feature = "metrics")]
mod facade {
    use super::*;
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use metrics_util::{CompositeKey, MetricKind};
    use std::collections::BTreeMap;

    type Seen = BTreeMap<(String, Vec<(String, String)>), (MetricKind, f64, Option<String>)>;

    fn snapshot(recorder: &DebuggingRecorder) -> Seen {
        recorder
            .snapshotter()
            .snapshot()
            .into_vec()
            .into_iter()
            .map(
                |(key, _unit, description, value): (CompositeKey, _, _, DebugValue)| {
                    let labels = key
                        .key()
                        .labels()
                        .map(|l| (l.key().to_string(), l.value().to_string()))
                        .collect();
                    let value = match value {
                        DebugValue::Counter(n) => n as f64,
                        DebugValue::Gauge(g) => g.0,
                        // A histogram's value here: how many samples it holds.
                        DebugValue::Histogram(h) => h.len() as f64,
                    };
                    (
                        (key.key().name().to_string(), labels),
                        (key.kind(), value, description.map(|d| d.to_string())),
                    )
                },
            )
            .collect()
    }

    fn get(seen: &Seen, name: &str, cache: &str) -> (MetricKind, f64) {
        let key = (
            name.to_string(),
            vec![("cache".to_string(), cache.to_string())],
        );
        let (kind, value, _) = seen
            .get(&key)
            .unwrap_or_else(|| panic!("{name}{{cache={cache}}} not reported: {seen:#?}"));
        (*kind, *value)
    }

    #[test]
    fn exports_every_counter_and_gauge_labelled_by_cache() {
        let (users, products, _clock) = two_caches();
        let mut sampler = MetricsSampler::new();
        sampler
            .add("user", users.clone())
            .add("product", products.clone());
        for k in 0..6 {
            users.insert(k, k);
        }
        users.get(&5);
        users.get(&0);
        users.invalidate(&4);
        products.get_with_blocking(1, || 10).unwrap();
        products.get_with_blocking(1, || 10).unwrap();
        let _ = products.try_get_with_blocking(2, || Err::<u32, _>("down"));

        let recorder = DebuggingRecorder::new();
        metrics::with_local_recorder(&recorder, || sampler.sample(at(0)));
        let seen = snapshot(&recorder);

        use MetricKind::{Counter, Gauge, Histogram};
        let expected_user = [
            ("aside_cache_hits_total", Counter, 1.0),
            ("aside_cache_misses_total", Counter, 1.0),
            ("aside_cache_evictions_total", Counter, 2.0),
            ("aside_cache_rejections_total", Counter, 0.0),
            ("aside_cache_expirations_total", Counter, 0.0),
            ("aside_cache_invalidations_total", Counter, 1.0),
            ("aside_cache_inserts_total", Counter, 6.0),
            ("aside_cache_updates_total", Counter, 0.0),
            ("aside_cache_loads_total", Counter, 0.0),
            ("aside_cache_load_errors_total", Counter, 0.0),
            ("aside_cache_load_timeouts_total", Counter, 0.0),
            ("aside_cache_load_panics_total", Counter, 0.0),
            ("aside_cache_coalesced_total", Counter, 0.0),
            ("aside_cache_early_refreshes_total", Counter, 0.0),
            ("aside_cache_stale_served_total", Counter, 0.0),
            ("aside_cache_negative_hits_total", Counter, 0.0),
            ("aside_cache_discarded_total", Counter, 0.0),
            ("aside_cache_entries", Gauge, 3.0),
            ("aside_cache_hit_ratio", Gauge, 0.5),
        ];
        for (name, kind, value) in expected_user {
            assert_eq!(get(&seen, name, "user"), (kind, value), "{name}");
        }
        let expected_product = [
            ("aside_cache_hits_total", Counter, 1.0),
            ("aside_cache_misses_total", Counter, 2.0),
            ("aside_cache_loads_total", Counter, 2.0),
            ("aside_cache_load_errors_total", Counter, 1.0),
            ("aside_cache_inserts_total", Counter, 1.0),
            ("aside_cache_entries", Gauge, 1.0),
            ("aside_cache_hit_ratio", Gauge, 1.0 / 3.0),
            // The two loads, each at its latency bucket's bound.
            ("aside_cache_load_duration_seconds", Histogram, 2.0),
        ];
        for (name, kind, value) in expected_product {
            assert_eq!(get(&seen, name, "product"), (kind, value), "{name}");
        }
        // 19 metrics x 2 caches and the front door's latency histogram, nothing else, each
        // with exactly the `cache` label.
        assert_eq!(seen.len(), 39, "{seen:#?}");
        // Described once, with help text.
        let ((_, _), (_, _, help)) = seen.iter().next().unwrap();
        assert!(help.is_some(), "{seen:#?}");

        // Counters carry totals: a second sample reports the grown totals, never their sum.
        // The histogram gets only the loads since the previous sample.
        users.get(&2);
        products.get_with_blocking(3, || 30).unwrap();
        metrics::with_local_recorder(&recorder, || sampler.sample(at(10)));
        let seen = snapshot(&recorder);
        assert_eq!(
            get(&seen, "aside_cache_load_duration_seconds", "product"),
            (Histogram, 1.0)
        );
        assert_eq!(get(&seen, "aside_cache_hits_total", "user"), (Counter, 2.0));
        assert_eq!(
            get(&seen, "aside_cache_inserts_total", "user"),
            (Counter, 6.0)
        );
        assert_eq!(get(&seen, "aside_cache_hit_ratio", "user"), (Gauge, 1.0));
    }
}

#[cfg(feature = "async")]
mod task {
    use super::*;
    use tokio::sync::mpsc;

    /// The interval task on tokio's paused clock: a sample at once, then one every 10 s of
    /// (virtual) time, each with the delta of what happened in between.
    #[tokio::test(start_paused = true)]
    async fn samples_on_an_interval() {
        let cache: Cache<u32, u32> = Cache::new(100);
        let mut sampler = MetricsSampler::new();
        sampler.add("c", cache.clone());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = sampler.spawn(Duration::from_secs(10), move |rows| {
            tx.send((tokio::time::Instant::now(), rows.to_vec()))
                .unwrap();
        });

        let (t0, first) = rx.recv().await.unwrap();
        assert_eq!(first[0].totals, CacheCounts::default());
        for round in 1..=3u64 {
            for k in 0..round {
                cache.insert(k as u32, 0);
                cache.get(&(k as u32));
            }
            let (t, rows) = rx.recv().await.unwrap();
            assert_eq!(t - t0, Duration::from_secs(10 * round));
            assert_eq!(rows[0].delta.hits, round, "round {round}");
            assert_eq!(rows[0].totals.hits, round * (round + 1) / 2);
        }
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    }

    /// A panicking callback ends the task and reports the panic; the cache is unaffected.
    #[tokio::test(start_paused = true)]
    async fn panicking_callback_ends_the_task() {
        let cache: Cache<u32, u32> = Cache::new(10);
        let mut sampler = MetricsSampler::new();
        sampler.add("c", cache.clone());
        let task = sampler.spawn(Duration::from_secs(1), |_| panic!("sink bug"));
        assert!(task.await.unwrap_err().is_panic());
        cache.insert(1, 1);
        assert_eq!(cache.get(&1), Some(1));
    }
}

/// A `StatsSource` of the caller's that panics leaves the sampler as it was: the next
/// sample's deltas cover the whole interval for every cache.
#[test]
fn panicking_stats_source_leaves_the_sampler_unchanged() {
    use aside::CacheStats;
    use aside::sampler::StatsSource;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    struct Flaky(Arc<AtomicBool>);
    impl StatsSource for Flaky {
        fn cache_stats(&self) -> CacheStats {
            assert!(!self.0.load(Ordering::Relaxed), "stats backend down");
            CacheStats::default()
        }
        fn entries(&self) -> u64 {
            0
        }
    }

    let cache: Cache<u32, u32> = Cache::new(10);
    let fail = Arc::new(AtomicBool::new(false));
    let mut sampler = MetricsSampler::new();
    sampler
        .add("c", cache.clone())
        .add("flaky", Flaky(fail.clone()));
    cache.get(&1);
    assert_eq!(sampler.sample(at(0))[0].delta.misses, 1);
    cache.get(&2);
    fail.store(true, Ordering::Relaxed);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sampler.sample(at(1))));
    assert!(r.is_err());
    fail.store(false, Ordering::Relaxed);
    cache.get(&3);
    let s = sampler.sample(at(2));
    assert_eq!(
        s[0].delta.misses, 2,
        "the failed sample's interval is not lost"
    );
    assert_eq!(s[0].totals.misses, 3);
}
