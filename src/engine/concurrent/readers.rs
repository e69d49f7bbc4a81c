//! Read sections without a lock: per-shard reader stripes, and the grace period a writer waits
//! for before it frees what it unlinked.
//!
//! A lookup *enters* its shard: it picks the stripe of its thread and bumps that stripe's
//! `enters` counter of the current *phase*; leaving bumps `exits`. A thread holds a *reader
//! slot* from its first lookup until it exits (slots are reused, lowest first): the first
//! stripes of every shard each belong to one slot, so their owner leaves a section and counts
//! a miss with a plain store instead of a locked increment. Threads past those slots (more
//! threads reading at once than the shard has own stripes) share the remaining stripes, with
//! atomic increments. Everything a lookup
//! touches besides the entry it reads (the hit counters, the ring of recorded hits) lives in the
//! same stripe, so a hit writes no cache line that another thread's hits write.
//!
//! A writer (one at a time: it holds the shard's lock) unlinks entries from the table and then
//! calls [`Readers::synchronize`] before it frees, drops or reuses anything it unlinked. That is
//! a sleepable-RCU grace period with two phases:
//!
//! 1. If every stripe is *quiet* (no reader inside, in either phase) the wait is over at once:
//!    a reader that enters later sees the unlink.
//! 2. Otherwise the writer flips the phase, so that new readers count in the other phase, and
//!    waits until the old phase's counters of every stripe are quiet. A reader that read the
//!    old phase but entered after the writer looked sees the flip on its re-check and enters
//!    again in the new phase before it reads anything.
//!
//! The argument rests on one total order of sequentially consistent operations: the writer's
//! unlink (a `SeqCst` store or swap) and its counter loads against the reader's counter
//! increment and its table loads (`SeqCst` too; a plain `mov` on x86). Either the reader's increment comes first
//! and the writer sees it, or the reader's table loads come after the unlink and see it.
//! `tests/shuttle.rs` explores the protocol's schedules.
//!
//! Why not crossbeam-epoch, the usual choice: its reclamation is deferred to some later pin of
//! some thread, so an evicted value would be dropped, and announced to the eviction listener,
//! at an unknown time and on an unknown thread (and `K` and `V` would have to be `'static`).
//! Here the writer that removes an entry hands it back before it returns, as the locked engine
//! always did: the drop-counting and panic-safety suites keep their exact counts. The cost is a
//! wait in writers that remove while readers are inside the shard; readers never wait.

use crate::policy::EntryId;
use crate::shim::{AtomicU32, AtomicU64, AtomicUsize, Ordering, thread_local, yield_now};

/// Hits a stripe records before its reader tries to replay them into the policy.
pub(crate) const RING: usize = 64;

/// Spins a writer waits for a busy stripe to empty before it flips the phase.
const QUIET_SPINS: u32 = 32;

/// One reader stripe: the counters' cache line and the ring's four, which only the threads
/// mapped to the stripe write.
#[repr(C, align(128))]
pub(crate) struct Stripe {
    enters: [AtomicU64; 2],
    exits: [AtomicU64; 2],
    /// Lookups that missed (or found an expired entry).
    misses: AtomicU64,
    /// Read sections that were not lookups (`peek`, `contains_key`): neither hit nor miss.
    uncounted: AtomicU64,
    /// Hits recorded so far (wrapping); the next goes to `ring[pos % RING]`. A plain load and
    /// store, not an increment: two threads sharing a stripe may overwrite each other's record,
    /// which a lossy buffer allows.
    pos: AtomicU32,
    /// `id + 1` of a recorded hit; 0 is empty.
    ring: [AtomicU32; RING],
}

impl Stripe {
    fn new() -> Self {
        Self {
            enters: [AtomicU64::new(0), AtomicU64::new(0)],
            exits: [AtomicU64::new(0), AtomicU64::new(0)],
            misses: AtomicU64::new(0),
            uncounted: AtomicU64::new(0),
            pos: AtomicU32::new(0),
            ring: [const { AtomicU32::new(0) }; RING],
        }
    }

