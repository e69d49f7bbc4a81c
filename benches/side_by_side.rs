//! Every contender in one process, side by side: each built-in `aside` policy, moka,
//! quick_cache and a `Mutex<lru::LruCache>`, on the same key streams, in interleaved rounds
//! (A B C ... A B C ...), with medians and the ratios to quick_cache and to moka printed.
//! `aside_default_exact` is the default policy with `with_exact_hits(true)` (every hit
//! replayed in order), to show what marking hot entries' hits saves; `aside_lru_exact` is
//! `Lru::exact()` (every hit moves the entry), to show what moving once per period saves.
//!
//! Setup, per size N (10k, 100k, 1M keys; 10M with `ASIDE_BENCH_LONG=1`): every contender is
//! built for 2N entries and filled with the N keys in order, so every `get` hits. Each thread
//! replays its own seeded stream of Zipf(1.0) keys over `0..N`, rank `r` being key
//! `r × 2654435761 mod N` (so the hot keys are scattered through the fill order, as in real
//! traffic, not its first entries); a write is `insert(k, k)` over an
//! existing key. Scenarios:
//!
//! - **get-hit**: gets only;
//! - **mixed 90/10**: 90% gets, 10% inserts;
//! - **mixed 50/50**: half and half;
//!
//! at 1 and 2 threads. A round runs one contender for a fixed time (1 s; 0.1 s in quick mode)
//! and counts the operations of all its threads; each contender gets `ROUNDS` rounds per
//! scenario, interleaved with the others', and the median round is reported in M ops/s.
//! Peers run as their users run them: moka without `run_pending_tasks()` between operations
//! (its maintenance runs as it schedules it), quick_cache with its defaults.
//!
//! Then resident memory per entry: for each contender a child process (this binary, re-run
//! with `--rss`) reads its resident set size, fills a cache of 1M `u64 -> u64` entries (100k
//! in quick mode) and reads it again: bytes per entry = RSS growth / entries. It counts what
//! the allocator keeps resident (fragmentation, size classes), unlike `benches/memory.rs`,
//! which counts the bytes requested.
//!
//! Run: `cargo bench --bench side_by_side` (about 9 minutes; `ASIDE_BENCH_QUICK=1`: 10k keys,
//! 0.1 s rounds, about 20 s; `ASIDE_BENCH_LONG=1` adds 10M keys; `ASIDE_BENCH_FILTER=text`
//! keeps the contenders whose name contains it, plus the two peers; `ASIDE_BENCH_SIZES=100000`
//! (comma-separated) replaces the sizes; `ASIDE_BENCH_OUT=DIR`
//! also writes `DIR/side_by_side.csv` and `DIR/side_by_side_memory.csv`, see `common/out.rs`).

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use aside::Cache;
use aside::policy::{EvictionPolicy, Fifo, Lfu, Lru, S3Fifo, SampledTtl, WTinyLfu};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[path = "common/contenders.rs"]
mod contenders;
use contenders::{Contender, MutexLru, mutex_lru};
#[path = "common/moka.rs"]
mod moka_build;
#[path = "common/out.rs"]
mod out;
#[path = "common/zipf.rs"]
mod zipf;

const ROUNDS: usize = 3;
/// Operations per thread stream (a power of two; replayed in a loop).
const STREAM: usize = 1 << 20;
/// The top bit of a stream entry marks a write.
const WRITE: u64 = 1 << 63;
/// Operations between two looks at the clock.
const CHUNK: usize = 1024;

