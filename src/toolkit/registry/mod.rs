//! Named caches configured from a file: [`Registry`] and [`CacheConfig`].
//!
//! A cache-aside application keeps one cache per entity (user profiles, products,
//! configuration, sessions), each with the TTL, size and eviction policy its data deserves.
//! Those settings belong in a file an operator can edit without recompiling, one table per
//! cache:
//!
//! ```toml
//! [caches.user]
//! ttl = "5min"
//! max_entries = 10000
//! policy = "wtinylfu"
//! jitter = "30s"
//!
//! [caches.session]
//! sliding_ttl = "1h 30m"
//! max_entries = 5000
//! ```
//!
//! [`Registry::from_toml_str`] (or [`from_path`](Registry::from_path)) reads the file and
//! checks every field at once; an invalid file is a [`RegistryError`] naming the cache and the
//! field (`caches.user.ttl: invalid duration "5 parsecs": ...`), never a panic. The code then
//! asks for a builder by name, typed by the caller, with the policy chosen at run time
//! ([`AnyPolicy`]), and can still set what a file cannot hold (a clock, a weigher, a
//! listener):
//!
//! ```
//! use aside::registry::Registry;
//! use aside::{AsideCache, policy::AnyPolicy};
//!
//! let registry = Registry::from_toml_str(r#"
//!     [caches.user]
//!     ttl = "5min"
//!     max_entries = 10000
//!     policy = "wtinylfu"
//! "#)?;
//! let users: AsideCache<u64, String, AnyPolicy> = registry
//!     .builder("user")?
//!     .clock(aside::MockClock::new()) // anything the file does not say
//!     .build()?;
//! assert_eq!(users.get_with_blocking(42, || "Alice".to_string()).unwrap(), "Alice");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! TOML is one format among many: [`RegistryFile`] and [`CacheConfig`] implement serde's
//! `Deserialize` and `Serialize`, so JSON, YAML or a layered configuration (figment,
//! config-rs: a file, then environment variables) deserializes into a `RegistryFile`, and
//! [`Registry::from_config`] validates it with the same pass as TOML
//! ([`Registry::from_deserializer`] does both, and names the cache and the field of a value
//! of the wrong type too). Durations are strings, anything [`humantime::parse_duration`]
//! reads (`"250ms"`, `"5min"`, `"1h 30m"`).
//!
//! Needs the `config` feature, which brings in `serde`, `toml`, `humantime` and
//! `serde_path_to_error`.

mod caches;
mod config;
mod values;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use caches::Caches;
pub use config::{CacheConfig, RegistryFile};

