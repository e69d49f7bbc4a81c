//! W-TinyLFU through the public API only: random operations with `validate()` after each, and
//! scan resistance against LRU with concrete hit counts.

use aside::Cache;
use aside::policy::{EvictionPolicy, Lru, WTinyLfu};
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Op {
    Get(u32),
    Peek(u32),
    /// Insert `key` with value `value` (a weigher reads the weight from the value).
    Insert(u32, u32),
    /// Cache-aside: read, and insert on a miss.
    GetOrInsert(u32),
    Remove(u32),
    InvalidateAll,
}

fn op(keys: u32) -> impl Strategy<Value = Op> {
    // Skewed towards small keys, so that some keys are hot.
    let key = (0..keys, 0..keys).prop_map(|(a, b)| a.min(b));
    prop_oneof![
        30 => key.clone().prop_map(Op::Get),
        3 => key.clone().prop_map(Op::Peek),
        25 => (key.clone(), 0u32..8).prop_map(|(k, v)| Op::Insert(k, v)),
        25 => key.clone().prop_map(Op::GetOrInsert),
        5 => key.prop_map(Op::Remove),
        1 => Just(Op::InvalidateAll),
    ]
}

#[derive(Debug, Clone, Copy)]
struct Setup {
    capacity: u64,
    shards: usize,
    weighted: bool,
    window: f64,
    /// The protected segment's share of the main space.
    protected: f64,
    /// The share of the capacity held before the sketch counts.
    sketch_start: f64,
    /// Uses a candidate needs beyond a counted victim's.
    margin: u8,
    seed: u64,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        0u64..48,
        prop::sample::select(vec![1usize, 2, 4]),
        any::<bool>(),
        // -1: the adaptive default.
        prop::sample::select(vec![-1.0, -1.0, 0.0, 0.01, 0.2, 0.5, 1.0]),
        prop::sample::select(vec![0.8, 0.8, 0.0, 0.5, 1.0]),
        prop::sample::select(vec![0.2, 0.2, 0.0, 0.5, 1.0]),
        prop::sample::select(vec![1u8, 1, 0, 3]),
        any::<u64>(),
    )
        .prop_map(
            |(capacity, shards, weighted, window, protected, sketch_start, margin, seed)| Setup {
                capacity,
                shards,
                weighted,
                window,
                protected,
                sketch_start,
                margin,
                seed,
            },
        )
}

