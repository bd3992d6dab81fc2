//! The masking, size-limited serde `Serializer` behind
//! [`ArgsPolicy::capture`](super::ArgsPolicy::capture): writes compact JSON
//! straight into a bounded buffer, masks values under masked keys, replaces
//! values past the depth limit, and stops at the size limit.
//!
//! Everything a hostile `Serialize` impl can do is bounded here: output
//! length (the buffer never grows past its limit, a long string is scanned
//! only as far as there is room), nesting (a value past the depth limit is
//! never serialized), failures (an error stops the writer and is written as
//! [`UNSERIALIZABLE`]) and panics (caught in [`write`]).

use std::fmt::{self, Display, Write as _};
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::ser::{self, Serialize};

use super::keys::{FILTERED, KeyMasks, NotAKey, key_text};

/// What a value nested deeper than the depth limit is replaced with.
pub const TOO_DEEP: &str = "[TOO DEEP]";
/// Written when the arguments' `Serialize` impl fails or panics.
pub const UNSERIALIZABLE: &str = "[UNSERIALIZABLE]";
/// Appended to output cut at the size limit.
pub const TRUNCATED_MARKER: &str = "…[TRUNCATED]";

/// Serializes `value` as compact JSON: values under keys `masks` matches
/// become [`FILTERED`], values nested deeper than `max_depth` become
/// [`TOO_DEEP`], and the text is cut to `max_len` bytes (the marker
/// included) and then ends with [`TRUNCATED_MARKER`]. A failing
/// `Serialize` impl gives [`UNSERIALIZABLE`] after what was written; a
/// panicking one gives [`UNSERIALIZABLE`] alone.
pub(super) fn write<T: Serialize + ?Sized>(
    value: &T,
    masks: &KeyMasks,
    max_len: usize,
    max_depth: usize,
) -> String {
    let mut out = Out {
        buf: String::new(),
        max: max_len.saturating_sub(TRUNCATED_MARKER.len()),
        truncated: false,
        key_buf: String::new(),
    };
    let result = catch_unwind(AssertUnwindSafe(|| {
        value.serialize(Json {
            masks,
            max_depth,
            out: &mut out,
            depth: 0,
        })
    }));
    match result {
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
    }
}

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

impl From<NotAKey> for Stop {
    fn from(_: NotAKey) -> Self {
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
    masks: &'p KeyMasks,
    max_depth: usize,
    out: &'o mut Out,
    depth: usize,
}

impl<'p, 'o> Json<'p, 'o> {
    fn child<'b>(&'b mut self) -> Json<'p, 'b> {
        Json {
            masks: self.masks,
            max_depth: self.max_depth,
            out: self.out,
            depth: self.depth + 1,
        }
    }

    /// Serializes a nested value, or the depth placeholder past the limit.
    fn nested<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Stop> {
        if self.depth + 1 > self.max_depth {
            return self.out.push_json_str(TOO_DEEP);
        }
        value.serialize(self.child())
    }

    fn open(self, bracket: &str) -> Result<Compound<'p, 'o>, Stop> {
        if self.depth >= self.max_depth {
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
            masks: self.masks,
            max_depth: self.max_depth,
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
            let masked = self.ser.masks.is_masked(key, &mut key_buf);
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
        let (key, long) = key_text(key)?;
        let key = key.as_str();
        self.ser.out.push_json_str(key)?;
        self.ser.out.push(":")?;
        let out = &mut *self.ser.out;
        let mut key_buf = std::mem::take(&mut out.key_buf);
        self.mask_next = long || self.ser.masks.is_masked(key, &mut key_buf);
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