/// Formats a duration as the registry writes it, with [`humantime::format_duration`]:
/// `"1h 30m"`, `"1s 500ms"`, `"0s"`. A registry file reads it back as the same duration.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// assert_eq!(aside::registry::format_duration(Duration::from_secs(5400)), "1h 30m");
/// assert_eq!(aside::registry::format_duration(Duration::from_millis(1500)), "1s 500ms");
/// ```
#[must_use]
pub fn format_duration(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

use crate::policy::AnyPolicy;
use crate::{AsideBuilder, Cache, CacheBuilder};

/// An invalid configuration file, or a request for a cache it does not define. Names the
/// cache and the field when there is one.
///
/// # Example
///
/// ```
/// use aside::registry::Registry;
/// let err = Registry::from_toml_str("[caches.user]\nmax_entries = 10\nttl = \"5 parsecs\"")
///     .unwrap_err();
/// assert_eq!(err.cache(), Some("user"));
/// assert_eq!(err.field(), Some("ttl"));
/// assert!(err.to_string().starts_with(r#"caches.user.ttl: invalid duration "5 parsecs""#));
/// ```
#[derive(Debug, Clone)]
pub struct RegistryError {
    cache: Option<String>,
    field: Option<String>,
    reason: String,
    /// The I/O or deserializer error behind it, for `source()`.
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// Equal when they name the same cache and field for the same reason (the cause is not
/// compared: I/O errors have no equality).
impl PartialEq for RegistryError {
    fn eq(&self, other: &Self) -> bool {
        (&self.cache, &self.field, &self.reason) == (&other.cache, &other.field, &other.reason)
    }
}

impl Eq for RegistryError {}

impl RegistryError {
    fn new(cache: Option<&str>, field: Option<&str>, reason: impl Into<String>) -> Self {
        Self {
            cache: cache.map(str::to_string),
            field: field.map(str::to_string),
            reason: reason.into(),
            cause: None,
        }
    }

    /// A deserializer's error `e`, placed by its path: `caches.<name>.<field>` names the
    /// cache and the field, a top-level key names the field, and an error without a path
    /// (syntax) names neither and keeps the deserializer's whole message. `reason` says what
    /// is wrong where there is a place.
    fn located<E: std::error::Error + Send + Sync + 'static>(
        e: serde_path_to_error::Error<E>,
        reason: impl FnOnce(&E) -> String,
    ) -> Self {
        let keys: Vec<&str> = e
            .path()
            .iter()
            .map_while(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.as_str()),
                _ => None,
            })
            .collect();
        let (cache, field) = match keys.as_slice() {
            [] => (None, None),
            ["caches", name] => (Some(*name), None),
            ["caches", name, field, ..] => (Some(*name), Some(*field)),
            [top, ..] => (None, Some(*top)),
        };
        let reason = if keys.is_empty() {
            e.inner().to_string()
        } else {
            reason(e.inner())
        };
        Self::new(cache, field, reason).caused_by(e.into_inner())
    }

    fn caused_by(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.cause = Some(Arc::new(cause));
        self
    }

    /// The cache the error is about, if any.
    ///
    /// # Example
    ///
    /// ```
    /// let registry = aside::registry::Registry::default();
    /// let err = registry.config("nope").unwrap_err();
    /// assert_eq!(err.cache(), Some("nope"));
    /// ```
    #[must_use]
    pub fn cache(&self) -> Option<&str> {
        self.cache.as_deref()
    }

    /// The field (the key in the file) the error is about, if any.
    ///
    /// # Example
    ///
    /// ```
    /// let err = aside::registry::Registry::from_toml_str("[caches.a]\nmax_entries = 0")
    ///     .unwrap_err();
    /// assert_eq!(err.field(), Some("max_entries"));
    /// ```
    #[must_use]
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// What is wrong.
    ///
    /// # Example
    ///
    /// ```
    /// let err = aside::registry::Registry::from_toml_str("[caches.a]\nmax_entries = 0")
    ///     .unwrap_err();
    /// assert_eq!(err.reason(), "must be at least 1, got 0");
    /// ```
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// A TOML key, quoted unless it is a bare key.
fn key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        name.to_string()
    } else {
        format!("{name:?}")
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.cache, &self.field) {
            (Some(c), Some(field)) => write!(f, "caches.{}.{}: ", key(c), key(field))?,
            (Some(c), None) => write!(f, "caches.{}: ", key(c))?,
            (None, Some(field)) => write!(f, "{}: ", key(field))?,
            (None, None) => {}
        }
        f.write_str(&self.reason)
    }
}

/// `source()` is the I/O error of [`Registry::from_path`], or the deserializer's error (TOML
/// syntax, a wrong type, an unknown key, a duration that does not parse), when that is what
/// went wrong; a rule of the validation pass has no further cause.
impl std::error::Error for RegistryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Named cache configurations, validated; hands out builders by name.
///
/// The registry holds configurations, not caches: each call to [`builder`](Self::builder)
/// returns a fresh builder, typed by the caller, so one file can configure caches of any key
/// and value types. Build each cache once and share it (it is cheap to clone).
///
/// # Example
///
/// ```
/// use aside::registry::Registry;
/// use aside::{Cache, policy::AnyPolicy};
///
/// let registry = Registry::from_toml_str(r#"
///     [caches.product]
///     ttl = "1h"
///     max_entries = 50000
///     policy = "lfu"
///
///     [caches.config]
///     ttl = "24h"
///     max_entries = 100
/// "#)?;
/// assert_eq!(registry.names().collect::<Vec<_>>(), ["config", "product"]);
///
/// // The engine alone, without the front door:
/// let products: Cache<u64, String, AnyPolicy> = registry.cache_builder("product")?.build()?;
/// products.insert(1, "widget".into());
/// assert_eq!(products.get(&1).as_deref(), Some("widget"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    /// Every cache validated.
    file: RegistryFile,
}

