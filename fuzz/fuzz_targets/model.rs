//! Random operation sequences against every built-in policy and its reference model,
//! `validate()` after each operation (see `aside::testing`): insert, insert with TTL, get, peek,
//! get-or-insert, remove, retain, clear, sweep, advancing the mock clock, and (in weighted
//! setups) weights that change with every replacement.
//!
//! Input: a policy/capacity/expiry byte, a flags byte (bit 0: weighted), then two bytes per
//! operation. Run: `cargo +nightly fuzz run model -- -max_total_time=60` from the repository
//! root (or `.ci/fuzz`).
#![no_main]

use aside::testing::{Kind, Op, Setup, check};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [head, flags, rest @ ..] = data else {
        return;
    };
    let kind = Kind::ALL[usize::from(*head) % Kind::ALL.len()];
    let rest_bits = head / Kind::ALL.len() as u8; // 0..=42
    let weighted = flags & 1 == 1;
    // Weighted caches get room for a few entries of weight 1 to 3.
    let capacity = u64::from(rest_bits & 7) * if weighted { 2 } else { 1 };
    let (ttl, tti) = match rest_bits >> 3 {
        0 | 1 => (None, None),
        2 | 3 => (Some(3), None),
        _ => (None, Some(2)),
    };
    let ops = Op::decode(rest, 12);
    let setup = Setup {
        kind,
        capacity,
        ttl,
        tti,
        weighted,
    };
    if let Err(e) = check(setup, &ops) {
        panic!("{setup:?}: {e}");
    }
});
