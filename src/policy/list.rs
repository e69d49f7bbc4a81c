//! The one intrusive doubly linked list of the crate's policies, threaded through slab
//! indices: [`Lru`](super::Lru) and [`Fifo`](super::Fifo) keep one, [`S3Fifo`](super::S3Fifo)
//! two (small and main), [`WTinyLfu`](super::WTinyLfu) three (window, probation, protected).
//!
//! The list itself is a head, a tail and a length; the links live in each entry's policy
//! state, which says how through [`Linked`]: [`Links`] (two optional ids: 8 bytes) is the whole
//! state of `Lru` and `Fifo`, while S3-FIFO and W-TinyLFU keep theirs next to the entry's
//! segment. Every operation is O(1) (but the walks) and needs no `unsafe`.

use super::{Entries, EntryId};

/// A policy state that links its entry into a [`List`]: the entry's neighbours toward the
/// head (`prev`) and toward the tail (`next`). `me` is the entry whose state this is, for
/// states that mark a list's end by linking an entry to itself.
///
/// A state given to [`List::push_front`] must already hold a node (its links are then set);
/// [`List::unlink`] leaves the state's links stale for the policy to clear or reuse.
pub(crate) trait Linked {
    fn prev(&self, me: EntryId) -> Option<EntryId>;
    fn next(&self, me: EntryId) -> Option<EntryId>;
    fn set_prev(&mut self, me: EntryId, prev: Option<EntryId>);
    fn set_next(&mut self, me: EntryId, next: Option<EntryId>);
}

/// Per-entry state of a list-based policy: the previous and next entry in the list. 8 bytes
/// (an id's niche makes `Option<EntryId>` 4).
///
/// Opaque: only the policy that owns the list reads it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Links {
    prev: Option<EntryId>,
    next: Option<EntryId>,
}

impl Linked for Links {
    #[inline]
    fn prev(&self, _: EntryId) -> Option<EntryId> {
        self.prev
    }
    #[inline]
    fn next(&self, _: EntryId) -> Option<EntryId> {
        self.next
    }
    #[inline]
    fn set_prev(&mut self, _: EntryId, prev: Option<EntryId>) {
        self.prev = prev;
    }
    #[inline]
    fn set_next(&mut self, _: EntryId, next: Option<EntryId>) {
        self.next = next;
    }
}

/// The links of a state that holds more than its place in a list (S3-FIFO's and
/// W-TinyLFU's nodes, which also carry the entry's segment): a list's end links the entry to
/// itself, so no sentinel id is needed and `Option` around the node keeps "in no list" free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SelfLinks {
    prev: EntryId,
    next: EntryId,
}

impl SelfLinks {
    /// The links of `me` before [`List::push_front`] sets them.
    pub(crate) fn unlinked(me: EntryId) -> Self {
        Self { prev: me, next: me }
    }
}

/// A state whose node holds [`SelfLinks`]; the accessors panic if the entry has no node (it
/// is in no list).
pub(crate) trait HasLinks {
    fn links(&self) -> &SelfLinks;
    fn links_mut(&mut self) -> &mut SelfLinks;
}

impl<T: HasLinks> Linked for T {
    #[inline]
    fn prev(&self, me: EntryId) -> Option<EntryId> {
        let prev = self.links().prev;
        (prev != me).then_some(prev)
    }
    #[inline]
    fn next(&self, me: EntryId) -> Option<EntryId> {
        let next = self.links().next;
        (next != me).then_some(next)
    }
    #[inline]
    fn set_prev(&mut self, me: EntryId, prev: Option<EntryId>) {
        self.links_mut().prev = prev.unwrap_or(me);
    }
    #[inline]
    fn set_next(&mut self, me: EntryId, next: Option<EntryId>) {
        self.links_mut().next = next.unwrap_or(me);
    }
}

/// Head is the most recently pushed (or moved) entry, tail the oldest.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct List {
    head: Option<EntryId>,
    tail: Option<EntryId>,
    len: usize,
}

