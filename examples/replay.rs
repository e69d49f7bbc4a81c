//! Hit-ratio replay of real access traces: every `aside` policy against moka, quick_cache, an
//! exact LRU and Belady's optimum (OPT), with a built-in correctness check of `aside`'s LRU.
//!
//! Run:
//!
//! ```text
//! cargo run --release --example replay -- [--traces DIR] [--trace NAME[,NAME..]] [--quick]
//!     [--threads N] [--runs N]
//! ```
//!
//! - `--traces DIR`: where the traces are (default: `$ASIDE_TRACES`, else `../shared/traces`
//!   relative to the repository root). The files are read in place, zstd-compressed; nothing is
//!   copied. Without the folder the harness says so and exits successfully.
//! - `--trace NAME`: only the traces whose short name (`OLTP`, `web07`, `loop`, ...) or file
//!   name contains `NAME` (case-insensitive); repeat it or separate names with commas.
//! - `--quick`: only the small traces (the LIRS ones, OLTP, web07, corda).
//! - `--threads N`: also replay each trace with `N` threads against one shared cache, for
//!   the concurrent contenders: the threads take the requests in trace order from a shared
//!   cursor, one at a time, so the cache sees the trace's order up to the `N` requests in
//!   flight (a fixed round-robin split let one thread run thousands of requests ahead of the
//!   other, which reordered the trace and, on the small traces, decided the hit ratio).
//!   The result depends on how much the threads overlap: run it on an idle machine, and
//!   compare with a run pinned to one core (`taskset -c 0`), where the threads alternate in
//!   time slices and the cache sees the trace's exact order through all threads' stripes.
//! - `--runs N`: replay every contender whose result depends on a seed `N` times and report the
//!   mean (single-threaded). moka and quick_cache hash with random keys, so each run of theirs
//!   is a new draw; `aside`'s caches get seeds `0x5EED`, `0x5EED + 1`, ... The exact LRU, OPT,
//!   `aside_lru_1sh` and `moka_lru` (both exact LRUs) run once. The CSV's `runs` and `sd_pct`
//!   columns give the count and the standard deviation of the runs' hit%.
//! - `--only NAME[,NAME..]`: only these single-threaded contenders (exact names, as in the
//!   columns); the LRU and reference checks run only when `exact_lru`, `aside_lru_1sh` and
//!   `opt` are among them. With `--threads`, the shared pass runs the named contenders it has.
//!
//! With `ASIDE_BENCH_OUT=DIR` set, every hit ratio is also written to `DIR/replay.csv` (one
//! record per trace, mode, capacity and contender; see `benches/common/out.rs`).
//!
//! Semantics: read-through. Each request `get`s the key; a miss `insert`s it. Hit% is
//! hits / requests with cold misses counted, as in the traces' README.
//!
//! **moka** applies reads and writes to its policy lazily, in batches, when its internal
//! buffers fill up or a housekeeping interval passes. Replayed as fast as possible, a small
//! moka cache therefore holds up to a buffer's worth of entries over its capacity for a while,
//! which is worth up to two points on small caches. That is how moka's users run it, so
//! `moka_tinylfu`, the headline column, replays it that way (no `run_pending_tasks()` calls; the
//! moka figures quoted in the traces' README were obtained so). `moka_tinylfu_eager` calls
//! `run_pending_tasks()` after every insert (every miss), so that moka respects its capacity at
//! each request, the comparison at equal memory; that call dominates its replay time.
//! `moka_lru` (moka's LRU policy) is replayed eagerly too, as an exact LRU checked against the
//! `lru` crate. The multi-threaded pass runs moka as its users do.
//!
//! `aside_wtinylfu` is the default `WTinyLfu::new()`, whose window share is tuned per shard by
//! simulation. `aside_wtinylfu_w1` is `WTinyLfu::with_window_fraction(0.01)`, Caffeine's static
//! 1% window; `aside_wtinylfu_w0` is `with_window_fraction(0.0)`: TinyLFU admission in front of
//! a segmented LRU with no window, the configuration for loop- and scan-heavy workloads.
//! `aside_wtinylfu_exact` is the default with `with_exact_hits(true)`: every hit replayed in
//! order, where the default marks hits on protected entries and folds them in at the
//! segment's tail.
//!
//! The exact LRU is the `lru` crate; OPT is Belady's MIN (every miss is admitted, the cached
//! key used farthest in the future is evicted), computed from precomputed next-use indices with
//! a max-heap. Both are compared with the reference figures of the
//! traces' README, and `aside`'s one-shard LRU must match the exact LRU to the hit.

use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aside::Cache;
use aside::policy::{EvictionPolicy, Fifo, Lfu, Lru, S3Fifo, SampledTtl, WTinyLfu};

#[path = "../benches/common/moka.rs"]
mod moka_common;
use moka_common::moka_cache;
#[path = "../benches/common/out.rs"]
mod out;

