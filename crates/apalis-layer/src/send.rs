//! The producer side: enqueueing a job as a PRODUCER span `send {queue}`
//! whose context travels with the task.
//!
//! Two ways, for the two ways apalis users push jobs:
//! - [`TracedPush`], an extension of apalis's `TaskSink`:
//!   `storage.push_traced(args)` and `storage.push_task_traced(task)`;
//! - [`SendLayer`], a Tower layer for producers that are services
//!   (`Service<Task<Args>>`); [`SinkService`] turns a storage into such a
//!   service.
//!
//! Either way, for each task: a task without an id gets one (see below), the
//! span `send {queue}` starts as a child of the current span, the task's
//! metadata gets `jobsight.enqueued_at` and the send span's context (W3C
//! `traceparent`, `tracestate`, `baggage`), the push runs with the send
//! span's context attached, and its result finishes the span and the
//! `messaging.client.sent.messages` and `messaging.client.operation.duration`
//! points (see [`jobsight_core::send`]). A failed push is recorded as an
//! error and returned to the caller unchanged; a push future dropped before
//! it completes is recorded as `abandoned`.
//!
//! # Message ids
//! apalis's `push` does not return the id the backend gives a task, so
//! `messaging.message.id` would be unknown on the send span. [`TracedPush`]
//! therefore gives a task that has none an id of the backend's own id type
//! (`BackendConfig::Id`: a ULID for apalis-redis, a `RandomId` for the
//! in-memory storage) before pushing it — the same kind of id the backend
//! would have made, so nothing changes for the worker, and the send and
//! process spans carry the same `messaging.message.id`. [`SendLayer`] does
//! not know the backend: it sets ids only when told how
//! ([`SendLayerBuilder::generate_ids`]). A task that has an id keeps it.
//!
//! # Queue and job name
//! As on the consumer side ([`crate::MonitorLayerBuilder`]): the task's queue, else
//! the layer's [`SendLayerBuilder::queue`], else the `Args` type's full path
//! (apalis-redis's default queue name); the job name is the layer's
//! [`SendLayerBuilder::job_name`], else the `Args` type's short name.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use apalis_core::backend::{BackendConfig, TaskSink, TaskSinkError};
use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::{GenerateId, TaskId};
use jobsight_core::error::{short_type_name, type_of};
use jobsight_core::{JobMeta, JobMonitor, SendTransaction};
use opentelemetry::trace::FutureExt as _;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::backend::QueueConfig;
use crate::producer::Stamp;
use crate::send_builder::SendLayerBuilder;
use crate::task_meta::SYSTEM;

/// The layer [`TracedPush::push_traced`] and
/// [`TracedPush::push_task_traced`] use.
fn default_layer() -> &'static SendLayer {
    static LAYER: OnceLock<SendLayer> = OnceLock::new();
    LAYER.get_or_init(SendLayer::new)
}

/// How tasks are recorded when they are pushed: the monitor, the queue and
/// job name, and how tasks without an id get one. A Tower layer too (see
/// [`SendService`]), and the configuration of
/// [`TracedPush::push_task_traced_with`].
///
/// ```
/// use apalis::prelude::*;
/// use jobsight_apalis::SendLayer;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// // A producer that is a service taking tasks (here one that accepts
/// // everything; `SinkService::new(redis_storage)` pushes into Redis).
/// let enqueue = tower::service_fn(|_task: Task<String>| async { Ok::<_, std::io::Error>(()) });
/// let mut enqueue = ServiceBuilder::new()
///     .layer(SendLayer::builder().queue("emails").build()?)
///     .service(enqueue);
/// enqueue.ready().await?.call(TaskBuilder::new("ada@example.com".to_string()).build()).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct SendLayer {
    pub(crate) monitor: JobMonitor,
    pub(crate) settings: Arc<SendSettings>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct SendSettings {
    pub(crate) queue: Option<Arc<str>>,
    pub(crate) job_name: Option<&'static str>,
    pub(crate) generate_id: Option<fn() -> TaskId>,
}

impl Default for SendLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl SendLayer {
    /// Records with the process's default monitor
    /// ([`jobsight_core::default_monitor`]), the default queue and job
    /// name, and sets no ids.
    pub fn new() -> Self {
        Self {
            monitor: jobsight_core::default_monitor().clone(),
            settings: Arc::new(SendSettings::default()),
        }
    }

