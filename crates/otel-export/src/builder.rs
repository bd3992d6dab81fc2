//! [`Builder`]: what to install, and installing it.

use std::fmt;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::global;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

use crate::config::EnvConfig;
use crate::dropped::DropCounter;
use crate::export_failures::FailureCounter;
use crate::export_target::ExportTarget;
use crate::failure_log::{ExceptionRecords, FailureSinks, LastErrors};
use crate::guard::Active;
use crate::guard::LogBridgeSettings;
use crate::log_filter::LogFilter;
use crate::log_limits::{
    DEFAULT_LOG_ATTRIBUTE_COUNT_LIMIT, DEFAULT_LOG_ATTRIBUTE_VALUE_LIMIT, DEFAULT_LOG_BODY_LIMIT,
    LogLimits,
};
use crate::log_queue::DEFAULT_MAX_LOG_RECORDS_PER_JOB;
use crate::providers::{BatchOverrides, LogSettings, Plan};
use crate::reports::Reports;
use crate::summary::{Summary, SummaryReader};
use crate::{Error, Protocol, Signal, Telemetry, endpoint, resource};
use jobsight_core::job_logs::ExceptionEvents;

/// The default [`Builder::shutdown_timeout`].
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Configures and installs telemetry. Settings made here override the
/// corresponding `OTEL_*` environment variables; everything else comes from
/// the environment (see the [crate docs](crate#environment-variables)).
///
/// ```no_run
/// use std::time::Duration;
///
/// let telemetry = jobsight_otel::Builder::default()
///     .service_name("email-worker")
///     .shutdown_timeout(Duration::from_secs(3))
///     .install()?;
/// # drop(telemetry);
/// # Ok::<(), jobsight_otel::Error>(())
/// ```
#[must_use]
pub struct Builder {
    service_name: Option<String>,
    service_instance_id: Option<String>,
    endpoint: Option<String>,
    protocol: Option<Protocol>,
    shutdown_timeout: Duration,
    summary: Option<bool>,
    summary_writer: Option<Box<dyn Write + Send>>,
    exponential_histograms: bool,
    export_retries: bool,
    diagnostics_writer: Option<Box<dyn Write + Send>>,
    overrides: BatchOverrides,
    log_filter: Option<String>,
    max_log_records_per_job: Option<u32>,
    log_body_limit: Option<usize>,
    log_attribute_limits: Option<(usize, usize)>,
    exception_events: Option<ExceptionEvents>,
    #[cfg(feature = "prometheus")]
    prometheus_endpoint: Option<String>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            service_name: None,
            service_instance_id: None,
            endpoint: None,
            protocol: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            summary: None,
            summary_writer: None,
            exponential_histograms: false,
            export_retries: true,
            diagnostics_writer: None,
            overrides: BatchOverrides::default(),
            log_filter: None,
            max_log_records_per_job: None,
            log_body_limit: None,
            log_attribute_limits: None,
            exception_events: None,
            #[cfg(feature = "prometheus")]
            prometheus_endpoint: None,
        }
    }
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("service_name", &self.service_name)
            .field("service_instance_id", &self.service_instance_id)
            .field("endpoint", &self.endpoint.as_deref().map(endpoint::redact))
            .field("protocol", &self.protocol)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("summary", &self.summary)
            .field("summary_writer", &self.summary_writer.is_some())
            .field("exponential_histograms", &self.exponential_histograms)
            .field("export_retries", &self.export_retries)
            .field("diagnostics_writer", &self.diagnostics_writer.is_some())
            .field("overrides", &self.overrides)
            .field("log_filter", &self.log_filter)
            .field("max_log_records_per_job", &self.max_log_records_per_job)
            .field("log_body_limit", &self.log_body_limit)
            .field("log_attribute_limits", &self.log_attribute_limits)
            .field("exception_events", &self.exception_events)
            .finish_non_exhaustive()
    }
}

impl Builder {
    /// A builder with every default; the same as [`Builder::default`].
    pub fn new() -> Self {
        Builder::default()
    }

