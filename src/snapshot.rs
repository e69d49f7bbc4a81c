//! Warm restart: write the hottest entries of a cache to a snapshot, read them back at boot
//! (`snapshot` feature).
//!
//! [`Cache::snapshot`] and [`AsideCache::snapshot`](crate::AsideCache::snapshot) write up to
//! [`SnapshotOptions::limit`] entries, the hottest first in the policy's order
//! ([`EvictionPolicy::hottest`]), with or without their values, and the time each has left to
//! live. [`Snapshot::read`] checks a whole snapshot (length, checksum, version) and decodes it
//! before anything is stored; [`Cache::restore`] then inserts its entries, coldest first, so
//! that when they do not all fit the hottest stay. `docs/toolkit.md` (*Warm restart*) has the
//! format and the rules.
//!
//! # Format (version 1)
//!
//! ```text
//! offset  size  field
//! 0       8     magic  b"ASIDESNP"
//! 8       2     format version, u16 little-endian (1)
//! 10      8     entry count, u64 little-endian
//! 18      8     body length in bytes, u64 little-endian
//! 26      n     body: postcard (serde) encoding of { written_at, has_values, entries }
//! 26 + n  4     CRC-32 (IEEE) of bytes 0 .. 26 + n, little-endian
//! ```
//!
//! Each entry is its key, its value (absent in a keys-only snapshot) and its expiry: none, a
//! fixed deadline, or a sliding (time-to-idle) one, with the nanoseconds it had left when the
//! snapshot was taken. `written_at` is the wall-clock time of the snapshot (nanoseconds since
//! the Unix epoch), so that the downtime until a restore counts against every fixed deadline.

use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::io::{self, Read, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Cache;
use crate::engine::expiry::Deadline;
use crate::policy::EvictionPolicy;

const MAGIC: &[u8; 8] = b"ASIDESNP";
/// The format version this build writes and reads.
const VERSION: u16 = 1;
/// Magic, version, entry count, body length.
const HEADER: usize = 8 + 2 + 8 + 8;
const TRAILER: usize = 4;

/// What [`Cache::snapshot`] writes: how many entries, and whether their values.
///
/// # Example
///
/// ```
/// let options = aside::SnapshotOptions::new().limit(10_000).keys_only();
/// assert_eq!(options.max_entries(), 10_000);
/// assert!(!options.with_values());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct SnapshotOptions {
    limit: usize,
    values: bool,
}

impl SnapshotOptions {
    /// Every live entry, with its value.
    ///
    /// # Example
    ///
    /// ```
    /// let options = aside::SnapshotOptions::new();
    /// assert!(options.with_values());
    /// assert_eq!(options.max_entries(), usize::MAX);
    /// ```
    pub fn new() -> Self {
        Self {
            limit: usize::MAX,
            values: true,
        }
    }

    /// At most `n` entries, the hottest (default: all of them).
    ///
    /// # Example
    ///
    /// ```
    /// let options = aside::SnapshotOptions::new().limit(100);
    /// assert_eq!(options.max_entries(), 100);
    /// ```
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = n;
        self
    }

    /// Keys only, no values: a smaller snapshot whose keys are loaded again at boot
    /// ([`AsideCache::restore_keys`](crate::AsideCache)), so nothing stale is served.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(!aside::SnapshotOptions::new().keys_only().with_values());
    /// ```
    pub fn keys_only(mut self) -> Self {
        self.values = false;
        self
    }

    /// The most entries a snapshot with these options holds.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(aside::SnapshotOptions::new().limit(3).max_entries(), 3);
    /// ```
    #[must_use]
    pub fn max_entries(&self) -> usize {
        self.limit
    }

    /// Whether values are written.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(aside::SnapshotOptions::default().with_values());
    /// ```
    #[must_use]
    pub fn with_values(&self) -> bool {
        self.values
    }
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// How a snapshot is restored: the wall-clock time to count the downtime up to.
///
/// # Example
///
/// ```
/// use std::time::SystemTime;
/// let options = aside::RestoreOptions::new().now(SystemTime::UNIX_EPOCH);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct RestoreOptions {
    now: Option<SystemTime>,
}

