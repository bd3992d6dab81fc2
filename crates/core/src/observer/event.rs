//! [`JobEvent`]: what observers are told, and [`EventKind`]: what happened.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::ErrorRecord;
use crate::job::JobMeta;
use crate::outcome::Outcome;

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
    /// [`Observers::checkin_incident`](super::Observers::checkin_incident)).
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
pub struct JobEvent {
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

impl JobEvent {
    /// An event about `job` with only the kind and time set.
    pub(crate) fn new(kind: EventKind, job: Arc<JobMeta>) -> Self {
        JobEvent {
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
