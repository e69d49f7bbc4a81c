//! [`CacheConfig`]: one named cache's settings, read from (and written back to) a TOML table.

use std::time::Duration;

use serde::Serialize;

use super::duration;
use crate::aside::settings;
use crate::policy::{AnyPolicy, S3Fifo, SampledTtl, WTinyLfu};
use crate::{LeaseExpiry, MAX_SHARDS, RefreshMode};

/// The settings of one named cache: the seeds' `CacheConfig` row (TTL, maximum size, eviction
/// policy), plus what the front door offers (sliding TTL, jitter, negative caching, fail-safe,
/// early refresh, lease).
///
/// Each field holds what the file said (`None`: the key was absent and the builder's default
/// applies). A `CacheConfig` is always valid: [`Registry`](super::Registry) checks every field
/// when it reads the file, so the builders it returns never fail on these settings.
///
/// | TOML key | type | builder setting |
/// |---|---|---|
/// | `policy` | `"lru"`, `"lfu"`, `"fifo"`, `"ttl"`, `"wtinylfu"`, `"s3fifo"` | [`policy`](crate::AsideBuilder::policy) through [`AnyPolicy`] (default `"wtinylfu"`, the crate's default) |
/// | `max_entries` | integer ≥ 1 | [`max_capacity`](crate::AsideBuilder::max_capacity) in entries |
/// | `max_weight` | integer ≥ 1 | [`max_capacity`](crate::CacheBuilder::max_capacity) in weight units, with a weigher |
/// | `shards` | power of two | [`shards`](crate::AsideBuilder::shards) |
/// | `seed` | integer ≥ 0 | [`seed`](crate::AsideBuilder::seed) |
/// | `ttl` | duration | [`time_to_live`](crate::AsideBuilder::time_to_live) |
/// | `sliding_ttl` | duration | [`time_to_idle`](crate::AsideBuilder::time_to_idle) |
/// | `jitter` | duration | [`ttl_jitter`](crate::AsideBuilder::ttl_jitter) |
/// | `negative_ttl` | duration | [`negative_ttl`](crate::AsideBuilder::negative_ttl) |
/// | `grace`, `retry_interval` | durations, both or neither | [`fail_safe`](crate::AsideBuilder::fail_safe) |
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
/// | `small_fraction` | number in (0, 1), policy `"s3fifo"` | [`S3Fifo::small_fraction`] |
/// | `ghost_ratio` | number in [0, 16], policy `"s3fifo"` | [`S3Fifo::ghost_ratio`] |
///
/// Durations are strings of integers with units, largest first: `"250ms"`, `"5m"`,
/// `"1h30m"`, `"1d"` (units `d`, `h`, `m`, `s`, `ms`, `us`, `ns`).
///
/// # Example
///
/// ```
/// use aside::registry::Registry;
/// use std::time::Duration;
///
/// let registry = Registry::from_toml_str(r#"
///     [caches.user]
///     ttl = "5m"
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
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// The eviction policy's name, one of [`AnyPolicy::NAMES`].
    pub policy: &'static str,
    /// Capacity in entries (exclusive with `max_weight`).
    pub max_entries: Option<u64>,
    /// Capacity in weight units (exclusive with `max_entries`); needs a weigher.
    pub max_weight: Option<u64>,
    /// Shard count.
    pub shards: Option<usize>,
    /// Seed for hashing and sampling.
    pub seed: Option<u64>,
    /// Fixed time-to-live.
    pub ttl: Option<Duration>,
    /// Sliding time-to-idle (exclusive with `ttl`).
    pub sliding_ttl: Option<Duration>,
    /// TTL jitter.
    pub jitter: Option<Duration>,
    /// How long "not found" is cached.
    pub negative_ttl: Option<Duration>,
    /// Fail-safe grace period (with `retry_interval`).
    pub grace: Option<Duration>,
    /// Fail-safe retry throttle (with `grace`).
    pub retry_interval: Option<Duration>,
    /// Fail-safe soft timeout.
    pub soft_timeout: Option<Duration>,
    /// `Some(false)` turns XFetch off.
    pub xfetch: Option<bool>,
    /// XFetch's beta.
    pub xfetch_beta: Option<f64>,
    /// Refresh-ahead threshold, a fraction of the TTL.
    pub refresh_after: Option<f64>,
    /// Who refreshes early.
    pub refresh_mode: Option<RefreshMode>,
    /// How long a waiter waits for another caller's load.
    pub lease: Option<Duration>,
    /// What a waiter does when the lease runs out.
    pub on_lease_expiry: Option<LeaseExpiry>,
    /// Hard limit on one load.
    pub load_timeout: Option<Duration>,
    /// [`SampledTtl`]'s sample size.
    pub samples: Option<usize>,
    /// [`WTinyLfu`]'s window fraction.
    pub window_fraction: Option<f64>,
    /// [`WTinyLfu`]'s protected share of the main space.
    pub protected_fraction: Option<f64>,
    /// The share of the capacity a [`WTinyLfu`] shard holds before its sketch counts.
    pub sketch_start: Option<f64>,
    /// How many uses more than the victim's a [`WTinyLfu`] candidate needs.
    pub admission_margin: Option<u8>,
    /// [`S3Fifo`]'s small-queue fraction.
    pub small_fraction: Option<f64>,
    /// [`S3Fifo`]'s ghost ratio.
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
            small_fraction: None,
            ghost_ratio: None,
        }
    }
}

