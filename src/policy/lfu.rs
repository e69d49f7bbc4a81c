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

/// Per-entry state of [`Lfu`]: frequency, priority, last-access tick and heap position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LfuState {
    freq: u32,
    prio: u32,
    tick: u32,
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

    /// The LFU-DA priority: the cache age when last touched plus the frequency.
    ///
    /// # Example
    ///
    /// ```
    /// # use aside::policy::LfuState;
    /// assert_eq!(LfuState::default().priority(), 0);
    /// ```
    #[must_use]
    pub fn priority(&self) -> u32 {
        self.prio
    }

    fn key(&self) -> (u32, u32) {
        (self.prio, self.tick)
    }
}

/// Least frequently used eviction with LFU-DA dynamic aging; ties broken by recency.
///
/// The entry with the lowest priority `age + frequency` is evicted, the least recently used
/// first among equals; the cache age becomes the evicted entry's priority. Hits are buffered
/// like [`Lru`](super::Lru)'s ([`HitAccess::Exclusive`]); every operation is O(log n). Each
/// entry carries 16 bytes of state, and the heap 4 bytes per entry.
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
    heap: Vec<EntryId>,
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

    fn next_tick(&mut self, entries: &mut impl Entries<LfuState>) -> u32 {
        if self.tick == u32::MAX {
            // Rebase ticks to 0..n in their current order: heap order is unchanged.
            let mut by_tick = self.heap.clone();
            by_tick.sort_by_key(|&e| entries.state(e).tick);
            for (t, e) in by_tick.into_iter().enumerate() {
                entries.state_mut(e).tick = t as u32;
            }
            self.tick = self.heap.len() as u32;
        }
        let t = self.tick;
        self.tick += 1;
        t
    }

    fn less(entries: &impl Entries<LfuState>, a: EntryId, b: EntryId) -> bool {
        entries.state(a).key() < entries.state(b).key()
    }

    fn place(&mut self, at: usize, e: EntryId, entries: &mut impl Entries<LfuState>) {
        self.heap[at] = e;
        entries.state_mut(e).pos = at as u32;
    }

    fn sift_up(&mut self, mut at: usize, entries: &mut impl Entries<LfuState>) -> usize {
        let e = self.heap[at];
        while at > 0 {
            let parent = (at - 1) / 2;
            if !Self::less(entries, e, self.heap[parent]) {
                break;
            }
            let p = self.heap[parent];
            self.place(at, p, entries);
            at = parent;
        }
        self.place(at, e, entries);
        at
    }

    fn sift_down(&mut self, mut at: usize, entries: &mut impl Entries<LfuState>) {
        let e = self.heap[at];
        let n = self.heap.len();
        loop {
            let left = 2 * at + 1;
            if left >= n {
                break;
            }
            let right = left + 1;
            let child = if right < n && Self::less(entries, self.heap[right], self.heap[left]) {
                right
            } else {
                left
            };
            if !Self::less(entries, self.heap[child], e) {
                break;
            }
            let c = self.heap[child];
            self.place(at, c, entries);
            at = child;
        }
        self.place(at, e, entries);
    }

    fn fix(&mut self, at: usize, entries: &mut impl Entries<LfuState>) {
        let at = self.sift_up(at, entries);
        self.sift_down(at, entries);
    }

    fn touch(&mut self, id: EntryId, entries: &mut impl Entries<LfuState>) {
        let tick = self.next_tick(entries);
        let age = self.age;
        let s = entries.state_mut(id);
        s.freq = (s.freq + 1).min(FREQ_MAX);
        s.prio = age + s.freq;
        s.tick = tick;
        let pos = s.pos as usize;
        self.sift_down(pos, entries);
    }
}

impl EvictionPolicy for Lfu {
    type State = LfuState;
    const HIT: HitAccess = HitAccess::Exclusive;

    fn on_insert(&mut self, id: EntryId, entries: &mut impl Entries<LfuState>) {
        let tick = self.next_tick(entries);
        *entries.state_mut(id) = LfuState {
            freq: 1,
            prio: self.age + 1,
            tick,
            pos: self.heap.len() as u32,
        };
        self.heap.push(id);
        self.sift_up(self.heap.len() - 1, entries);
    }

    fn on_access(&mut self, id: EntryId, entries: &mut impl Entries<LfuState>) {
        self.touch(id, entries);
    }

    fn on_remove(&mut self, id: EntryId, entries: &mut impl Entries<LfuState>) {
        let at = entries.state(id).pos as usize;
        let last = self.heap.pop().expect("removing from an empty heap");
        if at < self.heap.len() {
            self.place(at, last, entries);
            self.fix(at, entries);
        }
    }

    fn victim(&mut self, entries: &mut impl Entries<LfuState>) -> Option<EntryId> {
        let v = *self.heap.first()?;
        self.age = self.age.max(entries.state(v).prio);
        if self.age > AGE_REBASE {
            // Every priority is at least the age: subtracting it keeps the order.
            for &e in &self.heap {
                entries.state_mut(e).prio -= self.age;
            }
            self.age = 0;
        }
        Some(v)
    }

    fn clear(&mut self) {
        self.heap.clear();
        self.age = 0;
        self.tick = 0;
    }

    fn validate(&self, entries: &impl Entries<LfuState>) -> Result<(), String> {
        if self.heap.len() != entries.len() {
            return Err(format!(
                "heap holds {} entries, shard {}",
                self.heap.len(),
                entries.len()
            ));
        }
        for (i, &e) in self.heap.iter().enumerate() {
            if !entries.contains(e) {
                return Err(format!("heap holds vacant slot {e:?}"));
            }
            let s = entries.state(e);
            if s.pos as usize != i {
                return Err(format!("{e:?} at heap {i} records position {}", s.pos));
            }
            if s.freq == 0 || s.prio < self.age {
                return Err(format!("{e:?} has {s:?} below age {}", self.age));
            }
            if i > 0 && Self::less(entries, e, self.heap[(i - 1) / 2]) {
                return Err(format!("heap order broken at {i}"));
            }
        }
        Ok(())
    }
}
