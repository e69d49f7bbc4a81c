//! Shuttle's schedule exploration as `tests/shuttle.rs` and `tests/shuttle_consistency.rs`
//! run it (included with `#[path]`; both compile only under `--cfg aside_shuttle`).

use std::sync::Arc;

use shuttle::scheduler::{PctScheduler, RandomScheduler};
use shuttle::{Config, Runner};

pub fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Runs `f` under shuttle: the replayed schedule if `ASIDE_SHUTTLE_REPLAY` is set, otherwise
/// `ASIDE_SHUTTLE_ITERS` schedules (default 300) from a fixed seed (`ASIDE_SHUTTLE_SEED`, or
/// `seed`), half with shuttle's random scheduler and half with PCT.
pub fn explore(seed: u64, f: impl Fn() + Send + Sync + 'static) {
    if let Ok(schedule) = std::env::var("ASIDE_SHUTTLE_REPLAY") {
        shuttle::replay(f, &schedule);
        return;
    }
    let iters = env_u64("ASIDE_SHUTTLE_ITERS").unwrap_or(300) as usize;
    let seed = env_u64("ASIDE_SHUTTLE_SEED").unwrap_or(seed);
    let f = Arc::new(f);
    let g = Arc::clone(&f);
    let random = Runner::new(
        RandomScheduler::new_from_seed(seed, iters.div_ceil(2)),
        Config::new(),
    )
    .run(move || g());
    let pct = Runner::new(
        PctScheduler::new_from_seed(seed, 3, iters / 2),
        Config::new(),
    )
    .run(move || f());
    assert_eq!(random + pct, iters, "every schedule ran");
}
