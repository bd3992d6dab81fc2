//! Recording a job's arguments: off by default, opt-in per job name, masked
//! and size-limited ([`ArgsPolicy`], [`CapturedArgs`]).
//!
//! # What is recorded
//! Nothing, unless the job's name was opted in with [`ArgsPolicy::job`] (or
//! every job with [`ArgsPolicy::all_jobs`]). For an opted-in job the
//! arguments are serialized with serde into compact JSON, written straight
//! into a bounded buffer (no intermediate `serde_json::Value`):
//!
//! - **Masking.** The value of every map key or struct field whose name
//!   matches the mask list is written as `"[FILTERED]"`, at any depth,
//!   inside arrays too, whatever the value's type (an object under a
//!   masked key is not descended into). A key matches when, lower-cased and
//!   with `_`, `-`, `.` and spaces removed, it *contains* a pattern
//!   normalized the same way: `api_key` masks `apiKey`, `X-Api-Key` and
//!   `stripe_api_key`; `token` masks `access_token` and `tokenizer` alike
//!   (masking too much is the safe side). The defaults are
//!   [`DEFAULT_MASKED_KEYS`]; [`ArgsPolicy::mask`] adds more. A key longer
//!   than [`MAX_KEY_LEN`] bytes is cut to that length in the output and its
//!   value is always masked: a pattern past the cut would go unseen.
//! - **Size.** Output stops at [`ArgsPolicy::max_len`] bytes (default
//!   [`DEFAULT_MAX_LEN`], 4 KiB): serialization is aborted there, a long
//!   string is copied only up to the room left, and the text ends with
//!   [`TRUNCATED_MARKER`] (it is then no longer valid JSON). A 100 MB string
//!   argument costs at most `max_len` bytes and one pass over its prefix.
//! - **Depth.** Values nested deeper than [`ArgsPolicy::max_depth`] (default
//!   [`DEFAULT_MAX_DEPTH`], 16; arrays, objects and wrappers such as
//!   `Option` or newtypes each count as a level) are written as `"[TOO DEEP]"` without
//!   calling their `Serialize` impl, so hostile or self-similar input (a
//!   million nested arrays, a `Serialize` impl that recurses forever) cannot
//!   overflow the stack.
//! - A `Serialize` impl that fails gives `"[UNSERIALIZABLE]"` after what was
//!   written; one that panics gives `"[UNSERIALIZABLE]"` alone.
//!
//! # Where it goes
//! The captured text is carried by [`JobMeta::args`](crate::JobMeta::args):
//! the span gets it as the `job.args` string attribute, set at start, and
//! observers get it in every [`Event`](crate::observer::Event). It is never
//! a metric attribute.
//!
//! ```
//! use jobsight_core::args::ArgsPolicy;
//! #[derive(serde::Serialize)]
//! struct Signup { email: String, password: String, tags: Vec<&'static str> }
//!
//! let policy = ArgsPolicy::new().job("signup");
//! let args = Signup { email: "ada@example.com".into(), password: "hunter2".into(), tags: vec!["a"] };
//! let captured = policy.capture("signup", &args).unwrap();
//! assert_eq!(
//!     captured.as_str(),
//!     r#"{"email":"ada@example.com","password":"[FILTERED]","tags":["a"]}"#
//! );
//! assert!(policy.capture("other_job", &args).is_none()); // not opted in
//! ```

use std::collections::HashSet;
use std::fmt::{self, Display, Write as _};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use serde::ser::{self, Serialize};

/// Key patterns masked by default (matched as described in the module docs).
pub const DEFAULT_MASKED_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "api_key",
    "access_key",
    "private_key",
    "credential",
    "cookie",
];
/// What a masked value is replaced with.
pub const FILTERED: &str = "[FILTERED]";
/// What a value nested deeper than the depth limit is replaced with.
pub const TOO_DEEP: &str = "[TOO DEEP]";
/// Written when the arguments' `Serialize` impl fails or panics.
pub const UNSERIALIZABLE: &str = "[UNSERIALIZABLE]";
/// Appended to output cut at the size limit.
pub const TRUNCATED_MARKER: &str = "…[TRUNCATED]";
/// Default size limit of the captured text, in bytes.
pub const DEFAULT_MAX_LEN: usize = 4096;
/// Default nesting limit.
pub const DEFAULT_MAX_DEPTH: usize = 16;
/// Longest map key written, in bytes; longer keys are cut in the output and
/// their values are always masked.
pub const MAX_KEY_LEN: usize = 256;

