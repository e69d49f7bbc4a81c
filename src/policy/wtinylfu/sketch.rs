//! The frequency sketch of [`WTinyLfu`](super::WTinyLfu): a count-min sketch of 4-bit
//! counters with periodic halving, in the block layout of Caffeine's `FrequencySketch`
//! (Caffeine 3).
//!
//! The table is an array of 64-byte blocks (one cache line each, aligned), each 8 `u64` words
//! of 16 counters: two words per entry the shard holds (a power of two, at least 16 words, so
//! 16 to 32 bytes per entry; Caffeine and moka size theirs at one word per entry). An item's
//! hash fragment, mixed with a per-shard seed (so an attacker who knows the keys still cannot
//! aim at counters), gives a 64-bit key: its high half picks the block, and each of its four
//! low bytes places one counter: counter `i` lives in word `2i` or `2i + 1` of the block (bit
//! 0 of byte `i`), at the nibble given by bits 1-4. The four counters are so in four different
//! words of one cache line, and an increment or an estimate touches that line only (where one
//! counter per row of a classic count-min sketch costs four). An increment bumps the item's
//! four counters (each saturating at 15); an estimate is their minimum. After 10 × (entries
//! the table is sized for, at most the capacity) counted increments every counter is halved,
//! so that old popularity fades (see [`Sketch::halve`] for how the count restarts).
//!
//! Counters only go up between two halvings, so an item whose four counters are all
//! saturated stays so until the next halving: [`Sketch::increment`] says when an item got
//! there, and the sketch numbers its *generations* (bumped by every halving and every
//! clearing) so that the policy can mark such an entry and skip its increments, which would
//! change nothing, until the generation changes.

/// The splitmix64 finalizer: a bijective 64-bit mix.
pub(super) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Counters per item (the depth of the count-min sketch).
const DEPTH: usize = 4;
/// `u64` words per block: 64 bytes, one cache line.
const BLOCK_WORDS: usize = 8;
/// The smallest table, in words: 2 blocks.
const MIN_SKETCH_WORDS: usize = 16;
/// Words (16 counters each) per entry the table is sized for. Two halve the collisions of
/// Caffeine's and moka's one: on the replayed traces (`docs/benchmarks.md`) the adaptive
/// W-TinyLFU's mean gap to OPT went from 4.84 to 4.69 points and its points at or above moka
/// from 55 to 57 of 62 (replayed alone against the same moka runs with three sets of seeds:
/// 58, 59 and 58, against 55, 56 and 57), for 8.4 more bytes per entry at 1M entries. Four
/// gave 4.66 and 59 for 8 bytes more.
const WORDS_PER_ENTRY: usize = 2;
/// The largest table, in words (2 GiB): a bound, not a size anyone should reach.
const MAX_SKETCH_WORDS: usize = 1 << 28;
/// The low bit of every 4-bit counter in a word.
const LOW_BITS: u64 = 0x1111_1111_1111_1111;

/// The sketch key of a hash fragment: the fragment mixed with the shard's sketch seed. Its
/// high 32 bits pick the block (masked to the table), its low 32 bits the counters in it;
/// splitmix64 leaves the two halves independent for all practical purposes.
pub(super) fn spread(hash: u32, seed: u64) -> u64 {
    mix64(u64::from(hash) ^ seed)
}

/// One cache line of counters: 8 words of 16 4-bit counters.
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct Block([u64; BLOCK_WORDS]);

/// A count-min sketch of 4-bit counters in 64-byte blocks; an item's `DEPTH` counters are in
/// one block, in different words.
#[derive(Debug, Clone)]
pub(super) struct Sketch {
    /// A power of two of blocks (or none before the first [`ensure`](Self::ensure)).
    table: Vec<Block>,
    seed: u64,
    /// Increments since the last halving (less the estimated loss of the halvings).
    additions: u64,
    /// Halve when `additions` reaches this.
    sample: u64,
    /// The most entries the shard can hold (its capacity): bounds the halving period.
    capacity: u64,
    /// Changes (never to 0) whenever counters may go down: at every halving and every
    /// clearing. Between two changes counters only go up, so an item whose counters were all
    /// saturated in this generation still has them all saturated (see [`Sketch::increment`]).
    generation: u16,
    /// `generation` has wrapped around since [`take_wrapped`](Self::take_wrapped) last said so:
    /// a generation number recorded before may now come back with another meaning.
    wrapped: bool,
}

impl Default for Sketch {
    fn default() -> Self {
        Self {
            table: Vec::new(),
            seed: 0,
            additions: 0,
            sample: 0,
            capacity: 0,
            generation: 1,
            wrapped: false,
        }
    }
}

impl Sketch {
    /// A sketch for a shard of `capacity` (entries, or weight units).
    pub(super) fn new(seed: u64, capacity: u64) -> Self {
        Self {
            seed,
            capacity: capacity.max(1),
            ..Self::default()
        }
    }

