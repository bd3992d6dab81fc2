//! [`SendLayerBuilder`]: every setting of a [`SendLayer`] and of the
//! monitor it records through, in one chain.

use std::borrow::Cow;
use std::sync::Arc;

use apalis_core::task::task_id::GenerateId;
use jobsight_core::JobMonitor;
use jobsight_core::observer::{Observer, ObserverOptions};
use opentelemetry::metrics::MeterProvider;
use opentelemetry::trace::TracerProvider;

use crate::errors::Error;
use crate::monitor_choice::{MonitorChoice, non_empty, static_name};
use crate::send::{SendLayer, SendSettings};

const LAYER: &str = "SendLayer";

/// Builder of a [`SendLayer`], from [`SendLayer::builder`]: the same shape
/// and the same rules as [`MonitorLayerBuilder`](crate::MonitorLayerBuilder)
/// (settings independent of their order; the last value of a setting given
/// twice wins; [`build`](Self::build) fails naming settings that cannot
/// both hold), and the same rule for the monitor: the one given to
/// [`monitor`](Self::monitor), else one built from the monitor settings,
/// else [`jobsight_core::default_monitor`].
///
/// ```
/// use jobsight_apalis::SendLayer;
/// # fn main() -> Result<(), jobsight_apalis::Error> {
/// let layer = SendLayer::builder().queue("emails").job_name("SendEmail").build()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use]
pub struct SendLayerBuilder {
    monitor: MonitorChoice,
    queue: Option<Arc<str>>,
    job_name: Option<Cow<'static, str>>,
    generate_id: Option<fn() -> apalis_core::task::task_id::TaskId>,
}

impl SendLayerBuilder {
    pub(crate) fn new() -> Self {
        Self {
            monitor: MonitorChoice::default(),
            queue: None,
            job_name: None,
            generate_id: None,
        }
    }

    /// Records through `monitor` (its providers, observers and
    /// cardinality cap; a worker and a producer in one process may share
    /// one). Defaults to the process's default monitor.
    pub fn monitor(mut self, monitor: JobMonitor) -> Self {
        self.monitor.give(monitor);
        self
    }

    /// Records spans with a tracer from `provider` instead of the global
    /// one. A monitor setting.
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
    /// one. A monitor setting.
    pub fn meter_provider(mut self, provider: &dyn MeterProvider) -> Self {
        self.monitor
            .set("meter_provider", |b| b.meter_provider(provider));
        self
    }

    /// Adds a lifecycle observer: a push that succeeds is its `Enqueued`
    /// event. Defaults to none. A monitor setting.
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

    /// The most distinct (queue, job name) pairs recorded as series of
    /// their own. Defaults to the process-wide table of 500. A monitor
    /// setting.
    pub fn max_kinds(mut self, max: usize) -> Self {
        self.monitor.set("max_kinds", |b| b.max_kinds(max));
        self
    }

    /// The queue (`messaging.destination.name`, `send {queue}`) for tasks
    /// that do not carry one. Defaults to the `Args` type's full path,
    /// apalis-redis's default queue name: set the same name as the worker's
    /// [`MonitorLayerBuilder::queue`](crate::MonitorLayerBuilder::queue).
    pub fn queue(mut self, queue: impl Into<Arc<str>>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// The `job.name` of the tasks pushed. Defaults to the `Args` type's
    /// short name.
    pub fn job_name(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.job_name = Some(name.into());
        self
    }

    /// Gives tasks without an id one of type `I` before they are pushed, so
    /// that the send span has a `messaging.message.id`. Use the backend's id
    /// type (`<RedisStorage<Args> as BackendConfig>::Id`, a ULID).
    /// Defaults to none for the layer; [`TracedPush`](crate::TracedPush)
    /// uses the backend's.
    pub fn generate_ids<I: GenerateId>(mut self) -> Self {
        self.generate_id = Some(I::generate);
        self
    }

    /// Builds the layer. Fails when a monitor was given together with
    /// monitor settings, or when the queue or job name is empty.
    pub fn build(self) -> Result<SendLayer, Error> {
        let queue = non_empty(self.queue, LAYER, "queue")?;
        let job_name = non_empty(self.job_name, LAYER, "job_name")?.map(static_name);
        Ok(SendLayer {
            monitor: self.monitor.build(LAYER)?,
            settings: Arc::new(SendSettings {
                queue,
                job_name,
                generate_id: self.generate_id,
            }),
        })
    }
}
