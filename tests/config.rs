//! Named caches from TOML (`aside::registry`) and the run-time policy (`AnyPolicy`): every
//! field parsed, every invalid configuration an error naming the cache and the field, the
//! round trip back to TOML, the builders applying each setting, and `AnyPolicy` evicting
//! exactly as each policy it wraps.

#![cfg(feature = "config")]

use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aside::policy::{AnyPolicy, EvictionPolicy, Fifo, Lfu, Lru, S3Fifo, SampledTtl, WTinyLfu};
use aside::registry::{CacheConfig, Registry, RegistryError};
use aside::{AsideCache, Cache, LeaseExpiry, MockClock, RefreshMode, RemovalCause};
use proptest::prelude::*;

const FULL: &str = r#"
[caches.user]
policy = "wtinylfu"
max_entries = 10000
shards = 4
seed = 42
ttl = "5m"
jitter = "30s"
negative_ttl = "1m"
grace = "10m"
retry_interval = "5s"
soft_timeout = "50ms"
xfetch_beta = 2
refresh_after = 0.8
refresh_mode = "caller"
lease = "500ms"
on_lease_expiry = "load_independently"
load_timeout = "2s"
window_fraction = 0.2
protected_fraction = 0.5
sketch_start = 0.5
admission_margin = 0
exact_hits = true

[caches.session]
policy = "TTL"
max_entries = 5000
sliding_ttl = "30m"
xfetch = false
samples = 10

[caches.blobs]
policy = "s3fifo"
max_weight = 1048576
small_fraction = 0.25
ghost_ratio = 0.5
jitter = "0s"
"#;

fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

#[test]
fn parses_every_field() {
    let r = Registry::from_toml_str(FULL).unwrap();
    assert_eq!(r.names().collect::<Vec<_>>(), ["blobs", "session", "user"]);

    let u = r.config("user").unwrap();
    assert_eq!(u.policy, "wtinylfu");
    assert_eq!(u.max_entries, Some(10_000));
    assert_eq!(u.max_weight, None);
    assert_eq!(u.shards, Some(4));
    assert_eq!(u.seed, Some(42));
    assert_eq!(u.ttl, secs(300));
    assert_eq!(u.sliding_ttl, None);
    assert_eq!(u.jitter, secs(30));
    assert_eq!(u.negative_ttl, secs(60));
    assert_eq!(u.grace, secs(600));
    assert_eq!(u.retry_interval, secs(5));
    assert_eq!(u.soft_timeout, Some(Duration::from_millis(50)));
    assert_eq!(u.xfetch, None);
    assert_eq!(u.xfetch_beta, Some(2.0));
    assert_eq!(u.refresh_after, Some(0.8));
    assert_eq!(u.refresh_mode, Some(RefreshMode::Caller));
    assert_eq!(u.lease, Some(Duration::from_millis(500)));
    assert_eq!(u.on_lease_expiry, Some(LeaseExpiry::LoadIndependently));
    assert_eq!(u.load_timeout, secs(2));
    assert_eq!(u.window_fraction, Some(0.2));
    assert_eq!(u.protected_fraction, Some(0.5));
    assert_eq!(u.sketch_start, Some(0.5));
    assert_eq!(u.admission_margin, Some(0));
    assert_eq!(u.exact_hits, Some(true));
    match u.policy() {
        AnyPolicy::WTinyLfu(p) => assert_eq!(
            (
                p.window_fraction(),
                p.is_adaptive(),
                p.protected_fraction(),
                p.sketch_start(),
                p.admission_margin(),
                p.exact_hits()
            ),
            (0.2, false, 0.5, 0.5, 0, true)
        ),
        other => panic!("{other:?}"),
    }

    let s = r.config("session").unwrap();
    assert_eq!(
        s.policy, "ttl",
        "policy names are case-insensitive, stored lowercase"
    );
    assert_eq!(s.sliding_ttl, secs(1800));
    assert_eq!(s.ttl, None);
    assert_eq!(s.xfetch, Some(false));
    assert_eq!(s.samples, Some(10));
    match s.policy() {
        AnyPolicy::SampledTtl(p) => assert_eq!(p.samples(), 10),
        other => panic!("{other:?}"),
    }

    let b = r.config("blobs").unwrap();
    assert_eq!(b.policy, "s3fifo");
    assert_eq!((b.max_entries, b.max_weight), (None, Some(1 << 20)));
    assert_eq!((b.small_fraction, b.ghost_ratio), (Some(0.25), Some(0.5)));
    assert_eq!(b.jitter, Some(Duration::ZERO));

    // Defaults: only a size.
    let r = Registry::from_toml_str("[caches.min]\nmax_entries = 1").unwrap();
    let mut expected = CacheConfig::default();
    expected.max_entries = Some(1);
    assert_eq!(r.config("min").unwrap(), &expected);
    assert_eq!(r.config("min").unwrap().policy, "wtinylfu");

    // Every policy name, in any case.
    for name in AnyPolicy::NAMES {
        let text = format!(
            "[caches.c]\nmax_entries = 1\npolicy = \"{}\"",
            name.to_uppercase()
        );
        let r = Registry::from_toml_str(&text).unwrap();
        assert_eq!(r.config("c").unwrap().policy().name(), name);
    }

    // An empty file is an empty registry.
    assert_eq!(Registry::from_toml_str("").unwrap().names().count(), 0);
}

fn err(body: &str) -> RegistryError {
    Registry::from_toml_str(&format!("[caches.user]\n{body}"))
        .expect_err(&format!("should be rejected: {body}"))
}

