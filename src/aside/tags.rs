//! Tags and namespaces: invalidating groups of keys without walking them.
//!
//! Both are **lazy**. Nothing is removed when a tag or a namespace is invalidated; an entry
//! that belongs to it is *hidden*: every read treats it as a miss (and the next load replaces
//! it), and the engine reclaims it like any other cold entry (eviction, expiry, sweep).
//!
//! - **Tags** (`invalidate_tag`). The front door keeps a global counter, the *epoch*. A labelled
//!   load records the epoch at the moment it *starts* (its stamp); `invalidate_tag(t)` bumps the
//!   epoch and records the new value as `t`'s invalidation time. An entry is hidden when one of
//!   its tags was invalidated after its stamp. Because the stamp is taken before the loader
//!   reads the source, a load that races an invalidation can install its value, but that value
//!   is hidden: the stale value is never served.
//! - **Namespaces** (`invalidate_namespace`), the seeds' versioned keys. A [`Namespace`] is a
//!   shared version number; an entry stores the version it was loaded under, and
//!   `invalidate_namespace` increments it: one atomic add.
//!
//! In both cases the loads in flight that carry the label are also detached and marked stale
//! (a walk over the loads in flight, never over the entries), so a caller arriving after the
//! invalidation starts a fresh load instead of joining one that read the old data.
//!
//! The costs (every invalidation O(1) in entries; reads of labelled entries one atomic load
//! in the common case) are tabulated on [`Labels`].

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ahash::RandomState;
use parking_lot::{Mutex, RwLock};

use super::AsideCache;
use crate::policy::EvictionPolicy;

const TAG_SHARDS: usize = 16;

/// Tag → epoch of its latest invalidation.
type TagMap = HashMap<Arc<str>, u64, RandomState>;

/// A namespace: a version number shared by every entry stored in it. Get one from
/// [`AsideCache::namespace`]; [`AsideCache::invalidate_namespace`] bumps its version, which
/// makes every entry stored under an older version unreachable at once.
///
/// Cheap to clone (an `Arc`).
///
/// # Example
///
/// ```
/// let cache: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
/// let users = cache.namespace("users");
/// assert_eq!(users.name(), "users");
/// assert_eq!(users.version(), 0);
/// cache.invalidate_namespace("users");
/// assert_eq!(users.version(), 1);
/// ```
#[derive(Clone)]
pub struct Namespace(Arc<NsInner>);

struct NsInner {
    name: Arc<str>,
    version: AtomicU64,
}

impl Namespace {
    /// The namespace's name.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u64, u64> = aside::AsideCache::builder().build().unwrap();
    /// assert_eq!(cache.namespace("orders").name(), "orders");
    /// ```
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The current version: the number of times the namespace was invalidated.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u64, u64> = aside::AsideCache::builder().build().unwrap();
    /// assert_eq!(cache.namespace("orders").version(), 0);
    /// ```
    pub fn version(&self) -> u64 {
        self.0.version.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name())
            .field("version", &self.version())
            .finish()
    }
}

/// The tags and the namespace a value is stored with. Build it once and reuse it: entries
/// stored with the same `Labels` share its allocation.
///
/// Invalidation by tag ([`AsideCache::invalidate_tag`]) and by namespace
/// ([`AsideCache::invalidate_namespace`]) is lazy: entries are hidden, not removed. A load
/// records the epoch and namespace version at which it *started*, so a load that races an
/// invalidation never makes its (possibly stale) value visible; loads in flight with the
/// label are detached as well, so later callers load afresh.
///
/// # Costs
///
/// | operation | cost |
/// |---|---|
/// | `invalidate_tag` | O(1) in entries: one map insert, plus O(loads in flight) |
/// | `invalidate_namespace` | O(1) in entries: one atomic add, plus O(loads in flight) |
/// | read of an unlabelled entry | one branch |
/// | read of a namespaced entry | one atomic load |
/// | read of a tagged entry | one atomic load while no tag was invalidated since it was stored; otherwise a hash lookup (sharded read lock) per tag |
/// | memory | 8 bytes per entry (an `Option<Arc>`), plus a 40-byte allocation per labelled entry (the tags themselves are shared by every entry stored with the same `Labels`); one map entry per tag ever invalidated; one counter per namespace |
///
/// Hidden entries occupy capacity until they are evicted, expire, or their key is loaded again
/// (`len()` counts them), or until [`AsideCache::purge_hidden`] reclaims them in O(entries).
///
/// # Example
///
/// ```
/// use aside::Labels;
/// let cache: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
/// let labels = Labels::new().tag("team:7").tag("page:home").namespace(&cache.namespace("users"));
/// cache.put_labelled(1, "Alice".to_string(), &labels);
/// cache.invalidate_tag("team:7");
/// assert_eq!(cache.get(&1), None);
/// ```
#[derive(Clone, Default, Debug)]
pub struct Labels(Arc<LabelSet>);

