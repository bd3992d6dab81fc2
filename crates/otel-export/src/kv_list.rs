//! `key=value,key2=value2` lists, the format of `OTEL_EXPORTER_OTLP_HEADERS`
//! and `OTEL_RESOURCE_ATTRIBUTES` (W3C Baggage octets: values percent-encoded).

use crate::Error;

/// Whether the values of a list may appear in error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Values {
    /// Values are credentials: neither they nor the keys are shown.
    Secret,
    /// Values are not sensitive: shown to help fix them.
    Shown,
}

const FORMAT: &str = "expected comma-separated `key=value` pairs with percent-encoded values, \
                      e.g. `key1=value1,key2=value%20two`";

/// One decoded `key=value` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// 1-based position of the entry in the list, counting empty entries.
    pub(crate) position: usize,
    pub(crate) key: String,
    pub(crate) value: String,
}

/// Parses `raw`, the value of `variable`, into decoded entries in order.
/// Empty entries (`a=1,,b=2`, a trailing comma) are skipped; keys and values
/// are trimmed. With [`Values::Secret`] errors show neither keys nor values
/// (a malformed entry may have a credential in its key part).
pub(crate) fn parse(
    variable: &'static str,
    raw: &str,
    values: Values,
) -> Result<Vec<Entry>, Error> {
    let mut entries = Vec::new();
    for (index, entry) in raw.split(',').enumerate() {
        let position = index + 1;
        if entry.trim().is_empty() {
            continue;
        }
        let fail = |what: &str| {
            let shown = match values {
                Values::Shown => format!("(`{}`)", entry.trim()),
                Values::Secret => "(keys and values are not shown)".to_owned(),
            };
            Err(Error::env(
                variable,
                format!("entry {position} {what} {shown}; {FORMAT}"),
            ))
        };
        let Some((key, value)) = entry.split_once('=') else {
            return fail("has no `=`");
        };
        let key = key.trim();
        if key.is_empty() {
            return fail("has an empty key");
        }
        let Some(value) = percent_decode(value.trim()) else {
            return fail("has a value that is not valid percent-encoded UTF-8");
        };
        entries.push(Entry {
            position,
            key: key.to_owned(),
            value,
        });
    }
    Ok(entries)
}

/// Decodes `%XX` escapes; `None` for a malformed escape or non-UTF-8 result.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let high = hex_digit(*bytes.get(i + 1)?)?;
            let low = hex_digit(*bytes.get(i + 2)?)?;
            decoded.push(high << 4 | low);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VAR: &str = "OTEL_EXPORTER_OTLP_HEADERS";

    fn pairs(entries: Vec<Entry>) -> Vec<(String, String)> {
        entries.into_iter().map(|e| (e.key, e.value)).collect()
    }

    fn expected(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_decodes() {
        let parsed = parse(
            VAR,
            " api-key = abc%3D%3D , x-scope=team%20a,,empty=,",
            Values::Secret,
        )
        .unwrap();
        assert_eq!(parsed[2].position, 4);
        assert_eq!(
            pairs(parsed),
            expected(&[("api-key", "abc=="), ("x-scope", "team a"), ("empty", "")])
        );
    }

    #[test]
    fn decodes_multibyte_utf8() {
        let parsed = parse(VAR, "k=caf%C3%A9", Values::Shown).unwrap();
        assert_eq!(pairs(parsed), expected(&[("k", "café")]));
    }

    #[test]
    fn errors_name_the_variable_and_hide_secret_values() {
        for raw in [
            "authorization=Bearer s3cr3t-token,broken-s3cr3t-token",
            "authorization=Bearer%zzs3cr3t-token",
            "authorization=Bearer s3cr3t-token,=s3cr3t-token",
            "authorization=s3cr3t-token%E9",
            "authorization: Bearer s3cr3t-token=x%zz",
        ] {
            let message = parse(VAR, raw, Values::Secret).unwrap_err().to_string();
            assert!(message.starts_with(VAR), "{message}");
            assert!(!message.contains("s3cr3t"), "leaks a value: {message}");
            assert!(message.contains("key=value"), "{message}");
        }
    }

    #[test]
    fn shown_values_appear_in_errors() {
        let message = parse("OTEL_RESOURCE_ATTRIBUTES", "a=1,oops", Values::Shown)
            .unwrap_err()
            .to_string();
        assert!(message.contains("entry 2"), "{message}");
        assert!(message.contains("`oops`"), "{message}");
    }
}
