//! The producer's context on its way into a job: which carriers give a
//! parent, how the process span relates to it, and the baggage the job's
//! code sees.

use std::collections::HashMap;

use jobsight_core::propagation::{MAX_TRACESTATE_LEN, extract_propagated};
use jobsight_core::{JobMeta, JobMonitor, Propagation, PropagationProblem};
use jobsight_testkit::MemoryTelemetry;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::{SpanId, TraceId};
use opentelemetry::{Context, StringValue, global};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const SPAN: &str = "b7ad6b7169203331";

/// W3C trace context and baggage, what `jobsight_otel::init()` installs.
fn install() {
    global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
}

fn carrier(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn good() -> String {
    format!("00-{TRACE}-{SPAN}-01")
}

#[test]
fn well_formed_traceparents_give_the_producers_context() {
    install();
    for value in [
        good(),
        // A later version may append fields after a dash.
        format!("01-{TRACE}-{SPAN}-01-later-field"),
        format!("01-{TRACE}-{SPAN}-01"),
    ] {
        let found = extract_propagated(&carrier(&[("traceparent", &value)]));
        let cx = found.span_context().unwrap_or_else(|| panic!("{value}"));
        assert_eq!(cx.trace_id(), TraceId::from_hex(TRACE).unwrap());
        assert_eq!(cx.span_id(), SpanId::from_hex(SPAN).unwrap());
        assert_eq!(found.problem(), None, "{value}");
    }
}

/// Values the SDK's propagator would read as some context (it pads short
/// ids with zeros and accepts a `+` sign), which are not W3C `traceparent`s:
/// each must give no parent and count as invalid.
#[test]
fn traceparents_of_the_wrong_shape_give_no_parent() {
    install();
    let bad = [
        // 55 bytes, but a 30-digit trace id and an 18-digit span id.
        format!("00-{}-00{SPAN}-01", &TRACE[..30]),
        // A sign where a hex digit belongs, in each field.
        format!("+0-{TRACE}-{SPAN}-01"),
        format!("00-+{}-{SPAN}-01", &TRACE[1..]),
        format!("00-{TRACE}-+{}-01", &SPAN[1..]),
        format!("00-{TRACE}-{SPAN}-+1"),
        // Version 00 is exactly 55 bytes.
        format!("00-{TRACE}-{SPAN}-010"),
        // Later versions append fields after a dash, not digits.
        format!("01-{TRACE}-{SPAN}-010"),
        // Short: 53 bytes.
        format!("00-{}-{SPAN}-01", &TRACE[..30]),
    ];
    for value in &bad {
        let found = extract_propagated(&carrier(&[("traceparent", value)]));
        assert!(found.span_context().is_none(), "{value} gave a parent");
        assert_eq!(
            found.problem(),
            Some(PropagationProblem::Invalid),
            "{value}"
        );
    }
}

#[test]
fn tracestate_is_read_up_to_its_limit() {
    install();
    let member = "vendor=";
    let at_limit = format!("{member}{}", "a".repeat(MAX_TRACESTATE_LEN - member.len()));
    assert_eq!(at_limit.len(), MAX_TRACESTATE_LEN);
    let found = extract_propagated(&carrier(&[
        ("traceparent", &good()),
        ("tracestate", &at_limit),
    ]));
    assert!(found.span_context().is_some());
    assert_eq!(found.problem(), None);

    let over = format!("{at_limit}a");
    let found = extract_propagated(&carrier(&[("traceparent", &good()), ("tracestate", &over)]));
    // The context is kept; the oversized trace state is dropped and counted.
    assert!(found.span_context().is_some());
    assert_eq!(found.span_context().unwrap().trace_state().header(), "");
    assert_eq!(found.problem(), Some(PropagationProblem::TooLong));
}

#[test]
fn problems_are_labelled_and_counted_under_their_label() {
    install();
    assert_eq!(PropagationProblem::TooLong.as_str(), "too_long");
    assert_eq!(PropagationProblem::Invalid.as_str(), "invalid");

    let t = MemoryTelemetry::new();
    let monitor = JobMonitor::builder()
        .meter_provider(t.meter_provider())
        .tracer_provider(t.tracer_provider())
        .build();
    let long = "a".repeat(MAX_TRACESTATE_LEN + 1);
    let g = good();
    for pairs in [
        vec![("traceparent", "00-zz")],
        vec![("traceparent", g.as_str()), ("tracestate", long.as_str())],
    ] {
        let found = extract_propagated(&carrier(&pairs));
        let job = JobMeta::builder("test", "emails").propagated(found).build();
        monitor.start(job).succeed();
    }
    let points = t.sum_points("jobsight.propagation.invalid");
    let mut labels: Vec<(String, i128)> = points
        .iter()
        .map(|p| (p.attr("error.type").unwrap_or_default().to_owned(), p.value))
        .collect();
    labels.sort();
    assert_eq!(
        labels,
        [("invalid".to_owned(), 1), ("too_long".to_owned(), 1)]
    );
    assert_eq!(monitor.invalid_contexts(), 2);
}

fn producer_job() -> JobMeta {
    let found = extract_propagated(&carrier(&[
        ("traceparent", &good()),
        ("baggage", "tenant=acme"),
    ]));
    JobMeta::builder("test", "emails").propagated(found).build()
}

fn tenant_in_current_context() -> Option<StringValue> {
    Context::current()
        .baggage()
        .get("tenant")
        .map(|v| StringValue::from(v.to_string()))
}

#[test]
fn the_process_span_links_to_the_producer_or_continues_its_trace() {
    install();
    let t = MemoryTelemetry::new();
    let build = |mode| {
        JobMonitor::builder()
            .propagation(mode)
            .tracer_provider(t.tracer_provider())
            .build()
    };
    let trace = TraceId::from_hex(TRACE).unwrap();
    let span = SpanId::from_hex(SPAN).unwrap();

    build(Propagation::Link).start(producer_job()).succeed();
    let linked = t.spans().pop().expect("the linked span");
    assert_ne!(linked.span_context.trace_id(), trace);
    assert_eq!(linked.parent_span_id, SpanId::INVALID);
    assert_eq!(linked.links.links.len(), 1);
    assert_eq!(linked.links.links[0].span_context.trace_id(), trace);
    assert_eq!(linked.links.links[0].span_context.span_id(), span);

    t.clear_spans();
    build(Propagation::Child).start(producer_job()).succeed();
    let child = t.spans().pop().expect("the child span");
    assert_eq!(child.span_context.trace_id(), trace);
    assert_eq!(child.parent_span_id, span);
    assert!(child.links.links.is_empty());

    t.clear_spans();
    build(Propagation::None).start(producer_job()).succeed();
    let alone = t.spans().pop().expect("the span");
    assert_ne!(alone.span_context.trace_id(), trace);
    assert_eq!(alone.parent_span_id, SpanId::INVALID);
    assert!(alone.links.links.is_empty());
}

#[test]
fn the_jobs_code_sees_the_producers_baggage_in_every_mode() {
    install();
    let job = producer_job();
    let baggage = job.creation_baggage().expect("the producer's baggage");
    assert_eq!(
        baggage.get("tenant").map(|v| v.to_string()).as_deref(),
        Some("acme")
    );
    let t = MemoryTelemetry::new();
    for (mode, traces) in [
        (Propagation::Link, true),
        (Propagation::Child, true),
        (Propagation::None, true),
        (Propagation::Link, false),
        (Propagation::Child, false),
        (Propagation::None, false),
    ] {
        let monitor = JobMonitor::builder()
            .propagation(mode)
            .traces(traces)
            .tracer_provider(t.tracer_provider())
            .build();
        let tx = monitor.start(producer_job());
        {
            let _guard = tx.attach().expect("the producer's baggage to attach");
            assert_eq!(
                tenant_in_current_context(),
                Some(StringValue::from("acme")),
                "{mode:?} traces {traces}"
            );
        }
        tx.succeed();
    }
    assert_eq!(tenant_in_current_context(), None);
}
