//! Write-through and write-behind. Write-behind tests run on tokio's paused clock: intervals
//! and backoffs advance exactly, and progress is awaited by polling conditions, never by a
//! sleep that decides the outcome.
#![cfg(feature = "async")]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aside::AsideCache;
use aside::{WriteBehind, WriteError};
use tokio::sync::Semaphore;
use tokio::time::Instant;

type Cache = AsideCache<u32, u64>;

fn cache() -> Cache {
    AsideCache::builder().build().unwrap()
}

/// Yields (and lets paused time advance) until `cond` holds, within `limit` of tokio time.
async fn until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "condition never held ({:?})",
            Instant::now()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A batch the sink accepted, with when (since the test's start).
type Flushed = (Duration, Vec<(u32, u64)>);

/// A boxed flush.
type Flush = std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// The source of truth: every batch the sink accepted, and the table it produced.
#[derive(Clone, Default)]
struct Db {
    batches: Arc<Mutex<Vec<Flushed>>>,
    table: Arc<Mutex<BTreeMap<u32, u64>>>,
    calls: Arc<AtomicUsize>,
}

impl Db {
    /// A sink that fails its first `failures` calls (panicking instead if `panic`), waits for
    /// a permit of `gate` if any, then applies the batch.
    fn sink(
        &self,
        start: Instant,
        failures: usize,
        panic: bool,
        gate: Option<Arc<Semaphore>>,
    ) -> impl Fn(Vec<(u32, u64)>) -> Flush + Send + 'static {
        let db = self.clone();
        move |mut batch| {
            let (db, gate) = (db.clone(), gate.clone());
            Box::pin(async move {
                let call = db.calls.fetch_add(1, Ordering::SeqCst);
                if let Some(g) = gate {
                    g.acquire().await.unwrap().forget();
                }
                if call < failures {
                    if panic {
                        panic!("sink bug on call {call}");
                    }
                    return Err(format!("database down (call {call})"));
                }
                batch.sort_unstable();
                db.table.lock().unwrap().extend(batch.iter().copied());
                db.batches.lock().unwrap().push((start.elapsed(), batch));
                Ok(())
            })
        }
    }

    fn table(&self) -> BTreeMap<u32, u64> {
        self.table.lock().unwrap().clone()
    }

    fn batch_sizes(&self) -> Vec<usize> {
        self.batches
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.len())
            .collect()
    }
}

#[tokio::test]
async fn write_through_updates_the_source_then_the_cache() {
    let cache = cache();
    let db = Arc::new(Mutex::new(BTreeMap::new()));
    let table = db.clone();
    cache
        .write_through(1, 10, |k, v| async move {
            table.lock().unwrap().insert(k, v);
            Ok::<_, String>(())
        })
        .await
        .unwrap();
    assert_eq!(db.lock().unwrap()[&1], 10);
    assert_eq!(cache.get(&1), Some(10));
    // A failing sink leaves the key invalidated (the source's state is unknown).
    let err = cache
        .write_through(1, 11, |_, _| async { Err::<(), _>("constraint violated") })
        .await
        .unwrap_err();
    assert_eq!(err, "constraint violated");
    assert_eq!(cache.get(&1), None);
}

#[tokio::test]
async fn a_load_started_before_a_write_through_never_overwrites_it() {
    let cache = cache();
    let gate = Arc::new(Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let load = {
        let (cache, gate, started) = (cache.clone(), gate.clone(), started.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(1, move || async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    gate.acquire().await.unwrap().forget(); // read the old row, slowly
                    Ok::<_, String>(Some(1))
                })
                .await
        })
    };
    until(Duration::from_secs(1), || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    cache
        .write_through(1, 2, |_, _| async { Ok::<_, String>(()) })
        .await
        .unwrap();
    gate.add_permits(1);
    assert_eq!(load.await.unwrap().unwrap(), Some(1)); // its caller asked first
    assert_eq!(cache.get(&1), Some(2), "the stale load overwrote the write");
}

#[tokio::test]
async fn a_cancelled_write_through_invalidates() {
    let cache = cache();
    cache.put(1, 1);
    let write = cache.write_through(1, 2, |_, _| std::future::pending::<Result<(), String>>());
    assert!(
        tokio::time::timeout(Duration::from_millis(1), write)
            .await
            .is_err()
    );
    assert_eq!(cache.get(&1), None);
}

