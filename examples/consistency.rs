//! The consistency harness (issue #19), as a report: every combination of the front door's
//! options, read APIs and write paths against a real SQLite database, counting *stale reads*:
//! reads that return a version older than one whose invalidation (or `put`) had returned
//! before the read began. The harness itself is `tests/common/consistency.rs`, shared with
//! `tests/consistency.rs` (which asserts zero stale reads per combination, briefly).
//!
//! ```sh
//! cargo run --release --features async,config --example consistency            # short
//! cargo run --release --features async,config --example consistency -- --long  # > 10M reads
//! cargo run --release --features async --example consistency -- --filter fail-safe
//! ```
//!
//! `--filter TEXT` keeps the combinations whose name contains `TEXT` (several allowed: any
//! matches). Prints one row per combination: reads, stale reads, loader calls, reads that
//! ended in a loader error, writes, milliseconds; then the first stale reads of each failing
//! combination. Exits with status 1 if any combination read stale (the three findings of
//! issue #19 that it once showed are fixed; `docs/testing.md`).

#[path = "../tests/common/consistency.rs"]
mod harness;

use harness::{Combo, Profile, Report, Scale};

/// Short mode: about 0.2 s per combination in release.
const SHORT: Scale = Scale {
    readers: 4,
    writers: 2,
    min_reads_per_reader: 5_000,
    max_reads_per_reader: 2_000_000,
    writes_per_writer: 100,
};

/// Long mode: about 1.5 s per combination, 100k reads or more each.
const LONG: Scale = Scale {
    readers: 4,
    writers: 2,
    min_reads_per_reader: 25_000,
    max_reads_per_reader: 20_000_000,
    writes_per_writer: 1_000,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let long = args.iter().any(|a| a == "--long");
    let filters: Vec<&str> = args
        .iter()
        .zip(args.iter().skip(1))
        .filter(|(flag, _)| *flag == "--filter")
        .map(|(_, f)| f.as_str())
        .collect();
    let scale = if long { LONG } else { SHORT };
    let combos: Vec<Combo> = Combo::all(&Profile::all())
        .into_iter()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.name().contains(f)))
        .collect();
    println!(
        "{} combinations, {} mode: {} readers, {} writers ({} writes each)\n",
        combos.len(),
        if long { "long" } else { "short" },
        scale.readers,
        scale.writers,
        scale.writes_per_writer
    );
    println!("{}", Report::header());
    let started = std::time::Instant::now();
    let mut reports = Vec::new();
    for combo in &combos {
        let report = harness::run(combo, &scale);
        println!("{}", report.row());
        reports.push(report);
    }
    let reads: u64 = reports.iter().map(|r| r.reads).sum();
    let stale: u64 = reports.iter().map(|r| r.stale).sum();
    let loads: u64 = reports.iter().map(|r| r.loads).sum();
    println!(
        "\ntotal: {reads} reads, {stale} stale, {loads} loads in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let failing: Vec<_> = reports.iter().filter(|r| r.stale > 0).collect();
    for r in &failing {
        println!("\n{}: {} stale of {} reads, e.g.", r.name, r.stale, r.reads);
        for e in &r.examples {
            println!("  {e}");
        }
    }
    if !failing.is_empty() {
        println!("\n{} combinations read stale", failing.len());
        std::process::exit(1);
    }
}
