//! The interleaving behind the consistency harness's fail-safe finding (issue #19), explored
//! with [shuttle](https://docs.rs/shuttle) instead of waited for: a reader finds the key's
//! value expired inside fail-safe's grace (`lookup` returns it as stale), a writer updates the
//! source and invalidates (or `put`s) the key, the reader joins the registry, its reload fails,
//! and `finish_failed` stores the old value again: nothing was in flight when the
//! invalidation landed, so nothing marked the reload stale. Every read after that gets the old
//! value until the retry interval ends.
//!
//! Compiled only under `RUSTFLAGS="--cfg aside_shuttle"`, as `tests/shuttle.rs`:
//!
//! ```sh
//! RUSTFLAGS="--cfg aside_shuttle" CARGO_TARGET_DIR=target/shuttle \
//!     cargo test --features async --test shuttle_consistency
//! ```
//!
//! `ASIDE_SHUTTLE_ITERS`, `ASIDE_SHUTTLE_SEED` and `ASIDE_SHUTTLE_REPLAY` work as there.
#![cfg(aside_shuttle)]

use std::sync::Arc;
use std::time::Duration;

use aside::{AsideCache, LoadError, MockClock};
use shuttle::sync::atomic::{AtomicU64, Ordering};
use shuttle::thread;

#[path = "common/explore.rs"]
mod explore;
use explore::explore;

/// A fail-safe front door on a mock clock, holding version 1 of key 7 expired inside its
/// grace period (so that a reader's lookup finds it stale).
fn stale_entry() -> (AsideCache<u32, u64>, MockClock) {
    let clock = MockClock::new();
    let cache = AsideCache::builder()
        .max_capacity(16)
        .shards(1)
        .seed(1)
        .time_to_live(Duration::from_secs(10))
        .fail_safe(
            aside::FailSafe::new(Duration::from_secs(600)).retry_interval(Duration::from_secs(5)),
        )
        .no_xfetch()
        .lease(Duration::from_secs(3600)) // no schedule outlives it (src/shim.rs)
        .clock(clock.clone())
        .build()
        .unwrap();
    cache.put(7, 1);
    clock.advance(Duration::from_secs(11));
    (cache, clock)
}

/// A reader whose reload fails races a writer that moves the row to version 2 and then
/// invalidates (`put == false`) or puts version 2 and lets it expire into its grace period (as
/// the harness's short TTLs do; a fresh put value would be found by the reader's re-check
/// after joining). Once both are done, a read must not return version 1: the writer's call
/// returned before it began.
fn resurrection(put: bool) {
    let (cache, clock) = stale_entry();
    let db = Arc::new(AtomicU64::new(1));
    let reader = {
        let cache = cache.clone();
        thread::spawn(move || cache.get_or_load_blocking(7, || Err::<Option<u64>, _>("db down")))
    };
    let writer = {
        let (cache, db, clock) = (cache.clone(), Arc::clone(&db), clock.clone());
        thread::spawn(move || {
            db.store(2, Ordering::SeqCst);
            if put {
                cache.put(7, 2);
                clock.advance(Duration::from_secs(11));
            } else {
                cache.invalidate(&7);
            }
        })
    };
    // The reader ran concurrently with the write: version 1 (served stale), or the error if
    // the invalidation removed the stale value before its lookup, or version 2 put before it.
    let read = reader.join().unwrap();
    assert!(
        matches!(read, Ok(Some(1 | 2)) | Err(LoadError::Loader(_))),
        "{read:?}"
    );
    writer.join().unwrap();
    // After an invalidation nothing is cached; after the put, version 2 is stale (`None`) or
    // served stale after a failed reload of it (`Some(2)`).
    let after = cache.get(&7);
    assert!(
        after.is_none() || (put && after == Some(2)),
        "version 1 came back after the write: {after:?}"
    );
    assert_eq!(cache.in_flight(), 0);
    cache.validate().unwrap();
}

#[test]
fn a_failed_reload_does_not_restore_a_value_invalidated_after_its_lookup() {
    explore(40, || resurrection(false));
}

#[test]
fn a_failed_reload_does_not_overwrite_a_value_put_after_its_lookup() {
    explore(41, || resurrection(true));
}
