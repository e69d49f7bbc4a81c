//! Cache warming: preload the most-accessed keys before serving traffic.
//!
//! [`AsideCache::warm`] returns a [`Warmer`]: set the concurrency and a progress callback,
//! then [`run`](Warmer::run) it over the keys. Every key goes through the same single-flight
//! path as live traffic (`get_or_load`), so a request that arrives while the key is being
//! warmed waits for the warming load instead of issuing its own, and a key that live traffic
//! is already loading is awaited, not loaded twice. [`read_keys`] reads a file of keys, one
//! per line (for instance the most-accessed keys exported from the query log).

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

#[cfg(feature = "async")]
use {
    crate::ConfigError,
    crate::aside::{AsideCache, Labels, LoadError},
    crate::policy::EvictionPolicy,
    std::future::Future,
    std::hash::Hash,
    std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind},
    std::pin::Pin,
    std::sync::atomic::{AtomicBool, Ordering},
    std::task::Poll,
    tokio::time::Instant,
};

/// Progress of a warm-up, passed to the callback after each key.
///
/// # Example
///
/// ```
/// let p = aside::WarmProgress { done: 5, total: 10, failed: 1 };
/// assert_eq!(p.fraction(), 0.5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmProgress {
    /// Keys finished (loaded, found cached, not found, or failed).
    pub done: usize,
    /// Keys to warm.
    pub total: usize,
    /// Keys whose load failed so far.
    pub failed: usize,
}

impl WarmProgress {
    /// `done / total` (1.0 for an empty warm-up).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(aside::WarmProgress { done: 0, total: 0, failed: 0 }.fraction(), 1.0);
    /// ```
    #[must_use]
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.done as f64 / self.total as f64
        }
    }
}

/// What a warm-up did.
///
/// # Example
///
/// ```
/// let s = aside::WarmSummary::default();
/// assert_eq!(s.loaded + s.already_cached + s.not_found + s.failed, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WarmSummary {
    /// Keys whose value the warmer's loader loaded.
    pub loaded: usize,
    /// Keys already cached, or loaded meanwhile by live traffic (the warmer waited for that
    /// load instead of loading again).
    pub already_cached: usize,
    /// Keys the loader did not find (`Ok(None)`); cached only with a `negative_ttl`.
    pub not_found: usize,
    /// Keys whose load failed (error, timeout, panic); nothing cached for them. (With
    /// fail-safe on, a key whose expired value was served instead counts as loaded.)
    pub failed: usize,
    /// Time the warm-up took, on tokio's clock (so paused-time tests measure it exactly).
    pub elapsed: Duration,
}

/// A warm-up in preparation: see [`AsideCache::warm`].
#[cfg(feature = "async")]
#[must_use = "a warmer does nothing until `run` is awaited"]
pub struct Warmer<'a, K, V, P: EvictionPolicy, F> {
    cache: &'a AsideCache<K, V, P>,
    loader: F,
    concurrency: usize,
    labels: Option<Labels>,
    progress: Option<Box<dyn FnMut(WarmProgress) + Send + 'a>>,
}

#[cfg(feature = "async")]
impl<K, V, P: EvictionPolicy, F> std::fmt::Debug for Warmer<'_, K, V, P, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warmer")
            .field("cache", &self.cache)
            .field("concurrency", &self.concurrency)
            .field("labels", &self.labels)
            .field("progress", &self.progress.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "async")]
impl<K, V, P> AsideCache<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    /// Prepares a warm-up that loads keys with `loader` (called with each key that is not
    /// cached, as `get_or_load` would); by default 8 loads at a time and no progress
    /// callback.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cache: aside::AsideCache<u64, String> = aside::AsideCache::builder().build().unwrap();
    /// let summary = cache
    ///     .warm(|id: u64| async move { Ok::<_, std::io::Error>(Some(format!("user {id}"))) })
    ///     .concurrency(4)
    ///     .on_progress(|p| eprint!("\rwarming {}/{}", p.done, p.total))
    ///     .run(0..100)
    ///     .await
    ///     .unwrap();
    /// assert_eq!(summary.loaded, 100);
    /// assert_eq!(cache.get(&42).as_deref(), Some("user 42"));
    /// # }
    /// ```
    pub fn warm<E, F, Fut>(&self, loader: F) -> Warmer<'_, K, V, P, F>
    where
        E: Send + Sync + 'static,
        F: Fn(K) -> Fut,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
    {
        Warmer {
            cache: self,
            loader,
            concurrency: 8,
            labels: None,
            progress: None,
        }
    }
}

