//! The in-flight registry: at most one load per key at a time.
//!
//! A [`Flight`] is one load. The caller that registers it leads (runs the loader); later
//! callers for the same key wait on it, asynchronously (a waker list) or blocking (a condvar).
//! The leader holds a [`Lead`] guard: completing it publishes the outcome and removes the
//! flight from the registry; dropping it unfinished publishes `Abandoned` (cancelled leader: a
//! waiter takes over) or `Panicked` (the loader panicked). Either way the registry never keeps
//! a dead flight.
//!
//! Race-free invalidation: `invalidate` and `put` mark the key's flight stale under the
//! registry shard's lock, and a leader installs its value under the same lock only if its
//! flight is not stale. So a load that started before an invalidation can never install the
//! value it read.

use std::any::Any;
use std::borrow::Borrow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use ahash::RandomState;

use crate::shim::{AtomicBool, AtomicU32, AtomicU64, Condvar, Mutex, Ordering, thread_local};

use super::labels::Labels;

/// A loader error shared by every waiter, with its type erased (`Arc<E>` inside).
pub(crate) type SharedError = Arc<dyn Any + Send + Sync>;

/// How a flight ended.
#[derive(Clone)]
pub(crate) enum Outcome<V> {
    /// The loader returned a value (`None`: not found).
    Loaded(Option<V>),
    /// The loader returned an error.
    Failed(SharedError),
    /// The load exceeded the hard load timeout.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    TimedOut,
    /// The loader panicked.
    Panicked,
    /// The leader was cancelled (its future dropped) before the load finished.
    Abandoned,
}

enum State<V> {
    Running { wakers: Vec<Waker> },
    Done(Outcome<V>),
}

/// One load in flight.
pub(crate) struct Flight<V> {
    pub(crate) id: u64,
    state: Mutex<State<V>>,
    cond: Condvar,
    /// Set by `invalidate`/`put` or a takeover: the result must not be installed.
    stale: AtomicBool,
    /// Callers that waited on this load instead of loading (for its tracing span).
    waiters: AtomicU32,
    /// The tags and namespace of the load (`invalidate_tag`/`invalidate_namespace` detach it).
    pub(crate) labels: Option<Labels>,
}

impl<V: Clone> Flight<V> {
    fn new(id: u64, labels: Option<Labels>) -> Self {
        Self {
            id,
            state: Mutex::new(State::Running { wakers: Vec::new() }),
            cond: Condvar::new(),
            stale: AtomicBool::new(false),
            waiters: AtomicU32::new(0),
            labels,
        }
    }

    /// The outcome, or registers the task's waker and returns `Pending`.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn poll_outcome(&self, cx: &mut Context<'_>) -> Poll<Outcome<V>> {
        match &mut *self.state.lock() {
            State::Done(outcome) => Poll::Ready(outcome.clone()),
            State::Running { wakers } => {
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }

    /// Blocks until the outcome is known or `deadline` passes (`None`: timed out).
    pub(crate) fn wait_until(&self, deadline: Instant) -> Option<Outcome<V>> {
        let mut state = self.state.lock();
        loop {
            if let State::Done(outcome) = &*state {
                return Some(outcome.clone());
            }
            if self.cond.wait_until(&mut state, deadline).timed_out() {
                return match &*state {
                    State::Done(outcome) => Some(outcome.clone()),
                    State::Running { .. } => None,
                };
            }
        }
    }

    /// The outcome, if the flight has finished.
    pub(crate) fn outcome(&self) -> Option<Outcome<V>> {
        match &*self.state.lock() {
            State::Done(outcome) => Some(outcome.clone()),
            State::Running { .. } => None,
        }
    }

    /// Publishes the outcome (first call wins) and wakes every waiter.
    fn finish(&self, outcome: Outcome<V>) {
        let wakers = {
            let mut state = self.state.lock();
            match std::mem::replace(&mut *state, State::Done(outcome)) {
                State::Running { wakers } => wakers,
                done @ State::Done(_) => {
                    *state = done;
                    return;
                }
            }
        };
        self.cond.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    pub(crate) fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }

    /// Counts a caller that waits on this load.
    pub(crate) fn add_waiter(&self) {
        self.waiters.fetch_add(1, Ordering::Relaxed);
    }

    /// Callers that waited on this load so far.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn waiters(&self) -> u32 {
        self.waiters.load(Ordering::Relaxed)
    }
}

/// The result of joining the registry for a key.
pub(crate) enum Join<V> {
    /// No load was in flight: the caller now leads this one.
    Lead(Arc<Flight<V>>),
    /// A load is in flight: wait on it.
    Wait(Arc<Flight<V>>),
}

type FlightMap<K, V> = HashMap<K, Arc<Flight<V>>, RandomState>;

/// In-flight loads, sharded by key hash.
pub(crate) struct Registry<K, V> {
    shards: Box<[Mutex<FlightMap<K, V>>]>,
    hasher: RandomState,
    next_id: AtomicU64,
}

