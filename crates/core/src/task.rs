//! One-off tasks — backfills, data fixes, report scripts, what a Rails team
//! runs as rake tasks — recorded like jobs.
//!
//! ```
//! # async fn backfill() -> Result<u64, std::io::Error> { Ok(3) }
//! # async fn demo() -> Result<(), std::io::Error> {
//! let updated = jobsight_core::task::run("backfill_users", backfill()).await?;
//! # Ok(()) }
//! ```
//!
//! # What is recorded
//! A task is a [`Transaction`] with `messaging.system` = `task`, the task's
//! name as both `job.name` and queue (`messaging.destination.name`, unless
//! [`OneOffTask::queue`] gives another), so the span is `process {name}` (kind
//! CONSUMER, like a job: backends show it as an entry point) and the
//! metrics are the jobs' own — `messaging.process.duration`,
//! `messaging.client.consumed.messages`, `job.outcomes`, `job.active` —
//! so the same dashboards show tasks, filtered on `messaging.system`.
//! No `job.attempt`: a task runs once.
//!
//! The outcome follows what the task returns ([`TaskOutput`]):
//! - `Ok(_)` or `()`: `succeeded`;
//! - `Err(e)`: `failed` — always final, the monitor's classifier is not
//!   asked (a task is not retried); `error.type` and the message as for
//!   jobs ([`crate::error`]);
//! - a panic: `panicked`, with the panic's message, **and then the panic
//!   continues** ([`std::panic::resume_unwind`]): the caller sees exactly
//!   what it would see without monitoring. `run_catch_unwind` and
//!   `run_blocking_catch_unwind` return the panic instead, for runners that
//!   must do something before it goes on (`jobsight-otel` flushes);
//! - a future dropped before it finished (a `select!` that lost, Ctrl-C):
//!   `abandoned`.
//!
//! The task's value is returned unchanged.
//!
//! # Flushing before the process exits
//! This crate records through the `opentelemetry` API only; spans wait in
//! the SDK's batch queue. A short-lived program must flush before it exits:
//! `jobsight-otel`'s `Telemetry::run_task` runs the task and shuts the
//! pipelines down within their deadline before it returns, so calling
//! `std::process::exit` right after loses nothing.
//!
//! # Progress
//! The task's context is attached while it runs, so
//! [`progress::tick`](crate::progress::tick) and friends work inside it.

use std::any::Any;
use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt::{Debug, Display};
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::pin;
use std::sync::Arc;

use crate::args::CapturedArgs;
use crate::error::ErrorRecord;
use crate::job::JobMeta;
use crate::monitor::{JobMonitor, default_monitor};
use crate::outcome::{ErrorClass, panic_message};
use crate::semconv;
use crate::transaction::Transaction;

/// A panic's payload, as `catch_unwind` returns it.
pub type PanicPayload = Box<dyn Any + Send + 'static>;

/// Runs the future `task` as the monitored task `name` and returns its
/// output unchanged. See the module docs for what is recorded.
pub async fn run<F>(name: impl Into<Cow<'static, str>>, task: F) -> F::Output
where
    F: Future,
    F::Output: TaskOutput,
{
    OneOffTask::new(name).run(task).await
}

/// Runs `task` on this thread as the monitored task `name` and returns its
/// output unchanged. See the module docs for what is recorded.
pub fn run_blocking<T: TaskOutput>(
    name: impl Into<Cow<'static, str>>,
    task: impl FnOnce() -> T,
) -> T {
    OneOffTask::new(name).run_blocking(task)
}

/// A task to run: its name and, optionally, queue, id, arguments and
/// monitor.
#[derive(Debug, Clone)]
#[must_use]
pub struct OneOffTask {
    name: Cow<'static, str>,
    queue: Option<Arc<str>>,
    id: Option<String>,
    args: Option<CapturedArgs>,
    monitor: Option<JobMonitor>,
}

impl From<&'static str> for OneOffTask {
    fn from(name: &'static str) -> Self {
        OneOffTask::new(name)
    }
}

