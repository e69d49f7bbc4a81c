//! Least frequently used with dynamic aging (LFU-DA): a binary min-heap over slab indices.
//!
//! # Aging: why LFU-DA and not periodic halving
//!
//! Plain LFU lets an entry that was hot once keep its count forever. Two cures are common:
//! halve every count periodically, or age dynamically (LFU-DA, Arlitt et al., 2000). Halving
//! needs an O(n) pass over all entries and, because halving collapses distinct counts into
//! ties that the recency tie-break then reorders, an O(n) re-heapify after it: a latency spike
//! every period. LFU-DA keeps a cache *age* `L`, set to the priority of each evicted entry, and
//! gives an entry the priority `L + frequency` whenever it is inserted or hit. New entries
//! therefore start level with what was just evicted, and an old entry's frozen priority is
//! overtaken as `L` rises, so once-hot entries age out without any periodic pass: every
//! operation stays O(log n).
//!
//! Ties on priority go to recency: among equal priorities the least recently used is evicted.
//! Counters are `u32`; on the rare overflow paths (2^31 evictions' worth of age, 2^32
//! accesses' worth of ticks) all priorities or ticks are rebased in one O(n) pass that
//! preserves their order.

use super::{Entries, EntryId, EvictionPolicy, HitAccess};

/// Frequencies saturate here, so that `age + frequency` cannot overflow.
const FREQ_MAX: u32 = 1 << 30;
/// The age is rebased to zero once it passes this.
const AGE_REBASE: u32 = 1 << 31;

/// Per-entry state of [`Lfu`]: the frequency and the entry's position in the heap.
///
/// The heap keeps each entry's sort key (priority and last-access tick) inline, next to its
/// id, so that sifting compares neighbouring array slots instead of chasing entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LfuState {
    freq: u32,
    pos: u32,
}

impl LfuState {
    /// Hits plus one (the insert), saturating at 2^30.
    ///
    /// # Example
    ///
    /// ```
    /// # use aside::policy::LfuState;
    /// assert_eq!(LfuState::default().frequency(), 0);
    /// ```
    #[must_use]
    pub fn frequency(&self) -> u32 {
        self.freq
    }
}

/// A heap key: the LFU-DA priority in the high half, the last-access tick in the low half, so
/// that one integer comparison orders by priority, then recency.
fn key(prio: u32, tick: u32) -> u64 {
    (u64::from(prio) << 32) | u64::from(tick)
}

fn prio(key: u64) -> u32 {
    (key >> 32) as u32
}

fn tick(key: u64) -> u32 {
    key as u32
}

/// Least frequently used eviction with LFU-DA dynamic aging; ties broken by recency.
///
/// The entry with the lowest priority `age + frequency` is evicted, the least recently used
/// first among equals; the cache age becomes the evicted entry's priority. Hits are buffered
/// like [`Lru`](super::Lru)'s ([`HitAccess::Exclusive`]); every operation is O(log n). Each
/// entry carries 8 bytes of state, and the heap 12 bytes per entry (its sort key and id).
///
/// # Example
///
/// ```
/// use aside::{Cache, policy::Lfu};
///
/// let cache: Cache<u32, u32, Lfu> =
///     Cache::builder().max_capacity(2).shards(1).policy(Lfu::new()).build().unwrap();
/// cache.insert(1, 1);
/// cache.insert(2, 2);
/// cache.get(&1);
/// cache.get(&1);
/// cache.get(&2);
/// cache.insert(3, 3); // 2 has the lower frequency
/// assert!(cache.contains_key(&1) && !cache.contains_key(&2));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Lfu {
    /// Sort keys of the binary min-heap, in heap order.
    keys: Vec<u64>,
    /// The entry at each heap position.
    ids: Vec<EntryId>,
    age: u32,
    tick: u32,
}

impl Lfu {
    /// A new LFU-DA policy.
    ///
    /// # Example
    ///
    /// ```
    /// let policy = aside::policy::Lfu::new();
    /// # let _ = policy;
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn next_tick(&mut self) -> u32 {
        if self.tick == u32::MAX {
            // Rebase ticks to 0..n in their current order: the heap order is unchanged.
            let mut by_tick: Vec<usize> = (0..self.keys.len()).collect();
            by_tick.sort_by_key(|&i| tick(self.keys[i]));
            for (t, i) in by_tick.into_iter().enumerate() {
                self.keys[i] = key(prio(self.keys[i]), t as u32);
            }
            self.tick = self.keys.len() as u32;
        }
        let t = self.tick;
        self.tick += 1;
        t
    }

