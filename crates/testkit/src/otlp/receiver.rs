//! The `Receiver` handle shared by the gRPC and HTTP front ends.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::model::{LogRecord, MetricPoint, Span, flatten_logs, flatten_metrics, flatten_spans};

/// Poll interval of the `wait_for_*` helpers.
const POLL: Duration = Duration::from_millis(20);

/// How long `stop` waits for open connections to drain before closing them.
pub const STOP_WAIT: Duration = Duration::from_secs(5);

/// The OTLP transport a receiver speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with binary protobuf bodies.
    Http,
}

/// An OTLP signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metrics.
    Metrics,
    /// Log records.
    Logs,
}

/// How the receiver answers an export request of one signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Keep the request and answer success.
    #[default]
    Accept,
    /// Count the request, do not keep it, answer with this HTTP status.
    /// The gRPC front end maps it with gRPC's HTTP-to-gRPC table (see `grpc_code_for`):
    /// 429/502/503/504 -> UNAVAILABLE (retryable for the OTLP exporter, like the HTTP codes),
    /// 404 -> UNIMPLEMENTED, 401 -> UNAUTHENTICATED, 403 -> PERMISSION_DENIED,
    /// 400 -> INTERNAL, anything else -> UNKNOWN (all non-retryable).
    Reject(u16),
    /// Keep the request on arrival, then wait this long before answering success
    /// (for exporter-timeout tests: the data is on the wire even if the client gave up).
    Delay(Duration),
    /// Count the request, do not keep it, answer with this gRPC status (e.g.
    /// `ResourceExhausted`, which the HTTP table above cannot express). The
    /// HTTP front end answers 500 for it.
    GrpcStatus(tonic::Code),
}

/// The gRPC status code gRPC's HTTP-to-gRPC status mapping gives an HTTP status.
pub fn grpc_code_for(http_status: u16) -> tonic::Code {
    match http_status {
        400 => tonic::Code::Internal,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        404 => tonic::Code::Unimplemented,
        429 | 502 | 503 | 504 => tonic::Code::Unavailable,
        _ => tonic::Code::Unknown,
    }
}

/// What `wait_for_spans` waits for: a count (`>=`) or a predicate over everything seen so far.
/// Closures need their argument type spelled out: `|s: &[Span]| s.iter().any(..)`.
pub trait Until<T> {
    /// True when the wait is over.
    fn done(&self, items: &[T]) -> bool;
}

impl<T> Until<T> for usize {
    fn done(&self, items: &[T]) -> bool {
        items.len() >= *self
    }
}

impl<T, F: Fn(&[T]) -> bool> Until<T> for F {
    fn done(&self, items: &[T]) -> bool {
        self(items)
    }
}

#[derive(Default)]
struct Inner {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    logs: Vec<ExportLogsServiceRequest>,
    trace_requests: usize,
    metric_requests: usize,
    log_requests: usize,
    trace_mode: Mode,
    metric_mode: Mode,
    log_mode: Mode,
    trace_answered: usize,
    metric_answered: usize,
    log_answered: usize,
    /// Count accepted spans but do not keep the requests (long runs).
    discard_traces: bool,
    /// Spans in every accepted trace request, kept or not.
    accepted_spans: usize,
}

fn keeps(mode: Mode) -> bool {
    matches!(mode, Mode::Accept | Mode::Delay(_))
}

/// State shared between the `Receiver` handle and the server task.
#[derive(Default)]
pub(crate) struct State {
    inner: Mutex<Inner>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the data from the others.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts the request and returns the mode to answer it with; keeps the
    /// request unless the mode rejects it.
    pub(crate) fn on_traces(&self, req: ExportTraceServiceRequest) -> Mode {
        let mut g = self.lock();
        g.trace_requests += 1;
        let mode = g.trace_mode;
        if keeps(mode) {
            g.accepted_spans += req
                .resource_spans
                .iter()
                .flat_map(|rs| &rs.scope_spans)
                .map(|ss| ss.spans.len())
                .sum::<usize>();
            if !g.discard_traces {
                g.traces.push(req);
            }
        }
        mode
    }

