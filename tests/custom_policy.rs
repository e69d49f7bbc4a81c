//! Eviction policies written outside the crate, using only `aside::policy`'s public items:
//! an MRU list (buffered exclusive hits), a CLOCK / second-chance queue (shared hits on an
//! atomic reference bit, then on the entry's mark), a policy that records an entry's hits
//! until it marks the entry (`MarkOrRecord`) and a FIFO behind a doorkeeper admission filter.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aside::policy::{Entries, EntryId, EvictionPolicy, HitAccess, ShardContext};
use aside::{Cache, RemovalCause};

type Log = Arc<Mutex<Vec<(u32, RemovalCause)>>>;

fn listener(log: &Log) -> impl Fn(&u32, &u32, RemovalCause) + Send + Sync + 'static {
    let log = Arc::clone(log);
    move |k, _v, cause| log.lock().unwrap().push((*k, cause))
}

fn take(log: &Log) -> Vec<(u32, RemovalCause)> {
    std::mem::take(&mut *log.lock().unwrap())
}

// ----- MRU: an intrusive doubly linked list, hits replayed under the exclusive lock -----

#[derive(Default)]
struct MruLinks {
    prev: Option<EntryId>,
    next: Option<EntryId>,
}

/// Most recently used goes first. Head = most recent.
#[derive(Clone, Default)]
struct Mru {
    head: Option<EntryId>,
    tail: Option<EntryId>,
    len: usize,
    capacity: u64,
    accesses: Arc<AtomicUsize>,
    contexts: Arc<Mutex<Vec<(usize, u64)>>>,
}

impl Mru {
    fn push_front(&mut self, id: EntryId, entries: &mut impl Entries<MruLinks>) {
        let old = self.head;
        *entries.state_mut(id) = MruLinks {
            prev: None,
            next: old,
        };
        match old {
            Some(h) => entries.state_mut(h).prev = Some(id),
            None => self.tail = Some(id),
        }
        self.head = Some(id);
        self.len += 1;
    }

    fn unlink(&mut self, id: EntryId, entries: &mut impl Entries<MruLinks>) {
        let (prev, next) = {
            let s = entries.state(id);
            (s.prev, s.next)
        };
        match prev {
            Some(p) => entries.state_mut(p).next = next,
            None => self.head = next,
        }
        match next {
            Some(n) => entries.state_mut(n).prev = prev,
            None => self.tail = prev,
        }
        *entries.state_mut(id) = MruLinks::default();
        self.len -= 1;
    }
}

impl EvictionPolicy for Mru {
    type State = MruLinks;
    const HIT: HitAccess = HitAccess::Exclusive;

    fn configure(&mut self, shard: &ShardContext) {
        self.capacity = shard.capacity;
        self.contexts
            .lock()
            .unwrap()
            .push((shard.index, shard.capacity));
    }

    fn on_insert(&mut self, id: EntryId, entries: &mut impl Entries<MruLinks>) {
        self.push_front(id, entries);
    }

    fn on_access(&mut self, id: EntryId, entries: &mut impl Entries<MruLinks>) {
        self.accesses.fetch_add(1, Ordering::Relaxed);
        if self.head != Some(id) {
            self.unlink(id, entries);
            self.push_front(id, entries);
        }
    }

    fn on_remove(&mut self, id: EntryId, entries: &mut impl Entries<MruLinks>) {
        self.unlink(id, entries);
    }

    fn victim(&mut self, _: u32, _: &mut impl Entries<MruLinks>) -> Option<EntryId> {
        self.head
    }

    fn clear(&mut self) {
        self.head = None;
        self.tail = None;
        self.len = 0;
    }

