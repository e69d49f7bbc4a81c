//! The lossy per-shard buffer that lets LRU and LFU hits run under a shared lock.
//!
//! A reader holding the shard's shared lock claims a slot with one `fetch_add` and stores the
//! hit entry's id there. When the buffer fills, that reader replays the recorded ids into the
//! policy *while still holding the shared lock*: the policy and its per-entry states sit
//! behind a mutex of their own (see `Shard`), which the reader takes with `try_lock`, so other
//! readers keep reading the table and the slab while a drain runs, and never wait for it. Any
//! write also drains first, under the exclusive lock.
//!
//! Every id in the buffer is live when it is replayed: ids are recorded under the shared lock,
//! and the exclusive lock (the only place entries are removed) drains the whole buffer before
//! anything else, scanning every slot if a shared drain may have left a late store behind.
//!
//! Lossy by design, as in Caffeine and moka: when the buffer is full and another reader holds
//! the policy mutex, further hits are dropped from the policy's view (never from the hit
//! counts); a reader whose slot store lands after a concurrent drain read that slot leaves its
//! id for the next drain. One thread alone loses nothing and keeps the exact order: it always
//! wins its own `try_lock`.

use crate::shim::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use crate::policy::EntryId;

/// Hits recorded before a drain is attempted.
pub(crate) const ACCESS_BUFFER_LEN: usize = 64;

/// `repr(C)`: the claim counter first, next to the shard's lock word (see `Shard`).
#[repr(C)]
pub(crate) struct AccessBuffer {
    /// Slots claimed since the last drain; may run past the length while the buffer is full.
    claimed: AtomicUsize,
    /// Set by a drain under the shared lock: a slot past the drained range may hold a late
    /// store, so the next exclusive drain scans every slot.
    strays: AtomicBool,
    /// `id + 1` per recorded hit; 0 is empty.
    slots: [AtomicU32; ACCESS_BUFFER_LEN],
}

impl AccessBuffer {
    pub(crate) fn new() -> Self {
        Self {
            claimed: AtomicUsize::new(0),
            strays: AtomicBool::new(false),
            slots: [const { AtomicU32::new(0) }; ACCESS_BUFFER_LEN],
        }
    }

    /// Records a hit on `id`. Returns `true` when this hit filled the buffer, or found it
    /// full at a multiple of the length (so that a reader retries a failed drain now and
    /// then, not on every hit). Must be called under the shard's shared lock.
    #[inline]
    pub(crate) fn push(&self, id: EntryId) -> bool {
        let at = self.claimed.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = self.slots.get(at) {
            slot.store(id.encoded(), Ordering::Relaxed);
            at + 1 == ACCESS_BUFFER_LEN
        } else {
            (at + 1).is_multiple_of(ACCESS_BUFFER_LEN)
        }
    }

    /// Replays and clears the recorded hits under the shared lock (the caller holds the
    /// policy's mutex, so drains never overlap). Returns how many hits were pushed since the
    /// previous drain, including those dropped while the buffer was full: the shard counts
    /// its hits this way, without a second atomic per hit.
    pub(crate) fn drain_shared(&self, mut apply: impl FnMut(EntryId)) -> u64 {
        let claimed = self.claimed.swap(0, Ordering::Relaxed);
        for slot in &self.slots[..claimed.min(ACCESS_BUFFER_LEN)] {
            // A plain load and store, not a swap: a store racing in between is a lost hit,
            // which a lossy buffer allows, and it saves an atomic read-modify-write per slot.
            if let Some(id) = EntryId::from_encoded(slot.load(Ordering::Relaxed)) {
                slot.store(0, Ordering::Relaxed);
                apply(id);
            }
        }
        self.strays.store(true, Ordering::Relaxed);
        claimed as u64
    }

    /// [`drain_shared`](Self::drain_shared) under the exclusive lock: no push is in flight.
    pub(crate) fn drain(&mut self, mut apply: impl FnMut(EntryId)) -> u64 {
        let claimed = std::mem::take(self.claimed.get_mut());
        let strays = std::mem::take(self.strays.get_mut());
        let n = if strays {
            ACCESS_BUFFER_LEN
        } else {
            claimed.min(ACCESS_BUFFER_LEN)
        };
        for slot in &mut self.slots[..n] {
            if let Some(id) = EntryId::from_encoded(std::mem::take(slot.get_mut())) {
                apply(id);
            }
        }
        claimed as u64
    }

    /// Hits pushed since the last drain (readable under the shared lock).
    pub(crate) fn claimed(&self) -> u64 {
        self.claimed.load(Ordering::Relaxed) as u64
    }

    /// Recorded hits waiting for a drain.
    pub(crate) fn pending(&self) -> usize {
        self.claimed.load(Ordering::Relaxed).min(ACCESS_BUFFER_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_in_order_and_reports_full() {
        let mut b = AccessBuffer::new();
        for i in 0..ACCESS_BUFFER_LEN as u32 - 1 {
            assert!(!b.push(EntryId::new(i)));
        }
        assert!(b.push(EntryId::new(999)));
        // Past the end, one push in LEN asks for a drain again.
        let asks = (0..ACCESS_BUFFER_LEN)
            .filter(|_| b.push(EntryId::new(1000)))
            .count();
        assert_eq!(asks, 1);
        let mut seen = Vec::new();
        let pushed = 2 * ACCESS_BUFFER_LEN as u64;
        assert_eq!(b.claimed(), pushed);
        assert_eq!(b.drain(|id| seen.push(id.raw())), pushed);
        assert_eq!(seen.len(), ACCESS_BUFFER_LEN);
        assert_eq!(seen[0], 0);
        assert_eq!(*seen.last().unwrap(), 999);
        assert_eq!(b.pending(), 0);
        assert_eq!(b.drain(|_| panic!("empty")), 0);
    }

    #[test]
    fn shared_drain_then_exclusive_drain_finds_late_stores() {
        let mut b = AccessBuffer::new();
        b.push(EntryId::new(3));
        b.push(EntryId::new(4));
        let mut seen = Vec::new();
        assert_eq!(b.drain_shared(|id| seen.push(id.raw())), 2);
        assert_eq!(seen, [3, 4]);
        // A reader that claimed slot 9 before the drain stores after it.
        b.slots[9].store(8, Ordering::Relaxed);
        seen.clear();
        assert_eq!(b.drain(|id| seen.push(id.raw())), 0);
        assert_eq!(
            seen,
            [7],
            "the exclusive drain scans every slot after a shared one"
        );
        assert_eq!(b.drain(|_| panic!("empty")), 0);
    }
}
