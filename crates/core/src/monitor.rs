//! [`JobMonitor`]: the shared, cheap-to-clone recorder that starts
//! [`Transaction`]s, with its configuration.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use opentelemetry::KeyValue;
use opentelemetry::global::BoxedTracer;
use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry::trace::TracerProvider;

use crate::instruments::{Instruments, interned_cow, scope};
use crate::job::JobMeta;
use crate::outcome::{Classify, DefaultClassifier, Outcome};
use crate::propagation::{Propagation, PropagationProblem};
use crate::semconv;
use crate::send::SendKind;
use crate::transaction::Transaction;

/// The `job.name` / queue value that job kinds past the limit are folded into.
pub const OVERFLOW_NAME: &str = "_other";

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
    kinds: RwLock<KindTable>,
    max_kinds: usize,
    overflowed: AtomicU64,
}

impl fmt::Debug for JobMonitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobMonitor")
            .field("propagation", &self.inner.propagation)
            .field("max_kinds", &self.inner.max_kinds)
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

    /// The attribute sets of the job kind (queue, name), built once and then
    /// shared; the system is the one given when the kind was first seen (a
    /// monitor normally serves one runner). Past the limit set with
    /// [`JobMonitorBuilder::max_kinds`], new names are folded into `_other`
    /// (and then new queues too) and counted in [`JobMonitor::overflowed`].
    pub fn kind(&self, system: &str, queue: &Arc<str>, name: &str) -> Arc<JobKind> {
        let inner = &self.inner;
        {
            let kinds = match inner.kinds.read() {
                Ok(k) => k,
                Err(poisoned) => poisoned.into_inner(),
            };
            if let Some(kind) = kinds.get(queue, name) {
                return kind.clone();
            }
        }
        let mut kinds = match inner.kinds.write() {
            Ok(k) => k,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(kind) = kinds.get(queue, name) {
            return kind.clone();
        }
        let (mut queue, mut name) = (queue.clone(), name);
        let propagation = inner.propagation_overrides.resolve(&queue, name);
        if kinds.len >= inner.max_kinds && propagation.is_none() {
            inner.overflowed.fetch_add(1, Ordering::Relaxed);
            name = OVERFLOW_NAME;
            if kinds.get(&queue, name).is_none() {
                queue = Arc::from(OVERFLOW_NAME);
            }
            if let Some(kind) = kinds.get(&queue, name) {
                return kind.clone();
            }
        }
        let propagation = propagation.unwrap_or(inner.propagation);
        let kind = Arc::new(JobKind::new(system, &queue, name, propagation));
        kinds.insert(queue, name, kind.clone());
        kind
    }

    /// How many times a job kind was folded into `_other` because the limit
    /// of distinct kinds was reached.
    pub fn overflowed(&self) -> u64 {
        self.inner.overflowed.load(Ordering::Relaxed)
    }

    /// The classifier this monitor uses.
    pub fn classifier(&self) -> &dyn Classify {
        &*self.inner.classifier
    }

    /// How the process span relates to the job's creation context, for job
    /// kinds without an override (see [`JobKind::propagation`]).
    pub fn propagation(&self) -> Propagation {
        self.inner.propagation
    }

    /// How many job attempts carried a propagated context that was dropped
    /// as too long or invalid (see [`crate::propagation`]).
    pub fn invalid_contexts(&self) -> u64 {
        self.inner.invalid_contexts.load(Ordering::Relaxed)
    }

    /// Counts one attempt whose propagated context was dropped.
    pub(crate) fn count_invalid_context(&self, kind: &JobKind, problem: PropagationProblem) {
        self.inner.invalid_contexts.fetch_add(1, Ordering::Relaxed);
        let mut attrs = Vec::with_capacity(kind.base.len() + 1);
        attrs.extend(kind.base.iter().cloned());
        attrs.push(KeyValue::new(semconv::ERROR_TYPE, problem.as_str()));
        self.instruments().propagation_invalid.add(1, &attrs);
    }

    pub(crate) fn instruments(&self) -> &Instruments {
        self.inner.instruments.get_or_init(|| {
            let tracer = match self.inner.given_tracer.lock() {
                Ok(mut slot) => slot.take(),
                Err(poisoned) => poisoned.into_inner().take(),
            };
            Instruments::new(tracer, self.inner.given_meter.clone())
        })
    }
}

/// Per job name and per queue propagation modes.
#[derive(Debug, Default)]
struct PropagationOverrides {
    by_name: HashMap<Box<str>, Propagation>,
    by_queue: HashMap<Box<str>, Propagation>,
}

impl PropagationOverrides {
    fn resolve(&self, queue: &str, name: &str) -> Option<Propagation> {
        self.by_name
            .get(name)
            .or_else(|| self.by_queue.get(queue))
            .copied()
    }
}

/// Job kinds by queue, then by name: looked up with borrowed strings.
#[derive(Default)]
struct KindTable {
    by_queue: HashMap<Arc<str>, HashMap<Box<str>, Arc<JobKind>>>,
    len: usize,
}

impl KindTable {
    fn get(&self, queue: &str, name: &str) -> Option<&Arc<JobKind>> {
        self.by_queue.get(queue)?.get(name)
    }