    /// Whether no reader is inside phase `p` at one instant: `exits` is read first, so equal
    /// counts mean nobody was inside when `enters` was read.
    #[inline]
    fn quiet(&self, p: usize) -> bool {
        let exits = self.exits[p].load(Ordering::SeqCst);
        self.enters[p].load(Ordering::SeqCst) == exits
    }
}

/// Adds one to a stripe counter: a plain load and store for the stripe's `owner` (no other
/// thread writes it), an atomic increment on a shared stripe. `Release` either way: the
/// section's reads happen before a writer that sees the new count.
#[inline]
fn bump(counter: &AtomicU64, owner: bool) {
    if owner {
        counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Release);
    } else {
        counter.fetch_add(1, Ordering::Release);
    }
}

/// The reader stripes of one shard and its phase.
pub(crate) struct Readers {
    /// Bumped by every grace period that had to wait; readers count in phase `phase & 1`.
    /// In its own line with the policy's stamp: readers only read them.
    phase: Phase,
    /// `owned` stripes, one per reader slot below `owned`, then the shared ones.
    stripes: Box<[Stripe]>,
    owned: usize,
}

#[repr(align(128))]
struct Phase(AtomicUsize, AtomicU32);

/// [`thread_index`] before the thread's first lookup.
const UNSET: usize = usize::MAX;
/// [`thread_index`] of a thread whose slot was already given back (a thread-local destructor
/// that reads a cache while its thread exits): it reads through a shared stripe.
const RELEASED: usize = usize::MAX - 1;

/// The reader slots in use; a new reader takes the lowest free one, so the slots of a process
/// stay as few as the threads that read at once.
static SLOTS: std::sync::Mutex<Slots> = std::sync::Mutex::new(Slots {
    next: 0,
    free: std::collections::BinaryHeap::new(),
});

struct Slots {
    next: usize,
    free: std::collections::BinaryHeap<std::cmp::Reverse<usize>>,
}

fn slots() -> std::sync::MutexGuard<'static, Slots> {
    // Nothing panics while the lock is held.
    SLOTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Holds its thread's reader slot, and gives it back when the thread exits.
struct Slot(usize);

impl Slots {
    /// The lowest free slot.
    fn claim(&mut self) -> usize {
        match self.free.pop() {
            Some(std::cmp::Reverse(i)) => i,
            None => {
                self.next += 1;
                self.next - 1
            }
        }
    }

    fn release(&mut self, slot: usize) {
        self.free.push(std::cmp::Reverse(slot));
    }
}

impl Slot {
    fn claim() -> Self {
        Self(slots().claim())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The thread has left every read section: it is exiting. The next owner takes the
        // slot through the lock, after this thread's last counter stores.
        let _ = INDEX.try_with(|c| c.set(RELEASED));
        slots().release(self.0);
    }
}

thread_local! {
    /// A copy of the thread's slot: constant-initialized and without a destructor, so the
    /// common path is one thread-local load, valid until the thread's last instruction.
    static INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(UNSET) };
    /// The owner of the slot, whose destructor gives it back.
    static SLOT: Slot = Slot::claim();
}

/// The thread's reader slot (or [`RELEASED`]).
#[inline]
fn thread_index() -> usize {
    // `try_with` for shuttle, whose thread-locals all have destructors; std's constant one
    // without a destructor is never gone, and the check compiles away.
    let i = INDEX.try_with(std::cell::Cell::get).unwrap_or(RELEASED);
    if i != UNSET {
        return i;
    }
    first_index()
}

#[cold]
fn first_index() -> usize {
    let i = SLOT.try_with(|slot| slot.0).unwrap_or(RELEASED);
    let _ = INDEX.try_with(|c| c.set(i));
    i
}

/// The count of owned stripes for a shard: twice the available parallelism, a power of two
/// from 2 to 32.
pub(crate) fn default_stripes() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (2 * cores).next_power_of_two().clamp(2, 32)
}

impl Readers {
    /// `owned` stripes for the first reader slots (rounded up to a power of two), and a
    /// quarter as many (at least one) shared by the threads past them.
    pub(crate) fn new(owned: usize) -> Self {
        let owned = owned.max(1).next_power_of_two();
        let shared = (owned / 4).max(1);
        Self {
            phase: Phase(AtomicUsize::new(0), AtomicU32::new(0)),
            stripes: (0..owned + shared).map(|_| Stripe::new()).collect(),
            owned,
        }
    }

