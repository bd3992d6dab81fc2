//! `OTEL_EXPORTER_OTLP_HEADERS` and its per-signal variants: parsed and
//! validated here, because the exporters silently drop entries they cannot
//! use. Header values are credentials and never appear in messages.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::Error;
use crate::kv_list::{self, Values};

/// Headers sent with every export request, in order, names lower-cased.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Headers(Vec<(HeaderName, HeaderValue)>);

impl Headers {
    /// Parses the value of `variable`.
    pub(crate) fn from_env(variable: &'static str, raw: &str) -> Result<Self, Error> {
        let mut headers = Vec::new();
        for entry in kv_list::parse(variable, raw, Values::Secret)? {
            let Ok(name) = HeaderName::from_bytes(entry.key.as_bytes()) else {
                return Err(Error::env(
                    variable,
                    format!(
                        "entry {} has a key that is not a valid HTTP header name \
                         (keys and values are not shown)",
                        entry.position
                    ),
                ));
            };
            let Ok(mut value) = HeaderValue::from_str(&entry.value) else {
                return Err(Error::env(
                    variable,
                    format!(
                        "the value of header `{name}` (entry {}) contains control characters \
                         (values are not shown)",
                        entry.position
                    ),
                ));
            };
            // Credentials: `Debug` shows `Sensitive`, and HTTP/2 never
            // indexes them.
            value.set_sensitive(true);
            headers.push((name, value));
        }
        Ok(Headers(headers))
    }

    /// These headers overridden, name by name, by `other`.
    pub(crate) fn overridden_by(&self, other: &Headers) -> Headers {
        let mut merged: Vec<_> = self
            .0
            .iter()
            .filter(|(name, _)| !other.0.iter().any(|(n, _)| n == name))
            .cloned()
            .collect();
        merged.extend(other.0.iter().cloned());
        Headers(merged)
    }

    /// For the gRPC exporter's metadata.
    pub(crate) fn to_header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.0.len());
        for (name, value) in &self.0 {
            map.append(name.clone(), value.clone());
        }
        map
    }

    /// For the HTTP exporter, whose `with_headers` percent-decodes values
    /// once more: `%` is escaped so a decoded value arrives unchanged.
    pub(crate) fn to_http_map(&self) -> std::collections::HashMap<String, String> {
        self.decoded()
            .map(|(name, value)| (name, value.replace('%', "%25")))
            .collect()
    }

    /// Names and decoded values.
    fn decoded(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.0.iter().map(|(name, value)| {
            (
                name.to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
    }

    /// True when there are no headers.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VAR: &str = "OTEL_EXPORTER_OTLP_HEADERS";

    #[test]
    fn parses_valid_headers() {
        let headers = Headers::from_env(VAR, "Authorization=Bearer%20abc,x-team=jobs").unwrap();
        let map: std::collections::HashMap<_, _> = headers.decoded().collect();
        assert_eq!(map["authorization"], "Bearer abc");
        assert_eq!(map["x-team"], "jobs");
    }

    #[test]
    fn invalid_names_and_values_never_leak_values() {
        for raw in [
            "authorization: Bearer s3cr3t=1",
            "authorization=Bearer s3cr3t%0A",
            "x=1,bad key=s3cr3t",
        ] {
            let message = Headers::from_env(VAR, raw).unwrap_err().to_string();
            assert!(message.starts_with(VAR), "{message}");
            assert!(!message.contains("s3cr3t"), "leaks a value: {message}");
        }
    }

    #[test]
    fn http_map_survives_the_exporters_second_decoding() {
        let headers = Headers::from_env(VAR, "k=100%2525").unwrap();
        assert_eq!(headers.to_http_map()["k"], "100%2525");
        assert_eq!(headers.decoded().next().unwrap().1, "100%25");
    }

    #[test]
    fn signal_headers_override_generic_ones_by_name() {
        let generic = Headers::from_env(VAR, "a=1,B=2").unwrap();
        let specific = Headers::from_env("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=3,c=4").unwrap();
        let merged: std::collections::HashMap<_, _> =
            generic.overridden_by(&specific).decoded().collect();
        assert_eq!(merged.len(), 3);
        assert_eq!(merged["a"], "1");
        assert_eq!(merged["b"], "3");
        assert_eq!(merged["c"], "4");
    }
}