#[derive(Clone, Default, Debug)]
struct LabelSet {
    tags: Vec<Arc<str>>,
    namespace: Option<Namespace>,
}

impl Labels {
    /// No tags, no namespace.
    ///
    /// # Example
    ///
    /// ```
    /// let l = aside::Labels::new();
    /// assert!(l.tags().is_empty());
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tag (duplicates are ignored).
    ///
    /// # Example
    ///
    /// ```
    /// let l = aside::Labels::new().tag("a").tag("a").tag("b");
    /// assert_eq!(l.tags().len(), 2);
    /// ```
    #[must_use]
    pub fn tag(mut self, tag: &str) -> Self {
        if !self.has_tag(tag) {
            Arc::make_mut(&mut self.0).tags.push(tag.into());
        }
        self
    }

    /// Puts the entries in `namespace` (replacing any previous one).
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u64, u64> = aside::AsideCache::builder().build().unwrap();
    /// let l = aside::Labels::new().namespace(&cache.namespace("users"));
    /// assert_eq!(l.namespace_name(), Some("users"));
    /// ```
    #[must_use]
    pub fn namespace(mut self, namespace: &Namespace) -> Self {
        Arc::make_mut(&mut self.0).namespace = Some(namespace.clone());
        self
    }

    /// The tags.
    ///
    /// # Example
    ///
    /// ```
    /// let l = aside::Labels::new().tag("x");
    /// assert_eq!(&*l.tags()[0], "x");
    /// ```
    pub fn tags(&self) -> &[Arc<str>] {
        &self.0.tags
    }

    /// The namespace's name, if any.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(aside::Labels::new().namespace_name(), None);
    /// ```
    pub fn namespace_name(&self) -> Option<&str> {
        self.0.namespace.as_ref().map(Namespace::name)
    }

    fn has_tag(&self, tag: &str) -> bool {
        self.0.tags.iter().any(|t| &**t == tag)
    }

    fn in_namespace(&self, ns: &Namespace) -> bool {
        self.0
            .namespace
            .as_ref()
            .is_some_and(|n| Arc::ptr_eq(&n.0, &ns.0))
    }
}

/// What a labelled slot carries: the labels, and the epoch and namespace version its load
/// started under.
#[derive(Debug)]
pub(crate) struct Mark {
    labels: Labels,
    stamp: u64,
    ns_version: u64,
}

/// The front door's tag and namespace book-keeping.
pub(crate) struct Book {
    epoch: AtomicU64,
    /// The epoch of the latest `invalidate_tag`: a read skips the per-tag lookups for entries
    /// stamped at or after it.
    last_tag: AtomicU64,
    tags: Box<[RwLock<TagMap>]>,
    hasher: RandomState,
    namespaces: Mutex<HashMap<Arc<str>, Namespace, RandomState>>,
}

