//! A shard's entries as lock-free readers see them: nodes in an arena whose slots never move,
//! found through an open-addressing table of atomic buckets.
//!
//! - **Nodes** (`key`, `value`, deadline, hash fragment, policy id) live in an arena of
//!   segments, 16 slots then twice as many each time, allocated once and never moved, so a
//!   reader can hold `&Node` while the writer adds segments. The last segment below the shard's
//!   capacity is cut to size, so the arena holds exactly the capacity's slots (past it, as with
//!   a weigher, whole segments follow).
//! - **Buckets** are `u32`s: an 8-bit tag from the key's hash fragment and `node + 1` in the
//!   low 24 bits, or empty (0), or a tombstone. A lookup reads one bucket word per probe and
//!   touches a node only when the tag matches (one probe in 256 otherwise). Linear probing;
//!   the table is never more than three quarters used. 24 bits of node index bound a shard at
//!   [`MAX_NODES`] nodes (the shard enforces a slightly lower entry cap).
//! - **Growth** is incremental, as the engine's index always was: a larger table takes the
//!   old one's place and the old one is drained into it a few clusters (runs of non-empty
//!   buckets, at least 32 buckets) per write, while lookups look in the new table, then the
//!   old one, then the new one again. A cluster's entries are stored in the new table before
//!   its old buckets are emptied, so a lookup that finds them empty finds the entry on its
//!   second look; a probe sequence never crosses a cluster, so emptying one never cuts the
//!   sequence of a key still in the old table. A lookup that started on a table pair that has
//!   since been replaced and missed looks again.
//! - **One writer**: every change goes through [`Writer`], which the shard keeps under its
//!   lock; [`Store::new`] makes exactly one per store and every call checks the pair. Nothing
//!   a writer unlinks (a node, a bucket array, a table pair) is freed or reused before
//!   [`Store::reclaim`] has waited out the readers (see `readers.rs`).
//!
//! All of the crate's `unsafe` is in this file.

#![allow(unsafe_code)]

use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr;