/// The record format of a trace file, named by its suffix before `.zst`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// ARC: `start_block num_blocks ignore request_no`, expanded to `num_blocks` requests.
    Lis,
    /// LIRS: one integer per line; empty lines and `*` skipped.
    Txt,
    /// 4-byte big-endian integers.
    Be32,
    /// 8-byte big-endian integers.
    Be64,
    /// CSV with a header; the `lbn` column.
    Csv,
    /// `timestamp object_id size_bytes`; the object id (sizes ignored for now).
    Sized,
}

impl Format {
    fn of(file: &str) -> Option<Self> {
        let stem = file.strip_suffix(".zst").unwrap_or(file);
        Some(match stem.rsplit('.').next()? {
            "lis" => Self::Lis,
            "txt" => Self::Txt,
            "be32" => Self::Be32,
            "be64" => Self::Be64,
            "csv" => Self::Csv,
            "sized" => Self::Sized,
            _ => return None,
        })
    }
}

/// One trace the harness knows: where it is, what to replay it at, and the README's figures.
struct TraceSpec {
    name: &'static str,
    file: &'static str,
    /// Part of `--quick`.
    quick: bool,
    /// README figures: requests and unique keys (checks the parser).
    requests: u64,
    unique: u64,
    /// `(capacity, reference exact-LRU %, reference OPT %)`; capacities without README
    /// figures carry `None`.
    points: &'static [(usize, Option<f64>, Option<f64>)],
}

const fn p(cap: usize, lru: f64, opt: f64) -> (usize, Option<f64>, Option<f64>) {
    (cap, Some(lru), Some(opt))
}

/// The traces of `shared/traces/README.md` with its capacities and reference hit ratios. The
/// traces the README gives no capacity for (`scan`, `backf`, `cloudPhysicsIO`, `adaptsize`)
/// are replayed at capacities chosen here, with no reference.
const TRACES: &[TraceSpec] = &[
    TraceSpec {
        name: "OLTP",
        file: "arc-OLTP.lis.zst",
        quick: true,
        requests: 914_145,
        unique: 186_880,
        points: &[
            p(256, 16.69, 38.72),
            p(512, 23.69, 46.67),
            p(1000, 32.83, 53.61),
            p(2000, 42.47, 60.40),
        ],
    },
    TraceSpec {
        name: "P2",
        file: "arc-P2.lis.zst",
        quick: false,
        requests: 12_729_495,
        unique: 913_347,
        points: &[(20_000, Some(11.96), None), (160_000, Some(57.64), None)],
    },
    TraceSpec {
        name: "P3",
        file: "arc-P3.lis.zst",
        quick: false,
        requests: 3_912_296,
        unique: 762_543,
        points: &[(20_000, Some(2.28), None), (160_000, Some(51.58), None)],
    },
    TraceSpec {
        name: "loop",
        file: "lirs-loop.txt.zst",
        quick: true,
        requests: 0,
        unique: 0,
        points: &[
            p(256, 0.00, 25.22),
            p(512, 0.00, 50.54),
            p(768, 0.00, 75.81),
            p(1024, 99.80, 99.80),
        ],
    },
    TraceSpec {
        name: "sprite",
        file: "lirs-sprite.txt.zst",
        quick: true,
        requests: 0,
        unique: 0,
        points: &[
            p(128, 27.37, 57.23),
            p(256, 49.90, 75.06),
            p(512, 78.94, 88.20),
            p(768, 87.82, 91.95),
        ],
    },
    TraceSpec {
        name: "multi1",
        file: "lirs-multi1.txt.zst",
        quick: true,
        requests: 0,
        unique: 0,
        points: &[
            p(128, 23.09, 49.24),
            p(256, 43.05, 52.63),
            p(512, 46.66, 59.09),
            p(768, 47.67, 65.54),
        ],
    },
    TraceSpec {
        name: "multi2",
        file: "lirs-multi2.txt.zst",
        quick: true,
        requests: 0,
        unique: 0,
        points: &[
            p(128, 9.60, 37.90),
            p(256, 24.54, 46.96),
            p(512, 36.37, 53.83),
            p(768, 38.77, 58.63),
        ],
    },
    TraceSpec {
        name: "gli",
        file: "lirs-gli.txt.zst",
        quick: true,
        requests: 0,
        unique: 0,
        points: &[
            p(128, 0.91, 9.53),
            p(256, 0.91, 18.04),
            p(512, 0.98, 35.06),
            p(768, 1.16, 46.70),
        ],
    },
    TraceSpec {
        name: "cs",
        file: "lirs-cs.txt.zst",
        quick: true,
        requests: 0,
        unique: 0,
        points: &[
            p(128, 1.83, 9.38),
            p(256, 1.83, 16.93),
            p(512, 1.83, 32.03),
            p(768, 1.83, 47.13),
        ],
    },
    TraceSpec {
        name: "cpp",
        file: "lirs-cpp.txt.zst",
        quick: true,
        requests: 0,
        unique: 0,
        points: &[
            p(128, 76.61, 84.39),
            p(256, 83.08, 86.48),
            p(512, 84.81, 86.48),
            p(768, 86.26, 86.48),
        ],
    },
    TraceSpec {
        name: "ps",
        file: "lirs-ps.txt.zst",
        quick: true,
        requests: 0,
        unique: 0,
        points: &[
            p(128, 12.19, 36.50),
            p(256, 13.06, 53.43),
            p(512, 48.55, 58.33),
            p(768, 48.55, 63.23),
        ],
    },
    TraceSpec {
        name: "zigzag",
        file: "lirs-zigzag.txt.zst",
        quick: true,
        requests: 0,
        unique: 0,
        points: &[
            p(128, 6.11, 6.11),
            p(256, 12.26, 12.26),
            p(512, 24.57, 24.57),
            p(768, 36.87, 36.87),
        ],
    },
    TraceSpec {
        name: "scan",
        file: "lirs-scan.txt.zst",
        quick: true,
        requests: 0,
        unique: 0,
        points: &[(128, None, None), (256, None, None), (512, None, None)],
    },
    TraceSpec {
        name: "backf",
        file: "lirs-backf.txt.zst",
        quick: true,
        requests: 0,
        unique: 0,
        points: &[(128, None, None), (256, None, None), (512, None, None)],
    },
    TraceSpec {
        name: "web07",
        file: "cache2k-web07.be32.zst",
        quick: true,
        requests: 76_118,
        unique: 20_484,
        points: &[p(1000, 50.41, 63.58), p(3000, 58.54, 70.28)],
    },
    TraceSpec {
        name: "orm-busy",
        file: "cache2k-orm-busy.be32.zst",
        quick: false,
        requests: 5_000_000,
        unique: 76_349,
        points: &[p(1000, 78.78, 84.14), p(5000, 85.46, 91.40)],
    },
    TraceSpec {
        name: "w106",
        file: "cloudphysics-w106.be32.zst",
        quick: false,
        requests: 5_292_456,
        unique: 275_171,
        points: &[p(10_000, 83.81, 90.02), p(100_000, 93.75, 94.80)],
    },
    TraceSpec {
        name: "corda",
        file: "corda-vaultservice.be64.zst",
        quick: true,
        requests: 135_702,
        unique: 90_468,
        points: &[p(512, 33.33, 33.33), p(5000, 33.33, 33.33)],
    },
    TraceSpec {
        name: "cloudPhysicsIO",
        file: "libcachesim-cloudPhysicsIO.csv.zst",
        quick: false,
        requests: 113_872,
        unique: 48_974,
        points: &[(1000, None, None), (10_000, None, None)],
    },
    TraceSpec {
        name: "adaptsize",
        file: "adaptsize-request.sized.zst",
        quick: false,
        requests: 66_987,
        unique: 36_815,
        points: &[(1000, None, None), (10_000, None, None)],
    },
];