/// The TOML keys a cache table accepts, in the order they are written back.
pub(crate) const FIELDS: [&str; 26] = [
    "policy",
    "max_entries",
    "max_weight",
    "shards",
    "seed",
    "ttl",
    "sliding_ttl",
    "jitter",
    "negative_ttl",
    "grace",
    "retry_interval",
    "soft_timeout",
    "xfetch",
    "xfetch_beta",
    "refresh_after",
    "refresh_mode",
    "lease",
    "on_lease_expiry",
    "load_timeout",
    "samples",
    "window_fraction",
    "protected_fraction",
    "sketch_start",
    "admission_margin",
    "small_fraction",
    "ghost_ratio",
];

/// An error about one field: its name and what is wrong.
type FieldError = (String, String);

fn type_error(expected: &str, value: &toml::Value) -> String {
    format!(
        "expected {expected}, got {} {value}",
        article(value.type_str())
    )
}

pub(crate) fn article(word: &str) -> String {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {word}")
    } else {
        format!("a {word}")
    }
}

fn string(value: &toml::Value) -> Result<&str, String> {
    value.as_str().ok_or_else(|| type_error("a string", value))
}

fn duration(value: &toml::Value) -> Result<Duration, String> {
    let text = value
        .as_str()
        .ok_or_else(|| type_error("a duration string such as \"5m\"", value))?;
    duration::parse(text)
}

fn integer(value: &toml::Value) -> Result<i64, String> {
    value
        .as_integer()
        .ok_or_else(|| type_error("an integer", value))
}

/// An integer of at least `min`.
fn at_least(value: &toml::Value, min: u64) -> Result<u64, String> {
    let n = integer(value)?;
    u64::try_from(n)
        .ok()
        .filter(|&n| n >= min)
        .ok_or_else(|| format!("must be at least {min}, got {n}"))
}

/// A float, or an integer read as one (`xfetch_beta = 2`).
fn number(value: &toml::Value) -> Result<f64, String> {
    match value {
        toml::Value::Float(f) => Ok(*f),
        #[allow(clippy::cast_precision_loss)] // small configuration numbers
        toml::Value::Integer(i) => Ok(*i as f64),
        _ => Err(type_error("a number", value)),
    }
}

/// A number from 0 to 1.
fn share(value: &toml::Value) -> Result<f64, String> {
    let f = number(value)?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err(format!("must be between 0.0 and 1.0, got {f}"))
    }
}

fn boolean(value: &toml::Value) -> Result<bool, String> {
    value
        .as_bool()
        .ok_or_else(|| type_error("a boolean", value))
}

fn one_of<T: Copy>(value: &toml::Value, choices: &[(&str, T)]) -> Result<T, String> {
    let text = string(value)?;
    choices
        .iter()
        .find(|(name, _)| *name == text)
        .map(|&(_, v)| v)
        .ok_or_else(|| {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
            format!(
                "unknown value {text:?}, expected one of {}",
                names.join(", ")
            )
        })
}

