//! Throughput of every `aside` policy against moka, quick_cache, a `Mutex<lru::LruCache>` and an
//! unsynchronized `HashMap` floor, on 1 and 2 threads.
//!
//! Scenarios (keys `u64`, values `u64`, seeded Zipf(1.0) key streams):
//!
//! | group | per operation |
//! |---|---|
//! | `get_hit/zipf/{size}/{n}t` | `get` of a key that is present (the cache is pre-filled; the Zipf ranks map onto the keys actually present after the fill) |
//! | `miss_insert/unique/{size}/{n}t` | `get` of a key never seen (a miss), then `insert` it into the full cache (evicting) |
//! | `mixed90/zipf/{size}/{n}t` | 90% `get`, 10% `insert` (overwrite) of Zipf keys over the pre-filled key range |
//! | `mixed50/zipf/{size}/{n}t` | 50% `get`, 50% `insert` |
//!
//! Each measurement runs a fixed number of operations split evenly over the threads
//! (`std::thread::scope` inside `iter_custom`; wall time from a start barrier to the last
//! join), so the reported throughput (`Throughput::Elements`) is the total over all threads.
//! The `HashMap` floor (behind a `RefCell`) runs on one thread only.
//!
//! Sizes: 100k entries; with `ASIDE_BENCH_FULL=1` also 10k and 1M; with `ASIDE_BENCH_QUICK=1`
//! only 10k (the CI smoke run). Run:
//!
//! ```text
//! cargo bench --bench throughput
//! cargo bench --bench throughput -- 'get_hit/zipf/100k/2t'     # one group
//! ASIDE_BENCH_QUICK=1 cargo bench --bench throughput -- --warm-up-time 0.2 --measurement-time 0.5
//! ```

#![allow(missing_docs)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use aside::Cache;
use aside::policy::{EvictionPolicy, Fifo, Lfu, Lru, S3Fifo, SampledTtl, WTinyLfu};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[path = "common/contenders.rs"]
mod contenders;
use contenders::{Contender, mutex_lru};
#[path = "common/moka.rs"]
mod moka_common;
use moka_common::moka_cache;
#[path = "common/zipf.rs"]
mod zipf;
use zipf::zipf_ranks;

/// Operations per criterion iteration (split over the threads).
const BATCH: u64 = 1024;
/// Length of each pre-generated key stream (a power of two; threads start at different offsets).
const STREAM: usize = 1 << 20;
/// Marks a write in a mixed stream.
const WRITE: u64 = 1 << 63;

/// The cache sizes to run, from the environment.
fn sizes() -> Vec<u64> {
    let on = |var: &str| std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0");
    if on("ASIDE_BENCH_QUICK") {
        vec![10_000]
    } else if on("ASIDE_BENCH_FULL") {
        vec![10_000, 100_000, 1_000_000]
    } else {
        vec![100_000]
    }
}

