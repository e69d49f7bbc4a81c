//! Invalidations that did not reach Redis: a bounded queue and the one task that replays it
//! when Redis answers again (FusionCache's auto-recovery, for deletions).
//!
//! A failed `invalidate`, a failed `put` (repaired as a deletion: a late write-through could
//! resurrect an old value) and a failed `invalidate_all` are queued here instead of being
//! given up. The queue is either
//!
//! - per-key deletions, **coalesced per key** (a later invalidation of a key replaces the
//!   queued one and moves to the back) and replayed oldest first, each as `DEL k lock:k` +
//!   `PUBLISH`, up to [`BATCH`] per pipeline; or
//! - **one prefix-wide clear** (`SCAN` + `UNLINK` + an `all` message), which supersedes every
//!   per-key deletion: queued by `invalidate_all`, or when a new key would exceed the budget
//!   (`max_pending_invalidations`; counted in `invalidation_overflows`). Deleting more than
//!   was invalidated is always correct; it costs misses.
//!
//! An entry leaves the queue only once Redis has taken it, and only if it was not queued
//! again meanwhile (sequence numbers tell), so that while a key is pending, this instance's
//! reads skip Redis for it ([`Replay::is_pending`]): they would find the value the pending
//! deletion is about to remove, and this instance ignores its own messages.
//!
//! The replay task sleeps until something is queued, then sends; while Redis does not answer
//! (refused, timed out, the breaker open) it backs off from 50 ms doubling to 1 s and keeps
//! everything. Only error replies from a live Redis (an ACL denial, `READONLY`) for longer
//! than `write_retry_window` drop the batch that gets them (`writes_dropped`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::backplane::{Message, Scope};
use super::l2::{Conn, L2, L2Error};
use super::metrics::Counters;

/// How many queued deletions one replay round trip carries.
const BATCH: usize = 64;
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// One queued per-key deletion: the Redis key and the message to publish.
struct Entry {
    rkey: String,
    message: String,
}

/// What the replay task sends next, with the sequence numbers it was queued under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Batch {
    /// The prefix-wide clear and its `all` message.
    Clear { seq: u64, message: String },
    /// Per-key deletions, oldest first: (seq, Redis key, message).
    Keys(Vec<(u64, String, String)>),
}

/// How [`Queue::push_key`] stored a deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// A new entry.
    Queued,
    /// Replaced the key's queued deletion, or covered by a queued clear.
    Coalesced,
    /// The budget was full: the queue is now one prefix-wide clear.
    Overflowed,
}

/// The pending invalidations (single-threaded; [`Replay`] wraps it in a mutex).
#[derive(Default)]
pub(crate) struct Queue {
    last_seq: u64,
    order: BTreeMap<u64, Entry>,
    by_key: HashMap<String, u64>,
    clear: Option<(u64, String)>,
}

impl Queue {
    fn next_seq(&mut self) -> u64 {
        self.last_seq += 1;
        self.last_seq
    }

    /// Per-key deletions plus one for a queued clear.
    pub(crate) fn len(&self) -> usize {
        self.order.len() + usize::from(self.clear.is_some())
    }

    /// Whether a deletion of `rkey` (or a clear) waits.
    pub(crate) fn covers(&self, rkey: &str) -> bool {
        self.clear.is_some() || self.by_key.contains_key(rkey)
    }

    /// Queues the deletion of `rkey`; past `budget` per-key entries, the whole queue becomes
    /// a clear with the message `all()`.
    pub(crate) fn push_key(
        &mut self,
        rkey: String,
        message: String,
        budget: usize,
        all: impl FnOnce() -> String,
    ) -> Pushed {
        let seq = self.next_seq();
        if let Some(clear) = &mut self.clear {
            // The clear covers this key; if it is in flight, it must run once more.
            clear.0 = seq;
            return Pushed::Coalesced;
        }
        if let Some(old) = self.by_key.get_mut(&rkey) {
            let old = std::mem::replace(old, seq);
            self.order.remove(&old);
            self.order.insert(seq, Entry { rkey, message });
            return Pushed::Coalesced;
        }
        if self.order.len() >= budget {
            self.push_all(all());
            return Pushed::Overflowed;
        }
        self.by_key.insert(rkey.clone(), seq);
        self.order.insert(seq, Entry { rkey, message });
        Pushed::Queued
    }

    /// Queues a prefix-wide clear, superseding every per-key deletion.
    pub(crate) fn push_all(&mut self, message: String) {
        let seq = self.next_seq();
        // New maps: give the memory of a large queue back.
        self.order = BTreeMap::new();
        self.by_key = HashMap::new();
        self.clear = Some((seq, message));
    }

