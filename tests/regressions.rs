//! One test per bug found by the reliability suite (fuzzing, shuttle, stress, panic-safety),
//! each named after what broke and reproducing it without the tool that found it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use aside::AsideCache;

/// Found by shuttle (`concurrent_loads_of_one_key_run_the_loader_once`): a caller whose lookup
/// missed while another caller's load was running, and who joined the registry just after
/// that load finished, led a second load of the same key. Leaders now look again before
/// loading. Two threads race over the same fresh keys; every key must be loaded once.
#[test]
fn a_load_finishing_between_lookup_and_join_is_not_repeated() {
    const KEYS: u64 = 100_000;
    const THREADS: usize = 2;
    let cache: AsideCache<u64, u64> = AsideCache::builder().max_capacity(KEYS).build().unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let (cache, calls, barrier) = (&cache, &calls, &barrier);
            s.spawn(move || {
                for k in 0..KEYS {
                    if k % 256 == 0 {
                        barrier.wait(); // keep the threads on the same keys
                    }
                    let v = cache.get_or_load_blocking(k, || {
                        calls.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, ()>(Some(k))
                    });
                    assert!(matches!(v, Ok(Some(x)) if x == k), "{v:?}");
                }
            });
        }
    });
    assert_eq!(
        calls.load(Ordering::Relaxed) as u64,
        KEYS,
        "some keys were loaded twice"
    );
    assert_eq!(cache.in_flight(), 0);
}
