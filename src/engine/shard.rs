//! One shard: the store readers use without a lock, and the writer side under the shard's lock
//! (the slab of entry records, the policy and its per-entry states, the counters).
//!
//! [`ShardSlot`] is what the concurrent [`Cache`](crate::Cache) keeps per shard. A lookup
//! ([`ShardSlot::get`]) runs inside a read section of the [`Store`]: it finds the node, checks
//! its deadline, clones the value and records the hit in its thread's ring, and takes no lock.
//! Every write takes the shard's mutex, runs one of [`Shard`]'s `&mut` methods, which first
//! replays the recorded hits into the policy, and ends with [`Shard::reclaim`]: what the
//! write unlinked (removed, evicted, replaced entries) is handed back once no reader can still
//! see it, and dropped or announced by the caller after the lock is released.
//!
//! No user code runs under the lock except the key's `Eq` (on lookups) and the `Clone` of keys
//! and values in snapshots. The table rehashes from stored hash fragments, never by calling
//! `Hash`, and grows a few buckets per insert.

use std::borrow::Borrow;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use crate::engine::concurrent::store::{Node, Store, Writer};
use crate::engine::expiry::{
    Clock, Deadline, Expiration, SWEEP_EVERY_WRITES, SWEEP_REPEAT_PERCENT, SWEEP_ROUNDS_PER_WRITE,
    SWEEP_SAMPLE,
};
use crate::engine::protocol::{self, Admission, Residence};
use crate::engine::slab::{Meta, Slab, View, push_within, weight_at};
use crate::metrics::WriteCounters;
use crate::notify::{RemovalCause, Removed};
use crate::policy::{EntryId, EvictionPolicy, HitAccess, ShardContext};
use crate::shim::Mutex;

/// The most entries one shard holds: its store's node indices (`MAX_NODES`) less the node a
/// write allocates before it reclaims the one it replaces or evicts, with one to spare.
pub(crate) const MAX_SHARD_ENTRIES: usize =
    crate::engine::concurrent::store::MAX_NODES as usize - 2;

/// What a lookup found.
pub(crate) enum Lookup<R> {
    /// A live entry, with what the caller's closure made of its value; `drain` asks the
    /// caller to replay the recorded hits (the stripe's ring is full).
    Hit { value: R, drain: bool },
    /// No entry.
    Miss,
    /// An expired entry, which the caller should remove under the lock.
    Expired,
}

/// What an insert did.
pub(crate) enum Inserted<V> {
    /// Stored (new or replacing a value).
    Stored,
    /// `only_if_absent` found this live value and left it in place; the offered value is
    /// returned with it.
    Present(V),
}

/// One shard as the cache holds it: the store, read without a lock, and the writer side
/// under its mutex.
pub(crate) struct ShardSlot<K, V, P: EvictionPolicy> {
    pub(crate) store: Store<K, V>,
    expiration: Expiration,
    pub(crate) write: Mutex<Shard<K, V, P>>,
}

impl<K, V, P: EvictionPolicy> ShardSlot<K, V, P> {
    /// A shard; `max_entries` bounds its slab's and arena's growth (its capacity when entries
    /// weigh 1); `stripes` is its reader stripe count; `unit_weights` says that every entry
    /// weighs 1 (the cache has no weigher).
    pub(crate) fn new(
        policy: P,
        ctx: ShardContext,
        expiration: Expiration,
        max_entries: usize,
        stripes: usize,
        unit_weights: bool,
    ) -> Self {
        // One node more than the entries: a write at capacity allocates the new node before
        // the one it replaces or evicts is reclaimed.
        let (store, writer) = Store::new(max_entries.saturating_add(1), stripes);
        Self {
            store,
            expiration,
            write: Mutex::new(Shard::new(
                policy,
                ctx,
                expiration,
                max_entries,
                writer,
                unit_weights,
            )),
        }
    }

