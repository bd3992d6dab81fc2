//! Every attribute and metric name jobsight puts on the wire, in one place.
//!
//! Names under `messaging.*` and `error.type` follow the OpenTelemetry
//! semantic conventions for messaging (status: development). Names under
//! `job.*` are jobsight's own: the conventions have no words yet for a job's
//! attempt, queue time or outcome, so we add them in a namespace of our own
//! and document each one in the README's table.

/// Instrumentation scope name used for the tracer and the meter.
pub const SCOPE_NAME: &str = "jobsight";

/// The semantic-conventions version the `messaging.*`, `error.type`,
/// `exception.*` and `process.*` names here follow: 1.27.0, the first with
/// every one of them as used here (`messaging.operation.type`,
/// `messaging.consumer.group.name`, `messaging.client.consumed.messages`,
/// `messaging.client.sent.messages`).
pub const SEMCONV_VERSION: &str = "1.27.0";

/// The schema URL of [`SEMCONV_VERSION`], carried by the instrumentation
/// scope of every tracer and meter jobsight creates.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.27.0";

// ---- span and metric attributes: OpenTelemetry messaging conventions ----

/// `messaging.system`: the job runner or broker (`apalis`, `task`, …).
pub const MESSAGING_SYSTEM: &str = "messaging.system";
/// `messaging.operation.name`: always `process` on the consumer span.
pub const MESSAGING_OPERATION_NAME: &str = "messaging.operation.name";
/// `messaging.operation.type`: always `process` on the consumer span.
pub const MESSAGING_OPERATION_TYPE: &str = "messaging.operation.type";
/// `messaging.destination.name`: the queue.
pub const MESSAGING_DESTINATION_NAME: &str = "messaging.destination.name";
/// `messaging.message.id`: the job's (task's) id.
pub const MESSAGING_MESSAGE_ID: &str = "messaging.message.id";
/// `messaging.consumer.group.name`: the worker that runs the job.
pub const MESSAGING_CONSUMER_GROUP_NAME: &str = "messaging.consumer.group.name";
/// `error.type`: low-cardinality class of the error a job ended with.
pub const ERROR_TYPE: &str = "error.type";

// ---- jobsight's own job attributes ----

/// `job.name`: the job's kind (a Rust type name or a given name).
pub const JOB_NAME: &str = "job.name";
/// `job.attempt`: 1 for the first run, 2 for the first retry, …
pub const JOB_ATTEMPT: &str = "job.attempt";
/// `job.max_attempts`: how many attempts the runner allows, when known.
pub const JOB_MAX_ATTEMPTS: &str = "job.max_attempts";
/// `job.queue_time`: seconds from enqueue (or run-at, when later) to start.
pub const JOB_QUEUE_TIME: &str = "job.queue_time";
/// `job.scheduled_at`: unix seconds at which the job was due to run.
pub const JOB_SCHEDULED_AT: &str = "job.scheduled_at";
/// `job.enqueued_at`: unix seconds at which the job was enqueued.
pub const JOB_ENQUEUED_AT: &str = "job.enqueued_at";
/// `job.priority`: the runner's priority value, when it has one.
pub const JOB_PRIORITY: &str = "job.priority";
/// `job.outcome`: `succeeded`, `failed`, `retried`, `panicked`, `abandoned` or `ignored`.
pub const JOB_OUTCOME: &str = "job.outcome";
/// `job.args`: the job's arguments as masked, size-limited JSON text, when
/// recording them was turned on for the job (see [`crate::args`]).
pub const JOB_ARGS: &str = "job.args";
/// `job.progress.ticks`: ticks reported (progress events, final span
/// attribute, exception event).
pub const JOB_PROGRESS_TICKS: &str = "job.progress.ticks";
/// `job.progress.total`: the total the ticks count towards, when set.
pub const JOB_PROGRESS_TOTAL: &str = "job.progress.total";
/// `job.progress.ratio`: ticks over total, 0 to 1 (progress events).
pub const JOB_PROGRESS_RATIO: &str = "job.progress.ratio";
/// `job.progress.eta`: estimated seconds to completion (progress events).
pub const JOB_PROGRESS_ETA: &str = "job.progress.eta";
/// `job.progress.element`: the element being processed (exception event).
pub const JOB_PROGRESS_ELEMENT: &str = "job.progress.element";
/// `job.logs.dropped`: log records of the attempt refused by the per-job
/// cap (process span, set only when some were; see [`crate::job_logs`]).
pub const JOB_LOGS_DROPPED: &str = "job.logs.dropped";

