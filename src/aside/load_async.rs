//! The async front door (`async` feature): `get_or_load`, `try_get_with`, `get_with`. Laid
//! out as its blocking twin, `load_blocking.rs`: the waiter's plumbing, the leader's run, the
//! read path, then the entry points.
//!
//! Waiting never blocks an executor thread: waiters park on their flight's waker list, and
//! every lock taken here is held for a few instructions, never across an await. The decisions
//! around a load (lookup, recheck, install, fail-safe, what a waiter returns) are the front
//! door's shared machinery, in `mod.rs`.

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use super::flight::{self, Flight, Join, Lead, Outcome, SharedError};
use super::labels::{Labels, Mark};
use super::stats::Counters;
use super::trace;
use super::{AsideCache, Found, Inner, LeaseExpiry, LoadError, Recheck, RefreshMode, Slot};
use crate::policy::EvictionPolicy;

tokio::task_local! {
    /// Flights the current task leads (reentrancy detection).
    pub(crate) static LEADING_TASK: Vec<u64>;
}

/// Whether the current task is running the loader of flight `id`.
pub(crate) fn task_leads(id: u64) -> bool {
    LEADING_TASK
        .try_with(|ids| ids.contains(&id))
        .unwrap_or(false)
}

type BoxLoad<V, E> = Pin<Box<dyn Future<Output = Result<Option<V>, E>> + Send>>;
type Panic = Box<dyn Any + Send>;

/// Polls the loader inside `catch_unwind`, so that a panic becomes a value the leader can
/// publish before resuming it.
pub(crate) struct CatchUnwind<F: ?Sized>(pub(crate) Pin<Box<F>>);

impl<F: Future + ?Sized> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Panic>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(p) => Poll::Ready(Err(p)),
        }
    }
}

/// Waits for a flight's outcome.
pub(crate) struct WaitFlight<V>(pub(crate) Arc<Flight<V>>);

impl<V: Clone> Future for WaitFlight<V> {
    type Output = Outcome<V>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<V>> {
        self.0.poll_outcome(cx)
    }
}

/// Runs `load` as the leader of `lead`'s flight: hard timeout, install, publish. `'static`, so
/// that it can move to a background task (early refresh, soft timeout).
async fn run_load<K, V, P, E>(
    inner: Arc<Inner<K, V, P>>,
    lead: Lead<K, V>,
    key: K,
    load: BoxLoad<V, E>,
    stale: Option<Slot<V>>,
    mark: Option<Arc<Mark>>,
) -> Result<Option<V>, LoadError<E>>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
    E: Send + Sync + 'static,
{
    let flight = Arc::clone(lead.flight());
    let span = trace::LoadSpan::new(|| inner.registry.key_hash(&key), flight.id);
    let mut ids = LEADING_TASK.try_with(Clone::clone).unwrap_or_default();
    ids.push(flight.id);
    let t0 = inner.now();
    let started = Instant::now();
    let guarded = span.instrument(LEADING_TASK.scope(ids, CatchUnwind(load)));
    let result = match inner.settings.load_timeout {
        Some(limit) => tokio::time::timeout(limit, guarded).await.ok(),
        None => Some(guarded.await),
    };
    Counters::bump(&inner.stats.loads);
    inner.stats.latency.record(started.elapsed());
    let delta = inner.now().saturating_sub(t0);
    let (outcome, result) = match result {
        Some(Ok(Ok(value))) => {
            let installed = inner.finish_loaded(lead, &key, value.clone(), delta, mark);
            (trace::loaded(&value, installed), Ok(value))
        }
        Some(Ok(Err(e))) => {
            Counters::bump(&inner.stats.load_errors);
            let e = Arc::new(e);
            let shared: SharedError = e.clone();
            inner.finish_failed(lead, &key, Outcome::Failed(shared), stale.as_ref());
            match &stale {
                Some(s) => (trace::Outcome::FailSafe, Ok(inner.served_stale(s))),
                None => (trace::Outcome::Error, Err(LoadError::Loader(e))),
            }
        }
        None => {
            Counters::bump(&inner.stats.timeouts);
            inner.finish_failed(lead, &key, Outcome::TimedOut, stale.as_ref());
            match &stale {
                Some(s) => (trace::Outcome::FailSafe, Ok(inner.served_stale(s))),
                None => (trace::Outcome::Timeout, Err(LoadError::Timeout)),
            }
        }
        Some(Err(panic)) => {
            Counters::bump(&inner.stats.panics);
            inner.finish_failed(lead, &key, Outcome::Panicked, None);
            span.finish(trace::Outcome::Panicked, flight.waiters());
            resume_unwind(panic)
        }
    };
    span.finish(outcome, flight.waiters());
    result
}

