//! The one validation of the front door's settings, shared by [`AsideBuilder::build`] and
//! the registry (`registry::CacheConfig`), so that a setting a builder accepts is a setting
//! the configuration file accepts, and the other way round.
//!
//! Each rule names the field it rejects as a [`Field`], which both callers spell their own
//! way: the builder by its setter (`time_to_live`, `fail_safe`), the file by its key (`ttl`,
//! `grace`).
//!
//! [`AsideBuilder::build`]: super::AsideBuilder::build

use std::time::Duration;

/// The front door's settings as either caller collected them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Settings {
    pub(crate) shards: Option<usize>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) tti: Option<Duration>,
    pub(crate) jitter: Option<Duration>,
    pub(crate) negative_ttl: Option<Duration>,
    /// Fail-safe: the grace period and the retry interval.
    pub(crate) grace: Option<Duration>,
    pub(crate) retry_interval: Option<Duration>,
    pub(crate) soft_timeout: Option<Duration>,
    /// XFetch's beta; `None` when XFetch is off.
    pub(crate) xfetch_beta: Option<f64>,
    pub(crate) refresh_after: Option<f64>,
    pub(crate) lease: Option<Duration>,
    pub(crate) load_timeout: Option<Duration>,
}

/// A field a rule can reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Shards,
    Ttl,
    Tti,
    Jitter,
    NegativeTtl,
    Grace,
    RetryInterval,
    SoftTimeout,
    XfetchBeta,
    RefreshAfter,
    Lease,
    LoadTimeout,
}

impl Field {
    /// The builder method that sets it.
    pub(crate) fn setter(self) -> &'static str {
        match self {
            Self::Shards => "shards",
            Self::Ttl => "time_to_live",
            Self::Tti => "time_to_idle",
            Self::Jitter => "ttl_jitter",
            Self::NegativeTtl => "negative_ttl",
            Self::Grace | Self::RetryInterval => "fail_safe",
            Self::SoftTimeout => "soft_timeout",
            Self::XfetchBeta => "xfetch_beta",
            Self::RefreshAfter => "refresh_after",
            Self::Lease => "lease",
            Self::LoadTimeout => "load_timeout",
        }
    }

    /// Its key in a registry file.
    #[cfg_attr(not(feature = "config"), allow(dead_code))]
    pub(crate) fn key(self) -> &'static str {
        match self {
            Self::Shards => "shards",
            Self::Ttl => "ttl",
            Self::Tti => "sliding_ttl",
            Self::Jitter => "jitter",
            Self::NegativeTtl => "negative_ttl",
            Self::Grace => "grace",
            Self::RetryInterval => "retry_interval",
            Self::SoftTimeout => "soft_timeout",
            Self::XfetchBeta => "xfetch_beta",
            Self::RefreshAfter => "refresh_after",
            Self::Lease => "lease",
            Self::LoadTimeout => "load_timeout",
        }
    }
}

/// A broken rule: the field and what is wrong with it, in words that hold for both spellings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Invalid {
    pub(crate) field: Field,
    pub(crate) reason: String,
}

fn invalid<T>(field: Field, reason: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid {
        field,
        reason: reason.into(),
    })
}

