//! jobsight-otel installed against a receiver, and monitors on its providers.

use jobsight_core::{JobMonitor, JobMonitorBuilder};
use jobsight_otel::{Builder, Protocol, Telemetry};

use crate::otlp::{Receiver, Transport};

/// A jobsight-otel builder exporting traces and metrics to `rx` over its
/// transport, with `service` as the service name and no local summary.
/// Add settings, then `install()`.
pub fn telemetry_builder_to(rx: &Receiver, service: &str) -> Builder {
    let protocol = match rx.transport() {
        Transport::Grpc => Protocol::Grpc,
        Transport::Http => Protocol::HttpProtobuf,
    };
    Builder::new()
        .service_name(service.to_owned())
        .endpoint(rx.endpoint())
        .protocol(protocol)
        .summary(false)
}

/// [`telemetry_builder_to`], installed (the global providers and propagator
/// are set: hold [`crate::serial`] in binaries with several such tests).
/// Panics when the install fails.
pub fn telemetry_to(rx: &Receiver, service: &str) -> Telemetry {
    telemetry_builder_to(rx, service)
        .install()
        .unwrap_or_else(|e| panic!("install telemetry: {e}"))
}

/// A monitor builder that records with `telemetry`'s own providers (not the
/// global ones, which parallel tests replace). Add settings, then `build()`.
pub fn monitor_builder_of(telemetry: &Telemetry) -> JobMonitorBuilder {
    let builder = JobMonitor::builder();
    let builder = match telemetry.tracer_provider() {
        Some(provider) => builder.tracer_provider(provider),
        None => builder,
    };
    match telemetry.meter_provider() {
        Some(provider) => builder.meter_provider(provider),
        None => builder,
    }
}

/// [`monitor_builder_of`], built.
pub fn monitor_of(telemetry: &Telemetry) -> JobMonitor {
    monitor_builder_of(telemetry).build()
}

/// Flushes `telemetry` on a blocking thread (a gRPC exporter must not be
/// flushed from a runtime's own thread) and hands it back.
pub async fn flush(telemetry: Telemetry) -> Telemetry {
    tokio::task::spawn_blocking(move || {
        telemetry
            .force_flush()
            .unwrap_or_else(|e| panic!("flush: {e}"));
        telemetry
    })
    .await
    .unwrap_or_else(|e| panic!("flush thread: {e}"))
}