use super::readers::{ReadGuard, Readers};
use crate::policy::EntryId;
use crate::shim::{AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// One entry as readers see it.
pub(crate) struct Node<K, V> {
    pub(crate) key: K,
    pub(crate) value: V,
    /// `Deadline` bits; atomic so that a hit can slide it.
    deadline: AtomicU64,
    /// The key's 32-bit hash fragment.
    pub(crate) hash: u32,
    /// The entry's id in the shard's slab (what the policy knows it by; below 2^24, as node
    /// indices are) in the low 24 bits, its policy mark in the top 8. Atomic so that a hit can
    /// raise the mark; the id bits never change.
    tag: AtomicU32,
}

/// The bits of [`Node::tag`] that hold the id.
const ID_BITS: u32 = 24;

/// A node's id word as one load saw it: the entry id in the low [`ID_BITS`], the mark above.
#[derive(Clone, Copy)]
pub(crate) struct Tag(u32);

impl Tag {
    /// The entry's id in the shard's slab.
    #[inline]
    pub(crate) fn id(self) -> EntryId {
        EntryId::new(self.0 & ((1 << ID_BITS) - 1))
    }

    /// The entry's policy mark.
    #[inline]
    pub(crate) fn mark(self) -> u8 {
        (self.0 >> ID_BITS) as u8
    }
}

impl<K, V> Node<K, V> {
    pub(crate) fn new(key: K, value: V, hash: u32, id: EntryId, deadline: u64) -> Self {
        debug_assert!(id.raw() < 1 << ID_BITS, "{id:?} past the node index range");
        Self {
            key,
            value,
            deadline: AtomicU64::new(deadline),
            hash,
            tag: AtomicU32::new(id.raw()),
        }
    }

    /// One load of the id word: the entry's id and its mark at that moment (a hit needs both
    /// and reads them once).
    #[inline]
    pub(crate) fn tag(&self) -> Tag {
        Tag(self.tag.load(Ordering::Relaxed))
    }

    /// The entry's id in the shard's slab.
    #[inline]
    pub(crate) fn id(&self) -> EntryId {
        self.tag().id()
    }

    /// The entry's policy mark.
    #[inline]
    pub(crate) fn mark(&self) -> u8 {
        self.tag().mark()
    }

    /// Sets the mark (the shard's writer, under its lock; a reader's concurrent raise may be
    /// lost, or may land on top).
    #[inline]
    pub(crate) fn set_mark(&self, mark: u8) {
        let tag = self.tag.load(Ordering::Relaxed);
        let id = tag & ((1 << ID_BITS) - 1);
        self.tag
            .store(id | (u32::from(mark) << ID_BITS), Ordering::Relaxed);
    }

    /// A hit's raise of the mark from `seen`, the tag this reader loaded, by one up to `max`:
    /// a plain store only below `max` (two readers raising at once may count once, as a lossy
    /// buffer would).
    #[inline]
    pub(crate) fn raise_mark(&self, seen: Tag, max: u8) {
        if seen.mark() < max {
            self.tag.store(seen.0 + (1 << ID_BITS), Ordering::Relaxed);
        }
    }

    #[inline]
    pub(crate) fn deadline_bits(&self) -> u64 {
        self.deadline.load(Ordering::Relaxed)
    }

    /// Sets the deadline; `&self` so that a hit can slide it.
    #[inline]
    pub(crate) fn set_deadline_bits(&self, bits: u64) {
        self.deadline.store(bits, Ordering::Relaxed);
    }
}

type Slot<T> = UnsafeCell<MaybeUninit<T>>;

const BASE_BITS: u32 = 4;
const BASE: usize = 1 << BASE_BITS;
/// Segment 0 is the flat part of the arena ([`flat_len`]); segments `1..SEGMENTS` follow it,
/// 16 slots then twice as many each time, and hold indices up to `16 × (2^21 - 1)` past it,
/// beyond [`MAX_NODES`] (checked below), including the jump past a segment cut to the shard's
/// capacity.
const SEGMENTS: usize = 22;
/// Node indices a store can hand out: `node + 1` fits the bucket's 24 bits and never makes
/// a tombstone.
pub(crate) const MAX_NODES: u32 = (1 << 24) - 2;
const _: () = assert!(BASE * ((1 << (SEGMENTS - 1)) - 1) > MAX_NODES as usize);
/// The largest flat segment, in bytes (allocated whole on the first insert; its pages are
/// touched only as nodes are written into them).
const FLAT_BYTES: usize = 8 << 20;

/// The slots of the arena's flat first segment for a store of `limit` slots of `slot` bytes:
/// all of them when the bound fits in [`FLAT_BYTES`], none otherwise (an unbounded store, a
/// weigher, or a shard larger than that), where the arena grows by doubling segments from 16
/// slots. A sparse cache with a huge bound thus reserves nothing up front.
fn flat_len(limit: usize, slot: usize) -> usize {
    if limit <= FLAT_BYTES / slot.max(1) {
        limit
    } else {
        0
    }
}

/// Segment and offset of node `index` among the doubling segments (`index` counted from the
/// end of the flat segment; segment numbers from 0 here, from 1 in the arena).
#[inline]
fn locate(index: u32) -> (usize, usize) {
    let q = (index >> BASE_BITS) + 1;
    let s = (31 - q.leading_zeros()) as usize;
    (s, index as usize + BASE - (BASE << s))
}

/// The first index of doubling segment `s`, counted from the end of the flat segment.
fn segment_start(s: usize) -> usize {
    (BASE << s) - BASE
}

/// The slots doubling segment `s` has: its full size, or less for the segment that crosses
/// `limit` (counted from the end of the flat segment).
fn segment_len(s: usize, limit: usize) -> usize {
    let (start, full) = (segment_start(s), BASE << s);
    if start < limit && limit < start + full {
        limit - start
    } else {
        full
    }
}

const EMPTY: u32 = 0;
const TOMB: u32 = u32::MAX;
/// Smallest bucket array.
const MIN_BUCKETS: usize = 16;
/// Old buckets drained per insert while the table grows.
const MIGRATE_BUCKETS: usize = 32;

/// The bucket's tag of a hash fragment: its low byte (the table position comes from the
/// fragment's multiplicative mix, whose top bits the low byte hardly predicts).
#[inline]
fn tag(hash: u32) -> u32 {
    hash & 0xFF
}

#[inline]
fn full(hash: u32, node: u32) -> u32 {
    debug_assert!(node < MAX_NODES);
    (tag(hash) << 24) | (node + 1)
}

#[inline]
fn node_of(bucket: u32) -> u32 {
    (bucket & 0x00FF_FFFF).wrapping_sub(1)
}

#[inline]
fn tag_of(bucket: u32) -> u32 {
    bucket >> 24
}

/// One bucket array.
struct Buckets {
    slots: Box<[AtomicU32]>,
    /// `64 - log2(len)`: a hash's start is its mixed hash's top bits.
    shift: u32,
}

impl Buckets {
    fn new(len: usize) -> Self {
        debug_assert!(len.is_power_of_two() && len >= MIN_BUCKETS);
        Self {
            slots: (0..len).map(|_| AtomicU32::new(EMPTY)).collect(),
            shift: 64 - len.trailing_zeros(),
        }
    }

    #[inline]
    fn start(&self, hash: u32) -> usize {
        (u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The bucket holding `node` (stored under `hash`), if any. Writer only.
    #[inline]
    fn position(&self, hash: u32, node: u32) -> Option<usize> {
        let mut i = self.start(hash);
        loop {
            let b = self.slots[i].load(Ordering::Relaxed);
            if b == EMPTY {
                return None;
            }
            if b != TOMB && node_of(b) == node {
                return Some(i);
            }
            i = (i + 1) & self.mask();
        }
    }

    /// The first empty or tombstoned bucket on `hash`'s probe sequence. Writer only.
    #[inline]
    fn free_position(&self, hash: u32) -> usize {
        let mut i = self.start(hash);
        loop {
            let b = self.slots[i].load(Ordering::Relaxed);
            if b == EMPTY || b == TOMB {
                return i;
            }
            i = (i + 1) & self.mask();
        }
    }
}

/// The table pair readers load in one step: the live table, and while it grows the old one.
struct Tables {
    cur: *mut Buckets,
    /// Null unless a migration runs.
    old: *mut Buckets,
}

/// The reader-visible part of a shard: the reader stripes, the table and the arena.
pub(crate) struct Store<K, V> {
    readers: Readers,
    tables: AtomicPtr<Tables>,
    segments: [AtomicPtr<Slot<Node<K, V>>>; SEGMENTS],
    /// The slot count the arena is cut to (the shard's capacity in entries, when known).
    limit: usize,
    /// The slots of segment 0, the flat part of the arena ([`flat_len`]): a reader finds a
    /// node in it with no segment arithmetic.
    flat: usize,
    /// Pairs the store with its one [`Writer`].
    pair: u64,
    /// Owns nodes (drops them); `*mut` opts out of the automatic `Send`/`Sync`, given below.
    _owns: PhantomData<*mut Node<K, V>>,
}

// SAFETY: a store owns its nodes' keys and values; sending it sends them.
unsafe impl<K: Send, V: Send> Send for Store<K, V> {}
// SAFETY: shared, a store hands out `&K` and `&V` to readers on any thread (so both must be
// `Sync`) and lets the writer, on any thread, move them out (so both must be `Send`).
unsafe impl<K: Send + Sync, V: Send + Sync> Sync for Store<K, V> {}

/// The one writer of a [`Store`]: the table's counts, the arena's free list and everything
/// unlinked but not yet reclaimed. The shard keeps it under its lock.
pub(crate) struct Writer<K, V> {
    pair: u64,
    /// Where [`Store::find_for_write`] last found a node: its index, bucket array and
    /// position, so that replacing or removing that node does not probe again
    /// ([`Store::bucket_of`] checks the bucket still names it before using it).
    found: Cell<(u32, *const Buckets, usize)>,
    /// The next never-used arena index.
    next: u32,
    free: Vec<u32>,
    /// One bit per arena index: the slot holds an initialized node.
    live: Vec<u64>,
    /// Nodes unlinked from the table, waiting for a grace period.
    garbage: Vec<u32>,
    /// Table pairs and bucket arrays replaced, waiting for a grace period.
    retired_tables: Vec<*mut Tables>,
    retired_buckets: Vec<*mut Buckets>,
    /// Full and full-or-tombstoned buckets of the live table; full buckets of the old one.
    cur_full: usize,
    cur_used: usize,
    old_full: usize,
    /// The next old bucket to drain, and how many buckets were drained so far.
    cursor: usize,
    migrated: usize,
    _nodes: PhantomData<*mut Node<K, V>>,
}

// SAFETY: the writer's pointers are to the store's tables, reached only through the store's
// methods (which check the pair); sending the writer sends the right to move nodes out.
unsafe impl<K: Send, V: Send> Send for Writer<K, V> {}

fn next_pair() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl<K, V> Store<K, V> {
    /// An empty store and its writer. `limit` is the arena's expected size (the shard's
    /// capacity in entries); `stripes` the reader stripes.
    pub(crate) fn new(limit: usize, stripes: usize) -> (Self, Writer<K, V>) {
        let pair = next_pair();
        let cur = Box::into_raw(Box::new(Buckets::new(MIN_BUCKETS)));
        let tables = Box::into_raw(Box::new(Tables {
            cur,
            old: ptr::null_mut(),
        }));
        let store = Self {
            readers: Readers::new(stripes),
            tables: AtomicPtr::new(tables),
            segments: [const { AtomicPtr::new(ptr::null_mut()) }; SEGMENTS],
            limit: limit.max(1),
            flat: flat_len(limit.max(1), size_of::<Slot<Node<K, V>>>()),
            pair,
            _owns: PhantomData,
        };
        let writer = Writer {
            pair,
            found: Cell::new((u32::MAX, ptr::null(), 0)),
            next: 0,
            free: Vec::new(),
            live: Vec::new(),
            garbage: Vec::new(),
            retired_tables: Vec::new(),
            retired_buckets: Vec::new(),
            cur_full: 0,
            cur_used: 0,
            old_full: 0,
            cursor: 0,
            migrated: 0,
            _nodes: PhantomData,
        };
        (store, writer)
    }

    /// The reader stripes (hit counts).
    pub(crate) fn readers(&self) -> &Readers {
        &self.readers
    }

    /// Starts a read section.
    #[inline]
    pub(crate) fn enter(&self) -> Reader<'_, K, V> {
        Reader {
            store: self,
            guard: self.readers.enter(),
            saw_old: Cell::new(false),
        }
    }

    /// The node in arena slot `index`.
    ///
    /// # Safety
    ///
    /// Slot `index` holds an initialized node, and stays initialized while the returned
    /// reference lives: the node is reachable from the table and the caller is inside a read
    /// section, or the caller is the writer and the node's live bit is set.
    #[inline]
    unsafe fn node(&self, index: u32) -> &Node<K, V> {
        // The flat segment's pointer and length do not depend on `index`: their loads run
        // alongside the bucket's, and a node in it costs one load after the bucket.
        let (segment, off) = if (index as usize) < self.flat {
            (self.segments[0].load(Ordering::Acquire), index as usize)
        } else {
            let (s, off) = self.locate(index);
            (self.segments[s].load(Ordering::Acquire), off)
        };
        // SAFETY: an initialized slot is in an allocated segment of at least `off + 1` slots
        // (the writer stores the segment pointer before any node in it is initialized, and
        // `alloc` never hands out an offset past the segment's length); the caller guarantees
        // the slot is initialized for the reference's lifetime, and nodes are only written
        // before they are published and read-only afterwards.
        unsafe { &*(*segment.add(off)).get().cast::<Node<K, V>>() }
    }

    /// Segment and offset of node `index`: segment 0 is the flat part, the doubling segments
    /// follow it.
    #[inline]
    fn locate(&self, index: u32) -> (usize, usize) {
        let i = index as usize;
        if i < self.flat {
            (0, i)
        } else {
            let (s, off) = locate(u32::try_from(i - self.flat).expect("below 2^24"));
            (s + 1, off)
        }
    }

    /// The first index of arena segment `s`.
    fn segment_start(&self, s: usize) -> usize {
        if s == 0 {
            0
        } else {
            self.flat + segment_start(s - 1)
        }
    }

    /// The slots arena segment `s` has.
    fn segment_len(&self, s: usize) -> usize {
        if s == 0 {
            self.flat
        } else {
            segment_len(s - 1, self.limit - self.flat)
        }
    }

    /// Looks `hash` up in one bucket array, inside a read section.
    #[inline]
    fn probe<'s>(
        &'s self,
        buckets: &Buckets,
        hash: u32,
        eq: &mut impl FnMut(&K) -> bool,
    ) -> Option<&'s Node<K, V>> {
        let mask = buckets.mask();
        let mut i = buckets.start(hash);
        loop {
            let b = buckets.slots[i].load(Ordering::SeqCst);
            if b == EMPTY {
                return None;
            }
            if b != TOMB && tag_of(b) == tag(hash) {
                // SAFETY: a full bucket names an initialized node; it stays initialized until a
                // grace period that cannot end while the caller's read section runs.
                let node = unsafe { self.node(node_of(b)) };
                if node.hash == hash && eq(&node.key) {
                    return Some(node);
                }
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    fn check(&self, writer: &Writer<K, V>) {
        assert_eq!(
            self.pair, writer.pair,
            "a store used with another store's writer"
        );
    }

    /// The tables, as the writer sees them.
    #[inline]
    fn tables(&self) -> &Tables {
        // SAFETY: the table pair is always a valid allocation; only the writer replaces it,
        // and the caller is the writer.
        unsafe { &*self.tables.load(Ordering::Relaxed) }
    }

    /// The writer's view of node `index`.
    ///
    /// # Panics
    ///
    /// If slot `index` holds no node.
    #[inline]
    pub(crate) fn get<'s>(&'s self, writer: &'s Writer<K, V>, index: u32) -> &'s Node<K, V> {
        self.check(writer);
        assert!(is_live(&writer.live, index), "node {index} is not live");
        // SAFETY: the live bit says the slot is initialized, and only the writer (borrowed
        // for the reference's lifetime) clears it.
        unsafe { self.node(index) }
    }

    /// The node under `hash` whose key `eq` accepts (writer side).
    pub(crate) fn find_for_write(
        &self,
        writer: &Writer<K, V>,
        hash: u32,
        mut eq: impl FnMut(&K) -> bool,
    ) -> Option<u32> {
        self.check(writer);
        let t = self.tables();
        for buckets in [t.cur, t.old] {
            if buckets.is_null() {
                continue;
            }
            // SAFETY: a non-null table pointer is a live bucket array (the writer frees only
            // retired ones).
            let array = unsafe { &*buckets };
            let mut i = array.start(hash);
            loop {
                let b = array.slots[i].load(Ordering::Relaxed);
                if b == EMPTY {
                    break;
                }
                if b != TOMB && tag_of(b) == tag(hash) {
                    // SAFETY: full buckets name live nodes; the writer is borrowed.
                    let node = unsafe { self.node(node_of(b)) };
                    if node.hash == hash && eq(&node.key) {
                        writer.found.set((node_of(b), buckets, i));
                        return Some(node_of(b));
                    }
                }
                i = (i + 1) & array.mask();
            }
        }
        None
    }

    /// An arena slot for a new node.
    #[inline]
    fn alloc(&self, w: &mut Writer<K, V>) -> u32 {
        if let Some(i) = w.free.pop() {
            return i;
        }
        let mut index = w.next;
        let (mut s, off) = self.locate(index);
        if off >= self.segment_len(s) {
            s += 1;
            index = u32::try_from(self.segment_start(s)).expect("arena index fits u32");
        }
        assert!(index < MAX_NODES, "a shard holds fewer than 2^24 - 2 nodes");
        let (s, off) = self.locate(index);
        if off == 0 && self.segments[s].load(Ordering::Relaxed).is_null() {
            let len = self.segment_len(s);
            let segment: Box<[Slot<Node<K, V>>]> = (0..len)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect();
            self.segments[s].store(Box::into_raw(segment).cast(), Ordering::Release);
        }
        w.next = index + 1;
        index
    }

    /// Writes `node` into a new slot and links it; the key must not be in the table. Returns
    /// its index.
    pub(crate) fn insert(&self, w: &mut Writer<K, V>, node: Node<K, V>) -> u32 {
        self.check(w);
        self.reserve_one(w);
        let hash = node.hash;
        let index = self.alloc(w);
        self.write(w, index, node);
        // SAFETY: the live table is a valid allocation while the writer is borrowed.
        let cur = unsafe { &*self.tables().cur };
        let at = cur.free_position(hash);
        if cur.slots[at].load(Ordering::Relaxed) == EMPTY {
            w.cur_used += 1;
        }
        cur.slots[at].store(full(hash, index), Ordering::SeqCst);
        w.cur_full += 1;
        index
    }

    #[inline]
    fn write(&self, w: &mut Writer<K, V>, index: u32, node: Node<K, V>) {
        debug_assert!(!is_live(&w.live, index));
        let (s, off) = self.locate(index);
        let segment = self.segments[s].load(Ordering::Relaxed);
        // SAFETY: `alloc` returned `index`: its segment is allocated and long enough, and the
        // slot is vacant (never used, or reclaimed after a grace period), so no reader holds a
        // reference into it and nothing is overwritten without being dropped.
        unsafe { (*segment.add(off)).get().cast::<Node<K, V>>().write(node) };
        set_live(&mut w.live, index, true);
    }

    /// Links `node` in place of node `old` (same key); `old` waits for [`reclaim`](Self::reclaim).
    /// Returns the new node's index.
    pub(crate) fn replace(&self, w: &mut Writer<K, V>, old: u32, node: Node<K, V>) -> u32 {
        self.check(w);
        let hash = node.hash;
        let (buckets, at) = self.bucket_of(w, old);
        let index = self.alloc(w);
        self.write(w, index, node);
        buckets.slots[at].store(full(hash, index), Ordering::SeqCst);
        w.garbage.push(old);
        index
    }

    /// Unlinks node `index`; it waits for [`reclaim`](Self::reclaim).
    pub(crate) fn remove(&self, w: &mut Writer<K, V>, index: u32) {
        self.check(w);
        let (buckets, at) = self.bucket_of(w, index);
        buckets.slots[at].store(TOMB, Ordering::SeqCst);
        if ptr::eq(buckets, self.tables().cur) {
            w.cur_full -= 1;
        } else {
            w.old_full -= 1;
        }
        w.garbage.push(index);
    }

    /// The bucket array and position holding live node `index`.
    fn bucket_of(&self, w: &Writer<K, V>, index: u32) -> (&Buckets, usize) {
        let t = self.tables();
        let (found, buckets, at) = w.found.get();
        if found == index && (ptr::eq(buckets, t.cur) || ptr::eq(buckets, t.old)) {
            // SAFETY: `buckets` is one of the live pair's arrays (just compared), valid while
            // the writer is borrowed.
            let array = unsafe { &*buckets };
            // The array may be a new one at a freed one's address: the position is checked
            // against its length, and a bucket naming `index` is the node's only bucket.
            if array
                .slots
                .get(at)
                .is_some_and(|b| b.load(Ordering::Relaxed) & 0x00FF_FFFF == index + 1)
            {
                return (array, at);
            }
        }
        let hash = self.get(w, index).hash;
        for buckets in [t.cur, t.old] {
            if buckets.is_null() {
                continue;
            }
            // SAFETY: non-null table pointers are live bucket arrays.
            let buckets = unsafe { &*buckets };
            if let Some(at) = buckets.position(hash, index) {
                return (buckets, at);
            }
        }
        panic!("live node {index} is not in the table");
    }

    /// Unlinks every node; they wait for [`reclaim`](Self::reclaim).
    pub(crate) fn clear(&self, w: &mut Writer<K, V>) {
        self.check(w);
        let fresh = Box::into_raw(Box::new(Buckets::new(MIN_BUCKETS)));
        let replaced = self.swap_tables(w, fresh, ptr::null_mut());
        // SAFETY: `replaced` was the live pair until now; the writer retires it (freed only
        // after a grace period), so it is still valid here.
        let replaced = unsafe { &*replaced };
        for buckets in [replaced.old, replaced.cur] {
            if buckets.is_null() {
                continue;
            }
            // SAFETY: as above, retired but not freed.
            let b = unsafe { &*buckets };
            for slot in b.slots.iter() {
                let v = slot.load(Ordering::Relaxed);
                if v != EMPTY && v != TOMB {
                    w.garbage.push(node_of(v));
                }
            }
            w.retired_buckets.push(buckets);
        }
        w.cur_full = 0;
        w.cur_used = 0;
        w.old_full = 0;
        w.cursor = 0;
        w.migrated = 0;
    }

    /// Publishes a new table pair and retires the current one (not its bucket arrays).
    fn swap_tables(
        &self,
        w: &mut Writer<K, V>,
        cur: *mut Buckets,
        old: *mut Buckets,
    ) -> *mut Tables {
        let fresh = Box::into_raw(Box::new(Tables { cur, old }));
        let replaced = self.tables.swap(fresh, Ordering::SeqCst);
        w.retired_tables.push(replaced);
        replaced
    }

    /// Before an insert: drains part of a running migration, and starts one when the live
    /// table would pass three quarters used.
    fn reserve_one(&self, w: &mut Writer<K, V>) {
        self.migrate_step(w);
        // SAFETY: the live table is valid while the writer is borrowed.
        let len = unsafe { &*self.tables().cur }.slots.len();
        if (w.cur_used + 1) * 4 <= len * 3 {
            return;
        }
        if !self.tables().old.is_null() {
            self.migrate(w, usize::MAX); // a fallback: sizing below avoids it
        }
        let live = w.cur_full;
        let need = live + len / MIGRATE_BUCKETS + 2;
        let new_len = (need * 2).next_power_of_two().max(MIN_BUCKETS);
        let fresh = Box::into_raw(Box::new(Buckets::new(new_len)));
        let cur = self.tables().cur;
        self.swap_tables(w, fresh, cur);
        w.old_full = live;
        w.cur_full = 0;
        w.cur_used = 0;
        w.cursor = 0;
        w.migrated = 0;
    }

    /// Drains part of a running migration (every write does, first, and readers that find one
    /// running lend a hand, so that a migration ends even when writes stop).
    #[inline]
    pub(crate) fn migrate_step(&self, w: &mut Writer<K, V>) {
        if !self.tables().old.is_null() {
            self.migrate(w, MIGRATE_BUCKETS);
        }
    }

    /// Moves whole clusters (runs of non-empty buckets) of the old table into the live one,
    /// at least `budget` buckets' worth, starting after an empty bucket; ends the migration
    /// when the old table is empty. Each cluster's entries are stored in the live table
    /// first, then the cluster's buckets are emptied: a reader that finds them empty finds the
    /// entries on its second look in the live table, and no key's probe sequence ever crosses
    /// an emptied cluster to reach one still in the old table (a probe sequence starting in a
    /// cluster ends in it).
    fn migrate(&self, w: &mut Writer<K, V>, budget: usize) {
        let t = self.tables();
        // SAFETY: both arrays of the live pair are valid while the writer is borrowed.
        let (cur, old) = unsafe { (&*t.cur, &*t.old) };
        let len = old.slots.len();
        let mask = old.mask();
        if w.cursor == 0 && w.migrated == 0 {
            // Start right after an empty bucket (there is one: the table is never full).
            w.cursor = (0..len)
                .find(|&i| old.slots[i].load(Ordering::Relaxed) == EMPTY)
                .map_or(0, |i| (i + 1) & mask);
        }
        let mut visited = 0;
        while w.migrated < len && visited < budget {
            // One cluster: from the cursor to the next empty bucket.
            let first = w.cursor;
            let mut i = first;
            let mut n = 0;
            while w.migrated + n < len {
                let v = old.slots[i].load(Ordering::Relaxed);
                if v == EMPTY {
                    break;
                }
                if v != TOMB {
                    // SAFETY: a full bucket names a live node; the writer is borrowed.
                    let hash = unsafe { self.node(node_of(v)) }.hash;
                    let at = cur.free_position(hash);
                    if cur.slots[at].load(Ordering::Relaxed) == EMPTY {
                        w.cur_used += 1;
                    }
                    cur.slots[at].store(v, Ordering::SeqCst);
                    w.cur_full += 1;
                    w.old_full -= 1;
                }
                i = (i + 1) & mask;
                n += 1;
            }
            for k in 0..n {
                old.slots[(first + k) & mask].store(EMPTY, Ordering::SeqCst);
            }
            // Past the empty bucket that ended the cluster.
            let step = (n + 1).min(len - w.migrated);
            w.migrated += step;
            w.cursor = (first + step) & mask;
            visited += step;
        }
        if w.migrated >= len {
            debug_assert_eq!(w.old_full, 0);
            let (cur, old) = (t.cur, t.old);
            self.swap_tables(w, cur, ptr::null_mut());
            w.retired_buckets.push(old);
            w.cursor = 0;
            w.migrated = 0;
        }
    }

    /// Waits out the readers if anything was unlinked, then frees what was retired and hands
    /// every unlinked node to `out` (which drops it or passes it on), oldest first.
    pub(crate) fn reclaim(&self, w: &mut Writer<K, V>, mut out: impl FnMut(Node<K, V>)) {
        self.check(w);
        if w.garbage.is_empty() && w.retired_tables.is_empty() && w.retired_buckets.is_empty() {
            return;
        }
        self.readers.synchronize();
        for t in w.retired_tables.drain(..) {
            // SAFETY: retired pairs are unreachable (replaced in `tables`) and a grace period
            // has passed since, so no reader holds them; each is freed once (drained here).
            drop(unsafe { Box::from_raw(t) });
        }
        for b in w.retired_buckets.drain(..) {
            // SAFETY: as above, for bucket arrays no live pair refers to.
            drop(unsafe { Box::from_raw(b) });
        }
        // `drain`: should `out` unwind, the nodes not yet handed out leak rather than being
        // read twice; the list keeps its allocation for the next write.
        for index in w.garbage.drain(..) {
            debug_assert!(is_live(&w.live, index));
            set_live(&mut w.live, index, false);
            w.free.push(index);
            let (s, off) = self.locate(index);
            let segment = self.segments[s].load(Ordering::Relaxed);
            // SAFETY: the node was initialized (its live bit was set, now cleared so it is
            // read out once), it is unlinked, and the grace period above means no reader holds
            // a reference to it.
            let node = unsafe { (*segment.add(off)).get().cast::<Node<K, V>>().read() };
            out(node);
        }
        if w.cur_full + w.old_full == 0 {
            // Start dense again.
            w.free.clear();
            w.next = 0;
        }
    }

    /// Nodes linked in the table.
    pub(crate) fn len(&self, w: &Writer<K, V>) -> usize {
        w.cur_full + w.old_full
    }

    /// Bytes the store allocates itself: the arena's slots, the buckets, the reader stripes
    /// and the writer's bookkeeping (keys' and values' own allocations excluded).
    pub(crate) fn allocated_bytes(&self, w: &Writer<K, V>) -> usize {
        let slots: usize = (0..SEGMENTS)
            .filter(|&s| !self.segments[s].load(Ordering::Relaxed).is_null())
            .map(|s| self.segment_len(s))
            .sum();
        let t = self.tables();
        let mut buckets = 0;
        for b in [t.old, t.cur] {
            if !b.is_null() {
                // SAFETY: live pair arrays are valid while the writer is borrowed.
                buckets += unsafe { &*b }.slots.len();
            }
        }
        slots * size_of::<Slot<Node<K, V>>>()
            + buckets * size_of::<u32>()
            + self.readers.allocated_bytes()
            + w.free.capacity() * size_of::<u32>()
            + w.live.capacity() * size_of::<u64>()
    }

    /// Checks the table against the writer's counts and live bits.
    pub(crate) fn validate(&self, w: &Writer<K, V>) -> Result<(), String> {
        self.check(w);
        let t = self.tables();
        let mut linked = 0;
        for (name, buckets) in [("old", t.old), ("live", t.cur)] {
            if buckets.is_null() {
                continue;
            }
            // SAFETY: live pair arrays are valid while the writer is borrowed.
            let b = unsafe { &*buckets };
            let (mut fulls, mut used) = (0, 0);
            for (i, slot) in b.slots.iter().enumerate() {
                let v = slot.load(Ordering::Relaxed);
                if v == EMPTY {
                    continue;
                }
                used += 1;
                if v == TOMB {
                    continue;
                }
                fulls += 1;
                let index = node_of(v);
                if !is_live(&w.live, index) {
                    return Err(format!("{name} bucket {i} names dead node {index}"));
                }
                // SAFETY: the live bit is set.
                let node = unsafe { self.node(index) };
                if tag(node.hash) != tag_of(v) {
                    return Err(format!("{name} bucket {i}: node {index} has another tag"));
                }
                if b.position(node.hash, index) != Some(i) {
                    return Err(format!("{name} bucket {i} is not on its probe sequence"));
                }
            }
            if used * 4 > b.slots.len() * 3 + 4 {
                return Err(format!("{name} table is {used}/{} used", b.slots.len()));
            }
            if ptr::eq(buckets, t.cur) && (fulls != w.cur_full || used != w.cur_used) {
                return Err(format!(
                    "live table holds {fulls} full / {used} used, the writer says {} / {}",
                    w.cur_full, w.cur_used
                ));
            }
            if ptr::eq(buckets, t.old) && fulls != w.old_full {
                return Err(format!(
                    "old table holds {fulls}, the writer says {}",
                    w.old_full
                ));
            }
            linked += fulls;
        }
        let live: usize = w.live.iter().map(|b| b.count_ones() as usize).sum();
        if live != linked + w.garbage.len() {
            return Err(format!(
                "{live} live nodes, {linked} linked + {} unreclaimed",
                w.garbage.len()
            ));
        }
        Ok(())
    }
}

/// Whether arena slot `index` holds a node, by the writer's live bits.
#[inline]
fn is_live(bits: &[u64], index: u32) -> bool {
    bits.get(index as usize / 64)
        .is_some_and(|w| w & (1 << (index % 64)) != 0)
}

#[inline]
fn set_live(bits: &mut Vec<u64>, index: u32, live: bool) {
    let word = index as usize / 64;
    if word >= bits.len() {
        bits.resize(word + 1, 0);
    }
    if live {
        bits[word] |= 1 << (index % 64);
    } else {
        bits[word] &= !(1 << (index % 64));
    }
}

impl<K, V> Drop for Writer<K, V> {
    fn drop(&mut self) {
        // Tables replaced by writes whose `reclaim` never ran (a panic between the two, or a
        // test): no reader is left once the writer goes, and no live pair refers to them.
        for t in self.retired_tables.drain(..) {
            // SAFETY: retired pairs are unreachable and freed once, here or in `reclaim`.
            drop(unsafe { Box::from_raw(t) });
        }
        for b in self.retired_buckets.drain(..) {
            // SAFETY: as above, for bucket arrays no live pair refers to.
            drop(unsafe { Box::from_raw(b) });
        }
    }
}

impl<K, V> Drop for Store<K, V> {
    fn drop(&mut self) {
        // No reader and no writer call can run: `&mut self`. Drop the nodes the table links
        // (each once: a migration empties the old buckets it moved), then the tables and the
        // arena. Nodes unlinked but never reclaimed (a panic between unlink and reclaim) leak;
        // the writer frees the tables it retired.
        let tables = *self.tables.get_mut();
        // SAFETY: the live pair and its arrays are valid allocations owned by the store.
        let t = unsafe { Box::from_raw(tables) };
        for buckets in [t.old, t.cur] {
            if buckets.is_null() {
                continue;
            }
            // SAFETY: as above; each array is freed once, here.
            let b = unsafe { Box::from_raw(buckets) };
            for slot in b.slots.iter() {
                let v = slot.load(Ordering::Relaxed);
                if v != EMPTY && v != TOMB {
                    let (s, off) = self.locate(node_of(v));
                    let segment = *self.segments[s].get_mut();
                    // SAFETY: a full bucket names an initialized node, linked once.
                    unsafe {
                        (*segment.add(off))
                            .get()
                            .cast::<Node<K, V>>()
                            .drop_in_place()
                    };
                }
            }
        }
        for s in 0..SEGMENTS {
            let segment = *self.segments[s].get_mut();
            if !segment.is_null() {
                let len = self.segment_len(s);
                // SAFETY: allocated in `alloc` as a boxed slice of this length; slots are
                // `MaybeUninit`, so freeing drops nothing twice.
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(segment, len)) });
            }
        }
    }
}

