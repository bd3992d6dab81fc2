//! [`Transaction`]: one attempt of a job, from start to finish, as a span and
//! a set of metric points.
//!
//! # When things happen
//! - [`JobMonitor::start`] opens the CONSUMER span `process {queue}` with
//!   every attribute known at start (so samplers see them), adds 1 to
//!   `job.active` and records `job.queue_time` when the due time is known;
//!   an attempt after the first adds 1 to `job.retries`, and an attempt
//!   recorded under `_other` (the kind limit was reached) adds 1 to
//!   `jobsight.cardinality.overflow`.
//! - The job runs. Code that runs inside [`Transaction::context`] (attached
//!   by the runner around each poll) creates child spans of the process span.
//! - A finishing call ([`succeed`](Transaction::succeed),
//!   [`fail`](Transaction::fail), [`panicked`](Transaction::panicked),
//!   [`finish`](Transaction::finish)) sets `job.outcome`, `error.type`, the
//!   status and the `exception` event as the classifier decides, ends the
//!   span, and records `messaging.process.duration`,
//!   `messaging.client.consumed.messages` and `job.outcomes`.
//! - A transaction **dropped** before any of these finishes as
//!   [`Outcome::Abandoned`]: status Error, `error.type` = `abandoned`. That
//!   is what a job cut off by a timeout or by shutdown looks like.
//!
//! # What a retry looks like
//! Each attempt is a transaction and a span of its own with its
//! `job.attempt`. An attempt that fails while attempts are left finishes
//! with `job.outcome` = `retried` and `error.type` set, but no Error status
//! and no exception event (unless the classifier reports retries); the
//! attempt that finally fails is an error event.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use opentelemetry::global::BoxedSpan;
use opentelemetry::trace::{
    Link, Span as _, SpanBuilder, SpanKind, Status, TraceContextExt, Tracer,
};
use opentelemetry::{Context, ContextGuard, KeyValue};

use crate::checkin::{Check, CheckinRun, CheckinStatus, Checkins};
use crate::error::ErrorRecord;
use crate::job::JobMeta;
use crate::job_logs::{self, JobLogScope};
use crate::kinds::JobKind;
use crate::monitor::JobMonitor;
use crate::observer::EventKind;
use crate::observer::attempt;
use crate::outcome::{ErrorClass, Outcome};
use crate::progress::{self, Progress};
use crate::propagation;
use crate::run_state::{self, RunState};
use crate::semconv;

/// Status message of an abandoned job.
const ABANDONED_MESSAGE: &str =
    "the job was dropped before it finished (cancelled, timed out or shut down)";

impl JobMonitor {
    /// Starts the transaction of one job attempt: opens the `process {queue}`
    /// span, counts the job as active and records its queue time.
    pub fn start(&self, meta: JobMeta) -> Transaction {
        let kind = self.kind(meta.system(), meta.queue_arc(), meta.name());
        Transaction::start(self, kind, meta)
    }

    /// Starts a transaction with a [`JobKind`] the caller looked up before
    /// (with [`JobMonitor::kind`]) and kept: skips the shared lookup on the
    /// job's path. `kind` must have been looked up for the same system,
    /// queue and name as `meta`.
    pub fn start_with_kind(&self, kind: Arc<JobKind>, meta: JobMeta) -> Transaction {
        Transaction::start(self, kind, meta)
    }
}

/// One attempt of a job, open until it is finished or dropped.
///
/// ```
/// use jobsight_core::{JobMeta, JobMonitor};
/// let monitor = JobMonitor::new();
/// let meta = JobMeta::builder("my-runner", "emails").name("welcome").attempt(1).build();
/// let tx = monitor.start(meta);
/// let result: Result<(), std::io::Error> = Ok(()); // run the job here
/// match result {
///     Ok(()) => tx.succeed(),
///     Err(e) => { tx.fail(&e); }
/// }
/// ```
#[must_use = "a transaction dropped without finishing is recorded as abandoned"]
pub struct Transaction {
    /// Boxed: the transaction travels inside the runner's future, which is
    /// moved several times on the way to the executor; eight bytes move
    /// cheaper than the state's five hundred.
    s: Box<State>,
}

