//! The slab of a shard's entry records (the policy's ids), and the record layout.
//!
//! Records live in a `Vec<Option<Meta>>` indexed by [`EntryId`]; freed slots are kept on a
//! free stack and reused first, so the slab stays dense and a random index is a fair sample.
//! Policies link entries through these `u32` indices, which keeps every list and heap free of
//! raw pointers and half their size.
//!
//! `Option<Meta>` costs no tag: the node index is stored as `NonZeroU32` (index + 1), whose
//! zero niche encodes `None`.

use std::num::NonZeroU32;

use crate::engine::concurrent::store::{Store, Writer};
use crate::engine::expiry::Deadline;
use crate::policy::{Entries, EntryId};

/// The largest weight one entry can have; a weigher's result is clamped to it.
pub(crate) const MAX_WEIGHT: u32 = u32::MAX - 1;

/// One entry's slab record, what the writer side keeps about it: where its node is (the key,
/// value, hash fragment and deadline, which readers reach without the lock, live in the store's
/// arena). 4 bytes; `Option<Meta>` costs no tag. Weights are not here: without a weigher
/// every entry weighs 1, and with one the shard keeps them in an array beside the policy's
/// states.
pub(crate) struct Meta {
    /// The node's index in the store's arena, plus one (node indices are below 2^24).
    node_plus_one: NonZeroU32,
}

impl Meta {
    pub(crate) fn new(node: u32) -> Self {
        Self {
            node_plus_one: NonZeroU32::MIN.saturating_add(node),
        }
    }

    /// The node's index in the store's arena.
    #[inline]
    pub(crate) fn node(&self) -> u32 {
        self.node_plus_one.get() - 1
    }
}

/// The weight of live entry `id`, given the shard's weights array (indexed like the slab;
/// empty when every entry weighs 1).
#[inline]
pub(crate) fn weight_at(weights: &[u32], id: EntryId) -> u32 {
    if weights.is_empty() {
        1
    } else {
        weights[id.index()]
    }
}

/// Pushes `value`, growing `v` by doubling as `Vec` would, but never past `limit` elements
/// (past it, `Vec`'s own growth applies: a weigher lets entries outnumber the capacity).
pub(crate) fn push_within<T>(v: &mut Vec<T>, value: T, limit: usize) {
    let len = v.len();
    if len == v.capacity() && len < limit {
        let target = (len * 2).max(4).min(limit).max(len + 1);
        v.reserve_exact(target - len);
    }
    v.push(value);
}

/// A vector of optional entries with a free stack of vacant indices. The shard keeps its
/// [`Meta`] records in one; [`Simulation`](crate::policy::Simulation) keeps its simulated
/// entries in another.
#[derive(Clone)]
pub(crate) struct Slab<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    len: usize,
    /// The most slots this slab will ever need (the shard's capacity in entries, when known):
    /// growth stops there instead of doubling past it.
    limit: usize,
}

impl<T> Slab<T> {
    #[cfg(test)]
    pub(crate) const fn new() -> Self {
        Self::with_limit(usize::MAX)
    }

