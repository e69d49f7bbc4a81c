//! Write stalls: the slowest single inserts while a cache fills and then evicts.
//!
//! Each contender gets `N` distinct `u64 → u64` keys inserted in order into an empty cache of
//! capacity `N` (the fill: every growth of its tables happens here), then `N` more (the
//! eviction phase), one thread, and every insert is timed on its own. The report gives, per
//! contender, the slowest insert, the 99.99th percentile, the inserts over 1 ms, and where
//! the five slowest happened (insert number), so that growth steps show up at their sizes.
//!
//! Contenders: `aside` with its default policy (W-TinyLFU) and default sharding, `aside` with
//! one shard (the worst case: one lock, one table of `N` entries), moka's `sync::Cache` and
//! quick_cache's `sync::Cache`, all with capacity `N`.
//!
//! Run: `cargo bench --bench stalls` (`N` = 4,000,000; `ASIDE_BENCH_STALL_N=...` to change it;
//! `ASIDE_BENCH_QUICK=1` uses 200,000). Absolute times vary with the machine; compare the
//! contenders within one run.

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use aside::Cache;

/// Per-insert latencies in nanoseconds, in insert order.
fn time_inserts(n: u64, mut insert: impl FnMut(u64)) -> Vec<u64> {
    let mut times = Vec::with_capacity(2 * n as usize);
    for k in 0..2 * n {
        let start = Instant::now();
        insert(black_box(k));
        times.push(start.elapsed().as_nanos() as u64);
    }
    times
}

fn report(name: &str, times: &[u64]) {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let max = sorted.last().copied().unwrap_or(0);
    let p9999 = sorted[(sorted.len() as f64 * 0.9999) as usize].min(max);
    let over_1ms = times.iter().filter(|&&t| t > 1_000_000).count();
    let mut worst: Vec<(u64, usize)> = times.iter().enumerate().map(|(i, &t)| (t, i)).collect();
    worst.sort_unstable_by(|a, b| b.cmp(a));
    let top: Vec<String> = worst
        .iter()
        .take(5)
        .map(|&(t, i)| format!("{:.1} ms @ {i}", t as f64 / 1e6))
        .collect();
    println!(
        "| {name} | {:.2} | {:.1} | {over_1ms} | {} |",
        max as f64 / 1e6,
        p9999 as f64 / 1e3,
        top.join(", ")
    );
}

fn main() {
    let quick = std::env::var_os("ASIDE_BENCH_QUICK").is_some();
    let n: u64 = std::env::var("ASIDE_BENCH_STALL_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 200_000 } else { 4_000_000 });
    println!("Write stalls: {n} inserts into an empty cache of capacity {n}, then {n} more");
    println!();
    println!(
        "| contender | slowest insert (ms) | p99.99 (µs) | inserts over 1 ms | five slowest |"
    );
    println!("|---|---:|---:|---:|---|");

    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(n)
        .build()
        .expect("valid capacity");
    let times = time_inserts(n, |k| {
        cache.insert(k, k);
    });
    report(&format!("aside, {} shards", cache.shard_count()), &times);
    drop(cache);

    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(n)
        .shards(1)
        .build()
        .expect("valid capacity");
    let times = time_inserts(n, |k| {
        cache.insert(k, k);
    });
    report("aside, 1 shard", &times);
    drop(cache);

    let cache: moka::sync::Cache<u64, u64> = moka::sync::Cache::new(n);
    let times = time_inserts(n, |k| cache.insert(k, k));
    report("moka", &times);
    drop(cache);

    let cache = quick_cache::sync::Cache::<u64, u64>::new(n as usize);
    let times = time_inserts(n, |k| cache.insert(k, k));
    report("quick_cache", &times);
}
