//! [`JobMonitor`]: the shared, cheap-to-clone recorder, with its
//! configuration and builder. The methods that start recording live beside
//! what they start: [`JobMonitor::start`] in `transaction.rs`,
//! [`JobMonitor::start_send`] in `send.rs`.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use opentelemetry::KeyValue;
use opentelemetry::global::BoxedTracer;
use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry::trace::TracerProvider;

use crate::instruments::{Buckets, Instruments, scope};
use crate::kinds::{JobKind, KindRegistry};
use crate::observer::delivery::{Observer, ObserverOptions};
use crate::observer::handle::Observers;
use crate::outcome::{Classify, DefaultClassifier};
use crate::progress::running::RunningProgress;
use crate::progress::throttle::{ProgressSettings, ProgressThrottle};
use crate::propagation::{Propagation, PropagationProblem};
use crate::semconv;

/// Records job transactions: holds the tracer, the instruments, the
/// classifier and the per-kind attribute sets. Clone it freely; clones share
/// everything.
///
/// By default it records with the **global** tracer and meter providers,
/// fetched when the first job starts (so it may be built before
/// `jobsight_otel::init()` runs). Tests and applications with several
/// pipelines give providers with [`JobMonitorBuilder::tracer_provider`] and
/// [`JobMonitorBuilder::meter_provider`].
#[derive(Clone)]
pub struct JobMonitor {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) classifier: Arc<dyn Classify>,
    pub(crate) propagation: Propagation,
    propagation_overrides: PropagationOverrides,
    pub(crate) invalid_contexts: AtomicU64,
    given_tracer: std::sync::Mutex<Option<BoxedTracer>>,
    given_meter: Option<Meter>,
    instruments: OnceLock<Instruments>,
    pub(crate) kinds: Arc<KindRegistry>,
    buckets: Buckets,
    observers: Observers,
    pub(crate) progress: ProgressSettings,
    /// The running attempts that reported progress, for the gauge.
    pub(crate) progress_running: RunningProgress,
    /// Whether transactions open a process span (see
    /// [`JobMonitorBuilder::traces`]).
    pub(crate) traces: bool,
}

impl fmt::Debug for JobMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobMonitor")
            .field("propagation", &self.inner.propagation)
            .field("max_kinds", &self.inner.kinds.max())
            .field("observers", &self.inner.observers)
            .finish_non_exhaustive()
    }
}

impl Default for JobMonitor {
    fn default() -> Self {
        Self::new()
    }
}

impl JobMonitor {
    /// A monitor with every default (see [`JobMonitorBuilder`]).
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts a builder.
    pub fn builder() -> JobMonitorBuilder {
        JobMonitorBuilder::default()
    }

    /// The attribute sets of the job kind (system, queue, name), built once
    /// and then shared. Past the limit set with
    /// [`JobMonitorBuilder::max_kinds`], new names are folded into `_other`
    /// (and then new queues too) and counted in [`JobMonitor::overflowed`].
    pub fn kind(&self, system: &str, queue: &Arc<str>, name: &str) -> Arc<JobKind> {
        self.inner.kinds.get_or_insert(system, queue, name)
    }

    /// How many lookups of a new (queue, job name) pair were folded into
    /// `_other` because the limit of distinct kinds was reached, counted in
    /// this monitor's table (the process-wide one unless the monitor has a
    /// limit of its own). The exported counterpart is the
    /// `jobsight.cardinality.overflow` counter, which counts the job
    /// attempts recorded under `_other`.
    pub fn overflowed(&self) -> u64 {
        self.inner.kinds.overflowed()
    }

    /// The classifier this monitor uses.
    pub fn classifier(&self) -> &dyn Classify {
        &*self.inner.classifier
    }

    /// How the process span relates to the job's creation context, for jobs
    /// without an override (see [`JobMonitor::propagation_for`]).
    pub fn propagation(&self) -> Propagation {
        self.inner.propagation
    }

