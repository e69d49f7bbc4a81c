//! Panic safety: every piece of user code the cache calls (weigher, eviction listener, the key's
//! `Hash` and `Eq`, the value's `Clone`, loaders blocking and async) panics on a flag, and
//! afterwards the cache is consistent (`validate()`), usable (inserts and reads work on the
//! same shard, from this thread and another), and leaks nothing: keys and values count their
//! live instances, which return to zero once the cache is dropped.

use std::hash::{Hash, Hasher};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use aside::policy::{EvictionPolicy, Lru};
use aside::{AsideCache, Cache, LoadError};

/// Live instances per test (indexed by `SLOT`): tests run in parallel.
static LIVE: [AtomicUsize; 8] = [const { AtomicUsize::new(0) }; 8];
/// Per-test switches that make the instrumented code panic.
static ARMED: [AtomicBool; 8] = [const { AtomicBool::new(false) }; 8];

fn arm<const SLOT: usize>(on: bool) {
    ARMED[SLOT].store(on, Ordering::SeqCst);
}

fn armed<const SLOT: usize>() -> bool {
    ARMED[SLOT].load(Ordering::SeqCst)
}

fn live<const SLOT: usize>() -> usize {
    LIVE[SLOT].load(Ordering::SeqCst)
}

/// A value counting its live instances; its `Clone` panics while armed and `bomb` is set.
#[derive(Debug)]
struct Val<const SLOT: usize> {
    n: u32,
    bomb: bool,
}

impl<const SLOT: usize> Val<SLOT> {
    fn new(n: u32) -> Self {
        LIVE[SLOT].fetch_add(1, Ordering::SeqCst);
        Self { n, bomb: false }
    }

    fn bomb(n: u32) -> Self {
        let mut v = Self::new(n);
        v.bomb = true;
        v
    }
}

impl<const SLOT: usize> Clone for Val<SLOT> {
    fn clone(&self) -> Self {
        assert!(
            !(self.bomb && armed::<SLOT>()),
            "clone of {} failed",
            self.n
        );
        let mut v = Self::new(self.n);
        v.bomb = self.bomb;
        v
    }
}

impl<const SLOT: usize> Drop for Val<SLOT> {
    fn drop(&mut self) {
        LIVE[SLOT].fetch_sub(1, Ordering::SeqCst);
    }
}

/// A key counting its live instances; `Hash` and `Eq` panic while armed for key 13.
#[derive(Debug)]
struct Key<const SLOT: usize>(u32);

impl<const SLOT: usize> Key<SLOT> {
    fn new(n: u32) -> Self {
        LIVE[SLOT].fetch_add(1, Ordering::SeqCst);
        Self(n)
    }
}

impl<const SLOT: usize> Clone for Key<SLOT> {
    fn clone(&self) -> Self {
        Self::new(self.0)
    }
}

impl<const SLOT: usize> Drop for Key<SLOT> {
    fn drop(&mut self) {
        LIVE[SLOT].fetch_sub(1, Ordering::SeqCst);
    }
}

impl<const SLOT: usize> Hash for Key<SLOT> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Hash panics for 13 under flag bit "hash" (even keys of the slot), Eq for 13 otherwise.
        assert!(
            !(self.0 == 13 && armed::<SLOT>() && HASH_PANICS.load(Ordering::SeqCst)),
            "hash of 13 failed"
        );
        // Every key in one bucket chain as far as possible: a colliding hash makes `Eq` run.
        (self.0 % 2).hash(state);
    }
}

impl<const SLOT: usize> PartialEq for Key<SLOT> {
    fn eq(&self, other: &Self) -> bool {
        assert!(
            !((self.0 == 13 || other.0 == 13)
                && armed::<SLOT>()
                && !HASH_PANICS.load(Ordering::SeqCst)),
            "eq on 13 failed"
        );
        self.0 == other.0
    }
}

impl<const SLOT: usize> Eq for Key<SLOT> {}

static HASH_PANICS: AtomicBool = AtomicBool::new(false);

fn panics<R>(f: impl FnOnce() -> R) -> bool {
    catch_unwind(AssertUnwindSafe(f)).is_err()
}

/// The cache still works on its only shard, from this thread and another.
fn usable<K: Clone + Hash + Eq + Send + Sync, V: Clone + Send + Sync, P: EvictionPolicy>(
    cache: &Cache<K, V, P>,
    key: K,
    value: V,
) {
    cache.validate().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| cache.insert(key.clone(), value.clone()));
    });
    assert!(cache.get(&key).is_some());
    cache.validate().unwrap();
}