// ----- command line -----

/// The seed of the `aside` caches built next (`0x5EED + run`).
static ASIDE_SEED: AtomicU64 = AtomicU64::new(0x5EED);

struct Args {
    traces: PathBuf,
    names: Vec<String>,
    quick: bool,
    threads: Option<usize>,
    runs: usize,
    /// The single-threaded contenders to run (all when empty).
    only: Vec<String>,
}

fn usage() -> &'static str {
    "usage: replay [--traces DIR] [--trace NAME[,NAME..]] [--quick] [--threads N] [--runs N] [--only NAME[,NAME..]]"
}

fn parse_args() -> Result<Args, String> {
    let mut traces = std::env::var_os("ASIDE_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/traces"));
    let (mut names, mut quick, mut threads, mut runs) = (Vec::new(), false, None, 1);
    let mut only = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--traces" => traces = PathBuf::from(value("--traces")?),
            "--trace" => names.extend(
                value("--trace")?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_lowercase),
            ),
            "--quick" => quick = true,
            "--only" => {
                for name in value("--only")?.split(',').filter(|s| !s.is_empty()) {
                    if !SINGLE.contains(&name) {
                        return Err(format!("--only: unknown contender `{name}`"));
                    }
                    only.push(name.to_string());
                }
            }
            "--threads" => {
                let n: usize = value("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?;
                if n == 0 {
                    return Err("--threads must be at least 1".into());
                }
                threads = Some(n);
            }
            "--runs" => {
                runs = value("--runs")?
                    .parse()
                    .map_err(|e| format!("--runs: {e}"))?;
                if runs == 0 {
                    return Err("--runs must be at least 1".into());
                }
            }
            "-h" | "--help" => return Err(usage().into()),
            other => return Err(format!("unknown argument `{other}`\n{}", usage())),
        }
    }
    Ok(Args {
        traces,
        names,
        quick,
        threads,
        runs,
        only,
    })
}

// ----- trace parsers -----

