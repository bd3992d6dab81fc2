//! OTLP/HTTP front end (binary protobuf only): a hyper HTTP/1.1 server with
//! `POST /v1/traces`, `POST /v1/metrics` and `POST /v1/logs`, plain or
//! behind TLS.
//!
//! Refused with 415 Unsupported Media Type: a `Content-Type` other than
//! `application/x-protobuf` (OTLP/JSON is not supported) and any `Content-Encoding`
//! other than `identity` (no decompressor is a dependency of the workspace). An
//! undecodable body gets 400, another path 404, another method 405. All
//! requests to the two paths still count in `Receiver::request_count`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use super::receiver::{Mode, Signal, State, TlsConfig};

const PROTOBUF: &str = "application/x-protobuf";
/// The largest request body read (bursts of spans fit).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

type Answer = Response<Full<Bytes>>;

fn plain(status: StatusCode, msg: String) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(msg)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    response
}

/// Checks the headers and decodes the body; `Err` is the status and text to answer with.
fn decode<M: Message + Default>(
    headers: &HeaderMap,
    body: Bytes,
) -> Result<M, (StatusCode, String)> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case(PROTOBUF) {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("test receiver only accepts {PROTOBUF}, got {content_type:?}"),
        ));
    }
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("?").trim();
        if !enc.is_empty() && !enc.eq_ignore_ascii_case("identity") {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("test receiver does not decompress Content-Encoding {enc:?}"),
            ));
        }
    }
    M::decode(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("invalid protobuf body: {e}"),
        )
    })
}

async fn answer<R: Message + Default>(state: &State, signal: Signal, mode: Mode) -> Answer {
    match mode {
        Mode::Accept => {}
        Mode::Delay(d) => tokio::time::sleep(d).await,
        Mode::Reject(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return plain(status, format!("rejected by test receiver ({code})"));
        }
        Mode::GrpcStatus(code) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("rejected by test receiver (gRPC {code:?})"),
            );
        }
    }
    state.count_answered(signal);
    let mut response = Response::new(Full::new(Bytes::from(R::default().encode_to_vec())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(PROTOBUF),
    );
    response
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Result<Answer, Infallible> {
    let signal = match request.uri().path() {
        "/v1/traces" => Signal::Traces,
        "/v1/metrics" => Signal::Metrics,
        "/v1/logs" => Signal::Logs,
        other => return Ok(plain(StatusCode::NOT_FOUND, format!("no route {other}"))),
    };
    if request.method() != Method::POST {
        return Ok(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST only".to_owned(),
        ));
    }
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            state.count_undecodable(signal);
            return Ok(plain(StatusCode::BAD_REQUEST, format!("body: {e}")));
        }
    };
    let response = match signal {
        Signal::Traces => match decode::<ExportTraceServiceRequest>(&parts.headers, body) {
            Ok(req) => {
                let mode = state.on_traces(req);
                answer::<ExportTraceServiceResponse>(&state, signal, mode).await
            }
            Err((status, msg)) => {
                state.count_undecodable(signal);
                plain(status, msg)
            }
        },
        Signal::Metrics => match decode::<ExportMetricsServiceRequest>(&parts.headers, body) {
            Ok(req) => {
                let mode = state.on_metrics(req);
                answer::<ExportMetricsServiceResponse>(&state, signal, mode).await
            }
            Err((status, msg)) => {
                state.count_undecodable(signal);
                plain(status, msg)
            }
        },
        Signal::Logs => match decode::<ExportLogsServiceRequest>(&parts.headers, body) {
            Ok(req) => {
                let mode = state.on_logs(req);
                answer::<ExportLogsServiceResponse>(&state, signal, mode).await
            }
            Err((status, msg)) => {
                state.count_undecodable(signal);
                plain(status, msg)
            }
        },
    };
    Ok(response)
}

/// Serves `stream` (plain or TLS) until it closes or the server shuts down.
async fn serve_connection<S>(stream: S, state: Arc<State>, watcher: Watcher)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| handle(state.clone(), request));
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let _ = watcher.watch(connection).await;
}

/// Serves until `signal` resolves, then lets requests in flight finish: the
/// listener is closed at once, kept-alive connections after their current
/// request.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<TlsConfig>,
    signal: impl Future<Output = ()> + Send + 'static,
) {
    #[cfg(feature = "tls")]
    let acceptor = tls.map(|tls| crate::tls::acceptor(tls.require_client_certificate));
    #[cfg(not(feature = "tls"))]
    let _ = tls;
    let graceful = GracefulShutdown::new();
    let mut signal = std::pin::pin!(signal);
    loop {
        let stream = tokio::select! {
            () = &mut signal => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let state = state.clone();
        let watcher = graceful.watcher();
        #[cfg(feature = "tls")]
        if let Some(acceptor) = &acceptor {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A failed handshake (an untrusted client) just closes the connection.
                if let Ok(stream) = acceptor.accept(stream).await {
                    serve_connection(stream, state, watcher).await;
                }
            });
            continue;
        }
        tokio::spawn(serve_connection(stream, state, watcher));
    }
    drop(listener);
    graceful.shutdown().await;
}
