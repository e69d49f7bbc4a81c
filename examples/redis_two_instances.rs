//! Two application instances, each with its own L1 (`AsideCache`), sharing one Redis as L2.
//!
//! ```sh
//! cargo run --features redis --example redis_two_instances
//! REDIS_URL=redis://127.0.0.1:6379/ cargo run --features redis --example redis_two_instances
//! ```
//!
//! Without `REDIS_URL` the example starts its own `redis-server` on a free loopback port (no
//! persistence) and stops it at the end. It shows a cold-key stampede across both instances
//! served by one database load, L1 and L2 hits, and an invalidation on A reaching B's L1.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aside::AsideCache;
use aside::tier::{TierMetrics, TieredCache};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u64,
}

/// The source of truth: a table behind 100 ms of latency, counting its reads.
#[derive(Clone, Default)]
struct Database {
    rows: Arc<Mutex<HashMap<u64, Product>>>,
    reads: Arc<AtomicUsize>,
}

impl Database {
    async fn load(&self, id: u64) -> Result<Option<Product>, String> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(self.rows.lock().get(&id).cloned())
    }

    fn set_price(&self, id: u64, price_cents: u64) {
        if let Some(p) = self.rows.lock().get_mut(&id) {
            p.price_cents = price_cents;
        }
    }
}

/// A `redis-server` this example started; killed on drop.
struct OwnServer(Child, std::path::PathBuf);

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn start_redis() -> (String, Option<OwnServer>) {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return (url, None);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let dir = std::env::temp_dir().join(format!("aside-example-redis-{port}"));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start redis-server ({e}): `apt-get install redis-server`, or set REDIS_URL"
            )
        });
    let server = OwnServer(child, dir);
    let url = format!("redis://127.0.0.1:{port}/");
    let client = redis::Client::open(url.as_str()).expect("a valid URL");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = client
            .get_connection_with_timeout(Duration::from_millis(200))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        if ready.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("started redis-server on 127.0.0.1:{port}");
    (url, Some(server))
}

async fn instance(url: &str) -> TieredCache<u64, Product> {
    let l1: AsideCache<u64, Product> = AsideCache::builder()
        .max_capacity(10_000)
        .time_to_live(Duration::from_secs(30)) // the L1 is a short-lived copy
        .build()
        .expect("valid L1 settings");
    TieredCache::builder(l1, url)
        .key_prefix("example:product:v1:")
        .l2_ttl(Duration::from_secs(600))
        .l2_ttl_jitter(Duration::from_secs(60))
        .lock_lease(Duration::from_secs(2))
        .build()
        .await
        .expect("valid tier settings")
}