    fn insert(&mut self, queue: Arc<str>, name: &str, kind: Arc<JobKind>) {
        let names = self.by_queue.entry(queue).or_default();
        if names.insert(name.into(), kind).is_none() {
            self.len += 1;
        }
    }
}

/// The attribute sets of one kind of job (system, queue, job name), built
/// once so that the per-job path copies no strings.
#[derive(Debug)]
pub struct JobKind {
    pub(crate) span_name: Cow<'static, str>,
    /// `messaging.system`, `messaging.destination.name`, `job.name`.
    pub(crate) base: Vec<KeyValue>,
    /// `base` plus `job.outcome`, one per [`Outcome::index`].
    pub(crate) by_outcome: [Vec<KeyValue>; 6],
    /// The propagation mode of this kind, overrides applied.
    pub(crate) propagation: Propagation,
    /// What the producer side records: `send {queue}` and its attributes.
    pub(crate) send: SendKind,
}

impl JobKind {
    fn new(system: &str, queue: &Arc<str>, name: &str, propagation: Propagation) -> Self {
        let system: Cow<'static, str> = interned_cow(system.to_owned());
        let name: Cow<'static, str> = interned_cow(name.to_owned());
        let base = vec![
            KeyValue::new(semconv::MESSAGING_SYSTEM, system.clone()),
            KeyValue::new(semconv::MESSAGING_DESTINATION_NAME, queue.clone()),
            KeyValue::new(semconv::JOB_NAME, name),
        ];
        let by_outcome = Outcome::ALL.map(|outcome| {
            let mut attrs = base.clone();
            attrs.push(KeyValue::new(semconv::JOB_OUTCOME, outcome.as_str()));
            attrs
        });
        Self {
            span_name: interned_cow(format!("process {queue}")),
            send: SendKind::new(queue, &base),
            base,
            by_outcome,
            propagation,
        }
    }

    /// How the process span of this kind relates to the creation context:
    /// the override for its job name, else for its queue, else the
    /// monitor's mode. Resolved once, when the kind is first seen.
    pub fn propagation(&self) -> Propagation {
        self.propagation
    }

    /// The span name, `process {queue}`.
    pub fn span_name(&self) -> &str {
        &self.span_name
    }

    /// The metric attributes every series of this kind carries.
    pub fn attributes(&self) -> &[KeyValue] {
        &self.base
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
}

impl fmt::Debug for JobMonitorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobMonitorBuilder")
            .field("propagation", &self.propagation)
            .field("max_kinds", &self.max_kinds)
            .finish_non_exhaustive()
    }
}

/// Default limit of distinct (queue, job name) pairs per monitor.
pub const DEFAULT_MAX_KINDS: usize = 500;

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
    /// Job kinds with an override are never folded into `_other`.
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
    /// own; past it names are folded into `_other`. Defaults to
    /// [`DEFAULT_MAX_KINDS`] (500). Values below 2 are raised to 2.
    pub fn max_kinds(mut self, max: usize) -> Self {
        self.max_kinds = Some(max.max(2));
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
                kinds: RwLock::new(KindTable::default()),
                max_kinds: self.max_kinds.unwrap_or(DEFAULT_MAX_KINDS),
                overflowed: AtomicU64::new(0),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_shared_and_capped() {
        let monitor = JobMonitor::builder().max_kinds(3).build();
        let q: Arc<str> = Arc::from("q");
        let a1 = monitor.kind("t", &q, "a");
        let a2 = monitor.kind("t", &q, "a");
        assert!(Arc::ptr_eq(&a1, &a2));
        assert_eq!(a1.span_name(), "process q");
        for i in 0..100 {
            monitor.kind("t", &q, &format!("dyn-{i}"));
        }
        let folded = monitor.kind("t", &q, "another");
        let name = folded
            .attributes()
            .iter()
            .find(|kv| kv.key.as_str() == semconv::JOB_NAME)
            .map(|kv| kv.value.as_str().into_owned());
        assert_eq!(name.as_deref(), Some(OVERFLOW_NAME));
        assert!(monitor.overflowed() >= 99);
        assert!(monitor.inner.kinds.read().unwrap().len <= 4);
    }

    #[test]
    fn propagation_is_resolved_per_kind_name_first() {
        let monitor = JobMonitor::builder()
            .max_kinds(2)
            .propagation(Propagation::Link)
            .propagation_for_queue("payments", Propagation::Child)
            .propagation_for_job("audit", Propagation::None)
            .build();
        let mode =
            |queue: &str, name: &str| monitor.kind("t", &Arc::from(queue), name).propagation();
        assert_eq!(mode("emails", "welcome"), Propagation::Link);
        assert_eq!(mode("payments", "charge"), Propagation::Child);
        assert_eq!(mode("payments", "audit"), Propagation::None);
        // Past the cap, kinds with an override keep it (they are not folded).
        assert_eq!(mode("emails", "audit"), Propagation::None);
        assert_eq!(mode("payments", "refund"), Propagation::Child);
        assert_eq!(mode("emails", "other"), Propagation::Link);
    }

    #[test]
    fn invalid_contexts_are_counted_per_attempt() {
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
