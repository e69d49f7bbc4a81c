//! The lossy per-shard buffer that lets LRU and LFU hits run under a shared lock.
//!
//! A reader holding the shard's shared lock claims a slot with one `fetch_add` and stores the
//! hit entry's id there. Whoever next holds the exclusive lock (the reader that filled the
//! buffer, via `try_write`, or any write) replays the recorded ids into the policy in order and
//! resets the buffer. Because pushes happen only under the shared lock and drains only under
//! the exclusive lock, a drain never races a push, and every id it sees is still live.
//!
//! When the buffer is full and the exclusive lock is busy, further hits are dropped: the
//! policy's order becomes approximate under contention, exactly as in Caffeine and moka, while
//! one thread alone loses nothing (it always wins its own `try_write`).

use crate::shim::{AtomicU32, AtomicUsize, Ordering};

use crate::policy::EntryId;

/// Hits recorded before a drain is attempted.
pub(crate) const ACCESS_BUFFER_LEN: usize = 64;

pub(crate) struct AccessBuffer {
    /// `id + 1` per recorded hit; 0 is empty.
    slots: [AtomicU32; ACCESS_BUFFER_LEN],
    /// Slots claimed so far; may run past the length while the buffer is full.
    claimed: AtomicUsize,
}

impl AccessBuffer {
    pub(crate) fn new() -> Self {
        Self {
            slots: [const { AtomicU32::new(0) }; ACCESS_BUFFER_LEN],
            claimed: AtomicUsize::new(0),
        }
    }

    /// Records a hit on `id`. Returns `true` when the buffer is now full and should be drained.
    /// Must be called under the shard's shared lock.
    #[inline]
    pub(crate) fn push(&self, id: EntryId) -> bool {
        let at = self.claimed.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = self.slots.get(at) {
            slot.store(id.0.wrapping_add(1), Ordering::Relaxed);
            at + 1 == ACCESS_BUFFER_LEN
        } else {
            true
        }
    }

    /// Replays and clears the recorded hits. Takes `&mut self`: the caller holds the exclusive
    /// lock, so no push is in flight. Returns how many hits were pushed since the last drain,
    /// including those dropped while the buffer was full: the shard counts its hits this way,
    /// without a second atomic per hit.
    pub(crate) fn drain(&mut self, mut apply: impl FnMut(EntryId)) -> u64 {
        let claimed = *self.claimed.get_mut();
        let n = claimed.min(ACCESS_BUFFER_LEN);
        if n == 0 {
            return 0;
        }
        for slot in &mut self.slots[..n] {
            let raw = std::mem::take(slot.get_mut());
            if raw != 0 {
                apply(EntryId(raw - 1));
            }
        }
        *self.claimed.get_mut() = 0;
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
            assert!(!b.push(EntryId(i)));
        }
        assert!(b.push(EntryId(999)));
        assert!(b.push(EntryId(1000)), "overflow asks for a drain");
        let mut seen = Vec::new();
        assert_eq!(b.claimed(), ACCESS_BUFFER_LEN as u64 + 1);
        assert_eq!(b.drain(|id| seen.push(id.0)), ACCESS_BUFFER_LEN as u64 + 1);
        assert_eq!(seen.len(), ACCESS_BUFFER_LEN);
        assert_eq!(seen[0], 0);
        assert_eq!(*seen.last().unwrap(), 999);
        assert_eq!(b.pending(), 0);
        assert_eq!(b.drain(|_| panic!("empty")), 0);
    }
}