    /// The policy's stamp ([`HitAccess::Stamp`](crate::policy::HitAccess::Stamp)); 0: none.
    #[inline]
    pub(crate) fn stamp(&self) -> u8 {
        self.phase.1.load(Ordering::Relaxed) as u8
    }

    /// Sets the stamp (the shard's writer).
    pub(crate) fn set_stamp(&self, stamp: u8) {
        self.phase.1.store(u32::from(stamp), Ordering::Relaxed);
    }

    /// Starts a read section: until the guard drops, nothing the shard's table reached can be
    /// freed. Never blocks.
    ///
    /// Inlined into every lookup: the common case (a thread with its own stripe, no phase flip
    /// meanwhile) is a thread-local load, two loads of the phase and one locked increment.
    #[inline(always)]
    pub(crate) fn enter(&self) -> ReadGuard<'_> {
        let slot = thread_index();
        if slot < self.owned {
            if let Some(guard) = self.try_enter(&self.stripes[slot], true) {
                return guard;
            }
        }
        self.enter_slow(slot)
    }

    /// [`enter`](Self::enter) for a thread past the owned stripes, or after a phase flip.
    #[cold]
    #[inline(never)]
    fn enter_slow(&self, slot: usize) -> ReadGuard<'_> {
        let owner = slot < self.owned;
        let stripe = if owner {
            &self.stripes[slot]
        } else {
            let shared = self.stripes.len() - self.owned;
            &self.stripes[self.owned + slot % shared]
        };
        loop {
            if let Some(guard) = self.try_enter(stripe, owner) {
                return guard;
            }
        }
    }

    /// One attempt to enter through `stripe` in the current phase; `None` (having left again)
    /// if a writer flipped the phase meanwhile.
    #[inline(always)]
    fn try_enter<'a>(&'a self, stripe: &'a Stripe, owner: bool) -> Option<ReadGuard<'a>> {
        let p = self.phase.0.load(Ordering::SeqCst) & 1;
        // Atomic even for the owner: the increment must be ordered before the table loads that
        // follow (a store would need a full fence, which costs as much).
        stripe.enters[p].fetch_add(1, Ordering::SeqCst);
        if self.phase.0.load(Ordering::SeqCst) & 1 == p {
            return Some(ReadGuard {
                stripe,
                parity: p,
                owner,
            });
        }
        bump(&stripe.exits[p], owner);
        bump(&stripe.uncounted, owner);
        None
    }

    /// Waits until no read section that may have seen what the caller unlinked before this call
    /// is still running. The caller must be the shard's only writer (it holds the shard's
    /// lock) and must not be inside a read section of this shard itself.
    pub(crate) fn synchronize(&self) {
        // No fence: the writer's unlinks are `SeqCst` stores or swaps, and every load below is
        // `SeqCst`, so they are ordered in the single total order with the readers' `SeqCst`
        // increments and bucket loads; that is all the argument in the module docs needs.
        //
        // First, without flipping (a flip costs every reader of the shard a cache miss on the
        // phase): a stripe seen with no reader inside either phase, phase 0 then phase 1, holds
        // no reader that entered before the unlink. Readers leave within a few spins; only a
        // stripe that stays busy (readers entering back to back) needs the flip.
        //
        // The common case, one pass with no spinning: every stripe quiet in both phases.
        if self.stripes.iter().all(|s| s.quiet(0) && s.quiet(1)) {
            return;
        }
        let mut busy = None;
        for (i, stripe) in self.stripes.iter().enumerate() {
            let mut spins = 0u32;
            while !(stripe.quiet(0) && stripe.quiet(1)) {
                spins += 1;
                if spins > QUIET_SPINS {
                    break;
                }
                std::hint::spin_loop();
            }
            if spins > QUIET_SPINS {
                busy = Some(i);
                break;
            }
        }
        let Some(first_busy) = busy else {
            return;
        };
        let old = self.phase.0.fetch_add(1, Ordering::SeqCst) & 1;
        for stripe in &self.stripes[first_busy..] {
            let mut spins = 0u32;
            while !stripe.quiet(old) {
                spins += 1;
                if spins < 64 {
                    std::hint::spin_loop();
                } else {
                    yield_now();
                }
            }
        }
    }

    /// Lookups that found a live entry, over all stripes (exact once no read section runs).
    pub(crate) fn hits(&self) -> u64 {
        let mut n = 0u64;
        for s in self.stripes.iter() {
            // Misses and uncounted reads are counted before their section exits: read them
            // last so a section in flight is never counted as a hit.
            let exits = s.exits[0].load(Ordering::Acquire) + s.exits[1].load(Ordering::Acquire);
            let other = s.misses.load(Ordering::Acquire) + s.uncounted.load(Ordering::Acquire);
            n += exits.saturating_sub(other);
        }
        n
    }

    /// Read sections that were not lookups, over all stripes.
    #[cfg(all(test, not(aside_shuttle)))]
    pub(crate) fn uncounted(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.uncounted.load(Ordering::Acquire))
            .sum()
    }

    /// Lookups that missed, over all stripes.
    pub(crate) fn misses(&self) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.misses.load(Ordering::Relaxed))
            .sum()
    }

    /// Replays the recorded hits into `apply`, stripe by stripe, oldest first; `cursors` (one
    /// per stripe, kept by the shard's writer side) remembers how far each ring was read.
    /// Called by the shard's only writer. A record a reader is still storing may be read as
    /// the ring's older content or missed until the next drain: `apply` must check that an id
    /// is live.
    pub(crate) fn drain(&self, cursors: &mut Vec<u32>, mut apply: impl FnMut(EntryId)) {
        cursors.resize(self.stripes.len(), 0);
        for (stripe, cursor) in self.stripes.iter().zip(cursors.iter_mut()) {
            let pos = stripe.pos.load(Ordering::Acquire);
            let pending = pos.wrapping_sub(*cursor).min(RING as u32);
            for k in pos.wrapping_sub(pending)..pos {
                let slot = &stripe.ring[k as usize % RING];
                if let Some(id) = EntryId::from_encoded(slot.load(Ordering::Relaxed)) {
                    slot.store(0, Ordering::Relaxed);
                    apply(id);
                }
            }
            *cursor = pos;
        }
    }

    /// Recorded hits not yet drained. Not an invariant check: readers record while a writer
    /// validates.
    #[cfg(test)]
    pub(crate) fn pending(&self, cursors: &[u32]) -> usize {
        self.stripes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let cursor = cursors.get(i).copied().unwrap_or(0);
                s.pos
                    .load(Ordering::Relaxed)
                    .wrapping_sub(cursor)
                    .min(RING as u32) as usize
            })
            .sum()
    }

    /// Bytes the stripes take.
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.stripes.len() * size_of::<Stripe>()
    }
}

