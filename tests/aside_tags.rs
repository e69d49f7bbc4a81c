//! Tags and namespaces: lazy invalidation by tag, O(1) namespace bumps, race-freedom against
//! loads in flight, and reclamation of hidden entries by normal eviction.
#![cfg(feature = "async")]

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aside::policy::Lru;
use aside::{AsideCache, Labels};
use tokio::sync::Semaphore;

#[path = "common/until.rs"]
mod wait;
use wait::until;

#[test]
fn a_tag_invalidation_hides_tagged_entries_only() {
    let cache: AsideCache<u32, &str> = AsideCache::builder().build().unwrap();
    let (team7, team8) = (Labels::new().tag("team:7"), Labels::new().tag("team:8"));
    let both = Labels::new().tag("team:7").tag("team:8");
    cache.put_labelled(1, "alice", &team7);
    cache.put_labelled(2, "bob", &team8);
    cache.put_labelled(3, "carol", &both);
    cache.put(4, "untagged");
    cache.invalidate_tag("team:7");
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get(&2), Some("bob"));
    assert_eq!(cache.get(&3), None);
    assert_eq!(cache.get(&4), Some("untagged"));
    assert_eq!(cache.get_many(&[1, 2, 3, 4]).len(), 2);
    // A reload through the labelled path goes to the loader and is visible again.
    let v = cache.get_or_load_labelled_blocking(1, &team7, || Ok::<_, String>(Some("alice v2")));
    assert_eq!(v.unwrap(), Some("alice v2"));
    assert_eq!(cache.get(&1), Some("alice v2"));
    // Invalidating an unknown tag is harmless; the book keeps one entry per tag.
    cache.invalidate_tag("nobody");
    assert_eq!(cache.invalidated_tags(), 2);
    assert_eq!(cache.get(&2), Some("bob"));
}

#[tokio::test]
async fn a_load_racing_invalidate_tag_never_installs_the_stale_value() {
    let cache: AsideCache<u32, String> = AsideCache::builder().build().unwrap();
    let labels = Labels::new().tag("team:7");
    let gate = Arc::new(Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let leader = {
        let (cache, labels, gate, started) =
            (cache.clone(), labels.clone(), gate.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .get_or_load_labelled(1, &labels, move || async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    gate.acquire().await.unwrap().forget(); // reads the old row, slowly
                    Ok::<_, String>(Some("old".to_string()))
                })
                .await
        })
    };
    until(|| started.load(Ordering::SeqCst) == 1).await;
    // The team's rows change: invalidate the tag while the load is in flight.
    cache.invalidate_tag("team:7");
    assert_eq!(cache.in_flight(), 0, "the tagged load was not detached");
    // A caller after the invalidation does not join the stale load: it loads afresh.
    let fresh = cache
        .get_or_load_labelled(1, &labels, || async {
            Ok::<_, String>(Some("new".to_string()))
        })
        .await
        .unwrap();
    assert_eq!(fresh.as_deref(), Some("new"));
    gate.add_permits(1);
    assert_eq!(leader.await.unwrap().unwrap().as_deref(), Some("old"));
    assert_eq!(cache.get(&1).as_deref(), Some("new"));
    assert_eq!(cache.load_stats().discarded, 1);
}

#[tokio::test]
async fn a_put_after_invalidate_tag_is_visible_and_unrelated_loads_are_untouched() {
    let cache: AsideCache<u32, String> = AsideCache::builder().build().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let other = {
        let (cache, gate) = (cache.clone(), gate.clone());
        tokio::spawn(async move {
            let labels = Labels::new().tag("team:8");
            cache
                .get_or_load_labelled(2, &labels, move || async move {
                    gate.acquire().await.unwrap().forget();
                    Ok::<_, String>(Some("team 8".to_string()))
                })
                .await
        })
    };
    until(|| cache.in_flight() == 1).await;
    cache.invalidate_tag("team:7");
    assert_eq!(cache.in_flight(), 1, "a load of another tag was detached");
    cache.put_labelled(1, "after".into(), &Labels::new().tag("team:7"));
    gate.add_permits(1);
    other.await.unwrap().unwrap();
    assert_eq!(cache.get(&1).as_deref(), Some("after"));
    assert_eq!(cache.get(&2).as_deref(), Some("team 8"));
}

/// Counts every hash and clone of a key, and every clone of a value: an operation that
/// touched an entry would hash or clone something.
static KEY_TOUCHES: AtomicUsize = AtomicUsize::new(0);
static VALUE_CLONES: AtomicUsize = AtomicUsize::new(0);

#[derive(PartialEq, Eq)]
struct Key(u64);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        KEY_TOUCHES.fetch_add(1, Ordering::Relaxed);
        self.0.hash(state);
    }
}

impl Clone for Key {
    fn clone(&self) -> Self {
        KEY_TOUCHES.fetch_add(1, Ordering::Relaxed);
        Key(self.0)
    }
}

struct Value(u64);

impl Clone for Value {
    fn clone(&self) -> Self {
        VALUE_CLONES.fetch_add(1, Ordering::Relaxed);
        Value(self.0)
    }
}

