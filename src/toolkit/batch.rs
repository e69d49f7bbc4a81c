//! Batch reads and loads (the N+1 problem): [`get_many`](AsideCache::get_many) and
//! [`get_or_load_many`](AsideCache::get_or_load_many).
//!
//! A batch load registers one flight per missing key in the same registry as single-key
//! loads, runs the loader once for all the keys it leads, and completes each flight with its
//! own value. So the batch is single-flight per key in both directions: keys another caller is
//! loading are awaited rather than reloaded, and single-key callers that ask for a key the
//! batch is loading join the batch's flight. Invalidation marks a key's flight stale exactly as
//! for a single-key load, so a batch value read before an `invalidate`/`put` is never
//! installed.
//!
//! A batch never waits on another caller's load while it holds unfinished flights of its own
//! (it first runs its loader and completes its flights, then awaits the others), so two
//! batches that overlap cannot wait on each other.

use std::collections::HashMap;
use std::hash::Hash;

use crate::aside::AsideCache;
use crate::policy::EvictionPolicy;

#[cfg(feature = "async")]
use {
    crate::aside::flight::{self, Flight, Join, Lead, Outcome, SharedError},
    crate::aside::load_async::{CatchUnwind, LEADING_TASK, WaitFlight},
    crate::aside::slot::Slot,
    crate::aside::stats::Counters,
    crate::aside::{Found, Recheck},
    crate::aside::{Labels, LeaseExpiry, LoadError},
    std::collections::HashSet,
    std::panic::resume_unwind,
    std::sync::Arc,
    std::time::Instant,
};

impl<K, V, P> AsideCache<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    /// The fresh cached values of `keys`; never loads. Keys that are not cached, cached as
    /// "not found", expired or hidden by a tag or namespace invalidation are absent from the
    /// map. Counts one cache hit or miss per key.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, &str> = aside::AsideCache::builder().build().unwrap();
    /// cache.put(1, "one");
    /// cache.put(3, "three");
    /// let found = cache.get_many(&[1, 2, 3]);
    /// assert_eq!(found.len(), 2);
    /// assert_eq!(found[&3], "three");
    /// ```
    pub fn get_many(&self, keys: &[K]) -> HashMap<K, V> {
        keys.iter()
            .filter_map(|k| Some((k.clone(), self.get(k)?)))
            .collect()
    }
}

/// One round of a batch load: the keys asked (those it leads, then `n_independent` keys to
/// load without installing), and where results go.
#[cfg(feature = "async")]
struct Batch<'a, K: Hash + Eq + Clone, V: Clone> {
    asked: Vec<K>,
    n_independent: usize,
    leads: Vec<(K, Lead<K, V>)>,
    labels: Option<&'a Labels>,
    stale: &'a HashMap<K, Slot<V>>,
    found: &'a mut HashMap<K, V>,
}

/// A key of a batch waiting on someone else's flight.
#[cfg(feature = "async")]
type Waiting<K, V> = (K, Arc<Flight<V>>);