/// A read section of one shard; see [`Readers::enter`]. Counts as a hit when it drops, unless
/// [`miss`](Self::miss) or [`uncounted`](Self::uncounted) said otherwise.
pub(crate) struct ReadGuard<'a> {
    stripe: &'a Stripe,
    /// The phase the section counts in (its `enters` and `exits`).
    parity: usize,
    /// The stripe is this thread's own.
    owner: bool,
}

impl ReadGuard<'_> {
    /// This section is a lookup that missed.
    #[inline]
    pub(crate) fn miss(&self) {
        bump(&self.stripe.misses, self.owner);
    }

    /// This section is not a lookup (`peek`, `contains_key`).
    #[inline]
    pub(crate) fn uncounted(&self) {
        bump(&self.stripe.uncounted, self.owner);
    }

    /// Records a hit on `id` for the policy. Returns `true` when the stripe's ring just filled:
    /// the caller should then try to replay the rings (after leaving the section).
    #[inline]
    pub(crate) fn record(&self, id: EntryId) -> bool {
        self.record_if(id, true)
    }

    /// [`record`](Self::record) if `take`, without a branch on it: the slot is written either
    /// way and taken only if `take`. An untaken write lands on the slot the next record takes,
    /// which holds a record already replayed unless the ring overflowed (then that oldest
    /// record is lost, as it would be to the next record, and the untaken id is replayed in
    /// its place: only for [`HitAccess::Stamp`](crate::policy::HitAccess::Stamp) policies,
    /// whose `on_access` ignores a stamped entry's hit).
    #[inline]
    pub(crate) fn record_if(&self, id: EntryId, take: bool) -> bool {
        let pos = self.stripe.pos.load(Ordering::Relaxed);
        self.stripe.ring[pos as usize % RING].store(id.encoded(), Ordering::Relaxed);
        let next = pos.wrapping_add(u32::from(take));
        self.stripe.pos.store(next, Ordering::Release);
        take & ((next as usize) % RING == 0)
    }
}