impl List {
    #[inline]
    pub(crate) fn tail(&self) -> Option<EntryId> {
        self.tail
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Links `e`, whose state holds a node in no list, at the head.
    #[inline]
    pub(crate) fn push_front<S: Linked>(&mut self, e: EntryId, entries: &mut impl Entries<S>) {
        let old_head = self.head;
        let state = entries.state_mut(e);
        state.set_prev(e, None);
        state.set_next(e, old_head);
        match old_head {
            Some(h) => entries.state_mut(h).set_prev(h, Some(e)),
            None => self.tail = Some(e),
        }
        self.head = Some(e);
        self.len += 1;
    }

    /// Takes `e` out of the list; its own links are left stale.
    #[inline]
    pub(crate) fn unlink<S: Linked>(&mut self, e: EntryId, entries: &mut impl Entries<S>) {
        let state = entries.state(e);
        let (prev, next) = (state.prev(e), state.next(e));
        match prev {
            Some(p) => entries.state_mut(p).set_next(p, next),
            None => self.head = next,
        }
        match next {
            Some(n) => entries.state_mut(n).set_prev(n, prev),
            None => self.tail = prev,
        }
        self.len -= 1;
    }

    /// Moves `e`, which this list holds, to the head: [`unlink`](Self::unlink) then
    /// [`push_front`](Self::push_front) without the length updates that cancel out. Nothing to
    /// do at the head already.
    #[inline]
    pub(crate) fn move_to_front<S: Linked>(&mut self, e: EntryId, entries: &mut impl Entries<S>) {
        let Some(head) = self.head.filter(|&head| head != e) else {
            return;
        };
        let state = entries.state(e);
        // Not the head, so it has a predecessor.
        let (prev, next) = (state.prev(e), state.next(e));
        let prev = prev.expect("an entry behind the head has a predecessor");
        entries.state_mut(prev).set_next(prev, next);
        match next {
            Some(n) => entries.state_mut(n).set_prev(n, Some(prev)),
            None => self.tail = Some(prev),
        }
        let state = entries.state_mut(e);
        state.set_prev(e, None);
        state.set_next(e, Some(head));
        entries.state_mut(head).set_prev(head, Some(e));
        self.head = Some(e);
    }

    /// The entries from the head (most recently pushed) to the tail.
    pub(crate) fn iter<'a, S: Linked>(
        &self,
        entries: &'a impl Entries<S>,
    ) -> impl Iterator<Item = EntryId> + 'a {
        std::iter::successors(self.head, move |&e| entries.state(e).next(e)).take(self.len)
    }

    /// The entries from the tail (the oldest) to the head.
    #[cfg(test)]
    pub(crate) fn iter_from_tail<'a, S: Linked>(
        &self,
        entries: &'a impl Entries<S>,
    ) -> impl Iterator<Item = EntryId> + 'a {
        std::iter::successors(self.tail, move |&e| entries.state(e).prev(e)).take(self.len)
    }

    /// Appends up to `limit` entries to `out`, from the head on.
    pub(crate) fn take_from_head<S: Linked>(
        &self,
        entries: &impl Entries<S>,
        limit: usize,
        out: &mut Vec<EntryId>,
    ) {
        out.extend(self.iter(entries).take(limit));
    }

    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// [`validate`](Self::validate) for a list that links every live entry (`Lru`, `Fifo`).
    pub(crate) fn validate_all<S: Linked>(&self, entries: &impl Entries<S>) -> Result<(), String> {
        if self.len != entries.len() {
            return Err(format!(
                "list holds {} entries, shard {}",
                self.len,
                entries.len()
            ));
        }
        self.validate(entries, |_| Ok(()))
    }

    /// Walks the list from the head and checks every link, that it links only live entries,
    /// the tail and the length; `each` checks each entry besides (its segment, say).
    pub(crate) fn validate<S: Linked>(
        &self,
        entries: &impl Entries<S>,
        mut each: impl FnMut(EntryId) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut prev = None;
        let mut cur = self.head;
        let mut n = 0;
        while let Some(e) = cur {
            if !entries.contains(e) {
                return Err(format!("list links vacant slot {e:?}"));
            }
            let state = entries.state(e);
            if state.prev(e) != prev {
                return Err(format!(
                    "{e:?}.prev is {:?}, the walk came from {prev:?}",
                    state.prev(e)
                ));
            }
            n += 1;
            if n > self.len {
                return Err(format!("list is longer than its length {}", self.len));
            }
            each(e)?;
            prev = cur;
            cur = state.next(e);
        }
        if prev != self.tail {
            return Err(format!(
                "tail is {:?} but the walk ends at {prev:?}",
                self.tail
            ));
        }
        if n != self.len {
            return Err(format!("walked {n} entries, length {}", self.len));
        }
        Ok(())
    }
}