#[test]
fn a_namespace_bump_is_o1_and_touches_no_entry() {
    const N: u64 = 100_000;
    let cache: AsideCache<Key, Value> = AsideCache::builder().build().unwrap();
    let users = Labels::new().namespace(&cache.namespace("users"));
    let orders = Labels::new().namespace(&cache.namespace("orders"));
    for id in 0..N {
        cache.put_labelled(Key(id), Value(id), &users);
    }
    cache.put_labelled(Key(N), Value(N), &orders);
    let (keys, values) = (
        KEY_TOUCHES.load(Ordering::SeqCst),
        VALUE_CLONES.load(Ordering::SeqCst),
    );
    let stats = cache.cache_stats();

    cache.invalidate_namespace("users");

    assert_eq!(
        KEY_TOUCHES.load(Ordering::SeqCst),
        keys,
        "a key was touched"
    );
    assert_eq!(
        VALUE_CLONES.load(Ordering::SeqCst),
        values,
        "a value was touched"
    );
    assert_eq!(cache.cache_stats(), stats);
    assert_eq!(
        cache.len(),
        N as usize + 1,
        "entries are hidden, not removed"
    );
    assert_eq!(cache.namespace("users").version(), 1);
    // Every old entry is unreachable; the other namespace is untouched.
    assert!((0..N).step_by(997).all(|id| cache.get(&Key(id)).is_none()));
    assert_eq!(cache.get(&Key(N)).map(|v| v.0), Some(N));
    // Stored under the new version: visible.
    cache.put_labelled(Key(5), Value(55), &users);
    assert_eq!(cache.get(&Key(5)).map(|v| v.0), Some(55));
    // On demand, an O(entries) purge reclaims the hidden ones at once.
    assert_eq!(cache.purge_hidden(), N as usize - 1);
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.get(&Key(5)).map(|v| v.0), Some(55));
}

#[test]
fn old_namespace_entries_are_reclaimed_by_eviction() {
    let cache: AsideCache<u64, u64, Lru> = AsideCache::builder()
        .max_capacity(1_000)
        .policy(Lru::new())
        .build()
        .unwrap();
    let products = Labels::new().namespace(&cache.namespace("products"));
    for id in 0..1_000 {
        cache.put_labelled(id, id, &products);
    }
    cache.invalidate_namespace("products");
    for id in 1_000..2_000 {
        cache.put_labelled(id, id, &products);
    }
    // The hidden entries were the coldest: eviction took exactly them.
    assert_eq!(cache.len(), 1_000);
    assert_eq!(cache.cache_stats().evicted_capacity, 1_000);
    assert!((1_000..2_000).all(|id| cache.get(&id) == Some(id)));
    assert!((0..1_000).all(|id| cache.get(&id).is_none()));
    cache.validate().unwrap();
}

#[tokio::test]
async fn a_load_racing_a_namespace_bump_never_installs_the_stale_value() {
    let cache: AsideCache<u32, String> = AsideCache::builder().build().unwrap();
    let users = Labels::new().namespace(&cache.namespace("users"));
    let gate = Arc::new(Semaphore::new(0));
    let leader = {
        let (cache, users, gate) = (cache.clone(), users.clone(), gate.clone());
        tokio::spawn(async move {
            cache
                .get_or_load_labelled(1, &users, move || async move {
                    gate.acquire().await.unwrap().forget();
                    Ok::<_, String>(Some("v0".to_string()))
                })
                .await
        })
    };
    until(|| cache.in_flight() == 1).await;
    cache.invalidate_namespace("users");
    assert_eq!(cache.in_flight(), 0);
    gate.add_permits(1);
    assert_eq!(leader.await.unwrap().unwrap().as_deref(), Some("v0"));
    assert_eq!(cache.get(&1), None);
}

#[tokio::test]
async fn a_labelled_batch_racing_invalidate_tag_installs_nothing() {
    let cache: AsideCache<u32, String> = AsideCache::builder().build().unwrap();
    let team = Labels::new().tag("team:7");
    let gate = Arc::new(Semaphore::new(0));
    let batch = {
        let (cache, team, gate) = (cache.clone(), team.clone(), gate.clone());
        tokio::spawn(async move {
            let load = move |ids: Vec<u32>| {
                let gate = gate.clone();
                async move {
                    gate.acquire().await.unwrap().forget();
                    let rows = ids.into_iter().map(|id| (id, format!("old {id}")));
                    Ok::<_, String>(rows.collect::<std::collections::HashMap<_, _>>())
                }
            };
            cache.get_or_load_many_labelled(0..10, &team, load).await
        })
    };
    until(|| cache.in_flight() == 10).await;
    cache.invalidate_tag("team:7");
    assert_eq!(
        cache.in_flight(),
        0,
        "the batch's flights were not detached"
    );
    gate.add_permits(1);
    let got = batch.await.unwrap().unwrap();
    assert_eq!(got.len(), 10); // its caller asked before the invalidation
    assert!(cache.get_many(&(0..10).collect::<Vec<_>>()).is_empty());
    assert_eq!(cache.load_stats().discarded, 10);
}
