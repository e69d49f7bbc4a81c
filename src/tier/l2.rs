//! The Redis side of the tier: one lazily (re)connected multiplexed connection, every operation
//! under the op timeout and the circuit breaker. Failed invalidations are queued and replayed by
//! [`super::replay`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, RedisResult};

use super::breaker::Breaker;
use super::metrics::Counters;

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
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    op_timeout: Duration,
    pub(crate) breaker: Breaker,
    pub(crate) counters: Arc<Counters>,
}

impl L2 {
    pub(crate) fn new(
        client: redis::Client,
        op_timeout: Duration,
        breaker: Breaker,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            client,
            conn: tokio::sync::Mutex::new(None),
            op_timeout,
            breaker,
            counters,
        }
    }

    /// The shared connection, connecting first if there is none.
    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.op_timeout))
            .set_response_timeout(Some(self.op_timeout));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
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
        F: FnOnce(MultiplexedConnection) -> Fut,
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