impl<K, V, P> AsideCache<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    pub(crate) async fn load_async<E, F, Fut>(
        &self,
        key: K,
        loader: F,
        accept_none: bool,
        labels: Option<&Labels>,
    ) -> Result<Option<V>, LoadError<E>>
    where
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
    {
        let inner = &self.inner;
        let stale = match inner.lookup(&key) {
            Found::Fresh(v) if v.is_some() || accept_none => return Ok(v),
            Found::RefreshEarly(v) if v.is_some() || accept_none => {
                let Some(f) = inner.registry.try_lead(&key, labels) else {
                    return Ok(v); // a refresh is already in flight
                };
                Counters::bump(&inner.stats.early_refreshes);
                let lead = Lead::new(Arc::clone(&inner.registry), key.clone(), f);
                // A value still on its way to the source is newer than what a reload reads.
                let lead = match inner.take_pending(lead, &key, labels) {
                    Ok(v) => return Ok(Some(v)),
                    Err(lead) => lead,
                };
                let mark = inner.book.mark(labels);
                let load = Box::pin(loader());
                let run = run_load(Arc::clone(inner), lead, key, load, None, mark);
                let background = inner.settings.refresh == RefreshMode::Background;
                return match tokio::runtime::Handle::try_current() {
                    Ok(handle) if background => {
                        handle.spawn(run);
                        Ok(v)
                    }
                    _ => Ok(run.await.unwrap_or(v)),
                };
            }
            Found::Stale(s) => Some(s),
            _ => None,
        };
        let mut join = inner.registry.join_labelled(&key, labels);
        loop {
            match join {
                Join::Lead(f) => {
                    let lead = Lead::new(Arc::clone(&inner.registry), key.clone(), f);
                    let stale = match inner.recheck(&key, accept_none) {
                        Recheck::Serve(v) => {
                            lead.complete(Outcome::Loaded(v.clone()), |_| ());
                            return Ok(v);
                        }
                        // Not the lookup's slot: see `Inner::recheck`.
                        Recheck::Load { stale } => stale,
                    };
                    let lead = match inner.take_pending(lead, &key, labels) {
                        Ok(v) => return Ok(Some(v)),
                        Err(lead) => lead,
                    };
                    let mark = inner.book.mark(labels);
                    let load = Box::pin(loader());
                    let run = run_load(Arc::clone(inner), lead, key, load, stale.clone(), mark);
                    let (Some(stale), Some(soft)) = (stale, inner.settings.soft_timeout) else {
                        return run.await;
                    };
                    let mut run = Box::pin(run);
                    return match tokio::time::timeout(soft, &mut run).await {
                        Ok(result) => result,
                        Err(_) => {
                            // Serve the stale value now; the reload goes on in the background.
                            tokio::spawn(run);
                            Ok(inner.served_stale(&stale))
                        }
                    };
                }
                Join::Wait(f) => {
                    if flight::is_leading(f.id) {
                        return Err(LoadError::Reentrant);
                    }
                    Counters::bump(&inner.stats.coalesced);
                    f.add_waiter();
                    let waited =
                        tokio::time::timeout(inner.settings.lease, WaitFlight(Arc::clone(&f)))
                            .await;
                    match waited {
                        Ok(outcome) => {
                            if let Some(r) =
                                inner.waiter_result(outcome, stale.as_ref(), accept_none)
                            {
                                return r;
                            }
                            join = inner.registry.join_labelled(&key, labels);
                        }
                        Err(_) => {
                            Counters::bump(&inner.stats.timeouts);
                            match inner.settings.on_lease_expiry {
                                LeaseExpiry::TakeOver => join = inner.registry.take_over(&key, &f),
                                LeaseExpiry::LoadIndependently => {
                                    // The hard timeout bounds this caller's own load too.
                                    Counters::bump(&inner.stats.loads);
                                    let own = loader();
                                    let result = match inner.settings.load_timeout {
                                        Some(limit) => tokio::time::timeout(limit, own).await.ok(),
                                        None => Some(own.await),
                                    };
                                    return inner.independent_result(result, stale.as_ref());
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The value for `key`; on a miss, `loader` loads it, once for all concurrent callers
    /// (single flight with a lease), and it is cached with the configured TTL. The loader
    /// returns `Ok(None)` for "not found", which is cached only with a `negative_ttl`.
    ///
    /// The loader's future must be `Send + 'static` because a load may outlive its caller:
    /// early refreshes run in the background, and a load past the fail-safe soft timeout
    /// finishes in the background.
    ///
    /// Four tasks race for one key; the loader runs once:
    ///
    /// ```
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() {
    /// use aside::AsideCache;
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    ///
    /// let cache: AsideCache<u32, String> = AsideCache::builder().build().unwrap();
    /// let loads = Arc::new(AtomicUsize::new(0));
    /// let tasks: Vec<_> = (0..4)
    ///     .map(|_| {
    ///         let (cache, loads) = (cache.clone(), loads.clone());
    ///         tokio::spawn(async move {
    ///             cache
    ///                 .get_or_load(7, move || async move {
    ///                     loads.fetch_add(1, Ordering::SeqCst);
    ///                     tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    ///                     Ok::<_, std::io::Error>(Some("seven".to_string()))
    ///                 })
    ///                 .await
    ///         })
    ///     })
    ///     .collect();
    /// for t in tasks {
    ///     assert_eq!(t.await.unwrap().unwrap().as_deref(), Some("seven"));
    /// }
    /// assert_eq!(loads.load(Ordering::SeqCst), 1);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`LoadError::Loader`] with the loader's error (shared by all waiters),
    /// [`LoadError::Timeout`] past the hard `load_timeout`, [`LoadError::Panicked`] when the
    /// shared load panicked, [`LoadError::Reentrant`] when called from the loader of the same
    /// key. With fail-safe on, a stale value is returned instead of `Loader` and `Timeout`.
    ///
    /// # Panics
    ///
    /// If this caller's own loader panics, the panic resumes here after every waiter has
    /// been released with [`LoadError::Panicked`].
    ///
    /// # Cancellation
    ///
    /// Dropping this future while it leads a load abandons the load: a waiter takes it over.
    /// Dropping it while it waits leaves the shared load untouched.
    pub async fn get_or_load<E, F, Fut>(&self, key: K, loader: F) -> Result<Option<V>, LoadError<E>>
    where
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
    {
        self.load_async(key, loader, true, None).await
    }

    /// Like [`get_or_load`](Self::get_or_load) for a loader that always finds a value
    /// (moka's `try_get_with`).
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
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// let v = cache.try_get_with(1, || async { Ok::<_, String>(10) }).await;
    /// assert_eq!(v.unwrap(), 10);
    /// # }
    /// ```
    pub async fn try_get_with<E, F, Fut>(&self, key: K, loader: F) -> Result<V, LoadError<E>>
    where
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let loaded = self
            .load_async(
                key,
                || {
                    let f = loader();
                    async move { f.await.map(Some) }
                },
                false,
                None,
            )
            .await?;
        Ok(loaded.expect("accept_none = false yields values only"))
    }

    /// Like [`get_or_load`](Self::get_or_load) for an infallible loader (moka's `get_with`).
    ///
    /// # Errors
    ///
    /// [`LoadError::Timeout`], [`LoadError::Panicked`] or [`LoadError::Reentrant`].
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
    /// assert_eq!(cache.get_with(1, || async { 10 }).await.unwrap(), 10);
    /// # }
    /// ```
    pub async fn get_with<F, Fut>(&self, key: K, loader: F) -> Result<V, LoadError<Infallible>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        self.try_get_with(key, || {
            let f = loader();
            async move { Ok::<_, Infallible>(f.await) }
        })
        .await
    }
}
