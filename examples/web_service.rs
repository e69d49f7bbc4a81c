//! A web service with the cache-aside front door in front of SQLite, exercised over loopback.
//!
//! Run: `cargo run --release --features async,metrics --example web_service` (a few seconds),
//! or append `-- --quick` for about a second of load. Exits non-zero if any check fails.
//!
//! 1. **The service.** An axum application on `127.0.0.1:0` (an ephemeral port, printed) whose
//!    state is a SQLite database in a temp file (WAL mode, a small connection pool) seeded
//!    with `USERS` users, an [`AsideCache<u64, User>`](AsideCache) in front of it, and a
//!    Prometheus recorder:
//!    - `GET /users/{id}`: the cache-aside read. A hit is served from the cache; a miss runs
//!      one `SELECT` on tokio's blocking pool, shared by every concurrent request for the id
//!      (single flight). 200 with the user as JSON, or 404; "not found" is cached too
//!      (`negative_ttl`), so a missing id costs one query per minute, not one per request.
//!    - `PUT /users/{id}` with `{"name": "..."}`: the cache-aside write. Updates the row (and
//!      its version) in SQLite, then invalidates the key; 200 with the updated row, or 404.
//!    - `GET /metrics`: samples the cache with aside's [`MetricsSampler`] (which exports its
//!      counters through the `metrics` facade) and serves the Prometheus text exposition of
//!      `metrics-exporter-prometheus`, whose recorder is installed without a listener of its
//!      own.
//!    - `GET /healthz`: `ok`.
//! 2. **The load generator**, in the same process once the server is up: `CLIENTS` tasks,
//!    each with one HTTP/1.1 keep-alive connection (hyper's low-level client), send the
//!    requests in total between them: Zipf-distributed ids (so there are hits), 2% of them ids
//!    that do not exist, 3% `PUT`s, each followed by a read of the same id on the same
//!    connection. Every response is checked: the status, the id, and that no read returns a
//!    version older than one whose `PUT` had been answered before the read was sent (read
//!    your writes through invalidation; a read right after this client's own `PUT` must show
//!    at least that version, and that version's name).
//! 3. **The report**: requests, errors (must be 0), throughput, p50/p99 latency, the cache's
//!    hit ratio and load counters, database queries; then one scrape of `/metrics`, checked
//!    for aside's metric names and for the exported hit count equal to the cache's own, and a
//!    few of its lines. Then the clients hang up and the server shuts down gracefully.

use std::path::{Path, PathBuf};
use std::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aside::AsideCache;
use aside::sampler::MetricsSampler;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rand::distr::Distribution;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

#[path = "../benches/common/zipf.rs"]
mod zipf;
use zipf::Zipf;

/// Rows in the `users` table: ids `0..USERS`.
const USERS: u64 = 10_000;
/// Cache capacity, a fifth of the table: the Zipf tail misses and evicts.
const CAPACITY: u64 = 2_000;
/// Concurrent client tasks, one connection each.
const CLIENTS: usize = 8;
/// Requests in all: the full run and `--quick`.
const REQUESTS: u64 = 200_000;
const QUICK_REQUESTS: u64 = 50_000;
/// Share of requests for ids that do not exist (`USERS..USERS + 1000`, Zipf too).
const MISSING_SHARE: f64 = 0.02;
/// Share of requests that are `PUT`s (each followed by a read of the same id).
const PUT_SHARE: f64 = 0.03;
/// The load stops after this long even if requests remain (it is bounded in time too).
const TIME_LIMIT: Duration = Duration::from_secs(60);
/// aside's metrics the scrape must contain (src/sampler.rs lists them all).
const EXPECTED_METRICS: [&str; 9] = [
    "aside_cache_hits_total",
    "aside_cache_misses_total",
    "aside_cache_loads_total",
    "aside_cache_coalesced_total",
    "aside_cache_negative_hits_total",
    "aside_cache_invalidations_total",
    "aside_cache_entries",
    "aside_cache_hit_ratio",
    "aside_cache_load_duration_seconds",
];

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A row of `users`, as cached and as served (JSON). `Arc<str>` makes a cache hit's clone
/// two reference-count increments instead of two string copies.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct User {
    id: u64,
    name: Arc<str>,
    email: Arc<str>,
    /// Incremented by every update.
    version: u64,
}

