//! OTLP endpoint URLs: validation and the per-signal path of OTLP/HTTP.

use http::Uri;

use crate::Signal;

/// Checks that `value` is an absolute `http://` URL with a host; the reason
/// otherwise. `https://` is refused: this build has no TLS support.
pub(crate) fn validate(value: &str) -> Result<(), String> {
    let shown = redact(value);
    let uri: Uri = value.parse().map_err(|e| {
        format!("`{shown}` is not a valid URL ({e}); expected e.g. `http://localhost:4318`")
    })?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "`{shown}` uses https, but jobsight-otel is built without TLS support; \
                 use an `http://` endpoint (e.g. a local collector)"
            ));
        }
        _ => {
            return Err(format!(
                "`{shown}` must start with `http://` (e.g. `http://localhost:4318`)"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!(
            "`{shown}` has no host; expected e.g. `http://localhost:4318`"
        ));
    }
    Ok(())
}

/// The OTLP/HTTP URL of `signal` under the generic endpoint `base`:
/// `http://host:4318` and `http://host:4318/` both become
/// `http://host:4318/v1/traces`; a base path is kept (`/otlp/v1/traces`).
pub(crate) fn with_signal_path(base: &str, signal: Signal) -> String {
    format!("{}/{}", base.trim_end_matches('/'), signal.http_path())
}

/// `value` with any `user:password@` part replaced, for messages.
pub(crate) fn redact(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_urls() {
        for ok in [
            "http://localhost:4318",
            "http://127.0.0.1:4317/",
            "http://collector.example/otlp",
        ] {
            assert_eq!(validate(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_non_urls_and_other_schemes() {
        for bad in [
            "localhost:4317",
            "ftp://host",
            "http://",
            "not a url",
            "grpc://host:4317",
        ] {
            assert!(validate(bad).is_err(), "{bad} accepted");
        }
        let https = validate("https://collector:4318").unwrap_err();
        assert!(https.contains("TLS"), "{https}");
    }

    #[test]
    fn appends_signal_paths_to_generic_http_endpoints() {
        assert_eq!(
            with_signal_path("http://localhost:4318", Signal::Traces),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            with_signal_path("http://localhost:4318/", Signal::Metrics),
            "http://localhost:4318/v1/metrics"
        );
        assert_eq!(
            with_signal_path("http://gateway/otlp/", Signal::Traces),
            "http://gateway/otlp/v1/traces"
        );
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(redact("http://u:p@host:4318/x"), "http://***@host:4318/x");
        assert_eq!(redact("http://host:4318/a@b"), "http://host:4318/a@b");
        let message = validate("ftp://user:s3cr3t@host").unwrap_err();
        assert!(!message.contains("s3cr3t"), "{message}");
    }
}
