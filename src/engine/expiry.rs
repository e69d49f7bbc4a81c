//! Time, deadlines and the expiry settings of a cache.
//!
//! Time is read through the [`Clock`] trait so that tests can drive it by hand with a
//! [`MockClock`] instead of sleeping. A cache reads the clock only when an entry carries a
//! deadline or the cache slides deadlines, so caches without expiry never pay for it.
//!
//! Deadlines are stored per entry as one `u64` ([`Deadline`]): nanoseconds on the cache's clock,
//! with the top bit marking a *sliding* deadline (time-to-idle), which every hit pushes back.
//! All arithmetic saturates: `Duration::MAX` becomes the latest representable instant (about
//! 292 years after the clock's origin, still finite), a zero TTL expires at once, and a clock
//! that jumps backwards only delays expiry by the jump; no entry is left that can never expire.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A source of monotonic time for a cache, in nanoseconds since an arbitrary origin.
///
/// The default is [`SystemClock`]. Tests inject a [`MockClock`] and advance it explicitly, so no
/// test outcome depends on sleeping. An implementation may go backwards (a mock can); the cache
/// treats such a jump with saturating arithmetic and never panics.
///
/// The cache may call [`now_nanos`](Self::now_nanos) while it holds a shard's lock, and a
/// lookup calls it inside its read section (so that the deadline it checks is the one of the
/// value it serves), during which writers that remove entries of that shard wait. An implementation must therefore be quick, must not block, and must
/// never call back into the cache it serves: that would deadlock.
///
/// # Example
///
/// ```
/// use aside::{Cache, Clock, MockClock};
/// use std::time::Duration;
///
/// let clock = MockClock::new();
/// let cache: Cache<u32, &str> = Cache::builder()
///     .max_capacity(100)
///     .time_to_live(Duration::from_secs(60))
///     .clock(clock.clone())
///     .build()
///     .unwrap();
/// cache.insert(1, "one");
/// clock.advance(Duration::from_secs(59));
/// assert_eq!(cache.get(&1), Some("one"));
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(cache.get(&1), None);
/// ```
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds elapsed since this clock's origin.
    fn now_nanos(&self) -> u64;
}

/// The real, monotonic clock: [`Instant`] measured from the moment the clock was created.
///
/// # Example
///
/// ```
/// use aside::{Clock, SystemClock};
/// let clock = SystemClock::new();
/// let a = clock.now_nanos();
/// assert!(clock.now_nanos() >= a);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    ///
    /// # Example
    ///
    /// ```
    /// let clock = aside::SystemClock::new();
    /// # let _ = clock;
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock moved only by hand, for deterministic tests. Clones share one time.
///
/// It starts at an origin of one hour (so that it can also be moved backwards) and can be
/// advanced, set or rewound; rewinding saturates at zero.
///
/// # Example
///
/// ```
/// use aside::{Clock, MockClock};
/// use std::time::Duration;
///
/// let clock = MockClock::new();
/// let t0 = clock.now_nanos();
/// clock.advance(Duration::from_millis(5));
/// assert_eq!(clock.now_nanos() - t0, 5_000_000);
/// clock.rewind(Duration::from_millis(10));
/// assert_eq!(clock.now_nanos(), t0 - 5_000_000);
/// ```
#[derive(Debug, Clone)]
pub struct MockClock {
    nanos: Arc<AtomicU64>,
}

impl MockClock {
    /// The time a new mock clock starts at: one hour after its origin.
    pub const START: Duration = Duration::from_secs(3600);

