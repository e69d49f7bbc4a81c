//! [`AnyPolicy`]: one of the built-in policies, chosen at run time (from a configuration file).

use std::marker::PhantomData;

use super::{
    Entries, EntryId, EvictionPolicy, Fifo, HitAccess, Lfu, LfuState, Links, Lru, S3Fifo,
    S3FifoState, SampledTtl, ShardContext, WTinyLfu, WTinyLfuState,
};

/// One of the built-in eviction policies, picked at run time.
///
/// A policy is a type parameter of [`Cache`](crate::Cache) so that the compiler can inline its
/// hooks; a cache whose policy comes from a configuration file
/// ([`Registry`](crate::registry::Registry)) cannot name it in its type. `AnyPolicy` is that
/// type: an enum over the six built-in policies that forwards every hook to the one it holds,
/// so that `Cache<K, V, AnyPolicy>` is one type whatever the file says.
///
/// It evicts exactly as the policy it wraps (`tests/config.rs` replays random operation
/// sequences through both and compares every victim). What it costs:
///
/// - **Memory**: every entry stores an [`AnyState`] of 16 bytes instead of the wrapped
///   policy's own state, which is 8 bytes for `Lru`, `Fifo` and `Lfu`, 12 for `S3Fifo` and
///   `WTinyLfu` and 0 for `SampledTtl`: 4 to 16 more bytes per entry, and nothing else
///   (`tests/config.rs` checks the difference with `Cache::allocated_bytes`).
/// - **Hits**: [`HIT`](EvictionPolicy::HIT) is a constant, so it is
///   [`HitAccess::Exclusive`] for every variant. Under `Fifo` and `SampledTtl`, which ignore
///   hits, a hit is still recorded in the reader's ring and replayed as a no-op: two plain
///   stores per hit that the plain policies do not pay.
/// - **Hooks**: one `match` per hook call.
///
/// # Example
///
/// ```
/// use aside::{Cache, policy::AnyPolicy};
///
/// let name = "lfu"; // e.g. read from a file
/// let policy = AnyPolicy::from_name(name).unwrap();
/// let cache: Cache<u32, u32, AnyPolicy> =
///     Cache::builder().max_capacity(2).shards(1).policy(policy).build().unwrap();
/// cache.insert(1, 1);
/// cache.get(&1);
/// cache.get(&1);
/// cache.insert(2, 2);
/// cache.insert(3, 3); // LFU: 2 (never read) goes, not 1
/// assert!(cache.contains_key(&1) && !cache.contains_key(&2));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyPolicy {
    /// [`Lru`].
    Lru(Lru),
    /// [`Lfu`].
    Lfu(Lfu),
    /// [`Fifo`].
    Fifo(Fifo),
    /// [`SampledTtl`].
    SampledTtl(SampledTtl),
    /// [`WTinyLfu`] (boxed: it is the largest policy value).
    WTinyLfu(Box<WTinyLfu>),
    /// [`S3Fifo`].
    S3Fifo(Box<S3Fifo>),
}

impl Default for AnyPolicy {
    /// [`AnyPolicy::WTinyLfu`], the crate's default policy.
    fn default() -> Self {
        Self::WTinyLfu(Box::default())
    }
}

impl AnyPolicy {
    /// The names [`from_name`](Self::from_name) accepts, in the order of the enum.
    pub const NAMES: [&'static str; 6] = ["lru", "lfu", "fifo", "ttl", "wtinylfu", "s3fifo"];

    /// The policy called `name` (ASCII case-insensitive; see [`NAMES`](Self::NAMES)), with its
    /// default settings; `ttl` is [`SampledTtl`] (Redis `volatile-ttl`, the seeds' `TTL`).
    /// `None` for any other name.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::policy::AnyPolicy;
    /// assert_eq!(AnyPolicy::from_name("WTinyLFU").unwrap().name(), "wtinylfu");
    /// assert!(AnyPolicy::from_name("mru").is_none());
    /// ```
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        let policy = match name.to_ascii_lowercase().as_str() {
            "lru" => Self::Lru(Lru::new()),
            "lfu" => Self::Lfu(Lfu::new()),
            "fifo" => Self::Fifo(Fifo::new()),
            "ttl" => Self::SampledTtl(SampledTtl::new()),
            "wtinylfu" => Self::WTinyLfu(Box::default()),
            "s3fifo" => Self::S3Fifo(Box::default()),
            _ => return None,
        };
        Some(policy)
    }