/// Which jobs' arguments are recorded, which keys are masked, and how much
/// is kept. Off for every job until [`job`](Self::job) or
/// [`all_jobs`](Self::all_jobs) says otherwise.
#[derive(Clone, Debug)]
#[must_use]
pub struct ArgsPolicy {
    jobs: HashSet<Box<str>>,
    all: bool,
    masks: Vec<Box<str>>,
    max_len: usize,
    max_depth: usize,
}

impl Default for ArgsPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl ArgsPolicy {
    /// A policy that records nothing, with the default mask list, size and
    /// depth limits.
    pub fn new() -> Self {
        Self {
            jobs: HashSet::new(),
            all: false,
            masks: DEFAULT_MASKED_KEYS
                .iter()
                .map(|k| normalize(k).into())
                .collect(),
            max_len: DEFAULT_MAX_LEN,
            max_depth: DEFAULT_MAX_DEPTH,
        }
    }

    /// Records the arguments of jobs named `name` (`job.name`, exact match).
    pub fn job(mut self, name: impl Into<Box<str>>) -> Self {
        self.jobs.insert(name.into());
        self
    }

    /// Records the arguments of every job. Defaults to off: prefer naming
    /// jobs with [`job`](Self::job), arguments often carry personal data.
    pub fn all_jobs(mut self) -> Self {
        self.all = true;
        self
    }

    /// Masks values under keys containing `pattern` as well as the defaults
    /// (see the module docs for the matching rule).
    pub fn mask(mut self, pattern: &str) -> Self {
        let pattern = normalize(pattern);
        if !pattern.is_empty() {
            self.masks.push(pattern.into());
        }
        self
    }

    /// The most bytes of captured text. Defaults to [`DEFAULT_MAX_LEN`];
    /// values below 64 are raised to 64.
    pub fn max_len(mut self, bytes: usize) -> Self {
        self.max_len = bytes.max(64);
        self
    }

    /// The deepest nesting written. Defaults to [`DEFAULT_MAX_DEPTH`];
    /// at most 128.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth.min(128);
        self
    }

    /// Whether the arguments of jobs named `name` are recorded.
    pub fn records(&self, name: &str) -> bool {
        self.all || self.jobs.contains(name)
    }

    /// Whether a key is masked (a key longer than [`MAX_KEY_LEN`] always is).
    pub fn is_masked(&self, key: &str) -> bool {
        let mut buf = String::new();
        self.key_is_masked(key, &mut buf)
    }

    fn key_is_masked(&self, key: &str, buf: &mut String) -> bool {
        if key.len() > MAX_KEY_LEN {
            return true;
        }
        buf.clear();
        buf.extend(
            key.chars()
                .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
                .flat_map(char::to_lowercase),
        );
        self.masks.iter().any(|m| buf.contains(&**m))
    }

    /// Serializes `args` for the job `name`, masked and bounded, or `None`
    /// when that job's arguments are not recorded.
    pub fn capture<T: Serialize + ?Sized>(&self, name: &str, args: &T) -> Option<CapturedArgs> {
        self.records(name).then(|| self.capture_always(args))
    }

    /// Serializes `args`, masked and bounded, whatever the job (for callers
    /// that checked [`records`](Self::records) themselves).
    pub fn capture_always<T: Serialize + ?Sized>(&self, args: &T) -> CapturedArgs {
        let mut out = Out {
            buf: String::new(),
            max: self.max_len.saturating_sub(TRUNCATED_MARKER.len()),
            truncated: false,
            key_buf: String::new(),
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            args.serialize(Json {
                policy: self,
                out: &mut out,
                depth: 0,
            })
        }));
        let text = match result {
            Ok(Ok(())) => out.buf,
            Ok(Err(Stop::Full)) => {
                out.buf.push_str(TRUNCATED_MARKER);
                out.buf
            }
            Ok(Err(Stop::Failed)) => {
                let _ = out.push(UNSERIALIZABLE);
                if out.truncated {
                    out.buf.push_str(TRUNCATED_MARKER);
                }
                out.buf
            }
            Err(_) => UNSERIALIZABLE.to_owned(),
        };
        CapturedArgs(Arc::from(text))
    }

    /// Masks a list of string pairs (a job's metadata, headers): values under
    /// masked keys become `[FILTERED]`, and each key and value is cut to the
    /// size limit.
    pub fn mask_pairs<'a>(
        &self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Vec<(String, String)> {
        let mut buf = String::new();
        pairs
            .into_iter()
            .map(|(k, v)| {
                let key = crate::error::truncate(k, MAX_KEY_LEN).to_owned();
                let value = if self.key_is_masked(k, &mut buf) {
                    FILTERED.to_owned()
                } else {
                    crate::error::truncate(v, self.max_len).to_owned()
                };
                (key, value)
            })
            .collect()
    }
}

