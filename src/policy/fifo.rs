//! First in, first out: insertion order; hits and updates change nothing.

use super::list::{Links, List};
use super::{Entries, EntryId, EvictionPolicy, HitAccess};

/// First-in-first-out eviction: the oldest inserted entry is evicted. Hits change nothing
/// ([`HitAccess::Ignore`]), so a hit records nothing;
/// replacing a value keeps the entry's place in the queue.
///
/// # Example
///
/// ```
/// use aside::{Cache, policy::Fifo};
///
/// let cache: Cache<u32, u32, Fifo> =
///     Cache::builder().max_capacity(2).shards(1).policy(Fifo::new()).build().unwrap();
/// cache.insert(1, 1);
/// cache.insert(2, 2);
/// cache.get(&1); // no effect on order
/// cache.insert(3, 3); // evicts 1, the oldest
/// assert!(!cache.contains_key(&1) && cache.contains_key(&2));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Fifo {
    list: List,
}

impl Fifo {
    /// A new FIFO policy.
    ///
    /// # Example
    ///
    /// ```
    /// let policy = aside::policy::Fifo::new();
    /// # let _ = policy;
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl EvictionPolicy for Fifo {
    type State = Links;
    const HIT: HitAccess = HitAccess::Ignore;

    fn on_insert(&mut self, id: EntryId, entries: &mut impl Entries<Links>) {
        self.list.push_front(id, entries);
    }

    fn on_update(&mut self, _: EntryId, _: u32, _: &mut impl Entries<Links>) {}

    fn on_remove(&mut self, id: EntryId, entries: &mut impl Entries<Links>) {
        self.list.unlink(id, entries);
    }

    fn victim(&mut self, _: u32, _: &mut impl Entries<Links>) -> Option<EntryId> {
        self.list.tail()
    }

    /// The list from its head: newest first.
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
