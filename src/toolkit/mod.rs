//! The application toolkit around the front door (`docs/toolkit.md`): warming, batch loads,
//! tags and namespaces, write-through and write-behind, the metrics sampler, and named caches
//! from a configuration file.
//!
//! Each part is built on [`AsideCache`](crate::AsideCache) and [`Cache`](crate::Cache) rather
//! than inside them. Warming and batch loads register ordinary flights in the front door's
//! single-flight registry, so live traffic joins them; tags add labels to the slots the front
//! door stores (the labels and the book that hides invalidated entries are the front door's
//! own, `src/aside/labels.rs`, since every read consults them); write-behind hands the front
//! door its dirty set, so a load never caches the row a pending write is about to replace.
//!
//! | file | concept |
//! |---|---|
//! | `warm.rs` | `Warmer` (bounded concurrency, progress, summary), `read_keys`, `parse_keys` |
//! | `batch.rs` | `get_many`, `get_or_load_many`: one loader call per batch, one flight per key |
//! | `tags.rs` | `put_labelled`, `invalidate_tag`, `invalidate_namespace`, `purge_hidden` |
//! | `write.rs` | `write_through`, `WriteBehind` (dirty set, flusher, `WriteSink`) |
//! | `sampler.rs` | `MetricsSampler`, `CacheMetric`: sampled counters, `metrics` export |
//! | `registry/` | `Registry`, `CacheConfig`, `Caches`: named caches from a TOML file |
//!
//! The public paths are those the crate always had: `aside::registry`, `aside::sampler`, and
//! the other types at the crate root and in `aside::aside`.

mod batch;
#[cfg(feature = "config")]
pub mod registry;
pub mod sampler;
mod tags;
pub(crate) mod warm;
#[cfg(feature = "async")]
pub(crate) mod write;