/// Lower-cased, without `_`, `-`, `.` and spaces.
fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// A job's arguments as recorded: masked, bounded JSON text (see the module
/// docs). Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedArgs(Arc<str>);

impl CapturedArgs {
    /// Text given as is, cut to `max_len` bytes (for runners that have
    /// their own representation; no masking is applied).
    pub fn from_text(text: &str, max_len: usize) -> Self {
        CapturedArgs(Arc::from(crate::error::truncate(text, max_len)))
    }

    /// The captured text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared text, for attributes.
    pub fn as_arc(&self) -> &Arc<str> {
        &self.0
    }
}

impl Display for CapturedArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------
// The bounded, masking JSON writer.

/// Why serialization stopped early.
#[derive(Debug)]
enum Stop {
    /// The size limit was reached.
    Full,
    /// The value's `Serialize` impl reported an error.
    Failed,
}

impl Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stop::Full => "size limit reached",
            Stop::Failed => "the value could not be serialized",
        })
    }
}

impl std::error::Error for Stop {}

impl ser::Error for Stop {
    fn custom<T: Display>(_msg: T) -> Self {
        Stop::Failed
    }
}

struct Out {
    buf: String,
    max: usize,
    truncated: bool,
    key_buf: String,
}

impl Out {
    fn push(&mut self, s: &str) -> Result<(), Stop> {
        let room = self.max.saturating_sub(self.buf.len());
        if s.len() <= room {
            self.buf.push_str(s);
            Ok(())
        } else {
            self.buf.push_str(crate::error::truncate(s, room));
            self.truncated = true;
            Err(Stop::Full)
        }
    }

    /// A JSON string literal, escaped, copied only as far as there is room.
    fn push_json_str(&mut self, s: &str) -> Result<(), Stop> {
        self.push("\"")?;
        // Output is at least as long as input: looking past the room left
        // is never needed, however long the string.
        let room = self.max.saturating_sub(self.buf.len());
        let whole = s.len();
        let s = crate::error::truncate(s, room.saturating_add(4));
        let mut start = 0;
        for (i, c) in s.char_indices() {
            let escape: Option<&str> = match c {
                '"' => Some("\\\""),
                '\\' => Some("\\\\"),
                '\n' => Some("\\n"),
                '\r' => Some("\\r"),
                '\t' => Some("\\t"),
                c if (c as u32) < 0x20 => None,
                _ => continue,
            };
            self.push(&s[start..i])?;
            match escape {
                Some(e) => self.push(e)?,
                None => {
                    let mut hex = String::with_capacity(6);
                    let _ = write!(hex, "\\u{:04x}", c as u32);
                    self.push(&hex)?;
                }
            }
            start = i + c.len_utf8();
        }
        self.push(&s[start..])?;
        if s.len() < whole {
            // Unreachable in practice: the scanned prefix alone overflows.
            self.truncated = true;
            return Err(Stop::Full);
        }
        self.push("\"")
    }

    fn push_display(&mut self, value: impl Display) -> Result<(), Stop> {
        let mut tmp = String::new();
        let _ = write!(tmp, "{value}");
        self.push(&tmp)
    }
}

/// The serializer: one per value, carrying the depth.
struct Json<'p, 'o> {
    policy: &'p ArgsPolicy,
    out: &'o mut Out,
    depth: usize,
}

