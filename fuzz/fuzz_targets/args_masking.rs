//! Argument masking of hostile values: a JSON value built from the input
//! (any nesting depth, any keys and strings, control characters, masked
//! keys in every spelling, very long keys and strings), captured with
//! `ArgsPolicy` under a size and depth limit taken from the input.
//!
//! Invariants (a violation panics, which the fuzzer reports as a crash):
//! - no panic, and the text is never longer than the size limit;
//! - cut text ends with the truncation marker and is a prefix of the text
//!   the same policy writes without a size limit;
//! - uncut text is valid JSON equal to an independent reference: every
//!   value under a key the mask list matches (or under a key too long to be
//!   checked) is `"[FILTERED]"`, values deeper than the depth limit are
//!   `"[TOO DEEP]"`, long keys are cut, everything else is unchanged;
//! - no string under a masked key (and nowhere else in the input) reaches
//!   the output;
//! - masking is idempotent: capturing the parsed output again gives the
//!   same text;
//! - `mask_pairs` masks the same keys and bounds every key and value.
#![no_main]

use jobsight_core::args::{ArgsPolicy, FILTERED, MAX_KEY_LEN, TOO_DEEP, TRUNCATED_MARKER};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// Deep enough to pass any depth limit; shallow enough for serde_json to
/// parse the output back (its recursion limit is 128).
const MAX_BUILD_DEPTH: usize = 400;

const KEYS: &[&str] = &[
    "password", "PassWord", "user_password", "api-key", "X-Api-Key", "apiKey", "token",
    "access.token", "Authorization", "cookie", "name", "id", "tags", "", "pass word", "sécret",
    "SECRET_VALUE", "credentials", "privateKey", "to",
];

/// Reads the input as a little program that builds a value.
struct Builder<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Builder<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = self.data.get(self.pos).copied();
        self.pos += 1;
        b
    }

    fn text(&mut self) -> String {
        let len = usize::from(self.byte().unwrap_or(0));
        let end = (self.pos + len).min(self.data.len());
        let start = self.pos.min(end);
        self.pos = end;
        let mut s = String::from_utf8_lossy(&self.data[start..end]).into_owned();
        if len > 250 {
            // Long strings and keys, past the key limit and any size limit.
            let times = usize::from(self.byte().unwrap_or(1)) * 8;
            s = s.repeat(times.max(1));
        }
        s
    }

    fn key(&mut self) -> String {
        let b = self.byte().unwrap_or(0);
        if usize::from(b) < KEYS.len() * 8 {
            let base = KEYS[usize::from(b) % KEYS.len()];
            match b % 4 {
                0 => base.to_owned(),
                1 => format!("{}{base}", self.text()),
                2 => format!("{base}{}", self.text()),
                _ => base.to_uppercase(),
            }
        } else {
            self.text()
        }
    }

    fn value(&mut self, depth: usize) -> Value {
        let Some(op) = self.byte() else {
            return Value::Null;
        };
        match op % 8 {
            0 => Value::Null,
            1 => Value::Bool(op & 8 != 0),
            2 => Value::from(i64::from(op) * 1_000_003 - 77),
            3 => serde_json::Number::from_f64(f64::from(op) / 7.0).map_or(Value::Null, Value::Number),
            4 | 5 => Value::String(self.text()),
            6 if depth < MAX_BUILD_DEPTH => {
                let n = usize::from(self.byte().unwrap_or(0) % 6);
                Value::Array((0..n).map(|_| self.value(depth + 1)).collect())
            }
            7 if depth < MAX_BUILD_DEPTH => {
                let n = usize::from(self.byte().unwrap_or(0) % 6);
                let mut map = Map::new();
                for _ in 0..n {
                    let k = self.key();
                    let v = self.value(depth + 1);
                    map.insert(k, v);
                }
                Value::Object(map)
            }
            _ => Value::String(self.text()),
        }
    }
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// What the policy is documented to write, as a value.
fn reference(policy: &ArgsPolicy, v: &Value, depth: usize, max_depth: usize) -> Value {
    match v {
        Value::Array(items) => {
            if depth >= max_depth {
                return Value::String(TOO_DEEP.into());
            }
            Value::Array(items.iter().map(|i| reference(policy, i, depth + 1, max_depth)).collect())
        }
        Value::Object(map) => {
            if depth >= max_depth {
                return Value::String(TOO_DEEP.into());
            }
            let mut out = Map::new();
            for (k, val) in map {
                let shown = cut(k, MAX_KEY_LEN).to_owned();
                let masked = k.len() > MAX_KEY_LEN || policy.is_masked(k);
                let val = if masked {
                    Value::String(FILTERED.into())
                } else {
                    reference(policy, val, depth + 1, max_depth)
                };
                out.insert(shown, val);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Strings found under masked keys, at any depth.
fn secrets<'a>(policy: &ArgsPolicy, v: &'a Value, under_mask: bool, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) if under_mask && s.len() >= 12 => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| secrets(policy, i, under_mask, out)),
        Value::Object(map) => {
            for (k, val) in map {
                let masked = under_mask || k.len() > MAX_KEY_LEN || policy.is_masked(k);
                secrets(policy, val, masked, out);
            }
        }
        _ => {}
    }
}