/// The body of `PUT /users/{id}`.
#[derive(Debug, Serialize, Deserialize)]
struct Rename {
    name: String,
}

// ---------------------------------------------------------------------------------------------
// The database

/// A minimal connection pool: connections to one database file, each behind a mutex (WAL mode
/// lets readers proceed while a writer commits). Every call blocks: run it on tokio's blocking
/// pool, never on an executor thread.
struct Db {
    connections: Vec<Mutex<Connection>>,
    /// `SELECT`s run (the cache's misses and refreshes).
    selects: AtomicU64,
    /// `UPDATE`s run.
    updates: AtomicU64,
}

const SELECT: &str = "SELECT id, name, email, version FROM users WHERE id = ?1";
const UPDATE: &str = "UPDATE users SET name = ?2, version = version + 1 WHERE id = ?1 \
                      RETURNING id, name, email, version";

impl Db {
    /// Creates the database at `path` with `users` rows, and opens `size` connections to it.
    fn create(path: &Path, users: u64, size: usize) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(&format!(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                                 email TEXT NOT NULL, version INTEGER NOT NULL);
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {users})
             INSERT INTO users SELECT i, 'user ' || i, 'user' || i || '@example.com', 1 FROM n;"
        ))?;
        drop(conn);
        let open = || {
            let conn = Connection::open(path)?;
            conn.busy_timeout(Duration::from_secs(5))?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            Ok(Mutex::new(conn))
        };
        Ok(Db {
            connections: (0..size).map(|_| open()).collect::<rusqlite::Result<_>>()?,
            selects: AtomicU64::new(0),
            updates: AtomicU64::new(0),
        })
    }

    /// Runs `sql` with `params` on the first idle connection: the row, or `None`.
    fn user(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<Option<User>> {
        let idle = self.connections.iter().find_map(|c| c.try_lock().ok());
        let conn = idle.unwrap_or_else(|| self.connections[0].lock().expect("poisoned"));
        let mut statement = conn.prepare_cached(sql)?;
        let row = statement.query_row(params, |r| {
            Ok(User {
                id: r.get(0)?,
                name: r.get::<_, String>(1)?.into(),
                email: r.get::<_, String>(2)?.into(),
                version: r.get(3)?,
            })
        });
        row.optional()
    }

    fn select(&self, id: u64) -> rusqlite::Result<Option<User>> {
        self.selects.fetch_add(1, Relaxed);
        self.user(SELECT, [id])
    }

    fn update(&self, id: u64, name: &str) -> rusqlite::Result<Option<User>> {
        self.updates.fetch_add(1, Relaxed);
        self.user(UPDATE, rusqlite::params![id, name])
    }
}

/// Removes the database file and its WAL files when dropped.
struct TempDb(PathBuf);

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The service

/// The service's state, shared by every request.
struct App {
    db: Arc<Db>,
    users: AsideCache<u64, User>,
    /// Sampled on every scrape of `/metrics`, so that the exposition is current.
    sampler: Mutex<MetricsSampler>,
    prometheus: PrometheusHandle,
}

type Shared = State<Arc<App>>;

/// `GET /users/{id}`: the cache-aside read.
async fn get_user(State(app): Shared, UrlPath(id): UrlPath<u64>) -> Response {
    // The loader runs only on a miss, once per id however many requests wait for it (it is
    // called, so the `Arc` is cloned, only then); the query runs on the blocking pool.
    let load = || {
        let db = Arc::clone(&app.db);
        async move {
            let row = tokio::task::spawn_blocking(move || db.select(id)).await?;
            Ok::<_, Error>(row?)
        }
    };
    match app.users.get_or_load(id, load).await {
        Ok(Some(user)) => Json(user).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "no such user\n").into_response(),
        Err(e) => internal_error(e),
    }
}

