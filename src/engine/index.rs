//! The shard's hash index: slab ids by hash, grown a few buckets at a time.
//!
//! A `hashbrown::HashTable` that runs out of room rehashes every entry at once. Under a
//! shard's exclusive lock that is a stall for every caller of the shard: 189 ms for the
//! insert that took one shard to 3,670,016 entries (its table's 7/8 load), 79 ms at
//! 1,835,008 (`docs/benchmarks.md`, *Write stalls*). [`Index`] grows as Redis's `dict` does:
//! when its table is full, a table of twice the room takes its place and the old one is drained
//! into it [`MIGRATE_BUCKETS`] buckets per insert, while lookups and removals look in both.
//! The old table is never inserted into, and hashbrown never moves an item on removal, so a
//! bucket once drained stays empty and the cursor's sweep finishes it.
//!
//! The index stores slab ids (`u32`) only; every hash comes from the caller (the stored hash
//! fragment of the entry), never from `Hash`, so no user code runs here.

use hashbrown::HashTable;

/// Buckets of the old table drained per insert. An old table of `b` buckets (holding at most
/// `7b/8` ids) is empty after `b / 32` inserts, by which time the new table, with room for
/// twice the old table's ids, holds at most `7b/8 + b/32` of them: it never fills (and so
/// never rehashes) before the migration ends. The cost is at most 32 moves in one insert;
/// with 8 the old table lived 4 times as long, and a 1M-entry cache measured right after
/// filling (8 shards of 125,000, each in mid-migration) carried 5.3 more bytes per entry.
pub(crate) const MIGRATE_BUCKETS: usize = 32;

/// Slab ids by hash: the live table, and while it grows the table it replaced.
#[derive(Debug, Default)]
pub(crate) struct Index {
    table: HashTable<u32>,
    /// The table being drained into `table` (empty, unallocated, when no migration runs).
    old: HashTable<u32>,
    /// The next bucket of `old` to drain.
    cursor: usize,
}

impl Index {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Ids held.
    pub(crate) fn len(&self) -> usize {
        self.table.len() + self.old.len()
    }

    /// Whether an old table is being drained.
    pub(crate) fn is_migrating(&self) -> bool {
        !self.old.is_empty()
    }