    /// A slab whose vector never grows past `limit` slots by doubling.
    pub(crate) const fn with_limit(limit: usize) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            limit,
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The growth limit given to [`with_limit`](Self::with_limit).
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Stores `value` and returns its id; reuses the most recently freed slot first.
    ///
    /// # Panics
    ///
    /// If the slab would reach `u32::MAX` slots (ids keep `u32::MAX` free for their niche).
    pub(crate) fn insert(&mut self, value: T) -> EntryId {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            debug_assert!(slot.is_none());
            *slot = Some(value);
            EntryId::new(index)
        } else {
            let index = u32::try_from(self.slots.len())
                .ok()
                .filter(|&i| i < u32::MAX)
                .expect("a shard holds fewer than 2^32 - 1 entries");
            push_within(&mut self.slots, Some(value), self.limit);
            EntryId::new(index)
        }
    }

    /// Removes and returns the entry `id`.
    ///
    /// # Panics
    ///
    /// If `id` is vacant.
    pub(crate) fn remove(&mut self, id: EntryId) -> T {
        let value = self.slots[id.index()]
            .take()
            .expect("removing a vacant slot");
        self.len -= 1;
        if self.len == 0 {
            // Start dense again: drop the free stack and the vacant tail.
            self.slots.clear();
            self.free.clear();
        } else {
            self.free.push(id.raw());
        }
        value
    }

    /// Whether slot `id` holds an entry.
    #[inline]
    pub(crate) fn contains(&self, id: EntryId) -> bool {
        matches!(self.slots.get(id.index()), Some(Some(_)))
    }

    #[inline]
    pub(crate) fn get(&self, id: EntryId) -> Option<&T> {
        self.slots.get(id.index()).and_then(Option::as_ref)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, id: EntryId) -> Option<&mut T> {
        self.slots.get_mut(id.index()).and_then(Option::as_mut)
    }

    /// The entry `id`, which the caller knows to be live.
    ///
    /// # Panics
    ///
    /// If `id` is vacant: a broken invariant of the shard.
    #[inline]
    pub(crate) fn at(&self, id: EntryId) -> &T {
        self.get(id).expect("vacant slab slot")
    }

    /// The entry `id`, mutably, which the caller knows to be live.
    ///
    /// # Panics
    ///
    /// If `id` is vacant.
    #[inline]
    pub(crate) fn at_mut(&mut self, id: EntryId) -> &mut T {
        self.get_mut(id).expect("vacant slab slot")
    }

    /// Replaces the live entry `id` with `value` without reading it (a store to a line that
    /// is not cached does not wait for it, a load does).
    ///
    /// # Panics
    ///
    /// If `id` is out of range; in debug builds also if it is vacant.
    #[inline]
    pub(crate) fn overwrite(&mut self, id: EntryId, value: T) {
        let slot = &mut self.slots[id.index()];
        debug_assert!(slot.is_some(), "overwriting a vacant slab slot");
        *slot = Some(value);
    }

    /// Every live entry with its id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (EntryId, &T)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| slot.as_ref().map(|t| (EntryId::new(i as u32), t)))
    }

    /// A live id near the random index `random % slots`, scanning forward and wrapping.
    pub(crate) fn random(&self, random: u64) -> Option<EntryId> {
        if self.len == 0 {
            return None;
        }
        let n = self.slots.len();
        let start = (random % n as u64) as usize;
        (start..n)
            .chain(0..start)
            .find(|&i| self.slots[i].is_some())
            .map(|i| EntryId::new(i as u32))
    }

    /// Removes every entry, returning them.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = T> + use<T> {
        self.free.clear();
        self.len = 0;
        std::mem::take(&mut self.slots).into_iter().flatten()
    }

    /// Number of slots, live or vacant.
    pub(crate) fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Number of vacant slots on the free stack.
    pub(crate) fn vacant(&self) -> usize {
        self.free.len()
    }

    /// Bytes allocated by the slab itself (not by keys or values).
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Option<T>>() + self.free.capacity() * size_of::<u32>()
    }
}

/// What a policy sees of a shard: the slab's records, the store's nodes (for deadlines),
/// read-only, and the policy's own per-entry states, a dense array indexed like the slab.
///
/// Keeping the states apart from the entries packs the states a list or heap touches into a
/// few cache lines: an LRU relink reads 8-byte links, not whole entries.
pub(crate) struct View<'a, K, V, S> {
    pub(crate) slab: &'a Slab<Meta>,
    /// Each entry's weight, indexed like the slab; empty when every entry weighs 1.
    pub(crate) weights: &'a [u32],
    pub(crate) store: &'a Store<K, V>,
    pub(crate) writer: &'a Writer<K, V>,
    /// At least as long as the slab has slots; a vacant slot's state is stale.
    pub(crate) states: &'a mut [S],
}

