//! Turning a Rust error into what goes on the wire: [`ErrorRecord`].
//!
//! A Rust error does not carry its type's name at run time once it is boxed
//! (`Box<dyn Error>`, as most job runners return). [`ErrorRecord::from_error`]
//! finds a low-cardinality `error.type` this way, first match wins:
//!
//! 1. `std::io::Error` is named `std::io::Error`;
//! 2. the leading identifier of the error's `Debug` output, when it is a type
//!    or variant name (`#[derive(Debug)]` prints `Declined { .. }` or
//!    `Timeout(..)`), so `thiserror` enums give their variant's name;
//! 3. otherwise `_OTHER`, the conventions' value for an unknown type.
//!
//! Runners that know the concrete type use [`ErrorRecord::with_type`].
//! Messages are cut at [`MAX_MESSAGE_LEN`] bytes, formatting stops as soon
//! as that much is written (a megabyte-long message costs no megabyte), and a
//! `Display` or `Debug` implementation that panics gives a placeholder
//! instead of taking the job down.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt::{self, Write as _};
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::semconv;

/// The longest `exception.message` and span status message recorded, in bytes.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The longest `exception.stacktrace` recorded, in bytes.
pub const MAX_STACKTRACE_LEN: usize = 16 * 1024;
/// The longest `error.type` recorded, in bytes.
pub const MAX_TYPE_LEN: usize = 64;

/// An error as it is reported: type, message and, when known, a stack trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRecord {
    error_type: Cow<'static, str>,
    message: String,
    stacktrace: Option<String>,
}

impl ErrorRecord {
    /// Records `error`, finding its `error.type` as the module docs describe.
    pub fn from_error(error: &(dyn StdError + 'static)) -> Self {
        Self {
            error_type: type_of(error),
            message: bounded_display(&error, MAX_MESSAGE_LEN),
            stacktrace: None,
        }
    }

    /// Records an error known only through its `Display` and `Debug`
    /// forms (`anyhow::Error`, a `String`, a generic `E`), with the same
    /// `error.type` rules as [`from_error`](Self::from_error) except the
    /// `std::io::Error` check.
    pub fn from_parts(display: &dyn fmt::Display, debug: &dyn fmt::Debug) -> Self {
        let debug = bounded_debug(debug, MAX_TYPE_LEN + 1);
        Self {
            error_type: match leading_type_name(&debug) {
                Some(name) => Cow::Owned(name.to_owned()),
                None => Cow::Borrowed(semconv::ERROR_TYPE_OTHER),
            },
            message: bounded_display(display, MAX_MESSAGE_LEN),
            stacktrace: None,
        }
    }

    /// A record with a type and message given by the runner (for example a
    /// panic: type `panic`, message the panic payload).
    pub fn new(error_type: impl Into<Cow<'static, str>>, message: impl AsRef<str>) -> Self {
        Self {
            error_type: clamp_type(error_type.into()),
            message: truncate(message.as_ref(), MAX_MESSAGE_LEN).to_owned(),
            stacktrace: None,
        }
    }

    /// Replaces the `error.type`, for runners that know the concrete type.
    #[must_use]
    pub fn with_type(mut self, error_type: impl Into<Cow<'static, str>>) -> Self {
        self.error_type = clamp_type(error_type.into());
        self
    }

    /// Adds a stack trace (`exception.stacktrace`), cut at [`MAX_STACKTRACE_LEN`].
    #[must_use]
    pub fn with_stacktrace(mut self, stacktrace: impl AsRef<str>) -> Self {
        self.stacktrace = Some(truncate(stacktrace.as_ref(), MAX_STACKTRACE_LEN).to_owned());
        self
    }

    /// The low-cardinality `error.type`.
    pub fn error_type(&self) -> &str {
        &self.error_type
    }

    /// The shared form of the `error.type`, for attributes.
    pub(crate) fn error_type_cow(&self) -> &Cow<'static, str> {
        &self.error_type
    }

    /// The message (`exception.message`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The stack trace, when one was given.
    pub fn stacktrace(&self) -> Option<&str> {
        self.stacktrace.as_deref()
    }
}

