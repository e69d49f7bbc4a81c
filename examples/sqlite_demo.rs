//! The cache-aside pattern end to end: one [`AsideCache`] per entity in front of a real SQLite
//! database.
//!
//! Run: `cargo run --release --features async,config,snapshot --example sqlite_demo` (about
//! 20 s), or append `-- --quick` for a run of a few seconds.
//!
//! 1. Creates and seeds a SQLite database in a temp file (WAL mode): users, products,
//!    configuration and sessions. Every row has a `version` that each update increments.
//! 2. Puts one `AsideCache` in front of each table with the TTL its entity deserves: user
//!    profiles 5 min, products 1 h, configuration 24 h, sessions a sliding 30 min idle timeout;
//!    TTL jitter, negative caching of missing ids and XFetch early refresh. Those settings, and
//!    each cache's size and eviction policy, come from `examples/sqlite_demo.toml` (or the file
//!    given with `--config PATH`) through a [`Registry`]: edit it and re-run.
//! 3. Cold start: 200 requests for one user arrive at once against a slow query. The front door
//!    coalesces them into a single database query. Then the toolkit, before serving:
//!    **warming** the most-accessed users (read from a key file, 8 loads at a time, with a
//!    progress line), a **batch load** of a page of 50 users with one `WHERE id IN (...)`
//!    query, and a **tag invalidation** (a team's rows updated in one `UPDATE`, every cached
//!    member hidden by one `invalidate_tag`).
//! 4. Main run: 8 readers ask for Zipf-distributed ids (2% of them missing); 2 writers update
//!    rows and then invalidate the key (delete-on-write) or, for products, `put` the fresh row
//!    (update-on-write). Each read checks that it does not see a version older than one whose
//!    invalidation had completed before the read started.
//! 5. Reports reads, database queries with and without the cache, hit ratios, read latencies,
//!    the front door's counters, and the per-cache metrics a [`MetricsSampler`] took during
//!    the run (the seeds' `CacheMetric` rows).
//! 6. Warm restart: snapshots every cache (its hottest entries, values and remaining TTLs) to
//!    a file, then "restarts" twice with new, empty caches and runs the same readers and
//!    writers for the first simulated minute: once cold, once restored from the snapshots.
//!    Prints both hit ratios.
//!
//! SQLite calls block, so they run on tokio's blocking pool (`spawn_blocking`), never on an
//! executor thread. The caches run on a clock 300 times faster than the wall clock
//! ([`SimClock`]) so that 5-minute and 1-hour TTLs really expire during a 20-second run.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aside::policy::AnyPolicy;
use aside::registry::{CacheConfig, Caches, Registry};
use aside::sampler::{CacheMetric, MetricsSampler};
use aside::{AsideCache, CacheStats, Clock, Labels, LoadStats, SnapshotOptions, WarmProgress};
use rand::distr::Distribution;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, OptionalExtension};
use tokio::task::JoinSet;

#[path = "../benches/common/zipf.rs"]
mod zipf;
use zipf::Zipf;

const USER_ROWS: u64 = 20_000;
const PRODUCT_ROWS: u64 = 20_000;
const CONFIG_ROWS: u64 = 8;
const SESSION_ROWS: u64 = 5_000;
/// Reader and writer tasks of the main run.
const READERS: u64 = 8;
const WRITERS: u64 = 2;
/// Share of reads that ask for an id that does not exist (served by negative caching).
const MISSING_SHARE: f64 = 0.02;
/// Pause between two writes of one writer.
const WRITE_PAUSE: Duration = Duration::from_millis(1);
/// The cold-start stampede: this many concurrent requests for user 0, against a query slowed
/// down by `SLOW_QUERY`.
const STAMPEDE: usize = 200;
const SLOW_QUERY: Duration = Duration::from_millis(100);
/// How much faster than the wall clock the caches' clock runs.
const SPEED: u64 = 300;
/// Index of the user profiles in `App::entities` (then products, configuration, sessions).
const USER: usize = 0;
/// Relative frequencies of reads and writes per entity, in `App::entities` order.
const READ_WEIGHTS: [u32; 4] = [45, 35, 5, 15];
const WRITE_WEIGHTS: [u32; 4] = [45, 45, 1, 9];

/// A cached row: its version and a human-readable rendering of its columns. Serializable for
/// the warm-restart snapshot.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Row {
    version: u64,
    data: Arc<str>,
}

/// The caches' clock: wall time since start, `SPEED` times faster. TTLs, jitter, idle
/// timeouts and XFetch's measured load time all run on it.
#[derive(Clone, Copy)]
struct SimClock(Instant);

impl Clock for SimClock {
    fn now_nanos(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).map_or(u64::MAX, |n| n.saturating_mul(SPEED))
    }
}

/// A minimal connection pool: connections to the same database file, each behind a mutex.
/// WAL mode lets readers proceed while a writer commits.
struct Db(Vec<Mutex<Connection>>);

impl Db {
    fn open(path: &Path, size: usize) -> rusqlite::Result<Self> {
        let open = || {
            let conn = Connection::open(path)?;
            conn.busy_timeout(Duration::from_secs(5))?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            Ok(Mutex::new(conn))
        };
        (0..size)
            .map(|_| open())
            .collect::<rusqlite::Result<_>>()
            .map(Db)
    }

