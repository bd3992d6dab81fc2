//! The workspace's test kit: one place for what the tests of every jobsight
//! crate share. Add it as a dev-dependency with the features the test needs.
//!
//! | You want | Use | Feature |
//! | --- | --- | --- |
//! | SDK providers that record spans and metrics in memory | `MemoryTelemetry` | — |
//! | to read back a writer (jobsight-otel's reports, a logger) | `LogCapture` | — |
//! | a name no parallel test or run uses; one global install at a time | `unique`, `serial` | — |
//! | an OTLP collector in the test process (gRPC or HTTP, on the official `opentelemetry-proto` types) | `otlp::Receiver` | `receiver` |
//! | that collector behind TLS, mutual or not | `otlp::Receiver::builder` + `tls` | `tls` |
//! | spans and metric series as they crossed the wire | `otlp::Span`, `otlp::MetricPoint`, `otlp::series` | `receiver` |
//! | jobsight-otel installed against a receiver, and a monitor on its providers | `jobs::telemetry_to`, `jobs::monitor_of` | `jobs` |
//! | apalis workers running numbered jobs with known results | `jobs::numbered` | `jobs` |
//! | an example binary as a child process exporting to a receiver | `jobs::example_path`, `jobs::example_command` | `jobs` |
//! | a Redis queue's keys deleted when the test ends (even on failure) | `jobs::RedisKeys` | `jobs` |
//! | `jobsight.telemetry.dropped` as it arrived at the receiver | `jobs::received_drop_count` | `jobs` |
//!
//! A receiver test, in full:
//!
//! ```no_run
//! # #[cfg(feature = "receiver")]
//! # async fn demo() {
//! use std::time::Duration;
//! use jobsight_testkit::otlp::Receiver;
//!
//! let rx = Receiver::grpc().await; // or Receiver::http().await
//! // point an exporter at rx.traces_endpoint() / rx.metrics_endpoint()
//! let spans = rx.wait_for_spans(1, Duration::from_secs(5)).await;
//! let points = rx.wait_for_metric("job.queue_time", Duration::from_secs(5)).await;
//! # let _ = (spans, points);
//! # }
//! ```
//!
//! Every helper panics with a message on a broken setup (a port that cannot
//! be bound, a missing example binary): they are for tests only.
#![warn(missing_docs)]

mod log_capture;
mod memory;
mod names;

#[cfg(feature = "jobs")]
pub mod jobs;
#[cfg(feature = "receiver")]
pub mod otlp;
#[cfg(feature = "tls")]
pub mod tls;

pub use log_capture::LogCapture;
pub use memory::{MemoryTelemetry, SumPoint, span_attr, span_attr_str};
pub use names::{serial, unique};
