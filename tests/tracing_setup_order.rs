//! Setup order does not matter. An HTTP handler as a `tracing` SERVER span
//! enqueues a job (`send {queue}`), a consumer processes it
//! (`process {queue}`) with a `tracing` span inside, all exported over real
//! OTLP (gRPC and HTTP) to the in-process receiver, with the `tracing`
//! subscriber set up before `jobsight_otel` is installed (logging first,
//! with `jobsight_otel::tracing_layer()`) or after it (with
//! `Telemetry::tracing_layer()`), in link and in child mode. The monitor is
//! made before the install in both orders and records with the global
//! providers.

use std::collections::HashMap;
use std::time::Duration;

use jobsight_core::propagation::extract_propagated;
use jobsight_core::{JobMeta, JobMonitor, Propagation};
use jobsight_otel::Telemetry;
use jobsight_testkit::jobs::telemetry_builder_to;
use jobsight_testkit::otlp::{Receiver, Span, SpanKind, Transport};
use jobsight_testkit::{serial, unique};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(Clone, Copy, Debug)]
enum Order {
    /// The subscriber (with `jobsight_otel::tracing_layer()`) before `install()`.
    SubscriberFirst,
    /// `install()`, then the subscriber with `Telemetry::tracing_layer()`.
    InitFirst,
}

const WAIT: Duration = Duration::from_secs(20);

fn install(rx: &Receiver, service: &str) -> Telemetry {
    telemetry_builder_to(rx, service)
        .span_schedule_delay(Duration::from_millis(100))
        .shutdown_timeout(Duration::from_secs(5))
        .install()
        .unwrap_or_else(|e| panic!("install: {e}"))
}

fn set_up(order: Order, rx: &Receiver, service: &str) -> (Telemetry, DefaultGuard) {
    match order {
        Order::SubscriberFirst => {
            let guard = tracing::subscriber::set_default(
                tracing_subscriber::registry().with(jobsight_otel::tracing_layer()),
            );
            (install(rx, service), guard)
        }
        Order::InitFirst => {
            let telemetry = install(rx, service);
            let guard = tracing::subscriber::set_default(
                tracing_subscriber::registry().with(telemetry.tracing_layer()),
            );
            (telemetry, guard)
        }
    }
}

/// Runs the handler → send → process → in-job span story and returns the
/// four spans as received (the handler's is `None` when it was not exported).
fn story(transport: Transport, order: Order, mode: Propagation) -> [Option<Span>; 4] {
    let _lock = serial();
    let rx = Receiver::builder(transport).start();
    let service = unique("setup-order");
    let queue = unique("orders");
    let monitor = JobMonitor::builder().propagation(mode).build();
    let (telemetry, subscriber) = set_up(order, &rx, &service);

    let mut carrier: HashMap<String, String> = HashMap::new();
    {
        let handler = tracing::info_span!("POST /signup", otel.kind = "server");
        let _entered = handler.enter();
        let send = monitor.start_send(&JobMeta::builder("test", queue.clone()).build());
        send.inject(&mut carrier);
        send.succeed();
    }
    let meta = JobMeta::builder("test", queue.clone())
        .propagated(extract_propagated(&carrier))
        .build();
    let transaction = monitor.start(meta);
    {
        let _attached = transaction.attach();
        let render = tracing::info_span!("render");
        let _entered = render.enter();
    }
    transaction.succeed();
    drop(subscriber);
    telemetry
        .force_flush()
        .unwrap_or_else(|e| panic!("flush: {e}"));

    let names = [
        "POST /signup".to_owned(),
        format!("send {queue}"),
        format!("process {queue}"),
        "render".to_owned(),
    ];
    let expected = 4;
    let spans = rx.wait_for_spans_blocking(
        |s: &[Span]| s.iter().filter(|s| names.contains(&s.name)).count() >= expected,
        WAIT,
    );
    telemetry
        .shutdown()
        .unwrap_or_else(|e| panic!("shutdown: {e}"));
    for span in &spans {
        assert_eq!(
            span.resource
                .get("service.name")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            Some(service.clone()),
            "one resource: {span:#?}"
        );
    }
    names.map(|name| spans.iter().find(|s| s.name == name).cloned())
}

fn check(transport: Transport, order: Order, mode: Propagation) {
    let [handler, send, process, render] = story(transport, order, mode);
    let send = send.unwrap_or_else(|| panic!("no send span ({order:?}, {mode:?})"));
    let process = process.unwrap_or_else(|| panic!("no process span ({order:?}, {mode:?})"));
    let handler = handler.unwrap_or_else(|| panic!("no handler span ({order:?})"));
    assert_eq!(handler.kind, SpanKind::Server);
    assert_eq!(
        handler.scope_name,
        jobsight_otel::tracing_bridge::TRACING_SCOPE_NAME
    );
    assert_eq!(send.parent_span_id.as_ref(), Some(&handler.span_id));
    assert_eq!(send.trace_id, handler.trace_id);
    let render = render.unwrap_or_else(|| panic!("no render span ({order:?})"));
    assert_eq!(render.parent_span_id.as_ref(), Some(&process.span_id));
    assert_eq!(render.trace_id, process.trace_id);
    assert_eq!(send.kind, SpanKind::Producer);
    match mode {
        Propagation::Child => {
            assert_eq!(process.parent_span_id.as_ref(), Some(&send.span_id));
            assert_eq!(process.trace_id, send.trace_id);
        }
        _ => {
            assert!(process.is_root(), "{process:#?}");
            assert!(
                process
                    .links
                    .iter()
                    .any(|l| l.span_id == send.span_id && l.trace_id == send.trace_id),
                "process links to send: {process:#?}"
            );
        }
    }
}

#[test]
fn grpc_subscriber_first_link() {
    check(Transport::Grpc, Order::SubscriberFirst, Propagation::Link);
}

#[test]
fn grpc_subscriber_first_child() {
    check(Transport::Grpc, Order::SubscriberFirst, Propagation::Child);
}

#[test]
fn grpc_init_first_link() {
    check(Transport::Grpc, Order::InitFirst, Propagation::Link);
}

#[test]
fn grpc_init_first_child() {
    check(Transport::Grpc, Order::InitFirst, Propagation::Child);
}

#[test]
fn http_subscriber_first_link() {
    check(Transport::Http, Order::SubscriberFirst, Propagation::Link);
}

#[test]
fn http_subscriber_first_child() {
    check(Transport::Http, Order::SubscriberFirst, Propagation::Child);
}

#[test]
fn http_init_first_link() {
    check(Transport::Http, Order::InitFirst, Propagation::Link);
}

#[test]
fn http_init_first_child() {
    check(Transport::Http, Order::InitFirst, Propagation::Child);
}
