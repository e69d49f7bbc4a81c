//! The adaptive window: W-TinyLFU's window share chosen by simulation (the *MiniSim* idea of
//! Einziger, Eytan, Friedman and Manes, "Adaptive Software Cache Management", Middleware'18).
//!
//! A fixed sample of the keys (by hash) is replayed through one small fixed-window W-TinyLFU
//! [`Simulation`] per choice: each candidate share, without and with the ghost of turned-away
//! candidates (see the policy's documentation). Keys sampled at rate `p` into a cache `p` times smaller
//! keep their reuse distances relative to the capacity, so each simulation's hit ratio
//! estimates what the whole shard would get with that share. At the end of every *epoch*
//! (`EPOCH_PER_ENTRY` × the simulated capacity of sampled requests) each candidate's hits
//! enter a score that loses an eighth every epoch. Switching to a choice costs 0.1% of the
//! requests the scores cover plus 1% per unit of share moved (a switch costs in proportion to
//! the entries it moves); the shard runs the choice whose score less that cost is the highest,
//! the current one costing nothing. Epochs that end before every simulation is full are not
//! scored: while filling, the cache that refuses nothing (LRU) always leads. (The first
//! scored epoch is the one in which the last simulation fills: scoring only from the next one
//! cost the short traces a decision, 2.8 points on LIRS `zigzag` at 768 and 1.6 on `backf` at
//! 256; see `docs/benchmarks.md`.) A
//! switch resizes the segments; the entries that no longer fit move to probation at most
//! 1,000 per operation (Caffeine's transfer bound), so a switch in a shard of 12,500 entries
//! takes about 10 operations instead of stalling one for ~86 µs.
//!
//! The ghost is a choice of its own because it helps where keys come back soon after they were
//! turned away (P3 at 160,000 entries, `docs/benchmarks.md`) and hurts where every key comes back in
//! turn (loops), which only a simulation tells apart. Turning it on or off moves no entry, so
//! it needs only the base 0.1% lead.
//!
//! Cost: eight simulations of at most `SAMPLE_ENTRIES` entries per shard (about 25 KB together at
//! that size: 8 × 64 slots and table buckets, 8 small sketches, and the ghosts of the four that
//! keep one), and eight simulated requests per sampled request; a shard of 12,500 entries
//! samples 0.5% of its keys. 64 entries are enough: on the replayed traces, samples of 512,
//! 256, 128 and 64 entries gave the same mean gap to OPT within seed noise, while the time
//! spent simulating grows with the sample, and more than in proportion where the sample
//! happens to hold a hot key (`docs/benchmarks.md`).
//!
//! Why not Caffeine's hill climber: on the replayed traces it trails a fixed 1% window (mean
//! gap to OPT 7.19 against 6.25 on the quick set, `docs/benchmarks.md`); the best share is
//! often at an extreme (0 for loops and scans, 100% for LRU-friendly patterns), which a
//! climber that steps from its current share reaches slowly or not at all.

use super::super::Simulation;
use super::WTinyLfu;
use super::sketch::mix64;

/// The window shares the tuner picks from, in order. Chosen on the replayed traces: the best
/// of these four per point is 0.06 points short of the best of eight (0, 1, 3, 10, 25, 50, 75
/// and 100%).
pub(super) const CANDIDATES: [f64; 4] = [0.0, 0.01, 0.25, 1.0];

/// The choices: every window share without the ghost of turned-away candidates (`0..4`), then
/// every one with it (`4..8`).
pub(super) const CHOICES: usize = 2 * CANDIDATES.len();

/// Choice `i`'s window share.
pub(super) fn window_of(i: usize) -> f64 {
    CANDIDATES[i % CANDIDATES.len()]
}

/// Whether choice `i` keeps the ghost of turned-away candidates.
pub(super) fn ghost_of(i: usize) -> bool {
    i >= CANDIDATES.len()
}