// ---- one-off tasks and commands (jobsight_core::task, jobsight-run) ----

/// `messaging.system` of one-off tasks.
pub const SYSTEM_TASK: &str = "task";
/// `process.command`: the program a command task ran (OTel process
/// conventions); its arguments are not recorded.
pub const PROCESS_COMMAND: &str = "process.command";
/// `process.pid`: the process id of a command task (OTel process conventions).
pub const PROCESS_PID: &str = "process.pid";
/// `process.exit.code`: the exit code of a command that exited (OTel process
/// conventions); absent when a signal ended it.
pub const PROCESS_EXIT_CODE: &str = "process.exit.code";
/// `job.signal`: the signal that ended a command, e.g. `SIGKILL`.
pub const JOB_SIGNAL: &str = "job.signal";
/// `job.output_tail`: the last bytes a failed command wrote to stdout and
/// stderr, in the order written, at most 4 KiB.
pub const JOB_OUTPUT_TAIL: &str = "job.output_tail";

// ---- exception event (OpenTelemetry exception conventions) ----

/// Name of the span event recorded for an error worth reporting.
pub const EXCEPTION_EVENT: &str = "exception";
/// `exception.type` on the exception event.
pub const EXCEPTION_TYPE: &str = "exception.type";
/// `exception.message` on the exception event.
pub const EXCEPTION_MESSAGE: &str = "exception.message";
/// `exception.stacktrace` on the exception event, when the runner has one.
pub const EXCEPTION_STACKTRACE: &str = "exception.stacktrace";

// ---- lifecycle span events ----

/// Name of the throttled progress span event (see [`crate::progress`]).
pub const JOB_PROGRESS_EVENT: &str = "job.progress";
/// Name of the span event a runner adds when it pauses a job.
pub const JOB_PAUSED_EVENT: &str = "job.paused";
/// Name of the span event a runner adds when it resumes a job.
pub const JOB_RESUMED_EVENT: &str = "job.resumed";

// ---- values ----

/// Value of `messaging.operation.name` and `messaging.operation.type` on consumer spans.
pub const OPERATION_PROCESS: &str = "process";
/// Value of `messaging.operation.name` and `messaging.operation.type` on producer spans.
pub const OPERATION_SEND: &str = "send";
/// `error.type` for a job whose code panicked.
pub const ERROR_TYPE_PANIC: &str = "panic";
/// `error.type` for a job dropped before it finished (timeout, shutdown).
pub const ERROR_TYPE_ABANDONED: &str = "abandoned";
/// `error.type` when no low-cardinality name can be found for an error.
pub const ERROR_TYPE_OTHER: &str = "_OTHER";

// ---- metrics ----

/// Histogram (s): how long a job ran, per attempt. OTel messaging convention.
pub const METRIC_PROCESS_DURATION: &str = "messaging.process.duration";
/// Counter: jobs taken from a queue and processed. OTel messaging convention.
pub const METRIC_CONSUMED_MESSAGES: &str = "messaging.client.consumed.messages";
/// Histogram (s): how long a job waited in its queue before it started.
pub const METRIC_QUEUE_TIME: &str = "job.queue_time";
/// Counter: attempts by `job.outcome`.
pub const METRIC_OUTCOMES: &str = "job.outcomes";
/// Up-down counter: jobs running now.
pub const METRIC_ACTIVE: &str = "job.active";
/// Observable gauge (1): progress of the running jobs of a kind, 0 to 1
/// (see [`crate::progress`]).
pub const METRIC_PROGRESS: &str = "job.progress";