    /// The policy's name, as [`from_name`](Self::from_name) spells it.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::policy::{AnyPolicy, SampledTtl};
    /// assert_eq!(AnyPolicy::from(SampledTtl::new()).name(), "ttl");
    /// ```
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Lru(_) => "lru",
            Self::Lfu(_) => "lfu",
            Self::Fifo(_) => "fifo",
            Self::SampledTtl(_) => "ttl",
            Self::WTinyLfu(_) => "wtinylfu",
            Self::S3Fifo(_) => "s3fifo",
        }
    }
}

macro_rules! from_policy {
    ($($variant:ident($ty:ty) => $wrap:expr),* $(,)?) => {$(
        impl From<$ty> for AnyPolicy {
            fn from(policy: $ty) -> Self {
                Self::$variant($wrap(policy))
            }
        }
    )*};
}

from_policy!(
    Lru(Lru) => std::convert::identity,
    Lfu(Lfu) => std::convert::identity,
    Fifo(Fifo) => std::convert::identity,
    SampledTtl(SampledTtl) => std::convert::identity,
    WTinyLfu(WTinyLfu) => Box::new,
    S3Fifo(S3Fifo) => Box::new,
);

/// Per-entry state of [`AnyPolicy`]: the state of whichever policy it holds. 16 bytes (the
/// enum's tag lives in a niche of the largest state).
///
/// Opaque. A new entry starts as the unit state (what [`SampledTtl`] uses);
/// [`AnyPolicy::on_insert`](EvictionPolicy::on_insert) sets the wrapped policy's own default
/// state before forwarding the call.
///
/// # Example
///
/// ```
/// use aside::policy::AnyState;
/// assert_eq!(size_of::<AnyState>(), 16);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyState(Inner);

#[derive(Debug, Clone, Copy)]
enum Inner {
    Unit(()),
    Links(Links),
    Lfu(LfuState),
    WTinyLfu(WTinyLfuState),
    S3Fifo(S3FifoState),
}

impl Default for Inner {
    fn default() -> Self {
        Self::Unit(())
    }
}

/// A policy state that lives inside [`AnyState`].
trait Variant: Default + 'static {
    fn get(state: &AnyState) -> Option<&Self>;
    fn get_mut(state: &mut AnyState) -> Option<&mut Self>;
    fn wrap(self) -> AnyState;
}

macro_rules! variant {
    ($($ty:ty => $variant:ident),* $(,)?) => {$(
        impl Variant for $ty {
            fn get(state: &AnyState) -> Option<&Self> {
                match &state.0 {
                    Inner::$variant(s) => Some(s),
                    _ => None,
                }
            }
            fn get_mut(state: &mut AnyState) -> Option<&mut Self> {
                match &mut state.0 {
                    Inner::$variant(s) => Some(s),
                    _ => None,
                }
            }
            fn wrap(self) -> AnyState {
                AnyState(Inner::$variant(self))
            }
        }
    )*};
}

variant!(
    () => Unit,
    Links => Links,
    LfuState => Lfu,
    WTinyLfuState => WTinyLfu,
    S3FifoState => S3Fifo,
);

const WRONG_STATE: &str = "AnyPolicy: an entry's state belongs to another policy (every entry \
                           passes through AnyPolicy::on_insert first)";

/// The view of a shard's entries that the wrapped policy gets: the same entries, with each
/// [`AnyState`] projected onto the wrapped policy's own state.
struct Project<'a, E, S> {
    entries: &'a mut E,
    _state: PhantomData<fn() -> S>,
}

impl<'a, E, S> Project<'a, E, S> {
    fn new(entries: &'a mut E) -> Self {
        Self {
            entries,
            _state: PhantomData,
        }
    }
}

