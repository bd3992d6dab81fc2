//! Test support: an in-process OTLP receiver (gRPC and HTTP/protobuf) built on the
//! official `opentelemetry-proto` types, with a flattened model for assertions.
//!
//! ```ignore
//! mod support;
//! use support::{Receiver, Span, SpanKind};
//!
//! let rx = Receiver::grpc().await;               // or Receiver::http().await
//! // point an exporter at rx.traces_endpoint() / rx.metrics_endpoint()
//! let spans = rx.wait_for_spans(1, Duration::from_secs(5)).await;
//! let points = rx.wait_for_metric("job.queue_time", Duration::from_secs(5)).await;
//! ```
//!
//! Must be used from a tokio runtime (the server is a spawned task); the `wait_for_*`
//! helpers are async so they never block a runtime worker.
#![allow(dead_code)]
#![allow(unused_imports)]

mod grpc;
mod http;
pub mod model;
pub mod receiver;

pub use model::{
    Attributes, Event, Link, LogRecord, MetricKind, MetricPoint, Span, SpanKind, StatusCode,
    Temporality, Value,
};
pub use receiver::{Mode, Receiver, Signal, Transport, Until, grpc_code_for, reserve_port};
