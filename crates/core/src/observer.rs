//! Lifecycle observers: subscribers that hear about every job a
//! [`JobMonitor`](crate::JobMonitor) records — for Slack messages, webhooks,
//! audit logs — without being able to slow down or break a job.
//!
//! # Events and when they fire
//! | [`EventKind`] | fired by |
//! |---|---|
//! | `Enqueued` | [`JobMonitor::enqueued`](crate::JobMonitor::enqueued), called by a producer; a [`SendTransaction`](crate::SendTransaction) that succeeds |
//! | `Started` | [`JobMonitor::start`](crate::JobMonitor::start), when the span opens |
//! | `Progressed` | a [`progress`](crate::progress) tick that passes the throttle (the same ticks that become span events) |
//! | `Succeeded` | `succeed`, and an error the classifier ignores (`outcome` = `Ignored`, `error` set) |
//! | `Retried` | a failure with attempts left |
//! | `Failed` | a final failure, and a panic (`outcome` = `Panicked`) |
//! | `Abandoned` | a transaction dropped before it finished (timeout, shutdown) |
//! | `Paused`, `Resumed` | [`Transaction::paused`](crate::Transaction::paused) / [`resumed`](crate::Transaction::resumed), for runners that pause jobs |
//! | `Cancelled` | [`Transaction::cancelled`](crate::Transaction::cancelled), for runners that cancel jobs (recorded as `abandoned` on the span) |
//! | `Missed`, `Stuck` | [`JobMonitor::checkin_incident`](crate::JobMonitor::checkin_incident), called by the check-in watchdog (`jobsight-checkin`) once per incident across a fleet; `job` names the check-in monitor, `run_id` and `started_at` are the stuck run's |
//!
//! Each [`Event`] carries the job's [`JobMeta`] (system, queue, name, id,
//! attempt, max attempts, masked arguments and metadata when captured,
//! enqueue and run-at times), a run id, the start and end times, the time
//! running, the outcome, the progress (ticks, total, estimated time to
//! completion, element being processed) and, for errors, the
//! [`ErrorRecord`] (type, message, backtrace when the runner has one).
//!
//! # Off the job's path
//! Every observer gets a bounded queue ([`ObserverOptions::queue_capacity`],
//! default [`DEFAULT_QUEUE_CAPACITY`]) and a thread of its own that drains
//! it. The job only *tries* to put an event in each queue, which never
//! blocks: when a queue is full (an observer that hangs or cannot keep up)
//! the event is dropped for that observer alone and counted
//! ([`ObserverStats::dropped`]). A panic inside an observer is caught on its
//! thread and counted ([`ObserverStats::panicked`]); the observer keeps
//! receiving events. An observer that returns an error is counted
//! ([`ObserverStats::failed`]). None of this reaches the job or the other
//! observers. The panic itself is still printed by the process's panic hook.
//!
//! A monitor without observers pays one branch per job: no event is built.
//!
//! # Before the process exits
//! Queued events are delivered by the observer threads, which do not keep
//! the process alive. Call [`JobMonitor::flush_observers`](crate::JobMonitor::flush_observers)
//! (with a deadline) before exiting; `jobsight-otel`'s task runner does it
//! for you.
//!
//! ```
//! use std::time::Duration;
//! use jobsight_core::observer::{Event, EventKind};
//! use jobsight_core::{JobMeta, JobMonitor};
//!
//! let monitor = JobMonitor::builder()
//!     .observer(|event: &Event| {
//!         if event.kind == EventKind::Failed {
//!             eprintln!("{} failed: {:?}", event.job.name(), event.error);
//!         }
//!     })
//!     .build();
//! monitor.start(JobMeta::builder("my-runner", "emails").build()).succeed();
//! assert!(monitor.flush_observers(Duration::from_secs(1)));
//! ```

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crate::error::ErrorRecord;
use crate::job::JobMeta;
use crate::outcome::Outcome;

/// Default capacity of each observer's queue, in events.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;

/// What an observer may return when it could not handle an event.
pub type ObserveError = Box<dyn std::error::Error + Send + Sync>;

/// A lifecycle subscriber. Runs on a thread of its own (see the module
/// docs); it may block, but while it does, its own queue fills up and its
/// later events are dropped.
///
/// Any `FnMut(&Event) + Send + 'static` closure is an observer.
pub trait Observer: Send + 'static {
    /// Handles one event. An error is counted in [`ObserverStats::failed`]
    /// and otherwise ignored.
    fn observe(&mut self, event: &Event) -> Result<(), ObserveError>;
}

