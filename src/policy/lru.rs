//! Least recently used: an intrusive doubly linked list, O(1) touch and evict.
//!
//! Hits reach the list at most once per entry and *period*, the time the list takes to turn
//! over a quarter of its length (moves and inserts at its head): the entry moved is stamped
//! with the period's number in its mark, and readers drop hits on entries that carry the
//! current stamp ([`HitAccess::Stamp`]). A hot set costs its readers a lookup each, no record.
//! `Lru::exact()` moves on every hit.

use super::list::{Links, List};
use super::{Entries, EntryId, EvictionPolicy, HitAccess};

/// A period ends once the list has taken `len / PERIOD_SHARE` entries at its head.
const PERIOD_SHARE: usize = 4;

/// Least recently used eviction: a hit or an update moves the entry to the front of a list,
/// and the tail is evicted.
///
/// An entry moves to the front at most once per *period*: the time the list takes to turn
/// over a quarter of its length. Further hits on it in the same period are dropped by the
/// readers themselves (its mark carries the period's stamp, [`HitAccess::Stamp`]), so the
/// hits of a hot set cost no more than the lookups; the other hits are recorded in the
/// readers' lossy rings and applied in batches, and readers never serialize on a hit. The
/// eviction order is LRU order of the moves: an entry evicted was not hit since a quarter of
/// the list before its last move, at least. [`Lru::exact`] moves on every hit, for exact LRU
/// order (with one shard and one thread), at the cost of a recorded hit each.
///
/// Each entry carries 8 bytes of links.
///
/// # Example
///
/// ```
/// use aside::{Cache, policy::Lru};
///
/// let cache: Cache<u32, u32, Lru> =
///     Cache::builder().max_capacity(2).shards(1).policy(Lru::new()).build().unwrap();
/// cache.insert(1, 1);
/// cache.insert(2, 2);
/// cache.get(&1); // 1 is now the most recent
/// cache.insert(3, 3); // evicts 2
/// assert!(cache.contains_key(&1) && !cache.contains_key(&2));
/// ```
#[derive(Debug, Clone)]
pub struct Lru {
    list: List,
    exact: bool,
    /// The current period's stamp, 1 to 255 (0 is no stamp).
    stamp: u8,
    /// Entries taken at the head in this period.
    moves: usize,
    /// The stamp has been handed to the readers.
    published: bool,
}

impl Default for Lru {
    fn default() -> Self {
        Self {
            list: List::default(),
            exact: false,
            stamp: 1,
            moves: 0,
            published: false,
        }
    }
}

impl Lru {
    /// A new LRU policy: an entry moves at most once per period.
    ///
    /// # Example
    ///
    /// ```
    /// let policy = aside::policy::Lru::new();
    /// # let _ = policy;
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A new LRU policy that moves an entry on every hit: exact LRU order, every hit recorded
    /// and replayed.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::{Cache, policy::Lru};
    ///
    /// let cache: Cache<u32, u32, Lru> =
    ///     Cache::builder().max_capacity(8).shards(1).policy(Lru::exact()).build().unwrap();
    /// for k in 0..8 {
    ///     cache.insert(k, k);
    /// }
    /// cache.get(&0); // 0 moves to the front
    /// cache.insert(8, 8); // evicts 1, the least recently used
    /// assert!(cache.contains_key(&0) && !cache.contains_key(&1));
    /// ```
    #[must_use]
    pub fn exact() -> Self {
        Self {
            exact: true,
            ..Self::default()
        }
    }

    /// Stamps `id`, just taken at the head, with the period; ends the period once the list
    /// has taken a quarter of its length.
    fn stamp(&mut self, id: EntryId, entries: &mut impl Entries<Links>) {
        if !self.published {
            entries.set_stamp(self.stamp);
            self.published = true;
        }
        entries.set_mark(id, self.stamp);
        self.moves += 1;
        if self.moves * PERIOD_SHARE >= self.list.len() {
            self.moves = 0;
            self.stamp = self.stamp % u8::MAX + 1;
            entries.set_stamp(self.stamp);
        }
    }
}

