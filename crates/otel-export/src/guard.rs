//! [`Telemetry`], the guard that flushes and shuts telemetry down.

use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::dropped::DropCounter;
use crate::export_failures::FailureCounter;
use crate::export_runtime::ExportRuntime;
use crate::providers::Pending;
use crate::summary::Summary;
use crate::{Dropped, Error, ExportFailures, Signal};

/// Installed telemetry. Keep it alive for the life of the program: dropping
/// it (or calling [`shutdown`](Telemetry::shutdown)) flushes and shuts down
/// traces, then metrics, within the shutdown deadline, then prints the local
/// summary if it is on.
///
/// Flush and shutdown run on a thread of their own and the caller waits at
/// most the deadline, so both are safe on a tokio current-thread runtime,
/// on a multi-thread runtime and outside any runtime, and neither hangs when
/// the collector is down.
#[derive(Debug)]
#[must_use = "dropping the guard shuts telemetry down at once"]
pub struct Telemetry {
    active: Option<Active>,
    failures: Arc<FailureCounter>,
    drops: Arc<DropCounter>,
}

/// Everything a running installation owns.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) tracer_provider: SdkTracerProvider,
    pub(crate) meter_provider: SdkMeterProvider,
    /// Present when logs are exported.
    pub(crate) logger_provider: Option<SdkLoggerProvider>,
    /// What the log bridges filter and limit.
    #[cfg_attr(not(any(feature = "tracing", feature = "log")), allow(dead_code))]
    pub(crate) log_bridge: LogBridgeSettings,
    /// The gRPC exporters' runtime; stopped after shutdown.
    pub(crate) runtime: Option<ExportRuntime>,
    pub(crate) summary: Option<Summary>,
    pub(crate) shutdown_timeout: Duration,
    /// Signals with an OTLP exporter (none in local-only mode).
    pub(crate) otlp_signals: Vec<Signal>,
    /// What is not exported yet, counted as lost if the deadline passes.
    pub(crate) pending: Pending,
    /// The Prometheus scrape endpoint; stops when dropped.
    #[cfg(feature = "prometheus")]
    pub(crate) scrape: Option<crate::scrape::ScrapeEndpoint>,
}

/// The filter and limits of the log bridges.
#[derive(Clone, Debug)]
#[cfg_attr(not(any(feature = "tracing", feature = "log")), allow(dead_code))]
pub(crate) struct LogBridgeSettings {
    pub(crate) filter: Arc<crate::log_filter::LogFilter>,
    pub(crate) limits: crate::log_limits::LogLimits,
}

impl Telemetry {
    /// The logger provider and the bridges' settings, when logs are
    /// exported.
    #[cfg_attr(not(any(feature = "tracing", feature = "log")), allow(dead_code))]
    pub(crate) fn log_pipeline(&self) -> Option<(&SdkLoggerProvider, &LogBridgeSettings)> {
        let active = self.active.as_ref()?;
        Some((active.logger_provider.as_ref()?, &active.log_bridge))
    }

    pub(crate) fn new(
        active: Option<Active>,
        failures: Arc<FailureCounter>,
        drops: Arc<DropCounter>,
    ) -> Self {
        Telemetry {
            active,
            failures,
            drops,
        }
    }