/// The builder and the configuration file share one validation: a setting one refuses, the
/// other refuses too, naming the same field in its own spelling, with the same reason; a
/// setting one accepts, the other accepts.
#[test]
fn the_builder_and_the_registry_accept_and_refuse_the_same_settings() {
    type B = aside::AsideBuilder<u32, u32>;
    let s = Duration::from_secs;
    let base = || AsideCache::<u32, u32>::builder();
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Box<dyn Fn() -> B>, Option<(&str, &str)>)> = vec![
        (
            "negative_ttl = \"0s\"",
            Box::new(move || base().negative_ttl(s(0))),
            Some(("negative_ttl", "negative_ttl")),
        ),
        (
            "ttl = \"0s\"",
            Box::new(move || base().time_to_live(s(0))),
            Some(("ttl", "time_to_live")),
        ),
        (
            "sliding_ttl = \"0s\"",
            Box::new(move || base().time_to_idle(s(0))),
            Some(("sliding_ttl", "time_to_idle")),
        ),
        (
            "ttl = \"5s\"\nsoft_timeout = \"1s\"",
            Box::new(move || base().time_to_live(s(5)).soft_timeout(s(1))),
            Some(("soft_timeout", "soft_timeout")),
        ),
        (
            "ttl = \"5s\"\njitter = \"6s\"",
            Box::new(move || base().time_to_live(s(5)).ttl_jitter(s(6))),
            Some(("jitter", "ttl_jitter")),
        ),
        (
            "sliding_ttl = \"5s\"\njitter = \"6s\"",
            Box::new(move || base().time_to_idle(s(5)).ttl_jitter(s(6))),
            Some(("jitter", "ttl_jitter")),
        ),
        (
            "ttl = \"5s\"\nsliding_ttl = \"5s\"",
            Box::new(move || base().time_to_live(s(5)).time_to_idle(s(5))),
            Some(("sliding_ttl", "time_to_idle")),
        ),
        (
            "grace = \"5s\"\nretry_interval = \"1s\"",
            Box::new(move || base().fail_safe(aside::FailSafe::new(s(5)).retry_interval(s(1)))),
            Some(("grace", "fail_safe")),
        ),
        (
            "ttl = \"5s\"\ngrace = \"0s\"\nretry_interval = \"1s\"",
            Box::new(move || {
                base()
                    .time_to_live(s(5))
                    .fail_safe(aside::FailSafe::new(s(0)).retry_interval(s(1)))
            }),
            Some(("grace", "fail_safe")),
        ),
        (
            "refresh_after = 0.5",
            Box::new(move || base().refresh_after(0.5)),
            Some(("refresh_after", "refresh_after")),
        ),
        (
            "ttl = \"5s\"\nrefresh_after = 1.0",
            Box::new(move || base().time_to_live(s(5)).refresh_after(1.0)),
            Some(("refresh_after", "refresh_after")),
        ),
        (
            "xfetch_beta = 0",
            Box::new(move || base().xfetch_beta(0.0)),
            Some(("xfetch_beta", "xfetch_beta")),
        ),
        (
            "lease = \"0s\"",
            Box::new(move || base().lease(s(0))),
            Some(("lease", "lease")),
        ),
        (
            "load_timeout = \"0s\"",
            Box::new(move || base().load_timeout(s(0))),
            Some(("load_timeout", "load_timeout")),
        ),
        (
            "shards = 3",
            Box::new(move || base().shards(3)),
            Some(("shards", "shards")),
        ),
        // Accepted by both.
        (
            "ttl = \"5s\"\njitter = \"5s\"",
            Box::new(move || base().time_to_live(s(5)).ttl_jitter(s(5))),
            None,
        ),
        (
            "jitter = \"5s\"",
            Box::new(move || base().ttl_jitter(s(5))),
            None,
        ),
        (
            "ttl = \"5s\"\ngrace = \"1m\"\nretry_interval = \"0s\"\nsoft_timeout = \"1s\"",
            Box::new(move || {
                base()
                    .time_to_live(s(5))
                    .fail_safe(aside::FailSafe::new(s(60)).retry_interval(s(0)))
                    .soft_timeout(s(1))
            }),
            None,
        ),
    ];
    for (body, builder, expected) in cases {
        let file = Registry::from_toml_str(&format!("[caches.user]\nmax_entries = 10\n{body}"));
        let built = builder().max_capacity(10).build();
        match expected {
            Some((key, setter)) => {
                let file = file.expect_err(body);
                let built = built.expect_err(body);
                assert_eq!(file.field(), Some(key), "{body}: {file}");
                assert_eq!(built.field(), setter, "{body}: {built}");
                assert_eq!(file.reason(), built.reason(), "{body}");
            }
            None => {
                let registry = file.unwrap_or_else(|e| panic!("{body}: {e}"));
                built.unwrap_or_else(|e| panic!("{body}: {e}"));
                registry
                    .builder::<u32, u32>("user")
                    .unwrap()
                    .build()
                    .unwrap();
            }
        }
    }
}

