//! The registry file as serde reads and writes it: [`RegistryFile`], one [`CacheConfig`] per
//! named cache, and the validation pass over a cache's settings.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::{count, duration, number, on_lease_expiry, policy, refresh_mode};
use crate::aside::settings;
use crate::policy::{AnyPolicy, S3Fifo, SampledTtl, WTinyLfu};
use crate::{LeaseExpiry, RefreshMode};

/// A whole registry file as serde reads it: one [`CacheConfig`] per name under `caches`, and
/// nothing else (an unknown top-level key is an error).
///
/// Deserializing only converts the values; [`Registry::from_config`](super::Registry::from_config)
/// then checks every cache in one validation pass. Build one with any serde format, or any
/// layered configuration library (figment, config-rs) that extracts a `Deserialize` type:
///
/// ```
/// use aside::registry::{Registry, RegistryFile};
/// use std::time::Duration;
///
/// let file: RegistryFile = serde_json::from_str(r#"{
///     "caches": {
///         "user": { "ttl": "5min", "max_entries": 10000, "policy": "wtinylfu" },
///         "session": { "sliding_ttl": "1h 30m", "max_entries": 5000 }
///     }
/// }"#)?;
/// let registry = Registry::from_config(file)?;
/// assert_eq!(registry.config("session")?.sliding_ttl, Some(Duration::from_secs(5400)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// It serializes the same way, durations as [`humantime::format_duration`] writes them
/// (`"1h 30m"`) and unset fields left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(
    deny_unknown_fields,
    default,
    expecting = "a table of `[caches.<name>]` tables"
)]
#[non_exhaustive]
pub struct RegistryFile {
    /// The caches by name, each with its settings.
    pub caches: BTreeMap<String, CacheConfig>,
}

/// `&'static str` under a name, so that serde's derive does not borrow the field from the
/// input (which would tie `Deserialize` to `'static` input): `values::policy` reads it as one
/// of [`AnyPolicy::NAMES`].
type PolicyName = &'static str;

