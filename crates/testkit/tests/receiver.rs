//! The in-process OTLP receiver, proved with the real opentelemetry-otlp
//! exporters over the wire (gRPC/tonic and HTTP/protobuf). Its TLS front
//! ends are proved by jobsight-otel's https export tests. Independent of
//! the jobsight crates.

use jobsight_testkit::otlp::{
    MetricKind, Mode, Receiver, Signal, Span, SpanKind, StatusCode, Transport,
};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Span as _, SpanKind as ApiSpanKind, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::{MetricExporter, Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;

const WAIT: Duration = Duration::from_secs(10);
const SERVICE: &str = "receiver-selftest";

/// Providers built with exporters pointed at `rx`. Must be called inside a
/// multi-thread tokio runtime (the tonic channel lives on it).
fn providers(rx: &Receiver) -> (SdkTracerProvider, SdkMeterProvider) {
    let resource = || Resource::builder().with_service_name(SERVICE).build();
    let (span_exporter, metric_exporter) = match rx.transport() {
        Transport::Grpc => (
            SpanExporter::builder()
                .with_tonic()
                .with_endpoint(rx.traces_endpoint())
                .with_timeout(Duration::from_secs(5))
                .build()
                .expect("grpc span exporter"),
            MetricExporter::builder()
                .with_tonic()
                .with_endpoint(rx.metrics_endpoint())
                .with_timeout(Duration::from_secs(5))
                .build()
                .expect("grpc metric exporter"),
        ),
        Transport::Http => (
            SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(rx.traces_endpoint())
                .with_timeout(Duration::from_secs(5))
                .build()
                .expect("http span exporter"),
            MetricExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(rx.metrics_endpoint())
                .with_timeout(Duration::from_secs(5))
                .build()
                .expect("http metric exporter"),
        ),
    };
    let tracer_provider = SdkTracerProvider::builder()
        .with_batch_exporter(span_exporter)
        .with_resource(resource())
        .build();
    // A long interval: only force_flush/shutdown export, so the test is deterministic.
    let reader = PeriodicReader::builder(metric_exporter)
        .with_interval(Duration::from_secs(3600))
        .build();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource())
        .build();
    (tracer_provider, meter_provider)
}

fn emit(tracer_provider: &SdkTracerProvider, meter_provider: &SdkMeterProvider) {
    let tracer = tracer_provider.tracer("selftest-scope");
    let mut span = tracer
        .span_builder("process email")
        .with_kind(ApiSpanKind::Consumer)
        .with_attributes(vec![
            KeyValue::new("messaging.system", "apalis"),
            KeyValue::new("job.attempt", 2_i64),
            KeyValue::new("job.queue_time", 0.25_f64),
            KeyValue::new("job.retryable", true),
        ])
        .start(&tracer);
    span.add_event("progress", vec![KeyValue::new("tick", 3_i64)]);
    span.set_status(opentelemetry::trace::Status::error("boom"));
    span.end();

    let meter = meter_provider.meter("selftest-scope");
    let histogram = meter
        .f64_histogram("job.duration")
        .with_unit("s")
        .with_boundaries(vec![1.0, 5.0])
        .build();
    let attrs = [KeyValue::new("messaging.destination.name", "email")];
    histogram.record(0.5, &attrs);
    histogram.record(3.0, &attrs);
}

/// Flushes both providers off the runtime threads, then shuts them down and drops
/// them there too (FIELD-NOTES: blocking calls must leave the tokio workers free).
async fn flush_and_shutdown(
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
) -> (OTelSdkResult, OTelSdkResult) {
    tokio::task::spawn_blocking(move || {
        let traces = tracer_provider.force_flush();
        let metrics = meter_provider.force_flush();
        let _ = tracer_provider.shutdown_with_timeout(Duration::from_secs(5));
        let _ = meter_provider.shutdown();
        drop((tracer_provider, meter_provider));
        (traces, metrics)
    })
    .await
    .expect("flush thread panicked")
}

fn assert_span(span: &Span) {
    assert_eq!(span.name, "process email");
    assert_eq!(span.kind, SpanKind::Consumer);
    assert_eq!(span.trace_id.len(), 32, "{span:?}");
    assert_eq!(span.span_id.len(), 16, "{span:?}");
    assert!(span.is_root());
    assert_eq!(span.attr_str("messaging.system"), Some("apalis"));
    assert_eq!(span.attr("job.attempt").and_then(|v| v.as_i64()), Some(2));
    assert_eq!(
        span.attr("job.queue_time").and_then(|v| v.as_f64()),
        Some(0.25)
    );
    assert_eq!(
        span.attr("job.retryable").and_then(|v| v.as_bool()),
        Some(true)
    );
    assert_eq!(span.status_code, StatusCode::Error);
    assert_eq!(span.status_message, "boom");
    let event = span.event("progress").expect("progress event");
    assert_eq!(
        event.attributes.get("tick").and_then(|v| v.as_i64()),
        Some(3)
    );
    assert!(span.links.is_empty());
    assert_eq!(
        span.resource.get("service.name").and_then(|v| v.as_str()),
        Some(SERVICE)
    );
    assert_eq!(span.scope_name, "selftest-scope");
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano && span.start_time_unix_nano > 0);
}

