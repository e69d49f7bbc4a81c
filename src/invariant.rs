//! [`InvariantError`]: what `validate` reports when a cache's internal structure is broken.

use std::fmt;

/// A broken internal invariant found by `validate` ([`Cache::validate`](crate::Cache::validate),
/// [`AsideCache::validate`](crate::AsideCache::validate),
/// [`Simulation::validate`](crate::policy::Simulation::validate)): which structure disagrees
/// with which, described for a bug report. A correct cache never returns one; tests and
/// fuzzers call `validate` after every operation.
///
/// # Example
///
/// ```
/// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
/// cache.insert(1, 1);
/// let checked: Result<(), aside::InvariantError> = cache.validate();
/// assert!(checked.is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvariantError {
    what: String,
}

impl InvariantError {
    pub(crate) fn new(what: impl Into<String>) -> Self {
        Self { what: what.into() }
    }

    /// The description of the broken invariant.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// assert!(cache.validate().err().map(|e| e.what().to_string()).is_none());
    /// ```
    #[must_use]
    pub fn what(&self) -> &str {
        &self.what
    }
}

impl fmt::Display for InvariantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "broken cache invariant: {}", self.what)
    }
}

impl std::error::Error for InvariantError {}