fn env_on(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The contenders, in the order the tables show them: the default policy first.
const NAMES: [&str; 11] = [
    "aside_default",
    "aside_default_exact",
    "aside_lru",
    "aside_lru_exact",
    "aside_fifo",
    "aside_s3fifo",
    "aside_lfu",
    "aside_sampled_ttl",
    "quick_cache",
    "moka",
    "mutex_lru",
];

/// One built contender (an enum, so that each round runs monomorphized code).
enum Any {
    Default(Cache<u64, u64, WTinyLfu>),
    Lru(Cache<u64, u64, Lru>),
    Fifo(Cache<u64, u64, Fifo>),
    S3Fifo(Cache<u64, u64, S3Fifo>),
    Lfu(Cache<u64, u64, Lfu>),
    SampledTtl(Cache<u64, u64, SampledTtl>),
    Quick(quick_cache::sync::Cache<u64, u64>),
    Moka(moka::sync::Cache<u64, u64>),
    MutexLru(MutexLru),
}

fn aside<P: EvictionPolicy>(capacity: u64, policy: P) -> Cache<u64, u64, P> {
    Cache::builder()
        .max_capacity(capacity)
        .policy(policy)
        .build()
        .expect("valid configuration")
}

impl Any {
    fn build(name: &str, capacity: u64) -> Self {
        match name {
            "aside_default" => Self::Default(aside(capacity, WTinyLfu::new())),
            "aside_default_exact" => {
                Self::Default(aside(capacity, WTinyLfu::new().with_exact_hits(true)))
            }
            "aside_lru" => Self::Lru(aside(capacity, Lru::new())),
            "aside_lru_exact" => Self::Lru(aside(capacity, Lru::exact())),
            "aside_fifo" => Self::Fifo(aside(capacity, Fifo::new())),
            "aside_s3fifo" => Self::S3Fifo(aside(capacity, S3Fifo::new())),
            "aside_lfu" => Self::Lfu(aside(capacity, Lfu::new())),
            "aside_sampled_ttl" => Self::SampledTtl(aside(capacity, SampledTtl::new())),
            "quick_cache" => Self::Quick(quick_cache::sync::Cache::new(capacity as usize)),
            "moka" => Self::Moka(moka_build::moka_cache(capacity, false)),
            "mutex_lru" => Self::MutexLru(mutex_lru(capacity)),
            other => panic!("unknown contender {other}"),
        }
    }

    /// Runs `f` on the concrete cache.
    fn with<R>(&self, f: impl Visit<R>) -> R {
        match self {
            Self::Default(c) => f.visit(c),
            Self::Lru(c) => f.visit(c),
            Self::Fifo(c) => f.visit(c),
            Self::S3Fifo(c) => f.visit(c),
            Self::Lfu(c) => f.visit(c),
            Self::SampledTtl(c) => f.visit(c),
            Self::Quick(c) => f.visit(c),
            Self::Moka(c) => f.visit(c),
            Self::MutexLru(c) => f.visit(c),
        }
    }
}

/// A generic operation over any contender type.
trait Visit<R> {
    fn visit<C: Contender + Sync>(self, c: &C) -> R;
}

struct Fill(u64);

impl Visit<()> for Fill {
    fn visit<C: Contender + Sync>(self, c: &C) {
        for k in 0..self.0 {
            c.insert(k, k);
        }
        c.settle();
    }
}

/// One timed round: every thread replays its stream until the time is up.
struct Round<'a> {
    streams: &'a [Vec<u64>],
    time: Duration,
}

impl Visit<f64> for Round<'_> {
    fn visit<C: Contender + Sync>(self, c: &C) -> f64 {
        let barrier = Barrier::new(self.streams.len());
        let time = self.time;
        let (ops, elapsed) = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .streams
                .iter()
                .map(|stream| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        let start = Instant::now();
                        let (mut i, mut ops) = (0usize, 0u64);
                        loop {
                            for _ in 0..CHUNK {
                                let op = stream[i & (STREAM - 1)];
                                i += 1;
                                if op & WRITE != 0 {
                                    let k = op & !WRITE;
                                    c.insert(k, k);
                                } else {
                                    black_box(c.get(op));
                                }
                            }
                            ops += CHUNK as u64;
                            let elapsed = start.elapsed();
                            if elapsed >= time {
                                return (ops, elapsed);
                            }
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("bench thread"))
                .fold((0u64, Duration::ZERO), |(o, e), (ops, el)| {
                    (o + ops, e.max(el))
                })
        });
        ops as f64 / elapsed.as_secs_f64() / 1e6
    }
}

#[derive(Clone, Copy)]
struct Mix {
    name: &'static str,
    write_pct: u32,
}

const MIXES: [Mix; 3] = [
    Mix {
        name: "get-hit",
        write_pct: 0,
    },
    Mix {
        name: "mixed 90/10",
        write_pct: 10,
    },
    Mix {
        name: "mixed 50/50",
        write_pct: 50,
    },
];

/// The key of Zipf rank `rank` among `n` keys: a fixed permutation of `0..n` (multiplication
/// by a prime that divides no size used here), so that the hottest keys are not also the
/// first ones the fill inserts. With key = rank, the hot entries would sit side by side in
/// every contender that lays entries out in insertion order (slab ids, arena slots, per-entry
/// policy state), a locality real traffic does not give them.
fn scatter(rank: u64, n: u64) -> u64 {
    const PRIME: u128 = 2_654_435_761;
    debug_assert!(n % 2_654_435_761 != 0);
    ((u128::from(rank) * PRIME) % u128::from(n)) as u64
}

