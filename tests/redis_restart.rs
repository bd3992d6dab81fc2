//! Redis restarting under a running worker: the test
//! launches its own `redis-server` on a free port, points an apalis-redis
//! worker with `MonitorLayer` (OTLP/gRPC to the in-process receiver), the
//! queue gauges (`RedisQueueStats`) and the check-in watchdog at it, and
//! stops and starts that Redis twice while jobs run:
//!
//! 1. `SHUTDOWN SAVE`, 4 s down, restart: Redis comes back **with its
//!    data** (as with persistence in production);
//! 2. `SHUTDOWN NOSAVE`, 4 s down, restart: Redis comes back **empty**.
//!
//! What apalis-redis 1.0 does (read in its source, seen here): the first
//! Redis call that fails during the outage (the 100 ms fetch, the
//! heartbeat, an acknowledgement) puts its backend in a `Dead` state and
//! `Worker::run` returns `WorkerError::BackendError`; the worker never
//! comes back by itself, and the jobs it was running are dropped mid-run.
//! A call made while the `ConnectionManager` reconnects waits instead, so
//! a worker may also ride an outage out (its jobs then finish, and their
//! acknowledgements land after the restart).
//! After an empty restart the same worker could not go on anyway
//! (`fetch_next.lua`: "worker not registered"). So the test runs the worker
//! the way a user must: under apalis's `Monitor` with `should_restart`,
//! which builds it again, under a new name (see `supervise`). What is
//! asserted is what jobsight owns: the spans of the jobs, the gauges, the
//! watchdog.
//!
//! Skipped, with a message, when `redis-server` is not installed (CI
//! installs it).

use jobsight_testkit::jobs::telemetry_to;
use jobsight_testkit::otlp::{Receiver, Span, brief, series_of_queue};
use jobsight_testkit::unique;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apalis::prelude::*;
use apalis_core::backend::BackendConfig;
use apalis_core::task::task_id::GenerateId;
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use jobsight_apalis::{MonitorLayer, RedisQueueStats};
use jobsight_checkin::watchdog::{Incident, Watchdog};
use jobsight_core::JobMonitor;
use jobsight_core::checkin::{CheckinPolicy, Checkins, Schedule};
use jobsight_otel::Telemetry;
use serde::{Deserialize, Serialize};

/// How long Redis stays down each time.
const OUTAGE: Duration = Duration::from_secs(4);
/// Generous bound for anything that should happen "soon" on a loaded machine.
const WAIT: Duration = Duration::from_secs(30);
/// The long job in flight when Redis stops.
const LONG_MS: u64 = 1500;
/// The interval policy of the watchdog: a success every 2 s, 1 s grace.
const EVERY: Duration = Duration::from_secs(2);
const GRACE: Duration = Duration::from_secs(1);
const MAX_RUNTIME: Duration = Duration::from_secs(3);

type RedisId = <RedisStorage<Chore> as BackendConfig>::Id;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Chore {
    ms: u64,
}

/// Long jobs started so far.
static LONG_STARTED: AtomicUsize = AtomicUsize::new(0);

async fn chore(job: Chore) -> Result<(), BoxDynError> {
    if job.ms == LONG_MS {
        LONG_STARTED.fetch_add(1, Ordering::SeqCst);
    }
    tokio::time::sleep(Duration::from_millis(job.ms)).await;
    Ok(())
}

// ------------------------------------------------------------ redis-server