impl<'p, 'o> Json<'p, 'o> {
    fn child<'b>(&'b mut self) -> Json<'p, 'b> {
        Json {
            policy: self.policy,
            out: self.out,
            depth: self.depth + 1,
        }
    }

    /// Serializes a nested value, or the depth placeholder past the limit.
    fn nested<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        if self.depth + 1 > self.policy.max_depth {
            return self.out.push_json_str(TOO_DEEP);
        }
        value.serialize(self.child())
    }

    fn open(self, bracket: &str) -> Result<Compound<'p, 'o>, Stop> {
        if self.depth >= self.policy.max_depth {
            self.out.push_json_str(TOO_DEEP)?;
            return Ok(Compound {
                ser: self,
                first: true,
                close: "",
                skip: true,
                mask_next: false,
            });
        }
        self.out.push(bracket)?;
        let close = if bracket == "[" { "]" } else { "}" };
        Ok(Compound {
            ser: self,
            first: true,
            close,
            skip: false,
            mask_next: false,
        })
    }

    /// `{"Variant":` for the externally tagged enum encoding.
    fn open_variant(self, variant: &str, bracket: &str) -> Result<Compound<'p, 'o>, Stop> {
        self.out.push("{")?;
        self.out.push_json_str(variant)?;
        self.out.push(":")?;
        let mut compound = Json {
            policy: self.policy,
            out: self.out,
            depth: self.depth + 1,
        }
        .open(bracket)?;
        compound.close = match (compound.skip, bracket) {
            (true, _) => "}",
            (false, "[") => "]}",
            (false, _) => "}}",
        };
        Ok(compound)
    }
}

/// An open array, object or enum variant.
struct Compound<'p, 'o> {
    ser: Json<'p, 'o>,
    first: bool,
    close: &'static str,
    /// Past the depth limit: elements are not written.
    skip: bool,
    /// The next map value belongs to a masked key.
    mask_next: bool,
}

impl Compound<'_, '_> {
    fn comma(&mut self) -> Result<(), Stop> {
        if self.first {
            self.first = false;
            Ok(())
        } else {
            self.ser.out.push(",")
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        if self.skip {
            return Ok(());
        }
        self.comma()?;
        value.serialize(self.ser.child())
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Stop> {
        if self.skip {
            return Ok(());
        }
        self.comma()?;
        self.ser.out.push_json_str(key)?;
        self.ser.out.push(":")?;
        let masked = {
            let out = &mut *self.ser.out;
            let mut key_buf = std::mem::take(&mut out.key_buf);
            let masked = self.ser.policy.key_is_masked(key, &mut key_buf);
            out.key_buf = key_buf;
            masked
        };
        if masked {
            self.ser.out.push_json_str(FILTERED)
        } else {
            value.serialize(self.ser.child())
        }
    }

    fn end(self) -> Result<(), Stop> {
        self.ser.out.push(self.close)
    }
}

macro_rules! seq_like {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = Stop;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
                self.element(value)
            }
            fn end(self) -> Result<(), Stop> {
                Compound::end(self)
            }
        }
    )*};
}
seq_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

macro_rules! struct_like {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = Stop;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Stop> {
                self.field(key, value)
            }
            fn end(self) -> Result<(), Stop> {
                Compound::end(self)
            }
        }
    )*};
}
struct_like!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Stop;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Stop> {
        if self.skip {
            return Ok(());
        }
        self.comma()?;
        let mut text = String::new();
        let mut long = false;
        key.serialize(KeyText {
            text: &mut text,
            long: &mut long,
            depth: 0,
        })?;
        let key = crate::error::truncate(&text, MAX_KEY_LEN);
        long |= key.len() < text.len();
        self.ser.out.push_json_str(key)?;
        self.ser.out.push(":")?;
        let out = &mut *self.ser.out;
        let mut key_buf = std::mem::take(&mut out.key_buf);
        self.mask_next = long || self.ser.policy.key_is_masked(key, &mut key_buf);
        out.key_buf = key_buf;
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        if self.skip {
            return Ok(());
        }
        if std::mem::take(&mut self.mask_next) {
            self.ser.out.push_json_str(FILTERED)
        } else {
            value.serialize(self.ser.child())
        }
    }

    fn end(self) -> Result<(), Stop> {
        Compound::end(self)
    }
}

impl Json<'_, '_> {
    fn text(self, value: impl Display) -> Result<(), Stop> {
        self.out.push_display(value)
    }
}

/// Serializer methods that write the value's `Display` text.
macro_rules! as_text {
    ($($method:ident: $ty:ty),* $(,)?) => {$(
        fn $method(self, v: $ty) -> Result<(), Stop> {
            self.text(v)
        }
    )*};
}