    /// Starts a builder: every setting of the layer and its monitor.
    pub fn builder() -> SendLayerBuilder {
        SendLayerBuilder::new()
    }

    /// The monitor this layer records through.
    pub fn monitor(&self) -> &JobMonitor {
        &self.monitor
    }

    /// Starts recording the push of `task`: gives it an id when it has none
    /// (with the layer's generator, else `fallback_id`), opens the send span
    /// and stamps the task's metadata with it. Push the returned task, then
    /// finish the transaction with the result.
    pub fn begin<Args>(
        &self,
        task: Task<Args>,
        fallback_id: Option<fn() -> TaskId>,
    ) -> (Task<Args>, SendTransaction) {
        self.begin_in(task, fallback_id, None)
    }

    /// Like [`begin`](Self::begin), for a push into a storage whose
    /// configuration names the queue (`storage_queue`, see
    /// [`QueueConfig`]): that queue is where the task goes, so it wins over
    /// the task's and the layer's.
    pub fn begin_in<Args>(
        &self,
        mut task: Task<Args>,
        fallback_id: Option<fn() -> TaskId>,
        storage_queue: Option<&str>,
    ) -> (Task<Args>, SendTransaction) {
        let settings = &*self.settings;
        if task.task_id().is_none()
            && let Some(generate) = settings.generate_id.or(fallback_id)
        {
            task = task.into_builder().task_id(generate()).build();
        }
        let full_name = std::any::type_name::<Args>();
        let queue: &str = match (storage_queue, task.queue(), &settings.queue) {
            (Some(q), _, _) => q,
            (None, Some(q), _) => q.as_ref(),
            (None, None, Some(q)) => q,
            (None, None, None) => full_name,
        };
        let mut meta = JobMeta::builder(SYSTEM, queue).name(
            settings
                .job_name
                .unwrap_or_else(|| short_type_name(full_name)),
        );
        if let Some(id) = task.task_id() {
            meta = meta.id(id.to_string());
        }
        let send = self.monitor.start_send(&meta.build());
        if let Err(never) = task.inject_metadata(&Stamp::with_context(send.context().clone())) {
            match never {}
        }
        (task, send)
    }
}

impl<S> Layer<S> for SendLayer {
    type Service = SendService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SendService {
            inner,
            layer: self.clone(),
        }
    }
}

/// Service built by [`SendLayer`]: records every task it is called with as
/// a send, stamps it, and calls the inner service with it. The inner
/// service's response and error are returned unchanged.
#[derive(Clone, Debug)]
pub struct SendService<S> {
    inner: S,
    layer: SendLayer,
}

impl<S, Args> Service<Task<Args>> for SendService<S>
where
    S: Service<Task<Args>>,
    S::Error: StdError + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = SendFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        let (task, send) = self.layer.begin(task, None);
        let inner = {
            let _attached = send.context().clone().attach();
            self.inner.call(task)
        };
        SendFuture {
            inner,
            send: Some(send),
        }
    }
}

pin_project! {
    /// Response future of [`SendService`]: attaches the send span's context
    /// around every poll and finishes the send with the result; dropped
    /// before that, the send is recorded as abandoned.
    pub struct SendFuture<F> {
        #[pin]
        inner: F,
        send: Option<SendTransaction>,
    }
}

impl<F, T, E> Future for SendFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: StdError + 'static,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = match this.send.as_ref() {
            Some(send) => {
                let _attached = send.context().clone().attach();
                this.inner.poll(cx)
            }
            None => this.inner.poll(cx),
        };
        if let Poll::Ready(result) = &polled
            && let Some(send) = this.send.take()
        {
            finish(send, result);
        }
        polled
    }
}

/// Finishes `send` with the push's result. apalis's `TaskSinkError`
/// (`PushError(..)`, `CodecError(..)`) is seen through to the backend's
/// or codec's error, so `error.type` names what failed.
fn finish<T, E: StdError + 'static>(send: SendTransaction, result: &Result<T, E>) {
    match result {
        Ok(_) => send.succeed(),
        Err(error) => {
            let error: &(dyn StdError + 'static) = error;
            let seen_through = match type_of(error).as_ref() {
                "PushError" | "CodecError" => error.source().unwrap_or(error),
                _ => error,
            };
            send.fail(seen_through);
        }
    }
}

