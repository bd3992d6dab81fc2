//! Size limits of one log record: its body, the number of its attributes
//! and the length of each attribute's value. Applied where our bridges
//! build a record (the SDK's record cannot drop an attribute once added);
//! the body is cut again by the log processor, for records from any source.

use std::borrow::Cow;

use opentelemetry::logs::AnyValue;

/// Default limit of a log record's body: 8 KiB.
pub const DEFAULT_LOG_BODY_LIMIT: usize = 8 * 1024;
/// Default attribute count when `OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT` is
/// unset.
pub const DEFAULT_LOG_ATTRIBUTE_COUNT_LIMIT: usize = 32;
/// Default attribute value length when
/// `OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT` is unset: 2 KiB.
pub const DEFAULT_LOG_ATTRIBUTE_VALUE_LIMIT: usize = 2 * 1024;

/// What is appended to a cut text.
pub(crate) const CUT_MARKER: &str = "…[cut]";

/// The limits of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogLimits {
    /// Bytes of a text body, the marker included.
    pub(crate) body: usize,
    /// Attributes a bridge adds from an event's fields (the job's own
    /// attributes and the code location come on top).
    pub(crate) attribute_count: usize,
    /// Bytes of a text attribute value, the marker included.
    pub(crate) attribute_value: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            body: DEFAULT_LOG_BODY_LIMIT,
            attribute_count: DEFAULT_LOG_ATTRIBUTE_COUNT_LIMIT,
            attribute_value: DEFAULT_LOG_ATTRIBUTE_VALUE_LIMIT,
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, with
/// [`CUT_MARKER`] at the end when cut.
pub(crate) fn cut(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max.saturating_sub(CUT_MARKER.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{CUT_MARKER}", &text[..end]))
}

/// An owned text value cut to `max` bytes.
pub(crate) fn text_value(text: String, max: usize) -> AnyValue {
    if text.len() <= max {
        AnyValue::from(text)
    } else {
        AnyValue::from(cut(&text, max).into_owned())
    }
}

/// The body cut to `max` bytes when it is a longer text; `None` when it
/// fits or is not text.
pub(crate) fn cut_body(body: &AnyValue, max: usize) -> Option<AnyValue> {
    match body {
        AnyValue::String(text) if text.as_str().len() > max => {
            Some(AnyValue::from(cut(text.as_str(), max).into_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_cut_on_character_boundaries_with_a_marker() {
        assert_eq!(cut("short", 10), "short");
        let long = "é".repeat(100);
        let cut_text = cut(&long, 20);
        assert!(cut_text.len() <= 20, "{cut_text}");
        assert!(cut_text.ends_with(CUT_MARKER));
        assert!(cut_text.starts_with("éé"));
        let body = AnyValue::from("x".repeat(100));
        let AnyValue::String(text) = cut_body(&body, 50).unwrap() else {
            panic!("not text");
        };
        assert_eq!(text.as_str().len(), 50);
        assert_eq!(cut_body(&AnyValue::Int(5), 1), None);
    }
}