    /// The `service.name` resource attribute. Defaults to `OTEL_SERVICE_NAME`,
    /// then `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, then
    /// `unknown_service:<executable>`.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// The `service.instance.id` resource attribute: what tells this process's
    /// series apart from those of other processes with the same
    /// `service.name`. Must be unique among them (e.g. the pod's name).
    /// Defaults to `service.instance.id` in `OTEL_RESOURCE_ATTRIBUTES`, then
    /// a random UUID generated once per process
    /// ([`service_instance_id`](crate::service_instance_id)). An empty id
    /// counts as unset.
    pub fn service_instance_id(mut self, id: impl Into<String>) -> Self {
        self.service_instance_id = Some(id.into());
        self
    }

    /// The OTLP endpoint for both signals, e.g. `http://localhost:4318`
    /// (OTLP/HTTP: `/v1/traces` and `/v1/metrics` are appended) or
    /// `http://localhost:4317` (gRPC: used as given); `https://` with the
    /// `tls` feature (see [TLS](crate#tls) for the certificates). Overrides
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` and the per-signal endpoint variables.
    /// Defaults to those variables; with none set, nothing is exported over
    /// OTLP.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The OTLP transport for both signals. Overrides
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` and its per-signal variants. Defaults to
    /// those variables, then [`Protocol::HttpProtobuf`].
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// How long flush and shutdown may take before they give up. Defaults to
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`] (5 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Whether to print the per-queue summary (jobs, failures, queue time
    /// and duration percentiles) at shutdown. Defaults to on exactly when no
    /// OTLP endpoint is configured.
    pub fn summary(mut self, on: bool) -> Self {
        self.summary = Some(on);
        self
    }

    /// Where the summary is written. Defaults to stderr.
    pub fn summary_writer(mut self, writer: impl Write + Send + 'static) -> Self {
        self.summary_writer = Some(Box::new(writer));
        self
    }

    /// Records jobsight's `messaging.process.duration` and `job.queue_time`
    /// as base-2 exponential histograms (160 buckets, scale chosen from the
    /// data: a few percent relative error from microseconds to days) instead
    /// of explicit buckets, for every reader. Defaults to `false`. The OTLP
    /// path carries them; the Prometheus scrape endpoint cannot, so asking
    /// for both is an [`Error::Conflict`] at install.
    pub fn exponential_histograms(mut self, on: bool) -> Self {
        self.exponential_histograms = on;
        self
    }

    /// Whether a failed export is retried (the OTLP exporters' policy: 3
    /// retries, 100 ms to 1.6 s apart, for refused connections, 429, 502,
    /// 503, 504 and gRPC `UNAVAILABLE`). Defaults to `true`. A one-shot
    /// process that exits right after its work turns it off: with the
    /// collector down, each export then fails at once instead of costing
    /// seconds of backoff.
    pub fn export_retries(mut self, on: bool) -> Self {
        self.export_retries = on;
        self
    }

    /// Where this crate's own one-line reports go: the first failed export
    /// of each signal, the first span dropped for each reason (see
    /// [`DropReason`](crate::DropReason)), and the totals dropped, at
    /// shutdown. Defaults to stderr.
    pub fn diagnostics_writer(mut self, writer: impl Write + Send + 'static) -> Self {
        self.diagnostics_writer = Some(Box::new(writer));
        self
    }

    /// How many spans may wait for export; a span that ends while the
    /// queue is full is dropped (the job never waits) and counted as
    /// `queue_full`. Overrides `OTEL_BSP_MAX_QUEUE_SIZE`. Defaults to that
    /// variable, then [`DEFAULT_SPAN_QUEUE_SIZE`](crate::DEFAULT_SPAN_QUEUE_SIZE)
    /// (65 536). The queue is allocated up front: 360 bytes a span.
    pub fn span_queue_size(mut self, spans: usize) -> Self {
        self.overrides.span_queue_size = Some(spans.max(1));
        self
    }

    /// The longest a span waits before its batch is exported (a full batch
    /// goes at once). Overrides `OTEL_BSP_SCHEDULE_DELAY`. Defaults to that
    /// variable, then [`DEFAULT_SPAN_SCHEDULE_DELAY`](crate::DEFAULT_SPAN_SCHEDULE_DELAY)
    /// (5 s).
    pub fn span_schedule_delay(mut self, delay: Duration) -> Self {
        self.overrides.span_schedule_delay = Some(delay);
        self
    }

    /// How often metrics are exported over OTLP. Overrides
    /// `OTEL_METRIC_EXPORT_INTERVAL`. Defaults to that variable, then
    /// [`DEFAULT_METRIC_EXPORT_INTERVAL`](crate::DEFAULT_METRIC_EXPORT_INTERVAL)
    /// (60 s).
    pub fn metric_export_interval(mut self, interval: Duration) -> Self {
        self.overrides.metric_export_interval = Some(interval);
        self
    }

    /// Which `tracing` events and `log` records the log bridges export, in
    /// `RUST_LOG` syntax: `info,my_crate=debug,my_crate::noisy=off` (the
    /// most specific target wins; span filters are not supported).
    /// Overrides `JOBSIGHT_LOG`. Defaults to that variable, then `info`.
    /// The crates of the export pipeline (`h2`, `hyper`, `tonic`, `tower`,
    /// `reqwest`, `rustls`, `opentelemetry*`) are never exported, whatever
    /// the filter says. A filter that does not parse is an
    /// [`Error::InvalidSetting`] at install.
    pub fn log_filter(mut self, directives: impl Into<String>) -> Self {
        self.log_filter = Some(directives.into());
        self
    }

    /// The most log records one attempt of a job exports; the job's
    /// further records are dropped, counted in
    /// [`Telemetry::dropped`](crate::Telemetry::dropped) as `job_limit`
    /// and set on the job's span as `job.logs.dropped`. Defaults to
    /// [`DEFAULT_MAX_LOG_RECORDS_PER_JOB`](crate::DEFAULT_MAX_LOG_RECORDS_PER_JOB)
    /// (1000). Records made outside any job are not capped.
    pub fn max_log_records_per_job(mut self, records: u32) -> Self {
        self.max_log_records_per_job = Some(records);
        self
    }

    /// The longest text body of a log record, in bytes; a longer one is
    /// cut on a character boundary and ends with `…[cut]`. Defaults to
    /// [`DEFAULT_LOG_BODY_LIMIT`](crate::DEFAULT_LOG_BODY_LIMIT) (8 KiB).
    /// Attributes are limited by `OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT`
    /// and `OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT`.
    pub fn log_body_limit(mut self, bytes: usize) -> Self {
        self.log_body_limit = Some(bytes.max(16));
        self
    }

    /// The most attributes a bridge takes from one event's fields (the
    /// rest are counted in the record's `jobsight.logs.dropped_attributes`)
    /// and the longest text value, in bytes (cut like the body). Overrides
    /// `OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT` and
    /// `OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT`. Defaults to those
    /// variables, then [`DEFAULT_LOG_ATTRIBUTE_COUNT_LIMIT`](crate::DEFAULT_LOG_ATTRIBUTE_COUNT_LIMIT)
    /// (32) and [`DEFAULT_LOG_ATTRIBUTE_VALUE_LIMIT`](crate::DEFAULT_LOG_ATTRIBUTE_VALUE_LIMIT)
    /// (2 KiB).
    pub fn log_attribute_limits(mut self, count: usize, value_bytes: usize) -> Self {
        self.log_attribute_limits = Some((count, value_bytes.max(16)));
        self
    }

    /// How many log records may wait for export; a record made while the
    /// queue is full is dropped (the job never waits) and counted as
    /// `queue_full`. Overrides `OTEL_BLRP_MAX_QUEUE_SIZE`. Defaults to that
    /// variable, then [`DEFAULT_LOG_QUEUE_SIZE`](crate::DEFAULT_LOG_QUEUE_SIZE)
    /// (2048).
    pub fn log_queue_size(mut self, records: usize) -> Self {
        self.overrides.log_queue_size = Some(records.max(1));
        self
    }

    /// Where a failed attempt's exception is recorded: the `exception`
    /// event of the process span (the default), an `exception` log record
    /// (severity ERROR, `exception.type`, `exception.message`,
    /// `exception.stacktrace` when captured, the job's attributes and the
    /// span's ids), or both. Only attempts the classifier reports as
    /// errors get one (final failures and panics, not retries). Without a
    /// logs pipeline (no endpoint for logs) the span event is kept
    /// whatever is asked here. Defaults to [`ExceptionEvents::SpanEvent`].
    pub fn exception_events(mut self, events: ExceptionEvents) -> Self {
        self.exception_events = Some(events);
        self
    }

    /// Serves the metrics for Prometheus to scrape at
    /// `http://{address}/metrics`, e.g. `"0.0.0.0:9464"` (port 0 picks a
    /// free port; see [`Telemetry::prometheus_addr`]). Series are named as
    /// an OpenTelemetry Collector's Prometheus exporter names them. OTLP
    /// export, when configured, goes on alongside. Off by default. With it
    /// on and no OTLP endpoint, the exit summary is off unless asked for.
    #[cfg(feature = "prometheus")]
    pub fn prometheus_endpoint(mut self, address: impl Into<String>) -> Self {
        self.prometheus_endpoint = Some(address.into());
        self
    }

