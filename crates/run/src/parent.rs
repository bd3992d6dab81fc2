//! Trace context across nested runs: an incoming `TRACEPARENT` (and
//! `TRACESTATE`) makes the run's span its child; the command gets the
//! span's own `TRACEPARENT`.
//!
//! A malformed `TRACEPARENT` is ignored (the span starts a new trace), as
//! W3C trace context asks of a receiver.

use std::str::FromStr;

use jobsight_core::Transaction;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, ContextGuard};

/// Makes the context of `TRACEPARENT` current, for the run's span to start
/// under; `None` when there is none (or it is malformed).
pub fn attach_from_env() -> Option<ContextGuard> {
    let traceparent = std::env::var("TRACEPARENT").ok()?;
    let tracestate = std::env::var("TRACESTATE").ok();
    let remote = parse(&traceparent, tracestate.as_deref())?;
    Some(Context::new().with_remote_span_context(remote).attach())
}

/// A W3C `traceparent` (`00-<trace id>-<span id>-<flags>`) as a remote span
/// context.
pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    let [version, trace, span, flags, rest @ ..] = parts.as_slice() else {
        return None;
    };
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if !hex(version, 2) || *version == "ff" || (*version == "00" && !rest.is_empty()) {
        return None;
    }
    if !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let state = tracestate
        .and_then(|s| TraceState::from_str(s).ok())
        .unwrap_or_default();
    let cx = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8()),
        true,
        state,
    );
    cx.is_valid().then_some(cx)
}

/// W3C `traceparent` of the run's span, for the command's environment.
pub fn traceparent(tx: &Transaction) -> Option<String> {
    let cx = tx.context().span().span_context().clone();
    cx.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            cx.trace_id(),
            cx.span_id(),
            cx.trace_flags().to_u8()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents() {
        let cx = parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("k=v"),
        )
        .unwrap();
        assert_eq!(
            cx.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert!(cx.is_sampled() && cx.is_remote());
        assert_eq!(cx.trace_state().get("k"), Some("v"));
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0f067aa0ba902b7-01",
        ] {
            assert!(parse(bad, None).is_none(), "{bad}");
        }
    }
}
