//! An intrusive doubly linked list threaded through slab indices, shared by [`Lru`](super::Lru)
//! and [`Fifo`](super::Fifo).
//!
//! Each entry's policy state is a [`Links`] (two `u32`s: 8 bytes); the list itself is a head
//! and a tail. Every operation is O(1) and needs no `unsafe`.

use super::{Entries, EntryId};

const NIL: u32 = u32::MAX;

/// Per-entry state of a list-based policy: the previous and next entry in the list.
///
/// Opaque: only the policy that owns the list reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Links {
    prev: u32,
    next: u32,
}

impl Default for Links {
    fn default() -> Self {
        Self {
            prev: NIL,
            next: NIL,
        }
    }
}

fn id(raw: u32) -> Option<EntryId> {
    (raw != NIL).then_some(EntryId::new(raw))
}

/// Head is the most recently pushed entry, tail the oldest.
#[derive(Debug, Clone, Copy)]
pub(crate) struct List {
    head: u32,
    tail: u32,
    len: usize,
}

impl Default for List {
    fn default() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }
}

impl List {
    pub(crate) fn tail(&self) -> Option<EntryId> {
        id(self.tail)
    }

    pub(crate) fn push_front(&mut self, e: EntryId, entries: &mut impl Entries<Links>) {
        let old_head = self.head;
        *entries.state_mut(e) = Links {
            prev: NIL,
            next: old_head,
        };
        match id(old_head) {
            Some(h) => entries.state_mut(h).prev = e.raw(),
            None => self.tail = e.raw(),
        }
        self.head = e.raw();
        self.len += 1;
    }

    pub(crate) fn unlink(&mut self, e: EntryId, entries: &mut impl Entries<Links>) {
        let Links { prev, next } = *entries.state(e);
        match id(prev) {
            Some(p) => entries.state_mut(p).next = next,
            None => self.head = next,
        }
        match id(next) {
            Some(n) => entries.state_mut(n).prev = prev,
            None => self.tail = prev,
        }
        *entries.state_mut(e) = Links::default();
        self.len -= 1;
    }

    pub(crate) fn move_to_front(&mut self, e: EntryId, entries: &mut impl Entries<Links>) {
        if self.head != e.raw() {
            self.unlink(e, entries);
            self.push_front(e, entries);
        }
    }

    /// Appends up to `limit` entries to `out`, from the head (most recently pushed) on.
    pub(crate) fn take_from_head(
        &self,
        entries: &impl Entries<Links>,
        limit: usize,
        out: &mut Vec<EntryId>,
    ) {
        let mut cur = id(self.head);
        for _ in 0..limit {
            let Some(e) = cur else { break };
            out.push(e);
            cur = id(entries.state(e).next);
        }
    }

    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// Walks the list both ways and checks it links exactly the live entries.
    pub(crate) fn validate(&self, entries: &impl Entries<Links>) -> Result<(), String> {
        if self.len != entries.len() {
            return Err(format!(
                "list holds {} entries, shard {}",
                self.len,
                entries.len()
            ));
        }
        let mut prev = NIL;
        let mut cur = self.head;
        let mut n = 0;
        while let Some(e) = id(cur) {
            if !entries.contains(e) {
                return Err(format!("list links vacant slot {e:?}"));
            }
            let links = entries.state(e);
            if links.prev != prev {
                return Err(format!("{e:?}.prev is {} not {prev}", links.prev));
            }
            n += 1;
            if n > self.len {
                return Err("list has a cycle".into());
            }
            prev = cur;
            cur = links.next;
        }
        if prev != self.tail {
            return Err(format!("tail is {} but the walk ends at {prev}", self.tail));
        }
        if n != self.len {
            return Err(format!("walked {n} entries, expected {}", self.len));
        }
        Ok(())
    }
}
