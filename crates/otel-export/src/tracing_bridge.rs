//! The optional `tracing` bridge (cargo feature `tracing`): spans made with
//! the `tracing` crate become OpenTelemetry spans of the installed tracer
//! provider, through `tracing-opentelemetry`.
//!
//! # Where a `tracing` span lands
//! `tracing-opentelemetry` 0.34 picks the parent of a new contextual
//! `tracing` span from the **OpenTelemetry** current context
//! (`Context::current()`), not from the `tracing` span stack: its layer
//! attaches a span's OpenTelemetry context whenever the span is entered
//! ("context activation", on by default), so both stacks agree. A job's
//! `tracing` spans are therefore children of `process {queue}`, which
//! `jobsight-apalis` attaches around every poll of the job, and
//! OpenTelemetry API spans made inside an entered `tracing` span are its
//! children. A span given an explicit parent (`parent: &span`) keeps it.
//!
//! Turning context activation off (`.with_context_activation(false)` on the
//! layer) makes the `tracing` span stack win: a `tracing` span entered
//! around the whole worker would then be the parent of every job's spans.
//! Keep it on.

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracer;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

use crate::Telemetry;

/// Instrumentation scope of the spans the bridge records.
pub const TRACING_SCOPE_NAME: &str = "jobsight.tracing";

impl Telemetry {
    /// A `tracing-subscriber` layer that records `tracing` spans (and their
    /// events, as span events) with the installed tracer provider, under the
    /// scope [`TRACING_SCOPE_NAME`]. `None` when nothing is installed
    /// (`OTEL_SDK_DISABLED=true`); an `Option` of a layer is a layer, so it
    /// can be added either way.
    ///
    /// ```no_run
    /// use tracing_subscriber::layer::SubscriberExt as _;
    /// use tracing_subscriber::util::SubscriberInitExt as _;
    ///
    /// let telemetry = jobsight_otel::init()?;
    /// tracing_subscriber::registry()
    ///     .with(telemetry.tracing_layer())
    ///     .init();
    /// # Ok::<(), jobsight_otel::Error>(())
    /// ```
    ///
    /// Every `tracing` span costs an OpenTelemetry span, even when it is
    /// sampled out (see the crate's notes on cost); keep `tracing` spans in
    /// jobs coarse, or filter the layer by level.
    pub fn tracing_layer<S>(&self) -> Option<OpenTelemetryLayer<S, SdkTracer>>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        let provider = self.tracer_provider()?;
        let scope = InstrumentationScope::builder(TRACING_SCOPE_NAME)
            .with_version(env!("CARGO_PKG_VERSION"))
            .with_schema_url(jobsight_core::semconv::SCHEMA_URL)
            .build();
        Some(OpenTelemetryLayer::new(provider.tracer_with_scope(scope)))
    }
}

#[cfg(test)]
mod tests {
    use jobsight_testkit::MemoryTelemetry;
    use opentelemetry::trace::{TraceContextExt, Tracer as _, TracerProvider as _};
    use tracing_subscriber::layer::SubscriberExt as _;

    /// The behaviour the module docs describe, checked on the version in the
    /// lockfile: with no `tracing` parent, a `tracing` span's parent is the
    /// OpenTelemetry current context; OpenTelemetry spans inside an entered
    /// `tracing` span are its children.
    #[test]
    fn tracing_spans_nest_under_the_current_opentelemetry_context() {
        let telemetry = MemoryTelemetry::new();
        let provider = telemetry.tracer_provider();
        let subscriber = tracing_subscriber::registry().with(
            tracing_opentelemetry::OpenTelemetryLayer::new(provider.tracer("bridge")),
        );
        let tracer = provider.tracer("job");
        tracing::subscriber::with_default(subscriber, || {
            // A `tracing` span around everything, as a worker's main might have.
            let outer = tracing::info_span!("worker_main");
            let _outer = outer.enter();
            let process = tracer.start("process q");
            let cx = opentelemetry::Context::current_with_span(process);
            {
                let _attached = cx.clone().attach();
                let render = tracing::info_span!("render");
                let _entered = render.enter();
                tracer.in_span("smtp", |_| {});
            }
            cx.span().end();
        });
        let spans = telemetry.spans();
        let by_name = |n: &str| {
            spans
                .iter()
                .find(|s| s.name == n)
                .unwrap_or_else(|| panic!("no {n}: {spans:#?}"))
        };
        let (process, render, smtp) = (by_name("process q"), by_name("render"), by_name("smtp"));
        assert_eq!(render.parent_span_id, process.span_context.span_id());
        assert_eq!(smtp.parent_span_id, render.span_context.span_id());
        assert_eq!(
            render.span_context.trace_id(),
            process.span_context.trace_id()
        );
    }
}
