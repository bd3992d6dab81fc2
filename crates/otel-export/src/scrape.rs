//! The Prometheus scrape endpoint (cargo feature `prometheus`).
//!
//! The OpenTelemetry Prometheus exporter is a pull reader on the meter
//! provider; this module serves what it collects as the Prometheus text
//! format (version 0.0.4) on `GET /metrics`, from a minimal HTTP/1.1 server
//! on one thread of its own: one connection at a time, `Connection: close`,
//! 5 s read and write timeouts, request heads up to 8 KiB. Any other path
//! answers 404, any other method 405. Each scrape collects the meter
//! provider, so observable gauges' callbacks run on this thread.
//!
//! # Names
//! The exporter is used with its defaults, which name series the way an
//! OpenTelemetry Collector's `prometheus` exporter does for jobsight's
//! metrics: dots become underscores, the unit is appended (`s` →
//! `_seconds`, `{…}` annotations are dropped), monotonic counters get
//! `_total`, up-down counters and gauges are plain gauges, attribute keys
//! become labels with dots turned into underscores, and every series
//! carries `otel_scope_name` / `otel_scope_version`. The README lists the
//! resulting name of every jobsight metric.
//!
//! Exponential histograms are not exported by this exporter: asking for
//! both is an [`Error::Conflict`](crate::Error::Conflict).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use opentelemetry_prometheus::PrometheusExporter;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::Error;

/// Read and write timeout of one scrape connection.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest request head accepted.
const MAX_HEAD: usize = 8 * 1024;

/// A registry and the reader that fills it, before the server starts.
pub(crate) struct ScrapeReader {
    pub(crate) registry: Registry,
    pub(crate) exporter: PrometheusExporter,
}

impl ScrapeReader {
    pub(crate) fn new(address: &str) -> Result<Self, Error> {
        let registry = Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .map_err(|e| Error::Scrape {
                address: address.to_owned(),
                source: io::Error::other(e.to_string()),
            })?;
        Ok(Self { registry, exporter })
    }
}

/// The running endpoint; dropping it stops the server thread.
#[derive(Debug)]
pub(crate) struct ScrapeEndpoint {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ScrapeEndpoint {
    /// Binds `address` (e.g. `0.0.0.0:9464`, or port 0 for any free port)
    /// and starts serving `registry`.
    pub(crate) fn start(address: &str, registry: Registry) -> Result<Self, Error> {
        let scrape_error = |source| Error::Scrape {
            address: address.to_owned(),
            source,
        };
        let addr = address
            .to_socket_addrs()
            .map_err(scrape_error)?
            .next()
            .ok_or_else(|| scrape_error(io::Error::other("the address resolves to nothing")))?;
        let listener = TcpListener::bind(addr).map_err(scrape_error)?;
        let addr = listener.local_addr().map_err(scrape_error)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("jobsight-prometheus".into())
            .spawn({
                let stop = Arc::clone(&stop);
                move || serve(&listener, &registry, &stop)
            })
            .map_err(Error::Thread)?;
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address the server listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ScrapeEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; the thread then sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: &TcpListener, registry: &Registry, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        // A failed connection only costs that scrape.
        if let Ok(stream) = stream {
            let _ = answer(stream, registry);
        }
    }
}

fn answer(mut stream: TcpStream, registry: &Registry) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let mut parts = head.split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let encoder = TextEncoder::new();
            let mut body = Vec::new();
            match encoder.encode(&registry.gather(), &mut body) {
                Ok(()) => ("200 OK", encoder.format_type().to_owned(), body),
                Err(e) => (
                    "500 Internal Server Error",
                    "text/plain".to_owned(),
                    e.to_string().into_bytes(),
                ),
            }
        }
        (_, "/metrics") => (
            "405 Method Not Allowed",
            "text/plain".to_owned(),
            b"use GET\n".to_vec(),
        ),
        _ => (
            "404 Not Found",
            "text/plain".to_owned(),
            b"metrics are at /metrics\n".to_vec(),
        ),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if method != "HEAD" {
        stream.write_all(&body)?;
    }
    stream.flush()
}

/// Reads up to the end of the request head; returns its first line.
fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too long",
            ));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    Ok(text.lines().next().unwrap_or("").to_owned())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use jobsight_core::{JobMeta, JobMonitor};

    use crate::test_support::env;
    use crate::{Builder, Error};
    use jobsight_testkit::{LogCapture, serial};

    fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[test]
    fn serves_jobsight_metrics_with_collector_style_names() {
        let _lock = serial();
        let captured = LogCapture::default();
        let telemetry = Builder::default()
            .prometheus_endpoint("127.0.0.1:0")
            .summary_writer(captured.clone())
            .install_with(&env(&[]))
            .unwrap();
        let addr = telemetry.prometheus_addr().unwrap();
        let monitor = JobMonitor::new();
        let meta = JobMeta::builder("test", "emails")
            .name("welcome")
            .attempt(2)
            .enqueued_at(std::time::SystemTime::now())
            .build();
        monitor.start(meta).succeed();

        let response = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(
            response.contains("Content-Type: text/plain; version=0.0.4"),
            "{response}"
        );
        for line in [
            "# TYPE messaging_process_duration_seconds histogram",
            "# TYPE job_queue_time_seconds histogram",
            "# TYPE messaging_client_consumed_messages_total counter",
            "# TYPE job_outcomes_total counter",
            "# TYPE job_retries_total counter",
            "# TYPE job_active gauge",
        ] {
            assert!(response.contains(line), "{line} missing:\n{response}");
        }
        assert!(
            response.contains(r#"messaging_process_duration_seconds_bucket{job_name="welcome",messaging_destination_name="emails",messaging_system="test",otel_scope_name="jobsight""#),
            "{response}"
        );
        assert!(
            response.contains(r#"job_outcome="succeeded""#),
            "{response}"
        );

        assert!(get(addr, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        let head = get(addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
            "{head}"
        );

        telemetry.shutdown().unwrap();
        assert_eq!(captured.text(), "", "no summary by default when scraped");
        assert!(
            TcpStream::connect(addr).is_err(),
            "the server stops with the guard"
        );
    }

    #[test]
    fn a_taken_port_and_exponential_histograms_are_errors() {
        let _lock = serial();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap().to_string();
        let error = Builder::default()
            .prometheus_endpoint(address.clone())
            .install_with(&env(&[]))
            .unwrap_err();
        assert!(matches!(error, Error::Scrape { .. }), "{error}");
        assert!(error.to_string().contains(&address), "{error}");

        let error = Builder::default()
            .prometheus_endpoint("127.0.0.1:0")
            .exponential_histograms(true)
            .install_with(&env(&[]))
            .unwrap_err();
        assert!(matches!(error, Error::Conflict { .. }), "{error}");
    }
}