/// `PUT /users/{id}`: the cache-aside write. The invalidation runs in the same blocking task
/// as the `UPDATE`, right after it commits: if the client hangs up meanwhile and this future
/// is dropped, the key is invalidated all the same.
async fn put_user(
    State(app): Shared,
    UrlPath(id): UrlPath<u64>,
    Json(Rename { name }): Json<Rename>,
) -> Response {
    let write = tokio::task::spawn_blocking(move || {
        let row = app.db.update(id, &name)?;
        if row.is_some() {
            app.users.invalidate(&id);
        }
        Ok::<_, rusqlite::Error>(row)
    });
    match write.await {
        Ok(Ok(Some(user))) => Json(user).into_response(),
        Ok(Ok(None)) => (StatusCode::NOT_FOUND, "no such user\n").into_response(),
        Ok(Err(e)) => internal_error(e),
        Err(e) => internal_error(e),
    }
}

fn internal_error(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
}

/// `GET /metrics`: one sample (which sets aside's counters in the recorder), then the
/// Prometheus text exposition.
async fn metrics(State(app): Shared) -> Response {
    app.sampler
        .lock()
        .expect("sampler poisoned")
        .sample(SystemTime::now());
    app.prometheus.run_upkeep();
    let content_type = [(header::CONTENT_TYPE, "text/plain; version=0.0.4")];
    (content_type, app.prometheus.render()).into_response()
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/users/{id}", get(get_user).put(put_user))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(app)
}

/// Installs the Prometheus recorder as the `metrics` facade's global recorder, without the
/// exporter's own HTTP listener: the service serves `render()` on its own route. The load
/// latency is a real histogram (buckets) rather than the exporter's default summary, so that
/// instances can be aggregated.
fn install_prometheus() -> Result<PrometheusHandle, Error> {
    let buckets = [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1,
    ];
    let name = Matcher::Full("aside_cache_load_duration_seconds".into());
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(name, &buckets)?
        .install_recorder()?)
}

// ---------------------------------------------------------------------------------------------
// The load generator

/// One HTTP/1.1 keep-alive connection, through hyper's low-level client.
struct Client {
    sender: SendRequest<Full<Bytes>>,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Result<Self, Error> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The connection task ends when `sender` is dropped (the client hangs up).
        tokio::spawn(connection);
        Ok(Self { sender })
    }

    /// Sends one request and reads the whole response.
    async fn send(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(StatusCode, Bytes), Error> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "127.0.0.1")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::copy_from_slice(body)))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        Ok((status, response.into_body().collect().await?.to_bytes()))
    }
}

/// What the clients share.
struct Load {
    /// Requests not yet claimed count down from here.
    remaining: AtomicU64,
    deadline: Instant,
    /// Per id, the newest version a `PUT` returned: a read sent afterwards must show at least
    /// this version.
    min_version: Vec<AtomicU64>,
    errors: AtomicU64,
    /// The first few failures, printed.
    failures: Mutex<Vec<String>>,
}

impl Load {
    /// Claims `n` requests; false once they are gone or time is up.
    fn claim(&self, n: u64) -> bool {
        Instant::now() < self.deadline
            && self
                .remaining
                .fetch_update(Relaxed, Relaxed, |r| r.checked_sub(n))
                .is_ok()
    }

    fn fail(&self, message: String) {
        self.errors.fetch_add(1, Relaxed);
        let mut failures = self.failures.lock().expect("poisoned");
        if failures.len() < 10 {
            failures.push(message);
        }
    }
}