    fn validate(&self, entries: &impl Entries<MruLinks>) -> Result<(), String> {
        if self.len != entries.len() {
            return Err(format!("list {} vs shard {}", self.len, entries.len()));
        }
        if entries.len() as u64 > self.capacity {
            return Err(format!(
                "{} entries over capacity {}",
                entries.len(),
                self.capacity
            ));
        }
        let mut seen = HashSet::new();
        let mut prev = None;
        let mut cur = self.head;
        while let Some(id) = cur {
            if !entries.contains(id) {
                return Err(format!("list links vacant {id:?}"));
            }
            if !seen.insert(id) {
                return Err(format!("cycle at {id:?}"));
            }
            if entries.state(id).prev != prev {
                return Err(format!("{id:?}.prev broken"));
            }
            prev = cur;
            cur = entries.state(id).next;
        }
        if prev != self.tail {
            return Err("tail mismatch".into());
        }
        if entries.ids().any(|id| !seen.contains(&id)) {
            return Err("a live entry is not linked".into());
        }
        Ok(())
    }
}

fn mru_cache(capacity: u64, log: &Log) -> (Cache<u32, u32, Mru>, Mru) {
    let policy = Mru::default();
    let cache = Cache::builder()
        .max_capacity(capacity)
        .shards(1)
        .policy(policy.clone())
        .eviction_listener(listener(log))
        .build()
        .unwrap();
    (cache, policy)
}

#[test]
fn mru_evicts_the_most_recently_used() {
    let log = Log::default();
    let (cache, _) = mru_cache(3, &log);
    cache.insert(1, 1);
    cache.insert(2, 2);
    cache.insert(3, 3);
    assert_eq!(cache.get(&1), Some(1)); // 1 is now the most recent
    cache.insert(4, 4);
    assert_eq!(take(&log), vec![(1, RemovalCause::Capacity)]);
    cache.validate().unwrap();

    assert_eq!(cache.get(&2), Some(2));
    cache.insert(5, 5);
    assert_eq!(take(&log), vec![(2, RemovalCause::Capacity)]);

    // An insert makes the newcomer the most recent.
    cache.insert(6, 6);
    assert_eq!(take(&log), vec![(5, RemovalCause::Capacity)]);

    // A replacement counts as a use (the default `on_update` calls `on_access`).
    cache.insert(3, 33);
    cache.insert(7, 7);
    assert_eq!(
        take(&log),
        vec![(3, RemovalCause::Replaced), (3, RemovalCause::Capacity)]
    );
    let mut keys: Vec<_> = cache.iter().map(|(k, _)| k).collect();
    keys.sort_unstable();
    assert_eq!(keys, vec![4, 6, 7]);
    cache.validate().unwrap();
}

#[test]
fn mru_peek_is_not_a_use() {
    let log = Log::default();
    let (cache, policy) = mru_cache(2, &log);
    cache.insert(1, 1);
    cache.insert(2, 2);
    assert_eq!(cache.peek(&1), Some(1));
    assert!(cache.contains_key(&1));
    cache.insert(3, 3); // 2 is still the most recent
    assert_eq!(take(&log), vec![(2, RemovalCause::Capacity)]);
    cache.validate().unwrap();
    assert_eq!(policy.accesses.load(Ordering::Relaxed), 0);
}

#[test]
fn exclusive_hits_from_one_thread_are_all_replayed() {
    let log = Log::default();
    let (cache, policy) = mru_cache(10, &log);
    for k in 0..10 {
        cache.insert(k, k);
    }
    for i in 0..1000 {
        assert_eq!(cache.get(&(i % 10)), Some(i % 10));
    }
    cache.validate().unwrap(); // drains the access buffer
    assert_eq!(policy.accesses.load(Ordering::Relaxed), 1000);
    // The last hit was on 9, so 9 goes first.
    cache.insert(10, 10);
    assert_eq!(take(&log), vec![(9, RemovalCause::Capacity)]);
    cache.validate().unwrap();
}

