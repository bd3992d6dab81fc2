//! [`MonitorService`]: the Tower service that wraps each job in a transaction.

use std::sync::Arc;
use std::task::{Context, Poll};

use apalis_core::error::BoxDynError;
use apalis_core::task::Task;
use apalis_core::worker::context::WorkerContext;
use jobsight_core::checkin::Check;
use jobsight_core::error::short_type_name;
use jobsight_core::{JobKind, JobMonitor};
use opentelemetry::KeyValue;
use opentelemetry::trace::TraceContextExt as _;
use tower_service::Service;

use crate::args::{ArgsOff, CaptureArgs};
use crate::backend::retry_clock::RetryMark;
use crate::backend::{Backend, JOB_BACKEND, Memory};
use crate::future::MonitorFuture;
use crate::layer::Settings;
use crate::task_meta::{SYSTEM, job_meta};

/// Service built by [`crate::MonitorLayer`]: records every call as a job
/// transaction and returns the inner service's result unchanged (errors are
/// converted into apalis's `BoxDynError`, which the worker does anyway).
#[derive(Clone)]
pub struct MonitorService<S, A = ArgsOff> {
    inner: S,
    args: A,
    monitor: JobMonitor,
    settings: Arc<Settings>,
    /// Last job kind used by this service, so that a worker whose jobs all
    /// go to one queue skips the monitor's shared table.
    last: Option<(Arc<str>, Arc<JobKind>)>,
    consumer: Option<Arc<str>>,
    /// `Args`' full type name and its short form, computed once.
    short_name: Option<(&'static str, &'static str)>,
    /// The check-in monitor of the last job kind, looked up once per kind.
    last_check: Option<(Arc<JobKind>, Option<Arc<Check>>)>,
}

impl<S: std::fmt::Debug, A> std::fmt::Debug for MonitorService<S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorService")
            .field("inner", &self.inner)
            .field("monitor", &self.monitor)
            .finish_non_exhaustive()
    }
}

impl<S, A> MonitorService<S, A> {
    pub(crate) fn new(inner: S, monitor: JobMonitor, settings: Arc<Settings>, args: A) -> Self {
        Self {
            inner,
            args,
            monitor,
            settings,
            last: None,
            consumer: None,
            short_name: None,
            last_check: None,
        }
    }
}

/// The job kind for `queue` and `name`: the one used last when the queue is
/// the same, else looked up in the monitor's shared table and remembered.
fn cached_kind(
    last: &mut Option<(Arc<str>, Arc<JobKind>)>,
    monitor: &JobMonitor,
    queue: &str,
    name: &'static str,
) -> (Arc<str>, Arc<JobKind>) {
    if let Some((q, kind)) = last
        && **q == *queue
    {
        return (q.clone(), kind.clone());
    }
    let queue: Arc<str> = Arc::from(queue);
    let kind = monitor.kind(SYSTEM, &queue, name);
    *last = Some((queue.clone(), kind.clone()));
    (queue, kind)
}

/// `short_type_name(full)`, remembered for the last `full` seen.
fn cached_short_name(
    cache: &mut Option<(&'static str, &'static str)>,
    full: &'static str,
) -> &'static str {
    match *cache {
        Some((seen, short)) if seen == full => short,
        _ => {
            let short = short_type_name(full);
            *cache = Some((full, short));
            short
        }
    }
}

impl<S, Args, E, A> Service<Task<Args>> for MonitorService<S, A>
where
    S: Service<Task<Args>, Error = E>,
    E: Into<BoxDynError>,
    A: CaptureArgs<Args>,
{
    type Response = S::Response;
    type Error = BoxDynError;
    type Future = MonitorFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        let ctx = task.ctx().clone();
        let name = match self.settings.job_name {
            Some(name) => name,
            None => cached_short_name(&mut self.short_name, std::any::type_name::<Args>()),
        };
        let catch_panics = self.settings.catch_panics;
        let queue: &str = match (ctx.queue(), &self.settings.queue) {
            (Some(q), _) => q.as_ref(),
            (None, Some(q)) => q,
            (None, None) => std::any::type_name::<Args>(),
        };
        let (queue, kind) = cached_kind(&mut self.last, &self.monitor, queue, name);
        if self.consumer.is_none() {
            self.consumer = task
                .data()
                .get::<WorkerContext>()
                .map(|w| Arc::from(w.name()));
        }
        let check = self
            .settings
            .checkins
            .as_ref()
            .and_then(|checkins| match &self.last_check {
                Some((k, check)) if Arc::ptr_eq(k, &kind) => check.clone(),
                _ => {
                    let check = checkins.find(&queue, name);
                    self.last_check = Some((kind.clone(), check.clone()));
                    check
                }
            });
        let backend: &dyn Backend = self.settings.backend.as_deref().unwrap_or(&Memory);
        let retry = self.settings.retry_clock.as_ref().and_then(|clock| {
            let id = ctx.task_id()?;
            Some((clock, Arc::<str>::from(id.to_string())))
        });
        let retry_due = match &retry {
            Some((clock, id)) if ctx.attempt() > 0 => clock.take(id),
            _ => None,
        };
        let mut meta = job_meta(
            &ctx,
            queue,
            name,
            self.consumer.clone(),
            self.settings.max_attempts,
            backend,
            retry_due,
        );
        if let Some(args) = self.args.capture(name, &task.args) {
            meta.set_args(Some(args));
        }
        if !self.monitor.observers().is_empty() {
            meta.set_metadata(crate::args::observed_metadata(&ctx, self.args.policy()));
        }
        let mut tx = self.monitor.start_with_kind(kind, meta);
        if let Some(backend) = &self.settings.backend {
            tx.context()
                .span()
                .set_attribute(KeyValue::new(JOB_BACKEND, backend.name()));
        }
        let retry = retry.map(|(clock, id)| RetryMark {
            clock: Arc::clone(clock),
            id,
            after: backend.retry_due_after(u32::try_from(ctx.attempt() + 1).unwrap_or(u32::MAX)),
        });
        if let (Some(check), Some(checkins)) = (&check, &self.settings.checkins) {
            tx.checkin(checkins, check);
        }
        let fut = {
            let _attached = tx.attach();
            self.inner.call(task)
        };
        MonitorFuture::new(fut, tx, ctx, catch_panics, retry)
    }
}
