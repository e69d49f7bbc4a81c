//! The [`EvictionPolicy`] trait and the built-in policies.
//!
//! A shard owns its entries in a slab and keeps a hash table from key to [`EntryId`]; the policy
//! owns only its ordering structure (a list, a heap, a sample generator) plus a small per-entry
//! [`EvictionPolicy::State`] that the shard stores inside each entry. The shard calls the policy's
//! hooks under its lock and asks it for a victim whenever the shard is over capacity. A policy
//! reaches the entries through the [`Entries`] view and never sees keys or values, so it cannot
//! run user code.
//!
//! | policy | file | hit | evicts | per-entry state |
//! |---|---|---|---|---|
//! | [`Lru`] | `lru.rs` | buffered, O(1) move to front | least recently used | 8 bytes |
//! | [`Lfu`] | `lfu.rs` | buffered, O(log n) | lowest LFU-DA priority, oldest first | 8 bytes, plus 12 in the heap |
//! | [`Fifo`] | `fifo.rs` | nothing | oldest insert | 8 bytes |
//! | [`S3Fifo`] | `s3fifo.rs` | a mark raised in the entry, no lock, no record | small queue's oldest unless hit twice, else main queue by CLOCK | 12 bytes, plus the ghost |
//! | [`SampledTtl`] | `ttl.rs` | nothing | soonest deadline of a random sample | 0 bytes |
//! | [`WTinyLfu`] | `wtinylfu.rs` | buffered, O(1); a mark in the entry for hot protected entries | window LRU or probation LRU, whichever a frequency sketch rates lower (a candidate turned away and back soon wins, when the tuner keeps a ghost); window share and ghost tuned by [`Simulation`] | 12 bytes, plus 16 to 32 in the sketch, plus 14 to 29 while the tuner keeps a ghost of turned-away candidates, plus about 25 KB per shard for the tuner |
//! | [`AnyPolicy`] | `any.rs` | buffered, then as the policy it holds | as the policy it holds, chosen at run time | 16 bytes |

use std::fmt;
use std::num::NonZeroU32;

mod any;
mod fifo;
mod ghost;
mod lfu;
mod list;
mod lru;
mod s3fifo;
mod sim;
mod ttl;
mod wtinylfu;

pub use any::{AnyPolicy, AnyState};
pub use fifo::Fifo;
pub use lfu::{Lfu, LfuState};
pub use list::Links;
pub use lru::Lru;
pub use s3fifo::{S3Fifo, S3FifoState};
pub use sim::Simulation;
pub use ttl::SampledTtl;
pub use wtinylfu::{WTinyLfu, WTinyLfuState};

/// The handle of one entry inside a shard: an index into the shard's slab.
///
/// Ids are reused after an entry is removed, so a policy must forget an id in
/// [`EvictionPolicy::on_remove`].
///
/// An id has a niche, so `Option<EntryId>` is as small as an id (4 bytes): a policy outside
/// the crate can link its per-entry states with `Option<EntryId>` at no extra cost.
///
/// ```
/// use aside::policy::EntryId;
/// assert_eq!(size_of::<Option<EntryId>>(), size_of::<EntryId>());
/// assert_eq!(size_of::<EntryId>(), 4);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(NonZeroU32);

impl EntryId {
    /// The id of slab slot `index` (stored as `index + 1`; a slab never reaches `u32::MAX`
    /// slots, see `slab.rs`).
    #[inline]
    pub(crate) const fn new(index: u32) -> Self {
        Self(NonZeroU32::MIN.saturating_add(index))
    }

    /// The slot index as the `u32` the shard's table stores.
    #[inline]
    pub(crate) const fn raw(self) -> u32 {
        self.0.get() - 1
    }

    /// A non-zero encoding (`index + 1`), for stores where 0 means "none".
    #[inline]
    pub(crate) const fn encoded(self) -> u32 {
        self.0.get()
    }

