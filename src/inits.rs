//! Coalescing for [`Cache::get_or_insert_with`](crate::Cache::get_or_insert_with): concurrent
//! callers that miss the same key run one `init` between them.
//!
//! The first caller to miss registers an [`Init`] under the key (a striped table of pending
//! inits, made on first use) and runs `init` outside every lock; later callers for the key find
//! it and block on its condvar. The leader stores the value in the cache *before* it removes
//! its `Init`, so that a caller arriving in between either waits on the `Init` or hits the
//! stored value: nobody runs `init` twice for one miss. A leader whose `init` panics marks its
//! `Init` abandoned, and each waiter then retries (one of them leads). A thread that calls
//! `get_or_insert_with` for the key its own `init` is computing would wait forever: it panics
//! instead, naming the reentrancy.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use crate::shim::{Condvar, Mutex, thread_local};

enum State<V> {
    Running,
    Done(V),
    Abandoned,
}

/// One `init` in progress.
pub(crate) struct Init<V> {
    state: Mutex<State<V>>,
    done: Condvar,
}

impl<V: Clone> Init<V> {
    /// Blocks until the leader finishes: its value, or `None` if it gave up (panicked).
    pub(crate) fn wait(&self) -> Option<V> {
        let mut state = self.state.lock();
        loop {
            match &*state {
                State::Running => self.done.wait(&mut state),
                State::Done(v) => return Some(v.clone()),
                State::Abandoned => return None,
            }
        }
    }

    fn finish(&self, outcome: State<V>) {
        *self.state.lock() = outcome;
        self.done.notify_all();
    }
}

type Pending<K, V> = Vec<(u64, K, Arc<Init<V>>)>;

/// The pending inits of one cache, striped by hash.
pub(crate) struct Inits<K, V> {
    stripes: Box<[Mutex<Pending<K, V>>]>,
}

/// What [`Inits::join`] found.
pub(crate) enum Joined<V> {
    /// The caller leads: run `init`, store, then [`Inits::complete`] or [`Inits::abandon`].
    Lead(Arc<Init<V>>),
    /// Another caller is computing the value: [`Init::wait`] on it.
    Wait(Arc<Init<V>>),
}

thread_local! {
    /// The inits this thread leads (reentrancy detection).
    static LEADING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

fn id<V>(init: &Arc<Init<V>>) -> usize {
    Arc::as_ptr(init) as *const () as usize
}

impl<K: Hash + Eq + Clone, V: Clone> Inits<K, V> {
    pub(crate) fn new(stripes: usize) -> Self {
        Self {
            stripes: (0..stripes.next_power_of_two().max(1))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
        }
    }

    fn stripe(&self, hash: u64) -> &Mutex<Pending<K, V>> {
        &self.stripes[(hash as usize) & (self.stripes.len() - 1)]
    }

    /// Leads the init of `key` or joins the one in progress.
    ///
    /// # Panics
    ///
    /// If this thread is running the `init` of `key` itself (reentrancy would deadlock).
    pub(crate) fn join(&self, hash: u64, key: &K) -> Joined<V> {
        let mut pending = self.stripe(hash).lock();
        if let Some((_, _, init)) = pending.iter().find(|(h, k, _)| *h == hash && k == key) {
            let init = Arc::clone(init);
            drop(pending);
            let reentrant = LEADING.with(|l| l.borrow().contains(&id(&init)));
            assert!(
                !reentrant,
                "get_or_insert_with or compute: the closure asked for the key it is computing \
                 (a deadlock)"
            );
            return Joined::Wait(init);
        }
        let init = Arc::new(Init {
            state: Mutex::new(State::Running),
            done: Condvar::new(),
        });
        pending.push((hash, key.clone(), Arc::clone(&init)));
        drop(pending);
        LEADING.with(|l| l.borrow_mut().push(id(&init)));
        Joined::Lead(init)
    }

    fn remove(&self, hash: u64, init: &Arc<Init<V>>) {
        let mut pending = self.stripe(hash).lock();
        pending.retain(|(_, _, i)| !Arc::ptr_eq(i, init));
        drop(pending);
        LEADING.with(|l| l.borrow_mut().retain(|&i| i != id(init)));
    }

    /// The leader stored `value` (or found one stored meanwhile): release the waiters.
    pub(crate) fn complete(&self, hash: u64, init: &Arc<Init<V>>, value: V) {
        self.remove(hash, init);
        init.finish(State::Done(value));
    }

    /// The leader's `init` panicked: the waiters retry.
    pub(crate) fn abandon(&self, hash: u64, init: &Arc<Init<V>>) {
        self.remove(hash, init);
        init.finish(State::Abandoned);
    }
}

/// The hash [`Inits`] stripes by: the cache's own key hash.
pub(crate) fn hash_of<K: Hash, S: BuildHasher>(hasher: &S, key: &K) -> u64 {
    hasher.hash_one(key)
}
