//! The export pipeline never exports itself as logs. With the log filter at
//! `trace` and the `tracing` log layer as the process's global subscriber,
//! the events that `h2`, `tonic`, `hyper` and `tower` write while log
//! records are sent over OTLP/gRPC (on the export runtime's thread) and
//! received (by the in-process receiver, on the test's runtime) do not
//! become log records: no record about sending records, no loop.
//!
//! One test in its own binary: the global subscriber is set once.

use std::time::Duration;

use jobsight_otel::{Builder, Protocol};
use jobsight_testkit::otlp::{LogRecord, Receiver};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Crates of the export pipeline: a record from any of them is a loop.
const PIPELINE: &[&str] = &["h2", "hyper", "hyper_util", "tonic", "tower", "reqwest"];

fn from_pipeline(record: &LogRecord) -> bool {
    PIPELINE.iter().any(|name| {
        record.scope_name == *name || record.scope_name.starts_with(&format!("{name}::"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporting_logs_over_grpc_logs_nothing_of_its_own() {
    let rx = Receiver::grpc().await;
    let telemetry = Builder::new()
        .service_name("logs-feedback")
        .endpoint(rx.endpoint())
        .protocol(Protocol::Grpc)
        .summary(false)
        .log_filter("trace")
        .shutdown_timeout(Duration::from_secs(5))
        .install()
        .expect("install telemetry");
    tracing_subscriber::registry()
        .with(telemetry.tracing_log_layer())
        .init();
    // Several export rounds: each one sends records, and the second and
    // later ones would carry what the earlier ones logged.
    for round in 0..4 {
        tracing::info!(target: "app", round, "application line {round}");
        tokio::task::spawn_blocking({
            let provider = telemetry.logger_provider().expect("logs exported").clone();
            move || provider.force_flush()
        })
        .await
        .expect("flush thread")
        .expect("flush");
    }
    let logs = rx
        .wait_for_logs(
            |l: &[LogRecord]| l.iter().filter(|r| r.scope_name == "app").count() >= 4,
            Duration::from_secs(10),
        )
        .await;
    let app = logs.iter().filter(|r| r.scope_name == "app").count();
    assert_eq!(app, 4, "the application's lines arrive: {logs:#?}");
    let looped: Vec<_> = logs.iter().filter(|r| from_pipeline(r)).collect();
    assert!(
        looped.is_empty(),
        "{} records from the export pipeline, e.g. {:#?}",
        looped.len(),
        looped.first()
    );
    let dropped = telemetry.dropped();
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .expect("shutdown thread")
        .expect("shutdown");
    assert!(dropped.is_empty(), "{dropped:?}");
}