    /// Runs `sql` (a `SELECT` or an `UPDATE ... RETURNING`) for `id` on the first idle
    /// connection: the row's version and rendering, or `None` when no row has that id.
    /// Blocks: call it on the blocking pool.
    fn row(&self, sql: &str, id: u64) -> rusqlite::Result<Option<Row>> {
        let idle = self.0.iter().find_map(|c| c.try_lock().ok());
        let conn = idle.unwrap_or_else(|| self.0[0].lock().expect("connection poisoned"));
        let mut statement = conn.prepare_cached(sql)?;
        let row = statement.query_row([id], |r| {
            let (version, data) = (r.get(0)?, r.get::<_, String>(1)?.into());
            Ok(Row { version, data })
        });
        row.optional()
    }
}

/// Runs a blocking closure (a database call) on tokio's blocking pool.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    let task = tokio::task::spawn_blocking(f);
    task.await.expect("database task panicked")
}

/// What a writer does to the cache after committing an update.
#[derive(Clone, Copy, Debug)]
enum OnWrite {
    /// Delete-on-write: the next read reloads the row.
    Invalidate,
    /// Update-on-write: store the row the `UPDATE ... RETURNING` produced.
    Put,
}

/// One table, the cache in front of it, and its counters.
struct Entity {
    name: &'static str,
    /// The cache's name in the configuration file.
    cache_name: &'static str,
    /// The TTL and the eviction policy, as configured (for the report).
    ttl: String,
    policy: &'static str,
    rows: u64,
    /// `SELECT version, <rendering> ... WHERE id = ?1`.
    select: &'static str,
    /// `UPDATE ... SET version = version + 1 ... WHERE id = ?1 RETURNING version, <rendering>`.
    update: &'static str,
    on_write: OnWrite,
    cache: AsideCache<u64, Row, AnyPolicy>,
    zipf: Zipf,
    /// `SELECT`s that reached the database (cache misses and refreshes).
    queries: AtomicU64,
    reads: AtomicU64,
    writes: AtomicU64,
    /// Per id, the newest version whose write and invalidation have completed: a read that
    /// starts afterwards must see at least this version.
    min_version: Vec<AtomicU64>,
}

/// Everything the tasks share.
struct App {
    db: Db,
    entities: [Entity; 4],
    stop: AtomicBool,
    /// Reads that broke the stale-read check.
    stale_reads: AtomicU64,
}

/// The TTL column of the report: `5m ±30s`, `30m idle`.
fn ttl_label(c: &CacheConfig) -> String {
    let d = aside::registry::format_duration;
    match (c.ttl, c.sliding_ttl, c.jitter) {
        (Some(ttl), _, Some(j)) if !j.is_zero() => format!("{} ±{}", d(ttl), d(j)),
        (Some(ttl), _, _) => d(ttl),
        (None, Some(idle), _) => format!("{} idle", d(idle)),
        (None, None, _) => "none".to_string(),
    }
}

/// The four entities, each with the cache `caches` builds for it from the configuration file
/// (see the module docs and `examples/sqlite_demo.toml`), on the demo's clock.
fn entities(clock: SimClock, caches: &Caches) -> Result<[Entity; 4], Box<dyn std::error::Error>> {
    let registry = caches.registry();
    let entity = |name, cache_name, rows, on_write, [select, update]: [&'static str; 2]| {
        let cache = caches.get_with(cache_name, |b| b.clock(clock))?;
        Ok::<_, Box<dyn std::error::Error>>(Entity {
            name,
            cache_name,
            ttl: ttl_label(registry.config(cache_name)?),
            policy: registry.config(cache_name)?.policy,
            rows,
            select,
            update,
            on_write,
            cache,
            zipf: Zipf::new(rows),
            queries: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            min_version: (0..rows).map(|_| AtomicU64::new(0)).collect(),
        })
    };
    Ok([
        // Profiles change occasionally and staleness shows: 5 min.
        entity("user profile", "user", USER_ROWS, OnWrite::Invalidate, [
            "SELECT version, name || ' <' || email || '>' FROM users WHERE id = ?1",
            "UPDATE users SET version = version + 1,
                 email = 'user' || id || '.v' || (version + 1) || '@example.com'
             WHERE id = ?1 RETURNING version, name || ' <' || email || '>'",
        ])?,
        // The catalog changes rarely: 1 h. Writers store the updated row (update-on-write).
        entity("product", "product", PRODUCT_ROWS, OnWrite::Put, [
            "SELECT version, name || printf(' $%.2f, ', price_cents / 100.0) || stock || ' left'
             FROM products WHERE id = ?1",
            "UPDATE products SET version = version + 1, price_cents = price_cents + 1,
                 stock = max(stock - 1, 0)
             WHERE id = ?1
             RETURNING version,
                 name || printf(' $%.2f, ', price_cents / 100.0) || stock || ' left'",
        ])?,
        // Static configuration: 24 h.
        entity("configuration", "config", CONFIG_ROWS, OnWrite::Invalidate, [
            "SELECT version, key || ' = ' || value FROM config WHERE id = ?1",
            "UPDATE config SET version = version + 1, value = 'rev ' || (version + 1)
             WHERE id = ?1 RETURNING version, key || ' = ' || value",
        ])?,
        entity("session", "session", SESSION_ROWS, OnWrite::Invalidate, [
            "SELECT version, 'user ' || user_id || ', ' || cart_items || ' items in cart'
             FROM sessions WHERE id = ?1",
            "UPDATE sessions SET version = version + 1, cart_items = cart_items + 1
             WHERE id = ?1
             RETURNING version, 'user ' || user_id || ', ' || cart_items || ' items in cart'",
        ])?,
    ])
}