#[test]
fn configure_sees_each_shard_and_its_share_of_the_capacity() {
    let policy = Mru::default();
    let cache: Cache<u32, u32, Mru> = Cache::builder()
        .max_capacity(10)
        .shards(4)
        .policy(policy.clone())
        .build()
        .unwrap();
    let mut contexts = policy.contexts.lock().unwrap().clone();
    contexts.sort_unstable();
    assert_eq!(contexts, vec![(0, 3), (1, 3), (2, 2), (3, 2)]);
    for k in 0..100 {
        cache.insert(k, k);
        assert!(cache.len() <= 10);
    }
    cache.validate().unwrap();
}

// ----- CLOCK / second chance: a reference bit set under the shared lock -----

#[derive(Default)]
struct RefBit(AtomicU8);

#[derive(Clone, Default)]
struct SecondChance {
    queue: VecDeque<EntryId>,
    shared_hits: Arc<AtomicUsize>,
}

impl EvictionPolicy for SecondChance {
    type State = RefBit;
    const HIT: HitAccess = HitAccess::Shared;

    fn on_insert(&mut self, id: EntryId, entries: &mut impl Entries<RefBit>) {
        entries.state(id).0.store(0, Ordering::Relaxed);
        self.queue.push_back(id);
    }

    fn on_access(&mut self, _: EntryId, _: &mut impl Entries<RefBit>) {
        panic!("a Shared policy never gets exclusive hits");
    }

    fn on_access_shared(&self, state: &RefBit) {
        self.shared_hits.fetch_add(1, Ordering::Relaxed);
        state.0.store(1, Ordering::Relaxed);
    }

    fn on_update(&mut self, id: EntryId, _: u32, entries: &mut impl Entries<RefBit>) {
        entries.state(id).0.store(1, Ordering::Relaxed);
    }

    fn on_remove(&mut self, id: EntryId, _: &mut impl Entries<RefBit>) {
        let at = self.queue.iter().position(|&e| e == id).expect("queued");
        self.queue.remove(at);
    }

    fn victim(&mut self, _: u32, entries: &mut impl Entries<RefBit>) -> Option<EntryId> {
        // At most one full turn clears every bit; the second turn finds a victim.
        for _ in 0..=self.queue.len() {
            let front = *self.queue.front()?;
            if entries.state(front).0.swap(0, Ordering::Relaxed) == 0 {
                return Some(front);
            }
            self.queue.rotate_left(1);
        }
        self.queue.front().copied()
    }

    fn clear(&mut self) {
        self.queue.clear();
    }

    fn validate(&self, entries: &impl Entries<RefBit>) -> Result<(), String> {
        if self.queue.len() != entries.len() {
            return Err(format!(
                "queue {} vs shard {}",
                self.queue.len(),
                entries.len()
            ));
        }
        let unique: HashSet<_> = self.queue.iter().collect();
        if unique.len() != self.queue.len() {
            return Err("duplicate id in queue".into());
        }
        for &id in &self.queue {
            if !entries.contains(id) {
                return Err(format!("queue holds vacant {id:?}"));
            }
            if entries.state(id).0.load(Ordering::Relaxed) > 1 {
                return Err(format!("{id:?} has a bad reference bit"));
            }
        }
        Ok(())
    }
}

fn clock_cache(capacity: u64, log: &Log) -> (Cache<u32, u32, SecondChance>, SecondChance) {
    let policy = SecondChance::default();
    let cache = Cache::builder()
        .max_capacity(capacity)
        .shards(1)
        .policy(policy.clone())
        .eviction_listener(listener(log))
        .build()
        .unwrap();
    (cache, policy)
}

