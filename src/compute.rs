//! [`Cache::compute`]: read, decide and write one key, atomically with respect to every other
//! `compute` and [`get_or_insert_with`](Cache::get_or_insert_with) of that key.
//!
//! It takes the same per-key slot those coalesced inits use (`src/inits.rs`): the caller leads
//! the key's slot or waits for its leader, then reads the current value, runs the closure and
//! writes what it decided, all outside every shard lock (the closure is user code). Releasing
//! the slot makes the callers that waited on it try again, so they see the new value.

use std::hash::{BuildHasher, Hash};
use std::time::Duration;

use crate::Cache;
use crate::policy::EvictionPolicy;

/// What a [`Cache::compute`] closure decides for its key.
///
/// # Example
///
/// ```
/// use aside::Compute;
/// let counter = |current: Option<u64>| Compute::Put(current.unwrap_or(0) + 1);
/// assert_eq!(counter(Some(41)), Compute::Put(42));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compute<V> {
    /// Store this value: insert it, or replace the current one. A new entry then faces the
    /// policy's admission as any [`insert`](Cache::insert) does.
    Put(V),
    /// As [`Put`](Self::Put), with this entry's own time to live
    /// ([`insert_with_ttl`](Cache::insert_with_ttl)).
    PutWithTtl(V, Duration),
    /// Remove the entry, if there is one.
    Remove,
    /// Leave everything as it is.
    Keep,
}

/// What [`Cache::compute`] did.
///
/// # Example
///
/// ```
/// use aside::{Compute, Computed};
/// let cache: aside::Cache<&str, u32> = aside::Cache::new(10);
/// assert_eq!(cache.compute("a", |_| Compute::Put(1)), Computed::Inserted(1));
/// assert_eq!(
///     cache.compute("a", |v| Compute::Put(v.unwrap() + 1)),
///     Computed::Updated { old: 1, new: 2 }
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Computed<V> {
    /// There was no live entry; this value was stored.
    Inserted(V),
    /// The entry's value `old` was replaced with `new`.
    Updated {
        /// The value the closure saw.
        old: V,
        /// The value it stored.
        new: V,
    },
    /// The entry was removed; this was its value.
    Removed(V),
    /// Nothing changed; the current value, if there is one.
    Unchanged(Option<V>),
}

impl<K, V, P, S> Cache<K, V, P, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    P: EvictionPolicy,
    S: BuildHasher,
{
    /// Reads `key`'s value, lets `f` decide what becomes of it (put a new value, remove the
    /// entry, or keep it) and does that, atomically with respect to every other `compute` and
    /// [`get_or_insert_with`](Self::get_or_insert_with) of the same key: concurrent calls for
    /// one key run one after another, each seeing what the previous one wrote, so read-modify-
    /// write updates (counters, appends) lose nothing. moka's `and_compute_with`.
    ///
    /// `f` gets a clone of the live value (`None` if there is none or it has expired) and runs
    /// outside every shard lock. The read does not count as a hit and does not touch the
    /// policy; the write is an ordinary insert or remove (listener, weigher and admission
    /// included).
    ///
    /// Not atomic with respect to plain writes of the key: an [`insert`](Self::insert) or
    /// [`remove`](Self::remove) that runs while `f` does is overwritten or undone by what `f`
    /// decides, as in moka.
    ///
    /// # Panics
    ///
    /// If `f` panics, the panic propagates, the cache is unchanged and the key's other callers
    /// go on. If `f` calls `compute` or `get_or_insert_with` for the same key on the same
    /// thread, that inner call panics instead of waiting for itself forever.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::{Compute, Computed};
    /// use std::sync::Arc;
    ///
    /// let hits: aside::Cache<&str, u64> = aside::Cache::new(100);
    /// std::thread::scope(|s| {
    ///     for _ in 0..4 {
    ///         s.spawn(|| {
    ///             for _ in 0..250 {
    ///                 hits.compute("/", |n| Compute::Put(n.unwrap_or(0) + 1));
    ///             }
    ///         });
    ///     }
    /// });
    /// assert_eq!(hits.get(&"/"), Some(1000));
    ///
    /// // Remove when a condition holds.
    /// let removed = hits.compute("/", |n| if n > Some(999) { Compute::Remove } else { Compute::Keep });
    /// assert_eq!(removed, Computed::Removed(1000));
    /// ```
    pub fn compute(&self, key: K, f: impl FnOnce(Option<V>) -> Compute<V>) -> Computed<V> {
        // Released on every path, a panic included: the callers waiting on the key then look
        // again and see what this call wrote (or that it wrote nothing).
        let _slot = self.lead_key(&key);
        let current = self.peek(&key);
        match (f(current.clone()), current) {
            (Compute::Put(new), old) => {
                self.insert(key, new.clone());
                Self::put(old, new)
            }
            (Compute::PutWithTtl(new, ttl), old) => {
                self.insert_with_ttl(key, new.clone(), ttl);
                Self::put(old, new)
            }
            (Compute::Remove, Some(_)) => match self.remove(&key) {
                Some(old) => Computed::Removed(old),
                // Removed meanwhile by a plain write.
                None => Computed::Unchanged(None),
            },
            (Compute::Remove, None) => Computed::Unchanged(None),
            (Compute::Keep, current) => Computed::Unchanged(current),
        }
    }

    fn put(old: Option<V>, new: V) -> Computed<V> {
        match old {
            Some(old) => Computed::Updated { old, new },
            None => Computed::Inserted(new),
        }
    }
}