impl From<String> for OneOffTask {
    fn from(name: String) -> Self {
        OneOffTask::new(name)
    }
}

impl OneOffTask {
    /// A task named `name` (`job.name`).
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        OneOffTask {
            name: name.into(),
            queue: None,
            id: None,
            args: None,
            monitor: None,
        }
    }

    /// The queue (`messaging.destination.name`), e.g. `maintenance` to
    /// group several tasks. Defaults to the task's name.
    pub fn queue(mut self, queue: impl Into<Arc<str>>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// An id for this run (`messaging.message.id`). Defaults to none.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The task's arguments (`job.args`), captured with an
    /// [`ArgsPolicy`](crate::args::ArgsPolicy). Defaults to none.
    pub fn args(mut self, args: CapturedArgs) -> Self {
        self.args = Some(args);
        self
    }

    /// Records through `monitor` instead of [`default_monitor`].
    pub fn monitor(mut self, monitor: &JobMonitor) -> Self {
        self.monitor = Some(monitor.clone());
        self
    }

    /// The task's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The monitor the task records through.
    pub fn job_monitor(&self) -> &JobMonitor {
        self.monitor.as_ref().unwrap_or_else(|| default_monitor())
    }

    /// The task's [`JobMeta`]: system `task`, its queue and name.
    pub fn meta(&self) -> JobMeta {
        let queue: Arc<str> = match &self.queue {
            Some(queue) => Arc::clone(queue),
            None => Arc::from(&*self.name),
        };
        let mut builder = JobMeta::builder(semconv::SYSTEM_TASK, queue).name(self.name.clone());
        if let Some(id) = &self.id {
            builder = builder.id(id.clone());
        }
        if let Some(args) = &self.args {
            builder = builder.args(args.clone());
        }
        builder.build()
    }

    /// Starts the task's transaction, for runners that finish it themselves
    /// (like `jobsight-run`, which records a command's exit status).
    pub fn start(&self) -> Transaction {
        self.job_monitor().start(self.meta())
    }

    /// Runs the future `task`; see [`run`].
    pub async fn run<F>(self, task: F) -> F::Output
    where
        F: Future,
        F::Output: TaskOutput,
    {
        match self.run_catch_unwind(task).await {
            Ok(output) => output,
            Err(panic) => resume_unwind(panic),
        }
    }

    /// Runs the future `task`, records a panic and returns it instead of
    /// letting it continue.
    pub async fn run_catch_unwind<F>(self, task: F) -> Result<F::Output, PanicPayload>
    where
        F: Future,
        F::Output: TaskOutput,
    {
        let tx = self.start();
        let cx = tx.context().clone();
        let mut task = pin!(task);
        let polled = poll_fn(|poll_cx| {
            let _attached = cx.clone().attach();
            match catch_unwind(AssertUnwindSafe(|| task.as_mut().poll(poll_cx))) {
                Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Ok(output)),
                Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
                Err(panic) => std::task::Poll::Ready(Err(panic)),
            }
        })
        .await;
        finish(tx, polled)
    }

    /// Runs `task` on this thread; see [`run_blocking`].
    pub fn run_blocking<T: TaskOutput>(self, task: impl FnOnce() -> T) -> T {
        match self.run_blocking_catch_unwind(task) {
            Ok(output) => output,
            Err(panic) => resume_unwind(panic),
        }
    }

    /// Runs `task` on this thread, records a panic and returns it instead
    /// of letting it continue.
    pub fn run_blocking_catch_unwind<T: TaskOutput>(
        self,
        task: impl FnOnce() -> T,
    ) -> Result<T, PanicPayload> {
        let tx = self.start();
        let ran = {
            let _attached = tx.context().clone().attach();
            catch_unwind(AssertUnwindSafe(task))
        };
        finish(tx, ran)
    }
}