fn parse_u64(s: &str, line: usize, file: &str) -> Result<u64, String> {
    s.trim()
        .parse()
        .map_err(|e| format!("{file}:{line}: bad integer `{s}`: {e}"))
}

/// Reads a whole trace into the sequence of requested keys.
fn load(path: &Path) -> Result<Vec<u64>, String> {
    let file_name = path
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default()
        .to_string();
    let format = Format::of(&file_name).ok_or(format!("{file_name}: unknown record format"))?;
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let decoder =
        zstd::stream::read::Decoder::new(file).map_err(|e| format!("{file_name}: {e}"))?;
    let mut reader = BufReader::with_capacity(1 << 20, decoder);
    let mut keys = Vec::new();
    let f = file_name.as_str();
    match format {
        Format::Be32 | Format::Be64 => {
            let width = if format == Format::Be32 { 4 } else { 8 };
            let mut bytes = Vec::new();
            reader
                .read_to_end(&mut bytes)
                .map_err(|e| format!("{f}: {e}"))?;
            if bytes.len() % width != 0 {
                return Err(format!(
                    "{f}: {} bytes is not a multiple of {width}",
                    bytes.len()
                ));
            }
            keys.reserve(bytes.len() / width);
            for chunk in bytes.chunks_exact(width) {
                keys.push(if width == 4 {
                    u64::from(u32::from_be_bytes(chunk.try_into().expect("4 bytes")))
                } else {
                    u64::from_be_bytes(chunk.try_into().expect("8 bytes"))
                });
            }
        }
        Format::Lis | Format::Txt | Format::Csv | Format::Sized => {
            let mut lbn_column = None;
            for (n, line) in reader.lines().enumerate() {
                let line = line.map_err(|e| format!("{f}:{}: {e}", n + 1))?;
                let line = line.trim();
                match format {
                    Format::Txt => {
                        if line.is_empty() || line == "*" {
                            continue;
                        }
                        keys.push(parse_u64(line, n + 1, f)?);
                    }
                    Format::Lis => {
                        if line.is_empty() {
                            continue;
                        }
                        let mut fields = line.split_whitespace();
                        let (Some(start), Some(count)) = (fields.next(), fields.next()) else {
                            return Err(format!("{f}:{}: expected 4 fields", n + 1));
                        };
                        let start = parse_u64(start, n + 1, f)?;
                        let count = parse_u64(count, n + 1, f)?;
                        keys.extend(start..start + count);
                    }
                    Format::Sized => {
                        if line.is_empty() {
                            continue;
                        }
                        let id = line
                            .split_whitespace()
                            .nth(1)
                            .ok_or(format!("{f}:{}: expected 3 fields", n + 1))?;
                        keys.push(parse_u64(id, n + 1, f)?);
                    }
                    Format::Csv => {
                        if line.is_empty() {
                            continue;
                        }
                        let Some(column) = lbn_column else {
                            let column = line
                                .split(',')
                                .position(|h| h.trim() == "lbn")
                                .ok_or(format!("{f}: no `lbn` column in the header `{line}`"))?;
                            lbn_column = Some(column);
                            continue;
                        };
                        let lbn = line
                            .split(',')
                            .nth(column)
                            .ok_or(format!("{f}:{}: no column {column}", n + 1))?;
                        keys.push(parse_u64(lbn, n + 1, f)?);
                    }
                    Format::Be32 | Format::Be64 => unreachable!(),
                }
            }
        }
    }
    Ok(keys)
}

// ----- contenders -----

/// Replays `keys` read-through against `access` (returns whether the request hit).
fn replay(keys: &[u64], mut access: impl FnMut(u64) -> bool) -> u64 {
    let mut hits = 0;
    for &k in keys {
        hits += u64::from(access(k));
    }
    hits
}

fn aside_cache<P: EvictionPolicy>(
    capacity: usize,
    policy: P,
    shards: Option<usize>,
) -> Cache<u64, (), P> {
    let builder = Cache::builder()
        .max_capacity(capacity as u64)
        .policy(policy)
        .seed(ASIDE_SEED.load(Ordering::Relaxed));
    let builder = match shards {
        Some(n) => builder.shards(n),
        None => builder,
    };
    builder.build().expect("valid configuration")
}

fn aside_hits<P: EvictionPolicy>(
    keys: &[u64],
    capacity: usize,
    policy: P,
    shards: Option<usize>,
) -> u64 {
    let cache = aside_cache(capacity, policy, shards);
    let hits = replay(keys, |k| {
        if cache.get(&k).is_some() {
            true
        } else {
            cache.insert(k, ());
            false
        }
    });
    assert!(cache.len() <= capacity, "aside over capacity");
    hits
}

/// moka's hits; `eager`: `run_pending_tasks()` after every insert, so that its capacity holds
/// at every step (see the module docs).
fn moka_hits(keys: &[u64], capacity: usize, lru: bool, eager: bool) -> u64 {
    let cache: moka::sync::Cache<u64, ()> = moka_cache(capacity as u64, lru);
    replay(keys, |k| {
        if cache.get(&k).is_some() {
            true
        } else {
            cache.insert(k, ());
            if eager {
                cache.run_pending_tasks();
            }
            false
        }
    })
}

