//! Map keys: which ones are masked, and how a key of any type becomes the
//! text of a JSON object key.

use std::fmt::{self, Display, Write as _};

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
/// Longest map key written, in bytes; longer keys are cut in the output and
/// their values are always masked.
pub const MAX_KEY_LEN: usize = 256;
/// What a masked value is replaced with.
pub const FILTERED: &str = "[FILTERED]";

/// The mask patterns of a policy, normalized (see [`normalize`]).
#[derive(Clone, Debug)]
pub(super) struct KeyMasks(Vec<Box<str>>);

impl KeyMasks {
    /// [`DEFAULT_MASKED_KEYS`].
    pub(super) fn defaults() -> Self {
        Self(
            DEFAULT_MASKED_KEYS
                .iter()
                .map(|k| normalize(k).into())
                .collect(),
        )
    }

    /// Adds `pattern`; one that normalizes to nothing is ignored.
    pub(super) fn add(&mut self, pattern: &str) {
        let pattern = normalize(pattern);
        if !pattern.is_empty() {
            self.0.push(pattern.into());
        }
    }

    /// Whether the value under `key` is masked: a key longer than
    /// [`MAX_KEY_LEN`] always is, any other when its normalized form
    /// contains a pattern. `buf` is scratch space, reused between calls.
    pub(super) fn is_masked(&self, key: &str, buf: &mut String) -> bool {
        if key.len() > MAX_KEY_LEN {
            return true;
        }
        buf.clear();
        buf.extend(
            key.chars()
                .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
                .flat_map(char::to_lowercase),
        );
        self.0.iter().any(|m| buf.contains(&**m))
    }
}

/// Lower-cased, without `_`, `-`, `.` and spaces.
fn normalize(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Why a map key could not be written as text: its type is not a string,
/// number, boolean, char or unit variant, or it wraps itself too deeply.
#[derive(Debug)]
pub(super) struct NotAKey;

impl Display for NotAKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map key that cannot be written as text")
    }
}

impl std::error::Error for NotAKey {}

impl ser::Error for NotAKey {
    fn custom<T: Display>(_msg: T) -> Self {
        NotAKey
    }
}

/// The text of `key`, cut to [`MAX_KEY_LEN`] bytes, and whether it was cut.
pub(super) fn key_text<T: Serialize + ?Sized>(key: &T) -> Result<(String, bool), NotAKey> {
    let mut text = String::new();
    let mut long = false;
    key.serialize(KeyText {
        text: &mut text,
        long: &mut long,
        depth: 0,
    })?;
    let kept = crate::error::truncate(&text, MAX_KEY_LEN).len();
    long |= kept < text.len();
    text.truncate(kept);
    Ok((text, long))
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
    fn text(self, value: impl Display) -> Result<(), NotAKey> {
        let _ = write!(self.text, "{value}");
        Ok(())
    }

    fn wrapped<T: Serialize + ?Sized>(self, value: &T) -> Result<(), NotAKey> {
        if self.depth >= MAX_KEY_WRAPPERS {
            return Err(NotAKey);
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
    type Error = NotAKey;
    type SerializeSeq = ser::Impossible<(), NotAKey>;
    type SerializeTuple = ser::Impossible<(), NotAKey>;
    type SerializeTupleStruct = ser::Impossible<(), NotAKey>;
    type SerializeTupleVariant = ser::Impossible<(), NotAKey>;
    type SerializeMap = ser::Impossible<(), NotAKey>;
    type SerializeStruct = ser::Impossible<(), NotAKey>;
    type SerializeStructVariant = ser::Impossible<(), NotAKey>;

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
    fn serialize_str(self, v: &str) -> Result<(), NotAKey> {
        let kept = crate::error::truncate(v, MAX_KEY_LEN);
        *self.long |= kept.len() < v.len();
        self.text.push_str(kept);
        Ok(())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), NotAKey> {
        Err(NotAKey)
    }
    fn serialize_none(self) -> Result<(), NotAKey> {
        Err(NotAKey)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), NotAKey> {
        self.wrapped(value)
    }
    fn serialize_unit(self) -> Result<(), NotAKey> {
        Err(NotAKey)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), NotAKey> {
        Err(NotAKey)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), NotAKey> {
        self.text(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), NotAKey> {
        self.wrapped(value)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), NotAKey> {
        Err(NotAKey)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, NotAKey> {
        Err(NotAKey)
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, NotAKey> {
        Err(NotAKey)
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, NotAKey> {
        Err(NotAKey)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, NotAKey> {
        Err(NotAKey)
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, NotAKey> {
        Err(NotAKey)
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, NotAKey> {
        Err(NotAKey)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, NotAKey> {
        Err(NotAKey)
    }
}