impl RestoreOptions {
    /// Downtime counted up to `SystemTime::now()` at the restore.
    ///
    /// # Example
    ///
    /// ```
    /// let options = aside::RestoreOptions::new();
    /// # let _ = options;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts the downtime up to `now` instead of the system's wall clock (tests; or the
    /// snapshot's own [`written_at`](Snapshot::written_at), to ignore the downtime).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    /// let options = aside::RestoreOptions::new().now(at);
    /// # let _ = options;
    /// ```
    pub fn now(mut self, now: SystemTime) -> Self {
        self.now = Some(now);
        self
    }
}

/// What a snapshot wrote.
///
/// # Example
///
/// ```
/// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
/// cache.insert(1, 1);
/// let mut bytes = Vec::new();
/// let summary = cache.snapshot(&mut bytes, &aside::SnapshotOptions::new()).unwrap();
/// assert_eq!(summary.entries, 1);
/// assert_eq!(summary.bytes, bytes.len() as u64);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SnapshotSummary {
    /// Entries written.
    pub entries: usize,
    /// Bytes written, header and checksum included.
    pub bytes: u64,
}

/// What a restore did with a snapshot's entries.
///
/// # Example
///
/// ```
/// let s = aside::RestoreSummary::default();
/// assert_eq!(s.restored + s.expired + s.without_value + s.over_capacity, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreSummary {
    /// Entries inserted. (The policy may still reject or evict some of them, as for any
    /// insert, when the cache holds other entries.)
    pub restored: usize,
    /// Entries whose time to live ran out before the restore (downtime included): skipped.
    pub expired: usize,
    /// Entries of a keys-only snapshot, which have no value to insert: skipped (load them
    /// with [`AsideCache::restore_keys`](crate::AsideCache)).
    pub without_value: usize,
    /// The coldest entries beyond the cache's capacity (in entries, without a weigher):
    /// skipped, so that they do not push the hottest out.
    pub over_capacity: usize,
}

/// Why a snapshot could not be written or read. Reading checks the whole snapshot before
/// anything is restored, so a restore that fails with this error has changed nothing.
///
/// # Example
///
/// ```
/// let err = aside::Snapshot::<u32, u32>::read(&b"not a snapshot"[..]).unwrap_err();
/// assert!(matches!(err, aside::SnapshotError::NotASnapshot));
/// assert_eq!(err.to_string(), "not an aside snapshot (wrong magic bytes)");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SnapshotError {
    /// Reading or writing failed.
    Io(io::Error),
    /// The input does not start with the snapshot magic bytes.
    NotASnapshot,
    /// The snapshot was written in a format version this build does not read.
    Version {
        /// The version in the snapshot.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// The snapshot is shorter (truncated) or longer than its header says.
    Length {
        /// Bytes the header announces, checksum included.
        expected: u64,
        /// Bytes read.
        found: u64,
    },
    /// The checksum does not match: the snapshot was corrupted.
    Checksum {
        /// The checksum stored in the snapshot.
        stored: u32,
        /// The checksum of what was read.
        computed: u32,
    },
    /// An intact snapshot whose entries do not decode as this cache's keys and values (it
    /// was written for other types), or whose entry count disagrees with its header.
    Decode(Box<dyn std::error::Error + Send + Sync>),
    /// A key or value could not be serialized.
    Encode(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "snapshot I/O failed: {e}"),
            Self::NotASnapshot => f.write_str("not an aside snapshot (wrong magic bytes)"),
            Self::Version { found, supported } => write!(
                f,
                "snapshot format version {found} is not supported (this build reads {supported})"
            ),
            Self::Length { expected, found } if found < expected => write!(
                f,
                "snapshot truncated: {found} bytes of the {expected} its header announces"
            ),
            Self::Length { expected, found } => write!(
                f,
                "snapshot has {found} bytes where its header announces {expected}"
            ),
            Self::Checksum { stored, computed } => write!(
                f,
                "snapshot corrupted: checksum {computed:#010x}, stored {stored:#010x}"
            ),
            Self::Decode(e) => write!(f, "snapshot entries do not decode: {e}"),
            Self::Encode(e) => write!(f, "cannot serialize a snapshot entry: {e}"),
        }
    }
}

/// `source()` is the I/O error, or the serde (postcard) error of `Decode` and `Encode`.
impl std::error::Error for SnapshotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Decode(e) | Self::Encode(e) => Some(&**e),
            _ => None,
        }
    }
}

impl From<io::Error> for SnapshotError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// How long an entry had to live when the snapshot was taken, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Expiry {
    /// No deadline.
    Never,
    /// A fixed deadline this far away.
    Fixed(u64),
    /// A sliding (time-to-idle) deadline this far away.
    Idle(u64),
}

