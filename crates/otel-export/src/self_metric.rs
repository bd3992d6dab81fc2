//! `jobsight.telemetry.dropped`: the drop counts as an observable counter,
//! read from the [`DropCounter`] on the metric reader's thread at each
//! collection, so recording a drop costs the job nothing more than the
//! atomic add.

use std::sync::Arc;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::metrics::SdkMeterProvider;

use crate::Signal;
use crate::dropped::{DropCounter, DropReason};

/// The counter's name.
pub(crate) const DROPPED_METRIC: &str = "jobsight.telemetry.dropped";
/// Its instrumentation scope.
pub(crate) const SCOPE: &str = "jobsight-otel";

/// The series exported, always (a zero says nothing was lost): those that
/// can still be exported when they happen. `shutdown_timeout` happens when
/// the exporters are gone; it is in
/// [`Telemetry::dropped`](crate::Telemetry::dropped) and the shutdown line.
const SERIES: [(Signal, DropReason); 6] = [
    (Signal::Traces, DropReason::QueueFull),
    (Signal::Traces, DropReason::ExportFailed),
    (Signal::Metrics, DropReason::ExportFailed),
    (Signal::Logs, DropReason::QueueFull),
    (Signal::Logs, DropReason::ExportFailed),
    (Signal::Logs, DropReason::JobLimit),
];

/// Registers the counter on `provider`. Six series: not subject to any
/// cardinality limit in practice (the SDK's default is 2000 per metric).
pub(crate) fn register(provider: &SdkMeterProvider, drops: Arc<DropCounter>) {
    let scope = InstrumentationScope::builder(SCOPE)
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_schema_url(jobsight_core::semconv::SCHEMA_URL)
        .build();
    let attributes = SERIES.map(|(signal, reason)| {
        [
            KeyValue::new("jobsight.signal", signal.to_string()),
            KeyValue::new("jobsight.drop.reason", reason.as_str()),
        ]
    });
    // The callback stays registered with the provider; the handle is not needed.
    let _counter = provider
        .meter_with_scope(scope)
        .u64_observable_counter(DROPPED_METRIC)
        .with_unit("{item}")
        .with_description(
            "Telemetry lost by jobsight-otel: spans (jobsight.signal=traces), metric data points \
             (jobsight.signal=metrics) or log records (jobsight.signal=logs), by jobsight.drop.reason",
        )
        .with_callback(move |observer| {
            let dropped = drops.snapshot();
            for ((signal, reason), attributes) in SERIES.iter().zip(&attributes) {
                observer.observe(dropped.of(*signal).get(*reason), attributes);
            }
        })
        .build();
}

#[cfg(test)]
mod tests {
    use jobsight_testkit::MemoryTelemetry;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};

    use super::*;
    use crate::reports::Reports;

    #[test]
    fn the_counts_are_exported_with_signal_and_reason() {
        let telemetry = MemoryTelemetry::new();
        let drops = Arc::new(DropCounter::new(Reports::default()));
        register(telemetry.meter_provider(), Arc::clone(&drops));
        drops.record(Signal::Traces, DropReason::QueueFull, 7);
        drops.record(Signal::Metrics, DropReason::ExportFailed, 3);
        let exported = telemetry.collect();
        let metric = exported
            .iter()
            .flat_map(|resource| resource.scope_metrics())
            .filter(|scope| scope.scope().name() == SCOPE)
            .flat_map(|scope| scope.metrics())
            .find(|metric| metric.name() == DROPPED_METRIC)
            .expect("the self-metric is exported");
        assert_eq!(metric.unit(), "{item}");
        let AggregatedMetrics::U64(MetricData::Sum(sum)) = metric.data() else {
            panic!("not a u64 sum: {:?}", metric.data());
        };
        assert!(sum.is_monotonic());
        let mut points: Vec<(String, String, u64)> = sum
            .data_points()
            .map(|point| {
                let get = |key: &str| {
                    point
                        .attributes()
                        .find(|kv| kv.key.as_str() == key)
                        .map(|kv| kv.value.to_string())
                        .unwrap_or_default()
                };
                (
                    get("jobsight.signal"),
                    get("jobsight.drop.reason"),
                    point.value(),
                )
            })
            .collect();
        points.sort();
        assert_eq!(
            points,
            [
                ("logs".into(), "export_failed".into(), 0),
                ("logs".into(), "job_limit".into(), 0),
                ("logs".into(), "queue_full".into(), 0),
                ("metrics".into(), "export_failed".into(), 3),
                ("traces".into(), "export_failed".into(), 0),
                ("traces".into(), "queue_full".into(), 7),
            ]
        );
        telemetry.meter_provider().shutdown().unwrap();
    }
}
