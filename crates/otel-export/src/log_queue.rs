//! The log processor: adds the running job's identity to each record,
//! holds a job to its cap of records, cuts long bodies, and admits records
//! to the SDK's batch log processor through a counted queue, as the span
//! queue does for spans (see `span_queue`): every record is either exported
//! or counted in [`DropCounter`] (`job_limit`, `queue_full`,
//! `export_failed`, `shutdown_timeout`).

use std::sync::Arc;
use std::time::Duration;

use jobsight_core::job_logs::JobLogScope;
use jobsight_core::semconv;
use opentelemetry::InstrumentationScope;
use opentelemetry::logs::{LogRecord as _, Severity};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{BatchLogProcessor, LogProcessor, SdkLogRecord};

use crate::Signal;
use crate::dropped::{DropCounter, DropReason};
use crate::log_limits;
use crate::span_queue::SpanQueue;

/// Default [`Builder::max_log_records_per_job`](crate::Builder::max_log_records_per_job).
pub const DEFAULT_MAX_LOG_RECORDS_PER_JOB: u32 = 1000;
/// Log records that may wait for export when `OTEL_BLRP_MAX_QUEUE_SIZE` is
/// unset (the SDK's default).
pub const DEFAULT_LOG_QUEUE_SIZE: usize = 2048;
/// Records per export request when `OTEL_BLRP_MAX_EXPORT_BATCH_SIZE` is
/// unset (the SDK's default).
pub const DEFAULT_LOG_BATCH_SIZE: usize = 512;
/// Longest wait before queued records are exported when
/// `OTEL_BLRP_SCHEDULE_DELAY` is unset (the SDK's default).
pub const DEFAULT_LOG_SCHEDULE_DELAY: Duration = Duration::from_secs(1);

/// See the module docs.
#[derive(Debug)]
pub(crate) struct JobLogProcessor {
    inner: BatchLogProcessor,
    queue: Arc<SpanQueue>,
    drops: Arc<DropCounter>,
    per_job: u32,
    body_limit: usize,
}

impl JobLogProcessor {
    /// `inner`'s queue must hold at least `queue.limit()` records, and its
    /// exporter must report to `queue` (`taken`, `settled`).
    pub(crate) fn new(
        inner: BatchLogProcessor,
        queue: Arc<SpanQueue>,
        drops: Arc<DropCounter>,
        per_job: u32,
        body_limit: usize,
    ) -> Self {
        JobLogProcessor {
            inner,
            queue,
            drops,
            per_job,
            body_limit,
        }
    }

    #[cold]
    fn over_job_limit(&self) {
        if self.drops.record(Signal::Logs, DropReason::JobLimit, 1) {
            self.drops.reports().line(&format!(
                "jobsight-otel: warning: a job made more than {} log records \
                 (Builder::max_log_records_per_job): its further records are dropped. Dropped \
                 records are counted in jobsight.telemetry.dropped (Telemetry::dropped) and on \
                 the job's span as job.logs.dropped, not printed again.",
                self.per_job
            ));
        }
    }

    #[cold]
    fn queue_full(&self) {
        if self.drops.record(Signal::Logs, DropReason::QueueFull, 1) {
            self.drops.reports().line(&format!(
                "jobsight-otel: warning: the log record queue is full ({} records waiting for \
                 export, OTEL_BLRP_MAX_QUEUE_SIZE): new records are dropped, jobs do not wait. \
                 Dropped records are counted in jobsight.telemetry.dropped (Telemetry::dropped), \
                 not printed again.",
                self.queue.limit()
            ));
        }
    }
}

/// Adds the job's identity to `record`; false when the job is over its cap.
fn add_job(record: &mut SdkLogRecord, job: &JobLogScope, cap: u32) -> bool {
    if !job.admit(cap) {
        return false;
    }
    record.add_attribute(semconv::MESSAGING_SYSTEM, job.system());
    record.add_attribute(semconv::MESSAGING_DESTINATION_NAME, job.queue());
    record.add_attribute(semconv::JOB_NAME, job.name());
    if let Some(id) = job.id() {
        record.add_attribute(semconv::MESSAGING_MESSAGE_ID, id.to_owned());
    }
    if let Some(attempt) = job.attempt() {
        record.add_attribute(semconv::JOB_ATTEMPT, i64::from(attempt));
    }
    true
}

impl LogProcessor for JobLogProcessor {
    fn emit(&self, record: &mut SdkLogRecord, scope: &InstrumentationScope) {
        let admitted = JobLogScope::map_current(|job| match job {
            Some(job) => add_job(record, job, self.per_job),
            None => true,
        });
        if !admitted {
            self.over_job_limit();
            return;
        }
        if let Some(cut) = record
            .body()
            .and_then(|body| log_limits::cut_body(body, self.body_limit))
        {
            record.set_body(cut);
        }
        // Log records are not sorted into errors and others: each may take
        // any place in the queue.
        if self.queue.admit(|| true) {
            self.inner.emit(record, scope);
        } else {
            self.queue_full();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn event_enabled(&self, level: Severity, target: &str, name: Option<&str>) -> bool {
        self.inner.event_enabled(level, target, name)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