    pub(crate) fn on_metrics(&self, req: ExportMetricsServiceRequest) -> Mode {
        let mut g = self.lock();
        g.metric_requests += 1;
        let mode = g.metric_mode;
        if keeps(mode) {
            g.metrics.push(req);
        }
        mode
    }

    pub(crate) fn on_logs(&self, req: ExportLogsServiceRequest) -> Mode {
        let mut g = self.lock();
        g.log_requests += 1;
        let mode = g.log_mode;
        if keeps(mode) {
            g.logs.push(req);
        }
        mode
    }

    /// Counts a success answer about to be sent (after any delay).
    pub(crate) fn count_answered(&self, signal: Signal) {
        let mut g = self.lock();
        match signal {
            Signal::Traces => g.trace_answered += 1,
            Signal::Metrics => g.metric_answered += 1,
            Signal::Logs => g.log_answered += 1,
        }
    }

    /// Counts a request that could not even be decoded (bad content type, encoding, body).
    pub(crate) fn count_undecodable(&self, signal: Signal) {
        let mut g = self.lock();
        match signal {
            Signal::Traces => g.trace_requests += 1,
            Signal::Metrics => g.metric_requests += 1,
            Signal::Logs => g.log_requests += 1,
        }
    }
}

/// An in-process OTLP collector for traces and metrics: a gRPC (tonic) or
/// HTTP/protobuf (hyper) server on 127.0.0.1, optionally behind TLS, that
/// keeps every export request it accepts.
///
/// The server runs on a small tokio runtime of its own, so it keeps
/// answering while the test blocks its own thread (a synchronous flush, a
/// `#[test]` without a runtime) and works from any runtime or none. Dropping
/// the receiver stops the server and closes its port.
pub struct Receiver {
    transport: Transport,
    tls: Option<TlsConfig>,
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    runtime: Option<Runtime>,
}

/// How a receiver is started: [`Receiver::builder`].
#[derive(Clone, Debug)]
pub struct ReceiverBuilder {
    transport: Transport,
    port: u16,
    tls: Option<TlsConfig>,
}

/// TLS settings of a receiver (feature `tls`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// Clients must present a certificate issued by the kit's CA.
    pub require_client_certificate: bool,
}

impl ReceiverBuilder {
    /// Listen on this port of 127.0.0.1 (default 0: any free port), e.g. one
    /// reserved earlier by [`reserve_port`] for a collector that is down at
    /// the start. The bind is retried for up to 10 s while the port is taken.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Serve over TLS with the kit's server certificate (`localhost`,
    /// `127.0.0.1`, issued by [`crate::tls::ca_path`]); with
    /// `require_client_certificate`, clients must present a certificate
    /// issued by the same CA (mutual TLS; [`crate::tls::client_cert_path`]).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, require_client_certificate: bool) -> Self {
        self.tls = Some(TlsConfig {
            require_client_certificate,
        });
        self
    }

    /// Starts the receiver. Needs no runtime; callable from any thread.
    pub fn start(self) -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("otlp-test-receiver")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("start the receiver's runtime: {e}"));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let listener = bind_retrying(addr);
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local address: {e}"));
        let state = Arc::new(State::default());
        let (shutdown, task) =
            spawn_server(&runtime, self.transport, self.tls, listener, state.clone());
        Receiver {
            transport: self.transport,
            tls: self.tls,
            addr,
            state,
            shutdown: Some(shutdown),
            task: Some(task),
            runtime: Some(runtime),
        }
    }
}

impl Receiver {
    /// A receiver of `transport`, started with [`ReceiverBuilder::start`].
    pub fn builder(transport: Transport) -> ReceiverBuilder {
        ReceiverBuilder {
            transport,
            port: 0,
            tls: None,
        }
    }

    /// An OTLP/gRPC receiver (`TraceService` + `MetricsService`) on a free port.
    pub async fn grpc() -> Receiver {
        Self::builder(Transport::Grpc).start()
    }

