//! Every jobsight metric, served by jobsight-otel's scrape endpoint, has the
//! name an OpenTelemetry Collector's `prometheus` exporter would give it.
//!
//! `collector_name` restates the collector's rules (collector-contrib
//! `pkg/translator/prometheus`, `normalizeName` with the default
//! `NormalizeName` feature gate and metric suffixes on): split the name on
//! anything but letters and digits and join with `_`; append the unit's
//! Prometheus word (`s` → `seconds`) unless the unit is empty, an `{…}`
//! annotation, or already a token; `_total` for monotonic sums; `_ratio`
//! for unit `1` gauges. Label names: anything but letters, digits and `_`
//! becomes `_`. The README's table is the same list.

use std::time::{Duration, SystemTime};

use jobsight_apalis::RedisQueueStats;
use jobsight_core::{JobMeta, JobMonitor, semconv};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Counter,
    UpDownCounter,
    Histogram,
    Gauge,
}

/// Every metric jobsight records: name, unit, instrument.
const METRICS: &[(&str, &str, Kind)] = &[
    (semconv::METRIC_PROCESS_DURATION, "s", Kind::Histogram),
    (semconv::METRIC_QUEUE_TIME, "s", Kind::Histogram),
    (
        semconv::METRIC_CONSUMED_MESSAGES,
        "{message}",
        Kind::Counter,
    ),
    (semconv::METRIC_OUTCOMES, "{attempt}", Kind::Counter),
    (semconv::METRIC_ACTIVE, "{job}", Kind::UpDownCounter),
    (semconv::METRIC_RETRIES, "{attempt}", Kind::Counter),
    (
        semconv::METRIC_CARDINALITY_OVERFLOW,
        "{attempt}",
        Kind::Counter,
    ),
    (semconv::METRIC_QUEUE_DEPTH, "{job}", Kind::Gauge),
    (semconv::METRIC_QUEUE_OLDEST_AGE, "s", Kind::Gauge),
    (semconv::METRIC_QUEUE_SCHEDULED, "{job}", Kind::Gauge),
    (semconv::METRIC_QUEUE_RUNNING, "{job}", Kind::Gauge),
    (semconv::METRIC_QUEUE_DONE, "{job}", Kind::Gauge),
    (semconv::METRIC_QUEUE_DEAD, "{job}", Kind::Gauge),
    (semconv::METRIC_QUEUE_POLL_ERRORS, "{error}", Kind::Counter),
    // jobsight-otel's own: what it dropped (an observable counter).
    ("jobsight.telemetry.dropped", "{item}", Kind::Counter),
];

/// The collector's name for a metric (see the module docs).
fn collector_name(name: &str, unit: &str, kind: Kind) -> String {
    let mut tokens: Vec<String> = name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    let unit_word = match unit {
        "" => None,
        u if u.contains('{') || u.contains('}') => None,
        "s" => Some("seconds"),
        "ms" => Some("milliseconds"),
        "By" => Some("bytes"),
        "1" => None,
        other => panic!("add the unit {other} to this test"),
    };
    if let Some(word) = unit_word
        && !tokens.iter().any(|t| t == word)
    {
        tokens.push(word.to_owned());
    }
    if kind == Kind::Counter {
        tokens.retain(|t| t != "total");
        tokens.push("total".to_owned());
    }
    tokens.join("_")
}

fn collector_label(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn prometheus_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Counter => "counter",
        Kind::UpDownCounter | Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    }
}

fn scrape(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_is_named_as_the_collector_names_it() {
    let telemetry = jobsight_otel::Builder::default()
        .prometheus_endpoint("127.0.0.1:0")
        .summary(false)
        .install()
        .expect("install");
    let addr = telemetry.prometheus_addr().expect("scrape endpoint");

    let monitor = JobMonitor::builder().max_kinds(2).build();
    for (name, attempt) in [("welcome", 1), ("welcome", 2), ("digest", 1), ("extra", 1)] {
        let meta = JobMeta::builder("apalis", "emails")
            .name(name)
            .attempt(attempt)
            .enqueued_at(SystemTime::now() - Duration::from_millis(50))
            .build();
        monitor.start(meta).succeed();
    }
    let conn = apalis_redis::connect("redis://127.0.0.1:6379/")
        .await
        .expect("Redis on 127.0.0.1:6379");
    let queue = format!("jobsight-test-names-{}", std::process::id());
    let stats = RedisQueueStats::new(conn)
        .queue(&queue)
        .interval(Duration::from_millis(50))
        .start()
        .expect("poller");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.polls() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no poll");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let body = tokio::task::spawn_blocking(move || scrape(addr))
        .await
        .expect("scraped");
    for &(name, unit, kind) in METRICS {
        let expected = collector_name(name, unit, kind);
        let type_line = format!("# TYPE {expected} {}", prometheus_type(kind));
        assert!(
            body.contains(&type_line),
            "{name} ({unit}): expected `{type_line}`\n{body}"
        );
    }
    for key in [
        semconv::MESSAGING_SYSTEM,
        semconv::MESSAGING_DESTINATION_NAME,
        semconv::JOB_NAME,
        semconv::JOB_OUTCOME,
    ] {
        assert!(
            body.contains(&format!("{}=\"", collector_label(key))),
            "label {key}\n{body}"
        );
    }
    assert!(body.contains("messaging_process_duration_seconds_bucket{"));
    assert!(body.contains(&format!("messaging_destination_name=\"{queue}\"")));
    drop(stats);
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .expect("joined")
        .expect("shutdown");
}
