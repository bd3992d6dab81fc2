//! What a job is: [`JobMeta`], the facts a runner knows about one attempt of a job.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::Context;
use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::trace::SpanContext;

use crate::args::CapturedArgs;
use crate::propagation::{Propagated, PropagationProblem};

/// The facts a runner knows about one attempt of a job.
///
/// Only the system and the queue are required; every other field is optional
/// and left out of the telemetry when unknown (absent rather than wrong).
/// Build one with [`JobMeta::builder`].
///
/// ```
/// use jobsight_core::JobMeta;
/// let meta = JobMeta::builder("my-runner", "emails")
///     .name("send_welcome_email")
///     .id("42")
///     .attempt(1)
///     .max_attempts(3)
///     .build();
/// assert_eq!(meta.queue(), "emails");
/// assert_eq!(meta.name(), "send_welcome_email");
/// ```
#[derive(Debug, Clone)]
pub struct JobMeta {
    system: Cow<'static, str>,
    queue: Arc<str>,
    name: Option<Cow<'static, str>>,
    /// Shared, so that the span attribute is a reference count, not a copy.
    id: Option<Arc<str>>,
    attempt: Option<u32>,
    max_attempts: Option<u32>,
    enqueued_at: Option<SystemTime>,
    scheduled_at: Option<SystemTime>,
    priority: Option<i64>,
    consumer: Option<Arc<str>>,
    creation_context: Option<SpanContext>,
    /// A context holding only the producer's baggage.
    creation_baggage: Option<Context>,
    propagation_problem: Option<PropagationProblem>,
    args: Option<CapturedArgs>,
    metadata: Option<Arc<[(String, String)]>>,
}

impl JobMeta {
    /// Starts a builder for a job of `system` (the runner: `apalis`, …) on `queue`.
    #[inline]
    pub fn builder(
        system: impl Into<Cow<'static, str>>,
        queue: impl Into<Arc<str>>,
    ) -> JobMetaBuilder {
        JobMetaBuilder {
            meta: JobMeta {
                system: system.into(),
                queue: queue.into(),
                name: None,
                id: None,
                attempt: None,
                max_attempts: None,
                enqueued_at: None,
                scheduled_at: None,
                priority: None,
                consumer: None,
                creation_context: None,
                creation_baggage: None,
                propagation_problem: None,
                args: None,
                metadata: None,
            },
        }
    }

    /// The runner (`messaging.system`).
    pub fn system(&self) -> &str {
        &self.system
    }

    /// The queue (`messaging.destination.name`).
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The queue as a shared string, cheap to clone.
    pub fn queue_arc(&self) -> &Arc<str> {
        &self.queue
    }

    /// The job's kind (`job.name`). Defaults to the queue's name when none was given.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.queue)
    }

    /// The job's id (`messaging.message.id`), when the runner has one.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The job's id as a shared string, cheap to clone.
    pub fn id_arc(&self) -> Option<&Arc<str>> {
        self.id.as_ref()
    }

    /// Which attempt this is, counting from 1, when known.
    pub fn attempt(&self) -> Option<u32> {
        self.attempt
    }

    /// How many attempts the runner allows in all, when known.
    pub fn max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    /// When the job was enqueued, when known.
    pub fn enqueued_at(&self) -> Option<SystemTime> {
        self.enqueued_at
    }

    /// When the job was due to run (its run-at), when known.
    pub fn scheduled_at(&self) -> Option<SystemTime> {
        self.scheduled_at
    }

    /// The runner's priority value, when it has one.
    pub fn priority(&self) -> Option<i64> {
        self.priority
    }

    /// The worker (consumer group) running the job, when known.
    pub fn consumer(&self) -> Option<&Arc<str>> {
        self.consumer.as_ref()
    }

    /// The trace context of the code that created the job, when it was propagated.
    pub fn creation_context(&self) -> Option<&SpanContext> {
        self.creation_context.as_ref()
    }

    /// The producer's baggage, when it was propagated.
    pub fn creation_baggage(&self) -> Option<&Baggage> {
        self.creation_baggage.as_ref().map(BaggageExt::baggage)
    }

    /// A context holding only the producer's baggage.
    pub(crate) fn creation_baggage_context(&self) -> Option<&Context> {
        self.creation_baggage.as_ref()
    }

    /// What was wrong with the propagated context, if anything (counted by
    /// the transaction as `jobsight.propagation.invalid`).
    pub fn propagation_problem(&self) -> Option<PropagationProblem> {
        self.propagation_problem
    }

    /// The job's arguments, when they were captured (see [`crate::args`]):
    /// the `job.args` attribute.
    pub fn args(&self) -> Option<&CapturedArgs> {
        self.args.as_ref()
    }

    /// The runner's metadata for the job (masked), when captured; given to
    /// observers only, never put on spans or metrics.
    pub fn metadata(&self) -> &[(String, String)] {
        self.metadata.as_deref().unwrap_or_default()
    }

    /// Sets or clears the captured arguments.
    pub fn set_args(&mut self, args: Option<CapturedArgs>) {
        self.args = args;
    }

    /// Sets the metadata given to observers.
    pub fn set_metadata(&mut self, metadata: Vec<(String, String)>) {
        self.metadata = (!metadata.is_empty()).then(|| Arc::from(metadata));
    }

    /// Whether the runner will try again after this attempt fails, as far as
    /// the metadata tells: `Some(true)` when the attempt is below the maximum,
    /// `Some(false)` when it is the last, `None` when either is unknown.
    pub fn has_attempts_left(&self) -> Option<bool> {
        match (self.attempt, self.max_attempts) {
            (Some(attempt), Some(max)) => Some(attempt < max),
            _ => None,
        }
    }

    /// Seconds the job waited between becoming due and `started`.
    ///
    /// Due means the later of the enqueue time and the run-at time: a job
    /// scheduled for tomorrow has not been waiting since it was enqueued.
    /// `None` when neither time is known, or when the due time lies more than
    /// a second after `started` (clock skew or a wrong field: absent rather
    /// than wrong). A due time up to one second in the future counts as zero.
    pub fn queue_time_at(&self, started: SystemTime) -> Option<f64> {
        let due = match (self.enqueued_at, self.scheduled_at) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return None,
        };
        match started.duration_since(due) {
            Ok(waited) => Some(waited.as_secs_f64()),
            Err(ahead) if ahead.duration().as_secs_f64() <= 1.0 => Some(0.0),
            Err(_) => None,
        }
    }
}

