//! Get-hit throughput on Zipf-distributed keys, one thread, for each built-in policy and an
//! unsynchronized `HashMap` as the floor. (The multi-threaded scenarios and the comparison
//! with moka and quick_cache live in the benchmark suite of the benchmarks issue.)
//!
//! Run: `cargo bench --bench get_hit`

#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;

use aside::Cache;
use aside::policy::{EvictionPolicy, Fifo, Lfu, Lru, SampledTtl};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

#[path = "common/zipf.rs"]
mod zipf;
use zipf::zipf_ranks;

const ENTRIES: u64 = 100_000;
const BATCH: usize = 4096;

fn bench_policy<P: EvictionPolicy>(c: &mut Criterion, name: &str, policy: P, keys: &[u64]) {
    let cache: Cache<u64, u64, P> = Cache::builder()
        .max_capacity(ENTRIES)
        .policy(policy)
        .seed(1)
        .build()
        .unwrap();
    for k in 0..ENTRIES {
        cache.insert(k, k);
    }
    let mut group = c.benchmark_group("get_hit_zipf_100k_1t");
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function(BenchmarkId::from_parameter(name), |b| {
        b.iter(|| {
            for k in keys {
                black_box(cache.get(k));
            }
        })
    });
    group.finish();
}

fn get_hit(c: &mut Criterion) {
    let keys = zipf_ranks(ENTRIES, BATCH, 7);
    bench_policy(c, "aside_lru", Lru::new(), &keys);
    bench_policy(c, "aside_lfu", Lfu::new(), &keys);
    bench_policy(c, "aside_fifo", Fifo::new(), &keys);
    bench_policy(c, "aside_sampled_ttl", SampledTtl::new(), &keys);

    let map: HashMap<u64, u64, ahash::RandomState> = (0..ENTRIES).map(|k| (k, k)).collect();
    let mut group = c.benchmark_group("get_hit_zipf_100k_1t");
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function(BenchmarkId::from_parameter("hashmap_floor"), |b| {
        b.iter(|| {
            for k in &keys {
                black_box(map.get(k).copied());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, get_hit);
criterion_main!(benches);