/// Creates the schema and seeds every table (version 1) in one transaction.
fn seed(path: &Path) -> rusqlite::Result<()> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let n = USER_ROWS.max(PRODUCT_ROWS).max(SESSION_ROWS);
    conn.execute_batch(&format!(
        "BEGIN;
         CREATE TEMP TABLE n AS WITH RECURSIVE c(i) AS
             (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i < {n} - 1) SELECT i FROM c;
         CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
             version INTEGER NOT NULL);
         CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
             price_cents INTEGER NOT NULL, stock INTEGER NOT NULL, version INTEGER NOT NULL);
         CREATE TABLE config (id INTEGER PRIMARY KEY, key TEXT NOT NULL, value TEXT NOT NULL,
             version INTEGER NOT NULL);
         CREATE TABLE sessions (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL,
             cart_items INTEGER NOT NULL, version INTEGER NOT NULL);
         INSERT INTO users SELECT i, 'User ' || i, 'user' || i || '@example.com', 1
             FROM n WHERE i < {USER_ROWS};
         INSERT INTO products SELECT i, 'Product ' || i, 100 + i % 9900, 50, 1
             FROM n WHERE i < {PRODUCT_ROWS};
         INSERT INTO config SELECT i, 'setting.' || i, 'rev 1', 1 FROM n WHERE i < {CONFIG_ROWS};
         INSERT INTO sessions SELECT i, i % {USER_ROWS}, 0, 1 FROM n WHERE i < {SESSION_ROWS};
         COMMIT;"
    ))
}

/// The cache-aside read: the cached row, or on a miss one `SELECT` shared by every concurrent
/// caller for the same id (`delay` slows the query down, for the stampede).
async fn read(app: &Arc<App>, e: usize, id: u64, delay: Duration) -> Option<Row> {
    let load = || {
        let app = Arc::clone(app);
        blocking(move || {
            std::thread::sleep(delay);
            let entity = &app.entities[e];
            entity.queries.fetch_add(1, Relaxed);
            app.db.row(entity.select, id)
        })
    };
    let row = app.entities[e].cache.get_or_load(id, load).await;
    row.expect("database read failed")
}

/// Picks an index with probability proportional to its weight.
fn pick(rng: &mut SmallRng, weights: &[u32; 4]) -> usize {
    let mut r = rng.random_range(0..weights.iter().sum::<u32>());
    let mut i = 0;
    while r >= weights[i] {
        r -= weights[i];
        i += 1;
    }
    i
}

/// A reader task: Zipf-distributed reads until `stop`, each checked against the versions the
/// writers have published. Returns each read's latency in nanoseconds.
async fn reader(app: Arc<App>, seed: u64) -> Vec<u32> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let missing = Zipf::new(1_000);
    let mut latencies = Vec::with_capacity(1 << 20);
    while !app.stop.load(Relaxed) {
        let e = pick(&mut rng, &READ_WEIGHTS);
        let entity = &app.entities[e];
        let id = if rng.random_bool(MISSING_SHARE) {
            entity.rows + missing.sample(&mut rng) // no such row
        } else {
            entity.zipf.sample(&mut rng)
        };
        // The stale-read check. A write whose invalidation completed before this point has
        // published its version: this read must not return an older one.
        let floor = entity.min_version.get(id as usize);
        let floor = floor.map_or(0, |v| v.load(Acquire));
        let started = Instant::now();
        let row = read(&app, e, id, Duration::ZERO).await;
        latencies.push(u32::try_from(started.elapsed().as_nanos()).unwrap_or(u32::MAX));
        entity.reads.fetch_add(1, Relaxed);
        match row {
            Some(row) if row.version < floor => {
                app.stale_reads.fetch_add(1, Relaxed);
                let (name, v) = (entity.name, row.version);
                eprintln!("\nSTALE READ: {name} {id}: got v{v} after v{floor} was invalidated");
            }
            None if id < entity.rows => panic!("{} {id} exists but was not found", entity.name),
            _ => {}
        }
        if latencies.len() % 64 == 0 {
            // A hit never awaits: yield now and then so that the other tasks get a turn.
            tokio::task::yield_now().await;
        }
    }
    latencies
}

/// A writer task: `UPDATE` a row (version + 1) and commit, then invalidate or `put`, then
/// publish the new version for the stale-read check.
async fn writer(app: Arc<App>, w: u64) {
    let mut rng = SmallRng::seed_from_u64(1_000 + w);
    while !app.stop.load(Relaxed) {
        let e = pick(&mut rng, &WRITE_WEIGHTS);
        let entity = &app.entities[e];
        // Each writer owns the ids equal to `w` modulo WRITERS: two writers never race on a
        // row, so a `put` never overwrites a newer row with an older one.
        let id = loop {
            let id = entity.zipf.sample(&mut rng);
            if id % WRITERS == w {
                break id;
            }
        };
        let db_app = Arc::clone(&app);
        let row = blocking(move || db_app.db.row(db_app.entities[e].update, id)).await;
        let row = row.expect("update failed").expect("updated rows exist");
        match entity.on_write {
            OnWrite::Invalidate => entity.cache.invalidate(&id),
            OnWrite::Put => entity.cache.put(id, row.clone()),
        }
        entity.min_version[id as usize].fetch_max(row.version, Release);
        entity.writes.fetch_add(1, Relaxed);
        tokio::time::sleep(WRITE_PAUSE).await;
    }
}

