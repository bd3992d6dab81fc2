//! End-to-end helpers that use the jobsight crates and apalis (feature
//! `jobs`).
//!
//! ```no_run
//! use std::time::Duration;
//! use jobsight_testkit::jobs::{flush, monitor_of, telemetry_to};
//! use jobsight_testkit::otlp::Receiver;
//!
//! # async fn demo() {
//! let rx = Receiver::grpc().await;
//! let telemetry = telemetry_to(&rx, "my-test");
//! let monitor = monitor_of(&telemetry);
//! monitor.start(jobsight_core::JobMeta::builder("test", "q").build()).succeed();
//! let telemetry = flush(telemetry).await;
//! assert_eq!(rx.wait_for_spans(1, Duration::from_secs(10)).await.len(), 1);
//! # drop(telemetry);
//! # }
//! ```

mod dropped_metric;
mod examples;
pub mod numbered;
#[cfg(feature = "postgres")]
pub mod postgres;
mod redis_keys;
mod telemetry;
mod workers;

pub use dropped_metric::{DROPPED_METRIC, received_drop_count, until_drops_received};
pub use examples::{example_command, example_path};
pub use redis_keys::{REDIS_ADDR, RedisKeys};
pub use telemetry::{flush, monitor_builder_of, monitor_of, telemetry_builder_to, telemetry_to};
pub use workers::stop_after;
