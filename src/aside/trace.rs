//! The front door's `tracing` spans (feature `tracing`): one `aside.load` span per load that a
//! caller leads, at `DEBUG` level, with target `aside::load`. Without the feature every item
//! here is an empty stand-in that compiles away.
//!
//! | field | value |
//! |---|---|
//! | `key_hash` | the key's 64-bit hash in the in-flight registry (stable within a process) |
//! | `flight` | the load's id, unique within the cache |
//! | `waiters` | how many callers waited on this load instead of loading (coalesced) |
//! | `outcome` | one of [`Outcome`]'s names: `loaded`, `not_found`, `discarded`, `fail_safe`, `timeout`, `error`, `panicked` |
//!
//! A load that outlives the fail-safe soft timeout goes on in the background after its caller
//! got the stale value; its span stays open until the load ends and records how it ended.
//!
//! A panic in a loader is also an `ERROR` event, and a load past the hard timeout a `WARN`
//! event, inside the span.

/// How a led load ended, as the span's `outcome` field says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A value was loaded and installed.
    Loaded,
    /// The loader found nothing (`Ok(None)`).
    NotFound,
    /// A value was loaded but not installed: an invalidation landed while it loaded.
    Discarded,
    /// The loader failed or timed out and the stale value was served (fail-safe).
    FailSafe,
    /// The load exceeded the hard timeout.
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    Timeout,
    /// The loader returned an error.
    Error,
    /// The loader panicked.
    Panicked,
}

impl Outcome {
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Loaded => "loaded",
            Self::NotFound => "not_found",
            Self::Discarded => "discarded",
            Self::FailSafe => "fail_safe",
            Self::Timeout => "timeout",
            Self::Error => "error",
            Self::Panicked => "panicked",
        }
    }
}

/// The outcome of a load whose loader returned `value`, installed or not.
pub(crate) fn loaded<V>(value: &Option<V>, installed: bool) -> Outcome {
    match (value, installed) {
        (None, _) => Outcome::NotFound,
        (Some(_), true) => Outcome::Loaded,
        (Some(_), false) => Outcome::Discarded,
    }
}

#[cfg(feature = "tracing")]
mod on {
    use super::Outcome;

    /// The span of one led load.
    #[derive(Clone, Debug)]
    pub(crate) struct LoadSpan(tracing::Span);

    impl LoadSpan {
        /// `key_hash` is called only when the span is enabled.
        pub(crate) fn new(key_hash: impl FnOnce() -> u64, flight: u64) -> Self {
            let span = tracing::debug_span!(
                target: "aside::load",
                "aside.load",
                key_hash = tracing::field::Empty,
                flight,
                waiters = tracing::field::Empty,
                outcome = tracing::field::Empty,
            );
            if !span.is_disabled() {
                span.record("key_hash", key_hash());
            }
            Self(span)
        }

        /// Enters the span for a blocking section.
        pub(crate) fn enter(&self) -> tracing::span::Entered<'_> {
            self.0.enter()
        }

        /// Runs `fut` inside the span.
        #[cfg(feature = "async")]
        pub(crate) fn instrument<F: std::future::Future>(
            &self,
            fut: F,
        ) -> tracing::instrument::Instrumented<F> {
            tracing::Instrument::instrument(fut, self.0.clone())
        }

        /// Records how the load ended and how many callers waited on it.
        pub(crate) fn finish(&self, outcome: Outcome, waiters: u32) {
            self.0.record("waiters", waiters);
            self.0.record("outcome", outcome.name());
            match outcome {
                Outcome::Panicked => {
                    let _g = self.0.enter();
                    tracing::error!(target: "aside::load", "loader panicked");
                }
                Outcome::Timeout => {
                    let _g = self.0.enter();
                    tracing::warn!(target: "aside::load", "load exceeded the hard timeout");
                }
                _ => {}
            }
        }
    }
}

#[cfg(not(feature = "tracing"))]
mod off {
    use super::Outcome;

    /// Without the `tracing` feature: nothing.
    #[derive(Clone, Debug)]
    pub(crate) struct LoadSpan;

    /// What entering no span gives back.
    pub(crate) struct Entered;

    impl LoadSpan {
        #[inline(always)]
        pub(crate) fn new(_key_hash: impl FnOnce() -> u64, _flight: u64) -> Self {
            Self
        }

        #[inline(always)]
        pub(crate) fn enter(&self) -> Entered {
            Entered
        }

        #[cfg(feature = "async")]
        #[inline(always)]
        pub(crate) fn instrument<F: std::future::Future>(&self, fut: F) -> F {
            fut
        }

        #[inline(always)]
        pub(crate) fn finish(&self, _outcome: Outcome, _waiters: u32) {}
    }
}

#[cfg(feature = "tracing")]
pub(crate) use on::LoadSpan;

#[cfg(not(feature = "tracing"))]
pub(crate) use off::LoadSpan;