impl Drop for ReadGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // `& 1`: the parity is a phase bit; the mask spares the bounds check.
        bump(&self.stripe.exits[self.parity & 1], self.owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_hits_misses_and_uncounted_sections() {
        let r = Readers::new(4);
        drop(r.enter());
        r.enter().miss();
        r.enter().uncounted();
        drop(r.enter());
        assert_eq!((r.hits(), r.misses()), (2, 1));
    }

    /// Threads reading at once hold different slots, so an owned stripe has one writer; with
    /// few owned stripes the other threads share, and every count stays exact either way.
    #[test]
    fn owned_and_shared_stripes_count_every_section() {
        const THREADS: usize = 4;
        // Miri runs every access through its checker: fewer rounds there.
        const ROUNDS: u64 = if cfg!(miri) { 200 } else { 20_000 };
        for owned in [1, 64] {
            let r = Readers::new(owned);
            let barrier = std::sync::Barrier::new(THREADS);
            let slots: Vec<usize> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..THREADS)
                    .map(|_| {
                        s.spawn(|| {
                            barrier.wait();
                            for i in 0..ROUNDS {
                                let g = r.enter();
                                if i % 4 == 0 {
                                    g.miss();
                                }
                            }
                            let slot = thread_index();
                            // All alive until each has read its slot.
                            barrier.wait();
                            slot
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let mut distinct = slots.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), THREADS, "slots {slots:?}");
            let total = THREADS as u64 * ROUNDS;
            assert_eq!((r.hits(), r.misses()), (total - total / 4, total / 4));
        }
    }

    #[test]
    fn slots_are_claimed_lowest_free_first() {
        let mut slots = Slots {
            next: 0,
            free: std::collections::BinaryHeap::new(),
        };
        assert_eq!([slots.claim(), slots.claim(), slots.claim()], [0, 1, 2]);
        slots.release(2);
        slots.release(0);
        assert_eq!([slots.claim(), slots.claim(), slots.claim()], [0, 2, 3]);
    }

    /// A thread's slot goes back to the pool when it exits. Other tests' threads take and give
    /// back slots meanwhile, so this only counts: the pool's slots in use do not grow by one
    /// per thread that came and went.
    #[test]
    fn exited_threads_give_their_slots_back() {
        for _ in 0..64 {
            std::thread::spawn(|| assert!(thread_index() < RELEASED))
                .join()
                .unwrap();
        }
        let s = slots();
        let in_use = s.next - s.free.len();
        // At most the test harness's threads and this one; not the 64 that exited.
        assert!(in_use < 48, "{in_use} slots in use after 64 threads exited");
    }

    #[test]
    fn synchronize_returns_at_once_when_quiet_and_flips_when_not() {
        let r = Readers::new(2);
        r.synchronize();
        assert_eq!(r.phase.0.load(Ordering::Relaxed), 0);
        let g = r.enter();
        std::thread::scope(|s| {
            let h = s.spawn(|| r.synchronize());
            // The writer finds the stripe busy, flips the phase, and then waits for the reader
            // inside: no sleep decides this, the flip is awaited.
            while r.phase.0.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            assert!(
                !h.is_finished(),
                "a grace period waits for the reader inside"
            );
            drop(g);
            h.join().unwrap();
        });
        assert_eq!(r.phase.0.load(Ordering::Relaxed), 1);
        // Sections entered after the flip do not hold up the next grace period's old phase.
        let g = r.enter();
        assert_eq!(g.parity, 1);
        drop(g);
        r.synchronize();
    }

    #[test]
    fn record_if_takes_only_the_taken_hits() {
        let r = Readers::new(1);
        let mut cursors = Vec::new();
        let g = r.enter();
        // Untaken writes land on the next free slot, which the next record overwrites.
        let filled: Vec<bool> = (0..2 * RING as u32 - 1)
            .map(|i| g.record_if(EntryId::new(i), i % 2 == 0))
            .collect();
        assert_eq!(
            filled.iter().filter(|&&f| f).count(),
            1,
            "the ring filled once"
        );
        assert!(filled[2 * RING - 2], "on the 64th taken hit");
        let mut seen = Vec::new();
        r.drain(&mut cursors, |id| seen.push(id.raw()));
        assert_eq!(seen, (0..2 * RING as u32).step_by(2).collect::<Vec<_>>());
        // After a drain, an untaken write lands on a replayed slot: nothing more to replay.
        assert!(!g.record_if(EntryId::new(7), false));
        drop(g);
        r.drain(&mut cursors, |_| panic!("an untaken hit was replayed"));
    }

    #[test]
    fn the_ring_keeps_order_and_drops_the_oldest_when_full() {
        let r = Readers::new(1);
        let mut cursors = Vec::new();
        let g = r.enter();
        let full: Vec<bool> = (0..RING as u32 + 3)
            .map(|i| g.record(EntryId::new(i)))
            .collect();
        drop(g);
        assert_eq!(full.iter().filter(|&&f| f).count(), 1);
        assert!(full[RING - 1]);
        assert_eq!(r.pending(&cursors), RING);
        let mut seen = Vec::new();
        r.drain(&mut cursors, |id| seen.push(id.raw()));
        assert_eq!(seen, (3..RING as u32 + 3).collect::<Vec<_>>());
        assert_eq!(r.pending(&cursors), 0);
        r.drain(&mut cursors, |_| panic!("drained twice"));
    }
}

/// The grace period under shuttle (`--cfg aside_shuttle`, `.ci/reliability`): every atomic is a
/// point where shuttle may switch threads.
#[cfg(all(test, aside_shuttle))]
mod shuttle_tests {
    use std::sync::Arc;

    use shuttle::scheduler::PctScheduler;
    use shuttle::{Config, Runner};

    use super::*;

    /// Two readers read the published generation and use it after a yield; the writer
    /// publishes the next one, waits out a grace period and marks the previous one freed. A
    /// reader must never use a freed generation, including one whose section began before a
    /// flip and whose increment landed after it (the re-check in `enter`), which takes two
    /// grace periods and a reader held inside to set up.
    fn grace_periods(owned: usize) {
        let readers = Arc::new(Readers::new(owned));
        let published = Arc::new(AtomicUsize::new(1));
        let freed = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (readers, published, freed) = (
                    Arc::clone(&readers),
                    Arc::clone(&published),
                    Arc::clone(&freed),
                );
                shuttle::thread::spawn(move || {
                    for _ in 0..2 {
                        let guard = readers.enter();
                        let generation = published.load(Ordering::SeqCst);
                        shuttle::thread::yield_now();
                        assert!(
                            freed.load(Ordering::SeqCst) < generation,
                            "generation {generation} used after it was freed"
                        );
                        drop(guard);
                    }
                })
            })
            .collect();
        for generation in 1..=3 {
            published.store(generation + 1, Ordering::SeqCst);
            readers.synchronize();
            freed.store(generation, Ordering::SeqCst);
        }
        for t in threads {
            t.join().unwrap();
        }
    }

    /// 20,000 PCT schedules at least (`ASIDE_SHUTTLE_ITERS` may ask for more): removing the
    /// re-check in `enter` fails within 20,000, not within 1,000.
    #[test]
    fn no_reader_uses_what_a_grace_period_freed() {
        let iters = std::env::var("ASIDE_SHUTTLE_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0usize)
            .max(20_000);
        // Two owned stripes: each reader has its own (slots are given back as shuttle's
        // threads exit). One: the second reader shares a stripe with whoever comes next.
        for owned in [2, 1] {
            Runner::new(PctScheduler::new_from_seed(11, 3, iters), Config::new())
                .run(move || grace_periods(owned));
            shuttle::check_random(move || grace_periods(owned), 2_000);
        }
    }
}
