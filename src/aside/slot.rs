//! What the front door stores in the engine for each key, and the freshness decisions on it.

use std::sync::Arc;

use super::labels::Mark;

/// A cached load result with the metadata the front door needs.
#[derive(Clone, Debug)]
pub(crate) struct Slot<V> {
    /// The value, or `None` for a cached "not found" (negative caching).
    pub(crate) value: Option<V>,
    /// When the value was stored, on the cache clock (ns).
    pub(crate) stored_at: u64,
    /// Until when the value is fresh; after it the slot is stale (kept only for fail-safe).
    pub(crate) fresh_until: u64,
    /// How long the load that produced it took, on the cache clock (ns): XFetch's `delta`.
    pub(crate) delta: u64,
    /// Fail-safe throttle: no reload is attempted before this instant.
    pub(crate) retry_after: u64,
    /// Tags and namespace, with the epoch and version the value was loaded under.
    pub(crate) mark: Option<Arc<Mark>>,
}

/// What a hit on a slot means at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Serve it.
    Fresh,
    /// Serve it, and refresh it early (XFetch or the eager threshold).
    RefreshEarly,
    /// Expired but inside the fail-safe grace period; a reload is due.
    Stale,
    /// Expired inside the grace period, but a recent reload failed: serve it, do not reload.
    StaleThrottled,
}

/// Early refresh settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EarlyRefresh {
    /// XFetch's `beta`; `None` disables the probabilistic refresh.
    pub(crate) beta: Option<f64>,
    /// Refresh once this fraction of the TTL has elapsed; `None` disables it.
    pub(crate) after_fraction: Option<f64>,
}

impl<V> Slot<V> {
    /// Classifies the slot at `now`; `random` is uniform in (0, 1] for XFetch.
    pub(crate) fn freshness(&self, now: u64, early: &EarlyRefresh, random: f64) -> Freshness {
        if now >= self.fresh_until {
            return if now < self.retry_after {
                Freshness::StaleThrottled
            } else {
                Freshness::Stale
            };
        }
        if self.fresh_until == u64::MAX {
            return Freshness::Fresh;
        }
        if let Some(f) = early.after_fraction {
            let ttl = self.fresh_until - self.stored_at;
            // Saturating: a clock that went backwards since the store must not overflow.
            if now.saturating_sub(self.stored_at) as f64 >= ttl as f64 * f {
                return Freshness::RefreshEarly;
            }
        }
        if early
            .beta
            .is_some_and(|beta| xfetch(now, self.delta, beta, random, self.fresh_until))
        {
            return Freshness::RefreshEarly;
        }
        Freshness::Fresh
    }
}

/// XFetch (Vattani et al.): recompute early when `now - delta * beta * ln(random) >= expiry`.
/// `ln(random) <= 0`, so the left side is `now` plus a random lead that grows with `delta`.
pub(crate) fn xfetch(now: u64, delta: u64, beta: f64, random: f64, expiry: u64) -> bool {
    let lead = -(delta as f64) * beta * random.max(f64::MIN_POSITIVE).ln();
    now as f64 + lead >= expiry as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(stored: u64, fresh: u64, delta: u64) -> Slot<u32> {
        Slot {
            value: Some(1),
            stored_at: stored,
            fresh_until: fresh,
            delta,
            retry_after: 0,
            mark: None,
        }
    }

    #[test]
    fn xfetch_probability_grows_towards_expiry() {
        let early = EarlyRefresh {
            beta: Some(1.0),
            after_fraction: None,
        };
        let s = slot(0, 1_000, 100);
        let share = |now: u64| {
            (1..=1000)
                .filter(|&i| s.freshness(now, &early, i as f64 / 1000.0) == Freshness::RefreshEarly)
                .count()
        };
        // P(refresh) = exp(-(expiry - now) / (delta * beta)).
        assert_eq!(share(0), 0);
        let mid = share(800); // exp(-2) ≈ 13.5%
        assert!((120..=150).contains(&mid), "{mid}");
        assert!(share(990) > 850); // exp(-0.1) ≈ 90%
        assert_eq!(s.freshness(1_000, &early, 0.5), Freshness::Stale);
    }

    #[test]
    fn eager_threshold_is_deterministic() {
        let early = EarlyRefresh {
            beta: None,
            after_fraction: Some(0.8),
        };
        let s = slot(1_000, 2_000, 0);
        assert_eq!(s.freshness(1_799, &early, 0.5), Freshness::Fresh);
        assert_eq!(s.freshness(1_800, &early, 0.5), Freshness::RefreshEarly);
    }

    #[test]
    fn throttled_stale() {
        let mut s = slot(0, 10, 0);
        s.retry_after = 20;
        let early = EarlyRefresh {
            beta: None,
            after_fraction: None,
        };
        assert_eq!(s.freshness(15, &early, 0.5), Freshness::StaleThrottled);
        assert_eq!(s.freshness(20, &early, 0.5), Freshness::Stale);
    }
}
