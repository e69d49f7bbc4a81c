//! [`Simulation`]: an eviction policy run over a stream of key hashes, without keys or values.
//!
//! A policy cannot tell a shard from a simulation: both hand it the same [`Entries`] view. That
//! makes a simulation useful in two places: to evaluate a policy on a recorded access stream
//! (what hit ratio would it get at this capacity?), and inside a policy, to compare settings
//! on a sample of the live stream (W-TinyLFU's window tuner runs eight of them). Its entries
//! live in the engine's slab (`engine::slab::Slab`), the one the shards keep their records
//! in, with the same free stack (the last freed slot is reused first).

use std::fmt;

use hashbrown::HashTable;

use super::{Entries, EntryId, EvictionPolicy, ShardContext};
use crate::engine::protocol::{self, Admission, Residence};
use crate::engine::slab::Slab;

/// One simulated entry: a key hash, its weight, its mark and the policy's state. The shard's
/// slab keeps the same facts apart (the record, the node's mark, the dense state array); a
/// simulation has no readers to serve, so one slab of these is enough.
#[derive(Clone)]
pub(crate) struct Simulated<S> {
    hash: u32,
    weight: u32,
    mark: u8,
    state: S,
}

impl<S: Default> Simulated<S> {
    /// A new entry: unmarked, in the policy's initial state.
    pub(crate) fn new(hash: u32, weight: u32) -> Self {
        Self {
            hash,
            weight,
            mark: 0,
            state: S::default(),
        }
    }
}

#[cfg(test)]
impl<S> Simulated<S> {
    /// Sets the weight; returns the old one.
    pub(crate) fn set_weight(&mut self, weight: u32) -> u32 {
        std::mem::replace(&mut self.weight, weight)
    }
}

impl<S> Entries<S> for Slab<Simulated<S>> {
    fn state(&self, id: EntryId) -> &S {
        &self.at(id).state
    }
    fn state_mut(&mut self, id: EntryId) -> &mut S {
        &mut self.at_mut(id).state
    }
    fn hash(&self, id: EntryId) -> u32 {
        self.at(id).hash
    }
    fn weight(&self, id: EntryId) -> u32 {
        self.at(id).weight
    }
    fn expires_at(&self, _: EntryId) -> Option<u64> {
        None
    }
    fn len(&self) -> usize {
        Slab::len(self)
    }
    fn contains(&self, id: EntryId) -> bool {
        Slab::contains(self, id)
    }
    fn random(&self, random: u64) -> Option<EntryId> {
        Slab::random(self, random)
    }
    fn ids(&self) -> impl Iterator<Item = EntryId> + '_ {
        self.iter().map(|(id, _)| id)
    }
    fn mark(&self, id: EntryId) -> u8 {
        self.at(id).mark
    }
    fn set_mark(&mut self, id: EntryId, mark: u8) {
        self.at_mut(id).mark = mark;
    }
}

