//! The apalis-redis queue gauges against the real Redis on 127.0.0.1:6379:
//! what they read from queues apalis itself filled, that each poll is one
//! pipelined round trip, and what a Redis outage does (through a TCP proxy
//! the test cuts and restores). Queues get unique names and are deleted
//! afterwards.

use jobsight_testkit::jobs::RedisKeys;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis::prelude::*;
use apalis_redis::{Config, RedisStorage};
use jobsight_apalis::{QueueStatsHandle, RedisQueueStats};
use jobsight_core::semconv;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use redis::aio::{ConnectionLike, ConnectionManager};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

const REDIS: &str = "redis://127.0.0.1:6379/";
const WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Email {
    to: String,
}

fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("jobsight-test-{}-{nanos}-{name}", std::process::id())
}

async fn connect(url: &str) -> ConnectionManager {
    let client = redis::Client::open(url).expect("redis url");
    ConnectionManager::new(client)
        .await
        .expect("Redis on 127.0.0.1:6379 (the tests need it; .ci/run starts one)")
}

/// Counts what reaches the connection: pipelines and single commands.
#[derive(Clone)]
struct Counting {
    inner: ConnectionManager,
    pipelines: Arc<AtomicUsize>,
    commands: Arc<AtomicUsize>,
}

impl ConnectionLike for Counting {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        self.commands.fetch_add(1, Ordering::SeqCst);
        self.inner.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        self.pipelines.fetch_add(1, Ordering::SeqCst);
        self.inner.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `(queue, value)` of every point of gauge `name` in the last collection.
fn gauge_points(exporter: &InMemoryMetricExporter, name: &str) -> Vec<(String, f64)> {
    let Some(rm) = exporter.get_finished_metrics().unwrap().pop() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in rm.scope_metrics().flat_map(|sm| sm.metrics()) {
        if m.name() != name {
            continue;
        }
        fn queue_of<'a>(mut attrs: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> String {
            attrs
                .find(|kv| kv.key.as_str() == semconv::MESSAGING_DESTINATION_NAME)
                .map(|kv| kv.value.as_str().into_owned())
                .unwrap_or_default()
        }
        match m.data() {
            AggregatedMetrics::U64(MetricData::Gauge(g)) => {
                for p in g.data_points() {
                    out.push((queue_of(p.attributes()), p.value() as f64));
                }
            }
            AggregatedMetrics::F64(MetricData::Gauge(g)) => {
                for p in g.data_points() {
                    out.push((queue_of(p.attributes()), p.value()));
                }
            }
            AggregatedMetrics::U64(MetricData::Sum(s)) => {
                for p in s.data_points() {
                    out.push((queue_of(p.attributes()), p.value() as f64));
                }
            }
            _ => {}
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn meter() -> (SdkMeterProvider, InMemoryMetricExporter) {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    (provider, exporter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_read_what_apalis_wrote_in_one_round_trip_per_poll() {
    let mut conn = connect(REDIS).await;
    let (emails, empty) = (unique("emails"), unique("empty"));
    // Deleted when the test ends, passed or failed.
    let _keys = (RedisKeys::new(&emails), RedisKeys::new(&empty));

    // Five jobs pushed by apalis itself (no worker takes them).
    let mut storage = RedisStorage::<Email>::new(conn.clone())
        .with_config(Config::default().queue(emails.as_str()));
    for i in 0..5 {
        storage
            .push(Email {
                to: format!("user{i}@example.com"),
            })
            .await
            .expect("push");
    }
    // What workers and acks would leave behind: one due job waiting for
    // 120 s, a scheduled one, a live worker holding two jobs, a dead one
    // holding one, done and dead sets.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let _: () = redis::pipe()
        .cmd("ZADD")
        .arg(format!("{emails}:scheduled"))
        .arg(now - 120)
        .arg("old-one")
        .cmd("ZADD")
        .arg(format!("{emails}:scheduled"))
        .arg(now + 3600)
        .arg("later-one")
        .cmd("ZADD")
        .arg(format!("{emails}:workers"))
        .arg(now)
        .arg("w-live")
        .cmd("ZADD")
        .arg(format!("{emails}:workers"))
        .arg(now - 3600)
        .arg("w-gone")
        .cmd("SADD")
        .arg(format!("{emails}:inflight:w-live"))
        .arg("a")
        .arg("b")
        .cmd("SADD")
        .arg(format!("{emails}:inflight:w-gone"))
        .arg("c")
        .cmd("SADD")
        .arg(format!("{emails}:done"))
        .arg("d1")
        .arg("d2")
        .arg("d3")
        .cmd("SADD")
        .arg(format!("{emails}:dead"))
        .arg("x1")
        .query_async(&mut conn)
        .await
        .unwrap();

    let counting = Counting {
        inner: conn.clone(),
        pipelines: Arc::default(),
        commands: Arc::default(),
    };
    let (provider, exporter) = meter();
    let stats: QueueStatsHandle = RedisQueueStats::new(counting.clone())
        .queue(&emails)
        .queue(&empty)
        .interval(Duration::from_millis(100))
        .meter_provider(&provider)
        .start()
        .expect("start");
    // The live worker is known after the first poll; its jobs from the second.
    wait_until("three polls", || stats.polls() >= 3).await;
    let polls_before = stats.polls();
    let pipelines_before = counting.pipelines.load(Ordering::SeqCst);
    wait_until("two more polls", || stats.polls() >= polls_before + 2).await;
    // A poll may be in flight at either reading: allow one either way.
    let polls = (stats.polls() - polls_before) as i64;
    let pipelines = (counting.pipelines.load(Ordering::SeqCst) - pipelines_before) as i64;
    assert!(
        (pipelines - polls).abs() <= 1,
        "{pipelines} pipelines for {polls} polls"
    );
    assert_eq!(
        counting.commands.load(Ordering::SeqCst),
        0,
        "no single commands"
    );
    assert_eq!(stats.errors(), 0, "{:?}", stats.last_error());

    let snapshot = stats.snapshot();
    let q = &snapshot[0];
    assert_eq!(&*q.queue, emails.as_str());
    assert_eq!(q.depth, 6, "five pushed now + one due for 120 s");
    assert_eq!(q.scheduled, 1);
    assert_eq!(q.running, 2, "only the live worker's jobs");
    assert_eq!((q.done, q.dead), (3, 1));
    assert!((119.0..130.0).contains(&q.oldest_age), "{}", q.oldest_age);
    let e = &snapshot[1];
    assert_eq!((e.depth, e.oldest_age, e.running), (0, 0.0, 0));
    eprintln!(
        "poll of 2 queues: {:?} (one pipeline of {} commands)",
        stats.last_poll_duration(),
        2 * 8 + 1
    );

    provider.force_flush().unwrap();
    let depth = gauge_points(&exporter, semconv::METRIC_QUEUE_DEPTH);
    let mut expected = vec![(emails.clone(), 6.0), (empty.clone(), 0.0)];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(depth, expected);
    let age = gauge_points(&exporter, semconv::METRIC_QUEUE_OLDEST_AGE);
    assert_eq!(age.len(), 2);
    for name in [
        semconv::METRIC_QUEUE_SCHEDULED,
        semconv::METRIC_QUEUE_RUNNING,
        semconv::METRIC_QUEUE_DONE,
        semconv::METRIC_QUEUE_DEAD,
        semconv::METRIC_QUEUE_POLL_ERRORS,
    ] {
        assert_eq!(gauge_points(&exporter, name).len(), 2, "{name}");
    }

    stats.stop();
    provider.force_flush().unwrap();
    assert!(
        gauge_points(&exporter, semconv::METRIC_QUEUE_DEPTH).is_empty(),
        "a stopped poller reports nothing"
    );
}

/// A TCP proxy to Redis that the test can cut and restore.
struct Proxy {
    addr: std::net::SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        Self {
            addr,
            task: Some(tokio::spawn(Self::serve(listener))),
        }
    }

    async fn serve(listener: TcpListener) {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            connections.spawn(async move {
                if let Ok(mut redis) = tokio::net::TcpStream::connect("127.0.0.1:6379").await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut redis).await;
                }
            });
        }
    }

    /// Closes the listener and every proxied connection.
    async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    async fn restore(&mut self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("rebind the proxy port");
        self.task = Some(tokio::spawn(Self::serve(listener)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_counts_errors_and_keeps_the_last_values() {
    let mut direct = connect(REDIS).await;
    let queue = unique("outage");
    let _keys = RedisKeys::new(&queue);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let _: () = redis::cmd("ZADD")
        .arg(format!("{queue}:scheduled"))
        .arg(now - 30)
        .arg("waiting")
        .query_async(&mut direct)
        .await
        .unwrap();

    let mut proxy = Proxy::start().await;
    let through_proxy = connect(&format!("redis://{}/", proxy.addr)).await;
    let (provider, exporter) = meter();
    let stats = RedisQueueStats::new(through_proxy)
        .queue(&queue)
        .interval(Duration::from_millis(100))
        .poll_timeout(Duration::from_millis(300))
        .meter_provider(&provider)
        .start()
        .expect("start");
    wait_until("a poll", || stats.polls() >= 1).await;
    let before = stats.snapshot();
    assert_eq!(before[0].depth, 1);

    proxy.cut().await;
    // More work arrives while the poller cannot see.
    let _: () = redis::cmd("ZADD")
        .arg(format!("{queue}:scheduled"))
        .arg(now)
        .arg("unseen")
        .query_async(&mut direct)
        .await
        .unwrap();
    wait_until("errors during the outage", || stats.errors() >= 3).await;
    assert!(stats.last_error().is_some());
    let during = stats.snapshot();
    assert_eq!(during[0].depth, 1, "the last values are kept");
    assert_eq!(
        during[0].oldest_age, before[0].oldest_age,
        "and not updated"
    );
    provider.force_flush().unwrap();
    let depth = gauge_points(&exporter, semconv::METRIC_QUEUE_DEPTH);
    assert_eq!(depth, vec![(queue.clone(), 1.0)], "still reported");
    let errors: f64 = gauge_points(&exporter, semconv::METRIC_QUEUE_POLL_ERRORS)
        .iter()
        .map(|(_, v)| v)
        .sum();
    assert!(errors >= 3.0, "{errors}");

    proxy.restore().await;
    let polls = stats.polls();
    wait_until("polls after the outage", || {
        stats.polls() > polls && stats.snapshot()[0].depth == 2
    })
    .await;
    drop(stats);
    proxy.cut().await;
}

#[test]
fn starting_outside_a_runtime_is_an_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let conn = runtime.block_on(connect(REDIS));
    let error = RedisQueueStats::new(conn).queue("q").start().unwrap_err();
    assert!(
        matches!(error, jobsight_apalis::Error::NoRuntime),
        "{error}"
    );
}