impl Registry {
    /// Reads a TOML configuration: one `[caches.<name>]` table per cache and nothing else at
    /// the top level, deserialized as a [`RegistryFile`] and then validated as
    /// [`from_config`](Self::from_config) does.
    ///
    /// # Errors
    ///
    /// [`RegistryError`]: TOML syntax (with the line and column), an unknown top-level key, a
    /// cache that is not a table, and for a cache: an unknown field, a value of the wrong type,
    /// an unknown policy or mode, a duration `humantime` does not read, a negative count, and
    /// everything [`from_config`](Self::from_config) refuses.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::registry::Registry;
    /// let err = Registry::from_toml_str("[caches.user]\nmax_entries = 10\npolicy = \"mru\"")
    ///     .unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "caches.user.policy: unknown policy \"mru\", expected one of lru, lfu, fifo, ttl, wtinylfu, s3fifo"
    /// );
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Self, RegistryError> {
        let document = toml::Deserializer::parse(text).map_err(|e: toml::de::Error| {
            RegistryError::new(None, None, e.to_string()).caused_by(e)
        })?;
        // Where the error has a place in the file, the path names it: toml's own message,
        // without its excerpt of the file, is the reason.
        let file = serde_path_to_error::deserialize(document).map_err(|e| {
            RegistryError::located(e, |e: &toml::de::Error| e.message().to_string())
        })?;
        Self::from_config(file)
    }

    /// Deserializes a [`RegistryFile`] from any serde format and validates it: JSON, YAML, a
    /// configuration library's merged layers. Unlike deserializing the file yourself and
    /// calling [`from_config`](Self::from_config), a wrong type, an unknown key or a duration
    /// that does not parse is then also a [`RegistryError`] naming the cache and the field.
    ///
    /// # Errors
    ///
    /// As [`from_toml_str`](Self::from_toml_str); a deserializer's error without a place in
    /// the file (a syntax error) names no cache and is the [`source`](std::error::Error::source).
    ///
    /// # Example
    ///
    /// ```
    /// use aside::registry::Registry;
    /// let json = r#"{ "caches": { "user": { "max_entries": 10, "ttl": "5 parsecs" } } }"#;
    /// let err = Registry::from_deserializer(&mut serde_json::Deserializer::from_str(json))
    ///     .unwrap_err();
    /// assert_eq!((err.cache(), err.field()), (Some("user"), Some("ttl")));
    /// assert!(err.reason().starts_with(r#"invalid duration "5 parsecs": "#));
    ///
    /// let json = r#"{ "caches": { "user": { "max_entries": 10, "ttl": "1h 30m" } } }"#;
    /// let registry = Registry::from_deserializer(&mut serde_json::Deserializer::from_str(json))?;
    /// assert_eq!(registry.config("user")?.ttl, Some(std::time::Duration::from_secs(5400)));
    /// # Ok::<(), aside::registry::RegistryError>(())
    /// ```
    pub fn from_deserializer<'de, D>(deserializer: D) -> Result<Self, RegistryError>
    where
        D: serde::Deserializer<'de>,
        D::Error: Send + Sync + 'static,
    {
        let file = serde_path_to_error::deserialize(deserializer)
            .map_err(|e| RegistryError::located(e, ToString::to_string))?;
        Self::from_config(file)
    }