    /// The installed tracer provider (also the global one); `None` when
    /// `OTEL_SDK_DISABLED=true`.
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.active.as_ref().map(|active| &active.tracer_provider)
    }

    /// The installed meter provider (also the global one); `None` when
    /// `OTEL_SDK_DISABLED=true`.
    pub fn meter_provider(&self) -> Option<&SdkMeterProvider> {
        self.active.as_ref().map(|active| &active.meter_provider)
    }

    /// The installed logger provider; `None` when logs are not exported
    /// (no endpoint applies to them, `OTEL_LOGS_EXPORTER=none`, or
    /// `OTEL_SDK_DISABLED=true`).
    pub fn logger_provider(&self) -> Option<&SdkLoggerProvider> {
        self.active
            .as_ref()
            .and_then(|active| active.logger_provider.as_ref())
    }

    /// The signals exported over OTLP: an OTLP exporter was built for each.
    /// Empty in local-only mode (no endpoint) and when disabled.
    pub fn otlp_signals(&self) -> &[Signal] {
        self.active
            .as_ref()
            .map_or(&[], |active| active.otlp_signals.as_slice())
    }

    /// How long [`shutdown`](Self::shutdown) and [`force_flush`](Self::force_flush)
    /// wait at most ([`Builder::shutdown_timeout`](crate::Builder::shutdown_timeout)).
    pub fn shutdown_timeout(&self) -> Duration {
        self.active
            .as_ref()
            .map_or(crate::DEFAULT_SHUTDOWN_TIMEOUT, |active| {
                active.shutdown_timeout
            })
    }

    /// The address the Prometheus scrape endpoint listens on, when one was
    /// asked for with `Builder::prometheus_endpoint` (feature `prometheus`).
    #[cfg(feature = "prometheus")]
    pub fn prometheus_addr(&self) -> Option<std::net::SocketAddr> {
        self.active
            .as_ref()
            .and_then(|active| active.scrape.as_ref())
            .map(crate::scrape::ScrapeEndpoint::addr)
    }

    /// Export calls that failed so far, and what they carried. Part of
    /// [`dropped`](Self::dropped), which also counts spans dropped because
    /// the queue was full and what the shutdown deadline cut off.
    pub fn export_failures(&self) -> ExportFailures {
        self.failures.snapshot()
    }

    /// Telemetry dropped so far, by signal and reason: exactly what the
    /// counter `jobsight.telemetry.dropped` exports, plus what happened
    /// after the exporters were gone (`shutdown_timeout`, `after_shutdown`).
    pub fn dropped(&self) -> Dropped {
        self.drops.snapshot()
    }

    /// Exports everything recorded so far: spans, metrics, then log
    /// records. Waits at most the shutdown timeout.
    ///
    /// Exports that fail are counted in [`dropped`](Self::dropped) and
    /// reported once (stderr by default), not returned as errors.
    pub fn force_flush(&self) -> Result<(), Error> {
        let Some(active) = &self.active else {
            return Ok(());
        };
        let tracer_provider = active.tracer_provider.clone();
        let meter_provider = active.meter_provider.clone();
        let logger_provider = active.logger_provider.clone();
        let failures = Arc::clone(&self.failures);
        run_with_deadline("flush", active.shutdown_timeout, move || {
            let traces = tracer_provider.force_flush();
            let metrics = meter_provider.force_flush();
            let logs = logger_provider
                .as_ref()
                .map_or(Ok(()), SdkLoggerProvider::force_flush);
            checked(&failures, "flush", [traces, metrics, logs])
        })?
    }

    /// Flushes and shuts down traces, metrics, then logs, within the shutdown
    /// timeout, then prints the summary if it is on. Past the deadline it
    /// gives up and returns [`Error::Timeout`]; telemetry not exported by
    /// then is lost, and counted as `shutdown_timeout` in
    /// [`dropped`](Self::dropped). When anything was dropped since start, one
    /// line gives the totals. Dropping the guard does the same and prints
    /// any error to stderr.
    pub fn shutdown(mut self) -> Result<(), Error> {
        self.shutdown_active()
    }

    fn shutdown_active(&mut self) -> Result<(), Error> {
        let Some(active) = self.active.take() else {
            return Ok(());
        };
        // The summary is read first: it is local and must not wait on, or be
        // lost to, a slow collector.
        let queues = active.summary.as_ref().map(Summary::collect);
        let Active {
            tracer_provider,
            meter_provider,
            logger_provider,
            runtime,
            summary,
            shutdown_timeout,
            pending,
            ..
        } = active;
        let failures = Arc::clone(&self.failures);
        let shutdown = run_with_deadline("shutdown", shutdown_timeout, move || {
            let traces = tracer_provider.shutdown_with_timeout(shutdown_timeout);
            // The meter provider ignores timeouts; the caller's deadline bounds it.
            let metrics = meter_provider.shutdown();
            let logs = logger_provider.as_ref().map_or(Ok(()), |provider| {
                provider.shutdown_with_timeout(shutdown_timeout)
            });
            checked(&failures, "shutdown", [traces, metrics, logs])
        })
        .and_then(|result| result);
        // Whatever is not exported now is lost (nothing at all when the
        // shutdown finished in time); exports still running cannot add to it.
        self.drops.seal(|| pending.now());
        // Stopping the runtime also makes exports still in flight fail fast.
        drop(runtime);
        let dropped = self.drops.snapshot();
        if !dropped.is_empty() {
            self.drops.reports().line(&format!(
                "jobsight-otel: telemetry dropped since start: {dropped}"
            ));
        }
        let written = match (summary, queues) {
            (Some(summary), Some(queues)) => summary.write(&queues),
            _ => Ok(()),
        };
        shutdown.and(written)
    }

    /// True when the export runtime (gRPC, or OTLP/HTTP over https) is running.
    #[cfg(test)]
    pub(crate) fn has_export_runtime(&self) -> bool {
        self.active
            .as_ref()
            .is_some_and(|active| active.runtime.is_some())
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown_active() {
            self.drops
                .reports()
                .line(&format!("jobsight-otel: {error}"));
        }
    }
}