    /// The inverse of [`encoded`](Self::encoded): `None` for 0.
    #[inline]
    pub(crate) const fn from_encoded(encoded: u32) -> Option<Self> {
        match NonZeroU32::new(encoded) {
            Some(nz) => Some(Self(nz)),
            None => None,
        }
    }

    /// The slab index of this entry; dense, starting at zero.
    ///
    /// # Example
    ///
    /// ```
    /// # use aside::policy::EntryId;
    /// fn slot(id: EntryId) -> usize { id.index() }
    /// ```
    #[inline]
    #[must_use]
    pub fn index(self) -> usize {
        self.raw() as usize
    }
}

impl fmt::Debug for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.raw())
    }
}

/// How a cache hit involves the policy, and therefore which lock a hit needs.
///
/// Every hit runs without the shard's lock, inside a read section of its shard (see
/// `docs/design.md`). What happens next depends on this value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitAccess {
    /// Hits do not concern the policy (FIFO, sampled TTL): nothing is recorded.
    Ignore,
    /// [`EvictionPolicy::on_access_shared`] runs right after the lookup, under the shard's
    /// lock (held only for that call); the state must use interior mutability (atomics) for
    /// what it changes, as CLOCK bits do. Exact, but every hit takes the shard's lock: prefer
    /// `Exclusive` for hot caches.
    Shared,
    /// The hit is recorded in a lossy ring of the reading thread's own and replayed later
    /// through [`EvictionPolicy::on_access`], under the shard's lock: by the reader that fills
    /// its ring (with `try_lock`, so it never waits), or by the next write. Under contention
    /// some hits may be dropped, as in Caffeine and moka; a single thread loses none and keeps
    /// their order.
    Exclusive,
    /// The reader adds one to the entry's [mark](Entries::mark), up to the given maximum, in
    /// the entry itself: no lock, no record, nothing replayed, and no store at all once the
    /// mark is at its maximum (a hot entry's hits write nothing). For policies whose whole
    /// response to a hit is such a counter (CLOCK's reference bit: `Mark(1)`; S3-FIFO's
    /// frequency: `Mark(3)`), read and reset at eviction time.
    ///
    /// The policy's [`on_access`](EvictionPolicy::on_access) must do exactly that (add one to
    /// the mark, saturating at the maximum): a [`Simulation`] and an [`AnyPolicy`] (whose
    /// hits are `Exclusive`) call it instead. Marks set by concurrent readers while the writer
    /// resets them may be lost, as a lossy buffer's records are; a single thread loses none.
    Mark(u8),
    /// Per entry, `Mark` or `Exclusive`, as the policy chooses through the entry's
    /// [mark](Entries::mark): a hit on an entry whose mark is not 0 raises it by one, up to the
    /// given maximum, as `Mark` does; a hit on an entry whose mark is 0 is recorded and
    /// replayed through [`on_access`](EvictionPolicy::on_access), as `Exclusive` does. A
    /// policy whose order must follow some hits exactly and not others marks the others'
    /// entries: W-TinyLFU records hits in its window and probation segments, where a hit
    /// moves or promotes the entry, and marks its hot protected entries, whose hits it folds
    /// in when they reach the segment's tail.
    ///
    /// The policy's `on_access` must do both: raise a nonzero mark as a reader would, and
    /// handle a recorded hit otherwise. A replayed hit may find the entry marked since (the
    /// policy marked it while replaying an earlier hit); it then counts as a marked hit.
    MarkOrRecord(u8),
    /// `Exclusive`, but a hit on an entry whose [mark](Entries::mark) equals the shard's
    /// current *stamp* (set with [`Entries::set_stamp`]; 0, the initial value, is no stamp) is
    /// dropped: no record, no store. A policy that moves an entry at most once per period
    /// (LRU moves an entry to the head once per quarter turn of its list) marks each entry it
    /// moves with the period's stamp, so the hits of a hot set cost the readers nothing until
    /// the period ends.
    ///
    /// The policy's `on_access` must apply the same rule (a [`Simulation`] and an
    /// [`AnyPolicy`] call it for every hit), and must expect replayed hits on entries it has
    /// stamped since they were recorded.
    Stamp,
}

