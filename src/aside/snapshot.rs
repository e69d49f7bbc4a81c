//! Warm restart for the front door (`snapshot` feature): [`AsideCache::snapshot`] writes the
//! hottest values with what is left of their fresh period, [`AsideCache::restore`] puts them
//! back, and [`AsideCache::restore_keys`] loads a snapshot's keys again through a loader with
//! the warming toolkit ([`AsideCache::warm`]). The format and its checks are the engine's
//! (`src/snapshot.rs`).

use std::hash::Hash;
use std::io::{Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::AsideCache;
use crate::policy::EvictionPolicy;
use crate::snapshot::{Entry, Expiry, write_snapshot};
use crate::{
    RestoreOptions, RestoreSummary, Snapshot, SnapshotError, SnapshotOptions, SnapshotSummary,
};

impl<K, V, P> AsideCache<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    /// Writes up to [`options.limit`](SnapshotOptions::limit) of the values
    /// [`get`](Self::get) would serve, the hottest first in the policy's order, each with
    /// what is left of its fresh period (see [`Cache::snapshot`](crate::Cache::snapshot) for
    /// the order, the locking and the format).
    ///
    /// Not written: cached "not found" entries, stale values kept for fail-safe, values
    /// hidden by a tag or namespace invalidation, and labels (restored values carry none).
    /// With [`keys_only`](SnapshotOptions::keys_only), only the keys: restore them with
    /// [`restore_keys`](Self::restore_keys), which loads fresh values.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::Encode`] if a key or value fails to serialize,
    /// [`SnapshotError::Io`] if writing fails. The cache is unchanged either way.
    ///
    /// # Panics
    ///
    /// A panic in a key's or value's `Clone` or `Serialize` propagates; the cache is unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::{AsideCache, SnapshotOptions};
    ///
    /// let users: AsideCache<u64, String> = AsideCache::builder().build().unwrap();
    /// users.put(42, "Alice".into());
    /// let mut bytes = Vec::new();
    /// users.snapshot(&mut bytes, &SnapshotOptions::new().limit(10_000)).unwrap();
    ///
    /// // ... restart ...
    /// let users: AsideCache<u64, String> = AsideCache::builder().build().unwrap();
    /// users.restore(&bytes[..]).unwrap();
    /// assert_eq!(users.get(&42).as_deref(), Some("Alice"));
    /// ```
    pub fn snapshot(
        &self,
        writer: impl Write,
        options: &SnapshotOptions,
    ) -> Result<SnapshotSummary, SnapshotError>
    where
        K: Serialize,
        V: Serialize,
    {
        let values = options.with_values();
        let (copies, _) = self
            .inner
            .cache
            .hottest_copies(options.max_entries(), |k, slot| {
                let value = slot.value.as_ref()?; // "not found" is not worth a restart
                Some((
                    k.clone(),
                    values.then(|| value.clone()),
                    slot.fresh_until,
                    slot.mark.clone(),
                ))
            });
        let now = self.inner.now();
        let entries = copies
            .into_iter()
            .filter(|((_, _, fresh_until, mark), _)| {
                now < *fresh_until && !mark.as_ref().is_some_and(|m| self.inner.book.hidden(m))
            })
            .map(|((key, value, fresh_until, _), _)| Entry {
                key,
                value,
                expiry: if fresh_until == u64::MAX {
                    Expiry::Never
                } else {
                    Expiry::Fixed(fresh_until - now)
                },
            })
            .collect();
        write_snapshot(writer, values, entries)
    }

    /// Reads a snapshot from `reader`, checks all of it, then puts its values: see
    /// [`restore_snapshot`](Self::restore_snapshot), with the downtime counted up to now.
    ///
    /// # Errors
    ///
    /// [`SnapshotError`] if the snapshot cannot be read or is not intact; the cache is then
    /// unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let err = cache.restore(&b"ASIDESNP"[..]).unwrap_err();
    /// assert!(matches!(err, aside::SnapshotError::Length { .. }));
    /// ```
    pub fn restore(&self, reader: impl Read) -> Result<RestoreSummary, SnapshotError>
    where
        K: DeserializeOwned,
        V: DeserializeOwned,
    {
        let snapshot = Snapshot::read(reader)?;
        Ok(self.restore_snapshot(snapshot, &RestoreOptions::new()))
    }

    /// Puts the values of a checked snapshot, coldest first (so that the hottest survive
    /// when not all fit), as [`put`](Self::put) would: loads in flight for those keys will
    /// not overwrite them.
    ///
    /// A value whose fresh period had a fixed end gets what was left of it less the downtime
    /// (wall clock, from [`Snapshot::written_at`] to [`RestoreOptions::now`]) as its TTL, as
    /// with [`put_with_ttl`](Self::put_with_ttl); one with nothing left is skipped. A value
    /// without one gets the cache's default TTL. Without a weigher, only the hottest
    /// `max_capacity` entries are put. Keys without values (a keys-only snapshot) are
    /// skipped: see [`restore_keys`](Self::restore_keys).
    ///
    /// # Example
    ///
    /// ```
    /// use aside::{AsideCache, MockClock, RestoreOptions, Snapshot, SnapshotOptions};
    /// use std::time::Duration;
    ///
    /// let clock = MockClock::new();
    /// let build = || -> AsideCache<u32, u32> {
    ///     AsideCache::builder()
    ///         .time_to_live(Duration::from_secs(300))
    ///         .clock(clock.clone())
    ///         .build()
    ///         .unwrap()
    /// };
    /// let old = build();
    /// old.put(1, 10);
    /// clock.advance(Duration::from_secs(100)); // 200 s of freshness left
    /// let mut bytes = Vec::new();
    /// old.snapshot(&mut bytes, &SnapshotOptions::new()).unwrap();
    ///
    /// let snapshot = Snapshot::<u32, u32>::read(&bytes[..]).unwrap();
    /// let restart = snapshot.written_at() + Duration::from_secs(50); // 50 s of downtime
    /// let new = build();
    /// new.restore_snapshot(snapshot, &RestoreOptions::new().now(restart));
    /// clock.advance(Duration::from_secs(149));
    /// assert_eq!(new.get(&1), Some(10));
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(new.get(&1), None);
    /// ```
    pub fn restore_snapshot(
        &self,
        snapshot: Snapshot<K, V>,
        options: &RestoreOptions,
    ) -> RestoreSummary {
        let cache = &self.inner.cache;
        let capacity =
            (!cache.has_weigher()).then(|| usize::try_from(cache.capacity()).unwrap_or(usize::MAX));
        let (entries, summary) = snapshot.plan(options, capacity);
        for (key, value, expiry) in entries {
            match expiry {
                Expiry::Fixed(left) => self.inner.put_with(key, value, Some(left), None),
                Expiry::Idle(_) | Expiry::Never => self.inner.put_marked(key, value, None),
            }
        }
        summary
    }
}

