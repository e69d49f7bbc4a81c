//! The shard's lock-free read path: what a lookup reads without taking the shard's lock, and
//! how the writer knows when what it unlinked can be freed.
//!
//! | file | concept |
//! |---|---|
//! | `readers.rs` | `Readers`: per-thread stripes of read-section counters, hit counters and hit rings; the grace period a writer waits out |
//! | `store.rs` | `Store`: nodes in a stable arena and the atomic bucket table readers probe; its one `Writer`. The crate's only `unsafe` |

pub(crate) mod readers;
pub(crate) mod store;
