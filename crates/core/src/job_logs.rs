//! What the logs made while a job runs learn about the job, and where a
//! failed attempt's error goes besides the span.
//!
//! Both are process-wide switches that a log pipeline (`jobsight-otel`)
//! turns on; with neither on, a job pays one relaxed atomic load at start.
//!
//! # The job's scope
//! With [`set_scope`]`(true)`, [`JobMonitor::start`](crate::JobMonitor::start)
//! puts a [`JobLogScope`] in the transaction's context (about one context
//! entry, 0.2–0.4 µs a job). The runner attaches that context around each
//! poll of the job, so a log processor finds the scope with
//! [`JobLogScope::map_current`] and adds the job's identity to each record
//! made inside the job: `messaging.system`, `messaging.destination.name`,
//! `job.name`, `messaging.message.id`, `job.attempt`
//! ([`JobLogScope::attributes`]). The scope also counts the job's records,
//! so a processor can cap them per job ([`JobLogScope::admit`]); when the
//! attempt finishes, the number refused is set on the process span as
//! `job.logs.dropped` (only when some were).
//!
//! # A failed attempt's error
//! [`set_failure_log`] registers a [`FailureLog`], called once for every
//! attempt that finishes with an error record (failed or panicked), inside
//! the job's context, with whether the classifier reports it as an error
//! event. The [`ExceptionEvents`] given with it decide whether the
//! `exception` span event is still added to the process span.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

use opentelemetry::{Context, KeyValue};

use crate::error::ErrorRecord;
use crate::job::JobMeta;
use crate::kinds::KindNames;
use crate::semconv;

static SCOPE_ON: AtomicBool = AtomicBool::new(false);
static FAILURE_LOG: RwLock<Option<FailureLogEntry>> = RwLock::new(None);

/// Whether [`JobLogScope`]s are put in job contexts. Off until
/// [`set_scope`] turns it on.
pub fn scope_enabled() -> bool {
    SCOPE_ON.load(Ordering::Relaxed)
}

/// Turns the [`JobLogScope`] of every job started from now on, on or off.
/// Off by default; `jobsight-otel` turns it on when it exports logs.
pub fn set_scope(on: bool) {
    SCOPE_ON.store(on, Ordering::Relaxed);
}

/// The identity of the running job, in its OpenTelemetry context, for log
/// processors; and the count of its log records, for a per-job cap.
#[derive(Debug)]
pub struct JobLogScope {
    system: &'static str,
    queue: &'static str,
    name: &'static str,
    id: Option<Arc<str>>,
    attempt: Option<u32>,
    /// Records offered so far (admitted or not).
    offered: AtomicU32,
    /// Records refused by the cap.
    refused: AtomicU32,
}

impl JobLogScope {
    pub(crate) fn new(names: KindNames, meta: &JobMeta) -> Self {
        JobLogScope {
            system: names.system,
            queue: names.queue,
            name: names.name,
            id: meta.id_arc().cloned(),
            attempt: meta.attempt(),
            offered: AtomicU32::new(0),
            refused: AtomicU32::new(0),
        }
    }

    /// Runs `f` with the scope of the job whose context is current, if any.
    pub fn map_current<R>(f: impl FnOnce(Option<&JobLogScope>) -> R) -> R {
        Context::map_current(|cx| f(cx.get::<JobLogScope>()))
    }

    /// The scope in `cx`, if any.
    pub fn from_context(cx: &Context) -> Option<&JobLogScope> {
        cx.get::<JobLogScope>()
    }

