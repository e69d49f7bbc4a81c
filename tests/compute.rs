//! `Cache::compute`: read, decide and write one key, atomically among the key's `compute` and
//! `get_or_insert_with` callers. Time is a `MockClock`; nothing sleeps to decide an outcome.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use aside::{Cache, Compute, Computed, MockClock, RemovalCause};

type Log = Arc<Mutex<Vec<(u32, u64, RemovalCause)>>>;

fn logged(capacity: u64) -> (Cache<u32, u64>, Log) {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let cache = Cache::builder()
        .max_capacity(capacity)
        .seed(3)
        .eviction_listener(move |k: &u32, v: &u64, cause| {
            sink.lock().unwrap().push((*k, *v, cause));
        })
        .build()
        .unwrap();
    (cache, log)
}

#[test]
fn each_decision_does_what_it_says_and_reports_it() {
    let (cache, log) = logged(100);
    assert_eq!(
        cache.compute(1, |_| Compute::Keep),
        Computed::Unchanged(None)
    );
    assert_eq!(
        cache.compute(1, |_| Compute::Remove),
        Computed::Unchanged(None)
    );
    assert!(cache.is_empty());

    assert_eq!(
        cache.compute(1, |v| {
            assert_eq!(v, None);
            Compute::Put(10)
        }),
        Computed::Inserted(10)
    );
    assert_eq!(
        cache.compute(1, |v| Compute::Put(v.unwrap() + 1)),
        Computed::Updated { old: 10, new: 11 }
    );
    assert_eq!(
        cache.compute(1, |_| Compute::Keep),
        Computed::Unchanged(Some(11))
    );
    assert_eq!(cache.get(&1), Some(11));
    assert_eq!(cache.compute(1, |_| Compute::Remove), Computed::Removed(11));
    assert_eq!(cache.get(&1), None);
    // The writes are ordinary ones: the listener saw the replacement and the removal.
    assert_eq!(
        std::mem::take(&mut *log.lock().unwrap()),
        vec![
            (1, 10, RemovalCause::Replaced),
            (1, 11, RemovalCause::Explicit)
        ]
    );
    cache.validate().unwrap();
}

#[test]
fn the_read_is_not_a_hit_and_an_expired_value_is_none() {
    let clock = MockClock::new();
    let cache: Cache<u32, u64> = Cache::builder()
        .max_capacity(10)
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!(
        cache.compute(1, |_| Compute::PutWithTtl(5, Duration::from_secs(10))),
        Computed::Inserted(5)
    );
    cache.compute(1, |_| Compute::Keep);
    assert_eq!(cache.stats().hits, 0);
    clock.advance(Duration::from_secs(11));
    assert_eq!(
        cache.compute(1, |v| {
            assert_eq!(v, None, "an expired value is not offered");
            Compute::Put(6)
        }),
        Computed::Inserted(6)
    );
    assert_eq!(cache.get(&1), Some(6));
}

/// Read-modify-write from many threads: no increment is lost, as it would be with get then
/// insert.
#[test]
fn concurrent_computes_of_one_key_lose_no_update() {
    const THREADS: usize = 4;
    const EACH: u64 = 2_000;
    let cache: Cache<u32, u64> = Cache::new(100);
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (cache, barrier) = (&cache, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..EACH {
                    // Two keys, so that computes of different keys run side by side too.
                    let key = u32::from(i % 2 == 0);
                    cache.compute(key, |n| Compute::Put(n.unwrap_or(0) + 1));
                    if t == 0 && i % 100 == 0 {
                        cache.validate().unwrap();
                    }
                }
            });
        }
    });
    assert_eq!(
        cache.get(&0).unwrap() + cache.get(&1).unwrap(),
        THREADS as u64 * EACH
    );
    assert_eq!(cache.get(&1), Some(THREADS as u64 * EACH / 2));
}

/// `get_or_insert_with` callers of the key wait for a `compute` in progress, then see what it
/// stored; and a compute waits for an init in progress.
#[test]
fn computes_and_coalesced_inits_of_one_key_take_turns() {
    let cache: Cache<u32, u64> = Cache::new(100);
    let inits = AtomicUsize::new(0);
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            cache.compute(7, |_| {
                barrier.wait(); // the other thread now calls get_or_insert_with
                // It cannot get ahead: it waits on this compute's slot, or finds 70.
                Compute::Put(70)
            })
        });
        s.spawn(|| {
            barrier.wait();
            let v = cache.get_or_insert_with(7, || {
                inits.fetch_add(1, Ordering::SeqCst);
                1
            });
            // The compute led the key before its closure ran: this call waited, then found
            // what the compute stored, and ran no init.
            assert_eq!(v, 70);
        });
    });
    assert_eq!(cache.get(&7), Some(70));
    assert_eq!(inits.load(Ordering::SeqCst), 0);
}

#[test]
fn a_panicking_closure_changes_nothing_and_frees_the_key() {
    let (cache, log) = logged(10);
    cache.insert(1, 1);
    let r = catch_unwind(AssertUnwindSafe(|| {
        cache.compute(1, |_| panic!("boom"));
    }));
    assert!(r.is_err());
    assert_eq!(cache.get(&1), Some(1));
    assert!(log.lock().unwrap().is_empty());
    // The key's slot was released: the next compute and init do not wait forever.
    assert_eq!(
        cache.compute(1, |v| Compute::Put(v.unwrap() + 1)),
        Computed::Updated { old: 1, new: 2 }
    );
    assert_eq!(cache.get_or_insert_with(1, || unreachable!()), 2);
    cache.validate().unwrap();
}

#[test]
fn a_reentrant_compute_of_the_same_key_panics_instead_of_deadlocking() {
    let cache: Cache<u32, u64> = Cache::new(10);
    let r = catch_unwind(AssertUnwindSafe(|| {
        cache.compute(1, |_| {
            cache.compute(1, |_| Compute::Put(2));
            Compute::Put(1)
        })
    }));
    let message = r.unwrap_err();
    let text = message
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| message.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(text.contains("asked for the key it is computing"), "{text}");
    // Another key inside the closure is fine.
    assert_eq!(
        cache.compute(1, |_| {
            cache.compute(2, |_| Compute::Put(20));
            Compute::Put(10)
        }),
        Computed::Inserted(10)
    );
    assert_eq!((cache.get(&1), cache.get(&2)), (Some(10), Some(20)));
}
