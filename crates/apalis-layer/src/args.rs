//! Recording job arguments and metadata:
//! [`MonitorLayerBuilder::record_args`](crate::MonitorLayerBuilder::record_args).
//!
//! Off by default. With `record_args(policy)` the layer serializes the
//! task's `Args` with serde, for the job names the [`ArgsPolicy`] opts in,
//! masked and size-limited (see [`jobsight_core::args`]): the text becomes
//! the `job.args` span attribute and part of every observer event. The
//! worker's `Args` type must then implement `serde::Serialize`; without
//! `record_args` it need not.
//!
//! ```
//! # use apalis::prelude::*;
//! use jobsight_apalis::{ArgsPolicy, MonitorLayer};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct SendEmail { to: String, api_key: String }
//! # async fn send_email(_: SendEmail) -> Result<(), BoxDynError> { Ok(()) }
//!
//! # fn main() -> Result<(), jobsight_apalis::Error> {
//! let worker = WorkerBuilder::new("email-sender")
//!     .backend(MemoryStorage::<SendEmail>::new())
//!     .layer(
//!         MonitorLayer::builder()
//!             .record_args(ArgsPolicy::new().job("SendEmail")) // `api_key` is masked
//!             .queue("emails")
//!             .build()?,
//!     )
//!     .build(send_email);
//! # Ok(()) }
//! ```
//!
//! When observers are registered on the monitor, the task's apalis metadata
//! (its `MetadataStore`) is also given to them, masked with the policy's
//! mask list (the default list without `record_args`). Without observers it
//! is not read.

use std::sync::{Arc, OnceLock};

use apalis_core::task::ExecutionContext;
use jobsight_core::{ArgsPolicy, CapturedArgs};
use serde::Serialize;

/// How a [`MonitorLayer`](crate::MonitorLayer) treats the task's
/// arguments: [`ArgsOff`] (the default) or [`ArgsCapture`]. Implemented by
/// those two types only.
pub trait CaptureArgs<Args>: sealed::Sealed + Clone + Send + Sync + 'static {
    /// The arguments of the job named `name`, captured if the policy says so.
    #[doc(hidden)]
    fn capture(&self, name: &str, args: &Args) -> Option<CapturedArgs>;

    /// The policy whose masks apply to the task's metadata.
    #[doc(hidden)]
    fn policy(&self) -> &ArgsPolicy;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ArgsOff {}
    impl Sealed for super::ArgsCapture {}
}

/// Arguments are not recorded (the default): the worker's `Args` need not
/// implement `Serialize`, and a job pays nothing for the feature.
#[derive(Clone, Copy, Debug, Default)]
pub struct ArgsOff;

/// Arguments are recorded as the [`ArgsPolicy`] given to
/// [`record_args`](crate::MonitorLayerBuilder::record_args) says.
#[derive(Clone, Debug)]
pub struct ArgsCapture {
    policy: Arc<ArgsPolicy>,
}

impl ArgsCapture {
    pub(crate) fn new(policy: ArgsPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }
}

impl<Args> CaptureArgs<Args> for ArgsOff {
    #[inline]
    fn capture(&self, _name: &str, _args: &Args) -> Option<CapturedArgs> {
        None
    }

    fn policy(&self) -> &ArgsPolicy {
        static DEFAULT: OnceLock<ArgsPolicy> = OnceLock::new();
        DEFAULT.get_or_init(ArgsPolicy::new)
    }
}

impl<Args: Serialize> CaptureArgs<Args> for ArgsCapture {
    fn capture(&self, name: &str, args: &Args) -> Option<CapturedArgs> {
        self.policy.capture(name, args)
    }

    fn policy(&self) -> &ArgsPolicy {
        &self.policy
    }
}

/// The task's metadata, masked with `policy`, for observers.
pub(crate) fn observed_metadata(
    ctx: &ExecutionContext,
    policy: &ArgsPolicy,
) -> Vec<(String, String)> {
    policy.mask_pairs(ctx.metadata().iter().map(|(k, v)| (k.as_str(), v.as_str())))
}