/// The [`Entries`] methods both projections pass straight to the shard's entries.
macro_rules! forward_entries {
    () => {
        fn hash(&self, id: EntryId) -> u32 {
            self.entries.hash(id)
        }
        fn weight(&self, id: EntryId) -> u32 {
            self.entries.weight(id)
        }
        fn expires_at(&self, id: EntryId) -> Option<u64> {
            self.entries.expires_at(id)
        }
        fn len(&self) -> usize {
            self.entries.len()
        }
        fn contains(&self, id: EntryId) -> bool {
            self.entries.contains(id)
        }
        fn random(&self, random: u64) -> Option<EntryId> {
            self.entries.random(random)
        }
        fn ids(&self) -> impl Iterator<Item = EntryId> + '_ {
            self.entries.ids()
        }
        fn mark(&self, id: EntryId) -> u8 {
            self.entries.mark(id)
        }
    };
}

impl<E: Entries<AnyState>, S: Variant> Entries<S> for Project<'_, E, S> {
    fn state(&self, id: EntryId) -> &S {
        S::get(self.entries.state(id)).expect(WRONG_STATE)
    }
    fn state_mut(&mut self, id: EntryId) -> &mut S {
        S::get_mut(self.entries.state_mut(id)).expect(WRONG_STATE)
    }
    fn set_mark(&mut self, id: EntryId, mark: u8) {
        self.entries.set_mark(id, mark);
    }
    forward_entries!();
}

/// The read-only twin of [`Project`], for [`EvictionPolicy::validate`] and
/// [`EvictionPolicy::hottest`].
struct ProjectRef<'a, E, S> {
    entries: &'a E,
    _state: PhantomData<fn() -> S>,
}

impl<E: Entries<AnyState>, S: Variant> Entries<S> for ProjectRef<'_, E, S> {
    fn state(&self, id: EntryId) -> &S {
        S::get(self.entries.state(id)).expect(WRONG_STATE)
    }
    fn state_mut(&mut self, _: EntryId) -> &mut S {
        unreachable!("validate and hottest get a shared view and cannot call state_mut")
    }
    fn set_mark(&mut self, _: EntryId, _: u8) {
        unreachable!("EvictionPolicy::validate gets a shared view and cannot call set_mark")
    }
    forward_entries!();
}

/// Forwards one hook to the wrapped policy, with the entries projected onto its state.
macro_rules! forward {
    ($self:ident, $entries:ident, |$p:ident, $view:ident| $call:expr) => {
        match $self {
            AnyPolicy::Lru($p) => {
                let $view = &mut Project::<_, Links>::new($entries);
                $call
            }
            AnyPolicy::Lfu($p) => {
                let $view = &mut Project::<_, LfuState>::new($entries);
                $call
            }
            AnyPolicy::Fifo($p) => {
                let $view = &mut Project::<_, Links>::new($entries);
                $call
            }
            AnyPolicy::SampledTtl($p) => {
                let $view = &mut Project::<_, ()>::new($entries);
                $call
            }
            AnyPolicy::WTinyLfu($p) => {
                let $view = &mut Project::<_, WTinyLfuState>::new($entries);
                $call
            }
            AnyPolicy::S3Fifo($p) => {
                let $view = &mut Project::<_, S3FifoState>::new($entries);
                $call
            }
        }
    };
}

impl EvictionPolicy for AnyPolicy {
    type State = AnyState;
    const HIT: HitAccess = HitAccess::Exclusive;

    fn configure(&mut self, shard: &ShardContext) {
        match self {
            Self::Lru(p) => p.configure(shard),
            Self::Lfu(p) => p.configure(shard),
            Self::Fifo(p) => p.configure(shard),
            Self::SampledTtl(p) => p.configure(shard),
            Self::WTinyLfu(p) => p.configure(shard),
            Self::S3Fifo(p) => p.configure(shard),
        }
    }

    fn admit(&mut self, hash: u32, weight: u32, entries: &mut impl Entries<AnyState>) -> bool {
        forward!(self, entries, |p, view| p.admit(hash, weight, view))
    }

