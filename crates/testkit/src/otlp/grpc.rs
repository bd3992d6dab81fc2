//! OTLP/gRPC front end: a tonic server with `TraceService`, `MetricsService`
//! and `LogsService`.

use std::future::Future;
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use super::receiver::{Mode, Signal, State, TlsConfig, grpc_code_for};

#[derive(Clone)]
struct Svc {
    state: Arc<State>,
}

async fn answer<T: Default>(
    state: &State,
    signal: Signal,
    mode: Mode,
) -> Result<Response<T>, Status> {
    match mode {
        Mode::Accept => {}
        Mode::Delay(d) => tokio::time::sleep(d).await,
        Mode::Reject(http) => {
            return Err(Status::new(
                grpc_code_for(http),
                format!("rejected by test receiver (as HTTP {http})"),
            ));
        }
        Mode::GrpcStatus(code) => {
            return Err(Status::new(code, "rejected by test receiver"));
        }
    }
    state.count_answered(signal);
    Ok(Response::new(T::default()))
}

#[tonic::async_trait]
impl TraceService for Svc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mode = self.state.on_traces(request.into_inner());
        answer(&self.state, Signal::Traces, mode).await
    }
}

#[tonic::async_trait]
impl MetricsService for Svc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let mode = self.state.on_metrics(request.into_inner());
        answer(&self.state, Signal::Metrics, mode).await
    }
}

#[tonic::async_trait]
impl LogsService for Svc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let mode = self.state.on_logs(request.into_inner());
        answer(&self.state, Signal::Logs, mode).await
    }
}

/// Serves until `signal` resolves. Compressed (grpc-encoding: gzip) requests are
/// refused by tonic with UNIMPLEMENTED: no compression feature is enabled.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<TlsConfig>,
    signal: impl Future<Output = ()> + Send + 'static,
) {
    let svc = Svc { state };
    let mut server = tonic::transport::Server::builder();
    #[cfg(feature = "tls")]
    if let Some(tls) = tls {
        server = server
            .tls_config(crate::tls::tonic_config(tls.require_client_certificate))
            .unwrap_or_else(|e| panic!("the receiver's TLS settings: {e}"));
    }
    #[cfg(not(feature = "tls"))]
    let _ = tls;
    let result = server
        .add_service(TraceServiceServer::new(svc.clone()))
        .add_service(MetricsServiceServer::new(svc.clone()))
        .add_service(LogsServiceServer::new(svc))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), signal)
        .await;
    if let Err(e) = result {
        eprintln!("test OTLP gRPC receiver stopped with an error: {e}");
    }
}