    /// How the process span of a job named `name` on `queue` relates to its
    /// creation context: the override for the job name, else the one for
    /// the queue, else [`JobMonitor::propagation`]. Without overrides this
    /// reads a field; with some it looks both names up (two small hash
    /// lookups per attempt). Job kinds are shared between monitors (see
    /// [`JobMonitorBuilder::max_kinds`]), so the mode is the monitor's, not
    /// the kind's.
    pub fn propagation_for(&self, queue: &str, name: &str) -> Propagation {
        let inner = &self.inner;
        if inner.propagation_overrides.is_empty() {
            return inner.propagation;
        }
        inner
            .propagation_overrides
            .resolve(queue, name)
            .unwrap_or(inner.propagation)
    }

    /// How many job attempts carried a propagated context that was dropped
    /// as too long or invalid (see [`crate::propagation`]).
    pub fn invalid_contexts(&self) -> u64 {
        self.inner.invalid_contexts.load(Ordering::Relaxed)
    }

    /// Counts one attempt whose propagated context was dropped.
    pub(crate) fn count_invalid_context(&self, kind: &JobKind, problem: PropagationProblem) {
        self.inner.invalid_contexts.fetch_add(1, Ordering::Relaxed);
        let mut attrs = kind.names.base_attributes(1);
        attrs.push(KeyValue::new(semconv::ERROR_TYPE, problem.as_str()));
        self.instruments().propagation_invalid.add(1, &attrs);
    }

    /// The [observers](crate::observer) of this monitor: tell them about
    /// an enqueued job or a check-in incident, flush them before the
    /// process exits, read their delivery counts.
    pub fn observers(&self) -> &Observers {
        &self.inner.observers
    }

    pub(crate) fn instruments(&self) -> &Instruments {
        self.inner.instruments.get_or_init(|| {
            let tracer = match self.inner.given_tracer.lock() {
                Ok(mut slot) => slot.take(),
                Err(poisoned) => poisoned.into_inner().take(),
            };
            Instruments::new(tracer, self.inner.given_meter.clone(), &self.inner.buckets)
        })
    }
}

static DEFAULT_MONITOR: OnceLock<JobMonitor> = OnceLock::new();

/// The process's default monitor: what every layer, producer and task
/// records through when it is given no monitor and no monitor setting
/// (jobsight-apalis's `MonitorLayer::new`, `SendLayer::new`, `TracedPush`,
/// [`task::run`](crate::task::run)). It is [`JobMonitor::new`] — global
/// providers, default classifier, no observers — unless
/// [`set_default_monitor`] gave another before its first use. Clones share
/// everything, so a worker and a producer in one process share its job
/// kinds and observers.
pub fn default_monitor() -> &'static JobMonitor {
    DEFAULT_MONITOR.get_or_init(JobMonitor::new)
}

/// Makes `monitor` the process's default (to give every layer and task
/// observers, say). Works once, before the default was first used;
/// otherwise returns `monitor` back.
pub fn set_default_monitor(monitor: JobMonitor) -> Result<(), JobMonitor> {
    DEFAULT_MONITOR.set(monitor)
}

/// Per job name and per queue propagation modes.
#[derive(Debug, Default)]
struct PropagationOverrides {
    by_name: HashMap<Box<str>, Propagation>,
    by_queue: HashMap<Box<str>, Propagation>,
}

impl PropagationOverrides {
    fn is_empty(&self) -> bool {
        self.by_name.is_empty() && self.by_queue.is_empty()
    }

    fn resolve(&self, queue: &str, name: &str) -> Option<Propagation> {
        self.by_name
            .get(name)
            .or_else(|| self.by_queue.get(queue))
            .copied()
    }
}

/// Builder for [`JobMonitor`].
#[derive(Default)]
#[must_use]
pub struct JobMonitorBuilder {
    classifier: Option<Arc<dyn Classify>>,
    propagation: Propagation,
    propagation_overrides: PropagationOverrides,
    tracer: Option<BoxedTracer>,
    meter: Option<Meter>,
    max_kinds: Option<usize>,
    buckets: Buckets,
    observers: Vec<(Box<dyn Observer>, ObserverOptions)>,
    progress: ProgressSettings,
    /// `None` means the default, `true`.
    traces: Option<bool>,
}

