//! One shard: a hash table of slab indices, the slab of entries, and the policy.
//!
//! The shard knows nothing about threads: the concurrent [`Cache`](crate::Cache) wraps each one
//! in a `RwLock`, and the same code serves the model tests and fuzzers. Methods taking `&self`
//! are the read path (run under the shared lock: lookups, counters, the access buffer);
//! methods taking `&mut self` run under the exclusive lock and first replay buffered hits into
//! the policy, so the policy sees every event in order.
//!
//! No user code runs here except the key's `Eq` (on lookups) and the value's `Clone` (only in
//! the read paths that return a clone). Removed entries are moved into a [`Removed`] buffer and
//! dropped or announced by the caller after the lock is released; the index rehashes from the
//! stored hash fragment, never by calling `Hash`, and grows a few buckets per insert
//! ([`Index`]) instead of rehashing every entry in one insert.

use std::borrow::Borrow;

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use crate::engine::buffer::AccessBuffer;
use crate::engine::expiry::{
    Clock, Deadline, Expiration, SWEEP_EVERY_WRITES, SWEEP_REPEAT_PERCENT, SWEEP_ROUNDS_PER_WRITE,
    SWEEP_SAMPLE,
};
use crate::engine::index::Index;
use crate::engine::slab::{Entry, Slab, View, push_within};
use crate::metrics::{ReadCounters, WriteCounters};
use crate::notify::{RemovalCause, Removed};
use crate::policy::{EntryId, EvictionPolicy, HitAccess, ShardContext};
use crate::shim::Mutex;
use crate::shim::{AtomicU64, Ordering};

