//! [`RunningProgress`]: the attempts of one monitor that reported progress
//! and are still running, read by the `job.progress` gauge.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use opentelemetry::Context;
use opentelemetry::metrics::{AsyncInstrument, Meter, ObservableGauge};

use crate::semconv;

/// The contexts of the running attempts that reported progress (each holds
/// its run state), and the gauge that reads them, registered on first use.
#[derive(Default)]
pub(crate) struct RunningProgress {
    running: Arc<Mutex<Vec<Context>>>,
    gauge: OnceLock<ObservableGauge<f64>>,
}

impl RunningProgress {
    /// The list, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<Context>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers the `job.progress` gauge on `meter` once; at each
    /// collection `observe` gets the running attempts' contexts.
    pub(crate) fn ensure_gauge<F>(&self, meter: &Meter, observe: F)
    where
        F: Fn(&[Context], &dyn AsyncInstrument<f64>) + Send + Sync + 'static,
    {
        self.gauge.get_or_init(|| {
            let running = Arc::clone(&self.running);
            meter
                .f64_observable_gauge(semconv::METRIC_PROGRESS)
                .with_unit("1")
                .with_description(
                    "Progress of the running jobs of a kind that set a total: their ticks over their totals.",
                )
                .with_callback(move |observer| {
                    let running = running.lock().unwrap_or_else(PoisonError::into_inner);
                    observe(&running, observer);
                })
                .build()
        });
    }
}