#[test]
fn a_panicking_weigher_changes_nothing_and_leaks_nothing() {
    const S: usize = 0;
    // LRU: the evictions below are LRU's (W-TinyLFU could refuse a newcomer instead).
    let cache: Cache<u32, Val<S>, Lru> = Cache::builder()
        .policy(Lru::new())
        .max_capacity(10)
        .shards(1)
        .weigher(|_, v: &Val<S>| {
            assert!(!(v.bomb && armed::<S>()), "weigher failed on {}", v.n);
            2
        })
        .build()
        .unwrap();
    for k in 0..5 {
        cache.insert(k, Val::new(k));
    }
    arm::<S>(true);
    assert!(panics(|| cache.insert(5, Val::bomb(5))));
    assert!(panics(|| cache.insert(1, Val::bomb(1)))); // a replacement keeps the old value
    assert!(panics(|| cache.insert_with_ttl(
        2,
        Val::bomb(2),
        std::time::Duration::from_secs(1)
    )));
    assert!(panics(|| cache.get_or_insert_with(6, || Val::bomb(6))));
    arm::<S>(false);
    assert_eq!((cache.len(), cache.weighted_size()), (5, 10));
    assert_eq!(cache.get(&1).map(|v| v.n), Some(1));
    assert!(!cache.contains_key(&5) && !cache.contains_key(&6));
    assert_eq!(live::<S>(), 5, "the rejected values were dropped");
    usable(&cache, 7, Val::new(7));
    drop(cache);
    assert_eq!(live::<S>(), 0);
}

#[test]
fn a_panicking_listener_announces_the_rest_and_leaks_nothing() {
    const S: usize = 1;
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    // LRU: the evictions below are LRU's (W-TinyLFU could refuse a newcomer instead).
    let cache: Cache<u32, Val<S>, Lru> = Cache::builder()
        .policy(Lru::new())
        .max_capacity(6)
        .shards(1)
        .weigher(|_, v: &Val<S>| v.n % 10)
        .eviction_listener(move |k, _, cause| {
            counter.fetch_add(1, Ordering::SeqCst);
            assert!(!armed::<S>(), "listener failed on {k} ({cause:?})");
        })
        .build()
        .unwrap();
    for k in 0..6 {
        cache.insert(k, Val::new(1));
    }
    arm::<S>(true);
    // One insert of weight 4 evicts four entries: every one is announced and dropped even
    // though the listener panics on each.
    assert!(panics(|| cache.insert(10, Val::new(4))));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!((cache.len(), cache.weighted_size()), (3, 6));
    assert_eq!(live::<S>(), 3);
    cache.validate().unwrap();
    // Replacement, removal, retain, clear: each completes, then the panic surfaces.
    assert!(panics(|| cache.insert(10, Val::new(2))));
    assert!(panics(|| cache.remove(&10)));
    assert!(panics(|| cache.retain(|k, _| *k != 4)));
    assert!(panics(|| cache.invalidate_all()));
    assert!(cache.is_empty());
    assert_eq!(live::<S>(), 0);
    cache.validate().unwrap();
    arm::<S>(false);
    usable(&cache, 1, Val::new(1));
    drop(cache);
    assert_eq!(live::<S>(), 0);
}

#[test]
fn a_panicking_key_hash_or_eq_leaves_the_shard_consistent() {
    const S: usize = 2;
    let cache: Cache<Key<S>, Val<S>> = Cache::builder().max_capacity(8).shards(1).build().unwrap();
    for k in [1, 3, 5, 13] {
        cache.insert(Key::new(k), Val::new(k));
    }
    for hash_panics in [true, false] {
        HASH_PANICS.store(hash_panics, Ordering::SeqCst);
        arm::<S>(true);
        // With Eq panicking, any lookup of an odd key that meets 13 in its chain may panic;
        // with Hash panicking, only key 13 itself does. Either way no operation leaves the
        // shard half-changed.
        assert!(panics(|| cache.get(&Key::new(13))));
        assert!(panics(|| cache.peek(&Key::new(13))));
        assert!(panics(|| cache.contains_key(&Key::new(13))));
        assert!(panics(|| cache.insert(Key::new(13), Val::new(99))));
        let _ = panics(|| cache.insert(Key::new(7), Val::new(7)));
        assert!(panics(|| cache.remove(&Key::new(13))));
        let _ = panics(|| cache.get_or_insert_with(Key::new(13), || Val::new(98)));
        let _ = panics(|| cache.retain(|k, _| k.0 != 3));
        arm::<S>(false);
        cache.validate().unwrap();
        assert!(cache.len() <= 8);
        // Every value the cache holds still belongs to its key.
        for (k, v) in cache.iter() {
            assert!(k.0 == v.n || (k.0 == 13 && v.n == 99), "{k:?} -> {v:?}");
        }
    }
    HASH_PANICS.store(false, Ordering::SeqCst);
    usable(&cache, Key::new(21), Val::new(21));
    let held = cache.len();
    assert_eq!(live::<S>(), 2 * held, "one key and one value per entry");
    drop(cache);
    assert_eq!(live::<S>(), 0);
}

