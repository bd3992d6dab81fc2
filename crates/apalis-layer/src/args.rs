//! Recording job arguments and metadata: [`MonitorLayer::record_args`].
//!
//! Off by default. [`MonitorLayer::record_args`] puts a small layer in front
//! of the monitor that serializes the task's `Args` with serde, for the job
//! names the [`ArgsPolicy`] opts in, masked and size-limited (see
//! [`jobsight_core::args`]), and hands the text to the monitor: it becomes
//! the `job.args` span attribute and part of every observer event.
//!
//! ```
//! # use apalis::prelude::*;
//! use jobsight_apalis::MonitorLayer;
//! use jobsight_core::ArgsPolicy;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct SendEmail { to: String, api_key: String }
//! # async fn send_email(_: SendEmail) -> Result<(), BoxDynError> { Ok(()) }
//!
//! let worker = WorkerBuilder::new("email-sender")
//!     .backend(MemoryStorage::<SendEmail>::new())
//!     // `record_args` comes last: it wraps the finished `MonitorLayer`.
//!     .layer(MonitorLayer::new().record_args(ArgsPolicy::new().job("SendEmail")))
//!     .build(send_email);
//! ```
//!
//! When observers are registered on the monitor, the task's apalis metadata
//! (its `MetadataStore`) is also given to them, masked with the default
//! mask list (or the policy's, when `record_args` was used). Without
//! observers it is not read.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use apalis_core::task::{ExecutionContext, Task};
use jobsight_core::error::short_type_name;
use jobsight_core::{ArgsPolicy, CapturedArgs};
use serde::Serialize;
use tower_layer::{Layer, Stack};
use tower_service::Service;

use crate::MonitorLayer;

impl MonitorLayer {
    /// Records the arguments of the jobs `policy` opts in (see the module
    /// docs). Returns the monitor layer wrapped in a [`RecordArgsLayer`]:
    /// call it last, after the other `MonitorLayer` settings. The worker's
    /// `Args` type must implement `serde::Serialize`.
    pub fn record_args(mut self, policy: ArgsPolicy) -> Stack<MonitorLayer, RecordArgsLayer> {
        Arc::make_mut(&mut self.settings).records_args = true;
        let layer = RecordArgsLayer {
            policy: Arc::new(policy),
            job_name: self.settings.job_name,
        };
        Stack::new(self, layer)
    }
}

/// The layer [`MonitorLayer::record_args`] puts in front of the monitor:
/// captures the task's arguments into the task's data, where the monitor
/// finds them.
#[derive(Clone, Debug)]
pub struct RecordArgsLayer {
    policy: Arc<ArgsPolicy>,
    job_name: Option<&'static str>,
}

impl<S> Layer<S> for RecordArgsLayer {
    type Service = RecordArgsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RecordArgsService {
            inner,
            policy: Arc::clone(&self.policy),
            job_name: self.job_name,
        }
    }
}

/// Service of [`RecordArgsLayer`].
#[derive(Clone, Debug)]
pub struct RecordArgsService<S> {
    inner: S,
    policy: Arc<ArgsPolicy>,
    job_name: Option<&'static str>,
}

/// The captured arguments and the policy's masks, as task data.
#[derive(Clone, Debug)]
pub(crate) struct Recorded {
    args: Option<CapturedArgs>,
    policy: Arc<ArgsPolicy>,
}

impl<S, Args> Service<Task<Args>> for RecordArgsService<S>
where
    S: Service<Task<Args>>,
    Args: Serialize,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut task: Task<Args>) -> Self::Future {
        let name = self
            .job_name
            .unwrap_or_else(|| short_type_name(std::any::type_name::<Args>()));
        let args = self.policy.capture(name, &task.args);
        task.inject_data(Recorded {
            args,
            policy: Arc::clone(&self.policy),
        });
        self.inner.call(task)
    }
}

/// The captured arguments of the task, when [`MonitorLayer::record_args`]
/// recorded them.
pub(crate) fn captured(ctx: &ExecutionContext) -> Option<CapturedArgs> {
    ctx.data().get::<Recorded>()?.args.clone()
}

/// The task's metadata, masked, for observers.
pub(crate) fn observed_metadata(ctx: &ExecutionContext) -> Vec<(String, String)> {
    static DEFAULT: OnceLock<ArgsPolicy> = OnceLock::new();
    let policy = match ctx.data().get::<Recorded>() {
        Some(recorded) => &*recorded.policy,
        None => DEFAULT.get_or_init(ArgsPolicy::new),
    };
    policy.mask_pairs(ctx.metadata().iter().map(|(k, v)| (k.as_str(), v.as_str())))
}
