//! [`Caches`]: the caches a [`Registry`] configures, built once and shared by name.

use std::any::{Any, type_name};
use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{Registry, RegistryError};
use crate::policy::AnyPolicy;
use crate::sampler::{MetricsSampler, StatsSource};
use crate::{AsideBuilder, AsideCache};

/// One built cache: the typed value behind `Any`, its counters, and its type for messages.
struct Built {
    cache: Arc<dyn Any + Send + Sync>,
    stats: Arc<dyn StatsSource + Send + Sync>,
    type_name: &'static str,
}

/// The front doors a [`Registry`] configures, each built on first request and then shared:
/// `caches.get::<K, V>("user")` anywhere in the application returns the same cache.
///
/// A name is bound to the key and value types of its first request; asking for it with other
/// types is an error, not a second cache. [`sampler`](Self::sampler) samples every cache built
/// so far under its name.
///
/// # Example
///
/// ```
/// use aside::registry::{Caches, Registry};
///
/// let caches = Caches::new(Registry::from_toml_str(r#"
///     [caches.user]
///     ttl = "5m"
///     max_entries = 10000
/// "#)?);
/// let users = caches.get::<u64, String>("user")?;
/// users.put(42, "Alice".to_string());
/// // Elsewhere, the same cache:
/// assert_eq!(caches.get::<u64, String>("user")?.get(&42).as_deref(), Some("Alice"));
/// // Other types for the same name are refused.
/// assert!(caches.get::<u32, u32>("user").is_err());
/// # Ok::<(), aside::registry::RegistryError>(())
/// ```
pub struct Caches {
    registry: Registry,
    built: Mutex<BTreeMap<String, Built>>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches")
            .field("configured", &self.registry.names().collect::<Vec<_>>())
            .field("built", &self.built_names())
            .finish()
    }
}

impl Caches {
    /// The caches `registry` configures; none is built yet.
    ///
    /// # Example
    ///
    /// ```
    /// let caches = aside::registry::Caches::new(aside::registry::Registry::default());
    /// assert!(caches.built_names().is_empty());
    /// ```
    #[must_use]
    pub fn new(registry: Registry) -> Self {
        Self {
            registry,
            built: Mutex::new(BTreeMap::new()),
        }
    }