const REFRESH_MODES: [(&str, RefreshMode); 2] = [
    ("background", RefreshMode::Background),
    ("caller", RefreshMode::Caller),
];
const LEASE_EXPIRIES: [(&str, LeaseExpiry); 2] = [
    ("take_over", LeaseExpiry::TakeOver),
    ("load_independently", LeaseExpiry::LoadIndependently),
];

impl CacheConfig {
    /// Reads one cache's table. `Err` names the field; the caller adds the cache.
    pub(crate) fn from_table(table: &toml::Table) -> Result<Self, FieldError> {
        let mut c = Self::default();
        for (key, value) in table {
            let Some(&field) = FIELDS.iter().find(|f| **f == key.as_str()) else {
                return Err((
                    key.clone(),
                    format!("unknown field, expected one of: {}", FIELDS.join(", ")),
                ));
            };
            c.set(field, value)
                .map_err(|reason| (field.to_string(), reason))?;
        }
        c.check()?;
        Ok(c)
    }

    fn set(&mut self, field: &str, v: &toml::Value) -> Result<(), String> {
        match field {
            "policy" => {
                let name = string(v)?;
                self.policy = AnyPolicy::from_name(name)
                    .ok_or_else(|| {
                        format!(
                            "unknown policy {name:?}, expected one of {}",
                            AnyPolicy::NAMES.join(", ")
                        )
                    })?
                    .name();
            }
            "max_entries" => self.max_entries = Some(at_least(v, 1)?),
            "max_weight" => self.max_weight = Some(at_least(v, 1)?),
            "shards" => {
                let n = integer(v)?;
                let ok = usize::try_from(n)
                    .ok()
                    .filter(|n| n.is_power_of_two() && *n <= MAX_SHARDS);
                self.shards = Some(ok.ok_or_else(|| {
                    format!("must be a power of two between 1 and {MAX_SHARDS}, got {n}")
                })?);
            }
            "seed" => self.seed = Some(at_least(v, 0)?),
            "ttl" => self.ttl = Some(duration(v)?),
            "sliding_ttl" => self.sliding_ttl = Some(duration(v)?),
            "jitter" => self.jitter = Some(duration(v)?),
            "negative_ttl" => self.negative_ttl = Some(duration(v)?),
            "grace" => self.grace = Some(duration(v)?),
            "retry_interval" => self.retry_interval = Some(duration(v)?),
            "soft_timeout" => self.soft_timeout = Some(duration(v)?),
            "xfetch" => self.xfetch = Some(boolean(v)?),
            // Ranges and zero durations: `check`, with the builders' rules.
            "xfetch_beta" => self.xfetch_beta = Some(number(v)?),
            "refresh_after" => self.refresh_after = Some(number(v)?),
            "refresh_mode" => self.refresh_mode = Some(one_of(v, &REFRESH_MODES)?),
            "lease" => self.lease = Some(duration(v)?),
            "on_lease_expiry" => self.on_lease_expiry = Some(one_of(v, &LEASE_EXPIRIES)?),
            "load_timeout" => self.load_timeout = Some(duration(v)?),
            "samples" => {
                let n = integer(v)?;
                self.samples = Some(
                    usize::try_from(n)
                        .ok()
                        .filter(|n| (1..=1024).contains(n))
                        .ok_or_else(|| format!("must be between 1 and 1024, got {n}"))?,
                );
            }
            "window_fraction" => self.window_fraction = Some(share(v)?),
            "protected_fraction" => self.protected_fraction = Some(share(v)?),
            "sketch_start" => self.sketch_start = Some(share(v)?),
            "admission_margin" => {
                let n = integer(v)?;
                let max = WTinyLfu::MAX_ADMISSION_MARGIN;
                self.admission_margin = Some(
                    u8::try_from(n)
                        .ok()
                        .filter(|&n| n <= max)
                        .ok_or_else(|| format!("must be between 0 and {max}, got {n}"))?,
                );
            }
            "small_fraction" => {
                let f = number(v)?;
                if !(f > 0.0 && f < 1.0) {
                    return Err(format!("must be strictly between 0.0 and 1.0, got {f}"));
                }
                self.small_fraction = Some(f);
            }
            "ghost_ratio" => {
                let r = number(v)?;
                if !(0.0..=16.0).contains(&r) {
                    return Err(format!("must be between 0.0 and 16.0, got {r}"));
                }
                self.ghost_ratio = Some(r);
            }
            _ => unreachable!("every name in FIELDS has an arm"),
        }
        Ok(())
    }