/// The share a shard starts with (Caffeine's 1%).
pub(super) const START: usize = 1;

/// Entries each simulation aims to hold: shards up to this capacity are simulated whole;
/// larger ones through a sample of their keys.
pub(super) const SAMPLE_ENTRIES: u64 = 64;

/// An epoch lasts this many sampled requests per simulated entry (at least `MIN_EPOCH`).
const EPOCH_PER_ENTRY: u64 = 4;
const MIN_EPOCH: u64 = 256;

/// Scores lose `1 / DECAY` every epoch (so a score is about `DECAY` epochs of hits).
const DECAY: u64 = 8;

/// Switching to a choice costs `MARGIN + MARGIN_PER_SHARE × |share moved|` of the requests a
/// score covers, so a challenger must lead by more than that: a switch costs in proportion to
/// the entries it moves between the window and the main space, so 0 ↔ 1% needs a 0.11% lead
/// and 1% → 100% a 1.1% lead. (A flat
/// 1% kept the 1% window where none was better by less: `loop` at 512, 49.94 vs 50.54; with
/// this margin the mean gap to OPT went from 5.36 to 5.32 on the replayed traces.)
const MARGIN: f64 = 0.001;
const MARGIN_PER_SHARE: f64 = 0.01;

/// The simulations and their scores, for one shard.
#[derive(Debug, Clone)]
pub(super) struct Tuner {
    sims: Vec<Simulation<WTinyLfu>>,
    /// Each candidate's hits, losing `1 / DECAY` every epoch.
    scores: [u64; CHOICES],
    /// Each simulation's hit count at the start of the epoch.
    marks: [u64; CHOICES],
    /// The candidate the shard runs.
    current: usize,
    /// A key is sampled when its mixed hash is at most this.
    threshold: u32,
    /// Mixed into the hash before sampling, so the sample is not the sketch's or the table's.
    salt: u32,
    /// The shard's capacity.
    capacity: u64,
    /// The candidates' protected share, sketch start and admission margin: the tuned policy's.
    protected_fraction: f64,
    sketch_start: f64,
    admission_margin: u8,
    seed: u64,
    /// Sampled requests per epoch, and so far in this one.
    epoch: u64,
    seen: u64,
    /// The first simulation's misses when this epoch began.
    misses: u64,
    /// Switches made, and the window shares they moved in all (for tests and debugging).
    switches: u64,
    moved: f64,
    /// Epochs completed (for tests and debugging).
    epochs: u64,
}

impl Tuner {
    /// Simulations of `template`'s protected share, sketch start and admission margin, with each
    /// window.
    pub(super) fn new(capacity: u64, seed: u64, template: &WTinyLfu) -> Self {
        let rate = (SAMPLE_ENTRIES as f64 / capacity.max(1) as f64).min(1.0);
        let mut tuner = Self {
            sims: Vec::new(),
            scores: [0; CHOICES],
            marks: [0; CHOICES],
            current: START,
            threshold: 0,
            salt: mix64(seed ^ 0x7475_6e65_7221_2121) as u32,
            capacity,
            protected_fraction: template.protected_fraction,
            sketch_start: template.sketch_start,
            admission_margin: template.admission_margin,
            seed,
            epoch: 0,
            seen: 0,
            epochs: 0,
            misses: 0,
            switches: 0,
            moved: 0.0,
        };
        tuner.resample(rate);
        tuner
    }

