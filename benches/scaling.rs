//! How the time per operation of `aside`'s LRU cache changes with its size: 10k, 100k, 1M and
//! (with `ASIDE_BENCH_FULL=1`) 10M entries of `u64 → u64`, default sharding, one thread.
//!
//! For each size the cache is filled to capacity, then:
//!
//! - **get-hit, Zipf(1.0)**: `get` of keys drawn from a seeded Zipf distribution over the keys
//!   present (the hot set stays in the CPU caches, as in the throughput bench);
//! - **get-hit, uniform**: `get` of keys drawn uniformly from the keys present (every lookup
//!   touches a random table bucket and slab slot: the memory-latency worst case);
//! - **insert-miss**: `get` of a key never seen, then `insert` it into the full cache (one LRU
//!   eviction each).
//!
//! For reference, the same Zipf and uniform lookups on a plain `HashMap<u64, u64>` holding the
//! same keys show what the growing working set alone costs (CPU caches and TLB).
//!
//! Each figure is the median of 7 rounds of a fixed number of operations; the table also gives
//! each column relative to the 10k figure (the target: flat within ±25%).
//!
//! Run: `cargo bench --bench scaling` (`ASIDE_BENCH_FULL=1` adds 10M; `ASIDE_BENCH_QUICK=1`
//! runs 10k and 100k with fewer operations; `ASIDE_BENCH_OUT=DIR` also writes the rows to
//! `DIR/scaling.csv`, see `common/out.rs`).

#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use aside::Cache;
use aside::policy::Lru;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[path = "common/out.rs"]
mod out;
#[path = "common/zipf.rs"]
mod zipf;
use zipf::zipf_ranks;

const ROUNDS: usize = 7;

fn env_on(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Median nanoseconds per operation of `ROUNDS` runs of `round`, which performs `ops`
/// operations and is told the round number.
fn median_ns(ops: usize, mut round: impl FnMut(usize)) -> f64 {
    let mut times: Vec<f64> = (0..ROUNDS)
        .map(|r| {
            let start = Instant::now();
            round(r);
            start.elapsed().as_nanos() as f64 / ops as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[ROUNDS / 2]
}

struct Row {
    size: usize,
    shards: usize,
    fill: f64,
    zipf: f64,
    uniform: f64,
    miss_insert: f64,
    map_zipf: f64,
    map_uniform: f64,
}

fn measure(size: usize, ops: usize) -> Row {
    let cache: Cache<u64, u64, Lru> = Cache::builder()
        .max_capacity(size as u64)
        .policy(Lru::new())
        .seed(1)
        .build()
        .expect("valid configuration");
    let start = Instant::now();
    for k in 0..size as u64 {
        cache.insert(k, k);
    }
    let fill = start.elapsed().as_nanos() as f64 / size as f64;
    let present: Vec<u64> = (0..size as u64).filter(|k| cache.contains_key(k)).collect();

    let zipf: Vec<u64> = zipf_ranks(present.len() as u64, ops, 7)
        .into_iter()
        .map(|r| present[r as usize])
        .collect();
    let mut rng = SmallRng::seed_from_u64(9);
    let uniform: Vec<u64> = (0..ops)
        .map(|_| present[rng.random_range(0..present.len())])
        .collect();
    drop(present);

    let get_all = |keys: &[u64]| {
        for k in keys {
            black_box(cache.get(k));
        }
    };
    let zipf_ns = median_ns(ops, |_| get_all(&zipf));
    let uniform_ns = median_ns(ops, |_| get_all(&uniform));
    let shards = cache.shard_count();
    let mut next = size as u64;
    let miss_ns = median_ns(ops, |_| {
        for _ in 0..ops {
            let k = next;
            next += 1;
            if black_box(cache.get(&k)).is_none() {
                cache.insert(k, k);
            }
        }
    });
    assert!(cache.len() <= size);
    drop(cache);

    // The same lookups on a plain HashMap holding the same keys: what memory alone costs.
    let map: HashMap<u64, u64, ahash::RandomState> = zipf
        .iter()
        .chain(&uniform)
        .map(|&k| (k, k))
        .chain((0..size as u64).map(|k| (k, k)))
        .collect();
    let map_get = |keys: &[u64]| {
        for k in keys {
            black_box(map.get(k));
        }
    };
    let map_zipf = median_ns(ops, |_| map_get(&zipf));
    let map_uniform = median_ns(ops, |_| map_get(&uniform));
    Row {
        size,
        shards,
        fill,
        zipf: zipf_ns,
        uniform: uniform_ns,
        miss_insert: miss_ns,
        map_zipf,
        map_uniform,
    }
}

fn label(n: usize) -> String {
    if n >= 1_000_000 {
        format!("{}M", n / 1_000_000)
    } else {
        format!("{}k", n / 1_000)
    }
}

fn main() {
    let (sizes, ops): (Vec<usize>, usize) = if env_on("ASIDE_BENCH_QUICK") {
        (vec![10_000, 100_000], 200_000)
    } else if env_on("ASIDE_BENCH_FULL") {
        (vec![10_000, 100_000, 1_000_000, 10_000_000], 2_000_000)
    } else {
        (vec![10_000, 100_000, 1_000_000], 2_000_000)
    };
    println!(
        "## Scaling of aside Lru (u64 → u64, default shards, 1 thread): ns per operation, \
         median of {ROUNDS} rounds of {ops} operations"
    );
    println!();
    let rows: Vec<Row> = sizes.iter().map(|&n| measure(n, ops)).collect();
    let base = &rows[0];
    println!(
        "| entries | shards | fill (ns/insert) | get-hit Zipf | vs 10k | get-hit uniform | vs 10k | insert-miss | vs 10k | HashMap get Zipf | vs 10k | HashMap get uniform | vs 10k |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let rel = |x: f64, b: f64| format!("{:+.0}%", (x / b - 1.0) * 100.0);
    for r in &rows {
        println!(
            "| {} | {} | {:.1} | {:.1} | {} | {:.1} | {} | {:.1} | {} | {:.1} | {} | {:.1} | {} |",
            label(r.size),
            r.shards,
            r.fill,
            r.zipf,
            rel(r.zipf, base.zipf),
            r.uniform,
            rel(r.uniform, base.uniform),
            r.miss_insert,
            rel(r.miss_insert, base.miss_insert),
            r.map_zipf,
            rel(r.map_zipf, base.map_zipf),
            r.map_uniform,
            rel(r.map_uniform, base.map_uniform),
        );
    }
    println!();

    let mut csv = out::Csv::new(
        "scaling",
        &[
            "entries",
            "shards",
            "ops",
            "fill_ns",
            "get_hit_zipf_ns",
            "get_hit_uniform_ns",
            "insert_miss_ns",
            "hashmap_get_zipf_ns",
            "hashmap_get_uniform_ns",
        ],
    );
    let ns = |x: f64| format!("{x:.3}");
    for r in &rows {
        csv.row(&[
            &r.size,
            &r.shards,
            &ops,
            &ns(r.fill),
            &ns(r.zipf),
            &ns(r.uniform),
            &ns(r.miss_insert),
            &ns(r.map_zipf),
            &ns(r.map_uniform),
        ]);
    }
    csv.write().expect("cannot write the ASIDE_BENCH_OUT file");
}