impl fmt::Debug for JobMonitorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobMonitorBuilder")
            .field("propagation", &self.propagation)
            .field("max_kinds", &self.max_kinds)
            .field("observers", &self.observers.len())
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl JobMonitorBuilder {
    /// The classifier that decides which errors are ignored, retried or
    /// final. Defaults to [`DefaultClassifier::new`].
    pub fn classifier(mut self, classifier: impl Classify) -> Self {
        self.classifier = Some(Arc::new(classifier));
        self
    }

    /// How the process span relates to the job's creation context. Defaults
    /// to [`Propagation::Link`].
    pub fn propagation(mut self, propagation: Propagation) -> Self {
        self.propagation = propagation;
        self
    }

    /// Overrides the propagation mode for jobs named `job_name` (`job.name`),
    /// on any queue. Wins over [`propagation_for_queue`](Self::propagation_for_queue).
    pub fn propagation_for_job(
        mut self,
        job_name: impl Into<Box<str>>,
        propagation: Propagation,
    ) -> Self {
        self.propagation_overrides
            .by_name
            .insert(job_name.into(), propagation);
        self
    }

    /// Overrides the propagation mode for every job on `queue`
    /// (`messaging.destination.name`), unless its job name has an override.
    pub fn propagation_for_queue(
        mut self,
        queue: impl Into<Box<str>>,
        propagation: Propagation,
    ) -> Self {
        self.propagation_overrides
            .by_queue
            .insert(queue.into(), propagation);
        self
    }

    /// Records spans with a tracer from `provider` instead of the global one.
    pub fn tracer_provider<P>(mut self, provider: &P) -> Self
    where
        P: TracerProvider,
        P::Tracer: Send + Sync + 'static,
        <P::Tracer as opentelemetry::trace::Tracer>::Span: Send + Sync + 'static,
    {
        self.tracer = Some(BoxedTracer::new(Box::new(
            provider.tracer_with_scope(scope()),
        )));
        self
    }

    /// Records metrics with a meter from `provider` instead of the global one.
    pub fn meter_provider(mut self, provider: &dyn MeterProvider) -> Self {
        self.meter = Some(provider.meter_with_scope(scope()));
        self
    }

    /// The most distinct (queue, job name) pairs recorded as series of their
    /// own; past it names are folded into `_other` and counted
    /// (`jobsight.cardinality.overflow`). Values below 2 are raised to 2.
    ///
    /// Defaults to a table shared by the whole process, with room for
    /// [`DEFAULT_MAX_KINDS`](crate::kinds::DEFAULT_MAX_KINDS) (500) pairs, used by every monitor built
    /// without this setting. With it, the monitor gets a table of its own;
    /// share the monitor (clones, or jobsight-apalis's
    /// `MonitorLayerBuilder::monitor`) to share the limit.
    pub fn max_kinds(mut self, max: usize) -> Self {
        self.max_kinds = Some(max.max(2));
        self
    }

    /// Bucket boundaries (s, increasing) of `messaging.process.duration`.
    /// Defaults to [`semconv::DURATION_BUCKETS`], 5 ms to one hour. A view
    /// installed on the SDK (e.g. jobsight-otel's exponential histograms)
    /// takes precedence over these.
    pub fn duration_buckets(mut self, boundaries: impl Into<Vec<f64>>) -> Self {
        self.buckets.duration = Some(boundaries.into());
        self
    }

    /// Bucket boundaries (s, increasing) of `job.queue_time`. Defaults to
    /// [`semconv::QUEUE_TIME_BUCKETS`], 5 ms to one day. A view installed
    /// on the SDK takes precedence over these.
    pub fn queue_time_buckets(mut self, boundaries: impl Into<Vec<f64>>) -> Self {
        self.buckets.queue_time = Some(boundaries.into());
        self
    }

    /// Adds a lifecycle [observer](crate::observer) with the default
    /// [`ObserverOptions`]. Each observer gets a thread and a bounded queue,
    /// started by [`build`](Self::build). Defaults to none.
    pub fn observer(self, observer: impl Observer) -> Self {
        self.observer_with(observer, ObserverOptions::new())
    }

    /// Adds a lifecycle observer with a name and queue capacity of its own.
    pub fn observer_with(mut self, observer: impl Observer, options: ObserverOptions) -> Self {
        self.observers.push((Box::new(observer), options));
        self
    }

    /// Whether jobs can report [progress](crate::progress). Defaults to
    /// `false`: progress costs each job a context entry (about 0.2–0.4 µs).
    /// Tasks and monitors with observers have it whatever this says.
    pub fn progress(mut self, enabled: bool) -> Self {
        self.progress.enabled = enabled;
        self
    }

    /// When progress ticks become span and observer events. Defaults to
    /// [`ProgressThrottle::default`].
    pub fn progress_throttle(mut self, throttle: ProgressThrottle) -> Self {
        self.progress.throttle = throttle;
        self
    }

    /// Whether each job attempt opens a `process {queue}` span. Defaults to
    /// `true`.
    ///
    /// With `false` the monitor records the metrics, check-ins, progress
    /// and observer events only, and skips everything a span costs a job —
    /// even a span the sampler drops costs the attribute set handed to the
    /// sampler, the ids, the sampling call and a context entry. Use it when
    /// no traces are wanted from jobs at all; a sampler that drops every
    /// span gives the same telemetry at a higher price per job. The job's
    /// own spans then have the parent they would have without the monitor
    /// (the context current when the job started, or the producer's
    /// context in [`Propagation::Child`] mode), and the producer's baggage
    /// is still made current around the job.
    pub fn traces(mut self, enabled: bool) -> Self {
        self.traces = Some(enabled);
        self
    }

    /// Builds the monitor.
    pub fn build(self) -> JobMonitor {
        JobMonitor {
            inner: Arc::new(Inner {
                classifier: self
                    .classifier
                    .unwrap_or_else(|| Arc::new(DefaultClassifier::new())),
                propagation: self.propagation,
                propagation_overrides: self.propagation_overrides,
                invalid_contexts: AtomicU64::new(0),
                given_tracer: std::sync::Mutex::new(self.tracer),
                given_meter: self.meter,
                instruments: OnceLock::new(),
                kinds: match self.max_kinds {
                    Some(max) => Arc::new(KindRegistry::new(max)),
                    None => KindRegistry::process(),
                },
                buckets: self.buckets,
                observers: Observers::start(self.observers),
                progress: self.progress,
                progress_running: RunningProgress::default(),
                traces: self.traces.unwrap_or(true),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propagation_is_resolved_by_job_name_then_queue() {
        let monitor = JobMonitor::builder()
            .propagation(Propagation::Link)
            .propagation_for_queue("payments", Propagation::Child)
            .propagation_for_job("audit", Propagation::None)
            .build();
        let mode = |queue: &str, name: &str| monitor.propagation_for(queue, name);
        assert_eq!(mode("emails", "welcome"), Propagation::Link);
        assert_eq!(mode("payments", "charge"), Propagation::Child);
        assert_eq!(mode("payments", "audit"), Propagation::None);
        assert_eq!(mode("emails", "audit"), Propagation::None);
        assert_eq!(
            JobMonitor::new().propagation_for("payments", "audit"),
            Propagation::Link
        );
    }

    #[test]
    fn invalid_contexts_are_counted_per_attempt() {
        use crate::JobMeta;
        use crate::propagation::extract_propagated;
        use std::collections::HashMap;
        crate::propagation::tests::install();
        let monitor = JobMonitor::new();
        let carrier: HashMap<String, String> =
            [("traceparent".to_owned(), "00-zz-zz-01".to_owned())].into();
        for attempt in 1..=3 {
            let meta = JobMeta::builder("t", "q")
                .attempt(attempt)
                .propagated(extract_propagated(&carrier))
                .build();
            assert!(meta.creation_context().is_none());
            monitor.start(meta).succeed();
        }
        assert_eq!(monitor.invalid_contexts(), 3);
    }
}