/// Counter: attempts that started as a retry (`job.attempt` > 1), per kind.
/// Differs from `job.outcomes{job.outcome=retried}`, which counts attempts
/// that *ended* in an error with attempts left.
pub const METRIC_RETRIES: &str = "job.retries";
/// Counter: job attempts recorded under `_other` because the limit of
/// distinct (queue, job name) pairs was reached. No attributes.
pub const METRIC_CARDINALITY_OVERFLOW: &str = "jobsight.cardinality.overflow";

// ---- backend gauges (read from the queue's storage, not from the layer) ----

/// Gauge: jobs due and waiting to be picked up, per queue.
pub const METRIC_QUEUE_DEPTH: &str = "job.queue.depth";
/// Gauge (s): age of the oldest job that is due and waiting (Sidekiq's
/// "queue latency"); 0 when nothing waits.
pub const METRIC_QUEUE_OLDEST_AGE: &str = "job.queue.oldest_age";
/// Gauge: jobs scheduled for later, including failed jobs waiting for
/// their retry.
pub const METRIC_QUEUE_SCHEDULED: &str = "job.queue.scheduled";
/// Gauge: jobs taken by a live worker and not yet acknowledged.
pub const METRIC_QUEUE_RUNNING: &str = "job.queue.running";
/// Gauge: jobs the backend keeps as done.
pub const METRIC_QUEUE_DONE: &str = "job.queue.done";
/// Gauge: jobs the backend gave up on (dead letters).
pub const METRIC_QUEUE_DEAD: &str = "job.queue.dead";
/// Counter: polls of the backend's queue statistics that failed, by
/// `error.type`. No queue attribute: one poll covers every queue.
pub const METRIC_QUEUE_POLL_ERRORS: &str = "jobsight.queue_poll.errors";

/// Counter: jobs a producer tried to enqueue, with `error.type` when the
/// push failed. OTel messaging convention.
pub const METRIC_SENT_MESSAGES: &str = "messaging.client.sent.messages";
/// Histogram (s): how long one push took, with `messaging.operation.name` =
/// `send`. OTel messaging convention.
pub const METRIC_CLIENT_OPERATION_DURATION: &str = "messaging.client.operation.duration";
/// Counter: job attempts whose propagated context was dropped (too long or
/// invalid), by `error.type` = `too_long` | `invalid`. jobsight's own
/// self-metric.
pub const METRIC_PROPAGATION_INVALID: &str = "jobsight.propagation.invalid";

/// Bucket boundaries (s) for `messaging.client.operation.duration`: the
/// conventions' advisory buckets.
pub const CLIENT_OPERATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Default bucket boundaries (s) for `messaging.process.duration`: from 5 ms
/// to one hour, so that both quick jobs and ten-minute jobs land in a bucket
/// of their own (the conventions' advisory buckets stop at 10 s).
pub const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
];

/// Default bucket boundaries (s) for `job.queue_time`: from 5 ms to one day,
/// since scheduled and backed-up jobs can wait for hours.
pub const QUEUE_TIME_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
    1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];

// ---- check-ins (see `checkin`) ----

/// Name of the span event a check-in adds to the process span.
pub const CHECKIN_EVENT: &str = "job.checkin";
/// `job.checkin.status` on the check-in event: `in_progress`, `ok` or `error`.
pub const CHECKIN_STATUS: &str = "job.checkin.status";
/// `job.checkin.run_id` on the check-in event: the UUID pairing a run's events.
pub const CHECKIN_RUN_ID: &str = "job.checkin.run_id";
/// `job.checkin.monitor` on the check-in event: the monitor's name.
pub const CHECKIN_MONITOR: &str = "job.checkin.monitor";
/// Gauge (unix s): the last successful run of a monitored job, per `job.name` (the monitor's name).
pub const METRIC_CHECKIN_LAST_SUCCESS: &str = "job.checkin.last_success";
/// Counter: runs the watchdog found missed, per `job.name` (the monitor's name).
pub const METRIC_CHECKIN_MISSED: &str = "job.checkin.missed";
/// Counter: runs the watchdog found stuck, per `job.name` (the monitor's name).
pub const METRIC_CHECKIN_STUCK: &str = "job.checkin.stuck";