    /// Starts over with sampling rate `rate`: fresh simulations, no scores.
    fn resample(&mut self, rate: f64) {
        self.threshold = if rate >= 1.0 {
            u32::MAX
        } else {
            (rate * f64::from(u32::MAX)) as u32
        };
        let sim_capacity = ((self.capacity as f64 * rate).round() as u64).max(1);
        self.sims = (0..CHOICES)
            .map(|i| {
                let policy = WTinyLfu::with_window_fraction(window_of(i))
                    .and_then(|p| p.with_protected_fraction(self.protected_fraction))
                    .and_then(|p| p.with_sketch_start(self.sketch_start))
                    .and_then(|p| p.with_admission_margin(self.admission_margin))
                    .expect("valid candidate settings")
                    .with_exact_hits(true)
                    .with_ghost(ghost_of(i));
                Simulation::new(policy, sim_capacity, self.seed)
            })
            .collect();
        self.scores = [0; CHOICES];
        self.marks = [0; CHOICES];
        self.epoch = (EPOCH_PER_ENTRY * sim_capacity.min(SAMPLE_ENTRIES)).max(MIN_EPOCH);
        self.seen = 0;
        self.misses = 0;
    }

    /// The simulations' capacity.
    #[cfg(test)]
    fn sim_capacity(&self) -> u64 {
        self.sims[START].capacity()
    }

    fn rate(&self) -> f64 {
        if self.threshold == u32::MAX {
            1.0
        } else {
            f64::from(self.threshold) / f64::from(u32::MAX)
        }
    }

    /// The window share the shard runs.
    pub(super) fn current(&self) -> f64 {
        window_of(self.current)
    }

    /// Whether the shard keeps the ghost of turned-away candidates.
    pub(super) fn current_ghost(&self) -> bool {
        ghost_of(self.current)
    }

    /// Completed epochs.
    #[cfg(test)]
    pub(super) fn epochs(&self) -> u64 {
        self.epochs
    }

    /// One request (hit or miss) for the key with hash `hash`. Returns the new window share
    /// when the shard should switch.
    #[inline]
    pub(super) fn record(&mut self, hash: u32, weight: u32) -> Option<(f64, bool)> {
        if !self.is_sampled(hash) {
            return None;
        }
        self.sample(hash, weight)
    }

    /// Whether the key with hash `hash` is in the sample.
    #[inline]
    pub(super) fn is_sampled(&self, hash: u32) -> bool {
        (hash ^ self.salt).wrapping_mul(0x9E37_79B1) <= self.threshold
    }

    fn sample(&mut self, hash: u32, weight: u32) -> Option<(f64, bool)> {
        for sim in &mut self.sims {
            sim.access(hash, weight);
        }
        self.seen += 1;
        if self.seen < self.epoch {
            return None;
        }
        self.end_epoch()
    }

    fn end_epoch(&mut self) -> Option<(f64, bool)> {
        self.seen = 0;
        self.epochs += 1;
        // Weighted entries: a sample sized by weight may hold too few keys to tell the shares
        // apart. Sample more keys (4× at a time) while it misses a lot but holds little.
        let sim = &self.sims[START];
        let misses = (sim.requests() - sim.hits())
            - std::mem::replace(&mut self.misses, sim.requests() - sim.hits());
        let rate = self.rate();
        if rate < 1.0 && (sim.len() as u64) * 4 < SAMPLE_ENTRIES && misses >= SAMPLE_ENTRIES {
            self.resample((rate * 4.0).min(1.0));
            return None;
        }
        // Only epochs that end with every simulation full are scored: while a cache fills, its
        // hits say how it fills, not how it evicts (an LRU, refusing nothing, leads).
        let warm = self.sims.iter().all(|s| s.weight() * 8 >= s.capacity() * 7);
        for (i, sim) in self.sims.iter().enumerate() {
            let hits = sim.hits() - std::mem::replace(&mut self.marks[i], sim.hits());
            if warm {
                self.scores[i] = self.scores[i] - self.scores[i] / DECAY + hits;
            }
        }
        if !warm {
            return None;
        }
        let best = self.choose();
        if best == self.current {
            return None;
        }
        self.switches += 1;
        self.moved += self.share_moved(best);
        self.current = best;
        Some((window_of(best), ghost_of(best)))
    }

