//! [`MonitorLayerBuilder`]: every setting of a [`MonitorLayer`] and of the
//! monitor it records through, in one chain.

use std::borrow::Cow;
use std::sync::Arc;

use jobsight_core::checkin::{CheckinPolicy, Checkins};
use jobsight_core::observer::{Observer, ObserverOptions};
use jobsight_core::progress::ProgressThrottle;
use jobsight_core::{ArgsPolicy, Classify, JobMonitor, Propagation};
use opentelemetry::metrics::MeterProvider;
use opentelemetry::trace::TracerProvider;

use crate::args::{ArgsCapture, ArgsOff};
use crate::backend::Backend;
use crate::backend::retry_clock::RetryClock;
use crate::errors::Error;
use crate::layer::{MonitorLayer, Settings};
use crate::monitor_choice::{MonitorChoice, non_empty, static_name};

const LAYER: &str = "MonitorLayer";

/// Builder of a [`MonitorLayer`], from [`MonitorLayer::builder`]. Each
/// setting is independent of the others and of the order they are given
/// in; giving the same setting twice keeps the last value, and methods
/// that add ([`checkin`](Self::checkin), [`observer`](Self::observer),
/// `propagation_for_*`) add to what was added before.
/// [`build`](Self::build) fails, naming the settings, when two of them
/// cannot both hold.
///
/// ```
/// use std::time::Duration;
/// use jobsight_apalis::{CheckinPolicy, DefaultClassifier, MonitorLayer, Propagation, Schedule};
///
/// # fn main() -> Result<(), jobsight_apalis::Error> {
/// let layer = MonitorLayer::builder()
///     .queue("emails")
///     .classifier(DefaultClassifier::new().ignore::<std::fmt::Error>())
///     .propagation_for_queue("webhooks", Propagation::Child)
///     .checkin(CheckinPolicy::queue("emails").schedule(Schedule::every(Duration::from_secs(3600))))
///     .build()?;
/// # Ok(()) }
/// ```
///
/// # The monitor
/// The monitor holds what every layer recording through it shares: the
/// providers, the classifier, the propagation modes, observers, progress,
/// `traces`, buckets and the job-kind limit. Which monitor the layer uses:
/// - the one given to [`monitor`](Self::monitor) (to share one between
///   workers, or with a [`SendLayer`](crate::SendLayer)); monitor settings
///   given as well are an error ([`Error::MonitorAndMonitorSetting`]): that
///   monitor is built already;
/// - else, when any monitor setting is given, a new monitor built from
///   them;
/// - else the process's default monitor, [`jobsight_core::default_monitor`]
///   (global providers, every default), the same one
///   [`SendLayer::new`](crate::SendLayer::new), [`TracedPush`](crate::TracedPush)
///   and one-off tasks use. This is the one rule for every layer.
#[derive(Debug)]
#[must_use]
pub struct MonitorLayerBuilder<A = ArgsOff> {
    monitor: MonitorChoice,
    queue: Option<Arc<str>>,
    job_name: Option<Cow<'static, str>>,
    max_attempts: Option<u32>,
    retries: Option<usize>,
    catch_panics: bool,
    checkin_policies: Vec<CheckinPolicy>,
    checkins: Option<Checkins>,
    backend: Option<Arc<dyn Backend>>,
    args: A,
}

impl MonitorLayerBuilder {
    pub(crate) fn new() -> Self {
        Self {
            monitor: MonitorChoice::default(),
            queue: None,
            job_name: None,
            max_attempts: None,
            retries: None,
            catch_panics: true,
            checkin_policies: Vec::new(),
            checkins: None,
            backend: None,
            args: ArgsOff,
        }
    }
}