#[tokio::test(start_paused = true)]
async fn the_flusher_writes_batches_on_the_interval() {
    let (cache, db, start) = (cache(), Db::default(), Instant::now());
    let wb = WriteBehind::builder(cache.clone(), db.sink(start, 0, false, None))
        .interval(Duration::from_secs(1))
        .max_batch(2)
        .build()
        .unwrap();
    for k in 0..5 {
        wb.write(k, u64::from(k)).await.unwrap();
    }
    assert_eq!(
        cache.get(&4),
        Some(4),
        "written values are readable at once"
    );
    tokio::time::sleep(Duration::from_millis(999)).await;
    assert!(db.batch_sizes().is_empty(), "flushed before the interval");
    until(Duration::from_millis(10), || wb.dirty_len() == 0).await;
    assert_eq!(db.batch_sizes(), [2, 2, 1]);
    assert!(
        db.batches
            .lock()
            .unwrap()
            .iter()
            .all(|(t, _)| *t == Duration::from_secs(1))
    );
    assert_eq!(db.table().len(), 5);
    let s = wb.stats();
    assert_eq!((s.writes, s.flushed, s.batches, s.dirty), (5, 5, 3, 0));
    wb.shutdown().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn writes_to_one_key_coalesce() {
    let (cache, db, start) = (cache(), Db::default(), Instant::now());
    let wb = WriteBehind::builder(cache.clone(), db.sink(start, 0, false, None))
        .build()
        .unwrap();
    for v in 1..=100 {
        wb.write(1, v).await.unwrap();
    }
    wb.write(2, 7).await.unwrap();
    assert_eq!(wb.dirty_len(), 2);
    until(Duration::from_secs(2), || wb.dirty_len() == 0).await;
    let batches = db.batches.lock().unwrap().clone();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].1, [(1, 100), (2, 7)]);
    assert_eq!(wb.stats().coalesced, 99);
    assert_eq!(cache.get(&1), Some(100));
}