    /// The checks that involve more than one field (each field was checked as it was read).
    fn check(&self) -> Result<(), FieldError> {
        let err = |field: &str, reason: &str| Err((field.to_string(), reason.to_string()));
        match (self.max_entries, self.max_weight) {
            (None, None) => {
                return err(
                    "max_entries",
                    "missing: a cache needs a size, `max_entries` or `max_weight`",
                );
            }
            (Some(_), Some(_)) => {
                return err("max_weight", "cannot be combined with `max_entries`");
            }
            _ => {}
        }
        if self.xfetch == Some(false) && self.xfetch_beta.is_some() {
            return err("xfetch_beta", "set while `xfetch = false`");
        }
        // The front door's rules, shared with `AsideBuilder::build`.
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
        settings::check(&shared).map_err(|e| (e.field.key().to_string(), e.reason))?;
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
            ("small_fraction", self.small_fraction.is_some(), "s3fifo"),
            ("ghost_ratio", self.ghost_ratio.is_some(), "s3fifo"),
        ];
        for (field, set, policy) in policy_only {
            if set && self.policy != policy {
                return Err((
                    field.to_string(),
                    format!(
                        "applies to policy \"{policy}\" only, not \"{}\"",
                        self.policy
                    ),
                ));
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
                // `set` has checked both ranges.
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
                **p = w;
            }
            AnyPolicy::S3Fifo(p) => {
                // Both setters assert their range, which `set` has checked.
                let mut s = S3Fifo::new();
                if let Some(f) = self.small_fraction {
                    s = s.small_fraction(f);
                }
                if let Some(r) = self.ghost_ratio {
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

    /// The fields set, as TOML, for writing back.
    pub(crate) fn to_raw(&self) -> Raw {
        let d = |d: Option<Duration>| d.map(duration::format);
        Raw {
            policy: self.policy,
            max_entries: self.max_entries,
            max_weight: self.max_weight,
            shards: self.shards,
            seed: self.seed,
            ttl: d(self.ttl),
            sliding_ttl: d(self.sliding_ttl),
            jitter: d(self.jitter),
            negative_ttl: d(self.negative_ttl),
            grace: d(self.grace),
            retry_interval: d(self.retry_interval),
            soft_timeout: d(self.soft_timeout),
            xfetch: self.xfetch,
            xfetch_beta: self.xfetch_beta,
            refresh_after: self.refresh_after,
            refresh_mode: self.refresh_mode.map(|m| name_of(m, &REFRESH_MODES)),
            lease: d(self.lease),
            on_lease_expiry: self.on_lease_expiry.map(|e| name_of(e, &LEASE_EXPIRIES)),
            load_timeout: d(self.load_timeout),
            samples: self.samples,
            window_fraction: self.window_fraction,
            protected_fraction: self.protected_fraction,
            sketch_start: self.sketch_start,
            admission_margin: self.admission_margin,
            small_fraction: self.small_fraction,
            ghost_ratio: self.ghost_ratio,
        }
    }
}

/// The name of `value` among `choices`.
fn name_of<T: PartialEq>(value: T, choices: &[(&'static str, T)]) -> &'static str {
    choices
        .iter()
        .find(|(_, c)| *c == value)
        .map(|(n, _)| *n)
        .unwrap_or_default()
}

/// A [`CacheConfig`] as TOML writes it (durations as strings, absent fields skipped).
#[derive(Serialize)]
pub(crate) struct Raw {
    policy: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_entries: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_weight: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shards: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sliding_ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jitter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    negative_ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    soft_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xfetch: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    xfetch_beta: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_after: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_lease_expiry: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    samples: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    window_fraction: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protected_fraction: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sketch_start: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admission_margin: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    small_fraction: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ghost_ratio: Option<f64>,
}