impl Expiry {
    pub(crate) fn of(deadline: Deadline, now: u64) -> Self {
        match deadline.instant() {
            None => Self::Never,
            Some(at) if deadline.is_sliding() => Self::Idle(at.saturating_sub(now)),
            Some(at) => Self::Fixed(at.saturating_sub(now)),
        }
    }

    /// What is left after `downtime`, or `None` if nothing is.
    fn after(self, downtime: u64) -> Option<Self> {
        match self {
            Self::Never => Some(Self::Never),
            Self::Fixed(left) => (left > downtime).then(|| Self::Fixed(left - downtime)),
            Self::Idle(left) => (left > downtime).then(|| Self::Idle(left - downtime)),
        }
    }
}

/// One entry of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry<K, V> {
    pub(crate) key: K,
    pub(crate) value: Option<V>,
    pub(crate) expiry: Expiry,
}

#[derive(Serialize, Deserialize)]
struct Body<K, V> {
    /// Wall-clock time of the snapshot, nanoseconds since the Unix epoch.
    written_at: u64,
    has_values: bool,
    entries: Vec<Entry<K, V>>,
}

/// A snapshot read and checked in full: its entries, hottest first.
///
/// [`read`](Self::read) validates everything before returning, so a restore from a
/// `Snapshot` never meets a corrupt entry halfway. Restore it with
/// [`Cache::restore_snapshot`], or warm its keys through a loader with
/// [`AsideCache::restore_keys`](crate::AsideCache).
///
/// # Example
///
/// ```
/// let cache: aside::Cache<String, u32> = aside::Cache::new(100);
/// cache.insert("a".into(), 1);
/// let mut bytes = Vec::new();
/// cache.snapshot(&mut bytes, &aside::SnapshotOptions::new().keys_only()).unwrap();
///
/// let snapshot = aside::Snapshot::<String, u32>::read(&bytes[..]).unwrap();
/// assert!(!snapshot.has_values());
/// assert_eq!(snapshot.keys().collect::<Vec<_>>(), ["a"]);
/// ```
pub struct Snapshot<K, V> {
    written_at: SystemTime,
    has_values: bool,
    entries: Vec<Entry<K, V>>,
}

impl<K, V> fmt::Debug for Snapshot<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("written_at", &self.written_at)
            .field("has_values", &self.has_values)
            .field("len", &self.entries.len())
            .finish()
    }
}

impl<K: DeserializeOwned, V: DeserializeOwned> Snapshot<K, V> {
    /// Reads a whole snapshot from `reader` and checks it: magic bytes, format version,
    /// length, checksum, then every entry's decoding. Nothing is returned unless all of it
    /// is sound.
    ///
    /// # Errors
    ///
    /// [`SnapshotError`] naming the first problem: I/O, not a snapshot, an unknown version, a
    /// truncated or overlong input, a checksum mismatch, or entries of other types.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// cache.insert(7, 70);
    /// let mut bytes = Vec::new();
    /// cache.snapshot(&mut bytes, &aside::SnapshotOptions::new()).unwrap();
    ///
    /// assert_eq!(aside::Snapshot::<u32, u32>::read(&bytes[..]).unwrap().len(), 1);
    /// let truncated = &bytes[..bytes.len() - 1];
    /// let err = aside::Snapshot::<u32, u32>::read(truncated).unwrap_err();
    /// assert!(matches!(err, aside::SnapshotError::Length { .. }));
    /// ```
    pub fn read(mut reader: impl Read) -> Result<Self, SnapshotError> {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes)?;
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, SnapshotError> {
        let found = bytes.len() as u64;
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let header_at = |at: usize, n: usize| {
            bytes.get(at..at + n).ok_or(SnapshotError::Length {
                expected: (HEADER + TRAILER) as u64,
                found,
            })
        };
        let version = u16::from_le_bytes(header_at(8, 2)?.try_into().expect("2 bytes"));
        if version != VERSION {
            return Err(SnapshotError::Version {
                found: version,
                supported: VERSION,
            });
        }
        let count = u64::from_le_bytes(header_at(10, 8)?.try_into().expect("8 bytes"));
        let body_len = u64::from_le_bytes(header_at(18, 8)?.try_into().expect("8 bytes"));
        let expected = body_len.saturating_add((HEADER + TRAILER) as u64);
        if found != expected {
            return Err(SnapshotError::Length { expected, found });
        }
        let (data, trailer) = bytes.split_at(bytes.len() - TRAILER);
        let stored = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
        let computed = crc32(data);
        if stored != computed {
            return Err(SnapshotError::Checksum { stored, computed });
        }
        let (body, rest): (Body<K, V>, _) = postcard::take_from_bytes(&data[HEADER..])
            .map_err(|e| SnapshotError::Decode(Box::new(e)))?;
        if !rest.is_empty() {
            return Err(SnapshotError::Decode(
                format!("{} bytes left after the last entry", rest.len()).into(),
            ));
        }
        if body.entries.len() as u64 != count {
            return Err(SnapshotError::Decode(
                format!(
                    "the header announces {count} entries, the body holds {}",
                    body.entries.len()
                )
                .into(),
            ));
        }
        if !body.has_values && body.entries.iter().any(|e| e.value.is_some()) {
            return Err(SnapshotError::Decode(
                "a keys-only snapshot holds a value".into(),
            ));
        }
        Ok(Self {
            written_at: UNIX_EPOCH + Duration::from_nanos(body.written_at),
            has_values: body.has_values,
            entries: body.entries,
        })
    }
}

