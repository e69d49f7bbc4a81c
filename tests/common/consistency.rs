//! The consistency harness shared by `tests/consistency.rs` (every combination, briefly) and
//! `examples/consistency.rs` (the same combinations, longer). Included with `#[path]`.
//!
//! Readers `get_or_load` versioned rows from a real SQLite database (`rows(id INTEGER PRIMARY
//! KEY, version INTEGER)`, a temporary file in WAL mode, one connection per thread) while
//! writers bump a row's version in SQLite and then invalidate the key (by key, tag or
//! namespace) or store the new version (`put`, write-through, write-behind).
//!
//! **The criterion.** A read is *stale* when it returns a version older than one whose
//! invalidation (or `put`) had *returned* before the read *began*. Per key, the writer stores
//! the version it wrote into `published` once its invalidation has returned; a reader loads
//! `published` before calling the front door; a result older than that snapshot is stale.
//! "Not found" (negative caching: some versions delete the row) is stale when no deleting
//! version lies between the snapshot and the newest version a writer had begun when the read
//! returned.

#![allow(dead_code)] // each includer uses its own part

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aside::WriteBehind;
use aside::{AsideCache, Labels, LoadError, RefreshMode};
use parking_lot::{Mutex, MutexGuard};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, OptionalExtension};

/// Rows (and cache keys) `0..KEYS`: few, so that readers and writers collide on them.
pub const KEYS: u64 = 8;
/// Keys per tag or namespace group: `key / GROUP` names the group, so both writers (who own
/// the even and the odd keys) invalidate every group.
const GROUP: u64 = 4;
/// With deletions on, every version divisible by this deletes the row instead of updating it.
const DELETE_EVERY: u64 = 4;
/// With injected errors on, one load in this many fails.
const FAIL_EVERY: u32 = 4;

/// The front-door settings of one family of combinations.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: &'static str,
    /// The fresh period: short, so that values expire during the run.
    pub ttl: Duration,
    /// `xfetch_beta(beta)`, or `no_xfetch()` when `None`.
    pub xfetch: Option<f64>,
    /// `refresh_after(0.5)` with this mode.
    pub refresh: Option<RefreshMode>,
    /// `negative_ttl`, and writers that sometimes delete the row.
    pub negative: bool,
    /// `fail_safe(FailSafe::new(grace).retry_interval(retry))`.
    pub fail_safe: bool,
    /// `soft_timeout` (async, with fail-safe).
    pub soft_timeout: bool,
    /// Loaders fail one time in `FAIL_EVERY`.
    pub errors: bool,
}

impl Profile {
    const fn base(name: &'static str) -> Self {
        Self {
            name,
            ttl: Duration::from_millis(2),
            xfetch: None,
            refresh: None,
            negative: false,
            fail_safe: false,
            soft_timeout: false,
            errors: false,
        }
    }

    /// TTL only (XFetch off).
    pub const fn no_xfetch() -> Self {
        Self::base("no-xfetch")
    }