fn size_label(n: u64) -> String {
    if n >= 1_000_000 && n % 1_000_000 == 0 {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n % 1_000 == 0 {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

// ----- contenders (the shared adapters, plus the single-threaded floor) -----

/// The floor: a plain `HashMap` on one thread. To stay bounded under `miss_insert`, whose fresh
/// keys are consecutive, inserting key `k` past the capacity removes key `k - capacity`.
struct HashMapFloor {
    map: RefCell<HashMap<u64, u64, ahash::RandomState>>,
    capacity: u64,
}

impl Contender for HashMapFloor {
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.map.borrow().get(&key).copied()
    }
    #[inline]
    fn insert(&self, key: u64, value: u64) {
        let mut map = self.map.borrow_mut();
        map.insert(key, value);
        if map.len() as u64 > self.capacity {
            map.remove(&key.wrapping_sub(self.capacity));
        }
    }
    fn contains(&self, key: u64) -> bool {
        self.map.borrow().contains_key(&key)
    }
}

fn aside<P: EvictionPolicy>(size: u64, policy: P) -> Cache<u64, u64, P> {
    Cache::builder()
        .max_capacity(size)
        .policy(policy)
        .seed(1)
        .build()
        .expect("valid configuration")
}

fn moka_segmented(size: u64) -> moka::sync::SegmentedCache<u64, u64> {
    moka::sync::SegmentedCache::builder(8)
        .max_capacity(size)
        .build()
}

fn hashmap_floor(size: u64) -> HashMapFloor {
    HashMapFloor {
        map: RefCell::new(HashMap::with_capacity_and_hasher(
            size as usize,
            ahash::RandomState::with_seeds(1, 2, 3, 4),
        )),
        capacity: size,
    }
}

// ----- scenarios -----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    GetHit,
    MissInsert,
    /// Percentage of writes.
    Mixed(u32),
}

impl Scenario {
    fn group(self, size: u64, threads: usize) -> String {
        let (name, dist) = match self {
            Self::GetHit => ("get_hit".to_string(), "zipf"),
            Self::MissInsert => ("miss_insert".to_string(), "unique"),
            Self::Mixed(w) => (format!("mixed{}", 100 - w), "zipf"),
        };
        format!("{name}/{dist}/{}/{threads}t", size_label(size))
    }
}

/// Everything a scenario needs that does not depend on the contender.
struct Workload {
    scenario: Scenario,
    size: u64,
    /// Zipf ranks over `0..size`, with the write bit set on writes (mixed scenarios).
    stream: Vec<u64>,
}

impl Workload {
    fn new(scenario: Scenario, size: u64) -> Self {
        let mut stream = zipf_ranks(size, STREAM, 7);
        if let Scenario::Mixed(writes) = scenario {
            let mut rng = SmallRng::seed_from_u64(11);
            for word in &mut stream {
                if rng.random_range(0..100) < writes {
                    *word |= WRITE;
                }
            }
        }
        Self {
            scenario,
            size,
            stream,
        }
    }
}

/// A contender ready to run a workload: pre-filled, with the key stream mapped onto the keys
/// it actually holds (so that `get_hit` hits), and the next fresh key for `miss_insert`.
struct Prepared<'a, C> {
    cache: C,
    stream: Vec<u64>,
    next_fresh: std::cell::Cell<u64>,
    workload: &'a Workload,
}

fn prepare<C: Contender>(cache: C, workload: &Workload) -> Prepared<'_, C> {
    for k in 0..workload.size {
        cache.insert(k, k);
    }
    cache.settle();
    let stream = if workload.scenario == Scenario::GetHit {
        let present: Vec<u64> = (0..workload.size).filter(|&k| cache.contains(k)).collect();
        assert!(!present.is_empty(), "pre-fill left the cache empty");
        workload
            .stream
            .iter()
            .map(|&rank| present[(rank as usize) % present.len()])
            .collect()
    } else {
        workload.stream.clone()
    };
    Prepared {
        cache,
        stream,
        next_fresh: std::cell::Cell::new(workload.size),
        workload,
    }
}

/// One operation of the scenario: `seq` numbers the operation (unique over the run, used for
/// fresh keys), `word` is the stream entry.
#[inline(always)]
fn op<C: Contender>(cache: &C, scenario: Scenario, seq: u64, word: u64) {
    match scenario {
        Scenario::GetHit => {
            black_box(cache.get(word));
        }
        Scenario::MissInsert => {
            if black_box(cache.get(seq)).is_none() {
                cache.insert(seq, seq);
            }
        }
        Scenario::Mixed(_) => {
            if word & WRITE != 0 {
                let key = word & !WRITE;
                cache.insert(key, key);
            } else {
                black_box(cache.get(word));
            }
        }
    }
}

/// Runs `ops` operations on this thread, starting at stream position `offset` and fresh-key
/// number `seq0`.
#[inline(always)]
fn run_slice<C: Contender>(
    cache: &C,
    scenario: Scenario,
    stream: &[u64],
    offset: usize,
    seq0: u64,
    ops: u64,
) {
    let mask = stream.len() - 1;
    for i in 0..ops {
        let word = stream[(offset + i as usize) & mask];
        op(cache, scenario, seq0 + i, word);
    }
}