/// `STAMPEDE` tasks ask for user 0 at the same instant, against a slow query. Returns the
/// database queries it caused, the callers coalesced onto another's load, the row and the
/// time it took.
async fn stampede(app: &Arc<App>) -> (u64, u64, Row, Duration) {
    let started = Instant::now();
    let users = &app.entities[USER];
    let queries = users.queries.load(Relaxed);
    let coalesced = users.cache.load_stats().coalesced;
    let barrier = Arc::new(tokio::sync::Barrier::new(STAMPEDE));
    let mut tasks = JoinSet::new();
    for _ in 0..STAMPEDE {
        let (app, barrier) = (Arc::clone(app), Arc::clone(&barrier));
        tasks.spawn(async move {
            barrier.wait().await;
            let row = read(&app, USER, 0, SLOW_QUERY).await;
            row.expect("user 0 exists")
        });
    }
    let mut rows = tasks.join_all().await;
    assert!(rows.iter().all(|r| r.version == rows[0].version));
    let queries = users.queries.load(Relaxed) - queries;
    let coalesced = users.cache.load_stats().coalesced - coalesced;
    (queries, coalesced, rows.swap_remove(0), started.elapsed())
}

// --- The toolkit: warming, a batch load, a tag invalidation (run before serving). ---

/// Users preloaded before serving (the most-accessed ids, as exported from a query log).
const WARM_USERS: u64 = 2_000;
const WARM_USERS_QUICK: u64 = 500;
/// Loads in flight at once while warming.
const WARM_CONCURRENCY: usize = 8;
/// The page of users loaded in one batch: it straddles the warmed range, so part of it is
/// cached and the rest comes from one `WHERE id IN (...)` query.
const PAGE: u64 = 50;
/// Teams are blocks of `TEAM_SIZE` users from `TEAM_BASE` (cold ids: no warming, few reads).
const TEAM_BASE: u64 = 10_000;
const TEAM_SIZE: u64 = 50;

/// What warming did, for the report.
struct Warmed {
    keys: usize,
    summary: aside::WarmSummary,
}

/// Writes the most-accessed user ids to a key file (Zipf rank 0 is the hottest id), reads it
/// back with `read_keys` and warms the user cache through the loader, `WARM_CONCURRENCY` at a
/// time, with a progress line on stderr.
async fn warm_users(app: &Arc<App>, count: u64) -> Result<Warmed, Box<dyn std::error::Error>> {
    let path =
        std::env::temp_dir().join(format!("aside-demo-{}-top-users.txt", std::process::id()));
    let ids: String = (0..count).map(|id| format!("{id}\n")).collect();
    std::fs::write(&path, format!("# the most-accessed user ids\n{ids}"))?;
    let keys: Vec<u64> = aside::read_keys(&path)?;
    std::fs::remove_file(&path)?;
    let tty = std::io::stderr().is_terminal();
    let mut shown = 0;
    let progress = move |p: WarmProgress| {
        // A tty redraws the line; a log gets one line per 25%.
        let step = if tty { 1 } else { 25 };
        let pct = (p.fraction() * 100.0) as usize;
        if pct >= shown + step || p.done == p.total {
            shown = pct;
            let filled = pct * 30 / 100;
            let bar = format!("{}{}", "#".repeat(filled), ".".repeat(30 - filled));
            let (start, end) = if tty { ("\r", "") } else { ("", "\n") };
            let (done, total, failed) = (p.done, p.total, p.failed);
            eprint!("{start}warming [{bar}] {pct:>3}%  {done}/{total} users  {failed} failed{end}");
        }
    };
    let users = &app.entities[USER];
    let loader = |id: u64| {
        let app = Arc::clone(app);
        blocking(move || {
            let entity = &app.entities[USER];
            entity.queries.fetch_add(1, Relaxed);
            app.db.row(entity.select, id)
        })
    };
    let summary = users
        .cache
        .warm(loader)
        .concurrency(WARM_CONCURRENCY)
        .on_progress(progress)
        .run(keys.iter().copied())
        .await?;
    if tty {
        eprintln!();
    }
    Ok(Warmed {
        keys: keys.len(),
        summary,
    })
}

impl Db {
    /// `SELECT version, <rendering>, id FROM users WHERE id IN (?, ?, ...)`: every user of
    /// `ids` in one query. Blocks: call it on the blocking pool.
    fn users_in(&self, ids: &[u64]) -> rusqlite::Result<HashMap<u64, Row>> {
        let idle = self.0.iter().find_map(|c| c.try_lock().ok());
        let conn = idle.unwrap_or_else(|| self.0[0].lock().expect("connection poisoned"));
        let marks = vec!["?"; ids.len()].join(", ");
        let sql = format!(
            "SELECT version, name || ' <' || email || '>', id FROM users WHERE id IN ({marks})"
        );
        let mut statement = conn.prepare(&sql)?;
        let rows = statement.query_map(rusqlite::params_from_iter(ids), |r| {
            let (version, data) = (r.get(0)?, r.get::<_, String>(1)?.into());
            Ok((r.get(2)?, Row { version, data }))
        })?;
        rows.collect()
    }
}

/// What the batch load did, for the report.
struct Batched {
    page: u64,
    cached: usize,
    loaded: usize,
    queries: u64,
}

/// Loads a page of `PAGE` users with `get_or_load_many`: the cached ones from the cache, every
/// other one with a single `WHERE id IN (...)` query.
async fn batch_page(app: &Arc<App>, first: u64) -> Batched {
    let users = &app.entities[USER];
    let ids: Vec<u64> = (first..first + PAGE).collect();
    let cached = users.cache.get_many(&ids).len();
    let queries = users.queries.load(Relaxed);
    let page = users.cache.get_or_load_many(ids, |missing: Vec<u64>| {
        let app = Arc::clone(app);
        blocking(move || {
            app.entities[USER].queries.fetch_add(1, Relaxed);
            app.db.users_in(&missing)
        })
    });
    let page = page.await.expect("batch load failed");
    assert_eq!(page.len() as u64, PAGE, "every user of the page exists");
    Batched {
        page: PAGE,
        cached,
        loaded: PAGE as usize - cached,
        queries: users.queries.load(Relaxed) - queries,
    }
}