    /// An OTLP/HTTP receiver (`POST /v1/traces`, `POST /v1/metrics`,
    /// binary protobuf) on a free port.
    pub async fn http() -> Receiver {
        Self::builder(Transport::Http).start()
    }

    /// A receiver of `transport` on a free port.
    pub async fn start(transport: Transport) -> Receiver {
        Self::builder(transport).start()
    }

    /// A receiver on a given port of 127.0.0.1, e.g. one reserved earlier by
    /// `reserve_port` for a collector that is down at the start. Retries the
    /// bind for up to 10 s while the port is still taken.
    pub async fn start_on(transport: Transport, port: u16) -> Receiver {
        Self::builder(transport).port(port).start()
    }

    /// Stops listening, as a collector that goes down: the port is closed
    /// on return (requests in flight are answered first). What was received
    /// is kept; `restart` listens again on the same port.
    pub async fn stop(&mut self) {
        if let Some(waiter) = self.begin_stop() {
            let _ = waiter.await;
        }
    }

    /// [`Self::stop`] for a caller without a runtime (a plain `#[test]`).
    pub fn stop_blocking(&mut self) {
        if let Some(waiter) = self.begin_stop()
            && let Some(runtime) = &self.runtime
        {
            let _ = runtime.block_on(waiter);
        }
    }

