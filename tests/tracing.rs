//! The `tracing` feature: one `aside.load` span per led load, with the key hash, the number of
//! callers that waited on it and its outcome; an `ERROR` event for a panicking loader. A small
//! recording subscriber stands in for a real one.
#![cfg(feature = "tracing")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use aside::{AsideCache, MockClock};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// What the recorder saw: spans by id (name and fields) and events (level and message).
#[derive(Default)]
struct Seen {
    spans: HashMap<u64, (String, HashMap<String, String>)>,
    events: Vec<(tracing::Level, String)>,
}

#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Seen>>,
    next: Arc<AtomicU64>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut fields = HashMap::new();
        span.record(&mut Fields(&mut fields));
        let name = span.metadata().name().to_string();
        self.seen.lock().unwrap().spans.insert(id, (name, fields));
        Id::from_u64(id)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut seen = self.seen.lock().unwrap();
        if let Some((_, fields)) = seen.spans.get_mut(&span.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        let level = *event.metadata().level();
        self.seen.lock().unwrap().events.push((level, message));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Recorder {
    /// The fields of every `aside.load` span, in creation order.
    fn loads(&self) -> Vec<HashMap<String, String>> {
        let seen = self.seen.lock().unwrap();
        let mut ids: Vec<_> = seen
            .spans
            .iter()
            .filter(|(_, (name, _))| name == "aside.load")
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids.iter().map(|id| seen.spans[id].1.clone()).collect()
    }
}

fn outcome(span: &HashMap<String, String>) -> &str {
    span.get("outcome").map_or("", String::as_str)
}

#[test]
fn each_led_load_has_a_span_with_its_outcome() {
    let recorder = Recorder::default();
    tracing::subscriber::with_default(recorder.clone(), || {
        let clock = MockClock::new();
        let cache: AsideCache<u32, u32> = AsideCache::builder()
            .time_to_live(Duration::from_secs(10))
            .fail_safe(
                aside::FailSafe::new(Duration::from_secs(60))
                    .retry_interval(Duration::from_secs(1)),
            )
            .no_xfetch()
            .clock(clock.clone())
            .build()
            .unwrap();
        cache
            .get_or_load_blocking(1, || Ok::<_, String>(Some(1)))
            .unwrap();
        cache
            .get_or_load_blocking(1, || Ok::<_, String>(Some(9)))
            .unwrap(); // a hit: no span
        cache
            .get_or_load_blocking(2, || Ok::<_, String>(None))
            .unwrap();
        let _ = cache.get_or_load_blocking(3, || Err::<Option<u32>, _>("down".to_string()));
        clock.advance(Duration::from_secs(11)); // 1 is stale, inside the grace period
        let v = cache.get_or_load_blocking(1, || Err::<Option<u32>, _>("down".to_string()));
        assert_eq!(v.unwrap(), Some(1));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cache.get_or_load_blocking(4, || -> Result<Option<u32>, String> { panic!("boom") })
        }));
        assert!(panicked.is_err());
    });
    let loads = recorder.loads();
    let outcomes: Vec<&str> = loads.iter().map(outcome).collect();
    assert_eq!(
        outcomes,
        ["loaded", "not_found", "error", "fail_safe", "panicked"]
    );
    assert!(
        loads
            .iter()
            .all(|s| s.contains_key("key_hash") && s.contains_key("flight"))
    );
    assert_eq!(
        loads[0]["key_hash"], loads[3]["key_hash"],
        "same key, same hash"
    );
    assert_ne!(loads[0]["key_hash"], loads[1]["key_hash"]);
    let events = recorder.seen.lock().unwrap().events.clone();
    assert!(
        events
            .iter()
            .any(|(level, msg)| *level == tracing::Level::ERROR && msg == "loader panicked"),
        "{events:?}"
    );
}

#[test]
fn the_span_counts_the_callers_that_waited_and_says_when_the_value_was_discarded() {
    let recorder = Recorder::default();
    let cache: AsideCache<u32, u32> = AsideCache::builder().build().unwrap();
    let (started, release) = (Barrier::new(2), Barrier::new(2));
    std::thread::scope(|s| {
        let leader = s.spawn(|| {
            tracing::subscriber::with_default(recorder.clone(), || {
                cache.get_or_load_blocking(7, || {
                    started.wait();
                    release.wait();
                    Ok::<_, ()>(Some(7))
                })
            })
        });
        started.wait();
        let waiter = s.spawn(|| cache.get_or_load_blocking(7, || Ok::<_, ()>(Some(0))));
        while cache.load_stats().coalesced == 0 {
            std::thread::yield_now();
        }
        cache.invalidate(&7); // the waiter keeps the flight; its value is not installed
        release.wait();
        assert_eq!(leader.join().unwrap().unwrap(), Some(7));
        assert_eq!(waiter.join().unwrap().unwrap(), Some(7));
    });
    let loads = recorder.loads();
    assert_eq!(loads.len(), 1);
    assert_eq!(outcome(&loads[0]), "discarded");
    assert_eq!(loads[0]["waiters"], "1");
}

#[tokio::test(start_paused = true)]
async fn an_async_load_past_the_hard_timeout_says_so() {
    let recorder = Recorder::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());
    let cache: AsideCache<u32, u32> = AsideCache::builder()
        .load_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let r = cache
        .get_or_load(1, std::future::pending::<Result<Option<u32>, ()>>)
        .await;
    assert!(matches!(r, Err(aside::LoadError::Timeout)));
    let v = cache
        .get_or_load(2, || async { Ok::<_, ()>(Some(2)) })
        .await;
    assert_eq!(v.unwrap(), Some(2));
    let outcomes: Vec<String> = recorder
        .loads()
        .iter()
        .map(|s| outcome(s).to_string())
        .collect();
    assert_eq!(outcomes, ["timeout", "loaded"]);
    let events = recorder.seen.lock().unwrap().events.clone();
    assert!(
        events
            .iter()
            .any(|(level, _)| *level == tracing::Level::WARN)
    );
}
