//! Model-based checking shared by the property tests and the fuzz targets
//! (`cfg(any(test, fuzzing))` only).
//!
//! [`check`] drives a one-shard cache with a [`MockClock`] through a sequence of [`Op`]s and,
//! after every operation, compares it with a small reference model of its policy: returned
//! values, every removal the listener saw (key, value and cause), and the policy's victim
//! choice (exact LRU order, FIFO order, LFU-DA priorities with recency tie-break, or the
//! soonest deadline among the TTL policy's recorded sample). It then calls
//! [`Cache::validate`](crate::Cache::validate).

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::policy::{EvictionPolicy, Fifo, Lfu, Lru, S3Fifo, SampledTtl, WTinyLfu};
use crate::{Cache, Clock, MockClock, RemovalCause};

/// One operation of a generated sequence. Keys are small so that sequences collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `get(key)`
    Get(u8),
    /// `peek(key)`
    Peek(u8),
    /// `insert(key, next value)` with the cache's default expiry
    Insert(u8),
    /// `insert_with_ttl(key, next value, secs)`
    InsertTtl(u8, u8),
    /// `get_or_insert_with(key, next value)`
    GetOrInsert(u8),
    /// `remove(key)`
    Remove(u8),
    /// Advance the mock clock by this many seconds.
    Advance(u8),
    /// `sweep_expired()`
    Sweep,
    /// `retain(|k, _| k % m != 0)` with `m = 2 + n % 3`
    Retain(u8),
    /// `invalidate_all()`
    Clear,
}

impl Op {
    /// Decodes operations from raw fuzzer bytes, two bytes per operation.
    #[must_use]
    pub fn decode(data: &[u8], key_space: u8) -> Vec<Op> {
        let k = |b: u8| b % key_space.max(1);
        data.chunks_exact(2)
            .map(|c| match c[0] % 16 {
                0..=3 => Op::Get(k(c[1])),
                4 => Op::Peek(k(c[1])),
                5..=7 => Op::Insert(k(c[1])),
                8 => Op::InsertTtl(k(c[1]), c[1] % 7),
                9 => Op::GetOrInsert(k(c[1])),
                10 => Op::Remove(k(c[1])),
                11 | 12 => Op::Advance(c[1] % 4),
                13 => Op::Sweep,
                14 => Op::Retain(c[1]),
                _ => Op::Clear,
            })
            .collect()
    }
}

/// Which built-in policy (and so which model) to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// [`Lru::exact`], against the exact LRU model.
    Lru,
    /// [`Lru::new`] (an entry moves at most once per period): checked like
    /// [`Kind::WTinyLfu`]; `lru.rs` has its decision-by-decision model test.
    LruPeriod,
    /// [`Lfu`]
    Lfu,
    /// [`Fifo`]
    Fifo,
    /// [`SampledTtl`]
    Ttl,
    /// [`WTinyLfu`]: its own file has the decision-by-decision model test; here its victims
    /// are taken from the listener and everything else (values, expiry, removals, capacity,
    /// `validate()`) is checked.
    WTinyLfu,
    /// [`S3Fifo`], checked like [`Kind::WTinyLfu`].
    S3Fifo,
}

impl Kind {
    /// Every kind, for tests and fuzz targets that cover them all.
    pub const ALL: [Kind; 7] = [
        Kind::Lru,
        Kind::LruPeriod,
        Kind::Lfu,
        Kind::Fifo,
        Kind::Ttl,
        Kind::WTinyLfu,
        Kind::S3Fifo,
    ];
}

/// The weight [`Setup::weighted`] caches give an entry: 1 to 3, from its value, so that a
/// replacement usually changes the entry's weight.
#[must_use]
pub fn weight_of(value: u32) -> u32 {
    1 + value % 3
}

/// Cache settings for one checked run.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// The policy under test.
    pub kind: Kind,
    /// Capacity in entries.
    pub capacity: u64,
    /// Default TTL in seconds, if any.
    pub ttl: Option<u8>,
    /// Sliding time-to-idle in seconds, if any (ignored when `ttl` is set).
    pub tti: Option<u8>,
    /// Weigh entries with [`weight_of`]: `capacity` then bounds their total weight, and
    /// replacements change weights (evicting to fit, possibly the replaced entry itself).
    pub weighted: bool,
}

#[derive(Debug, Clone)]
struct ModelEntry {
    value: u32,
    deadline: Option<u64>,
    sliding: bool,
    freq: u64,
    prio: u64,
    tick: u64,
    weight: u64,
}