#[cfg(feature = "async")]
impl<'a, K, V, P, F, E, Fut> Warmer<'a, K, V, P, F>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
    E: Send + Sync + 'static,
    F: Fn(K) -> Fut + Sync,
    Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
{
    /// At most `n` loads at a time (at least 1; checked by [`run`](Self::run)).
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u64, u64> = aside::AsideCache::builder().build().unwrap();
    /// let w = cache.warm(|id| async move { Ok::<_, String>(Some(id)) }).concurrency(16);
    /// # drop(w);
    /// ```
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Stores the warmed values with `labels` (see
    /// [`get_or_load_labelled`](AsideCache::get_or_load_labelled)).
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u64, u64> = aside::AsideCache::builder().build().unwrap();
    /// let labels = aside::Labels::new().tag("warm");
    /// let w = cache.warm(|id| async move { Ok::<_, String>(Some(id)) }).labels(&labels);
    /// # drop(w);
    /// ```
    pub fn labels(mut self, labels: &Labels) -> Self {
        self.labels = Some(labels.clone());
        self
    }

    /// Calls `progress` after each key (on the task that awaits [`run`](Self::run)).
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::AsideCache<u64, u64> = aside::AsideCache::builder().build().unwrap();
    /// let w = cache
    ///     .warm(|id| async move { Ok::<_, String>(Some(id)) })
    ///     .on_progress(|p| println!("{:.0}%", p.fraction() * 100.0));
    /// # drop(w);
    /// ```
    pub fn on_progress(mut self, progress: impl FnMut(WarmProgress) + Send + 'a) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// Warms `keys` (duplicates are warmed once) and returns the summary. Keys run in order,
    /// at most `concurrency` at a time, each through the single-flight path: a key that live
    /// traffic is loading is awaited and counted as `already_cached`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `concurrency` when it is 0. Load failures are not errors: they
    /// are counted in [`WarmSummary::failed`] and warming goes on.
    ///
    /// # Panics
    ///
    /// If the loader panics, the panic resumes here (the other loads in progress are dropped,
    /// which abandons them safely: their waiters take over).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let cache: aside::AsideCache<u64, u64> = aside::AsideCache::builder().build().unwrap();
    /// cache.put(1, 1);
    /// let s = cache
    ///     .warm(|id| async move { if id == 3 { Err("down") } else { Ok(Some(id)) } })
    ///     .run([1, 2, 3])
    ///     .await
    ///     .unwrap();
    /// assert_eq!((s.already_cached, s.loaded, s.failed), (1, 1, 1));
    /// let err = cache.warm(|id| async move { Ok::<_, String>(Some(id)) }).concurrency(0).run([1]).await;
    /// assert_eq!(err.unwrap_err().field(), "concurrency");
    /// # }
    /// ```
    pub async fn run(
        mut self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<WarmSummary, ConfigError> {
        if self.concurrency == 0 {
            return Err(ConfigError::new("concurrency", "must be at least 1"));
        }
        let started = Instant::now();
        let mut seen = std::collections::HashSet::new();
        let keys: Vec<K> = keys
            .into_iter()
            .filter(|k| seen.insert(k.clone()))
            .collect();
        drop(seen);
        let total = keys.len();
        let mut summary = WarmSummary::default();
        let mut keys = keys.into_iter();
        let (cache, loader, labels) = (self.cache, &self.loader, self.labels.as_ref());
        let warm_one = |key: K| -> Pin<Box<dyn Future<Output = Warmed> + Send + '_>> {
            Box::pin(async move {
                let ran = AtomicBool::new(false);
                let k = key.clone();
                let load = || {
                    ran.store(true, Ordering::Relaxed);
                    loader(k)
                };
                let result: Result<Option<V>, LoadError<E>> =
                    cache.load_async(key, load, true, labels).await;
                match result {
                    Err(_) => Warmed::Failed,
                    Ok(_) if !ran.load(Ordering::Relaxed) => Warmed::Cached,
                    Ok(Some(_)) => Warmed::Loaded,
                    Ok(None) => Warmed::NotFound,
                }
            })
        };
        let mut running: Vec<Pin<Box<dyn Future<Output = Warmed> + Send + '_>>> = Vec::new();
        let mut done = 0;
        loop {
            while running.len() < self.concurrency {
                match keys.next() {
                    Some(k) => running.push(warm_one(k)),
                    None => break,
                }
            }
            if running.is_empty() {
                break;
            }
            // Poll every running load; collect the ones that finished. A loader's panic is
            // caught here so that the other loads are dropped normally (abandoned: their
            // waiters take over) before it resumes, not while unwinding (which would tell
            // their waiters that their loader panicked).
            let mut panic = None;
            let finished: Vec<Warmed> = std::future::poll_fn(|cx| {
                let mut ready = Vec::new();
                running.retain_mut(|f| {
                    if panic.is_some() {
                        return true;
                    }
                    let polled = catch_unwind(AssertUnwindSafe(|| f.as_mut().poll(cx)));
                    match polled {
                        Ok(Poll::Ready(w)) => {
                            ready.push(w);
                            false
                        }
                        Ok(Poll::Pending) => true,
                        Err(p) => {
                            panic = Some(p);
                            false
                        }
                    }
                });
                if ready.is_empty() && panic.is_none() {
                    Poll::Pending
                } else {
                    Poll::Ready(ready)
                }
            })
            .await;
            if let Some(p) = panic {
                running.clear();
                resume_unwind(p);
            }
            for w in finished {
                match w {
                    Warmed::Loaded => summary.loaded += 1,
                    Warmed::Cached => summary.already_cached += 1,
                    Warmed::NotFound => summary.not_found += 1,
                    Warmed::Failed => summary.failed += 1,
                }
                done += 1;
                if let Some(p) = self.progress.as_mut() {
                    p(WarmProgress {
                        done,
                        total,
                        failed: summary.failed,
                    });
                }
            }
        }
        summary.elapsed = started.elapsed();
        Ok(summary)
    }
}

#[cfg(feature = "async")]
enum Warmed {
    Loaded,
    Cached,
    NotFound,
    Failed,
}

/// Why a key file could not be read.
///
/// # Example
///
/// ```
/// let err = aside::parse_keys::<u64>("1\nx\n").unwrap_err();
/// assert_eq!(err.to_string(), "line 2: cannot parse \"x\": invalid digit found in string");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read.
    Io(std::io::Error),
    /// A line is not a valid key.
    Parse {
        /// 1-based line number.
        line: usize,
        /// The line, trimmed.
        text: String,
        /// The parser's message.
        reason: String,
    },
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "cannot read the key file: {e}"),
            Self::Parse { line, text, reason } => {
                write!(f, "line {line}: cannot parse {text:?}: {reason}")
            }
        }
    }
}