/// What a [`Transaction`] holds.
struct State {
    monitor: JobMonitor,
    kind: Arc<JobKind>,
    meta: JobMeta,
    cx: Context,
    started: Instant,
    /// Wall-clock time at start: the span's start time (`UNIX_EPOCH` when
    /// nothing needed it, see `start`).
    started_at: SystemTime,
    /// Whether `cx` carries something of the transaction's own (its span,
    /// the producer's baggage or parent, the progress state).
    own_context: bool,
    /// Whether the process span records (sampled in).
    recording: bool,
    error: Option<ErrorRecord>,
    finished: bool,
    checkin: Option<CheckinRun>,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("meta", &self.s.meta)
            .field("finished", &self.s.finished)
            .finish_non_exhaustive()
    }
}

impl Transaction {
    pub(crate) fn start(monitor: &JobMonitor, kind: Arc<JobKind>, meta: JobMeta) -> Self {
        let instruments = monitor.instruments();
        // The wall clock (a clock read costs 30–40 ns here) only when
        // something uses it: the span's start, the queue time, the run state.
        let now = if monitor.inner.traces
            || meta.enqueued_at().is_some()
            || meta.scheduled_at().is_some()
            || run_state::wanted(monitor, &meta)
        {
            SystemTime::now()
        } else {
            UNIX_EPOCH
        };
        let queue_time = meta.queue_time_at(now);

        let (parent, link, from_producer) = propagation::parent_for(
            monitor.propagation_for(meta.queue(), meta.name()),
            meta.creation_context(),
            meta.creation_baggage_context(),
        );
        if let Some(problem) = meta.propagation_problem() {
            monitor.count_invalid_context(&kind, problem);
        }
        // Whether the context differs from the one current now in a way the
        // job's code must see (see `Transaction::attach`).
        let mut own_context = monitor.inner.traces || from_producer;
        let (cx, recording) = if monitor.inner.traces {
            // The span starts at `now` and ends at `now` + the measured
            // duration (see `complete_as`): the SDK reads no clock of its
            // own, and the span lasts exactly what
            // `messaging.process.duration` records.
            let mut builder = SpanBuilder::from_name(kind.span_name.clone())
                .with_kind(SpanKind::Consumer)
                .with_start_time(now)
                .with_attributes(start_attributes(&kind, &meta, queue_time));
            if let Some(creation) = link {
                builder = builder.with_links(vec![Link::with_context(creation)]);
            }
            let span = instruments.tracer.build_with_context(builder, &parent);
            let recording = span.is_recording();
            (with_span(&parent, span, recording), recording)
        } else {
            (without_span(parent), false)
        };
        let started = Instant::now();
        let mut cx = match run_state::begin(monitor, &kind, &meta, &cx, started, now) {
            Some(with_run) => {
                own_context = true;
                if monitor.observers().is_listening()
                    && let Some(run) = with_run.get::<RunState>()
                {
                    attempt::notify(run, EventKind::Started);
                }
                with_run
            }
            None => cx,
        };
        if job_logs::scope_enabled() {
            cx = cx.with_value(JobLogScope::new(kind.names, &meta));
            own_context = true;
        }

        kind.metrics.active(instruments, &kind.base, 1);
        if meta.attempt().is_some_and(|attempt| attempt > 1) {
            instruments.retries.add(1, &kind.base);
        }
        if kind.overflow {
            instruments.overflow.add(1, &[]);
        }
        if let Some(waited) = queue_time {
            kind.metrics.queue_time(instruments, &kind.base, waited);
        }

        Self {
            s: Box::new(State {
                monitor: monitor.clone(),
                kind,
                meta,
                cx,
                started,
                started_at: now,
                own_context,
                recording,
                error: None,
                finished: false,
                checkin: None,
            }),
        }
    }

    /// The context holding the process span. Attach it while the job's code
    /// runs (`cx.attach()`, or `FutureExt::with_context` for futures) so the
    /// spans that code creates are children of the process span.
    pub fn context(&self) -> &Context {
        &self.s.cx
    }

    /// Makes [`Transaction::context`] current until the guard is dropped,
    /// when the job's code needs it: always when the monitor records spans
    /// (the process span is then the parent of the job's spans), and with
    /// [`traces(false)`](crate::JobMonitorBuilder::traces) only when the
    /// context carries the producer's baggage or parent, or the job's
    /// progress state. Otherwise it returns `None` and leaves the current
    /// context alone — the job sees what it would see without the monitor —
    /// at no cost. Runners attach it around each poll of the job.
    #[must_use = "the context is current only while the guard lives"]
    pub fn attach(&self) -> Option<ContextGuard> {
        self.s.own_context.then(|| self.s.cx.clone().attach())
    }

