//! Carrying the creation context of a job from the code that enqueued it to
//! the code that runs it.
//!
//! The producer injects W3C `traceparent` / `tracestate` (and baggage) into a
//! string map that travels with the job; the consumer extracts it and, by
//! default, **links** the `process {queue}` span to it (the OpenTelemetry
//! messaging conventions' advice for jobs that may run much later, and for
//! retries). [`Propagation`] chooses between a link, a parent, or nothing.
//!
//! Both directions use the global text map propagator, which
//! `jobsight_otel::init()` sets to W3C trace context plus baggage.

use opentelemetry::Context;
use opentelemetry::global;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{SpanContext, TraceContextExt};

/// How the `process {queue}` span relates to the job's creation context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// The process span starts a new trace and carries a span link to the
    /// creation context. The default.
    #[default]
    Link,
    /// The process span continues the producer's trace as a child.
    Child,
    /// The creation context is ignored.
    None,
}

/// Extracts the creation context from `carrier` with the global propagator.
/// Returns `None` when the carrier holds no valid span context.
pub fn extract(carrier: &dyn Extractor) -> Option<SpanContext> {
    let cx = global::get_text_map_propagator(|p| p.extract(carrier));
    let span_cx = cx.span().span_context().clone();
    span_cx.is_valid().then_some(span_cx)
}

/// Injects `cx` (usually [`Context::current`]) into `carrier` with the global
/// propagator.
pub fn inject(cx: &Context, carrier: &mut dyn Injector) {
    global::get_text_map_propagator(|p| p.inject_context(cx, carrier));
}
