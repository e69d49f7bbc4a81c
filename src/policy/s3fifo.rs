//! S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction", SOSP'23): a small
//! probationary FIFO, a main FIFO with lazy reinsertion, and a ghost FIFO of hash fragments.
//! The public documentation is on [`S3Fifo`]; this is how it is built.
//!
//! Written against the public [`EvictionPolicy`]/[`Entries`] items only (no crate-private
//! helper, not even the shared list in `list.rs`), as the proof that the trait is pluggable.
//!
//! # Mapping onto the trait
//!
//! [`victim`](EvictionPolicy::victim) must name one entry to remove *now*. It therefore does
//! S3-FIFO's bookkeeping itself: it promotes S's oldest entries with a counter above 1 into M
//! and reinserts M's oldest entries with a non-zero counter, re-deciding between S and M after
//! every move, and returns the first entry that is really evicted. Each move is paid for by the
//! insert or the hit that caused it (a promotion by the insert, a reinsertion by the hit that
//! raised the counter), so a call is amortized O(1). A victim taken from S is remembered in
//! `evicting` until its [`on_remove`](EvictionPolicy::on_remove), which records its hash in
//! the ghost; any other `on_remove` (explicit removal, expiry found by a lookup or the sweep)
//! unlinks the entry from whichever queue holds it and records nothing, since such an entry
//! did not lose a fight for room. The paper's `EVICTS` may evict from M in the middle of its
//! loop when a promotion overfills M; re-deciding after every move gives the same steady state
//! (S at its target, M at the rest) with one victim per call, which is what the trait asks.
//!
//! # Queues
//!
//! S and M are doubly linked lists threaded through the per-entry states. The ends link to the
//! entry itself rather than to a sentinel: code outside the crate cannot make an [`EntryId`].
//! (Written when `Option<EntryId>` took 8 bytes; ids now have a niche, so `Option` links would
//! cost the same 4 bytes.)
//!
//! # Ghost
//!
//! A ring of fragments (oldest first) numbered by a wrapping sequence number, plus a table from
//! each remembered fragment to the number of its latest record. Consuming a fragment (a
//! newcomer found it) removes it from the table and leaves its records in the ring; popping a
//! record removes its fragment from the table only if the table points at that very record,
//! so older duplicates and consumed records fall out silently. Every operation is O(1).

use super::ghost::Ghost;
use super::list::{HasLinks, List, SelfLinks};
use super::{Entries, EntryId, EvictionPolicy, HitAccess};

/// Counters saturate here (2 bits).
const FREQ_MAX: u8 = 3;
/// An entry leaving S with a counter above this moves to M (the paper's `t.freq > 1`).
const PROMOTE_ABOVE: u8 = 1;

