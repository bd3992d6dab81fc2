//! [`MonitorLayer`]: the one line a worker adds.

use std::sync::Arc;

use jobsight_core::checkin::{CheckinPolicy, Checkins};
use jobsight_core::{Classify, JobMonitor, Propagation};
use tower_layer::Layer;

use crate::backend::Backend;
use crate::backend::retry_clock::RetryClock;
use crate::service::MonitorService;

/// A Tower layer that records every job an apalis worker runs as an
/// OpenTelemetry transaction: a CONSUMER span `process {queue}` and the
/// per-queue metrics described in the crate docs.
///
/// ```
/// # use apalis::prelude::*;
/// # use jobsight_apalis::MonitorLayer;
/// # async fn send_email(_: String) -> Result<(), BoxDynError> { Ok(()) }
/// let worker = WorkerBuilder::new("email-sender")
///     .backend(MemoryStorage::<String>::new())
///     .layer(MonitorLayer::new())
///     .build(send_email);
/// ```
///
/// # Defaults
/// - records with the global tracer and meter providers (install them with
///   `jobsight_otel::init()`), fetched when the first job starts;
/// - classifies errors with [`jobsight_core::DefaultClassifier`];
/// - links the span to the producer's trace context ([`Propagation::Link`]);
/// - catches a job's panic, records it as `panicked`, and returns it to
///   the worker as an `AbortError` so the worker keeps running (see
///   [`MonitorLayer::catch_panics`]).
///
/// # Layer order
/// apalis applies the first `.layer(..)` outermost. Add `MonitorLayer` first
/// so it sees everything: a timeout added before it drops the job from the
/// outside, which is recorded as `abandoned`; a timeout added after it
/// returns an error, recorded as a failure with `error.type` = `Elapsed`.
/// Add apalis's `.retry(..)` *before* `MonitorLayer` so each attempt is a
/// transaction of its own.
#[derive(Clone, Debug)]
#[must_use]
pub struct MonitorLayer {
    monitor: JobMonitor,
    pub(crate) settings: Arc<Settings>,
}

#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) queue: Option<Arc<str>>,
    pub(crate) job_name: Option<&'static str>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) catch_panics: bool,
    pub(crate) checkins: Option<Checkins>,
    /// Set by [`MonitorLayer::record_args`]: only then does the service look
    /// for captured arguments in the task's data.
    pub(crate) records_args: bool,
    /// Set by [`MonitorLayer::backend`].
    pub(crate) backend: Option<Arc<dyn Backend>>,
    /// Present when the backend re-fetches failed tasks on its own delay.
    pub(crate) retry_clock: Option<Arc<RetryClock>>,
}

impl Default for MonitorLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl MonitorLayer {
    /// A layer with every default (see the type's docs).
    pub fn new() -> Self {
        Self::with_monitor(JobMonitor::new())
    }

    /// A layer recording through `monitor`, for a classifier, propagation
    /// mode or providers of your own (see [`JobMonitor::builder`]). Layers
    /// sharing a monitor share its job kinds and cardinality limit.
    pub fn with_monitor(monitor: JobMonitor) -> Self {
        Self {
            monitor,
            settings: Arc::new(Settings {
                queue: None,
                job_name: None,
                max_attempts: None,
                catch_panics: true,
                checkins: None,
                records_args: false,
                backend: None,
                retry_clock: None,
            }),
        }
    }

    /// Uses `classifier` to decide which errors are ignored, retried or
    /// final. Defaults to [`jobsight_core::DefaultClassifier`]. Replaces the
    /// monitor with a new one (keeping the propagation mode).
    pub fn classify(self, classifier: impl Classify) -> Self {
        let propagation = self.monitor.propagation();
        Self {
            monitor: JobMonitor::builder()
                .classifier(classifier)
                .propagation(propagation)
                .build(),
            settings: self.settings,
        }
    }