    /// The control: nothing expires during the run (a one-hour TTL, XFetch off).
    pub const fn no_expiry() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            ..Self::base("no-expiry")
        }
    }

    /// XFetch with a large beta, so that early refreshes are frequent.
    pub const fn xfetch() -> Self {
        Self {
            xfetch: Some(8.0),
            ..Self::base("xfetch")
        }
    }

    /// `refresh_after(0.5)`, refreshed in the background.
    pub const fn refresh_background() -> Self {
        Self {
            refresh: Some(RefreshMode::Background),
            ..Self::base("refresh-bg")
        }
    }

    /// `refresh_after(0.5)`, refreshed by the caller.
    pub const fn refresh_caller() -> Self {
        Self {
            refresh: Some(RefreshMode::Caller),
            ..Self::base("refresh-caller")
        }
    }

    /// `negative_ttl`, with rows deleted and re-created.
    pub const fn negative() -> Self {
        Self {
            negative: true,
            ..Self::base("negative")
        }
    }

    /// Failing loaders without fail-safe: the errors reach the callers.
    pub const fn errors() -> Self {
        Self {
            errors: true,
            ..Self::base("errors")
        }
    }

    /// Everything but fail-safe: XFetch, background refresh, negative caching, failing loaders.
    pub const fn combined() -> Self {
        Self {
            xfetch: Some(8.0),
            refresh: Some(RefreshMode::Background),
            negative: true,
            errors: true,
            ..Self::base("combined")
        }
    }

    /// Fail-safe with failing loaders.
    pub const fn fail_safe() -> Self {
        Self {
            fail_safe: true,
            errors: true,
            ..Self::base("fail-safe")
        }
    }

    /// Fail-safe with everything else: XFetch, caller refresh, negative caching, soft timeout.
    pub const fn fail_safe_combined() -> Self {
        Self {
            xfetch: Some(8.0),
            refresh: Some(RefreshMode::Caller),
            negative: true,
            fail_safe: true,
            soft_timeout: true,
            errors: true,
            ..Self::base("fail-safe-combined")
        }
    }

    /// Every profile, in table order.
    pub fn all() -> Vec<Self> {
        vec![
            Self::no_expiry(),
            Self::no_xfetch(),
            Self::xfetch(),
            Self::refresh_background(),
            Self::refresh_caller(),
            Self::negative(),
            Self::errors(),
            Self::combined(),
            Self::fail_safe(),
            Self::fail_safe_combined(),
        ]
    }
}

/// How readers call the front door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `get_or_load_blocking` (or `_labelled_blocking`) on threads.
    Blocking,
    /// `get_or_load` (or `_labelled`) on a multi-thread tokio runtime.
    Async,
    /// `get_or_load_many` (or `_many_labelled`) of three keys of one group, on tokio.
    Batch,
}

/// What writers do after (or instead of) writing the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// Update the row, then `invalidate(&key)`.
    Invalidate,
    /// Update the row, then `put(key, version)` (`invalidate` when the version deletes it).
    Put,
    /// Update the row, then `invalidate_tag` of the writer's own tag, which every key it owns
    /// carries (readers use labelled calls).
    Tag,
    /// Update the row, then `invalidate_tag` of its group's tag, which keys of both writers
    /// carry: two invalidations of one tag race.
    SharedTag,
    /// Update the row, then `invalidate_namespace` of its group (readers use labelled calls).
    Namespace,
    /// `write_through(key, version, sink)` whose sink updates the row (async only).
    WriteThrough,
    /// `WriteBehind::write(key, version)`; the flusher updates the rows (async only; never
    /// deletes).
    WriteBehind,
}

impl Writer {
    pub const ALL: [Self; 7] = [
        Self::Invalidate,
        Self::Put,
        Self::Tag,
        Self::SharedTag,
        Self::Namespace,
        Self::WriteThrough,
        Self::WriteBehind,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Invalidate => "invalidate",
            Self::Put => "put",
            Self::Tag => "tag",
            Self::SharedTag => "shared-tag",
            Self::Namespace => "namespace",
            Self::WriteThrough => "write-through",
            Self::WriteBehind => "write-behind",
        }
    }

    fn is_async_only(self) -> bool {
        matches!(self, Self::WriteThrough | Self::WriteBehind)
    }
}

/// One combination: front-door settings, read API, write path.
#[derive(Debug, Clone)]
pub struct Combo {
    pub profile: Profile,
    pub api: Api,
    pub writer: Writer,
}

impl Combo {
    pub fn new(profile: Profile, api: Api, writer: Writer) -> Self {
        Self {
            profile,
            api,
            writer,
        }
    }

    pub fn name(&self) -> String {
        let api = match self.api {
            Api::Blocking => "blocking",
            Api::Async => "async",
            Api::Batch => "batch",
        };
        format!("{} / {api} / {}", self.profile.name, self.writer.name())
    }

    /// Whether writers of this combination delete rows.
    fn deletes(&self) -> bool {
        self.profile.negative && self.writer != Writer::WriteBehind
    }