/// Pushing tasks through jobsight: an extension of apalis's `TaskSink`,
/// implemented for every storage.
///
/// ```
/// use apalis::prelude::*;
/// use jobsight_apalis::TracedPush;
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let mut storage = MemoryStorage::<String>::new();
/// storage.push_traced("ada@example.com".to_string()).await?;
/// # Ok(()) }
/// ```
///
/// Each push is a `send {queue}` span (see the [module docs](self)); tasks
/// without an id get one of the backend's id type. The shared producer
/// monitor records on the global providers; use
/// [`push_task_traced_with`](Self::push_task_traced_with) for a queue name,
/// job name or monitor of your own.
pub trait TracedPush<Args, Kind>: TaskSink<Args, Kind> {
    /// Pushes `args` as a new task, recorded as a send.
    fn push_traced(
        &mut self,
        args: Args,
    ) -> impl Future<Output = Result<(), TaskSinkError<Self::Error>>> + Send;

    /// Pushes `task` (built with apalis's `TaskBuilder`: run-at, queue,
    /// max attempts…), recorded as a send. Metadata already on the task is
    /// kept, but for the keys jobsight writes.
    fn push_task_traced(
        &mut self,
        task: Task<Args>,
    ) -> impl Future<Output = Result<(), TaskSinkError<Self::Error>>> + Send;

    /// Like [`push_task_traced`](Self::push_task_traced), recorded as
    /// `layer` says (monitor, queue, job name, id generator; tasks without
    /// an id still get one of the backend's id type when the layer has no
    /// generator).
    fn push_task_traced_with(
        &mut self,
        layer: &SendLayer,
        task: Task<Args>,
    ) -> impl Future<Output = Result<(), TaskSinkError<Self::Error>>> + Send;
}

impl<S, Args, Kind> TracedPush<Args, Kind> for S
where
    S: TaskSink<Args, Kind> + BackendConfig + Send,
    <S as BackendConfig>::Id: GenerateId,
    <S as BackendConfig>::Config: QueueConfig,
    Args: Send,
{
    fn push_traced(
        &mut self,
        args: Args,
    ) -> impl Future<Output = Result<(), TaskSinkError<Self::Error>>> + Send {
        self.push_task_traced_with(default_layer(), TaskBuilder::new(args).build())
    }

    fn push_task_traced(
        &mut self,
        task: Task<Args>,
    ) -> impl Future<Output = Result<(), TaskSinkError<Self::Error>>> + Send {
        self.push_task_traced_with(default_layer(), task)
    }

    // Everything happens when the future is first polled, in the context
    // current then (a handler's span), not when it is made.
    async fn push_task_traced_with(
        &mut self,
        layer: &SendLayer,
        task: Task<Args>,
    ) -> Result<(), TaskSinkError<Self::Error>> {
        let storage_queue = BackendConfig::config(self).queue_name();
        let (task, send) = layer.begin_in(
            task,
            Some(<S as BackendConfig>::Id::generate),
            storage_queue,
        );
        let cx = send.context().clone();
        let result = self.push_task(task).with_context(cx).await;
        finish(send, &result);
        result
    }
}

/// A storage as a Tower service: each call pushes one task with apalis's
/// `push_task`. Put a [`SendLayer`] in front of it to record the pushes.
/// Each call pushes through a clone of the storage (apalis-redis's clones
/// share one connection).
#[derive(Clone, Debug)]
pub struct SinkService<B> {
    backend: B,
}

impl<B> SinkService<B> {
    /// A service pushing into `backend`.
    pub fn new(backend: B) -> Self {
        Self { backend }
    }

    /// The storage.
    pub fn get_ref(&self) -> &B {
        &self.backend
    }
}

impl<B, Args> Service<Task<Args>> for SinkService<B>
where
    B: TaskSink<Args, <B as BackendConfig>::Kind> + BackendConfig + Clone + Send + 'static,
    Args: Send + 'static,
{
    type Response = ();
    type Error = TaskSinkError<B::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<(), Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        let mut backend = self.backend.clone();
        Box::pin(async move { backend.push_task(task).await })
    }
}
