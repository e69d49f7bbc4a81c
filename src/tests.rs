//! In-crate property tests: every built-in policy against its reference model
//! ([`crate::testing::check`]), on random operation sequences.

use proptest::prelude::*;

use crate::testing::{Kind, Op, Setup, check};

fn op(keys: u8) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..keys).prop_map(Op::Get),
        1 => (0..keys).prop_map(Op::Peek),
        4 => (0..keys).prop_map(Op::Insert),
        2 => (0..keys, 0u8..6).prop_map(|(k, s)| Op::InsertTtl(k, s)),
        1 => (0..keys).prop_map(Op::GetOrInsert),
        1 => (0..keys).prop_map(Op::Remove),
        2 => (0u8..3).prop_map(Op::Advance),
        1 => Just(Op::Sweep),
        1 => any::<u8>().prop_map(Op::Retain),
        1 => Just(Op::Clear).prop_filter("rare", |_| true),
    ]
}

fn setup(kind: Kind) -> impl Strategy<Value = Setup> {
    (
        0u64..9,
        prop_oneof![Just(None), (1u8..8).prop_map(Some)],
        prop_oneof![Just(None), (1u8..8).prop_map(Some)],
        any::<bool>(),
    )
        .prop_map(move |(capacity, ttl, tti, weighted)| Setup {
            kind,
            capacity,
            ttl,
            tti,
            weighted,
        })
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(12), 1..300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn lru_matches_model(s in setup(Kind::Lru), ops in ops()) {
        check(s, &ops).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn period_lru_keeps_the_cache_contract(s in setup(Kind::LruPeriod), ops in ops()) {
        check(s, &ops).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn lfu_matches_model(s in setup(Kind::Lfu), ops in ops()) {
        check(s, &ops).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn fifo_matches_model(s in setup(Kind::Fifo), ops in ops()) {
        check(s, &ops).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn sampled_ttl_matches_model(s in setup(Kind::Ttl), ops in ops()) {
        check(s, &ops).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn wtinylfu_keeps_the_cache_contract(s in setup(Kind::WTinyLfu), ops in ops()) {
        check(s, &ops).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn s3fifo_keeps_the_cache_contract(s in setup(Kind::S3Fifo), ops in ops()) {
        check(s, &ops).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn decoded_fuzz_input_matches_model(data in prop::collection::vec(any::<u8>(), 0..400), kind in 0usize..4, cap in 0u64..6) {
        let kind = [Kind::Lru, Kind::Lfu, Kind::Fifo, Kind::Ttl][kind];
        check(Setup { kind, capacity: cap, ttl: None, tti: Some(3), weighted: false }, &Op::decode(&data, 10))
            .map_err(TestCaseError::fail)?;
    }
}

/// Long deterministic runs, one per policy, with many evictions.
#[test]
fn long_sequences_match_models() {
    use rand::{Rng, SeedableRng, rngs::SmallRng};
    for kind in Kind::ALL {
        let mut rng = SmallRng::seed_from_u64(42);
        let data: Vec<u8> = (0..20_000).map(|_| rng.random()).collect();
        for capacity in [1, 4, 16] {
            let s = Setup {
                kind,
                capacity,
                ttl: None,
                tti: None,
                weighted: false,
            };
            check(s, &Op::decode(&data, 40)).unwrap();
            let s = Setup {
                kind,
                capacity,
                ttl: Some(5),
                tti: None,
                weighted: capacity > 1,
            };
            check(s, &Op::decode(&data, 40)).unwrap();
        }
    }
}

/// LFU-DA: once-hot entries age out; newcomers start level with the evicted priority.
#[test]
fn lfu_ages_out_once_hot_entries() {
    let cache: crate::Cache<u32, u32, crate::policy::Lfu> = crate::Cache::builder()
        .max_capacity(4)
        .shards(1)
        .policy(crate::policy::Lfu::new())
        .build()
        .unwrap();
    cache.insert(0, 0);
    for _ in 0..50 {
        cache.get(&0); // frequency 51
    }
    // A stream of new keys, each hit a few times: the age rises past key 0's priority.
    for k in 1..400 {
        cache.insert(k, k);
        for _ in 0..3 {
            cache.get(&k);
        }
    }
    assert!(!cache.contains_key(&0), "a once-hot key must age out");
    cache.validate().unwrap();
}
