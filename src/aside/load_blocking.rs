//! The blocking front door: `get_or_load_blocking`, `try_get_with_blocking`,
//! `get_with_blocking`. Laid out as its async twin, `load_async.rs`: the waiter's plumbing,
//! the leader's run, the read path, then the entry points.
//!
//! No runtime: waiters park on their flight's condvar until the outcome or the end of the
//! lease, and a leader runs its loader on the calling thread (so the hard `load_timeout`
//! cannot interrupt it, and early refreshes are done by the caller). The decisions around a
//! load (lookup, recheck, install, fail-safe, what a waiter returns) are the front door's
//! shared machinery, in `mod.rs`.

use std::convert::Infallible;
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::flight::{self, Join, Lead, Outcome, SharedError, ThreadLeading};
use super::labels::Labels;
use super::slot::Slot;
use super::stats::Counters;
use super::trace;
use super::{AsideCache, Found, Inner, LeaseExpiry, LoadError, Recheck};
use crate::policy::EvictionPolicy;

/// When a blocking waiter's lease ends: `lease` from now, saturating (a `Duration::MAX` lease
/// would overflow `Instant`; a century is as good as forever).
fn lease_deadline(lease: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let now = Instant::now();
    now.checked_add(lease.min(CENTURY)).unwrap_or(now)
}

