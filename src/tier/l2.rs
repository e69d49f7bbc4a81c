//! The Redis side of the tier: one lazily (re)connected connection (multiplexed to a single
//! server, or a cluster connection that routes by slot), every operation under the op timeout
//! and the circuit breaker. Failed invalidations are queued and replayed by [`super::replay`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionInfo, FromRedisValue, Pipeline, RedisError, RedisFuture,
    RedisResult, Value,
};

use super::breaker::Breaker;
use super::metrics::Counters;

/// Where the tier's Redis lives: one server, or the seed nodes of a cluster.
#[derive(Debug, Clone)]
pub(crate) enum Endpoint {
    Single(redis::Client),
    Cluster(Vec<ConnectionInfo>),
}

impl Endpoint {
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// One client per node the backplane may subscribe through, in the order it tries them.
    pub(crate) fn subscription_clients(&self) -> Vec<redis::Client> {
        match self {
            Self::Single(c) => vec![c.clone()],
            Self::Cluster(nodes) => nodes
                .iter()
                .filter_map(|n| redis::Client::open(n.clone()).ok())
                .collect(),
        }
    }
}

/// What the tier connects with, built once from the [`Endpoint`] and the op timeout.
enum Connector {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

/// A connection to the single server or to the cluster. Commands with keys go to the node of
/// their slot; see [`Conn::pipe_on`] for pipelines.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A cluster connection whose pipelines all go to the primary of one slot.
///
/// The cluster client routes a pipeline by the keys of all its commands and refuses one whose
/// commands hash to different slots; `PUBLISH` hashes its channel like a key, so a transaction
/// `DEL k lock:k` + `PUBLISH channel ...` would be refused although Redis accepts it (a
/// channel is not a key; the message is broadcast to every node of the cluster).
struct Pinned<'c> {
    conn: &'c mut ClusterConnection,
    route: Route,
}

impl ConnectionLike for Pinned<'_> {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(self.route));
        Box::pin(self.conn.route_command(cmd.clone(), routing))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let route = SingleNodeRoutingInfo::SpecificNode(self.route);
        Box::pin(
            self.conn
                .route_pipeline(pipeline.clone(), offset, count, route),
        )
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// A node to send a command to: any (the single server) or one cluster primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Any,
    At(String, u16),
}

impl Conn {
    /// Runs `pipe` on the node serving `key`. Every key in `pipe` must share `key`'s slot
    /// (the tier's hash tags see to it); keyless commands such as `PUBLISH` go along.
    pub(crate) async fn pipe_on<T: FromRedisValue>(
        &mut self,
        pipe: &Pipeline,
        key: &str,
    ) -> RedisResult<T> {
        match self {
            Self::Single(c) => pipe.query_async(c).await,
            Self::Cluster(conn) => {
                let route = Route::with_key(key, SlotAddr::Master);
                pipe.query_async(&mut Pinned { conn, route }).await
            }
        }
    }

    /// The nodes that hold keys: the server, or every cluster primary (`CLUSTER SLOTS`).
    pub(crate) async fn primaries(&mut self) -> RedisResult<Vec<Node>> {
        let Self::Cluster(c) = self else {
            return Ok(vec![Node::Any]);
        };
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
        let slots = c
            .route_command(redis::cmd("CLUSTER").arg("SLOTS").clone(), routing)
            .await?;
        Ok(parse_primaries(&slots))
    }

    /// Runs `cmd` on `node`.
    pub(crate) async fn query_on<T: FromRedisValue>(
        &mut self,
        cmd: &Cmd,
        node: &Node,
    ) -> RedisResult<T> {
        match (self, node) {
            (Self::Cluster(c), Node::At(host, port)) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                let value = c.route_command(cmd.clone(), routing).await?;
                Ok(T::from_redis_value(value)?)
            }
            (c, _) => cmd.query_async(c).await,
        }
    }
}

/// The primaries in a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, ..], replicas..], ..]`.
fn parse_primaries(reply: &Value) -> Vec<Node> {
    let mut out = Vec::new();
    let Value::Array(ranges) = reply else {
        return out;
    };
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        let Some(Value::Array(primary)) = fields.get(2) else {
            continue;
        };
        let host = match primary.first() {
            Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(Value::SimpleString(s)) => s.clone(),
            _ => continue,
        };
        let Some(Value::Int(port)) = primary.get(1) else {
            continue;
        };
        let Ok(port) = u16::try_from(*port) else {
            continue;
        };
        let node = Node::At(host, port);
        if !out.contains(&node) {
            out.push(node);
        }
    }
    out
}

