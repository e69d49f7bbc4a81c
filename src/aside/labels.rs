//! Tags and namespaces, the front door's side: [`Labels`], [`Namespace`], the [`Mark`] a
//! labelled slot carries and the [`Book`] every read consults to hide invalidated entries.
//! Lookups, rechecks, iteration and the flight registry use them, so they live with the front
//! door; the methods that label and invalidate (`put_labelled`, `invalidate_tag`,
//! `invalidate_namespace`, ...) are toolkit (`src/toolkit/tags.rs`).
//!
//! Invalidating groups of keys without walking them:
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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ahash::RandomState;
use parking_lot::{Mutex, RwLock};

#[cfg(doc)]
use super::AsideCache;

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

    /// Invalidates the namespace: one atomic add (SeqCst, paired with [`Book::mark`]).
    pub(crate) fn bump(&self) {
        self.0.version.fetch_add(1, Ordering::SeqCst);
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

    pub(crate) fn has_tag(&self, tag: &str) -> bool {
        self.0.tags.iter().any(|t| &**t == tag)
    }

    pub(crate) fn in_namespace(&self, ns: &Namespace) -> bool {
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
        let namespace = mark.labels.0.namespace.as_ref();
        if namespace.is_some_and(|ns| ns.0.version.load(Ordering::Acquire) != mark.ns_version) {
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

    pub(crate) fn invalidate_tag(&self, tag: &str) {
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

    pub(crate) fn namespace(&self, name: &str) -> Namespace {
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
    pub(crate) fn tag_count(&self) -> usize {
        self.tags.iter().map(|s| s.read().len()).sum()
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
