//! The Redis side of the tier: one lazily (re)connected multiplexed connection, every operation
//! under the op timeout and the circuit breaker, and the background retry of failed writes.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// Redis or the connection answered with an error (counted in `l2_errors`).
    Redis,
}

/// Whether `e` says the connection (not the command) is broken.
fn is_connection_level(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

/// The most failed writes retried in the background at once; past it they are dropped.
const MAX_PENDING_REPAIRS: usize = 256;

pub(crate) struct L2 {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    op_timeout: Duration,
    pub(crate) breaker: Breaker,
    pub(crate) counters: Arc<Counters>,
    write_retry_window: Duration,
    pending_repairs: AtomicUsize,
}

impl L2 {
    pub(crate) fn new(
        client: redis::Client,
        op_timeout: Duration,
        breaker: Breaker,
        counters: Arc<Counters>,
        write_retry_window: Duration,
    ) -> Self {
        Self {
            client,
            conn: tokio::sync::Mutex::new(None),
            op_timeout,
            breaker,
            counters,
            write_retry_window,
            pending_repairs: AtomicUsize::new(0),
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
                } else {
                    permit.success();
                }
                Err(L2Error::Redis)
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

    /// Retries a failed write in the background until it succeeds or the retry window ends
    /// (backoff from 50 ms, doubling, at most 1 s). `attempt` runs one try.
    pub(crate) fn retry_in_background<F, Fut>(self: &Arc<Self>, attempt: F)
    where
        F: Fn(Arc<Self>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), L2Error>> + Send + 'static,
    {
        let dropped = || Counters::bump(&self.counters.writes_dropped);
        if self.write_retry_window.is_zero() {
            return dropped();
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return dropped();
        };
        if self.pending_repairs.fetch_add(1, Ordering::AcqRel) >= MAX_PENDING_REPAIRS {
            self.pending_repairs.fetch_sub(1, Ordering::AcqRel);
            return dropped();
        }
        let this = Arc::clone(self);
        handle.spawn(async move {
            let deadline = tokio::time::Instant::now() + this.write_retry_window;
            let mut backoff = Duration::from_millis(50);
            let done = loop {
                tokio::time::sleep(backoff).await;
                if attempt(Arc::clone(&this)).await.is_ok() {
                    break true;
                }
                if tokio::time::Instant::now() + backoff >= deadline {
                    break false;
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            };
            let counter = if done {
                &this.counters.writes_retried
            } else {
                &this.counters.writes_dropped
            };
            Counters::bump(counter);
            this.pending_repairs.fetch_sub(1, Ordering::AcqRel);
        });
    }
}
