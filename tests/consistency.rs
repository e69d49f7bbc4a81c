//! The consistency harness (issue #19), brief: every front-door option and write path against
//! a real SQLite database, checking that no read returns a version older than one whose
//! invalidation or `put` had returned before the read began. The criterion and the set-up are
//! in `tests/common/consistency.rs`; `examples/consistency.rs` runs the same combinations
//! longer (`--long`: over 10M reads in release). `docs/testing.md` has the figures.
//!
//! One test per combination (profile / read API / write path), so that a failure names it.
//! Each prints its row (`cargo test --all-features --test consistency -- --nocapture`).
#![cfg(feature = "async")]

#[path = "common/consistency.rs"]
mod harness;

use harness::{Api, Combo, Profile, Report, Scale, Writer};

/// Four readers, two writers of 100 writes each; about 0.2 s per combination in debug.
const SCALE: Scale = Scale {
    readers: 4,
    writers: 2,
    min_reads_per_reader: 1_000,
    max_reads_per_reader: 200_000,
    writes_per_writer: 100,
};

fn check(profile: Profile, api: Api, writer: Writer) {
    let report: Report = harness::run(&Combo::new(profile, api, writer), &SCALE);
    println!("{}\n{}", Report::header(), report.row());
    assert!(report.reads > 0 && report.writes > 0, "{report:?}");
    assert_eq!(
        report.stale, 0,
        "{}: {} stale reads of {}, e.g. {:#?}",
        report.name, report.stale, report.reads, report.examples
    );
}

/// One module per profile; one test per read API and write path.
macro_rules! profile {
    ($module:ident) => {
        mod $module {
            use super::*;

            fn p() -> Profile {
                Profile::$module()
            }

            #[test]
            fn blocking_invalidate() {
                check(p(), Api::Blocking, Writer::Invalidate)
            }
            #[test]
            fn blocking_put() {
                check(p(), Api::Blocking, Writer::Put)
            }
            #[test]
            fn blocking_tag() {
                check(p(), Api::Blocking, Writer::Tag)
            }
            #[test]
            fn blocking_shared_tag() {
                check(p(), Api::Blocking, Writer::SharedTag)
            }
            #[test]
            fn blocking_namespace() {
                check(p(), Api::Blocking, Writer::Namespace)
            }
            #[test]
            fn async_invalidate() {
                check(p(), Api::Async, Writer::Invalidate)
            }
            #[test]
            fn async_put() {
                check(p(), Api::Async, Writer::Put)
            }
            #[test]
            fn async_tag() {
                check(p(), Api::Async, Writer::Tag)
            }
            #[test]
            fn async_shared_tag() {
                check(p(), Api::Async, Writer::SharedTag)
            }
            #[test]
            fn async_namespace() {
                check(p(), Api::Async, Writer::Namespace)
            }
            #[test]
            fn async_write_through() {
                check(p(), Api::Async, Writer::WriteThrough)
            }
            #[test]
            fn async_write_behind() {
                check(p(), Api::Async, Writer::WriteBehind)
            }
            #[test]
            fn batch_invalidate() {
                check(p(), Api::Batch, Writer::Invalidate)
            }
            #[test]
            fn batch_put() {
                check(p(), Api::Batch, Writer::Put)
            }
            #[test]
            fn batch_tag() {
                check(p(), Api::Batch, Writer::Tag)
            }
            #[test]
            fn batch_shared_tag() {
                check(p(), Api::Batch, Writer::SharedTag)
            }
            #[test]
            fn batch_namespace() {
                check(p(), Api::Batch, Writer::Namespace)
            }
            #[test]
            fn batch_write_through() {
                check(p(), Api::Batch, Writer::WriteThrough)
            }
            #[test]
            fn batch_write_behind() {
                check(p(), Api::Batch, Writer::WriteBehind)
            }
        }
    };
}

profile!(no_expiry);
profile!(no_xfetch);
profile!(xfetch);
profile!(refresh_background);
profile!(refresh_caller);
profile!(negative);
profile!(errors);
profile!(combined);
profile!(fail_safe);
profile!(fail_safe_combined);

/// The tag finding, reduced: two writers bump their own key's row (an atomic here, no SQLite)
/// and invalidate a tag, two readers load both keys labelled with it. With `shared`, both keys
/// carry the same tag, so two `invalidate_tag` calls of one tag race; otherwise each key has
/// its own tag. Returns (reads, stale reads).
fn tag_race(shared: bool, writes_per_writer: u64) -> (u64, u64) {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};

    let cache: aside::AsideCache<u64, u64> = aside::AsideCache::builder().build().unwrap();
    let tags = if shared { ["t", "t"] } else { ["t0", "t1"] };
    let labels = tags.map(|t| aside::Labels::new().tag(t));
    let rows = [AtomicU64::new(1), AtomicU64::new(1)];
    let published = [AtomicU64::new(1), AtomicU64::new(1)];
    let writers_done = AtomicUsize::new(0);
    let (reads, stale) = (AtomicU64::new(0), AtomicU64::new(0));
    std::thread::scope(|s| {
        for w in 0..2 {
            let (cache, rows, published, writers_done) = (&cache, &rows, &published, &writers_done);
            s.spawn(move || {
                for _ in 0..writes_per_writer {
                    let v = rows[w].fetch_add(1, SeqCst) + 1; // UPDATE rows SET version = v
                    cache.invalidate_tag(tags[w]);
                    published[w].store(v, SeqCst);
                }
                writers_done.fetch_add(1, SeqCst);
            });
        }
        for r in 0..4 {
            let (cache, labels, rows, published) = (&cache, &labels, &rows, &published);
            let (writers_done, reads, stale) = (&writers_done, &reads, &stale);
            s.spawn(move || {
                let mut i = r;
                // Bounded: the writers finish.
                while writers_done.load(SeqCst) < 2 {
                    let key = i % 2;
                    i += 1;
                    let snapshot = published[key].load(SeqCst);
                    let got = cache
                        .get_or_load_labelled_blocking(key as u64, &labels[key], || {
                            Ok::<_, Infallible>(Some(rows[key].load(SeqCst)))
                        })
                        .unwrap()
                        .unwrap();
                    reads.fetch_add(1, SeqCst);
                    if got < snapshot {
                        stale.fetch_add(1, SeqCst);
                    }
                }
            });
        }
    });
    (reads.into_inner(), stale.into_inner())
}

#[test]
fn tag_race_one_tag_per_writer() {
    let (reads, stale) = tag_race(false, writes());
    println!("one tag per writer: {reads} reads, {stale} stale");
    assert_eq!(stale, 0);
}

#[test]
fn tag_race_one_tag_for_both_writers() {
    let (reads, stale) = tag_race(true, writes());
    println!("one tag for both writers: {reads} reads, {stale} stale");
    assert_eq!(stale, 0);
}

fn writes() -> u64 {
    std::env::var("ASIDE_TAG_RACE_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}
