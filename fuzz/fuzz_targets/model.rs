//! Random operation sequences against every built-in policy and its reference model,
//! `validate()` after each operation (see `aside::testing`).
//!
//! Run: `cargo +nightly fuzz run model -- -max_total_time=60` from the repository root.
#![no_main]

use aside::testing::{Kind, Op, Setup, check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let kind = Kind::ALL[usize::from(head) % Kind::ALL.len()];
    let rest_bits = head / Kind::ALL.len() as u8; // 0..=42
    let capacity = u64::from(rest_bits & 7);
    let (ttl, tti) = match rest_bits >> 3 {
        0 | 1 => (None, None),
        2 | 3 => (Some(3), None),
        _ => (None, Some(2)),
    };
    let ops = Op::decode(rest, 12);
    if let Err(e) = check(Setup { kind, capacity, ttl, tti }, &ops) {
        panic!("{e}");
    }
});