/// The reference model: a map plus an explicit order (LRU/FIFO) or LFU-DA priorities.
struct Model {
    kind: Kind,
    capacity: usize,
    weighted: bool,
    ttl: Option<u64>,
    tti: Option<u64>,
    map: HashMap<u8, ModelEntry>,
    /// Most recent (LRU) or newest (FIFO) first.
    order: Vec<u8>,
    age: u64,
    tick: u64,
}

type Event = (u8, u32, RemovalCause);

impl Model {
    fn expired(&self, key: u8, now: u64) -> bool {
        self.map[&key].deadline.is_some_and(|d| now >= d)
    }

    fn live(&self, key: u8, now: u64) -> bool {
        self.map.contains_key(&key) && !self.expired(key, now)
    }

    /// Total weight held (the entry count without a weigher).
    fn weight(&self) -> u64 {
        self.map.values().map(|e| e.weight).sum()
    }

    fn weight_of(&self, value: u32) -> u64 {
        if self.weighted {
            u64::from(weight_of(value))
        } else {
            1
        }
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn on_insert(&mut self, key: u8) {
        self.order.insert(0, key);
        let tick = self.next_tick();
        let age = self.age;
        let e = self.map.get_mut(&key).unwrap();
        (e.freq, e.prio, e.tick) = (1, age + 1, tick);
    }

    fn on_access(&mut self, key: u8, update: bool) {
        match self.kind {
            Kind::Lru => {
                self.order.retain(|&k| k != key);
                self.order.insert(0, key);
            }
            Kind::Lfu => {
                let tick = self.next_tick();
                let age = self.age;
                let e = self.map.get_mut(&key).unwrap();
                e.freq += 1;
                e.prio = age + e.freq;
                e.tick = tick;
            }
            Kind::Fifo | Kind::Ttl | Kind::WTinyLfu | Kind::S3Fifo | Kind::LruPeriod => {}
        }
        let _ = update;
    }

    fn remove(&mut self, key: u8) -> ModelEntry {
        self.order.retain(|&k| k != key);
        self.map.remove(&key).unwrap()
    }

    /// The victim the policy must pick (`None` for the sampled TTL policy and the policies
    /// whose victims are taken from the listener, checked otherwise).
    fn victim(&mut self) -> Option<u8> {
        match self.kind {
            Kind::Lru | Kind::Fifo => self.order.last().copied(),
            Kind::Lfu => {
                let (&k, e) = self.map.iter().min_by_key(|(_, e)| (e.prio, e.tick))?;
                self.age = self.age.max(e.prio);
                Some(k)
            }
            Kind::Ttl | Kind::WTinyLfu | Kind::S3Fifo | Kind::LruPeriod => None,
        }
    }

    fn deadline(&self, now: u64, ttl: Option<u64>) -> (Option<u64>, bool) {
        match (ttl, self.ttl, self.tti) {
            (Some(t), _, _) | (None, Some(t), _) => (Some(now + t), false),
            (None, None, Some(t)) => (Some(now + t), true),
            _ => (None, false),
        }
    }
}

const SEC: u64 = 1_000_000_000;

fn build<P: EvictionPolicy>(
    policy: P,
    setup: &Setup,
    clock: &MockClock,
    events: &Arc<Mutex<Vec<Event>>>,
) -> Cache<u8, u32, P> {
    let log = Arc::clone(events);
    let mut b = Cache::builder()
        .max_capacity(setup.capacity)
        .shards(1)
        .seed(7)
        .clock(clock.clone())
        .policy(policy)
        .eviction_listener(move |k: &u8, v: &u32, cause| log.lock().unwrap().push((*k, *v, cause)));
    if setup.weighted {
        b = b.weigher(|_: &u8, v: &u32| weight_of(*v));
    }
    if let Some(t) = setup.ttl {
        b = b.time_to_live(Duration::from_secs(u64::from(t)));
    } else if let Some(t) = setup.tti {
        b = b.time_to_idle(Duration::from_secs(u64::from(t)));
    }
    b.build().expect("valid test configuration")
}

/// Runs `ops` against a one-shard cache of `setup.kind` and its model.
///
/// # Errors
///
/// A description of the first divergence or broken invariant, with the step number.
///
/// # Panics
///
/// Never for valid setups (the TTL sample size used, 3, is valid).
pub fn check(setup: Setup, ops: &[Op]) -> Result<(), String> {
    match setup.kind {
        Kind::Lru => Checker::run(Lru::exact(), setup, ops),
        Kind::LruPeriod => Checker::run(Lru::new(), setup, ops),
        Kind::Lfu => Checker::run(Lfu::new(), setup, ops),
        Kind::Fifo => Checker::run(Fifo::new(), setup, ops),
        Kind::Ttl => Checker::run(SampledTtl::with_samples(3).unwrap(), setup, ops),
        Kind::WTinyLfu => Checker::run(WTinyLfu::new(), setup, ops),
        Kind::S3Fifo => Checker::run(S3Fifo::new(), setup, ops),
    }
}

struct Checker<P: EvictionPolicy> {
    cache: Cache<u8, u32, P>,
    clock: MockClock,
    events: Arc<Mutex<Vec<Event>>>,
    model: Model,
    next_value: u32,
}

impl<P: EvictionPolicy> Checker<P> {
    fn run(policy: P, setup: Setup, ops: &[Op]) -> Result<(), String> {
        let clock = MockClock::new();
        let events = Arc::new(Mutex::new(Vec::new()));
        let cache = build(policy, &setup, &clock, &events);
        let ttl = setup.ttl.map(|t| u64::from(t) * SEC);
        let mut checker = Checker {
            cache,
            clock,
            events,
            model: Model {
                kind: setup.kind,
                capacity: setup.capacity as usize,
                weighted: setup.weighted,
                ttl,
                tti: if ttl.is_some() {
                    None
                } else {
                    setup.tti.map(|t| u64::from(t) * SEC)
                },
                map: HashMap::new(),
                order: Vec::new(),
                age: 0,
                tick: 0,
            },
            next_value: 0,
        };
        for (step, &op) in ops.iter().enumerate() {
            checker
                .step(op)
                .and_then(|()| checker.cache.validate().map_err(|e| e.what().to_string()))
                .map_err(|e| format!("step {step} ({op:?}): {e}"))?;
        }
        Ok(())
    }