    /// Looks `key` up without the lock and applies `f` to the value of a live entry. With
    /// `access`, a hit counts, slides a sliding deadline and is recorded for the policy as
    /// [`P::HIT`](EvictionPolicy::HIT) says; without it (`peek`), nothing changes and nothing
    /// counts.
    ///
    /// A lookup that misses while a write holds the shard's lock waits for that write and
    /// looks once more (with `access`): see [`get_after_write`](Self::get_after_write).
    #[inline]
    pub(crate) fn get<Q, R>(
        &self,
        fragment: u32,
        key: &Q,
        clock: &Arc<dyn Clock>,
        access: bool,
        f: impl FnOnce(&V) -> R,
    ) -> Lookup<R>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.lookup(fragment, key, clock, access, access, f)
    }

    /// The second look of a lookup that missed while the shard's lock was held. The write
    /// holding it may be storing this very key: two threads that miss on one key at once is
    /// the common case (the second one's lookup runs while the first one's insert holds the
    /// lock), and a lock-based cache's reader, waiting for the writer, would find it. A miss
    /// is about to cost its caller a load, so waiting for one write costs it little and saves
    /// the second load. The caller holds no shard lock (no code runs `get` under one: user
    /// code never runs under a shard lock, and the engine never looks up through `get`).
    #[cold]
    #[inline(never)]
    fn get_after_write<Q, R>(
        &self,
        fragment: u32,
        key: &Q,
        clock: &Arc<dyn Clock>,
        f: impl FnOnce(&V) -> R,
    ) -> Lookup<R>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        drop(self.write.lock());
        self.lookup(fragment, key, clock, true, false, f)
    }

    #[inline]
    fn lookup<Q, R>(
        &self,
        fragment: u32,
        key: &Q,
        clock: &Arc<dyn Clock>,
        access: bool,
        wait_for_writer: bool,
        f: impl FnOnce(&V) -> R,
    ) -> Lookup<R>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let reader = self.store.enter();
        if !access {
            reader.uncounted();
        }
        let Some(node) = reader.find(fragment, |k| k.borrow() == key) else {
            if wait_for_writer && self.write.is_locked() {
                // The second look counts the lookup; this one counts nothing.
                reader.uncounted();
                drop(reader);
                return self.get_after_write(fragment, key, clock, f);
            }
            if access {
                reader.miss();
            }
            return Lookup::Miss;
        };
        let deadline = Deadline::from_raw(node.deadline_bits());
        if !deadline.is_never() {
            let now = clock.now_nanos();
            if deadline.is_expired(now) {
                if access {
                    reader.miss();
                }
                return Lookup::Expired;
            }
            if access {
                if let Some(slid) = self.expiration.slide(deadline, now) {
                    node.set_deadline_bits(slid.raw());
                }
            }
        }
        let tag = node.tag();
        let id = tag.id();
        // Whether this hit filled the reader's ring (which asks for a replay).
        let filled = access
            && match P::HIT {
                HitAccess::Mark(max) => {
                    node.raise_mark(tag, max);
                    false
                }
                HitAccess::MarkOrRecord(max) => {
                    let marked = tag.mark() != 0;
                    if marked {
                        node.raise_mark(tag, max);
                    }
                    !marked && reader.record(id)
                }
                HitAccess::Exclusive => reader.record(id),
                HitAccess::Stamp => {
                    // Without a branch on the stamp, which hot and cold hits mix
                    // unpredictably: a dropped hit writes the ring slot without taking it.
                    let stamp = self.store.readers().stamp();
                    reader.record_if(id, stamp == 0 || tag.mark() != stamp)
                }
                HitAccess::Ignore | HitAccess::Shared => false,
            };
        let drain = filled || reader.migrating();
        let value = f(&node.value);
        drop(reader);
        if access && P::HIT == HitAccess::Shared {
            self.write.lock().access_shared(&self.store, id, fragment);
        }
        Lookup::Hit { value, drain }
    }

    /// Runs `f` on the writer side under the shard's lock, then, before the lock is released
    /// and even if `f` unwinds (a key's `Eq` may panic), reclaims what it unlinked into
    /// `removed` for the caller to announce and drop outside the lock.
    pub(crate) fn write<R>(
        &self,
        removed: &mut Removed<K, V>,
        f: impl FnOnce(&mut Shard<K, V, P>, &Store<K, V>) -> R,
    ) -> R {
        struct Reclaim<'a, K, V, P: EvictionPolicy, G: std::ops::DerefMut<Target = Shard<K, V, P>>> {
            shard: G,
            store: &'a Store<K, V>,
            removed: &'a mut Removed<K, V>,
        }
        impl<K, V, P: EvictionPolicy, G: std::ops::DerefMut<Target = Shard<K, V, P>>> Drop
            for Reclaim<'_, K, V, P, G>
        {
            fn drop(&mut self) {
                self.shard.reclaim(self.store, self.removed);
            }
        }
        let mut scope = Reclaim {
            shard: self.write.lock(),
            store: &self.store,
            removed,
        };
        f(&mut scope.shard, scope.store)
    }

    /// Replays the recorded hits and drains part of a running table migration, if no writer
    /// holds the lock (a reader whose ring filled, or that found the table growing).
    pub(crate) fn try_drain(&self) {
        if let Some(mut shard) = self.write.try_lock() {
            shard.drain(&self.store);
            let mut none = Removed::new();
            shard.reclaim(&self.store, &mut none);
            debug_assert!(none.is_empty(), "a drain unlinks no entry");
        }
    }
}