    /// The current generation: never 0, changed whenever a counter may have decreased.
    pub(super) fn generation(&self) -> u16 {
        self.generation
    }

    /// Whether the generation wrapped around since the last call (and forgets it).
    pub(super) fn take_wrapped(&mut self) -> bool {
        std::mem::take(&mut self.wrapped)
    }

    /// Starts a new generation (counters may have gone down).
    fn next_generation(&mut self) {
        self.generation = match self.generation.checked_add(1) {
            Some(g) => g,
            None => {
                self.wrapped = true;
                1
            }
        };
    }

    /// Brings the generation to `generation` (tests of the wrap-around).
    #[cfg(test)]
    pub(super) fn set_generation(&mut self, generation: u16) {
        self.generation = generation;
    }

    /// The halving period for a table of `words`: 10 × the entries it is sized for, but at most
    /// 10 × the capacity, as in moka, so a capacity just above a power of two ages at its own
    /// pace rather than at the next power of two's (768 entries: 7,680 increments, not 10,240; on
    /// the replayed traces this took the mean gap to OPT from 5.32 to 5.30).
    fn period(&self, words: usize) -> u64 {
        10 * ((words / WORDS_PER_ENTRY) as u64).min(self.capacity)
    }

    /// Grows the table to hold `entries` (`WORDS_PER_ENTRY` words each, a power of two). Clears
    /// it.
    pub(super) fn ensure(&mut self, entries: usize) {
        let words = entries
            .saturating_mul(WORDS_PER_ENTRY)
            .checked_next_power_of_two()
            .unwrap_or(MAX_SKETCH_WORDS)
            .clamp(MIN_SKETCH_WORDS, MAX_SKETCH_WORDS);
        if words <= self.table.len() * BLOCK_WORDS {
            return;
        }
        // Growing clears the counters, which may go down; the first table has none to clear.
        if !self.table.is_empty() {
            self.next_generation();
        }
        self.table = vec![Block::default(); words / BLOCK_WORDS];
        self.additions = 0;
        self.sample = self.period(words);
    }

    /// The block of `hash` and the byte-per-counter placement within it (see the module docs).
    /// The table must not be empty.
    #[inline]
    fn locate(&self, hash: u32) -> (usize, u32) {
        let s = spread(hash, self.seed);
        ((s >> 32) as usize & (self.table.len() - 1), s as u32)
    }

    pub(super) fn frequency(&self, hash: u32) -> u8 {
        if self.table.is_empty() {
            return 0;
        }
        let (block, counters) = self.locate(hash);
        let words = &self.table[block].0;
        let mut min = 15;
        for i in 0..DEPTH {
            let h = counters >> (8 * i);
            let word = words[2 * i + (h & 1) as usize];
            let shift = ((h >> 1) & 15) * 4;
            min = min.min((word >> shift) & 15);
        }
        min as u8
    }

    /// Counts one more use of `hash`. Returns its estimate after the increment (and after the
    /// halving it may have set off). At 15 its counters are all saturated: then, until the
    /// [`generation`](Self::generation) changes, another increment of `hash` would change
    /// nothing, and the caller may skip it.
    pub(super) fn increment(&mut self, hash: u32) -> u8 {
        if self.table.is_empty() {
            return 0;
        }
        let (block, counters) = self.locate(hash);
        let words = &mut self.table[block].0;
        let mut added = false;
        let mut est = 15;
        for i in 0..DEPTH {
            let h = counters >> (8 * i);
            let word = &mut words[2 * i + (h & 1) as usize];
            let shift = ((h >> 1) & 15) * 4;
            let count = (*word >> shift) & 15;
            if count < 15 {
                *word += 1 << shift;
                added = true;
            }
            est = est.min((count + 1).min(15));
        }
        if added {
            self.additions += 1;
            if self.additions >= self.sample {
                self.halve();
                return self.frequency(hash);
            }
        }
        est as u8
    }

    /// Increments counted since the last halving (the model tests compare it).
    #[cfg(test)]
    pub(super) fn additions(&self) -> u64 {
        self.additions
    }