impl<A> MonitorLayerBuilder<A> {
    /// Records the arguments of the jobs `policy` opts in (see
    /// [`crate::args`]): the worker's `Args` type must then implement
    /// `serde::Serialize`. Defaults to off; a second call replaces the policy.
    pub fn record_args(self, policy: ArgsPolicy) -> MonitorLayerBuilder<ArgsCapture> {
        MonitorLayerBuilder {
            monitor: self.monitor,
            queue: self.queue,
            job_name: self.job_name,
            max_attempts: self.max_attempts,
            retries: self.retries,
            catch_panics: self.catch_panics,
            checkin_policies: self.checkin_policies,
            checkins: self.checkins,
            backend: self.backend,
            args: ArgsCapture::new(policy),
        }
    }

    /// Records through `monitor` (see [the monitor](Self#the-monitor)).
    /// Layers sharing a monitor share its job kinds, observers and
    /// cardinality limit. Defaults to the process's default monitor.
    pub fn monitor(mut self, monitor: JobMonitor) -> Self {
        self.monitor.give(monitor);
        self
    }

    /// The classifier that decides which errors are ignored, retried or
    /// final. Defaults to [`jobsight_core::DefaultClassifier::new`].
    /// A monitor setting.
    pub fn classifier(mut self, classifier: impl Classify) -> Self {
        self.monitor.set("classifier", |b| b.classifier(classifier));
        self
    }

    /// How the process span relates to the producer's trace context, for
    /// jobs without an override. Defaults to [`Propagation::Link`]. A
    /// monitor setting.
    pub fn propagation(mut self, propagation: Propagation) -> Self {
        self.monitor
            .set("propagation", |b| b.propagation(propagation));
        self
    }

    /// Adds an override of the propagation mode for every job on `queue`
    /// (`messaging.destination.name`), unless its job name has one. A
    /// monitor setting.
    pub fn propagation_for_queue(
        mut self,
        queue: impl Into<Box<str>>,
        propagation: Propagation,
    ) -> Self {
        let queue = queue.into();
        self.monitor.set("propagation_for_queue", |b| {
            b.propagation_for_queue(queue, propagation)
        });
        self
    }

    /// Adds an override of the propagation mode for jobs named `job_name`
    /// (`job.name`), on any queue; wins over a queue's override. A monitor
    /// setting.
    pub fn propagation_for_job(
        mut self,
        job_name: impl Into<Box<str>>,
        propagation: Propagation,
    ) -> Self {
        let name = job_name.into();
        self.monitor.set("propagation_for_job", |b| {
            b.propagation_for_job(name, propagation)
        });
        self
    }

    /// Records spans with a tracer from `provider` instead of the global
    /// one. Defaults to the global provider, fetched when the first job
    /// starts. A monitor setting.
    pub fn tracer_provider<P>(mut self, provider: &P) -> Self
    where
        P: TracerProvider,
        P::Tracer: Send + Sync + 'static,
        <P::Tracer as opentelemetry::trace::Tracer>::Span: Send + Sync + 'static,
    {
        self.monitor
            .set("tracer_provider", |b| b.tracer_provider(provider));
        self
    }

    /// Records metrics with a meter from `provider` instead of the global
    /// one: the job metrics and the check-in gauge
    /// (`job.checkin.last_success`) of this layer's check-ins. Defaults to
    /// the global provider, fetched when the first job starts. A monitor
    /// setting.
    pub fn meter_provider(mut self, provider: &dyn MeterProvider) -> Self {
        self.monitor
            .set("meter_provider", |b| b.meter_provider(provider));
        self
    }

