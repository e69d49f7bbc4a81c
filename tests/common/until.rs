//! A wait for the async front-door tests. Included with `#[path]`.

/// Yields until `cond` holds (other tasks on this current-thread runtime make progress).
pub async fn until(mut cond: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition never held");
}