    /// Every valid combination of `profiles`: write-through and write-behind are async.
    pub fn all(profiles: &[Profile]) -> Vec<Self> {
        let mut all = Vec::new();
        for p in profiles {
            for api in [Api::Blocking, Api::Async, Api::Batch] {
                for w in Writer::ALL {
                    if api == Api::Blocking && w.is_async_only() {
                        continue;
                    }
                    all.push(Self::new(p.clone(), api, w));
                }
            }
        }
        all
    }
}

/// How much work one combination does. Writers do `writes_per_writer` writes, pausing a random
/// 0 to 1 TTL (at most 2 ms) between two (so that some values expire and linger in fail-safe's grace before
/// their row changes, and others are invalidated while fresh); readers read until the writers
/// are done, at least `min_reads_per_reader` and at most `max_reads_per_reader` times (the
/// writers stop early if every reader reaches its maximum).
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub readers: usize,
    /// Each writer owns the keys `k` with `k % writers` its index.
    pub writers: usize,
    pub min_reads_per_reader: u64,
    pub max_reads_per_reader: u64,
    pub writes_per_writer: u64,
}

/// What one combination measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub name: String,
    pub reads: u64,
    pub stale: u64,
    /// Reads that returned an error (injected loader failures without a stale value).
    pub errors: u64,
    /// Loader calls (`load_stats().loads`).
    pub loads: u64,
    pub writes: u64,
    pub elapsed: Duration,
    /// The first stale reads, described.
    pub examples: Vec<String>,
}

impl Report {
    pub fn header() -> String {
        format!(
            "{:<44} {:>10} {:>7} {:>9} {:>9} {:>8} {:>8}",
            "combination", "reads", "stale", "loads", "errors", "writes", "ms"
        )
    }

    pub fn row(&self) -> String {
        format!(
            "{:<44} {:>10} {:>7} {:>9} {:>9} {:>8} {:>8}",
            self.name,
            self.reads,
            self.stale,
            self.loads,
            self.errors,
            self.writes,
            self.elapsed.as_millis()
        )
    }
}

/// The injected loader failure.
#[derive(Debug)]
pub struct Injected;

/// The database: a temporary SQLite file in WAL mode and a pool of connections.
pub struct Db {
    path: PathBuf,
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Db {
    fn create(size: usize) -> Self {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "aside-consistency-{}-{}.db",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        remove_db_files(&path);
        let open = || {
            let conn = Connection::open(&path).expect("open the SQLite file");
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            conn.pragma_update(None, "synchronous", "OFF").unwrap();
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            conn
        };
        let first = open();
        first
            .execute_batch("CREATE TABLE rows(id INTEGER PRIMARY KEY, version INTEGER NOT NULL)")
            .unwrap();
        for id in 0..KEYS {
            first
                .execute("INSERT INTO rows VALUES (?1, 1)", [id])
                .unwrap();
        }
        let mut conns = vec![Mutex::new(first)];
        conns.extend((1..size).map(|_| Mutex::new(open())));
        Self {
            path,
            conns,
            next: AtomicUsize::new(0),
        }
    }

    /// A free connection (or waits for one).
    fn conn(&self) -> MutexGuard<'_, Connection> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.conns.len();
        (0..n)
            .find_map(|i| self.conns[(start + i) % n].try_lock())
            .unwrap_or_else(|| self.conns[start % n].lock())
    }

