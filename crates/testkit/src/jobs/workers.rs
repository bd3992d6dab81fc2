//! Stopping apalis workers from a test.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use apalis::prelude::{Event, WorkerContext};

/// An `on_event` handler that stops the worker once `n` tasks finished
/// (`Event::Success` or `Event::Error`).
pub fn stop_after(n: usize) -> impl Fn(&WorkerContext, &Event) + Send + Sync + 'static {
    let seen = Arc::new(AtomicUsize::new(0));
    move |worker: &WorkerContext, event: &Event| {
        if matches!(event, Event::Success(_) | Event::Error(_))
            && seen.fetch_add(1, Ordering::SeqCst) + 1 == n
        {
            let _ = worker.stop();
        }
    }
}
