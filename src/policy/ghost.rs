//! A bounded FIFO of hash fragments with O(1) membership: S3-FIFO's ghost queue, and the
//! ghost of the candidates W-TinyLFU turned away.

use std::collections::VecDeque;

use hashbrown::HashTable;

/// The table hash of a fragment: fragments are already uniform, one multiplication spreads
/// them over the high bits that hashbrown's control bytes use.
fn ghost_hash(fragment: u32) -> u64 {
    u64::from(fragment).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A bounded FIFO of hash fragments (S3-FIFO: of entries evicted from its small queue), with
/// O(1) membership.
///
/// Records are numbered by a wrapping sequence number; `ring[i]` has number `first + i`. The
/// table maps each remembered fragment to the number of its latest record. Consuming a
/// fragment (a newcomer found it) removes it from the table and leaves its records in the
/// ring; popping a record removes its fragment from the table only if the table points at
/// that very record, so older duplicates and consumed records fall out silently.
#[derive(Debug, Clone, Default)]
pub(super) struct Ghost {
    ring: VecDeque<u32>,
    first: u32,
    latest: HashTable<(u32, u32)>,
    /// The bound applied at the last push.
    limit: usize,
}

impl Ghost {
    pub(super) fn push(&mut self, fragment: u32, limit: usize) {
        self.limit = limit;
        let seq = self.first.wrapping_add(self.ring.len() as u32);
        self.ring.push_back(fragment);
        match self
            .latest
            .find_mut(ghost_hash(fragment), |&(f, _)| f == fragment)
        {
            Some(record) => record.1 = seq,
            None => {
                self.latest
                    .insert_unique(ghost_hash(fragment), (fragment, seq), |&(f, _)| {
                        ghost_hash(f)
                    });
            }
        }
        while self.ring.len() > limit {
            self.pop();
        }
    }

    fn pop(&mut self) {
        let Some(fragment) = self.ring.pop_front() else {
            return;
        };
        let seq = self.first;
        self.first = self.first.wrapping_add(1);
        if let Ok(found) = self
            .latest
            .find_entry(ghost_hash(fragment), |&r| r == (fragment, seq))
        {
            found.remove();
        }
    }

    /// Whether `fragment` is remembered; if so, forgets it.
    pub(super) fn take(&mut self, fragment: u32) -> bool {
        self.latest
            .find_entry(ghost_hash(fragment), |&(f, _)| f == fragment)
            .map(|found| found.remove())
            .is_ok()
    }

    #[cfg(test)]
    pub(super) fn contains(&self, fragment: u32) -> bool {
        self.latest
            .find(ghost_hash(fragment), |&(f, _)| f == fragment)
            .is_some()
    }

    pub(super) fn clear(&mut self) {
        *self = Self::default();
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if self.ring.len() > self.limit {
            return Err(format!(
                "ghost holds {} records, bound {}",
                self.ring.len(),
                self.limit
            ));
        }
        if self.latest.len() > self.ring.len() {
            return Err(format!(
                "ghost table has {} fragments for {} records",
                self.latest.len(),
                self.ring.len()
            ));
        }
        let mut last = std::collections::HashMap::new();
        for (i, &f) in self.ring.iter().enumerate() {
            last.insert(f, i);
        }
        for &(f, seq) in &self.latest {
            let at = seq.wrapping_sub(self.first) as usize;
            if last.get(&f) != Some(&at) {
                return Err(format!(
                    "ghost table points {f:#x} at record {at}, its latest is {:?}",
                    last.get(&f)
                ));
            }
        }
        Ok(())
    }

    /// Records held (consumed ones included, until they fall out).
    pub(super) fn len(&self) -> usize {
        self.ring.len()
    }

    /// The bound applied at the last push.
    #[cfg(test)]
    pub(super) fn limit(&self) -> usize {
        self.limit
    }
}