    /// Reads and validates the `OTEL_*` environment, builds the tracer and
    /// meter providers and installs them as the global providers, with the
    /// W3C TraceContext and Baggage propagators as the global propagator.
    ///
    /// With `OTEL_SDK_DISABLED=true` nothing is installed and the returned
    /// guard does nothing. No exporter connects before its first export.
    pub fn install(self) -> Result<Telemetry, Error> {
        let env = EnvConfig::from_process_env()?;
        self.install_with(&env)
    }

    /// [`install`](Self::install) with an already-read environment.
    pub(crate) fn install_with(self, env: &EnvConfig) -> Result<Telemetry, Error> {
        let failures = Arc::new(FailureCounter::default());
        let reports = self
            .diagnostics_writer
            .map_or_else(Reports::default, Reports::to_writer);
        let drops = Arc::new(DropCounter::new(reports));
        if env.disabled {
            return Ok(Telemetry::new(None, failures, drops));
        }
        if let Some(url) = &self.endpoint {
            endpoint::validate(url).map_err(|reason| Error::InvalidEndpoint { reason })?;
        }
        let [traces, metrics, logs] = Signal::ALL.map(|signal| {
            ExportTarget::resolve(env, signal, self.endpoint.as_deref(), self.protocol).map(
                |target| ExportTarget {
                    retries: self.export_retries,
                    ..target
                },
            )
        });
        let logs = logs.filter(|_| !env.logs_off);
        let log_filter = match &self.log_filter {
            Some(text) => LogFilter::parse(text).map_err(|reason| Error::InvalidSetting {
                setting: "log_filter",
                reason,
            })?,
            None => env.log_filter.clone().unwrap_or_default(),
        };
        let log_settings = LogSettings {
            per_job: self
                .max_log_records_per_job
                .unwrap_or(DEFAULT_MAX_LOG_RECORDS_PER_JOB),
            limits: LogLimits {
                body: self.log_body_limit.unwrap_or(DEFAULT_LOG_BODY_LIMIT),
                attribute_count: self
                    .log_attribute_limits
                    .map(|(count, _)| count)
                    .or(env.log_attribute_count)
                    .unwrap_or(DEFAULT_LOG_ATTRIBUTE_COUNT_LIMIT),
                attribute_value: self
                    .log_attribute_limits
                    .map(|(_, bytes)| bytes)
                    .or(env.log_attribute_value_length)
                    .unwrap_or(DEFAULT_LOG_ATTRIBUTE_VALUE_LIMIT),
            },
        };
        let endpoint_configured = self.endpoint.is_some() || env.has_endpoint();
        // The scrape endpoint binds first, so that a taken port fails the
        // install before anything is made global.
        #[cfg(feature = "prometheus")]
        let (prometheus, scrape) = match &self.prometheus_endpoint {
            Some(_) if self.exponential_histograms => {
                return Err(Error::Conflict {
                    reason: "Builder::exponential_histograms cannot be used with Builder::prometheus_endpoint: the Prometheus exporter drops exponential histograms",
                });
            }
            Some(address) => {
                let reader = crate::scrape::ScrapeReader::new(address)?;
                let endpoint = crate::scrape::ScrapeEndpoint::start(address, reader.registry)?;
                (Some(reader.exporter), Some(endpoint))
            }
            None => (None, None),
        };
        #[cfg(feature = "prometheus")]
        let backend_configured = endpoint_configured || scrape.is_some();
        #[cfg(not(feature = "prometheus"))]
        let backend_configured = endpoint_configured;
        let summary_reader = self
            .summary
            .unwrap_or(!backend_configured)
            .then(SummaryReader::new);
        let providers = Plan {
            env,
            resource: resource::build(
                resource::Given {
                    service_name: self.service_name.as_deref(),
                    service_instance_id: self.service_instance_id.as_deref(),
                },
                env,
            ),
            traces,
            metrics,
            logs,
            log_settings,
            summary: summary_reader.clone(),
            exponential: self.exponential_histograms,
            overrides: self.overrides,
            #[cfg(feature = "prometheus")]
            prometheus,
        }
        .build(&failures, &drops)?;

        global::set_tracer_provider(providers.tracer_provider.clone());
        global::set_meter_provider(providers.meter_provider.clone());
        global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]));

        let last_errors = summary_reader
            .is_some()
            .then(|| Arc::new(LastErrors::default()));
        let summary = summary_reader.map(|reader| {
            let writer = self
                .summary_writer
                .unwrap_or_else(|| Box::new(std::io::stderr()));
            Summary::new(reader, writer, last_errors.clone())
        });
        let asked = self.exception_events.unwrap_or_default();
        let exceptions = providers
            .logger_provider
            .as_ref()
            .filter(|_| asked.log_record())
            .map(|provider| ExceptionRecords::new(provider, log_settings.limits));
        let events = if exceptions.is_some() {
            asked
        } else {
            ExceptionEvents::SpanEvent
        };
        let sinks = (exceptions.is_some() || last_errors.is_some()).then(|| {
            Arc::new(FailureSinks {
                exceptions,
                last_errors,
            }) as Arc<dyn jobsight_core::job_logs::FailureLog>
        });
        jobsight_core::job_logs::set_failure_log(sinks, events);
        Ok(Telemetry::new(
            Some(Active {
                tracer_provider: providers.tracer_provider,
                meter_provider: providers.meter_provider,
                logger_provider: providers.logger_provider,
                log_bridge: LogBridgeSettings {
                    filter: Arc::new(log_filter),
                    limits: log_settings.limits,
                },
                runtime: providers.runtime,
                summary,
                shutdown_timeout: self.shutdown_timeout,
                otlp_signals: providers.otlp_signals,
                pending: providers.pending,
                #[cfg(feature = "prometheus")]
                scrape,
            }),
            failures,
            drops,
        ))
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry::{InstrumentationScope, KeyValue};

    use super::*;
    use crate::test_support::env;
    use jobsight_testkit::{LogCapture, otlp::reserve_port, serial};

    fn record_one_job(queue: &str) {
        let scope = InstrumentationScope::builder("jobsight").build();
        let meter = global::meter_with_scope(scope.clone());
        let attributes = [KeyValue::new(
            "messaging.destination.name",
            queue.to_owned(),
        )];
        meter
            .f64_histogram("messaging.process.duration")
            .build()
            .record(0.25, &attributes);
        meter
            .f64_histogram("job.queue_time")
            .build()
            .record(1.5, &attributes);
        global::tracer_provider()
            .tracer_with_scope(scope)
            .in_span(format!("process {queue}"), |_| {});
    }

    #[test]
    fn no_endpoint_builds_no_exporter_and_prints_the_summary() {
        let _lock = serial();
        let captured = LogCapture::default();
        let telemetry = Builder::default()
            .summary_writer(captured.clone())
            .install_with(&env(&[]))
            .unwrap();
        assert!(telemetry.otlp_signals().is_empty());
        assert!(!telemetry.has_export_runtime());
        assert!(telemetry.tracer_provider().is_some());
        record_one_job("local-queue");
        telemetry.shutdown().unwrap();
        let text = captured.text();
        assert!(text.contains("local-queue"), "{text}");
        assert!(text.contains("250ms"), "{text}");
        assert!(text.contains("1.50s"), "{text}");
    }

    #[test]
    fn summary_reads_what_jobsight_core_records() {
        use jobsight_core::{JobMeta, JobMonitor};

        let _lock = serial();
        let captured = LogCapture::default();
        let telemetry = Builder::default()
            .summary_writer(captured.clone())
            .install_with(&env(&[]))
            .unwrap();
        let monitor = JobMonitor::new();
        for attempt in 1..=3 {
            let meta = JobMeta::builder("test-runner", "emails")
                .name("welcome")
                .attempt(attempt)
                .build();
            let transaction = monitor.start(meta);
            if attempt == 3 {
                transaction.fail(&std::io::Error::other("smtp down"));
            } else {
                transaction.succeed();
            }
        }
        telemetry.shutdown().unwrap();
        let text = captured.text();
        let row = text
            .lines()
            .find(|line| line.trim_start().starts_with("emails"))
            .unwrap_or_else(|| panic!("no row for the queue: {text}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(&cells[..3], ["emails", "3", "1"], "{text}");
    }

    #[test]
    fn summary_can_be_turned_off() {
        let _lock = serial();
        let captured = LogCapture::default();
        let telemetry = Builder::default()
            .summary(false)
            .summary_writer(captured.clone())
            .install_with(&env(&[]))
            .unwrap();
        record_one_job("quiet");
        drop(telemetry);
        assert_eq!(captured.text(), "");
    }

    #[test]
    fn an_endpoint_turns_the_summary_off_by_default_and_summary_true_keeps_both() {
        let _lock = serial();
        let endpoint = format!("http://127.0.0.1:{}", reserve_port());
        let env = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())]);

        let captured = LogCapture::default();
        let telemetry = Builder::default()
            .summary_writer(captured.clone())
            .shutdown_timeout(Duration::from_secs(3))
            .install_with(&env)
            .unwrap();
        assert_eq!(
            telemetry.otlp_signals(),
            [Signal::Traces, Signal::Metrics, Signal::Logs]
        );
        assert!(!telemetry.has_export_runtime(), "HTTP needs no runtime");
        drop(telemetry);
        assert_eq!(captured.text(), "");

        let captured = LogCapture::default();
        let telemetry = Builder::default()
            .summary(true)
            .summary_writer(captured.clone())
            .shutdown_timeout(Duration::from_secs(3))
            .install_with(&env)
            .unwrap();
        assert_eq!(telemetry.otlp_signals().len(), 3);
        record_one_job("both");
        let _ = telemetry.shutdown();
        assert!(captured.text().contains("both"), "{}", captured.text());
    }

    #[test]
    fn grpc_starts_the_export_runtime() {
        let _lock = serial();
        let telemetry = Builder::default()
            .endpoint(format!("http://127.0.0.1:{}", reserve_port()))
            .protocol(Protocol::Grpc)
            .shutdown_timeout(Duration::from_secs(3))
            .install_with(&env(&[]))
            .unwrap();
        assert!(telemetry.has_export_runtime());
        assert!(telemetry.shutdown().is_ok());
    }

    #[test]
    fn sdk_disabled_installs_nothing_but_returns_a_guard() {
        let _lock = serial();
        let captured = LogCapture::default();
        let telemetry = Builder::default()
            .endpoint("http://127.0.0.1:1")
            .summary(true)
            .summary_writer(captured.clone())
            .install_with(&env(&[("OTEL_SDK_DISABLED", "true")]))
            .unwrap();
        assert!(telemetry.tracer_provider().is_none());
        assert!(telemetry.meter_provider().is_none());
        assert!(telemetry.otlp_signals().is_empty());
        assert!(telemetry.force_flush().is_ok());
        assert!(telemetry.shutdown().is_ok());
        assert_eq!(captured.text(), "");
    }

    #[test]
    fn a_bad_builder_endpoint_is_an_error() {
        let _lock = serial();
        let error = Builder::default()
            .endpoint("localhost:4317")
            .install_with(&env(&[]))
            .unwrap_err();
        assert!(matches!(error, Error::InvalidEndpoint { .. }), "{error}");
        assert!(error.to_string().contains("http://"), "{error}");
    }

    #[test]
    fn debug_output_hides_endpoint_credentials() {
        let builder = Builder::new().endpoint("http://user:s3cr3t@collector:4318");
        let debug = format!("{builder:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }
}
