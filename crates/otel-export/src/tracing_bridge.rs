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
//!
//! # Setup order
//! [`tracing_layer`] (the free function) can be built before
//! [`init`](crate::init): its [`BridgeTracer`] looks the global tracer
//! provider up each time a span starts, so spans made after `init()` go to
//! the installed provider whatever the order of setup. A
//! `tracing-opentelemetry` layer built by the application on
//! `opentelemetry::global::tracer(..)` keeps the tracer that was global when
//! it was built: built before `init()`, that is the no-op tracer and its
//! spans are never exported (jobsight's own spans are then roots). Build such
//! a layer after `init()`, or use [`tracing_layer`].

use std::sync::Arc;

use opentelemetry::global::{self, BoxedSpan, BoxedTracer};
use opentelemetry::trace::{SpanBuilder, Tracer, TracerProvider as _};
use opentelemetry::{Context, InstrumentationScope};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::registry::LookupSpan;

use crate::Telemetry;

/// Instrumentation scope of the spans the bridge records.
pub const TRACING_SCOPE_NAME: &str = "jobsight.tracing";

/// The scope of the bridge's spans.
fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(TRACING_SCOPE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_schema_url(jobsight_core::semconv::SCHEMA_URL)
        .build()
}

/// The tracer of the bridge's layers. Made by [`tracing_layer`], it
/// resolves the global tracer provider each time it starts a span, rather
/// than once when it is made: spans started after [`init`](crate::init) (or
/// after the application sets its own global provider) use that provider,
/// whenever the tracer was made (a read of the global provider per span).
/// Made by [`Telemetry::tracing_layer`], it uses that telemetry's provider.
///
/// Either way it records nothing on a thread where telemetry is suppressed
/// (`Context::enter_telemetry_suppressed_scope`), nested spans included:
/// the exporters' own spans (h2, tonic, hyper) never become spans.
#[derive(Clone, Debug)]
pub struct BridgeTracer {
    scope: InstrumentationScope,
    fixed: Option<Arc<BoxedTracer>>,
}

impl BridgeTracer {
    /// A tracer on the global provider, recording under `scope`.
    pub fn global(scope: InstrumentationScope) -> Self {
        BridgeTracer { scope, fixed: None }
    }

    fn fixed(provider: &SdkTracerProvider, scope: InstrumentationScope) -> Self {
        let tracer = BoxedTracer::new(Box::new(provider.tracer_with_scope(scope.clone())));
        BridgeTracer {
            scope,
            fixed: Some(Arc::new(tracer)),
        }
    }
}

impl Tracer for BridgeTracer {
    type Span = BoxedSpan;

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> BoxedSpan {
        // tracing-opentelemetry gives a nested span its parent's context,
        // which does not carry the thread's suppression flag.
        let suppressed;
        let parent_cx = if !parent_cx.is_telemetry_suppressed()
            && (Context::is_current_telemetry_suppressed()
                || crate::export_runtime::is_export_thread())
        {
            suppressed = parent_cx.with_telemetry_suppressed();
            &suppressed
        } else {
            parent_cx
        };
        match &self.fixed {
            Some(tracer) => tracer.build_with_context(builder, parent_cx),
            None => global::tracer_provider()
                .tracer_with_scope(self.scope.clone())
                .build_with_context(builder, parent_cx),
        }
    }
}

/// A `tracing-subscriber` layer that records `tracing` spans (and their
/// events, as span events) with whatever tracer provider is global when
/// each span starts, under the scope [`TRACING_SCOPE_NAME`]. Unlike
/// [`Telemetry::tracing_layer`] it needs nothing installed yet, so the
/// subscriber (logging first) may be set up before [`init`](crate::init);
/// spans started before `init()` are not recorded.
///
/// ```no_run
/// use tracing_subscriber::layer::SubscriberExt as _;
/// use tracing_subscriber::util::SubscriberInitExt as _;
///
/// tracing_subscriber::registry()
///     .with(jobsight_otel::tracing_layer())
///     .init();
/// let telemetry = jobsight_otel::init()?;
/// # drop(telemetry);
/// # Ok::<(), jobsight_otel::Error>(())
/// ```
pub fn tracing_layer<S>() -> OpenTelemetryLayer<S, BridgeTracer>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    OpenTelemetryLayer::new(BridgeTracer::global(scope()))
}

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
    pub fn tracing_layer<S>(&self) -> Option<OpenTelemetryLayer<S, BridgeTracer>>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        let provider = self.tracer_provider()?;
        Some(OpenTelemetryLayer::new(BridgeTracer::fixed(
            provider,
            scope(),
        )))
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
