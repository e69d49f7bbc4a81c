//! moka as the benches and the replay harness build it (`#[path]`-included).

use std::hash::Hash;

/// A `moka::sync::Cache` of `capacity` entries: moka's default policy (TinyLFU admission), or
/// with `lru`, `EvictionPolicy::lru()`.
pub fn moka_cache<K, V>(capacity: u64, lru: bool) -> moka::sync::Cache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let builder = moka::sync::Cache::builder().max_capacity(capacity);
    if lru {
        builder
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .build()
    } else {
        builder.build()
    }
}