/// Every invalid value or combination: the error names the cache and the field, and says what
/// is wrong.
#[test]
fn every_error_names_the_cache_and_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        // (body, field, part of the reason)
        (
            "max_entries = 10\nmaxentries = 5",
            "maxentries",
            "unknown field `maxentries`, expected one of `policy`, `max_entries`",
        ),
        ("max_entries = 10\nTTL = \"5m\"", "TTL", "unknown field"),
        (
            "max_entries = 10\npolicy = \"mru\"",
            "policy",
            "unknown policy \"mru\", expected one of lru, lfu, fifo, ttl, wtinylfu, s3fifo",
        ),
        (
            "max_entries = 10\npolicy = 3",
            "policy",
            "invalid type: integer `3`, expected a string",
        ),
        (
            "max_entries = 0",
            "max_entries",
            "must be at least 1, got 0",
        ),
        (
            "max_entries = -5",
            "max_entries",
            "must not be negative, got -5",
        ),
        (
            "max_entries = 1.5",
            "max_entries",
            "invalid type: floating point `1.5`, expected an integer",
        ),
        (
            "max_entries = \"10\"",
            "max_entries",
            "invalid type: string \"10\", expected an integer",
        ),
        ("max_weight = 0", "max_weight", "must be at least 1, got 0"),
        (
            "max_weight = -1",
            "max_weight",
            "must not be negative, got -1",
        ),
        (
            "max_entries = 10\nmax_weight = 10",
            "max_weight",
            "cannot be combined with `max_entries`",
        ),
        (
            "ttl = \"5m\"",
            "max_entries",
            "missing: a cache needs a size",
        ),
        (
            "max_entries = 10\nshards = 3",
            "shards",
            "must be a power of two between 1 and 65536, got 3",
        ),
        ("max_entries = 10\nshards = 0", "shards", "got 0"),
        ("max_entries = 10\nshards = -4", "shards", "got -4"),
        ("max_entries = 10\nshards = 131072", "shards", "got 131072"),
        (
            "max_entries = 10\nseed = -1",
            "seed",
            "must not be negative, got -1",
        ),
        (
            "max_entries = 10\nttl = \"5 parsecs\"",
            "ttl",
            "invalid duration \"5 parsecs\": unknown time unit \"parsecs\"",
        ),
        (
            "max_entries = 10\nttl = \"5\"",
            "ttl",
            "invalid duration \"5\": time unit needed",
        ),
        (
            "max_entries = 10\nttl = \"-5m\"",
            "ttl",
            "invalid duration \"-5m\": expected number",
        ),
        (
            "max_entries = 10\nttl = \"5 parsec\"",
            "ttl",
            "unknown time unit \"parsec\"",
        ),
        (
            "max_entries = 10\nttl = \"1h-\"",
            "ttl",
            "invalid duration \"1h-\"",
        ),
        (
            "max_entries = 10\nttl = \"\"",
            "ttl",
            "invalid duration \"\": value was empty",
        ),
        (
            "max_entries = 10\nttl = 300",
            "ttl",
            "invalid type: integer `300`, expected a duration string such as \"5m\"",
        ),
        (
            "max_entries = 10\nttl = \"0s\"",
            "ttl",
            "must be longer than zero",
        ),
        (
            "max_entries = 10\nttl = \"99999999999999999d\"",
            "ttl",
            "too large",
        ),
        (
            "max_entries = 10\nsliding_ttl = \"0ms\"",
            "sliding_ttl",
            "must be longer than zero",
        ),
        (
            "max_entries = 10\nttl = \"5m\"\nsliding_ttl = \"5m\"",
            "sliding_ttl",
            "cannot be combined with a fixed TTL",
        ),
        (
            "max_entries = 10\njitter = \"abc\"",
            "jitter",
            "invalid duration \"abc\"",
        ),
        (
            "max_entries = 10\nnegative_ttl = \"0s\"",
            "negative_ttl",
            "must be longer than zero",
        ),
        (
            "max_entries = 10\nttl = \"5m\"\nretry_interval = \"5s\"",
            "retry_interval",
            "needs fail-safe's grace period",
        ),
        (
            "max_entries = 10\ngrace = \"10m\"\nretry_interval = \"5s\"",
            "grace",
            "needs a TTL",
        ),
        (
            "max_entries = 10\nttl = \"5m\"\ngrace = \"0s\"\nretry_interval = \"5s\"",
            "grace",
            "must be longer than zero",
        ),
        (
            "max_entries = 10\nttl = \"5m\"\nsoft_timeout = \"50ms\"",
            "soft_timeout",
            "needs fail-safe",
        ),
        (
            "max_entries = 10\nsoft_timeout = \"x\"",
            "soft_timeout",
            "invalid duration \"x\"",
        ),
        (
            "max_entries = 10\nxfetch = \"yes\"",
            "xfetch",
            "invalid type: string \"yes\", expected a boolean",
        ),
        (
            "max_entries = 10\nxfetch_beta = 0",
            "xfetch_beta",
            "must be finite and > 0, got 0",
        ),
        (
            "max_entries = 10\nxfetch_beta = -1.0",
            "xfetch_beta",
            "got -1",
        ),
        (
            "max_entries = 10\nxfetch_beta = nan",
            "xfetch_beta",
            "got NaN",
        ),
        (
            "max_entries = 10\nxfetch_beta = inf",
            "xfetch_beta",
            "got inf",
        ),
        (
            "max_entries = 10\nxfetch_beta = \"2\"",
            "xfetch_beta",
            "invalid type: string \"2\", expected a number",
        ),
        (
            "max_entries = 10\nxfetch = false\nxfetch_beta = 2.0",
            "xfetch_beta",
            "set while `xfetch = false`",
        ),
        (
            "max_entries = 10\nttl = \"5m\"\nrefresh_after = 1.0",
            "refresh_after",
            "strictly between 0 and 1, got 1",
        ),
        (
            "max_entries = 10\nttl = \"5m\"\nrefresh_after = 0",
            "refresh_after",
            "got 0",
        ),
        (
            "max_entries = 10\nrefresh_after = 0.5",
            "refresh_after",
            "needs a TTL",
        ),
        (
            "max_entries = 10\nrefresh_mode = \"later\"",
            "refresh_mode",
            "unknown value \"later\", expected one of \"background\", \"caller\"",
        ),
        (
            "max_entries = 10\nlease = \"0s\"",
            "lease",
            "must be longer than zero",
        ),
        (
            "max_entries = 10\nlease = 500",
            "lease",
            "expected a duration string",
        ),
        (
            "max_entries = 10\non_lease_expiry = \"wait\"",
            "on_lease_expiry",
            "expected one of \"take_over\", \"load_independently\"",
        ),
        (
            "max_entries = 10\nload_timeout = \"1 parsec\"",
            "load_timeout",
            "invalid duration \"1 parsec\"",
        ),
        (
            "max_entries = 10\nload_timeout = \"0ns\"",
            "load_timeout",
            "must be longer than zero",
        ),
        (
            "max_entries = 10\npolicy = \"ttl\"\nsamples = 0",
            "samples",
            "must be between 1 and 1024, got 0",
        ),
        (
            "max_entries = 10\npolicy = \"ttl\"\nsamples = 2000",
            "samples",
            "got 2000",
        ),
        (
            "max_entries = 10\nsamples = 5",
            "samples",
            "applies to policy \"ttl\" only, not \"wtinylfu\"",
        ),
        (
            "max_entries = 10\npolicy = \"wtinylfu\"\nwindow_fraction = 1.5",
            "window_fraction",
            "must be between 0.0 and 1.0, got 1.5",
        ),
        (
            "max_entries = 10\npolicy = \"lfu\"\nwindow_fraction = 0.5",
            "window_fraction",
            "applies to policy \"wtinylfu\" only, not \"lfu\"",
        ),
        (
            "max_entries = 10\nprotected_fraction = -0.5",
            "protected_fraction",
            "must be between 0.0 and 1.0, got -0.5",
        ),
        (
            "max_entries = 10\npolicy = \"s3fifo\"\nprotected_fraction = 0.5",
            "protected_fraction",
            "applies to policy \"wtinylfu\" only, not \"s3fifo\"",
        ),
        (
            "max_entries = 10\npolicy = \"lru\"\nsketch_start = 0.5",
            "sketch_start",
            "applies to policy \"wtinylfu\" only, not \"lru\"",
        ),
        (
            "max_entries = 10\nsketch_start = 1.5",
            "sketch_start",
            "between 0.0 and 1.0, got 1.5",
        ),
        (
            "max_entries = 10\nadmission_margin = 15",
            "admission_margin",
            "must be between 0 and 14, got 15",
        ),
        (
            "max_entries = 10\nadmission_margin = -1",
            "admission_margin",
            "must not be negative, got -1",
        ),
        (
            "max_entries = 10\npolicy = \"lfu\"\nadmission_margin = 1",
            "admission_margin",
            "applies to policy \"wtinylfu\" only, not \"lfu\"",
        ),
        (
            "max_entries = 10\npolicy = \"lru\"\nexact_hits = true",
            "exact_hits",
            "applies to policy \"wtinylfu\" only, not \"lru\"",
        ),
        (
            "max_entries = 10\nexact_hits = 1",
            "exact_hits",
            "invalid type",
        ),
        (
            "max_entries = 10\npolicy = \"s3fifo\"\nsmall_fraction = 1.0",
            "small_fraction",
            "strictly between 0.0 and 1.0, got 1",
        ),
        (
            "max_entries = 10\npolicy = \"s3fifo\"\nghost_ratio = 17",
            "ghost_ratio",
            "must be between 0.0 and 16.0, got 17",
        ),
        (
            "max_entries = 10\nghost_ratio = 1",
            "ghost_ratio",
            "applies to policy \"s3fifo\" only",
        ),
        (
            "max_entries = 10\nsmall_fraction = 0.5",
            "small_fraction",
            "applies to policy \"s3fifo\" only",
        ),
        (
            "max_entries = 10\nttl = [\"5m\"]",
            "ttl",
            "invalid type: sequence, expected a duration string",
        ),
        (
            "max_entries = 10\nttl = { secs = 5 }",
            "ttl",
            "invalid type: map, expected a duration string",
        ),
        (
            "max_entries = 10\nadmission_margin = 300",
            "admission_margin",
            "too large, got 300",
        ),
        (
            "max_entries = 10\nlease = \"0.5ns\"",
            "lease",
            "invalid duration \"0.5ns\"",
        ),
    ];
    for &(body, field, reason) in cases {
        let e = err(body);
        assert_eq!(e.cache(), Some("user"), "{body}: {e}");
        assert_eq!(e.field(), Some(field), "{body}: {e}");
        assert!(
            e.reason().contains(reason),
            "{body}:\n  got  {e}\n  want {reason}"
        );
        assert!(
            e.to_string().starts_with(&format!("caches.user.{field}: ")),
            "{body}: {e}"
        );
    }

    // The first invalid cache is reported, named, even after valid ones.
    let e = Registry::from_toml_str(
        "[caches.a]\nmax_entries = 1\n[caches.b]\nmax_entries = 1\nttl = \"1x\"",
    )
    .unwrap_err();
    assert_eq!((e.cache(), e.field()), (Some("b"), Some("ttl")));

    // Names that are not bare keys are quoted in the message.
    let e = Registry::from_toml_str("[caches.\"user profile\"]\nmax_entries = 0").unwrap_err();
    assert_eq!(
        e.to_string(),
        "caches.\"user profile\".max_entries: must be at least 1, got 0"
    );
}