/// S3-FIFO eviction (Yang et al., SOSP'23): a small FIFO for newcomers, a main FIFO with lazy
/// reinsertion, and a ghost of recently evicted hashes. Scan-resistant: one-hit wonders pass
/// through the small queue without disturbing the main queue.
///
/// - **S**, the small queue (10% of the entries by default), takes every newcomer whose hash is
///   not in the ghost. When S's oldest entry must make room, it moves to M if it was hit at
///   least twice while in S (counter > 1), otherwise it is evicted and its hash goes to G.
/// - **M**, the main queue (the rest), takes S's promoted entries and newcomers found in G.
///   Its oldest entry is evicted if its counter is zero, otherwise it is reinserted at the new
///   end with the counter minus one (CLOCK with a 2-bit counter).
/// - **G**, the ghost, remembers the 32-bit hash fragments of entries evicted from S, as many
///   as M holds entries by default. A newcomer found in G was evicted too early: it goes
///   straight to M, and the record is consumed.
/// - Each entry has an access counter of 2 bits (saturating at 3), bumped by hits and by
///   updates of its value, and reset to zero when the entry moves from S to M.
///
/// Eviction takes from S when S holds at least its target share of the entries (or M is
/// empty), otherwise from M. Explicit removals and expiry take an entry out of whichever queue
/// holds it and leave no ghost record: only entries evicted from S for room do.
///
/// A hit raises the entry's counter in the entry itself ([`HitAccess::Mark`]): no lock, no
/// buffered record, and no store once the counter is at 3, so readers never serialize on a hit
/// and a hot entry's hits write nothing. Every operation is amortized O(1).
///
/// # Choices where the paper leaves room
///
/// - **Promotion needs a counter above 1**, as in the paper's pseudocode and libCacheSim's
///   default: an entry must be hit twice during its short stay in S. Some implementations
///   promote on one hit (`> 0`), which lets more of a scan into M.
/// - **Sizes are counted in entries, not in weight.** S's target is `round(f × len)` entries,
///   where `len` is the shard's live entries and `f` the [`small_fraction`](Self::small_fraction);
///   the ghost keeps at most `round(r × (len − S's target))` hashes, `r` being the
///   [`ghost_ratio`](Self::ghost_ratio). Without a weigher, eviction happens at
///   `len == capacity`, so these are exactly the paper's 10% of the capacity and "ghost size =
///   main size". With a weigher, S holds 10% of the *entries*, whatever they weigh.
/// - Clearing the cache forgets the ghost too.
///
/// # Memory
///
/// 12 bytes of state per entry (two queue neighbours, the queue, the counter), plus the ghost:
/// 4 bytes per record in its ring and 9 bytes per bucket of its table, 14 to 25 bytes per
/// remembered hash, so about 13 to 22 bytes per entry of the shard at the default settings.
///
/// # Example
///
/// ```
/// use aside::{Cache, policy::S3Fifo};
///
/// let cache: Cache<u32, u32, S3Fifo> =
///     Cache::builder().max_capacity(10).shards(1).policy(S3Fifo::new()).build().unwrap();
/// cache.insert(0, 0);
/// cache.get(&0);
/// cache.get(&0); // hit twice while in the small queue: it will move to the main queue
/// for k in 1..100 {
///     cache.insert(k, k); // a scan of keys that are never read again
/// }
/// assert!(cache.contains_key(&0)); // LRU or FIFO would have evicted it
/// assert_eq!(cache.len(), 10);
/// ```
#[derive(Debug, Clone)]
pub struct S3Fifo {
    small_fraction: f64,
    ghost_ratio: f64,
    small: Queue,
    main: Queue,
    ghost: Ghost,
    /// The last victim taken from S, until its `on_remove` records it in the ghost.
    evicting: Option<EntryId>,
}

impl Default for S3Fifo {
    fn default() -> Self {
        Self {
            small_fraction: 0.1,
            ghost_ratio: 1.0,
            small: Queue::default(),
            main: Queue::default(),
            ghost: Ghost::default(),
            evicting: None,
        }
    }
}

impl S3Fifo {
    /// A new S3-FIFO policy with the paper's settings: a small queue of 10% of the entries and
    /// a ghost as large as the main queue.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::{Cache, policy::S3Fifo};
    ///
    /// let cache: Cache<u64, String, S3Fifo> =
    ///     Cache::builder().max_capacity(10_000).policy(S3Fifo::new()).build().unwrap();
    /// # let _ = cache;
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the small queue's share of the entries (default 0.1). Larger values give new
    /// entries longer to prove themselves before eviction, at the cost of scan resistance.
    ///
    /// # Panics
    ///
    /// Unless `0.0 < fraction < 1.0`.
    ///
    /// # Example
    ///
    /// ```
    /// let policy = aside::policy::S3Fifo::new().small_fraction(0.2);
    /// # let _ = policy;
    /// ```
    #[must_use]
    pub fn small_fraction(mut self, fraction: f64) -> Self {
        assert!(
            fraction > 0.0 && fraction < 1.0,
            "S3Fifo::small_fraction must be in (0, 1), got {fraction}"
        );
        self.small_fraction = fraction;
        self
    }

