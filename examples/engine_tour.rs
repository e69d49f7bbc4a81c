//! A tour of the engine: cache-aside reads in front of a slow in-memory "database", with
//! Zipf-distributed keys, writes that invalidate, and every built-in policy side by side.
//!
//! Run: `cargo run --release --example engine_tour`
//!
//! (The SQLite-backed demo with the async front door replaces this as the main job once the
//! front door lands.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use aside::policy::{EvictionPolicy, Fifo, Lfu, Lru, SampledTtl};
use aside::{Cache, CacheStats};
use rand::SeedableRng;
use rand::distr::Distribution;
use rand::rngs::SmallRng;

#[path = "../benches/common/zipf.rs"]
mod zipf;
use zipf::Zipf;

const ROWS: u64 = 50_000;
const CAPACITY: u64 = 5_000;
const THREADS: u64 = 4;
const OPS_PER_THREAD: u64 = 250_000;

/// The source of truth: a table of rows with a version each, and a query counter.
struct Database {
    rows: RwLock<HashMap<u64, u64>>,
    queries: AtomicU64,
}

impl Database {
    fn load(&self, id: u64) -> u64 {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.rows.read().unwrap()[&id]
    }

    fn update(&self, id: u64) {
        *self.rows.write().unwrap().get_mut(&id).unwrap() += 1;
    }
}

fn run<P: EvictionPolicy>(name: &str, policy: P) {
    let db = Arc::new(Database {
        rows: RwLock::new((0..ROWS).map(|id| (id, 0)).collect()),
        queries: AtomicU64::new(0),
    });
    let cache: Cache<u64, u64, P> = Cache::builder()
        .max_capacity(CAPACITY)
        .policy(policy)
        .time_to_live(Duration::from_secs(300))
        .ttl_jitter(Duration::from_secs(30))
        .build()
        .expect("valid configuration");
    let zipf = Arc::new(Zipf::new(ROWS));
    let stale = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (db, cache, zipf, stale) = (db.clone(), cache.clone(), zipf.clone(), stale.clone());
            std::thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(t);
                for i in 0..OPS_PER_THREAD {
                    let id = zipf.sample(&mut rng);
                    if i % 100 == 0 {
                        // Cache-aside write: update the source, then invalidate.
                        db.update(id);
                        cache.invalidate(&id);
                    } else {
                        // Cache-aside read: cache, miss, load, populate.
                        let v = cache.get_or_insert_with(id, || db.load(id));
                        if v > db.rows.read().unwrap()[&id] {
                            stale.fetch_add(1, Ordering::Relaxed); // impossible: versions only grow
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker panicked");
    }
    let elapsed = start.elapsed();
    let s: CacheStats = cache.stats();
    let reads = THREADS * OPS_PER_THREAD * 99 / 100;
    println!(
        "{name:<12} hit ratio {:>6.2}%  db queries {:>7} of {reads} reads  evicted {:>7}  \
         len {:>5}/{CAPACITY}  {:>6.1} M ops/s  impossible reads {}",
        s.hit_ratio() * 100.0,
        db.queries.load(Ordering::Relaxed),
        s.evicted_capacity,
        cache.len(),
        (THREADS * OPS_PER_THREAD) as f64 / elapsed.as_secs_f64() / 1e6,
        stale.load(Ordering::Relaxed),
    );
    cache.validate().expect("invariants hold");
}

fn main() {
    println!(
        "{THREADS} threads x {OPS_PER_THREAD} ops, Zipf(1.0) over {ROWS} rows, cache of {CAPACITY}, 1% writes"
    );
    run("LRU", Lru::new());
    run("LFU-DA", Lfu::new());
    run("FIFO", Fifo::new());
    run("sampled TTL", SampledTtl::new());
}