    /// The job this transaction records.
    pub fn meta(&self) -> &JobMeta {
        &self.s.meta
    }

    /// The classifier of the monitor that started this transaction.
    pub fn classifier(&self) -> &dyn crate::outcome::Classify {
        self.s.monitor.classifier()
    }

    /// Time since the transaction started.
    pub fn elapsed(&self) -> std::time::Duration {
        self.s.started.elapsed()
    }

    /// Adds a span event to the process span (cheap when the span is not
    /// sampled).
    pub fn event(&self, name: impl Into<Cow<'static, str>>, attributes: Vec<KeyValue>) {
        self.s.cx.span().add_event(name, attributes);
    }

    /// Makes this attempt a check-in run of `check` (from
    /// [`Checkins::find`]): sends `in_progress` to the registry's sinks and
    /// adds a `job.checkin` event to the process span now, and `ok` or
    /// `error` when the transaction finishes (see [`crate::checkin`]).
    /// A second call is ignored.
    pub fn checkin(&mut self, checkins: &Checkins, check: &Arc<Check>) {
        if self.s.checkin.is_some() || self.s.finished {
            return;
        }
        let meter = &self.s.monitor.instruments().meter;
        let run = checkins.start_run_metered(check, Some(meter));
        self.s.cx.span().add_event(
            semconv::CHECKIN_EVENT,
            run.span_event_attributes(CheckinStatus::InProgress),
        );
        self.s.checkin = Some(run);
    }

    /// The job's [progress] handle; `None` when the monitor
    /// was built with progress off and no observer.
    pub fn progress(&self) -> Option<Progress> {
        Progress::from_context(&self.s.cx)
    }

    /// Records that the runner paused the job: a `job.paused` span event
    /// and a `Paused` event for observers.
    pub fn paused(&self) {
        self.lifecycle_event(semconv::JOB_PAUSED_EVENT, EventKind::Paused);
    }

    /// Records that the runner resumed the job: a `job.resumed` span event
    /// and a `Resumed` event for observers.
    pub fn resumed(&self) {
        self.lifecycle_event(semconv::JOB_RESUMED_EVENT, EventKind::Resumed);
    }

    fn lifecycle_event(&self, span_event: &'static str, kind: EventKind) {
        self.s.cx.span().add_event(span_event, Vec::new());
        if let Some(run) = self.s.cx.get::<RunState>() {
            attempt::notify(run, kind);
        }
    }

    /// Finishes the attempt as cancelled by the runner: recorded like a
    /// dropped transaction (`abandoned`), but observers get `Cancelled`.
    pub fn cancelled(mut self) {
        self.complete_as(Outcome::Abandoned, true, EventKind::Cancelled);
    }

    /// Remembers `error` as the error the job failed with; used by
    /// [`finish`](Self::finish) with a `Failed` outcome.
    pub fn record_error(&mut self, error: ErrorRecord) {
        self.s.error = Some(error);
    }

    /// Finishes the attempt as succeeded.
    pub fn succeed(mut self) {
        self.complete(Outcome::Succeeded, false);
    }