/// The settings of one named cache: the seeds' `CacheConfig` row (TTL, maximum size, eviction
/// policy), plus what the front door offers (sliding TTL, jitter, negative caching, fail-safe,
/// early refresh, lease).
///
/// Each field holds what the file said (`None`: the key was absent and the builder's default
/// applies). Deserializing converts types only; the ranges and the rules between fields are
/// one validation pass that [`Registry`](super::Registry) runs on every cache it is given
/// ([`from_toml_str`](super::Registry::from_toml_str),
/// [`from_config`](super::Registry::from_config)), so a `CacheConfig` a registry holds is
/// valid and the builders it returns never fail on these settings.
///
/// | key | type | builder setting |
/// |---|---|---|
/// | `policy` | `"lru"`, `"lfu"`, `"fifo"`, `"ttl"`, `"wtinylfu"`, `"s3fifo"` (any case) | [`policy`](crate::AsideBuilder::policy) through [`AnyPolicy`] (default `"wtinylfu"`, the crate's default) |
/// | `max_entries` | integer ≥ 1 | [`max_capacity`](crate::AsideBuilder::max_capacity) in entries |
/// | `max_weight` | integer ≥ 1 | [`max_capacity`](crate::CacheBuilder::max_capacity) in weight units, with a weigher |
/// | `shards` | power of two | [`shards`](crate::AsideBuilder::shards) |
/// | `seed` | integer ≥ 0 | [`seed`](crate::AsideBuilder::seed) |
/// | `ttl` | duration | [`time_to_live`](crate::AsideBuilder::time_to_live) |
/// | `sliding_ttl` | duration | [`time_to_idle`](crate::AsideBuilder::time_to_idle) |
/// | `jitter` | duration | [`ttl_jitter`](crate::AsideBuilder::ttl_jitter) |
/// | `negative_ttl` | duration | [`negative_ttl`](crate::AsideBuilder::negative_ttl) |
/// | `grace`, `retry_interval` | durations; `retry_interval` only with `grace` | [`fail_safe`](crate::AsideBuilder::fail_safe) |
/// | `soft_timeout` | duration | [`soft_timeout`](crate::AsideBuilder::soft_timeout) |
/// | `xfetch` | boolean | `false`: [`no_xfetch`](crate::AsideBuilder::no_xfetch) |
/// | `xfetch_beta` | number > 0 | [`xfetch_beta`](crate::AsideBuilder::xfetch_beta) |
/// | `refresh_after` | number in (0, 1) | [`refresh_after`](crate::AsideBuilder::refresh_after) (refresh-ahead) |
/// | `refresh_mode` | `"background"`, `"caller"` | [`refresh_mode`](crate::AsideBuilder::refresh_mode) |
/// | `lease` | duration | [`lease`](crate::AsideBuilder::lease) |
/// | `on_lease_expiry` | `"take_over"`, `"load_independently"` | [`on_lease_expiry`](crate::AsideBuilder::on_lease_expiry) |
/// | `load_timeout` | duration | [`load_timeout`](crate::AsideBuilder::load_timeout) |
/// | `samples` | integer in 1..=1024, policy `"ttl"` | [`SampledTtl::with_samples`] |
/// | `window_fraction` | number in [0, 1], policy `"wtinylfu"` | [`WTinyLfu::with_window_fraction`] |
/// | `protected_fraction` | number in [0, 1], policy `"wtinylfu"` | [`WTinyLfu::with_protected_fraction`] |
/// | `sketch_start` | number in [0, 1], policy `"wtinylfu"` | [`WTinyLfu::with_sketch_start`] |
/// | `admission_margin` | integer in 0..=14, policy `"wtinylfu"` | [`WTinyLfu::with_admission_margin`] |
/// | `exact_hits` | boolean, policy `"wtinylfu"` | [`WTinyLfu::with_exact_hits`] |
/// | `small_fraction` | number in (0, 1), policy `"s3fifo"` | [`S3Fifo::small_fraction`] |
/// | `ghost_ratio` | number in [0, 16], policy `"s3fifo"` | [`S3Fifo::ghost_ratio`] |
///
/// A duration is a string, anything [`humantime::parse_duration`] accepts: `"250ms"`,
/// `"5m"`, `"5min"`, `"1h 30m"`, `"1h30m"`, `"1.5s"`, `"2 days"`. Units are case-sensitive:
/// `"5M"` is five months. A bare number (`ttl = 300`) is an error: seconds or milliseconds?
/// Durations are written back with [`humantime::format_duration`] (`"1h 30m"`).
///
/// # Example
///
/// ```
/// use aside::registry::Registry;
/// use std::time::Duration;
///
/// let registry = Registry::from_toml_str(r#"
///     [caches.user]
///     ttl = "5min"
///     max_entries = 10000
///     policy = "wtinylfu"
///     jitter = "30s"
/// "#)?;
/// let user = registry.config("user")?;
/// assert_eq!(user.ttl, Some(Duration::from_secs(300)));
/// assert_eq!(user.max_entries, Some(10_000));
/// assert_eq!(user.policy, "wtinylfu");
/// assert_eq!(user.jitter, Some(Duration::from_secs(30)));
/// # Ok::<(), aside::registry::RegistryError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table of cache settings")]
#[non_exhaustive]
pub struct CacheConfig {
    /// The eviction policy's name, one of [`AnyPolicy::NAMES`].
    #[serde(deserialize_with = "policy")]
    pub policy: PolicyName,
    /// Capacity in entries (exclusive with `max_weight`).
    #[serde(deserialize_with = "count", skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<u64>,
    /// Capacity in weight units (exclusive with `max_entries`); needs a weigher.
    #[serde(deserialize_with = "count", skip_serializing_if = "Option::is_none")]
    pub max_weight: Option<u64>,
    /// Shard count.
    #[serde(deserialize_with = "count", skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
    /// Seed for hashing and sampling.
    #[serde(deserialize_with = "count", skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Fixed time-to-live.
    #[serde(with = "duration", skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// Sliding time-to-idle (exclusive with `ttl`).
    #[serde(with = "duration", skip_serializing_if = "Option::is_none")]
    pub sliding_ttl: Option<Duration>,
    /// TTL jitter.
    #[serde(with = "duration", skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Duration>,
    /// How long "not found" is cached.
    #[serde(with = "duration", skip_serializing_if = "Option::is_none")]
    pub negative_ttl: Option<Duration>,
    /// Fail-safe grace period (`retry_interval` needs it).
    #[serde(with = "duration", skip_serializing_if = "Option::is_none")]
    pub grace: Option<Duration>,
    /// Fail-safe retry throttle (only with `grace`).
    #[serde(with = "duration", skip_serializing_if = "Option::is_none")]
    pub retry_interval: Option<Duration>,
    /// Fail-safe soft timeout.
    #[serde(with = "duration", skip_serializing_if = "Option::is_none")]
    pub soft_timeout: Option<Duration>,
    /// `Some(false)` turns XFetch off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xfetch: Option<bool>,
    /// XFetch's beta.
    #[serde(deserialize_with = "number", skip_serializing_if = "Option::is_none")]
    pub xfetch_beta: Option<f64>,
    /// Refresh-ahead threshold, a fraction of the TTL.
    #[serde(deserialize_with = "number", skip_serializing_if = "Option::is_none")]
    pub refresh_after: Option<f64>,
    /// Who refreshes early.
    #[serde(with = "refresh_mode", skip_serializing_if = "Option::is_none")]
    pub refresh_mode: Option<RefreshMode>,
    /// How long a waiter waits for another caller's load.
    #[serde(with = "duration", skip_serializing_if = "Option::is_none")]
    pub lease: Option<Duration>,
    /// What a waiter does when the lease runs out.
    #[serde(with = "on_lease_expiry", skip_serializing_if = "Option::is_none")]
    pub on_lease_expiry: Option<LeaseExpiry>,
    /// Hard limit on one load.
    #[serde(with = "duration", skip_serializing_if = "Option::is_none")]
    pub load_timeout: Option<Duration>,
    /// [`SampledTtl`]'s sample size.
    #[serde(deserialize_with = "count", skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
    /// [`WTinyLfu`]'s window fraction.
    #[serde(deserialize_with = "number", skip_serializing_if = "Option::is_none")]
    pub window_fraction: Option<f64>,
    /// [`WTinyLfu`]'s protected share of the main space.
    #[serde(deserialize_with = "number", skip_serializing_if = "Option::is_none")]
    pub protected_fraction: Option<f64>,
    /// The share of the capacity a [`WTinyLfu`] shard holds before its sketch counts.
    #[serde(deserialize_with = "number", skip_serializing_if = "Option::is_none")]
    pub sketch_start: Option<f64>,
    /// How many uses more than the victim's a [`WTinyLfu`] candidate needs.
    #[serde(deserialize_with = "count", skip_serializing_if = "Option::is_none")]
    pub admission_margin: Option<u8>,
    /// `Some(true)`: every [`WTinyLfu`] hit replayed in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact_hits: Option<bool>,
    /// [`S3Fifo`]'s small-queue fraction.
    #[serde(deserialize_with = "number", skip_serializing_if = "Option::is_none")]
    pub small_fraction: Option<f64>,
    /// [`S3Fifo`]'s ghost ratio.
    #[serde(deserialize_with = "number", skip_serializing_if = "Option::is_none")]
    pub ghost_ratio: Option<f64>,
}