#[cfg(feature = "async")]
impl<K, V, P> AsideCache<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    /// The values of `keys`, loading every missing one with **one** call of `loader`, which
    /// receives the missing keys and answers with the values it found (for SQL, one
    /// `WHERE id IN (...)` query instead of one query per key).
    ///
    /// Single flight per key: a key another caller is already loading is awaited, not passed
    /// to `loader`; a single-key caller ([`get_or_load`](Self::get_or_load)) asking for a key
    /// this batch is loading waits for the batch. Loaded values are cached with the configured
    /// TTL; duplicate keys are asked once.
    ///
    /// **Keys missing from the loader's answer** are reported as absent (not in the returned
    /// map) and not cached, not even with a `negative_ttl`; single-key callers waiting on them
    /// get `Ok(None)`. Keys the loader returns but was not asked for are ignored. A key cached
    /// as "not found" (negative caching) is absent without a load.
    ///
    /// `loader` is called once in the common case. It is called again, with the keys
    /// concerned only, when a load this batch awaited did not produce a usable value: its
    /// leader was cancelled, it failed with another error type, or the lease ran out
    /// (per [`LeaseExpiry`]). Early refresh does not apply to batches: a value due for an
    /// early refresh is returned as it is.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::collections::HashMap;
    /// let cache: aside::AsideCache<u32, String> = aside::AsideCache::builder().build().unwrap();
    /// cache.put(1, "one (cached)".to_string());
    /// let users = cache
    ///     .get_or_load_many([1, 2, 3, 404], |ids: Vec<u32>| async move {
    ///         // SELECT id, name FROM users WHERE id IN (2, 3, 404): one query.
    ///         assert_eq!(ids.len(), 3);
    ///         let found: HashMap<u32, String> =
    ///             ids.into_iter().filter(|&id| id != 404).map(|id| (id, format!("user {id}"))).collect();
    ///         Ok::<_, std::io::Error>(found)
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(users.len(), 3); // 404 is absent
    /// assert_eq!(users[&2], "user 2");
    /// assert_eq!(cache.get(&3).as_deref(), Some("user 3"));
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`LoadError::Loader`] when the loader fails (every single-key caller waiting on one of
    /// its keys gets the same error; nothing is cached), [`LoadError::Timeout`] past the hard
    /// `load_timeout`, [`LoadError::Panicked`] or [`LoadError::Loader`] when a load this
    /// batch awaited panicked or failed, [`LoadError::Reentrant`] when called from a loader for
    /// one of the keys. With fail-safe on, keys with a stale value are served stale instead of
    /// failing; the call fails only if a key without one fails.
    ///
    /// # Panics
    ///
    /// If `loader` panics, every waiter on its keys is released with
    /// [`LoadError::Panicked`], nothing is cached, and the panic resumes here.
    ///
    /// # Cancellation
    ///
    /// Dropping the future while the loader runs abandons the batch's flights: waiters take
    /// them over one key at a time, as with a single-key load.
    pub async fn get_or_load_many<E, F, Fut>(
        &self,
        keys: impl IntoIterator<Item = K>,
        loader: F,
    ) -> Result<HashMap<K, V>, LoadError<E>>
    where
        E: Send + Sync + 'static,
        F: FnMut(Vec<K>) -> Fut,
        Fut: Future<Output = Result<HashMap<K, V>, E>>,
    {
        self.load_many(keys, None, loader).await
    }

    /// [`get_or_load_many`](Self::get_or_load_many) whose loaded values are stored with
    /// `labels` (see [`get_or_load_labelled`](Self::get_or_load_labelled)).
    ///
    /// # Errors
    ///
    /// As [`get_or_load_many`](Self::get_or_load_many).
    ///
    /// # Panics
    ///
    /// As [`get_or_load_many`](Self::get_or_load_many).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::collections::HashMap;
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let team = aside::Labels::new().tag("team:7");
    /// let load = |ids: Vec<u32>| async move {
    ///     Ok::<_, String>(ids.into_iter().map(|id| (id, id * 10)).collect::<HashMap<_, _>>())
    /// };
    /// let members = cache.get_or_load_many_labelled([1, 2, 3], &team, load).await.unwrap();
    /// assert_eq!(members.len(), 3);
    /// cache.invalidate_tag("team:7");
    /// assert!(cache.get_many(&[1, 2, 3]).is_empty());
    /// # }
    /// ```
    pub async fn get_or_load_many_labelled<E, F, Fut>(
        &self,
        keys: impl IntoIterator<Item = K>,
        labels: &Labels,
        loader: F,
    ) -> Result<HashMap<K, V>, LoadError<E>>
    where
        E: Send + Sync + 'static,
        F: FnMut(Vec<K>) -> Fut,
        Fut: Future<Output = Result<HashMap<K, V>, E>>,
    {
        self.load_many(keys, Some(labels), loader).await
    }

    async fn load_many<E, F, Fut>(
        &self,
        keys: impl IntoIterator<Item = K>,
        labels: Option<&Labels>,
        mut loader: F,
    ) -> Result<HashMap<K, V>, LoadError<E>>
    where
        E: Send + Sync + 'static,
        F: FnMut(Vec<K>) -> Fut,
        Fut: Future<Output = Result<HashMap<K, V>, E>>,
    {
        let inner = &self.inner;
        let mut found = HashMap::new();
        let mut stale: HashMap<K, Slot<V>> = HashMap::new();
        let mut pending = Vec::new();
        let mut seen = HashSet::new();
        for key in keys {
            if !seen.insert(key.clone()) {
                continue;
            }
            match inner.lookup(&key) {
                Found::Fresh(Some(v)) | Found::RefreshEarly(Some(v)) => {
                    found.insert(key, v);
                }
                Found::Fresh(None) | Found::RefreshEarly(None) => {} // cached "not found"
                Found::Stale(s) => {
                    stale.insert(key.clone(), s);
                    pending.push(key);
                }
                Found::Miss => pending.push(key),
            }
        }
        // Keys to join, keys whose stalled flight to take over, keys to load without installing.
        let mut take_over: Vec<Waiting<K, V>> = Vec::new();
        let mut independent: Vec<K> = Vec::new();
        while !(pending.is_empty() && take_over.is_empty() && independent.is_empty()) {
            let mut leads: Vec<(K, Lead<K, V>)> = Vec::new();
            let mut waits: Vec<Waiting<K, V>> = Vec::new();
            let joins = pending.drain(..).map(|k| {
                let j = inner.registry.join_labelled(&k, labels);
                (k, j)
            });
            let takes = take_over.drain(..).map(|(k, f)| {
                let j = inner.registry.take_over(&k, &f);
                (k, j)
            });
            for (key, join) in joins.chain(takes).collect::<Vec<_>>() {
                match join {
                    Join::Lead(f) => {
                        let lead = Lead::new(Arc::clone(&inner.registry), key.clone(), f);
                        // As for a single key: a load may have finished (and installed its
                        // value) between this batch's lookup and its join.
                        match inner.recheck(&key, true) {
                            Recheck::Serve(v) => {
                                lead.complete(Outcome::Loaded(v.clone()), |_| ());
                                if let Some(v) = v {
                                    found.insert(key, v);
                                }
                                continue;
                            }
                            // The fail-safe fallback is the slot the cache holds now that this
                            // batch leads, not the one its lookup saw (see `Inner::recheck`).
                            Recheck::Load { stale: Some(s) } => {
                                stale.insert(key.clone(), s);
                            }
                            Recheck::Load { stale: None } => {
                                stale.remove(&key);
                            }
                        }
                        let lead = match inner.take_pending(lead, &key, labels) {
                            Ok(v) => {
                                found.insert(key, v);
                                continue;
                            }
                            Err(lead) => lead,
                        };
                        leads.push((key, lead));
                    }
                    Join::Wait(f) => {
                        if flight::is_leading(f.id) {
                            return Err(LoadError::Reentrant);
                        }
                        Counters::bump(&inner.stats.coalesced);
                        f.add_waiter();
                        waits.push((key, f));
                    }
                }
            }
            if !(leads.is_empty() && independent.is_empty()) {
                let asked: Vec<K> = leads
                    .iter()
                    .map(|(k, _)| k.clone())
                    .chain(independent.drain(..))
                    .collect();
                let n_independent = asked.len() - leads.len();
                let (stale, found) = (&stale, &mut found);
                let batch = Batch {
                    asked,
                    n_independent,
                    leads,
                    labels,
                    stale,
                    found,
                };
                self.load_batch(batch, &mut loader).await?;
            }
            for (key, f) in waits {
                let waited =
                    tokio::time::timeout(inner.settings.lease, WaitFlight(Arc::clone(&f))).await;
                let Ok(outcome) = waited else {
                    Counters::bump(&inner.stats.timeouts);
                    match inner.settings.on_lease_expiry {
                        LeaseExpiry::TakeOver => take_over.push((key, f)),
                        LeaseExpiry::LoadIndependently => independent.push(key),
                    }
                    continue;
                };
                match inner.waiter_result(outcome, stale.get(&key), true) {
                    Some(Ok(Some(v))) => {
                        found.insert(key, v);
                    }
                    Some(Ok(None)) => {}
                    Some(Err(e)) => return Err(e),
                    None => pending.push(key), // abandoned or another error type: load again
                }
            }
        }
        Ok(found)
    }

    /// One loader call for the keys this batch leads and its independent keys (loaded for
    /// this caller only, never installed).
    async fn load_batch<E, F, Fut>(
        &self,
        batch: Batch<'_, K, V>,
        loader: &mut F,
    ) -> Result<(), LoadError<E>>
    where
        E: Send + Sync + 'static,
        F: FnMut(Vec<K>) -> Fut,
        Fut: Future<Output = Result<HashMap<K, V>, E>>,
    {
        let inner = &self.inner;
        let Batch {
            asked,
            n_independent,
            leads,
            labels,
            stale,
            found,
        } = batch;
        let independent: Vec<K> = asked[asked.len() - n_independent..].to_vec();
        let mark = inner.book.mark(labels);
        let mut ids = LEADING_TASK.try_with(Clone::clone).unwrap_or_default();
        ids.extend(leads.iter().map(|(_, l)| l.flight().id));
        let t0 = inner.now();
        let started = Instant::now();
        let guarded = LEADING_TASK.scope(ids, CatchUnwind(Box::pin(loader(asked))));
        let result = match inner.settings.load_timeout {
            Some(limit) => tokio::time::timeout(limit, guarded).await.ok(),
            None => Some(guarded.await),
        };
        Counters::bump(&inner.stats.loads);
        inner.stats.latency.record(started.elapsed());
        let delta = inner.now().saturating_sub(t0);
        let failure = match result {
            Some(Ok(Ok(mut values))) => {
                for (key, lead) in leads {
                    match values.remove(&key) {
                        Some(v) => {
                            inner.finish_loaded(lead, &key, Some(v.clone()), delta, mark.clone());
                            found.insert(key, v);
                        }
                        // Absent from the answer: reported as absent, not cached.
                        None => lead.complete(Outcome::Loaded(None), |_| ()),
                    }
                }
                for key in independent {
                    if let Some(v) = values.remove(&key) {
                        found.insert(key, v);
                    }
                }
                return Ok(());
            }
            Some(Ok(Err(e))) => {
                Counters::bump(&inner.stats.load_errors);
                let e = Arc::new(e);
                let shared: SharedError = e.clone();
                (Outcome::Failed(shared), LoadError::Loader(e))
            }
            None => {
                Counters::bump(&inner.stats.timeouts);
                (Outcome::TimedOut, LoadError::Timeout)
            }
            Some(Err(panic)) => {
                Counters::bump(&inner.stats.panics);
                for (key, lead) in leads {
                    inner.finish_failed(lead, &key, Outcome::Panicked, None);
                }
                resume_unwind(panic)
            }
        };
        let (outcome, error) = failure;
        let mut all_stale = true;
        for (key, lead) in leads {
            let s = stale.get(&key);
            inner.finish_failed(lead, &key, outcome.clone(), s);
            match s.and_then(|s| inner.served_stale(s)) {
                Some(v) => {
                    found.insert(key, v);
                }
                None => all_stale = false,
            }
        }
        if all_stale && independent.is_empty() {
            Ok(())
        } else {
            Err(error)
        }
    }
}
