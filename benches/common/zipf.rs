//! Zipf(s = 1.0) sampling shared by the benches and examples (`#[path]`-included, so each
//! target compiles its own copy; not every target uses every item).
#![allow(dead_code)]

use rand::distr::Distribution;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Zipf(s = 1.0) over `0..n` by inverse transform on a precomputed CDF: rank 0 is the most
/// popular.
pub struct Zipf(Vec<f64>);

impl Zipf {
    /// The distribution over `0..n` (`n > 0`).
    pub fn new(n: u64) -> Self {
        assert!(n > 0, "Zipf over an empty range");
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += 1.0 / k as f64;
                acc
            })
            .collect();
        cdf.iter_mut().for_each(|c| *c /= acc);
        Zipf(cdf)
    }

    /// `count` seeded samples.
    pub fn samples(&self, count: usize, seed: u64) -> Vec<u64> {
        let mut rng = SmallRng::seed_from_u64(seed);
        (0..count).map(|_| self.sample(&mut rng)).collect()
    }
}

impl Distribution<u64> for Zipf {
    fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let u: f64 = rng.random();
        // Rounding can leave the last CDF entry a hair below 1.0: clamp to the last rank.
        (self.0.partition_point(|&c| c < u) as u64).min(self.0.len() as u64 - 1)
    }
}

/// `count` seeded Zipf(1.0) ranks over `0..n`.
pub fn zipf_ranks(n: u64, count: usize, seed: u64) -> Vec<u64> {
    Zipf::new(n).samples(count, seed)
}