#[test]
fn second_chance_spares_referenced_entries_once() {
    let log = Log::default();
    let (cache, policy) = clock_cache(3, &log);
    cache.insert(1, 1);
    cache.insert(2, 2);
    cache.insert(3, 3);
    assert_eq!(cache.get(&1), Some(1)); // sets 1's bit under the shared lock
    assert_eq!(policy.shared_hits.load(Ordering::Relaxed), 1);

    cache.insert(4, 4); // 1 gets its second chance (moved back, bit cleared); 2 goes
    assert_eq!(take(&log), vec![(2, RemovalCause::Capacity)]);
    cache.insert(5, 5); // queue 3, 1, 4: 3 is unreferenced
    assert_eq!(take(&log), vec![(3, RemovalCause::Capacity)]);
    cache.insert(6, 6); // queue 1, 4, 5: 1's chance was used up
    assert_eq!(take(&log), vec![(1, RemovalCause::Capacity)]);
    cache.validate().unwrap();

    // Every entry referenced: one full turn clears the bits, then the oldest goes.
    for k in [4, 5, 6] {
        cache.get(&k);
    }
    cache.insert(7, 7);
    assert_eq!(take(&log), vec![(4, RemovalCause::Capacity)]);
    assert_eq!(policy.shared_hits.load(Ordering::Relaxed), 4);
    cache.validate().unwrap();
}

#[test]
fn second_chance_peek_sets_no_bit_and_many_readers_share_the_lock() {
    let log = Log::default();
    let (cache, policy) = clock_cache(3, &log);
    cache.insert(1, 1);
    cache.insert(2, 2);
    cache.insert(3, 3);
    assert_eq!(cache.peek(&1), Some(1));
    cache.insert(4, 4);
    assert_eq!(take(&log), vec![(1, RemovalCause::Capacity)]);

    // Concurrent readers all reach `on_access_shared`: nothing is buffered or lost.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1000 {
                    assert_eq!(cache.get(&3), Some(3));
                }
            });
        }
    });
    assert_eq!(policy.shared_hits.load(Ordering::Relaxed), 4000);
    cache.insert(5, 5); // queue 2, 3, 4: 2 unreferenced
    assert_eq!(take(&log), vec![(2, RemovalCause::Capacity)]);
    cache.insert(6, 6); // queue 3(ref), 4, 5: 3 spared, 4 goes
    assert_eq!(take(&log), vec![(4, RemovalCause::Capacity)]);
    cache.validate().unwrap();
}

// ----- CLOCK with the reference bit in the entry's mark: hits take no lock at all -----

/// Second chance again, with `HitAccess::Mark(1)`: a reader sets the entry's mark itself, and
/// the policy reads and clears it at eviction. No per-entry state.
#[derive(Clone, Default)]
struct MarkedClock {
    queue: VecDeque<EntryId>,
}

impl EvictionPolicy for MarkedClock {
    type State = ();
    const HIT: HitAccess = HitAccess::Mark(1);

    fn on_insert(&mut self, id: EntryId, _: &mut impl Entries<()>) {
        self.queue.push_back(id);
    }

    /// What readers do themselves; the cache calls it only for `Simulation`s and `AnyPolicy`.
    fn on_access(&mut self, id: EntryId, entries: &mut impl Entries<()>) {
        entries.set_mark(id, 1);
    }

    /// An update is not a reference here, so the test can tell that the mark a hit set
    /// survives the replaced value.
    fn on_update(&mut self, _: EntryId, _: u32, _: &mut impl Entries<()>) {}

    fn on_remove(&mut self, id: EntryId, _: &mut impl Entries<()>) {
        let at = self.queue.iter().position(|&e| e == id).expect("queued");
        self.queue.remove(at);
    }

    fn victim(&mut self, _: u32, entries: &mut impl Entries<()>) -> Option<EntryId> {
        for _ in 0..=self.queue.len() {
            let front = *self.queue.front()?;
            if entries.mark(front) == 0 {
                return Some(front);
            }
            entries.set_mark(front, 0);
            self.queue.rotate_left(1);
        }
        self.queue.front().copied()
    }

    fn clear(&mut self) {
        self.queue.clear();
    }

    fn validate(&self, entries: &impl Entries<()>) -> Result<(), String> {
        if self.queue.len() != entries.len() {
            return Err(format!(
                "queue {} vs shard {}",
                self.queue.len(),
                entries.len()
            ));
        }
        for &id in &self.queue {
            if entries.mark(id) > 1 {
                return Err(format!("{id:?} has mark {} > 1", entries.mark(id)));
            }
        }
        Ok(())
    }
}