/// A read section of one store: lookups return nodes that stay valid while it lives.
pub(crate) struct Reader<'s, K, V> {
    store: &'s Store<K, V>,
    guard: ReadGuard<'s>,
    /// The last lookup found the table growing (an old table beside the live one).
    saw_old: Cell<bool>,
}

impl<K, V> Reader<'_, K, V> {
    /// The node under `hash` whose key `eq` accepts.
    #[inline]
    pub(crate) fn find(&self, hash: u32, mut eq: impl FnMut(&K) -> bool) -> Option<&Node<K, V>> {
        let store = self.store;
        let mut tables = store.tables.load(Ordering::SeqCst);
        loop {
            // SAFETY: the pair was published by the writer and is freed only after a grace
            // period, which cannot end while this section runs; so are its arrays.
            let t = unsafe { &*tables };
            self.saw_old.set(!t.old.is_null());
            // SAFETY: as above.
            let cur = unsafe { &*t.cur };
            if let Some(node) = store.probe(cur, hash, &mut eq) {
                return Some(node);
            }
            if !t.old.is_null() {
                // SAFETY: as above.
                let old = unsafe { &*t.old };
                if let Some(node) = store.probe(old, hash, &mut eq) {
                    return Some(node);
                }
                // A migration may have moved the entry after the first look: it stores the
                // entry in the live table before it empties the old bucket.
                if let Some(node) = store.probe(cur, hash, &mut eq) {
                    return Some(node);
                }
            }
            // A miss on a pair that has since been replaced may have raced a migration's move.
            let again = store.tables.load(Ordering::SeqCst);
            if again == tables {
                return None;
            }
            tables = again;
        }
    }

    /// Whether the last [`find`](Self::find) saw the table growing (an old table being
    /// drained into a new one).
    #[inline]
    pub(crate) fn migrating(&self) -> bool {
        self.saw_old.get()
    }

    /// This section is a lookup that missed.
    #[inline]
    pub(crate) fn miss(&self) {
        self.guard.miss();
    }

    /// This section is not a lookup.
    #[inline]
    pub(crate) fn uncounted(&self) {
        self.guard.uncounted();
    }

    /// Records a hit on `id` for the policy; `true` asks for a drain (see `ReadGuard::record`).
    #[inline]
    pub(crate) fn record(&self, id: EntryId) -> bool {
        self.guard.record(id)
    }

    /// See [`ReadGuard::record_if`].
    #[inline]
    pub(crate) fn record_if(&self, id: EntryId, take: bool) -> bool {
        self.guard.record_if(id, take)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A value that counts its live instances.
    struct Counted(u64, Arc<AtomicUsize>);

    impl Counted {
        fn new(v: u64, live: &Arc<AtomicUsize>) -> Self {
            live.fetch_add(1, Ordering::Relaxed);
            Self(v, Arc::clone(live))
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Few distinct fragments, so that probe sequences collide.
    fn fragment(key: u64) -> u32 {
        (key % 7) as u32
    }

    fn node(key: u64, v: u64, live: &Arc<AtomicUsize>) -> Node<u64, Counted> {
        Node::new(
            key,
            Counted::new(v, live),
            fragment(key),
            EntryId::new(key as u32),
            0,
        )
    }

    #[test]
    fn agrees_with_a_map_through_growth_removal_and_clear() {
        let live = Arc::new(AtomicUsize::new(0));
        let ops = if cfg!(miri) { 600 } else { 20_000 };
        {
            let (store, mut w) = Store::<u64, Counted>::new(64, 2);
            let mut model: HashMap<u64, (u32, u64)> = HashMap::new();
            let mut rng = 0x2545_F491_4F6C_DD1Du64;
            for op in 0..ops {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let key = rng % 200;
                match rng >> 60 {
                    0..=8 => match model.get(&key) {
                        Some(&(index, _)) => {
                            let new = store.replace(&mut w, index, node(key, op, &live));
                            model.insert(key, (new, op));
                        }
                        None => {
                            let index = store.insert(&mut w, node(key, op, &live));
                            model.insert(key, (index, op));
                        }
                    },
                    9..=14 => {
                        if let Some((index, _)) = model.remove(&key) {
                            store.remove(&mut w, index);
                        }
                    }
                    _ => {
                        if op % 5 == 0 {
                            store.clear(&mut w);
                            model.clear();
                        }
                    }
                }
                store.reclaim(&mut w, drop);
                store.validate(&w).unwrap();
                assert_eq!(store.len(&w), model.len());
                assert_eq!(live.load(Ordering::Relaxed), model.len());
                let reader = store.enter();
                for k in [key, key + 1, key + 200] {
                    let found = reader.find(fragment(k), |&x| x == k).map(|n| n.value.0);
                    assert_eq!(
                        found,
                        model.get(&k).map(|&(_, v)| v),
                        "key {k} after op {op}"
                    );
                }
            }
        }
        assert_eq!(
            live.load(Ordering::Relaxed),
            0,
            "dropping the store drops every node"
        );
    }

    #[test]
    fn the_arena_is_flat_up_to_its_limit_then_grows_by_segments() {
        let (store, mut w) = Store::<u64, u64>::new(20, 1);
        let indices: Vec<u32> = (0..40)
            .map(|k| store.insert(&mut w, Node::new(k, k, k as u32, EntryId::new(0), 0)))
            .collect();
        store.reclaim(&mut w, drop);
        // The 20 slots of the limit in the flat segment, then segments of 16 and 32.
        assert_eq!(indices, (0..40).collect::<Vec<u32>>());
        assert_eq!(
            (store.flat, store.segment_len(1), store.segment_len(2)),
            (20, 16, 32)
        );
        assert_eq!(store.locate(19), (0, 19));
        assert_eq!(store.locate(20), (1, 0));
        assert_eq!(store.locate(36), (2, 0));
        store.validate(&w).unwrap();
    }

    #[test]
    fn an_unbounded_arena_grows_by_segments_from_the_start() {
        let (store, mut w) = Store::<u64, u64>::new(usize::MAX, 1);
        assert_eq!(store.flat, 0);
        let indices: Vec<u32> = (0..50)
            .map(|k| store.insert(&mut w, Node::new(k, k, k as u32, EntryId::new(0), 0)))
            .collect();
        assert_eq!(indices, (0..50).collect::<Vec<u32>>());
        assert_eq!(store.locate(15), (1, 15));
        assert_eq!(store.locate(16), (2, 0));
        assert_eq!(store.locate(48), (3, 0));
        store.reclaim(&mut w, drop);
        store.validate(&w).unwrap();
    }

    /// Past the flat segment's byte bound the arena has no flat segment: doubling segments
    /// from the start, the one that crosses the limit cut to size.
    #[test]
    fn an_arena_larger_than_the_flat_bound_grows_by_segments() {
        type Big = [u8; 1 << 12];
        let slot = size_of::<Slot<Node<Big, u64>>>();
        let (store, mut w) = Store::<Big, u64>::new(FLAT_BYTES / slot + 1, 1);
        assert_eq!(store.flat, 0);
        let limit = FLAT_BYTES / slot + 1;
        // Segments of 16, 32, 64, ... from index 0; the one that crosses `limit` is cut.
        let crossing = (0..SEGMENTS - 1)
            .find(|&s| segment_start(s) + (BASE << s) > limit)
            .unwrap();
        assert_eq!(
            store.segment_len(crossing + 1),
            limit - segment_start(crossing)
        );
        let indices: Vec<u32> = (0..40u64)
            .map(|k| {
                let mut key = [0u8; 1 << 12];
                key[..8].copy_from_slice(&k.to_le_bytes());
                store.insert(&mut w, Node::new(key, k, k as u32, EntryId::new(0), 0))
            })
            .collect();
        assert_eq!(indices, (0..40).collect::<Vec<u32>>());
        store.reclaim(&mut w, drop);
        store.validate(&w).unwrap();
    }

    #[test]
    fn the_flat_segment_is_the_limit_within_its_byte_bound_and_none_past_it() {
        assert_eq!(flat_len(1000, 32), 1000);
        assert_eq!(flat_len(FLAT_BYTES / 32, 32), FLAT_BYTES / 32);
        assert_eq!(flat_len(FLAT_BYTES / 32 + 1, 32), 0);
        assert_eq!(flat_len(usize::MAX, 32), 0);
    }

    #[test]
    fn readers_see_every_key_while_the_writer_churns() {
        let (store, mut w) = Store::<u64, Arc<u64>>::new(1024, 4);
        let keys = if cfg!(miri) { 40 } else { 1_000 };
        let rounds = if cfg!(miri) { 3 } else { 10 };
        // Even keys stay throughout (their values are replaced); odd keys come and go.
        let mut index: HashMap<u64, u32> = HashMap::new();
        for k in (0..keys).step_by(2) {
            let i = store.insert(
                &mut w,
                Node::new(k, Arc::new(k), fragment(k), EntryId::new(0), 0),
            );
            index.insert(k, i);
        }
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for t in 0..2 {
                let (store, stop) = (&store, &stop);
                s.spawn(move || {
                    let mut k = 2 * t;
                    while !stop.load(Ordering::Relaxed) {
                        k = (k + 2) % keys;
                        let reader = store.enter();
                        let found = reader.find(fragment(k), |&x| x == k);
                        let v = found.map(|n| Arc::clone(&n.value));
                        drop(reader);
                        assert_eq!(v.map(|v| *v), Some(k), "even key {k} missing");
                    }
                });
            }
            for _ in 0..rounds {
                for k in (1..keys).step_by(2) {
                    let i = store.insert(
                        &mut w,
                        Node::new(k, Arc::new(k), fragment(k), EntryId::new(0), 0),
                    );
                    index.insert(k, i);
                    store.reclaim(&mut w, drop);
                }
                for k in (0..keys).step_by(2) {
                    let old = index[&k];
                    let i = store.replace(
                        &mut w,
                        old,
                        Node::new(k, Arc::new(k), fragment(k), EntryId::new(0), 0),
                    );
                    index.insert(k, i);
                    store.reclaim(&mut w, drop);
                }
                for k in (1..keys).step_by(2) {
                    store.remove(&mut w, index.remove(&k).unwrap());
                    store.reclaim(&mut w, drop);
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        store.validate(&w).unwrap();
    }
}