#[tokio::test(start_paused = true)]
async fn a_failing_sink_is_retried_with_backoff_and_nothing_is_lost() {
    let (cache, db, start) = (cache(), Db::default(), Instant::now());
    let wb = WriteBehind::builder(cache.clone(), db.sink(start, 3, false, None))
        .interval(Duration::from_secs(1))
        .retry_backoff(Duration::from_millis(100), Duration::from_millis(300))
        .build()
        .unwrap();
    for k in 0..10 {
        wb.write(k, 1).await.unwrap();
    }
    // Fails at 1 s, retries after 100, 200, 300 ms (capped): succeeds at 1.6 s.
    until(Duration::from_millis(1_350), || {
        db.calls.load(Ordering::SeqCst) == 3
    })
    .await;
    assert!(db.table().is_empty());
    assert_eq!(wb.dirty_len(), 10, "a failed batch left the dirty set");
    // A newer value written during the outage supersedes the one being retried: it leaves
    // the retried batch and goes out with the next round.
    wb.write(3, 2).await.unwrap();
    until(Duration::from_secs(1), || wb.dirty_len() == 0).await;
    let batches = db.batches.lock().unwrap().clone();
    assert_eq!(batches.len(), 2);
    assert_eq!(
        (batches[0].0, batches[0].1.len()),
        (Duration::from_millis(1_600), 9)
    );
    assert_eq!(batches[1], (Duration::from_secs(2), vec![(3, 2)]));
    let expected: BTreeMap<u32, u64> = (0..10).map(|k| (k, if k == 3 { 2 } else { 1 })).collect();
    assert_eq!(db.table(), expected);
    let s = wb.stats();
    assert_eq!((s.failed_batches, s.flushed), (3, 10));
    assert_eq!(s.last_error.as_deref(), Some("database down (call 2)"));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_sink_is_retried_and_nothing_is_lost() {
    let (cache, db, start) = (cache(), Db::default(), Instant::now());
    let wb = WriteBehind::builder(cache.clone(), db.sink(start, 2, true, None))
        .build()
        .unwrap();
    for k in 0..50 {
        wb.write(k, u64::from(k)).await.unwrap();
    }
    wb.shutdown().await.unwrap();
    assert_eq!(db.table().len(), 50);
    let s = wb.stats();
    assert_eq!(s.failed_batches, 2);
    assert!(s.last_error.unwrap().contains("sink bug on call 1"));
    // The cache is unaffected and usable.
    assert_eq!(cache.get(&49), Some(49));
    cache.validate().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_full_dirty_set_blocks_writers_until_a_flush_makes_room() {
    let (cache, db, start) = (cache(), Db::default(), Instant::now());
    let gate = Arc::new(Semaphore::new(0));
    let wb = Arc::new(
        WriteBehind::builder(cache.clone(), db.sink(start, 0, false, Some(gate.clone())))
            .capacity(2)
            .interval(Duration::from_secs(3600))
            .build()
            .unwrap(),
    );
    wb.write(1, 1).await.unwrap();
    wb.write(2, 2).await.unwrap();
    wb.write(2, 3).await.unwrap(); // a dirty key needs no room
    assert_eq!(wb.try_write(3, 3), Err(WriteError::Full(3, 3)));
    let blocked = {
        let wb = wb.clone();
        tokio::spawn(async move { wb.write(3, 3).await })
    };
    // The full set woke the flusher, whose sink is stuck: the writer stays blocked.
    until(Duration::from_secs(1), || {
        db.calls.load(Ordering::SeqCst) == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(!blocked.is_finished(), "a write went past a full dirty set");
    assert_eq!(cache.get(&3), None);
    gate.add_permits(10);
    blocked.await.unwrap().unwrap();
    assert_eq!(cache.get(&3), Some(3));
    assert_eq!(db.table(), BTreeMap::from([(1, 1), (2, 3)]));
    wb.shutdown().await.unwrap();
    assert_eq!(db.table(), BTreeMap::from([(1, 1), (2, 3), (3, 3)]));
}

#[tokio::test(start_paused = true)]
async fn shutdown_flushes_everything_and_refuses_later_writes() {
    let (cache, db, start) = (cache(), Db::default(), Instant::now());
    let wb = WriteBehind::builder(cache.clone(), db.sink(start, 1, false, None))
        .interval(Duration::from_secs(3600))
        .max_batch(100)
        .build()
        .unwrap();
    for k in 0..1_000 {
        wb.write(k, u64::from(k)).await.unwrap();
    }
    wb.shutdown().await.unwrap();
    assert_eq!(db.table().len(), 1_000);
    assert_eq!(db.batch_sizes(), [100; 10]);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "waited for the interval"
    );
    assert_eq!(wb.write(1, 1).await, Err(WriteError::Closed(1, 1)));
    assert_eq!(wb.try_write(1, 1), Err(WriteError::Closed(1, 1)));
}

#[tokio::test(start_paused = true)]
async fn shutdown_timeout_hands_back_what_a_dead_sink_never_took() {
    let (cache, db, start) = (cache(), Db::default(), Instant::now());
    let wb = WriteBehind::builder(cache, db.sink(start, usize::MAX, false, None))
        .build()
        .unwrap();
    for k in [3, 1, 2] {
        wb.write(k, u64::from(k)).await.unwrap();
    }
    let kept = wb
        .shutdown_timeout(Duration::from_secs(60))
        .await
        .unwrap_err();
    assert_eq!(kept, [(3, 3), (1, 1), (2, 2)], "in write order");
    assert!(wb.stats().failed_batches > 5);
}

#[tokio::test]
async fn invalid_settings_name_the_field() {
    let sink = |_b: Vec<(u32, u64)>| async { Ok::<_, String>(()) };
    let field = |b: aside::WriteBehindBuilder<_, _, _, _>| b.build().err().unwrap().field();
    assert_eq!(
        field(WriteBehind::builder(cache(), sink).capacity(0)),
        "capacity"
    );
    assert_eq!(
        field(WriteBehind::builder(cache(), sink).max_batch(0)),
        "max_batch"
    );
    assert_eq!(
        field(WriteBehind::builder(cache(), sink).interval(Duration::ZERO)),
        "interval"
    );
    assert_eq!(
        field(
            WriteBehind::builder(cache(), sink)
                .retry_backoff(Duration::from_secs(2), Duration::from_secs(1))
        ),
        "retry_backoff"
    );
}

#[tokio::test]
async fn a_panicking_write_through_sink_invalidates_and_propagates() {
    let cache = cache();
    cache.put(1, 1);
    let task = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .write_through(1, 2, |_, _| async {
                    if true {
                        panic!("driver bug");
                    }
                    Ok::<_, String>(())
                })
                .await
        })
    };
    assert!(task.await.unwrap_err().is_panic());
    assert_eq!(cache.get(&1), None);
    assert_eq!(cache.get_with(1, || async { 3 }).await.unwrap(), 3);
}
