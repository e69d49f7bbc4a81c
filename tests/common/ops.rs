//! Random engine operations on `u16 -> u32` caches, shared by the integration tests that
//! replay them (`policy_s3fifo.rs`, `config.rs`). Included with `#[path]`.

use proptest::prelude::*;

/// One engine operation; keys are small so that they collide.
#[derive(Debug, Clone)]
pub enum Op {
    Get(u16),
    Peek(u16),
    Insert(u16, u32),
    InsertTtl(u16, u32, u8),
    Remove(u16),
    Advance(u8),
    Sweep,
    Retain(u8),
    Clear,
}

/// Operations on keys `0..keys`, weighted towards reads and inserts.
pub fn op(keys: u16) -> impl Strategy<Value = Op> {
    let k = 0..keys;
    prop_oneof![
        8 => k.clone().prop_map(Op::Get),
        1 => k.clone().prop_map(Op::Peek),
        8 => (k.clone(), 0u32..8).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (k.clone(), 0u32..8, 0u8..5).prop_map(|(k, v, t)| Op::InsertTtl(k, v, t)),
        2 => k.prop_map(Op::Remove),
        1 => (0u8..3).prop_map(Op::Advance),
        1 => Just(Op::Sweep),
        1 => any::<u8>().prop_map(Op::Retain),
        1 => Just(Op::Clear),
    ]
}
