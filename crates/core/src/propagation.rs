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
//!
//! # Baggage
//! Baggage the producer had is given to the job's code in every mode: the
//! context attached while the job runs carries it
//! (`Context::current().baggage()`), also with [`Propagation::None`], which
//! ignores only the trace context.
//!
//! # Hostile input
//! A job's metadata comes from whoever could write to the queue.
//! [`extract_propagated`] hands the propagator no value longer than
//! [`MAX_TRACEPARENT_LEN`] (`traceparent`), [`MAX_TRACESTATE_LEN`]
//! (`tracestate`) or [`MAX_FIELD_LEN`] (anything else, baggage included):
//! longer values are dropped whole. A `traceparent` that is present but does
//! not give a valid span context (malformed, truncated, unknown version
//! `ff`, all-zero ids, upper-case hex) is dropped too. Either way the job
//! runs as if the producer had sent nothing — a new root span, no link — and
//! the problem is returned as a [`PropagationProblem`], which
//! [`crate::Transaction`] counts (`jobsight.propagation.invalid` and
//! [`crate::JobMonitor::invalid_contexts`]) instead of logging it.

use std::cell::Cell;

use opentelemetry::Context;
use opentelemetry::baggage::{Baggage, BaggageExt, KeyValueMetadata};
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
    /// The creation context is ignored (its baggage is still given to the job).
    None,
}

/// The W3C trace context field carrying trace id, span id and flags.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C trace context field carrying vendor trace state.
pub const TRACESTATE: &str = "tracestate";
/// The W3C baggage field.
pub const BAGGAGE: &str = "baggage";

/// The longest `traceparent` handed to the propagator, in bytes. Version 00
/// is 55 bytes; later versions may append fields.
pub const MAX_TRACEPARENT_LEN: usize = 256;
/// The longest `tracestate` handed to the propagator, in bytes (32 members
/// of a few dozen bytes; W3C asks to keep at least 512).
pub const MAX_TRACESTATE_LEN: usize = 1024;
/// The longest value of any other field handed to the propagator, in bytes:
/// W3C baggage's own limit.
pub const MAX_FIELD_LEN: usize = 8192;

/// What was wrong with a job's propagated context. Its [`as_str`](Self::as_str)
/// is the `error.type` of `jobsight.propagation.invalid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropagationProblem {
    /// A field was longer than its limit and was dropped unread.
    TooLong,
    /// A `traceparent` was present but gave no valid span context.
    Invalid,
}

impl PropagationProblem {
    /// `too_long` or `invalid`.
    pub fn as_str(self) -> &'static str {
        match self {
            PropagationProblem::TooLong => "too_long",
            PropagationProblem::Invalid => "invalid",
        }
    }
}

/// What [`extract_propagated`] found in a job's carrier.
#[derive(Debug, Clone, Default)]
pub struct Propagated {
    span_context: Option<SpanContext>,
    baggage: Option<Context>,
    problem: Option<PropagationProblem>,
}

impl Propagated {
    /// The creation context, when the carrier held a valid one.
    pub fn span_context(&self) -> Option<&SpanContext> {
        self.span_context.as_ref()
    }

    /// The producer's baggage, when it had any.
    pub fn baggage(&self) -> Option<&Baggage> {
        self.baggage.as_ref().map(BaggageExt::baggage)
    }

    /// What was wrong with the carrier, if anything.
    pub fn problem(&self) -> Option<PropagationProblem> {
        self.problem
    }

    pub(crate) fn into_parts(
        self,
    ) -> (
        Option<SpanContext>,
        Option<Context>,
        Option<PropagationProblem>,
    ) {
        (self.span_context, self.baggage, self.problem)
    }
}