/// What the tag invalidation did, for the report.
struct Tagged {
    team: u64,
    updated: usize,
    hidden: usize,
    other_team_cached: usize,
    invalidate_took: Duration,
    reload_queries: u64,
    reloaded_fresh: bool,
}

/// The users of `team`, and the labels their cached profiles carry.
fn team(team: u64) -> (Vec<u64>, Labels) {
    let first = TEAM_BASE + team * TEAM_SIZE;
    let labels = Labels::new().tag(&format!("team:{team}"));
    ((first..first + TEAM_SIZE).collect(), labels)
}

/// A team page: the profiles of `ids`, cached ones from the cache, the others with one
/// `WHERE id IN (...)` query, stored with the team's tag.
async fn load_team(app: &Arc<App>, ids: &[u64], labels: &Labels) -> HashMap<u64, Row> {
    let load = |missing: Vec<u64>| {
        let app = Arc::clone(app);
        blocking(move || {
            app.entities[USER].queries.fetch_add(1, Relaxed);
            app.db.users_in(&missing)
        })
    };
    let users = &app.entities[USER].cache;
    let team = users.get_or_load_many_labelled(ids.iter().copied(), labels, load);
    let team = team.await.expect("database read failed");
    assert_eq!(team.len(), ids.len(), "team members exist");
    team
}

/// Two teams' profiles are cached with a `team:<n>` tag (a labelled batch load per team);
/// team 7 is renamed in one `UPDATE`, then one `invalidate_tag("team:7")` hides all its
/// cached members. Team 8 stays cached; the next read of team 7 reloads the new rows, again
/// in one query.
async fn tag_invalidation(app: &Arc<App>) -> Tagged {
    let users = &app.entities[USER];
    let (seven, seven_labels) = team(7);
    let (eight, eight_labels) = team(8);
    load_team(app, &seven, &seven_labels).await;
    load_team(app, &eight, &eight_labels).await;
    let (first, last) = (seven[0], seven[seven.len() - 1]);
    let db_app = Arc::clone(app);
    let updated = blocking(move || {
        let conn = db_app.db.0[0].lock().expect("connection poisoned");
        conn.execute(
            "UPDATE users SET version = version + 1,
                 email = 'user' || id || '@team7.example.com'
             WHERE id BETWEEN ?1 AND ?2",
            [first, last],
        )
    })
    .await
    .expect("team update failed");
    let started = Instant::now();
    users.cache.invalidate_tag("team:7");
    let invalidate_took = started.elapsed();
    let hidden = seven
        .iter()
        .filter(|id| users.cache.get(id).is_none())
        .count();
    let other_team_cached = users.cache.get_many(&eight).len();
    let queries = users.queries.load(Relaxed);
    let reloaded = load_team(app, &seven, &seven_labels).await;
    let reloaded_fresh = reloaded
        .values()
        .all(|r| r.data.contains("@team7.example.com"));
    Tagged {
        team: 7,
        updated,
        hidden,
        other_team_cached,
        invalidate_took,
        reload_queries: users.queries.load(Relaxed) - queries,
        reloaded_fresh,
    }
}

/// Runs the toolkit steps and prints what each did.
async fn toolkit(
    app: &Arc<App>,
    quick: bool,
) -> Result<(Warmed, Batched, Tagged), Box<dyn std::error::Error>> {
    let count = if quick { WARM_USERS_QUICK } else { WARM_USERS };
    let warmed = warm_users(app, count).await?;
    let s = &warmed.summary;
    println!(
        "Warming before serving: {} most-accessed users from a key file, {WARM_CONCURRENCY} at a time",
        warmed.keys
    );
    println!(
        "  -> {} loaded, {} already cached, {} failed in {:.0?}",
        s.loaded, s.already_cached, s.failed, s.elapsed
    );
    let batch = batch_page(app, count - 10).await;
    println!(
        "Batch load: a page of {} users ({} cached) in {} query (WHERE id IN (...)) instead of {}",
        batch.page, batch.cached, batch.queries, batch.loaded
    );
    let tag = tag_invalidation(app).await;
    println!(
        "Tag invalidation: team {} renamed ({} rows, one UPDATE); invalidate_tag(\"team:{}\") \
         hid {} cached profiles in {:.1?}",
        tag.team, tag.updated, tag.team, tag.hidden, tag.invalidate_took
    );
    println!(
        "  -> team 8 untouched ({} cached); team {} re-read with {} query, every row new: {}",
        tag.other_team_cached, tag.team, tag.reload_queries, tag.reloaded_fresh
    );
    Ok((warmed, batch, tag))
}

/// Whether the toolkit steps kept their promises (checked at exit with the rest).
fn toolkit_ok((warmed, batch, tag): &(Warmed, Batched, Tagged)) -> bool {
    let s = &warmed.summary;
    s.failed == 0
        && s.loaded + s.already_cached == warmed.keys
        && batch.queries == u64::from(batch.loaded > 0)
        && tag.hidden as u64 == TEAM_SIZE
        && tag.other_team_cached as u64 == TEAM_SIZE
        && tag.reload_queries == 1
        && tag.reloaded_fresh
}