    /// The choice to run next: the one whose score, less what switching to it costs, is the
    /// highest. The current choice costs nothing; ties keep it (else the later choice wins).
    ///
    /// The net score matters when the top scorer is far away: in P3's first scored epoch at
    /// 160,000 entries the whole window (LRU) led the 1% window by less than its 1.1% margin
    /// while the 1% window with the ghost led by more than its 0.1%; comparing only the top
    /// scorer with the current choice kept the 1% window for another epoch (four capacities
    /// of requests, a sixth of that trace).
    fn choose(&self) -> usize {
        let net = |i: usize| {
            let score = self.scores[i] as f64;
            if i == self.current {
                score
            } else {
                score - self.switch_cost(i)
            }
        };
        (0..CHOICES)
            .max_by(|&a, &b| {
                net(a)
                    .total_cmp(&net(b))
                    .then((a == self.current).cmp(&(b == self.current)))
            })
            .expect("candidates")
    }

    /// The lead over the current choice that choice `i` needs: `MARGIN + MARGIN_PER_SHARE ×
    /// |share moved|` of the requests a score covers.
    fn switch_cost(&self, i: usize) -> f64 {
        (DECAY * self.epoch) as f64 * (MARGIN + MARGIN_PER_SHARE * self.share_moved(i))
    }

    /// The window share a switch to choice `i` moves.
    fn share_moved(&self, i: usize) -> f64 {
        (window_of(i) - window_of(self.current)).abs()
    }

