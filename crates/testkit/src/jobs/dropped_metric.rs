//! `jobsight.telemetry.dropped` as it arrived at the in-process receiver.

use std::time::{Duration, Instant};

use jobsight_otel::Dropped;

use crate::otlp::Receiver;

/// The self-metric's name.
pub const DROPPED_METRIC: &str = "jobsight.telemetry.dropped";

/// The last value received of one series (`signal`, `reason`).
pub fn received_drop_count(rx: &Receiver, signal: &str, reason: &str) -> Option<u64> {
    rx.metric(DROPPED_METRIC)
        .into_iter()
        .filter(|point| {
            point
                .attributes
                .get("jobsight.signal")
                .and_then(|v| v.as_str())
                == Some(signal)
                && point
                    .attributes
                    .get("jobsight.drop.reason")
                    .and_then(|v| v.as_str())
                    == Some(reason)
        })
        .max_by_key(|point| point.time_unix_nano)
        .and_then(|point| point.value)
        .map(|value| value as u64)
}

/// Waits up to `wait` until the receiver's last values of the three exported
/// series are the counts in `dropped`; panics with both otherwise.
pub async fn until_drops_received(rx: &Receiver, dropped: Dropped, wait: Duration) {
    let want = [
        ("traces", "queue_full", dropped.spans.queue_full),
        ("traces", "export_failed", dropped.spans.export_failed),
        (
            "metrics",
            "export_failed",
            dropped.metric_points.export_failed,
        ),
    ];
    let deadline = Instant::now() + wait;
    loop {
        let got: Vec<_> = want
            .iter()
            .map(|(signal, reason, _)| received_drop_count(rx, signal, reason))
            .collect();
        if got
            .iter()
            .zip(&want)
            .all(|(got, (_, _, want))| *got == Some(*want))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{DROPPED_METRIC} at the receiver {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
