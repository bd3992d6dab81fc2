//! [`MonitorWorkerExt`]: adds a [`MonitorLayer`] to an apalis
//! `WorkerBuilder`, with apalis's retry layer outside it when the builder
//! says how many times to retry, so the retry count is written once.

use apalis::layers::retry::{RetryLayer, RetryPolicy};
use apalis_core::backend::Backend;
use apalis_core::worker::builder::WorkerBuilder;
use tower::util::Either;
use tower_layer::{Identity, Stack};

use crate::errors::Error;
use crate::layer::MonitorLayer;
use crate::layer_builder::MonitorLayerBuilder;

/// The layers [`MonitorWorkerExt::monitor`] adds: apalis's retry layer
/// (when [`MonitorLayerBuilder::retries`] was given) outside the monitor
/// layer.
pub type MonitorLayers<A, M> =
    Stack<MonitorLayer<A>, Stack<Either<RetryLayer<RetryPolicy>, Identity>, M>>;

/// Adding a monitored layer to an apalis worker.
///
/// ```
/// use apalis::prelude::*;
/// use jobsight_apalis::{MonitorLayer, MonitorWorkerExt};
///
/// async fn send_email(_to: String) -> Result<(), BoxDynError> { Ok(()) }
///
/// # fn main() -> Result<(), jobsight_apalis::Error> {
/// let worker = WorkerBuilder::new("email-sender")
///     .backend(MemoryStorage::<String>::new())
///     // apalis retries a failed job twice (3 attempts), and each failed
///     // attempt with attempts left is recorded as `retried`, not `failed`.
///     .monitor(MonitorLayer::builder().retries(2).queue("emails"))?
///     .build(send_email);
/// # Ok(()) }
/// ```
pub trait MonitorWorkerExt<Args, Source, M>: Sized {
    /// Builds `layer` and adds it to the worker. When the builder was given
    /// [`retries(n)`](MonitorLayerBuilder::retries), apalis's `RetryLayer`
    /// with `RetryPolicy::retries(n)` goes first (outermost, so each attempt
    /// is a transaction of its own) and the monitor learns that a job gets
    /// `n + 1` attempts. Without it no retry layer runs (the `Either` in the
    /// stack is then a pass-through), but the worker's `Args` must still be
    /// `Clone`, as for any retry layer.
    ///
    /// Fails as [`MonitorLayerBuilder::build`] does, and when `retries` and
    /// `max_attempts` were both given ([`Error::RetriesAndMaxAttempts`]).
    fn monitor<A>(
        self,
        layer: MonitorLayerBuilder<A>,
    ) -> Result<WorkerBuilder<Args, Source, MonitorLayers<A, M>>, Error>;
}

impl<Args, Source: Backend, M> MonitorWorkerExt<Args, Source, M>
    for WorkerBuilder<Args, Source, M>
{
    fn monitor<A>(
        self,
        layer: MonitorLayerBuilder<A>,
    ) -> Result<WorkerBuilder<Args, Source, MonitorLayers<A, M>>, Error> {
        let (layer, retries) = layer.build_for_worker()?;
        let retry = match retries {
            Some(n) => Either::Left(RetryLayer::new(RetryPolicy::retries(n))),
            None => Either::Right(Identity::new()),
        };
        Ok(self.layer(retry).layer(layer))
    }
}