/// A `redis-server` of the test's own on a free port, with a data
/// directory of its own; killed and removed on drop.
struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    fn installed() -> bool {
        Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(unique("jobsight-redis-restart"));
        std::fs::create_dir_all(&dir).expect("data dir");
        let mut server = Self {
            port,
            dir,
            child: None,
        };
        server.spawn();
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "no", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while self.command("PING").as_deref() != Ok("+PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One inline command over a fresh connection; the first reply line.
    fn command(&self, command: &str) -> Result<String, String> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(&stream)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        Ok(line.trim_end().to_owned())
    }

    /// `SHUTDOWN SAVE` (the data survives the restart) or `SHUTDOWN NOSAVE`
    /// (Redis comes back empty); waits for the process to exit.
    fn stop(&mut self, keep_data: bool) {
        let command = if keep_data {
            "SHUTDOWN SAVE"
        } else {
            "SHUTDOWN NOSAVE"
        };
        let _ = self.command(command); // no reply: the connection closes
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + WAIT;
        while child.try_wait().expect("wait redis-server").is_none() {
            assert!(Instant::now() < deadline, "redis-server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            self.command("PING").is_err(),
            "the port still answers after SHUTDOWN"
        );
        if !keep_data {
            // An earlier `SHUTDOWN SAVE`'s snapshot would be loaded again.
            let _ = std::fs::remove_file(self.dir.join("dump.rdb"));
        }
    }

    /// Whether `key` exists (a marker set before a restart).
    fn exists(&self, key: &str) -> bool {
        self.command(&format!("EXISTS {key}")).expect("EXISTS") == ":1"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ------------------------------------------------------------ the worker

/// Runs the worker under apalis's `Monitor`, which builds it again when
/// apalis ends it with a backend error (`should_restart`), under a new
/// name: apalis-redis refuses a name whose heartbeat is recent, and an
/// empty Redis has forgotten the old one. The new worker's first Redis call
/// (registration) waits in the `ConnectionManager`'s reconnect until Redis
/// is back, so the restarts do not spin. Runs until `stop` is set; records
/// the errors that ended a run.
async fn supervise(
    conn: ConnectionManager,
    queue: String,
    layer: MonitorLayer,
    stop: Arc<AtomicBool>,
    ended: Arc<Mutex<Vec<(Instant, String)>>>,
) {
    let monitor = Monitor::new()
        .register(move |run| {
            let config = Config::default()
                .queue(&queue)
                // See redis_e2e.rs: bounds apalis-core's stalled interval poll.
                // A dead worker's jobs are taken back after 10 heartbeats
                // (apalis-redis's default): 10 s.
                .heartbeat_interval(Duration::from_secs(1));
            let storage = RedisStorage::<Chore>::new(conn.clone())
                .with_config(config)
                .poll_with_interval(Duration::from_millis(100));
            WorkerBuilder::new(format!("{queue}-run{run}"))
                .backend(storage)
                .layer(layer.clone())
                .concurrency(4)
                .build(chore)
        })
        .should_restart(move |_, error| {
            lock(&ended).push((Instant::now(), error.to_string()));
            matches!(error, WorkerError::BackendError(_))
        });
    let signal = async move {
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    };
    monitor.run_with_signal(signal).await.expect("the monitor");
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A job pushed (or not: Redis was down) by the test.
#[derive(Clone, Debug)]
struct Pushed {
    id: String,
    error: Option<String>,
}

async fn push(storage: &mut RedisStorage<Chore>, ms: u64, log: &Mutex<Vec<Pushed>>) -> String {
    let id = <RedisId as GenerateId>::generate();
    let task = TaskBuilder::new(Chore { ms }).task_id(id.clone()).build();
    // A push waits while the connection manager reconnects.
    let result = tokio::time::timeout(Duration::from_secs(10), storage.push_task(task)).await;
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("timed out after 10 s".to_owned()),
    };
    let pushed = Pushed {
        id: id.to_string(),
        error,
    };
    lock(log).push(pushed);
    id.to_string()
}

/// Pushes a 20 ms job every 300 ms, except while `pause` is set, until
/// `stop`.
async fn produce(
    mut storage: RedisStorage<Chore>,
    pause: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Pushed>>>,
) {
    while !stop.load(Ordering::SeqCst) {
        if !pause.load(Ordering::SeqCst) {
            push(&mut storage, 20, &log).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn process_spans<'a>(spans: &'a [Span], queue: &str) -> BTreeMap<String, Vec<&'a Span>> {
    let mut jobs: BTreeMap<String, Vec<&Span>> = BTreeMap::new();
    let name = format!("process {queue}");
    for s in spans.iter().filter(|s| s.name == name) {
        let id = s.attr_str("messaging.message.id").unwrap_or("-").to_owned();
        jobs.entry(id).or_default().push(s);
    }
    for attempts in jobs.values_mut() {
        attempts.sort_by_key(|s| s.start_time_unix_nano);
    }
    jobs
}

fn outcome(span: &Span) -> &str {
    span.attr_str("job.outcome").unwrap_or("<none>")
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The latest value of gauge `name` for `queue` at the receiver.
fn gauge(rx: &Receiver, name: &str, queue: &str) -> Option<f64> {
    series_of_queue(&rx.metrics(), name, queue)
        .first()
        .map(|s| s.value)
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Flushes telemetry until the receiver has what `done` wants.
async fn flush_until(
    telemetry: &Telemetry,
    rx: &Receiver,
    what: &str,
    done: impl Fn(&Receiver) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let _ = telemetry.force_flush();
        if done(rx) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out at the receiver: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ------------------------------------------------------------ the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_gauges_and_watchdog_survive_redis_restarts() {
    if !RedisServer::installed() {
        eprintln!(
            "SKIPPED: redis-server is not installed (CI installs it; apt-get install redis-server)"
        );
        return;
    }
    let mut redis = RedisServer::start();
    let url = redis.url();
    let queue = unique("jobsight-restart");
    let parked = unique("jobsight-restart-parked");

    let rx = Receiver::grpc().await;
    let telemetry = telemetry_to(&rx, &unique("jobsight-e2e-restart"));
    let tracer_provider = telemetry.tracer_provider().expect("tracer provider");
    let meter_provider = telemetry.meter_provider().expect("meter provider");

    // The watchdog, on Redis's clock, checking every 250 ms.
    let incidents: Arc<Mutex<Vec<Incident>>> = Arc::default();
    let seen = incidents.clone();
    let watchdog = Watchdog::builder(url.as_str())
        .prefix(unique("jobsight-test-checkin"))
        .interval(Duration::from_millis(250))
        .timeout(Duration::from_millis(500))
        .meter_provider(meter_provider)
        .on_incident(move |incident| lock(&seen).push(incident.clone()))
        .build()
        .expect("watchdog");
    let checkins = Checkins::new()
        .policy(
            CheckinPolicy::job("Chore")
                .schedule(Schedule::every(EVERY))
                .grace(GRACE)
                .max_runtime(MAX_RUNTIME),
        )
        .sink(watchdog.recorder());
    let watchdog_task = watchdog.spawn(checkins.clone()).expect("spawn watchdog");

    let monitor = JobMonitor::builder()
        .tracer_provider(tracer_provider)
        .meter_provider(meter_provider)
        .build();
    let layer = MonitorLayer::builder()
        .monitor(monitor)
        .queue(queue.as_str())
        .checkins(checkins)
        .build()
        .unwrap();

    let conn = apalis_redis::connect(url.as_str()).await.expect("connect");
    let stats = RedisQueueStats::new(conn.clone())
        .queue(&queue)
        .queue(&parked)
        .interval(Duration::from_millis(200))
        .poll_timeout(Duration::from_millis(200))
        .meter_provider(meter_provider)
        .start()
        .expect("queue stats");

    let config = Config::default().queue(&queue);
    let mut pusher = RedisStorage::<Chore>::new(conn.clone()).with_config(config);
    let mut parked_pusher =
        RedisStorage::<Chore>::new(conn.clone()).with_config(Config::default().queue(&parked));
    let stop = Arc::new(AtomicBool::new(false));
    let ended: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let log: Arc<Mutex<Vec<Pushed>>> = Arc::default();
    let worker = tokio::spawn(supervise(
        conn.clone(),
        queue.clone(),
        layer,
        stop.clone(),
        ended.clone(),
    ));
    let producer_stop = Arc::new(AtomicBool::new(false));
    let producer_pause = Arc::new(AtomicBool::new(false));
    let producer = tokio::spawn(produce(
        pusher.clone(),
        producer_pause.clone(),
        producer_stop.clone(),
        log.clone(),
    ));

    // Three jobs on a queue no worker takes: the gauges must read them.
    for _ in 0..3 {
        push(&mut parked_pusher, 0, &Mutex::default()).await;
    }
    wait_until("the gauges read the parked queue", || {
        stats
            .snapshot()
            .iter()
            .any(|q| &*q.queue == parked.as_str() && q.depth == 3)
    })
    .await;
    flush_until(&telemetry, &rx, "depth 3 exported", |rx| {
        gauge(rx, "job.queue.depth", &parked) == Some(3.0)
    })
    .await;
    wait_until("the watchdog's first checks", || {
        watchdog.stats().checks() >= 2
    })
    .await;

    let mut long_jobs = Vec::new();
    let mut restarts = Vec::new();
    for keep_data in [true, false] {
        // Let a few short jobs run, then start a long one and stop Redis
        // while it runs.
        tokio::time::sleep(Duration::from_secs(1)).await;
        // No new jobs from here until the watchdog has judged twice after
        // the restart: the last success is then more than interval + grace
        // old, which only the pause logic keeps from being judged a miss.
        producer_pause.store(true, Ordering::SeqCst);
        let long = push(&mut pusher, LONG_MS, &log).await;
        let started = long_jobs.len() + 1;
        wait_until("the long job started", || {
            LONG_STARTED.load(Ordering::SeqCst) >= started
        })
        .await;
        long_jobs.push((long, keep_data));
        // Its `in_progress` check-in reaches Redis before Redis goes.
        assert!(watchdog.recorder().flush(Duration::from_secs(5)).await);
        tokio::time::sleep(Duration::from_millis(200)).await;

        let marker = unique("jobsight-restart-marker");
        assert_eq!(
            redis.command(&format!("SET {marker} 1")).as_deref(),
            Ok("+OK")
        );
        let errors_before = (stats.errors(), watchdog.stats().errors());
        let down_at = Instant::now();
        redis.stop(keep_data);
        tokio::time::sleep(OUTAGE).await;
        // During the outage: polls fail and are counted, the watchdog is
        // paused, the last values are still reported.
        assert!(stats.errors() > errors_before.0, "poll errors counted");
        assert!(watchdog.is_paused(), "the watchdog paused");
        assert!(watchdog.stats().errors() > errors_before.1);
        assert!(
            lock(&incidents).is_empty(),
            "no incident during the outage: {:?}",
            lock(&incidents)
        );
        redis.spawn();
        let up_at = Instant::now();
        let kept = redis.exists(&marker);
        eprintln!(
            "Redis {} after {:.1?} down",
            if kept {
                "restarted with its data"
            } else {
                "restarted empty"
            },
            up_at - down_at
        );
        assert_eq!(
            kept, keep_data,
            "SHUTDOWN SAVE keeps the data, NOSAVE does not"
        );
        if !keep_data {
            // Nothing parked any more: push two so the gauge has something to read.
            for _ in 0..2 {
                push(&mut parked_pusher, 0, &Mutex::default()).await;
            }
        }
        let parked_depth = if keep_data { 3 } else { 2 };
        // The watchdog judges again once its recorder has written what
        // waited (its retries back off up to 2 s): two judged checks.
        wait_until("the watchdog resumed", || {
            !watchdog.is_paused() && watchdog.recorder().stats().pending() == 0
        })
        .await;
        let checks = watchdog.stats().checks();
        wait_until("two checks after the return", || {
            watchdog.stats().checks() >= checks + 2
        })
        .await;
        assert!(
            lock(&incidents).is_empty(),
            "no false alarm when Redis returned: {:?}",
            lock(&incidents)
        );
        producer_pause.store(false, Ordering::SeqCst);

        // Jobs pushed after the restart are processed, and their spans arrive.
        let after_wall = SystemTime::now();
        let after: Vec<String> = {
            let mut ids = Vec::new();
            for _ in 0..3 {
                ids.push(push(&mut pusher, 20, &log).await);
            }
            ids
        };
        let first_done = rx
            .wait_for_spans(
                |spans: &[Span]| {
                    let jobs = process_spans(spans, &queue);
                    after.iter().all(|id| jobs.contains_key(id))
                },
                WAIT,
            )
            .await;
        let jobs = process_spans(&first_done, &queue);
        let earliest = after
            .iter()
            .filter_map(|id| jobs.get(id))
            .flat_map(|spans| spans.iter().map(|s| s.start_time_unix_nano))
            .min()
            .unwrap_or(0);
        let recovery = Duration::from_nanos(earliest.saturating_sub(unix_nanos(after_wall)));
        for id in &after {
            let attempts = jobs.get(id).unwrap_or_else(|| {
                panic!(
                    "job {id} pushed after the restart never ran (worker runs ended: {:?}; push: {:?}):\n{}",
                    lock(&ended),
                    lock(&log).iter().find(|p| &p.id == id),
                    brief(&first_done)
                )
            });
            assert_eq!(
                attempts.iter().map(|s| outcome(s)).collect::<Vec<_>>(),
                ["succeeded"],
                "{id}"
            );
        }
        restarts.push((keep_data, up_at - down_at, recovery));
        eprintln!("jobs pushed after the restart: the first started {recovery:.1?} after its push");

        if keep_data {
            // The long job runs again (see below) before the next outage.
            let long = &long_jobs[long_jobs.len() - 1].0;
            rx.wait_for_spans(
                |spans: &[Span]| {
                    process_spans(spans, &queue)
                        .get(long)
                        .is_some_and(|a| a.iter().any(|s| outcome(s) == "succeeded"))
                },
                WAIT,
            )
            .await;
        }

        // The gauges read the right values again.
        wait_until("the gauges read the parked queue again", || {
            stats
                .snapshot()
                .iter()
                .any(|q| &*q.queue == parked.as_str() && q.depth == parked_depth)
        })
        .await;
        flush_until(&telemetry, &rx, "the parked depth exported", |rx| {
            gauge(rx, "job.queue.depth", &parked) == Some(parked_depth as f64)
        })
        .await;
    }

    // Everything ran; no false alarm after two restarts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        lock(&incidents).is_empty(),
        "no missed or stuck run after Redis returned: {:?}",
        lock(&incidents)
    );
    assert_eq!(
        watchdog.stats().outages(),
        2,
        "one pause announced per outage"
    );
    assert_eq!(watchdog.recorder().stats().dropped(), 0);

    // A real miss is still found: no more jobs, and the 2 s + 1 s deadline passes.
    producer_stop.store(true, Ordering::SeqCst);
    producer.await.expect("producer");
    let quiet_from = Instant::now();
    wait_until("the watchdog reports the real miss", || {
        !lock(&incidents).is_empty()
    })
    .await;
    let found_after = quiet_from.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let found = lock(&incidents).clone();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].kind.as_str(), "missed");
    assert_eq!(&*found[0].monitor, "Chore");

    stop.store(true, Ordering::SeqCst);
    tokio::time::timeout(WAIT, worker)
        .await
        .expect("the worker stops")
        .expect("worker task");
    watchdog_task.abort();

    // At the receiver: every job that was pushed successfully and not lost
    // with an empty Redis has a span; the only outcomes are `succeeded`
    // and, for the long jobs Redis's outage cut off, `abandoned`.
    let spans = {
        let _ = telemetry.force_flush();
        rx.spans()
    };
    let jobs = process_spans(&spans, &queue);
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for attempts in jobs.values() {
        for s in attempts {
            *outcomes.entry(outcome(s).to_owned()).or_default() += 1;
        }
    }
    // A long job is cut off (`abandoned`) when apalis ends the worker while
    // it runs; when apalis notices the outage only after the job returned
    // (its interval poll can stall, see `supervise`), the job `succeeded`
    // and its acknowledgement is what failed. With its data back, Redis
    // still holds it in the dead worker's in-flight set: the next worker's
    // heartbeat takes it back and it runs once more. Short jobs succeed;
    // one whose acknowledgement was lost the same way runs twice.
    let mut long_first = Vec::new();
    let mut reruns = 0;
    for (id, attempts) in &jobs {
        let got: Vec<&str> = attempts.iter().map(|s| outcome(s)).collect();
        match long_jobs.iter().find(|(l, _)| l == id) {
            None => {
                assert!(
                    got.iter().all(|o| *o == "succeeded") && got.len() <= 2,
                    "{id}: {got:?}\n{}",
                    brief(&spans)
                );
                reruns += got.len() - 1;
            }
            Some((_, keep_data)) => {
                assert!(
                    ["abandoned", "succeeded"].contains(&got[0]),
                    "{id}: {got:?}"
                );
                long_first.push(got[0].to_owned());
                if *keep_data && got[0] == "abandoned" {
                    assert_eq!(got, ["abandoned", "succeeded"], "{id} runs again");
                } else if *keep_data {
                    // Its acknowledgement either waited in the connection
                    // manager's reconnect and landed after the restart, or
                    // was lost and the job ran again.
                    assert!(
                        got.len() <= 2 && got[1..].iter().all(|o| *o == "succeeded"),
                        "{id}: {got:?}"
                    );
                } else {
                    assert_eq!(got.len(), 1, "{id} is forgotten: {got:?}");
                }
            }
        }
    }
    for (long, _) in &long_jobs {
        assert!(jobs.contains_key(long), "long job {long} has no span");
    }
    let pushed = lock(&log).clone();
    let lost: Vec<&Pushed> = pushed
        .iter()
        .filter(|p| p.error.is_none() && !jobs.contains_key(&p.id))
        .collect();
    // Only jobs pushed before the empty restart may be lost (Redis forgot
    // them); none of those was waiting, as the worker took each within
    // 100 ms, so in practice none at all.
    assert!(lost.len() <= 1, "pushed, never ran: {lost:?}");
    let failed_pushes = pushed.iter().filter(|p| p.error.is_some()).count();

    // The poll errors crossed the wire, with their type.
    let poll_errors: f64 = series_of_queue(&rx.metrics(), "jobsight.queue_poll.errors", &parked)
        .iter()
        .map(|s| s.value)
        .sum();
    assert!(
        poll_errors >= 2.0,
        "jobsight.queue_poll.errors at the receiver: {poll_errors}"
    );
    let watchdog_errors: f64 =
        jobsight_testkit::otlp::series(&rx.metrics(), "job.checkin.watchdog.errors")
            .iter()
            .map(|s| s.value)
            .sum();
    assert_eq!(watchdog_errors as u64, watchdog.stats().errors());
    let ended = lock(&ended).clone();
    // apalis ends the worker at least once (what it does at the second
    // outage depends on timing: see the module docs); the test's job is to
    // show that monitoring follows whatever apalis does.
    assert!(!ended.is_empty(), "apalis never ended the worker?");

    eprintln!(
        "restarts (kept data, down for, first job started after its push): {restarts:?}\n\
         worker runs ended by apalis: {} ({:?})\n\
         spans by outcome: {outcomes:?}; long jobs' first attempts: {long_first:?}; \
         short jobs run twice: {reruns}; pushes refused while down: {failed_pushes}\n\
         queue poll errors: {} (exported for the parked queue: {poll_errors}); \
         watchdog: {} errors, {} outages, {} checks; real miss found {found_after:.1?} after the last job",
        ended.len(),
        ended.iter().map(|(_, e)| e.as_str()).collect::<Vec<_>>(),
        stats.errors(),
        watchdog.stats().errors(),
        watchdog.stats().outages(),
        watchdog.stats().checks(),
    );
    drop(stats);
    drop(telemetry);
}
