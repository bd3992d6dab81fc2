//! Lifecycle observers: subscribers that hear about every job a
//! [`JobMonitor`](crate::JobMonitor) records — for Slack messages, webhooks,
//! audit logs — without being able to slow down or break a job.
//!
//! # Events and when they fire
//! | [`EventKind`] | fired by |
//! |---|---|
//! | `Enqueued` | [`Observers::enqueued`], called by a producer; a [`SendTransaction`](crate::SendTransaction) that succeeds |
//! | `Started` | [`JobMonitor::start`](crate::JobMonitor::start), when the span opens |
//! | `Progressed` | a [`progress`](crate::progress) tick that passes the throttle (the same ticks that become span events) |
//! | `Succeeded` | `succeed`, and an error the classifier ignores (`outcome` = `Ignored`, `error` set) |
//! | `Retried` | a failure with attempts left |
//! | `Failed` | a final failure, and a panic (`outcome` = `Panicked`) |
//! | `Abandoned` | a transaction dropped before it finished (timeout, shutdown) |
//! | `Paused`, `Resumed` | [`Transaction::paused`](crate::Transaction::paused) / [`resumed`](crate::Transaction::resumed), for runners that pause jobs |
//! | `Cancelled` | [`Transaction::cancelled`](crate::Transaction::cancelled), for runners that cancel jobs (recorded as `abandoned` on the span) |
//! | `Missed`, `Stuck` | [`Observers::checkin_incident`], called by the check-in watchdog (`jobsight-checkin`) once per incident across a fleet; `job` names the check-in monitor, `run_id` and `started_at` are the stuck run's |
//!
//! Each [`JobEvent`] carries the job's [`JobMeta`](crate::JobMeta) (system, queue, name, id,
//! attempt, max attempts, masked arguments and metadata when captured,
//! enqueue and run-at times), a run id, the start and end times, the time
//! running, the outcome, the progress (ticks, total, estimated time to
//! completion, element being processed) and, for errors, the
//! [`ErrorRecord`](crate::ErrorRecord) (type, message, backtrace when the runner has one).
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
//! the process alive. Call [`Observers::flush`] (with a deadline,
//! on [`JobMonitor::observers`](crate::JobMonitor::observers)) before exiting; `jobsight-otel`'s task runner does it
//! for you.
//!
//! ```
//! use std::time::Duration;
//! use jobsight_core::observer::{JobEvent, EventKind};
//! use jobsight_core::{JobMeta, JobMonitor};
//!
//! let monitor = JobMonitor::builder()
//!     .observer(|event: &JobEvent| {
//!         if event.kind == EventKind::Failed {
//!             eprintln!("{} failed: {:?}", event.job.name(), event.error);
//!         }
//!     })
//!     .build();
//! monitor.start(JobMeta::builder("my-runner", "emails").build()).succeed();
//! assert!(monitor.observers().flush(Duration::from_secs(1)));
//! ```

//! # Layout
//! - `event.rs`: [`JobEvent`], [`EventKind`], [`ProgressSnapshot`].
//! - `delivery.rs`: the [`Observer`] trait, [`ObserverOptions`], and the
//!   queues and threads that deliver events, with their [`ObserverStats`].
//! - `handle.rs`: [`Observers`], a monitor's observers as its users see
//!   them (producers, the check-in watchdog, the code that flushes before
//!   exiting).
//! - `attempt.rs`: the events of one running attempt (`Started`,
//!   `Progressed`, the ending ones, `Paused`, `Resumed`), made from its run
//!   state.

pub(crate) mod attempt;
pub(crate) mod delivery;
pub(crate) mod event;
pub(crate) mod handle;
#[cfg(test)]
mod tests;

pub use delivery::{
    DEFAULT_QUEUE_CAPACITY, ObserveError, Observer, ObserverOptions, ObserverStats,
};
pub use event::{EventKind, JobEvent, ProgressSnapshot};
pub use handle::Observers;
