//! Redis-style `volatile-ttl`: evict the soonest-expiring entry of a random sample.

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

use super::{Entries, EntryId, EvictionPolicy, HitAccess, ShardContext};
use crate::ConfigError;

/// Evicts the entry with the soonest deadline among a random sample of the shard, as Redis
/// does under `maxmemory-policy volatile-ttl` with `maxmemory-samples` (default 5).
///
/// Keeps no structure and no per-entry state (0 bytes); hits record nothing
/// ([`HitAccess::Ignore`]). Entries without a deadline count as expiring last: a sample made
/// only of them evicts its first member, so the cache stays bounded even when nothing has a
/// TTL (where Redis would refuse the write). Ties go to the first sampled entry.
///
/// # Example
///
/// ```
/// use aside::{Cache, policy::SampledTtl};
/// use std::time::Duration;
///
/// let policy = SampledTtl::with_samples(16).unwrap();
/// let cache: Cache<u32, u32, SampledTtl> =
///     Cache::builder().max_capacity(2).shards(1).policy(policy).build().unwrap();
/// cache.insert_with_ttl(1, 1, Duration::from_secs(10));
/// cache.insert_with_ttl(2, 2, Duration::from_secs(1000));
/// cache.insert_with_ttl(3, 3, Duration::from_secs(100)); // 1 expires soonest
/// assert!(!cache.contains_key(&1) && cache.contains_key(&2));
/// ```
#[derive(Debug, Clone)]
pub struct SampledTtl {
    samples: usize,
    rng: SmallRng,
    /// The last sample drawn, as `(id, deadline)`, for the model tests.
    #[cfg(any(test, fuzzing))]
    pub(crate) last_sample: Vec<(EntryId, Option<u64>)>,
}

impl SampledTtl {
    /// Redis's default `maxmemory-samples`.
    pub const DEFAULT_SAMPLES: usize = 5;

    /// A policy sampling [`DEFAULT_SAMPLES`](Self::DEFAULT_SAMPLES) entries per eviction.
    ///
    /// # Example
    ///
    /// ```
    /// let policy = aside::policy::SampledTtl::new();
    /// # let _ = policy;
    /// ```
    #[must_use]
    pub fn new() -> Self {
        Self {
            samples: Self::DEFAULT_SAMPLES,
            rng: SmallRng::seed_from_u64(0),
            #[cfg(any(test, fuzzing))]
            last_sample: Vec::new(),
        }
    }

    /// A policy sampling `samples` entries per eviction (1 to 1024).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming `samples` when it is outside 1..=1024.
    ///
    /// # Example
    ///
    /// ```
    /// use aside::policy::SampledTtl;
    /// assert!(SampledTtl::with_samples(10).is_ok());
    /// let err = SampledTtl::with_samples(0).unwrap_err();
    /// assert_eq!(err.field(), "samples");
    /// ```
    pub fn with_samples(samples: usize) -> Result<Self, ConfigError> {
        if !(1..=1024).contains(&samples) {
            return Err(ConfigError::new(
                "samples",
                format!("must be between 1 and 1024, got {samples}"),
            ));
        }
        Ok(Self {
            samples,
            ..Self::new()
        })
    }

    /// The sample size.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(aside::policy::SampledTtl::new().samples(), 5);
    /// ```
    #[must_use]
    pub fn samples(&self) -> usize {
        self.samples
    }
}

impl Default for SampledTtl {
    fn default() -> Self {
        Self::new()
    }
}

impl EvictionPolicy for SampledTtl {
    type State = ();
    const HIT: HitAccess = HitAccess::Ignore;

    fn configure(&mut self, shard: &ShardContext) {
        self.rng = SmallRng::seed_from_u64(shard.seed ^ 0x7474_6c5f_7361_6d70);
    }

    fn on_insert(&mut self, _: EntryId, _: &mut impl Entries<()>) {}

    fn on_remove(&mut self, _: EntryId, _: &mut impl Entries<()>) {}

    fn victim(&mut self, _: u32, entries: &mut impl Entries<()>) -> Option<EntryId> {
        #[cfg(any(test, fuzzing))]
        self.last_sample.clear();
        let mut best: Option<(u64, EntryId)> = None;
        for _ in 0..self.samples {
            let id = entries.random(self.rng.next_u64())?;
            let at = entries.expires_at(id);
            #[cfg(any(test, fuzzing))]
            self.last_sample.push((id, at));
            let at = at.unwrap_or(u64::MAX);
            if best.is_none_or(|(b, _)| at < b) {
                best = Some((at, id));
            }
        }
        best.map(|(_, id)| id)
    }

    /// Latest deadline first, entries without one before all others: they are the last a
    /// sample would pick. O(n + limit log limit).
    fn hottest(&self, entries: &impl Entries<()>, limit: usize, out: &mut Vec<EntryId>) {
        let ids: Vec<EntryId> = entries.ids().collect();
        let deadlines: Vec<u64> = ids
            .iter()
            .map(|&id| entries.expires_at(id).unwrap_or(u64::MAX))
            .collect();
        out.extend(super::lfu::top(&deadlines, &ids, limit));
    }

    fn clear(&mut self) {}
}
