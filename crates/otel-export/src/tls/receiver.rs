//! A minimal OTLP trace receiver behind TLS, for the tests: OTLP/gRPC (a
//! tonic server with `ServerTlsConfig`) or OTLP/HTTP (hyper's HTTP/1.1 over
//! tokio-rustls), with the certificates of `test-certificates/`. It runs on
//! a runtime of its own, on its own thread, and reports the names of the
//! spans it receives.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::PathBuf;
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// A file of `test-certificates/`.
pub(crate) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("test-certificates")
        .join(name)
}

fn read_fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// Which OTLP transport the receiver speaks.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Front {
    Grpc,
    Http,
}

/// A running receiver; stopped when dropped.
pub(crate) struct TlsReceiver {
    pub(crate) addr: SocketAddr,
    spans: mpsc::Receiver<Vec<String>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TlsReceiver {
    /// Starts a receiver with `server.pem` on 127.0.0.1. With
    /// `require_client_certificate`, clients must present a certificate
    /// issued by `ca.pem` (mutual TLS).
    pub(crate) fn start(front: Front, require_client_certificate: bool) -> Self {
        let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (spans_tx, spans) = mpsc::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("tls-test-receiver".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).unwrap();
                    let signal = async {
                        let _ = stop_rx.await;
                    };
                    match front {
                        Front::Grpc => {
                            serve_grpc(listener, spans_tx, require_client_certificate, signal)
                                .await;
                        }
                        Front::Http => {
                            serve_http(listener, spans_tx, require_client_certificate, signal)
                                .await;
                        }
                    }
                });
            })
            .unwrap();
        TlsReceiver {
            addr,
            spans,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The span names of the next export request, if one arrives in time.
    pub(crate) fn next_export(&self, timeout: Duration) -> Option<Vec<String>> {
        self.spans.recv_timeout(timeout).ok()
    }
}

impl Drop for TlsReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn span_names(request: &ExportTraceServiceRequest) -> Vec<String> {
    request
        .resource_spans
        .iter()
        .flat_map(|resource| &resource.scope_spans)
        .flat_map(|scope| &scope.spans)
        .map(|span| span.name.clone())
        .collect()
}

struct Traces(mpsc::Sender<Vec<String>>);

#[tonic::async_trait]
impl TraceService for Traces {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let _ = self.0.send(span_names(request.get_ref()));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn serve_grpc(
    listener: TcpListener,
    spans: mpsc::Sender<Vec<String>>,
    require_client_certificate: bool,
    signal: impl Future<Output = ()> + Send,
) {
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(
        read_fixture("server.pem"),
        read_fixture("server.key"),
    ));
    if require_client_certificate {
        tls = tls.client_ca_root(Certificate::from_pem(read_fixture("ca.pem")));
    }
    let result = tonic::transport::Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(TraceServiceServer::new(Traces(spans)))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), signal)
        .await;
    if let Err(error) = result {
        eprintln!("TLS test gRPC receiver stopped: {error}");
    }
}

fn server_config(require_client_certificate: bool) -> ServerConfig {
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client_certificate {
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(&read_fixture("ca.pem")) {
            roots.add(certificate.unwrap()).unwrap();
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let chain = CertificateDer::pem_slice_iter(&read_fixture("server.pem"))
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(&read_fixture("server.key")).unwrap();
    builder.with_single_cert(chain, key).unwrap()
}

/// `POST` anything: an OTLP/HTTP protobuf trace request, answered with an
/// empty `ExportTraceServiceResponse`.
async fn handle(
    request: Request<Incoming>,
    spans: mpsc::Sender<Vec<String>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    };
    let Ok(decoded) = ExportTraceServiceRequest::decode(body) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let _ = spans.send(span_names(&decoded));
    let mut response = Response::new(Full::new(Bytes::from(
        ExportTraceServiceResponse::default().encode_to_vec(),
    )));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-protobuf"),
    );
    Ok(response)
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = code;
    response
}

async fn serve_http(
    listener: TcpListener,
    spans: mpsc::Sender<Vec<String>>,
    require_client_certificate: bool,
    signal: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(Arc::new(server_config(require_client_certificate)));
    tokio::pin!(signal);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut signal => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
        };
        let acceptor = acceptor.clone();
        let spans = spans.clone();
        tokio::spawn(async move {
            // A failed handshake (an untrusted client) just closes the connection.
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = service_fn(move |request| handle(request, spans.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