    /// Signals the server to stop; the returned task (on the receiver's own
    /// runtime, so that its timer works whoever awaits it) ends when the
    /// server has, after at most [`STOP_WAIT`] for open connections to drain.
    fn begin_stop(&mut self) -> Option<JoinHandle<()>> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let task = self.task.take()?;
        let runtime = self.runtime.as_ref()?;
        let abort = task.abort_handle();
        Some(runtime.spawn(async move {
            if tokio::time::timeout(STOP_WAIT, task).await.is_err() {
                abort.abort();
            }
        }))
    }

    /// Listens again on the same port after `stop`, with the same data and
    /// modes. No-op while running.
    pub async fn restart(&mut self) {
        if self.task.is_some() {
            return;
        }
        let Some(runtime) = &self.runtime else {
            return;
        };
        let listener = bind_retrying(self.addr);
        let (shutdown, task) = spawn_server(
            runtime,
            self.transport,
            self.tls,
            listener,
            self.state.clone(),
        );
        self.shutdown = Some(shutdown);
        self.task = Some(task);
    }

    /// True between `stop` and `restart`.
    pub fn is_stopped(&self) -> bool {
        self.task.is_none()
    }

    /// Success answers sent for the signal (after any `Delay`).
    pub fn answered(&self, signal: Signal) -> usize {
        let g = self.state.lock();
        match signal {
            Signal::Traces => g.trace_answered,
            Signal::Metrics => g.metric_answered,
            Signal::Logs => g.log_answered,
        }
    }

    /// The transport it speaks.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (no path); `https://localhost:PORT` behind
    /// TLS (the name the kit's server certificate is issued for).
    pub fn endpoint(&self) -> String {
        match self.tls {
            None => format!("http://{}", self.addr),
            Some(_) => format!("https://localhost:{}", self.addr.port()),
        }
    }

    /// What to pass to an exporter's `with_endpoint` for traces: the bare endpoint
    /// for gRPC, `{endpoint}/v1/traces` for HTTP (an endpoint set in code is used verbatim).
    pub fn traces_endpoint(&self) -> String {
        match self.transport {
            Transport::Grpc => self.endpoint(),
            Transport::Http => format!("{}/v1/traces", self.endpoint()),
        }
    }

    /// Like `traces_endpoint`, for metrics (`{endpoint}/v1/metrics` for HTTP).
    pub fn metrics_endpoint(&self) -> String {
        match self.transport {
            Transport::Grpc => self.endpoint(),
            Transport::Http => format!("{}/v1/metrics", self.endpoint()),
        }
    }

    /// Like `traces_endpoint`, for logs (`{endpoint}/v1/logs` for HTTP).
    pub fn logs_endpoint(&self) -> String {
        match self.transport {
            Transport::Grpc => self.endpoint(),
            Transport::Http => format!("{}/v1/logs", self.endpoint()),
        }
    }

    /// How requests of `signal` are answered from now on.
    pub fn set_mode(&self, signal: Signal, mode: Mode) {
        let mut g = self.state.lock();
        match signal {
            Signal::Traces => g.trace_mode = mode,
            Signal::Metrics => g.metric_mode = mode,
            Signal::Logs => g.log_mode = mode,
        }
    }

    /// How requests of `signal` are answered.
    pub fn mode(&self, signal: Signal) -> Mode {
        let g = self.state.lock();
        match signal {
            Signal::Traces => g.trace_mode,
            Signal::Metrics => g.metric_mode,
            Signal::Logs => g.log_mode,
        }
    }

    /// `true`: metrics export requests fail (gRPC UNIMPLEMENTED, HTTP 404); `false`: accept.
    pub fn reject_metrics(&self, reject: bool) {
        let mode = if reject {
            Mode::Reject(404)
        } else {
            Mode::Accept
        };
        self.set_mode(Signal::Metrics, mode);
    }

    /// Every export request that arrived for the signal, rejected or undecodable ones included
    /// (so retries show up here).
    pub fn request_count(&self, signal: Signal) -> usize {
        let g = self.state.lock();
        match signal {
            Signal::Traces => g.trace_requests,
            Signal::Metrics => g.metric_requests,
            Signal::Logs => g.log_requests,
        }
    }

    /// The trace requests that were kept (not rejected), in arrival order.
    pub fn raw_traces(&self) -> Vec<ExportTraceServiceRequest> {
        self.state.lock().traces.clone()
    }

    /// The metric requests that were kept (not rejected), in arrival order.
    pub fn raw_metrics(&self) -> Vec<ExportMetricsServiceRequest> {
        self.state.lock().metrics.clone()
    }

    /// `true`: trace requests are counted (`accepted_spans`) but not kept,
    /// so that a long run does not grow the receiver's memory.
    pub fn discard_traces(&self, discard: bool) {
        self.state.lock().discard_traces = discard;
    }

    /// Spans in every trace request accepted so far, kept or discarded.
    pub fn accepted_spans(&self) -> usize {
        self.state.lock().accepted_spans
    }

    /// How many spans named `name` were kept, without copying them out
    /// (cheap for bursts of 100 000).
    pub fn span_count(&self, name: &str) -> usize {
        self.state
            .lock()
            .traces
            .iter()
            .flat_map(|req| &req.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .filter(|span| span.name == name)
            .count()
    }

    /// Every kept span, flattened, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        flatten_spans(&self.state.lock().traces)
    }

    /// Every kept metric point, flattened, in arrival order.
    pub fn metrics(&self) -> Vec<MetricPoint> {
        flatten_metrics(&self.state.lock().metrics)
    }

    /// The points of one metric, in arrival order (cumulative streams repeat per export).
    pub fn metric(&self, name: &str) -> Vec<MetricPoint> {
        self.metrics()
            .into_iter()
            .filter(|m| m.name == name)
            .collect()
    }

    /// Forgets kept requests and counts (modes are kept).
    pub fn clear(&self) {
        let mut g = self.state.lock();
        g.traces.clear();
        g.metrics.clear();
        g.logs.clear();
        g.trace_requests = 0;
        g.metric_requests = 0;
        g.log_requests = 0;
        g.accepted_spans = 0;
    }

    /// Polls until `until` holds for all spans seen so far or `timeout` passes;
    /// returns the spans either way (the caller asserts).
    pub async fn wait_for_spans(&self, until: impl Until<Span>, timeout: Duration) -> Vec<Span> {
        poll(timeout, || {
            let spans = self.spans();
            until.done(&spans).then_some(spans)
        })
        .await
        .unwrap_or_else(|| self.spans())
    }

    /// [`Self::wait_for_spans`] for a caller without a runtime.
    pub fn wait_for_spans_blocking(&self, until: impl Until<Span>, timeout: Duration) -> Vec<Span> {
        poll_blocking(timeout, || {
            let spans = self.spans();
            until.done(&spans).then_some(spans)
        })
        .unwrap_or_else(|| self.spans())
    }

    /// Waits for the first span with this name.
    pub async fn wait_for_span(&self, name: &str, timeout: Duration) -> Option<Span> {
        self.wait_for_spans(|s: &[Span]| s.iter().any(|s| s.name == name), timeout)
            .await
            .into_iter()
            .find(|s| s.name == name)
    }

    /// Polls until at least one point of metric `name` arrived or `timeout` passes;
    /// returns that metric's points (empty on timeout).
    pub async fn wait_for_metric(&self, name: &str, timeout: Duration) -> Vec<MetricPoint> {
        poll(timeout, || {
            let points = self.metric(name);
            (!points.is_empty()).then_some(points)
        })
        .await
        .unwrap_or_default()
    }

    /// Polls until `until` holds for all metric points seen so far or `timeout` passes.
    pub async fn wait_for_metrics(
        &self,
        until: impl Until<MetricPoint>,
        timeout: Duration,
    ) -> Vec<MetricPoint> {
        poll(timeout, || {
            let points = self.metrics();
            until.done(&points).then_some(points)
        })
        .await
        .unwrap_or_else(|| self.metrics())
    }

    /// [`Self::wait_for_metrics`] for a caller without a runtime.
    pub fn wait_for_metrics_blocking(
        &self,
        until: impl Until<MetricPoint>,
        timeout: Duration,
    ) -> Vec<MetricPoint> {
        poll_blocking(timeout, || {
            let points = self.metrics();
            until.done(&points).then_some(points)
        })
        .unwrap_or_else(|| self.metrics())
    }

    /// Every log record kept so far, flattened, in arrival order.
    pub fn logs(&self) -> Vec<LogRecord> {
        flatten_logs(&self.state.lock().logs)
    }

    /// Polls until `until` holds for all log records seen so far or
    /// `timeout` passes; returns the records either way.
    pub async fn wait_for_logs(
        &self,
        until: impl Until<LogRecord>,
        timeout: Duration,
    ) -> Vec<LogRecord> {
        poll(timeout, || {
            let logs = self.logs();
            until.done(&logs).then_some(logs)
        })
        .await
        .unwrap_or_else(|| self.logs())
    }

    /// Stops the server and waits for it to finish (the listening port is closed on return).
    /// Dropping the receiver does the same without waiting.
    pub async fn shutdown(mut self) {
        // Graceful shutdown waits for open connections to drain; `stop`
        // does not hang a test on it.
        self.stop().await;
    }
}