impl Book {
    pub(crate) fn new() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            last_tag: AtomicU64::new(0),
            tags: (0..TAG_SHARDS)
                .map(|_| RwLock::new(HashMap::with_hasher(RandomState::new())))
                .collect(),
            hasher: RandomState::new(),
            namespaces: Mutex::new(HashMap::with_hasher(RandomState::new())),
        }
    }

    fn tag_shard(&self, tag: &str) -> &RwLock<TagMap> {
        &self.tags[self.hasher.hash_one(tag) as usize % TAG_SHARDS]
    }

    /// The mark for a load (or a put) starting now. Call it after the load's flight is
    /// registered, before the loader reads the source.
    pub(crate) fn mark(&self, labels: Option<&Labels>) -> Option<Arc<Mark>> {
        let labels = labels?;
        // SeqCst pairs with the SeqCst bump in `invalidate_tag`/`invalidate_namespace`.
        let stamp = self.epoch.load(Ordering::SeqCst);
        let ns_version = labels
            .0
            .namespace
            .as_ref()
            .map_or(0, |n| n.0.version.load(Ordering::SeqCst));
        Some(Arc::new(Mark {
            labels: labels.clone(),
            stamp,
            ns_version,
        }))
    }

    /// Whether an entry with this mark was invalidated by tag or namespace.
    pub(crate) fn hidden(&self, mark: &Mark) -> bool {
        if let Some(ns) = &mark.labels.0.namespace
            && ns.0.version.load(Ordering::Acquire) != mark.ns_version
        {
            return true;
        }
        if mark.labels.0.tags.is_empty() || self.last_tag.load(Ordering::Acquire) <= mark.stamp {
            return false;
        }
        mark.labels.0.tags.iter().any(|t| {
            let seq = self.tag_shard(t).read().get(t).copied();
            seq.is_some_and(|s| s > mark.stamp)
        })
    }

    fn invalidate_tag(&self, tag: &str) {
        let seq = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        // Keep the larger: two calls for one tag may insert in the other order than they
        // bumped the epoch, and the later epoch must win, or entries loaded between the two
        // bumps (possibly from the old row) would show again after the second call returned.
        let mut shard = self.tag_shard(tag).write();
        let latest = shard.entry(tag.into()).or_insert(seq);
        *latest = (*latest).max(seq);
        drop(shard);
        self.last_tag.fetch_max(seq, Ordering::SeqCst);
    }

    fn namespace(&self, name: &str) -> Namespace {
        let mut map = self.namespaces.lock();
        if let Some(ns) = map.get(name) {
            return ns.clone();
        }
        let name: Arc<str> = name.into();
        let ns = Namespace(Arc::new(NsInner {
            name: Arc::clone(&name),
            version: AtomicU64::new(0),
        }));
        map.insert(name, ns.clone());
        ns
    }

    /// Tags invalidated so far (each costs one map entry).
    fn tag_count(&self) -> usize {
        self.tags.iter().map(|s| s.read().len()).sum()
    }
}

