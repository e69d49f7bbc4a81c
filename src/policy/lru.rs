//! Least recently used: an intrusive doubly linked list, O(1) touch and evict.

use super::list::{Links, List};
use super::{Entries, EntryId, EvictionPolicy, HitAccess};

/// Least recently used eviction: every hit or update moves the entry to the front of a list,
/// and the tail is evicted.
///
/// Hits are recorded in the readers' lossy rings and applied in batches
/// ([`HitAccess::Exclusive`]), so readers never serialize on a hit. Each entry
/// carries 8 bytes of links. With one shard and one thread, eviction order is exact LRU.
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
#[derive(Debug, Clone, Default)]
pub struct Lru {
    list: List,
}

impl Lru {
    /// A new LRU policy.
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
}

impl EvictionPolicy for Lru {
    type State = Links;
    const HIT: HitAccess = HitAccess::Exclusive;

    fn on_insert(&mut self, id: EntryId, entries: &mut impl Entries<Links>) {
        self.list.push_front(id, entries);
    }

    fn on_access(&mut self, id: EntryId, entries: &mut impl Entries<Links>) {
        self.list.move_to_front(id, entries);
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
    }

    fn validate(&self, entries: &impl Entries<Links>) -> Result<(), String> {
        self.list.validate_all(entries)
    }
}