impl<'p, 'o> ser::Serializer for Json<'p, 'o> {
    type Ok = ();
    type Error = Stop;
    type SerializeSeq = Compound<'p, 'o>;
    type SerializeTuple = Compound<'p, 'o>;
    type SerializeTupleStruct = Compound<'p, 'o>;
    type SerializeTupleVariant = Compound<'p, 'o>;
    type SerializeMap = Compound<'p, 'o>;
    type SerializeStruct = Compound<'p, 'o>;
    type SerializeStructVariant = Compound<'p, 'o>;

    fn serialize_bool(self, v: bool) -> Result<(), Stop> {
        self.out.push(if v { "true" } else { "false" })
    }
    as_text!(
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_i128: i128,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64,
        serialize_u128: u128,
    );
    // `Debug`, not `Display`: it keeps a float a float (`29.0`, not `29`)
    // and writes large and tiny magnitudes with an exponent (`1e300`, not
    // 301 digits), so that the text parses back to the same value (found by
    // fuzz/args_masking).
    fn serialize_f32(self, v: f32) -> Result<(), Stop> {
        if v.is_finite() {
            self.out.push_display(format_args!("{v:?}"))
        } else {
            self.out.push("null")
        }
    }
    fn serialize_f64(self, v: f64) -> Result<(), Stop> {
        if v.is_finite() {
            self.out.push_display(format_args!("{v:?}"))
        } else {
            self.out.push("null")
        }
    }
    fn serialize_char(self, v: char) -> Result<(), Stop> {
        let mut tmp = [0u8; 4];
        self.out.push_json_str(v.encode_utf8(&mut tmp))
    }
    fn serialize_str(self, v: &str) -> Result<(), Stop> {
        self.out.push_json_str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Stop> {
        let mut seq = self.open("[")?;
        if !seq.skip {
            for byte in v {
                seq.comma()?;
                seq.ser.out.push_display(byte)?;
            }
        }
        seq.end()
    }
    fn serialize_none(self) -> Result<(), Stop> {
        self.out.push("null")
    }
    fn serialize_some<T: Serialize + ?Sized>(mut self, value: &T) -> Result<(), Stop> {
        // Wrappers count as a level, so that no Serialize impl can recurse
        // forever through them.
        self.nested(value)
    }
    fn serialize_unit(self) -> Result<(), Stop> {
        self.out.push("null")
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Stop> {
        self.out.push("null")
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Stop> {
        self.out.push_json_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        mut self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        self.nested(value)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        self.out.push("{")?;
        self.out.push_json_str(variant)?;
        self.out.push(":")?;
        self.nested(value)?;
        self.out.push("}")
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'p, 'o>, Stop> {
        self.open("[")
    }
    fn serialize_tuple(self, _len: usize) -> Result<Compound<'p, 'o>, Stop> {
        self.open("[")
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'p, 'o>, Stop> {
        self.open("[")
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'p, 'o>, Stop> {
        self.open_variant(variant, "[")
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'p, 'o>, Stop> {
        self.open("{")
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Compound<'p, 'o>, Stop> {
        self.open("{")
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'p, 'o>, Stop> {
        self.open_variant(variant, "{")
    }
    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<(), Stop> {
        // Rendered through a bounded writer: a huge Display costs no more
        // than the room left.
        let room = self.out.max.saturating_sub(self.out.buf.len());
        let text = crate::error::bounded_display(&value, room + 1);
        self.out.push_json_str(&text)
    }
}

/// Renders a map key as text (JSON object keys are strings): strings as
/// they are, numbers, booleans and chars as their text; anything else makes
/// serialization fail.
struct KeyText<'a> {
    text: &'a mut String,
    /// Set when a string key was cut.
    long: &'a mut bool,
    /// Wrappers (`Option`, newtypes) passed through: a key type whose
    /// `Serialize` recurses through them forever fails at [`MAX_KEY_WRAPPERS`].
    depth: usize,
}

/// The most wrappers a map key may be nested in.
const MAX_KEY_WRAPPERS: usize = 16;

impl KeyText<'_> {
    fn text(self, value: impl Display) -> Result<(), Stop> {
        let _ = write!(self.text, "{value}");
        Ok(())
    }

    fn wrapped<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Stop> {
        if self.depth >= MAX_KEY_WRAPPERS {
            return Err(Stop::Failed);
        }
        value.serialize(KeyText {
            text: self.text,
            long: self.long,
            depth: self.depth + 1,
        })
    }
}

impl ser::Serializer for KeyText<'_> {
    type Ok = ();
    type Error = Stop;
    type SerializeSeq = ser::Impossible<(), Stop>;
    type SerializeTuple = ser::Impossible<(), Stop>;
    type SerializeTupleStruct = ser::Impossible<(), Stop>;
    type SerializeTupleVariant = ser::Impossible<(), Stop>;
    type SerializeMap = ser::Impossible<(), Stop>;
    type SerializeStruct = ser::Impossible<(), Stop>;
    type SerializeStructVariant = ser::Impossible<(), Stop>;

    as_text!(
        serialize_bool: bool,
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64,
        serialize_f32: f32,
        serialize_f64: f64,
        serialize_char: char,
    );
    fn serialize_str(self, v: &str) -> Result<(), Stop> {
        let kept = crate::error::truncate(v, MAX_KEY_LEN);
        *self.long |= kept.len() < v.len();
        self.text.push_str(kept);
        Ok(())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), Stop> {
        Err(Stop::Failed)
    }
    fn serialize_none(self) -> Result<(), Stop> {
        Err(Stop::Failed)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Stop> {
        self.wrapped(value)
    }
    fn serialize_unit(self) -> Result<(), Stop> {
        Err(Stop::Failed)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Stop> {
        Err(Stop::Failed)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Stop> {
        self.text(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        self.wrapped(value)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), Stop> {
        Err(Stop::Failed)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Stop> {
        Err(Stop::Failed)
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Stop> {
        Err(Stop::Failed)
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Stop> {
        Err(Stop::Failed)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Stop> {
        Err(Stop::Failed)
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Stop> {
        Err(Stop::Failed)
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Stop> {
        Err(Stop::Failed)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Stop> {
        Err(Stop::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn all() -> ArgsPolicy {
        ArgsPolicy::new().all_jobs()
    }

    #[test]
    fn off_by_default_and_opt_in_per_job_name() {
        let policy = ArgsPolicy::new();
        assert!(policy.capture("send_email", &json!({"to": "a"})).is_none());
        let policy = policy.job("send_email");
        assert!(policy.capture("send_email", &json!({"to": "a"})).is_some());
        assert!(policy.capture("SEND_EMAIL", &json!({"to": "a"})).is_none());
        assert!(policy.capture("other", &json!({"to": "a"})).is_none());
    }

    #[test]
    fn output_is_the_same_compact_json_as_serde_json() {
        #[derive(Serialize)]
        enum E {
            Unit,
            New(u8),
            Tuple(u8, bool),
            Struct { a: Option<u8>, b: f64 },
        }
        #[derive(Serialize)]
        struct S {
            s: String,
            n: i64,
            f: f32,
            list: Vec<E>,
            map: BTreeMap<u32, char>,
            bytes: serde_bytes_like::Bytes,
            unit: (),
            tuple: (u8, &'static str),
        }
        mod serde_bytes_like {
            pub struct Bytes(pub Vec<u8>);
            impl serde::Serialize for Bytes {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.serialize_bytes(&self.0)
                }
            }
        }
        let value = S {
            s: "quote \" backslash \\ newline \n tab \t bell \u{7} é".into(),
            n: -42,
            f: 1.5,
            list: vec![
                E::Unit,
                E::New(1),
                E::Tuple(2, true),
                E::Struct { a: None, b: 0.25 },
            ],
            map: BTreeMap::from([(1, 'x'), (2, '"')]),
            bytes: serde_bytes_like::Bytes(vec![0, 255]),
            unit: (),
            tuple: (7, "seven"),
        };
        let ours = all().capture_always(&value);
        let theirs = serde_json::to_string(&value).unwrap();
        assert_eq!(ours.as_str(), theirs);
    }

    #[test]
    fn masks_keys_case_insensitively_at_any_depth_and_in_arrays() {
        let value = json!({
            "user": "ada",
            "Password": "p1",
            "nested": {
                "deeper": [
                    {"API_KEY": "k1", "keep": 1},
                    {"x-api-key": "k2"},
                    [{"access_token": {"even": "objects"}}]
                ],
                "Authorization": "Bearer abc",
                "client_secret": 5,
            },
            "list": [{"token": ["a", "b"]}],
        });
        let text = all().capture_always(&value).as_str().to_owned();
        for secret in ["p1", "k1", "k2", "objects", "Bearer", "\"a\""] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains(r#""keep":1"#), "{text}");
        assert!(text.contains(r#""user":"ada""#), "{text}");
        assert_eq!(text.matches(FILTERED).count(), 7, "{text}");
        let reparsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reparsed["nested"]["deeper"][0]["API_KEY"], json!(FILTERED));
        assert_eq!(
            reparsed["nested"]["deeper"][2][0]["access_token"],
            json!(FILTERED)
        );
    }

    #[test]
    fn struct_fields_and_user_patterns_are_masked() {
        #[derive(Serialize)]
        struct Payment {
            card_number: &'static str,
            cvv: u16,
            amount: u32,
            db_password: &'static str,
        }
        let policy = all().mask("Card-Number").mask("CVV");
        let text = policy
            .capture_always(&Payment {
                card_number: "4111",
                cvv: 123,
                amount: 10,
                db_password: "pw",
            })
            .as_str()
            .to_owned();
        assert_eq!(
            text,
            r#"{"card_number":"[FILTERED]","cvv":"[FILTERED]","amount":10,"db_password":"[FILTERED]"}"#
        );
        assert!(policy.is_masked("CardNumber"));
        assert!(!policy.is_masked("amount"));
    }

    #[test]
    fn the_readme_example() {
        #[derive(Serialize)]
        struct ChargeCard {
            customer: u64,
            card_token: String,
            amount_cents: u64,
        }
        let policy = ArgsPolicy::new().job("ChargeCard").mask("customer");
        let args = ChargeCard {
            customer: 42,
            card_token: "tok_123".into(),
            amount_cents: 1200,
        };
        assert_eq!(
            policy.capture("ChargeCard", &args).unwrap().as_str(),
            r#"{"customer":"[FILTERED]","card_token":"[FILTERED]","amount_cents":1200}"#
        );
    }

    #[test]
    fn huge_strings_are_cut_at_the_limit() {
        let huge = "x".repeat(50 * 1024 * 1024);
        let value = json!({ "blob": huge, "after": 1 });
        let policy = all().max_len(1000);
        let started = std::time::Instant::now();
        let captured = policy.capture_always(&value);
        assert!(
            captured.as_str().len() <= 1000,
            "{}",
            captured.as_str().len()
        );
        assert!(captured.as_str().ends_with(TRUNCATED_MARKER));
        assert!(captured.as_str().starts_with(r#"{"after":1,"blob":"xxx"#));
        // One pass over a 1000-byte prefix, not over 50 MB.
        assert!(started.elapsed() < std::time::Duration::from_millis(200));
    }

    #[test]
    fn cut_strings_stay_escaped() {
        let value = vec!["\"\n".repeat(10_000)];
        let captured = all().max_len(100).capture_always(&value);
        let text = captured.as_str();
        assert!(text.starts_with(r#"["\"\n\"\n"#), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn multibyte_text_is_cut_on_a_char_boundary() {
        let value = vec!["é".repeat(5000)];
        let captured = all().max_len(101).capture_always(&value);
        assert!(captured.as_str().len() <= 101);
        assert!(captured.as_str().ends_with(TRUNCATED_MARKER));
    }

    /// A value whose `Serialize` impl nests forever without using memory.
    struct Bottomless;
    impl Serialize for Bottomless {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = s.serialize_seq(Some(1))?;
            seq.serialize_element(&Bottomless)?;
            seq.end()
        }
    }

    /// The same, through maps and newtype variants.
    struct BottomlessMap;
    impl Serialize for BottomlessMap {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            #[derive(Serialize)]
            enum Wrap {
                Inner(BottomlessMap),
            }
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry("k", &Wrap::Inner(BottomlessMap))?;
            map.end()
        }
    }

    #[test]
    fn endless_nesting_stops_at_the_depth_limit() {
        let text = all().max_depth(5).capture_always(&Bottomless).to_string();
        assert_eq!(text, r#"[[[[["[TOO DEEP]"]]]]]"#);
        let text = all().capture_always(&BottomlessMap).to_string();
        assert!(text.contains(TOO_DEEP), "{text}");
        assert!(text.len() < DEFAULT_MAX_LEN, "{text}");
        serde_json::from_str::<serde_json::Value>(&text).unwrap();
    }

    #[test]
    fn deep_hostile_json_value_is_bounded() {
        // As deep as serde_json lets a parsed payload be (its recursion
        // limit is 128), with a huge string at the bottom.
        let depth = 120;
        let text = format!(
            "{}\"{}\"{}",
            "[".repeat(depth),
            "y".repeat(1_000_000),
            "]".repeat(depth)
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let captured = all().capture_always(&value);
        assert!(captured.as_str().len() < 200, "{}", captured.as_str());
        assert!(captured.as_str().contains(TOO_DEEP));
    }

    #[test]
    fn failing_and_panicking_impls_are_contained() {
        struct Fails;
        impl Serialize for Fails {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("nope"))
            }
        }
        struct Panics;
        impl Serialize for Panics {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                panic!("serialize exploded")
            }
        }
        let text = all().capture_always(&(1, Fails)).to_string();
        assert_eq!(text, format!("[1,{UNSERIALIZABLE}"));
        let text = all().capture_always(&Panics).to_string();
        assert_eq!(text, UNSERIALIZABLE);
    }

    #[test]
    fn floats_stay_floats_and_parse_back_to_the_same_value() {
        // Regression (fuzz/args_masking): `29.0` was written as `29`, and
        // `1e300` as 301 digits.
        let values = json!([29.0, 1e300, -2.5e-9, 0.1, 123456789.0, f64::MAX]);
        let text = all().capture_always(&values).to_string();
        assert_eq!(
            text,
            "[29.0,1e300,-2.5e-9,0.1,123456789.0,1.7976931348623157e308]"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, values);
        let single = (0.1f32, 3.0f32, f32::NAN);
        let text = all().capture_always(&single).to_string();
        assert_eq!(text, "[0.1,3.0,null]");
    }

    #[test]
    fn values_under_keys_too_long_to_check_are_masked() {
        // Regression (fuzz/args_masking): a map key over 256 bytes was cut
        // before matching, so a pattern past the cut went unseen.
        let long = format!("{}password", "x".repeat(MAX_KEY_LEN));
        let innocent = "y".repeat(MAX_KEY_LEN + 1);
        let map = BTreeMap::from([(long.as_str(), "hunter2"), (innocent.as_str(), "v")]);
        let text = all().capture_always(&map).to_string();
        assert!(!text.contains("hunter2"), "{text}");
        let back: BTreeMap<String, String> = serde_json::from_str(&text).unwrap();
        assert!(back.keys().all(|k| k.len() == MAX_KEY_LEN), "{text}");
        assert!(back.values().all(|v| v == FILTERED), "{text}");
        assert!(all().is_masked(&innocent));
        let pairs = all().mask_pairs([(long.as_str(), "hunter2")]);
        assert_eq!(pairs[0].1, FILTERED);
        assert_eq!(pairs[0].0.len(), MAX_KEY_LEN);
    }

    #[test]
    fn a_key_type_that_wraps_itself_forever_is_contained() {
        #[derive(PartialEq, Eq, PartialOrd, Ord)]
        struct Key;
        impl Serialize for Key {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_newtype_struct("Key", self)
            }
        }
        let map = BTreeMap::from([(Key, 1)]);
        assert_eq!(all().capture_always(&map).as_str(), "{[UNSERIALIZABLE]");
    }

    #[test]
    fn map_keys_that_are_not_strings_become_text() {
        let map = BTreeMap::from([(true, 1), (false, 2)]);
        assert_eq!(
            all().capture_always(&map).as_str(),
            r#"{"false":2,"true":1}"#
        );
        let bad = BTreeMap::from([(vec![1], 1)]);
        assert_eq!(all().capture_always(&bad).as_str(), "{[UNSERIALIZABLE]");
    }

    #[test]
    fn pairs_are_masked_and_bounded() {
        let policy = ArgsPolicy::new().max_len(64);
        let long = "v".repeat(1000);
        let masked = policy.mask_pairs([
            ("traceparent", "00-abc"),
            ("X-Auth-Token", "t"),
            ("big", &long),
        ]);
        assert_eq!(masked[0], ("traceparent".into(), "00-abc".into()));
        assert_eq!(masked[1].1, FILTERED);
        assert_eq!(masked[2].1.len(), 64);
    }
}