    /// Halves every counter; `additions` is halved, then loses a quarter of the halves the
    /// counters truncated (moka's and Caffeine 2's accounting). Caffeine 3 takes the quarter
    /// before halving, `(additions - odd / 4) / 2`, so its next halving comes later; on the
    /// replayed traces the earlier halving ages popularity faster and wins where keys recur
    /// in loops (LRU + TinyLFU on the LIRS `scan` trace at 256 entries: 11.7-11.9% against
    /// 7.5-9.5% over 4 seeds; the adaptive W-TinyLFU's mean gap to OPT 5.36 against 5.44).
    fn halve(&mut self) {
        self.next_generation();
        let mut odd = 0u64;
        for word in self.table.iter_mut().flat_map(|b| &mut b.0) {
            odd += u64::from((*word & LOW_BITS).count_ones());
            *word = (*word >> 1) & (LOW_BITS * 7);
        }
        self.additions = (self.additions / 2).saturating_sub(odd / 4);
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        let blocks = self.table.len();
        if blocks == 0 {
            // Not allocated yet: nothing counted.
            return if self.additions == 0 {
                Ok(())
            } else {
                Err(format!("no table, {} additions", self.additions))
            };
        }
        if !blocks.is_power_of_two() || blocks * BLOCK_WORDS < MIN_SKETCH_WORDS {
            return Err(format!("sketch of {blocks} blocks"));
        }
        if self.sample != self.period(blocks * BLOCK_WORDS) {
            return Err(format!(
                "sketch of {blocks} blocks halves at {} additions",
                self.sample
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
    use std::collections::HashMap;

    #[test]
    fn counters_saturate_and_halve() {
        let mut s = Sketch::new(7, u64::MAX);
        s.ensure(16);
        assert_eq!(
            (s.table.len(), s.sample),
            (4, 160),
            "32 words, halving at 10 × 16"
        );
        for n in 1..=20u8 {
            // The estimate after the increment (no other hash shares all four counters).
            assert_eq!(s.increment(1), n.min(15));
        }
        assert_eq!(s.frequency(1), 15, "4-bit counters saturate");
        assert_eq!(s.additions, 15, "saturated increments are not counted");
        // Other hashes up to the sample size: the halving takes 1's count to 7.
        let mut h = 2;
        loop {
            let before = s.additions;
            let rated = s.increment(h);
            h += 1;
            if s.additions < before {
                assert_eq!(rated, s.frequency(h - 1), "rated after the halving");
                break;
            }
        }
        assert_eq!(h, 2 + 160 - 15, "halved at the 160th counted increment");
        assert_eq!(s.frequency(1), 7);
        s.validate().unwrap();
    }

    #[test]
    fn sizes_follow_entries() {
        let mut s = Sketch::new(1, u64::MAX);
        s.ensure(0);
        assert_eq!(s.table.len(), 2, "at least 16 words");
        s.ensure(1000);
        assert_eq!(
            (s.table.len(), s.sample),
            (256, 10_240),
            "2048 words for 1024 entries"
        );
        s.increment(5);
        s.ensure(900);
        assert_eq!(s.frequency(5), 1, "no shrinking, no clearing");
        s.ensure(1025);
        assert_eq!((s.table.len(), s.frequency(5)), (512, 0), "growing clears");
        s.validate().unwrap();
    }

    #[test]
    fn blocks_are_cache_lines() {
        assert_eq!((size_of::<Block>(), align_of::<Block>()), (64, 64));
        let mut s = Sketch::new(3, u64::MAX);
        s.ensure(4096);
        assert_eq!(s.table.as_ptr() as usize % 64, 0);
    }

    /// One increment sets one counter in each of four different words of one block, the
    /// words and nibbles the module docs describe.
    #[test]
    fn an_increment_touches_four_words_of_one_block() {
        let mut s = Sketch::new(0x5eed, u64::MAX);
        s.ensure(256);
        for hash in [0, 1, 42, 0xdead_beef, u32::MAX] {
            s.table.iter_mut().for_each(|b| *b = Block::default());
            s.increment(hash);
            let spread = spread(hash, 0x5eed);
            let block = (spread >> 32) as usize % s.table.len();
            for (b, Block(words)) in s.table.iter().enumerate() {
                for (w, &word) in words.iter().enumerate() {
                    let byte = (spread >> (8 * (w / 2))) & 0xff;
                    let want = if b == block && w % 2 == (byte & 1) as usize {
                        1 << (((byte >> 1) & 15) * 4)
                    } else {
                        0
                    };
                    assert_eq!(word, want, "hash {hash}: block {b}, word {w}");
                }
            }
            assert_eq!(s.frequency(hash), 1);
        }
    }

    /// Before any halving, an estimate is never below the true count (capped at 15), and
    /// mostly exact when the table is roomy; the seed moves the counters.
    #[test]
    fn estimates_never_undercount() {
        let mut s = Sketch::new(11, u64::MAX);
        s.ensure(1024);
        let mut truth = HashMap::new();
        let mut x = 1u64;
        for _ in 0..5_000 {
            x = mix64(x);
            let hash = (x % 500) as u32 * 7919 + 1;
            let before = s.additions;
            s.increment(hash);
            assert!(s.additions >= before, "no halving");
            *truth.entry(hash).or_insert(0u8) += 1;
        }
        let mut exact = 0;
        for (&hash, &n) in &truth {
            let got = s.frequency(hash);
            assert!(got >= n.min(15), "hash {hash}: {got} < {n}");
            exact += usize::from(got == n.min(15));
        }
        assert!(
            exact * 10 > truth.len() * 9,
            "{exact} of {} exact",
            truth.len()
        );
        let mut other = Sketch::new(12, u64::MAX);
        other.ensure(1024);
        assert_ne!(
            s.locate(77),
            other.locate(77),
            "the seed places the counters"
        );
    }
}
