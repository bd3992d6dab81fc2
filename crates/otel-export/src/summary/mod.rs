//! The local summary: job metrics read back in-process and printed per
//! queue at shutdown.
//!
//! A [`SummaryReader`] (a `ManualReader`, no thread, no timer) is added to
//! the meter provider; at shutdown it is collected once, before any OTLP
//! export is flushed, so a slow or absent collector never delays it.
//!
//! Percentiles: when the summary is the only metrics output, a view gives
//! `messaging.process.duration` and `job.queue_time` base-2 exponential
//! histograms (160 buckets, a few percent relative error). When OTLP metrics
//! are exported too, views would change what is exported, so the summary
//! interpolates in the instrument's explicit buckets instead.

mod distribution;
mod table;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    Aggregation, Instrument, InstrumentKind, ManualReader, Pipeline, Stream, Temporality,
};

use crate::Error;
use crate::failure_log::LastErrors;
use distribution::Distribution;
use jobsight_core::semconv::{
    ERROR_TYPE, MESSAGING_DESTINATION_NAME as DESTINATION_NAME,
    METRIC_PROCESS_DURATION as PROCESS_DURATION, METRIC_QUEUE_TIME as QUEUE_TIME,
    SCOPE_NAME as SCOPE,
};
pub(crate) use table::QueueSummary;

/// Exponential histogram size for the summary's histograms.
const MAX_BUCKETS: u32 = 160;
/// Finest scale the SDK supports.
const MAX_SCALE: i8 = 20;
/// Queue name shown for points without `messaging.destination.name`.
const UNKNOWN_QUEUE: &str = "(no queue)";

/// A cumulative `ManualReader` shared between the meter provider and the
/// [`Summary`] that collects it.
#[derive(Debug, Clone)]
pub(crate) struct SummaryReader(Arc<ManualReader>);

impl SummaryReader {
    pub(crate) fn new() -> Self {
        SummaryReader(Arc::new(
            ManualReader::builder()
                .with_temporality(Temporality::Cumulative)
                .build(),
        ))
    }
}

impl MetricReader for SummaryReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }

    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// The view that gives jobsight's two duration histograms exponential
/// buckets. Only installed when no OTLP metrics exporter shares the provider.
pub(crate) fn exponential_histogram_view(instrument: &Instrument) -> Option<Stream> {
    let ours = instrument.scope().name() == SCOPE
        && matches!(instrument.name(), PROCESS_DURATION | QUEUE_TIME);
    if !ours {
        return None;
    }
    Stream::builder()
        .with_aggregation(Aggregation::Base2ExponentialHistogram {
            max_size: MAX_BUCKETS,
            max_scale: MAX_SCALE,
            record_min_max: true,
        })
        .build()
        .ok()
}

/// The summary's reader and where the table goes.
pub(crate) struct Summary {
    reader: SummaryReader,
    /// The last error of each queue, shown under the table.
    last_errors: Option<Arc<LastErrors>>,
    /// In a mutex so that the guard holding the summary is `Sync`.
    writer: Mutex<Box<dyn Write + Send>>,
}

impl std::fmt::Debug for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Summary").finish_non_exhaustive()
    }
}

impl Summary {
    pub(crate) fn new(
        reader: SummaryReader,
        writer: Box<dyn Write + Send>,
        last_errors: Option<Arc<LastErrors>>,
    ) -> Self {
        Summary {
            reader,
            last_errors,
            writer: Mutex::new(writer),
        }
    }

    /// Collects the job metrics now, per queue.
    pub(crate) fn collect(&self) -> Vec<QueueSummary> {
        let mut metrics = ResourceMetrics::default();
        let mut queues = match self.reader.collect(&mut metrics) {
            Ok(()) => summarize(&metrics),
            Err(_) => Vec::new(),
        };
        if let Some(last_errors) = &self.last_errors {
            for queue in &mut queues {
                queue.last_error = last_errors.of(&queue.queue);
            }
        }
        queues
    }

