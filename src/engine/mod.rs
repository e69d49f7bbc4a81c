//! The engine: one shard's single-threaded core and the pieces it is made of.
//!
//! | file | concept |
//! |---|---|
//! | `shard.rs` | `Shard`: the table, the slab, the policy and its per-entry states, the counters; the admit → victim → insert → remove protocol |
//! | `slab.rs` | `Slab` (a vector with a free stack) and the `Entry` layout |
//! | `index.rs` | `Index`: slab ids by hash, grown by incremental migration |
//! | `buffer.rs` | `AccessBuffer`: the lossy buffer of hits waiting to be replayed into the policy |
//! | `expiry.rs` | `Clock`, packed deadlines, the expiry settings and the sweep's constants |
//!
//! Nothing here knows about threads beyond the atomics a hit needs: [`Cache`](crate::Cache)
//! wraps each shard in its locks, and the same shard code serves the model tests and the
//! fuzzers. Policies (`crate::policy`) see the shard only through the `Entries` view.

pub(crate) mod concurrent;
pub(crate) mod expiry;
pub(crate) mod shard;
pub(crate) mod slab;
