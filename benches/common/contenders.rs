//! The contenders' adapters shared by the throughput benches (`#[path]`-included by
//! `throughput.rs` and `side_by_side.rs`; not every target uses every item): one trait over
//! `aside`, moka, quick_cache and an exact LRU behind one lock, `u64 -> u64`.
#![allow(dead_code)]

use std::num::NonZeroUsize;

use aside::Cache;
use aside::policy::EvictionPolicy;
use parking_lot::Mutex;

/// The operations a contender offers; `&self` throughout so threads can share it.
pub trait Contender {
    fn get(&self, key: u64) -> Option<u64>;
    fn insert(&self, key: u64, value: u64);
    /// Presence without side effects (used only while setting up).
    fn contains(&self, key: u64) -> bool;
    /// Finish pending maintenance after the pre-fill (moka).
    fn settle(&self) {}
}

impl<P: EvictionPolicy> Contender for Cache<u64, u64, P> {
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        Cache::get(self, &key)
    }
    #[inline]
    fn insert(&self, key: u64, value: u64) {
        Cache::insert(self, key, value);
    }
    fn contains(&self, key: u64) -> bool {
        self.contains_key(&key)
    }
}

impl Contender for moka::sync::Cache<u64, u64> {
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        moka::sync::Cache::get(self, &key)
    }
    #[inline]
    fn insert(&self, key: u64, value: u64) {
        moka::sync::Cache::insert(self, key, value);
    }
    fn contains(&self, key: u64) -> bool {
        self.contains_key(&key)
    }
    fn settle(&self) {
        self.run_pending_tasks();
    }
}

impl Contender for moka::sync::SegmentedCache<u64, u64> {
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        moka::sync::SegmentedCache::get(self, &key)
    }
    #[inline]
    fn insert(&self, key: u64, value: u64) {
        moka::sync::SegmentedCache::insert(self, key, value);
    }
    fn contains(&self, key: u64) -> bool {
        self.contains_key(&key)
    }
    fn settle(&self) {
        self.run_pending_tasks();
    }
}

impl Contender for quick_cache::sync::Cache<u64, u64> {
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        quick_cache::sync::Cache::get(self, &key)
    }
    #[inline]
    fn insert(&self, key: u64, value: u64) {
        quick_cache::sync::Cache::insert(self, key, value);
    }
    fn contains(&self, key: u64) -> bool {
        self.contains_key(&key)
    }
}

/// An exact LRU behind one lock.
pub struct MutexLru(pub Mutex<lru::LruCache<u64, u64, ahash::RandomState>>);

impl Contender for MutexLru {
    #[inline]
    fn get(&self, key: u64) -> Option<u64> {
        self.0.lock().get(&key).copied()
    }
    #[inline]
    fn insert(&self, key: u64, value: u64) {
        self.0.lock().put(key, value);
    }
    fn contains(&self, key: u64) -> bool {
        self.0.lock().contains(&key)
    }
}

/// An exact LRU of `size` entries behind one lock, with a fixed hasher.
pub fn mutex_lru(size: u64) -> MutexLru {
    let cap = NonZeroUsize::new(size as usize).expect("size > 0");
    MutexLru(Mutex::new(lru::LruCache::with_hasher(
        cap,
        ahash::RandomState::with_seeds(1, 2, 3, 4),
    )))
}