/// Why an operation did not reach Redis or came back without a reply.
#[derive(Debug)]
pub(crate) enum L2Error {
    /// The breaker is open: the operation was not sent.
    Unavailable,
    /// The op timeout ran out (connecting included).
    Timeout,
    /// The connection failed (refused, dropped, I/O error; counted in `l2_errors`).
    Connection,
    /// Redis answered with an error reply (counted in `l2_errors`): it is up.
    Reply,
}

/// Whether `e` says the connection (not the command) is broken.
fn is_connection_level(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

pub(crate) struct L2 {
    connector: Connector,
    conn: tokio::sync::Mutex<Option<Conn>>,
    op_timeout: Duration,
    pub(crate) breaker: Breaker,
    pub(crate) counters: Arc<Counters>,
}

impl L2 {
    /// # Errors
    ///
    /// A cluster client the redis crate refuses to build (its message).
    pub(crate) fn new(
        endpoint: &Endpoint,
        op_timeout: Duration,
        breaker: Breaker,
        counters: Arc<Counters>,
    ) -> RedisResult<Self> {
        let connector = match endpoint {
            Endpoint::Single(client) => Connector::Single(client.clone()),
            Endpoint::Cluster(nodes) => Connector::Cluster(Box::new(
                ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(op_timeout)
                    .response_timeout(op_timeout)
                    .build()?,
            )),
        };
        Ok(Self {
            connector,
            conn: tokio::sync::Mutex::new(None),
            op_timeout,
            breaker,
            counters,
        })
    }

    /// The shared connection, connecting first if there is none.
    async fn connection(&self) -> RedisResult<Conn> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let c = match &self.connector {
            Connector::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.op_timeout))
                    .set_response_timeout(Some(self.op_timeout));
                Conn::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
            Connector::Cluster(client) => Conn::Cluster(client.get_async_connection().await?),
        };
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Forgets the shared connection; the next operation reconnects.
    async fn reset(&self) {
        *self.conn.lock().await = None;
    }

    /// Runs `op` on the shared connection, under the breaker and the op timeout. Connection
    /// failures and timeouts count against the breaker and drop the connection; error replies
    /// do not (Redis answered).
    pub(crate) async fn run<T, F, Fut>(&self, op: F) -> Result<T, L2Error>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let Some(permit) = self.breaker.try_acquire() else {
            Counters::bump(&self.counters.l2_skipped);
            return Err(L2Error::Unavailable);
        };
        let attempt = async {
            let c = self.connection().await?;
            op(c).await
        };
        match tokio::time::timeout(self.op_timeout, attempt).await {
            Ok(Ok(v)) => {
                permit.success();
                Ok(v)
            }
            Ok(Err(e)) => {
                Counters::bump(&self.counters.l2_errors);
                if e.is_timeout() {
                    Counters::bump(&self.counters.l2_timeouts);
                }
                if is_connection_level(&e) {
                    permit.failure();
                    self.reset().await;
                    Err(L2Error::Connection)
                } else {
                    permit.success();
                    Err(L2Error::Reply)
                }
            }
            Err(_) => {
                Counters::bump(&self.counters.l2_errors);
                Counters::bump(&self.counters.l2_timeouts);
                permit.failure();
                self.reset().await;
                Err(L2Error::Timeout)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_slots_reply_yields_each_primary_once() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let range = |start, end, primary, replica| {
            Value::Array(vec![Value::Int(start), Value::Int(end), primary, replica])
        };
        let reply = Value::Array(vec![
            range(0, 5460, node("10.0.0.1", 7000), node("10.0.0.9", 7009)),
            range(5461, 10922, node("10.0.0.2", 7001), node("10.0.0.9", 7009)),
            range(10923, 12000, node("10.0.0.1", 7000), node("10.0.0.9", 7009)),
            Value::Int(3), // not a range: skipped
        ]);
        assert_eq!(
            parse_primaries(&reply),
            [
                Node::At("10.0.0.1".into(), 7000),
                Node::At("10.0.0.2".into(), 7001)
            ]
        );
        assert!(parse_primaries(&Value::Nil).is_empty());
    }
}