    fn now(&self) -> u64 {
        self.clock.now_nanos()
    }

    fn take_events(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }

    fn sweep_count(&self) -> u64 {
        self.cache.stats().sweep_expired
    }

    /// Consumes the leading sweep removals (`n` of them): each must be model-expired.
    fn absorb_sweep(&mut self, events: &mut Vec<Event>, n: usize) -> Result<(), String> {
        let now = self.now();
        for (k, v, cause) in events.drain(..n.min(events.len())) {
            if cause != RemovalCause::Expired || !self.model.map.contains_key(&k) {
                return Err(format!("sweep removed {k} ({cause:?}) unexpectedly"));
            }
            if !self.model.expired(k, now) || self.model.map[&k].value != v {
                return Err(format!("sweep removed live or wrong entry {k}={v}"));
            }
            self.model.remove(k);
        }
        Ok(())
    }

    fn expect_events(&self, got: Vec<Event>, want: Vec<Event>) -> Result<(), String> {
        if got == want {
            Ok(())
        } else {
            Err(format!("removals {got:?}, model expected {want:?}"))
        }
    }

    /// Model side of a lookup with side effects; returns the value and expected events.
    fn model_get(&mut self, key: u8, want: &mut Vec<Event>) -> Option<u32> {
        let now = self.now();
        if !self.model.map.contains_key(&key) {
            return None;
        }
        if self.model.expired(key, now) {
            let e = self.model.remove(key);
            want.push((key, e.value, RemovalCause::Expired));
            return None;
        }
        self.model.on_access(key, false);
        let tti = self.model.tti;
        let e = self.model.map.get_mut(&key).unwrap();
        if e.sliding {
            e.deadline = tti.map(|t| now + t);
        }
        Some(e.value)
    }

