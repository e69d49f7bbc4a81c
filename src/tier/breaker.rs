//! The circuit breaker in front of Redis: closed, open, half-open.
//!
//! Closed: every operation goes to Redis; `failures` consecutive failures (errors of the
//! connection or timeouts, not server replies) open it. Open: no operation goes to Redis for
//! `open_for`; reads fall through to the loader at once. Then half-open: one probe operation
//! goes through; its success closes the breaker, its failure opens it for another `open_for`.
//! Time comes from the tier's [`Clock`], so tests drive it with a [`MockClock`](crate::MockClock).

use std::sync::Arc;

use parking_lot::Mutex;

use crate::Clock;

/// Where the breaker in front of Redis stands.
///
/// # Example
///
/// ```
/// use aside::tier::BreakerState;
/// assert_eq!(BreakerState::default(), BreakerState::Closed);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BreakerState {
    /// Redis is used.
    #[default]
    Closed,
    /// Redis is skipped until the open period ends.
    Open,
    /// One probe operation is allowed through; the rest skip Redis until it answers.
    HalfOpen,
}

#[derive(Debug)]
struct State {
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: u64,
    probe_in_flight: bool,
    times_opened: u64,
}

/// A thread-safe circuit breaker.
pub(crate) struct Breaker {
    failures: u32,
    open_for: u64,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

/// Permission to run one operation; report its outcome with [`Permit::success`] or
/// [`Permit::failure`]. Dropped without a report (a cancelled operation), it frees the probe
/// slot without changing the state.
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    reported: bool,
}

impl Breaker {
    pub(crate) fn new(failures: u32, open_for_nanos: u64, clock: Arc<dyn Clock>) -> Self {
        Self {
            failures,
            open_for: open_for_nanos,
            clock,
            state: Mutex::new(State {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: 0,
                probe_in_flight: false,
                times_opened: 0,
            }),
        }
    }

    /// A permit, or `None` while the breaker is open (or half-open with its probe out).
    pub(crate) fn try_acquire(&self) -> Option<Permit<'_>> {
        let now = self.clock.now_nanos();
        let mut s = self.state.lock();
        let probe = match s.state {
            BreakerState::Closed => false,
            BreakerState::Open if now.saturating_sub(s.opened_at) >= self.open_for => {
                s.state = BreakerState::HalfOpen;
                s.probe_in_flight = true;
                drop(s);
                transition(BreakerState::Open, BreakerState::HalfOpen);
                return Some(Permit {
                    breaker: self,
                    probe: true,
                    reported: false,
                });
            }
            BreakerState::Open => return None,
            BreakerState::HalfOpen if s.probe_in_flight => return None,
            BreakerState::HalfOpen => {
                s.probe_in_flight = true;
                true
            }
        };
        Some(Permit {
            breaker: self,
            probe,
            reported: false,
        })
    }

    pub(crate) fn state(&self) -> BreakerState {
        self.state.lock().state
    }

    pub(crate) fn times_opened(&self) -> u64 {
        self.state.lock().times_opened
    }

    fn report(&self, probe: bool, ok: bool) {
        let now = self.clock.now_nanos();
        let mut s = self.state.lock();
        if probe {
            s.probe_in_flight = false;
        }
        if ok {
            s.consecutive_failures = 0;
            if probe && s.state == BreakerState::HalfOpen {
                s.state = BreakerState::Closed;
                drop(s);
                transition(BreakerState::HalfOpen, BreakerState::Closed);
            }
            return;
        }
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        let open = match s.state {
            BreakerState::HalfOpen => probe,
            BreakerState::Closed => s.consecutive_failures >= self.failures,
            BreakerState::Open => false,
        };
        if open {
            let from = s.state;
            s.state = BreakerState::Open;
            s.opened_at = now;
            s.times_opened += 1;
            let failures = s.consecutive_failures;
            drop(s);
            transition(from, BreakerState::Open);
            let _ = failures;
            #[cfg(feature = "tracing")]
            tracing::warn!(target: "aside::tier", failures, "Redis circuit breaker opened");
        }
    }
}

