//! Runner-agnostic job transaction semantics for OpenTelemetry.
//!
//! `jobsight-core` knows what a background job is — its system, queue, name,
//! id, attempt, enqueue and run-at times ([`JobMeta`]) — and records one
//! attempt of it as a [`Transaction`]: a CONSUMER span `process {queue}`
//! following the OpenTelemetry messaging conventions, plus per-queue
//! metrics. It talks only to the `opentelemetry` API crate; the application
//! chooses the SDK (see `jobsight-otel`).
//!
//! # Layout
//! - [`job`]: [`JobMeta`], the facts about one attempt.
//! - [`monitor`]: [`JobMonitor`], which holds the tracer, instruments and
//!   configuration and starts transactions.
//! - [`kinds`]: [`JobKind`], the attribute sets of one (system, queue, job
//!   name), and the bound on how many a process records.
//! - [`transaction`]: [`Transaction`], when each span and metric point is
//!   recorded, and what retries and dropped jobs look like.
//! - [`outcome`]: [`Outcome`] and the [`Classify`] trait that decides which
//!   errors are ignored, retried or final.
//! - [`error`]: [`ErrorRecord`], a low-cardinality `error.type` and a
//!   bounded message for any Rust error.
//! - [`propagation`]: links between the code that enqueued a job and its run.
//! - [`send`]: [`SendTransaction`], the producer side: the `send {queue}`
//!   span whose context is injected into the job.
//! - [`semconv`]: every attribute and metric name.
//! - [`checkin`]: check-in policies (heartbeats, cron schedules with the
//!   `cron` feature) and the events a monitored job's runs send.
//! - [`task`]: one-off tasks (`task::run("backfill_users", async { .. })`),
//!   recorded like jobs under `messaging.system` = `task`.
//! - [`observer`]: lifecycle subscribers (started, progressed, succeeded,
//!   failed, …), run off the job's path.
//! - [`progress`]: `tick(n)` against a total: throttled span events, a
//!   gauge, an estimate of the time left.
//! - [`args`]: opt-in, masked, size-limited recording of job arguments.
//! - [`host`]: the host name, for resources and worker names.
//! - [`job_logs`]: the job's identity for log processors, and where a
//!   failed attempt's exception goes besides the span.
//!
//! # Using it by hand
//! Any runner can record its jobs: start a transaction, run the job inside
//! its context, finish it with the result.
//!
//! ```
//! use jobsight_core::{JobMeta, JobMonitor};
//! # fn send_email(_: &str) -> Result<(), std::io::Error> { Ok(()) }
//! let monitor = JobMonitor::new();
//! let tx = monitor.start(
//!     JobMeta::builder("my-runner", "emails").name("welcome").id("job-1").attempt(1).build(),
//! );
//! let result = {
//!     let _guard = tx.context().clone().attach();
//!     send_email("ada@example.com")
//! };
//! match &result {
//!     Ok(()) => tx.succeed(),
//!     Err(e) => {
//!         tx.fail(e);
//!     }
//! }
//! ```
//!
//! # Metrics and cardinality
//! Metric attributes are `messaging.system`, `messaging.destination.name`,
//! `job.name`, and `error.type` on failure (`job.outcome` on `job.outcomes`):
//! nothing per job id or argument. Distinct (queue, name) pairs are capped
//! per process (500, shared by every monitor) or per monitor
//! ([`JobMonitorBuilder::max_kinds`]); past the cap new names are recorded
//! as `_other` and counted in `jobsight.cardinality.overflow`.
//!
//! # Cargo features
//! - `bound-instruments` (off by default; `jobsight-otel` turns it on):
//!   records the per-job metrics through instruments bound to each job
//!   kind's attribute sets (opentelemetry's
//!   `experimental_metrics_bound_instruments`), about 25 times cheaper per
//!   call than a plain `add`/`record`. The SDK must be built with its own
//!   `experimental_metrics_bound_instruments` feature as well, otherwise the
//!   handles it hands out are no-ops and those metrics are lost.
#![warn(missing_docs)]

pub mod args;
mod bound;
pub mod checkin;
pub mod error;
pub mod host;
mod instruments;
pub mod job;
pub mod job_logs;
pub mod kinds;
pub mod monitor;
pub mod observer;
pub mod outcome;
pub mod progress;
pub mod propagation;
mod run_state;
pub mod semconv;
pub mod send;
pub mod task;
pub mod transaction;

pub use error::ErrorRecord;
pub use job::{JobMeta, JobMetaBuilder};
pub use kinds::{JobKind, MAX_NAME_LEN};
pub use monitor::{JobMonitor, JobMonitorBuilder, default_monitor, set_default_monitor};
pub use outcome::{Classify, DefaultClassifier, ErrorClass, Outcome};
pub use propagation::{Propagated, Propagation, PropagationProblem};
pub use send::SendTransaction;
pub use transaction::Transaction;

pub use args::{ArgsPolicy, CapturedArgs};
pub use observer::{EventKind, JobEvent, Observer, ObserverOptions, ObserverStats, Observers};
pub use progress::Progress;