impl<K: Hash + Eq + Clone, V: Clone> Registry<K, V> {
    pub(crate) fn new(shards: usize) -> Self {
        let shards = shards.next_power_of_two().max(1);
        Self {
            shards: (0..shards)
                .map(|_| Mutex::new(HashMap::with_hasher(RandomState::new())))
                .collect(),
            hasher: RandomState::new(),
            next_id: AtomicU64::new(1),
        }
    }

    /// The key's hash in this registry (a tracing span's `key_hash`).
    pub(crate) fn key_hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The key's shard; a borrowed form of the key hashes alike (the `Borrow` contract).
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &Mutex<FlightMap<K, V>> {
        let h = self.hasher.hash_one(key) as usize;
        &self.shards[h & (self.shards.len() - 1)]
    }

    fn new_flight(&self, labels: Option<Labels>) -> Arc<Flight<V>> {
        Arc::new(Flight::new(
            self.next_id.fetch_add(1, Ordering::Relaxed),
            labels,
        ))
    }

    /// Leads a new load for `key`, or joins the one in flight (unlabelled).
    #[cfg(test)]
    pub(crate) fn join(&self, key: &K) -> Join<V> {
        self.join_labelled(key, None)
    }

    /// [`join`](Self::join) for a load that will store its value with `labels`.
    pub(crate) fn join_labelled(&self, key: &K, labels: Option<&Labels>) -> Join<V> {
        let mut map = self.shard(key).lock();
        if let Some(f) = map.get(key) {
            return Join::Wait(Arc::clone(f));
        }
        let f = self.new_flight(labels.cloned());
        map.insert(key.clone(), Arc::clone(&f));
        Join::Lead(f)
    }

    /// Leads a new load for `key` only if none is in flight (early refresh).
    pub(crate) fn try_lead(&self, key: &K, labels: Option<&Labels>) -> Option<Arc<Flight<V>>> {
        match self.join_labelled(key, labels) {
            Join::Lead(f) => Some(f),
            Join::Wait(_) => None,
        }
    }

    /// A waiter's lease on `stalled` expired: replace it (its result will not be installed)
    /// and lead, unless another waiter already did, in which case wait on theirs.
    pub(crate) fn take_over(&self, key: &K, stalled: &Arc<Flight<V>>) -> Join<V> {
        let mut map = self.shard(key).lock();
        match map.get(key) {
            Some(current) if !Arc::ptr_eq(current, stalled) => Join::Wait(Arc::clone(current)),
            // Finished just as the lease ran out: its outcome is there to read.
            None if stalled.outcome().is_some() => Join::Wait(Arc::clone(stalled)),
            _ => {
                stalled.stale.store(true, Ordering::Release);
                let f = self.new_flight(stalled.labels.clone());
                map.insert(key.clone(), Arc::clone(&f));
                Join::Lead(f)
            }
        }
    }

    /// Marks the load in flight for `key` (if any) stale, detaches it from the registry and
    /// runs `write` under the registry shard's lock, so that no leader can install between
    /// the two.
    ///
    /// Detaching matters as much as marking: a caller that arrives after the invalidation
    /// must not join the stale flight (it would receive the value read before the write); it
    /// leads a fresh load instead. Callers already waiting keep the stale flight's outcome,
    /// which is linearizable: they asked before the invalidation.
    pub(crate) fn invalidate_with<Q, R>(&self, key: &Q, write: impl FnOnce() -> R) -> R
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self.shard(key).lock();
        if let Some(f) = map.remove(key) {
            f.stale.store(true, Ordering::Release);
        }
        write()
    }

    /// Marks every load in flight stale and detaches it (for `invalidate_all`).
    pub(crate) fn invalidate_all_with<R>(&self, write: impl FnOnce() -> R) -> R {
        let mut maps: Vec<_> = self.shards.iter().map(|s| s.lock()).collect();
        for map in &mut maps {
            for (_, f) in map.drain() {
                f.stale.store(true, Ordering::Release);
            }
        }
        write()
    }

    /// Marks stale and detaches every load in flight whose labels match (for
    /// `invalidate_tag` and `invalidate_namespace`): O(loads in flight), one shard at a time.
    pub(crate) fn invalidate_matching(&self, matches: impl Fn(Option<&Labels>) -> bool) {
        for shard in &self.shards {
            shard.lock().retain(|_, f| {
                let hit = matches(f.labels.as_ref());
                if hit {
                    f.stale.store(true, Ordering::Release);
                }
                !hit
            });
        }
    }

    /// Number of loads in flight.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

/// The leader's guard over its flight. See the module docs.
pub(crate) struct Lead<K: Hash + Eq + Clone, V: Clone> {
    registry: Arc<Registry<K, V>>,
    key: Option<K>,
    flight: Arc<Flight<V>>,
}

