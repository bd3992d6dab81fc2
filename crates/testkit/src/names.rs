//! Names no other test uses, and one global install at a time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// A name no other test, and no parallel run of the suite, uses:
/// `{prefix}-{pid}-{unix ms}-{counter}` (queues, Redis keys, service names).
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{ms}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Serializes the tests of one binary that install global state
/// (`jobsight_otel::Builder::install` sets the global providers and
/// propagator). Hold the guard for the whole test; a panicking test does not
/// poison the others.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