    fn place(&mut self, at: usize, k: u64, e: EntryId, entries: &mut impl Entries<LfuState>) {
        self.keys[at] = k;
        self.ids[at] = e;
        entries.state_mut(e).pos = at as u32;
    }

    fn sift_up(&mut self, mut at: usize, entries: &mut impl Entries<LfuState>) -> usize {
        let (k, e) = (self.keys[at], self.ids[at]);
        while at > 0 {
            let parent = (at - 1) / 2;
            if k >= self.keys[parent] {
                break;
            }
            let (pk, pe) = (self.keys[parent], self.ids[parent]);
            self.place(at, pk, pe, entries);
            at = parent;
        }
        self.place(at, k, e, entries);
        at
    }

    fn sift_down(&mut self, mut at: usize, entries: &mut impl Entries<LfuState>) {
        let (k, e) = (self.keys[at], self.ids[at]);
        let n = self.keys.len();
        loop {
            let left = 2 * at + 1;
            if left >= n {
                break;
            }
            let right = left + 1;
            let child = if right < n && self.keys[right] < self.keys[left] {
                right
            } else {
                left
            };
            if self.keys[child] >= k {
                break;
            }
            let (ck, ce) = (self.keys[child], self.ids[child]);
            self.place(at, ck, ce, entries);
            at = child;
        }
        self.place(at, k, e, entries);
    }

    fn fix(&mut self, at: usize, entries: &mut impl Entries<LfuState>) {
        let at = self.sift_up(at, entries);
        self.sift_down(at, entries);
    }

    fn touch(&mut self, id: EntryId, entries: &mut impl Entries<LfuState>) {
        let tick = self.next_tick();
        let s = entries.state_mut(id);
        s.freq = (s.freq + 1).min(FREQ_MAX);
        let (freq, pos) = (s.freq, s.pos as usize);
        // The key only grows (the age never falls, the tick is new): sifting down suffices.
        self.keys[pos] = key(self.age + freq, tick);
        self.sift_down(pos, entries);
    }
}

/// The `limit` ids with the largest sort keys, largest first (ties in no particular order).
pub(super) fn top<K: Ord + Copy>(keys: &[K], ids: &[EntryId], limit: usize) -> Vec<EntryId> {
    let mut ranked: Vec<(K, EntryId)> = keys.iter().copied().zip(ids.iter().copied()).collect();
    let by_key_desc = |a: &(K, EntryId), b: &(K, EntryId)| b.0.cmp(&a.0);
    if limit == 0 {
        return Vec::new();
    }
    if limit < ranked.len() {
        ranked.select_nth_unstable_by(limit - 1, by_key_desc);
        ranked.truncate(limit);
    }
    ranked.sort_unstable_by(by_key_desc);
    ranked.into_iter().map(|(_, id)| id).collect()
}

impl EvictionPolicy for Lfu {
    type State = LfuState;
    const HIT: HitAccess = HitAccess::Exclusive;

    fn on_insert(&mut self, id: EntryId, entries: &mut impl Entries<LfuState>) {
        let tick = self.next_tick();
        *entries.state_mut(id) = LfuState {
            freq: 1,
            pos: self.keys.len() as u32,
        };
        self.keys.push(key(self.age + 1, tick));
        self.ids.push(id);
        self.sift_up(self.keys.len() - 1, entries);
    }

    fn on_access(&mut self, id: EntryId, entries: &mut impl Entries<LfuState>) {
        self.touch(id, entries);
    }

    fn on_remove(&mut self, id: EntryId, entries: &mut impl Entries<LfuState>) {
        let at = entries.state(id).pos as usize;
        let last_key = self.keys.pop().expect("removing from an empty heap");
        let last = self.ids.pop().expect("keys and ids have one length");
        if at < self.keys.len() {
            self.place(at, last_key, last, entries);
            self.fix(at, entries);
        }
    }

    fn victim(&mut self, _: u32, _: &mut impl Entries<LfuState>) -> Option<EntryId> {
        let v = *self.ids.first()?;
        self.age = self.age.max(prio(self.keys[0]));
        if self.age > AGE_REBASE {
            // Every priority is at least the age: subtracting it keeps the order.
            let shift = u64::from(self.age) << 32;
            for k in &mut self.keys {
                *k -= shift;
            }
            self.age = 0;
        }
        Some(v)
    }