    /// `SELECT version FROM rows WHERE id = ?`.
    pub fn read(&self, id: u64) -> Option<u64> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT version FROM rows WHERE id = ?1")
            .unwrap();
        stmt.query_row([id], |r| r.get(0)).optional().unwrap()
    }

    /// `SELECT id, version FROM rows WHERE id IN (...)`: one query.
    pub fn read_many(&self, ids: &[u64]) -> HashMap<u64, u64> {
        let list: Vec<String> = ids.iter().map(u64::to_string).collect();
        let sql = format!(
            "SELECT id, version FROM rows WHERE id IN ({})",
            list.join(",")
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql).unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Writes version `version` of row `id`: deletes it, or upserts it (never moving a row's
    /// version back, so that a resent write-behind batch is harmless).
    pub fn write(&self, id: u64, version: u64, delete: bool) {
        let conn = self.conn();
        if delete {
            conn.prepare_cached("DELETE FROM rows WHERE id = ?1")
                .unwrap()
                .execute([id])
                .unwrap();
        } else {
            conn.prepare_cached(
                "INSERT INTO rows VALUES (?1, ?2) \
                 ON CONFLICT(id) DO UPDATE SET version = max(version, excluded.version)",
            )
            .unwrap()
            .execute([id, version])
            .unwrap();
        }
    }

    fn write_batch(&self, batch: &[(u64, u64)]) {
        let mut conn = self.conn();
        let tx = conn.transaction().unwrap();
        for &(id, version) in batch {
            tx.execute(
                "INSERT INTO rows VALUES (?1, ?2) \
                 ON CONFLICT(id) DO UPDATE SET version = max(version, excluded.version)",
                [id, version],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        self.conns.clear(); // close every connection before removing the files
        remove_db_files(&self.path);
    }
}

fn remove_db_files(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// Per-key versions: `begun` is stored before the row is written, `published` after the
/// invalidation (or put) returned.
#[derive(Default)]
struct Versions {
    begun: AtomicU64,
    published: AtomicU64,
}

/// Everything the readers and writers of one combination share.
struct World {
    combo: Combo,
    writers: usize,
    cache: AsideCache<u64, u64>,
    db: Db,
    keys: Vec<Versions>,
    /// Per key: the labels of single-key reads (tag and namespace writers).
    labels: Vec<Labels>,
    /// Per group: the labels of batch reads (three keys of the group).
    batch_labels: Vec<Labels>,
    /// Readers that reached their maximum, writers that finished.
    readers_done: AtomicUsize,
    writers_done: AtomicUsize,
    reads: AtomicU64,
    stale: AtomicU64,
    errors: AtomicU64,
    writes: AtomicU64,
    examples: Mutex<Vec<String>>,
}

fn group(key: u64) -> u64 {
    key / GROUP
}

fn group_name(g: u64) -> String {
    format!("group:{g}")
}

/// The tag of writer `w`'s keys (`Writer::Tag`).
fn owner_tag(w: usize) -> String {
    format!("writer:{w}")
}

impl World {
    fn new(combo: &Combo, scale: &Scale) -> Self {
        let p = &combo.profile;
        let mut b = AsideCache::builder()
            .max_capacity(1024)
            .time_to_live(p.ttl)
            .lease(Duration::from_secs(30));
        b = match p.xfetch {
            Some(beta) => b.xfetch_beta(beta),
            None => b.no_xfetch(),
        };
        if let Some(mode) = p.refresh {
            b = b.refresh_after(0.5).refresh_mode(mode);
        }
        if p.negative {
            b = b.negative_ttl(p.ttl / 2);
        }
        if p.fail_safe {
            b = b.fail_safe(aside::FailSafe::new(p.ttl * 10).retry_interval(p.ttl / 4));
        }
        if p.soft_timeout {
            b = b.soft_timeout(Duration::from_micros(100));
        }
        let cache = b.build().expect("valid settings");
        let of_group = |g: u64| match combo.writer {
            Writer::SharedTag => Labels::new().tag(&group_name(g)),
            Writer::Namespace => Labels::new().namespace(&cache.namespace(&group_name(g))),
            _ => Labels::new(),
        };
        let labels = (0..KEYS)
            .map(|k| match combo.writer {
                Writer::Tag => Labels::new().tag(&owner_tag(k as usize % scale.writers)),
                _ => of_group(group(k)),
            })
            .collect();
        // A batch's keys belong to one group but to both writers.
        let batch_labels = (0..KEYS / GROUP)
            .map(|g| match combo.writer {
                Writer::Tag => (0..scale.writers).fold(Labels::new(), |l, w| l.tag(&owner_tag(w))),
                _ => of_group(g),
            })
            .collect();
        let keys = (0..KEYS)
            .map(|_| Versions {
                begun: AtomicU64::new(1),
                published: AtomicU64::new(1),
            })
            .collect();
        Self {
            combo: combo.clone(),
            writers: scale.writers,
            cache,
            db: Db::create(scale.readers + scale.writers + 2),
            keys,
            labels,
            batch_labels,
            readers_done: AtomicUsize::new(0),
            writers_done: AtomicUsize::new(0),
            reads: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            examples: Mutex::new(Vec::new()),
        }
    }

    fn labelled(&self) -> bool {
        matches!(
            self.combo.writer,
            Writer::Tag | Writer::SharedTag | Writer::Namespace
        )
    }

    fn deleted(&self, version: u64) -> bool {
        self.combo.deletes() && version % DELETE_EVERY == 0
    }

    /// Whether a loader call fails (injected).
    fn fails(&self) -> bool {
        self.combo.profile.errors && rand::rng().random_ratio(1, FAIL_EVERY)
    }

    fn load_one(&self, key: u64) -> Result<Option<u64>, Injected> {
        if self.fails() {
            return Err(Injected);
        }
        Ok(self.db.read(key))
    }

    fn load_many(&self, keys: &[u64]) -> Result<HashMap<u64, u64>, Injected> {
        if self.fails() {
            return Err(Injected);
        }
        Ok(self.db.read_many(keys))
    }

    fn snapshot(&self, key: u64) -> u64 {
        self.keys[key as usize].published.load(Ordering::SeqCst)
    }

    /// Judges one read of `key` that began after `snapshot` was taken.
    fn judge(&self, key: u64, snapshot: u64, got: Option<u64>) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let newest = self.keys[key as usize].begun.load(Ordering::SeqCst);
        let stale = match got {
            Some(v) => {
                assert!(v <= newest, "key {key}: read {v}, newer than any write");
                v < snapshot
            }
            // A deleting version in [snapshot, newest]? (`newest / n * n` is the last one.)
            None => !(self.combo.deletes() && newest / DELETE_EVERY * DELETE_EVERY >= snapshot),
        };
        if stale {
            self.stale.fetch_add(1, Ordering::Relaxed);
            let mut ex = self.examples.lock();
            if ex.len() < 5 {
                ex.push(format!(
                    "key {key}: read {got:?} after version {snapshot} was published \
                     (newest begun by the end of the read: {newest})"
                ));
            }
        }
    }

    fn judge_result<E: std::fmt::Debug>(
        &self,
        key: u64,
        snapshot: u64,
        r: Result<Option<u64>, LoadError<E>>,
    ) {
        match r {
            Ok(got) => self.judge(key, snapshot, got),
            Err(LoadError::Loader(_)) => {
                self.reads.fetch_add(1, Ordering::Relaxed);
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("{}: key {key}: unexpected {e:?}", self.combo.name()),
        }
    }

    /// Three distinct keys of one group.
    fn batch_keys(rng: &mut SmallRng) -> Vec<u64> {
        let g = rng.random_range(0..KEYS / GROUP);
        let skip = rng.random_range(0..GROUP);
        (0..GROUP)
            .filter(|&i| i != skip)
            .map(|i| g * GROUP + i)
            .collect()
    }

    /// Whether a reader that has read `done` times goes on.
    fn reader_goes_on(&self, done: u64, scale: &Scale) -> bool {
        done < scale.min_reads_per_reader
            || (done < scale.max_reads_per_reader
                && self.writers_done.load(Ordering::Acquire) < scale.writers)
    }

    /// Whether a writer goes on (the bound on its loop is `writes_per_writer`).
    fn writer_goes_on(&self, scale: &Scale) -> bool {
        self.readers_done.load(Ordering::Acquire) < scale.readers
    }

    /// The pause after a write: 0 to 1 TTL (at most 2 ms).
    fn pause(&self, rng: &mut SmallRng) -> Duration {
        let ttl = self.combo.profile.ttl.min(Duration::from_millis(2));
        Duration::from_micros(rng.random_range(0..=ttl.as_micros() as u64))
    }

    /// The keys writer `w` owns.
    fn owned(scale: &Scale, w: usize) -> Vec<u64> {
        (0..KEYS)
            .filter(|k| *k as usize % scale.writers == w)
            .collect()
    }

    /// The next version of `key` for its owning writer; stored in `begun` before the row is
    /// written.
    fn begin(&self, key: u64) -> u64 {
        let v = self.keys[key as usize].begun.load(Ordering::SeqCst) + 1;
        self.keys[key as usize].begun.store(v, Ordering::SeqCst);
        v
    }

    fn publish(&self, key: u64, version: u64) {
        self.keys[key as usize]
            .published
            .store(version, Ordering::SeqCst);
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// The blocking write paths (`Invalidate`, `Put`, `Tag`, `Namespace`).
    fn write_blocking(&self, key: u64) {
        let v = self.begin(key);
        let delete = self.deleted(v);
        self.db.write(key, v, delete);
        match self.combo.writer {
            Writer::Invalidate => self.cache.invalidate(&key),
            Writer::Put if delete => self.cache.invalidate(&key),
            Writer::Put => self.cache.put(key, v),
            Writer::Tag => self
                .cache
                .invalidate_tag(&owner_tag(key as usize % self.writers)),
            Writer::SharedTag => self.cache.invalidate_tag(&group_name(group(key))),
            Writer::Namespace => self.cache.invalidate_namespace(&group_name(group(key))),
            Writer::WriteThrough | Writer::WriteBehind => unreachable!("async write paths"),
        }
        self.publish(key, v);
    }

    fn report(&self, started: Instant) -> Report {
        Report {
            name: self.combo.name(),
            reads: self.reads.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            loads: self.cache.load_stats().loads,
            writes: self.writes.load(Ordering::Relaxed),
            elapsed: started.elapsed(),
            examples: self.examples.lock().clone(),
        }
    }
}

/// Runs one combination and reports what it measured.
pub fn run(combo: &Combo, scale: &Scale) -> Report {
    let world = Arc::new(World::new(combo, scale));
    let started = Instant::now();
    match combo.api {
        Api::Blocking => run_blocking(&world, scale),
        Api::Async | Api::Batch => run_async(&world, scale),
    }
    assert_eq!(
        world.cache.in_flight(),
        0,
        "{}: a load left in flight",
        combo.name()
    );
    world.cache.validate().unwrap();
    world.report(started)
}

fn run_blocking(world: &Arc<World>, scale: &Scale) {
    std::thread::scope(|s| {
        for r in 0..scale.readers {
            s.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(r as u64);
                let mut done = 0;
                while world.reader_goes_on(done, scale) {
                    done += 1;
                    let key = rng.random_range(0..KEYS);
                    let snapshot = world.snapshot(key);
                    let load = || world.load_one(key);
                    let got = if world.labelled() {
                        let labels = &world.labels[key as usize];
                        world.cache.get_or_load_labelled_blocking(key, labels, load)
                    } else {
                        world.cache.get_or_load_blocking(key, load)
                    };
                    world.judge_result(key, snapshot, got);
                }
                world.readers_done.fetch_add(1, Ordering::Release);
            });
        }
        for w in 0..scale.writers {
            s.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(100 + w as u64);
                let owned = World::owned(scale, w);
                for i in 0..scale.writes_per_writer {
                    if !world.writer_goes_on(scale) {
                        break;
                    }
                    world.write_blocking(owned[i as usize % owned.len()]);
                    // Pacing only: no outcome depends on it.
                    std::thread::sleep(world.pause(&mut rng));
                }
                world.writers_done.fetch_add(1, Ordering::Release);
            });
        }
    });
}

fn run_async(world: &Arc<World>, scale: &Scale) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let behind = (world.combo.writer == Writer::WriteBehind).then(|| {
            let db = Arc::clone(world);
            let sink = move |batch: Vec<(u64, u64)>| {
                let db = Arc::clone(&db);
                async move {
                    db.db.write_batch(&batch);
                    Ok::<_, Infallible>(())
                }
            };
            Arc::new(
                WriteBehind::builder(world.cache.clone(), sink)
                    .interval(Duration::from_millis(1))
                    .build()
                    .unwrap(),
            )
        });
        let mut tasks = Vec::new();
        for r in 0..scale.readers {
            let world = Arc::clone(world);
            let scale = *scale;
            tasks.push(tokio::spawn(async move {
                let mut rng = SmallRng::seed_from_u64(r as u64);
                let mut done = 0;
                while world.reader_goes_on(done, &scale) {
                    done += 1;
                    if world.combo.api == Api::Batch {
                        read_batch(&world, &mut rng).await;
                    } else {
                        read_one(&world, &mut rng).await;
                    }
                    tokio::task::yield_now().await;
                }
                world.readers_done.fetch_add(1, Ordering::Release);
            }));
        }
        for w in 0..scale.writers {
            let world = Arc::clone(world);
            let scale = *scale;
            let behind = behind.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = SmallRng::seed_from_u64(100 + w as u64);
                let owned = World::owned(&scale, w);
                for i in 0..scale.writes_per_writer {
                    if !world.writer_goes_on(&scale) {
                        break;
                    }
                    let key = owned[i as usize % owned.len()];
                    match world.combo.writer {
                        Writer::WriteThrough => write_through(&world, key).await,
                        Writer::WriteBehind => {
                            let v = world.begin(key);
                            let wb = behind.as_ref().expect("built for write-behind");
                            wb.write(key, v).await.unwrap();
                            world.publish(key, v);
                        }
                        _ => world.write_blocking(key),
                    }
                    // Pacing only: no outcome depends on it.
                    tokio::time::sleep(world.pause(&mut rng)).await;
                }
                world.writers_done.fetch_add(1, Ordering::Release);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        if let Some(wb) = behind {
            wb.shutdown().await.unwrap();
        }
        // Background refreshes spawned by the last reads finish within a few loads.
        for _ in 0..10_000 {
            if world.cache.in_flight() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
    });
}