impl<C: Contender> Prepared<'_, C> {
    /// Reserves `ops` fresh keys and returns the first.
    fn fresh(&self, ops: u64) -> u64 {
        let first = self.next_fresh.get();
        self.next_fresh.set(first + ops);
        first
    }

    fn run_one_thread(&self, iters: u64) -> Duration {
        let ops = iters * BATCH;
        let seq0 = self.fresh(ops);
        let start = Instant::now();
        run_slice(
            &self.cache,
            self.workload.scenario,
            &self.stream,
            0,
            seq0,
            ops,
        );
        start.elapsed()
    }
}

impl<C: Contender + Sync> Prepared<'_, C> {
    fn run_threads(&self, threads: usize, iters: u64) -> Duration {
        if threads == 1 {
            return self.run_one_thread(iters);
        }
        let ops = iters * BATCH;
        let per_thread = ops / threads as u64;
        let seq0 = self.fresh(per_thread * threads as u64);
        let barrier = Barrier::new(threads + 1);
        let (cache, stream, scenario) = (&self.cache, &self.stream[..], self.workload.scenario);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        run_slice(
                            cache,
                            scenario,
                            stream,
                            t * (stream.len() / threads),
                            seq0 + t as u64 * per_thread,
                            per_thread,
                        );
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            for h in handles {
                h.join().expect("bench thread panicked");
            }
            start.elapsed()
        })
    }
}

/// Registers one benchmark; the cache is built and pre-filled only if the filter selects it.
fn bench_sync<C: Contender + Sync>(
    c: &mut Criterion,
    workload: &Workload,
    threads: usize,
    name: &str,
    make: impl FnOnce() -> C,
) {
    let mut make = Some(make);
    let mut prepared = None;
    let mut group = c.benchmark_group(workload.scenario.group(workload.size, threads));
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function(BenchmarkId::from_parameter(name), |b| {
        let p =
            prepared.get_or_insert_with(|| prepare(make.take().expect("built once")(), workload));
        b.iter_custom(|iters| p.run_threads(threads, iters));
    });
    group.finish();
}

/// [`bench_sync`] for a contender that cannot be shared: one thread only.
fn bench_unsync<C: Contender>(
    c: &mut Criterion,
    workload: &Workload,
    name: &str,
    make: impl FnOnce() -> C,
) {
    let mut make = Some(make);
    let mut prepared = None;
    let mut group = c.benchmark_group(workload.scenario.group(workload.size, 1));
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function(BenchmarkId::from_parameter(name), |b| {
        let p =
            prepared.get_or_insert_with(|| prepare(make.take().expect("built once")(), workload));
        b.iter_custom(|iters| p.run_one_thread(iters));
    });
    group.finish();
}

fn throughput(c: &mut Criterion) {
    for size in sizes() {
        for scenario in [
            Scenario::GetHit,
            Scenario::MissInsert,
            Scenario::Mixed(10),
            Scenario::Mixed(50),
        ] {
            let w = Workload::new(scenario, size);
            for threads in [1, 2] {
                bench_sync(c, &w, threads, "aside_lru", || aside(size, Lru::new()));
                bench_sync(c, &w, threads, "aside_lfu", || aside(size, Lfu::new()));
                bench_sync(c, &w, threads, "aside_fifo", || aside(size, Fifo::new()));
                bench_sync(c, &w, threads, "aside_sampled_ttl", || {
                    aside(size, SampledTtl::new())
                });
                bench_sync(c, &w, threads, "aside_wtinylfu", || {
                    aside(size, WTinyLfu::new())
                });
                bench_sync(c, &w, threads, "aside_s3fifo", || {
                    aside(size, S3Fifo::new())
                });
                bench_sync(c, &w, threads, "moka_tinylfu", || moka_cache(size, false));
                bench_sync(c, &w, threads, "moka_lru", || moka_cache(size, true));
                bench_sync(c, &w, threads, "moka_segmented8", || moka_segmented(size));
                bench_sync(c, &w, threads, "quick_cache", || {
                    quick_cache::sync::Cache::<u64, u64>::new(size as usize)
                });
                bench_sync(c, &w, threads, "mutex_lru", || mutex_lru(size));
                if threads == 1 {
                    bench_unsync(c, &w, "hashmap_floor", || hashmap_floor(size));
                }
            }
        }
    }
}

criterion_group!(benches, throughput);
criterion_main!(benches);