    /// Writes the table for `queues`.
    pub(crate) fn write(&self, queues: &[QueueSummary]) -> Result<(), Error> {
        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        writer
            .write_all(table::render(queues).as_bytes())
            .and_then(|()| writer.flush())
            .map_err(Error::Summary)
    }
}

/// Groups jobsight's duration histograms by queue.
fn summarize(metrics: &ResourceMetrics) -> Vec<QueueSummary> {
    let mut queues: BTreeMap<String, QueueSummary> = BTreeMap::new();
    let ours = metrics
        .scope_metrics()
        .filter(|scope| scope.scope().name() == SCOPE)
        .flat_map(|scope| scope.metrics());
    for metric in ours {
        let is_duration = metric.name() == PROCESS_DURATION;
        if !is_duration && metric.name() != QUEUE_TIME {
            continue;
        }
        let AggregatedMetrics::F64(data) = metric.data() else {
            continue;
        };
        for point in points(data) {
            let row = queues
                .entry(point.queue.clone())
                .or_insert_with(|| QueueSummary {
                    queue: point.queue.clone(),
                    jobs: 0,
                    failures: 0,
                    queue_time: None,
                    duration: None,
                    last_error: None,
                });
            let slot = if is_duration {
                let jobs = point.distribution.count();
                row.jobs += jobs;
                if point.failed {
                    row.failures += jobs;
                }
                &mut row.duration
            } else {
                &mut row.queue_time
            };
            match slot {
                // One instrument has one bucket layout, so merging succeeds;
                // if it ever did not, the first layout's percentiles stand.
                Some(existing) => {
                    let _ = existing.merge(&point.distribution);
                }
                None => *slot = Some(point.distribution),
            }
        }
    }
    queues.into_values().collect()
}

/// One histogram data point, reduced to what the summary needs.
struct Point {
    queue: String,
    failed: bool,
    distribution: Distribution,
}