/// `threads` seeded streams of Zipf keys over `0..keys`, `write_pct`% of them writes.
fn streams(zipf: &zipf::Zipf, n: u64, threads: usize, write_pct: u32) -> Vec<Vec<u64>> {
    (0..threads)
        .map(|t| {
            let keys = zipf.samples(STREAM, 0x5EED + t as u64);
            let mut rng = SmallRng::seed_from_u64(0xC0FFEE + t as u64);
            keys.into_iter()
                .map(|rank| scatter(rank, n))
                .map(|k| {
                    if rng.random_range(0..100) < write_pct {
                        k | WRITE
                    } else {
                        k
                    }
                })
                .collect()
        })
        .collect()
}

struct Result {
    keys: u64,
    threads: usize,
    mix: &'static str,
    contender: &'static str,
    rounds: Vec<f64>,
}

impl Result {
    fn median(&self) -> f64 {
        let mut r = self.rounds.clone();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    }
}

fn median_of(results: &[Result], keys: u64, threads: usize, mix: &str, who: &str) -> Option<f64> {
    results
        .iter()
        .find(|r| r.keys == keys && r.threads == threads && r.mix == mix && r.contender == who)
        .map(Result::median)
}

fn size_name(keys: u64) -> String {
    match keys {
        k if k >= 1_000_000 => format!("{}M", k / 1_000_000),
        k => format!("{}k", k / 1_000),
    }
}

fn contenders() -> Vec<&'static str> {
    let filter = std::env::var("ASIDE_BENCH_FILTER").unwrap_or_default();
    NAMES
        .into_iter()
        .filter(|n| filter.is_empty() || n.contains(&filter) || *n == "quick_cache" || *n == "moka")
        .collect()
}

fn throughput(sizes: &[u64], time: Duration) -> Vec<Result> {
    let names = contenders();
    let mut results = Vec::new();
    for &keys in sizes {
        let started = Instant::now();
        let built: Vec<(&str, Any)> = names
            .iter()
            .map(|&n| {
                let c = Any::build(n, 2 * keys);
                c.with(Fill(keys));
                (n, c)
            })
            .collect();
        eprintln!(
            "{} keys: {} contenders built and filled in {:.1} s",
            size_name(keys),
            built.len(),
            started.elapsed().as_secs_f64()
        );
        let zipf = zipf::Zipf::new(keys);
        for threads in [1, 2] {
            for mix in MIXES {
                let streams = streams(&zipf, keys, threads, mix.write_pct);
                let mut rows: Vec<Result> = names
                    .iter()
                    .map(|&contender| Result {
                        keys,
                        threads,
                        mix: mix.name,
                        contender,
                        rounds: Vec::new(),
                    })
                    .collect();
                for _ in 0..ROUNDS {
                    for (row, (_, c)) in rows.iter_mut().zip(&built) {
                        let round = Round {
                            streams: &streams,
                            time,
                        };
                        row.rounds.push(c.with(round));
                    }
                }
                results.extend(rows);
            }
        }
    }
    results
}

/// A table's header: the contender column, then one column per scenario.
fn print_header() {
    print!("| contender |");
    for mix in MIXES {
        print!(" {} |", mix.name);
    }
    println!();
    println!("|---|{}", "---|".repeat(MIXES.len()));
}

