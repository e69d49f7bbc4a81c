//! The engine: one shard's single-threaded core and the pieces it is made of.
//!
//! | file | concept |
//! |---|---|
//! | `shard.rs` | `ShardSlot`: a shard's store and its writer side `Shard` under a mutex; `Shard`: the slab, the policy and its per-entry states, the counters |
//! | `protocol.rs` | the admit → victim → insert → remove protocol, shared by a shard's writes and by `Simulation` |
//! | `concurrent/` | the lock-free read path: `Store` (arena of nodes, atomic bucket table; the crate's only `unsafe`) and `Readers` (reader stripes, hit rings, the writers' grace period) |
//! | `slab.rs` | `Slab` (a vector with a free stack), the `Meta` record, the policies' `View` |
//! | `expiry.rs` | `Clock`, packed deadlines, the expiry settings and the sweep's constants |
//!
//! Lookups run without a lock, inside a read section of the store; everything that changes
//! a shard runs under its mutex, single-threaded code that also serves the model tests and
//! the fuzzers. Policies (`crate::policy`) see the shard only through the `Entries` view.

pub(crate) mod concurrent;
pub(crate) mod expiry;
pub(crate) mod protocol;
pub(crate) mod shard;
pub(crate) mod slab;
