//! The one place the crate imports its synchronization primitives from, so that a schedule
//! explorer (loom or shuttle, under a namespaced cfg) can replace them in one spot.

pub(crate) use parking_lot::RwLock;
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