/// The writer side of a shard. Every method that changes entries takes the shard's [`Store`]
/// and must be followed by [`reclaim`](Self::reclaim) before the lock is released.
pub(crate) struct Shard<K, V, P: EvictionPolicy> {
    writer: Writer<K, V>,
    slab: Slab<Meta>,
    policy: P,
    states: Vec<P::State>,
    /// How far each reader stripe's ring of hits has been replayed.
    cursors: Vec<u32>,
    /// The cause of each node unlinked and not yet reclaimed, in the store's order.
    causes: Vec<RemovalCause>,
    writes: WriteCounters,
    expiration: Expiration,
    capacity: u64,
    weight: u64,
    /// Entries that carry a deadline: the sweep has nothing to do while this is zero.
    volatile: usize,
    rng: SmallRng,
    writes_since_sweep: u32,
    /// Bumped by every insert and value replacement; lets `retain` detect concurrent writes.
    generation: u64,
    /// Each entry's weight, indexed like the slab (and the states); empty when every entry
    /// weighs 1 (no weigher), which saves 4 bytes per entry and a load per replacement.
    weights: Vec<u32>,
    /// Every entry weighs 1 (no weigher).
    unit_weights: bool,
}

/// Stores `value` at slot `id` of a vector indexed like the slab, which fills its slots in
/// order: a slot past the end is the next one.
#[inline]
fn set_slot<T>(v: &mut Vec<T>, id: EntryId, value: T, limit: usize) {
    let i = id.index();
    if i < v.len() {
        v[i] = value;
    } else {
        debug_assert_eq!(i, v.len(), "the slab fills its slots in order");
        push_within(v, value, limit);
    }
}

/// Replays one recorded hit. A ring may hold an id whose entry is gone (a record stored while
/// a drain ran, read later); such ids are skipped, and a reused id credits its new entry.
#[inline]
fn replay<K, V, P: EvictionPolicy>(
    policy: &mut P,
    view: &mut View<'_, K, V, P::State>,
    id: EntryId,
) {
    if view.slab.contains(id) {
        policy.on_access(id, view);
    }
}

/// A shard during one write at `now`: the [`Residence`] the admission protocol runs on.
struct Writing<'a, K, V, P: EvictionPolicy> {
    shard: &'a mut Shard<K, V, P>,
    store: &'a Store<K, V>,
    now: u64,
}

