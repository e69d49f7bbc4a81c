//! The distributed stampede lock: `SET lock:{key} {token} NX PX {lease}`.
//!
//! Only the holder, identified by its random token, may release the lock or install a value
//! under it; both are Lua scripts that compare the token first, so a holder whose lease ran out
//! (and whose lock another instance now holds) never deletes that instance's lock. The install
//! script writes the value and releases the lock in one step, and `invalidate`/`put` delete the
//! lock together with the value: a load that began before an invalidation loses its lease and
//! cannot write what it read into Redis (memcache's leases, in Redis).

use std::sync::Arc;
use std::sync::LazyLock;

use rand::Rng;
use redis::Script;

use super::l2::{L2, L2Error};

/// `KEYS[1]` the lock, `ARGV[1]` the token: delete the lock if we hold it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('get', KEYS[1]) == ARGV[1] then \
             return redis.call('del', KEYS[1]) \
         else \
             return 0 \
         end",
    )
});

/// `KEYS[1]` the value, `KEYS[2]` the lock, `ARGV` token, bytes, TTL in ms: while we hold the
/// lock, store the value with its TTL and release the lock; 1 if installed, 0 if the lease was
/// gone.
static INSTALL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('get', KEYS[2]) == ARGV[1] then \
             redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) \
             redis.call('del', KEYS[2]) \
             return 1 \
         else \
             return 0 \
         end",
    )
});

/// A fresh lock token: the instance id and 64 random bits.
pub(crate) fn new_token(instance: u128) -> String {
    let nonce: u64 = rand::rng().random();
    format!("{instance:032x}-{nonce:016x}")
}

/// Tries to take the lock; `Ok(true)` when taken.
pub(crate) async fn try_acquire(
    l2: &L2,
    lock_key: &str,
    token: &str,
    lease_ms: u64,
) -> Result<bool, L2Error> {
    l2.run(|mut c| async move {
        let reply: Option<String> = redis::cmd("SET")
            .arg(lock_key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(lease_ms)
            .query_async(&mut c)
            .await?;
        Ok(reply.is_some())
    })
    .await
}

/// A held lock. Release it with [`release`](Self::release) or spend it with
/// [`install`](Self::install); dropped unreleased (a panicking or cancelled loader) it releases
/// the lock from a spawned task, and if there is no runtime the lease expires on its own.
pub(crate) struct LockGuard {
    l2: Arc<L2>,
    lock_key: String,
    token: String,
    armed: bool,
}

impl LockGuard {
    pub(crate) fn new(l2: Arc<L2>, lock_key: String, token: String) -> Self {
        Self {
            l2,
            lock_key,
            token,
            armed: true,
        }
    }

    async fn release_now(l2: &L2, lock_key: &str, token: &str) -> Result<(), L2Error> {
        l2.run(|mut c| async move {
            RELEASE
                .key(lock_key)
                .arg(token)
                .invoke_async::<i64>(&mut c)
                .await
                .map(drop)
        })
        .await
    }

    /// Releases the lock if we still hold it.
    pub(crate) async fn release(mut self) {
        self.armed = false;
        // A failed release is harmless: the lease expires.
        let _ = Self::release_now(&self.l2, &self.lock_key, &self.token).await;
    }

    /// Stores `bytes` under `value_key` for `ttl_ms` and releases the lock, if we still hold
    /// it. `Ok(false)`: the lease was gone (invalidated meanwhile, or expired); nothing stored.
    pub(crate) async fn install(
        mut self,
        value_key: &str,
        bytes: &[u8],
        ttl_ms: u64,
    ) -> Result<bool, L2Error> {
        let (lock_key, token) = (&self.lock_key, &self.token);
        let result = self
            .l2
            .run(|mut c| async move {
                INSTALL
                    .key(value_key)
                    .key(lock_key)
                    .arg(token)
                    .arg(bytes)
                    .arg(ttl_ms)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await;
        if result.is_ok() {
            self.armed = false; // the script released the lock (or it was not ours any more)
        }
        result.map(|n| n == 1)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let (l2, key, token) = (
                Arc::clone(&self.l2),
                std::mem::take(&mut self.lock_key),
                std::mem::take(&mut self.token),
            );
            handle.spawn(async move {
                let _ = Self::release_now(&l2, &key, &token).await;
            });
        }
    }
}