    /// Highest priority (`age + frequency`) first, the most recently used first among equals:
    /// the heap's reverse order. O(n + limit log limit).
    fn hottest(&self, _: &impl Entries<LfuState>, limit: usize, out: &mut Vec<EntryId>) {
        out.extend(top(&self.keys, &self.ids, limit));
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.ids.clear();
        self.age = 0;
        self.tick = 0;
    }

    fn validate(&self, entries: &impl Entries<LfuState>) -> Result<(), String> {
        if self.keys.len() != entries.len() || self.ids.len() != entries.len() {
            return Err(format!(
                "heap holds {} keys and {} ids, shard {} entries",
                self.keys.len(),
                self.ids.len(),
                entries.len()
            ));
        }
        for (i, (&k, &e)) in self.keys.iter().zip(&self.ids).enumerate() {
            if !entries.contains(e) {
                return Err(format!("heap holds vacant slot {e:?}"));
            }
            let s = entries.state(e);
            if s.pos as usize != i {
                return Err(format!("{e:?} at heap {i} records position {}", s.pos));
            }
            if s.freq == 0 || prio(k) < self.age || prio(k) - self.age > s.freq {
                return Err(format!(
                    "{e:?} has {s:?} and priority {} at age {}",
                    prio(k),
                    self.age
                ));
            }
            if i > 0 && k < self.keys[(i - 1) / 2] {
                return Err(format!("heap order broken at {i}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries 0..n, all live, with their LFU states.
    struct Dense(Vec<LfuState>);

    impl Entries<LfuState> for Dense {
        fn state(&self, id: EntryId) -> &LfuState {
            &self.0[id.index()]
        }
        fn state_mut(&mut self, id: EntryId) -> &mut LfuState {
            &mut self.0[id.index()]
        }
        fn hash(&self, id: EntryId) -> u32 {
            id.raw()
        }
        fn weight(&self, _: EntryId) -> u32 {
            1
        }
        fn expires_at(&self, _: EntryId) -> Option<u64> {
            None
        }
        fn len(&self) -> usize {
            self.0.len()
        }
        fn contains(&self, id: EntryId) -> bool {
            id.index() < self.0.len()
        }
        fn random(&self, random: u64) -> Option<EntryId> {
            (!self.0.is_empty()).then(|| EntryId::new((random % self.0.len() as u64) as u32))
        }
        fn ids(&self) -> impl Iterator<Item = EntryId> + '_ {
            (0..self.0.len() as u32).map(EntryId::new)
        }
        fn mark(&self, _: EntryId) -> u8 {
            unreachable!("LFU keeps no mark")
        }
        fn set_mark(&mut self, _: EntryId, _: u8) {
            unreachable!("LFU keeps no mark")
        }
    }

    /// Evicts everything, returning the order.
    fn evict_all(lfu: &mut Lfu, entries: &mut Dense) -> Vec<u32> {
        let mut order = Vec::new();
        while let Some(v) = lfu.victim(0, entries) {
            lfu.on_remove(v, entries);
            order.push(v.raw());
        }
        order
    }

    #[test]
    fn tick_and_age_rebase_keep_the_order() {
        let (mut a, mut b) = (Lfu::new(), Lfu::new());
        b.tick = u32::MAX - 3; // b's ticks overflow mid-run and are rebased
        b.age = AGE_REBASE - 1; // b's age passes the rebase point at its first eviction
        let (mut ea, mut eb) = (
            Dense(vec![LfuState::default(); 8]),
            Dense(vec![LfuState::default(); 8]),
        );
        for lfu_entries in [(&mut a, &mut ea), (&mut b, &mut eb)] {
            let (lfu, entries) = lfu_entries;
            for i in 0..8 {
                lfu.on_insert(EntryId::new(i), entries);
            }
            for i in [3, 1, 3, 5, 1, 3, 7, 0] {
                lfu.on_access(EntryId::new(i), entries);
                lfu.validate(entries).unwrap();
            }
        }
        assert!(b.tick < 100, "ticks were rebased");
        let order_a = evict_all(&mut a, &mut ea);
        let order_b = evict_all(&mut b, &mut eb);
        assert_eq!(order_a, [2, 4, 6, 5, 7, 0, 1, 3]);
        assert_eq!(order_a, order_b);
        assert!(b.age < AGE_REBASE, "the age was rebased");
    }
}