impl Default for CacheConfig {
    /// W-TinyLFU (the crate's default policy) and nothing else set (not valid on its own: a
    /// size is required).
    fn default() -> Self {
        Self {
            policy: "wtinylfu",
            max_entries: None,
            max_weight: None,
            shards: None,
            seed: None,
            ttl: None,
            sliding_ttl: None,
            jitter: None,
            negative_ttl: None,
            grace: None,
            retry_interval: None,
            soft_timeout: None,
            xfetch: None,
            xfetch_beta: None,
            refresh_after: None,
            refresh_mode: None,
            lease: None,
            on_lease_expiry: None,
            load_timeout: None,
            samples: None,
            window_fraction: None,
            protected_fraction: None,
            sketch_start: None,
            admission_margin: None,
            exact_hits: None,
            small_fraction: None,
            ghost_ratio: None,
        }
    }
}

/// An error about one field: its key and what is wrong.
pub(crate) type FieldError = (&'static str, String);

impl CacheConfig {
    /// The validation pass: every field's range, then the rules between fields, in a fixed
    /// order (the first broken one is reported). `Err` names the field; the registry adds the
    /// cache.
    pub(crate) fn check(&self) -> Result<(), FieldError> {
        let err = |field: &'static str, reason: String| Err((field, reason));
        if AnyPolicy::from_name(self.policy).is_none() {
            return err(
                "policy",
                format!(
                    "unknown policy {:?}, expected one of {}",
                    self.policy,
                    AnyPolicy::NAMES.join(", ")
                ),
            );
        }
        for (field, size) in [
            ("max_entries", self.max_entries),
            ("max_weight", self.max_weight),
        ] {
            if size == Some(0) {
                return err(field, "must be at least 1, got 0".to_string());
            }
        }
        if let Some(n) = self.samples.filter(|n| !(1..=1024).contains(n)) {
            return err("samples", format!("must be between 1 and 1024, got {n}"));
        }
        let shares = [
            ("window_fraction", self.window_fraction),
            ("protected_fraction", self.protected_fraction),
            ("sketch_start", self.sketch_start),
        ];
        for (field, share) in shares {
            if let Some(f) = share.filter(|f| !(0.0..=1.0).contains(f)) {
                return err(field, format!("must be between 0.0 and 1.0, got {f}"));
            }
        }
        let max = WTinyLfu::MAX_ADMISSION_MARGIN;
        if let Some(m) = self.admission_margin.filter(|&m| m > max) {
            return err(
                "admission_margin",
                format!("must be between 0 and {max}, got {m}"),
            );
        }
        if let Some(f) = self.small_fraction.filter(|&f| !(f > 0.0 && f < 1.0)) {
            return err(
                "small_fraction",
                format!("must be strictly between 0.0 and 1.0, got {f}"),
            );
        }
        if let Some(r) = self.ghost_ratio.filter(|r| !(0.0..=16.0).contains(r)) {
            return err(
                "ghost_ratio",
                format!("must be between 0.0 and 16.0, got {r}"),
            );
        }
        match (self.max_entries, self.max_weight) {
            (None, None) => {
                return err(
                    "max_entries",
                    "missing: a cache needs a size, `max_entries` or `max_weight`".to_string(),
                );
            }
            (Some(_), Some(_)) => {
                return err(
                    "max_weight",
                    "cannot be combined with `max_entries`".to_string(),
                );
            }
            _ => {}
        }
        if self.xfetch == Some(false) && self.xfetch_beta.is_some() {
            return err("xfetch_beta", "set while `xfetch = false`".to_string());
        }
        // Shards and the front door's rules, shared with `AsideBuilder::build`.
        let shared = settings::Settings {
            shards: self.shards,
            ttl: self.ttl,
            tti: self.sliding_ttl,
            jitter: self.jitter,
            negative_ttl: self.negative_ttl,
            grace: self.grace,
            retry_interval: self.retry_interval,
            soft_timeout: self.soft_timeout,
            xfetch_beta: self.xfetch_beta,
            refresh_after: self.refresh_after,
            lease: self.lease,
            load_timeout: self.load_timeout,
        };
        settings::check(&shared).map_err(|e| (e.field.key(), e.reason))?;
        let policy_only = [
            ("samples", self.samples.is_some(), "ttl"),
            (
                "window_fraction",
                self.window_fraction.is_some(),
                "wtinylfu",
            ),
            (
                "protected_fraction",
                self.protected_fraction.is_some(),
                "wtinylfu",
            ),
            ("sketch_start", self.sketch_start.is_some(), "wtinylfu"),
            (
                "admission_margin",
                self.admission_margin.is_some(),
                "wtinylfu",
            ),
            ("exact_hits", self.exact_hits.is_some(), "wtinylfu"),
            ("small_fraction", self.small_fraction.is_some(), "s3fifo"),
            ("ghost_ratio", self.ghost_ratio.is_some(), "s3fifo"),
        ];
        let name = AnyPolicy::from_name(self.policy).unwrap_or_default().name();
        for (field, set, policy) in policy_only {
            if set && name != policy {
                return err(
                    field,
                    format!("applies to policy \"{policy}\" only, not \"{name}\""),
                );
            }
        }
        Ok(())
    }

    /// The eviction policy with its settings.
    ///
    /// # Example
    ///
    /// ```
    /// let registry = aside::registry::Registry::from_toml_str(
    ///     "[caches.hot]\nmax_entries = 100\npolicy = \"wtinylfu\"\nwindow_fraction = 0.2",
    /// )?;
    /// let policy = registry.config("hot")?.policy();
    /// assert_eq!(policy.name(), "wtinylfu");
    /// # Ok::<(), aside::registry::RegistryError>(())
    /// ```
    #[must_use]
    pub fn policy(&self) -> AnyPolicy {
        let mut policy = AnyPolicy::from_name(self.policy).unwrap_or_default();
        match &mut policy {
            AnyPolicy::SampledTtl(p) => {
                if let Some(n) = self.samples {
                    *p = SampledTtl::with_samples(n).unwrap_or_default();
                }
            }
            AnyPolicy::WTinyLfu(p) => {
                // Out of range (not validated): the default, as for `SampledTtl`.
                let mut w = match self.window_fraction {
                    Some(f) => WTinyLfu::with_window_fraction(f).unwrap_or_default(),
                    None => WTinyLfu::new(),
                };
                if let Some(f) = self.protected_fraction {
                    w = w.with_protected_fraction(f).unwrap_or_default();
                }
                if let Some(f) = self.sketch_start {
                    w = w.with_sketch_start(f).unwrap_or_default();
                }
                if let Some(m) = self.admission_margin {
                    w = w.with_admission_margin(m).unwrap_or_default();
                }
                if let Some(exact) = self.exact_hits {
                    w = w.with_exact_hits(exact);
                }
                **p = w;
            }
            AnyPolicy::S3Fifo(p) => {
                // Both setters assert their range, which the validation pass checks; a value
                // out of range (a configuration nobody validated) is left out, not a panic.
                let mut s = S3Fifo::new();
                if let Some(f) = self.small_fraction.filter(|f| *f > 0.0 && *f < 1.0) {
                    s = s.small_fraction(f);
                }
                if let Some(r) = self.ghost_ratio.filter(|r| (0.0..=16.0).contains(r)) {
                    s = s.ghost_ratio(r);
                }
                **p = s;
            }
            _ => {}
        }
        policy
    }

    /// The capacity the builders get: `max_entries` or `max_weight`.
    pub(crate) fn capacity(&self) -> u64 {
        self.max_entries.or(self.max_weight).unwrap_or(u64::MAX)
    }
}