impl<K, V, P> AsideCache<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    /// The namespace called `name`, created (at version 0) on first use. Every call with the
    /// same name returns the same namespace.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u64, u64> = aside::AsideCache::builder().build().unwrap();
    /// let a = cache.namespace("users");
    /// cache.invalidate_namespace("users");
    /// assert_eq!(cache.namespace("users").version(), a.version());
    /// ```
    pub fn namespace(&self, name: &str) -> Namespace {
        self.inner.book.namespace(name)
    }

    /// [`get_or_load`](Self::get_or_load) whose loaded value is stored with `labels`. Waiters
    /// that join the load share its value whatever labels they passed (the leader's count).
    ///
    /// A load that starts before an [`invalidate_tag`](Self::invalidate_tag) (or
    /// [`invalidate_namespace`](Self::invalidate_namespace)) of one of its labels may finish
    /// after it, but its value is hidden from every later read: the stale value is never
    /// served from the cache. Keep reading a labelled key through labelled calls: a plain
    /// `get_or_load` that reloads it stores the new value without labels.
    ///
    /// # Errors
    ///
    /// As [`get_or_load`](Self::get_or_load).
    ///
    /// # Panics
    ///
    /// If this caller's own loader panics, as [`get_or_load`](Self::get_or_load).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use aside::Labels;
    /// let cache: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
    /// let team = Labels::new().tag("team:7");
    /// let load = || async { Ok::<_, String>(Some("Alice".to_string())) };
    /// let v = cache.get_or_load_labelled(1, &team, load).await.unwrap();
    /// assert_eq!(v.as_deref(), Some("Alice"));
    /// cache.invalidate_tag("team:7");
    /// assert_eq!(cache.get(&1), None);
    /// # }
    /// ```
    #[cfg(feature = "async")]
    pub async fn get_or_load_labelled<E, F, Fut>(
        &self,
        key: K,
        labels: &Labels,
        loader: F,
    ) -> Result<Option<V>, super::LoadError<E>>
    where
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
    {
        self.load_async(key, loader, true, Some(labels)).await
    }

    /// The blocking twin of `get_or_load_labelled` (`async` feature).
    ///
    /// # Errors
    ///
    /// As [`get_or_load_blocking`](Self::get_or_load_blocking).
    ///
    /// # Panics
    ///
    /// If `loader` panics (waiters get [`LoadError::Panicked`](super::LoadError::Panicked)).
    ///
    /// # Example
    ///
    /// ```
    /// use aside::Labels;
    /// let cache: aside::AsideCache<u64, u64> = aside::AsideCache::builder().build().unwrap();
    /// let users = Labels::new().namespace(&cache.namespace("users"));
    /// let v = cache.get_or_load_labelled_blocking(1, &users, || Ok::<_, String>(Some(10)));
    /// assert_eq!(v.unwrap(), Some(10));
    /// cache.invalidate_namespace("users");
    /// assert_eq!(cache.get(&1), None);
    /// ```
    pub fn get_or_load_labelled_blocking<E: Send + Sync + 'static>(
        &self,
        key: K,
        labels: &Labels,
        loader: impl FnOnce() -> Result<Option<V>, E>,
    ) -> Result<Option<V>, super::LoadError<E>> {
        self.inner.load_blocking(key, loader, true, Some(labels))
    }

    /// [`put`](Self::put) with tags and a namespace: the value can later be invalidated with
    /// [`invalidate_tag`](Self::invalidate_tag) or
    /// [`invalidate_namespace`](Self::invalidate_namespace), as well as by key.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::Labels;
    /// let cache: aside::AsideCache<u64, &str> = aside::AsideCache::builder().build().unwrap();
    /// cache.put_labelled(1, "in team 7", &Labels::new().tag("team:7"));
    /// cache.put(2, "untagged");
    /// cache.invalidate_tag("team:7");
    /// assert_eq!((cache.get(&1), cache.get(&2)), (None, Some("untagged")));
    /// ```
    pub fn put_labelled(&self, key: K, value: V, labels: &Labels) {
        self.inner.put_marked(key, value, Some(labels));
    }

    /// Hides every entry tagged `tag` that was stored (or whose load started) before this
    /// call; loads of such entries in flight are detached and will not install. O(1) in the
    /// number of entries (see [`Labels`] for the costs): the hidden entries stay
    /// in the engine until evicted, expired, swept or reloaded.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::Labels;
    /// let cache: aside::AsideCache<u64, u64> = aside::AsideCache::builder().build().unwrap();
    /// let team = Labels::new().tag("team:7");
    /// cache.put_labelled(1, 10, &team);
    /// cache.invalidate_tag("team:7");
    /// assert_eq!(cache.get(&1), None);
    /// // Stored after the invalidation: visible.
    /// cache.put_labelled(1, 11, &team);
    /// assert_eq!(cache.get(&1), Some(11));
    /// ```
    pub fn invalidate_tag(&self, tag: &str) {
        self.inner.book.invalidate_tag(tag);
        self.inner
            .registry
            .invalidate_matching(|l| l.is_some_and(|l| l.has_tag(tag)));
    }

    /// Makes every entry of namespace `name` unreachable in O(1): bumps its version (one
    /// atomic add; no entry is touched) and detaches its loads in flight. Old entries are
    /// reclaimed by eviction, expiry and the sweep. Creates the namespace if it does not
    /// exist yet.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::Labels;
    /// let cache: aside::AsideCache<u64, u64> = aside::AsideCache::builder().build().unwrap();
    /// let users = Labels::new().namespace(&cache.namespace("users"));
    /// for id in 0..100 {
    ///     cache.put_labelled(id, id, &users);
    /// }
    /// cache.invalidate_namespace("users");
    /// assert!((0..100).all(|id| cache.get(&id).is_none()));
    /// assert_eq!(cache.len(), 100); // still stored, hidden, reclaimed by eviction
    /// ```
    pub fn invalidate_namespace(&self, name: &str) {
        let ns = self.inner.book.namespace(name);
        ns.0.version.fetch_add(1, Ordering::SeqCst);
        self.inner
            .registry
            .invalidate_matching(|l| l.is_some_and(|l| l.in_namespace(&ns)));
    }

    /// Removes every entry hidden by a tag or namespace invalidation now, instead of waiting
    /// for eviction, expiry or a reload to reclaim it; returns how many it found (a shard
    /// retried because of concurrent writes is counted again). O(entries):
    /// each shard is snapshotted (keys and slots cloned) under its read lock and the hidden
    /// entries removed under its write lock, as [`Cache::retain`](crate::Cache::retain) does.
    /// A hidden entry stays hidden forever, so this never makes a stale value visible; a
    /// value replaced concurrently may be removed too (a spurious miss, never a stale read).
    ///
    /// # Example
    ///
    /// ```
    /// use aside::Labels;
    /// let cache: aside::AsideCache<u64, u64> = aside::AsideCache::builder().build().unwrap();
    /// let users = Labels::new().namespace(&cache.namespace("users"));
    /// (0..100).for_each(|id| cache.put_labelled(id, id, &users));
    /// cache.put(1_000, 1);
    /// cache.invalidate_namespace("users");
    /// assert_eq!(cache.purge_hidden(), 100);
    /// assert_eq!(cache.len(), 1);
    /// ```
    pub fn purge_hidden(&self) -> usize {
        let book = &self.inner.book;
        let mut hidden = 0;
        self.inner.cache.retain(|_, slot| {
            let h = slot.mark.as_ref().is_some_and(|m| book.hidden(m));
            hidden += usize::from(h);
            !h
        });
        hidden
    }

    /// Tags invalidated so far: the tag book keeps one small map entry per tag.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u64, u64> = aside::AsideCache::builder().build().unwrap();
    /// cache.invalidate_tag("a");
    /// cache.invalidate_tag("a");
    /// assert_eq!(cache.invalidated_tags(), 1);
    /// ```
    pub fn invalidated_tags(&self) -> usize {
        self.inner.book.tag_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_hide_what_started_before_an_invalidation() {
        let book = Book::new();
        let labels = Labels::new().tag("a").tag("b");
        // A load that starts before the invalidation (even one that was not detached: the
        // window between the epoch bump and the registry walk) is hidden...
        let before = book.mark(Some(&labels)).unwrap();
        book.invalidate_tag("b");
        assert!(book.hidden(&before));
        // ...one that starts after it is not, nor one with other tags.
        let after = book.mark(Some(&labels)).unwrap();
        assert!(!book.hidden(&after));
        let other = book.mark(Some(&Labels::new().tag("c"))).unwrap();
        book.invalidate_tag("a");
        assert!(book.hidden(&after) && !book.hidden(&other));
        assert!(book.mark(None).is_none());
    }

    #[test]
    fn namespace_versions() {
        let book = Book::new();
        let ns = book.namespace("users");
        let labels = Labels::new().namespace(&ns);
        let m = book.mark(Some(&labels)).unwrap();
        assert!(!book.hidden(&m));
        book.namespace("users")
            .0
            .version
            .fetch_add(1, Ordering::SeqCst);
        assert!(book.hidden(&m));
        assert!(!book.hidden(&book.mark(Some(&labels)).unwrap()));
    }
}
