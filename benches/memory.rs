//! Memory per entry, measured with a counting global allocator: every `aside` policy with and
//! without a TTL, moka (with and without a TTL), quick_cache, `lru::LruCache` and a plain
//! `HashMap`, filled with 1M entries of `u64 → u64` and of `String → Vec<u8>` (16-byte keys,
//! 32-byte values).
//!
//! bytes per entry = (bytes allocated − bytes freed while building and filling) / entries held.
//! The allocator counts the bytes *requested*; malloc's own per-allocation headers and size
//! classes come on top (they matter for `String → Vec<u8>`, two allocations per entry).
//! Payload: 16 bytes for `u64 → u64`; 24 + 24 inline plus 16 + 32 on the heap = 96 bytes for
//! `String → Vec<u8>`. Overhead = bytes per entry − payload.
//!
//! After each cache is dropped the harness checks that its bytes came back ("leak" column).
//!
//! Run: `cargo bench --bench memory` (`ASIDE_BENCH_QUICK=1`: 100k entries instead of 1M;
//! `ASIDE_BENCH_OUT=DIR`: also write the rows to `DIR/memory.csv`, see `common/out.rs`).

#![allow(missing_docs)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::Hash;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use aside::Cache;
use aside::policy::{EvictionPolicy, Fifo, Lfu, Lru, S3Fifo, SampledTtl, WTinyLfu};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[path = "common/out.rs"]
mod out;

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

const TTL: Duration = Duration::from_secs(3600);

/// Bytes currently allocated since `region` began.
fn net(region: &Region<'_, std::alloc::System>) -> i64 {
    let s = region.change();
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// What a cache under test offers the harness.
trait Subject<K, V> {
    fn put(&mut self, key: K, value: V);
    /// Entries held once all maintenance is done.
    fn settle_len(&mut self) -> usize;
    /// The cache's own estimate of its allocation, if it has one.
    fn own_estimate(&self) -> Option<usize> {
        None
    }
}

impl<K: Hash + Eq, V: Clone, P: EvictionPolicy> Subject<K, V> for Cache<K, V, P> {
    fn put(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
    fn settle_len(&mut self) -> usize {
        self.len()
    }
    fn own_estimate(&self) -> Option<usize> {
        Some(self.allocated_bytes())
    }
}

impl<K, V> Subject<K, V> for moka::sync::Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn put(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
    fn settle_len(&mut self) -> usize {
        self.run_pending_tasks();
        self.entry_count() as usize
    }
}

impl<K, V> Subject<K, V> for quick_cache::sync::Cache<K, V>
where
    K: Hash + Eq + Clone,
    V: Clone,
{
    fn put(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
    fn settle_len(&mut self) -> usize {
        self.len()
    }
}

impl<K: Hash + Eq, V> Subject<K, V> for lru::LruCache<K, V, ahash::RandomState> {
    fn put(&mut self, key: K, value: V) {
        lru::LruCache::put(self, key, value);
    }
    fn settle_len(&mut self) -> usize {
        self.len()
    }
}

impl<K: Hash + Eq, V> Subject<K, V> for HashMap<K, V, ahash::RandomState> {
    fn put(&mut self, key: K, value: V) {
        self.insert(key, value);
    }
    fn settle_len(&mut self) -> usize {
        self.len()
    }
}

struct Row {
    name: String,
    held: usize,
    per_entry: f64,
    estimate: Option<f64>,
    leak: i64,
    time: Duration,
}

/// Builds a cache inside a counting region, fills it with `n` generated entries, and measures.
fn measure<K, V, S: Subject<K, V>>(
    name: &str,
    n: usize,
    build: impl FnOnce() -> S,
    entry: impl Fn(usize) -> (K, V),
) -> Row {
    let started = Instant::now();
    let region = Region::new(GLOBAL);
    let mut cache = build();
    for i in 0..n {
        let (k, v) = entry(i);
        cache.put(k, v);
    }
    let held = cache.settle_len();
    let bytes = net(&region);
    let estimate = cache.own_estimate();
    drop(cache);
    let leak = net(&region);
    Row {
        name: name.to_string(),
        held,
        per_entry: bytes as f64 / held.max(1) as f64,
        estimate: estimate.map(|e| e as f64 / held.max(1) as f64),
        leak,
        time: started.elapsed(),
    }
}

fn aside_cache<K: Hash + Eq, V: Clone, P: EvictionPolicy>(
    n: usize,
    policy: P,
    ttl: bool,
) -> Cache<K, V, P> {
    let builder = Cache::builder()
        .max_capacity(n as u64)
        .policy(policy)
        .seed(1);
    let builder = if ttl {
        builder.time_to_live(TTL)
    } else {
        builder
    };
    builder.build().expect("valid configuration")
}

fn moka_cache<K, V>(n: usize, ttl: bool) -> moka::sync::Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let builder = moka::sync::Cache::builder().max_capacity(n as u64);
    if ttl {
        builder.time_to_live(TTL).build()
    } else {
        builder.build()
    }
}

/// Every subject, for one key/value type.
fn run_all<K, V>(n: usize, entry: impl Fn(usize) -> (K, V) + Copy) -> Vec<Row>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let mut rows = Vec::new();
    for ttl in [false, true] {
        let t = if ttl { "+ttl" } else { "" };
        rows.push(measure(
            &format!("aside_lru{t}"),
            n,
            || aside_cache(n, Lru::new(), ttl),
            entry,
        ));
        rows.push(measure(
            &format!("aside_lfu{t}"),
            n,
            || aside_cache(n, Lfu::new(), ttl),
            entry,
        ));
        rows.push(measure(
            &format!("aside_fifo{t}"),
            n,
            || aside_cache(n, Fifo::new(), ttl),
            entry,
        ));
        rows.push(measure(
            &format!("aside_sampled_ttl{t}"),
            n,
            || aside_cache(n, SampledTtl::new(), ttl),
            entry,
        ));
        rows.push(measure(
            &format!("aside_wtinylfu{t}"),
            n,
            || aside_cache(n, WTinyLfu::new(), ttl),
            entry,
        ));
        rows.push(measure(
            &format!("aside_s3fifo{t}"),
            n,
            || aside_cache(n, S3Fifo::new(), ttl),
            entry,
        ));
    }
    rows.push(measure(
        "aside_lru (1 shard)",
        n,
        || {
            Cache::builder()
                .max_capacity(n as u64)
                .shards(1)
                .policy(Lru::new())
                .seed(1)
                .build()
                .expect("valid configuration")
        },
        entry,
    ));
    rows.push(measure("moka_tinylfu", n, || moka_cache(n, false), entry));
    rows.push(measure(
        "moka_tinylfu+ttl",
        n,
        || moka_cache(n, true),
        entry,
    ));
    rows.push(measure(
        "quick_cache",
        n,
        || quick_cache::sync::Cache::new(n),
        entry,
    ));
    rows.push(measure(
        "lru::LruCache",
        n,
        || {
            lru::LruCache::with_hasher(
                NonZeroUsize::new(n).expect("n > 0"),
                ahash::RandomState::with_seeds(1, 2, 3, 4),
            )
        },
        entry,
    ));
    rows.push(measure(
        "HashMap (grown)",
        n,
        || HashMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4)),
        entry,
    ));
    rows
}