impl<K, V> Snapshot<K, V> {
    /// The number of entries.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// let mut bytes = Vec::new();
    /// cache.snapshot(&mut bytes, &aside::SnapshotOptions::new()).unwrap();
    /// assert_eq!(aside::Snapshot::<u32, u32>::read(&bytes[..]).unwrap().len(), 0);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the snapshot holds no entry.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// let mut bytes = Vec::new();
    /// cache.snapshot(&mut bytes, &aside::SnapshotOptions::new()).unwrap();
    /// assert!(aside::Snapshot::<u32, u32>::read(&bytes[..]).unwrap().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the entries carry values (`false` for a
    /// [`keys_only`](SnapshotOptions::keys_only) snapshot).
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// let mut bytes = Vec::new();
    /// cache.snapshot(&mut bytes, &aside::SnapshotOptions::new()).unwrap();
    /// assert!(aside::Snapshot::<u32, u32>::read(&bytes[..]).unwrap().has_values());
    /// ```
    #[must_use]
    pub fn has_values(&self) -> bool {
        self.has_values
    }

    /// The wall-clock time the snapshot was taken.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// let mut bytes = Vec::new();
    /// cache.snapshot(&mut bytes, &aside::SnapshotOptions::new()).unwrap();
    /// let snapshot = aside::Snapshot::<u32, u32>::read(&bytes[..]).unwrap();
    /// assert!(snapshot.written_at() <= std::time::SystemTime::now());
    /// ```
    #[must_use]
    pub fn written_at(&self) -> SystemTime {
        self.written_at
    }

    /// The keys, hottest first.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::{Cache, policy::Lru};
    /// let cache: Cache<u32, u32, Lru> =
    ///     Cache::builder().policy(Lru::new()).shards(1).build().unwrap();
    /// cache.insert(1, 1);
    /// cache.insert(2, 2);
    /// let mut bytes = Vec::new();
    /// cache.snapshot(&mut bytes, &aside::SnapshotOptions::new()).unwrap();
    /// let snapshot = aside::Snapshot::<u32, u32>::read(&bytes[..]).unwrap();
    /// assert_eq!(snapshot.keys().copied().collect::<Vec<_>>(), [2, 1]); // most recent first
    /// ```
    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.entries.iter().map(|e| &e.key)
    }

    /// The keys, hottest first, dropping the rest.
    ///
    /// # Example
    ///
    /// ```
    /// let cache: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// cache.insert(1, 1);
    /// let mut bytes = Vec::new();
    /// cache.snapshot(&mut bytes, &aside::SnapshotOptions::new()).unwrap();
    /// let snapshot = aside::Snapshot::<u32, u32>::read(&bytes[..]).unwrap();
    /// assert_eq!(snapshot.into_keys(), [1]);
    /// ```
    #[must_use]
    pub fn into_keys(self) -> Vec<K> {
        self.entries.into_iter().map(|e| e.key).collect()
    }

    /// The entries still alive at the restore time `options` gives (the downtime since
    /// [`written_at`](Self::written_at) counted against each deadline), coldest first and
    /// at most `capacity` of them, hottest kept; and the summary of what was skipped.
    pub(crate) fn plan(
        self,
        options: &RestoreOptions,
        capacity: Option<usize>,
    ) -> (Vec<(K, V, Expiry)>, RestoreSummary) {
        let now = options.now.unwrap_or_else(SystemTime::now);
        let downtime = now
            .duration_since(self.written_at)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let mut summary = RestoreSummary::default();
        let mut live = Vec::with_capacity(self.entries.len());
        for e in self.entries {
            let Some(value) = e.value else {
                summary.without_value += 1;
                continue;
            };
            match e.expiry.after(downtime) {
                Some(expiry) => live.push((e.key, value, expiry)),
                None => summary.expired += 1,
            }
        }
        if let Some(capacity) = capacity.filter(|&c| live.len() > c) {
            summary.over_capacity = live.len() - capacity;
            live.truncate(capacity);
        }
        live.reverse();
        summary.restored = live.len();
        (live, summary)
    }
}