    /// Adds a lifecycle observer (see [`jobsight_core::observer`]) with the
    /// default [`ObserverOptions`]. Defaults to none. A monitor setting.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        self.monitor.set("observer", |b| b.observer(observer));
        self
    }

    /// Adds a lifecycle observer with a name and queue capacity of its own.
    /// A monitor setting.
    pub fn observer_with(mut self, observer: impl Observer, options: ObserverOptions) -> Self {
        self.monitor
            .set("observer_with", |b| b.observer_with(observer, options));
        self
    }

    /// Whether jobs can report progress ([`jobsight_core::progress`]).
    /// Defaults to `false` (monitors with observers have it anyway). A
    /// monitor setting.
    pub fn progress(mut self, enabled: bool) -> Self {
        self.monitor.set("progress", |b| b.progress(enabled));
        self
    }

    /// When progress ticks become span and observer events. Defaults to
    /// [`ProgressThrottle::default`]. A monitor setting.
    pub fn progress_throttle(mut self, throttle: ProgressThrottle) -> Self {
        self.monitor
            .set("progress_throttle", |b| b.progress_throttle(throttle));
        self
    }

    /// Whether each attempt opens a `process {queue}` span. Defaults to
    /// `true`; `false` keeps the metrics, check-ins, progress and observer
    /// events (see [`jobsight_core::JobMonitorBuilder::traces`]). A monitor
    /// setting.
    pub fn traces(mut self, enabled: bool) -> Self {
        self.monitor.set("traces", |b| b.traces(enabled));
        self
    }

    /// Bucket boundaries (s, increasing) of `messaging.process.duration`.
    /// Defaults to [`jobsight_core::semconv::DURATION_BUCKETS`]. A monitor
    /// setting.
    pub fn duration_buckets(mut self, boundaries: impl Into<Vec<f64>>) -> Self {
        let boundaries = boundaries.into();
        self.monitor
            .set("duration_buckets", |b| b.duration_buckets(boundaries));
        self
    }

    /// Bucket boundaries (s, increasing) of `job.queue_time`. Defaults to
    /// [`jobsight_core::semconv::QUEUE_TIME_BUCKETS`]. A monitor setting.
    pub fn queue_time_buckets(mut self, boundaries: impl Into<Vec<f64>>) -> Self {
        let boundaries = boundaries.into();
        self.monitor
            .set("queue_time_buckets", |b| b.queue_time_buckets(boundaries));
        self
    }

    /// The most distinct (queue, job name) pairs recorded as series of
    /// their own (see [`jobsight_core::JobMonitorBuilder::max_kinds`]).
    /// Defaults to the process-wide table of 500. A monitor setting.
    pub fn max_kinds(mut self, max: usize) -> Self {
        self.monitor.set("max_kinds", |b| b.max_kinds(max));
        self
    }

    /// The queue name for tasks that do not carry one. apalis-redis does not
    /// put its queue on the task: without this the queue is the `Args`
    /// type's full path, which is also apalis-redis's default queue name.
    pub fn queue(mut self, queue: impl Into<Arc<str>>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// The apalis backend the worker reads from ([`crate::backend`]):
    /// where queue time, run-at and attempts come from on that backend, and
    /// `job.backend` on the process spans. Defaults to none: the fields
    /// every backend fills the same way, queue time from the producer's
    /// stamp or a ULID id on first attempts only, and no `job.backend`.
    /// A second call replaces the backend.
    ///
    /// ```
    /// use jobsight_apalis::{MonitorLayer, backend::Postgres};
    /// let layer = MonitorLayer::builder().backend(Postgres).build();
    /// ```
    pub fn backend(mut self, backend: impl Backend) -> Self {
        self.backend = Some(Arc::new(backend));
        self
    }

    /// The `job.name` of this worker's jobs. Defaults to the `Args` type's
    /// short name (`SendEmail` for `my_app::jobs::SendEmail`).
    pub fn job_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.job_name = Some(name.into());
        self
    }

    /// How many attempts a job gets in all, for tasks that do not say
    /// (`job.max_attempts`): an error with attempts left is recorded as
    /// `retried` rather than `failed`. Defaults to the task's own
    /// `max_attempts`, or unknown (every error is final). For apalis's
    /// retry layer, give [`retries`](Self::retries) instead: it sets both.
    /// For backends that retry by themselves (apalis-postgres), this is
    /// their limit.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// How many times apalis retries a failed job: the worker gets apalis's
    /// `RetryLayer` with `RetryPolicy::retries(n)` outside this layer, and
    /// this layer knows that a job gets `n + 1` attempts, so an error with
    /// attempts left is recorded as `retried`. Only the worker can add the
    /// retry layer: give this builder to
    /// [`MonitorWorkerExt::monitor`](crate::MonitorWorkerExt::monitor)
    /// ([`build`](Self::build) refuses it, [`Error::RetriesNeedTheWorker`]).
    /// Defaults to none (no retry layer). Tasks that carry `max_attempts`
    /// keep their own limit.
    pub fn retries(mut self, retries: usize) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Whether a job's panic is caught (recorded as `panicked` and returned
    /// to the worker as `AbortError(JobPanicked)`, so the worker keeps
    /// running) or recorded and then resumed, as if the layer were not there
    /// (without apalis's `catch_panic` layer, the worker then stops).
    /// Defaults to `true`.
    pub fn catch_panics(mut self, catch: bool) -> Self {
        self.catch_panics = catch;
        self
    }

    /// Adds a check-in policy: the jobs it covers report `in_progress`,
    /// `ok` and `error` check-ins (see [`jobsight_core::checkin`]), recorded
    /// as span events and the last-success gauge. Jobs with no policy cost
    /// nothing more. For ping sinks or a watchdog, build a [`Checkins`]
    /// registry and give it with [`checkins`](Self::checkins) instead.
    pub fn checkin(mut self, policy: CheckinPolicy) -> Self {
        self.checkin_policies.push(policy);
        self
    }

    /// Uses `checkins` (policies and sinks, shared with the watchdog) for
    /// this layer's jobs; a later call replaces an earlier registry.
    /// Policies added with [`checkin`](Self::checkin) as well are an error
    /// ([`Error::CheckinAndCheckins`]): add them to the registry.
    pub fn checkins(mut self, checkins: Checkins) -> Self {
        self.checkins = Some(checkins);
        self
    }

    /// Builds the layer. Fails when a monitor was given with
    /// [`monitor`](Self::monitor) together with monitor settings, when
    /// check-in policies and a registry were both given, when a queue or job
    /// name is empty, when `max_attempts` is 0, and when
    /// [`retries`](Self::retries) was given (use
    /// [`MonitorWorkerExt::monitor`](crate::MonitorWorkerExt::monitor)).
    pub fn build(self) -> Result<MonitorLayer<A>, Error> {
        if self.retries.is_some() {
            return Err(Error::RetriesNeedTheWorker);
        }
        self.build_for_worker().map(|(layer, _)| layer)
    }

    /// Builds the layer and returns the retry count for the worker's retry
    /// layer; the layer's attempt limit is then the count plus one.
    pub(crate) fn build_for_worker(self) -> Result<(MonitorLayer<A>, Option<usize>), Error> {
        let max_attempts = match (self.retries, self.max_attempts) {
            (Some(_), Some(_)) => return Err(Error::RetriesAndMaxAttempts),
            (Some(n), None) => Some(u32::try_from(n.saturating_add(1)).unwrap_or(u32::MAX)),
            (None, given) => given,
        };
        if max_attempts == Some(0) {
            return Err(Error::ZeroMaxAttempts);
        }
        let queue = non_empty(self.queue, LAYER, "queue")?;
        let job_name = non_empty(self.job_name, LAYER, "job_name")?.map(static_name);
        let checkins = match (self.checkins, self.checkin_policies.is_empty()) {
            (Some(_), false) => return Err(Error::CheckinAndCheckins),
            (Some(registry), true) => Some(registry),
            (None, false) => Some(Checkins::from_policies(self.checkin_policies)),
            (None, true) => None,
        };
        let layer = MonitorLayer {
            monitor: self.monitor.build(LAYER)?,
            settings: Arc::new(Settings {
                queue,
                job_name,
                max_attempts,
                catch_panics: self.catch_panics,
                checkins,
                retry_clock: self
                    .backend
                    .as_ref()
                    .and_then(|b| b.retry_due_after(1))
                    .map(|_| Arc::new(RetryClock::default())),
                backend: self.backend,
            }),
            args: self.args,
        };
        Ok((layer, self.retries))
    }
}