    /// Checks every simulation.
    pub(super) fn validate(&self) -> Result<(), String> {
        if self.sims.len() != CHOICES || self.current >= CHOICES {
            return Err("tuner: candidates and simulations disagree".into());
        }
        for sim in &self.sims {
            sim.check().map_err(|e| format!("tuner simulation: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(key: u64) -> u32 {
        mix64(key ^ 0xfeed) as u32
    }

    #[test]
    fn a_loop_keeps_at_most_a_sliver_of_window() {
        let mut t = Tuner::new(60, 1, &WTinyLfu::new());
        for i in 0..60_000u64 {
            t.record(hash(i % 90), 1);
        }
        // An LRU of 60 never hits a loop of 90; TinyLFU keeps a fixed part of it.
        assert_eq!(t.sims[3].hits(), 0);
        assert!(t.sims[0].hits() > 30_000, "{}", t.sims[0].hits());
        assert!(t.current() <= 0.01, "{}", t.current());
        t.validate().unwrap();
    }

    #[test]
    fn short_reuse_takes_the_whole_window() {
        // Every key is used twice, 100 requests apart, then never again: an LRU of 200 entries
        // hits every second use, while the sketch refuses newcomers seen once.
        let mut t = Tuner::new(200, 2, &WTinyLfu::new());
        for i in 50..30_050u64 {
            t.record(hash(i), 1);
            t.record(hash(i - 50), 1);
        }
        assert_eq!(t.current(), 1.0);
        t.validate().unwrap();
    }

    #[test]
    fn uniform_keys_do_not_make_the_window_flap() {
        // Uniform random keys: every share hits about capacity / keys, so the scores differ
        // only by noise; the margin and the decay keep the tuner from following it epoch by
        // epoch. Measured with the four window shares alone: 12 to 20 switches in 250 epochs,
        // moving 4 to 6 shares in all. With the ghost doubling the choices, up to 37 switches,
        // the added ones turning the ghost on or off, which moves no entry (the bound on the
        // shares moved is unchanged); `tests/policy_wtinylfu.rs` shows they cost no hits.
        for seed in 3..6 {
            let mut t = Tuner::new(100, seed, &WTinyLfu::new());
            let mut x = seed;
            for _ in 0..100_000 {
                x = mix64(x);
                t.record(hash(x % 400), 1);
            }
            assert!(t.epochs() > 200, "{}", t.epochs());
            assert!(
                t.switches * 5 <= t.epochs() && t.moved * 25.0 <= t.epochs() as f64,
                "seed {seed}: {} switches moving {} shares in {} epochs",
                t.switches,
                t.moved,
                t.epochs()
            );
        }
    }

    #[test]
    fn heavy_entries_widen_the_sample_until_it_holds_enough_keys() {
        // 20,000 entries of weight 10 in a shard of 200,000 units: sampling 64 / 200,000 of
        // the keys simulates 6 entries, too few; 4 times as many keys give about 25.
        let mut t = Tuner::new(200_000, 4, &WTinyLfu::new());
        let start = t.rate();
        let mut x = 9u64;
        for _ in 0..1_200_000 {
            x = mix64(x);
            t.record(hash(x % 40_000), 10);
        }
        assert!(t.rate() >= start * 3.9, "rate {} from {start}", t.rate());
        assert!(
            t.sims[START].len() as u64 * 4 >= SAMPLE_ENTRIES,
            "{}",
            t.sims[START].len()
        );
        t.validate().unwrap();
    }

    #[test]
    fn candidates_keep_the_policys_main_space_sketch_start_and_margin() {
        let policy = WTinyLfu::new()
            .with_protected_fraction(0.25)
            .and_then(|p| p.with_sketch_start(0.5))
            .and_then(|p| p.with_admission_margin(3))
            .unwrap();
        let t = Tuner::new(1000, 0, &policy);
        for (i, sim) in t.sims.iter().enumerate() {
            let p = sim.policy();
            assert_eq!(
                (
                    p.window_fraction(),
                    p.protected_fraction(),
                    p.sketch_start(),
                    p.admission_margin(),
                    p.ghosting,
                    p.exact_hits()
                ),
                (window_of(i), 0.25, 0.5, 3, ghost_of(i), true)
            );
            assert!(!p.is_adaptive());
        }
    }

    #[test]
    fn the_choice_with_the_best_net_lead_wins_not_the_top_scorer() {
        let mut t = Tuner::new(1000, 7, &WTinyLfu::new());
        assert_eq!(t.current, START);
        let score = 100 * t.epoch;
        let cost = |t: &Tuner, i: usize| t.switch_cost(i).ceil() as u64;
        // The whole window (LRU) tops the scores but leads by less than its cost; the 1% window
        // with the ghost leads by more than its own (smaller) cost.
        t.scores = [score; CHOICES];
        t.scores[3] = score + cost(&t, 3) - 1;
        t.scores[START + CANDIDATES.len()] = score + cost(&t, START + CANDIDATES.len()) + 1;
        assert!(t.scores[3] > t.scores[START + CANDIDATES.len()]);
        assert_eq!(t.choose(), START + CANDIDATES.len());
        // A lead no larger than its cost keeps the current choice.
        t.scores[START + CANDIDATES.len()] = score + cost(&t, START + CANDIDATES.len()) - 1;
        assert_eq!(t.choose(), START);
        // Of two that clear their costs, the larger net lead wins, even if its score is lower.
        t.scores[2] = score + cost(&t, 2) + 10;
        t.scores[3] = score + cost(&t, 3) + 5;
        assert!(t.scores[3] > t.scores[2]);
        assert_eq!(t.choose(), 2);
    }

    #[test]
    fn large_shards_are_sampled_and_small_ones_simulated_whole() {
        let small = Tuner::new(SAMPLE_ENTRIES, 0, &WTinyLfu::new());
        assert_eq!((small.rate(), small.sim_capacity()), (1.0, SAMPLE_ENTRIES));
        let large = Tuner::new(100_000, 0, &WTinyLfu::new());
        assert_eq!(large.sim_capacity(), SAMPLE_ENTRIES);
        let sampled = (0..100_000u64)
            .filter(|&k| large.is_sampled(hash(k)))
            .count();
        assert!(
            (40..90).contains(&sampled),
            "{sampled} of 100,000 keys sampled, ~64 expected"
        );
    }
}
