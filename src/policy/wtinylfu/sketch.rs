//! The frequency sketch of [`WTinyLfu`](super::WTinyLfu): a count-min sketch of 4-bit
//! counters with periodic halving, after Caffeine's `FrequencySketch`.
//!
//! Four rows of `1 << row_bits` counters, row after row, 16 counters packed in each `u64`; one
//! `u64` per entry the shard holds (a power of two, at least 16). An item's counter in each
//! row comes from its 32-bit hash fragment mixed with a per-shard seed, then one multiply per
//! row, so an attacker who knows the keys still cannot aim at counters. An increment bumps
//! the item's four counters (saturating at 15); an estimate is their minimum. After 10 ×
//! (words) counted increments every counter is halved, so that old popularity fades.

/// The splitmix64 finalizer: a bijective 64-bit mix.
pub(super) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const ROWS: usize = 4;
/// One odd multiplier per row (Caffeine's sketch seeds).
const ROW_SEEDS: [u64; ROWS] = [
    0xC3A5_C85C_97CB_3127,
    0xB492_B66F_BE98_F273,
    0x9AE1_6A3B_2F90_404F,
    0xCBF2_9CE4_8422_2325,
];
/// The smallest table, in words: 64 counters per row.
const MIN_SKETCH_WORDS: usize = 16;
/// The largest table, in words (2 GiB): a bound, not a size anyone should reach.
const MAX_SKETCH_WORDS: usize = 1 << 28;
/// The low bit of every 4-bit counter in a word.
const LOW_BITS: u64 = 0x1111_1111_1111_1111;

/// The sketch key of a hash fragment: the fragment mixed with the shard's sketch seed.
pub(super) fn spread(hash: u32, seed: u64) -> u64 {
    mix64(u64::from(hash) ^ seed)
}

/// The counter of `spread` in `row`, a row being `1 << row_bits` counters.
pub(super) fn row_index(spread: u64, row: usize, row_bits: u32) -> usize {
    let h = spread
        .wrapping_add(ROW_SEEDS[row])
        .wrapping_mul(ROW_SEEDS[row]);
    (h >> (64 - row_bits)) as usize
}

/// A count-min sketch of 4-bit counters: `ROWS` rows of `1 << row_bits` counters, row after
/// row, 16 counters to a `u64`.
#[derive(Debug, Clone, Default)]
pub(super) struct Sketch {
    table: Vec<u64>,
    row_bits: u32,
    seed: u64,
    /// Increments since the last halving (less the estimated loss of the halvings).
    additions: u64,
    /// Halve when `additions` reaches this.
    sample: u64,
}

impl Sketch {
    pub(super) fn new(seed: u64) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }

    /// Grows the table to hold `entries` (one word per entry, a power of two). Clears it.
    pub(super) fn ensure(&mut self, entries: usize) {
        let words = entries
            .checked_next_power_of_two()
            .unwrap_or(MAX_SKETCH_WORDS)
            .clamp(MIN_SKETCH_WORDS, MAX_SKETCH_WORDS);
        if words <= self.table.len() {
            return;
        }
        self.table = vec![0; words];
        self.row_bits = (words * 16 / ROWS).trailing_zeros();
        self.additions = 0;
        self.sample = 10 * words as u64;
    }

    /// The word and bit offset of each row's counter for `hash`.
    fn counters(&self, hash: u32) -> [(usize, u32); ROWS] {
        let s = spread(hash, self.seed);
        std::array::from_fn(|row| {
            let at = (row << self.row_bits) | row_index(s, row, self.row_bits);
            (at / 16, (at % 16) as u32 * 4)
        })
    }

    pub(super) fn frequency(&self, hash: u32) -> u8 {
        if self.table.is_empty() {
            return 0;
        }
        self.counters(hash)
            .into_iter()
            .map(|(word, shift)| ((self.table[word] >> shift) & 15) as u8)
            .min()
            .unwrap_or(0)
    }

    pub(super) fn increment(&mut self, hash: u32) {
        if self.table.is_empty() {
            return;
        }
        let mut added = false;
        for (word, shift) in self.counters(hash) {
            if (self.table[word] >> shift) & 15 < 15 {
                self.table[word] += 1 << shift;
                added = true;
            }
        }
        if added {
            self.additions += 1;
            if self.additions >= self.sample {
                self.halve();
            }
        }
    }

    /// Increments counted since the last halving (the model tests compare it).
    #[cfg(test)]
    pub(super) fn additions(&self) -> u64 {
        self.additions
    }

    /// Halves every counter; `additions` loses half, less the truncated halves (Caffeine).
    fn halve(&mut self) {
        let mut odd = 0u64;
        for word in &mut self.table {
            odd += u64::from((*word & LOW_BITS).count_ones());
            *word = (*word >> 1) & (LOW_BITS * 7);
        }
        self.additions = self.additions.saturating_sub(odd / 4) / 2;
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        let words = self.table.len();
        if !words.is_power_of_two()
            || words < MIN_SKETCH_WORDS
            || 1usize << self.row_bits != words * 16 / ROWS
        {
            return Err(format!(
                "sketch of {words} words with rows of 2^{} counters",
                self.row_bits
            ));
        }
        if self.additions >= self.sample {
            return Err(format!(
                "sketch at {} additions missed its halving at {}",
                self.additions, self.sample
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_saturate_and_halve() {
        let mut s = Sketch::new(7);
        s.ensure(16);
        assert_eq!(s.sample, 160);
        for _ in 0..20 {
            s.increment(1);
        }
        assert_eq!(s.frequency(1), 15, "4-bit counters saturate");
        assert_eq!(s.additions, 15, "saturated increments are not counted");
        // Other hashes up to the sample size: the halving takes 1's count to 7.
        let mut h = 2;
        loop {
            let before = s.additions;
            s.increment(h);
            h += 1;
            if s.additions < before {
                break;
            }
        }
        assert_eq!(h, 2 + 160 - 15, "halved at the 160th counted increment");
        assert_eq!(s.frequency(1), 7);
        s.validate().unwrap();
    }
}
