//! A lifecycle observer that posts every job event to a webhook as JSON —
//! the Slack-notification use case — over plain HTTP/1.1 with std's
//! `TcpStream`, no HTTP client needed.
//!
//! ```text
//! cargo run --example webhook_observer
//! ```
//!
//! The example starts its own little webhook receiver on 127.0.0.1 and
//! prints what arrives. The observer runs on a thread of its own: a slow or
//! unreachable webhook drops events (counted), it never slows the jobs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, UNIX_EPOCH};

use jobsight_core::observer::{JobEvent, ObserveError, Observer, ObserverOptions};
use jobsight_core::task::OneOffTask;
use jobsight_core::{JobMonitor, progress};
use serde_json::json;

/// Posts each event to `http://{addr}{path}`.
struct Webhook {
    addr: SocketAddr,
    path: String,
    timeout: Duration,
}

impl Observer for Webhook {
    fn observe(&mut self, event: &JobEvent) -> Result<(), ObserveError> {
        let body = payload(event).to_string();
        let mut stream = TcpStream::connect_timeout(&self.addr, self.timeout)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        write!(
            stream,
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.path,
            self.addr,
            body.len()
        )?;
        let mut status_line = String::new();
        BufReader::new(stream).read_line(&mut status_line)?;
        match status_line.split_whitespace().nth(1) {
            Some(code) if code.starts_with('2') => Ok(()),
            _ => Err(format!("webhook answered {}", status_line.trim()).into()),
        }
    }
}

/// The JSON a webhook gets: the event's fields, with times as unix seconds.
fn payload(event: &JobEvent) -> serde_json::Value {
    let secs = |t: std::time::SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    };
    json!({
        "event": event.kind.as_str(),
        "at": secs(event.at),
        "job": {
            "system": event.job.system(),
            "queue": event.job.queue(),
            "name": event.job.name(),
            "id": event.job.id(),
            "attempt": event.job.attempt(),
            "max_attempts": event.job.max_attempts(),
            "args": event.job.args().map(|a| a.as_str()),
        },
        "run_id": event.run_id.as_deref(),
        "trace_id": event.trace_id.as_deref(),
        "started_at": event.started_at.map(secs),
        "ended_at": event.ended_at.map(secs),
        "running_for": event.running_for.map(|d| d.as_secs_f64()),
        "outcome": event.outcome.map(|o| o.as_str()),
        "progress": event.progress.as_ref().map(|p| json!({
            "ticks": p.ticks,
            "total": p.total,
            "eta": p.eta.map(|d| d.as_secs_f64()),
            "element": p.element.as_deref(),
        })),
        "error": event.error.as_ref().map(|e| json!({
            "type": e.error_type(),
            "message": e.message(),
            "backtrace": e.stacktrace(),
        })),
    })
}

/// A stand-in for Slack: prints each JSON body it receives.
fn start_receiver() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                println!("webhook <- {}", String::from_utf8_lossy(&body));
            }
            let _ = reader
                .into_inner()
                .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    Ok(addr)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = start_receiver()?;
    let monitor = JobMonitor::builder()
        .observer_with(
            Webhook {
                addr,
                path: "/hooks/jobs".into(),
                timeout: Duration::from_secs(2),
            },
            ObserverOptions::new().name("webhook").queue_capacity(256),
        )
        .build();

    OneOffTask::new("import_orders")
        .monitor(&monitor)
        .run_blocking(|| -> Result<(), std::io::Error> {
            progress::set_total(3);
            for order in 1..=3 {
                progress::set_element(format_args!("order {order}"));
                progress::tick(1);
            }
            Ok(())
        })?;
    let _ = OneOffTask::new("refund_orders")
        .monitor(&monitor)
        .run_blocking(|| {
            progress::set_total(10);
            progress::tick(4);
            progress::set_element("order 5");
            Err::<(), _>(std::io::Error::other("payment provider said no"))
        });

    // Observer threads do not keep the process alive: flush before exiting.
    monitor.observers().flush(Duration::from_secs(5));
    for stats in monitor.observers().stats() {
        println!(
            "{}: {} delivered, {} failed, {} panicked, {} dropped",
            stats.name, stats.delivered, stats.failed, stats.panicked, stats.dropped
        );
    }
    Ok(())
}