#[test]
fn marked_clock_sees_hits_set_without_a_lock_and_keeps_them_across_a_replacement() {
    let log = Log::default();
    let cache = Cache::builder()
        .max_capacity(3)
        .shards(1)
        .policy(MarkedClock::default())
        .eviction_listener(listener(&log))
        .build()
        .unwrap();
    cache.insert(1, 1);
    cache.insert(2, 2);
    cache.insert(3, 3);
    assert_eq!(cache.get(&1), Some(1)); // marks 1 in its entry
    assert_eq!(cache.peek(&2), Some(2)); // a peek marks nothing
    cache.insert(4, 4); // 1 spared (mark cleared, moved back); 2 goes
    assert_eq!(take(&log), vec![(2, RemovalCause::Capacity)]);
    cache.validate().unwrap();

    // Queue 3, 1, 4. Mark 3, then replace its value: the mark belongs to the entry.
    assert_eq!(cache.get(&3), Some(3));
    cache.insert(3, 30);
    assert_eq!(take(&log), vec![(3, RemovalCause::Replaced)]);
    cache.insert(5, 5); // 3 spared by the mark it kept; 1's was used up
    assert_eq!(take(&log), vec![(1, RemovalCause::Capacity)]);
    assert_eq!(cache.get(&3), Some(30));
    cache.validate().unwrap();

    // Many readers at once, no lock: a saturated mark is not written again.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1000 {
                    assert_eq!(cache.get(&5), Some(5));
                }
            });
        }
    });
    cache.validate().unwrap();
    cache.insert(6, 6); // queue 4, 3 (its mark spent), 5 (marked): 4 goes
    assert_eq!(take(&log), vec![(4, RemovalCause::Capacity)]);
    cache.validate().unwrap();
}

/// The same policy in a `Simulation`, which calls `on_access` for a hit: the same decisions.
#[test]
fn marked_clock_decides_alike_in_a_simulation() {
    let mut sim = aside::policy::Simulation::new(MarkedClock::default(), 3, 0);
    for h in [1, 2, 3, 1, 4] {
        sim.access(h, 1);
    }
    assert!(sim.contains(1) && !sim.contains(2));
    sim.validate().unwrap();
}

// ----- Recorded until marked: `HitAccess::MarkOrRecord` -----

