//! A three-node Redis Cluster of `redis-server` child processes for `tests/redis_cluster.rs`
//! (included with `#[path]`): no replicas, no persistence, loopback only, killed on drop.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `port` and its cluster bus port (`port + 10000`) are both free on loopback.
fn free_pair(port: u16) -> bool {
    let Some(bus) = port.checked_add(10_000) else {
        return false;
    };
    TcpListener::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("127.0.0.1", bus)).is_ok()
}

/// A free loopback port whose bus port is free too, not in `taken`.
fn pick_port(taken: &[u16]) -> u16 {
    for _ in 0..1_000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        // Also try the range below the ephemeral ports, where `port + 10000` fits.
        for candidate in [port, 20_000 + port % 20_000] {
            if !taken.contains(&candidate) && free_pair(candidate) {
                return candidate;
            }
        }
    }
    panic!("no free port pair (port, port + 10000) on loopback");
}

/// Three cluster nodes on their own ports, each with its own `nodes-<port>.conf`.
pub struct RedisCluster {
    pub ports: Vec<u16>,
    dir: PathBuf,
    children: Vec<Option<Child>>,
}

impl RedisCluster {
    /// Starts three nodes, creates the cluster (`redis-cli --cluster create`, no replicas)
    /// and waits (at most 20 s) until every node says `cluster_state:ok`.
    pub fn start() -> Self {
        let mut ports = Vec::new();
        for _ in 0..3 {
            ports.push(pick_port(&ports));
        }
        let dir = std::env::temp_dir().join(format!(
            "aside-redis-cluster-{}-{}",
            std::process::id(),
            ports[0]
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = Self {
            children: ports.iter().map(|_| None).collect(),
            ports,
            dir,
        };
        for i in 0..3 {
            cluster.spawn(i);
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli (package redis-tools or redis-server) is installed");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_ok(Duration::from_secs(20));
        cluster
    }

    /// Starts node `i` on its port with its `nodes.conf` (a restarted node rejoins).
    pub fn spawn(&mut self, i: usize) {
        let port = self.ports[i].to_string();
        let conf = self.dir.join(format!("nodes-{port}.conf"));
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(&conf)
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed: `apt-get install redis-server` \
                 (CI installs it in .ci/test); these tests need a real server"
            ),
            Err(e) => panic!("could not start redis-server: {e}"),
        };
        self.children[i] = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url(i)).unwrap();
        while Instant::now() < deadline {
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {port} did not answer within 10 s");
    }

    /// Node `i`'s URL.
    pub fn url(&self, i: usize) -> String {
        format!("redis://127.0.0.1:{}/", self.ports[i])
    }

    /// Every node's URL.
    pub fn urls(&self) -> Vec<String> {
        (0..self.ports.len()).map(|i| self.url(i)).collect()
    }

    /// `CLUSTER INFO`'s `cluster_state` on node `i`, if it answers.
    pub fn state(&self, i: usize) -> Option<String> {
        let client = redis::Client::open(self.url(i)).ok()?;
        let mut c = client
            .get_connection_with_timeout(Duration::from_millis(200))
            .ok()?;
        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut c).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("cluster_state:"))
            .map(|s| s.trim().to_string())
    }

    /// Polls until every node says `cluster_state:ok`; panics after `limit`.
    pub fn wait_ok(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if (0..self.ports.len()).all(|i| self.state(i).as_deref() == Some("ok")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let states: Vec<_> = (0..self.ports.len()).map(|i| self.state(i)).collect();
        panic!("cluster not ok within {limit:?}: {states:?}");
    }

    /// SIGKILLs node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A cluster connection for the test's own checks.
    pub async fn raw(&self) -> redis::cluster_async::ClusterConnection {
        redis::cluster::ClusterClient::new(self.urls())
            .unwrap()
            .get_async_connection()
            .await
            .unwrap()
    }

    /// The node (index) whose slots hold `key` (`CLUSTER KEYSLOT`, then `CLUSTER SLOTS`), if
    /// one answers.
    pub fn node_of(&self, key: &str) -> Option<usize> {
        for i in 0..self.ports.len() {
            let Ok(client) = redis::Client::open(self.url(i)) else {
                continue;
            };
            let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
                continue;
            };
            let Ok(slot) = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query::<i64>(&mut c)
            else {
                continue;
            };
            let Ok(ranges) = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query::<Vec<(i64, i64, (String, i64))>>(&mut c)
            else {
                continue;
            };
            return ranges
                .iter()
                .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
                .and_then(|(_, _, (_, port))| {
                    self.ports.iter().position(|p| i64::from(*p) == *port)
                });
        }
        None
    }

    /// The number of keys on node `i` (`DBSIZE`).
    pub fn dbsize(&self, i: usize) -> i64 {
        let client = redis::Client::open(self.url(i)).unwrap();
        let mut c = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .unwrap();
        redis::cmd("DBSIZE").query(&mut c).unwrap()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