/// What a shard tells its policy when the policy is set up for it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ShardContext {
    /// The shard's index among the cache's shards.
    pub index: usize,
    /// The shard's capacity, in entries or in weight units when a weigher is set.
    pub capacity: u64,
    /// A seed for any randomness the policy needs, derived from the cache's seed.
    pub seed: u64,
}

/// The policy's view of a shard's entries: per-entry state and metadata, never keys or values.
///
/// Passed to every [`EvictionPolicy`] hook. All methods are O(1).
pub trait Entries<S> {
    /// The policy state of entry `id`.
    ///
    /// # Panics
    ///
    /// If `id` is not a live entry.
    fn state(&self, id: EntryId) -> &S;
    /// The mutable policy state of entry `id`.
    ///
    /// # Panics
    ///
    /// If `id` is not a live entry.
    fn state_mut(&mut self, id: EntryId) -> &mut S;
    /// The 32-bit hash fragment of the entry's key (for frequency sketches and the like).
    fn hash(&self, id: EntryId) -> u32;
    /// The entry's weight (1 per entry when the cache has no weigher).
    fn weight(&self, id: EntryId) -> u32;
    /// The instant the entry expires at, in nanoseconds on the cache clock; `None` if never.
    fn expires_at(&self, id: EntryId) -> Option<u64>;
    /// Number of live entries.
    fn len(&self) -> usize;
    /// Whether there are no live entries.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether `id` is a live entry.
    fn contains(&self, id: EntryId) -> bool;
    /// A live entry picked from the random number `random` (close to uniform when the slab is
    /// dense; the slab reuses freed slots first), or `None` when empty.
    fn random(&self, random: u64) -> Option<EntryId>;
    /// Every live entry id, in slab order.
    fn ids(&self) -> impl Iterator<Item = EntryId> + '_;
    /// The entry's *mark*: a small counter (0 to [`MARK_MAX`]) kept in the entry itself beside
    /// the key, not in the policy's state, so that a reader can set it on a hit without any
    /// lock ([`HitAccess::Mark`]). It starts at 0 for a new entry and survives a replaced
    /// value. Reading it costs a visit to the entry, where [`state`](Self::state) stays in
    /// the policy's dense array.
    ///
    /// # Panics
    ///
    /// If `id` is not a live entry.
    fn mark(&self, id: EntryId) -> u8;
    /// Sets the entry's mark (values above [`MARK_MAX`] are clamped).
    ///
    /// # Panics
    ///
    /// If `id` is not a live entry.
    fn set_mark(&mut self, id: EntryId, mark: u8);
    /// Sets the shard's stamp, the mark whose entries' hits readers drop under
    /// [`HitAccess::Stamp`] (0: none). Nothing to do where no reader looks (the default).
    fn set_stamp(&mut self, stamp: u8) {
        let _ = stamp;
    }
}

/// The largest [mark](Entries::mark) an entry holds.
pub const MARK_MAX: u8 = u8::MAX;