    /// The id under `hash` that `eq` accepts.
    #[inline]
    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if let Some(&id) = self.table.find(hash, |&i| eq(i)) {
            return Some(id);
        }
        if self.old.is_empty() {
            return None;
        }
        self.old.find(hash, |&i| eq(i)).copied()
    }

    /// Removes `id`, stored under `hash`. Returns whether it was there.
    pub(crate) fn remove(&mut self, hash: u64, id: u32) -> bool {
        if let Ok(found) = self.table.find_entry(hash, |&i| i == id) {
            found.remove();
            return true;
        }
        if let Ok(found) = self.old.find_entry(hash, |&i| i == id) {
            found.remove();
            if self.old.is_empty() {
                self.finish();
            }
            return true;
        }
        false
    }

    /// Makes room for one more id, before the caller creates it: starts a migration when the
    /// table is full, else drains the next buckets of a running one. `hash_of` gives the hash
    /// of any id the index holds. Allocates here, if anywhere, so that [`insert`](Self::insert)
    /// does not (a failed allocation leaves the index as it was).
    #[inline]
    pub(crate) fn reserve_one(&mut self, hash_of: impl Fn(u32) -> u64) {
        if self.is_migrating() || self.table.len() == self.table.capacity() {
            self.grow(&hash_of);
        }
    }

    /// The slow part of [`reserve_one`](Self::reserve_one), out of the insert path's way.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, hash_of: &impl Fn(u32) -> u64) {
        if self.is_migrating() {
            self.migrate(hash_of);
        } else if !self.table.is_empty() {
            let room = self.table.capacity() * 2;
            self.old = std::mem::replace(&mut self.table, HashTable::with_capacity(room));
            self.cursor = 0;
            self.migrate(hash_of);
        }
        // An empty table, or a new table that filled before its migration ended (not
        // expected; see `MIGRATE_BUCKETS`), grows the ordinary way.
        self.table.reserve(1, |&i| hash_of(i));
    }

    /// Adds `id` under `hash`, after [`reserve_one`](Self::reserve_one). `id` must not be held.
    pub(crate) fn insert(&mut self, hash: u64, id: u32, hash_of: impl Fn(u32) -> u64) {
        self.table.insert_unique(hash, id, |&i| hash_of(i));
    }

    /// Moves the next [`MIGRATE_BUCKETS`] buckets of the old table to the live one.
    fn migrate(&mut self, hash_of: &impl Fn(u32) -> u64) {
        let end = (self.cursor + MIGRATE_BUCKETS).min(self.old.num_buckets());
        for bucket in self.cursor..end {
            if let Ok(found) = self.old.get_bucket_entry(bucket) {
                let (id, _) = found.remove();
                self.table.insert_unique(hash_of(id), id, |&i| hash_of(i));
            }
        }
        self.cursor = end;
        if self.old.is_empty() {
            self.finish();
        }
    }

    /// Frees the drained old table.
    fn finish(&mut self) {
        self.old = HashTable::new();
        self.cursor = 0;
    }

    pub(crate) fn clear(&mut self) {
        self.table.clear();
        self.finish();
    }

    /// Every id held, in no order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.table.iter().chain(self.old.iter()).copied()
    }

    /// Bytes allocated by both tables.
    pub(crate) fn allocation_size(&self) -> usize {
        self.table.allocation_size() + self.old.allocation_size()
    }

    /// Checks the migration's own invariants: the old table's buckets before the cursor are
    /// drained, and an idle index holds no old table.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !self.is_migrating() {
            if self.cursor != 0 || self.old.allocation_size() != 0 {
                return Err(format!(
                    "no migration, yet cursor {} and {} bytes of old table",
                    self.cursor,
                    self.old.allocation_size()
                ));
            }
            return Ok(());
        }
        if let Some(bucket) = (0..self.cursor).find(|&b| self.old.get_bucket(b).is_some()) {
            return Err(format!(
                "old bucket {bucket} holds an id behind the cursor {}",
                self.cursor
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    /// A hash with many collisions, so that lookups walk probe sequences.
    fn hash_of(id: u32) -> u64 {
        u64::from(id % 97).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32),
        Remove(u32),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u32..400).prop_map(Op::Insert),
            3 => (0u32..400).prop_map(Op::Remove),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        // Under miri (CI runs this module's tests there), a few cases: it checks the hashbrown
        // code the migration calls, not the logic, which the full run covers.
        #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 2 } else { 256 }))]

        /// Against a `HashSet`: every id inserted and not removed is found, every other id is
        /// not, and the invariants hold after every operation, across many migrations.
        #[test]
        fn matches_a_set(ops in prop::collection::vec(op(), 1..2_000)) {
            let mut index = Index::new();
            let mut model: HashSet<u32> = HashSet::new();
            for op in ops {
                match op {
                    Op::Insert(id) => {
                        if model.insert(id) {
                            index.reserve_one(hash_of);
                            index.insert(hash_of(id), id, hash_of);
                        }
                    }
                    Op::Remove(id) => {
                        prop_assert_eq!(index.remove(hash_of(id), id), model.remove(&id));
                    }
                    Op::Clear => {
                        index.clear();
                        model.clear();
                    }
                }
                index.validate().map_err(TestCaseError::fail)?;
                prop_assert_eq!(index.len(), model.len());
                for id in [0, 1, 96, 97, 193, 399] {
                    prop_assert_eq!(index.find(hash_of(id), |i| i == id).is_some(), model.contains(&id));
                }
            }
            let mut held: Vec<u32> = index.iter().collect();
            held.sort_unstable();
            let mut expected: Vec<u32> = model.iter().copied().collect();
            expected.sort_unstable();
            prop_assert_eq!(held, expected);
        }
    }

    /// The table grows by migration: no insert rehashes more than `MIGRATE_BUCKETS` buckets'
    /// worth of ids, each migration ends before the next table fills, and the old table is
    /// freed at the end.
    #[test]
    fn growth_moves_a_few_buckets_per_insert() {
        let hash_of = |id: u32| u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut index = Index::new();
        let mut migrations = 0;
        let n: u32 = if cfg!(miri) { 3_000 } else { 100_000 };
        for id in 0..n {
            let (old_before, room_before) = (index.old.len(), index.table.capacity());
            index.reserve_one(hash_of);
            index.insert(hash_of(id), id, hash_of);
            let moved = old_before.saturating_sub(index.old.len());
            assert!(moved <= MIGRATE_BUCKETS, "insert {id} moved {moved} ids");
            if old_before == 0 && index.is_migrating() {
                migrations += 1;
            }
            if old_before > 0 {
                assert_eq!(
                    index.table.capacity(),
                    room_before,
                    "insert {id}: the live table rehashed during a migration"
                );
            }
        }
        index.validate().unwrap();
        assert!(migrations >= 5, "{migrations} migrations");
        // Drain the last migration and check that the old table is freed.
        let mut id = n;
        while index.is_migrating() {
            index.reserve_one(hash_of);
            index.insert(hash_of(id), id, hash_of);
            id += 1;
        }
        assert_eq!(index.old.allocation_size(), 0);
        assert_eq!(index.len(), id as usize);
        for probe in (0..id).step_by(997) {
            assert_eq!(index.find(hash_of(probe), |i| i == probe), Some(probe));
        }
    }
}