fn run(s: Setup, ops: &[Op]) -> Result<(), String> {
    let policy = if s.window < 0.0 {
        WTinyLfu::new()
    } else {
        WTinyLfu::with_window_fraction(s.window).map_err(|e| e.to_string())?
    }
    .with_protected_fraction(s.protected)
    .and_then(|p| p.with_sketch_start(s.sketch_start))
    .and_then(|p| p.with_admission_margin(s.margin))
    .map_err(|e| e.to_string())?;
    let mut builder = Cache::builder()
        .max_capacity(s.capacity)
        .shards(s.shards)
        .seed(s.seed)
        .policy(policy);
    if s.weighted {
        builder = builder.weigher(|_: &u32, v: &u32| v % 5);
    }
    let cache: Cache<u32, u32, WTinyLfu> = builder.build().map_err(|e| e.to_string())?;
    for (step, &op) in ops.iter().enumerate() {
        match op {
            Op::Get(k) => {
                cache.get(&k);
            }
            Op::Peek(k) => {
                cache.peek(&k);
            }
            Op::Insert(k, v) => cache.insert(k, v),
            Op::GetOrInsert(k) => {
                cache.get_or_insert_with(k, || k % 8);
            }
            Op::Remove(k) => {
                cache.remove(&k);
            }
            Op::InvalidateAll => cache.invalidate_all(),
        }
        let fail = |e: String| format!("step {step} ({op:?}): {e}");
        cache.validate().map_err(|e| fail(e.to_string()))?;
        if cache.weighted_size() > s.capacity {
            return Err(fail(format!(
                "weighted size {} over capacity {}",
                cache.weighted_size(),
                s.capacity
            )));
        }
        if !s.weighted && cache.len() as u64 > s.capacity {
            return Err(fail(format!("{} entries over {}", cache.len(), s.capacity)));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_operations_keep_every_invariant(
        s in setup(),
        ops in prop::collection::vec(op(40), 1..400),
    ) {
        run(s, &ops).map_err(TestCaseError::fail)?;
    }
}

/// Hits of each phase: the hot set's warm-up reads, the scan, the hot set after the scan.
#[derive(Debug, PartialEq, Eq)]
struct ScanHits {
    warm: u64,
    scan: u64,
    after: u64,
}

/// A 100-entry cache, one shard. 50 hot keys are loaded cache-aside and read 3 more times
/// each; then a one-time scan of 1,000 other keys goes through the cache (read, miss,
/// insert); then the hot keys are read once more.
fn scan_workload<P: EvictionPolicy>(policy: P) -> ScanHits {
    let cache: Cache<u32, u32, P> = Cache::builder()
        .max_capacity(100)
        .shards(1)
        .seed(7)
        .policy(policy)
        .build()
        .unwrap();
    let hits = || cache.stats().hits;
    let read_through = |k: u32| {
        if cache.get(&k).is_none() {
            cache.insert(k, k);
        }
    };
    for k in 0..50 {
        read_through(k);
    }
    let start = hits();
    for _ in 0..3 {
        (0..50).for_each(read_through);
    }
    let warm = hits() - start;
    let start = hits();
    (1000..2000).for_each(read_through);
    let scan = hits() - start;
    let start = hits();
    (0..50).for_each(read_through);
    let after = hits() - start;
    cache.validate().unwrap();
    ScanHits { warm, scan, after }
}

#[test]
fn a_one_time_scan_flushes_lru_but_not_wtinylfu() {
    assert_eq!(
        scan_workload(Lru::new()),
        ScanHits {
            warm: 150,
            scan: 0,
            after: 0
        },
        "LRU: the scan evicted the whole hot set"
    );
    // The sketch is approximate: with its 4 counters in one 64-byte block (Caffeine's layout),
    // a scanned key is overrated now and then and displaces one hot key still in the window or
    // probation. Over 2,000 seeds all 50 survive for 1,998 of them and 49 for the other 2
    // (with one sketch word per entry instead of two: 66% and 34%), never fewer.
    let w = scan_workload(WTinyLfu::new());
    assert_eq!((w.warm, w.scan), (150, 0), "{w:?}");
    assert!(
        w.after >= 49,
        "W-TinyLFU: the scanned keys lost their admission contests: {w:?}"
    );
}

/// The scan repeated until the sketch has halved several times: the hot set's old counts fade,
/// yet the protected segment keeps it while probation still holds scanned entries to evict.
#[test]
fn the_hot_set_survives_long_scans_too() {
    let cache: Cache<u32, u32, WTinyLfu> = Cache::builder()
        .max_capacity(100)
        .shards(1)
        .seed(7)
        .policy(WTinyLfu::new())
        .build()
        .unwrap();
    for k in 0..50 {
        cache.insert(k, k);
    }
    for _ in 0..3 {
        for k in 0..50 {
            cache.get(&k);
        }
    }
    for k in 1000..11_000 {
        if cache.get(&k).is_none() {
            cache.insert(k, k);
        }
        cache.validate().unwrap();
    }
    let kept = (0..50).filter(|k| cache.contains_key(k)).count();
    assert_eq!(kept, 49);
    assert_eq!(cache.len(), 100);
}

#[test]
fn window_fraction_is_checked() {
    assert_eq!(WTinyLfu::new().window_fraction(), 0.01);
    assert_eq!(WTinyLfu::default().window_fraction(), 0.01);
    assert_eq!(
        WTinyLfu::with_window_fraction(2.0).unwrap_err().field(),
        "window_fraction"
    );
    assert!(WTinyLfu::with_window_fraction(0.0).is_ok());
    assert!(WTinyLfu::with_window_fraction(1.0).is_ok());
}

#[test]
fn protected_fraction_sketch_start_and_admission_margin_are_settings() {
    let p = WTinyLfu::new();
    assert_eq!(
        (p.protected_fraction(), p.sketch_start()),
        (
            WTinyLfu::DEFAULT_PROTECTED_FRACTION,
            WTinyLfu::DEFAULT_SKETCH_START
        )
    );
    for bad in [-0.01, 1.5, f64::NAN, f64::INFINITY] {
        let err = WTinyLfu::new().with_protected_fraction(bad).unwrap_err();
        assert_eq!(err.field(), "protected_fraction", "{bad}");
        let err = WTinyLfu::new().with_sketch_start(bad).unwrap_err();
        assert_eq!(err.field(), "sketch_start", "{bad}");
    }
    assert_eq!(p.admission_margin(), WTinyLfu::DEFAULT_ADMISSION_MARGIN);
    for bad in [WTinyLfu::MAX_ADMISSION_MARGIN + 1, u8::MAX] {
        let err = WTinyLfu::new().with_admission_margin(bad).unwrap_err();
        assert_eq!(err.field(), "admission_margin", "{bad}");
    }
    let p = WTinyLfu::with_window_fraction(0.0)
        .unwrap()
        .with_protected_fraction(0.0)
        .and_then(|p| p.with_sketch_start(0.5))
        .and_then(|p| p.with_admission_margin(0))
        .unwrap();
    assert_eq!(
        (
            p.protected_fraction(),
            p.sketch_start(),
            p.admission_margin()
        ),
        (0.0, 0.5, 0)
    );
    assert!(
        !p.is_adaptive(),
        "a protected share does not make a fixed window adaptive"
    );
}

/// Hits per pass over the last 10 of 40 passes of a read-through loop over 150 keys in a
/// 100-entry, one-shard cache (the replay is deterministic, so the first 30 passes hit the same
/// in both runs).
fn loop_hits(policy: WTinyLfu, seed: u64) -> u64 {
    let passes = |n| (0..n).flat_map(|_| 0..150u64);
    (aside_hits(policy.clone(), 100, seed, passes(40)) - aside_hits(policy, 100, seed, passes(30)))
        / 10
}

/// A loop longer than the cache: LRU gets nothing; Belady's OPT, which must admit every miss,
/// keeps 99 of the 150 keys (one slot turns over). Without the flood guard, ties go to the
/// incumbents, so the main space settles on a fixed set; with the sketch's aging as in moka,
/// it can keep all 100 slots on that set, refusing every newcomer. Caffeine's 1/128 coin
/// keeps swapping warm losers in on top, each swap costing hits. Seeded, so deterministic:
/// over 12 seeds, with the default admission margin (1) the plain policy gets 100 hits a pass
/// on every seed and the guarded one 99 on 11 of them; with Caffeine's rule (margin 0) the
/// plain one 99.9 on average, the guarded one 97.5 (92 to 100). (With the fixed 1% window
/// and Caffeine 3's slower aging, before `2397a3b`: 92.5 and 87.2.)
#[test]
fn a_loop_settles_on_a_fixed_set_without_the_flood_guard() {
    for margin in [1, 0] {
        let policy = WTinyLfu::new().with_admission_margin(margin).unwrap();
        let (mut plain_total, mut guarded_total) = (0, 0);
        for seed in 0..12 {
            let plain = loop_hits(policy.clone(), seed);
            let guarded = loop_hits(policy.clone().with_flood_guard(true), seed);
            let floor = if margin == 0 { 84 } else { 100 };
            assert!(
                plain >= floor,
                "margin {margin}, seed {seed}: {plain} hits per pass of 150 (OPT 99)"
            );
            assert!(
                plain >= guarded,
                "margin {margin}, seed {seed}: {plain} < {guarded} with the guard"
            );
            plain_total += plain;
            guarded_total += guarded;
        }
        let cost = if margin == 0 { 24 } else { 6 };
        assert!(
            plain_total >= guarded_total + cost,
            "margin {margin}: {plain_total} vs {guarded_total}"
        );
    }
}

/// Cache-aside over `keys` through a one-shard cache of `capacity` entries, with `validate()`
/// every 64 requests; returns the hits.
fn aside_hits(
    policy: WTinyLfu,
    capacity: u64,
    seed: u64,
    keys: impl IntoIterator<Item = u64>,
) -> u64 {
    let cache: Cache<u64, u64, WTinyLfu> = Cache::builder()
        .max_capacity(capacity)
        .shards(1)
        .seed(seed)
        .policy(policy)
        .build()
        .unwrap();
    let mut hits = 0;
    for (n, k) in keys.into_iter().enumerate() {
        if cache.get(&k).is_some() {
            hits += 1;
        } else {
            cache.insert(k, k);
        }
        if n % 64 == 0 {
            cache.validate().unwrap();
        }
    }
    cache.validate().unwrap();
    hits
}

/// A stream where every key is used twice, `gap` pairs apart, then never again.
fn short_reuse(gap: u64) -> impl Iterator<Item = u64> {
    (gap..20_000 + gap).flat_map(move |i| [i, i - gap])
}

/// `requests` uniform random keys out of `keys` (splitmix64 from `seed`).
fn uniform(keys: u64, requests: usize, seed: u64) -> impl Iterator<Item = u64> {
    let mut x = seed;
    std::iter::repeat_with(move || {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % keys
    })
    .take(requests)
}

#[test]
fn the_adaptive_window_follows_a_short_reuse_workload() {
    // Each key comes back once, 100 requests later (50 new keys in between): recency is all
    // that helps. The sketch refuses keys seen once, so a 1% window (2 entries) misses nearly
    // every reuse; an LRU of 200 catches all of them (20,000 at most).
    let fixed = aside_hits(
        WTinyLfu::with_window_fraction(0.01).unwrap(),
        200,
        5,
        short_reuse(50),
    );
    let adaptive = aside_hits(WTinyLfu::new(), 200, 5, short_reuse(50));
    assert!(fixed < 2_000, "fixed 1% window: {fixed}");
    assert!(adaptive > 18_000, "adaptive: {adaptive}");
}

#[test]
fn switching_on_noise_costs_no_hits() {
    // Uniform keys: every window share expects capacity / keys = 25% hits, so the tuner's
    // scores differ only by noise and its occasional switches must not cost hits. Measured:
    // 99.8% to 100.7% of the fixed window's hits per seed, 100.2% over the three.
    let (mut fixed_total, mut adaptive_total) = (0, 0);
    for seed in 1..4 {
        let fixed = aside_hits(
            WTinyLfu::with_window_fraction(0.01).unwrap(),
            100,
            seed,
            uniform(400, 100_000, seed),
        );
        let adaptive = aside_hits(WTinyLfu::new(), 100, seed, uniform(400, 100_000, seed));
        assert!(
            adaptive * 100 >= fixed * 97,
            "seed {seed}: adaptive {adaptive} hits, fixed 1% window {fixed}"
        );
        fixed_total += fixed;
        adaptive_total += adaptive;
    }
    assert!(
        adaptive_total * 100 >= fixed_total * 99,
        "adaptive {adaptive_total} hits, fixed 1% window {fixed_total}"
    );
}
