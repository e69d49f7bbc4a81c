//! [`LoadError`]: what a front-door load can fail with.

use std::fmt;
use std::sync::Arc;

/// Why `get_or_load` (or a twin) returned no value.
///
/// Every waiter of a shared load receives the same error; the loader's own error is shared
/// through an `Arc`.
///
/// # Example
///
/// ```
/// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
/// let err = cache
///     .try_get_with_blocking(1, || Err::<u32, _>("database down"))
///     .unwrap_err();
/// assert!(matches!(err, aside::LoadError::Loader(ref e) if **e == "database down"));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError<E> {
    /// The loader returned this error (shared by every waiter).
    Loader(Arc<E>),
    /// The load exceeded the hard load timeout.
    Timeout,
    /// The loader panicked (in this caller's load or in the shared load it waited on).
    Panicked,
    /// The loader called the front door for the key it is loading: that would deadlock.
    Reentrant,
}

impl<E> Clone for LoadError<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Loader(e) => Self::Loader(Arc::clone(e)),
            Self::Timeout => Self::Timeout,
            Self::Panicked => Self::Panicked,
            Self::Reentrant => Self::Reentrant,
        }
    }
}

impl<E: fmt::Display> fmt::Display for LoadError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Loader(e) => write!(f, "loader failed: {e}"),
            Self::Timeout => f.write_str("load timed out"),
            Self::Panicked => f.write_str("loader panicked"),
            Self::Reentrant => f.write_str("loader re-entered the cache for the key it is loading"),
        }
    }
}

/// `source()` is the loader's own error, so error chains (`anyhow`, `tracing`, `{:#}`
/// reporters) show it. That needs `E: Error`: a loader that fails with a `String` or a
/// `&str` still gets a `LoadError` it can print, match and share, but not one that is an
/// `Error` itself (wrap the message in an error type, or map it with `to_string()`).
///
/// # Example
///
/// ```
/// use std::error::Error;
/// let cache: aside::AsideCache<u32, u32> = aside::AsideCache::builder().build().unwrap();
/// let err = cache
///     .try_get_with_blocking(1, || Err::<u32, _>(std::io::Error::other("database down")))
///     .unwrap_err();
/// assert_eq!(err.source().unwrap().to_string(), "database down");
/// ```
impl<E: std::error::Error + 'static> std::error::Error for LoadError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Loader(e) => Some(&**e),
            Self::Timeout | Self::Panicked | Self::Reentrant => None,
        }
    }
}
