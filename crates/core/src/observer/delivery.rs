//! The [`Observer`] trait and how events reach observers: one bounded
//! queue and one thread per observer, counted in [`ObserverStats`].

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::event::JobEvent;

/// Default capacity of each observer's queue, in events.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// What an observer may return when it could not handle an event.
pub type ObserveError = Box<dyn std::error::Error + Send + Sync>;

/// A lifecycle subscriber. Runs on a thread of its own (see the module
/// docs); it may block, but while it does, its own queue fills up and its
/// later events are dropped.
///
/// Any `FnMut(&JobEvent) + Send + 'static` closure is an observer.
pub trait Observer: Send + 'static {
    /// Handles one event. An error is counted in [`ObserverStats::failed`]
    /// and otherwise ignored.
    fn observe(&mut self, event: &JobEvent) -> Result<(), ObserveError>;
}

impl<F> Observer for F
where
    F: FnMut(&JobEvent) + Send + 'static,
{
    fn observe(&mut self, event: &JobEvent) -> Result<(), ObserveError> {
        self(event);
        Ok(())
    }
}

/// How one observer is run.
#[derive(Debug, Clone)]
#[must_use]
pub struct ObserverOptions {
    name: Option<String>,
    capacity: usize,
}

impl Default for ObserverOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ObserverOptions {
    /// The defaults: named `observer-<n>` in registration order, a queue of
    /// [`DEFAULT_QUEUE_CAPACITY`] events.
    pub fn new() -> Self {
        Self {
            name: None,
            capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }

    /// The name used in [`ObserverStats`] and for the thread.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// How many events may wait for this observer before new ones are
    /// dropped. Defaults to [`DEFAULT_QUEUE_CAPACITY`]; at least 1.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }
}

/// What happened to the events offered to one observer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObserverStats {
    /// The observer's name.
    pub name: Arc<str>,
    /// Events handled without error.
    pub delivered: u64,
    /// Events the observer returned an error for.
    pub failed: u64,
    /// Events the observer panicked on.
    pub panicked: u64,
    /// Events dropped because the observer's queue was full (or its thread
    /// could not be started).
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    queued: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    panicked: AtomicU64,
    dropped: AtomicU64,
    /// Events handled (delivered, failed or panicked), for flushing.
    handled: Mutex<u64>,
    progress: Condvar,
}

struct Slot {
    name: Arc<str>,
    tx: SyncSender<Arc<JobEvent>>,
    counters: Arc<Counters>,
}

/// The observers of one monitor, their queues and threads.
pub(crate) struct Delivery {
    slots: Vec<Slot>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.slots.iter().map(|s| &s.name))
            .finish()
    }
}

impl Delivery {
    /// Starts one thread per observer.
    pub(crate) fn start(observers: Vec<(Box<dyn Observer>, ObserverOptions)>) -> Self {
        let slots = observers
            .into_iter()
            .enumerate()
            .map(|(index, (observer, options))| {
                let name: Arc<str> = Arc::from(
                    options
                        .name
                        .unwrap_or_else(|| format!("observer-{}", index + 1)),
                );
                let (tx, rx) = mpsc::sync_channel(options.capacity);
                let counters = Arc::new(Counters::default());
                let thread_counters = Arc::clone(&counters);
                // A thread that cannot start leaves the receiver dropped:
                // every event for it then counts as dropped.
                let _ = thread::Builder::new()
                    .name(format!("jobsight-obs-{name}"))
                    .spawn(move || drain(observer, rx, &thread_counters));
                Slot { name, tx, counters }
            })
            .collect();
        Delivery { slots }
    }

    /// Offers `event` to every observer without blocking.
    pub(crate) fn dispatch(&self, event: JobEvent) {
        let event = Arc::new(event);
        for slot in &self.slots {
            match slot.tx.try_send(Arc::clone(&event)) {
                Ok(()) => {
                    slot.counters.queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    slot.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Waits until every event queued so far was handled, at most `timeout`.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.slots.iter().all(|slot| {
            let target = slot.counters.queued.load(Ordering::Relaxed);
            let mut handled = slot
                .counters
                .handled
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            while *handled < target {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                handled = match slot.counters.progress.wait_timeout(handled, left) {
                    Ok((guard, _)) => guard,
                    Err(poisoned) => poisoned.into_inner().0,
                };
            }
            true
        })
    }

    /// Delivery counts per observer, in registration order.
    pub(crate) fn stats(&self) -> Vec<ObserverStats> {
        self.slots
            .iter()
            .map(|slot| {
                let c = &slot.counters;
                ObserverStats {
                    name: Arc::clone(&slot.name),
                    delivered: c.delivered.load(Ordering::Relaxed),
                    failed: c.failed.load(Ordering::Relaxed),
                    panicked: c.panicked.load(Ordering::Relaxed),
                    dropped: c.dropped.load(Ordering::Relaxed),
                }
            })
            .collect()
    }
}

/// The observer thread: handles events until every sender is gone.
fn drain(mut observer: Box<dyn Observer>, rx: Receiver<Arc<JobEvent>>, counters: &Counters) {
    while let Ok(event) = rx.recv() {
        let counter = match catch_unwind(AssertUnwindSafe(|| observer.observe(&event))) {
            Ok(Ok(())) => &counters.delivered,
            Ok(Err(_)) => &counters.failed,
            Err(_) => &counters.panicked,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        drop(event);
        *counters
            .handled
            .lock()
            .unwrap_or_else(PoisonError::into_inner) += 1;
        counters.progress.notify_all();
    }
}
