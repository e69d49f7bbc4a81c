//! The admit → victim → insert → remove protocol, written once for every place a policy
//! decides what stays: a shard's writer side ([`Shard`](crate::engine::shard::Shard)) and a
//! [`Simulation`](crate::policy::Simulation) (and so W-TinyLFU's window tuner, which runs
//! eight of them). Both implement [`Residence`]; what differs between them is only what an
//! entry is (a node with a key and a value, or a bare hash) and what a removal leaves behind
//! (a node for the listener, or nothing).
//!
//! A new entry of weight `w` enters a residence of capacity `C` holding weight `W` as follows:
//!
//! 1. if `w > C`, it never fits: refused without asking the policy;
//! 2. if `W + w > C`, the policy's [`admit`](crate::EvictionPolicy::admit) decides whether it
//!    may displace residents; a refused newcomer changes nothing;
//! 3. the policy's [`victim`](crate::EvictionPolicy::victim)s leave, one at a time, until it
//!    fits (and, in a shard, until the entry count is below its limit). Room is made before
//!    the newcomer enters, as LFU-DA and Redis do: it is never its own victim, and it enters
//!    with the age its victims set;
//! 4. the caller stores it and tells the policy ([`on_insert`](crate::EvictionPolicy::on_insert)).
//!
//! A victim that is not a live entry is a broken policy: eviction stops there and the
//! residence's `validate` reports the overflow.

use crate::policy::EntryId;

/// A set of weighted entries under a capacity, whose policy picks what leaves.
pub(crate) trait Residence {
    /// The stored entries' total weight.
    fn weight(&self) -> u64;
    /// The most weight the residence holds.
    fn capacity(&self) -> u64;
    /// Whether the entries are too many for one more, whatever their weight (a shard's node
    /// index limit; never for a simulation).
    fn crowded(&self) -> bool;
    /// The policy's [`admit`](crate::EvictionPolicy::admit) for a newcomer while full.
    fn admit(&mut self, hash: u32, weight: u32) -> bool;
    /// The policy's [`victim`](crate::EvictionPolicy::victim) to make room for `incoming`.
    fn victim(&mut self, incoming: u32) -> Option<EntryId>;
    /// Whether `id` is a live entry.
    fn contains(&self, id: EntryId) -> bool;
    /// Removes the live entry `id` to make room (the policy's `on_remove` included).
    fn evict(&mut self, id: EntryId);
}

/// What [`make_room`] decided for a newcomer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Heavier than the whole capacity: it can never be stored.
    TooHeavy,
    /// The policy refused it; nothing changed.
    Refused,
    /// Room is made: the caller stores it now.
    Admitted,
}

/// Steps 1 to 3 for a newcomer with `hash` and `weight`.
#[inline]
pub(crate) fn make_room<R: Residence>(r: &mut R, hash: u32, weight: u32) -> Admission {
    let w = u64::from(weight);
    if w > r.capacity() {
        return Admission::TooHeavy;
    }
    if r.weight() + w > r.capacity() && !r.admit(hash, weight) {
        return Admission::Refused;
    }
    evict_while(r, weight, true);
    Admission::Admitted
}

/// Evicts the policy's victims until `incoming` more weight fits and, for a `new_entry`, until
/// the residence is not [`crowded`](Residence::crowded). With `incoming` 0 this brings a
/// residence back within its capacity after an entry grew.
#[inline]
pub(crate) fn evict_while<R: Residence>(r: &mut R, incoming: u32, new_entry: bool) {
    while r.weight() + u64::from(incoming) > r.capacity() || (new_entry && r.crowded()) {
        let Some(victim) = r.victim(incoming) else {
            break;
        };
        if !r.contains(victim) {
            break;
        }
        r.evict(victim);
    }
}