fn print_throughput(results: &[Result], sizes: &[u64]) {
    let names = contenders();
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".to_string(),
    };
    for &keys in sizes {
        for threads in [1, 2] {
            println!(
                "\n### {} keys, {threads} thread{}: median M ops/s of {ROUNDS} rounds (x quick_cache, x moka)\n",
                size_name(keys),
                if threads == 1 { "" } else { "s" }
            );
            print_header();
            for who in &names {
                print!("| {who} |");
                for mix in MIXES {
                    let m = median_of(results, keys, threads, mix.name, who);
                    let qc = median_of(results, keys, threads, mix.name, "quick_cache");
                    let moka = median_of(results, keys, threads, mix.name, "moka");
                    match m {
                        Some(v) => print!(" {v:.1} ({}, {}) |", ratio(m, qc), ratio(m, moka)),
                        None => print!(" - |"),
                    }
                }
                println!();
            }
        }
        println!(
            "\n### {} keys: scaling, 2-thread total / 1-thread\n",
            size_name(keys)
        );
        print_header();
        for who in &names {
            print!("| {who} |");
            for mix in MIXES {
                let one = median_of(results, keys, 1, mix.name, who);
                let two = median_of(results, keys, 2, mix.name, who);
                print!(" {} |", ratio(two, one));
            }
            println!();
        }
    }
    let mut csv = out::Csv::new(
        "side_by_side",
        &[
            "keys",
            "threads",
            "scenario",
            "contender",
            "median_mops",
            "min_mops",
            "max_mops",
            "x_quick_cache",
            "x_moka",
        ],
    );
    for r in results {
        let m = r.median();
        let qc = median_of(results, r.keys, r.threads, r.mix, "quick_cache");
        let moka = median_of(results, r.keys, r.threads, r.mix, "moka");
        let min = r.rounds.iter().copied().fold(f64::INFINITY, f64::min);
        let max = r.rounds.iter().copied().fold(0.0, f64::max);
        csv.row(&[
            &r.keys,
            &r.threads,
            &r.mix,
            &r.contender,
            &format!("{m:.3}"),
            &format!("{min:.3}"),
            &format!("{max:.3}"),
            &out::opt(qc.map(|q| format!("{:.3}", m / q))),
            &out::opt(moka.map(|q| format!("{:.3}", m / q))),
        ]);
    }
    csv.write().expect("write side_by_side.csv");
}

/// Resident set size of this process, in bytes (Linux; `None` elsewhere).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The child side of the memory measurement: fills one contender, prints bytes per entry.
fn rss_child(name: &str, entries: u64) {
    let before = rss_bytes().expect("VmRSS");
    let c = Any::build(name, entries);
    c.with(Fill(entries));
    let after = rss_bytes().expect("VmRSS");
    println!("{:.1}", (after - before) as f64 / entries as f64);
    drop(black_box(c));
}

fn memory(entries: u64) {
    let exe = std::env::current_exe().expect("own path");
    println!(
        "\n### Resident bytes per entry, {} `u64 -> u64` entries (RSS growth of a process that only fills the cache)\n",
        size_name(entries)
    );
    println!("| contender | bytes per entry | x quick_cache |");
    println!("|---|---|---|");
    let mut rows = Vec::new();
    for name in contenders() {
        let out = std::process::Command::new(&exe)
            .args(["--rss", name, &entries.to_string()])
            .output()
            .expect("run the memory child");
        let text = String::from_utf8_lossy(&out.stdout);
        let bytes: Option<f64> = text.trim().parse().ok();
        rows.push((name, bytes));
    }
    let qc = rows
        .iter()
        .find(|(n, _)| *n == "quick_cache")
        .and_then(|r| r.1);
    let mut csv = out::Csv::new(
        "side_by_side_memory",
        &["entries", "contender", "bytes_per_entry"],
    );
    for (name, bytes) in &rows {
        let ratio = match (bytes, qc) {
            (Some(b), Some(q)) if q > 0.0 => format!("{:.2}x", b / q),
            _ => "-".to_string(),
        };
        println!(
            "| {name} | {} | {ratio} |",
            bytes.map_or("-".to_string(), |b| format!("{b:.1}"))
        );
        csv.row(&[&entries, name, &out::opt(bytes.map(|b| format!("{b:.1}")))]);
    }
    csv.write().expect("write side_by_side_memory.csv");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--rss") {
        let entries = args[i + 2].parse().expect("entry count");
        return rss_child(&args[i + 1], entries);
    }
    // `cargo test --benches` runs bench targets with `--test`: nothing to check here.
    if args.iter().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let quick = env_on("ASIDE_BENCH_QUICK");
    let (mut sizes, time, mem): (Vec<u64>, _, _) = if quick {
        (vec![10_000], Duration::from_millis(100), 100_000)
    } else {
        let mut sizes = vec![10_000, 100_000, 1_000_000];
        if env_on("ASIDE_BENCH_LONG") {
            sizes.push(10_000_000);
        }
        (sizes, Duration::from_secs(1), 1_000_000)
    };
    if let Ok(list) = std::env::var("ASIDE_BENCH_SIZES") {
        sizes = list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("ASIDE_BENCH_SIZES: key counts, comma-separated")
            })
            .collect();
    }
    println!(
        "side_by_side: {} cores, sizes {:?}, {} rounds of {:?} per contender and scenario",
        std::thread::available_parallelism().map_or(1, usize::from),
        sizes,
        ROUNDS,
        time
    );
    let results = throughput(&sizes, time);
    print_throughput(&results, &sizes);
    memory(mem);
}
