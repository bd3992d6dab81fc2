//! Trace-context extraction from a hostile carrier: `traceparent`,
//! `tracestate`, `baggage` and another field, each arbitrary text (a part
//! of the input, optionally spliced into a valid `traceparent` or repeated
//! past its length limit), through `jobsight_core::propagation` with the W3C
//! trace-context and baggage propagators `jobsight_otel` installs.
//!
//! Invariants (a violation panics, which the fuzzer reports as a crash):
//! - no panic inside extraction;
//! - a value over its limit is never used and is reported as `TooLong`;
//! - a span context is returned only for a `traceparent` that an
//!   independent check finds well formed, and it carries exactly that
//!   value's ids and sampled flag;
//! - a well-formed `traceparent` with non-zero ids is always accepted
//!   (when its own length and the baggage's are within the limits);
//! - a `traceparent` that is present but not used is always reported;
//! - extracted baggage stays within W3C's 8192 bytes;
//! - injecting the extracted context and extracting it again gives the
//!   same span context (round trip), with a canonical `traceparent`.
#![no_main]

use std::collections::HashMap;
use std::sync::Once;

use jobsight_core::propagation::{
    BAGGAGE, MAX_FIELD_LEN, MAX_TRACEPARENT_LEN, MAX_TRACESTATE_LEN, PropagationProblem,
    TRACEPARENT, TRACESTATE, extract_propagated, inject,
};
use libfuzzer_sys::fuzz_target;
use opentelemetry::Context;
use opentelemetry::global;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]));
    });
}

/// The W3C shape, written independently of the code under test.
fn well_formed(tp: &str) -> bool {
    let parts: Vec<&str> = tp.split('-').collect();
    let lower_hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    };
    if parts.len() < 4
        || !lower_hex(parts[0], 2)
        || !lower_hex(parts[1], 32)
        || !lower_hex(parts[2], 16)
        || !lower_hex(parts[3], 2)
    {
        return false;
    }
    match parts[0] {
        "ff" => false,
        "00" => parts.len() == 4,
        _ => true,
    }
}

fn nonzero_ids(tp: &str) -> bool {
    tp[3..35].bytes().any(|c| c != b'0') && tp[36..52].bytes().any(|c| c != b'0')
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fuzz_target!(|data: &[u8]| {
    install();
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(4, |&b| b == 0);
    let mut traceparent = parts.next().map(text);
    let mut tracestate = parts.next().map(text);
    let mut baggage = parts.next().map(text);
    let other = parts.next().map(text);

    if flags & 1 != 0 {
        // Splice the first part into a valid traceparent, byte by byte.
        if let Some(tp) = &traceparent {
            let mut bytes = VALID.as_bytes().to_vec();
            for (i, b) in tp.bytes().enumerate().take(8) {
                let at = usize::from(b) % (VALID.len() + 1);
                if at == VALID.len() {
                    bytes.push(b);
                } else if i % 2 == 0 {
                    bytes[at] = tp.as_bytes().get(i + 1).copied().unwrap_or(b'-');
                }
            }
            traceparent = Some(text(&bytes));
        }
    }
    if flags & 2 != 0 {
        // Grow a field past (or right up to) its limit.
        let grow = |v: &mut Option<String>, limit: usize| {
            if let Some(s) = v.as_mut().filter(|s| !s.is_empty()) {
                let target = limit - 2 + usize::from(flags >> 5);
                while s.len() < target {
                    let more = s.clone();
                    s.push_str(&more);
                }
            }
        };
        match (flags >> 2) & 3 {
            0 => grow(&mut traceparent, MAX_TRACEPARENT_LEN),
            1 => grow(&mut tracestate, MAX_TRACESTATE_LEN),
            _ => grow(&mut baggage, MAX_FIELD_LEN),
        }
    }
    if flags & 16 != 0 && traceparent.is_none() {
        traceparent = Some(VALID.to_owned());
    }

    let mut carrier: HashMap<String, String> = HashMap::new();
    if let Some(v) = &traceparent {
        carrier.insert(TRACEPARENT.to_owned(), v.clone());
    }
    if let Some(v) = &tracestate {
        carrier.insert(TRACESTATE.to_owned(), v.clone());
    }
    if let Some(v) = &baggage {
        carrier.insert(BAGGAGE.to_owned(), v.clone());
    }
    if let Some(v) = &other {
        carrier.insert("x-other".to_owned(), v.clone());
    }

    let got = extract_propagated(&carrier);
    let tp_len = traceparent.as_ref().map_or(0, String::len);
    let tp_too_long = tp_len > MAX_TRACEPARENT_LEN;
    let bag_too_long = baggage.as_ref().is_some_and(|b| b.len() > MAX_FIELD_LEN);
    let tp_usable = traceparent
        .as_deref()
        .is_some_and(|tp| !tp_too_long && well_formed(tp) && nonzero_ids(tp));

    if tp_too_long || (bag_too_long && (traceparent.is_some() || baggage.is_some())) {
        assert_eq!(got.problem(), Some(PropagationProblem::TooLong), "{carrier:?}");
    }
    if tp_too_long {
        assert!(got.span_context().is_none(), "an over-long traceparent was used");
    }
    match got.span_context() {
        Some(sc) => {
            let tp = traceparent.as_deref().expect("a context from no traceparent");
            assert!(tp_usable, "accepted a malformed traceparent: {tp:?}");
            assert_eq!(sc.trace_id().to_string(), tp[3..35], "{tp:?}");
            assert_eq!(sc.span_id().to_string(), tp[36..52], "{tp:?}");
            let sampled = u8::from_str_radix(&tp[53..55], 16).expect("hex") & 1 == 1;
            assert_eq!(sc.is_sampled(), sampled, "{tp:?}");
            assert!(sc.is_remote());
            if tracestate.as_ref().is_some_and(|s| s.len() > MAX_TRACESTATE_LEN) {
                assert_eq!(got.problem(), Some(PropagationProblem::TooLong));
                assert_eq!(sc.trace_state().header(), "", "an over-long tracestate was used");
            }
            round_trip(sc);
        }
        None => {
            assert!(!tp_usable, "refused a well-formed traceparent: {traceparent:?}");
            if traceparent.is_some() {
                assert!(got.problem().is_some(), "unused traceparent not reported: {traceparent:?}");
            }
        }
    }
    if let Some(bag) = got.baggage() {
        let total: usize = bag.iter().map(|(k, (v, _))| k.as_str().len() + v.as_str().len()).sum();
        assert!(total <= MAX_FIELD_LEN, "baggage of {total} bytes");
        assert!(!bag_too_long, "an over-long baggage was used");
    }
    if traceparent.is_none() && baggage.is_none() {
        assert!(got.problem().is_none() && got.span_context().is_none() && got.baggage().is_none());
    }
});

fn round_trip(sc: &SpanContext) {
    let cx = Context::new().with_remote_span_context(sc.clone());
    let mut carrier: HashMap<String, String> = HashMap::new();
    inject(&cx, &mut carrier);
    let tp = carrier.get(TRACEPARENT).expect("injected");
    assert!(well_formed(tp) && tp.len() == 55, "injected {tp:?}");
    let again = extract_propagated(&carrier);
    let back = again.span_context().expect("re-extracted");
    assert_eq!(back.trace_id(), sc.trace_id());
    assert_eq!(back.span_id(), sc.span_id());
    assert_eq!(back.trace_flags(), sc.trace_flags());
    assert_eq!(again.problem(), None);
}
