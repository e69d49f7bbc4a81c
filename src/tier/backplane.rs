//! The invalidation backplane: Redis pub/sub messages that make every instance drop a key (or
//! everything) from its L1.
//!
//! A message is one line of text, so that `redis-cli SUBSCRIBE` shows it readably:
//!
//! ```text
//! aside1 <origin instance, 32 hex digits> <unix time in ms> key <encoded key>
//! aside1 <origin instance, 32 hex digits> <unix time in ms> all
//! ```
//!
//! The subscriber task keeps one dedicated pub/sub connection, to the single server or to one
//! node of a cluster (classic `SUBSCRIBE`: a cluster broadcasts every `PUBLISH` to all its
//! nodes; a lost node is replaced by the next one in the configured list), pings it every
//! `backplane_ping` (a hung server is a lost subscription too), and reconnects with a backoff
//! from 50 ms doubling to 1 s. Every subscription established after the first one clears the
//! L1: messages published while it was down are lost (Redis pub/sub is at most once), and
//! clearing is the only way to be sure nothing stale survives the gap.

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio::sync::oneshot;

use super::codec::KeyCodec;
use super::metrics::Counters;
use crate::AsideCache;
use crate::policy::EvictionPolicy;

const VERSION: &str = "aside1";

/// What a message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Drop this (encoded) key.
    Key(String),
    /// Drop everything.
    All,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) origin: u128,
    pub(crate) sent_at_ms: u64,
    pub(crate) scope: Scope,
}

impl Message {
    pub(crate) fn new(origin: u128, scope: Scope) -> Self {
        let sent_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            origin,
            sent_at_ms,
            scope,
        }
    }

    pub(crate) fn encode(&self) -> String {
        let head = format!("{VERSION} {:032x} {}", self.origin, self.sent_at_ms);
        match &self.scope {
            Scope::Key(k) => format!("{head} key {k}"),
            Scope::All => format!("{head} all"),
        }
    }

    pub(crate) fn decode(text: &str) -> Option<Self> {
        let mut parts = text.splitn(5, ' ');
        if parts.next()? != VERSION {
            return None;
        }
        let origin = u128::from_str_radix(parts.next()?, 16).ok()?;
        let sent_at_ms = parts.next()?.parse().ok()?;
        let scope = match (parts.next()?, parts.next()) {
            ("key", Some(k)) => Scope::Key(k.to_string()),
            ("all", None) => Scope::All,
            _ => return None,
        };
        Some(Self {
            origin,
            sent_at_ms,
            scope,
        })
    }
}

/// What the subscriber task needs (no reference back to the tier, so dropping the tier ends
/// the task through its abort handle).
pub(crate) struct Subscriber<K, V, P: EvictionPolicy> {
    /// The nodes to subscribe through, tried in turn (one for a single server).
    pub(crate) clients: Vec<redis::Client>,
    pub(crate) channel: String,
    pub(crate) instance: u128,
    pub(crate) l1: AsideCache<K, V, P>,
    pub(crate) keys: Arc<dyn KeyCodec<K>>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) op_timeout: Duration,
    pub(crate) ping_every: Duration,
    /// While unsubscribed, clear the L1 this often (`TierBuilder::disconnected_l1_ttl`).
    pub(crate) disconnected_l1_ttl: Option<Duration>,
    /// A Redis Cluster: subscribe only through a node that reports `cluster_state:ok`, and
    /// treat its leaving that state as a lost subscription (see [`Subscriber::healthy`]).
    pub(crate) cluster: bool,
}

/// Whether `CLUSTER INFO` says the node is part of a working cluster.
fn cluster_ok(info: &str) -> bool {
    info.lines().any(|l| l.trim() == "cluster_state:ok")
}

impl<K, V, P> Subscriber<K, V, P>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    P: EvictionPolicy,
{
    /// Applies one message to the L1.
    fn apply(&self, payload: &[u8]) {
        let message = std::str::from_utf8(payload).ok().and_then(Message::decode);
        let Some(message) = message else {
            // Not ours to read: someone else publishing on the channel, or a newer format.
            Counters::bump(&self.counters.backplane_undecodable);
            return;
        };
        if message.origin == self.instance {
            // We applied it to our L1 before publishing.
            Counters::bump(&self.counters.backplane_own);
            return;
        }
        Counters::bump(&self.counters.backplane_received);
        match message.scope {
            Scope::All => self.l1.invalidate_all(),
            Scope::Key(text) => match self.keys.decode(&text) {
                Some(key) => self.l1.invalidate(&key),
                None => {
                    Counters::bump(&self.counters.backplane_undecodable);
                    self.l1.invalidate_all();
                }
            },
        }
    }