/// `source()` is the I/O error of [`KeyFileError::Io`] (a parse error's cause is the key
/// type's `FromStr` error, kept as its message).
impl std::error::Error for KeyFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Parse { .. } => None,
        }
    }
}

/// Parses keys, one per line, with `FromStr`. Surrounding whitespace is trimmed; blank lines
/// and lines starting with `#` are skipped.
///
/// # Errors
///
/// [`KeyFileError::Parse`] with the first line that does not parse.
///
/// # Example
///
/// ```
/// let keys: Vec<u64> = aside::parse_keys("# top users\n42\n 7 \n\n1001\n").unwrap();
/// assert_eq!(keys, [42, 7, 1001]);
/// ```
pub fn parse_keys<K>(text: &str) -> Result<Vec<K>, KeyFileError>
where
    K: FromStr,
    K::Err: fmt::Display,
{
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(line, l)| {
            l.parse().map_err(|e: K::Err| KeyFileError::Parse {
                line,
                text: l.to_string(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Reads a file of keys, one per line (see [`parse_keys`]), for instance the most-accessed
/// keys from the query log. Blocking file I/O: call it before serving, or on a blocking
/// thread.
///
/// # Errors
///
/// [`KeyFileError::Io`] when the file cannot be read, [`KeyFileError::Parse`] for a bad line.
///
/// # Example
///
/// ```
/// let path = std::env::temp_dir().join(format!("aside-keys-doc-{}.txt", std::process::id()));
/// std::fs::write(&path, "3\n1\n2\n").unwrap();
/// let keys: Vec<u32> = aside::read_keys(&path).unwrap();
/// assert_eq!(keys, [3, 1, 2]);
/// std::fs::remove_file(&path).unwrap();
/// ```
pub fn read_keys<K>(path: impl AsRef<Path>) -> Result<Vec<K>, KeyFileError>
where
    K: FromStr,
    K::Err: fmt::Display,
{
    let text = std::fs::read_to_string(path).map_err(KeyFileError::Io)?;
    parse_keys(&text)
}