impl<K, V, P> Inner<K, V, P>
where
    K: Hash + Eq + Clone,
    V: Clone,
    P: EvictionPolicy,
{
    /// Runs a blocking loader as the leader of `lead`'s flight.
    fn lead_blocking<E: Send + Sync + 'static>(
        &self,
        lead: Lead<K, V>,
        key: &K,
        loader: impl FnOnce() -> Result<Option<V>, E>,
        stale: Option<&Slot<V>>,
        labels: Option<&Labels>,
    ) -> Result<Option<V>, LoadError<E>> {
        let mark = self.book.mark(labels);
        let flight = Arc::clone(lead.flight());
        let span = trace::LoadSpan::new(|| self.registry.key_hash(key), flight.id);
        let t0 = self.now();
        let started = Instant::now();
        let result = {
            let _leading = ThreadLeading::enter(flight.id);
            let _entered = span.enter();
            catch_unwind(AssertUnwindSafe(loader))
        };
        Counters::bump(&self.stats.loads);
        self.stats.latency.record(started.elapsed());
        let delta = self.now().saturating_sub(t0);
        match result {
            Ok(Ok(value)) => {
                let installed = self.finish_loaded(lead, key, value.clone(), delta, mark);
                span.finish(trace::loaded(&value, installed), flight.waiters());
                Ok(value)
            }
            Ok(Err(e)) => {
                Counters::bump(&self.stats.load_errors);
                let e = Arc::new(e);
                self.finish_failed(lead, key, Outcome::Failed(e.clone() as SharedError), stale);
                let (outcome, result) = match stale {
                    Some(s) => (trace::Outcome::FailSafe, Ok(self.served_stale(s))),
                    None => (trace::Outcome::Error, Err(LoadError::Loader(e))),
                };
                span.finish(outcome, flight.waiters());
                result
            }
            Err(panic) => {
                Counters::bump(&self.stats.panics);
                self.finish_failed(lead, key, Outcome::Panicked, None);
                span.finish(trace::Outcome::Panicked, flight.waiters());
                resume_unwind(panic)
            }
        }
    }

    pub(crate) fn load_blocking<E: Send + Sync + 'static>(
        self: &Arc<Self>,
        key: K,
        loader: impl FnOnce() -> Result<Option<V>, E>,
        accept_none: bool,
        labels: Option<&Labels>,
    ) -> Result<Option<V>, LoadError<E>> {
        let stale = match self.lookup(&key) {
            Found::Fresh(v) if v.is_some() || accept_none => return Ok(v),
            Found::RefreshEarly(v) if v.is_some() || accept_none => {
                // Blocking twins refresh in the caller; a failed refresh keeps the current value.
                if let Some(f) = self.registry.try_lead(&key, labels) {
                    Counters::bump(&self.stats.early_refreshes);
                    let lead = Lead::new(Arc::clone(&self.registry), key.clone(), f);
                    // A value still on its way to the source is newer than a reload's.
                    let lead = match self.take_pending(lead, &key, labels) {
                        Ok(v) => return Ok(Some(v)),
                        Err(lead) => lead,
                    };
                    let refreshed = self.lead_blocking(lead, &key, loader, None, labels);
                    return Ok(refreshed.unwrap_or(v));
                }
                return Ok(v);
            }
            Found::Stale(s) => Some(s),
            _ => None,
        };
        let mut join = self.registry.join_labelled(&key, labels);
        loop {
            match join {
                Join::Lead(f) => {
                    let lead = Lead::new(Arc::clone(&self.registry), key.clone(), f);
                    let stale = match self.recheck(&key, accept_none) {
                        Recheck::Serve(v) => {
                            lead.complete(Outcome::Loaded(v.clone()), |_| ());
                            return Ok(v);
                        }
                        // Not the lookup's slot: see `recheck`.
                        Recheck::Load { stale } => stale,
                    };
                    let lead = match self.take_pending(lead, &key, labels) {
                        Ok(v) => return Ok(Some(v)),
                        Err(lead) => lead,
                    };
                    return self.lead_blocking(lead, &key, loader, stale.as_ref(), labels);
                }
                Join::Wait(f) => {
                    if flight::is_leading(f.id) {
                        return Err(LoadError::Reentrant);
                    }
                    Counters::bump(&self.stats.coalesced);
                    f.add_waiter();
                    match f.wait_until(lease_deadline(self.settings.lease)) {
                        Some(outcome) => {
                            if let Some(r) =
                                self.waiter_result(outcome, stale.as_ref(), accept_none)
                            {
                                return r;
                            }
                            join = self.registry.join_labelled(&key, labels);
                        }
                        None => {
                            Counters::bump(&self.stats.timeouts);
                            match self.settings.on_lease_expiry {
                                LeaseExpiry::TakeOver => join = self.registry.take_over(&key, &f),
                                LeaseExpiry::LoadIndependently => {
                                    Counters::bump(&self.stats.loads);
                                    return self.independent_result(Some(loader()), stale.as_ref());
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

impl<K, V, P> AsideCache<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    /// The blocking twin of `get_or_load`: the value for `key`, loading it with `loader` on a
    /// miss (single-flight: concurrent callers wait for one load and share its result). The
    /// loader returns `Ok(None)` for "not found" (cached only with a `negative_ttl`).
    ///
    /// Never call it on an async executor thread: waiting blocks the thread.
    ///
    /// # Errors
    ///
    /// See [`LoadError`] and the module-level guarantees.
    ///
    /// # Panics
    ///
    /// If `loader` panics, the panic propagates to this caller (waiters get
    /// [`LoadError::Panicked`]).
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, String> = aside::AsideCache::builder().build().unwrap();
    /// let found = cache.get_or_load_blocking(1, || Ok::<_, std::io::Error>(Some("one".to_string())));
    /// assert_eq!(found.unwrap().as_deref(), Some("one"));
    /// let missing = cache.get_or_load_blocking(2, || Ok::<_, std::io::Error>(None));
    /// assert_eq!(missing.unwrap(), None);
    /// ```
    pub fn get_or_load_blocking<E: Send + Sync + 'static>(
        &self,
        key: K,
        loader: impl FnOnce() -> Result<Option<V>, E>,
    ) -> Result<Option<V>, LoadError<E>> {
        self.inner.load_blocking(key, loader, true, None)
    }

    /// Blocking twin of `try_get_with`: the loader returns `Result<V, E>`.
    ///
    /// # Errors
    ///
    /// See [`LoadError`].
    ///
    /// # Panics
    ///
    /// If `loader` panics (waiters get [`LoadError::Panicked`]).
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// assert_eq!(cache.try_get_with_blocking(1, || Ok::<_, String>(7)).unwrap(), 7);
    /// ```
    pub fn try_get_with_blocking<E: Send + Sync + 'static>(
        &self,
        key: K,
        loader: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, LoadError<E>> {
        self.inner
            .load_blocking(key, || loader().map(Some), false, None)
            .map(|v| v.expect("accept_none = false yields values only"))
    }

    /// Blocking twin of `get_with`: an infallible loader.
    ///
    /// # Errors
    ///
    /// [`LoadError::Panicked`] when a shared load panicked, [`LoadError::Reentrant`], or
    /// [`LoadError::Timeout`].
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// assert_eq!(cache.get_with_blocking(1, || 7).unwrap(), 7);
    /// assert_eq!(cache.get_with_blocking(1, || unreachable!()).unwrap(), 7);
    /// ```
    pub fn get_with_blocking(
        &self,
        key: K,
        loader: impl FnOnce() -> V,
    ) -> Result<V, LoadError<Infallible>> {
        self.try_get_with_blocking(key, || Ok::<_, Infallible>(loader()))
    }
}