    /// Sets how many evicted hashes the ghost remembers, per entry of the main queue (default
    /// 1.0, the paper's "ghost size = main size"). Zero disables the ghost: every newcomer
    /// then starts in the small queue.
    ///
    /// # Panics
    ///
    /// Unless `0.0 <= ratio <= 16.0`.
    ///
    /// # Example
    ///
    /// ```
    /// let policy = aside::policy::S3Fifo::new().ghost_ratio(0.5);
    /// # let _ = policy;
    /// ```
    #[must_use]
    pub fn ghost_ratio(mut self, ratio: f64) -> Self {
        assert!(
            (0.0..=16.0).contains(&ratio),
            "S3Fifo::ghost_ratio must be in [0, 16], got {ratio}"
        );
        self.ghost_ratio = ratio;
        self
    }

    /// S's target number of entries when the shard holds `len`.
    fn small_target(&self, len: usize) -> usize {
        (len as f64 * self.small_fraction).round() as usize
    }

    /// The ghost's bound when the shard holds `len` entries.
    fn ghost_limit(&self, len: usize) -> usize {
        (len.saturating_sub(self.small_target(len)) as f64 * self.ghost_ratio).round() as usize
    }

    /// Both queues, oldest first, for the model test.
    #[cfg(test)]
    fn order(&self, entries: &impl Entries<S3FifoState>) -> (Vec<EntryId>, Vec<EntryId>) {
        (self.small.ids(entries), self.main.ids(entries))
    }
}

/// Per-entry state of [`S3Fifo`]: the entry's neighbours in its queue and which queue. 12
/// bytes. The access counter is the entry's [mark](Entries::mark), which a hit raises
/// without a lock.
///
/// Opaque: only the policy reads it.
///
/// # Example
///
/// ```
/// # use aside::policy::S3FifoState;
/// assert_eq!(std::mem::size_of::<S3FifoState>(), 12);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct S3FifoState(Option<Node>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Segment {
    Small,
    Main,
}

/// An entry's place: its neighbours in its queue (an end of the queue links to the entry
/// itself, [`SelfLinks`]) and which queue.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// Toward the newest end (`prev`, the list's head) and the oldest (`next`).
    links: SelfLinks,
    segment: Segment,
}

fn node(entries: &impl Entries<S3FifoState>, id: EntryId) -> Node {
    entries
        .state(id)
        .0
        .expect("S3-FIFO: the entry is in no queue")
}

impl HasLinks for S3FifoState {
    #[inline]
    fn links(&self) -> &SelfLinks {
        &self
            .0
            .as_ref()
            .expect("S3-FIFO: the entry is in no queue")
            .links
    }
    #[inline]
    fn links_mut(&mut self) -> &mut SelfLinks {
        &mut self
            .0
            .as_mut()
            .expect("S3-FIFO: the entry is in no queue")
            .links
    }
}

/// A FIFO queue threaded through the entries' states: the list's head is the newest entry,
/// its tail the oldest; push at the newest end, unlink anywhere.
#[derive(Debug, Clone, Copy, Default)]
struct Queue(List);

impl Queue {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn oldest(&self) -> Option<EntryId> {
        self.0.tail()
    }

    fn push(
        &mut self,
        id: EntryId,
        segment: Segment,
        freq: u8,
        entries: &mut impl Entries<S3FifoState>,
    ) {
        entries.set_mark(id, freq);
        entries.state_mut(id).0 = Some(Node {
            links: SelfLinks::unlinked(id),
            segment,
        });
        self.0.push_front(id, entries);
    }

    /// Moves `id`, which this queue holds, to the newest end with counter `freq`: what
    /// [`unlink`](Self::unlink) then [`push`](Self::push) would do, relinking in place.
    fn requeue(&mut self, id: EntryId, freq: u8, entries: &mut impl Entries<S3FifoState>) {
        entries.set_mark(id, freq);
        self.0.move_to_front(id, entries);
    }

    /// Takes `id` out of this queue (its state becomes empty) and returns its node.
    fn unlink(&mut self, id: EntryId, entries: &mut impl Entries<S3FifoState>) -> Node {
        self.0.unlink(id, entries);
        entries
            .state_mut(id)
            .0
            .take()
            .expect("S3-FIFO: the entry is in no queue")
    }

