//! [`MonitorLayer`]: the one line a worker adds.

use std::sync::Arc;

use jobsight_core::JobMonitor;
use jobsight_core::checkin::Checkins;
use tower_layer::Layer;

use crate::args::ArgsOff;
use crate::backend::Backend;
use crate::backend::retry_clock::RetryClock;
use crate::layer_builder::MonitorLayerBuilder;
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
/// Everything else is told to [`MonitorLayer::builder`]; the defaults are
/// listed there.
///
/// # Layer order
/// apalis applies the first `.layer(..)` outermost. Add `MonitorLayer` first
/// so it sees everything: a timeout added before it drops the job from the
/// outside, which is recorded as `abandoned`; a timeout added after it
/// returns an error, recorded as a failure with `error.type` = `Elapsed`.
/// Retries go outside it, so that each attempt is a transaction of its own:
/// [`MonitorWorkerExt::monitor`](crate::MonitorWorkerExt::monitor) with
/// [`retries`](MonitorLayerBuilder::retries) adds apalis's retry layer and
/// this one in that order and tells this one the attempt limit.
///
/// `A` says whether the task's arguments are recorded ([`ArgsOff`], the
/// default, or [`crate::ArgsCapture`] after
/// [`record_args`](MonitorLayerBuilder::record_args)).
#[derive(Clone, Debug)]
#[must_use]
pub struct MonitorLayer<A = ArgsOff> {
    pub(crate) monitor: JobMonitor,
    pub(crate) settings: Arc<Settings>,
    pub(crate) args: A,
}

/// What the layer itself (not its monitor) was told.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) queue: Option<Arc<str>>,
    pub(crate) job_name: Option<&'static str>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) catch_panics: bool,
    pub(crate) checkins: Option<Checkins>,
    /// Set by [`MonitorLayerBuilder::backend`].
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
    /// A layer with every default (see [`MonitorLayerBuilder`]): it records
    /// through the process's default monitor
    /// ([`jobsight_core::default_monitor`]).
    pub fn new() -> Self {
        Self {
            monitor: jobsight_core::default_monitor().clone(),
            settings: Arc::new(Settings {
                queue: None,
                job_name: None,
                max_attempts: None,
                catch_panics: true,
                checkins: None,
                backend: None,
                retry_clock: None,
            }),
            args: ArgsOff,
        }
    }

    /// Starts a builder: every setting a layer or its monitor can be told.
    pub fn builder() -> MonitorLayerBuilder {
        MonitorLayerBuilder::new()
    }
}

impl<A> MonitorLayer<A> {
    /// The monitor this layer records through.
    pub fn monitor(&self) -> &JobMonitor {
        &self.monitor
    }

    /// The check-in registry of this layer, if it has one. Hand it to the
    /// watchdog (clones share its policies, sinks and last-success times).
    /// It is read-only here: give sinks to the registry before handing it
    /// to [`MonitorLayerBuilder::checkins`].
    pub fn checkins(&self) -> Option<&Checkins> {
        self.settings.checkins.as_ref()
    }

    /// The attempt limit the layer uses for tasks that do not carry one.
    pub fn max_attempts(&self) -> Option<u32> {
        self.settings.max_attempts
    }
}

impl<S, A: Clone> Layer<S> for MonitorLayer<A> {
    type Service = MonitorService<S, A>;

    fn layer(&self, inner: S) -> Self::Service {
        MonitorService::new(
            inner,
            self.monitor.clone(),
            self.settings.clone(),
            self.args.clone(),
        )
    }
}
