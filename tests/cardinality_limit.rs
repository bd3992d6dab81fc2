//! 100 000 distinct dynamic job names through one monitor: what crosses the
//! wire (OTLP/HTTP to the in-process receiver) stays at the kind limit, and
//! the overflow is counted.

use jobsight_testkit::otlp::Receiver;
use std::collections::BTreeSet;
use std::time::Duration;

use jobsight_core::kinds::{DEFAULT_MAX_KINDS, OVERFLOW_NAME};
use jobsight_core::{JobMeta, JobMonitor, semconv};
use opentelemetry::trace::noop::NoopTracerProvider;

const JOBS: usize = 100_000;
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_dynamic_job_names_stay_at_the_limit() {
    let rx = Receiver::http().await;
    let telemetry = jobsight_otel::Builder::default()
        .endpoint(rx.endpoint())
        .summary(false)
        .install()
        .expect("install");
    // The process-wide kind table (default limit); spans are not the point.
    let monitor = JobMonitor::builder()
        .tracer_provider(&NoopTracerProvider::new())
        .build();
    tokio::task::spawn_blocking(move || {
        for i in 0..JOBS {
            let meta = JobMeta::builder("test", "reports")
                .name(format!("report-for-customer-{i}"))
                .attempt(1)
                .build();
            monitor.start(meta).succeed();
        }
        monitor
    })
    .await
    .expect("jobs ran");
    let telemetry = tokio::task::spawn_blocking(move || {
        telemetry.force_flush().expect("flush");
        telemetry
    })
    .await
    .expect("flushed");

    let overflow = rx
        .wait_for_metric(semconv::METRIC_CARDINALITY_OVERFLOW, WAIT)
        .await;
    let overflowed: f64 = overflow.iter().filter_map(|p| p.value).sum();
    assert_eq!(overflowed as usize, JOBS - DEFAULT_MAX_KINDS);

    for name in [
        semconv::METRIC_CONSUMED_MESSAGES,
        semconv::METRIC_PROCESS_DURATION,
        semconv::METRIC_OUTCOMES,
        semconv::METRIC_ACTIVE,
    ] {
        let points = rx.metric(name);
        let series: BTreeSet<(String, String)> = points
            .iter()
            .map(|p| {
                assert!(
                    p.attr("otel.metric.overflow").is_none(),
                    "the SDK's own limit was hit for {name}"
                );
                let get = |k: &str| p.attr(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                (
                    get(semconv::MESSAGING_DESTINATION_NAME),
                    get(semconv::JOB_NAME),
                )
            })
            .collect();
        assert_eq!(
            series.len(),
            DEFAULT_MAX_KINDS + 1,
            "{name}: the limit plus one `_other` series"
        );
        assert!(series.contains(&(OVERFLOW_NAME.to_owned(), OVERFLOW_NAME.to_owned())));
        assert_eq!(points.len(), series.len(), "{name}: one point per series");
    }
    let consumed: f64 = rx
        .metric(semconv::METRIC_CONSUMED_MESSAGES)
        .iter()
        .filter_map(|p| p.value)
        .sum();
    assert_eq!(
        consumed as usize, JOBS,
        "every job is counted, folded or not"
    );

    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .expect("joined")
        .expect("shutdown");
}