impl<K, V, S> Entries<S> for View<'_, K, V, S> {
    #[inline]
    fn state(&self, id: EntryId) -> &S {
        debug_assert!(self.slab.contains(id), "state of vacant slot {id:?}");
        &self.states[id.index()]
    }

    #[inline]
    fn state_mut(&mut self, id: EntryId) -> &mut S {
        debug_assert!(self.slab.contains(id), "state of vacant slot {id:?}");
        &mut self.states[id.index()]
    }

    #[inline]
    fn hash(&self, id: EntryId) -> u32 {
        self.store.get(self.writer, self.slab.at(id).node()).hash
    }

    #[inline]
    fn weight(&self, id: EntryId) -> u32 {
        debug_assert!(self.slab.contains(id), "weight of vacant slot {id:?}");
        weight_at(self.weights, id)
    }

    #[inline]
    fn expires_at(&self, id: EntryId) -> Option<u64> {
        let node = self.store.get(self.writer, self.slab.at(id).node());
        Deadline::from_raw(node.deadline_bits()).instant()
    }

    #[inline]
    fn len(&self) -> usize {
        self.slab.len
    }

    #[inline]
    fn contains(&self, id: EntryId) -> bool {
        self.slab.contains(id)
    }

    #[inline]
    fn random(&self, random: u64) -> Option<EntryId> {
        self.slab.random(random)
    }

    fn ids(&self) -> impl Iterator<Item = EntryId> + '_ {
        self.slab.iter().map(|(id, _)| id)
    }

    #[inline]
    fn mark(&self, id: EntryId) -> u8 {
        self.store.get(self.writer, self.slab.at(id).node()).mark()
    }

    #[inline]
    fn set_mark(&mut self, id: EntryId, mark: u8) {
        self.store
            .get(self.writer, self.slab.at(id).node())
            .set_mark(mark);
    }

    #[inline]
    fn set_stamp(&mut self, stamp: u8) {
        self.store.readers().set_stamp(stamp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_meta_has_no_tag() {
        assert_eq!(size_of::<Option<Meta>>(), size_of::<Meta>());
        assert_eq!(size_of::<Meta>(), 4);
    }

    #[test]
    fn reuses_slots_and_resets_when_empty() {
        let mut s = Slab::new();
        let a = s.insert(1);
        let b = s.insert(2);
        assert_eq!(s.remove(a), 1);
        let c = s.insert(3);
        assert_eq!(c, a);
        assert_eq!(s.len(), 2);
        s.remove(b);
        s.remove(c);
        assert_eq!(s.slots(), 0);
        assert_eq!(s.random(7), None);
    }

    #[test]
    fn growth_stops_at_the_limit() {
        let mut s = Slab::with_limit(100);
        for i in 0..100 {
            s.insert(i);
        }
        assert_eq!(s.slots.capacity(), 100);
        s.insert(100);
        assert!(s.slots.capacity() > 100);
    }

    #[test]
    fn random_finds_a_live_slot() {
        let mut s = Slab::new();
        let ids: Vec<_> = (0..10).map(|i| s.insert(i)).collect();
        for &id in &ids[..9] {
            s.remove(id);
        }
        for r in 0..20 {
            assert_eq!(s.random(r), Some(ids[9]));
        }
    }

    #[test]
    fn node_index_round_trips() {
        assert_eq!(Meta::new(0).node(), 0);
        assert_eq!(Meta::new((1 << 24) - 1).node(), (1 << 24) - 1);
    }

    #[test]
    fn overwrite_replaces_a_live_entry_in_place() {
        let mut s = Slab::new();
        let a = s.insert(1);
        let b = s.insert(2);
        s.overwrite(a, 10);
        assert_eq!((s.get(a), s.get(b), s.len()), (Some(&10), Some(&2), 2));
    }
}