    /// Finishes the attempt as failed with `error`, classified by the
    /// monitor's classifier. Returns the outcome recorded.
    pub fn fail(self, error: &(dyn StdError + 'static)) -> Outcome {
        let class = self.s.monitor.classifier().classify(error, &self.s.meta);
        self.fail_with(ErrorRecord::from_error(error), class)
    }

    /// Finishes the attempt as failed with an error the runner has already
    /// recorded and classified (for runners that unwrap their own error
    /// types first). Returns the outcome recorded.
    pub fn fail_with(mut self, record: ErrorRecord, class: ErrorClass) -> Outcome {
        let report = self.s.monitor.classifier().report(class, &self.s.meta);
        let outcome = match class {
            ErrorClass::Ignore => Outcome::Ignored,
            ErrorClass::Retry => Outcome::Failed { retryable: true },
            ErrorClass::Fail => Outcome::Failed { retryable: false },
        };
        self.s.error = Some(record);
        self.complete(outcome, report);
        outcome
    }

    /// Finishes the attempt as panicked with the panic's message.
    pub fn panicked(mut self, message: &str) {
        self.s.error = Some(ErrorRecord::new(semconv::ERROR_TYPE_PANIC, message));
        self.complete(Outcome::Panicked, true);
    }

    /// Finishes the attempt with `outcome` as given, using the error recorded
    /// with [`record_error`](Self::record_error) for failures. Failed (final),
    /// panicked and abandoned outcomes are error events; the others are not.
    pub fn finish(mut self, outcome: Outcome) {
        self.complete(outcome, outcome.is_error());
    }

    fn complete(&mut self, outcome: Outcome, report: bool) {
        self.complete_as(outcome, report, EventKind::for_outcome(outcome));
    }

    fn complete_as(&mut self, outcome: Outcome, report: bool, event: EventKind) {
        if self.s.finished {
            return;
        }
        self.s.finished = true;
        let took = self.s.started.elapsed();
        let elapsed = took.as_secs_f64();
        let error_type: Option<Cow<'static, str>> = match outcome {
            Outcome::Succeeded | Outcome::Ignored => None,
            Outcome::Failed { .. } => Some(
                self.s
                    .error
                    .as_ref()
                    .map(|e| e.error_type_cow().clone())
                    .unwrap_or(Cow::Borrowed(semconv::ERROR_TYPE_OTHER)),
            ),
            Outcome::Panicked => Some(Cow::Borrowed(semconv::ERROR_TYPE_PANIC)),
            Outcome::Abandoned => Some(Cow::Borrowed(semconv::ERROR_TYPE_ABANDONED)),
        };

        let span = self.s.cx.span();
        // Known at start: asking the span again would take its mutex.
        if self.s.recording {
            span.set_attribute(KeyValue::new(semconv::JOB_OUTCOME, outcome.as_str()));
            if let Some(error_type) = &error_type {
                span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error_type.clone()));
            }
            if let Some(dropped) = job_logs::refused_attribute(&self.s.cx) {
                span.set_attribute(dropped);
            }
            if report {
                match (&self.s.error, outcome) {
                    (_, Outcome::Abandoned) => span.set_status(Status::error(ABANDONED_MESSAGE)),
                    (Some(record), _) => {
                        span.set_status(Status::error(record.message().to_owned()));
                        if job_logs::exception_events().span_event() {
                            let mut event = vec![
                                KeyValue::new(
                                    semconv::EXCEPTION_TYPE,
                                    record.error_type_cow().clone(),
                                ),
                                KeyValue::new(
                                    semconv::EXCEPTION_MESSAGE,
                                    record.message().to_owned(),
                                ),
                            ];
                            if let Some(trace) = record.stacktrace() {
                                event.push(KeyValue::new(
                                    semconv::EXCEPTION_STACKTRACE,
                                    trace.to_owned(),
                                ));
                            }
                            if let Some(run) = self.s.cx.get::<RunState>() {
                                progress::error_attributes(run, &mut event);
                            }
                            span.add_event(semconv::EXCEPTION_EVENT, event);
                        }
                    }
                    (None, _) => span.set_status(Status::error(outcome.as_str())),
                }
            }
        }
        if let (Some(record), Outcome::Failed { .. } | Outcome::Panicked) = (&self.s.error, outcome)
        {
            job_logs::failed(&self.s.cx, &self.s.meta, record, report);
        }
        if let Some(run) = self.s.checkin.take() {
            let (status, exit_status) = CheckinStatus::of_outcome(outcome);
            span.add_event(semconv::CHECKIN_EVENT, run.span_event_attributes(status));
            match (status, &self.s.error, outcome) {
                (CheckinStatus::Ok, _, _) => run.finish(status, exit_status),
                (_, _, Outcome::Abandoned) => {
                    run.finish_with_message(status, exit_status, ABANDONED_MESSAGE)
                }
                (_, Some(record), _) => run.finish_with_message(
                    status,
                    exit_status,
                    format!("{}: {}", record.error_type_cow(), record.message()),
                ),
                (_, None, _) => run.finish_with_message(status, exit_status, outcome.as_str()),
            }
        }
        if let Some(run) = self.s.cx.get::<RunState>() {
            progress::finish(run, &self.s.cx);
            attempt::finished(run, outcome, self.s.error.as_ref(), event);
        }
        if self.s.recording {
            span.end_with_timestamp(self.s.started_at + took);
        }

        let instruments = self.s.monitor.instruments();
        let kind = &self.s.kind;
        match error_type {
            None => kind.metrics.processed(instruments, &kind.base, elapsed),
            Some(error_type) => {
                let mut attrs = kind.names.base_attributes(1);
                attrs.push(KeyValue::new(semconv::ERROR_TYPE, error_type));
                instruments.duration.record(elapsed, &attrs);
                instruments.consumed.add(1, &attrs);
            }
        }
        let by_outcome = &kind.by_outcome[outcome.index()];
        kind.metrics.outcome(instruments, outcome, by_outcome);
        kind.metrics.active(instruments, &kind.base, -1);
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.s.finished {
            self.complete(Outcome::Abandoned, true);
        }
    }
}