impl EvictionPolicy for Lru {
    type State = Links;
    const HIT: HitAccess = HitAccess::Stamp;

    fn on_insert(&mut self, id: EntryId, entries: &mut impl Entries<Links>) {
        self.list.push_front(id, entries);
        if !self.exact {
            self.stamp(id, entries);
        }
    }

    fn on_access(&mut self, id: EntryId, entries: &mut impl Entries<Links>) {
        if self.exact {
            self.list.move_to_front(id, entries);
        } else if entries.mark(id) != self.stamp {
            self.list.move_to_front(id, entries);
            self.stamp(id, entries);
        }
    }

    fn on_remove(&mut self, id: EntryId, entries: &mut impl Entries<Links>) {
        self.list.unlink(id, entries);
    }

    fn victim(&mut self, _: u32, _: &mut impl Entries<Links>) -> Option<EntryId> {
        self.list.tail()
    }

    /// The list from its head: most recently used first.
    fn hottest(&self, entries: &impl Entries<Links>, limit: usize, out: &mut Vec<EntryId>) {
        self.list.take_from_head(entries, limit, out);
    }

    fn clear(&mut self) {
        self.list.clear();
        self.moves = 0;
    }

    fn validate(&self, entries: &impl Entries<Links>) -> Result<(), String> {
        self.list.validate_all(entries)?;
        if self.stamp == 0 {
            return Err("the period's stamp is 0".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::*;
    use crate::policy::Simulation;

    /// The reference model of `Lru::new()`: keys most recent first with the stamp of their
    /// last move, and the period's stamp and move count.
    struct Model {
        list: VecDeque<(u32, u8)>,
        stamp: u8,
        moves: usize,
    }

    impl Model {
        fn front(&mut self, k: u32) {
            self.list.push_front((k, self.stamp));
            self.moves += 1;
            if self.moves * PERIOD_SHARE >= self.list.len() {
                self.moves = 0;
                self.stamp = self.stamp % u8::MAX + 1;
            }
        }

        fn access(&mut self, k: u32, cap: usize) -> bool {
            if let Some(p) = self.list.iter().position(|e| e.0 == k) {
                if self.list[p].1 != self.stamp {
                    self.list.remove(p);
                    self.front(k);
                }
                return true;
            }
            if self.list.len() == cap {
                self.list.pop_back();
            }
            self.front(k);
            false
        }
    }

    proptest! {
        /// `Lru::new()` in a simulation (every hit reaches `on_access`) makes the decisions of
        /// the model, hit for hit, and holds the model's keys after every access.
        #[test]
        fn period_lru_matches_its_model(
            cap in 1u64..40,
            keys in prop::collection::vec(0u32..60, 0..600),
        ) {
            let mut sim = Simulation::new(Lru::new(), cap, 1);
            let mut model = Model { list: VecDeque::new(), stamp: 1, moves: 0 };
            for k in keys {
                prop_assert_eq!(sim.access(k, 1), model.access(k, cap as usize));
                sim.validate().map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!((sim.policy().stamp, sim.policy().moves), (model.stamp, model.moves));
            }
            for k in 0..60 {
                prop_assert_eq!(sim.contains(k), model.list.iter().any(|e| e.0 == k));
            }
        }
    }

    /// A hot set hit within a period keeps its place, and outlives a scan of cold keys as LRU
    /// would keep it.
    #[test]
    fn a_hot_set_outlives_a_scan() {
        let mut sim = Simulation::new(Lru::new(), 100, 1);
        for k in 0..100 {
            sim.access(k, 1);
        }
        for _ in 0..3 {
            for k in 0..10 {
                assert!(sim.access(k, 1));
            }
        }
        for k in 1000..1090 {
            assert!(!sim.access(k, 1));
        }
        for k in 0..10 {
            assert!(sim.access(k, 1), "hot key {k} was evicted");
        }
    }
}
