//! The OTLP/HTTP client for `https://` endpoints: hyper over rustls
//! (hyper-rustls), HTTP/1.1, with requests run on the export runtime.
//!
//! It also keeps the cause of its last failed request: the OTLP exporter
//! reports every transport failure as just "network error", and the
//! first-failure warning adds the cause kept here, e.g. `invalid peer
//! certificate: UnknownIssuer`.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use rustls::ClientConfig;
use tokio::runtime::Handle;

use crate::exporter_wrap::TransportError;

/// The largest response body read, as in opentelemetry-http's own clients.
const MAX_RESPONSE_BODY_BYTES: usize = 4 * 1024 * 1024;

/// An HTTPS client for one signal's exporter.
#[derive(Debug)]
pub(crate) struct HttpsClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: Handle,
    /// Per request, connecting and reading the response included.
    timeout: Duration,
    last_error: Arc<TransportError>,
}

impl HttpsClient {
    /// A client with `config` (no ALPN: HTTP/1.1) whose requests run on
    /// `runtime`. Nothing connects before the first request.
    pub(crate) fn new(
        config: ClientConfig,
        runtime: Handle,
        timeout: Duration,
        last_error: Arc<TransportError>,
    ) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .build(connector);
        HttpsClient {
            client,
            runtime,
            timeout,
            last_error,
        }
    }
}

// `HttpClient` is an `async_trait`: this is its expanded signature.
impl HttpClient for HttpsClient {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            // The SDK awaits exports on threads of its own, outside any
            // runtime: the request itself runs on the export runtime.
            let task = self
                .runtime
                .spawn(send(self.client.clone(), request, self.timeout));
            let result = match task.await {
                Ok(result) => result,
                Err(_) => Err("the export runtime stopped during the request".into()),
            };
            self.last_error
                .set(result.as_ref().err().map(|error| cause(error.as_ref())));
            result
        })
    }
}

async fn send(
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    request: Request<Bytes>,
    timeout: Duration,
) -> Result<Response<Bytes>, HttpError> {
    let exchange = async {
        let response = client.request(request.map(Full::new)).await?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BODY_BYTES)
            .collect()
            .await?
            .to_bytes();
        Ok(Response::from_parts(parts, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("no response within {timeout:?}").into()))
}

/// `error` and its causes, outermost first, repeats dropped.
fn cause(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(current) = next {
        let text = current.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        next = current.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Layer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref().map(|layer| layer as _)
        }
    }

    #[test]
    fn joins_the_chain_and_drops_repeats() {
        let error = Layer(
            "client error (Connect)",
            Some(Box::new(Layer(
                "invalid peer certificate: UnknownIssuer",
                Some(Box::new(Layer("UnknownIssuer", None))),
            ))),
        );
        assert_eq!(
            cause(&error),
            "client error (Connect): invalid peer certificate: UnknownIssuer"
        );
    }
}
