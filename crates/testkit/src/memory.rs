//! SDK providers that record in memory: the harness of tests that check what
//! a monitor records without a network in between.

use std::collections::BTreeMap;

use opentelemetry::Value;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

/// A tracer provider whose spans are exported, synchronously as each one
/// ends, to memory, and a meter provider whose metrics are exported to
/// memory on each flush (its periodic reader's interval is the SDK's 60 s
/// default, so in practice only on [`MemoryTelemetry::collect`]).
///
/// ```
/// use jobsight_testkit::MemoryTelemetry;
/// use opentelemetry::trace::{Tracer as _, TracerProvider as _};
///
/// let telemetry = MemoryTelemetry::new();
/// telemetry.tracer_provider().tracer("t").in_span("work", |_| {});
/// assert_eq!(telemetry.spans()[0].name, "work");
/// ```
#[derive(Clone, Debug)]
pub struct MemoryTelemetry {
    spans: InMemorySpanExporter,
    tracer_provider: SdkTracerProvider,
    metrics: InMemoryMetricExporter,
    meter_provider: SdkMeterProvider,
}

impl Default for MemoryTelemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryTelemetry {
    /// Fresh providers with nothing recorded.
    pub fn new() -> Self {
        let spans = InMemorySpanExporter::default();
        let tracer_provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let metrics = InMemoryMetricExporter::default();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metrics.clone()).build())
            .build();
        Self {
            spans,
            tracer_provider,
            metrics,
            meter_provider,
        }
    }

    /// The tracer provider to hand to the code under test.
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.tracer_provider
    }

    /// The meter provider to hand to the code under test.
    pub fn meter_provider(&self) -> &SdkMeterProvider {
        &self.meter_provider
    }

    /// The span exporter, for tests that inspect it directly.
    pub fn span_exporter(&self) -> &InMemorySpanExporter {
        &self.spans
    }

    /// The metric exporter (filled on each flush of the meter provider), for
    /// tests that inspect it directly.
    pub fn metric_exporter(&self) -> &InMemoryMetricExporter {
        &self.metrics
    }

    /// Every span ended so far, in the order they ended.
    pub fn spans(&self) -> Vec<SpanData> {
        self.spans
            .get_finished_spans()
            .unwrap_or_else(|e| panic!("read the in-memory spans: {e}"))
    }

    /// The ended spans named `name`.
    pub fn spans_named(&self, name: &str) -> Vec<SpanData> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }

    /// Forgets the spans ended so far.
    pub fn clear_spans(&self) {
        self.spans.reset();
    }

    /// Flushes the meter provider, then returns every collection exported
    /// so far (the last one is the current state of cumulative streams).
    pub fn collect(&self) -> Vec<ResourceMetrics> {
        self.meter_provider
            .force_flush()
            .unwrap_or_else(|e| panic!("flush the in-memory meter provider: {e}"));
        self.metrics
            .get_finished_metrics()
            .unwrap_or_else(|e| panic!("read the in-memory metrics: {e}"))
    }

    /// Flushes, then returns the points of the integer sum (counter or
    /// up-down counter) `name` in the latest collection, each with its
    /// attributes as text.
    pub fn sum_points(&self, name: &str) -> Vec<SumPoint> {
        let collections = self.collect();
        let Some(last) = collections.last() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for metric in last
            .scope_metrics()
            .flat_map(|scope| scope.metrics())
            .filter(|m| m.name() == name)
        {
            match metric.data() {
                AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                    out.extend(sum.data_points().map(|p| SumPoint {
                        attributes: text_attributes(p.attributes()),
                        value: i128::from(p.value()),
                    }));
                }
                AggregatedMetrics::I64(MetricData::Sum(sum)) => {
                    out.extend(sum.data_points().map(|p| SumPoint {
                        attributes: text_attributes(p.attributes()),
                        value: i128::from(p.value()),
                    }));
                }
                other => panic!("{name} is not an integer sum: {other:?}"),
            }
        }
        out
    }

    /// The sum over every point of the integer sum `name` (see [`Self::sum_points`]).
    pub fn sum_total(&self, name: &str) -> i128 {
        self.sum_points(name).iter().map(|p| p.value).sum()
    }
}

/// One point of an integer sum, read by [`MemoryTelemetry::sum_points`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SumPoint {
    /// The point's attributes, values as text.
    pub attributes: BTreeMap<String, String>,
    /// The value (counters and up-down counters fit).
    pub value: i128,
}

impl SumPoint {
    /// The attribute `key` as text.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

fn text_attributes<'a>(
    kvs: impl Iterator<Item = &'a opentelemetry::KeyValue>,
) -> BTreeMap<String, String> {
    kvs.map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect()
}

/// The value of attribute `key` of a span.
pub fn span_attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

/// The attribute `key` of a span as text (any value type, `None` when absent).
pub fn span_attr_str(span: &SpanData, key: &str) -> Option<String> {
    span_attr(span, key).map(|v| v.as_str().into_owned())
}