    fn on_insert(&mut self, id: EntryId, entries: &mut impl Entries<AnyState>) {
        let fresh = match self {
            Self::Lru(_) | Self::Fifo(_) => Links::default().wrap(),
            Self::Lfu(_) => LfuState::default().wrap(),
            Self::SampledTtl(_) => ().wrap(),
            Self::WTinyLfu(_) => WTinyLfuState::default().wrap(),
            Self::S3Fifo(_) => S3FifoState::default().wrap(),
        };
        *entries.state_mut(id) = fresh;
        forward!(self, entries, |p, view| p.on_insert(id, view));
    }

    fn on_access(&mut self, id: EntryId, entries: &mut impl Entries<AnyState>) {
        // Fifo and SampledTtl ignore hits; their `on_access` is the no-op default.
        forward!(self, entries, |p, view| p.on_access(id, view));
    }

    fn on_update(&mut self, id: EntryId, old_weight: u32, entries: &mut impl Entries<AnyState>) {
        forward!(self, entries, |p, view| p.on_update(id, old_weight, view));
    }

    fn on_remove(&mut self, id: EntryId, entries: &mut impl Entries<AnyState>) {
        forward!(self, entries, |p, view| p.on_remove(id, view));
    }

    fn victim(&mut self, incoming: u32, entries: &mut impl Entries<AnyState>) -> Option<EntryId> {
        forward!(self, entries, |p, view| p.victim(incoming, view))
    }

    fn clear(&mut self) {
        match self {
            Self::Lru(p) => p.clear(),
            Self::Lfu(p) => p.clear(),
            Self::Fifo(p) => p.clear(),
            Self::SampledTtl(p) => p.clear(),
            Self::WTinyLfu(p) => p.clear(),
            Self::S3Fifo(p) => p.clear(),
        }
    }

    fn hottest(&self, entries: &impl Entries<AnyState>, limit: usize, out: &mut Vec<EntryId>) {
        fn view<E, S>(entries: &E) -> ProjectRef<'_, E, S> {
            ProjectRef {
                entries,
                _state: PhantomData,
            }
        }
        match self {
            Self::Lru(p) => p.hottest(&view::<_, Links>(entries), limit, out),
            Self::Lfu(p) => p.hottest(&view::<_, LfuState>(entries), limit, out),
            Self::Fifo(p) => p.hottest(&view::<_, Links>(entries), limit, out),
            Self::SampledTtl(p) => p.hottest(&view::<_, ()>(entries), limit, out),
            Self::WTinyLfu(p) => p.hottest(&view::<_, WTinyLfuState>(entries), limit, out),
            Self::S3Fifo(p) => p.hottest(&view::<_, S3FifoState>(entries), limit, out),
        }
    }

    fn validate(&self, entries: &impl Entries<AnyState>) -> Result<(), String> {
        fn view<E, S>(entries: &E) -> ProjectRef<'_, E, S> {
            ProjectRef {
                entries,
                _state: PhantomData,
            }
        }
        match self {
            Self::Lru(p) => p.validate(&view::<_, Links>(entries)),
            Self::Lfu(p) => p.validate(&view::<_, LfuState>(entries)),
            Self::Fifo(p) => p.validate(&view::<_, Links>(entries)),
            Self::SampledTtl(p) => p.validate(&view::<_, ()>(entries)),
            Self::WTinyLfu(p) => p.validate(&view::<_, WTinyLfuState>(entries)),
            Self::S3Fifo(p) => p.validate(&view::<_, S3FifoState>(entries)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_size() {
        assert_eq!(size_of::<AnyState>(), 16);
        assert_eq!(align_of::<AnyState>(), 4);
        // The states it wraps, for the comparison in the docs.
        assert_eq!(size_of::<Links>(), 8);
        assert_eq!(size_of::<LfuState>(), 8);
        assert_eq!(size_of::<S3FifoState>(), 12);
        assert_eq!(size_of::<WTinyLfuState>(), 12);
    }

    #[test]
    fn names_round_trip() {
        for name in AnyPolicy::NAMES {
            assert_eq!(AnyPolicy::from_name(name).unwrap().name(), name);
        }
    }
}