fn quick_cache_hits(keys: &[u64], capacity: usize) -> u64 {
    let cache = quick_cache::sync::Cache::<u64, ()>::new(capacity);
    replay(keys, |k| {
        if cache.get(&k).is_some() {
            true
        } else {
            cache.insert(k, ());
            false
        }
    })
}

fn exact_lru_hits(keys: &[u64], capacity: usize) -> u64 {
    let Some(cap) = NonZeroUsize::new(capacity) else {
        return 0;
    };
    let mut lru = lru::LruCache::<u64, ()>::new(cap);
    replay(keys, |k| {
        if lru.get(&k).is_some() {
            true
        } else {
            lru.put(k, ());
            false
        }
    })
}

/// For each request, the index of the next request for the same key (`u32::MAX`: none).
fn next_uses(keys: &[u64]) -> Vec<u32> {
    assert!(
        keys.len() < u32::MAX as usize,
        "trace too long for u32 indices"
    );
    let mut next = vec![u32::MAX; keys.len()];
    let mut seen: HashMap<u64, u32> = HashMap::with_capacity(keys.len() / 4);
    for (i, &k) in keys.iter().enumerate().rev() {
        if let Some(j) = seen.insert(k, i as u32) {
            next[i] = j;
        }
    }
    next
}

/// Belady's MIN (demand paging, as the README's reference): on a miss with a full cache, the
/// cached key whose next use is farthest is evicted and the newcomer always enters.
///
/// A max-heap of `(next use, key)` with lazy deletion: when a key is hit at request `i`, its
/// heap entry says `i`, which is older than every live entry (all live next uses are `> i`), so
/// the heap's top is always live and stale entries only need pruning for memory.
fn opt_hits(keys: &[u64], next: &[u32], capacity: usize) -> u64 {
    if capacity == 0 {
        return 0;
    }
    let mut cached: HashMap<u64, u32> = HashMap::with_capacity(capacity * 2);
    let mut heap: BinaryHeap<(u32, u64)> = BinaryHeap::with_capacity(capacity * 4);
    let mut hits = 0;
    for (i, (&k, &nu)) in keys.iter().zip(next).enumerate() {
        if let Some(slot) = cached.get_mut(&k) {
            debug_assert_eq!(*slot as usize, i);
            hits += 1;
            *slot = nu;
            heap.push((nu, k));
        } else {
            if cached.len() == capacity {
                let &(far, victim) = heap.peek().expect("a full cache has heap entries");
                debug_assert_eq!(cached.get(&victim), Some(&far));
                heap.pop();
                cached.remove(&victim);
            }
            cached.insert(k, nu);
            heap.push((nu, k));
        }
        if heap.len() > capacity * 4 + 1024 {
            heap = cached.iter().map(|(&k, &nu)| (nu, k)).collect();
        }
    }
    hits
}

/// The single-threaded contenders, in column order.
const SINGLE: &[&str] = &[
    "aside_lru",
    "aside_lru_1sh",
    "aside_lfu",
    "aside_fifo",
    "aside_ttl",
    "aside_wtinylfu",
    "aside_wtinylfu_w1",
    "aside_wtinylfu_w0",
    "aside_wtinylfu_lru",
    "aside_wtinylfu_m0",
    "aside_s3fifo",
    "aside_wtinylfu_exact",
    "moka_tinylfu",
    "moka_tinylfu_eager",
    "moka_lru",
    "quick_cache",
    "exact_lru",
    "opt",
];

fn run_single(name: &str, keys: &[u64], next: &[u32], capacity: usize) -> u64 {
    match name {
        "aside_lru" => aside_hits(keys, capacity, Lru::new(), None),
        "aside_lru_1sh" => aside_hits(keys, capacity, Lru::exact(), Some(1)),
        "aside_lfu" => aside_hits(keys, capacity, Lfu::new(), None),
        "aside_fifo" => aside_hits(keys, capacity, Fifo::new(), None),
        "aside_ttl" => aside_hits(keys, capacity, SampledTtl::new(), None),
        "aside_wtinylfu" => aside_hits(keys, capacity, WTinyLfu::new(), None),
        "aside_wtinylfu_w1" => aside_hits(
            keys,
            capacity,
            WTinyLfu::with_window_fraction(0.01).expect("0.01 is a valid window"),
            None,
        ),
        "aside_wtinylfu_w0" => aside_hits(
            keys,
            capacity,
            WTinyLfu::with_window_fraction(0.0).expect("0.0 is a valid window"),
            None,
        ),
        "aside_wtinylfu_lru" => aside_hits(
            keys,
            capacity,
            WTinyLfu::new()
                .with_protected_fraction(0.0)
                .and_then(|p| p.with_sketch_start(0.5))
                .expect("0.0 and 0.5 are valid shares"),
            None,
        ),
        "aside_wtinylfu_m0" => aside_hits(
            keys,
            capacity,
            WTinyLfu::new()
                .with_admission_margin(0)
                .expect("0 is a valid margin"),
            None,
        ),
        "aside_s3fifo" => aside_hits(keys, capacity, S3Fifo::new(), None),
        "aside_wtinylfu_exact" => {
            aside_hits(keys, capacity, WTinyLfu::new().with_exact_hits(true), None)
        }
        "moka_tinylfu" => moka_hits(keys, capacity, false, false),
        "moka_tinylfu_eager" => moka_hits(keys, capacity, false, true),
        "moka_lru" => moka_hits(keys, capacity, true, true),
        "quick_cache" => quick_cache_hits(keys, capacity),
        "exact_lru" => exact_lru_hits(keys, capacity),
        "opt" => opt_hits(keys, next, capacity),
        _ => unreachable!("unknown contender {name}"),
    }
}