    /// Walks the queue and checks every link, the segment tags and the length; records each
    /// entry in `seen`.
    fn validate(
        &self,
        segment: Segment,
        entries: &impl Entries<S3FifoState>,
        seen: &mut std::collections::HashSet<EntryId>,
    ) -> Result<(), String> {
        self.0
            .validate(entries, |id| {
                if !seen.insert(id) {
                    return Err(format!("{id:?} is linked twice"));
                }
                let Some(node) = entries.state(id).0 else {
                    return Err(format!("{id:?} is linked but has no node"));
                };
                if node.segment != segment {
                    return Err(format!("{id:?} is linked but tagged {:?}", node.segment));
                }
                if entries.mark(id) > FREQ_MAX {
                    return Err(format!(
                        "{id:?} has counter {} > {FREQ_MAX}",
                        entries.mark(id)
                    ));
                }
                Ok(())
            })
            .map_err(|e| format!("{segment:?}: {e}"))
    }

    /// Every entry, newest first, stably sorted by counter, highest first.
    fn ranked(&self, entries: &impl Entries<S3FifoState>) -> Vec<EntryId> {
        let mut out: Vec<EntryId> = self.0.iter(entries).collect();
        out.sort_by_key(|&id| std::cmp::Reverse(entries.mark(id)));
        out
    }

    /// Every entry, oldest first.
    #[cfg(test)]
    fn ids(&self, entries: &impl Entries<S3FifoState>) -> Vec<EntryId> {
        self.0.iter_from_tail(entries).collect()
    }
}

impl EvictionPolicy for S3Fifo {
    type State = S3FifoState;
    const HIT: HitAccess = HitAccess::Mark(FREQ_MAX);

    fn on_insert(&mut self, id: EntryId, entries: &mut impl Entries<S3FifoState>) {
        self.evicting = None;
        if self.ghost.take(entries.hash(id)) {
            self.main.push(id, Segment::Main, 0, entries);
        } else {
            self.small.push(id, Segment::Small, 0, entries);
        }
    }

    /// What a reader does itself ([`HitAccess::Mark`]): one more on the entry's counter, up
    /// to its maximum. Called for an update, and for hits in a [`Simulation`](super::Simulation)
    /// or an [`AnyPolicy`](super::AnyPolicy).
    fn on_access(&mut self, id: EntryId, entries: &mut impl Entries<S3FifoState>) {
        let freq = entries.mark(id);
        if freq < FREQ_MAX {
            entries.set_mark(id, freq + 1);
        }
    }

    fn on_remove(&mut self, id: EntryId, entries: &mut impl Entries<S3FifoState>) {
        let evicted = self.evicting.take() == Some(id);
        let segment = node(entries, id).segment;
        match segment {
            Segment::Small => self.small.unlink(id, entries),
            Segment::Main => self.main.unlink(id, entries),
        };
        if evicted && segment == Segment::Small {
            // `entries.len()` still counts the victim, as it did in `victim`.
            let limit = self.ghost_limit(entries.len());
            self.ghost.push(entries.hash(id), limit);
        }
    }

    fn victim(&mut self, _: u32, entries: &mut impl Entries<S3FifoState>) -> Option<EntryId> {
        let target = self.small_target(entries.len());
        loop {
            let from_small = self.small.len() >= target || self.main.len() == 0;
            if let Some(id) = self.small.oldest().filter(|_| from_small) {
                if entries.mark(id) > PROMOTE_ABOVE {
                    self.small.unlink(id, entries);
                    self.main.push(id, Segment::Main, 0, entries);
                    continue;
                }
                self.evicting = Some(id);
                return Some(id);
            }
            let id = self.main.oldest()?;
            let freq = entries.mark(id);
            if freq > 0 {
                self.main.requeue(id, freq - 1, entries);
                continue;
            }
            self.evicting = None;
            return Some(id);
        }
    }