fn finish<T: TaskOutput>(tx: Transaction, ran: Result<T, PanicPayload>) -> Result<T, PanicPayload> {
    match &ran {
        Ok(output) => match output.task_error() {
            None => tx.succeed(),
            Some(record) => {
                tx.fail_with(record, ErrorClass::Fail);
            }
        },
        Err(panic) => tx.panicked(panic_message(panic.as_ref())),
    }
    ran
}

/// What a task returns, as far as its outcome goes: `()` always succeeds,
/// `Result<T, E>` fails on `Err` for any error type that is `Display` and
/// `Debug` (std errors, `Box<dyn Error>`, `anyhow::Error`, `String`, …).
pub trait TaskOutput {
    /// The error to record, or `None` for success.
    fn task_error(&self) -> Option<ErrorRecord>;
}

impl TaskOutput for () {
    fn task_error(&self) -> Option<ErrorRecord> {
        None
    }
}

impl<T, E> TaskOutput for Result<T, E>
where
    E: Display + Debug + 'static,
{
    fn task_error(&self) -> Option<ErrorRecord> {
        let error = self.as_ref().err()?;
        let any: &dyn Any = error;
        // Error types the `ErrorRecord` rules name best when seen as errors.
        if let Some(io) = any.downcast_ref::<std::io::Error>() {
            return Some(ErrorRecord::from_error(io));
        }
        if let Some(boxed) = any.downcast_ref::<Box<dyn StdError + Send + Sync>>() {
            return Some(ErrorRecord::from_error(boxed.as_ref()));
        }
        if let Some(boxed) = any.downcast_ref::<Box<dyn StdError>>() {
            return Some(ErrorRecord::from_error(boxed.as_ref()));
        }
        Some(ErrorRecord::from_parts(error, error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress;
    use opentelemetry::trace::{SpanKind, Status};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};

    fn harness() -> (InMemorySpanExporter, JobMonitor) {
        let telemetry = jobsight_testkit::MemoryTelemetry::new();
        let monitor = JobMonitor::builder()
            .tracer_provider(telemetry.tracer_provider())
            .build();
        (telemetry.span_exporter().clone(), monitor)
    }

    fn attr(span: &SpanData, key: &str) -> Option<String> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().into_owned())
    }

    /// Polls a future to completion on this thread (no runtime needed: the
    /// futures here never wait).
    fn block_on<F: Future>(fut: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut fut = pin!(fut);
        loop {
            if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[derive(Debug, thiserror::Error)]
    enum BackfillError {
        #[error("row {0} is locked")]
        Locked(u32),
    }

    #[test]
    fn a_task_that_succeeds() {
        let (spans, monitor) = harness();
        let out = block_on(
            OneOffTask::new("backfill_users")
                .monitor(&monitor)
                .run(async { Ok::<_, BackfillError>(42) }),
        );
        assert_eq!(out.unwrap(), 42);
        let span = &spans.get_finished_spans().unwrap()[0];
        assert_eq!(span.name, "process backfill_users");
        assert_eq!(span.span_kind, SpanKind::Consumer);
        assert_eq!(attr(span, "messaging.system").as_deref(), Some("task"));
        assert_eq!(attr(span, "job.name").as_deref(), Some("backfill_users"));
        assert_eq!(
            attr(span, "messaging.destination.name").as_deref(),
            Some("backfill_users")
        );
        assert_eq!(attr(span, "job.outcome").as_deref(), Some("succeeded"));
        assert!(attr(span, "job.attempt").is_none());
    }

    #[test]
    fn a_task_that_errors_returns_its_error_unchanged() {
        let (spans, monitor) = harness();
        let out = OneOffTask::new("fix_data")
            .monitor(&monitor)
            .run_blocking(|| Err::<(), _>(BackfillError::Locked(7)));
        assert!(matches!(out, Err(BackfillError::Locked(7))));
        let span = &spans.get_finished_spans().unwrap()[0];
        assert_eq!(attr(span, "job.outcome").as_deref(), Some("failed"));
        assert_eq!(attr(span, "error.type").as_deref(), Some("Locked"));
        assert_eq!(span.status, Status::error("row 7 is locked"));
    }

    #[test]
    fn boxed_io_and_string_errors() {
        let (spans, monitor) = harness();
        let task = || OneOffTask::new("t").monitor(&monitor);
        let _ = task().run_blocking(|| Err::<(), _>(std::io::Error::other("disk")));
        let _ = task().run_blocking(|| -> Result<(), Box<dyn StdError + Send + Sync>> {
            Err(Box::new(BackfillError::Locked(1)))
        });
        let _ = task().run_blocking(|| Err::<(), _>(String::from("plain text")));
        let types: Vec<_> = spans
            .get_finished_spans()
            .unwrap()
            .iter()
            .map(|s| attr(s, "error.type").unwrap())
            .collect();
        assert_eq!(types, ["std::io::Error", "Locked", "_OTHER"]);
    }

    #[test]
    fn a_task_that_panics_is_recorded_and_the_panic_continues() {
        let (spans, monitor) = harness();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            OneOffTask::new("report")
                .monitor(&monitor)
                .run_blocking(|| -> Result<(), String> { panic!("division by zero") })
        }));
        let payload = caught.unwrap_err();
        assert_eq!(panic_message(payload.as_ref()), "division by zero");
        let span = &spans.get_finished_spans().unwrap()[0];
        assert_eq!(attr(span, "job.outcome").as_deref(), Some("panicked"));
        assert_eq!(span.status, Status::error("division by zero"));
    }

    #[test]
    fn an_async_task_that_panics_can_return_the_panic() {
        let (spans, monitor) = harness();
        let result = block_on(
            OneOffTask::new("report")
                .monitor(&monitor)
                .run_catch_unwind(async {
                    if true {
                        panic!("async boom");
                    }
                }),
        );
        assert_eq!(panic_message(result.unwrap_err().as_ref()), "async boom");
        let span = &spans.get_finished_spans().unwrap()[0];
        assert_eq!(attr(span, "job.outcome").as_deref(), Some("panicked"));
    }

    #[test]
    fn a_dropped_task_is_abandoned() {
        let (spans, monitor) = harness();
        let fut = OneOffTask::new("slow")
            .monitor(&monitor)
            .run(std::future::pending::<()>());
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut fut = Box::pin(fut);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        drop(fut);
        let span = &spans.get_finished_spans().unwrap()[0];
        assert_eq!(attr(span, "job.outcome").as_deref(), Some("abandoned"));
    }

    #[test]
    fn the_task_context_is_attached_for_progress_and_child_spans() {
        let (spans, monitor) = harness();
        block_on(OneOffTask::new("sync").monitor(&monitor).run(async {
            progress::set_total(2);
            progress::tick(2);
            assert_eq!(progress::Progress::current().unwrap().ticks(), 2);
        }));
        let span = &spans.get_finished_spans().unwrap()[0];
        assert_eq!(attr(span, "job.progress.ticks").as_deref(), Some("2"));
    }

    #[test]
    fn queue_id_and_args() {
        let (spans, monitor) = harness();
        let args = crate::args::ArgsPolicy::new().all_jobs().capture_always(
            &std::collections::BTreeMap::from([("since", "2024-01-01"), ("token", "t0k3n")]),
        );
        OneOffTask::new("backfill")
            .queue("maintenance")
            .id("run-9")
            .args(args)
            .monitor(&monitor)
            .run_blocking(|| ());
        let span = &spans.get_finished_spans().unwrap()[0];
        assert_eq!(span.name, "process maintenance");
        assert_eq!(attr(span, "messaging.message.id").as_deref(), Some("run-9"));
        assert_eq!(
            attr(span, "job.args").as_deref(),
            Some(r#"{"since":"2024-01-01","token":"[FILTERED]"}"#)
        );
    }
}