#[cfg(feature = "async")]
impl<K, V, P> AsideCache<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    /// Loads the keys of a snapshot again through `loader`, hottest first, with the warming
    /// toolkit's defaults (8 loads at a time, single-flight with live traffic: see
    /// [`warm`](Self::warm)). Without a weigher, only the hottest `max_capacity` keys are
    /// loaded. Meant for [`keys_only`](SnapshotOptions::keys_only) snapshots, whose restart
    /// serves nothing older than the source of truth; a snapshot's values, if any, are
    /// ignored. For another concurrency or a progress line, pass
    /// [`Snapshot::into_keys`] to [`warm`](Self::warm) yourself.
    ///
    /// # Panics
    ///
    /// If the loader panics, as [`Warmer::run`](super::Warmer::run).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use aside::{AsideCache, Snapshot, SnapshotOptions};
    ///
    /// let old: AsideCache<u64, String> = AsideCache::builder().build().unwrap();
    /// old.put(7, "seven".into());
    /// let mut bytes = Vec::new();
    /// old.snapshot(&mut bytes, &SnapshotOptions::new().keys_only()).unwrap();
    ///
    /// let new: AsideCache<u64, String> = AsideCache::builder().build().unwrap();
    /// let snapshot = Snapshot::read(&bytes[..]).unwrap();
    /// let summary = new
    ///     .restore_keys(snapshot, |id: u64| async move { Ok::<_, std::io::Error>(Some(format!("user {id}"))) })
    ///     .await;
    /// assert_eq!(summary.loaded, 1);
    /// assert_eq!(new.get(&7).as_deref(), Some("user 7"));
    /// # }
    /// ```
    pub async fn restore_keys<E, F, Fut>(
        &self,
        snapshot: Snapshot<K, V>,
        loader: F,
    ) -> super::WarmSummary
    where
        E: Send + Sync + 'static,
        F: Fn(K) -> Fut + Sync,
        Fut: std::future::Future<Output = Result<Option<V>, E>> + Send + 'static,
    {
        let cache = &self.inner.cache;
        let capacity = if cache.has_weigher() {
            usize::MAX
        } else {
            usize::try_from(cache.capacity()).unwrap_or(usize::MAX)
        };
        let mut keys = snapshot.into_keys();
        keys.truncate(capacity);
        // The default concurrency (8) is valid, so `run` cannot fail.
        self.warm(loader).run(keys).await.unwrap_or_default()
    }
}
