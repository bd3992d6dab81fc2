//! A small tokio runtime of our own, on its own thread, for the gRPC
//! exporters and the OTLP/HTTP client of `https://` endpoints.
//!
//! tonic's channel runs its connection tasks on the runtime that was current
//! when the exporter was built. Built on the application's runtime, a
//! shutdown called from a current-thread runtime deadlocks (the export waits
//! for tasks that the blocked thread would have to run). On this runtime the
//! tasks always have a thread of their own, whatever the caller does.
//! OTLP/HTTP to an `http://` endpoint uses a blocking client and needs no
//! runtime; to an `https://` endpoint (the `tls` feature) it runs its
//! requests here.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tokio::runtime::{Builder, EnterGuard, Handle};
use tokio::sync::oneshot;

use crate::Error;

thread_local! {
    /// Set on the export runtime's threads.
    static EXPORT_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread exports telemetry: the export runtime's threads and
/// the SDK's batch and periodic-reader threads (named `OpenTelemetry.…`).
/// The `tracing` bridge records nothing there: tracing-opentelemetry's
/// context activation replaces the thread's context with one that no
/// longer carries the SDK's suppression flag, so nested spans would escape
/// it.
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) fn is_export_thread() -> bool {
    EXPORT_THREAD.with(std::cell::Cell::get)
        || std::thread::current()
            .name()
            .is_some_and(|name| name.starts_with("OpenTelemetry."))
}

fn mark_export_thread() {
    EXPORT_THREAD.with(|flag| flag.set(true));
}

/// How long the runtime thread waits for blocking tasks when it stops.
const STOP_GRACE: Duration = Duration::from_millis(500);

/// The running export runtime. Dropping it stops the runtime without waiting:
/// exports still in flight then fail promptly instead of hanging.
#[derive(Debug)]
pub(crate) struct ExportRuntime {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl ExportRuntime {
    /// Starts the runtime thread and waits until the runtime is up.
    pub(crate) fn start() -> Result<Self, Error> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        thread::Builder::new()
            .name("jobsight-otel-export".into())
            .spawn(move || {
                // Everything polled here is the export itself: what its
                // crates log or trace must not become telemetry (a log
                // record about sending log records is a loop). The SDK
                // drops what is emitted under this flag.
                let _suppressed = opentelemetry::Context::enter_telemetry_suppressed_scope();
                mark_export_thread();
                let runtime = match Builder::new_current_thread()
                    .enable_all()
                    // The runtime's blocking threads (name resolution) are
                    // part of the export too; the flag stays set for the
                    // thread's life.
                    .on_thread_start(|| {
                        mark_export_thread();
                        std::mem::forget(opentelemetry::Context::enter_telemetry_suppressed_scope())
                    })
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(runtime.handle().clone()));
                // Runs spawned tasks until stopped, or until the sender is
                // dropped along with the `ExportRuntime`.
                runtime.block_on(async {
                    let _ = stop_rx.await;
                });
                runtime.shutdown_timeout(STOP_GRACE);
            })
            .map_err(Error::Thread)?;
        let handle = ready_rx
            .recv()
            .map_err(|_| Error::Thread(std::io::Error::other("the export runtime thread exited")))?
            .map_err(Error::Thread)?;
        Ok(ExportRuntime {
            handle,
            stop: Some(stop_tx),
        })
    }

    /// A handle to spawn on this runtime from any thread.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Makes this runtime current until the guard drops, so exporters built
    /// meanwhile spawn their tasks here.
    pub(crate) fn enter(&self) -> EnterGuard<'_> {
        self.handle.enter()
    }
}

impl Drop for ExportRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_spawned_tasks_and_stops() {
        let runtime = ExportRuntime::start().unwrap();
        let (tx, rx) = mpsc::channel();
        {
            let _guard = runtime.enter();
            tokio::spawn(async move {
                tx.send(thread::current().name().map(str::to_owned))
                    .unwrap();
            });
        }
        let name = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(name.as_deref(), Some("jobsight-otel-export"));
        drop(runtime);
    }

    /// Spans started on the runtime thread and on its blocking threads
    /// (what the exporters' transports run there) are not recorded.
    #[test]
    fn telemetry_is_suppressed_on_the_runtime_and_its_blocking_threads() {
        use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};

        let telemetry = jobsight_testkit::MemoryTelemetry::new();
        let tracer = telemetry.tracer_provider().tracer("export");
        let runtime = ExportRuntime::start().unwrap();
        let (tx, rx) = mpsc::channel();
        runtime.handle().spawn(async move {
            tracer.start("on the runtime").end();
            let tracer = tracer.clone();
            let blocking = tokio::task::spawn_blocking(move || {
                tracer.start("on a blocking thread").end();
            });
            let _ = blocking.await;
            tx.send(()).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        drop(runtime);
        let _ = telemetry.tracer_provider().force_flush();
        assert!(telemetry.spans().is_empty(), "{:#?}", telemetry.spans());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn can_be_started_and_dropped_inside_a_current_thread_runtime() {
        let runtime = ExportRuntime::start().unwrap();
        drop(runtime);
    }
}
