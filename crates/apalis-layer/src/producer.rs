//! The producer side: stamping a task so the worker knows when it was
//! enqueued and which trace created it.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::metadata::{Metadata, MetadataStore};
use opentelemetry::Context;

use crate::carrier::{MetadataExtractor, MetadataInjector};
use crate::task_meta::ENQUEUED_AT_KEY;

/// Builds a task for `args` stamped with the enqueue time and the current
/// trace context (see [`Stamp`]), without recording a send span: for
/// producers whose own span is enough. [`TracedPush::push_traced`](crate::TracedPush::push_traced)
/// records a `send {queue}` span and stamps the task with it. Push it with
/// apalis's `push_task`:
///
/// ```
/// # use apalis::prelude::*;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let mut storage = MemoryStorage::<String>::new();
/// storage.push_task(jobsight_apalis::stamped("ada@example.com".to_string())).await?;
/// # Ok(()) }
/// ```
pub fn stamped<Args>(args: Args) -> Task<Args> {
    stamped_builder(TaskBuilder::new(args)).build()
}

/// Like [`stamped`], for a [`TaskBuilder`] you configure further (queue,
/// run-at, max attempts…). Metadata set on the builder is kept.
pub fn stamped_builder<Args>(builder: TaskBuilder<Args>) -> TaskBuilder<Args> {
    builder.metadata(&Stamp::now())
}

/// What a producer writes into a task's metadata: `jobsight.enqueued_at`
/// (unix milliseconds) and the W3C trace context and baggage of the
/// context current when it was taken. Injecting replaces earlier values of
/// those keys and never fails.
#[derive(Debug, Clone)]
pub struct Stamp {
    enqueued_at_ms: u128,
    cx: Context,
}

impl Stamp {
    /// Takes the current time and [`Context::current`].
    pub fn now() -> Self {
        Self::with_context(Context::current())
    }
}

impl Stamp {
    /// Takes the current time and `cx` (a send span's context).
    pub(crate) fn with_context(cx: Context) -> Self {
        Self {
            cx,
            ..Self::now_without_context()
        }
    }

    fn now_without_context() -> Self {
        Self {
            enqueued_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0),
            cx: Context::new(),
        }
    }
}

impl Metadata for Stamp {
    type Error = Infallible;

    fn extract(store: &MetadataStore) -> Result<Self, Self::Error> {
        let enqueued_at_ms = store
            .get(ENQUEUED_AT_KEY)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let cx = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&MetadataExtractor(store))
        });
        Ok(Self { enqueued_at_ms, cx })
    }

    fn inject(&self, map: &mut MetadataStore) -> Result<(), Self::Error> {
        map.replace(ENQUEUED_AT_KEY, self.enqueued_at_ms.to_string());
        jobsight_core::propagation::inject(&self.cx, &mut MetadataInjector(map));
        Ok(())
    }
}
