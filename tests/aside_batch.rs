//! Batch loads: one loader call for all misses, single flight per key in both directions,
//! errors and panics shared, race-free against invalidation. Coordination uses semaphores
//! (gates), never sleeps.
#![cfg(feature = "async")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aside::{AsideCache, LoadError};
use tokio::sync::Semaphore;

type Cache = AsideCache<u32, String>;
type Batch = std::pin::Pin<Box<dyn Future<Output = Result<HashMap<u32, String>, String>> + Send>>;

fn cache() -> Cache {
    AsideCache::builder().seed(1).build().unwrap()
}

#[path = "common/until.rs"]
mod wait;
use wait::until;

/// A batch loader that records the keys of each call, waits for a permit, then answers
/// `v{tag}:{key}` for every key except those in `absent`.
fn batch_loader(
    gate: &Arc<Semaphore>,
    calls: &Arc<Mutex<Vec<Vec<u32>>>>,
    tag: &'static str,
    absent: &'static [u32],
) -> impl FnMut(Vec<u32>) -> Batch + Send + 'static {
    let (gate, calls) = (gate.clone(), calls.clone());
    move |mut keys: Vec<u32>| {
        let (gate, calls) = (gate.clone(), calls.clone());
        Box::pin(async move {
            keys.sort_unstable();
            calls.lock().unwrap().push(keys.clone());
            gate.acquire().await.unwrap().forget();
            Ok(keys
                .into_iter()
                .filter(|k| !absent.contains(k))
                .map(|k| (k, format!("v{tag}:{k}")))
                .collect())
        })
    }
}

fn open() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(1_000))
}

fn closed() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(0))
}

#[tokio::test]
async fn one_loader_call_for_every_miss() {
    let cache = cache();
    cache.put(1, "cached 1".into());
    cache.put(2, "cached 2".into());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let loader = batch_loader(&open(), &calls, "db", &[404]);
    let got = cache
        .get_or_load_many([1, 2, 3, 4, 5, 404, 3], loader)
        .await
        .unwrap();
    assert_eq!(*calls.lock().unwrap(), [vec![3, 4, 5, 404]]);
    assert_eq!(got.len(), 5);
    assert_eq!(got[&1], "cached 1");
    assert_eq!(got[&4], "vdb:4");
    // Loaded values are cached; the key missing from the answer is absent and not cached.
    assert_eq!(cache.get(&5).as_deref(), Some("vdb:5"));
    assert!(!got.contains_key(&404) && cache.get(&404).is_none());
    assert_eq!(cache.len(), 5);
    assert_eq!(cache.load_stats().loads, 1);
    // All cached now: no loader call at all.
    let got = cache
        .get_or_load_many([1, 3, 5], |_| async {
            Err::<HashMap<u32, String>, _>("unused")
        })
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    // get_many reads only.
    let many = cache.get_many(&[1, 404, 5]);
    assert_eq!(many.len(), 2);
}

#[tokio::test]
async fn keys_loaded_elsewhere_are_awaited_not_reloaded() {
    let cache = cache();
    let gate = closed();
    let single_runs = Arc::new(AtomicUsize::new(0));
    let single = {
        let (cache, gate, runs) = (cache.clone(), gate.clone(), single_runs.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(1, move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    gate.acquire().await.unwrap().forget();
                    Ok::<_, String>(Some("single:1".to_string()))
                })
                .await
        })
    };
    until(|| single_runs.load(Ordering::SeqCst) == 1).await;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let batch = {
        let (cache, loader) = (cache.clone(), batch_loader(&open(), &calls, "b", &[]));
        tokio::spawn(async move { cache.get_or_load_many([1, 2, 3], loader).await })
    };
    until(|| calls.lock().unwrap().len() == 1).await;
    // The batch asked only for the keys nobody else was loading...
    assert_eq!(calls.lock().unwrap()[0], [2, 3]);
    // ...and waits for key 1.
    tokio::task::yield_now().await;
    assert!(!batch.is_finished());
    gate.add_permits(1);
    let got = batch.await.unwrap().unwrap();
    assert_eq!(got[&1], "single:1");
    assert_eq!(got[&2], "vb:2");
    assert_eq!(single.await.unwrap().unwrap().as_deref(), Some("single:1"));
    assert_eq!(cache.load_stats().loads, 2);
    assert_eq!(cache.load_stats().coalesced, 1);
}

