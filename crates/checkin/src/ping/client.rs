//! The HTTP/1.1 client pings go out with: hyper-util's pooled client, over
//! rustls with ring for `https://` (feature `tls`).

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
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

/// What became of one request.
#[derive(Debug)]
pub(crate) enum Answer {
    /// A 2xx or 3xx status (healthchecks answers 200, Cronitor 200, Sentry 202).
    Accepted,
    /// Worth another try: no connection, a timeout, 429 or 5xx.
    Retry(String),
    /// Not worth another try: any other 4xx, a bad URL.
    Refused(String),
}

#[derive(Clone, Debug)]
pub(crate) struct PingClient {
    client: Client<Connector, Empty<Bytes>>,
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

    pub(crate) async fn send(&self, ping: &PingRequest) -> Answer {
        let uri: http::Uri = match ping.url.parse() {
            Ok(uri) => uri,
            Err(e) => return Answer::Refused(format!("bad URL: {e}")),
        };
        #[cfg(not(feature = "tls"))]
        if uri.scheme_str() == Some("https") {
            return Answer::Refused("https needs jobsight-checkin's `tls` feature".to_owned());
        }
        let request = match http::Request::builder()
            .method(ping.method.clone())
            .uri(uri)
            .header(
                http::header::USER_AGENT,
                concat!("jobsight/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
        {
            Ok(r) => r,
            Err(e) => return Answer::Refused(format!("bad request: {e}")),
        };
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            // Read (and drop) the body so the connection can be reused.
            let _ = response.into_body().collect().await;
            Ok::<_, String>(status)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Answer::Retry(format!("no answer within {:?}", self.timeout)),
            Ok(Err(e)) => Answer::Retry(e),
            Ok(Ok(status)) if status.is_success() || status.is_redirection() => Answer::Accepted,
            Ok(Ok(status)) if status.is_server_error() || status.as_u16() == 429 => {
                Answer::Retry(format!("HTTP {status}"))
            }
            Ok(Ok(status)) => Answer::Refused(format!("HTTP {status}")),
        }
    }
}
