//! The blocking front door (`AsideCache::get_or_load_blocking` and its twins) under random
//! operations, with loaders that return a value, "not found" or an error, or panic, as the
//! input says; the mock clock moves by input too. After every operation: `validate()`, no load
//! left in flight, and the contract of the operation:
//!
//! - every value returned for key `k` was written for `k` (by `put` or by a loader);
//! - after `put(k, v)`, `get(k)` is `v`; after `invalidate(k)`, `get(k)` is `None`;
//! - a loader that ran decides the result: its value, its error (or the stale value under
//!   fail-safe), or its panic (which propagates);
//! - without early refresh, a fresh value is served without calling the loader;
//! - after a panicking loader the next load of that key runs and works.
//!
//! Input: a settings byte, then two bytes per operation. Run:
//! `cargo +nightly fuzz run front_door -- -max_total_time=60` (or `.ci/fuzz`).
#![no_main]

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;
use std::time::Duration;

use aside::policy::{EvictionPolicy, Fifo, Lfu, Lru};
use aside::{AsideCache, LoadError, MockClock};
use libfuzzer_sys::fuzz_target;

/// What a loader does.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Value,
    NotFound,
    Fail,
    Panic,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    GetOrLoad(u8, Behaviour),
    TryGetWith(u8, Behaviour),
    GetWith(u8, bool),
    Get(u8),
    Put(u8),
    Invalidate(u8),
    InvalidateAll,
    Advance(u8),
}

fn decode(data: &[u8]) -> Vec<Op> {
    let behaviour = |b: u8| match b >> 6 {
        0 | 1 => Behaviour::Value,
        2 => Behaviour::NotFound,
        _ if b & 1 == 0 => Behaviour::Fail,
        _ => Behaviour::Panic,
    };
    data.chunks_exact(2)
        .map(|c| {
            let key = c[1] % 8;
            match c[0] % 12 {
                0..=2 => Op::GetOrLoad(key, behaviour(c[0])),
                3 => Op::TryGetWith(key, behaviour(c[0])),
                4 => Op::GetWith(key, c[0] & 0x80 != 0),
                5 | 6 => Op::Get(key),
                7 => Op::Put(key),
                8 => Op::Invalidate(key),
                9 => Op::InvalidateAll,
                _ => Op::Advance(c[1] % 8),
            }
        })
        .collect()
}

/// Values carry their key in the top byte, so a value served for the wrong key shows.
fn value_for(key: u8, n: u32) -> u32 {
    u32::from(key) << 24 | n
}

fn key_of(v: u32) -> u8 {
    (v >> 24) as u8
}

struct Run<P: EvictionPolicy> {
    cache: AsideCache<u8, u32, P>,
    clock: MockClock,
    early_refresh: bool,
    /// Early refresh with negative caching: a cached "not found" may be refreshed.
    refreshes_negatives: bool,
    next: u32,
}

impl<P: EvictionPolicy> Run<P> {
    fn check_value(&self, key: u8, v: Option<u32>) {
        if let Some(v) = v {
            assert_eq!(key_of(v), key, "value {v:#x} served for key {key}");
        }
    }