impl<K, V, P: EvictionPolicy> Residence for Writing<'_, K, V, P> {
    #[inline]
    fn weight(&self) -> u64 {
        self.shard.weight
    }
    #[inline]
    fn capacity(&self) -> u64 {
        self.shard.capacity
    }
    #[inline]
    fn crowded(&self) -> bool {
        self.shard.slab.len() >= MAX_SHARD_ENTRIES
    }
    #[inline]
    fn admit(&mut self, hash: u32, weight: u32) -> bool {
        let (policy, mut view) = self.shard.parts(self.store);
        policy.admit(hash, weight, &mut view)
    }
    #[inline]
    fn victim(&mut self, incoming: u32) -> Option<EntryId> {
        let (policy, mut view) = self.shard.parts(self.store);
        policy.victim(incoming, &mut view)
    }
    #[inline]
    fn contains(&self, id: EntryId) -> bool {
        self.shard.slab.contains(id)
    }
    /// An evicted entry that had expired counts as expired, not as a capacity eviction.
    fn evict(&mut self, id: EntryId) {
        let cause = if self.shard.deadline(self.store, id).is_expired(self.now) {
            RemovalCause::Expired
        } else {
            RemovalCause::Capacity
        };
        self.shard.remove_id(self.store, id, cause);
    }
}

impl<K, V, P: EvictionPolicy> Shard<K, V, P> {
    fn new(
        mut policy: P,
        ctx: ShardContext,
        expiration: Expiration,
        max_entries: usize,
        writer: Writer<K, V>,
        unit_weights: bool,
    ) -> Self {
        policy.configure(&ctx);
        Self {
            writer,
            slab: Slab::with_limit(max_entries),
            policy,
            states: Vec::new(),
            cursors: Vec::new(),
            causes: Vec::new(),
            writes: WriteCounters::default(),
            expiration,
            capacity: ctx.capacity,
            weight: 0,
            volatile: 0,
            rng: SmallRng::seed_from_u64(ctx.seed),
            writes_since_sweep: 0,
            generation: 0,
            weights: Vec::new(),
            unit_weights,
        }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.slab.len()
    }

    pub(crate) fn weight(&self) -> u64 {
        self.weight
    }

    pub(crate) fn write_counters(&self) -> &WriteCounters {
        &self.writes
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Runs `f` on the policy (model tests inspect it).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn with_policy<R>(&self, f: impl FnOnce(&P) -> R) -> R {
        f(&self.policy)
    }

    /// The policy and a view of the entries with its states.
    #[inline]
    fn parts<'a>(&'a mut self, store: &'a Store<K, V>) -> (&'a mut P, View<'a, K, V, P::State>) {
        (
            &mut self.policy,
            View {
                slab: &self.slab,
                weights: &self.weights,
                store,
                writer: &self.writer,
                states: &mut self.states,
            },
        )
    }

    /// The weight of live entry `id`.
    #[inline]
    fn weight_of(&self, id: EntryId) -> u32 {
        weight_at(&self.weights, id)
    }

    /// The node of entry `id`.
    #[inline]
    fn node<'a>(&'a self, store: &'a Store<K, V>, id: EntryId) -> &'a Node<K, V> {
        store.get(&self.writer, self.slab.at(id).node())
    }

    #[inline]
    fn deadline(&self, store: &Store<K, V>, id: EntryId) -> Deadline {
        Deadline::from_raw(self.node(store, id).deadline_bits())
    }