/// A pluggable eviction policy for one shard.
///
/// The shard stores one [`State`](EvictionPolicy::State) inside every entry and calls the hooks
/// below under its lock; a policy only orders entries and picks victims. Each shard gets its
/// own clone of the policy value given to the builder, set up with
/// [`configure`](EvictionPolicy::configure).
///
/// Call order for one entry: [`admit`](EvictionPolicy::admit) (only when the shard must make
/// room for it), [`on_insert`](EvictionPolicy::on_insert), then any number of
/// [`on_access`](EvictionPolicy::on_access) or [`on_update`](EvictionPolicy::on_update), then
/// exactly one [`on_remove`](EvictionPolicy::on_remove), called while the entry is still
/// readable through [`Entries`] and whatever the cause (eviction, expiry, removal, replacement
/// does not remove). [`victim`](EvictionPolicy::victim) is called when a new entry needs room
/// (before it is stored, so a newcomer is never its own victim) or when a replacement made the
/// shard too heavy; the shard then removes the returned entry (calling `on_remove`).
///
/// # Example: a policy written outside the crate
///
/// "Most recently inserted goes first" (LIFO), using only the public API:
///
/// ```
/// use aside::policy::{Entries, EntryId, EvictionPolicy, HitAccess};
/// use aside::Cache;
///
/// #[derive(Clone, Default)]
/// struct Lifo { stack: Vec<EntryId> }
///
/// #[derive(Default)]
/// struct Pos(usize);
///
/// impl EvictionPolicy for Lifo {
///     type State = Pos;
///     const HIT: HitAccess = HitAccess::Ignore;
///     fn on_insert(&mut self, id: EntryId, entries: &mut impl Entries<Pos>) {
///         entries.state_mut(id).0 = self.stack.len();
///         self.stack.push(id);
///     }
///     fn on_remove(&mut self, id: EntryId, entries: &mut impl Entries<Pos>) {
///         let at = entries.state(id).0;
///         self.stack.swap_remove(at);
///         if let Some(&moved) = self.stack.get(at) {
///             entries.state_mut(moved).0 = at;
///         }
///     }
///     fn victim(&mut self, _incoming: u32, _: &mut impl Entries<Pos>) -> Option<EntryId> {
///         self.stack.last().copied()
///     }
///     fn clear(&mut self) { self.stack.clear(); }
/// }
///
/// let cache: Cache<u32, u32, Lifo> =
///     Cache::builder().max_capacity(2).shards(1).policy(Lifo::default()).build().unwrap();
/// cache.insert(1, 1);
/// cache.insert(2, 2);
/// cache.insert(3, 3); // needs room: the newest entry (2) goes
/// assert!(cache.contains_key(&1) && !cache.contains_key(&2) && cache.contains_key(&3));
/// ```
pub trait EvictionPolicy: Clone + Send + Sync + 'static {
    /// Per-entry state, stored inside each entry (keep it small: it is paid per entry).
    type State: Default + Send + Sync + 'static;

    /// How hits reach the policy; see [`HitAccess`].
    const HIT: HitAccess;

    /// Set up this policy for one shard. Called once, before any entry exists.
    fn configure(&mut self, shard: &ShardContext) {
        let _ = shard;
    }

    /// Decide whether a *new* entry may enter a shard that must evict to make room for it.
    /// Returning `false` rejects the newcomer (it is dropped and counted as a capacity
    /// eviction) and keeps the current entries: the hook for admission policies such as
    /// TinyLFU. `hash` is the newcomer's hash fragment, `weight` its weight.
    fn admit(&mut self, hash: u32, weight: u32, entries: &mut impl Entries<Self::State>) -> bool {
        let _ = (hash, weight, entries);
        true
    }

    /// A new entry was stored; its state is `State::default()`.
    fn on_insert(&mut self, id: EntryId, entries: &mut impl Entries<Self::State>);

    /// A hit, replayed with exclusive access to the policy (when [`HIT`](Self::HIT) is
    /// [`HitAccess::Exclusive`], or [`HitAccess::MarkOrRecord`] and the entry was unmarked).
    /// The entry may have been replaced since the hit, never removed. A [`Simulation`] and an
    /// [`AnyPolicy`] call it for every hit, whatever `HIT` says, so a `Mark` or `MarkOrRecord`
    /// policy must also do here what a reader does itself.
    fn on_access(&mut self, id: EntryId, entries: &mut impl Entries<Self::State>) {
        let _ = (id, entries);
    }

    /// A hit, under the shard's lock (only when [`HIT`](Self::HIT) is [`HitAccess::Shared`]).
    fn on_access_shared(&self, state: &Self::State) {
        let _ = state;
    }

    /// The value of an existing entry was replaced. [`Entries::weight`] already gives the new
    /// weight; `old_weight` is the weight the entry had until now, so a policy that keeps
    /// weight totals (per segment, per queue) need not store each entry's weight itself. The
    /// default treats an update as an access.
    fn on_update(&mut self, id: EntryId, old_weight: u32, entries: &mut impl Entries<Self::State>) {
        let _ = old_weight;
        self.on_access(id, entries);
    }

    /// The entry is about to be removed, for any reason; forget `id`.
    fn on_remove(&mut self, id: EntryId, entries: &mut impl Entries<Self::State>);

    /// Pick the entry to evict. Called only while the shard needs room and is not empty; must
    /// return a live entry then (returning `None` stops eviction, leaving the shard over
    /// capacity, which [`Cache::validate`](crate::Cache::validate) reports).
    ///
    /// `incoming` is the weight of the newcomer the room is for (the one [`admit`] just let
    /// in; it is not stored yet), or 0 when an update made the shard too heavy. A policy with
    /// an admission window uses it to tell whether the newcomer will push the window over.
    ///
    /// [`admit`]: EvictionPolicy::admit
    fn victim(&mut self, incoming: u32, entries: &mut impl Entries<Self::State>)
    -> Option<EntryId>;

    /// Appends to `out` up to `limit` live entries, the one most worth keeping first: the
    /// reverse of the order in which [`victim`](Self::victim) would pick them, as far as the
    /// policy can tell without evicting. Snapshots ([`Cache::snapshot`](crate::Cache)) use it
    /// to persist the hottest entries. Called under the shard's lock with every recorded hit
    /// replayed; it must not change the policy.
    ///
    /// The default takes entries in slab order ([`Entries::ids`]), which says nothing about
    /// their worth: a policy with an order should override it. The built-in ones do (LRU: most
    /// recently used first; FIFO: newest first; LFU: highest priority first; sampled TTL:
    /// latest deadline first; S3-FIFO and W-TinyLFU: main space before the probationary one,
    /// see each policy).
    ///
    /// # Example
    ///
    /// ```
    /// use aside::policy::{Entries, EntryId, EvictionPolicy, HitAccess};
    ///
    /// /// Evicts the entry with the lowest hash fragment; keeps the highest longest.
    /// #[derive(Clone, Default)]
    /// struct LowestHash;
    ///
    /// impl EvictionPolicy for LowestHash {
    ///     type State = ();
    ///     const HIT: HitAccess = HitAccess::Ignore;
    ///     fn on_insert(&mut self, _: EntryId, _: &mut impl Entries<()>) {}
    ///     fn on_remove(&mut self, _: EntryId, _: &mut impl Entries<()>) {}
    ///     fn victim(&mut self, _: u32, entries: &mut impl Entries<()>) -> Option<EntryId> {
    ///         entries.ids().min_by_key(|&id| entries.hash(id))
    ///     }
    ///     fn hottest(&self, entries: &impl Entries<()>, limit: usize, out: &mut Vec<EntryId>) {
    ///         let mut ids: Vec<EntryId> = entries.ids().collect();
    ///         ids.sort_by_key(|&id| std::cmp::Reverse(entries.hash(id)));
    ///         out.extend(ids.into_iter().take(limit));
    ///     }
    ///     fn clear(&mut self) {}
    /// }
    /// ```
    fn hottest(&self, entries: &impl Entries<Self::State>, limit: usize, out: &mut Vec<EntryId>) {
        out.extend(entries.ids().take(limit));
    }

    /// Every entry was removed at once (without `on_remove` calls); reset the structure.
    fn clear(&mut self);

    /// Check the policy's structure against the entries; used by tests and fuzzers after every
    /// operation. The default checks nothing.
    ///
    /// # Errors
    ///
    /// A description of the first broken invariant.
    fn validate(&self, entries: &impl Entries<Self::State>) -> Result<(), String> {
        let _ = entries;
        Ok(())
    }
}