/// An entry's hits are recorded and replayed until the policy marks the entry (on its first
/// replayed hit); from then on a reader only raises the mark, up to 4. The victim is the
/// entry with the lowest mark, oldest first; each `victim` call logs the marks in queue order.
#[derive(Clone, Default)]
struct RecordedUntilMarked {
    queue: VecDeque<EntryId>,
    replayed: Arc<AtomicUsize>,
    marks_seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl EvictionPolicy for RecordedUntilMarked {
    type State = ();
    const HIT: HitAccess = HitAccess::MarkOrRecord(4);

    fn on_insert(&mut self, id: EntryId, _: &mut impl Entries<()>) {
        self.queue.push_back(id);
    }

    /// A recorded hit (mark 0) marks the entry; on a marked entry, what a reader does.
    fn on_access(&mut self, id: EntryId, entries: &mut impl Entries<()>) {
        match entries.mark(id) {
            0 => {
                self.replayed.fetch_add(1, Ordering::Relaxed);
                entries.set_mark(id, 1);
            }
            m => entries.set_mark(id, (m + 1).min(4)),
        }
    }

    /// Not a hit: the updates below only make the cache replay its rings.
    fn on_update(&mut self, _: EntryId, _: u32, _: &mut impl Entries<()>) {}

    fn on_remove(&mut self, id: EntryId, _: &mut impl Entries<()>) {
        let at = self.queue.iter().position(|&e| e == id).expect("queued");
        self.queue.remove(at);
    }

    fn victim(&mut self, _: u32, entries: &mut impl Entries<()>) -> Option<EntryId> {
        let marks = self.queue.iter().map(|&id| entries.mark(id)).collect();
        self.marks_seen.lock().unwrap().push(marks);
        self.queue
            .iter()
            .copied()
            .min_by_key(|&id| entries.mark(id))
    }

    fn clear(&mut self) {
        self.queue.clear();
    }
}

#[test]
fn mark_or_record_replays_unmarked_hits_and_only_marks_marked_ones() {
    let policy = RecordedUntilMarked::default();
    let (replayed, seen) = (Arc::clone(&policy.replayed), Arc::clone(&policy.marks_seen));
    let log = Log::default();
    let cache = Cache::builder()
        .max_capacity(3)
        .shards(1)
        .policy(policy)
        .eviction_listener(listener(&log))
        .build()
        .unwrap();
    for k in 1..=3 {
        cache.insert(k, k);
    }
    assert_eq!(cache.get(&1), Some(1)); // unmarked: recorded
    cache.insert(1, 1); // a write replays it: 1 is marked
    assert_eq!(replayed.load(Ordering::Relaxed), 1);
    for _ in 0..10 {
        assert_eq!(cache.get(&1), Some(1)); // marked: the reader raises the mark, up to 4
    }
    assert_eq!(cache.get(&2), Some(2)); // unmarked: recorded
    cache.insert(3, 3); // replays 2's hit; 1's hits were never recorded
    assert_eq!(replayed.load(Ordering::Relaxed), 2);
    cache.insert(4, 4); // needs room: 3 has the lowest mark
    assert_eq!(seen.lock().unwrap().as_slice(), &[vec![4, 1, 0]]);
    let replaced = RemovalCause::Replaced;
    assert_eq!(
        take(&log),
        vec![(1, replaced), (3, replaced), (3, RemovalCause::Capacity)]
    );
    // A peek raises nothing.
    assert_eq!(cache.peek(&4), Some(4));
    cache.insert(5, 5);
    assert_eq!(seen.lock().unwrap()[1], vec![4, 1, 0]);
    assert_eq!(take(&log), vec![(4, RemovalCause::Capacity)]);
    cache.validate().unwrap();

    // A `Simulation` calls `on_access` for every hit: the same marks.
    let mut sim = aside::policy::Simulation::new(RecordedUntilMarked::default(), 3, 0);
    for h in [1, 2, 3, 1, 1, 1, 1, 1, 2, 4] {
        sim.access(h, 1);
    }
    assert!(sim.contains(1) && sim.contains(2) && !sim.contains(3) && sim.contains(4));
    assert_eq!(sim.policy().replayed.load(Ordering::Relaxed), 2);
}

// ----- Admission: a doorkeeper in front of FIFO -----

/// FIFO eviction; a newcomer that needs room is admitted only on its second attempt.
#[derive(Clone, Default)]
struct Doorkeeper {
    queue: VecDeque<EntryId>,
    seen: HashSet<u32>,
    admit_calls: Arc<AtomicUsize>,
    last_weight: Arc<AtomicU32>,
}

impl EvictionPolicy for Doorkeeper {
    type State = ();
    const HIT: HitAccess = HitAccess::Ignore;

    fn admit(&mut self, hash: u32, weight: u32, _: &mut impl Entries<()>) -> bool {
        self.admit_calls.fetch_add(1, Ordering::Relaxed);
        self.last_weight.store(weight, Ordering::Relaxed);
        // A second attempt is admitted; a first one is remembered and turned away.
        if self.seen.remove(&hash) {
            true
        } else {
            self.seen.insert(hash);
            false
        }
    }

    fn on_insert(&mut self, id: EntryId, _: &mut impl Entries<()>) {
        self.queue.push_back(id);
    }

    fn on_update(&mut self, _: EntryId, _: u32, _: &mut impl Entries<()>) {}