/// Appends `rows` to the CSV output (`kv` names the key and value types).
fn csv_rows(csv: &mut out::Csv, kv: &str, payload: f64, inserted: usize, rows: &[Row]) {
    for r in rows {
        csv.row(&[
            &kv,
            &payload,
            &inserted,
            &r.name,
            &r.held,
            &format!("{:.3}", r.per_entry),
            &format!("{:.3}", r.per_entry - payload),
            &out::opt(r.estimate.map(|e| format!("{e:.3}"))),
            &r.leak,
            &format!("{:.6}", r.time.as_secs_f64()),
        ]);
    }
}

fn print_table(title: &str, payload: f64, rows: &[Row]) {
    println!("### {title} (payload {payload} bytes per entry)");
    println!();
    println!(
        "| cache | entries held | bytes/entry | overhead | own estimate | leak after drop | time |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let estimate = r.estimate.map_or("-".to_string(), |e| format!("{e:.1}"));
        let mut line = String::new();
        let _ = write!(
            line,
            "| {} | {} | {:.1} | {:.1} | {} | {} | {:.2?} |",
            r.name,
            r.held,
            r.per_entry,
            r.per_entry - payload,
            estimate,
            r.leak,
            r.time
        );
        println!("{line}");
    }
    println!();
}

fn main() {
    let quick = std::env::var("ASIDE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let n: usize = if quick { 100_000 } else { 1_000_000 };
    println!("## Memory per entry, {n} entries inserted into caches of capacity {n}");
    println!();
    println!(
        "bytes/entry = net bytes requested from the allocator / entries held (sharded caches may \
         hold slightly fewer than {n}: a full shard evicts). own estimate = aside's \
         `allocated_bytes()` / entries (tables and slabs only)."
    );
    println!();

    // One-time lazy initialisations (hasher seeds, thread-locals) would otherwise be charged
    // to the first cache measured.
    let _ = run_all(1_000, |i| (i as u64, i as u64));
    let mut csv = out::Csv::new(
        "memory",
        &[
            "kv",
            "payload_bytes",
            "entries_inserted",
            "cache",
            "entries_held",
            "bytes_per_entry",
            "overhead_bytes",
            "own_estimate_bytes",
            "leak_bytes",
            "time_s",
        ],
    );
    let rows = run_all(n, |i| (i as u64, i as u64));
    print_table("u64 → u64", 16.0, &rows);
    csv_rows(&mut csv, "u64->u64", 16.0, n, &rows);

    let rows = run_all(n, |i| {
        let mut key = String::with_capacity(16);
        let _ = write!(key, "{i:016}");
        (key, vec![i as u8; 32])
    });
    print_table("String (16 bytes) → Vec<u8> (32 bytes)", 96.0, &rows);
    csv_rows(&mut csv, "String(16)->Vec<u8>(32)", 96.0, n, &rows);
    csv.write().expect("cannot write the ASIDE_BENCH_OUT file");
}