    /// Validates a [`RegistryFile`] that you deserialized yourself (with figment, config-rs,
    /// serde_json...) or built in code, in one pass over every cache: sizes, ranges and the
    /// rules between fields. The registry's other constructors end here too.
    ///
    /// The pass checks, for each cache in name order and in this order: the policy name;
    /// `max_entries` and `max_weight` at least 1; `samples` in 1..=1024; `window_fraction`,
    /// `protected_fraction` and `sketch_start` in [0, 1]; `admission_margin` at most 14;
    /// `small_fraction` in (0, 1); `ghost_ratio` in [0, 16]; exactly one of `max_entries` and
    /// `max_weight`; no `xfetch_beta` with `xfetch = false`; then the rules the front door's
    /// builder applies as well (shards a power of two up to [`MAX_SHARDS`](crate::MAX_SHARDS),
    /// durations above zero, `ttl` or `sliding_ttl` but not both, jitter at most the TTL,
    /// `retry_interval` only with `grace`, `grace` and `refresh_after` only with a `ttl`,
    /// `soft_timeout` only with `grace`, `xfetch_beta` finite and above zero, `refresh_after`
    /// in (0, 1)); and last, each policy's own settings only with that policy.
    ///
    /// # Errors
    ///
    /// The first broken rule, as a [`RegistryError`] naming the cache and the field.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::registry::{CacheConfig, Registry, RegistryFile};
    /// use std::time::Duration;
    ///
    /// let mut file = RegistryFile::default();
    /// let mut user = CacheConfig::default();
    /// user.max_entries = Some(10_000);
    /// user.ttl = Some(Duration::from_secs(300));
    /// file.caches.insert("user".to_string(), user.clone());
    /// let registry = Registry::from_config(file.clone())?;
    /// assert_eq!(registry.config("user")?, &user);
    ///
    /// // Jitter longer than the TTL it spreads:
    /// file.caches.get_mut("user").unwrap().jitter = Some(Duration::from_secs(600));
    /// let err = Registry::from_config(file).unwrap_err();
    /// assert_eq!((err.cache(), err.field()), (Some("user"), Some("jitter")));
    /// # Ok::<(), aside::registry::RegistryError>(())
    /// ```
    pub fn from_config(file: RegistryFile) -> Result<Self, RegistryError> {
        for (name, config) in &file.caches {
            config
                .check()
                .map_err(|(field, reason)| RegistryError::new(Some(name), Some(field), reason))?;
        }
        Ok(Self { file })
    }

