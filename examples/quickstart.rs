//! The quick start: an apalis worker on the in-memory backend, monitored by
//! jobsight, with nothing else installed.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! It runs a burst of demo jobs on two queues — fast and slow ones, one kind
//! that always fails, one that fails once and succeeds on retry, one that
//! panics — exits by itself when they are done, and prints a per-queue
//! summary. With `OTEL_EXPORTER_OTLP_ENDPOINT` set it also exports every
//! span and metric to that backend (`OTEL_EXPORTER_OTLP_PROTOCOL` = `grpc`
//! or `http/protobuf`) and flushes before it exits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apalis::prelude::*;
use apalis_core::backend::queue::Queue;
use jobsight_apalis::{MonitorLayer, stamped_builder};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// A job on the `emails` queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum SendEmail {
    /// Fast, always succeeds.
    Welcome(String),
    /// The mail server refuses it the first time; the retry succeeds.
    Flaky(String),
    /// The address does not exist: fails on every attempt.
    Bounce(String),
}

/// A job on the `reports` queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum BuildReport {
    /// Takes a few hundred milliseconds.
    Monthly(u32),
    /// A bug: panics.
    Broken(u32),
}

#[derive(Debug, thiserror::Error)]
enum EmailError {
    #[error("mail server busy, try again")]
    ServerBusy,
    #[error("mailbox {0} does not exist")]
    NoSuchMailbox(String),
}

async fn send_email(job: SendEmail, attempt: Attempt) -> Result<(), BoxDynError> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    match job {
        SendEmail::Welcome(_) => Ok(()),
        // apalis counts attempts from 1 once the job runs.
        SendEmail::Flaky(_) if attempt.current() <= 1 => Err(EmailError::ServerBusy.into()),
        SendEmail::Flaky(_) => Ok(()),
        SendEmail::Bounce(to) => Err(EmailError::NoSuchMailbox(to).into()),
    }
}

async fn build_report(job: BuildReport) -> Result<(), BoxDynError> {
    match job {
        BuildReport::Monthly(n) => {
            tokio::time::sleep(Duration::from_millis(150 + 50 * u64::from(n % 6))).await;
            Ok(())
        }
        BuildReport::Broken(n) => panic!("report {n}: index out of bounds"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One line per panic instead of a backtrace: the demo panics on purpose.
    std::panic::set_hook(Box::new(|info| eprintln!("(demo) a job panicked: {info}")));

    // OTLP export when OTEL_EXPORTER_OTLP_ENDPOINT is set; the summary always.
    let telemetry = jobsight_otel::Builder::new()
        .service_name("jobsight-quickstart")
        .summary(true)
        .install()?;

    let mut emails = MemoryStorage::new();
    let mut reports = MemoryStorage::new();
    let mut jobs = 0;
    for i in 0..20 {
        let job = match i % 10 {
            3 => SendEmail::Flaky(format!("user{i}@example.com")),
            7 => SendEmail::Bounce(format!("nobody{i}@example.com")),
            _ => SendEmail::Welcome(format!("user{i}@example.com")),
        };
        // Two attempts per email: apalis's RetryPolicy::retries(1) below.
        let task = stamped_builder(
            TaskBuilder::new(job)
                .queue(Queue::from("emails"))
                .max_attempts(2),
        )
        .build();
        emails.push_task(task).await?;
        jobs += 1;
    }
    for i in 0..12 {
        let job = if i == 5 {
            BuildReport::Broken(i)
        } else {
            BuildReport::Monthly(i)
        };
        reports
            .push_task(stamped_builder(TaskBuilder::new(job).queue(Queue::from("reports"))).build())
            .await?;
        jobs += 1;
    }
    eprintln!("jobsight quickstart: running {jobs} jobs on queues `emails` and `reports`…");

    // apalis has no "queue empty" event: count finished jobs, then stop.
    let finished = Arc::new(AtomicUsize::new(0));
    let all_done = Arc::new(Notify::new());
    let (count, done) = (finished.clone(), all_done.clone());
    let emails = std::sync::Mutex::new(Some(emails));
    let reports = std::sync::Mutex::new(Some(reports));
    Monitor::new()
        .on_event(move |_, event| {
            if matches!(event, Event::Success(_) | Event::Error(_))
                && count.fetch_add(1, Ordering::SeqCst) + 1 == jobs
            {
                done.notify_one();
            }
        })
        .register(move |_| {
            WorkerBuilder::new(jobsight_apalis::worker_name("email-sender"))
                .backend(
                    emails
                        .lock()
                        .ok()
                        .and_then(|mut s| s.take())
                        .unwrap_or_default(),
                )
                .retry(RetryPolicy::retries(1))
                .layer(MonitorLayer::new())
                .build(send_email)
        })
        .register(move |_| {
            WorkerBuilder::new(jobsight_apalis::worker_name("report-builder"))
                .backend(
                    reports
                        .lock()
                        .ok()
                        .and_then(|mut s| s.take())
                        .unwrap_or_default(),
                )
                .layer(MonitorLayer::new())
                .concurrency(4)
                .build(build_report)
        })
        .shutdown_timeout(Duration::from_secs(5))
        .run_with_signal(async move {
            all_done.notified().await;
            Ok(())
        })
        .await?;

    eprintln!(
        "jobsight quickstart: {} jobs finished",
        finished.load(Ordering::SeqCst)
    );
    // Flushes every span and metric (within a deadline) and prints the summary.
    telemetry.shutdown()?;
    Ok(())
}