/// Extracts the creation context and baggage from `carrier` with the global
/// propagator, within the length limits above (see the module docs). A
/// carrier with none of the W3C fields costs two map lookups and no parsing.
pub fn extract_propagated(carrier: &dyn Extractor) -> Propagated {
    let has_traceparent = carrier.get(TRACEPARENT).is_some();
    if !has_traceparent && carrier.get(BAGGAGE).is_none() {
        return Propagated::default();
    }
    let bounded = Bounded {
        inner: carrier,
        dropped: Cell::new(false),
    };
    let cx = global::get_text_map_propagator(|p| p.extract_with_context(&Context::new(), &bounded));
    let span_context = Some(cx.span().span_context().clone()).filter(SpanContext::is_valid);
    let baggage =
        (!cx.baggage().is_empty()).then(|| Context::new().with_baggage(copy(cx.baggage())));
    let problem = if bounded.dropped.get() {
        Some(PropagationProblem::TooLong)
    } else if has_traceparent && span_context.is_none() {
        Some(PropagationProblem::Invalid)
    } else {
        None
    };
    Propagated {
        span_context,
        baggage,
        problem,
    }
}

/// Extracts the creation context from `carrier` with the global propagator.
/// Returns `None` when the carrier holds no valid span context (see
/// [`extract_propagated`] for the limits).
pub fn extract(carrier: &dyn Extractor) -> Option<SpanContext> {
    extract_propagated(carrier).span_context
}

/// Injects `cx` (usually [`Context::current`]) into `carrier` with the global
/// propagator.
pub fn inject(cx: &Context, carrier: &mut dyn Injector) {
    global::get_text_map_propagator(|p| p.inject_context(cx, carrier));
}

/// The context a job's process span starts in, and the link it carries:
/// see [`Propagation`]. `baggage` is a context holding only the producer's
/// baggage. The flag tells whether the context carries something from the
/// producer (its baggage, or its span as the parent).
pub(crate) fn parent_for(
    mode: Propagation,
    creation: Option<&SpanContext>,
    baggage: Option<&Context>,
) -> (Context, Option<SpanContext>, bool) {
    let fresh = || baggage.cloned().unwrap_or_default();
    match (mode, creation) {
        (Propagation::Link, Some(creation)) => (fresh(), Some(creation.clone()), baggage.is_some()),
        (Propagation::Child, Some(creation)) => (
            fresh().with_remote_span_context(creation.clone()),
            None,
            true,
        ),
        _ => match baggage {
            Some(b) => (
                Context::current().with_baggage(copy(b.baggage())),
                None,
                true,
            ),
            None => (Context::current(), None, false),
        },
    }
}

fn copy(baggage: &Baggage) -> Vec<KeyValueMetadata> {
    baggage
        .iter()
        .map(|(k, (v, m))| KeyValueMetadata::new(k.clone(), v.clone(), m.clone()))
        .collect()
}

/// Whether `value` has the shape W3C trace context gives a `traceparent`:
/// `vv-<32 hex>-<16 hex>-ff` in lower-case hex, exactly 55 bytes for
/// version `00`, version `ff` refused, later versions allowed to append
/// `-…`. The SDK's propagator is more lenient — it reads a 14-digit span id
/// as a 16-digit one with leading zeros, making up a parent that never
/// existed — so values are checked here first. All-zero ids pass this
/// check; the propagator refuses them.
fn well_formed_traceparent(value: &str) -> bool {
    let b = value.as_bytes();
    if b.len() < 55 {
        return false;
    }
    let hex = |part: &[u8]| part.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let shape = hex(&b[0..2])
        && b[2] == b'-'
        && hex(&b[3..35])
        && b[35] == b'-'
        && hex(&b[36..52])
        && b[52] == b'-'
        && hex(&b[53..55]);
    let tail = match &b[0..2] {
        b"ff" => false,
        b"00" => b.len() == 55,
        _ => b.len() == 55 || b[55] == b'-',
    };
    shape && tail
}

/// An extractor that hides values over their limit (and remembers it did)
/// and `traceparent` values of the wrong shape.
struct Bounded<'a> {
    inner: &'a dyn Extractor,
    dropped: Cell<bool>,
}