/// The low-cardinality type name of `error` (see the module docs).
pub fn type_of(error: &(dyn StdError + 'static)) -> Cow<'static, str> {
    if error.is::<std::io::Error>() {
        return Cow::Borrowed("std::io::Error");
    }
    let debug = bounded_debug(&error, MAX_TYPE_LEN + 1);
    match leading_type_name(&debug) {
        Some(name) => Cow::Owned(name.to_owned()),
        None => Cow::Borrowed(semconv::ERROR_TYPE_OTHER),
    }
}

/// The shortened form of a Rust type name: `my_app::jobs::EmailError` becomes
/// `EmailError`, generic arguments are dropped. Used for `job.name` and by
/// runners that know an error's concrete type.
pub fn short_type_name(full: &'static str) -> &'static str {
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// The identifier at the start of a `Debug` rendering, if it looks like a
/// type or variant name: an upper-case letter, then letters, digits, `_`
/// or `::`, ended by the end of the text, `(` or ` {` (what `#[derive(Debug)]`
/// prints for unit, tuple and struct types and variants).
fn leading_type_name(debug: &str) -> Option<&str> {
    let end = debug
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(debug.len());
    let name = &debug[..end];
    let rest = &debug[end..];
    let ends_well = rest.is_empty() || rest.starts_with('(') || rest.starts_with(" {");
    let first_upper = name.chars().next().is_some_and(|c| c.is_ascii_uppercase());
    (ends_well && first_upper && name.len() <= MAX_TYPE_LEN && !name.ends_with(':')).then_some(name)
}

fn clamp_type(name: Cow<'static, str>) -> Cow<'static, str> {
    if name.len() <= MAX_TYPE_LEN {
        return name;
    }
    Cow::Owned(truncate(&name, MAX_TYPE_LEN).to_owned())
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A `fmt::Write` that keeps the first `max` bytes and then stops the
/// formatting by returning an error.
struct Bounded {
    out: String,
    max: usize,
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.max - self.out.len();
        if s.len() <= room {
            self.out.push_str(s);
            Ok(())
        } else {
            self.out.push_str(truncate(s, room));
            Err(fmt::Error)
        }
    }
}

fn bounded_with(max: usize, render: impl FnOnce(&mut Bounded) -> fmt::Result) -> String {
    let mut sink = Bounded {
        out: String::new(),
        max,
    };
    let rendered = catch_unwind(AssertUnwindSafe(|| {
        // A formatting error only means the sink is full or the impl gave
        // up part-way: either way what was written so far is kept.
        let _ = render(&mut sink);
        sink.out
    }));
    rendered.unwrap_or_else(|_| String::from("<the error's formatting panicked>"))
}

pub(crate) fn bounded_display(value: &dyn fmt::Display, max: usize) -> String {
    bounded_with(max, |sink| write!(sink, "{value}"))
}

fn bounded_debug(value: &dyn fmt::Debug, max: usize) -> String {
    bounded_with(max, |sink| write!(sink, "{value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    enum PaymentError {
        Declined { code: u32 },
    }
    impl fmt::Display for PaymentError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                PaymentError::Declined { code } => write!(f, "card declined ({code})"),
            }
        }
    }
    impl StdError for PaymentError {}

    struct Exploding;
    impl fmt::Debug for Exploding {
        fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
            panic!("debug exploded")
        }
    }
    impl fmt::Display for Exploding {
        fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
            panic!("display exploded")
        }
    }
    impl StdError for Exploding {}

    #[test]
    fn derived_debug_gives_the_variant_name() {
        let err = PaymentError::Declined { code: 51 };
        let rec = ErrorRecord::from_error(&err);
        assert_eq!(rec.error_type(), "Declined");
        assert_eq!(rec.message(), "card declined (51)");
    }

    #[test]
    fn boxed_string_errors_are_other() {
        let err: Box<dyn StdError + Send + Sync> = "free text with 123 ids".into();
        assert_eq!(ErrorRecord::from_error(err.as_ref()).error_type(), "_OTHER");
    }

    #[test]
    fn io_errors_are_named() {
        let err = std::io::Error::other("disk");
        assert_eq!(ErrorRecord::from_error(&err).error_type(), "std::io::Error");
    }

    #[test]
    fn huge_messages_are_cut_without_rendering_everything() {
        let big = "é".repeat(1_000_000);
        let err: Box<dyn StdError + Send + Sync> = big.into();
        let rec = ErrorRecord::from_error(err.as_ref());
        assert!(rec.message().len() <= MAX_MESSAGE_LEN);
        assert!(rec.message().len() > MAX_MESSAGE_LEN - 4);
    }

    #[test]
    fn panicking_formatting_does_not_escape() {
        let rec = ErrorRecord::from_error(&Exploding);
        assert_eq!(rec.error_type(), "_OTHER");
        assert!(rec.message().contains("panicked"));
    }

    #[test]
    fn short_type_names() {
        assert_eq!(short_type_name("my_app::jobs::Email"), "Email");
        assert_eq!(short_type_name("my_app::Wrapper<my_app::Email>"), "Wrapper");
        assert_eq!(short_type_name("u32"), "u32");
    }

    #[test]
    fn leading_names() {
        assert_eq!(leading_type_name("Timeout"), Some("Timeout"));
        assert_eq!(leading_type_name("Timeout(5)"), Some("Timeout"));
        assert_eq!(leading_type_name("\"text\""), None);
        assert_eq!(leading_type_name("lowercase { x }"), None);
        assert_eq!(leading_type_name("Some text, with comma"), None);
        assert_eq!(leading_type_name("Words and"), None);
        assert_eq!(leading_type_name("Declined { code: 5 }"), Some("Declined"));
    }
}
