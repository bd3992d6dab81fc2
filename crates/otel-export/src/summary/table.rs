//! The per-queue summary table printed at shutdown.

use super::distribution::Distribution;

/// What the summary knows about one queue.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct QueueSummary {
    pub(crate) queue: String,
    /// Finished attempts (values of `messaging.process.duration`).
    pub(crate) jobs: u64,
    /// Finished attempts that carry `error.type`.
    pub(crate) failures: u64,
    pub(crate) queue_time: Option<Distribution>,
    pub(crate) duration: Option<Distribution>,
    /// The message of the queue's last failed attempt (one line, at most
    /// 200 bytes), when the summary saw one.
    pub(crate) last_error: Option<String>,
}

const QUANTILES: [f64; 3] = [0.5, 0.95, 0.99];
const HEADERS: [&str; 9] = [
    "queue",
    "jobs",
    "failed",
    "queued p50",
    "queued p95",
    "queued p99",
    "run p50",
    "run p95",
    "run p99",
];

/// The table, one line per queue in name order, ending with a newline.
pub(crate) fn render(queues: &[QueueSummary]) -> String {
    if queues.is_empty() {
        return "jobsight: no jobs were recorded.\n".to_owned();
    }
    let rows: Vec<[String; 9]> = queues.iter().map(row).collect();
    let mut widths = HEADERS.map(|header| header.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::from(
        "jobsight: jobs per queue since start (queued = time waiting in the queue, run = processing time)\n",
    );
    let header = HEADERS.map(str::to_owned);
    for cells in std::iter::once(&header).chain(&rows) {
        let mut line = String::from(" ");
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            let pad = " ".repeat(width - cell.chars().count());
            line.push(' ');
            if i == 0 {
                line.push_str(cell);
                line.push_str(&pad);
            } else {
                line.push(' ');
                line.push_str(&pad);
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    let errors: Vec<_> = queues
        .iter()
        .filter_map(|queue| Some((&queue.queue, queue.last_error.as_ref()?)))
        .collect();
    if !errors.is_empty() {
        out.push_str(
            "jobsight: last error per queue (export logs and traces to an OTLP endpoint for every error with its job's logs)\n",
        );
        for (queue, message) in errors {
            out.push_str(&format!("  {queue}: {message}\n"));
        }
    }
    out
}

fn row(queue: &QueueSummary) -> [String; 9] {
    let [q50, q95, q99] = quantiles(queue.queue_time.as_ref());
    let [d50, d95, d99] = quantiles(queue.duration.as_ref());
    [
        queue.queue.clone(),
        queue.jobs.to_string(),
        queue.failures.to_string(),
        q50,
        q95,
        q99,
        d50,
        d95,
        d99,
    ]
}

fn quantiles(distribution: Option<&Distribution>) -> [String; 3] {
    QUANTILES.map(|q| {
        distribution
            .and_then(|d| d.quantile(q))
            .map_or_else(|| "-".to_owned(), format_seconds)
    })
}

/// A duration in seconds, short and human: `850µs`, `12.5ms`, `1.25s`,
/// `2m05s`, `1h02m`.
pub(crate) fn format_seconds(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 1e-3 {
        format!("{:.0}µs", s * 1e6)
    } else if s < 1.0 {
        let ms = s * 1e3;
        match ms {
            ms if ms < 10.0 => format!("{ms:.2}ms"),
            ms if ms < 100.0 => format!("{ms:.1}ms"),
            ms => format!("{ms:.0}ms"),
        }
    } else if s < 60.0 {
        if s < 10.0 {
            format!("{s:.2}s")
        } else {
            format!("{s:.1}s")
        }
    } else if s < 3600.0 {
        let whole = s.round() as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        let minutes = (s / 60.0).round() as u64;
        format!("{}h{:02}m", minutes / 60, minutes % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_durations_at_every_scale() {
        assert_eq!(format_seconds(0.000_85), "850µs");
        assert_eq!(format_seconds(0.001_234), "1.23ms");
        assert_eq!(format_seconds(0.0125), "12.5ms");
        assert_eq!(format_seconds(0.25), "250ms");
        assert_eq!(format_seconds(1.254), "1.25s");
        assert_eq!(format_seconds(42.0), "42.0s");
        assert_eq!(format_seconds(125.0), "2m05s");
        assert_eq!(format_seconds(3720.0), "1h02m");
    }

    #[test]
    fn renders_aligned_rows_and_dashes_for_missing_data() {
        let duration = Distribution::explicit(vec![0.1, 1.0], vec![0, 10, 0], Some(0.2), Some(0.6));
        let table = render(&[
            QueueSummary {
                queue: "email".into(),
                jobs: 10,
                failures: 2,
                queue_time: None,
                duration: Some(duration),
                last_error: None,
            },
            QueueSummary {
                queue: "reports-nightly".into(),
                jobs: 0,
                failures: 0,
                queue_time: None,
                duration: None,
                last_error: None,
            },
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(
            lines[1].contains("queue") && lines[1].contains("run p99"),
            "{table}"
        );
        assert!(lines[2].starts_with("  email "), "{table}");
        assert!(lines[2].contains("400ms"), "{table}");
        assert!(lines[2].contains(" - "), "{table}");
        assert!(lines[3].ends_with('-'), "{table}");
        // Columns line up: every line has "jobs" right-aligned at the same place.
        let jobs_end = lines[1].find("jobs").unwrap() + "jobs".len();
        assert_eq!(&lines[2][jobs_end - 2..jobs_end], "10", "{table}");
    }

    #[test]
    fn says_so_when_nothing_was_recorded() {
        assert_eq!(render(&[]), "jobsight: no jobs were recorded.\n");
    }
}