/// Keys, and strings not under masked keys.
fn visible<'a>(policy: &ArgsPolicy, v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| visible(policy, i, out)),
        Value::Object(map) => {
            for (k, val) in map {
                out.push(k);
                if !(k.len() > MAX_KEY_LEN || policy.is_masked(k)) {
                    visible(policy, val, out);
                }
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let max_len = 64 + usize::from(u16::from_le_bytes([data[0], data[1]]) % 8192);
    let max_depth = usize::from(data[2] % 100);
    let mut builder = Builder { data: &data[3..], pos: 0 };
    let value = builder.value(0);

    let policy = ArgsPolicy::new().all_jobs().max_len(max_len).max_depth(max_depth);
    let unbounded = ArgsPolicy::new().all_jobs().max_len(usize::MAX / 2).max_depth(max_depth);
    let text = policy.capture_always(&value).to_string();
    let full = unbounded.capture_always(&value).to_string();

    assert!(text.len() <= max_len, "{} bytes over a limit of {max_len}", text.len());
    // Either the whole, or a prefix of it followed by the marker. (The input
    // may itself contain the marker, so a cut text can also be a prefix of
    // the whole: only "not the whole" says it was cut.)
    if text != full {
        let prefix = text
            .strip_suffix(TRUNCATED_MARKER)
            .expect("text differs from the whole without the truncation marker");
        assert!(full.starts_with(prefix), "cut text is not a prefix of the whole");
        assert!(full.len() > prefix.len());
    }

    let parsed: Value = serde_json::from_str(&full).expect("uncut output is JSON");
    let expected = reference(&policy, &value, 0, max_depth);
    assert_eq!(parsed, expected, "output differs from the reference");

    // Strings under masked keys that appear nowhere else in the input must
    // not appear in the output.
    let mut hidden = Vec::new();
    secrets(&policy, &value, false, &mut hidden);
    let mut shown = Vec::new();
    visible(&policy, &value, &mut shown);
    let escaped = |s: &str| {
        let quoted = serde_json::to_string(s).expect("a string");
        quoted[1..quoted.len() - 1].to_owned()
    };
    let shown: Vec<String> = shown.iter().map(|s| escaped(s)).collect();
    for secret in hidden {
        let secret = escaped(secret);
        // Text that the JSON structure itself could spell is not a secret.
        let structural = secret.chars().all(|c| "nulltruefalse0123456789.,:[]{}+-eE".contains(c));
        if !structural
            && shown.iter().all(|s| !s.contains(&secret))
            && ![FILTERED, TOO_DEEP, TRUNCATED_MARKER].iter().any(|p| p.contains(&secret))
        {
            assert!(!full.contains(&secret), "a masked value leaked: {secret:?}");
        }
    }

    // Idempotence, compared as values: keys longer than the key bound are
    // cut, so two of them can come out as the same key, which parsing folds.
    let again = unbounded.capture_always(&parsed).to_string();
    let again: Value = serde_json::from_str(&again).expect("masked again is JSON");
    assert_eq!(again, parsed, "masking is not idempotent");

    if let Value::Object(map) = &value {
        let pairs: Vec<(&str, &str)> = map
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.as_str(), v)))
            .collect();
        for ((k, v), (mk, mv)) in pairs.iter().zip(policy.mask_pairs(pairs.iter().copied())) {
            assert!(mk.len() <= MAX_KEY_LEN && mv.len() <= max_len);
            if k.len() > MAX_KEY_LEN || policy.is_masked(k) {
                assert_eq!(mv, FILTERED);
            } else {
                assert_eq!(mv, cut(v, max_len));
            }
        }
    }
});
