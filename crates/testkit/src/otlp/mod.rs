//! An in-process OTLP receiver (gRPC and HTTP/protobuf, TLS optional) built
//! on the official `opentelemetry-proto` types, a flattened model of what it
//! received, and queries over that model (spans by job, metric series).
//!
//! ```no_run
//! use std::time::Duration;
//! use jobsight_testkit::otlp::{Receiver, Span};
//!
//! # async fn demo() {
//! let rx = Receiver::grpc().await; // or Receiver::http().await
//! // point an exporter at rx.traces_endpoint() / rx.metrics_endpoint()
//! let spans: Vec<Span> = rx.wait_for_spans(1, Duration::from_secs(5)).await;
//! let points = rx.wait_for_metric("job.queue_time", Duration::from_secs(5)).await;
//! # let _ = (spans, points);
//! # }
//! ```
//!
//! The server runs on a runtime of its own; the `wait_for_*` helpers are
//! async (they sleep on the caller's tokio runtime) with `_blocking`
//! variants for plain `#[test]`s.

mod grpc;
mod http;
mod model;
mod query;
mod receiver;

pub use model::{
    Attributes, Event, Link, LogRecord, MetricKind, MetricPoint, Span, SpanKind, StatusCode,
    Temporality, Value, attributes, flatten_logs, flatten_metrics, flatten_spans, hex,
};
pub use query::{
    Series, attr_f64, attr_i64, brief, expected_totals, jobs_by_id, outcome, outcomes, series,
    series_of_queue, totals_by,
};
pub use receiver::{
    Mode, Receiver, ReceiverBuilder, STOP_WAIT, Signal, TlsConfig, Transport, Until, grpc_code_for,
    reserve_port,
};