    fn find<Q>(&self, store: &Store<K, V>, fragment: u32, key: &Q) -> Option<EntryId>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let node = store.find_for_write(&self.writer, fragment, |k| k.borrow() == key)?;
        Some(store.get(&self.writer, node).id())
    }

    /// A hit for a [`HitAccess::Shared`] policy, after the reader left its section: `id` may
    /// have been removed (or reused) since, so the hash must still match.
    pub(crate) fn access_shared(&mut self, store: &Store<K, V>, id: EntryId, fragment: u32) {
        let writer = &self.writer;
        if self
            .slab
            .get(id)
            .is_some_and(|m| store.get(writer, m.node()).hash == fragment)
        {
            self.policy.on_access_shared(&self.states[id.index()]);
        }
    }

    /// Clones of every live entry at `now`, with their ids (for snapshots and `retain`).
    pub(crate) fn snapshot(&self, store: &Store<K, V>, now: u64) -> Vec<(EntryId, K, V)>
    where
        K: Clone,
        V: Clone,
    {
        self.slab
            .iter()
            .map(|(id, m)| (id, store.get(&self.writer, m.node())))
            .filter(|(_, n)| !Deadline::from_raw(n.deadline_bits()).is_expired(now))
            .map(|(id, n)| (id, n.key.clone(), n.value.clone()))
            .collect()
    }

    /// Up to `limit` live entries, the hottest first in the policy's order
    /// ([`EvictionPolicy::hottest`]), after replaying the recorded hits. Runs no user code.
    #[cfg(feature = "snapshot")]
    pub(crate) fn hottest(&mut self, store: &Store<K, V>, limit: usize) -> Vec<EntryId> {
        self.drain(store);
        let mut out = Vec::with_capacity(limit.min(self.slab.len()));
        let (policy, view) = self.parts(store);
        policy.hottest(&view, limit, &mut out);
        out.truncate(limit);
        out
    }

    /// What `copy` makes of each entry of `ids` that is still live at `now` (a key's and a
    /// value's `Clone` run here, under the lock), with its deadline; vacant and expired ids
    /// are skipped.
    #[cfg(feature = "snapshot")]
    pub(crate) fn copy_out<W>(
        &self,
        store: &Store<K, V>,
        ids: &[EntryId],
        now: u64,
        mut copy: impl FnMut(&K, &V) -> Option<W>,
        out: &mut Vec<(usize, W, Deadline)>,
        first_rank: usize,
    ) {
        for (rank, &id) in (first_rank..).zip(ids) {
            if !self.slab.contains(id) {
                continue;
            }
            let node = self.node(store, id);
            let deadline = Deadline::from_raw(node.deadline_bits());
            if deadline.is_expired(now) {
                continue;
            }
            if let Some(w) = copy(&node.key, &node.value) {
                out.push((rank, w, deadline));
            }
        }
    }

    /// Replays the hits readers recorded into the policy and drains part of a running table
    /// migration. Every writing method starts with it.
    pub(crate) fn drain(&mut self, store: &Store<K, V>) {
        store.migrate_step(&mut self.writer);
        if !matches!(
            P::HIT,
            HitAccess::Exclusive | HitAccess::MarkOrRecord(_) | HitAccess::Stamp
        ) {
            return;
        }
        let mut cursors = std::mem::take(&mut self.cursors);
        let (policy, mut view) = self.parts(store);
        store
            .readers()
            .drain(&mut cursors, |id| replay(policy, &mut view, id));
        self.cursors = cursors;
    }

    /// Hands every node the last writes unlinked to `out`, with its cause, once no reader can
    /// still see it (see `Store::reclaim`). Every writing method must be followed by it before
    /// the lock is released.
    pub(crate) fn reclaim(&mut self, store: &Store<K, V>, out: &mut Removed<K, V>) {
        let Self { writer, causes, .. } = self;
        let mut next = 0;
        store.reclaim(writer, |node| {
            let cause = causes.get(next).copied().unwrap_or(RemovalCause::Explicit);
            next += 1;
            out.push(node.key, node.value, cause);
        });
        causes.clear();
    }

    /// Stores `key → value`. With `only_if_absent`, a live entry for `key` is kept and its
    /// value cloned out instead. A rejected newcomer goes to `out` at once; replaced, evicted
    /// and removed entries at [`reclaim`](Self::reclaim).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
        store: &Store<K, V>,
        fragment: u32,
        key: K,
        value: V,
        weight: u32,
        ttl: Option<u64>,
        now: u64,
        only_if_absent: bool,
        out: &mut Removed<K, V>,
    ) -> Inserted<V>
    where
        K: Eq,
        V: Clone,
    {
        self.drain(store);
        self.maybe_sweep(store, now);
        // One clamp for the entry and the shard's total alike.
        let weight = weight.min(crate::engine::slab::MAX_WEIGHT);
        let deadline = self.expiration.deadline(now, ttl, || self.rng.next_u64());
        if let Some(index) = store.find_for_write(&self.writer, fragment, |k| *k == key) {
            let node = store.get(&self.writer, index);
            let id = node.id();
            let current = Deadline::from_raw(node.deadline_bits());
            if !current.is_expired(now) {
                if only_if_absent {
                    return Inserted::Present(node.value.clone());
                }
                self.replace(
                    store, fragment, id, index, current, key, value, weight, deadline, now,
                );
                return Inserted::Stored;
            }
            self.remove_id(store, id, RemovalCause::Expired);
        }
        self.insert_new(store, fragment, key, value, weight, deadline, now, out);
        Inserted::Stored
    }

    #[allow(clippy::too_many_arguments)]
    fn replace(
        &mut self,
        store: &Store<K, V>,
        fragment: u32,
        id: EntryId,
        old_node: u32,
        current: Deadline,
        key: K,
        value: V,
        weight: u32,
        deadline: Deadline,
        now: u64,
    ) {
        // With unit weights the old weight is known without a load.
        let old_weight = if self.unit_weights {
            debug_assert_eq!(weight, 1);
            1
        } else {
            std::mem::replace(&mut self.weights[id.index()], weight)
        };
        debug_assert_eq!(store.get(&self.writer, old_node).hash, fragment);
        let was_volatile = !current.is_never();
        let node = Node::new(key, value, fragment, id, deadline.raw());
        // The mark belongs to the entry, not to its value.
        node.set_mark(store.get(&self.writer, old_node).mark());
        let new_node = store.replace(&mut self.writer, old_node, node);
        self.causes.push(RemovalCause::Replaced);
        self.slab.overwrite(id, Meta::new(new_node));
        self.weight = self.weight - u64::from(old_weight) + u64::from(weight);
        self.volatile =
            self.volatile - usize::from(was_volatile) + usize::from(!deadline.is_never());
        self.writes.updates += 1;
        self.generation += 1;
        let (policy, mut view) = self.parts(store);
        policy.on_update(id, old_weight, &mut view);
        self.evict_to_fit(store, now);
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_new(
        &mut self,
        store: &Store<K, V>,
        fragment: u32,
        key: K,
        value: V,
        weight: u32,
        deadline: Deadline,
        now: u64,
        out: &mut Removed<K, V>,
    ) {
        let admission = protocol::make_room(&mut self.residence(store, now), fragment, weight);
        if admission != Admission::Admitted {
            self.writes.evicted_capacity += 1;
            self.writes.rejected += u64::from(admission == Admission::Refused);
            out.push(key, value, RemovalCause::Capacity);
            return;
        }
        // The record first, for its id; its node index is set once the node is stored.
        let id = self.slab.insert(Meta::new(0));
        let node = store.insert(
            &mut self.writer,
            Node::new(key, value, fragment, id, deadline.raw()),
        );
        *self.slab.at_mut(id) = Meta::new(node);
        self.weight += u64::from(weight);
        self.volatile += usize::from(!deadline.is_never());
        self.writes.inserts += 1;
        self.generation += 1;
        let limit = self.slab.limit();
        set_slot(&mut self.states, id, P::State::default(), limit);
        if !self.unit_weights {
            set_slot(&mut self.weights, id, weight, limit);
        }
        let (policy, mut view) = self.parts(store);
        policy.on_insert(id, &mut view);
    }

    /// Evicts the policy's victims until the shard fits its capacity.
    fn evict_to_fit(&mut self, store: &Store<K, V>, now: u64) {
        protocol::evict_while(&mut self.residence(store, now), 0, false);
    }

    /// The shard as the admission protocol sees it, for a write at `now`.
    #[inline]
    fn residence<'a>(&'a mut self, store: &'a Store<K, V>, now: u64) -> Writing<'a, K, V, P> {
        Writing {
            shard: self,
            store,
            now,
        }
    }

    /// Removes entry `id`, counting it under `cause`; its node waits for `reclaim`.
    pub(crate) fn remove_id(&mut self, store: &Store<K, V>, id: EntryId, cause: RemovalCause) {
        let (policy, mut view) = self.parts(store);
        policy.on_remove(id, &mut view);
        let volatile = !self.deadline(store, id).is_never();
        let weight = self.weight_of(id);
        let meta = self.slab.remove(id);
        store.remove(&mut self.writer, meta.node());
        self.causes.push(cause);
        self.weight -= u64::from(weight);
        self.volatile -= usize::from(volatile);
        match cause {
            RemovalCause::Capacity => self.writes.evicted_capacity += 1,
            RemovalCause::Expired => self.writes.expired += 1,
            RemovalCause::Explicit => self.writes.removed_explicit += 1,
            RemovalCause::Replaced => {}
        }
    }

    /// Removes `key` if present (explicitly). Returns whether it was live.
    pub(crate) fn remove<Q>(
        &mut self,
        store: &Store<K, V>,
        fragment: u32,
        key: &Q,
        now: u64,
    ) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.drain(store);
        let Some(id) = self.find(store, fragment, key) else {
            return false;
        };
        if self.deadline(store, id).is_expired(now) {
            self.remove_id(store, id, RemovalCause::Expired);
            false
        } else {
            self.remove_id(store, id, RemovalCause::Explicit);
            true
        }
    }

    /// Removes `key` if it is still expired at `now` (passive expiry after a read found it so).
    pub(crate) fn remove_expired<Q>(
        &mut self,
        store: &Store<K, V>,
        fragment: u32,
        key: &Q,
        now: u64,
    ) where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.drain(store);
        let found = self.find(store, fragment, key);
        if let Some(id) = found.filter(|&id| self.deadline(store, id).is_expired(now)) {
            self.remove_id(store, id, RemovalCause::Expired);
        }
    }

    /// Removes the entries `ids` (from a snapshot) whose key is still `keys[i]`.
    pub(crate) fn remove_ids(&mut self, store: &Store<K, V>, victims: Vec<(EntryId, K)>)
    where
        K: Eq,
    {
        self.drain(store);
        for (id, key) in victims {
            if self.slab.contains(id) && self.node(store, id).key == key {
                self.remove_id(store, id, RemovalCause::Explicit);
            }
        }
    }

    /// Removes every entry explicitly.
    pub(crate) fn clear(&mut self, store: &Store<K, V>) {
        self.drain(store);
        self.policy.clear();
        let n = self.slab.len();
        store.clear(&mut self.writer);
        self.causes
            .extend(std::iter::repeat_n(RemovalCause::Explicit, n));
        self.writes.removed_explicit += n as u64;
        self.slab.drain().for_each(drop);
        self.weight = 0;
        self.volatile = 0;
    }

    /// Every [`SWEEP_EVERY_WRITES`] writes, a short sweep.
    fn maybe_sweep(&mut self, store: &Store<K, V>, now: u64) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY_WRITES {
            self.writes_since_sweep = 0;
            self.sweep(store, SWEEP_ROUNDS_PER_WRITE, now);
        }
    }

    /// The Redis active-expiry cycle: sample [`SWEEP_SAMPLE`] entries, remove the expired ones,
    /// and repeat while more than a quarter of the entries with a deadline in the sample had
    /// expired, for at most `max_rounds` rounds. Returns the number removed.
    pub(crate) fn sweep(&mut self, store: &Store<K, V>, max_rounds: usize, now: u64) -> usize {
        self.drain(store);
        let mut removed = 0;
        for _ in 0..max_rounds {
            let (mut sampled, mut expired) = (0, 0);
            for _ in 0..SWEEP_SAMPLE {
                if self.volatile == 0 {
                    break;
                }
                let Some(id) = self.slab.random(self.rng.next_u64()) else {
                    break;
                };
                let deadline = self.deadline(store, id);
                if deadline.is_never() {
                    continue;
                }
                sampled += 1;
                if deadline.is_expired(now) {
                    self.remove_id(store, id, RemovalCause::Expired);
                    self.writes.sweep_expired += 1;
                    expired += 1;
                }
            }
            removed += expired;
            if sampled == 0 || expired * 100 <= sampled * SWEEP_REPEAT_PERCENT {
                break;
            }
        }
        removed
    }

    /// Checks every invariant of the shard, its store and its policy.
    pub(crate) fn validate(&mut self, store: &Store<K, V>) -> Result<(), String> {
        if !self.causes.is_empty() {
            return Err(format!(
                "{} unlinked nodes not reclaimed",
                self.causes.len()
            ));
        }
        store.validate(&self.writer)?;
        let slab = &self.slab;
        if store.len(&self.writer) != slab.len() {
            return Err(format!(
                "table has {} entries, slab {}",
                store.len(&self.writer),
                slab.len()
            ));
        }
        if slab.slots() != slab.len() + slab.vacant() {
            return Err(format!(
                "slab has {} slots = {} live + {} free?",
                slab.slots(),
                slab.len(),
                slab.vacant()
            ));
        }
        let (mut weight, mut volatile) = (0u64, 0usize);
        for (id, m) in slab.iter() {
            weight += u64::from(self.weight_of(id));
            let node = store.get(&self.writer, m.node());
            volatile += usize::from(!Deadline::from_raw(node.deadline_bits()).is_never());
            if node.id() != id {
                return Err(format!(
                    "{id:?}'s node {} belongs to {:?}",
                    m.node(),
                    node.id()
                ));
            }
            let found =
                store.find_for_write(&self.writer, node.hash, |k| std::ptr::eq(k, &node.key));
            if found != Some(m.node()) {
                return Err(format!("{id:?} is not in the table under its hash"));
            }
        }
        if weight != self.weight {
            return Err(format!(
                "weights sum to {weight}, shard says {}",
                self.weight
            ));
        }
        if volatile != self.volatile {
            return Err(format!(
                "{volatile} entries have deadlines, shard says {}",
                self.volatile
            ));
        }
        if self.weight > self.capacity {
            return Err(format!(
                "weight {} exceeds capacity {}",
                self.weight, self.capacity
            ));
        }
        if self.states.len() < slab.slots() {
            return Err(format!(
                "{} policy states for {} slab slots",
                self.states.len(),
                slab.slots()
            ));
        }
        if (self.unit_weights && !self.weights.is_empty())
            || (!self.unit_weights && self.weights.len() < slab.slots())
        {
            return Err(format!(
                "{} weights for {} slab slots (unit weights: {})",
                self.weights.len(),
                slab.slots(),
                self.unit_weights
            ));
        }
        let (policy, view) = self.parts(store);
        policy.validate(&view)
    }

    /// Bytes the shard's own structures allocate: store (arena, buckets, reader stripes),
    /// slab, policy states and weights (the policy's own structures, such as LFU's heap,
    /// excluded).
    pub(crate) fn allocated_bytes(&self, store: &Store<K, V>) -> usize {
        store.allocated_bytes(&self.writer)
            + self.slab.allocated_bytes()
            + self.states.capacity() * size_of::<P::State>()
            + self.weights.capacity() * size_of::<u32>()
    }
}
