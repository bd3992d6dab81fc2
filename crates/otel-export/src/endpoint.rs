//! OTLP endpoint URLs: validation and the per-signal path of OTLP/HTTP.

use http::Uri;

use crate::Signal;

/// Checks that `value` is an absolute `http://` or `https://` URL with a
/// host; the reason otherwise. Without the `tls` feature `https://` is
/// refused, naming the feature.
pub(crate) fn validate(value: &str) -> Result<(), String> {
    let shown = redact(value);
    let uri: Uri = value.parse().map_err(|e| {
        format!("`{shown}` is not a valid URL ({e}); expected e.g. `http://localhost:4318`")
    })?;
    match uri.scheme_str() {
        Some("http") => {}
        #[cfg(feature = "tls")]
        Some("https") => {}
        #[cfg(not(feature = "tls"))]
        Some("https") => {
            return Err(format!(
                "`{shown}` uses https, but jobsight-otel was built without TLS support \
                 (its `tls` cargo feature, on by default, is off); enable the feature \
                 or use an `http://` endpoint (e.g. a local collector)"
            ));
        }
        _ => {
            return Err(format!(
                "`{shown}` must start with `http://` or `https://` (e.g. `http://localhost:4318`)"
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

/// True when `value` (already validated) is an `https://` URL.
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) fn is_https(value: &str) -> bool {
    value
        .parse::<Uri>()
        .is_ok_and(|uri| uri.scheme() == Some(&http::uri::Scheme::HTTPS))
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
            "HTTP://collector.example:4318",
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
    }

    #[cfg(feature = "tls")]
    #[test]
    fn accepts_https_urls_with_the_tls_feature() {
        assert_eq!(validate("https://api.honeycomb.io:443"), Ok(()));
        assert!(is_https("https://localhost:4317"));
        assert!(is_https("HTTPS://localhost:4317"));
        assert!(!is_https("http://localhost:4317"));
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn refuses_https_without_the_tls_feature() {
        let https = validate("https://collector:4318").unwrap_err();
        assert!(https.contains("TLS"), "{https}");
        assert!(https.contains("`tls`"), "{https}");
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
