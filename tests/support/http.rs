//! OTLP/HTTP front end (binary protobuf only): an axum server with
//! `POST /v1/traces` and `POST /v1/metrics`.
//!
//! Refused with 415 Unsupported Media Type: a `Content-Type` other than
//! `application/x-protobuf` (OTLP/JSON is not supported) and any `Content-Encoding`
//! other than `identity` — gzip would need a decompressor (flate2), which is not a
//! dependency of this workspace, so it is not "trivial" here. An undecodable body
//! gets 400. All of these still count in `Receiver::request_count`.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
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
use tokio::net::TcpListener;

use super::receiver::{Mode, Signal, State};

const PROTOBUF: &str = "application/x-protobuf";

fn plain(status: StatusCode, msg: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], msg).into_response()
}

/// Checks the headers and decodes the body; `Err` is the status and text to answer with.
fn decode<M: Message + Default>(
    headers: &HeaderMap,
    body: &Bytes,
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
    M::decode(body.clone()).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("invalid protobuf body: {e}"),
        )
    })
}

async fn answer<R: Message + Default>(state: &State, signal: Signal, mode: Mode) -> Response {
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
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, PROTOBUF)],
        R::default().encode_to_vec(),
    )
        .into_response()
}

async fn traces(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match decode::<ExportTraceServiceRequest>(&headers, &body) {
        Ok(req) => {
            let mode = state.on_traces(req);
            answer::<ExportTraceServiceResponse>(&state, Signal::Traces, mode).await
        }
        Err((status, msg)) => {
            state.count_undecodable(Signal::Traces);
            plain(status, msg)
        }
    }
}

async fn metrics(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match decode::<ExportMetricsServiceRequest>(&headers, &body) {
        Ok(req) => {
            let mode = state.on_metrics(req);
            answer::<ExportMetricsServiceResponse>(&state, Signal::Metrics, mode).await
        }
        Err((status, msg)) => {
            state.count_undecodable(Signal::Metrics);
            plain(status, msg)
        }
    }
}

async fn logs(
    AxumState(state): AxumState<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match decode::<ExportLogsServiceRequest>(&headers, &body) {
        Ok(req) => {
            let mode = state.on_logs(req);
            answer::<ExportLogsServiceResponse>(&state, Signal::Logs, mode).await
        }
        Err((status, msg)) => {
            state.count_undecodable(Signal::Logs);
            plain(status, msg)
        }
    }
}

/// Serves until `signal` resolves.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    signal: impl Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .route("/v1/logs", post(logs))
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await
    {
        eprintln!("test OTLP HTTP receiver stopped with an error: {e}");
    }
}