async fn write_through(world: &Arc<World>, key: u64) {
    let v = world.begin(key);
    if world.deleted(v) {
        world.db.write(key, v, true);
        world.cache.invalidate(&key);
    } else {
        let db = Arc::clone(world);
        world
            .cache
            .write_through(key, v, |k, v| async move {
                db.db.write(k, v, false);
                Ok::<_, Infallible>(())
            })
            .await
            .unwrap();
    }
    world.publish(key, v);
}

async fn read_one(world: &Arc<World>, rng: &mut SmallRng) {
    let key = rng.random_range(0..KEYS);
    let snapshot = world.snapshot(key);
    let w = Arc::clone(world);
    // SQLite blocks: the query runs on tokio's blocking pool, as in `examples/sqlite_demo.rs`.
    let load = move || async move {
        tokio::task::spawn_blocking(move || w.load_one(key))
            .await
            .expect("the loader does not panic")
    };
    let got = if world.labelled() {
        let labels = &world.labels[key as usize];
        world.cache.get_or_load_labelled(key, labels, load).await
    } else {
        world.cache.get_or_load(key, load).await
    };
    world.judge_result(key, snapshot, got);
}

async fn read_batch(world: &Arc<World>, rng: &mut SmallRng) {
    let keys = World::batch_keys(rng);
    let snapshots: Vec<u64> = keys.iter().map(|&k| world.snapshot(k)).collect();
    let w = Arc::clone(world);
    let load = move |missing: Vec<u64>| {
        let w = Arc::clone(&w);
        async move {
            tokio::task::spawn_blocking(move || w.load_many(&missing))
                .await
                .expect("the loader does not panic")
        }
    };
    let got = if world.labelled() {
        let labels = &world.batch_labels[group(keys[0]) as usize];
        world
            .cache
            .get_or_load_many_labelled(keys.clone(), labels, load)
            .await
    } else {
        world.cache.get_or_load_many(keys.clone(), load).await
    };
    match got {
        Ok(found) => {
            for (&k, &s) in keys.iter().zip(&snapshots) {
                world.judge(k, s, found.get(&k).copied());
            }
        }
        Err(LoadError::Loader(_)) => {
            world.reads.fetch_add(keys.len() as u64, Ordering::Relaxed);
            world.errors.fetch_add(keys.len() as u64, Ordering::Relaxed);
        }
        Err(e) => panic!("{}: batch {keys:?}: unexpected {e:?}", world.combo.name()),
    }
}