    /// The main queue, then the small one; within each, highest counter first, then newest
    /// first. The main queue holds what was hit in S or came back from the ghost, and it gives
    /// up its entries only after S; a counter buys an entry a reinsertion.
    fn hottest(&self, entries: &impl Entries<S3FifoState>, limit: usize, out: &mut Vec<EntryId>) {
        let main = self.main.ranked(entries);
        let room = limit.saturating_sub(main.len());
        out.extend(main.into_iter().take(limit));
        if room > 0 {
            out.extend(self.small.ranked(entries).into_iter().take(room));
        }
    }

    fn clear(&mut self) {
        self.small = Queue::default();
        self.main = Queue::default();
        self.ghost.clear();
        self.evicting = None;
    }

    fn validate(&self, entries: &impl Entries<S3FifoState>) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        self.small.validate(Segment::Small, entries, &mut seen)?;
        self.main.validate(Segment::Main, entries, &mut seen)?;
        if self.small.len() + self.main.len() != entries.len() {
            return Err(format!(
                "S holds {} and M {} entries, the shard {}",
                self.small.len(),
                self.main.len(),
                entries.len()
            ));
        }
        for id in entries.ids() {
            if !seen.contains(&id) {
                return Err(format!("live entry {id:?} is in no queue"));
            }
        }
        // Nothing reorders S between `victim` and the victim's `on_remove`.
        if self.evicting.is_some() && self.evicting != self.small.oldest() {
            return Err(format!(
                "pending victim {:?} is not S's oldest {:?}",
                self.evicting,
                self.small.oldest()
            ));
        }
        self.ghost.validate()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, VecDeque};

    use proptest::prelude::*;

    use super::*;
    use crate::engine::slab::Slab;
    use crate::policy::sim::Simulated;

    /// A tiny shard: the engine's slab of simulated entries (hash, mark, state), weight 1.
    type Slots = Slab<Simulated<S3FifoState>>;

    fn live_ids(entries: &Slots) -> Vec<EntryId> {
        entries.iter().map(|(id, _)| id).collect()
    }

    /// S3-FIFO as the paper's pseudocode reads, on `VecDeque`s (front = oldest) and maps, with
    /// linear scans wherever that is simpler. Consumed ghost records become `None` and keep
    /// their place in the ghost's window.
    struct Model {
        fraction: f64,
        ratio: f64,
        small: VecDeque<EntryId>,
        main: VecDeque<EntryId>,
        freq: HashMap<EntryId, u8>,
        hash: HashMap<EntryId, u32>,
        ghost: VecDeque<Option<u32>>,
    }

    impl Model {
        fn new(fraction: f64, ratio: f64) -> Self {
            Self {
                fraction,
                ratio,
                small: VecDeque::new(),
                main: VecDeque::new(),
                freq: HashMap::new(),
                hash: HashMap::new(),
                ghost: VecDeque::new(),
            }
        }

        fn len(&self) -> usize {
            self.small.len() + self.main.len()
        }

        fn small_target(&self) -> usize {
            (self.len() as f64 * self.fraction).round() as usize
        }

        fn insert(&mut self, id: EntryId, hash: u32) {
            self.hash.insert(id, hash);
            self.freq.insert(id, 0);
            if self.ghost.contains(&Some(hash)) {
                for record in &mut self.ghost {
                    if *record == Some(hash) {
                        *record = None;
                    }
                }
                self.main.push_back(id);
            } else {
                self.small.push_back(id);
            }
        }

        fn access(&mut self, id: EntryId) {
            let f = self.freq.get_mut(&id).unwrap();
            *f = (*f + 1).min(3);
        }

        /// The paper's EVICT, stopping at the first entry that must go (not removed yet).
        fn victim(&mut self) -> Option<EntryId> {
            loop {
                let from_small = !self.small.is_empty()
                    && (self.small.len() >= self.small_target() || self.main.is_empty());
                if from_small {
                    let t = self.small[0];
                    if self.freq[&t] > 1 {
                        self.small.pop_front();
                        self.main.push_back(t);
                        self.freq.insert(t, 0);
                        continue;
                    }
                    return Some(t);
                }
                let t = *self.main.front()?;
                if self.freq[&t] > 0 {
                    self.main.pop_front();
                    self.main.push_back(t);
                    *self.freq.get_mut(&t).unwrap() -= 1;
                    continue;
                }
                return Some(t);
            }
        }

        /// Removes the victim `id`; one from S leaves its hash in the ghost.
        fn evict(&mut self, id: EntryId) {
            if self.small.contains(&id) {
                let main_size = self.len() - self.small_target();
                let limit = (main_size as f64 * self.ratio).round() as usize;
                self.ghost.push_back(Some(self.hash[&id]));
                while self.ghost.len() > limit {
                    self.ghost.pop_front();
                }
            }
            self.remove(id);
        }

        fn remove(&mut self, id: EntryId) {
            self.small.retain(|&e| e != id);
            self.main.retain(|&e| e != id);
            self.freq.remove(&id);
            self.hash.remove(&id);
        }

        fn clear(&mut self) {
            *self = Self::new(self.fraction, self.ratio);
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A new entry with this hash fragment.
        Insert(u32),
        /// A new entry into a "full" shard: evict until fewer than `cap` entries remain first.
        InsertBounded { hash: u32, cap: usize },
        /// A hit on the n-th live entry (modulo).
        Access(usize),
        /// An update of the n-th live entry.
        Update(usize),
        /// An explicit removal (or expiry) of the n-th live entry.
        Remove(usize),
        /// One eviction.
        Evict,
        /// Everything goes.
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct fragments, so newcomers often meet the ghost and collide.
        let hash = 0u32..12;
        prop_oneof![
            3 => hash.clone().prop_map(Op::Insert),
            6 => (hash, 1usize..12).prop_map(|(hash, cap)| Op::InsertBounded { hash, cap }),
            6 => any::<usize>().prop_map(Op::Access),
            1 => any::<usize>().prop_map(Op::Update),
            2 => any::<usize>().prop_map(Op::Remove),
            2 => Just(Op::Evict),
            1 => Just(Op::Clear),
        ]
    }

    fn nth(entries: &Slots, n: usize) -> Option<EntryId> {
        let ids = live_ids(entries);
        (!ids.is_empty()).then(|| ids[n % ids.len()])
    }

    /// One eviction on both sides; the decisions must agree.
    fn evict(p: &mut S3Fifo, m: &mut Model, entries: &mut Slots) -> Result<(), TestCaseError> {
        let got = p.victim(0, entries);
        let want = m.victim();
        prop_assert_eq!(got, want, "victim");
        p.validate(entries).map_err(TestCaseError::fail)?;
        if let Some(id) = got {
            p.on_remove(id, entries);
            m.evict(id);
            entries.remove(id);
        }
        Ok(())
    }

    fn check_same(p: &S3Fifo, m: &Model, entries: &Slots) -> Result<(), TestCaseError> {
        p.validate(entries).map_err(TestCaseError::fail)?;
        let (small, main) = p.order(entries);
        prop_assert_eq!(&small, &Vec::from(m.small.clone()), "S order");
        prop_assert_eq!(&main, &Vec::from(m.main.clone()), "M order");
        for id in entries.ids() {
            prop_assert_eq!(entries.mark(id), m.freq[&id], "counter of {:?}", id);
        }
        for h in 0..12 {
            prop_assert_eq!(
                p.ghost.contains(h),
                m.ghost.contains(&Some(h)),
                "ghost membership of {}",
                h
            );
        }
        prop_assert!(p.ghost.len() <= p.ghost.limit());
        prop_assert_eq!(p.ghost.len(), m.ghost.len(), "ghost window");
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn matches_the_reference_model(
            fraction in prop_oneof![Just(0.1), Just(0.25), Just(0.5), 0.01f64..0.99],
            ratio in prop_oneof![Just(1.0), Just(0.0), Just(0.5), Just(2.0)],
            ops in prop::collection::vec(op(), 1..300),
        ) {
            let mut p = S3Fifo::new().small_fraction(fraction).ghost_ratio(ratio);
            let mut m = Model::new(fraction, ratio);
            let mut entries = Slots::new();
            for op in ops {
                match op {
                    Op::Insert(hash) => {
                        let id = entries.insert(Simulated::new(hash, 1));
                        p.on_insert(id, &mut entries);
                        m.insert(id, hash);
                    }
                    Op::InsertBounded { hash, cap } => {
                        while entries.len() >= cap {
                            evict(&mut p, &mut m, &mut entries)?;
                        }
                        let id = entries.insert(Simulated::new(hash, 1));
                        p.on_insert(id, &mut entries);
                        m.insert(id, hash);
                    }
                    Op::Access(n) => {
                        if let Some(id) = nth(&entries, n) {
                            p.on_access(id, &mut entries);
                            m.access(id);
                        }
                    }
                    Op::Update(n) => {
                        if let Some(id) = nth(&entries, n) {
                            p.on_update(id, 1, &mut entries);
                            m.access(id);
                        }
                    }
                    Op::Remove(n) => {
                        if let Some(id) = nth(&entries, n) {
                            p.on_remove(id, &mut entries);
                            m.remove(id);
                            entries.remove(id);
                        }
                    }
                    Op::Evict => evict(&mut p, &mut m, &mut entries)?,
                    Op::Clear => {
                        p.clear();
                        m.clear();
                        entries.drain().for_each(drop);
                    }
                }
                check_same(&p, &m, &entries)?;
            }
            // Drain: every entry comes out, in the model's order.
            while !entries.is_empty() {
                evict(&mut p, &mut m, &mut entries)?;
                check_same(&p, &m, &entries)?;
            }
            prop_assert_eq!(p.victim(0, &mut entries), None);
        }
    }

    #[test]
    fn state_is_twelve_bytes() {
        assert_eq!(size_of::<S3FifoState>(), 12);
    }

    /// Inserts into a shard of capacity 10, evicting first if it is full.
    fn insert(p: &mut S3Fifo, e: &mut Slots, hash: u32) -> EntryId {
        if e.len() == 10 {
            let v = p.victim(0, e).unwrap();
            p.on_remove(v, e);
            e.remove(v);
            p.validate(e).unwrap();
        }
        let id = e.insert(Simulated::new(hash, 1));
        p.on_insert(id, e);
        p.validate(e).unwrap();
        id
    }

    /// A hand-checked trace of the paper's behaviour, capacity 10 (S target 1, ghost 9).
    #[test]
    fn hand_trace() {
        let mut p = S3Fifo::new();
        let mut e = Slots::new();
        let ids: Vec<EntryId> = (0..10).map(|h| insert(&mut p, &mut e, h)).collect();
        // 0 hit twice (promoted at eviction), 1 hit once (not enough), 2 never.
        p.on_access(ids[0], &mut e);
        p.on_access(ids[0], &mut e);
        p.on_access(ids[1], &mut e);
        // Room for 10: S holds all 10 >= target 1. 0 moves to M, 1 is evicted from S.
        let v = p.victim(0, &mut e).unwrap();
        assert_eq!(v, ids[1]);
        p.on_remove(v, &mut e);
        e.remove(v);
        assert!(p.ghost.contains(1));
        let (small, main) = p.order(&e);
        assert_eq!(main, [ids[0]]);
        assert_eq!(small.len(), 8);
        // 1 comes back: the ghost sends it to M, and consumes the record.
        let back = e.insert(Simulated::new(1, 1));
        p.on_insert(back, &mut e);
        assert!(!p.ghost.contains(1));
        assert_eq!(p.order(&e).1, [ids[0], back]);
        p.validate(&e).unwrap();
        // An explicit removal from M records no ghost.
        p.on_remove(back, &mut e);
        e.remove(back);
        assert!(!p.ghost.contains(1));
        // Fill with one-hit wonders: S keeps evicting, 0 stays in M with a zero counter.
        for h in 100..200 {
            insert(&mut p, &mut e, h);
        }
        assert_eq!(p.order(&e).1, [ids[0]]);
        assert_eq!(p.ghost.len(), 9);
    }
}