/// A `tracing` event for a state change of the breaker (feature `tracing`; target
/// `aside::tier`, `INFO`, fields `from` and `to`), emitted after the breaker's lock is
/// released: a subscriber is user code.
fn transition(from: BreakerState, to: BreakerState) {
    let _ = (from, to);
    #[cfg(feature = "tracing")]
    tracing::info!(target: "aside::tier", from = ?from, to = ?to, "Redis circuit breaker");
}

impl Permit<'_> {
    pub(crate) fn success(mut self) {
        self.reported = true;
        self.breaker.report(self.probe, true);
    }

    pub(crate) fn failure(mut self) {
        self.reported = true;
        self.breaker.report(self.probe, false);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.reported && self.probe {
            self.breaker.state.lock().probe_in_flight = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MockClock;
    use std::time::Duration;

    fn breaker(clock: &MockClock) -> Breaker {
        Breaker::new(3, 1_000_000_000, Arc::new(clock.clone()))
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let clock = MockClock::new();
        let b = breaker(&clock);
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().success(); // resets the count
        b.try_acquire().unwrap().failure();
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.try_acquire().unwrap().failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.try_acquire().is_none());
        assert_eq!(b.times_opened(), 1);
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_outcome_decides() {
        let clock = MockClock::new();
        let b = breaker(&clock);
        for _ in 0..3 {
            b.try_acquire().unwrap().failure();
        }
        clock.advance(Duration::from_millis(999));
        assert!(b.try_acquire().is_none());
        clock.advance(Duration::from_millis(1));
        let probe = b.try_acquire().unwrap();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.try_acquire().is_none(), "one probe at a time");
        probe.failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.times_opened(), 2);
        assert!(b.try_acquire().is_none());
        clock.advance(Duration::from_secs(1));
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire().is_some());
    }

    #[test]
    fn a_cancelled_probe_frees_the_slot() {
        let clock = MockClock::new();
        let b = breaker(&clock);
        for _ in 0..3 {
            b.try_acquire().unwrap().failure();
        }
        clock.advance(Duration::from_secs(1));
        drop(b.try_acquire().unwrap());
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.try_acquire().expect("the slot is free again").success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    /// Under the `tracing` feature every transition is an `INFO` event with `from` and `to`,
    /// and opening also a `WARN` event with the failure count.
    #[cfg(feature = "tracing")]
    #[test]
    fn transitions_are_tracing_events() {
        use std::sync::Mutex;
        use tracing::field::{Field, Visit};

        #[derive(Default)]
        struct Events(Mutex<Vec<String>>);
        struct Line<'a>(&'a mut String);
        impl Visit for Line<'_> {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={value:?}", field.name()));
            }
        }
        impl tracing::Subscriber for Events {
            fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
                tracing::span::Id::from_u64(1)
            }
            fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
            fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
            fn event(&self, event: &tracing::Event<'_>) {
                let mut line =
                    format!("{} {}", event.metadata().level(), event.metadata().target());
                event.record(&mut Line(&mut line));
                self.0.lock().unwrap().push(line);
            }
            fn enter(&self, _: &tracing::span::Id) {}
            fn exit(&self, _: &tracing::span::Id) {}
        }

        let events = Arc::new(Events::default());
        let clock = MockClock::new();
        let b = breaker(&clock);
        tracing::subscriber::with_default(Arc::clone(&events), || {
            for _ in 0..3 {
                b.try_acquire().unwrap().failure();
            }
            clock.advance(Duration::from_secs(1));
            b.try_acquire().unwrap().success();
        });
        let seen = events.0.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                "INFO aside::tier message=Redis circuit breaker from=Closed to=Open",
                "WARN aside::tier message=Redis circuit breaker opened failures=3",
                "INFO aside::tier message=Redis circuit breaker from=Open to=HalfOpen",
                "INFO aside::tier message=Redis circuit breaker from=HalfOpen to=Closed",
            ]
        );
    }
}