async fn roundtrip(transport: Transport) {
    let rx = Receiver::start(transport).await;
    let (tp, mp) = providers(&rx);
    emit(&tp, &mp);
    let (traces, metrics) = flush_and_shutdown(tp, mp).await;
    traces.expect("trace flush");
    metrics.expect("metric flush");

    let spans = rx.wait_for_spans(1, WAIT).await;
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_span(&spans[0]);
    assert_eq!(rx.raw_traces().len(), rx.request_count(Signal::Traces));

    let points = rx.wait_for_metric("job.duration", WAIT).await;
    let p = points.first().expect("job.duration point");
    assert_eq!(p.kind, MetricKind::Histogram);
    assert_eq!(p.unit, "s");
    assert_eq!(p.count, Some(2));
    assert_eq!(p.sum, Some(3.5));
    assert_eq!(p.min, Some(0.5));
    assert_eq!(p.max, Some(3.0));
    assert_eq!(p.explicit_bounds, vec![1.0, 5.0]);
    assert_eq!(p.bucket_counts, vec![1, 1, 0]);
    assert_eq!(
        p.attr("messaging.destination.name")
            .and_then(|v| v.as_str()),
        Some("email")
    );
    assert_eq!(
        p.resource.get("service.name").and_then(|v| v.as_str()),
        Some(SERVICE)
    );
    assert_eq!(p.scope_name, "selftest-scope");
    assert!(p.time_unix_nano >= p.start_time_unix_nano && p.start_time_unix_nano > 0);
    // force_flush and shutdown each export the cumulative stream once.
    assert!(rx.request_count(Signal::Metrics) >= 1);
    assert_eq!(rx.raw_metrics().len(), rx.request_count(Signal::Metrics));
}

async fn reject_metrics_only(transport: Transport) {
    let rx = Receiver::start(transport).await;
    rx.reject_metrics(true);
    assert_eq!(rx.mode(Signal::Metrics), Mode::Reject(404));
    let (tp, mp) = providers(&rx);
    emit(&tp, &mp);
    let (traces, metrics) = flush_and_shutdown(tp, mp).await;
    traces.expect("traces must still be exported");
    assert!(
        metrics.is_err(),
        "metrics export should fail, got {metrics:?}"
    );

    let spans = rx.wait_for_spans(1, WAIT).await;
    assert_eq!(spans.len(), 1);
    assert_span(&spans[0]);
    assert!(
        rx.request_count(Signal::Metrics) >= 1,
        "the rejected request arrived"
    );
    assert!(rx.metrics().is_empty(), "rejected requests are not kept");
    assert!(rx.raw_metrics().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_receives_spans_and_histograms() {
    roundtrip(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_receives_spans_and_histograms() {
    roundtrip(Transport::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_reject_metrics_fails_metrics_export_only() {
    reject_metrics_only(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reject_metrics_fails_metrics_export_only() {
    reject_metrics_only(Transport::Http).await;
}

/// Sends one raw HTTP/1.1 request and returns the status code.
async fn raw_post(rx: &Receiver, path: &str, headers: &str, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(rx.addr()).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        rx.addr(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad response: {response}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refuses_json_gzip_and_garbage() {
    let rx = Receiver::http().await;
    let json = "Content-Type: application/json\r\n";
    let gzip = "Content-Type: application/x-protobuf\r\nContent-Encoding: gzip\r\n";
    let proto = "Content-Type: application/x-protobuf\r\n";
    assert_eq!(raw_post(&rx, "/v1/traces", json, b"{}").await, 415);
    assert_eq!(raw_post(&rx, "/v1/traces", gzip, b"\x1f\x8b").await, 415);
    assert_eq!(
        raw_post(&rx, "/v1/metrics", proto, b"\xff\xff\xff").await,
        400
    );
    // An empty protobuf body is a valid, empty request.
    assert_eq!(raw_post(&rx, "/v1/traces", proto, b"").await, 200);
    rx.set_mode(Signal::Traces, Mode::Reject(503));
    assert_eq!(raw_post(&rx, "/v1/traces", proto, b"").await, 503);
    assert_eq!(rx.request_count(Signal::Traces), 4);
    assert_eq!(rx.request_count(Signal::Metrics), 1);
    assert_eq!(rx.raw_traces().len(), 1);
    assert!(rx.spans().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_mode_holds_the_answer() {
    let rx = Receiver::http().await;
    rx.set_mode(Signal::Traces, Mode::Delay(Duration::from_millis(300)));
    let started = std::time::Instant::now();
    let proto = "Content-Type: application/x-protobuf\r\n";
    assert_eq!(raw_post(&rx, "/v1/traces", proto, b"").await, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(rx.raw_traces().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_receiver_closes_the_port() {
    for transport in [Transport::Grpc, Transport::Http] {
        let rx = Receiver::start(transport).await;
        let addr = rx.addr();
        tokio::net::TcpStream::connect(addr)
            .await
            .expect("listening");
        drop(rx);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{transport:?} still listening"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
