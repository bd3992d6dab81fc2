//! The Prometheus scrape endpoint (cargo feature `prometheus`).
//!
//! The OpenTelemetry Prometheus exporter is a pull reader on the meter
//! provider; this module serves what it collects as the Prometheus text
//! format (version 0.0.4) on `GET /metrics` (and `HEAD`). Any other path
//! answers 404, any other method 405.
//!
//! # Server
//! hyper's HTTP/1.1 server, on a thread of its own (`jobsight-prometheus`)
//! running a single-threaded tokio runtime, so it works whether or not the
//! program has a runtime, and never runs on the program's. Connections are
//! served concurrently, each on its own task: a client that connects and
//! sends nothing, or reads its answer slowly, holds only its own
//! connection. The limits, set here:
//! - a request head must arrive within [`HEADER_TIMEOUT`] (5 s) and fit in
//!   [`MAX_HEAD`] (8 KiB, hyper's smallest buffer);
//! - a connection lives at most [`CONNECTION_TIMEOUT`] (30 s) in all, and
//!   serves one request (`Connection: close`);
//! - request bodies are never read;
//! - at most [`MAX_CONNECTIONS`] (256) connections at once: past that, a new
//!   connection is closed at once (a failed scrape, never a hung one).
//!
//! Each scrape collects the meter provider on the runtime's blocking pool,
//! so observable gauges' callbacks run there, not on the thread that
//! accepts connections.
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

use std::convert::Infallible;
use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use opentelemetry_prometheus::PrometheusExporter;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::sync::{Semaphore, oneshot};

use crate::Error;

/// How long a client has to send its request head.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection stays open, whatever it does.
pub(crate) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest request head accepted (hyper's smallest read buffer).
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Connections served at once; past it, new ones are closed at once.
pub(crate) const MAX_CONNECTIONS: usize = 256;

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
    stop: Option<oneshot::Sender<()>>,
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
        listener.set_nonblocking(true).map_err(scrape_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .max_blocking_threads(2)
            .thread_name("jobsight-prometheus")
            .build()
            .map_err(scrape_error)?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("jobsight-prometheus".into())
            .spawn(move || {
                runtime.block_on(async move {
                    // Only fails outside a runtime; this is inside one.
                    if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
                        serve(listener, Arc::new(registry), stopped).await;
                    }
                });
                // Dropping the runtime closes the connections still open.
            })
            .map_err(Error::Thread)?;
        Ok(Self {
            addr,
            stop: Some(stop),
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
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts until `stopped` resolves; each connection on a task of its own.
async fn serve(
    listener: tokio::net::TcpListener,
    registry: Arc<Registry>,
    mut stopped: oneshot::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // A failed accept (e.g. out of file descriptors) only costs
                // that connection; pause so that it does not spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        // Over the limit: the connection is closed by dropping it.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, Arc::clone(&registry)));
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(false);
            let connection = http.serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection).await;
            drop(slot);
        });
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    response
}

async fn answer(
    request: Request<Incoming>,
    registry: Arc<Registry>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != "/metrics" {
        return Ok(text(StatusCode::NOT_FOUND, "metrics are at /metrics\n"));
    }
    let head = match *request.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")),
    };
    // Collecting runs the observable gauges' callbacks: off the thread that
    // accepts connections.
    let encoded = tokio::task::spawn_blocking(move || {
        let encoder = TextEncoder::new();
        let mut body = Vec::new();
        encoder
            .encode(&registry.gather(), &mut body)
            .map(|()| (encoder.format_type().to_owned(), body))
            .map_err(|e| e.to_string())
    })
    .await;
    let (content_type, body) = match encoded {
        Ok(Ok(encoded)) => encoded,
        Ok(Err(e)) => {
            let mut response = Response::new(Full::new(Bytes::from(e)));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return Ok(response);
        }
        Err(_) => {
            return Ok(text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "collecting the metrics failed\n",
            ));
        }
    };
    let length = body.len();
    let mut response = Response::new(Full::new(if head {
        Bytes::new()
    } else {
        Bytes::from(body)
    }));
    let headers = response.headers_mut();
    if let Ok(value) = header::HeaderValue::from_str(&content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(length));
    Ok(response)
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
            response
                .to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
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

    /// A connection that sends nothing: still open (nothing to read yet,
    /// no end of stream) when checked.
    fn still_open(stream: &mut TcpStream) -> bool {
        stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8; 1];
        let open = matches!(
            stream.read(&mut byte),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        );
        stream.set_nonblocking(false).unwrap();
        open
    }

    /// Clients that connect and send nothing do not delay a scrape: it is
    /// answered while every one of them is still connected (a server that
    /// serves one connection at a time answers only after their header
    /// timeouts closed them).
    #[test]
    fn idle_clients_do_not_delay_a_scrape() {
        let _lock = serial();
        let telemetry = Builder::default()
            .prometheus_endpoint("127.0.0.1:0")
            .summary(false)
            .install_with(&env(&[]))
            .unwrap();
        let addr = telemetry.prometheus_addr().unwrap();
        JobMonitor::new()
            .start(JobMeta::builder("test", "idle").build())
            .succeed();
        for idle_clients in [1, 10] {
            let mut idle: Vec<TcpStream> = (0..idle_clients)
                .map(|_| TcpStream::connect(addr).unwrap())
                .collect();
            let mut scrape = TcpStream::connect(addr).unwrap();
            // Generous: only a hung scrape fails here.
            scrape
                .set_read_timeout(Some(std::time::Duration::from_secs(30)))
                .unwrap();
            scrape
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut response = String::new();
            scrape.read_to_string(&mut response).unwrap();
            assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
            assert!(
                response.contains("messaging_destination_name=\"idle\""),
                "{response}"
            );
            for (i, client) in idle.iter_mut().enumerate() {
                assert!(
                    still_open(client),
                    "idle client {i} of {idle_clients} was closed before the scrape was answered"
                );
            }
        }
        telemetry.shutdown().unwrap();
    }

    /// An idle client is closed once the header timeout passes, and a head
    /// larger than the limit is refused.
    #[test]
    fn idle_clients_time_out_and_oversized_heads_are_refused() {
        let _lock = serial();
        let telemetry = Builder::default()
            .prometheus_endpoint("127.0.0.1:0")
            .summary(false)
            .install_with(&env(&[]))
            .unwrap();
        let addr = telemetry.prometheus_addr().unwrap();

        let mut idle = TcpStream::connect(addr).unwrap();
        idle.set_read_timeout(Some(super::HEADER_TIMEOUT * 6))
            .unwrap();
        let mut rest = Vec::new();
        // Closed by the server (end of stream, possibly after a 408).
        assert!(idle.read_to_end(&mut rest).is_ok(), "not closed");

        let huge = format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(super::MAX_HEAD * 2)
        );
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let _ = stream.write_all(huge.as_bytes());
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        assert!(
            response.is_empty() || response.starts_with("HTTP/1.1 431"),
            "{response}"
        );
        telemetry.shutdown().unwrap();
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