    /// Reads the configuration file at `path`; see [`from_toml_str`](Self::from_toml_str).
    ///
    /// # Errors
    ///
    /// The file cannot be read (the reason names the path), or any error of
    /// `from_toml_str`.
    ///
    /// # Example
    ///
    /// ```
    /// let err = aside::registry::Registry::from_path("/no/such/caches.toml").unwrap_err();
    /// assert!(err.reason().starts_with("/no/such/caches.toml: "));
    /// ```
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, RegistryError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            RegistryError::new(None, None, format!("{}: {e}", path.display())).caused_by(e)
        })?;
        Self::from_toml_str(&text).map_err(|e| RegistryError {
            reason: if e.cache.is_none() && e.field.is_none() {
                format!("{}: {}", path.display(), e.reason)
            } else {
                e.reason
            },
            ..e
        })
    }

    /// Writes the configuration back as TOML that [`from_toml_str`](Self::from_toml_str) reads
    /// into an equal registry (fields left out stay left out; durations as
    /// [`format_duration`] writes them).
    ///
    /// # Panics
    ///
    /// Never: the document is tables of strings, integers, floats and booleans, all of which
    /// TOML can write.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::registry::Registry;
    /// let registry = Registry::from_toml_str("[caches.user]\nttl = \"90m\"\nmax_entries = 10")?;
    /// let text = registry.to_toml_string();
    /// assert!(text.contains("ttl = \"1h 30m\""));
    /// assert_eq!(Registry::from_toml_str(&text)?, registry);
    /// # Ok::<(), aside::registry::RegistryError>(())
    /// ```
    #[must_use]
    pub fn to_toml_string(&self) -> String {
        toml::to_string(&self.file).expect("a map of tables of strings, numbers and booleans")
    }

    /// The configured cache names, in alphabetical order.
    ///
    /// # Example
    ///
    /// ```
    /// let registry = aside::registry::Registry::from_toml_str(
    ///     "[caches.b]\nmax_entries = 1\n[caches.a]\nmax_entries = 1",
    /// )?;
    /// assert_eq!(registry.names().collect::<Vec<_>>(), ["a", "b"]);
    /// # Ok::<(), aside::registry::RegistryError>(())
    /// ```
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.file.caches.keys().map(String::as_str)
    }

    /// The configuration of cache `name`.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] naming the cache when the file does not define it.
    ///
    /// # Example
    ///
    /// ```
    /// let registry = aside::registry::Registry::from_toml_str("[caches.a]\nmax_entries = 5")?;
    /// assert_eq!(registry.config("a")?.max_entries, Some(5));
    /// assert_eq!(registry.config("b").unwrap_err().to_string(), "caches.b: not configured (configured: a)");
    /// # Ok::<(), aside::registry::RegistryError>(())
    /// ```
    pub fn config(&self, name: &str) -> Result<&CacheConfig, RegistryError> {
        self.file.caches.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.names().collect();
            RegistryError::new(
                Some(name),
                None,
                format!("not configured (configured: {})", known.join(", ")),
            )
        })
    }

    /// A front-door builder for cache `name` with every setting of its table applied; set a
    /// clock (or anything else) on it before [`build`](AsideBuilder::build), which then cannot
    /// fail on the file's settings.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] when `name` is not configured, or when its size is `max_weight` (use
    /// [`weighed_builder`](Self::weighed_builder)).
    ///
    /// # Example
    ///
    /// ```
    /// use aside::{AsideCache, policy::AnyPolicy};
    /// let registry = aside::registry::Registry::from_toml_str(
    ///     "[caches.session]\nsliding_ttl = \"30m\"\nmax_entries = 5000",
    /// )?;
    /// let sessions: AsideCache<String, Vec<u8>, AnyPolicy> = registry.builder("session")?.build()?;
    /// # let _ = sessions;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder<K, V>(
        &self,
        name: &str,
    ) -> Result<AsideBuilder<K, V, AnyPolicy>, RegistryError> {
        let c = self.config(name)?;
        if c.max_weight.is_some() {
            return Err(RegistryError::new(
                Some(name),
                Some("max_weight"),
                "needs a weigher: use `Registry::weighed_builder`",
            ));
        }
        Ok(Self::front_door_builder(c))
    }

    /// A front-door builder for cache `name`, sized by `max_weight` with `weigher` (the
    /// weight of a loaded value; see [`AsideBuilder::weigher`]).
    ///
    /// # Errors
    ///
    /// [`RegistryError`] when `name` is not configured or is sized by `max_entries`.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::{AsideCache, policy::AnyPolicy};
    /// let registry = aside::registry::Registry::from_toml_str(
    ///     "[caches.pages]\nmax_weight = 1048576\nttl = \"1m\"",
    /// )?;
    /// let pages: AsideCache<u32, Vec<u8>, AnyPolicy> = registry
    ///     .weighed_builder("pages", |_: &u32, page: &Vec<u8>| page.len() as u32)?
    ///     .build()?;
    /// pages.put(1, vec![0; 4096]);
    /// assert_eq!(pages.weighted_size(), 4096);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn weighed_builder<K: 'static, V: 'static>(
        &self,
        name: &str,
        weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static,
    ) -> Result<AsideBuilder<K, V, AnyPolicy>, RegistryError> {
        let c = self.config(name)?;
        if c.max_entries.is_some() {
            return Err(RegistryError::new(
                Some(name),
                Some("max_entries"),
                "a weighed cache is sized by `max_weight`",
            ));
        }
        Ok(Self::front_door_builder(c).weigher(weigher))
    }

    /// Every setting of `c` on a front-door builder.
    fn front_door_builder<K, V>(c: &CacheConfig) -> AsideBuilder<K, V, AnyPolicy> {
        let mut b = AsideBuilder::on(Self::engine_builder(c));
        if let Some(d) = c.negative_ttl {
            b = b.negative_ttl(d);
        }
        if let Some(grace) = c.grace {
            let mut fail_safe = crate::FailSafe::new(grace);
            if let Some(retry) = c.retry_interval {
                fail_safe = fail_safe.retry_interval(retry);
            }
            b = b.fail_safe(fail_safe);
        }
        if let Some(d) = c.soft_timeout {
            b = b.soft_timeout(d);
        }
        if c.xfetch == Some(false) {
            b = b.no_xfetch();
        }
        if let Some(beta) = c.xfetch_beta {
            b = b.xfetch_beta(beta);
        }
        if let Some(f) = c.refresh_after {
            b = b.refresh_after(f);
        }
        if let Some(m) = c.refresh_mode {
            b = b.refresh_mode(m);
        }
        if let Some(d) = c.lease {
            b = b.lease(d);
        }
        if let Some(e) = c.on_lease_expiry {
            b = b.on_lease_expiry(e);
        }
        if let Some(d) = c.load_timeout {
            b = b.load_timeout(d);
        }
        b
    }

    /// An engine builder (a plain [`Cache`], no front door) for cache `name`, sized in
    /// entries.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] when `name` is not configured, when its size is `max_weight` (use
    /// [`weighed_cache_builder`](Self::weighed_cache_builder)), or when its table sets a
    /// front-door setting (negative caching, fail-safe, early refresh, lease), which a plain
    /// cache would silently ignore.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::{Cache, policy::AnyPolicy};
    /// let registry = aside::registry::Registry::from_toml_str(
    ///     "[caches.c]\nmax_entries = 2\npolicy = \"fifo\"\nshards = 1",
    /// )?;
    /// let cache: Cache<u32, u32, AnyPolicy> = registry.cache_builder("c")?.build()?;
    /// for k in 0..3 { cache.insert(k, k); }
    /// assert!(!cache.contains_key(&0)); // FIFO: the oldest went
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cache_builder<K, V>(
        &self,
        name: &str,
    ) -> Result<CacheBuilder<K, V, AnyPolicy>, RegistryError> {
        let c = self.config(name)?;
        if c.max_weight.is_some() {
            return Err(RegistryError::new(
                Some(name),
                Some("max_weight"),
                "needs a weigher: use `Registry::weighed_cache_builder`",
            ));
        }
        Self::refuse_front_door(name, c)?;
        Ok(Self::engine_builder(c))
    }

    /// An engine builder for cache `name`, sized by `max_weight` with `weigher`.
    ///
    /// # Errors
    ///
    /// As [`cache_builder`](Self::cache_builder), except that the size must be `max_weight`.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::{Cache, policy::AnyPolicy};
    /// let registry = aside::registry::Registry::from_toml_str(
    ///     "[caches.blobs]\nmax_weight = 1048576\npolicy = \"s3fifo\"",
    /// )?;
    /// let blobs: Cache<u32, Vec<u8>, AnyPolicy> = registry
    ///     .weighed_cache_builder("blobs", |_: &u32, v: &Vec<u8>| v.len() as u32)?
    ///     .build()?;
    /// blobs.insert(1, vec![0; 1000]);
    /// assert_eq!(blobs.weighted_size(), 1000);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn weighed_cache_builder<K, V>(
        &self,
        name: &str,
        weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static,
    ) -> Result<CacheBuilder<K, V, AnyPolicy>, RegistryError> {
        let c = self.config(name)?;
        if c.max_entries.is_some() {
            return Err(RegistryError::new(
                Some(name),
                Some("max_entries"),
                "a weighed cache is sized by `max_weight`",
            ));
        }
        Self::refuse_front_door(name, c)?;
        Ok(Self::engine_builder(c).weigher(weigher))
    }

    /// Refuses front-door settings for a plain cache, which would ignore them.
    fn refuse_front_door(name: &str, c: &CacheConfig) -> Result<(), RegistryError> {
        let front_door = [
            ("negative_ttl", c.negative_ttl.is_some()),
            ("grace", c.grace.is_some()),
            ("soft_timeout", c.soft_timeout.is_some()),
            ("xfetch", c.xfetch.is_some()),
            ("xfetch_beta", c.xfetch_beta.is_some()),
            ("refresh_after", c.refresh_after.is_some()),
            ("refresh_mode", c.refresh_mode.is_some()),
            ("lease", c.lease.is_some()),
            ("on_lease_expiry", c.on_lease_expiry.is_some()),
            ("load_timeout", c.load_timeout.is_some()),
        ];
        if let Some((field, _)) = front_door.iter().find(|(_, set)| *set) {
            return Err(RegistryError::new(
                Some(name),
                Some(field),
                "is a front-door setting, which a plain `Cache` does not have: use \
                 `Registry::builder` for an `AsideCache`",
            ));
        }
        Ok(())
    }

    /// The engine's settings of `c` (the front door's builder is layered on them).
    fn engine_builder<K, V>(c: &CacheConfig) -> CacheBuilder<K, V, AnyPolicy> {
        let mut b = Cache::<K, V>::builder()
            .policy(c.policy())
            .max_capacity(c.capacity());
        if let Some(s) = c.shards {
            b = b.shards(s);
        }
        if let Some(s) = c.seed {
            b = b.seed(s);
        }
        if let Some(d) = c.ttl {
            b = b.time_to_live(d);
        }
        if let Some(d) = c.sliding_ttl {
            b = b.time_to_idle(d);
        }
        if let Some(d) = c.jitter {
            b = b.ttl_jitter(d);
        }
        b
    }
}