impl<K: Hash + Eq + Clone, V: Clone> Lead<K, V> {
    pub(crate) fn new(registry: Arc<Registry<K, V>>, key: K, flight: Arc<Flight<V>>) -> Self {
        Self {
            registry,
            key: Some(key),
            flight,
        }
    }

    pub(crate) fn flight(&self) -> &Arc<Flight<V>> {
        &self.flight
    }

    /// Removes the flight from the registry and, under the registry lock, calls `install`
    /// with whether the result may still be installed; then publishes `outcome`.
    pub(crate) fn complete<R>(mut self, outcome: Outcome<V>, install: impl FnOnce(bool) -> R) -> R {
        let key = self.key.take().expect("completed once");
        let r = {
            let mut map = self.registry.shard(&key).lock();
            if map.get(&key).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
                map.remove(&key);
            }
            install(!self.flight.is_stale())
        };
        self.flight.finish(outcome);
        r
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for Lead<K, V> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        {
            let mut map = self.registry.shard(&key).lock();
            if map.get(&key).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
                map.remove(&key);
            }
        }
        self.flight.finish(if std::thread::panicking() {
            Outcome::Panicked
        } else {
            Outcome::Abandoned
        });
    }
}

thread_local! {
    /// Flights the current thread leads through a blocking loader (reentrancy detection).
    static LEADING_THREAD: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Marks flight `id` as led by this thread while the guard lives (blocking loaders).
pub(crate) struct ThreadLeading(u64);

impl ThreadLeading {
    pub(crate) fn enter(id: u64) -> Self {
        LEADING_THREAD.with(|l| l.borrow_mut().push(id));
        Self(id)
    }
}

impl Drop for ThreadLeading {
    fn drop(&mut self) {
        LEADING_THREAD.with(|l| l.borrow_mut().retain(|&i| i != self.0));
    }
}

/// Whether the current thread (blocking) or task (async) is running the loader of `id`.
pub(crate) fn is_leading(id: u64) -> bool {
    if LEADING_THREAD.with(|l| l.borrow().contains(&id)) {
        return true;
    }
    #[cfg(feature = "async")]
    if super::load_async::task_leads(id) {
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_leader_then_waiters_and_cleanup() {
        let r: Arc<Registry<u32, u32>> = Arc::new(Registry::new(4));
        let Join::Lead(f) = r.join(&1) else { panic!() };
        let Join::Wait(w) = r.join(&1) else { panic!() };
        assert!(Arc::ptr_eq(&f, &w));
        assert_eq!(r.len(), 1);
        let lead = Lead::new(r.clone(), 1, f);
        let installed = lead.complete(Outcome::Loaded(Some(5)), |ok| ok);
        assert!(installed);
        assert_eq!(r.len(), 0);
        assert!(matches!(
            w.wait_until(Instant::now()),
            Some(Outcome::Loaded(Some(5)))
        ));
    }

    #[test]
    fn dropped_lead_abandons_and_invalidation_blocks_install() {
        let r: Arc<Registry<u32, u32>> = Arc::new(Registry::new(1));
        let Join::Lead(f) = r.join(&1) else { panic!() };
        drop(Lead::new(r.clone(), 1, f.clone()));
        assert!(matches!(
            f.wait_until(Instant::now()),
            Some(Outcome::Abandoned)
        ));
        assert_eq!(r.len(), 0);

        let Join::Lead(f) = r.join(&2) else { panic!() };
        r.invalidate_with(&2, || ());
        // A caller after the invalidation leads a fresh load rather than joining the stale one.
        let Join::Lead(fresh) = r.join(&2) else {
            panic!("joined a stale flight")
        };
        let lead = Lead::new(r.clone(), 2, f);
        assert!(!lead.complete(Outcome::Loaded(None), |ok| ok));
        // The stale leader finishing neither removes nor disturbs the fresh flight.
        assert_eq!(r.len(), 1);
        assert!(Lead::new(r.clone(), 2, fresh).complete(Outcome::Loaded(Some(2)), |ok| ok));
        assert_eq!(r.len(), 0);

        let Join::Lead(g) = r.join(&3) else { panic!() };
        r.invalidate_all_with(|| ());
        assert!(g.is_stale());
        assert!(matches!(r.join(&3), Join::Lead(_)));
    }

    #[test]
    fn take_over_replaces_the_stalled_flight_once() {
        let r: Arc<Registry<u32, u32>> = Arc::new(Registry::new(1));
        let Join::Lead(old) = r.join(&1) else {
            panic!()
        };
        let Join::Lead(new) = r.take_over(&1, &old) else {
            panic!()
        };
        assert!(old.is_stale());
        let Join::Wait(same) = r.take_over(&1, &old) else {
            panic!()
        };
        assert!(Arc::ptr_eq(&new, &same));
        // The stalled leader finishing later neither removes the new flight nor installs.
        assert!(!Lead::new(r.clone(), 1, old).complete(Outcome::Loaded(Some(1)), |ok| ok));
        assert_eq!(r.len(), 1);
    }
}
