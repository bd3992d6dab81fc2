//! `Builder::exponential_histograms(true)`: jobsight's two histograms cross
//! the wire as OTLP exponential histograms; other metrics are untouched.

use jobsight_testkit::otlp::{MetricKind, Receiver};
use std::time::{Duration, SystemTime};

use jobsight_core::{JobMeta, JobMonitor, semconv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histograms_are_exponential_when_asked() {
    let rx = Receiver::grpc().await;
    let telemetry = jobsight_otel::Builder::default()
        .endpoint(rx.endpoint())
        .protocol(jobsight_otel::Protocol::Grpc)
        .exponential_histograms(true)
        .install()
        .expect("install");
    let monitor = JobMonitor::new();
    for waited in [1, 30, 3600] {
        let meta = JobMeta::builder("test", "emails")
            .name("welcome")
            .enqueued_at(SystemTime::now() - Duration::from_secs(waited))
            .build();
        monitor.start(meta).succeed();
    }
    let telemetry = tokio::task::spawn_blocking(move || {
        telemetry.force_flush().expect("flush");
        telemetry
    })
    .await
    .expect("flushed");
    for name in [semconv::METRIC_PROCESS_DURATION, semconv::METRIC_QUEUE_TIME] {
        let points = rx.wait_for_metric(name, Duration::from_secs(10)).await;
        assert!(!points.is_empty(), "{name} not exported");
        assert!(
            points.iter().all(|p| p.kind == MetricKind::ExpHistogram),
            "{name}: {:?}",
            points.iter().map(|p| p.kind).collect::<Vec<_>>()
        );
        assert_eq!(points[0].count, Some(3));
    }
    let queue_time = rx.metric(semconv::METRIC_QUEUE_TIME);
    let max = queue_time[0].max.expect("max recorded");
    assert!((3600.0..3700.0).contains(&max), "{max}");
    assert!(
        rx.metric(semconv::METRIC_CONSUMED_MESSAGES)
            .iter()
            .all(|p| p.kind == MetricKind::Sum)
    );
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .expect("joined")
        .expect("shutdown");
}
