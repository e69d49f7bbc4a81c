//! Cache warming: single flight shared with live traffic, bounded concurrency, progress and
//! summary, key files. Tokio's paused clock makes every duration exact.
#![cfg(feature = "async")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aside::{AsideCache, WarmProgress};
use aside::{KeyFileError, read_keys};

const KEYS: u32 = 100;

/// Per-key loader runs.
fn counters() -> Arc<Vec<AtomicUsize>> {
    Arc::new((0..KEYS).map(|_| AtomicUsize::new(0)).collect())
}

/// A boxed load.
type Load = std::pin::Pin<Box<dyn Future<Output = Result<Option<u64>, String>> + Send>>;

/// A loader that counts its runs per key and takes 10 ms (of paused time).
fn counting(runs: &Arc<Vec<AtomicUsize>>) -> impl Fn(u32) -> Load + Clone + Send + Sync + 'static {
    let runs = runs.clone();
    move |k: u32| {
        let runs = runs.clone();
        Box::pin(async move {
            runs[k as usize].fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(Some(u64::from(k) * 10))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn warming_and_live_traffic_never_load_a_key_twice() {
    let cache: AsideCache<u32, u64> = AsideCache::builder().build().unwrap();
    let runs = counters();
    let load = counting(&runs);

    let warm = {
        let (cache, load) = (cache.clone(), load.clone());
        tokio::spawn(async move { cache.warm(load).concurrency(4).run(0..KEYS).await })
    };
    // Live traffic meanwhile: four clients walking the key space in different orders, so
    // some keys are first asked by traffic, some by the warmer, some by both at once.
    let clients: Vec<_> = (0..4u32)
        .map(|c| {
            let (cache, load) = (cache.clone(), load.clone());
            tokio::spawn(async move {
                for i in 0..KEYS {
                    let k = (i * 37 + c * 11) % KEYS;
                    let l = load.clone();
                    let v = cache.get_or_load(k, move || l(k)).await.unwrap();
                    assert_eq!(v, Some(u64::from(k) * 10));
                }
            })
        })
        .collect();
    let summary = warm.await.unwrap().unwrap();
    for c in clients {
        c.await.unwrap();
    }
    for (k, r) in runs.iter().enumerate() {
        assert_eq!(
            r.load(Ordering::SeqCst),
            1,
            "key {k} was loaded more than once"
        );
    }
    assert_eq!(cache.load_stats().loads, u64::from(KEYS));
    assert_eq!(summary.loaded + summary.already_cached, KEYS as usize);
    assert!(
        summary.loaded > 0 && summary.already_cached > 0,
        "{summary:?}"
    );
    assert_eq!((summary.failed, summary.not_found), (0, 0));
    assert_eq!(cache.len(), KEYS as usize);
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded_and_progress_reported_per_key() {
    let cache: AsideCache<u32, u64> = AsideCache::builder().build().unwrap();
    let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, p) = (running.clone(), peak.clone());
    let load = move |k: u32| {
        let (r, p) = (r.clone(), p.clone());
        async move {
            p.fetch_max(r.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            r.fetch_sub(1, Ordering::SeqCst);
            match k {
                7 => Err("row 7 is corrupt".to_string()),
                8 => Ok(None),
                _ => Ok(Some(u64::from(k))),
            }
        }
    };
    cache.put(9, 9);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let summary = cache
        .warm(load)
        .concurrency(3)
        .on_progress(move |p| log.lock().unwrap().push(p))
        .run((0..10).chain([0, 1])) // duplicates are warmed once
        .await
        .unwrap();
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    // 9 loads (key 9 is cached), 3 at a time, 10 ms each: exactly 30 ms of paused time.
    assert_eq!(summary.elapsed, Duration::from_millis(30));
    assert_eq!(
        (
            summary.loaded,
            summary.already_cached,
            summary.not_found,
            summary.failed
        ),
        (7, 1, 1, 1)
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 10);
    assert!(
        seen.iter()
            .enumerate()
            .all(|(i, p)| p.done == i + 1 && p.total == 10)
    );
    assert_eq!(
        *seen.last().unwrap(),
        WarmProgress {
            done: 10,
            total: 10,
            failed: 1
        }
    );
    // The failure cached nothing; the rest is there.
    assert_eq!((cache.get(&7), cache.get(&3)), (None, Some(3)));
}

#[tokio::test(start_paused = true)]
async fn zero_concurrency_is_a_configuration_error() {
    let cache: AsideCache<u32, u64> = AsideCache::builder().build().unwrap();
    let err = cache
        .warm(|k: u32| async move { Ok::<_, String>(Some(u64::from(k))) })
        .concurrency(0)
        .run([1])
        .await
        .unwrap_err();
    assert_eq!(err.field(), "concurrency");
    assert!(cache.is_empty());
}

#[tokio::test(start_paused = true)]
async fn warms_from_a_key_file() {
    let path = std::env::temp_dir().join(format!("aside-warm-{}.txt", std::process::id()));
    std::fs::write(&path, "# most accessed users\n42\n7\n\n42\n1001\n").unwrap();
    let keys: Vec<u32> = read_keys(&path).unwrap();
    assert_eq!(keys, [42, 7, 42, 1001]);
    let cache: AsideCache<u32, u64> = AsideCache::builder().build().unwrap();
    let s = cache
        .warm(|k: u32| async move { Ok::<_, String>(Some(u64::from(k))) })
        .run(keys)
        .await
        .unwrap();
    assert_eq!(s.loaded, 3);
    assert_eq!(cache.get(&1001), Some(1001));

    std::fs::write(&path, "1\ntwo\n").unwrap();
    match read_keys::<u32>(&path) {
        Err(KeyFileError::Parse { line, text, .. }) => {
            assert_eq!((line, text.as_str()), (2, "two"))
        }
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(read_keys::<u32>(&path), Err(KeyFileError::Io(_))));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_loader_abandons_the_other_warming_loads_cleanly() {
    let cache: AsideCache<u32, u64> = AsideCache::builder().build().unwrap();
    let warm = {
        let cache = cache.clone();
        tokio::spawn(async move {
            let load = |k: u32| async move {
                tokio::time::sleep(Duration::from_millis(if k == 3 { 5 } else { 10 })).await;
                assert_ne!(k, 3, "loader bug on key 3");
                Ok::<_, String>(Some(u64::from(k)))
            };
            cache.warm(load).run([1, 3]).await
        })
    };
    while cache.in_flight() < 2 {
        tokio::task::yield_now().await;
    }
    // A client waits on the warmer's load of key 1 when the loader panics on key 3.
    let client = cache.get_or_load(1, || async { Ok::<_, String>(Some(100)) });
    let (warmed, client) = tokio::join!(warm, client);
    assert!(warmed.unwrap_err().is_panic());
    // The client was told the load was abandoned (not that it panicked) and loaded itself.
    assert_eq!(client.unwrap(), Some(100));
    assert_eq!(cache.in_flight(), 0);
    assert_eq!(cache.get(&1), Some(100));
}
