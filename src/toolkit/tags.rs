//! Tags and namespaces (`docs/toolkit.md`): labelled loads and puts, and lazy invalidation
//! of groups of keys without walking them ([`AsideCache::invalidate_tag`],
//! [`AsideCache::invalidate_namespace`]).
//!
//! The labels, the marks their slots carry and the book that hides invalidated entries are
//! the front door's own (`src/aside/labels.rs`): every read consults them. This file is the
//! API over them; the costs are tabulated on [`Labels`].

use std::hash::Hash;

use crate::aside::{AsideCache, Labels, Namespace};
use crate::policy::EvictionPolicy;

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
    ) -> Result<Option<V>, crate::LoadError<E>>
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
    /// If `loader` panics (waiters get [`LoadError::Panicked`](crate::LoadError::Panicked)).
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
    ) -> Result<Option<V>, crate::LoadError<E>> {
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
        ns.bump();
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
