//! [`MonitorFuture`]: the response future that finishes the transaction.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use apalis_core::error::{AbortError, BoxDynError};
use apalis_core::task::ExecutionContext;
use apalis_core::task::status::Status;
use jobsight_core::outcome::panic_message;
use jobsight_core::{ErrorClass, ErrorRecord, Transaction};
use pin_project_lite::pin_project;

use crate::backend::retry_clock::RetryMark;
use crate::errors::{JobPanicked, unwrap};

pin_project! {
    /// Response future of [`crate::MonitorService`].
    ///
    /// Attaches the transaction's context around every poll of the job, so
    /// spans the job creates are children of `process {queue}`; finishes the
    /// transaction when the job returns or panics; and, when dropped before
    /// that (a timeout outside this layer, a shutdown), lets the transaction
    /// record the job as abandoned.
    pub struct MonitorFuture<F> {
        #[pin]
        inner: F,
        state: Option<State>,
    }
}

struct State {
    tx: Transaction,
    retry: Option<RetryMark>,
    ctx: Arc<ExecutionContext>,
    catch_panics: bool,
}

impl<F> MonitorFuture<F> {
    pub(crate) fn new(
        inner: F,
        tx: Transaction,
        ctx: Arc<ExecutionContext>,
        catch_panics: bool,
        retry: Option<RetryMark>,
    ) -> Self {
        Self {
            inner,
            state: Some(State {
                tx,
                retry,
                ctx,
                catch_panics,
            }),
        }
    }
}

impl<F, T, E> Future for MonitorFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxDynError>,
{
    type Output = Result<T, BoxDynError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(state) = this.state.as_ref() else {
            // Finished already: pass through without recording anything.
            return this.inner.poll(cx).map_err(Into::into);
        };
        let polled = {
            let _attached = state.tx.attach();
            let inner = this.inner;
            catch_unwind(AssertUnwindSafe(|| inner.poll(cx)))
        };
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(result)) => {
                let result = result.map_err(Into::into);
                if let Some(mut state) = this.state.take() {
                    if result.is_err()
                        && let Some(retry) = state.retry.take()
                    {
                        retry.failed();
                    }
                    match &result {
                        Ok(_) => state.tx.succeed(),
                        Err(error) => record_failure(state, error.as_ref()),
                    }
                }
                Poll::Ready(result)
            }
            Err(payload) => {
                let message = panic_message(payload.as_ref()).to_owned();
                let catch_panics = match this.state.take() {
                    Some(state) => {
                        state.tx.panicked(&message);
                        state.catch_panics
                    }
                    None => false,
                };
                if catch_panics {
                    Poll::Ready(Err(Box::new(AbortError::new(JobPanicked { message }))))
                } else {
                    resume_unwind(payload)
                }
            }
        }
    }
}

fn record_failure(state: State, error: &(dyn std::error::Error + 'static)) {
    let unwrapped = unwrap(error);
    if let Some(message) = &unwrapped.panic {
        state.tx.panicked(message);
        return;
    }
    let mut class = state
        .tx
        .classifier()
        .classify(unwrapped.error, state.tx.meta());
    // apalis will not retry an aborted job, nor one whose status the worker
    // never got to set (a timeout or a caught panic inside this layer leaves
    // it Running, and backends then give up on it).
    let will_not_retry =
        unwrapped.aborted || matches!(state.ctx.status(), Status::Killed | Status::Running);
    if class == ErrorClass::Retry && will_not_retry {
        class = ErrorClass::Fail;
    }
    let record = ErrorRecord::from_error(unwrapped.error);
    state.tx.fail_with(record, class);
}