/// `parent` with `span` as its active span. A span that does not record
/// (sampled out, or from a no-op tracer) only carries its span context: ending
/// or dropping it does nothing, and every call on it is a no-op, so the
/// context holds that span context alone (what children need to inherit the
/// sampling decision), without the two boxes and the mutex the API wraps a
/// live span in.
fn with_span(parent: &Context, span: BoxedSpan, recording: bool) -> Context {
    if recording {
        parent.with_span(span)
    } else {
        parent.with_remote_span_context(span.span_context().clone())
    }
}

/// The attributes the process span starts with (so samplers see them).
fn start_attributes(kind: &JobKind, meta: &JobMeta, queue_time: Option<f64>) -> Vec<KeyValue> {
    let mut attrs = kind.names.base_attributes(10);
    attrs.push(KeyValue::new(
        semconv::MESSAGING_OPERATION_NAME,
        semconv::OPERATION_PROCESS,
    ));
    attrs.push(KeyValue::new(
        semconv::MESSAGING_OPERATION_TYPE,
        semconv::OPERATION_PROCESS,
    ));
    if let Some(id) = meta.id_arc() {
        attrs.push(KeyValue::new(semconv::MESSAGING_MESSAGE_ID, id.clone()));
    }
    if let Some(consumer) = meta.consumer() {
        attrs.push(KeyValue::new(
            semconv::MESSAGING_CONSUMER_GROUP_NAME,
            consumer.clone(),
        ));
    }
    if let Some(attempt) = meta.attempt() {
        attrs.push(KeyValue::new(semconv::JOB_ATTEMPT, i64::from(attempt)));
    }
    if let Some(max) = meta.max_attempts() {
        attrs.push(KeyValue::new(semconv::JOB_MAX_ATTEMPTS, i64::from(max)));
    }
    if let Some(waited) = queue_time {
        attrs.push(KeyValue::new(semconv::JOB_QUEUE_TIME, waited));
    }
    if let Some(at) = meta.scheduled_at().and_then(unix_seconds) {
        attrs.push(KeyValue::new(semconv::JOB_SCHEDULED_AT, at));
    }
    if let Some(at) = meta.enqueued_at().and_then(unix_seconds) {
        attrs.push(KeyValue::new(semconv::JOB_ENQUEUED_AT, at));
    }
    if let Some(priority) = meta.priority() {
        attrs.push(KeyValue::new(semconv::JOB_PRIORITY, priority));
    }
    if let Some(args) = meta.args() {
        attrs.push(KeyValue::new(semconv::JOB_ARGS, args.as_arc().clone()));
    }
    attrs
}

/// `parent` for a monitor that records no spans: the job's own spans keep
/// the parent they would have without the monitor, and nothing the
/// transaction does to "its" span (attributes, events, end) can reach the
/// parent's span, which is not its own.
fn without_span(parent: Context) -> Context {
    if parent.has_active_span() {
        let span_context = parent.span().span_context().clone();
        parent.with_remote_span_context(span_context)
    } else {
        parent
    }
}