impl Extractor for Bounded<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = self.inner.get(key)?;
        let limit = match key {
            TRACEPARENT => MAX_TRACEPARENT_LEN,
            TRACESTATE => MAX_TRACESTATE_LEN,
            _ => MAX_FIELD_LEN,
        };
        if value.len() > limit {
            self.dropped.set(true);
            return None;
        }
        if key == TRACEPARENT && !well_formed_traceparent(value) {
            return None;
        }
        Some(value)
    }

    fn keys(&self) -> Vec<&str> {
        self.inner.keys()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use opentelemetry::propagation::TextMapCompositePropagator;
    use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
    use std::collections::HashMap;

    const GOOD: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    /// Installs W3C trace context and baggage as the global propagator (what
    /// `jobsight_otel` installs); every test of this crate uses this one.
    pub(crate) fn install() {
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

    #[test]
    fn a_good_context_and_its_baggage_are_extracted() {
        install();
        let c = carrier(&[(TRACEPARENT, GOOD), (BAGGAGE, "tenant=acme,plan=pro")]);
        let p = extract_propagated(&c);
        assert_eq!(
            p.span_context().unwrap().span_id().to_string(),
            "b7ad6b7169203331"
        );
        assert_eq!(p.baggage().unwrap().get("tenant").unwrap().as_str(), "acme");
        assert_eq!(p.problem(), None);
    }

    #[test]
    fn later_versions_may_append_fields() {
        install();
        let p = extract_propagated(&carrier(&[(
            TRACEPARENT,
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-comes-next",
        )]));
        assert!(p.span_context().is_some());
        assert_eq!(p.problem(), None);
    }

    #[test]
    fn nothing_is_nothing() {
        install();
        let p = extract_propagated(&carrier(&[("other", "x")]));
        assert!(p.span_context().is_none() && p.baggage().is_none() && p.problem().is_none());
    }

    #[test]
    fn hostile_traceparents_are_counted_not_used() {
        install();
        let garbage = "x".repeat(10 * 1024);
        let long_valid_prefix = format!("{GOOD}-{}", "a".repeat(300));
        let cases: &[(&str, PropagationProblem)] = &[
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033",
                PropagationProblem::Invalid,
            ),
            // Truncated ids with the flags still there: the SDK alone would
            // accept these, padding the ids with zeros.
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",
                PropagationProblem::Invalid,
            ),
            (
                "00-0af7651916cd43dd8448eb211c8031-b7ad6b7169203331-01",
                PropagationProblem::Invalid,
            ),
            (
                " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                PropagationProblem::Invalid,
            ),
            (
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
                PropagationProblem::Invalid,
            ),
            (
                "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                PropagationProblem::Invalid,
            ),
            (
                "00-00000000000000000000000000000000-0000000000000000-01",
                PropagationProblem::Invalid,
            ),
            (
                "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
                PropagationProblem::Invalid,
            ),
            ("", PropagationProblem::Invalid),
            ("garbage", PropagationProblem::Invalid),
            (&garbage, PropagationProblem::TooLong),
            (&long_valid_prefix, PropagationProblem::TooLong),
        ];
        for (value, problem) in cases {
            let p = extract_propagated(&carrier(&[(TRACEPARENT, value)]));
            assert!(p.span_context().is_none(), "{value:.60}");
            assert_eq!(p.problem(), Some(*problem), "{value:.60}");
        }
    }

    #[test]
    fn an_oversized_baggage_is_dropped_and_the_context_kept() {
        install();
        let big = format!("k={}", "v".repeat(MAX_FIELD_LEN));
        let p = extract_propagated(&carrier(&[(TRACEPARENT, GOOD), (BAGGAGE, &big)]));
        assert!(p.span_context().is_some());
        assert!(p.baggage().is_none());
        assert_eq!(p.problem(), Some(PropagationProblem::TooLong));
    }

    #[test]
    fn link_mode_starts_fresh_with_the_baggage() {
        install();
        let c = carrier(&[(TRACEPARENT, GOOD), (BAGGAGE, "tenant=acme")]);
        let p = extract_propagated(&c);
        for mode in [Propagation::Link, Propagation::Child, Propagation::None] {
            let (parent, link, _) = parent_for(mode, p.span_context(), p.baggage.as_ref());
            assert_eq!(
                parent
                    .baggage()
                    .get("tenant")
                    .map(|v| v.as_str().to_owned()),
                Some("acme".to_owned()),
                "{mode:?}"
            );
            assert_eq!(link.is_some(), mode == Propagation::Link);
            assert_eq!(
                parent.span().span_context().is_valid(),
                mode == Propagation::Child
            );
        }
    }
}