fn print_metrics(name: &str, m: &TierMetrics) {
    println!(
        "  {name}: L1 hits {:>2} misses {:>2} | L2 hits {:>2} misses {} | lock won {} waited {} \
         fallback {} | loads {} | backplane sent {} received {} own {} | breaker {:?}",
        m.l1_hits,
        m.l1_misses,
        m.l2_hits,
        m.l2_misses,
        m.lock_acquired,
        m.lock_waited,
        m.lock_fallback_loads,
        m.loads,
        m.backplane_sent,
        m.backplane_received,
        m.backplane_own,
        m.breaker
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (url, _server) = start_redis();
    let db = Database::default();
    for id in 1..=1000 {
        db.rows.lock().insert(
            id,
            Product {
                id,
                name: format!("product {id}"),
                price_cents: 1000 * id,
            },
        );
    }
    let (a, b) = (instance(&url).await, instance(&url).await);
    if _server.is_none() {
        a.invalidate_all().await; // a clean slate on a server we did not start
    }

    println!("\n1. stampede: 20 concurrent requests for cold product 1, 10 on each instance");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let t = if i % 2 == 0 { a.clone() } else { b.clone() };
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            t.get_or_load(1, move || async move { db.load(1).await })
                .await
        }));
    }
    for task in tasks {
        task.await.expect("no panic").expect("a value");
    }
    println!(
        "  all 20 answered in {:?}; database reads: {} (one instance won the Redis lock, \
         the other waited for its value)",
        started.elapsed(),
        db.reads.load(Ordering::SeqCst)
    );
    print_metrics("A", &a.metrics());
    print_metrics("B", &b.metrics());

    println!("\n2. warm reads: 5 more on each instance are L1 hits");
    for _ in 0..5 {
        for t in [&a, &b] {
            let db = db.clone();
            t.get_or_load(1, move || async move { db.load(1).await })
                .await
                .expect("a value");
        }
    }
    print_metrics("A", &a.metrics());
    print_metrics("B", &b.metrics());

    println!("\n3. product 2 loaded by A is an L2 hit on B (no database read)");
    let reads = db.reads.load(Ordering::SeqCst);
    for t in [&a, &b] {
        let db = db.clone();
        let p = t
            .get_or_load(2, move || async move { db.load(2).await })
            .await
            .expect("a value");
        println!("  {:?}", p.expect("found"));
    }
    println!(
        "  database reads for product 2: {}",
        db.reads.load(Ordering::SeqCst) - reads
    );

    println!("\n3b. A loads products 100..600 (concurrently); B reads them from Redis");
    let loads: Vec<_> = (100..600)
        .map(|id| {
            let (a, db) = (a.clone(), db.clone());
            tokio::spawn(async move {
                a.get_or_load(id, move || async move { db.load(id).await })
                    .await
            })
        })
        .collect();
    for l in loads {
        l.await.expect("no panic").expect("a value");
    }
    let (reads, hits) = (db.reads.load(Ordering::SeqCst), b.metrics().l2_hits);
    let started = Instant::now();
    for id in 100..600 {
        let db = db.clone();
        b.get_or_load(id, move || async move { db.load(id).await })
            .await
            .expect("a value");
    }
    let per_read = started.elapsed() / 500;
    println!(
        "  500 reads on B: {} L2 hits, {} database reads, {per_read:?} per read (L1 miss + Redis GET + L1 install)",
        b.metrics().l2_hits - hits,
        db.reads.load(Ordering::SeqCst) - reads
    );
    let started = Instant::now();
    for id in 100..600 {
        b.get_or_load(id, || async {
            Err::<Option<Product>, String>("not called".into())
        })
        .await
        .expect("a value");
    }
    println!(
        "  the same 500 reads again: {:?} per read (L1 hits)",
        started.elapsed() / 500
    );

    println!("\n4. the price of product 1 changes; A invalidates (delete on write)");
    db.set_price(1, 999);
    let sent = Instant::now();
    a.invalidate(&1).await;
    while b.l1().get(&1).is_some() {
        assert!(sent.elapsed() < Duration::from_secs(5), "B never heard it");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!(
        "  B dropped product 1 from its L1 {:?} after A's invalidate began",
        sent.elapsed()
    );
    let db2 = db.clone();
    let p = b
        .get_or_load(1, move || async move { db2.load(1).await })
        .await
        .expect("a value")
        .expect("found");
    println!("  B now reads {p:?}");

    println!("\n5. B writes through product 3 (put); A's copy is replaced");
    let db3 = db.clone();
    a.get_or_load(3, move || async move { db3.load(3).await })
        .await
        .expect("a value");
    let updated = Product {
        id: 3,
        name: "product 3 (renamed)".to_string(),
        price_cents: 3500,
    };
    db.rows.lock().insert(3, updated.clone());
    b.put(3, updated).await;
    while a.l1().get(&3).is_some_and(|p| p.price_cents != 3500) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let p = a.get(&3).await.expect("in Redis");
    println!("  A reads {p:?} (from Redis)");

    println!("\nfinal metrics");
    print_metrics("A", &a.metrics());
    print_metrics("B", &b.metrics());
    println!(
        "database reads in total: {}",
        db.reads.load(Ordering::SeqCst)
    );
    a.invalidate_all().await;
    a.shutdown().await;
    b.shutdown().await;
}