    /// The runner (`messaging.system`).
    pub fn system(&self) -> &'static str {
        self.system
    }

    /// The queue (`messaging.destination.name`).
    pub fn queue(&self) -> &'static str {
        self.queue
    }

    /// The job's name (`job.name`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The job's id (`messaging.message.id`), when the runner knows it.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The attempt (`job.attempt`), when the runner knows it.
    pub fn attempt(&self) -> Option<u32> {
        self.attempt
    }

    /// `messaging.system`, `messaging.destination.name`, `job.name`, and
    /// `messaging.message.id` and `job.attempt` when known.
    pub fn attributes(&self) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(5);
        attributes.push(KeyValue::new(semconv::MESSAGING_SYSTEM, self.system));
        attributes.push(KeyValue::new(
            semconv::MESSAGING_DESTINATION_NAME,
            self.queue,
        ));
        attributes.push(KeyValue::new(semconv::JOB_NAME, self.name));
        if let Some(id) = &self.id {
            attributes.push(KeyValue::new(semconv::MESSAGING_MESSAGE_ID, id.clone()));
        }
        if let Some(attempt) = self.attempt {
            attributes.push(KeyValue::new(semconv::JOB_ATTEMPT, i64::from(attempt)));
        }
        attributes
    }

    /// Counts one record of this job; true while fewer than `cap` came
    /// before it, false (and counted as refused) after.
    pub fn admit(&self, cap: u32) -> bool {
        if self.offered.fetch_add(1, Ordering::Relaxed) < cap {
            true
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Records refused by [`admit`](Self::admit) so far.
    pub fn refused(&self) -> u32 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Where a failed attempt's exception is recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExceptionEvents {
    /// An `exception` event on the process span only (the default, what
    /// trace backends show today).
    #[default]
    SpanEvent,
    /// An `exception` log record only (the direction the semantic
    /// conventions are taking); the span keeps its error status.
    LogRecord,
    /// Both.
    Both,
}

impl ExceptionEvents {
    /// Whether the span event is added.
    pub fn span_event(self) -> bool {
        matches!(self, ExceptionEvents::SpanEvent | ExceptionEvents::Both)
    }

    /// Whether the log record is emitted.
    pub fn log_record(self) -> bool {
        matches!(self, ExceptionEvents::LogRecord | ExceptionEvents::Both)
    }
}

/// Told about every attempt that finishes with an error record. Runs on
/// the job's thread, inside the job's context: keep it short, never block.
pub trait FailureLog: Send + Sync {
    /// `error` ended the attempt of `meta`; `failure` says whether the
    /// classifier makes it an error event and whether an `exception` log
    /// record is asked for.
    fn failed(&self, cx: &Context, meta: &JobMeta, error: &ErrorRecord, failure: Failure);
}

/// How a failure passed to [`FailureLog::failed`] is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Failure {
    /// The classifier makes it an error event: a final failure or a panic,
    /// not a retry that may still succeed.
    pub reported: bool,
    /// An `exception` log record is asked for: reported, and
    /// [`ExceptionEvents::log_record`].
    pub exception_record: bool,
}

#[derive(Clone)]
struct FailureLogEntry {
    sink: Arc<dyn FailureLog>,
    events: ExceptionEvents,
}

/// Registers `sink` (replacing any earlier one) with where exceptions go;
/// `None` unregisters it, and exceptions go back to span events only.
pub fn set_failure_log(sink: Option<Arc<dyn FailureLog>>, events: ExceptionEvents) {
    let mut slot = FAILURE_LOG
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *slot = sink.map(|sink| FailureLogEntry { sink, events });
}

/// Where exceptions go now: [`ExceptionEvents::SpanEvent`] unless a sink
/// asked for more.
pub(crate) fn exception_events() -> ExceptionEvents {
    FAILURE_LOG
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .as_ref()
        .map_or(ExceptionEvents::SpanEvent, |entry| entry.events)
}

/// Tells the registered sink, if any, about a failed attempt.
pub(crate) fn failed(cx: &Context, meta: &JobMeta, error: &ErrorRecord, reported: bool) {
    let entry = FAILURE_LOG
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    if let Some(entry) = entry {
        let failure = Failure {
            reported,
            exception_record: reported && entry.events.log_record(),
        };
        entry.sink.failed(cx, meta, error, failure);
    }
}

/// The `job.logs.dropped` value for the scope in `cx`, when records were
/// refused.
pub(crate) fn refused_attribute(cx: &Context) -> Option<KeyValue> {
    let refused = cx.get::<JobLogScope>()?.refused();
    (refused > 0).then(|| KeyValue::new(semconv::JOB_LOGS_DROPPED, i64::from(refused)))
}