    /// A new mock clock at [`MockClock::START`].
    ///
    /// # Example
    ///
    /// ```
    /// use aside::{Clock, MockClock};
    /// assert_eq!(MockClock::new().now_nanos(), 3_600_000_000_000);
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(duration_nanos(Self::START))),
        }
    }

    /// Moves the clock forward by `by` (saturating).
    ///
    /// # Example
    ///
    /// ```
    /// # use aside::{Clock, MockClock}; use std::time::Duration;
    /// let clock = MockClock::new();
    /// clock.advance(Duration::from_secs(1));
    /// ```
    pub fn advance(&self, by: Duration) {
        let by = duration_nanos(by);
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_add(by))
            });
    }

    /// Moves the clock backwards by `by` (saturating at zero), as a misbehaving clock would.
    ///
    /// # Example
    ///
    /// ```
    /// # use aside::{Clock, MockClock}; use std::time::Duration;
    /// let clock = MockClock::new();
    /// clock.rewind(Duration::MAX);
    /// assert_eq!(clock.now_nanos(), 0);
    /// ```
    pub fn rewind(&self, by: Duration) {
        let by = duration_nanos(by);
        let _ = self
            .nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                Some(n.saturating_sub(by))
            });
    }

    /// Sets the clock to `nanos` since its origin.
    ///
    /// # Example
    ///
    /// ```
    /// # use aside::{Clock, MockClock};
    /// let clock = MockClock::new();
    /// clock.set_nanos(42);
    /// assert_eq!(clock.now_nanos(), 42);
    /// ```
    pub fn set_nanos(&self, nanos: u64) {
        self.nanos.store(nanos, Ordering::SeqCst);
    }
}

impl Default for MockClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MockClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }
}

/// A duration in nanoseconds, saturating at `u64::MAX`.
#[inline]
pub(crate) fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// An entry's deadline packed in one `u64`: bit 63 marks a sliding deadline, bits 0..63 hold
/// the instant (nanoseconds on the cache clock). [`Deadline::NEVER`] has all instant bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline(u64);

impl Deadline {
    const SLIDING: u64 = 1 << 63;
    const INSTANT_MASK: u64 = !Self::SLIDING;
    /// No deadline.
    pub(crate) const NEVER: Deadline = Deadline(Self::INSTANT_MASK);
    /// The latest finite instant: `Duration::MAX` TTLs saturate here.
    const LATEST: u64 = Self::INSTANT_MASK - 1;

    /// A fixed deadline `ttl` after `now`.
    #[inline]
    pub(crate) fn fixed(now: u64, ttl: u64) -> Deadline {
        Deadline(now.saturating_add(ttl).min(Self::LATEST))
    }

    /// A sliding deadline `tti` after `now`.
    #[inline]
    pub(crate) fn sliding(now: u64, tti: u64) -> Deadline {
        Deadline(Self::fixed(now, tti).0 | Self::SLIDING)
    }

    #[inline]
    pub(crate) fn from_raw(raw: u64) -> Deadline {
        Deadline(raw)
    }

    #[inline]
    pub(crate) fn raw(self) -> u64 {
        self.0
    }

    #[inline]
    pub(crate) fn is_never(self) -> bool {
        self.0 == Self::NEVER.0
    }

    #[inline]
    pub(crate) fn is_sliding(self) -> bool {
        self.0 & Self::SLIDING != 0
    }

    /// The instant, or `None` for [`Deadline::NEVER`].
    #[inline]
    pub(crate) fn instant(self) -> Option<u64> {
        (!self.is_never()).then_some(self.0 & Self::INSTANT_MASK)
    }

    /// Whether the entry is expired at `now`: an entry is live strictly before its deadline.
    #[inline]
    pub(crate) fn is_expired(self, now: u64) -> bool {
        match self.instant() {
            Some(at) => now >= at,
            None => false,
        }
    }
}

/// The expiry settings of one cache, shared by its shards.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Expiration {
    /// Fixed time-to-live for inserts without an explicit TTL, in nanoseconds.
    pub(crate) ttl: Option<u64>,
    /// Sliding time-to-idle for inserts without an explicit TTL, in nanoseconds.
    pub(crate) tti: Option<u64>,
    /// Upper bound (exclusive) of the random jitter added to every TTL, in nanoseconds.
    pub(crate) jitter: u64,
}