/// Runs `work` on a new thread; waits for it at most `deadline`. Past the
/// deadline the thread is left to finish on its own.
fn run_with_deadline<T: Send + 'static>(
    operation: &'static str,
    deadline: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    let (done, result) = mpsc::channel();
    thread::Builder::new()
        .name(format!("jobsight-otel-{operation}"))
        .spawn(move || {
            let _ = done.send(work());
        })
        .map_err(Error::Thread)?;
    result.recv_timeout(deadline).map_err(|error| match error {
        mpsc::RecvTimeoutError::Timeout => Error::Timeout {
            operation,
            deadline,
        },
        mpsc::RecvTimeoutError::Disconnected => Error::Thread(std::io::Error::other(format!(
            "the telemetry {operation} thread panicked"
        ))),
    })
}

/// The SDK's results as ours. A failure of a signal whose exports already
/// failed was reported and counted by the exporter wrapper: it is not an
/// error again. Neither is "already shut down".
fn checked(
    failures: &FailureCounter,
    operation: &'static str,
    [traces, metrics, logs]: [OTelSdkResult; 3],
) -> Result<(), Error> {
    let lost = failures.snapshot();
    let check = |signal: Signal, result: OTelSdkResult, exports_failed: bool| match result {
        Ok(()) | Err(OTelSdkError::AlreadyShutdown) => Ok(()),
        Err(_) if exports_failed => Ok(()),
        Err(source) => Err(Error::Sdk {
            signal,
            operation,
            source,
        }),
    };
    check(Signal::Traces, traces, lost.failed_span_exports > 0)
        .and(check(
            Signal::Metrics,
            metrics,
            lost.failed_metric_exports > 0,
        ))
        .and(check(Signal::Logs, logs, lost.failed_log_exports > 0))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Instant;

    use opentelemetry::global;
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry::{InstrumentationScope, KeyValue};

    use super::*;
    use crate::test_support::env;
    use crate::{Builder, Protocol};
    use jobsight_testkit::{otlp::reserve_port, serial};

    const DEADLINE: Duration = Duration::from_secs(2);
    /// Slack for thread start-up and a loaded CI machine.
    const MARGIN: Duration = Duration::from_secs(2);

    fn record_telemetry() {
        let scope = InstrumentationScope::builder("jobsight").build();
        let tracer = global::tracer_provider().tracer_with_scope(scope.clone());
        for _ in 0..10 {
            tracer.in_span("process email", |_| {});
        }
        global::meter_with_scope(scope)
            .u64_counter("messaging.client.consumed.messages")
            .build()
            .add(10, &[KeyValue::new("messaging.destination.name", "email")]);
    }

    fn install(endpoint: &str, protocol: Protocol) -> Telemetry {
        Builder::default()
            .endpoint(endpoint)
            .protocol(protocol)
            .shutdown_timeout(DEADLINE)
            .install_with(&env(&[]))
            .unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn shutdown_on_a_current_thread_runtime_with_nothing_listening_is_bounded() {
        let _lock = serial();
        let telemetry = install(
            &format!("http://127.0.0.1:{}", reserve_port()),
            Protocol::Grpc,
        );
        record_telemetry();
        let started = Instant::now();
        let result = telemetry.shutdown();
        let elapsed = started.elapsed();
        assert!(elapsed < DEADLINE + MARGIN, "shutdown took {elapsed:?}");
        // Refused connections are export failures (a warning), not errors;
        // only the deadline may turn into one.
        assert!(
            matches!(result, Ok(()) | Err(Error::Timeout { .. })),
            "{result:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn failed_exports_are_counted_not_returned() {
        let _lock = serial();
        let telemetry = Builder::default()
            .endpoint(format!("http://127.0.0.1:{}", reserve_port()))
            .protocol(Protocol::Grpc)
            .shutdown_timeout(Duration::from_secs(5))
            .install_with(&env(&[]))
            .unwrap();
        record_telemetry();
        let flushed = telemetry.force_flush();
        assert!(flushed.is_ok(), "{flushed:?}");
        let failures = telemetry.export_failures();
        assert!(failures.failed_span_exports >= 1, "{failures:?}");
        assert_eq!(failures.dropped_spans, 10, "{failures:?}");
        assert!(failures.failed_metric_exports >= 1, "{failures:?}");
        drop(telemetry);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn drop_with_a_collector_that_never_answers_is_bounded() {
        // Accepts connections (the kernel does) but never answers: exports
        // hang until their own 10 s timeout, longer than the deadline.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", silent.local_addr().unwrap());
        for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
            let _lock = serial();
            let telemetry = install(&endpoint, protocol);
            record_telemetry();
            let started = Instant::now();
            drop(telemetry);
            let elapsed = started.elapsed();
            assert!(
                elapsed < DEADLINE + MARGIN,
                "{protocol}: drop took {elapsed:?}"
            );
        }
    }

    #[test]
    fn what_the_deadline_cuts_off_is_counted_once_as_shutdown_timeout() {
        // Accepts connections but never answers: the export of the ten spans
        // is still waiting for its 3 s timeout when the 2 s deadline passes.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let _lock = serial();
        let log = jobsight_testkit::LogCapture::default();
        let telemetry = Builder::default()
            .endpoint(format!("http://{}", silent.local_addr().unwrap()))
            .protocol(Protocol::HttpProtobuf)
            .shutdown_timeout(DEADLINE)
            .diagnostics_writer(log.clone())
            .install_with(&env(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "3000")]))
            .unwrap();
        let drops = Arc::clone(&telemetry.drops);
        record_telemetry();
        let result = telemetry.shutdown();
        assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
        let dropped = drops.snapshot();
        assert_eq!(dropped.spans.shutdown_timeout, 10, "{dropped:?}");
        assert_eq!(dropped.spans.export_failed, 0, "{dropped:?}");
        let text = log.text();
        assert!(
            text.contains("telemetry dropped since start: 10 spans (shutdown_timeout 10)"),
            "{text}"
        );
        // The abandoned export fails later (its own timeout): not counted again.
        thread::sleep(Duration::from_secs(3));
        assert_eq!(drops.snapshot().spans, dropped.spans);
    }

    #[test]
    fn shutdown_outside_any_runtime_with_nothing_listening_is_bounded() {
        let _lock = serial();
        let telemetry = install(
            &format!("http://127.0.0.1:{}", reserve_port()),
            Protocol::HttpProtobuf,
        );
        record_telemetry();
        let started = Instant::now();
        let result = telemetry.shutdown();
        assert!(started.elapsed() < DEADLINE + MARGIN);
        assert!(
            matches!(result, Ok(()) | Err(Error::Timeout { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn the_guard_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Telemetry>();
    }

    #[test]
    fn deadline_is_enforced_on_slow_work() {
        let started = Instant::now();
        let result = run_with_deadline("flush", Duration::from_millis(100), || {
            thread::sleep(Duration::from_secs(2));
        });
        assert!(matches!(
            result,
            Err(Error::Timeout {
                operation: "flush",
                ..
            })
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