// ----- the multi-threaded replay -----

/// A cache shared by the replay threads.
trait Shared: Sync {
    fn access(&self, key: u64) -> bool;
}

impl<P: EvictionPolicy> Shared for Cache<u64, (), P> {
    fn access(&self, key: u64) -> bool {
        if self.get(&key).is_some() {
            true
        } else {
            self.insert(key, ());
            false
        }
    }
}

impl Shared for moka::sync::Cache<u64, ()> {
    fn access(&self, key: u64) -> bool {
        if self.get(&key).is_some() {
            true
        } else {
            // As its users run it: moka maintains itself when its buffers fill.
            self.insert(key, ());
            false
        }
    }
}

impl Shared for quick_cache::sync::Cache<u64, ()> {
    fn access(&self, key: u64) -> bool {
        if self.get(&key).is_some() {
            true
        } else {
            self.insert(key, ());
            false
        }
    }
}

/// Thread `t` of `threads` replays requests `t, t + threads, ...`, all against `cache`.
fn replay_shared(keys: &[u64], threads: usize, cache: &dyn Shared) -> u64 {
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let next = &next;
                s.spawn(move || {
                    let mut hits = 0;
                    while let Some(&k) = keys.get(next.fetch_add(1, Ordering::Relaxed)) {
                        hits += u64::from(cache.access(k));
                    }
                    hits
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("replay thread panicked"))
            .sum()
    })
}

const SHARED: &[&str] = &[
    "aside_lru",
    "aside_lfu",
    "aside_fifo",
    "aside_ttl",
    "aside_wtinylfu",
    "aside_wtinylfu_exact",
    "aside_wtinylfu_w1",
    "aside_s3fifo",
    "moka_tinylfu",
    "moka_lru",
    "quick_cache",
];

fn run_shared(name: &str, keys: &[u64], capacity: usize, threads: usize) -> u64 {
    match name {
        "aside_lru" => replay_shared(keys, threads, &aside_cache(capacity, Lru::new(), None)),
        "aside_lfu" => replay_shared(keys, threads, &aside_cache(capacity, Lfu::new(), None)),
        "aside_fifo" => replay_shared(keys, threads, &aside_cache(capacity, Fifo::new(), None)),
        "aside_ttl" => replay_shared(
            keys,
            threads,
            &aside_cache(capacity, SampledTtl::new(), None),
        ),
        "aside_wtinylfu" => {
            replay_shared(keys, threads, &aside_cache(capacity, WTinyLfu::new(), None))
        }
        "aside_wtinylfu_exact" => replay_shared(
            keys,
            threads,
            &aside_cache(capacity, WTinyLfu::new().with_exact_hits(true), None),
        ),
        "aside_wtinylfu_w1" => replay_shared(
            keys,
            threads,
            &aside_cache(
                capacity,
                WTinyLfu::with_window_fraction(0.01).unwrap(),
                None,
            ),
        ),
        "aside_s3fifo" => replay_shared(keys, threads, &aside_cache(capacity, S3Fifo::new(), None)),
        "moka_tinylfu" => replay_shared(
            keys,
            threads,
            &moka_cache::<u64, ()>(capacity as u64, false),
        ),
        "moka_lru" => replay_shared(keys, threads, &moka_cache::<u64, ()>(capacity as u64, true)),
        "quick_cache" => replay_shared(
            keys,
            threads,
            &quick_cache::sync::Cache::<u64, ()>::new(capacity),
        ),
        _ => unreachable!("unknown contender {name}"),
    }
}

// ----- reporting -----

fn pct(hits: u64, requests: usize) -> f64 {
    pct_of(hits as f64, requests)
}

/// `hits` (a mean, or a standard deviation, of hit counts) as a percentage of `requests`.
fn pct_of(hits: f64, requests: usize) -> f64 {
    if requests == 0 {
        0.0
    } else {
        hits * 100.0 / requests as f64
    }
}