#[test]
fn file_level_errors() {
    // Syntax: toml's message, with the line and column; no cache or field.
    let e = Registry::from_toml_str("[caches.user\nmax_entries = 1").unwrap_err();
    assert_eq!((e.cache(), e.field()), (None, None));
    assert!(e.reason().contains("line 1"), "{e}");

    let e = Registry::from_toml_str("[cache.user]\nmax_entries = 1").unwrap_err();
    assert_eq!((e.cache(), e.field()), (None, Some("cache")));
    assert_eq!(
        e.to_string(),
        "cache: unknown field `cache`, expected `caches`"
    );

    let e = Registry::from_toml_str("caches = 5").unwrap_err();
    assert_eq!(e.field(), Some("caches"));

    let e = Registry::from_toml_str("[caches]\nuser = 5").unwrap_err();
    assert_eq!((e.cache(), e.field()), (Some("user"), None));
    assert_eq!(
        e.to_string(),
        "caches.user: invalid type: integer `5`, expected a table of cache settings"
    );

    // Duplicate tables are a TOML error.
    let e = Registry::from_toml_str("[caches.a]\nmax_entries = 1\n[caches.a]\nmax_entries = 2")
        .unwrap_err();
    assert!(e.reason().contains("duplicate"), "{e}");
}

/// Durations are whatever `humantime` reads: units spelled out, spaces between parts, any
/// order, fractions. (`"5mins"`, `"30m1h"`, `"1.5s"` and `"1 h"` were errors under the
/// registry's own grammar before #20.)
#[test]
fn durations_are_what_humantime_accepts() {
    let ms = Duration::from_millis;
    for (text, expected) in [
        ("5min", secs(300)),
        ("5mins", secs(300)),
        ("5 minutes", secs(300)),
        ("5m", secs(300)),
        ("1h 30m", secs(5400)),
        ("1h30m", secs(5400)),
        ("30m1h", secs(5400)),
        ("1 h", secs(3600)),
        ("90m", secs(5400)),
        ("1.5s", Some(ms(1500))),
        ("250ms", Some(ms(250))),
        ("2 days", secs(2 * 86_400)),
        ("1w", secs(7 * 86_400)),
    ] {
        let r = Registry::from_toml_str(&format!("[caches.c]\nmax_entries = 1\nttl = \"{text}\""))
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(r.config("c").unwrap().ttl, expected, "{text}");
    }
    // Written back as humantime writes them, which reads back the same.
    let r = Registry::from_toml_str(
        "[caches.c]\nmax_entries = 1\nttl = \"90 minutes\"\njitter = \"1.5s\"",
    )
    .unwrap();
    let text = r.to_toml_string();
    assert!(text.contains("ttl = \"1h 30m\""), "{text}");
    assert!(text.contains("jitter = \"1s 500ms\""), "{text}");
    assert_eq!(Registry::from_toml_str(&text).unwrap(), r);
}