/// Every rule, in a fixed order (the first broken one is reported).
pub(crate) fn check(s: &Settings) -> Result<(), Invalid> {
    use Field::*;
    if let Some(n) = s
        .shards
        .filter(|&n| n == 0 || !n.is_power_of_two() || n > crate::MAX_SHARDS)
    {
        let max = crate::MAX_SHARDS;
        return invalid(
            Shards,
            format!("must be a power of two between 1 and {max}, got {n}"),
        );
    }
    // A zero duration here would make the setting useless or the cache unusable: every
    // value stale at once, "not found" cached for nothing, waiters that never wait.
    let positive = [
        (Ttl, s.ttl),
        (Tti, s.tti),
        (NegativeTtl, s.negative_ttl),
        (Grace, s.grace),
        (SoftTimeout, s.soft_timeout),
        (Lease, s.lease),
        (LoadTimeout, s.load_timeout),
    ];
    for (field, d) in positive {
        if d.is_some_and(|d| d.is_zero()) {
            return invalid(field, "must be longer than zero");
        }
    }
    if s.ttl.is_some() && s.tti.is_some() {
        return invalid(
            Tti,
            "cannot be combined with a fixed TTL: a cache either slides deadlines or fixes them",
        );
    }
    let window = s.ttl.map(|t| (Ttl, t)).or(s.tti.map(|t| (Tti, t)));
    if let (Some(jitter), Some((field, ttl))) = (s.jitter, window) {
        if jitter > ttl {
            let name = match field {
                Ttl => "the TTL",
                _ => "the sliding TTL",
            };
            return invalid(
                Jitter,
                format!(
                    "must not exceed {name} ({jitter:?} > {ttl:?}): jitter spreads expiries, it does not replace the TTL"
                ),
            );
        }
    }
    // A grace period alone takes `FailSafe::DEFAULT_RETRY_INTERVAL`.
    match (s.grace, s.retry_interval) {
        (None, Some(_)) => return invalid(RetryInterval, "needs fail-safe's grace period"),
        (Some(_), _) if s.ttl.is_none() => {
            return invalid(Grace, "needs a TTL to measure freshness against");
        }
        _ => {}
    }
    if s.soft_timeout.is_some() && s.grace.is_none() {
        return invalid(
            SoftTimeout,
            "needs fail-safe: without a stale value there is nothing to serve",
        );
    }
    if let Some(b) = s.xfetch_beta.filter(|b| !(b.is_finite() && *b > 0.0)) {
        return invalid(XfetchBeta, format!("must be finite and > 0, got {b}"));
    }
    if let Some(f) = s.refresh_after {
        if !(f > 0.0 && f < 1.0) {
            return invalid(
                RefreshAfter,
                format!("must be a fraction of the TTL strictly between 0 and 1, got {f}"),
            );
        }
        if s.ttl.is_none() {
            return invalid(RefreshAfter, "needs a TTL to measure freshness against");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn field(s: Settings) -> Option<Field> {
        check(&s).err().map(|e| e.field)
    }

    #[test]
    fn every_rule_names_its_field() {
        let ttl = Some(10 * S);
        let cases = [
            (
                Settings {
                    shards: Some(3),
                    ..Default::default()
                },
                Field::Shards,
            ),
            (
                Settings {
                    ttl: Some(Duration::ZERO),
                    ..Default::default()
                },
                Field::Ttl,
            ),
            (
                Settings {
                    negative_ttl: Some(Duration::ZERO),
                    ..Default::default()
                },
                Field::NegativeTtl,
            ),
            (
                Settings {
                    ttl,
                    tti: ttl,
                    ..Default::default()
                },
                Field::Tti,
            ),
            (
                Settings {
                    ttl,
                    jitter: Some(11 * S),
                    ..Default::default()
                },
                Field::Jitter,
            ),
            (
                Settings {
                    tti: ttl,
                    jitter: Some(11 * S),
                    ..Default::default()
                },
                Field::Jitter,
            ),
            (
                Settings {
                    ttl,
                    retry_interval: ttl,
                    ..Default::default()
                },
                Field::RetryInterval,
            ),
            (
                Settings {
                    grace: ttl,
                    retry_interval: ttl,
                    ..Default::default()
                },
                Field::Grace,
            ),
            (
                Settings {
                    ttl,
                    soft_timeout: Some(S),
                    ..Default::default()
                },
                Field::SoftTimeout,
            ),
            (
                Settings {
                    xfetch_beta: Some(f64::NAN),
                    ..Default::default()
                },
                Field::XfetchBeta,
            ),
            (
                Settings {
                    ttl,
                    refresh_after: Some(1.0),
                    ..Default::default()
                },
                Field::RefreshAfter,
            ),
            (
                Settings {
                    refresh_after: Some(0.5),
                    ..Default::default()
                },
                Field::RefreshAfter,
            ),
            (
                Settings {
                    lease: Some(Duration::ZERO),
                    ..Default::default()
                },
                Field::Lease,
            ),
            (
                Settings {
                    load_timeout: Some(Duration::ZERO),
                    ..Default::default()
                },
                Field::LoadTimeout,
            ),
        ];
        for (settings, expected) in cases {
            assert_eq!(field(settings), Some(expected), "{settings:?}");
        }
    }

    #[test]
    fn what_is_allowed() {
        let ttl = Some(10 * S);
        assert_eq!(field(Settings::default()), None);
        // Jitter up to the TTL, and jitter alone (it applies to per-entry TTLs too).
        assert_eq!(
            field(Settings {
                ttl,
                jitter: ttl,
                ..Default::default()
            }),
            None
        );
        assert_eq!(
            field(Settings {
                jitter: Some(S),
                ..Default::default()
            }),
            None
        );
        // A zero retry interval: retry on every read after a failure.
        let fail_safe = Settings {
            ttl,
            grace: ttl,
            retry_interval: Some(Duration::ZERO),
            soft_timeout: Some(S),
            ..Default::default()
        };
        assert_eq!(field(fail_safe), None);
        let max = Some(Duration::MAX);
        let extremes = Settings {
            ttl: max,
            jitter: max,
            negative_ttl: max,
            grace: max,
            retry_interval: max,
            soft_timeout: max,
            lease: max,
            load_timeout: max,
            ..Default::default()
        };
        assert_eq!(field(extremes), None);
    }
}