impl Expiration {
    /// Whether any entry may carry a deadline without an explicit per-entry TTL.
    #[inline]
    pub(crate) fn has_default(&self) -> bool {
        self.ttl.is_some() || self.tti.is_some()
    }

    /// The deadline of an entry written at `now` with the per-entry `ttl` (if any); `random`
    /// supplies the jitter.
    pub(crate) fn deadline(
        &self,
        now: u64,
        ttl: Option<u64>,
        random: impl FnOnce() -> u64,
    ) -> Deadline {
        let jitter = if self.jitter == 0 {
            0
        } else {
            random() % self.jitter
        };
        match (ttl, self.ttl, self.tti) {
            (Some(ttl), _, _) | (None, Some(ttl), _) => {
                Deadline::fixed(now, ttl.saturating_add(jitter))
            }
            (None, None, Some(tti)) => Deadline::sliding(now, tti.saturating_add(jitter)),
            (None, None, None) => Deadline::NEVER,
        }
    }

    /// The deadline after a hit at `now` on an entry whose deadline is `current`, if it slides.
    #[inline]
    pub(crate) fn slide(&self, current: Deadline, now: u64) -> Option<Deadline> {
        match self.tti {
            Some(tti) if current.is_sliding() => Some(Deadline::sliding(now, tti)),
            _ => None,
        }
    }
}

/// Entries the Redis-style sweep samples per round.
pub(crate) const SWEEP_SAMPLE: usize = 20;
/// The sweep repeats while more than this share (in percent) of a sample had expired.
pub(crate) const SWEEP_REPEAT_PERCENT: usize = 25;
/// Upper bound on rounds in one explicit sweep of one shard (bounded work per call).
pub(crate) const SWEEP_MAX_ROUNDS: usize = 16;
/// Rounds of the sweep run inside a write, every [`SWEEP_EVERY_WRITES`] writes.
pub(crate) const SWEEP_ROUNDS_PER_WRITE: usize = 2;
/// How many writes to a shard between two amortized sweeps.
pub(crate) const SWEEP_EVERY_WRITES: u32 = 16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_saturates_and_stays_finite() {
        let d = Deadline::fixed(u64::MAX - 5, u64::MAX);
        assert!(!d.is_never());
        assert_eq!(d.instant(), Some(Deadline::LATEST));
        assert!(!d.is_expired(0));
        assert!(d.is_expired(u64::MAX));
        let s = Deadline::sliding(10, u64::MAX);
        assert!(s.is_sliding() && !s.is_never());
    }

    #[test]
    fn zero_ttl_expires_at_once() {
        let d = Deadline::fixed(100, 0);
        assert!(d.is_expired(100));
        assert!(!d.is_expired(99));
    }

    #[test]
    fn never_is_never_expired() {
        assert!(!Deadline::NEVER.is_expired(u64::MAX));
        assert!(!Deadline::NEVER.is_sliding());
        assert_eq!(Deadline::NEVER.instant(), None);
    }

    #[test]
    fn jitter_is_bounded() {
        let e = Expiration {
            ttl: Some(1000),
            tti: None,
            jitter: 100,
        };
        for r in 0..1000 {
            let at = e.deadline(0, None, || r).instant().unwrap();
            assert!((1000..1100).contains(&at));
        }
        let explicit = e.deadline(0, Some(5), || 7).instant().unwrap();
        assert_eq!(explicit, 12);
    }

    #[test]
    fn sliding_only_for_default_idle() {
        let e = Expiration {
            ttl: None,
            tti: Some(50),
            jitter: 0,
        };
        let d = e.deadline(10, None, || 0);
        assert!(d.is_sliding());
        assert_eq!(e.slide(d, 30).unwrap().instant(), Some(80));
        let fixed = e.deadline(10, Some(5), || 0);
        assert!(e.slide(fixed, 12).is_none());
    }
}