impl<F> Observer for F
where
    F: FnMut(&Event) + Send + 'static,
{
    fn observe(&mut self, event: &Event) -> Result<(), ObserveError> {
        self(event);
        Ok(())
    }
}

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// A producer enqueued the job.
    Enqueued,
    /// An attempt started.
    Started,
    /// The attempt made progress (throttled).
    Progressed,
    /// The attempt succeeded (or ended with an ignored error).
    Succeeded,
    /// The attempt failed for good, or panicked.
    Failed,
    /// The attempt failed and the runner will try again.
    Retried,
    /// The attempt was dropped before it finished.
    Abandoned,
    /// The runner paused the job.
    Paused,
    /// The runner resumed the job.
    Resumed,
    /// The runner cancelled the job.
    Cancelled,
    /// The check-in watchdog found an expected run missing (see
    /// [`JobMonitor::checkin_incident`](crate::JobMonitor::checkin_incident)).
    Missed,
    /// The check-in watchdog found a run older than its maximum runtime.
    Stuck,
}

impl EventKind {
    /// The lower-case name: `enqueued`, `started`, `progressed`, …
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Enqueued => "enqueued",
            EventKind::Started => "started",
            EventKind::Progressed => "progressed",
            EventKind::Succeeded => "succeeded",
            EventKind::Failed => "failed",
            EventKind::Retried => "retried",
            EventKind::Abandoned => "abandoned",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::Cancelled => "cancelled",
            EventKind::Missed => "missed",
            EventKind::Stuck => "stuck",
        }
    }

    /// The event that finishes an attempt with `outcome`.
    pub const fn for_outcome(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Succeeded | Outcome::Ignored => EventKind::Succeeded,
            Outcome::Failed { retryable: true } => EventKind::Retried,
            Outcome::Failed { retryable: false } | Outcome::Panicked => EventKind::Failed,
            Outcome::Abandoned => EventKind::Abandoned,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's progress at the time of an event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ProgressSnapshot {
    /// Ticks reported so far.
    pub ticks: u64,
    /// The total the ticks count towards, when the job set one.
    pub total: Option<u64>,
    /// Estimated time to completion: the time running so far, scaled by the
    /// ticks left. `None` without a total or before the first tick.
    pub eta: Option<Duration>,
    /// The element being processed, when the job said
    /// ([`Progress::set_element`](crate::progress::Progress::set_element)).
    pub element: Option<Arc<str>>,
}

/// One lifecycle event, shared by every observer.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// When it happened.
    pub at: SystemTime,
    /// The job: system, queue, name, id, attempt, max attempts, arguments
    /// and metadata (masked, when captured), enqueue and run-at times.
    pub job: Arc<JobMeta>,
    /// Identifies this attempt: the process span's id (16 hex digits), or a
    /// process-unique number when no tracing SDK is installed. `None` for
    /// `Enqueued`.
    pub run_id: Option<Arc<str>>,
    /// The process span's trace id (32 hex digits), when valid.
    pub trace_id: Option<Arc<str>>,
    /// When the attempt started (`None` for `Enqueued`).
    pub started_at: Option<SystemTime>,
    /// When the attempt ended, on the events that end it.
    pub ended_at: Option<SystemTime>,
    /// Time running so far (or in all, on the events that end it).
    pub running_for: Option<Duration>,
    /// The outcome, on the events that end an attempt.
    pub outcome: Option<Outcome>,
    /// Progress, when the job reported any.
    pub progress: Option<ProgressSnapshot>,
    /// The error, on failures, retries, panics and ignored errors. The tick
    /// count and element at the time of the error are in `progress`.
    pub error: Option<ErrorRecord>,
}

impl Event {
    /// An event about `job` with only the kind and time set.
    pub(crate) fn new(kind: EventKind, job: Arc<JobMeta>) -> Self {
        Event {
            kind,
            at: SystemTime::now(),
            job,
            run_id: None,
            trace_id: None,
            started_at: None,
            ended_at: None,
            running_for: None,
            outcome: None,
            progress: None,
            error: None,
        }
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
    tx: SyncSender<Arc<Event>>,
    counters: Arc<Counters>,
}

/// The observers of one monitor and their queues.
pub(crate) struct Observers {
    slots: Vec<Slot>,
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.slots.iter().map(|s| &s.name))
            .finish()
    }
}