/// Running totals of the checks, for the summary line.
#[derive(Default)]
struct Tally {
    lru_exact_pass: usize,
    lru_exact_fail: usize,
    sharded_within: usize,
    sharded_outside: usize,
    reference_ok: usize,
    reference_off: usize,
}

fn header(columns: &[&str]) -> String {
    let mut s = format!("| {:>8} |", "capacity");
    for c in columns {
        let _ = write!(s, " {c:>13} |");
    }
    s.push('\n');
    s.push_str("|---------:|");
    for _ in columns {
        s.push_str("--------------:|");
    }
    s
}

/// The columns of `replay.csv`; `mode` is `single` (the single-threaded replay) or `shared`
/// (`--threads N`, one cache shared by `threads` threads).
const CSV_COLUMNS: &[&str] = &[
    "trace",
    "file",
    "requests",
    "unique_keys",
    "mode",
    "threads",
    "capacity",
    "contender",
    "hits",
    "hit_pct",
    "runs",
    "sd_pct",
];

/// Whether a contender's hit ratio depends on a seed (and `--runs` repeats it).
fn seeded(name: &str) -> bool {
    !matches!(name, "exact_lru" | "opt" | "aside_lru_1sh" | "moka_lru")
}

fn replay_trace(
    spec: &TraceSpec,
    path: &Path,
    threads: Option<usize>,
    runs: usize,
    single: &[&str],
    tally: &mut Tally,
    csv: &mut out::Csv,
) {
    let started = Instant::now();
    let keys = match load(path) {
        Ok(keys) => keys,
        Err(e) => {
            println!("## {}: cannot read: {e}\n", spec.name);
            return;
        }
    };
    let loaded = started.elapsed();
    let next = next_uses(&keys);
    let unique = keys.len() - next.iter().filter(|&&n| n != u32::MAX).count();
    println!(
        "## {} ({}): {} requests, {} unique keys (loaded in {:.1?})",
        spec.name,
        spec.file,
        keys.len(),
        unique,
        loaded
    );
    if spec.requests != 0 && (spec.requests != keys.len() as u64 || spec.unique != unique as u64) {
        println!(
            "   note: the README says {} requests, {} unique keys",
            spec.requests, spec.unique
        );
    }
    println!();
    println!("{}", header(single));
    let mut checks = Vec::new();
    let mut spent = vec![std::time::Duration::ZERO; single.len()];
    for &(capacity, ref_lru, ref_opt) in spec.points {
        let mut row = format!("| {capacity:>8} |");
        let mut hits = HashMap::new();
        for (i, &name) in single.iter().enumerate() {
            let t = Instant::now();
            let n = if seeded(name) { runs } else { 1 };
            let each: Vec<f64> = (0..n as u64)
                .map(|run| {
                    ASIDE_SEED.store(0x5EED + run, Ordering::Relaxed);
                    run_single(name, &keys, &next, capacity) as f64
                })
                .collect();
            ASIDE_SEED.store(0x5EED, Ordering::Relaxed);
            spent[i] += t.elapsed();
            let mean = each.iter().sum::<f64>() / n as f64;
            let sd = (each.iter().map(|h| (h - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
            // One run: the exact hit count, which the LRU check compares to the hit.
            let h = mean.round() as u64;
            hits.insert(name, h);
            let hit_pct = pct_of(mean, keys.len());
            csv.row(&[
                &spec.name,
                &spec.file,
                &keys.len(),
                &unique,
                &"single",
                &1,
                &capacity,
                &name,
                &h,
                &format!("{hit_pct:.4}"),
                &n,
                &format!("{:.4}", pct_of(sd, keys.len())),
            ]);
            let _ = write!(row, " {hit_pct:>13.2} |");
        }
        println!("{row}");
        checks.push((capacity, hits, ref_lru, ref_opt));
    }
    println!();
    let mut line = String::from("   time per contender (all capacities):");
    for (name, t) in single.iter().zip(&spent) {
        let _ = write!(line, " {name} {t:.1?};");
    }
    println!("{line}");
    let checked = ["exact_lru", "aside_lru_1sh", "aside_lru", "opt"]
        .iter()
        .all(|name| single.contains(name));
    for (capacity, hits, ref_lru, ref_opt) in checks.into_iter().filter(|_| checked) {
        let n = keys.len();
        let (exact, one, sharded) = (hits["exact_lru"], hits["aside_lru_1sh"], hits["aside_lru"]);
        let verdict = if one == exact { "PASS" } else { "FAIL" };
        if one == exact {
            tally.lru_exact_pass += 1;
        } else {
            tally.lru_exact_fail += 1;
        }
        let gap = pct(sharded, n) - pct(exact, n);
        let within = gap.abs() <= 0.5;
        if within {
            tally.sharded_within += 1;
        } else {
            tally.sharded_outside += 1;
        }
        let mut line = format!(
            "   cap {capacity:>6}: aside LRU 1 shard vs exact LRU {verdict} ({one} vs {exact} hits); \
             default shards gap {gap:+.2} points ({})",
            if within { "within 0.5" } else { "OUTSIDE 0.5" }
        );
        for (label, reference, got) in [("LRU", ref_lru, exact), ("OPT", ref_opt, hits["opt"])] {
            if let Some(r) = reference {
                let got = pct(got, n);
                // The README rounds to two decimals.
                let dev = (got * 100.0).round() / 100.0 - r;
                let ok = dev.abs() < 0.005;
                if ok {
                    tally.reference_ok += 1;
                } else {
                    tally.reference_off += 1;
                }
                let _ = write!(
                    line,
                    "; {label} ref {r:.2} got {got:.2} ({})",
                    if ok {
                        "ok".to_string()
                    } else {
                        format!("OFF by {dev:+.2}")
                    }
                );
            }
        }
        println!("{line}");
    }
    println!("   single-threaded replay took {:.1?}", started.elapsed());

    if let Some(threads) = threads {
        let started = Instant::now();
        println!();
        println!(
            "{threads} threads, requests taken in order from a shared cursor, one shared cache:"
        );
        println!();
        // `--only` narrows this pass too, to the named contenders it has.
        let shared: Vec<&str> = SHARED
            .iter()
            .copied()
            .filter(|name| single.len() == SINGLE.len() || single.contains(name))
            .collect();
        println!("{}", header(&shared));
        for &(capacity, _, _) in spec.points {
            let mut row = format!("| {capacity:>8} |");
            for &name in &shared {
                let h = run_shared(name, &keys, capacity, threads);
                csv.row(&[
                    &spec.name,
                    &spec.file,
                    &keys.len(),
                    &unique,
                    &"shared",
                    &threads,
                    &capacity,
                    &name,
                    &h,
                    &format!("{:.4}", pct(h, keys.len())),
                    &1,
                    &"0.0000",
                ]);
                let _ = write!(row, " {:>13.2} |", pct(h, keys.len()));
            }
            println!("{row}");
        }
        println!("   {threads}-thread replay took {:.1?}", started.elapsed());
    }
    println!();
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if !args.traces.is_dir() {
        println!(
            "replay: no traces folder at {} (set ASIDE_TRACES or pass --traces DIR); nothing to replay, skipping.",
            args.traces.display()
        );
        return ExitCode::SUCCESS;
    }
    let selected: Vec<&TraceSpec> = TRACES
        .iter()
        .filter(|t| !args.quick || t.quick)
        .filter(|t| {
            args.names.is_empty()
                || args
                    .names
                    .iter()
                    .any(|n| t.name.to_lowercase().contains(n) || t.file.to_lowercase().contains(n))
        })
        .collect();
    if selected.is_empty() {
        eprintln!("replay: no known trace matches {:?}", args.names);
        return ExitCode::from(2);
    }
    println!(
        "# Hit-ratio replay ({} traces from {}; hit% = hits / requests, cold misses counted)",
        selected.len(),
        args.traces.display()
    );
    println!();
    if args.runs > 1 {
        println!(
            "Seeded contenders (all but exact_lru, opt, aside_lru_1sh and moka_lru): mean of {} runs.",
            args.runs
        );
        println!();
    }
    println!(
        "Columns: aside_* = aside with default sharding (aside_lru_1sh: `Lru::exact()`, `.shards(1)`), aside_ttl = SampledTtl; \
         moka_tinylfu = moka default as its users run it (lazy maintenance; the headline), moka_tinylfu_eager = the same with run_pending_tasks() after every insert, moka_lru = EvictionPolicy::lru() (eager); exact_lru = `lru` crate; opt = Belady MIN."
    );
    println!();
    let single: Vec<&str> = SINGLE
        .iter()
        .copied()
        .filter(|name| args.only.is_empty() || args.only.iter().any(|o| o == name))
        .collect();
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut csv = out::Csv::new("replay", CSV_COLUMNS);
    for spec in selected {
        let path = args.traces.join(spec.file);
        if !path.is_file() {
            println!("## {}: {} not found, skipped\n", spec.name, path.display());
            continue;
        }
        replay_trace(
            spec,
            &path,
            args.threads,
            args.runs,
            &single,
            &mut tally,
            &mut csv,
        );
    }
    let written = csv.write();
    if let Err(e) = &written {
        eprintln!("replay: cannot write {}/replay.csv: {e}", out::ENV);
    }
    println!(
        "Summary: aside LRU (1 shard) = exact LRU: {} PASS, {} FAIL; default sharding within 0.5 points: {} of {}; \
         exact LRU / OPT vs README: {} ok, {} off. Total {:.1?}.",
        tally.lru_exact_pass,
        tally.lru_exact_fail,
        tally.sharded_within,
        tally.sharded_within + tally.sharded_outside,
        tally.reference_ok,
        tally.reference_off,
        started.elapsed()
    );
    if tally.lru_exact_fail > 0 || written.is_err() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
