//! The producer half of the Redis example: each job is enqueued from inside
//! a request-like span (`POST /reports`, with baggage `tenant=…`), recorded
//! as a `send {queue}` span; `examples/worker.rs` runs the jobs in another
//! process, linked (or parented) to those send spans.
//!
//! ```text
//! cargo run --example producer -- --queue reports --jobs 3
//! cargo run --example worker -- --queue reports --runs 3 --propagation link
//! ```
//!
//! Options, each also read from an environment variable:
//!
//! | option | variable | default | meaning |
//! |---|---|---|---|
//! | `--queue` | `JOBSIGHT_QUEUE` | `reports` | apalis-redis queue (namespace) |
//! | `--jobs` | `JOBSIGHT_JOBS` | `3` | jobs to enqueue |
//! | `--fail-attempts` | `JOBSIGHT_FAIL_ATTEMPTS` | `0` | attempts of each job that fail before one succeeds |
//! | `--style` | `JOBSIGHT_PUSH_STYLE` | `push` | `push`: `TracedPush` on the storage; `layer`: a Tower service with `SendLayer` |
//! | `--redis` | `REDIS_URL` | `redis://127.0.0.1:6379` | Redis |
//!
//! Telemetry comes from the `OTEL_*` variables (`OTEL_EXPORTER_OTLP_ENDPOINT`
//! …); with none set, nothing is exported. The program exits when the jobs
//! are pushed and the spans flushed.

use apalis::prelude::*;
use apalis_core::backend::BackendConfig;
use apalis_redis::{Config, RedisStorage};
use jobsight::demo::{BuildReport, Options};
use jobsight_apalis::{SendLayer, SinkService, TracedPush};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{FutureExt as _, SpanKind, TraceContextExt, Tracer};
use opentelemetry::{Context, KeyValue, global};
use tower::{Service, ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = Options::from_args();
    let queue = options.text("queue", "JOBSIGHT_QUEUE", "reports");
    let jobs: u32 = options.parsed("jobs", "JOBSIGHT_JOBS", "3")?;
    let fail_attempts: u32 = options.parsed("fail-attempts", "JOBSIGHT_FAIL_ATTEMPTS", "0")?;
    let style = options.text("style", "JOBSIGHT_PUSH_STYLE", "push");
    let redis_url = options.text("redis", "REDIS_URL", "redis://127.0.0.1:6379");

    let telemetry = jobsight_otel::Builder::new()
        .service_name("jobsight-example-producer")
        .summary(false)
        .install()?;

    let conn = apalis_redis::connect(redis_url).await?;
    let mut storage =
        RedisStorage::<BuildReport>::new(conn).with_config(Config::default().queue(&queue));
    // How pushes are recorded: the queue's name for `send {queue}`.
    let send = SendLayer::builder().queue(queue.as_str()).build()?;
    // The same as a Tower service, for producers that are services. It
    // does not know the backend: tell it which ids to give tasks.
    let mut service = ServiceBuilder::new()
        .layer(
            SendLayer::builder()
                .queue(queue.as_str())
                .generate_ids::<<RedisStorage<BuildReport> as BackendConfig>::Id>()
                .build()?,
        )
        .service(SinkService::new(storage.clone()));

    let tracer = global::tracer("jobsight-example-producer");
    for report in 0..jobs {
        // What a web framework's tracing would give a request handler.
        let tenant = format!("tenant-{report}");
        let request = tracer
            .span_builder("POST /reports")
            .with_kind(SpanKind::Server)
            .with_attributes(vec![KeyValue::new("app.tenant", tenant.clone())])
            .start(&tracer);
        let cx =
            Context::current_with_span(request).with_baggage(vec![KeyValue::new("tenant", tenant)]);
        let task = TaskBuilder::new(BuildReport {
            report,
            fail_attempts,
        })
        .build();
        let pushed = async {
            if style == "layer" {
                service.ready().await?.call(task).await
            } else {
                storage.push_task_traced_with(&send, task).await
            }
        }
        .with_context(cx.clone())
        .await;
        cx.span().end();
        pushed?;
        println!(
            "producer: report {report} enqueued on {queue} from trace {}",
            cx.span().span_context().trace_id()
        );
    }

    telemetry.shutdown()?;
    Ok(())
}