#[tokio::test]
async fn single_key_callers_join_the_batch() {
    let cache = cache();
    let (gate, calls) = (closed(), Arc::new(Mutex::new(Vec::new())));
    let batch = {
        let (cache, loader) = (cache.clone(), batch_loader(&gate, &calls, "b", &[3]));
        tokio::spawn(async move { cache.get_or_load_many([1, 2, 3], loader).await })
    };
    until(|| calls.lock().unwrap().len() == 1).await;
    assert_eq!(cache.in_flight(), 3);
    let joiners: Vec<_> = [2u32, 3]
        .into_iter()
        .map(|k| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load(k, || async { Err::<Option<String>, _>("must not run") })
                    .await
            })
        })
        .collect();
    until(|| cache.load_stats().coalesced == 2).await;
    gate.add_permits(1);
    let got = batch.await.unwrap().unwrap();
    assert_eq!(got.len(), 2);
    let results: Vec<_> = futures_join(joiners).await;
    assert_eq!(results[0].as_deref(), Some("vb:2"));
    // Key 3 was missing from the batch's answer: the joiner sees "not found".
    assert_eq!(results[1], None);
    assert_eq!(cache.load_stats().loads, 1);
    assert_eq!(cache.in_flight(), 0);
}

async fn futures_join(
    tasks: Vec<tokio::task::JoinHandle<Result<Option<String>, LoadError<&'static str>>>>,
) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap().unwrap());
    }
    out
}

#[tokio::test]
async fn loader_error_reaches_every_waiter_and_nothing_is_cached() {
    let cache = cache();
    let gate = closed();
    let g = gate.clone();
    let batch = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load_many([1, 2], move |_| {
                    let g = g.clone();
                    async move {
                        g.acquire().await.unwrap().forget();
                        Err::<HashMap<u32, String>, _>("database down".to_string())
                    }
                })
                .await
        })
    };
    until(|| cache.in_flight() == 2).await;
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .try_get_with(2, || async { Ok::<String, String>("unused".into()) })
                .await
        })
    };
    until(|| cache.load_stats().coalesced == 1).await;
    gate.add_permits(1);
    let err = batch.await.unwrap().unwrap_err();
    assert!(matches!(err, LoadError::Loader(ref e) if **e == "database down"));
    let err = waiter.await.unwrap().unwrap_err();
    assert!(matches!(err, LoadError::Loader(ref e) if **e == "database down"));
    assert!(cache.is_empty());
    assert_eq!(cache.in_flight(), 0);
    // Usable afterwards.
    let calls = Arc::new(Mutex::new(Vec::new()));
    let got = cache
        .get_or_load_many([1, 2], batch_loader(&open(), &calls, "ok", &[]))
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
}

#[tokio::test]
async fn loader_panic_releases_every_waiter_and_the_cache_stays_usable() {
    let cache = cache();
    let gate = closed();
    let g = gate.clone();
    let batch = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load_many([1, 2], move |_| {
                    let g = g.clone();
                    async move {
                        g.acquire().await.unwrap().forget();
                        if true {
                            panic!("loader bug");
                        }
                        Ok::<HashMap<u32, String>, String>(HashMap::new())
                    }
                })
                .await
        })
    };
    until(|| cache.in_flight() == 2).await;
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_load(1, || async { Ok::<_, String>(Some("unused".into())) })
                .await
        })
    };
    until(|| cache.load_stats().coalesced == 1).await;
    gate.add_permits(1);
    assert!(batch.await.unwrap_err().is_panic());
    assert!(matches!(waiter.await.unwrap(), Err(LoadError::Panicked)));
    assert_eq!((cache.len(), cache.in_flight()), (0, 0));
    assert_eq!(cache.load_stats().panics, 1);
    let v = cache.get_with(1, || async { "fine".to_string() }).await;
    assert_eq!(v.unwrap(), "fine");
    cache.validate().unwrap();
}