    fn on_remove(&mut self, id: EntryId, _: &mut impl Entries<()>) {
        let at = self.queue.iter().position(|&e| e == id).expect("queued");
        self.queue.remove(at);
    }

    fn victim(&mut self, _: u32, _: &mut impl Entries<()>) -> Option<EntryId> {
        self.queue.front().copied()
    }

    fn clear(&mut self) {
        self.queue.clear();
        self.seen.clear();
    }

    fn validate(&self, entries: &impl Entries<()>) -> Result<(), String> {
        if self.queue.len() != entries.len() || self.queue.iter().any(|&id| !entries.contains(id)) {
            return Err("queue out of sync with the shard".into());
        }
        Ok(())
    }
}

#[test]
fn admission_rejects_first_time_newcomers() {
    let log = Log::default();
    let policy = Doorkeeper::default();
    let cache: Cache<u32, u32, Doorkeeper> = Cache::builder()
        .max_capacity(2)
        .shards(1)
        .policy(policy.clone())
        .eviction_listener(listener(&log))
        .build()
        .unwrap();
    cache.insert(1, 1);
    cache.insert(2, 2);
    assert_eq!(
        policy.admit_calls.load(Ordering::Relaxed),
        0,
        "room: no admission"
    );

    cache.insert(3, 3);
    assert_eq!(policy.admit_calls.load(Ordering::Relaxed), 1);
    assert!(!cache.contains_key(&3));
    assert!(cache.contains_key(&1) && cache.contains_key(&2));
    assert_eq!(
        take(&log),
        vec![(3, RemovalCause::Capacity)],
        "the newcomer goes"
    );
    let s = cache.stats();
    assert_eq!((s.inserts, s.rejected, s.evicted_capacity), (2, 1, 1));

    cache.insert(3, 3); // second attempt: admitted, the oldest (1) makes room
    assert!(cache.contains_key(&3) && !cache.contains_key(&1));
    assert_eq!(take(&log), vec![(1, RemovalCause::Capacity)]);
    let s = cache.stats();
    assert_eq!((s.inserts, s.rejected, s.evicted_capacity), (3, 1, 2));

    // Replacing an existing key needs no room and asks no admission.
    cache.insert(2, 20);
    assert_eq!(policy.admit_calls.load(Ordering::Relaxed), 2);
    assert_eq!(cache.get(&2), Some(20));

    // A rejected `get_or_insert_with` still hands back its value.
    assert_eq!(cache.get_or_insert_with(9, || 99), 99);
    assert!(!cache.contains_key(&9));
    assert_eq!(cache.stats().rejected, 2);
    assert_eq!(policy.last_weight.load(Ordering::Relaxed), 1);
    cache.validate().unwrap();
}

#[test]
fn admission_sees_the_newcomers_weight() {
    let policy = Doorkeeper::default();
    let cache: Cache<u32, u32, Doorkeeper> = Cache::builder()
        .max_capacity(10)
        .shards(1)
        .weigher(|_k, v: &u32| *v)
        .policy(policy.clone())
        .build()
        .unwrap();
    cache.insert(1, 6);
    cache.insert(2, 4);
    assert_eq!(cache.weighted_size(), 10);
    cache.insert(3, 5);
    assert_eq!(policy.last_weight.load(Ordering::Relaxed), 5);
    assert_eq!(cache.stats().rejected, 1);
    cache.insert(3, 5);
    assert_eq!(cache.weighted_size(), 9, "1 (6) made room for 3 (5)");
    // Heavier than the shard: rejected before admission is consulted.
    cache.insert(4, 11);
    assert_eq!(policy.admit_calls.load(Ordering::Relaxed), 2);
    let s = cache.stats();
    assert_eq!((s.rejected, s.evicted_capacity), (1, 3));
    cache.validate().unwrap();
}

// ----- A broken policy is reported, not hidden -----

#[derive(Clone, Default)]
struct NeverEvicts;

impl EvictionPolicy for NeverEvicts {
    type State = ();
    const HIT: HitAccess = HitAccess::Ignore;
    fn on_insert(&mut self, _: EntryId, _: &mut impl Entries<()>) {}
    fn on_remove(&mut self, _: EntryId, _: &mut impl Entries<()>) {}
    fn victim(&mut self, _: u32, _: &mut impl Entries<()>) -> Option<EntryId> {
        None
    }
    fn clear(&mut self) {}
}

#[test]
fn a_policy_that_refuses_to_evict_is_caught_by_validate() {
    let cache: Cache<u32, u32, NeverEvicts> = Cache::builder()
        .max_capacity(2)
        .shards(1)
        .policy(NeverEvicts)
        .build()
        .unwrap();
    cache.insert(1, 1);
    cache.insert(2, 2);
    cache.validate().unwrap();
    cache.insert(3, 3);
    let err = cache.validate().unwrap_err();
    assert!(err.what().contains("exceeds capacity"), "{err}");
    assert!(err.what().starts_with("shard 0"), "{err}");
}

/// FIFO that records what the shard tells it: each `victim` call's `incoming` weight and each
/// `on_update`'s old and new weights.
#[derive(Clone, Default)]
struct WeightLog {
    queue: VecDeque<EntryId>,
    calls: Arc<Mutex<Vec<WeightCall>>>,
}

/// The hook, then (`incoming`, victim's weight) or (old weight, new weight).
type WeightCall = (&'static str, u32, u32);

impl EvictionPolicy for WeightLog {
    type State = ();
    const HIT: HitAccess = HitAccess::Ignore;

    fn on_insert(&mut self, id: EntryId, _: &mut impl Entries<()>) {
        self.queue.push_back(id);
    }

    fn on_update(&mut self, id: EntryId, old_weight: u32, entries: &mut impl Entries<()>) {
        let new = entries.weight(id);
        self.calls.lock().unwrap().push(("update", old_weight, new));
    }

    fn on_remove(&mut self, id: EntryId, _: &mut impl Entries<()>) {
        let at = self.queue.iter().position(|&e| e == id).expect("queued");
        self.queue.remove(at);
    }

    fn victim(&mut self, incoming: u32, entries: &mut impl Entries<()>) -> Option<EntryId> {
        let victim = self.queue.front().copied()?;
        self.calls
            .lock()
            .unwrap()
            .push(("victim", incoming, entries.weight(victim)));
        Some(victim)
    }

    fn clear(&mut self) {
        self.queue.clear();
    }
}

/// `victim` learns the weight of the newcomer it makes room for (0 when an update made the
/// shard too heavy), and `on_update` the weight the entry had, with the new one already in
/// `Entries::weight`: what a policy keeping per-segment weight totals needs.
#[test]
fn hooks_are_told_the_incoming_and_the_old_weight() {
    let policy = WeightLog::default();
    let cache: Cache<u32, Vec<u8>, WeightLog> = Cache::builder()
        .max_capacity(10)
        .shards(1)
        .weigher(|_: &u32, v: &Vec<u8>| v.len() as u32)
        .policy(policy.clone())
        .build()
        .unwrap();
    cache.insert(1, vec![0; 4]);
    cache.insert(2, vec![0; 4]);
    cache.insert(3, vec![0; 3]); // 11 > 10: one victim (key 1, weight 4) for a newcomer of 3
    cache.insert(2, vec![0; 6]); // an update 4 -> 6: 6 + 3 = 9, no victim
    cache.insert(3, vec![0; 5]); // an update 3 -> 5: 11 > 10, a victim (key 2) for no newcomer
    assert_eq!(
        *policy.calls.lock().unwrap(),
        [
            ("victim", 3, 4),
            ("update", 4, 6),
            ("update", 3, 5),
            ("victim", 0, 6),
        ]
    );
    assert!(!cache.contains_key(&1) && !cache.contains_key(&2) && cache.contains_key(&3));
    cache.validate().unwrap();
}
