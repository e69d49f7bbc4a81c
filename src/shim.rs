//! The one place the crate imports its synchronization primitives from, so that a schedule
//! explorer can replace them in one spot.
//!
//! Normally these are parking_lot's locks and std's atomics, re-exported as they are. Under
//! `RUSTFLAGS="--cfg aside_shuttle"` (tests/shuttle.rs, see docs/testing.md) they are thin
//! wrappers over [shuttle](https://docs.rs/shuttle)'s, with the subset of parking_lot's API the
//! crate uses: no poisoning (a poisoned lock is entered anyway, as parking_lot does), `try_lock`
//! returning an `Option`, and `Condvar::wait_until` on a `&mut` guard.
//!
//! Shuttle's condition variable never times out, so the wrapper models a timeout itself: a
//! wait whose deadline is less than [`SHUTTLE_TIMEOUT_HORIZON`] away may time out at any
//! scheduling point (shuttle's own random choice, so replayable); a wait with a longer deadline
//! never times out. Tests that must see exactly one load use a long lease.
//!
//! `thread_local!` comes from here too: shuttle runs its threads as coroutines on one OS
//! thread, so std's thread-locals would be shared between them.

#[cfg(not(aside_shuttle))]
pub(crate) use parking_lot::{Condvar, Mutex};
#[cfg(not(aside_shuttle))]
pub(crate) use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(not(aside_shuttle))]
pub(crate) use std::thread::yield_now;
#[cfg(not(aside_shuttle))]
pub(crate) use std::thread_local;

#[cfg(aside_shuttle)]
pub(crate) use self::explore::{Condvar, Mutex};
#[cfg(aside_shuttle)]
pub(crate) use shuttle::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(aside_shuttle)]
pub(crate) use shuttle::thread::yield_now;
#[cfg(aside_shuttle)]
pub(crate) use shuttle::thread_local;

#[cfg(aside_shuttle)]
mod explore {
    use std::ops::{Deref, DerefMut};
    use std::sync::{PoisonError, TryLockError};
    use std::time::{Duration, Instant};

    use shuttle::rand::Rng;

    /// Waits with a deadline closer than this may time out under shuttle; see the module docs.
    pub(crate) const SHUTTLE_TIMEOUT_HORIZON: Duration = Duration::from_secs(60);

    /// parking_lot's `Mutex` API over shuttle's.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(shuttle::sync::Mutex<T>);

    /// The guard of [`Mutex`]; an `Option` so that [`Condvar::wait_until`] can hand it to
    /// shuttle by value and put it back.
    pub(crate) struct MutexGuard<'a, T> {
        mutex: &'a shuttle::sync::Mutex<T>,
        guard: Option<shuttle::sync::MutexGuard<'a, T>>,
    }

    impl<T> Mutex<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self(shuttle::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard {
                mutex: &self.0,
                guard: Some(self.0.lock().unwrap_or_else(PoisonError::into_inner)),
            }
        }

        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            let guard = match self.0.try_lock() {
                Ok(g) => g,
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => return None,
            };
            Some(MutexGuard {
                mutex: &self.0,
                guard: Some(guard),
            })
        }

        /// Whether the lock is held at this moment (a try-lock that gives the lock back).
        pub(crate) fn is_locked(&self) -> bool {
            matches!(self.0.try_lock(), Err(TryLockError::WouldBlock))
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;

        fn deref(&self) -> &T {
            self.guard.as_deref().expect("guard present outside a wait")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.guard
                .as_deref_mut()
                .expect("guard present outside a wait")
        }
    }

    /// parking_lot's `WaitTimeoutResult`.
    pub(crate) struct WaitTimeoutResult(bool);

    impl WaitTimeoutResult {
        pub(crate) fn timed_out(&self) -> bool {
            self.0
        }
    }

    /// parking_lot's `Condvar` API over shuttle's.
    #[derive(Debug, Default)]
    pub(crate) struct Condvar(shuttle::sync::Condvar);

    impl Condvar {
        pub(crate) const fn new() -> Self {
            Self(shuttle::sync::Condvar::new())
        }

        pub(crate) fn notify_all(&self) -> usize {
            self.0.notify_all();
            0
        }

        /// Waits for a notification (no deadline).
        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let inner = guard.guard.take().expect("guard present");
            guard.guard = Some(self.0.wait(inner).unwrap_or_else(PoisonError::into_inner));
        }

        /// Waits for a notification; a deadline within [`SHUTTLE_TIMEOUT_HORIZON`] may instead
        /// time out (the lock is released and retaken around a yield, as a real timeout would).
        pub(crate) fn wait_until<T>(
            &self,
            guard: &mut MutexGuard<'_, T>,
            deadline: Instant,
        ) -> WaitTimeoutResult {
            let inner = guard.guard.take().expect("guard present");
            let may_time_out =
                deadline.saturating_duration_since(Instant::now()) < SHUTTLE_TIMEOUT_HORIZON;
            if may_time_out && shuttle::rand::thread_rng().gen_range(0..3) == 0 {
                drop(inner);
                shuttle::thread::yield_now();
                guard.guard = Some(guard.mutex.lock().unwrap_or_else(PoisonError::into_inner));
                return WaitTimeoutResult(true);
            }
            guard.guard = Some(self.0.wait(inner).unwrap_or_else(PoisonError::into_inner));
            WaitTimeoutResult(false)
        }
    }
}