/// The table's hash, derived from the entry's stored 32-bit fragment by a multiplicative mix:
/// the low bits pick the bucket, the top seven are hashbrown's tag.
#[inline]
fn table_hash(fragment: u32) -> u64 {
    u64::from(fragment).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// What a lookup under the shared lock found.
pub(crate) enum Lookup<'a, V> {
    /// A live entry; `drain` asks the caller to replay the access buffer.
    Hit { value: &'a V, drain: bool },
    /// No entry.
    Miss,
    /// An expired entry, which the caller should remove under the exclusive lock.
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

/// `repr(C)` so that the fields every hit writes (the read counters and the access buffer's
/// claim counter) come first and share the cache line of the `RwLock` word in front of the
/// shard: a hit then dirties one line, not two, and two threads on one shard bounce one line.
#[repr(C)]
pub(crate) struct Shard<K, V, P: EvictionPolicy> {
    pub(crate) reads: ReadCounters,
    buffer: AccessBuffer,
    /// Hits replayed from the buffer so far (the buffer's claim counts, summed per drain).
    drained_hits: AtomicU64,
    table: Index,
    slab: Slab<Entry<K, V>>,
    /// The policy and its per-entry states. A mutex of their own, apart from the shard's
    /// `RwLock`: a reader replays buffered hits under the shared lock with `try_lock`, so
    /// drains never block other readers. Under the exclusive lock, `get_mut` reaches it
    /// without locking.
    core: Mutex<Core<P>>,
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
}

/// Replays one buffered hit. Every buffered id is live (see `buffer.rs`); the check only
/// keeps a broken invariant from reaching the policy.
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

/// The policy and its per-entry states, indexed like the slab.
struct Core<P: EvictionPolicy> {
    policy: P,
    states: Vec<P::State>,
}

impl<P: EvictionPolicy> Core<P> {
    /// Gives slot `id` (just filled in the slab) a fresh default state.
    fn reset_state(&mut self, id: EntryId, limit: usize) {
        let i = id.index();
        if i < self.states.len() {
            self.states[i] = P::State::default();
        } else {
            debug_assert_eq!(i, self.states.len(), "the slab fills its slots in order");
            push_within(&mut self.states, P::State::default(), limit);
        }
    }
}

impl<K, V, P: EvictionPolicy> Shard<K, V, P> {
    /// A shard; `max_entries` bounds its slab's growth (its capacity when entries weigh 1).
    pub(crate) fn new(
        mut policy: P,
        ctx: ShardContext,
        expiration: Expiration,
        max_entries: usize,
    ) -> Self {
        policy.configure(&ctx);
        Self {
            table: Index::new(),
            slab: Slab::with_limit(max_entries),
            core: Mutex::new(Core {
                policy,
                states: Vec::new(),
            }),
            buffer: AccessBuffer::new(),
            drained_hits: AtomicU64::new(0),
            reads: ReadCounters::default(),
            writes: WriteCounters::default(),
            expiration,
            capacity: ctx.capacity,
            weight: 0,
            volatile: 0,
            rng: SmallRng::seed_from_u64(ctx.seed),
            writes_since_sweep: 0,
            generation: 0,
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
        f(&self.core.lock().policy)
    }

    /// The policy and a view of the entries with its states, under the exclusive lock.
    #[inline]
    fn parts(&mut self) -> (&mut P, View<'_, K, V, P::State>) {
        let Core { policy, states } = self.core.get_mut();
        (
            policy,
            View {
                slab: &self.slab,
                states,
            },
        )
    }

    #[inline]
    fn find<Q>(&self, fragment: u32, key: &Q) -> Option<EntryId>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let slab = &self.slab;
        self.table
            .find(table_hash(fragment), |i| {
                slab.at(EntryId::new(i)).key.borrow() == key
            })
            .map(EntryId::new)
    }

    // ----- read path (shared lock) -----

    /// Looks `key` up. With `access`, a hit slides a sliding deadline and is reported to the
    /// policy as [`P::HIT`](EvictionPolicy::HIT) says; without it (`peek`), nothing changes.
    #[inline]
    pub(crate) fn get<Q>(
        &self,
        fragment: u32,
        key: &Q,
        clock: &dyn Clock,
        access: bool,
    ) -> Lookup<'_, V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let Some(id) = self.find(fragment, key) else {
            return Lookup::Miss;
        };
        let entry = self.slab.at(id);
        let deadline = entry.deadline();
        if !deadline.is_never() {
            let now = clock.now_nanos();
            if deadline.is_expired(now) {
                return Lookup::Expired;
            }
            if access && let Some(slid) = self.expiration.slide(deadline, now) {
                entry.set_deadline(slid);
            }
        }
        let mut drain = false;
        if access {
            match P::HIT {
                HitAccess::Ignore => self.reads.hit(),
                HitAccess::Shared => {
                    self.reads.hit();
                    // Brief: no drain ever holds the mutex for a `Shared` policy.
                    let core = self.core.lock();
                    core.policy.on_access_shared(&core.states[id.index()]);
                }
                // The buffer's own counter counts the hit.
                HitAccess::Exclusive => drain = self.buffer.push(id),
            }
        }
        Lookup::Hit {
            value: &entry.value,
            drain,
        }
    }

    /// Clones of every live entry at `now`, with their ids (for snapshots and `retain`).
    pub(crate) fn snapshot(&self, now: u64) -> Vec<(EntryId, K, V)>
    where
        K: Clone,
        V: Clone,
    {
        self.slab
            .iter()
            .filter(|(_, e)| !e.deadline().is_expired(now))
            .map(|(id, e)| (id, e.key.clone(), e.value.clone()))
            .collect()
    }

    // ----- write path (exclusive lock) -----

    /// Replays buffered hits into the policy under the shared lock, unless another reader is
    /// already at it (then this one goes on: the hits stay buffered or are dropped).
    pub(crate) fn drain_shared(&self) {
        let Some(mut core) = self.core.try_lock() else {
            return;
        };
        let Core { policy, states } = &mut *core;
        let mut view = View {
            slab: &self.slab,
            states,
        };
        let hits = self.buffer.drain_shared(|id| replay(policy, &mut view, id));
        self.drained_hits.fetch_add(hits, Ordering::Relaxed);
    }

    /// Replays buffered hits into the policy. Every `&mut self` operation starts with this.
    pub(crate) fn drain(&mut self) {
        let Self {
            buffer,
            core,
            slab,
            drained_hits,
            ..
        } = self;
        let Core { policy, states } = core.get_mut();
        let mut view = View { slab, states };
        *drained_hits.get_mut() += buffer.drain(|id| replay(policy, &mut view, id));
    }

    /// Hits counted so far (under either lock).
    pub(crate) fn hits(&self) -> u64 {
        self.reads.hits.load(Ordering::Relaxed)
            + self.drained_hits.load(Ordering::Relaxed)
            + self.buffer.claimed()
    }

    /// Stores `key → value`. With `only_if_absent`, a live entry for `key` is kept and its
    /// value cloned out instead. Replaced, evicted and rejected entries go to `out`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert(
        &mut self,
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
        self.drain();
        self.maybe_sweep(now, out);
        // One clamp for the entry and the shard's total alike.
        let weight = weight.min(crate::engine::slab::MAX_WEIGHT);
        let deadline = self.expiration.deadline(now, ttl, self.rng.next_u64());
        if let Some(id) = self.find(fragment, &key) {
            if !self.slab.at(id).deadline().is_expired(now) {
                if only_if_absent {
                    return Inserted::Present(self.slab.at(id).value.clone());
                }
                self.replace(id, key, value, weight, deadline, now, out);
                return Inserted::Stored;
            }
            self.remove_id(id, RemovalCause::Expired, out);
        }
        self.insert_new(fragment, key, value, weight, deadline, now, out);
        Inserted::Stored
    }

    #[allow(clippy::too_many_arguments)]
    fn replace(
        &mut self,
        id: EntryId,
        key: K,
        value: V,
        weight: u32,
        deadline: Deadline,
        now: u64,
        out: &mut Removed<K, V>,
    ) {
        let entry = self.slab.at_mut(id);
        let old = std::mem::replace(&mut entry.value, value);
        let old_weight = entry.weight();
        let was_volatile = !entry.deadline().is_never();
        entry.set_weight(weight);
        entry.set_deadline(deadline);
        self.weight = self.weight - u64::from(old_weight) + u64::from(weight);
        self.volatile =
            self.volatile - usize::from(was_volatile) + usize::from(!deadline.is_never());
        self.writes.updates += 1;
        self.generation += 1;
        let (policy, mut view) = self.parts();
        policy.on_update(id, old_weight, &mut view);
        out.push(key, old, RemovalCause::Replaced);
        self.evict_to_fit(now, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_new(
        &mut self,
        fragment: u32,
        key: K,
        value: V,
        weight: u32,
        deadline: Deadline,
        now: u64,
        out: &mut Removed<K, V>,
    ) {
        let too_heavy = u64::from(weight) > self.capacity;
        if too_heavy
            || (self.weight + u64::from(weight) > self.capacity && {
                let (policy, mut view) = self.parts();
                !policy.admit(fragment, weight, &mut view)
            })
        {
            self.writes.evicted_capacity += 1;
            self.writes.rejected += u64::from(!too_heavy);
            out.push(key, value, RemovalCause::Capacity);
            return;
        }
        // Make room first, as LFU-DA and Redis do: the newcomer is never its own victim, and
        // it enters with the age its victims set.
        self.evict_while(weight, now, out);
        let slab = &self.slab;
        self.table
            .reserve_one(|i| table_hash(slab.at(EntryId::new(i)).hash));
        let id = self
            .slab
            .insert(Entry::new(key, value, fragment, weight, deadline));
        let slab = &self.slab;
        self.table.insert(table_hash(fragment), id.raw(), |i| {
            table_hash(slab.at(EntryId::new(i)).hash)
        });
        self.weight += u64::from(weight);
        self.volatile += usize::from(!deadline.is_never());
        self.writes.inserts += 1;
        self.generation += 1;
        let limit = self.slab.limit();
        self.core.get_mut().reset_state(id, limit);
        let (policy, mut view) = self.parts();
        policy.on_insert(id, &mut view);
    }

    /// Evicts the policy's victims until the shard fits its capacity.
    fn evict_to_fit(&mut self, now: u64, out: &mut Removed<K, V>) {
        self.evict_while(0, now, out);
    }

    /// Evicts the policy's victims until `incoming` more weight fits.
    fn evict_while(&mut self, incoming: u32, now: u64, out: &mut Removed<K, V>) {
        while self.weight + u64::from(incoming) > self.capacity {
            let (policy, mut view) = self.parts();
            let Some(victim) = policy.victim(incoming, &mut view) else {
                break;
            };
            if !self.slab.contains(victim) {
                break; // a broken policy; `validate` reports the overflow
            }
            let cause = if self.slab.at(victim).deadline().is_expired(now) {
                RemovalCause::Expired
            } else {
                RemovalCause::Capacity
            };
            self.remove_id(victim, cause, out);
        }
    }

    /// Removes entry `id`, counting it under `cause`, and moves it to `out`.
    pub(crate) fn remove_id(&mut self, id: EntryId, cause: RemovalCause, out: &mut Removed<K, V>) {
        let (policy, mut view) = self.parts();
        policy.on_remove(id, &mut view);
        let fragment = self.slab.at(id).hash;
        self.table.remove(table_hash(fragment), id.raw());
        let entry = self.slab.remove(id);
        self.weight -= u64::from(entry.weight());
        self.volatile -= usize::from(!entry.deadline().is_never());
        match cause {
            RemovalCause::Capacity => self.writes.evicted_capacity += 1,
            RemovalCause::Expired => self.writes.expired += 1,
            RemovalCause::Explicit => self.writes.removed_explicit += 1,
            RemovalCause::Replaced => {}
        }
        out.push(entry.key, entry.value, cause);
    }

    /// Removes `key` if present (explicitly), into `out`. Returns whether it was live.
    pub(crate) fn remove<Q>(
        &mut self,
        fragment: u32,
        key: &Q,
        now: u64,
        out: &mut Removed<K, V>,
    ) -> bool
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.drain();
        let Some(id) = self.find(fragment, key) else {
            return false;
        };
        if self.slab.at(id).deadline().is_expired(now) {
            self.remove_id(id, RemovalCause::Expired, out);
            false
        } else {
            self.remove_id(id, RemovalCause::Explicit, out);
            true
        }
    }

    /// Removes `key` if it is still expired at `now` (passive expiry after a read found it so).
    pub(crate) fn remove_expired<Q>(
        &mut self,
        fragment: u32,
        key: &Q,
        now: u64,
        out: &mut Removed<K, V>,
    ) where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.drain();
        if let Some(id) = self.find(fragment, key)
            && self.slab.at(id).deadline().is_expired(now)
        {
            self.remove_id(id, RemovalCause::Expired, out);
        }
    }

    /// Removes the entries `ids` (from a snapshot) whose key is still `keys[i]`.
    pub(crate) fn remove_ids(&mut self, victims: Vec<(EntryId, K)>, out: &mut Removed<K, V>)
    where
        K: Eq,
    {
        self.drain();
        for (id, key) in victims {
            if self.slab.get(id).is_some_and(|e| e.key == key) {
                self.remove_id(id, RemovalCause::Explicit, out);
            }
        }
    }

    /// Removes every entry explicitly.
    pub(crate) fn clear(&mut self, out: &mut Removed<K, V>) {
        self.drain();
        self.core.get_mut().policy.clear();
        self.table.clear();
        self.writes.removed_explicit += self.slab.len() as u64;
        for e in self.slab.drain() {
            out.push(e.key, e.value, RemovalCause::Explicit);
        }
        self.weight = 0;
        self.volatile = 0;
    }

    /// Every [`SWEEP_EVERY_WRITES`] writes, a short sweep.
    fn maybe_sweep(&mut self, now: u64, out: &mut Removed<K, V>) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY_WRITES {
            self.writes_since_sweep = 0;
            self.sweep(SWEEP_ROUNDS_PER_WRITE, now, out);
        }
    }

    /// The Redis active-expiry cycle: sample [`SWEEP_SAMPLE`] entries, remove the expired ones,
    /// and repeat while more than a quarter of the entries with a deadline in the sample had
    /// expired, for at most `max_rounds` rounds. Returns the number removed.
    pub(crate) fn sweep(&mut self, max_rounds: usize, now: u64, out: &mut Removed<K, V>) -> usize {
        self.drain();
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
                let deadline = self.slab.at(id).deadline();
                if deadline.is_never() {
                    continue;
                }
                sampled += 1;
                if deadline.is_expired(now) {
                    self.remove_id(id, RemovalCause::Expired, out);
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

    /// Checks every invariant of the shard and its policy at `now`.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.buffer.pending() != 0 {
            return Err("validate needs a drained access buffer".into());
        }
        let slab = &self.slab;
        if self.table.len() != slab.len() {
            return Err(format!(
                "table has {} entries, slab {}",
                self.table.len(),
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
        for (id, e) in slab.iter() {
            weight += u64::from(e.weight());
            volatile += usize::from(!e.deadline().is_never());
            let found = self
                .table
                .find(table_hash(e.hash), |i| i == id.raw())
                .is_some();
            if !found {
                return Err(format!("{id:?} is not in the table under its hash"));
            }
        }
        self.table.validate()?;
        for i in self.table.iter() {
            if !slab.contains(EntryId::new(i)) {
                return Err(format!("table points at vacant slot {i}"));
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
        let mut core = self.core.lock();
        let Core { policy, states } = &mut *core;
        if states.len() < slab.slots() {
            return Err(format!(
                "{} policy states for {} slab slots",
                states.len(),
                slab.slots()
            ));
        }
        policy.validate(&View { slab, states })
    }

    /// Bytes the shard's own structures allocate: table, slab and policy states (the policy's
    /// own structures, such as LFU's heap, excluded).
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.table.allocation_size()
            + self.slab.allocated_bytes()
            + self.core.lock().states.capacity() * size_of::<P::State>()
    }
}
