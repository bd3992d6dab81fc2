//! The HTTP/1.1 client pings go out with: hyper-util's pooled client, over
//! rustls with ring for `https://` (feature `tls`).
//!
//! Redirects (301, 302, 303, 307, 308) are followed, at most
//! [`MAX_REDIRECTS`] of them, with the same method and body (a ping moved
//! elsewhere is still the same ping), never from `https` to `http`; a
//! redirect beyond that, one without a usable `Location`, and any other
//! 3xx are failures: a ping counts as sent only on a 2xx answer.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::format::PingRequest;
use crate::error::Error;

#[cfg(feature = "tls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "tls"))]
type Connector = HttpConnector;

/// Redirects followed for one ping, at most.
pub const MAX_REDIRECTS: usize = 3;

/// What became of one request.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A 2xx status (healthchecks answers 200, Cronitor 200, Sentry 202).
    Accepted {
        status: u16,
        /// The `Ping-Body-Limit` header, if the service sent one.
        body_limit: Option<usize>,
    },
    /// Worth another try: no connection, a timeout, 429 or 5xx.
    Retry(String),
    /// Not worth another try: any other answer, a bad URL.
    Refused { why: String, status: Option<u16> },
}

#[derive(Clone, Debug)]
pub(crate) struct PingClient {
    client: Client<Connector, Full<Bytes>>,
    timeout: Duration,
}

impl PingClient {
    pub(crate) fn new(timeout: Duration) -> Result<Self, Error> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        #[cfg(feature = "tls")]
        let connector = {
            let provider = rustls::crypto::CryptoProvider::get_default()
                .cloned()
                .unwrap_or_else(|| std::sync::Arc::new(rustls::crypto::ring::default_provider()));
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth());
            let config = config.map_err(|e| Error::Tls(e.to_string()))?;
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_or_http()
                .enable_http1()
                .wrap_connector(http)
        };
        #[cfg(not(feature = "tls"))]
        let connector = http;
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self { client, timeout })
    }

    /// Sends `ping`, following redirects; the whole exchange within the
    /// client's timeout.
    pub(crate) async fn send(&self, ping: &PingRequest) -> Answer {
        let refused = |why: String| Answer::Refused { why, status: None };
        let mut uri: http::Uri = match ping.url.parse() {
            Ok(uri) => uri,
            Err(e) => return refused(format!("bad URL: {e}")),
        };
        let exchange = async {
            let mut hops = 0;
            loop {
                #[cfg(not(feature = "tls"))]
                if uri.scheme_str() == Some("https") {
                    return refused("https needs jobsight-checkin's `tls` feature".to_owned());
                }
                let (status, location, body_limit) = match self.exchange(ping, &uri).await {
                    Ok(answer) => answer,
                    Err(e) => return e,
                };
                if status.is_success() {
                    return Answer::Accepted {
                        status: status.as_u16(),
                        body_limit,
                    };
                }
                if status.is_server_error() || status.as_u16() == 429 {
                    return Answer::Retry(format!("HTTP {status}"));
                }
                let redirect = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308);
                if !redirect {
                    return Answer::Refused {
                        why: format!("HTTP {status}"),
                        status: Some(status.as_u16()),
                    };
                }
                let refused_redirect = |why: &str| Answer::Refused {
                    why: format!("HTTP {status}: {why}"),
                    status: Some(status.as_u16()),
                };
                if hops == MAX_REDIRECTS {
                    return refused_redirect(&format!(
                        "more than {MAX_REDIRECTS} redirects; set the service's final URL"
                    ));
                }
                hops += 1;
                let Some(next) = location.and_then(|l| resolve(&uri, &l)) else {
                    return refused_redirect("redirect without a usable Location");
                };
                if uri.scheme_str() == Some("https") && next.scheme_str() != Some("https") {
                    return refused_redirect("redirect from https to http refused");
                }
                uri = next;
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Answer::Retry(format!("no answer within {:?}", self.timeout)),
            Ok(answer) => answer,
        }
    }

    /// One request to `uri`: its status, `Location` and `Ping-Body-Limit`.
    async fn exchange(
        &self,
        ping: &PingRequest,
        uri: &http::Uri,
    ) -> Result<(http::StatusCode, Option<String>, Option<usize>), Answer> {
        let mut builder = http::Request::builder()
            .method(ping.method.clone())
            .uri(uri.clone())
            .header(
                http::header::USER_AGENT,
                concat!("jobsight/", env!("CARGO_PKG_VERSION")),
            );
        let body = match &ping.body {
            Some(body) => {
                builder = builder.header(http::header::CONTENT_TYPE, body.content_type);
                Full::new(Bytes::from(body.data.clone()))
            }
            None => Full::new(Bytes::new()),
        };
        let request = builder.body(body).map_err(|e| Answer::Refused {
            why: format!("bad request: {e}"),
            status: None,
        })?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| Answer::Retry(e.to_string()))?;
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header("location");
        let body_limit = header("ping-body-limit").and_then(|v| v.trim().parse().ok());
        // Read (and drop) the body so the connection can be reused.
        let _ = response.into_body().collect().await;
        Ok((status, location, body_limit))
    }
}

/// `location` resolved against `base`: an absolute URL, or an absolute path
/// on the same host.
fn resolve(base: &http::Uri, location: &str) -> Option<http::Uri> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.parse().ok();
    }
    if location.starts_with('/') && !location.starts_with("//") {
        let mut parts = base.clone().into_parts();
        parts.path_and_query = Some(location.parse().ok()?);
        return http::Uri::from_parts(parts).ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve() {
        let base: http::Uri = "http://h:1/a/b?x=1".parse().unwrap();
        assert_eq!(
            resolve(&base, "/c?y=2").unwrap().to_string(),
            "http://h:1/c?y=2"
        );
        assert_eq!(
            resolve(&base, "https://o/p").unwrap().to_string(),
            "https://o/p"
        );
        assert!(resolve(&base, "relative").is_none());
        assert!(resolve(&base, "//other/x").is_none());
    }
}