    /// A direct deletion of `rkey` succeeded: its queued one is redundant.
    pub(crate) fn forget_key(&mut self, rkey: &str) {
        if let Some(seq) = self.by_key.remove(rkey) {
            self.order.remove(&seq);
        }
    }

    /// A direct clear succeeded: everything queued before it is redundant.
    pub(crate) fn forget_all(&mut self) {
        self.order = BTreeMap::new();
        self.by_key = HashMap::new();
        self.clear = None;
    }

    /// The next batch to send, without removing it.
    pub(crate) fn next_batch(&self) -> Option<Batch> {
        if let Some((seq, message)) = &self.clear {
            return Some(Batch::Clear {
                seq: *seq,
                message: message.clone(),
            });
        }
        let keys: Vec<_> = self
            .order
            .iter()
            .take(BATCH)
            .map(|(&seq, e)| (seq, e.rkey.clone(), e.message.clone()))
            .collect();
        (!keys.is_empty()).then_some(Batch::Keys(keys))
    }

    /// Removes what `batch` sent, except entries queued again since; how many were removed.
    pub(crate) fn complete(&mut self, batch: &Batch) -> usize {
        match batch {
            Batch::Clear { seq, .. } => {
                if self.clear.as_ref().is_some_and(|(s, _)| s == seq) {
                    self.clear = None;
                    1
                } else {
                    0
                }
            }
            Batch::Keys(keys) => {
                let mut removed = 0;
                for (seq, rkey, _) in keys {
                    if self.by_key.get(rkey) == Some(seq) {
                        self.by_key.remove(rkey);
                        self.order.remove(seq);
                        removed += 1;
                    }
                }
                removed
            }
        }
    }
}

/// The queue, its budget and the replay task's settings.
pub(crate) struct Replay {
    l2: Arc<L2>,
    prefix: String,
    channel: String,
    instance: u128,
    budget: usize,
    retry_window: Duration,
    counters: Arc<Counters>,
    queue: Mutex<Queue>,
    /// `queue.len()`, so that the read path locks nothing while the queue is empty.
    pending: AtomicUsize,
    wake: Notify,
    /// Wakes [`drained`](Self::drained) callers whenever the queue is left empty.
    emptied: Notify,
}

