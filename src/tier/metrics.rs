//! [`TierMetrics`]: what the Redis tier counted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::BreakerState;

/// A snapshot of the tier's counters, from [`TieredCache::metrics`](super::TieredCache::metrics).
///
/// Counters only grow; take two snapshots and subtract for rates.
///
/// # Example
///
/// ```
/// let m = aside::tier::TierMetrics::default();
/// assert_eq!(m.l2_hits + m.l2_misses, 0);
/// assert_eq!(m.breaker, aside::tier::BreakerState::Closed);
/// assert_eq!(m.pending_invalidations + m.invalidation_overflows, 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierMetrics {
    /// Lookups answered by the L1 (`AsideCache`) without going to Redis.
    pub l1_hits: u64,
    /// Lookups the L1 could not answer.
    pub l1_misses: u64,
    /// Redis `GET`s that found the value (including the polls of lock waiters that found it).
    pub l2_hits: u64,
    /// First Redis `GET`s of an L1 miss that found nothing.
    pub l2_misses: u64,
    /// Redis operations that failed: connection errors, timeouts, error replies.
    pub l2_errors: u64,
    /// Of those, operations that exceeded the op timeout.
    pub l2_timeouts: u64,
    /// Operations not sent to Redis because the breaker was open.
    pub l2_skipped: u64,
    /// Values that failed to encode or decode (a decode failure counts as a miss).
    pub codec_errors: u64,
    /// Where the breaker stands now.
    pub breaker: BreakerState,
    /// How many times the breaker opened.
    pub breaker_opened: u64,
    /// Invalidation messages this instance published.
    pub backplane_sent: u64,
    /// Invalidation messages from other instances received (and applied to the L1).
    pub backplane_received: u64,
    /// This instance's own messages, received and ignored.
    pub backplane_own: u64,
    /// Messages that were not ours to read or whose key did not decode (the L1 was cleared
    /// for the latter).
    pub backplane_undecodable: u64,
    /// Subscriptions re-established after a loss (each cleared the L1).
    pub backplane_resubscribes: u64,
    /// Whether the subscriber is subscribed right now.
    pub backplane_connected: bool,
    /// L1 clears while unsubscribed, one per `disconnected_l1_ttl` of disconnection.
    pub disconnected_l1_clears: u64,
    /// Distributed locks won. A winner first re-reads Redis: a value installed between its
    /// `GET` and its `SET NX` (by the previous holder) is used instead of loading.
    pub lock_acquired: u64,
    /// Loads that found the lock held and waited for its holder's value.
    pub lock_waited: u64,
    /// Waiters that ran out of `lock_wait` and loaded themselves (the last resort).
    pub lock_fallback_loads: u64,
    /// Holders whose value was not installed in Redis because their lease was gone
    /// (invalidated while loading, or the lease ran out).
    pub lock_lost: u64,
    /// Loads run without Redis because it was unavailable (breaker open or an error).
    pub degraded_loads: u64,
    /// Calls of the user's loader, whichever path led to them.
    pub loads: u64,
    /// Writes to Redis (populate, `put`, `invalidate`) that succeeded at the first try.
    pub l2_writes: u64,
    /// Queued invalidations (failed `invalidate`, `put`, `invalidate_all`) that the replay
    /// task applied in Redis and published once Redis answered again: the replayed count.
    /// Invalidations of one key coalesced in the queue count once, and so does an overflow's
    /// prefix-wide clear.
    pub writes_retried: u64,
    /// Failed writes given up: populates after a load (never retried: the next miss writes),
    /// invalidations that failed while `write_retry_window` is zero, and queued ones that
    /// Redis kept answering with an error reply (an ACL denial, `READONLY`) for longer than
    /// `write_retry_window`. Never those that wait for an unreachable Redis.
    pub writes_dropped: u64,
    /// Invalidations waiting for Redis right now (a gauge): per-key deletions, coalesced per
    /// key, plus one for a queued prefix-wide clear. Back to 0 once Redis has taken them all.
    pub pending_invalidations: u64,
    /// How many times the queue of pending invalidations was full
    /// (`max_pending_invalidations`) and became one prefix-wide clear: on recovery every key
    /// under the prefix is deleted and every instance clears its L1.
    pub invalidation_overflows: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) l2_hits: AtomicU64,
    pub(crate) l2_misses: AtomicU64,
    pub(crate) l2_errors: AtomicU64,
    pub(crate) l2_timeouts: AtomicU64,
    pub(crate) l2_skipped: AtomicU64,
    pub(crate) codec_errors: AtomicU64,
    pub(crate) backplane_sent: AtomicU64,
    pub(crate) backplane_received: AtomicU64,
    pub(crate) backplane_own: AtomicU64,
    pub(crate) backplane_undecodable: AtomicU64,
    pub(crate) backplane_resubscribes: AtomicU64,
    pub(crate) backplane_connected: AtomicBool,
    pub(crate) disconnected_l1_clears: AtomicU64,
    pub(crate) lock_acquired: AtomicU64,
    pub(crate) lock_waited: AtomicU64,
    pub(crate) lock_fallback_loads: AtomicU64,
    pub(crate) lock_lost: AtomicU64,
    pub(crate) degraded_loads: AtomicU64,
    pub(crate) loads: AtomicU64,
    pub(crate) l2_writes: AtomicU64,
    pub(crate) writes_retried: AtomicU64,
    pub(crate) writes_dropped: AtomicU64,
    pub(crate) invalidation_overflows: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` writes to Redis given up (`writes_dropped`), with a `WARN` event under the
    /// `tracing` feature (target `aside::tier`, fields `dropped` and `what`).
    pub(crate) fn writes_dropped(&self, n: u64, what: &'static str) {
        Self::add(&self.writes_dropped, n);
        #[cfg(feature = "tracing")]
        tracing::warn!(target: "aside::tier", dropped = n, what, "Redis writes dropped");
        let _ = what;
    }

    /// The invalidation queue overflowed into a prefix-wide clear (`invalidation_overflows`),
    /// with a `WARN` event under the `tracing` feature (target `aside::tier`).
    pub(crate) fn invalidation_overflow(&self) {
        Self::bump(&self.invalidation_overflows);
        #[cfg(feature = "tracing")]
        tracing::warn!(
            target: "aside::tier",
            "invalidation queue full: replaced by one prefix-wide clear"
        );
    }

    pub(crate) fn snapshot(&self) -> TierMetrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TierMetrics {
            l1_hits: 0,
            l1_misses: 0,
            l2_hits: get(&self.l2_hits),
            l2_misses: get(&self.l2_misses),
            l2_errors: get(&self.l2_errors),
            l2_timeouts: get(&self.l2_timeouts),
            l2_skipped: get(&self.l2_skipped),
            codec_errors: get(&self.codec_errors),
            breaker: BreakerState::Closed,
            breaker_opened: 0,
            backplane_sent: get(&self.backplane_sent),
            backplane_received: get(&self.backplane_received),
            backplane_own: get(&self.backplane_own),
            backplane_undecodable: get(&self.backplane_undecodable),
            backplane_resubscribes: get(&self.backplane_resubscribes),
            backplane_connected: self.backplane_connected.load(Ordering::Relaxed),
            disconnected_l1_clears: get(&self.disconnected_l1_clears),
            lock_acquired: get(&self.lock_acquired),
            lock_waited: get(&self.lock_waited),
            lock_fallback_loads: get(&self.lock_fallback_loads),
            lock_lost: get(&self.lock_lost),
            degraded_loads: get(&self.degraded_loads),
            loads: get(&self.loads),
            l2_writes: get(&self.l2_writes),
            writes_retried: get(&self.writes_retried),
            writes_dropped: get(&self.writes_dropped),
            pending_invalidations: 0,
            invalidation_overflows: get(&self.invalidation_overflows),
        }
    }
}
