//! Running a one-off task and flushing before the process exits:
//! [`Telemetry::run_task`] and [`Telemetry::run_task_async`].

use std::future::Future;
use std::panic::resume_unwind;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use jobsight_core::JobMonitor;
use jobsight_core::task::{OneOffTask, TaskOutput};

use crate::Telemetry;

impl Telemetry {
    /// Runs `work` on this thread as the monitored task `task` (a name, or a
    /// [`OneOffTask`]), then shuts telemetry down, and returns `work`'s output
    /// unchanged. When this returns, everything the task recorded has been
    /// exported, or the shutdown deadline ([`Builder::shutdown_timeout`](crate::Builder::shutdown_timeout),
    /// 5 s by default) has passed and what was not exported by then is lost;
    /// either way it is safe to call `std::process::exit` right after.
    ///
    /// The task's observers (those of its monitor) are flushed within the
    /// same deadline, at the same time. A panic in `work` is recorded,
    /// telemetry is flushed, and then the panic continues.
    ///
    /// ```no_run
    /// fn backfill_users() -> Result<u64, std::io::Error> {
    ///     Ok(42)
    /// }
    ///
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let telemetry = jobsight_otel::init()?;
    ///     let updated = telemetry.run_task("backfill_users", backfill_users)?;
    ///     println!("{updated} users updated");
    ///     Ok(())
    /// }
    /// ```
    pub fn run_task<T: TaskOutput>(
        self,
        task: impl Into<OneOffTask>,
        work: impl FnOnce() -> T,
    ) -> T {
        let task = task.into();
        let monitor = task.job_monitor().clone();
        let ran = task.run_blocking_catch_unwind(work);
        self.finish_task(&monitor);
        match ran {
            Ok(output) => output,
            Err(panic) => resume_unwind(panic),
        }
    }

    /// [`run_task`](Self::run_task) for a future. The shutdown at the end
    /// blocks the calling thread for up to the deadline, which is safe on
    /// any tokio runtime (it runs on a thread of its own) and meant for the
    /// end of a program.
    ///
    /// ```no_run
    /// async fn send_reports() -> Result<(), std::io::Error> {
    ///     Ok(())
    /// }
    ///
    /// #[tokio::main(flavor = "current_thread")]
    /// async fn main() -> std::process::ExitCode {
    ///     let Ok(telemetry) = jobsight_otel::init() else { return std::process::ExitCode::from(2) };
    ///     match telemetry.run_task_async("send_reports", send_reports()).await {
    ///         Ok(()) => std::process::ExitCode::SUCCESS,
    ///         Err(_) => std::process::ExitCode::FAILURE,
    ///     }
    /// }
    /// ```
    pub async fn run_task_async<F>(self, task: impl Into<OneOffTask>, work: F) -> F::Output
    where
        F: Future,
        F::Output: TaskOutput,
    {
        let task = task.into();
        let monitor = task.job_monitor().clone();
        let ran = task.run_catch_unwind(work).await;
        self.finish_task(&monitor);
        match ran {
            Ok(output) => output,
            Err(panic) => resume_unwind(panic),
        }
    }

    /// Flushes `monitor`'s observers while telemetry shuts down, both
    /// within the shutdown deadline; problems go to stderr.
    pub(crate) fn finish_task(self, monitor: &JobMonitor) {
        let deadline = self.shutdown_timeout();
        let started = Instant::now();
        let observers = (!monitor.observers().is_empty()).then(|| {
            let monitor = monitor.clone();
            let (done, flushed) = mpsc::channel();
            let spawned = thread::Builder::new()
                .name("jobsight-otel-observers".into())
                .spawn(move || {
                    let _ = done.send(monitor.observers().flush(deadline));
                });
            (spawned.is_ok(), flushed)
        });
        if let Err(error) = self.shutdown() {
            eprintln!("jobsight-otel: {error}");
        }
        if let Some((spawned, flushed)) = observers {
            let left = deadline.saturating_sub(started.elapsed());
            let ok =
                spawned && flushed.recv_timeout(left.max(Duration::from_millis(1))) == Ok(true);
            if !ok {
                eprintln!(
                    "jobsight-otel: observers did not handle every event within {deadline:?}; \
                     events still queued are lost when the process exits"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use jobsight_core::observer::{EventKind, JobEvent};

    use super::*;
    use crate::Builder;
    use crate::test_support::env;
    use jobsight_testkit::{LogCapture, serial};

    /// Telemetry with no endpoint, its summary captured.
    fn local_telemetry() -> (Telemetry, LogCapture) {
        let captured = LogCapture::default();
        let telemetry = Builder::default()
            .summary_writer(captured.clone())
            .install_with(&env(&[]))
            .unwrap();
        (telemetry, captured)
    }

    #[test]
    fn runs_the_task_flushes_observers_and_returns_the_output() {
        let _lock = serial();
        let (telemetry, captured) = local_telemetry();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let monitor = JobMonitor::builder()
            .observer(move |e: &JobEvent| {
                std::thread::sleep(Duration::from_millis(50));
                sink.lock().unwrap().push(e.kind);
            })
            .build();
        let out = telemetry.run_task(OneOffTask::new("nightly").monitor(&monitor), || {
            Err::<(), _>(std::io::Error::other("no data"))
        });
        assert_eq!(out.unwrap_err().to_string(), "no data");
        // Both events were handled before run_task returned.
        assert_eq!(
            *seen.lock().unwrap(),
            [EventKind::Started, EventKind::Failed]
        );
        // The local summary was printed by the shutdown.
        assert!(captured.text().contains("nightly"), "{}", captured.text());
    }

    #[test]
    fn a_panicking_task_is_flushed_then_the_panic_continues() {
        let _lock = serial();
        let (telemetry, captured) = local_telemetry();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            telemetry.run_task("exploding", || -> Result<(), String> { panic!("kaboom") })
        }));
        assert!(caught.is_err());
        let text = captured.text();
        let row = text
            .lines()
            .find(|l| l.trim_start().starts_with("exploding"));
        assert!(
            row.is_some_and(|r| r.split_whitespace().nth(2) == Some("1")),
            "{text}"
        );
    }
}