#[tokio::test]
async fn invalidate_during_a_batch_never_installs_the_stale_value() {
    let cache = cache();
    let (gate, calls) = (closed(), Arc::new(Mutex::new(Vec::new())));
    let batch = {
        let (cache, loader) = (cache.clone(), batch_loader(&gate, &calls, "old", &[]));
        tokio::spawn(async move { cache.get_or_load_many([1, 2], loader).await })
    };
    until(|| calls.lock().unwrap().len() == 1).await;
    // The source changes key 1 while the batch is reading: delete-on-write.
    cache.invalidate(&1);
    // A caller arriving after the invalidation loads afresh instead of joining the batch.
    let fresh = cache
        .get_or_load(1, || async { Ok::<_, String>(Some("new:1".to_string())) })
        .await
        .unwrap();
    assert_eq!(fresh.as_deref(), Some("new:1"));
    gate.add_permits(1);
    let got = batch.await.unwrap().unwrap();
    // The batch's caller asked before the write: it gets what it read...
    assert_eq!(got[&1], "vold:1");
    // ...but the cache keeps the fresh value, and key 2 was installed normally.
    assert_eq!(cache.get(&1).as_deref(), Some("new:1"));
    assert_eq!(cache.get(&2).as_deref(), Some("vold:2"));
    assert_eq!(cache.load_stats().discarded, 1);
}

#[tokio::test]
async fn overlapping_batches_share_keys_without_deadlock() {
    let cache = cache();
    let (gate, calls) = (closed(), Arc::new(Mutex::new(Vec::new())));
    let a = {
        let (cache, loader) = (cache.clone(), batch_loader(&gate, &calls, "a", &[]));
        tokio::spawn(async move { cache.get_or_load_many([1, 2, 3], loader).await })
    };
    until(|| calls.lock().unwrap().len() == 1).await;
    let b = {
        let (cache, loader) = (cache.clone(), batch_loader(&gate, &calls, "b", &[]));
        tokio::spawn(async move { cache.get_or_load_many([3, 4, 1, 5], loader).await })
    };
    until(|| calls.lock().unwrap().len() == 2).await;
    gate.add_permits(2);
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    assert_eq!(*calls.lock().unwrap(), [vec![1, 2, 3], vec![4, 5]]);
    assert_eq!((a.len(), b.len()), (3, 4));
    assert_eq!((b[&1].as_str(), b[&4].as_str()), ("va:1", "vb:4"));
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_batch_is_taken_over_by_its_waiters() {
    let cache = cache();
    let (gate, calls) = (closed(), Arc::new(Mutex::new(Vec::new())));
    let batch = {
        let (cache, loader) = (cache.clone(), batch_loader(&gate, &calls, "a", &[]));
        tokio::spawn(async move { cache.get_or_load_many([1, 2], loader).await })
    };
    until(|| calls.lock().unwrap().len() == 1).await;
    let waiter = {
        let (cache, loader) = (cache.clone(), batch_loader(&open(), &calls, "w", &[]));
        tokio::spawn(async move { cache.get_or_load_many([2, 3], loader).await })
    };
    until(|| cache.load_stats().coalesced == 1).await;
    batch.abort(); // the leading batch is cancelled mid-load
    assert!(batch.await.unwrap_err().is_cancelled());
    let got = tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("the waiter was not released")
        .unwrap()
        .unwrap();
    assert_eq!((got[&2].as_str(), got[&3].as_str()), ("vw:2", "vw:3"));
    // The waiter loaded 3 first, then 2 in a second call once the batch was abandoned.
    assert_eq!(*calls.lock().unwrap(), [vec![1, 2], vec![3], vec![2]]);
    assert_eq!(cache.in_flight(), 0);
}