impl Observers {
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
        Observers { slots }
    }

    /// Offers `event` to every observer without blocking.
    pub(crate) fn dispatch(&self, event: Event) {
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
fn drain(mut observer: Box<dyn Observer>, rx: Receiver<Arc<Event>>, counters: &Counters) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobMonitor;

    fn meta() -> JobMeta {
        JobMeta::builder("test", "q").name("job").id("7").build()
    }

    fn collector() -> (Arc<Mutex<Vec<Event>>>, impl Observer) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        (seen, move |e: &Event| sink.lock().unwrap().push(e.clone()))
    }

    #[test]
    fn lifecycle_of_a_successful_job() {
        let (seen, observer) = collector();
        let monitor = JobMonitor::builder().observer(observer).build();
        monitor.enqueued(&meta());
        monitor.start(meta()).succeed();
        assert!(monitor.flush_observers(Duration::from_secs(5)));
        let seen = seen.lock().unwrap();
        let kinds: Vec<_> = seen.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Enqueued,
                EventKind::Started,
                EventKind::Succeeded
            ]
        );
        let done = &seen[2];
        assert_eq!(done.outcome, Some(Outcome::Succeeded));
        assert_eq!(done.job.id(), Some("7"));
        assert!(done.run_id.is_some());
        assert_eq!(done.run_id, seen[1].run_id);
        assert!(done.started_at.is_some() && done.ended_at.is_some());
        assert!(done.running_for.is_some());
        assert!(seen[0].run_id.is_none());
    }

    #[test]
    fn failures_retries_and_panics_map_to_events() {
        let (seen, observer) = collector();
        let monitor = JobMonitor::builder().observer(observer).build();
        let m = |attempt| {
            JobMeta::builder("test", "q")
                .attempt(attempt)
                .max_attempts(2)
                .build()
        };
        monitor.start(m(1)).fail(&std::io::Error::other("flaky"));
        monitor.start(m(2)).fail(&std::io::Error::other("down"));
        monitor.start(m(1)).panicked("boom");
        drop(monitor.start(m(1)));
        monitor.start(m(1)).cancelled();
        assert!(monitor.flush_observers(Duration::from_secs(5)));
        let seen = seen.lock().unwrap();
        let ends: Vec<_> = seen
            .iter()
            .filter(|e| e.kind != EventKind::Started)
            .map(|e| {
                (
                    e.kind,
                    e.outcome,
                    e.error.as_ref().map(|r| r.message().to_owned()),
                )
            })
            .collect();
        assert_eq!(
            ends,
            [
                (
                    EventKind::Retried,
                    Some(Outcome::Failed { retryable: true }),
                    Some("flaky".into())
                ),
                (
                    EventKind::Failed,
                    Some(Outcome::Failed { retryable: false }),
                    Some("down".into())
                ),
                (
                    EventKind::Failed,
                    Some(Outcome::Panicked),
                    Some("boom".into())
                ),
                (EventKind::Abandoned, Some(Outcome::Abandoned), None),
                (EventKind::Cancelled, Some(Outcome::Abandoned), None),
            ]
        );
    }

    #[test]
    fn a_panicking_observer_is_counted_and_the_others_still_hear_everything() {
        let (seen, good) = collector();
        let monitor = JobMonitor::builder()
            .observer_with(
                |_: &Event| panic!("observer exploded"),
                ObserverOptions::new().name("bad"),
            )
            .observer_with(good, ObserverOptions::new().name("good"))
            .build();
        for _ in 0..3 {
            monitor.start(meta()).succeed();
        }
        assert!(monitor.flush_observers(Duration::from_secs(5)));
        assert_eq!(seen.lock().unwrap().len(), 6);
        let stats = monitor.observer_stats();
        assert_eq!(&*stats[0].name, "bad");
        assert_eq!((stats[0].panicked, stats[0].delivered), (6, 0));
        assert_eq!((stats[1].delivered, stats[1].dropped), (6, 0));
    }

    #[test]
    fn a_hanging_observer_blocks_neither_jobs_nor_other_observers() {
        let release = Arc::new((Mutex::new(false), Condvar::new()));
        let gate = Arc::clone(&release);
        let hanging = move |_: &Event| {
            let (lock, cond) = &*gate;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cond.wait(open).unwrap();
            }
        };
        let (seen, good) = collector();
        let monitor = JobMonitor::builder()
            .observer_with(
                hanging,
                ObserverOptions::new().name("stuck").queue_capacity(4),
            )
            .observer_with(
                good,
                ObserverOptions::new().name("good").queue_capacity(1000),
            )
            .build();
        let started = Instant::now();
        for _ in 0..100 {
            monitor.start(meta()).succeed();
        }
        // 200 events while one observer never returns: the jobs are not held up.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(!monitor.flush_observers(Duration::from_millis(100)));
        let stats = monitor.observer_stats();
        // Four wait in the queue, perhaps one more is being handled, the
        // rest were dropped.
        let dropped = stats[0].dropped;
        assert!((195..=196).contains(&dropped), "{stats:?}");
        assert_eq!(stats[1].dropped, 0);
        let (lock, cond) = &*release;
        *lock.lock().unwrap() = true;
        cond.notify_all();
        assert!(monitor.flush_observers(Duration::from_secs(5)));
        assert_eq!(seen.lock().unwrap().len(), 200);
        assert_eq!(monitor.observer_stats()[0].delivered, 200 - dropped);
    }

    #[test]
    fn failing_observers_are_counted() {
        struct Refuses;
        impl Observer for Refuses {
            fn observe(&mut self, _: &Event) -> Result<(), ObserveError> {
                Err("webhook answered 500".into())
            }
        }
        let monitor = JobMonitor::builder().observer(Refuses).build();
        monitor.start(meta()).succeed();
        assert!(monitor.flush_observers(Duration::from_secs(5)));
        assert_eq!(monitor.observer_stats()[0].failed, 2);
    }

    #[test]
    fn no_observer_no_event() {
        let monitor = JobMonitor::new();
        assert!(!monitor.has_observers());
        monitor.start(meta()).succeed();
        assert!(monitor.flush_observers(Duration::ZERO));
        assert!(monitor.observer_stats().is_empty());
    }
}