#[test]
fn a_panicking_value_clone_leaves_the_cache_consistent() {
    const S: usize = 3;
    let cache: Cache<u32, Val<S>> = Cache::builder().max_capacity(8).shards(1).build().unwrap();
    cache.insert(1, Val::bomb(1));
    cache.insert(2, Val::new(2));
    arm::<S>(true);
    for _ in 0..100 {
        // More hits than the access buffer holds: a drain runs on one of them.
        assert!(panics(|| cache.get(&1)));
        assert_eq!(cache.get(&2).map(|v| v.n), Some(2));
    }
    assert!(panics(|| cache.peek(&1)));
    assert!(panics(|| cache.iter().count()));
    assert!(panics(|| cache.get_or_insert_with(1, || Val::new(9))));
    assert!(panics(|| cache.retain(|_, _| true)));
    // `remove` clones the value it returns after removing it: the entry is gone either way.
    assert!(panics(|| cache.remove(&1)));
    assert!(!cache.contains_key(&1));
    arm::<S>(false);
    cache.validate().unwrap();
    assert_eq!(live::<S>(), 1);
    usable(&cache, 3, Val::new(3));
    drop(cache);
    assert_eq!(live::<S>(), 0);
}

fn front_door<const SLOT: usize>() -> AsideCache<u32, Val<SLOT>> {
    AsideCache::builder()
        .max_capacity(8)
        .shards(1)
        .build()
        .unwrap()
}

#[test]
fn a_panicking_blocking_loader_reaches_its_waiters_and_leaks_nothing() {
    const S: usize = 4;
    let cache = front_door::<S>();
    cache.put(1, Val::new(1));
    let started = Arc::new(std::sync::Barrier::new(2));
    let release = Arc::new(std::sync::Barrier::new(2));
    std::thread::scope(|s| {
        let leader = s.spawn(|| {
            panics(|| {
                cache.get_or_load_blocking(7, || -> Result<Option<Val<S>>, ()> {
                    started.wait();
                    release.wait();
                    let _doomed = Val::<S>::new(0); // dropped while unwinding
                    panic!("loader bug")
                })
            })
        });
        started.wait();
        let waiter = s.spawn(|| cache.get_or_load_blocking(7, || Ok::<_, ()>(Some(Val::new(70)))));
        // The waiter joins the flight before the leader is released.
        while cache.load_stats().coalesced == 0 {
            std::thread::yield_now();
        }
        release.wait();
        assert!(leader.join().unwrap(), "the leader's call panics");
        assert!(matches!(waiter.join().unwrap(), Err(LoadError::Panicked)));
    });
    assert_eq!(cache.in_flight(), 0);
    assert_eq!(cache.get(&7).map(|v| v.n), None, "nothing installed");
    cache.validate().unwrap();
    // The next load runs and is cached.
    let v = cache.get_or_load_blocking(7, || Ok::<_, ()>(Some(Val::new(71))));
    assert_eq!(v.unwrap().map(|v| v.n), Some(71));
    assert_eq!(cache.get(&7).map(|v| v.n), Some(71));
    assert_eq!(cache.load_stats().panics, 1);
    drop(cache);
    assert_eq!(live::<S>(), 0);
}

/// An async loader that waits for a permit, then panics holding a value.
#[cfg(feature = "async")]
async fn exploding<const S: usize>(
    gate: Arc<tokio::sync::Semaphore>,
) -> Result<Option<Val<S>>, ()> {
    let _doomed = Val::<S>::new(0); // dropped while unwinding
    gate.acquire().await.unwrap().forget();
    panic!("loader bug")
}

#[cfg(feature = "async")]
#[tokio::test]
async fn a_panicking_async_loader_reaches_its_waiters_and_leaks_nothing() {
    const S: usize = 6;
    let cache = front_door::<S>();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let leader = {
        let (cache, gate) = (cache.clone(), gate.clone());
        tokio::spawn(async move { cache.get_or_load(7, move || exploding::<S>(gate)).await })
    };
    while cache.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load(7, || async { Ok::<_, ()>(Some(Val::new(70))) })
                .await
        })
    };
    while cache.load_stats().coalesced == 0 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(1);
    assert!(leader.await.unwrap_err().is_panic());
    assert!(matches!(waiter.await.unwrap(), Err(LoadError::Panicked)));
    assert_eq!(cache.in_flight(), 0);
    cache.validate().unwrap();
    let v = cache
        .get_or_load(7, || async { Ok::<_, ()>(Some(Val::new(71))) })
        .await;
    assert_eq!(v.unwrap().map(|v| v.n), Some(71));
    drop(cache);
    assert_eq!(live::<S>(), 0);
}