/// The toolkit's lines of the final report.
fn toolkit_report((warmed, batch, tag): &(Warmed, Batched, Tagged)) {
    let s = &warmed.summary;
    println!(
        "warming: {} users, {} loaded + {} already cached, {} failed, {:.0?}",
        warmed.keys, s.loaded, s.already_cached, s.failed, s.elapsed
    );
    println!(
        "batch load: {} users, {} from the cache, {} in 1 query: {} queries saved over N+1",
        batch.page,
        batch.cached,
        batch.loaded,
        (batch.loaded as u64).saturating_sub(batch.queries)
    );
    println!(
        "tag invalidation: {} of {} team profiles hidden by one call, other team untouched: {}",
        tag.hidden,
        TEAM_SIZE,
        tag.other_team_cached as u64 == TEAM_SIZE
    );
}

/// 1234567 as "1.2M", for the progress line.
fn short(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

fn percent(part: u64, whole: u64) -> String {
    format!("{:.2}%", part as f64 * 100.0 / whole.max(1) as f64)
}

/// The sum of `f` over the entities.
fn sum(app: &App, f: impl Fn(&Entity) -> u64) -> u64 {
    app.entities.iter().map(f).sum()
}

/// Cache hits and lookups over all entities.
fn hits(app: &App) -> (u64, u64) {
    let hits = sum(app, |e| e.cache.cache_stats().hits);
    (hits, hits + sum(app, |e| e.cache.cache_stats().misses))
}

/// Draws the progress line on stderr: `[#####.....]  52%  reads 1.2M  hit 93.10%  ...`,
/// redrawn in place on a terminal.
fn draw_progress(app: &App, fraction: f64, tty: bool) {
    let (hits, lookups) = hits(app);
    let (start, end) = if tty { ("\r", "") } else { ("", "\n") };
    let filled = (fraction.min(1.0) * 30.0) as usize;
    let bar = format!("{}{}", "#".repeat(filled), ".".repeat(30 - filled));
    let reads = short(sum(app, |e| e.reads.load(Relaxed)));
    let hit = percent(hits, lookups);
    let queries = short(sum(app, |e| e.queries.load(Relaxed)));
    let writes = short(sum(app, |e| e.writes.load(Relaxed)));
    let pct = fraction * 100.0;
    eprint!(
        "{start}[{bar}] {pct:>3.0}%  reads {reads}  hit {hit}  db queries {queries}  \
         writes {writes}  {end}"
    );
}

/// One line of the per-entity table: a label, then a cell per entity (and the total).
fn line(label: &str, cells: impl IntoIterator<Item = String>) {
    print!("{label:<36}");
    cells.into_iter().for_each(|cell| print!("{cell:>15}"));
    println!();
}

/// The front door's counters for `e`.
fn ls(e: &Entity) -> LoadStats {
    e.cache.load_stats()
}

/// The underlying cache's counters for `e`.
fn cs(e: &Entity) -> CacheStats {
    e.cache.cache_stats()
}

/// A labelled per-entity counter of the report.
type Counter = (&'static str, fn(&Entity) -> u64);

/// The per-entity table of the report: counters from the demo, `load_stats()` and
/// `cache_stats()`.
fn entity_table(app: &App) {
    let names = app.entities.iter().map(|e| e.name.to_string());
    line("", names.chain(["total".to_string()]));
    line(
        "cache (from the TOML file)",
        app.entities.iter().map(|e| e.cache_name.to_string()),
    );
    line(
        "  policy",
        app.entities.iter().map(|e| e.policy.to_string()),
    );
    line("  TTL", app.entities.iter().map(|e| e.ttl.clone()));
    let on_write = |e: &Entity| format!("{:?}", e.on_write).to_lowercase();
    line("on write", app.entities.iter().map(on_write));
    let ratio = |e: &Entity| format!("{:.2}%", cs(e).hit_ratio() * 100.0);
    let (hits, lookups) = hits(app);
    let ratios = app.entities.iter().map(ratio);
    line("cache hit ratio", ratios.chain([percent(hits, lookups)]));
    let rows: [Counter; 12] = [
        ("rows in the table", |e| e.rows),
        ("reads", |e| e.reads.load(Relaxed)),
        ("database queries (SELECT)", |e| e.queries.load(Relaxed)),
        ("loads (load_stats)", |e| ls(e).loads),
        ("  coalesced waiters", |e| ls(e).coalesced),
        ("  early refreshes (XFetch)", |e| ls(e).early_refreshes),
        ("  discarded (invalidated in flight)", |e| ls(e).discarded),
        ("negative hits (missing ids)", |e| ls(e).negative_hits),
        ("expired", |e| cs(e).expired),
        ("evicted (capacity)", |e| cs(e).evicted_capacity),
        ("writes (then invalidate/put)", |e| e.writes.load(Relaxed)),
        ("loads in flight at exit", |e| e.cache.in_flight() as u64),
    ];
    for (label, f) in rows {
        let cells = app.entities.iter().map(f).chain([sum(app, f)]);
        line(label, cells.map(|n| n.to_string()));
    }
}

/// The sampled metrics: one row per cache per sample, with the change since the previous
/// sample (the first sample, at the start of the main run, holds the stampede's counts).
fn metrics_table(samples: &[(Duration, Vec<CacheMetric>)]) {
    println!("\nSampled metrics (MetricsSampler; change since the previous sample):");
    println!(
        "{:>8}  {:<9}{:>10}{:>10}{:>10}{:>11}{:>10}{:>8}{:>9}",
        "at", "cache", "hits", "misses", "hit ratio", "evictions", "expired", "loads", "entries"
    );
    for (at, rows) in samples {
        for m in rows {
            let d = &m.delta;
            println!(
                "{:>8}  {:<9}{:>10}{:>10}{:>9.2}%{:>11}{:>10}{:>8}{:>9}",
                format!("{:.1}s", at.as_secs_f64()),
                m.name,
                d.hits,
                d.misses,
                m.hit_ratio * 100.0,
                d.evictions,
                d.expirations,
                d.loads,
                m.entries
            );
        }
    }
}

// --- Warm restart: snapshot, restart, and the first minute with and without the snapshot. ---

/// The first minute after a restart, in wall time (the caches' clock runs `SPEED` times
/// faster).
const FIRST_MINUTE: Duration = Duration::from_millis(60_000 / SPEED);

/// The snapshot file of `entity`.
fn snapshot_path(entity: &Entity) -> std::path::PathBuf {
    let name = format!(
        "aside-demo-{}-{}.snap",
        std::process::id(),
        entity.cache_name
    );
    std::env::temp_dir().join(name)
}

/// Writes every cache's snapshot (all its live entries, hottest first, with their values and
/// remaining TTLs) to its file. Returns the entries and bytes written and the time it took.
fn snapshot_all(app: &App) -> Result<(usize, u64, Duration), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let (mut entries, mut bytes) = (0, 0);
    for e in &app.entities {
        let file = std::io::BufWriter::new(std::fs::File::create(snapshot_path(e))?);
        let written = e.cache.snapshot(file, &SnapshotOptions::new())?;
        (entries, bytes) = (entries + written.entries, bytes + written.bytes);
    }
    Ok((entries, bytes, started.elapsed()))
}

/// What one first minute after a restart saw.
struct FirstMinute {
    restored: usize,
    restore_took: Duration,
    hits: u64,
    lookups: u64,
    reads: u64,
    queries: u64,
}

/// A restarted process: new caches built from the same file (a `Caches` of its own, on a new
/// clock), restored from the snapshots if `restore`, then the main run's readers and writers
/// for `FIRST_MINUTE`.
async fn first_minute(
    db: &Path,
    config: &Path,
    restore: bool,
) -> Result<FirstMinute, Box<dyn std::error::Error>> {
    let caches = Caches::new(Registry::from_path(config)?);
    let app = Arc::new(App {
        db: Db::open(db, (READERS + WRITERS) as usize + 2)?,
        entities: entities(SimClock(Instant::now()), &caches)?,
        stop: AtomicBool::new(false),
        stale_reads: AtomicU64::new(0),
    });
    let started = Instant::now();
    let mut restored = 0;
    if restore {
        for e in &app.entities {
            let file = std::io::BufReader::new(std::fs::File::open(snapshot_path(e))?);
            restored += e.cache.restore(file)?.restored;
        }
    }
    let restore_took = started.elapsed();
    let (mut readers, mut writers) = (JoinSet::new(), JoinSet::new());
    for r in 0..READERS {
        readers.spawn(reader(app.clone(), 100 + r));
    }
    for w in 0..WRITERS {
        writers.spawn(writer(app.clone(), w));
    }
    tokio::time::sleep(FIRST_MINUTE).await;
    app.stop.store(true, Relaxed);
    readers.join_all().await;
    writers.join_all().await;
    let (hits, lookups) = hits(&app);
    if app.stale_reads.load(Relaxed) != 0 {
        return Err("a restarted cache served a stale read".into());
    }
    app.entities.iter().try_for_each(|e| e.cache.validate())?;
    Ok(FirstMinute {
        restored,
        restore_took,
        hits,
        lookups,
        reads: sum(&app, |e| e.reads.load(Relaxed)),
        queries: sum(&app, |e| e.queries.load(Relaxed)),
    })
}

/// Snapshots the caches, restarts twice (cold, then restored) and prints the first minute of
/// each.
async fn warm_restart(
    app: &App,
    db: &Path,
    config: &Path,
) -> Result<(FirstMinute, FirstMinute), Box<dyn std::error::Error>> {
    let (entries, bytes, took) = snapshot_all(app)?;
    println!(
        "\nWarm restart: {entries} entries snapshotted ({:.1} MB, values and remaining TTLs) in \
         {took:.0?}; then a restart, twice",
        bytes as f64 / 1e6
    );
    let cold = first_minute(db, config, false).await?;
    let warm = first_minute(db, config, true).await?;
    for e in &app.entities {
        let _ = std::fs::remove_file(snapshot_path(e));
    }
    let row = |label: &str, m: &FirstMinute| {
        println!(
            "  first simulated minute, {label:<9} hit ratio {:>7}  reads {:>7}  database \
             queries {:>6}",
            percent(m.hits, m.lookups),
            m.reads,
            m.queries
        );
    };
    row("cold:", &cold);
    row("restored:", &warm);
    println!(
        "  ({} entries restored in {:.0?} before serving)",
        warm.restored, warm.restore_took
    );
    Ok((cold, warm))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let run_for = Duration::from_secs(if quick { 2 } else { 20 });
    let started = Instant::now();
    // The per-entity cache settings: an invalid file stops here with the cache and the field.
    let config = match args.iter().position(|a| a == "--config") {
        Some(i) => args.get(i + 1).ok_or("--config needs a path")?.into(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sqlite_demo.toml"),
    };
    let caches = Caches::new(Registry::from_path(&config).unwrap_or_else(|e| {
        eprintln!("{}: {e}", config.display());
        std::process::exit(2)
    }));

    // 1. The database, seeded, and a pool of connections to it (+ 2 for background refreshes).
    let path = std::env::temp_dir().join(format!("aside-demo-{}.db", std::process::id()));
    seed(&path)?;
    let app = Arc::new(App {
        db: Db::open(&path, (READERS + WRITERS) as usize + 2)?,
        entities: entities(SimClock(Instant::now()), &caches)?,
        stop: AtomicBool::new(false),
        stale_reads: AtomicU64::new(0),
    });
    let (seeded, path_shown) = (started.elapsed(), path.display());
    println!("SQLite database {path_shown} (WAL mode) created and seeded in {seeded:.2?}.");
    let names: Vec<&str> = caches.registry().names().collect();
    println!(
        "Caches configured by {}: {}.",
        config.display(),
        names.join(", ")
    );
    println!("The caches' clock runs {SPEED}x faster than the wall clock.\n");

    // 2. The cold-start stampede.
    let (herd_queries, coalesced, row, took) = stampede(&app).await;
    println!(
        "Cold-start stampede: {STAMPEDE} concurrent requests for user 0, {SLOW_QUERY:?} query"
    );
    println!("  -> {herd_queries} database query, {coalesced} callers coalesced onto it");
    let Row { version, data } = &row;
    println!("  -> {took:.0?}; every caller got v{version} \"{data}\"\n");

    // 2b. The toolkit before serving: warming, a batch load, a tag invalidation.
    let toolkit = toolkit(&app, quick).await?;

    // 3. The main run: readers and writers until `run_for` is up, with a progress line.
    let queries_before = sum(&app, |e| e.queries.load(Relaxed));
    let run_started = Instant::now();
    let (mut readers, mut writers) = (JoinSet::new(), JoinSet::new());
    for r in 0..READERS {
        readers.spawn(reader(app.clone(), r));
    }
    for w in 0..WRITERS {
        writers.spawn(writer(app.clone(), w));
    }
    // Per-cache metrics sampled every quarter of the run, under the names of the file.
    let mut sampler: MetricsSampler = caches.sampler();
    let (sample_every, mut next_sample) = (run_for / 4, Duration::ZERO);
    let mut samples = Vec::new();
    let tty = std::io::stderr().is_terminal();
    let tick = if tty { run_for / 200 } else { run_for / 10 };
    while run_started.elapsed() < run_for {
        if run_started.elapsed() >= next_sample {
            samples.push((run_started.elapsed(), sampler.sample(SystemTime::now())));
            next_sample += sample_every;
        }
        let fraction = run_started.elapsed().as_secs_f64() / run_for.as_secs_f64();
        draw_progress(&app, fraction, tty);
        tokio::time::sleep(tick).await;
    }
    app.stop.store(true, Relaxed);
    let mut latencies = readers.join_all().await.concat();
    latencies.sort_unstable();
    writers.join_all().await;
    let run = run_started.elapsed();
    draw_progress(&app, 1.0, tty);
    eprint!("{}", if tty { "\n" } else { "" });
    // Background refreshes may still be finishing: give them a moment to drain.
    for _ in 0..100 {
        if sum(&app, |e| e.cache.in_flight() as u64) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // 4. The report.
    let quantile = |q: f64| {
        let i = ((latencies.len().max(1) - 1) as f64 * q).round() as usize;
        Duration::from_nanos(latencies.get(i).copied().unwrap_or(0).into())
    };
    let (p50, p99, max) = (quantile(0.5), quantile(0.99), quantile(1.0));
    let reads = latencies.len();
    let queries = sum(&app, |e| e.queries.load(Relaxed)) - queries_before;
    let share = percent(queries, reads as u64);
    let (hits, lookups) = hits(&app);
    let hit = percent(hits, lookups);
    let minutes = run.as_secs_f64() * SPEED as f64 / 60.0;
    println!(
        "\nMain run: {READERS} readers, {WRITERS} writers, {run:.1?} ({minutes:.0} simulated min)"
    );
    println!("  reads                              {reads:>12}");
    println!("  database queries with the cache    {queries:>12}  ({share} of reads)");
    println!("  database queries without a cache   {reads:>12}  (one per read)");
    println!("  cache hit ratio                    {hit:>12}");
    println!("  read latency                       p50 {p50:.2?}  p99 {p99:.2?}  max {max:.2?}\n");
    entity_table(&app);
    samples.push((run, sampler.sample(SystemTime::now())));
    metrics_table(&samples);
    let stale = app.stale_reads.load(Relaxed);
    println!(
        "\ncold-start stampede: {STAMPEDE} requests, {herd_queries} DB query, {coalesced} coalesced"
    );
    toolkit_report(&toolkit);
    println!("stale reads observed after invalidation: {stale}");

    // 5. Warm restart: the first minute after a restart, cold and from the snapshots.
    let (cold, warm) = warm_restart(&app, &path, &config).await?;
    println!(
        "warm restart: first-minute hit ratio {} cold, {} restored from the snapshot",
        percent(cold.hits, cold.lookups),
        percent(warm.hits, warm.lookups)
    );
    println!("total time {:.1?}", started.elapsed());

    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    app.entities.iter().try_for_each(|e| e.cache.validate())?;
    let in_flight = sum(&app, |e| e.cache.in_flight() as u64);
    if herd_queries != 1 || stale != 0 || in_flight != 0 || !toolkit_ok(&toolkit) {
        return Err("the front door broke one of its guarantees (see above)".into());
    }
    Ok(())
}
