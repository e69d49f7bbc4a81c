//! The TOML registry (`aside::registry`) on arbitrary text. For any input:
//!
//! - parsing never panics; an error names a cache or a field, or says where the file is
//!   wrong, and printing it never panics;
//! - a file that parses prints (`to_toml_string`) to a file that parses to the same registry;
//! - every cache of a parsed file builds: its front door through `builder` (or
//!   `weighed_builder` when sized by weight), which the registry promises cannot fail on the
//!   file's settings, and its engine through `cache_builder` / `weighed_cache_builder` when
//!   the table has no front-door setting.
//!
//! Input: UTF-8 text (other bytes are skipped). Seeds in `fuzz/corpus/config`. Run:
//! `cargo +nightly fuzz run config -- -max_total_time=60` (or `.ci/fuzz`).
#![no_main]

use aside::registry::Registry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let registry = match Registry::from_toml_str(text) {
        Ok(r) => r,
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.is_empty());
            return;
        }
    };
    let printed = registry.to_toml_string();
    let again = Registry::from_toml_str(&printed)
        .unwrap_or_else(|e| panic!("own output does not parse: {e}\n{printed}"));
    assert_eq!(registry, again, "round trip changed the registry:\n{printed}");

    for name in registry.names() {
        let config = registry.config(name).expect("a listed name is configured");
        let weighed = config.max_weight.is_some();
        let front = if weighed {
            registry
                .weighed_builder(name, |_: &u64, v: &u64| (*v % 7) as u32)
                .map(|b| b.build())
        } else {
            registry.builder::<u64, u64>(name).map(|b| b.build())
        };
        match front {
            Ok(Ok(cache)) => {
                cache.put(1, 1);
                cache.validate().expect("a fresh cache validates");
            }
            Ok(Err(e)) => panic!("{name}: the file's settings failed to build: {e}"),
            Err(e) => panic!("{name}: no front-door builder: {e}"),
        }
        let engine = if weighed {
            registry.weighed_cache_builder(name, |_: &u64, v: &u64| (*v % 7) as u32)
        } else {
            registry.cache_builder::<u64, u64>(name)
        };
        // Refused only for a front-door setting, which names its field.
        match engine {
            Ok(b) => {
                let cache = b
                    .build()
                    .unwrap_or_else(|e| panic!("{name}: engine failed to build: {e}"));
                cache.insert(1, 1);
                cache.validate().expect("a fresh cache validates");
            }
            Err(e) => assert!(e.field().is_some(), "{name}: refusal without a field: {e}"),
        }
    }
});