    /// Model side of an insert; returns the expected events. The TTL policy's victim is taken
    /// from `got` and checked against the recorded sample.
    fn model_insert(
        &mut self,
        key: u8,
        value: u32,
        ttl: Option<u64>,
        got: &[Event],
        want: &mut Vec<Event>,
    ) -> Result<(), String> {
        let now = self.now();
        let (deadline, sliding) = self.model.deadline(now, ttl);
        if self.model.map.contains_key(&key) {
            if self.model.expired(key, now) {
                let e = self.model.remove(key);
                want.push((key, e.value, RemovalCause::Expired));
            } else {
                let weight = self.model.weight_of(value);
                let e = self.model.map.get_mut(&key).unwrap();
                let old = std::mem::replace(&mut e.value, value);
                (e.deadline, e.sliding, e.weight) = (deadline, sliding, weight);
                want.push((key, old, RemovalCause::Replaced));
                self.model.on_access(key, true);
                // A heavier value may push the shard over: evict to fit, possibly this entry.
                return self.evict_model(0, now, None, got, want).map(drop);
            }
        }
        let weight = self.model.weight_of(value);
        if weight > self.model.capacity as u64 {
            want.push((key, value, RemovalCause::Capacity));
            return Ok(());
        }
        if self.evict_model(weight, now, Some((key, value)), got, want)? {
            return Ok(()); // turned away by admission
        }
        self.model.map.insert(
            key,
            ModelEntry {
                value,
                deadline,
                sliding,
                freq: 0,
                prio: 0,
                tick: 0,
                weight,
            },
        );
        self.model.on_insert(key);
        Ok(())
    }

    /// Model side of evicting until `incoming` more weight fits. With `newcomer`, an admission
    /// policy may turn it away instead (returns `true`).
    fn evict_model(
        &mut self,
        incoming: u64,
        now: u64,
        newcomer: Option<(u8, u32)>,
        got: &[Event],
        want: &mut Vec<Event>,
    ) -> Result<bool, String> {
        while self.model.weight() + incoming > self.model.capacity as u64 {
            let victim = match self.model.victim() {
                Some(v) => v,
                // Its recorded sample is that of the last victim choice only.
                None if self.model.kind == Kind::Ttl && !self.model.weighted => {
                    self.ttl_victim(got.get(want.len()))?
                }
                None => {
                    let got = got.get(want.len());
                    if let Some((key, value)) = newcomer
                        && got == Some(&(key, value, RemovalCause::Capacity))
                    {
                        // Admission turned the newcomer away.
                        want.push((key, value, RemovalCause::Capacity));
                        return Ok(true);
                    }
                    self.listed_victim(got)?
                }
            };
            let cause = if self.model.expired(victim, now) {
                RemovalCause::Expired
            } else {
                RemovalCause::Capacity
            };
            let e = self.model.remove(victim);
            want.push((victim, e.value, cause));
        }
        Ok(false)
    }

    /// A victim taken from the listener: it must be a key the model holds.
    fn listed_victim(&self, got: Option<&Event>) -> Result<u8, String> {
        let &(victim, _, _) = got.ok_or("the full cache evicted nothing")?;
        if self.model.map.contains_key(&victim) {
            Ok(victim)
        } else {
            Err(format!("evicted {victim}, which the model does not hold"))
        }
    }

    /// Checks the sampled-TTL policy's victim: the soonest deadline of its recorded sample.
    fn ttl_victim(&self, got: Option<&Event>) -> Result<u8, String> {
        let &(victim, _, _) = got.ok_or("the TTL policy evicted nothing")?;
        let sample = self.cache.with_shard(0, |s| {
            s.with_policy(|p| {
                (p as &dyn Any)
                    .downcast_ref::<SampledTtl>()
                    .map(|t| t.last_sample.clone())
                    .unwrap_or_default()
            })
        });
        let soonest = sample
            .iter()
            .map(|&(_, d)| d.unwrap_or(u64::MAX))
            .min()
            .ok_or("empty TTL sample")?;
        let d = self
            .model
            .map
            .get(&victim)
            .ok_or(format!("TTL policy evicted unknown key {victim}"))?
            .deadline
            .unwrap_or(u64::MAX);
        if d != soonest {
            return Err(format!(
                "TTL victim {victim} expires at {d}, sample {sample:?} has {soonest}"
            ));
        }
        Ok(victim)
    }