impl Replay {
    pub(crate) fn new(
        l2: Arc<L2>,
        prefix: String,
        channel: String,
        instance: u128,
        budget: usize,
        retry_window: Duration,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            l2,
            prefix,
            channel,
            instance,
            budget,
            retry_window,
            counters,
            queue: Mutex::new(Queue::default()),
            pending: AtomicUsize::new(0),
            wake: Notify::new(),
            emptied: Notify::new(),
        }
    }

    /// Runs `f` on the queue and republishes its length.
    fn with_queue<T>(&self, f: impl FnOnce(&mut Queue) -> T) -> T {
        let mut q = self.queue.lock();
        let out = f(&mut q);
        let len = q.len();
        self.pending.store(len, Ordering::SeqCst);
        drop(q);
        if len == 0 {
            self.emptied.notify_waiters();
        }
        out
    }

    /// Returns once the queue is empty (at once if it is).
    pub(crate) async fn drained(&self) {
        loop {
            let mut emptied = std::pin::pin!(self.emptied.notified());
            // Registered before the check: an emptying between the check and the wait wakes it.
            emptied.as_mut().enable();
            if self.len() == 0 {
                return;
            }
            emptied.await;
        }
    }

    /// The number of pending invalidations (per-key deletions, plus one for a clear).
    pub(crate) fn len(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Whether `rkey` has a deletion (or a clear) waiting: reads must not trust Redis for it.
    pub(crate) fn is_pending(&self, rkey: &str) -> bool {
        self.len() != 0 && self.queue.lock().covers(rkey)
    }

    /// A deletion of `rkey` + `message` did not reach Redis: queue it (or drop it at once
    /// when `write_retry_window` is zero).
    pub(crate) fn failed_key(&self, rkey: String, message: String) {
        if self.retry_window.is_zero() {
            return self.counters.writes_dropped(1, "invalidation");
        }
        let (budget, instance) = (self.budget, self.instance);
        let all = || Message::new(instance, Scope::All).encode();
        let pushed = self.with_queue(|q| q.push_key(rkey, message, budget, all));
        if pushed == Pushed::Overflowed {
            self.counters.invalidation_overflow();
        }
        self.wake.notify_one();
    }

    /// A prefix-wide clear + `message` did not reach Redis: queue it.
    pub(crate) fn failed_all(&self, message: String) {
        if self.retry_window.is_zero() {
            return self.counters.writes_dropped(1, "clear");
        }
        self.with_queue(|q| q.push_all(message));
        self.wake.notify_one();
    }

    /// A direct write of `rkey` (deletion or write-through) reached Redis.
    pub(crate) fn succeeded_key(&self, rkey: &str) {
        if self.len() != 0 {
            self.with_queue(|q| q.forget_key(rkey));
        }
    }

    /// A direct prefix-wide clear reached Redis.
    pub(crate) fn succeeded_all(&self) {
        if self.len() != 0 {
            self.with_queue(Queue::forget_all);
        }
    }

    /// The replay task: one per tier, aborted when the tier is dropped.
    pub(crate) async fn run(self: Arc<Self>) {
        let mut backoff = MIN_BACKOFF;
        let mut replies_since: Option<Instant> = None;
        loop {
            let batch = self.queue.lock().next_batch();
            let Some(batch) = batch else {
                // `notify_one` stores a permit: a push between the check and here is not lost.
                self.wake.notified().await;
                continue;
            };
            let sent = match &batch {
                Batch::Clear { message, .. } => {
                    clear_and_publish(&self.l2, &self.prefix, &self.channel, message).await
                }
                Batch::Keys(keys) => delete_and_publish_many(&self.l2, &self.channel, keys).await,
            };
            let give_up = match sent {
                Ok(()) => {
                    let done = self.with_queue(|q| q.complete(&batch)) as u64;
                    Counters::add(&self.counters.writes_retried, done);
                    Counters::add(&self.counters.backplane_sent, done);
                    backoff = MIN_BACKOFF;
                    replies_since = None;
                    continue;
                }
                Err(L2Error::Reply) => {
                    let since = *replies_since.get_or_insert_with(Instant::now);
                    since.elapsed() >= self.retry_window
                }
                Err(L2Error::Unavailable | L2Error::Timeout | L2Error::Connection) => {
                    // Redis is not answering: wait for it, however long.
                    replies_since = None;
                    false
                }
            };
            if give_up {
                let dropped = self.with_queue(|q| q.complete(&batch)) as u64;
                self.counters
                    .writes_dropped(dropped, "queued invalidations");
                replies_since = None;
                continue;
            }
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
        }
    }
}

/// `DEL k lock:k` + `PUBLISH`, in one transaction (on the node of `k`'s slot in a cluster).
fn delete_pipe(rkey: &str, channel: &str, message: &str) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .cmd("DEL")
        .arg(rkey)
        .arg(format!("lock:{rkey}"))
        .ignore()
        .cmd("PUBLISH")
        .arg(channel)
        .arg(message)
        .ignore();
    pipe
}

/// Deletes `rkey`'s value and lock and publishes `message`, in one transaction.
pub(crate) async fn delete_and_publish(
    l2: &L2,
    rkey: &str,
    channel: &str,
    message: &str,
) -> Result<(), L2Error> {
    l2.run(|mut c| async move {
        c.pipe_on::<()>(&delete_pipe(rkey, channel, message), rkey)
            .await
    })
    .await
}

/// Deletes each key's value and lock and publishes its message: one pipeline on a single
/// server (not a transaction: every step is safe to repeat); in a cluster, where the keys
/// live in different slots, one transaction per key, sent concurrently.
async fn delete_and_publish_many(
    l2: &L2,
    channel: &str,
    keys: &[(u64, String, String)],
) -> Result<(), L2Error> {
    l2.run(|mut c| async move {
        if let Conn::Cluster(_) = c {
            let sends = keys.iter().map(|(_, rkey, message)| {
                let mut c = c.clone();
                async move {
                    c.pipe_on::<()>(&delete_pipe(rkey, channel, message), rkey)
                        .await
                }
            });
            return futures_util::future::try_join_all(sends).await.map(drop);
        }
        let mut pipe = redis::pipe();
        for (_, rkey, message) in keys {
            pipe.cmd("DEL")
                .arg(rkey)
                .arg(format!("lock:{rkey}"))
                .ignore()
                .cmd("PUBLISH")
                .arg(channel)
                .arg(message)
                .ignore();
        }
        pipe.query_async::<()>(&mut c).await
    })
    .await
}

