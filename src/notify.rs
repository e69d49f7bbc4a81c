//! Removal causes, the buffer of removed entries a write hands back, and the eviction
//! listener, which runs only after the shard lock is released.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;

/// Why an entry left the cache; passed to the eviction listener.
///
/// # Example
///
/// ```
/// use aside::{Cache, RemovalCause};
/// use std::sync::{Arc, Mutex};
///
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = seen.clone();
/// let cache: Cache<u32, u32> = Cache::builder()
///     .max_capacity(1)
///     .eviction_listener(move |k: &u32, _v: &u32, cause| log.lock().unwrap().push((*k, cause)))
///     .build()
///     .unwrap();
/// cache.insert(1, 1);
/// cache.insert(1, 2);
/// cache.insert(2, 2);
/// cache.invalidate(&2);
/// assert_eq!(
///     *seen.lock().unwrap(),
///     vec![(1, RemovalCause::Replaced), (1, RemovalCause::Capacity), (2, RemovalCause::Explicit)]
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalCause {
    /// Evicted by the policy to stay within capacity, or rejected on arrival (by admission, or
    /// because the entry alone outweighs the shard).
    Capacity,
    /// Its deadline passed; removed on access, by the sweep, or by eviction.
    Expired,
    /// Removed by `remove`, `invalidate`, `invalidate_all` or `retain`.
    Explicit,
    /// Its value was replaced by an insert for the same key (the listener sees the old value).
    Replaced,
}

impl RemovalCause {
    /// Whether the cache removed the entry on its own (capacity or expiry) rather than because
    /// the application asked.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(aside::RemovalCause::Capacity.was_evicted());
    /// assert!(!aside::RemovalCause::Explicit.was_evicted());
    /// ```
    #[must_use]
    pub fn was_evicted(self) -> bool {
        matches!(self, Self::Capacity | Self::Expired)
    }
}

/// The eviction listener: called with each removed entry, outside every lock.
pub(crate) type Listener<K, V> = Arc<dyn Fn(&K, &V, RemovalCause) + Send + Sync>;

/// Entries removed under a shard lock, to be announced and dropped after it is released.
/// Holds one entry inline, so the common single eviction of an insert does not allocate.
pub(crate) struct Removed<K, V> {
    first: Option<(K, V, RemovalCause)>,
    rest: Vec<(K, V, RemovalCause)>,
}

impl<K, V> Removed<K, V> {
    pub(crate) const fn new() -> Self {
        Self {
            first: None,
            rest: Vec::new(),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, key: K, value: V, cause: RemovalCause) {
        if self.first.is_none() {
            self.first = Some((key, value, cause));
        } else {
            self.rest.push((key, value, cause));
        }
    }

    /// Moves every entry to the end of `other`, in order.
    #[inline]
    pub(crate) fn append_to(self, other: &mut Self) {
        if self.is_empty() {
            return; // the common case: nothing rejected
        }
        for (k, v, cause) in self.first.into_iter().chain(self.rest) {
            other.push(k, v, cause);
        }
    }

    pub(crate) fn first(&self) -> Option<&(K, V, RemovalCause)> {
        self.first.as_ref()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Hands every entry to the listener (if any) and drops it. A panicking listener does not
    /// stop the others; the first panic is resumed once all entries are handled.
    pub(crate) fn notify(self, listener: Option<&Listener<K, V>>) {
        if self.is_empty() {
            return;
        }
        let Some(listener) = listener else {
            return; // drop everything, outside the lock
        };
        let mut panic = None;
        for (k, v, cause) in self.first.into_iter().chain(self.rest) {
            if let Err(p) = catch_unwind(AssertUnwindSafe(|| listener(&k, &v, cause))) {
                panic.get_or_insert(p);
            }
        }
        if let Some(p) = panic {
            resume_unwind(p);
        }
    }
}