    fn step(&mut self, op: Op) -> Result<(), String> {
        let sweeps_before = self.sweep_count();
        let mut want = Vec::new();
        match op {
            Op::Get(k) => {
                let got = self.cache.get(&k);
                let expect = self.model_get(k, &mut want);
                if got != expect {
                    return Err(format!("get({k}) = {got:?}, model {expect:?}"));
                }
                self.expect_events(self.take_events(), want)?;
            }
            Op::Peek(k) => {
                let got = self.cache.peek(&k);
                let now = self.now();
                let expect = self.model.live(k, now).then(|| self.model.map[&k].value);
                if got != expect {
                    return Err(format!("peek({k}) = {got:?}, model {expect:?}"));
                }
                self.expect_events(self.take_events(), want)?;
            }
            Op::Insert(k) | Op::InsertTtl(k, _) | Op::GetOrInsert(k) => {
                self.next_value += 1;
                let v = self.next_value;
                let ttl = match op {
                    Op::InsertTtl(_, s) => Some(u64::from(s) * SEC),
                    _ => None,
                };
                // get_or_insert_with: a live hit behaves as `get`.
                if let Op::GetOrInsert(_) = op
                    && self.model.live(k, self.now())
                {
                    let got = self.cache.get_or_insert_with(k, || v);
                    let expect = self.model_get(k, &mut want).unwrap();
                    if got != expect {
                        return Err(format!("get_or_insert({k}) = {got}, model {expect}"));
                    }
                    return self.expect_events(self.take_events(), want);
                }
                match op {
                    Op::InsertTtl(_, s) => {
                        self.cache
                            .insert_with_ttl(k, v, Duration::from_secs(u64::from(s)))
                    }
                    Op::GetOrInsert(_) => {
                        let got = self.cache.get_or_insert_with(k, || v);
                        if got != v {
                            return Err(format!("get_or_insert({k}) = {got}, loaded {v}"));
                        }
                    }
                    _ => self.cache.insert(k, v),
                }
                let mut got = self.take_events();
                if let Op::GetOrInsert(_) = op {
                    // Its initial `get` may have found the entry expired and removed it.
                    if self.model.map.contains_key(&k) {
                        self.model_get(k, &mut want);
                    }
                    let n = want.len();
                    self.expect_events(got.drain(..n.min(got.len())).collect(), want)?;
                    want = Vec::new();
                }
                let swept = (self.sweep_count() - sweeps_before) as usize;
                self.absorb_sweep(&mut got, swept)?;
                self.model_insert(k, v, ttl, &got, &mut want)?;
                self.expect_events(got, want)?;
            }
            Op::Remove(k) => {
                let got = self.cache.remove(&k);
                let now = self.now();
                let expect = if self.model.map.contains_key(&k) {
                    let expired = self.model.expired(k, now);
                    let e = self.model.remove(k);
                    if expired {
                        want.push((k, e.value, RemovalCause::Expired));
                        None
                    } else {
                        want.push((k, e.value, RemovalCause::Explicit));
                        Some(e.value)
                    }
                } else {
                    None
                };
                if got != expect {
                    return Err(format!("remove({k}) = {got:?}, model {expect:?}"));
                }
                self.expect_events(self.take_events(), want)?;
            }
            Op::Advance(s) => self.clock.advance(Duration::from_secs(u64::from(s))),
            Op::Sweep => {
                let n = self.cache.sweep_expired();
                let mut got = self.take_events();
                if got.len() != n {
                    return Err(format!("sweep reported {n}, listener saw {}", got.len()));
                }
                self.absorb_sweep(&mut got, n)?;
            }
            Op::Retain(m) => {
                let m = 2 + m % 3;
                self.cache.retain(|k, _| k % m != 0);
                let now = self.now();
                let mut doomed: Vec<u8> = self
                    .model
                    .map
                    .keys()
                    .copied()
                    .filter(|&k| k % m == 0 && !self.model.expired(k, now))
                    .collect();
                doomed.sort_unstable();
                for &k in &doomed {
                    let e = self.model.remove(k);
                    want.push((k, e.value, RemovalCause::Explicit));
                }
                let mut got = self.take_events();
                got.sort_unstable_by_key(|e| e.0);
                self.expect_events(got, want)?;
            }
            Op::Clear => {
                self.cache.invalidate_all();
                let mut got = self.take_events();
                got.sort_unstable_by_key(|e| e.0);
                let mut keys: Vec<u8> = self.model.map.keys().copied().collect();
                keys.sort_unstable();
                for k in keys {
                    let e = self.model.remove(k);
                    want.push((k, e.value, RemovalCause::Explicit));
                }
                self.model.age = 0;
                self.model.tick = 0;
                self.expect_events(got, want)?;
            }
        }
        if self.cache.len() != self.model.map.len() {
            return Err(format!(
                "cache holds {} entries, model {}",
                self.cache.len(),
                self.model.map.len()
            ));
        }
        if self.cache.weighted_size() != self.model.weight() {
            return Err(format!(
                "cache weighs {}, model {}",
                self.cache.weighted_size(),
                self.model.weight()
            ));
        }
        if self.cache.weighted_size() > self.cache.capacity() {
            return Err("weight exceeds capacity".into());
        }
        Ok(())
    }
}