/// The longest job id (`messaging.message.id`) recorded, in bytes; longer
/// ids (a backend that lets producers choose them) are cut.
pub const MAX_ID_LEN: usize = 256;

/// `id` cut to [`MAX_ID_LEN`] bytes (at a character boundary).
#[cold]
#[inline(never)]
fn cut_id(id: &str) -> Arc<str> {
    Arc::from(crate::error::truncate(id, MAX_ID_LEN))
}

/// Builder for [`JobMeta`]. Every setter is optional.
#[derive(Debug, Clone)]
#[must_use]
pub struct JobMetaBuilder {
    meta: JobMeta,
}

impl JobMetaBuilder {
    /// The job's kind (`job.name`). Defaults to the queue's name.
    #[inline]
    pub fn name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.meta.name = Some(name.into());
        self
    }

    /// The job's id (`messaging.message.id`), cut to [`MAX_ID_LEN`] bytes.
    /// Defaults to none.
    #[inline]
    pub fn id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.meta.id = Some(id.into());
        self
    }

    /// Which attempt this is, counting from 1. Defaults to unknown.
    #[inline]
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.meta.attempt = Some(attempt);
        self
    }

    /// How many attempts the runner allows in all. Defaults to unknown.
    #[inline]
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.meta.max_attempts = Some(max_attempts);
        self
    }

    /// When the job was enqueued. Defaults to unknown.
    #[inline]
    pub fn enqueued_at(mut self, at: SystemTime) -> Self {
        self.meta.enqueued_at = Some(at);
        self
    }

    /// When the job was due to run (its run-at). Defaults to unknown.
    #[inline]
    pub fn scheduled_at(mut self, at: SystemTime) -> Self {
        self.meta.scheduled_at = Some(at);
        self
    }

    /// The runner's priority value. Defaults to none.
    #[inline]
    pub fn priority(mut self, priority: i64) -> Self {
        self.meta.priority = Some(priority);
        self
    }

    /// The worker or consumer group running the job
    /// (`messaging.consumer.group.name`). Defaults to none.
    #[inline]
    pub fn consumer(mut self, consumer: impl Into<Arc<str>>) -> Self {
        self.meta.consumer = Some(consumer.into());
        self
    }

    /// The trace context of the code that created the job (see
    /// [`crate::propagation`]). Defaults to none: the job starts a new trace.
    #[inline]
    pub fn creation_context(mut self, cx: SpanContext) -> Self {
        if cx.is_valid() {
            self.meta.creation_context = Some(cx);
        }
        self
    }

    /// Everything a runner extracted from the job's carrier with
    /// [`crate::propagation::extract_propagated`]: the creation context, the
    /// producer's baggage and any problem with them. Defaults to nothing.
    #[inline]
    pub fn propagated(mut self, propagated: Propagated) -> Self {
        let (span_context, baggage, problem) = propagated.into_parts();
        self.meta.creation_context = span_context;
        self.meta.creation_baggage = baggage;
        self.meta.propagation_problem = problem;
        self
    }

    /// The job's captured arguments (see [`crate::args::ArgsPolicy::capture`]).
    /// Defaults to none.
    #[inline]
    pub fn args(mut self, args: CapturedArgs) -> Self {
        self.meta.args = Some(args);
        self
    }

    /// The runner's metadata for the job, for observers (mask it first with
    /// [`crate::args::ArgsPolicy::mask_pairs`]). Defaults to none.
    #[inline]
    pub fn metadata(mut self, metadata: Vec<(String, String)>) -> Self {
        self.meta.set_metadata(metadata);
        self
    }

    /// Like the setters above, for values that may be missing.
    #[inline]
    pub fn maybe_attempt(mut self, attempt: Option<u32>) -> Self {
        self.meta.attempt = attempt;
        self
    }

    /// Sets the maximum number of attempts when known.
    #[inline]
    pub fn maybe_max_attempts(mut self, max_attempts: Option<u32>) -> Self {
        self.meta.max_attempts = max_attempts;
        self
    }

    /// Sets the run-at time when known.
    #[inline]
    pub fn maybe_scheduled_at(mut self, at: Option<SystemTime>) -> Self {
        self.meta.scheduled_at = at;
        self
    }

    /// Sets the enqueue time when known.
    #[inline]
    pub fn maybe_enqueued_at(mut self, at: Option<SystemTime>) -> Self {
        self.meta.enqueued_at = at;
        self
    }

    /// Sets the priority when known.
    #[inline]
    pub fn maybe_priority(mut self, priority: Option<i64>) -> Self {
        self.meta.priority = priority;
        self
    }

    /// Sets the job's id when known (cut to [`MAX_ID_LEN`] bytes).
    #[inline]
    pub fn maybe_id(mut self, id: Option<impl Into<Arc<str>>>) -> Self {
        self.meta.id = id.map(Into::into);
        self
    }

    /// Sets the consumer when known.
    #[inline]
    pub fn maybe_consumer(mut self, consumer: Option<impl Into<Arc<str>>>) -> Self {
        self.meta.consumer = consumer.map(Into::into);
        self
    }

    /// Finishes the builder.
    #[inline]
    pub fn build(mut self) -> JobMeta {
        // The id is cut here rather than in the setters, so that a chain of
        // setters stays free of calls and writes the fields in place.
        if let Some(id) = &self.meta.id
            && id.len() > MAX_ID_LEN
        {
            self.meta.id = Some(cut_id(id));
        }
        self.meta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn long_ids_are_cut_on_a_char_boundary() {
        let id = format!("{}€", "i".repeat(MAX_ID_LEN - 2));
        let meta = JobMeta::builder("t", "q").id(id).build();
        assert_eq!(meta.id(), Some("i".repeat(MAX_ID_LEN - 2).as_str()));
        let meta = JobMeta::builder("t", "q").id("x".repeat(1 << 20)).build();
        assert_eq!(meta.id().map(str::len), Some(MAX_ID_LEN));
    }

    #[test]
    fn name_defaults_to_queue() {
        let meta = JobMeta::builder("t", "emails").build();
        assert_eq!(meta.name(), "emails");
        let meta = JobMeta::builder("t", "emails").name("welcome").build();
        assert_eq!(meta.name(), "welcome");
    }

    #[test]
    fn queue_time_uses_the_later_of_enqueue_and_run_at() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let meta = JobMeta::builder("t", "q")
            .enqueued_at(t0)
            .scheduled_at(t0 + Duration::from_secs(60))
            .build();
        let waited = meta.queue_time_at(t0 + Duration::from_secs(65)).unwrap();
        assert!((waited - 5.0).abs() < 1e-9, "{waited}");
    }

    #[test]
    fn queue_time_is_absent_when_unknown_or_far_in_the_future() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(JobMeta::builder("t", "q").build().queue_time_at(t0), None);
        let meta = JobMeta::builder("t", "q")
            .scheduled_at(t0 + Duration::from_secs(30))
            .build();
        assert_eq!(meta.queue_time_at(t0), None);
        let meta = JobMeta::builder("t", "q")
            .scheduled_at(t0 + Duration::from_millis(200))
            .build();
        assert_eq!(meta.queue_time_at(t0), Some(0.0));
    }

    #[test]
    fn attempts_left() {
        let m = JobMeta::builder("t", "q")
            .attempt(1)
            .max_attempts(3)
            .build();
        assert_eq!(m.has_attempts_left(), Some(true));
        let m = JobMeta::builder("t", "q")
            .attempt(3)
            .max_attempts(3)
            .build();
        assert_eq!(m.has_attempts_left(), Some(false));
        let m = JobMeta::builder("t", "q").attempt(3).build();
        assert_eq!(m.has_attempts_left(), None);
    }
}