    /// Subscribes through `node`; in a cluster, only if the node is healthy, and with a
    /// command connection to the same node to keep checking that it stays so.
    async fn subscribe(
        &self,
        node: usize,
    ) -> redis::RedisResult<(
        redis::aio::PubSub,
        Option<redis::aio::MultiplexedConnection>,
    )> {
        let Some(client) = self.clients.get(node % self.clients.len().max(1)) else {
            return Err(redis::RedisError::from(std::io::Error::other(
                "no node to subscribe through",
            )));
        };
        let mut check = None;
        if self.cluster {
            let mut conn = client.get_multiplexed_async_connection().await?;
            if !Self::healthy(&mut conn).await {
                return Err(redis::RedisError::from(std::io::Error::other(
                    "node not in a working cluster yet",
                )));
            }
            check = Some(conn);
        }
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&self.channel).await?;
        Ok((pubsub, check))
    }

    /// Whether a cluster node reports `cluster_state:ok`. A node that does not (a node just
    /// restarted, before its cluster-bus links are back; a node that lost the majority) may
    /// not relay messages published through the other nodes, and its subscriber would not
    /// notice the loss: such a node is no place to subscribe, or to stay subscribed.
    async fn healthy(conn: &mut redis::aio::MultiplexedConnection) -> bool {
        let info: redis::RedisResult<String> =
            redis::cmd("CLUSTER").arg("INFO").query_async(conn).await;
        info.is_ok_and(|i| cluster_ok(&i))
    }

    /// The subscriber loop; `first` learns whether the first subscription succeeded.
    pub(crate) async fn run(self, first: oneshot::Sender<bool>) {
        let mut first = Some(first);
        let mut backoff = Duration::from_millis(50);
        // The node to subscribe through next: a failed or lost subscription moves on to the
        // next one, so that a cluster node that died is not retried before the others.
        let mut node = 0usize;
        // While unsubscribed: when the L1 is next cleared (`disconnected_l1_ttl`).
        let mut clear_at = self
            .disconnected_l1_ttl
            .map(|t| tokio::time::Instant::now() + t);
        loop {
            let subscribed = tokio::time::timeout(self.op_timeout, self.subscribe(node)).await;
            let Ok(Ok((pubsub, check))) = subscribed else {
                node = node.wrapping_add(1);
                if let Some(tx) = first.take() {
                    let _ = tx.send(false);
                }
                let mut wake = tokio::time::Instant::now() + backoff;
                if let (Some(at), Some(ttl)) = (clear_at, self.disconnected_l1_ttl) {
                    if tokio::time::Instant::now() >= at {
                        super::shielded(|| self.l1.invalidate_all());
                        Counters::bump(&self.counters.disconnected_l1_clears);
                        clear_at = Some(tokio::time::Instant::now() + ttl);
                    }
                    wake = wake.min(clear_at.unwrap_or(wake));
                }
                tokio::time::sleep_until(wake).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            };
            backoff = Duration::from_millis(50);
            self.counters
                .backplane_connected
                .store(true, Ordering::Relaxed);
            match first.take() {
                Some(tx) => {
                    let _ = tx.send(true);
                }
                None => {
                    // A gap: whatever was published meanwhile is lost.
                    super::shielded(|| self.l1.invalidate_all());
                    Counters::bump(&self.counters.backplane_resubscribes);
                }
            }
            self.listen(pubsub, check).await;
            node = node.wrapping_add(1);
            self.counters
                .backplane_connected
                .store(false, Ordering::Relaxed);
            // The loss was noticed now; the first clear is one `disconnected_l1_ttl` later
            // (values loaded before the loss were at most that old when it was noticed
            // plus the detection time).
            clear_at = self
                .disconnected_l1_ttl
                .map(|t| tokio::time::Instant::now() + t);
        }
    }

    /// Applies messages until the subscription is lost (stream ended, a ping unanswered, or,
    /// in a cluster, the node no longer healthy).
    async fn listen(
        &self,
        pubsub: redis::aio::PubSub,
        mut check: Option<redis::aio::MultiplexedConnection>,
    ) {
        let (mut sink, mut stream) = pubsub.split();
        let mut ping = tokio::time::interval(self.ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await; // the first tick is immediate
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(m) => super::shielded(|| self.apply(m.get_payload_bytes())),
                    None => return,
                },
                _ = ping.tick() => {
                    let pong = tokio::time::timeout(
                        self.op_timeout,
                        sink.ping::<redis::Value>(),
                    )
                    .await;
                    if !matches!(pong, Ok(Ok(_))) {
                        return;
                    }
                    if let Some(conn) = check.as_mut() {
                        let ok = tokio::time::timeout(self.op_timeout, Self::healthy(conn)).await;
                        if !matches!(ok, Ok(true)) {
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_reject_foreign_text() {
        for scope in [Scope::Key("user 42: x".into()), Scope::All] {
            let m = Message::new(0xabc, scope);
            assert_eq!(Message::decode(&m.encode()), Some(m));
        }
        assert_eq!(Message::decode("hello"), None);
        assert_eq!(Message::decode("aside1 zz 1 all"), None);
        assert_eq!(Message::decode("aside1 1 1 all extra"), None);
        assert_eq!(Message::decode("aside2 1 1 all"), None);
    }
}