    /// The configuration the caches are built from.
    ///
    /// # Example
    ///
    /// ```
    /// let caches = aside::registry::Caches::new(aside::registry::Registry::default());
    /// assert_eq!(caches.registry().names().count(), 0);
    /// ```
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The cache `name`, built from its table on the first call.
    ///
    /// # Errors
    ///
    /// [`RegistryError`] naming the cache: not configured, sized by `max_weight` (see
    /// [`Registry::builder`]), or already built with other key or value types.
    ///
    /// # Example
    ///
    /// ```
    /// let caches = aside::registry::Caches::new(
    ///     aside::registry::Registry::from_toml_str("[caches.c]\nmax_entries = 10")?,
    /// );
    /// let c = caches.get::<u32, u32>("c")?;
    /// assert_eq!(c.get_with_blocking(1, || 2).unwrap(), 2);
    /// # Ok::<(), aside::registry::RegistryError>(())
    /// ```
    pub fn get<K, V>(&self, name: &str) -> Result<AsideCache<K, V, AnyPolicy>, RegistryError>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        self.get_with(name, |b| b)
    }

    /// The cache `name`; on the first call, built from its table with `customize` applied to
    /// the builder first (a clock, or anything the file cannot say). Later calls return the
    /// cache built then and do not run `customize`.
    ///
    /// `customize` runs outside every lock of `Caches`, so it may itself ask for other caches.
    /// If two threads build the same cache at once, both run `customize` and one cache wins;
    /// both callers get the winner.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), and a setting `customize` made invalid (named by the builder's
    /// field).
    ///
    /// # Example
    ///
    /// ```
    /// use aside::registry::{Caches, Registry};
    /// let caches = Caches::new(Registry::from_toml_str("[caches.c]\nmax_entries = 10\nttl = \"1m\"")?);
    /// let clock = aside::MockClock::new();
    /// let c = caches.get_with::<u32, u32>("c", |b| b.clock(clock.clone()))?;
    /// c.put(1, 1);
    /// clock.advance(std::time::Duration::from_secs(61));
    /// assert_eq!(c.get(&1), None);
    /// # Ok::<(), aside::registry::RegistryError>(())
    /// ```
    pub fn get_with<K, V>(
        &self,
        name: &str,
        customize: impl FnOnce(AsideBuilder<K, V, AnyPolicy>) -> AsideBuilder<K, V, AnyPolicy>,
    ) -> Result<AsideCache<K, V, AnyPolicy>, RegistryError>
    where
        K: Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        if let Some(found) = self.lookup(name) {
            return found;
        }
        let builder = self.registry.builder::<K, V>(name)?;
        let cache = customize(builder)
            .build()
            .map_err(|e| RegistryError::new(Some(name), Some(e.field()), e.reason().to_string()))?;
        let mut built = self.built.lock();
        let entry = built.entry(name.to_string()).or_insert_with(|| Built {
            cache: Arc::new(cache.clone()),
            stats: Arc::new(cache),
            type_name: type_name::<AsideCache<K, V, AnyPolicy>>(),
        });
        Self::typed(name, entry)
    }

    /// The built cache `name` as `AsideCache<K, V, AnyPolicy>`, if built.
    fn lookup<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Option<Result<AsideCache<K, V, AnyPolicy>, RegistryError>> {
        let built = self.built.lock();
        built.get(name).map(|b| Self::typed(name, b))
    }

    fn typed<K: 'static, V: 'static>(
        name: &str,
        built: &Built,
    ) -> Result<AsideCache<K, V, AnyPolicy>, RegistryError> {
        built
            .cache
            .downcast_ref::<AsideCache<K, V, AnyPolicy>>()
            .cloned()
            .ok_or_else(|| {
                RegistryError::new(
                    Some(name),
                    None,
                    format!(
                        "built as {}, requested as {}",
                        built.type_name,
                        type_name::<AsideCache<K, V, AnyPolicy>>()
                    ),
                )
            })
    }

    /// The names of the caches built so far, in alphabetical order.
    ///
    /// # Example
    ///
    /// ```
    /// let caches = aside::registry::Caches::new(
    ///     aside::registry::Registry::from_toml_str("[caches.a]\nmax_entries = 1\n[caches.b]\nmax_entries = 1")?,
    /// );
    /// caches.get::<u8, u8>("b")?;
    /// assert_eq!(caches.built_names(), ["b"]);
    /// # Ok::<(), aside::registry::RegistryError>(())
    /// ```
    #[must_use]
    pub fn built_names(&self) -> Vec<String> {
        self.built.lock().keys().cloned().collect()
    }

    /// A [`MetricsSampler`] of every cache built so far, under its name (alphabetical order).
    ///
    /// # Example
    ///
    /// ```
    /// let caches = aside::registry::Caches::new(
    ///     aside::registry::Registry::from_toml_str("[caches.user]\nmax_entries = 10")?,
    /// );
    /// caches.get::<u32, u32>("user")?.get_with_blocking(1, || 1).unwrap();
    /// let rows = caches.sampler().sample(std::time::SystemTime::now());
    /// assert_eq!((rows[0].name.as_str(), rows[0].totals.loads), ("user", 1));
    /// # Ok::<(), aside::registry::RegistryError>(())
    /// ```
    #[must_use]
    pub fn sampler(&self) -> MetricsSampler {
        let mut sampler = MetricsSampler::new();
        for (name, b) in self.built.lock().iter() {
            sampler.add(name.clone(), Arc::clone(&b.stats));
        }
        sampler
    }
}
