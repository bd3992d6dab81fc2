//! Every tracer and meter jobsight creates carries the schema URL of the
//! semantic-conventions version its names follow, as it crosses the wire:
//! the job's spans and metrics (scope `jobsight`) and jobsight-otel's own
//! `jobsight.telemetry.dropped` (scope `jobsight-otel`), over OTLP/gRPC to
//! the in-process receiver.

use std::time::Duration;

use jobsight_core::{JobMeta, semconv};
use jobsight_testkit::jobs::{DROPPED_METRIC, flush, monitor_of, telemetry_to};
use jobsight_testkit::otlp::{MetricPoint, Receiver};
use jobsight_testkit::unique;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_carry_the_semconv_schema_url() {
    assert_eq!(
        semconv::SCHEMA_URL,
        format!(
            "https://opentelemetry.io/schemas/{}",
            semconv::SEMCONV_VERSION
        )
    );
    let rx = Receiver::grpc().await;
    let telemetry = telemetry_to(&rx, &unique("schema-url"));
    let monitor = monitor_of(&telemetry);
    monitor
        .start(JobMeta::builder("test", "schema").name("stamp").build())
        .succeed();
    let telemetry = flush(telemetry).await;

    let spans = rx
        .wait_for_spans(|s: &[_]| !s.is_empty(), Duration::from_secs(20))
        .await;
    let process = spans
        .iter()
        .find(|s| s.name == "process schema")
        .unwrap_or_else(|| panic!("no process span in {spans:#?}"));
    assert_eq!(process.scope_name, semconv::SCOPE_NAME);
    assert_eq!(process.scope_schema_url, semconv::SCHEMA_URL);

    let has = |points: &[MetricPoint], name: &str| points.iter().any(|p| p.name == name);
    let points = rx
        .wait_for_metrics(
            |p: &[MetricPoint]| has(p, semconv::METRIC_PROCESS_DURATION) && has(p, DROPPED_METRIC),
            Duration::from_secs(20),
        )
        .await;
    for name in [
        semconv::METRIC_PROCESS_DURATION,
        semconv::METRIC_CONSUMED_MESSAGES,
        semconv::METRIC_OUTCOMES,
        DROPPED_METRIC,
    ] {
        let point = points
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{name} did not arrive"));
        assert_eq!(point.scope_schema_url, semconv::SCHEMA_URL, "{name}");
    }
    // No scope of ours without it.
    for point in &points {
        if point.scope_name.starts_with("jobsight") {
            assert_eq!(
                point.scope_schema_url,
                semconv::SCHEMA_URL,
                "{}",
                point.name
            );
        }
    }
    drop(telemetry);
}