    /// Runs a loading operation; `load` gets the loader to pass (counting its calls).
    fn load(&mut self, key: u8, behaviour: Behaviour, fallible: bool) {
        self.next += 1;
        let value = value_for(key, self.next);
        let fresh = self.cache.get(&key);
        // A "not found" is an error for the twin whose loader must return a value.
        let behaviour = match behaviour {
            Behaviour::NotFound if !fallible => Behaviour::Fail,
            b => b,
        };
        let calls = Cell::new(0);
        let loader = || {
            calls.set(calls.get() + 1);
            match behaviour {
                Behaviour::Value => Ok(Some(value)),
                Behaviour::NotFound => Ok(None),
                Behaviour::Fail => Err("source down"),
                // `try_get_with` never gets here: its "not found" is `Fail`.
                Behaviour::Panic => panic!("loader panicked (fuzz input)"),
            }
        };
        let result = expecting_panics(|| {
            catch_unwind(AssertUnwindSafe(|| {
                if fallible {
                    self.cache.get_or_load_blocking(key, loader)
                } else {
                    self.cache
                        .try_get_with_blocking(key, || loader().map(|v| v.expect("a value")))
                        .map(Some)
                }
            }))
        });
        if !self.early_refresh && fresh.is_some() {
            assert_eq!(calls.get(), 0, "loader called for a fresh value");
        }
        let ran = calls.get() == 1;
        assert!(calls.get() <= 1, "the loader ran {} times", calls.get());
        match (result, ran) {
            (Err(_), true) => assert!(matches!(behaviour, Behaviour::Panic)),
            (Err(_), false) => panic!("a panic without a panicking loader"),
            (Ok(Ok(v)), _) => {
                self.check_value(key, v);
                if ran && fresh.is_none() {
                    match behaviour {
                        Behaviour::Value => assert_eq!(v, Some(value)),
                        Behaviour::NotFound => assert_eq!(v, None, "not found becomes None"),
                        // Fail-safe serves the stale value; a failed early refresh of a
                        // cached "not found" (which `get` shows as `None`) keeps it.
                        Behaviour::Fail => assert!(v.is_some() || self.refreshes_negatives),
                        Behaviour::Panic => unreachable!(),
                    }
                }
            }
            (Ok(Err(e)), _) => {
                assert!(ran || fresh.is_none(), "{e:?} although {fresh:?} was fresh");
                match e {
                    LoadError::Loader(_) => assert!(matches!(behaviour, Behaviour::Fail)),
                    other => panic!("unexpected {other:?} without concurrency"),
                }
            }
        }
        if let Some(v) = self.cache.get(&key)
            && ran
            && fresh.is_none()
            && matches!(behaviour, Behaviour::Value)
        {
            assert_eq!(v, value, "the loaded value is what the cache serves");
        }
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::GetOrLoad(k, b) => self.load(k, b, true),
            Op::TryGetWith(k, b) => self.load(k, b, false),
            Op::GetWith(k, panics) => {
                self.next += 1;
                let value = value_for(k, self.next);
                let r = expecting_panics(|| {
                    catch_unwind(AssertUnwindSafe(|| {
                        self.cache.get_with_blocking(k, || {
                            assert!(!panics, "loader panicked (fuzz input)");
                            value
                        })
                    }))
                });
                match r {
                    Ok(Ok(v)) => self.check_value(k, Some(v)),
                    Ok(Err(e)) => panic!("infallible loader failed: {e:?}"),
                    Err(_) => assert!(panics),
                }
            }
            Op::Get(k) => {
                let v = self.cache.get(&k);
                self.check_value(k, v);
            }
            Op::Put(k) => {
                self.next += 1;
                let v = value_for(k, self.next);
                self.cache.put(k, v);
                assert_eq!(self.cache.get(&k), Some(v), "put then get");
            }
            Op::Invalidate(k) => {
                self.cache.invalidate(&k);
                assert_eq!(self.cache.get(&k), None, "invalidate then get");
            }
            Op::InvalidateAll => {
                self.cache.invalidate_all();
                assert!(self.cache.is_empty());
            }
            Op::Advance(s) => self.clock.advance(Duration::from_secs(u64::from(s))),
        }
        assert_eq!(
            self.cache.in_flight(),
            0,
            "a load left in flight after {op:?}"
        );
        if let Err(e) = self.cache.validate() {
            panic!("after {op:?}: {e}");
        }
    }
}

thread_local! {
    /// Set while a loader may panic on purpose: libFuzzer's panic hook aborts the process on
    /// any panic, caught or not, so the hook installed below lets these through.
    static PANIC_EXPECTED: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with loader panics allowed (caught by the caller).
fn expecting_panics<R>(f: impl FnOnce() -> R) -> R {
    PANIC_EXPECTED.with(|p| p.set(true));
    let r = f();
    PANIC_EXPECTED.with(|p| p.set(false));
    r
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !PANIC_EXPECTED.with(Cell::get) {
                fuzzer_hook(info);
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    install_panic_hook();
    let Some((&settings, rest)) = data.split_first() else {
        return;
    };
    let clock = MockClock::new();
    let capacity = 1 + u64::from(settings & 7);
    let ttl = settings & 0x08 != 0;
    let negative = settings & 0x10 != 0;
    let fail_safe = ttl && settings & 0x20 != 0;
    let early_refresh = ttl && settings & 0x40 != 0;
    let mut b = AsideCache::<u8, u32>::builder()
        .max_capacity(capacity)
        .shards(1)
        .seed(1)
        .clock(clock.clone());
    if ttl {
        b = b.time_to_live(Duration::from_secs(4));
    }
    if negative {
        b = b.negative_ttl(Duration::from_secs(2));
    }
    if fail_safe {
        let fail_safe = aside::FailSafe::new(Duration::from_secs(6));
        b = b.fail_safe(fail_safe.retry_interval(Duration::from_secs(1)));
    }
    b = if early_refresh {
        b.refresh_after(0.5)
    } else {
        b.no_xfetch()
    };
    // Policies that never evict the newest entry, so `put` then `get` holds; the input's
    // length picks one.
    let ops = decode(rest);
    match rest.len() % 3 {
        0 => run(b.policy(Lru::new()), clock, early_refresh, negative, &ops),
        1 => run(b.policy(Lfu::new()), clock, early_refresh, negative, &ops),
        _ => run(b.policy(Fifo::new()), clock, early_refresh, negative, &ops),
    }
});

fn run<P: EvictionPolicy>(
    builder: aside::AsideBuilder<u8, u32, P>,
    clock: MockClock,
    early_refresh: bool,
    negative: bool,
    ops: &[Op],
) {
    let mut run = Run {
        cache: builder.build().expect("valid settings"),
        clock,
        early_refresh,
        refreshes_negatives: early_refresh && negative,
        next: 0,
    };
    for &op in ops {
        run.step(op);
    }
}