    /// How the process span relates to the producer's trace context.
    /// Defaults to [`Propagation::Link`]. Replaces the monitor with a new one
    /// using the default classifier; to set both, build a [`JobMonitor`] and
    /// use [`MonitorLayer::with_monitor`].
    ///
    /// For a mode per job name or per queue, build the monitor:
    ///
    /// ```
    /// use jobsight_apalis::MonitorLayer;
    /// use jobsight_core::{JobMonitor, Propagation};
    /// let layer = MonitorLayer::with_monitor(
    ///     JobMonitor::builder()
    ///         .propagation(Propagation::Link)
    ///         .propagation_for_queue("webhooks", Propagation::Child)
    ///         .propagation_for_job("AuditLog", Propagation::None)
    ///         .build(),
    /// );
    /// ```
    pub fn propagation(self, propagation: Propagation) -> Self {
        Self {
            monitor: JobMonitor::builder().propagation(propagation).build(),
            settings: self.settings,
        }
    }

    /// The queue name for tasks that do not carry one. apalis-redis does not
    /// put its queue on the task: without this the queue is the `Args`
    /// type's full path, which is also apalis-redis's default queue name.
    pub fn queue(mut self, queue: impl Into<Arc<str>>) -> Self {
        Arc::make_mut(&mut self.settings).queue = Some(queue.into());
        self
    }

    /// The apalis backend the worker reads from ([`crate::backend`]):
    /// where queue time, run-at and attempts come from on that backend, and
    /// `job.backend` on the process spans. Defaults to none: the fields
    /// every backend fills the same way, queue time from the producer's
    /// stamp or a ULID id on first attempts only, and no `job.backend`.
    ///
    /// ```
    /// use jobsight_apalis::{MonitorLayer, backend::Postgres};
    /// let layer = MonitorLayer::new().backend(Postgres);
    /// ```
    pub fn backend(mut self, backend: impl Backend) -> Self {
        let settings = Arc::make_mut(&mut self.settings);
        settings.retry_clock = backend
            .retry_due_after(1)
            .map(|_| Arc::new(RetryClock::default()));
        settings.backend = Some(Arc::new(backend));
        self
    }

    /// The `job.name` of this worker's jobs. Defaults to the `Args` type's
    /// short name (`SendEmail` for `my_app::jobs::SendEmail`).
    pub fn job_name(mut self, name: &'static str) -> Self {
        Arc::make_mut(&mut self.settings).job_name = Some(name);
        self
    }

    /// How many attempts a job gets in all, for tasks that do not say
    /// (`job.max_attempts`). apalis's `RetryPolicy::retries(n)` allows
    /// `n + 1` attempts but does not write that on the task: tell the layer
    /// here, so that an error with attempts left is recorded as `retried`
    /// rather than `failed`. Defaults to the task's own `max_attempts`, or
    /// unknown (every error is final).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        Arc::make_mut(&mut self.settings).max_attempts = Some(attempts);
        self
    }

    /// Whether a job's panic is caught (recorded as `panicked` and returned
    /// to the worker as `AbortError(JobPanicked)`, so the worker keeps
    /// running) or recorded and then resumed, as if the layer were not there
    /// (without apalis's `catch_panic` layer, the worker then stops).
    /// Defaults to `true`.
    pub fn catch_panics(mut self, catch: bool) -> Self {
        Arc::make_mut(&mut self.settings).catch_panics = catch;
        self
    }

    /// Adds a check-in policy: the jobs it covers report `in_progress`,
    /// `ok` and `error` check-ins (see [`jobsight_core::checkin`]). Jobs
    /// with no policy cost nothing more.
    pub fn checkin(mut self, policy: CheckinPolicy) -> Self {
        let settings = Arc::make_mut(&mut self.settings);
        settings.checkins = Some(settings.checkins.take().unwrap_or_default().policy(policy));
        self
    }

    /// Uses `checkins` (policies and sinks) for this layer's jobs, in place
    /// of any policy added before. Give the watchdog the same registry.
    pub fn with_checkins(mut self, checkins: Checkins) -> Self {
        Arc::make_mut(&mut self.settings).checkins = Some(checkins);
        self
    }

    /// The check-in registry of this layer, if a policy was added: hand it
    /// to the watchdog and add sinks to it before the worker starts.
    pub fn checkins(&self) -> Option<&Checkins> {
        self.settings.checkins.as_ref()
    }

    /// The monitor this layer records through.
    pub fn monitor(&self) -> &JobMonitor {
        &self.monitor
    }
}

impl<S> Layer<S> for MonitorLayer {
    type Service = MonitorService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MonitorService::new(inner, self.monitor.clone(), self.settings.clone())
    }
}