/// Deletes every value and lock under the prefix (`SCAN` + `UNLINK`, on every primary of a
/// cluster), then publishes `message`.
pub(crate) async fn clear_and_publish(
    l2: &L2,
    prefix: &str,
    channel: &str,
    message: &str,
) -> Result<(), L2Error> {
    let escaped = super::glob_escape(prefix);
    let nodes = l2.run(|mut c| async move { c.primaries().await }).await?;
    for node in &nodes {
        for pattern in [format!("{escaped}*"), format!("lock:{escaped}*")] {
            let mut cursor = 0u64;
            loop {
                let scan = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .clone();
                let (next, keys) = l2
                    .run(
                        |mut c| async move { c.query_on::<(u64, Vec<Vec<u8>>)>(&scan, node).await },
                    )
                    .await?;
                if !keys.is_empty() {
                    // In a cluster the client splits the keys by slot.
                    l2.run(|mut c| async move {
                        redis::cmd("UNLINK")
                            .arg(&keys)
                            .query_async::<()>(&mut c)
                            .await
                    })
                    .await?;
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
    }
    l2.run(|mut c| async move {
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message)
            .query_async::<()>(&mut c)
            .await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(q: &mut Queue, key: &str, budget: usize) -> Pushed {
        q.push_key(key.into(), format!("m {key}"), budget, || "all".into())
    }

    fn keys(batch: Option<Batch>) -> Vec<String> {
        match batch {
            Some(Batch::Keys(k)) => k.into_iter().map(|(_, k, _)| k).collect(),
            other => panic!("not keys: {other:?}"),
        }
    }

    #[test]
    fn a_key_queued_again_replaces_its_entry_and_moves_to_the_back() {
        let mut q = Queue::default();
        assert_eq!(push(&mut q, "a", 10), Pushed::Queued);
        assert_eq!(push(&mut q, "b", 10), Pushed::Queued);
        assert_eq!(push(&mut q, "a", 10), Pushed::Coalesced);
        assert_eq!(q.len(), 2);
        assert_eq!(keys(q.next_batch()), ["b", "a"]);
        assert!(q.covers("a") && !q.covers("c"));
        q.forget_key("b");
        assert_eq!(keys(q.next_batch()), ["a"]);
    }

    #[test]
    fn an_entry_queued_again_while_in_flight_stays() {
        let mut q = Queue::default();
        push(&mut q, "a", 10);
        push(&mut q, "b", 10);
        let batch = q.next_batch().unwrap();
        push(&mut q, "a", 10); // invalidated again while the batch was being sent
        assert_eq!(q.complete(&batch), 1);
        assert_eq!(keys(q.next_batch()), ["a"]);
        let batch = q.next_batch().unwrap();
        assert_eq!(q.complete(&batch), 1);
        assert_eq!((q.len(), q.next_batch()), (0, None));
    }

    #[test]
    fn past_the_budget_the_queue_becomes_one_clear_that_covers_later_keys() {
        let mut q = Queue::default();
        for k in ["a", "b", "c"] {
            assert_eq!(push(&mut q, k, 3), Pushed::Queued);
        }
        assert_eq!(push(&mut q, "a", 3), Pushed::Coalesced, "not new: fits");
        assert_eq!(push(&mut q, "d", 3), Pushed::Overflowed);
        assert_eq!(q.len(), 1);
        assert!(q.covers("anything"));
        let batch = q.next_batch().unwrap();
        assert!(matches!(&batch, Batch::Clear { message, .. } if message == "all"));
        // A key invalidated while the clear is in flight: the clear runs once more.
        assert_eq!(push(&mut q, "e", 3), Pushed::Coalesced);
        assert_eq!(q.complete(&batch), 0);
        let batch = q.next_batch().unwrap();
        assert_eq!(q.complete(&batch), 1);
        assert_eq!(q.len(), 0);
        assert_eq!(push(&mut q, "f", 3), Pushed::Queued);
    }

    #[test]
    fn invalidate_all_supersedes_queued_keys_and_a_direct_clear_forgets_everything() {
        let mut q = Queue::default();
        push(&mut q, "a", 10);
        q.push_all("all".into());
        assert_eq!(q.len(), 1);
        assert!(matches!(q.next_batch(), Some(Batch::Clear { .. })));
        q.forget_all();
        assert_eq!((q.len(), q.next_batch()), (0, None));
    }

    #[test]
    fn batches_are_bounded_and_oldest_first() {
        let mut q = Queue::default();
        for k in 0..(BATCH + 5) {
            push(&mut q, &k.to_string(), usize::MAX);
        }
        let first = keys(q.next_batch());
        assert_eq!(first.len(), BATCH);
        assert_eq!(first[0], "0");
        let batch = q.next_batch().unwrap();
        q.complete(&batch);
        assert_eq!(keys(q.next_batch()).len(), 5);
    }
}