/// A JSON document deserializes into the same `RegistryFile` as the TOML one, and
/// `from_config` validates it with the same pass: the same registry, the same errors.
#[test]
fn json_goes_through_the_same_validation() {
    use aside::registry::RegistryFile;
    let json = r#"{
        "caches": {
            "user": {
                "policy": "wtinylfu", "max_entries": 10000, "shards": 4, "seed": 42,
                "ttl": "5m", "jitter": "30s", "negative_ttl": "1m", "grace": "10m",
                "retry_interval": "5s", "soft_timeout": "50ms", "xfetch_beta": 2,
                "refresh_after": 0.8, "refresh_mode": "caller", "lease": "500ms",
                "on_lease_expiry": "load_independently", "load_timeout": "2s",
                "window_fraction": 0.2, "protected_fraction": 0.5, "sketch_start": 0.5,
                "admission_margin": 0, "exact_hits": true
            },
            "session": {
                "policy": "TTL", "max_entries": 5000, "sliding_ttl": "30m",
                "xfetch": false, "samples": 10, "ttl": null
            },
            "blobs": {
                "policy": "s3fifo", "max_weight": 1048576, "small_fraction": 0.25,
                "ghost_ratio": 0.5, "jitter": "0s"
            }
        }
    }"#;
    let file: RegistryFile = serde_json::from_str(json).unwrap();
    let from_json = Registry::from_config(file).unwrap();
    assert_eq!(from_json, Registry::from_toml_str(FULL).unwrap());

    // The same checks as for TOML, the same cache and field named.
    for (body, field, reason) in [
        (
            r#""max_entries": 0"#,
            "max_entries",
            "must be at least 1, got 0",
        ),
        (
            r#""max_entries": 10, "ttl": "5m", "sliding_ttl": "5m""#,
            "sliding_ttl",
            "cannot be combined with a fixed TTL",
        ),
        (
            r#""max_entries": 10, "policy": "lfu", "window_fraction": 0.5"#,
            "window_fraction",
            "applies to policy \"wtinylfu\" only, not \"lfu\"",
        ),
        (
            r#""max_entries": 10, "retry_interval": "5s""#,
            "retry_interval",
            "needs fail-safe's grace period",
        ),
    ] {
        let json = format!(r#"{{ "caches": {{ "user": {{ {body} }} }} }}"#);
        let file: RegistryFile = serde_json::from_str(&json).unwrap();
        let e = Registry::from_config(file).unwrap_err();
        assert_eq!((e.cache(), e.field()), (Some("user"), Some(field)), "{e}");
        assert!(e.reason().contains(reason), "{e}");
        // `from_deserializer` runs the same pass.
        let e = Registry::from_deserializer(&mut serde_json::Deserializer::from_str(&json))
            .unwrap_err();
        assert_eq!((e.cache(), e.field()), (Some("user"), Some(field)), "{e}");
    }

    // What serde refuses: deserializing the file yourself, serde_json's error says where;
    // through `from_deserializer`, a RegistryError names the cache and the field.
    for (body, field, reason) in [
        (
            r#""max_entries": 10, "ttl": "1 parsec""#,
            "ttl",
            "invalid duration \"1 parsec\"",
        ),
        (
            r#""max_entries": 10, "ttl": 300"#,
            "ttl",
            "invalid type: integer `300`",
        ),
        (
            r#""max_entries": -1"#,
            "max_entries",
            "must not be negative, got -1",
        ),
        (
            r#""max_entries": 10, "TTL": "5m""#,
            "TTL",
            "unknown field `TTL`",
        ),
        (
            r#""max_entries": 10, "policy": "mru""#,
            "policy",
            "unknown policy \"mru\"",
        ),
    ] {
        let json = format!(r#"{{ "caches": {{ "user": {{ {body} }} }} }}"#);
        let e = serde_json::from_str::<RegistryFile>(&json).unwrap_err();
        assert!(e.to_string().contains(reason), "{e}");
        let e = Registry::from_deserializer(&mut serde_json::Deserializer::from_str(&json))
            .unwrap_err();
        assert_eq!((e.cache(), e.field()), (Some("user"), Some(field)), "{e}");
        assert!(e.reason().contains(reason), "{e}");
        assert!(e.source().is_some(), "serde_json's error is the cause: {e}");
    }
    // A syntax error before any key: no place in the file but serde_json's line and column.
    let e = Registry::from_deserializer(&mut serde_json::Deserializer::from_str("{ caches: 1 }"))
        .unwrap_err();
    assert_eq!((e.cache(), e.field()), (None, None));
    assert!(e.reason().contains("line 1"), "{e}");

    // And back: a registry file written as JSON reads back equal.
    let file: RegistryFile = serde_json::from_str(json).unwrap();
    let again: RegistryFile = serde_json::from_str(&serde_json::to_string(&file).unwrap()).unwrap();
    assert_eq!(again, file);
}

/// A layered source, as figment's or config-rs's environment providers build one: variables
/// `APP_CACHES__USER__TTL=1h 30m` split on `__` into a tree, scalars read as numbers or
/// booleans where they parse. Whatever `Deserializer` produced the `CacheConfig`, the same
/// pass validates it.
#[test]
fn an_environment_layer_is_validated_too() {
    use aside::registry::RegistryFile;
    use serde::Deserialize;
    fn layer(vars: &[(&str, &str)]) -> serde_json::Value {
        let mut root = serde_json::Value::Object(Default::default());
        for (name, value) in vars {
            let Some(path) = name.strip_prefix("APP_") else {
                continue;
            };
            let mut node = &mut root;
            for key in path.split("__") {
                node = node
                    .as_object_mut()
                    .unwrap()
                    .entry(key.to_lowercase())
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
            }
            *node = serde_json::from_str(value).unwrap_or_else(|_| (*value).into());
        }
        root
    }
    let env = layer(&[
        ("APP_CACHES__USER__MAX_ENTRIES", "10000"),
        ("APP_CACHES__USER__TTL", "1h 30m"),
        ("APP_CACHES__USER__POLICY", "lru"),
        ("APP_CACHES__SESSION__MAX_ENTRIES", "100"),
        ("APP_CACHES__SESSION__SLIDING_TTL", "30min"),
        ("APP_CACHES__SESSION__XFETCH", "false"),
        ("HOME", "/root"),
    ]);
    let registry = Registry::from_config(RegistryFile::deserialize(&env).unwrap()).unwrap();
    let user = registry.config("user").unwrap();
    assert_eq!(
        (user.policy, user.max_entries, user.ttl),
        ("lru", Some(10_000), secs(5400))
    );
    let session = registry.config("session").unwrap();
    assert_eq!(
        (session.sliding_ttl, session.xfetch),
        (secs(1800), Some(false))
    );

    // One cache deserialized on its own, and validated by the registry it joins.
    let bad = layer(&[
        ("APP_MAX_ENTRIES", "10"),
        ("APP_TTL", "5m"),
        ("APP_JITTER", "10m"),
    ]);
    let mut file = RegistryFile::default();
    file.caches
        .insert("user".into(), CacheConfig::deserialize(&bad).unwrap());
    let e = Registry::from_config(file).unwrap_err();
    assert_eq!((e.cache(), e.field()), (Some("user"), Some("jitter")));
    assert!(e.reason().starts_with("must not exceed the TTL"), "{e}");

    // Through `from_deserializer`, a value of the wrong type is named as well.
    let env = layer(&[("APP_CACHES__USER__MAX_ENTRIES", "many")]);
    let e = Registry::from_deserializer(&env).unwrap_err();
    assert_eq!((e.cache(), e.field()), (Some("user"), Some("max_entries")));
}

/// A `CacheConfig` built in code goes through the same pass, including the policy name that
/// deserializing would have checked.
#[test]
fn a_configuration_built_in_code_is_validated() {
    use aside::registry::RegistryFile;
    let mut file = RegistryFile::default();
    let mut c = CacheConfig::default();
    c.max_entries = Some(10);
    c.policy = "mru";
    file.caches.insert("c".into(), c.clone());
    let e = Registry::from_config(file.clone()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "caches.c.policy: unknown policy \"mru\", expected one of lru, lfu, fifo, ttl, wtinylfu, s3fifo"
    );
    let c = file.caches.get_mut("c").unwrap();
    c.policy = "s3fifo";
    c.small_fraction = Some(2.0);
    // Out of range, unvalidated: `policy()` leaves it out instead of panicking.
    assert_eq!(c.policy().name(), "s3fifo");
    let e = Registry::from_config(file).unwrap_err();
    assert_eq!((e.cache(), e.field()), (Some("c"), Some("small_fraction")));
}

#[test]
fn registry_lookups_and_builder_errors() {
    let r = Registry::from_toml_str(FULL).unwrap();
    let e = r.config("product").unwrap_err();
    assert_eq!(
        e.to_string(),
        "caches.product: not configured (configured: blobs, session, user)"
    );
    assert!(r.builder::<u32, u32>("product").is_err());

    // A front door sized by weight needs the weighed builder, and that one needs `max_weight`.
    let e = r.builder::<u32, Vec<u8>>("blobs").err().unwrap();
    assert_eq!((e.cache(), e.field()), (Some("blobs"), Some("max_weight")));
    let e = r
        .weighed_builder::<u32, u32>("session", |_, _| 1)
        .err()
        .unwrap();
    assert_eq!(
        (e.cache(), e.field()),
        (Some("session"), Some("max_entries"))
    );
    // A plain cache sized by weight needs the weighed builder ...
    let e = r.cache_builder::<u32, Vec<u8>>("blobs").err().unwrap();
    assert_eq!(e.field(), Some("max_weight"));
    // ... and the weighed builder needs `max_weight`.
    let e = r
        .weighed_cache_builder::<u32, u32>("session", |_, _| 1)
        .err()
        .unwrap();
    assert_eq!(
        (e.cache(), e.field()),
        (Some("session"), Some("max_entries"))
    );
    // `session` sets `xfetch`, a front-door setting a plain cache would ignore.
    let e = r.cache_builder::<u32, u32>("session").err().unwrap();
    assert_eq!((e.cache(), e.field()), (Some("session"), Some("xfetch")));
    let e = r.cache_builder::<u32, u32>("user").err().unwrap();
    assert_eq!(e.field(), Some("negative_ttl"));
}

#[test]
fn round_trip() {
    let r = Registry::from_toml_str(FULL).unwrap();
    let text = r.to_toml_string();
    assert!(text.contains("[caches.user]"), "{text}");
    assert!(text.contains("ttl = \"5m\""), "{text}");
    assert!(text.contains("sliding_ttl = \"30m\""), "{text}");
    assert!(text.contains("policy = \"ttl\""), "{text}");
    assert_eq!(Registry::from_toml_str(&text).unwrap(), r);
    // Writing it again gives the same text.
    assert_eq!(
        Registry::from_toml_str(&text).unwrap().to_toml_string(),
        text
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any duration, written canonically and read back, is the same duration.
    #[test]
    fn durations_round_trip(secs in 0u64..10_000_000_000, nanos in 0u32..1_000_000_000) {
        let d = Duration::new(secs, nanos);
        prop_assume!(!d.is_zero());
        // The TTL is longer than the jitter, which may not exceed it.
        let r = Registry::from_toml_str(&format!(
            "[caches.c]\nmax_entries = 1\nttl = \"{}s\"\njitter = \"{}ns\"",
            secs + 1, u128::from(nanos) + u128::from(secs) * 1_000_000_000,
        ))
        .unwrap();
        prop_assert_eq!(r.config("c").unwrap().ttl, Some(Duration::from_secs(secs + 1)));
        prop_assert_eq!(r.config("c").unwrap().jitter, Some(d));
        let again = Registry::from_toml_str(&r.to_toml_string()).unwrap();
        prop_assert_eq!(again, r);
    }
}

#[test]
fn from_path_reads_the_file_and_names_it_in_errors() {
    let dir = std::env::temp_dir().join(format!("aside-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("caches.toml");
    std::fs::write(&good, FULL).unwrap();
    assert_eq!(
        Registry::from_path(&good).unwrap(),
        Registry::from_toml_str(FULL).unwrap()
    );

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[caches.user]\nmax_entries = -1").unwrap();
    let e = Registry::from_path(&bad).unwrap_err();
    assert_eq!((e.cache(), e.field()), (Some("user"), Some("max_entries")));

    std::fs::write(&bad, "[caches.user").unwrap();
    let e = Registry::from_path(&bad).unwrap_err();
    assert!(e.reason().starts_with(&bad.display().to_string()), "{e}");

    let e = Registry::from_path(dir.join("missing.toml")).unwrap_err();
    assert!(e.reason().contains("missing.toml"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every valid configuration builds, so the builders' own checks agree with the file's.
#[test]
fn every_valid_configuration_builds() {
    let r = Registry::from_toml_str(FULL).unwrap();
    let user: AsideCache<u64, String, AnyPolicy> = r.builder("user").unwrap().build().unwrap();
    assert_eq!(user.cache_stats().hits, 0);
    let session: AsideCache<u64, String, AnyPolicy> =
        r.builder("session").unwrap().build().unwrap();
    assert!(session.is_empty());
    let blobs: Cache<u64, Vec<u8>, AnyPolicy> = r
        .weighed_cache_builder("blobs", |_, v: &Vec<u8>| v.len() as u32)
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(blobs.capacity(), 1 << 20);
    for name in AnyPolicy::NAMES {
        let text = format!("[caches.c]\nmax_entries = 100\npolicy = \"{name}\"\nttl = \"1s\"");
        let r = Registry::from_toml_str(&text).unwrap();
        let c: Cache<u32, u32, AnyPolicy> = r.cache_builder("c").unwrap().build().unwrap();
        assert_eq!(c.capacity(), 100);
        let a: AsideCache<u32, u32, AnyPolicy> = r.builder("c").unwrap().build().unwrap();
        assert!(a.is_empty());
    }
}

/// The settings reach the cache: size, shards, policy, TTL, sliding TTL, negative caching,
/// XFetch off.
#[test]
fn builders_apply_the_settings() {
    let r = Registry::from_toml_str(
        r#"
        [caches.fifo]
        policy = "fifo"
        max_entries = 2
        shards = 1
        ttl = "5m"

        [caches.session]
        max_entries = 100
        shards = 2
        sliding_ttl = "30m"

        [caches.user]
        max_entries = 100
        ttl = "5m"
        negative_ttl = "1m"
        xfetch = false
        "#,
    )
    .unwrap();

    let clock = MockClock::new();
    let fifo: Cache<u32, u32, AnyPolicy> = r
        .cache_builder("fifo")
        .unwrap()
        .clock(clock.clone())
        .build()
        .unwrap();
    assert_eq!((fifo.capacity(), fifo.shard_count()), (2, 1));
    fifo.insert(1, 1);
    fifo.insert(2, 2);
    fifo.get(&1);
    fifo.insert(3, 3); // FIFO: 1 goes although it was just read
    assert!(!fifo.contains_key(&1) && fifo.contains_key(&2) && fifo.contains_key(&3));
    clock.advance(Duration::from_secs(299));
    assert!(fifo.contains_key(&2));
    clock.advance(Duration::from_secs(1));
    assert!(!fifo.contains_key(&2), "the 5 m TTL applies");

    let session: AsideCache<u32, u32, AnyPolicy> = r
        .builder("session")
        .unwrap()
        .clock(clock.clone())
        .build()
        .unwrap();
    session.put(1, 10);
    for _ in 0..3 {
        clock.advance(Duration::from_secs(29 * 60));
        assert_eq!(
            session.get(&1),
            Some(10),
            "each read slides the 30 m deadline"
        );
    }
    clock.advance(Duration::from_secs(30 * 60));
    assert_eq!(session.get(&1), None);

    let user: AsideCache<u32, u32, AnyPolicy> = r
        .builder("user")
        .unwrap()
        .clock(clock.clone())
        .build()
        .unwrap();
    let missing = user
        .get_or_load_blocking(7, || Ok::<_, std::convert::Infallible>(None))
        .unwrap();
    assert_eq!(missing, None);
    // Cached "not found" for 1 m: the loader does not run again.
    let again = user
        .get_or_load_blocking(7, || -> Result<Option<u32>, std::convert::Infallible> {
            panic!("negative caching should have answered")
        })
        .unwrap();
    assert_eq!(again, None);
    assert_eq!(user.load_stats().negative_hits, 1);
    clock.advance(Duration::from_secs(61));
    let loaded = user
        .get_or_load_blocking(7, || Ok::<_, std::convert::Infallible>(Some(70)))
        .unwrap();
    assert_eq!(loaded, Some(70));
    // XFetch off: just before the 5 m TTL, no early refresh ever starts.
    clock.advance(Duration::from_secs(299));
    for _ in 0..100 {
        assert_eq!(user.get_with_blocking(7, || 71).unwrap(), 70);
    }
    assert_eq!(user.load_stats().early_refreshes, 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(user.get_with_blocking(7, || 71).unwrap(), 71);
}

// ---------------------------------------------------------------------------------------------
// AnyPolicy behaves as each policy it wraps.

#[path = "common/ops.rs"]
mod ops;
use ops::{Op, op};

/// What one run shows from outside: after each operation, what it returned, the removals it
/// caused (in order, with their causes) and the cache's sorted contents.
type Trace = Vec<(Option<u32>, Vec<(u16, u32, RemovalCause)>, Vec<(u16, u32)>)>;

#[derive(Debug, Clone, Copy)]
struct Setup {
    capacity: u64,
    shards: usize,
    weighted: bool,
    ttl: bool,
}

fn run<P: EvictionPolicy>(policy: P, setup: Setup, ops: &[Op]) -> Result<Trace, String> {
    let clock = MockClock::new();
    let removed = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&removed);
    let mut builder = Cache::builder()
        .max_capacity(setup.capacity)
        .shards(setup.shards)
        .seed(11)
        .clock(clock.clone())
        .policy(policy)
        .eviction_listener(move |k: &u16, v: &u32, cause| {
            log.lock().unwrap().push((*k, *v, cause));
        });
    if setup.ttl {
        builder = builder.time_to_live(Duration::from_secs(3));
    }
    let cache: Cache<u16, u32, P> = if setup.weighted {
        builder.weigher(|_, v: &u32| *v % 4).build().unwrap()
    } else {
        builder.build().unwrap()
    };
    let mut trace = Trace::new();
    for op in ops {
        let out = match *op {
            Op::Get(k) => cache.get(&k),
            Op::Peek(k) => cache.peek(&k),
            Op::Insert(k, v) => {
                cache.insert(k, v);
                None
            }
            Op::InsertTtl(k, v, t) => {
                cache.insert_with_ttl(k, v, Duration::from_secs(u64::from(t)));
                None
            }
            Op::Remove(k) => cache.remove(&k),
            Op::Advance(s) => {
                clock.advance(Duration::from_secs(u64::from(s)));
                None
            }
            Op::Sweep => Some(cache.sweep_expired() as u32),
            Op::Retain(mask) => {
                cache.retain(|k, _| (k % 8) as u8 & mask != 0);
                None
            }
            Op::Clear => {
                cache.invalidate_all();
                None
            }
        };
        cache.validate().map_err(|e| e.to_string())?;
        let mut contents: Vec<(u16, u32)> = cache.iter().collect();
        contents.sort_unstable();
        let removals = std::mem::take(&mut *removed.lock().unwrap());
        trace.push((out, removals, contents));
    }
    let stats = cache.stats();
    trace.push((
        Some(u32::try_from(stats.hits + stats.misses * 1000).unwrap_or(u32::MAX)),
        Vec::new(),
        Vec::new(),
    ));
    Ok(trace)
}

fn same_as<P: EvictionPolicy + Into<AnyPolicy> + Clone>(
    policy: P,
    setup: Setup,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let plain = run(policy.clone(), setup, ops).map_err(TestCaseError::fail)?;
    let any = run(policy.into(), setup, ops).map_err(TestCaseError::fail)?;
    for (i, (p, a)) in plain.iter().zip(&any).enumerate() {
        prop_assert_eq!(p, a, "diverged at op {} ({:?})", i, ops.get(i));
    }
    prop_assert_eq!(plain.len(), any.len());
    Ok(())
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        0u64..40,
        prop_oneof![Just(1usize), Just(2)],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(capacity, shards, weighted, ttl)| Setup {
            capacity,
            shards,
            weighted,
            ttl,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn any_policy_is_lru(setup in setup(), ops in prop::collection::vec(op(48), 1..300)) {
        same_as(Lru::new(), setup, &ops)?;
    }

    #[test]
    fn any_policy_is_lfu(setup in setup(), ops in prop::collection::vec(op(48), 1..300)) {
        same_as(Lfu::new(), setup, &ops)?;
    }

    #[test]
    fn any_policy_is_fifo(setup in setup(), ops in prop::collection::vec(op(48), 1..300)) {
        same_as(Fifo::new(), setup, &ops)?;
    }

    #[test]
    fn any_policy_is_sampled_ttl(
        setup in setup(),
        samples in 1usize..8,
        ops in prop::collection::vec(op(48), 1..300),
    ) {
        same_as(SampledTtl::with_samples(samples).unwrap(), setup, &ops)?;
    }

    #[test]
    fn any_policy_is_wtinylfu(
        setup in setup(),
        window in prop_oneof![Just(0.01), 0.0f64..=1.0],
        protected in prop_oneof![Just(0.8), 0.0f64..=1.0],
        start in prop_oneof![Just(0.2), 0.0f64..=1.0],
        ops in prop::collection::vec(op(48), 1..300),
    ) {
        let policy = WTinyLfu::with_window_fraction(window)
            .and_then(|p| p.with_protected_fraction(protected))
            .and_then(|p| p.with_sketch_start(start))
            .unwrap();
        same_as(policy, setup, &ops)?;
    }

    #[test]
    fn any_policy_is_s3fifo(
        setup in setup(),
        small in prop_oneof![Just(0.1), 0.01f64..0.99],
        ghost in prop_oneof![Just(1.0), 0.0f64..4.0],
        ops in prop::collection::vec(op(48), 1..300),
    ) {
        same_as(S3Fifo::new().small_fraction(small).ghost_ratio(ghost), setup, &ops)?;
    }
}

/// A configured policy and the same policy built by hand evict the same keys.
#[test]
fn configured_policy_matches_the_hand_built_one() {
    let ops: Vec<Op> = (0..2000u32)
        .map(|i| {
            let k = ((i * 7919) % 97) as u16;
            if i % 3 == 0 {
                Op::Get(k)
            } else {
                Op::Insert(k, i % 8)
            }
        })
        .collect();
    let setup = Setup {
        capacity: 32,
        shards: 1,
        weighted: false,
        ttl: false,
    };
    let r = Registry::from_toml_str(
        "[caches.c]\nmax_entries = 32\npolicy = \"s3fifo\"\nsmall_fraction = 0.2\nghost_ratio = 2",
    )
    .unwrap();
    let configured = run(r.config("c").unwrap().policy(), setup, &ops).unwrap();
    let by_hand = run(
        S3Fifo::new().small_fraction(0.2).ghost_ratio(2.0),
        setup,
        &ops,
    )
    .unwrap();
    assert_eq!(configured, by_hand);
    let evictions: usize = by_hand.iter().map(|(_, r, _)| r.len()).sum();
    assert!(
        evictions > 500,
        "the run must evict to compare anything: {evictions}"
    );
}

/// What `AnyPolicy` costs in memory: the 16-byte `AnyState` replaces the wrapped policy's
/// state in every entry's slot, and nothing else changes (`allocated_bytes` counts the table,
/// the slab and the state array).
#[test]
fn any_policy_memory_per_entry() {
    const N: u64 = 100_000;
    fn bytes<P: EvictionPolicy>(policy: P) -> (usize, usize) {
        let cache: Cache<u64, u64, P> = Cache::builder()
            .max_capacity(N)
            .shards(4)
            .seed(1)
            .policy(policy)
            .build()
            .unwrap();
        for k in 0..N {
            cache.insert(k, k);
        }
        (cache.allocated_bytes(), cache.len())
    }
    fn compare<P: EvictionPolicy + Into<AnyPolicy> + Clone>(policy: P, state: usize) -> f64 {
        let (plain, len) = bytes(policy.clone());
        let (any, any_len) = bytes(policy.into());
        assert_eq!(len, any_len);
        let extra = (any - plain) as f64 / len as f64;
        // The state array has one slot per slab slot (at least one per entry).
        let slots = (any - plain) / (16 - state).max(1);
        assert!(
            state == 16 || slots >= len,
            "{slots} state slots for {len} entries"
        );
        println!(
            "{:>10}: {:.1} -> {:.1} bytes per entry (+{extra:.1})",
            std::any::type_name::<P>().rsplit("::").next().unwrap(),
            plain as f64 / len as f64,
            any as f64 / len as f64
        );
        extra
    }
    // Per-entry extra = (16 - own state) x slots per entry (slab slack 1.0 to 1.3 here).
    let lru = compare(Lru::new(), 8);
    assert!((8.0..=8.0 * 1.35).contains(&lru), "{lru}");
    let fifo = compare(Fifo::new(), 8);
    assert!((8.0..=8.0 * 1.35).contains(&fifo), "{fifo}");
    let lfu = compare(Lfu::new(), 8);
    assert!((8.0..=8.0 * 1.35).contains(&lfu), "{lfu}");
    let ttl = compare(SampledTtl::new(), 0);
    assert!((16.0..=16.0 * 1.35).contains(&ttl), "{ttl}");
    let s3 = compare(S3Fifo::new(), 12);
    assert!((4.0..=4.0 * 1.35).contains(&s3), "{s3}");
    let w = compare(WTinyLfu::new(), 12);
    assert!((4.0..=4.0 * 1.35).contains(&w), "{w}");
}

/// The demo's committed configuration parses, and each of its caches builds.
#[test]
fn the_demo_configuration_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sqlite_demo.toml");
    let r = Registry::from_path(path).unwrap();
    assert_eq!(
        r.names().collect::<Vec<_>>(),
        ["config", "product", "session", "user"]
    );
    for name in ["config", "product", "session", "user"] {
        let c: AsideCache<u64, String, AnyPolicy> = r.builder(name).unwrap().build().unwrap();
        assert!(c.is_empty());
    }
    assert_eq!(r.config("session").unwrap().sliding_ttl, secs(30 * 60));
    assert_eq!(r.config("user").unwrap().ttl, secs(5 * 60));
}

// ---------------------------------------------------------------------------------------------
// Caches: built once per name, shared, typed.

fn caches() -> aside::registry::Caches {
    aside::registry::Caches::new(Registry::from_toml_str(FULL).unwrap())
}

#[test]
fn caches_are_built_once_and_shared() {
    let caches = caches();
    let built = std::sync::atomic::AtomicUsize::new(0);
    let a = caches
        .get_with::<u64, String>("session", |b| {
            built.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            b
        })
        .unwrap();
    a.put(1, "cart".to_string());
    let b = caches
        .get_with::<u64, String>("session", |_| unreachable!("built already"))
        .unwrap();
    assert_eq!(b.get(&1).as_deref(), Some("cart"));
    assert_eq!(built.into_inner(), 1);
    assert_eq!(caches.built_names(), ["session"]);
}

#[test]
fn caches_refuse_other_types_unknown_names_and_bad_customizations() {
    let caches = caches();
    caches.get::<u64, String>("session").unwrap();
    let e = caches.get::<u32, u32>("session").unwrap_err();
    assert_eq!((e.cache(), e.field()), (Some("session"), None));
    // (`type_name`'s spelling is not stable: check the gist only.)
    let (built, requested) = e.reason().split_once(", requested as ").unwrap();
    assert!(
        built.starts_with("built as ") && built.contains("String"),
        "{e}"
    );
    assert!(
        requested.contains("u32") && !requested.contains("String"),
        "{e}"
    );

    let e = caches.get::<u32, u32>("nope").unwrap_err();
    assert_eq!(e.cache(), Some("nope"));
    let e = caches.get::<u32, Vec<u8>>("blobs").unwrap_err();
    assert_eq!((e.cache(), e.field()), (Some("blobs"), Some("max_weight")));

    // A customization the builder rejects: named by the builder's field, for this cache;
    // nothing is built, and a later valid request builds it.
    let e = caches
        .get_with::<u32, u32>("user", |b| b.lease(Duration::ZERO))
        .unwrap_err();
    assert_eq!((e.cache(), e.field()), (Some("user"), Some("lease")));
    assert_eq!(caches.built_names(), ["session"]);
    caches.get::<u32, u32>("user").unwrap();
    assert_eq!(caches.built_names(), ["session", "user"]);
}

#[test]
fn caches_from_many_threads_are_one_cache() {
    let caches = caches();
    let clock = MockClock::new();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (caches, clock) = (&caches, &clock);
            s.spawn(move || {
                let c = caches
                    .get_with::<u64, u64>("user", |b| {
                        // Customizations may ask for other caches: no lock is held here.
                        caches.get::<u64, String>("session").unwrap();
                        b.clock(clock.clone())
                    })
                    .unwrap();
                c.put(t, t);
            });
        }
    });
    let c = caches.get::<u64, u64>("user").unwrap();
    assert_eq!(c.len(), 8, "every thread wrote into the same cache");
    assert_eq!(caches.built_names(), ["session", "user"]);
}

#[test]
fn caches_sampler_covers_every_built_cache() {
    let caches = caches();
    let users = caches.get::<u64, u64>("user").unwrap();
    let sessions = caches.get::<u64, u64>("session").unwrap();
    users.get_with_blocking(1, || 1).unwrap();
    users.get_with_blocking(1, || 1).unwrap();
    sessions.get_with_blocking(1, || 1).unwrap();
    let mut sampler = caches.sampler();
    let rows = sampler.sample(std::time::SystemTime::UNIX_EPOCH);
    let got: Vec<(&str, u64, u64)> = rows
        .iter()
        .map(|m| (m.name.as_str(), m.totals.hits, m.totals.loads))
        .collect();
    assert_eq!(got, [("session", 0, 1), ("user", 1, 1)]);
}

/// A front door sized by weight from the file: loads are weighed by the value, a cached "not
/// found" weighs 1, the policy evicts by weight, and a value heavier than the whole cache is
/// returned to its caller but not cached.
#[test]
fn a_weighed_front_door_from_the_file() {
    let r = Registry::from_toml_str(
        "[caches.pages]\nmax_weight = 100\npolicy = \"lru\"\nshards = 1\nnegative_ttl = \"1m\"",
    )
    .unwrap();
    let pages: AsideCache<u32, Vec<u8>, AnyPolicy> = r
        .weighed_builder("pages", |_: &u32, page: &Vec<u8>| page.len() as u32)
        .unwrap()
        .clock(MockClock::new())
        .build()
        .unwrap();
    let load = |n: usize| move || Ok::<_, ()>(Some(vec![0u8; n]));
    for k in 0..3 {
        let got = pages.get_or_load_blocking(k, load(30)).unwrap();
        assert_eq!(got.map(|p| p.len()), Some(30));
    }
    assert_eq!((pages.len(), pages.weighted_size()), (3, 90));
    // A missing page is cached as "not found", weighing 1.
    assert_eq!(
        pages.get_or_load_blocking(9, || Ok::<_, ()>(None)).unwrap(),
        None
    );
    assert_eq!(pages.weighted_size(), 91);
    // 40 more: LRU evicts the oldest pages until it fits (0, then 1).
    pages.get_or_load_blocking(3, load(40)).unwrap();
    assert_eq!(pages.weighted_size(), 71);
    assert!(pages.get(&0).is_none() && pages.get(&1).is_none());
    // Heavier than the whole cache: served, not cached, nothing else evicted.
    let huge = pages.get_or_load_blocking(4, load(101)).unwrap();
    assert_eq!(huge.map(|p| p.len()), Some(101));
    assert!(pages.get(&4).is_none());
    assert_eq!(pages.weighted_size(), 71);
    pages.validate().unwrap();
}