/// What one client did.
#[derive(Default)]
struct Tally {
    /// Latency of every request, in nanoseconds.
    latencies: Vec<u64>,
    gets: u64,
    puts: u64,
    not_found: u64,
}

/// Checks a `GET /users/{id}` answer: 404 for a missing id; otherwise the row, at least
/// version `floor`, and with the name `expect` if it is exactly version `floor`.
fn check_read(
    id: u64,
    status: StatusCode,
    body: &[u8],
    floor: u64,
    expect: Option<&str>,
) -> Result<(), String> {
    if id >= USERS {
        return match status {
            StatusCode::NOT_FOUND => Ok(()),
            _ => Err(format!("GET /users/{id}: {status}, expected 404")),
        };
    }
    if status != StatusCode::OK {
        return Err(format!(
            "GET /users/{id}: {status} {}",
            String::from_utf8_lossy(body)
        ));
    }
    let user: User = serde_json::from_slice(body).map_err(|e| format!("GET /users/{id}: {e}"))?;
    if user.id != id {
        return Err(format!("GET /users/{id} returned user {}", user.id));
    }
    if user.version < floor {
        return Err(format!(
            "GET /users/{id}: stale read, version {} after version {floor} was written",
            user.version
        ));
    }
    match expect {
        Some(name) if user.version == floor && *user.name != *name => Err(format!(
            "GET /users/{id}: version {floor} named {:?}, written as {name:?}",
            user.name
        )),
        _ => Ok(()),
    }
}

/// One client task: its own connection, requests claimed from `load` until none remain.
async fn client(addr: std::net::SocketAddr, load: Arc<Load>, seed: u64) -> Result<Tally, Error> {
    let mut conn = Client::connect(addr).await?;
    let mut rng = SmallRng::seed_from_u64(seed);
    let (existing, missing) = (Zipf::new(USERS), Zipf::new(1_000));
    let mut tally = Tally::default();
    let mut writes = 0u64;
    loop {
        let id = if rng.random_bool(MISSING_SHARE) {
            USERS + missing.sample(&mut rng)
        } else {
            existing.sample(&mut rng)
        };
        let put = rng.random_bool(PUT_SHARE);
        if !load.claim(if put { 2 } else { 1 }) {
            break;
        }
        let path = format!("/users/{id}");
        // The floor is read before the request is sent: every PUT answered by then is visible.
        let floor = load
            .min_version
            .get(id as usize)
            .map_or(0, |v| v.load(Acquire));
        let (floor, expect) = if put {
            writes += 1;
            let name = format!("user {id}, renamed by client {seed} ({writes})");
            let body = serde_json::to_vec(&Rename { name: name.clone() })?;
            let started = Instant::now();
            let (status, answer) = conn.send("PUT", &path, &body).await?;
            tally.latencies.push(started.elapsed().as_nanos() as u64);
            tally.puts += 1;
            match (id < USERS, status) {
                (false, StatusCode::NOT_FOUND) => (0, None),
                (true, StatusCode::OK) => {
                    let user: User = serde_json::from_slice(&answer)?;
                    if user.version <= floor || *user.name != *name {
                        load.fail(format!(
                            "PUT /users/{id}: answered {user:?} after version {floor}"
                        ));
                    }
                    load.min_version[id as usize].fetch_max(user.version, Release);
                    // Read your write: the next read must show this version (or a newer one).
                    (user.version, Some(name))
                }
                _ => {
                    load.fail(format!(
                        "PUT {path}: {status} {}",
                        String::from_utf8_lossy(&answer)
                    ));
                    (0, None)
                }
            }
        } else {
            (floor, None)
        };
        let started = Instant::now();
        let (status, body) = conn.send("GET", &path, b"").await?;
        tally.latencies.push(started.elapsed().as_nanos() as u64);
        tally.gets += 1;
        tally.not_found += u64::from(status == StatusCode::NOT_FOUND);
        if let Err(message) = check_read(id, status, &body, floor, expect.as_deref()) {
            load.fail(message);
        }
    }
    Ok(tally)
}