/// Encodes `entries` (hottest first) as a snapshot and writes it; returns its summary.
pub(crate) fn write_snapshot<K: Serialize, V: Serialize>(
    mut writer: impl Write,
    has_values: bool,
    entries: Vec<Entry<K, V>>,
) -> Result<SnapshotSummary, SnapshotError> {
    let written_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let count = entries.len();
    let body = Body {
        written_at,
        has_values,
        entries,
    };
    let mut bytes = Vec::with_capacity(HEADER + 64);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&(count as u64).to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes()); // the body's length, set below
    let mut bytes =
        postcard::to_extend(&body, bytes).map_err(|e| SnapshotError::Encode(Box::new(e)))?;
    let body_len = (bytes.len() - HEADER) as u64;
    bytes[18..HEADER].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    writer.write_all(&bytes)?;
    writer.flush()?;
    Ok(SnapshotSummary {
        entries: count,
        bytes: bytes.len() as u64,
    })
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), as zlib and PNG compute it.
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |c, &b| {
        TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

impl<K, V, P, S> Cache<K, V, P, S>
where
    K: Hash + Eq + Clone,
    V: Clone,
    P: EvictionPolicy,
    S: BuildHasher,
{
    /// Writes up to [`options.limit`](SnapshotOptions::limit) live entries to `writer`, the
    /// hottest first in the policy's order, with their values (unless
    /// [`keys_only`](SnapshotOptions::keys_only)) and the time each has left to live; see the
    /// module docs of [`Snapshot`] for the format.
    ///
    /// Each shard gives a share of the limit proportional to its size, its hottest entries
    /// in its policy's order ([`EvictionPolicy::hottest`]), merged by relative rank: across
    /// shards the result approximates the hottest entries of the whole cache. Keys and values
    /// are cloned under each shard's lock a batch at a time; serialization (user code) runs
    /// after every lock is released. The snapshot is weakly consistent, like
    /// [`iter`](Self::iter); it records no hit and changes no entry.
    ///
    /// # Errors
    ///
    /// [`SnapshotError::Encode`] if a key or value fails to serialize,
    /// [`SnapshotError::Io`] if writing fails. The cache is unchanged either way.
    ///
    /// # Panics
    ///
    /// A panic in a key's or value's `Clone` or `Serialize` propagates; the cache is unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::{Cache, SnapshotOptions};
    ///
    /// let cache: Cache<u64, String> = Cache::new(1_000);
    /// cache.insert(1, "one".into());
    /// let path = std::env::temp_dir().join(format!("aside-doc-{}.snap", std::process::id()));
    /// let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    /// cache.snapshot(file, &SnapshotOptions::new().limit(100))?;
    ///
    /// // ... restart ...
    /// let fresh: Cache<u64, String> = Cache::new(1_000);
    /// let summary = fresh.restore(std::fs::File::open(&path)?)?;
    /// assert_eq!(summary.restored, 1);
    /// assert_eq!(fresh.get(&1).as_deref(), Some("one"));
    /// std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn snapshot(
        &self,
        writer: impl Write,
        options: &SnapshotOptions,
    ) -> Result<SnapshotSummary, SnapshotError>
    where
        K: Serialize,
        V: Serialize,
    {
        let values = options.values;
        let (copies, now) = self.hottest_copies(options.limit, |k, v| {
            Some((k.clone(), values.then(|| v.clone())))
        });
        let entries = copies
            .into_iter()
            .map(|((key, value), deadline)| Entry {
                key,
                value,
                expiry: Expiry::of(deadline, now),
            })
            .collect();
        write_snapshot(writer, values, entries)
    }

    /// Reads a snapshot from `reader`, checks all of it, then inserts its entries: see
    /// [`restore_snapshot`](Self::restore_snapshot), with the downtime counted up to now.
    ///
    /// # Errors
    ///
    /// [`SnapshotError`] if the snapshot cannot be read or is not intact; the cache is then
    /// unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// let old: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// old.insert(1, 10);
    /// let mut bytes = Vec::new();
    /// old.snapshot(&mut bytes, &aside::SnapshotOptions::new()).unwrap();
    ///
    /// let new: aside::Cache<u32, u32> = aside::Cache::new(10);
    /// new.insert(2, 20);
    /// bytes[30] ^= 1; // corrupted
    /// assert!(new.restore(&bytes[..]).is_err());
    /// assert_eq!((new.len(), new.get(&2)), (1, Some(20))); // nothing lost
    /// ```
    pub fn restore(&self, reader: impl Read) -> Result<RestoreSummary, SnapshotError>
    where
        K: DeserializeOwned,
        V: DeserializeOwned,
    {
        let snapshot = Snapshot::read(reader)?;
        Ok(self.restore_snapshot(snapshot, &RestoreOptions::new()))
    }

    /// Inserts the entries of a checked snapshot, coldest first, so that the hottest are the
    /// most recent inserts and survive if not all fit.
    ///
    /// - **Time to live**: an entry with a fixed deadline gets what it had left at the
    ///   snapshot less the downtime (from [`Snapshot::written_at`] to
    ///   [`RestoreOptions::now`], wall clock), as a per-entry TTL (the cache's jitter
    ///   applies); one whose time ran out is skipped. An entry with a sliding (time-to-idle)
    ///   deadline is skipped if it sat idle past it, else restored with the cache's own
    ///   expiry settings, as is an entry without a deadline.
    /// - **Capacity**: without a weigher, only the hottest `capacity` entries are inserted
    ///   (the rest are counted in [`RestoreSummary::over_capacity`]); with one, all are, and
    ///   the policy evicts as for any insert.
    /// - Entries of a keys-only snapshot have nothing to insert (see
    ///   [`AsideCache::restore_keys`](crate::AsideCache)).
    ///
    /// Existing entries stay, unless a restored key replaces them or the policy evicts them
    /// for room. Inserts are ordinary inserts: the listener sees what they replace or evict.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::{Cache, MockClock, RestoreOptions, Snapshot, SnapshotOptions};
    /// use std::time::Duration;
    ///
    /// let clock = MockClock::new();
    /// let old: Cache<u32, u32> = Cache::builder().clock(clock.clone()).build().unwrap();
    /// old.insert_with_ttl(1, 10, Duration::from_secs(60));
    /// let mut bytes = Vec::new();
    /// old.snapshot(&mut bytes, &SnapshotOptions::new()).unwrap();
    ///
    /// let snapshot = Snapshot::<u32, u32>::read(&bytes[..]).unwrap();
    /// let ten_seconds_later = snapshot.written_at() + Duration::from_secs(10);
    /// let new: Cache<u32, u32> = Cache::builder().clock(clock.clone()).build().unwrap();
    /// new.restore_snapshot(snapshot, &RestoreOptions::new().now(ten_seconds_later));
    /// clock.advance(Duration::from_secs(49));
    /// assert_eq!(new.get(&1), Some(10));
    /// clock.advance(Duration::from_secs(1)); // 60 s after the snapshot, downtime included
    /// assert_eq!(new.get(&1), None);
    /// ```
    pub fn restore_snapshot(
        &self,
        snapshot: Snapshot<K, V>,
        options: &RestoreOptions,
    ) -> RestoreSummary {
        let capacity =
            (!self.has_weigher()).then(|| usize::try_from(self.capacity()).unwrap_or(usize::MAX));
        let (entries, summary) = snapshot.plan(options, capacity);
        for (key, value, expiry) in entries {
            match expiry {
                Expiry::Fixed(left) => self.insert_with_ttl(key, value, Duration::from_nanos(left)),
                Expiry::Idle(_) | Expiry::Never => self.insert(key, value),
            }
        }
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn expiry_counts_the_downtime() {
        assert_eq!(Expiry::Fixed(10).after(3), Some(Expiry::Fixed(7)));
        assert_eq!(Expiry::Fixed(10).after(10), None);
        assert_eq!(Expiry::Idle(10).after(11), None);
        assert_eq!(Expiry::Never.after(u64::MAX), Some(Expiry::Never));
    }
}
