//! In-crate tests: model tests and internals.