fn unix_seconds(at: SystemTime) -> Option<i64> {
    at.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::outcome::DefaultClassifier;
    use jobsight_testkit::MemoryTelemetry;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceFlags, TraceId, TraceState, TracerProvider as _,
    };
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
    use std::time::Duration;

    /// The test kit's in-memory providers (also used by `send`'s tests).
    pub(crate) struct Harness(pub(crate) MemoryTelemetry);

    impl Harness {
        pub(crate) fn new() -> Self {
            Self(MemoryTelemetry::new())
        }

        fn monitor(&self, classifier: DefaultClassifier) -> JobMonitor {
            JobMonitor::builder()
                .classifier(classifier)
                .tracer_provider(self.0.tracer_provider())
                .meter_provider(self.0.meter_provider())
                .build()
        }

        fn finished(&self) -> Vec<SpanData> {
            self.0.spans()
        }
    }

    fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a opentelemetry::Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    fn meta(attempt: u32, max: u32) -> JobMeta {
        let now = SystemTime::now();
        JobMeta::builder("test", "emails")
            .name("welcome")
            .id("job-7")
            .attempt(attempt)
            .max_attempts(max)
            .enqueued_at(now - Duration::from_secs(2))
            .build()
    }

    #[test]
    fn success_is_a_consumer_span_with_the_messaging_attributes() {
        let h = Harness::new();
        h.monitor(DefaultClassifier::new())
            .start(meta(1, 3))
            .succeed();
        let spans = h.finished();
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.name, "process emails");
        assert_eq!(s.span_kind, SpanKind::Consumer);
        assert_eq!(attr(s, "messaging.system").unwrap().as_str(), "test");
        assert_eq!(
            attr(s, "messaging.operation.name").unwrap().as_str(),
            "process"
        );
        assert_eq!(
            attr(s, "messaging.operation.type").unwrap().as_str(),
            "process"
        );
        assert_eq!(
            attr(s, "messaging.destination.name").unwrap().as_str(),
            "emails"
        );
        assert_eq!(attr(s, "messaging.message.id").unwrap().as_str(), "job-7");
        assert_eq!(attr(s, "job.name").unwrap().as_str(), "welcome");
        assert_eq!(attr(s, "job.attempt"), Some(&opentelemetry::Value::I64(1)));
        assert_eq!(
            attr(s, "job.max_attempts"),
            Some(&opentelemetry::Value::I64(3))
        );
        assert_eq!(attr(s, "job.outcome").unwrap().as_str(), "succeeded");
        match attr(s, "job.queue_time") {
            Some(opentelemetry::Value::F64(v)) => assert!((1.9..10.0).contains(v), "{v}"),
            other => panic!("queue time missing: {other:?}"),
        }
        assert_eq!(s.status, Status::Unset);
        assert!(attr(s, "error.type").is_none());
    }

    #[test]
    fn final_failure_is_an_error_event() {
        let h = Harness::new();
        let err = std::io::Error::other("smtp down");
        let outcome = h
            .monitor(DefaultClassifier::new())
            .start(meta(3, 3))
            .fail(&err);
        assert_eq!(outcome, Outcome::Failed { retryable: false });
        let s = &h.finished()[0];
        assert_eq!(s.status, Status::error("smtp down"));
        assert_eq!(attr(s, "error.type").unwrap().as_str(), "std::io::Error");
        assert_eq!(attr(s, "job.outcome").unwrap().as_str(), "failed");
        let ev = s
            .events
            .iter()
            .find(|e| e.name == "exception")
            .expect("exception event");
        let get = |k: &str| {
            ev.attributes
                .iter()
                .find(|kv| kv.key.as_str() == k)
                .map(|kv| kv.value.as_str().into_owned())
        };
        assert_eq!(get("exception.type").as_deref(), Some("std::io::Error"));
        assert_eq!(get("exception.message").as_deref(), Some("smtp down"));
    }

    #[test]
    fn retried_failure_is_visible_but_not_an_error_event() {
        let h = Harness::new();
        let err = std::io::Error::other("flaky");
        let outcome = h
            .monitor(DefaultClassifier::new())
            .start(meta(1, 3))
            .fail(&err);
        assert_eq!(outcome, Outcome::Failed { retryable: true });
        let s = &h.finished()[0];
        assert_eq!(s.status, Status::Unset);
        assert_eq!(attr(s, "job.outcome").unwrap().as_str(), "retried");
        assert_eq!(attr(s, "error.type").unwrap().as_str(), "std::io::Error");
        assert!(s.events.iter().all(|e| e.name != "exception"));
    }

    #[test]
    fn ignored_error_leaves_no_error_marks() {
        let h = Harness::new();
        let monitor = h.monitor(DefaultClassifier::new().ignore::<std::io::Error>());
        let outcome = monitor
            .start(meta(3, 3))
            .fail(&std::io::Error::other("gone"));
        assert_eq!(outcome, Outcome::Ignored);
        let s = &h.finished()[0];
        assert_eq!(s.status, Status::Unset);
        assert_eq!(attr(s, "job.outcome").unwrap().as_str(), "ignored");
        assert!(attr(s, "error.type").is_none());
    }

    #[test]
    fn dropped_transaction_is_abandoned() {
        let h = Harness::new();
        let tx = h.monitor(DefaultClassifier::new()).start(meta(1, 1));
        drop(tx);
        let s = &h.finished()[0];
        assert!(matches!(s.status, Status::Error { .. }));
        assert_eq!(attr(s, "error.type").unwrap().as_str(), "abandoned");
        assert_eq!(attr(s, "job.outcome").unwrap().as_str(), "abandoned");
    }

    #[test]
    fn checkin_events_pair_on_the_span_and_move_the_gauge() {
        use crate::checkin::{CheckinPolicy, Checkins};
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
        let h = Harness::new();
        let checkins = Checkins::new()
            .policy(CheckinPolicy::job("welcome"))
            .meter_provider(h.0.meter_provider());
        let check = checkins.find("emails", "welcome").unwrap();
        let monitor = h.monitor(DefaultClassifier::new());
        let mut tx = monitor.start(meta(1, 1));
        tx.checkin(&checkins, &check);
        tx.succeed();
        let mut tx = monitor.start(meta(1, 1));
        tx.checkin(&checkins, &check);
        tx.panicked("boom");
        let spans = h.finished();
        let events = |s: &SpanData| -> Vec<(String, String)> {
            s.events
                .iter()
                .filter(|e| e.name == "job.checkin")
                .map(|e| {
                    let get = |k: &str| {
                        e.attributes
                            .iter()
                            .find(|kv| kv.key.as_str() == k)
                            .map(|kv| kv.value.as_str().into_owned())
                            .unwrap()
                    };
                    (get("job.checkin.status"), get("job.checkin.run_id"))
                })
                .collect()
        };
        let ok = events(&spans[0]);
        assert_eq!(ok.len(), 2);
        assert_eq!((ok[0].0.as_str(), ok[1].0.as_str()), ("in_progress", "ok"));
        assert_eq!(ok[0].1, ok[1].1);
        let failed = events(&spans[1]);
        assert_eq!(failed[1].0, "error");
        assert_ne!(failed[0].1, ok[0].1);

        let exported = h.0.collect();
        let gauge = exported
            .iter()
            .flat_map(|rm| rm.scope_metrics())
            .flat_map(|sm| sm.metrics())
            .find(|m| m.name() == semconv::METRIC_CHECKIN_LAST_SUCCESS)
            .expect("last-success gauge");
        match gauge.data() {
            AggregatedMetrics::I64(MetricData::Gauge(g)) => {
                let p = g.data_points().next().unwrap();
                assert_eq!(p.value(), check.last_success().unwrap());
                assert!(
                    p.attributes()
                        .any(|kv| kv.key.as_str() == "job.name" && kv.value.as_str() == "welcome")
                );
            }
            _ => panic!("not an i64 gauge"),
        }
    }

    /// Drops `process …` spans; any other span follows its parent's
    /// decision and is sampled when it has none.
    #[derive(Debug, Clone)]
    struct DropProcessSpans;

    impl opentelemetry_sdk::trace::ShouldSample for DropProcessSpans {
        fn should_sample(
            &self,
            parent: Option<&Context>,
            _trace_id: TraceId,
            name: &str,
            _kind: &SpanKind,
            _attributes: &[KeyValue],
            _links: &[Link],
        ) -> opentelemetry_sdk::trace::SamplingResult {
            use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult};
            let parent = parent
                .map(|cx| cx.span().span_context().clone())
                .filter(SpanContext::is_valid);
            let sampled = match parent {
                _ if name.starts_with("process ") => false,
                Some(parent) => parent.is_sampled(),
                None => true,
            };
            SamplingResult {
                decision: if sampled {
                    SamplingDecision::RecordAndSample
                } else {
                    SamplingDecision::Drop
                },
                attributes: Vec::new(),
                trace_state: TraceState::default(),
            }
        }
    }

    #[test]
    fn a_sampled_out_process_span_passes_its_decision_to_the_jobs_spans() {
        let spans = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(DropProcessSpans)
            .with_simple_exporter(spans.clone())
            .build();
        let monitor = JobMonitor::builder().tracer_provider(&provider).build();
        let tx = monitor.start(meta(1, 1));
        let process = tx.context().span().span_context().clone();
        assert!(process.is_valid() && !process.is_sampled());
        assert!(!tx.context().span().is_recording());
        let tracer = provider.tracer("job-code");
        let child = tracer.start_with_context("child", tx.context());
        assert_eq!(child.span_context().trace_id(), process.trace_id());
        assert!(!child.is_recording());
        drop(child);
        tx.succeed();
        provider.force_flush().unwrap();
        assert!(spans.get_finished_spans().unwrap().is_empty());
    }

    #[test]
    fn without_traces_the_metrics_stay_and_the_callers_span_is_left_alone() {
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
        let h = Harness::new();
        let monitor = JobMonitor::builder()
            .traces(false)
            .tracer_provider(h.0.tracer_provider())
            .meter_provider(h.0.meter_provider())
            .build();
        let tracer = h.0.tracer_provider().tracer("caller");
        let caller = tracer.start("caller");
        let caller_cx = Context::current_with_span(caller);
        let tx = {
            let _attached = caller_cx.clone().attach();
            monitor.start(meta(1, 1))
        };
        let child = tracer.start_with_context("child", tx.context());
        drop(child);
        {
            // Nothing of the transaction's own to make current: the job's
            // code sees the context current where it runs, as without the
            // monitor.
            let _caller = caller_cx.clone().attach();
            let attached = tx.attach();
            assert!(attached.is_none());
            assert!(Context::current().span().is_recording());
        }
        tx.panicked("boom");
        caller_cx.span().end();
        let spans = h.finished();
        let names: Vec<_> = spans.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names, ["child", "caller"]);
        let (child, caller) = (&spans[0], &spans[1]);
        assert_eq!(child.parent_span_id, caller.span_context.span_id());
        assert!(caller.attributes.is_empty() && caller.events.is_empty());
        assert_eq!(caller.status, Status::Unset);

        let exported = h.0.collect();
        let consumed: u64 = exported
            .iter()
            .flat_map(|rm| rm.scope_metrics())
            .flat_map(|sm| sm.metrics())
            .filter(|m| m.name() == semconv::METRIC_CONSUMED_MESSAGES)
            .map(|m| match m.data() {
                AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                    sum.data_points().map(|p| p.value()).sum::<u64>()
                }
                _ => 0,
            })
            .sum();
        assert_eq!(consumed, 1);
    }

    #[test]
    fn panic_is_recorded_with_its_message() {
        let h = Harness::new();
        h.monitor(DefaultClassifier::new())
            .start(meta(1, 1))
            .panicked("index out of bounds");
        let s = &h.finished()[0];
        assert_eq!(s.status, Status::error("index out of bounds"));
        assert_eq!(attr(s, "error.type").unwrap().as_str(), "panic");
        assert_eq!(attr(s, "job.outcome").unwrap().as_str(), "panicked");
    }

    #[test]
    fn link_by_default_child_on_request() {
        let creation = SpanContext::new(
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
            SpanId::from_hex("b7ad6b7169203331").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let h = Harness::new();
        let m = JobMeta::builder("test", "q")
            .creation_context(creation.clone())
            .build();
        h.monitor(DefaultClassifier::new())
            .start(m.clone())
            .succeed();
        let child_monitor = JobMonitor::builder()
            .propagation(crate::Propagation::Child)
            .tracer_provider(h.0.tracer_provider())
            .meter_provider(h.0.meter_provider())
            .build();
        child_monitor.start(m).succeed();
        let spans = h.finished();
        let (linked, child) = (&spans[0], &spans[1]);
        assert_ne!(linked.span_context.trace_id(), creation.trace_id());
        assert_eq!(
            linked.links.links[0].span_context.span_id(),
            creation.span_id()
        );
        assert_eq!(child.span_context.trace_id(), creation.trace_id());
        assert_eq!(child.parent_span_id, creation.span_id());
    }

    #[test]
    fn metrics_carry_queue_and_error_type() {
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
        let h = Harness::new();
        let monitor = h.monitor(DefaultClassifier::new());
        monitor.start(meta(1, 1)).succeed();
        monitor.start(meta(1, 1)).fail(&std::io::Error::other("x"));
        let exported = h.0.collect();
        let mut saw_error_point = false;
        let mut saw_ok_point = false;
        for rm in &exported {
            for sm in rm.scope_metrics() {
                for m in sm.metrics() {
                    if m.name() != semconv::METRIC_PROCESS_DURATION {
                        continue;
                    }
                    if let AggregatedMetrics::F64(MetricData::Histogram(hist)) = m.data() {
                        for p in hist.data_points() {
                            let has = |k: &str| p.attributes().any(|kv| kv.key.as_str() == k);
                            assert!(has("messaging.destination.name") && has("job.name"));
                            if has("error.type") {
                                saw_error_point = true;
                            } else {
                                saw_ok_point = true;
                            }
                        }
                    }
                }
            }
        }
        assert!(saw_error_point && saw_ok_point);
    }
}