fn points(data: &MetricData<f64>) -> Vec<Point> {
    fn point<'a>(
        attributes: impl Iterator<Item = &'a opentelemetry::KeyValue>,
        distribution: Distribution,
    ) -> Point {
        let mut queue = None;
        let mut failed = false;
        for kv in attributes {
            match kv.key.as_str() {
                DESTINATION_NAME => queue = Some(kv.value.as_str().into_owned()),
                ERROR_TYPE => failed = true,
                _ => {}
            }
        }
        Point {
            queue: queue.unwrap_or_else(|| UNKNOWN_QUEUE.to_owned()),
            failed,
            distribution,
        }
    }
    match data {
        MetricData::Histogram(histogram) => histogram
            .data_points()
            .map(|dp| {
                point(
                    dp.attributes(),
                    Distribution::explicit(
                        dp.bounds().collect(),
                        dp.bucket_counts().collect(),
                        dp.min(),
                        dp.max(),
                    ),
                )
            })
            .collect(),
        MetricData::ExponentialHistogram(histogram) => histogram
            .data_points()
            .map(|dp| {
                point(
                    dp.attributes(),
                    Distribution::exponential(
                        dp.scale(),
                        dp.zero_count(),
                        dp.positive_bucket().offset(),
                        dp.positive_bucket().counts(),
                        dp.min(),
                        dp.max(),
                    ),
                )
            })
            .collect(),
        MetricData::Gauge(_) | MetricData::Sum(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry::{InstrumentationScope, KeyValue};
    use opentelemetry_sdk::metrics::SdkMeterProvider;

    use super::*;
    use jobsight_testkit::LogCapture;

    fn provider(exponential: bool) -> (SdkMeterProvider, Summary, LogCapture) {
        let reader = SummaryReader::new();
        let mut builder = SdkMeterProvider::builder().with_reader(reader.clone());
        if exponential {
            builder = builder.with_view(exponential_histogram_view);
        }
        let captured = LogCapture::default();
        let summary = Summary::new(reader, Box::new(captured.clone()), None);
        (builder.build(), summary, captured)
    }

    fn record_jobs(provider: &SdkMeterProvider, boundaries: Option<Vec<f64>>) {
        let meter = provider.meter_with_scope(InstrumentationScope::builder(SCOPE).build());
        let mut duration = meter.f64_histogram(PROCESS_DURATION).with_unit("s");
        let mut queue_time = meter.f64_histogram(QUEUE_TIME).with_unit("s");
        if let Some(boundaries) = boundaries {
            duration = duration.with_boundaries(boundaries.clone());
            queue_time = queue_time.with_boundaries(boundaries);
        }
        let (duration, queue_time) = (duration.build(), queue_time.build());
        // "email": 1000 runs of 1 ms .. 1000 ms, every 100th one failed;
        // queue time 10 ms .. 10 s.
        for i in 1..=1000 {
            let mut attributes = vec![
                KeyValue::new("messaging.system", "apalis"),
                KeyValue::new(DESTINATION_NAME, "email"),
                KeyValue::new("job.name", "SendEmail"),
            ];
            if i % 100 == 0 {
                attributes.push(KeyValue::new(ERROR_TYPE, "SmtpError"));
            }
            duration.record(f64::from(i) / 1000.0, &attributes);
            queue_time.record(f64::from(i) / 100.0, &attributes);
        }
        duration.record(2.0, &[KeyValue::new(DESTINATION_NAME, "reports")]);
    }

    fn relative(actual: Option<f64>, expected: f64, tolerance: f64) {
        let actual = actual.expect("a value");
        assert!(
            ((actual - expected) / expected).abs() <= tolerance,
            "got {actual}, expected {expected} ± {}%",
            tolerance * 100.0
        );
    }

    #[test]
    fn exponential_summary_has_accurate_percentiles_per_queue() {
        let (provider, summary, _) = provider(true);
        record_jobs(&provider, None);
        let queues = summary.collect();
        assert_eq!(queues.len(), 2);
        let email = &queues[0];
        assert_eq!(
            (email.queue.as_str(), email.jobs, email.failures),
            ("email", 1000, 10)
        );
        let duration = email.duration.as_ref().unwrap();
        assert!(matches!(
            duration.buckets,
            distribution::Buckets::Exponential { .. }
        ));
        relative(duration.quantile(0.5), 0.5, 0.03);
        relative(duration.quantile(0.95), 0.95, 0.03);
        relative(duration.quantile(0.99), 0.99, 0.03);
        let queue_time = email.queue_time.as_ref().unwrap();
        relative(queue_time.quantile(0.5), 5.0, 0.03);
        relative(queue_time.quantile(0.99), 9.9, 0.03);
        let reports = &queues[1];
        assert_eq!(
            (reports.queue.as_str(), reports.jobs, reports.failures),
            ("reports", 1, 0)
        );
        relative(reports.duration.as_ref().unwrap().quantile(0.99), 2.0, 1e-9);
        assert!(reports.queue_time.is_none());
    }

    #[test]
    fn explicit_buckets_are_interpolated_when_no_view_applies() {
        let (provider, summary, _) = provider(false);
        let boundaries: Vec<f64> = (1..=20).map(|i| f64::from(i) * 0.1).collect();
        record_jobs(&provider, Some(boundaries));
        let email = &summary.collect()[0];
        let duration = email.duration.as_ref().unwrap();
        assert!(matches!(
            duration.buckets,
            distribution::Buckets::Explicit { .. }
        ));
        relative(duration.quantile(0.5), 0.5, 0.01);
        relative(duration.quantile(0.95), 0.95, 0.01);
    }

    #[test]
    fn writes_the_table_and_ignores_other_scopes() {
        let (provider, summary, captured) = provider(true);
        record_jobs(&provider, None);
        provider
            .meter("someone-else")
            .f64_histogram(PROCESS_DURATION)
            .build()
            .record(1.0, &[KeyValue::new(DESTINATION_NAME, "foreign")]);
        let queues = summary.collect();
        summary.write(&queues).unwrap();
        let text = captured.text();
        assert!(text.contains("email"), "{text}");
        assert!(text.contains("reports"), "{text}");
        assert!(!text.contains("foreign"), "{text}");
    }
}