/// A free port of 127.0.0.1 with nothing listening on it (bound, then
/// released): a collector that is down.
pub fn reserve_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// Binds `addr`, retrying for up to 10 s while it is taken (a port just
/// released by a stopped server). Non-blocking, ready for tokio.
fn bind_retrying(addr: SocketAddr) -> std::net::TcpListener {
    let deadline = Instant::now() + Duration::from_secs(10);
    let listener = loop {
        match std::net::TcpListener::bind(addr) {
            Ok(listener) => break listener,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("bind {addr}: {e}"),
        }
    };
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("non-blocking {addr}: {e}"));
    listener
}

fn spawn_server(
    runtime: &Runtime,
    transport: Transport,
    tls: Option<TlsConfig>,
    listener: std::net::TcpListener,
    state: Arc<State>,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (tx, rx) = oneshot::channel::<()>();
    let signal = async move {
        // Resolves on send or when the sender is dropped.
        let _ = rx.await;
    };
    let task = runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .unwrap_or_else(|e| panic!("listen on the receiver's runtime: {e}"));
        match transport {
            Transport::Grpc => super::grpc::serve(listener, state, tls, signal).await,
            Transport::Http => super::http::serve(listener, state, tls, signal).await,
        }
    });
    (tx, task)
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        drop(self.task.take());
        // Drops every task at once: the port and the open connections are
        // closed. Allowed inside an async context, unlike a plain drop.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Calls `check` every [`POLL`] until it returns `Some` or `timeout` passes.
async fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

fn poll_blocking<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}