/// The value of `name{cache="users"}` in a Prometheus exposition.
fn exported(exposition: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{cache=\"users\"}} ");
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn percent(part: u64, whole: u64) -> String {
    format!("{:.1}%", 100.0 * part as f64 / whole.max(1) as f64)
}

/// Prints the load's summary; returns the checks that failed.
fn report(
    mut tally: Tally,
    took: Duration,
    load: &Load,
    db: &Db,
    users: &AsideCache<u64, User>,
    requests: u64,
) -> Vec<String> {
    let mut failed = Vec::new();
    let sent = tally.latencies.len() as u64;
    let errors = load.errors.load(Relaxed);
    tally.latencies.sort_unstable();
    let quantile = |q: f64| {
        let i = ((tally.latencies.len().max(1) - 1) as f64 * q).round() as usize;
        Duration::from_nanos(tally.latencies.get(i).copied().unwrap_or(0))
    };
    let (stats, loads) = (users.cache_stats(), users.load_stats());
    let selects = db.selects.load(Relaxed);
    println!(
        "\nrequests      {sent} ({} GET, {} PUT; {} GETs answered 404) in {took:.2?}",
        tally.gets, tally.puts, tally.not_found
    );
    println!("errors        {errors}");
    println!(
        "throughput    {:.0} requests/s",
        sent as f64 / took.as_secs_f64()
    );
    println!(
        "latency       p50 {:.0?}  p99 {:.0?}  max {:.0?}",
        quantile(0.5),
        quantile(0.99),
        quantile(1.0)
    );
    println!(
        "cache         hit ratio {} ({} hits, {} misses), {} entries of {CAPACITY}",
        percent(stats.hits, stats.hits + stats.misses),
        stats.hits,
        stats.misses,
        users.len()
    );
    println!(
        "front door    {} loads, {} coalesced, {} negative hits, {} discarded, {} invalidations",
        loads.loads, loads.coalesced, loads.negative_hits, loads.discarded, stats.removed_explicit
    );
    println!(
        "database      {selects} SELECTs ({} of reads; one per read without the cache), {} UPDATEs",
        percent(selects, tally.gets),
        db.updates.load(Relaxed)
    );
    for f in load.failures.lock().expect("poisoned").iter() {
        println!("  failure: {f}");
    }
    if errors != 0 {
        failed.push(format!("{errors} requests failed their checks"));
    }
    if sent < requests {
        failed.push(format!(
            "only {sent} of {requests} requests were sent within {TIME_LIMIT:?}"
        ));
    }
    if stats.hits == 0 || loads.negative_hits == 0 {
        failed.push("no hits, or no negative hits: the cache did not serve".into());
    }
    if selects != loads.loads {
        failed.push(format!(
            "{selects} SELECTs but {} loads: something read the database around the cache",
            loads.loads
        ));
    }

    failed
}

/// Scrapes `/metrics` as a Prometheus server would, prints a few lines, and returns the checks
/// that failed: every metric of `EXPECTED_METRICS` is there, and the exported hit count is the
/// cache's own (the scrape sampled it; nothing touched the cache since).
async fn scrape(probe: &mut Client, users: &AsideCache<u64, User>) -> Result<Vec<String>, Error> {
    let mut failed = Vec::new();
    let (status, body) = probe.send("GET", "/metrics", b"").await?;
    let exposition = String::from_utf8_lossy(&body);
    let absent: Vec<_> = EXPECTED_METRICS
        .iter()
        .filter(|m| !exposition.contains(*m))
        .collect();
    println!(
        "\nGET /metrics: {status}, {} lines; a few of them:",
        exposition.lines().count()
    );
    let shown = [
        "aside_cache_hits_total",
        "aside_cache_misses_total",
        "aside_cache_loads_total",
        "aside_cache_negative_hits_total",
        "aside_cache_entries",
        "aside_cache_load_duration_seconds_count",
    ];
    for name in shown {
        let prefix = format!("{name}{{");
        for line in exposition.lines().filter(|l| l.starts_with(&prefix)) {
            println!("  {line}");
        }
    }
    let hits = users.cache_stats().hits;
    if status != StatusCode::OK || !absent.is_empty() {
        failed.push(format!("GET /metrics: {status}, missing {absent:?}"));
    }
    if exported(&exposition, "aside_cache_hits_total") != Some(hits as f64) {
        failed.push(format!("/metrics does not export the cache's {hits} hits"));
    }

    Ok(failed)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let requests = if quick { QUICK_REQUESTS } else { REQUESTS };

    // 1. The database, the front door in front of it, the metrics, the server.
    let started = Instant::now();
    let path = std::env::temp_dir().join(format!("aside-web-{}.db", std::process::id()));
    let _cleanup = TempDb(path.clone());
    let db = Arc::new(Db::create(&path, USERS, 4)?);
    println!(
        "SQLite database {} (WAL mode): {USERS} users, seeded in {:.0?}",
        path.display(),
        started.elapsed()
    );
    let users: AsideCache<u64, User> = AsideCache::builder()
        .max_capacity(CAPACITY)
        .time_to_live(Duration::from_secs(300))
        .ttl_jitter(Duration::from_secs(30))
        .negative_ttl(Duration::from_secs(60))
        .build()?;
    let prometheus = install_prometheus()?;
    let mut sampler = MetricsSampler::new();
    sampler.add("users", users.clone());
    let app = Arc::new(App {
        db: Arc::clone(&db),
        users: users.clone(),
        sampler: Mutex::new(sampler),
        prometheus,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router(app))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    println!(
        "listening on http://{addr} (GET /users/{{id}}, PUT /users/{{id}}, GET /metrics, GET /healthz)"
    );

    // 2. The load: once the server answers, `CLIENTS` connections share `requests` requests.
    let mut probe = Client::connect(addr).await?;
    let (status, body) = probe.send("GET", "/healthz", b"").await?;
    if status != StatusCode::OK || &body[..] != b"ok\n" {
        return Err(format!("GET /healthz: {status} {body:?}").into());
    }
    let load = Arc::new(Load {
        remaining: AtomicU64::new(requests),
        deadline: Instant::now() + TIME_LIMIT,
        min_version: (0..USERS).map(|_| AtomicU64::new(1)).collect(),
        errors: AtomicU64::new(0),
        failures: Mutex::new(Vec::new()),
    });
    println!(
        "load: {CLIENTS} clients (one keep-alive connection each), {requests} requests over loopback"
    );
    let load_started = Instant::now();
    let mut clients = JoinSet::new();
    for c in 0..CLIENTS {
        clients.spawn(client(addr, Arc::clone(&load), c as u64 + 1));
    }
    let mut tally = Tally::default();
    for result in clients.join_all().await {
        match result {
            Ok(t) => {
                tally.latencies.extend(t.latencies);
                (tally.gets, tally.puts) = (tally.gets + t.gets, tally.puts + t.puts);
                tally.not_found += t.not_found;
            }
            Err(e) => load.fail(format!("client failed: {e}")),
        }
    }
    let took = load_started.elapsed();

    // 3. The report, then one scrape of /metrics.
    let mut failed = report(tally, took, &load, &db, &users, requests);
    failed.extend(scrape(&mut probe, &users).await?);

    // Shutdown: every client has hung up; the probe hangs up, then the server drains.
    drop(probe);
    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Ok(()))) => println!(
            "\nserver shut down gracefully; total {:.1?}",
            started.elapsed()
        ),
        other => failed.push(format!("server did not shut down cleanly: {other:?}")),
    }
    users.validate()?;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; ").into())
    }
}