/// The table's hash of a key hash (the table wants 64 well-mixed bits).
fn table_hash(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// An [`EvictionPolicy`] run over a stream of 32-bit key hashes, as one cache shard would run
/// it in cache-aside use: each [`access`](Self::access) is a lookup; a miss inserts the key
/// (through the policy's [`admit`](EvictionPolicy::admit) when the capacity is full, and
/// evicting the policy's victims to make room first). A shard and a simulation run the same
/// code for that protocol, so a policy makes the same decisions in both.
///
/// A simulation stores no keys or values: a key *is* its hash, so two keys with the same 32-bit
/// hash count as one (1 in 2³² per pair; irrelevant to a hit ratio). There are no deadlines:
/// [`Entries::expires_at`] is always `None`.
///
/// Per simulated entry: the policy's state plus 12 bytes, and about 5 bytes of table.
///
/// # Example
///
/// ```
/// use aside::policy::{Lru, Simulation};
///
/// let mut sim = Simulation::new(Lru::new(), 2, 0);
/// assert!(!sim.access(1, 1)); // miss: inserted
/// assert!(!sim.access(2, 1));
/// assert!(sim.access(1, 1)); // hit: 1 is now the most recently used
/// assert!(!sim.access(3, 1)); // evicts 2
/// assert!(sim.contains(1) && !sim.contains(2));
/// assert_eq!((sim.hits(), sim.requests()), (1, 4));
/// sim.validate().unwrap();
/// ```
#[derive(Clone)]
pub struct Simulation<P: EvictionPolicy> {
    policy: P,
    entries: Slab<Simulated<P::State>>,
    table: HashTable<u32>,
    capacity: u64,
    weight: u64,
    hits: u64,
    requests: u64,
}

impl<P: EvictionPolicy> Simulation<P> {
    /// A simulation of `policy` in one shard of `capacity` (entries, or weight units), the
    /// policy configured with `seed` for its randomness.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::policy::{Simulation, WTinyLfu};
    /// let sim = Simulation::new(WTinyLfu::with_window_fraction(0.2).unwrap(), 1000, 7);
    /// assert_eq!((sim.capacity(), sim.len()), (1000, 0));
    /// ```
    #[must_use]
    pub fn new(mut policy: P, capacity: u64, seed: u64) -> Self {
        policy.configure(&ShardContext {
            index: 0,
            capacity,
            seed,
        });
        Self {
            policy,
            entries: Slab::with_limit(usize::try_from(capacity).unwrap_or(usize::MAX)),
            table: HashTable::new(),
            capacity,
            weight: 0,
            hits: 0,
            requests: 0,
        }
    }

    /// One request for the key with hash `hash` and weight `weight`: `true` on a hit (the
    /// policy is told of the access), `false` on a miss (the key is inserted unless it is
    /// heavier than the capacity or the policy refuses it).
    ///
    /// # Example
    ///
    /// ```
    /// use aside::policy::{Fifo, Simulation};
    /// let mut sim = Simulation::new(Fifo::new(), 10, 0);
    /// assert!(!sim.access(42, 11)); // heavier than the capacity: never stored
    /// assert!(!sim.access(42, 1));
    /// assert!(sim.access(42, 1));
    /// ```
    pub fn access(&mut self, hash: u32, weight: u32) -> bool {
        self.requests += 1;
        if let Some(i) = self.slot_of(hash) {
            self.hits += 1;
            self.policy.on_access(EntryId::new(i), &mut self.entries);
            return true;
        }
        self.insert(hash, weight);
        false
    }

    fn insert(&mut self, hash: u32, weight: u32) {
        if protocol::make_room(self, hash, weight) != Admission::Admitted {
            return;
        }
        let id = self.entries.insert(Simulated::new(hash, weight));
        let entries = &self.entries;
        self.table.insert_unique(table_hash(hash), id.raw(), |&j| {
            table_hash(entries.at(EntryId::new(j)).hash)
        });
        self.weight += u64::from(weight);
        self.policy.on_insert(id, &mut self.entries);
    }

    fn remove_id(&mut self, id: EntryId) {
        self.policy.on_remove(id, &mut self.entries);
        let removed = self.entries.remove(id);
        if let Ok(found) = self
            .table
            .find_entry(table_hash(removed.hash), |&i| i == id.raw())
        {
            found.remove();
        }
        self.weight -= u64::from(removed.weight);
    }

    /// Whether the key with hash `hash` is stored. Not a request: the policy is not told.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::policy::{Lru, Simulation};
    /// let mut sim = Simulation::new(Lru::new(), 10, 0);
    /// sim.access(5, 1);
    /// assert!(sim.contains(5) && !sim.contains(6));
    /// ```
    #[must_use]
    pub fn contains(&self, hash: u32) -> bool {
        self.slot_of(hash).is_some()
    }

    /// The slot of the stored key with hash `hash`.
    fn slot_of(&self, hash: u32) -> Option<u32> {
        self.table
            .find(table_hash(hash), |&i| {
                self.entries.at(EntryId::new(i)).hash == hash
            })
            .copied()
    }

    /// Drops every stored key (the policy's [`clear`](EvictionPolicy::clear)); the counters
    /// stay.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::policy::{Lru, Simulation};
    /// let mut sim = Simulation::new(Lru::new(), 10, 0);
    /// sim.access(5, 1);
    /// sim.clear();
    /// assert!(sim.is_empty());
    /// assert_eq!(sim.requests(), 1);
    /// ```
    pub fn clear(&mut self) {
        self.policy.clear();
        self.entries.drain().for_each(drop);
        self.table.clear();
        self.weight = 0;
    }

    /// Requests that hit so far.
    ///
    /// # Example
    ///
    /// ```
    /// let mut sim = aside::policy::Simulation::new(aside::policy::Lru::new(), 1, 0);
    /// sim.access(1, 1);
    /// sim.access(1, 1);
    /// assert_eq!(sim.hits(), 1);
    /// ```
    #[must_use]
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Requests so far, hits and misses.
    ///
    /// # Example
    ///
    /// ```
    /// let mut sim = aside::policy::Simulation::new(aside::policy::Lru::new(), 1, 0);
    /// sim.access(1, 1);
    /// assert_eq!(sim.requests(), 1);
    /// ```
    #[must_use]
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Stored keys.
    ///
    /// # Example
    ///
    /// ```
    /// let mut sim = aside::policy::Simulation::new(aside::policy::Lru::new(), 8, 0);
    /// (0..20).for_each(|k| { sim.access(k, 1); });
    /// assert_eq!(sim.len(), 8);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is stored.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(aside::policy::Simulation::new(aside::policy::Lru::new(), 8, 0).is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    /// The stored keys' total weight.
    ///
    /// # Example
    ///
    /// ```
    /// let mut sim = aside::policy::Simulation::new(aside::policy::Lru::new(), 8, 0);
    /// sim.access(1, 3);
    /// assert_eq!(sim.weight(), 3);
    /// ```
    #[must_use]
    pub fn weight(&self) -> u64 {
        self.weight
    }

    /// The capacity the simulation was made with.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(aside::policy::Simulation::new(aside::policy::Lru::new(), 8, 0).capacity(), 8);
    /// ```
    #[must_use]
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The simulated policy.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::policy::{Simulation, WTinyLfu};
    /// let sim = Simulation::new(WTinyLfu::with_window_fraction(0.5).unwrap(), 8, 0);
    /// assert_eq!(sim.policy().window_fraction(), 0.5);
    /// ```
    #[must_use]
    pub fn policy(&self) -> &P {
        &self.policy
    }

    /// Checks the simulation's own bookkeeping, then the policy's
    /// [`validate`](EvictionPolicy::validate).
    ///
    /// # Errors
    ///
    /// [`InvariantError`](crate::InvariantError): the first broken invariant, described.
    ///
    /// # Example
    ///
    /// ```
    /// let mut sim = aside::policy::Simulation::new(aside::policy::Lru::new(), 8, 0);
    /// (0..20).for_each(|k| { sim.access(k % 11, 1); });
    /// sim.validate().unwrap();
    /// ```
    pub fn validate(&self) -> Result<(), crate::InvariantError> {
        self.check().map_err(crate::InvariantError::new)
    }

    /// [`validate`](Self::validate) for the crate's own checks, which compose descriptions.
    pub(crate) fn check(&self) -> Result<(), String> {
        let len = self.entries.len();
        let live = self.entries.iter().count();
        let weight: u64 = self.entries.iter().map(|(_, e)| u64::from(e.weight)).sum();
        if live != len || self.table.len() != len {
            return Err(format!(
                "{live} live slots, {} in the table, len {len}",
                self.table.len(),
            ));
        }
        if weight != self.weight || self.weight > self.capacity {
            return Err(format!(
                "live weight {weight}, recorded {}, capacity {}",
                self.weight, self.capacity
            ));
        }
        if self.entries.iter().any(|(_, e)| !self.contains(e.hash)) {
            return Err("a live slot is missing from the table".into());
        }
        if self.entries.vacant() + len != self.entries.slots() {
            return Err("free list and live slots do not cover the slab".into());
        }
        self.policy.validate(&self.entries)
    }
}

/// The shard's admission protocol, over hashes.
impl<P: EvictionPolicy> Residence for Simulation<P> {
    #[inline]
    fn weight(&self) -> u64 {
        self.weight
    }
    #[inline]
    fn capacity(&self) -> u64 {
        self.capacity
    }
    #[inline]
    fn crowded(&self) -> bool {
        false
    }
    #[inline]
    fn admit(&mut self, hash: u32, weight: u32) -> bool {
        self.policy.admit(hash, weight, &mut self.entries)
    }
    #[inline]
    fn victim(&mut self, incoming: u32) -> Option<EntryId> {
        self.policy.victim(incoming, &mut self.entries)
    }
    #[inline]
    fn contains(&self, id: EntryId) -> bool {
        self.entries.contains(id)
    }
    #[inline]
    fn evict(&mut self, id: EntryId) {
        self.remove_id(id);
    }
}

impl<P: EvictionPolicy> fmt::Debug for Simulation<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulation")
            .field("capacity", &self.capacity)
            .field("len", &self.entries.len())
            .field("weight", &self.weight)
            .field("hits", &self.hits)
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Lru, S3Fifo, WTinyLfu};
    use proptest::prelude::*;
    use std::collections::VecDeque;

    proptest! {
        /// A simulated exact LRU makes exactly the decisions of a reference LRU (a deque);
        /// `lru.rs` checks `Lru::new()` against a model of its periods.
        #[test]
        fn lru_matches_a_deque(cap in 1u64..12, keys in prop::collection::vec(0u32..24, 0..300)) {
            let mut sim = Simulation::new(Lru::exact(), cap, 1);
            let mut model: VecDeque<u32> = VecDeque::new();
            for k in keys {
                let hit = if let Some(p) = model.iter().position(|&m| m == k) {
                    model.remove(p);
                    true
                } else {
                    if model.len() as u64 == cap {
                        model.pop_back();
                    }
                    false
                };
                model.push_front(k);
                prop_assert_eq!(sim.access(k, 1), hit);
                sim.validate().map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }

        /// Weighted streams keep every invariant, whatever the policy refuses or evicts.
        #[test]
        fn weighted_streams_stay_valid(
            cap in 1u64..40,
            ops in prop::collection::vec((0u32..30, 1u32..12), 0..300),
        ) {
            let mut a = Simulation::new(WTinyLfu::with_window_fraction(0.2).unwrap(), cap, 3);
            let mut b = Simulation::new(S3Fifo::new(), cap, 3);
            for (k, w) in ops {
                a.access(k, w);
                b.access(k, w);
                a.validate().map_err(|e| TestCaseError::fail(e.to_string()))?;
                b.validate().map_err(|e| TestCaseError::fail(e.to_string()))?;
            }
        }
    }

    #[test]
    fn clear_keeps_the_counters_and_reuses_nothing_stale() {
        let mut sim = Simulation::new(WTinyLfu::with_window_fraction(0.0).unwrap(), 4, 0);
        for k in 0..10 {
            sim.access(k, 1);
        }
        sim.clear();
        sim.validate().unwrap();
        assert_eq!((sim.len(), sim.requests()), (0, 10));
        for k in 0..10 {
            sim.access(k, 1);
            sim.validate().unwrap();
        }
    }
}
