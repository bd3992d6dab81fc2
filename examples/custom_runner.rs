//! A job runner that is not apalis — a hand-rolled loop over a channel —
//! monitored with `jobsight-core` by hand: start a transaction, run the job
//! inside its context, finish it with the result.
//!
//! ```text
//! cargo run --example custom_runner
//! ```

use std::time::{Duration, SystemTime};

use jobsight_core::{DefaultClassifier, JobMeta, JobMonitor, Outcome};
use opentelemetry::trace::FutureExt;
use tokio::sync::mpsc;

/// What the producer sends: the job and when it was enqueued.
struct Envelope {
    id: u64,
    user: String,
    attempt: u32,
    enqueued_at: SystemTime,
}

#[derive(Debug, thiserror::Error)]
enum ResizeError {
    #[error("image for {0} is corrupt")]
    Corrupt(String),
    #[error("user {0} deleted their account")]
    UserGone(String),
}

async fn resize_avatar(user: &str, attempt: u32) -> Result<(), ResizeError> {
    tokio::time::sleep(Duration::from_millis(20)).await;
    match user {
        "mallory" => Err(ResizeError::Corrupt(user.to_owned())),
        "eve" => Err(ResizeError::UserGone(user.to_owned())),
        "bob" if attempt == 1 => Err(ResizeError::Corrupt(user.to_owned())),
        _ => Ok(()),
    }
}

const MAX_ATTEMPTS: u32 = 2;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let telemetry = jobsight_otel::Builder::new()
        .service_name("custom-runner")
        .summary(true)
        .install()?;

    // A deleted user is not a failure worth an alert: ignore that error.
    let monitor = JobMonitor::builder()
        .classifier(DefaultClassifier::new().ignore_if(|e| {
            matches!(
                e.downcast_ref::<ResizeError>(),
                Some(ResizeError::UserGone(_))
            )
        }))
        .build();

    let (tx, mut rx) = mpsc::unbounded_channel::<Envelope>();
    for (id, user) in ["ada", "bob", "mallory", "eve", "grace"]
        .into_iter()
        .enumerate()
    {
        tx.send(Envelope {
            id: id as u64,
            user: user.to_owned(),
            attempt: 1,
            enqueued_at: SystemTime::now(),
        })?;
    }

    while let Ok(job) = rx.try_recv() {
        let meta = JobMeta::builder("hand-rolled", "avatars")
            .name("resize_avatar")
            .id(job.id.to_string())
            .attempt(job.attempt)
            .max_attempts(MAX_ATTEMPTS)
            .enqueued_at(job.enqueued_at)
            .build();
        let transaction = monitor.start(meta);
        // Spans the job creates are children of `process avatars`.
        let cx = transaction.context().clone();
        let result = resize_avatar(&job.user, job.attempt).with_context(cx).await;
        match result {
            Ok(()) => transaction.succeed(),
            Err(error) => {
                let outcome = transaction.fail(&error);
                println!(
                    "job {} ({}) attempt {}: {outcome}",
                    job.id, job.user, job.attempt
                );
                if outcome == (Outcome::Failed { retryable: true }) {
                    tx.send(Envelope {
                        attempt: job.attempt + 1,
                        enqueued_at: SystemTime::now(),
                        ..job
                    })?;
                }
            }
        }
    }

    telemetry.shutdown()?;
    Ok(())
}
