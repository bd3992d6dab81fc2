//! The watchdog on the real Redis at 127.0.0.1:6379, with three worker
//! instances sharing the state (each with its own recorder, registry and
//! watchdog, as three processes would) and one manual clock: a missed run,
//! a stuck run, a worker killed mid-run — each reported exactly once — and
//! a Redis outage (through a proxy we cut) that pauses the watchdog without
//! false misses when Redis returns.
#![cfg(feature = "redis")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jobsight_checkin::watchdog::{Clock, Incident, IncidentKind, ManualClock, Watchdog};
use jobsight_core::checkin::{CheckinPolicy, Checkins, Schedule};
use jobsight_core::{JobMeta, JobMonitor, Transaction};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const REDIS: &str = "redis://127.0.0.1:6379/";
const MIN: Duration = Duration::from_secs(60);

fn unique_prefix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("jobsight-test:{}-{nanos}", std::process::id())
}

/// One worker process: its registry (same policies as the others), its
/// recorder and its watchdog.
struct Worker {
    watchdog: Watchdog,
    checkins: Checkins,
    monitor: JobMonitor,
}

impl Worker {
    fn new(url: &str, prefix: &str, clock: &ManualClock, policies: &[CheckinPolicy]) -> Self {
        let watchdog = Watchdog::builder(url)
            .prefix(prefix)
            .clock(Clock::Manual(clock.clone()))
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap();
        let checkins = Checkins::from_policies(policies.iter().cloned()).sink(watchdog.recorder());
        Worker {
            watchdog,
            checkins,
            monitor: JobMonitor::new(),
        }
    }

    fn start(&self, name: &'static str) -> Transaction {
        let mut tx = self.monitor.start(
            JobMeta::builder("test", "jobs")
                .name(name)
                .attempt(1)
                .build(),
        );
        let check = self.checkins.find("jobs", name).unwrap();
        tx.checkin(&self.checkins, &check);
        tx
    }

    async fn run_ok(&self, name: &'static str) {
        self.start(name).succeed();
        self.flush().await;
    }

    async fn flush(&self) {
        assert!(self.watchdog.recorder().flush(Duration::from_secs(5)).await);
    }

    async fn check(&self) -> Vec<Incident> {
        self.watchdog.check(&self.checkins).await.unwrap()
    }
}

/// Every worker checks, one after the other; all the incidents reported.
/// (The races that matter are run with `tokio::join!` in the tests.)
async fn check_all(workers: &[&Worker]) -> Vec<Incident> {
    let mut found = Vec::new();
    for worker in workers {
        found.extend(worker.check().await);
    }
    found
}

async fn cleanup(prefix: &str) {
    let client = redis::Client::open(REDIS).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

fn kinds(incidents: &[Incident]) -> Vec<(&str, &str)> {
    incidents
        .iter()
        .map(|i| (&*i.monitor, i.kind.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_run_is_reported_once_by_three_workers() {
    let prefix = unique_prefix();
    let clock = ManualClock::now();
    let policy = CheckinPolicy::job("digest")
        .schedule(Schedule::every(10 * MIN))
        .grace(MIN);
    let workers: Vec<Worker> = (0..3)
        .map(|_| Worker::new(REDIS, &prefix, &clock, std::slice::from_ref(&policy)))
        .collect();
    let all: Vec<&Worker> = workers.iter().collect();

    workers[0].run_ok("digest").await;
    assert!(check_all(&all).await.is_empty());
    clock.advance(10 * MIN + Duration::from_secs(30));
    assert!(check_all(&all).await.is_empty(), "within grace");
    clock.advance(MIN);
    // The three race for the incident concurrently.
    let (a, b, c) = tokio::join!(workers[0].check(), workers[1].check(), workers[2].check());
    let found: Vec<Incident> = [a, b, c].concat();
    assert_eq!(kinds(&found), [("digest", "missed")]);
    match &found[0].kind {
        IncidentKind::Missed { last_success, .. } => assert!(last_success.is_some()),
        other => panic!("{other:?}"),
    }
    // Still silent an hour later: the same incident, not reported again.
    clock.advance(60 * MIN);
    assert!(check_all(&all).await.is_empty());
    let total: u64 = workers.iter().map(|w| w.watchdog.stats().missed()).sum();
    assert_eq!(total, 1);

    // It runs again, then falls silent again: a new incident, once.
    workers[2].run_ok("digest").await;
    clock.advance(11 * MIN + Duration::from_secs(1));
    assert_eq!(kinds(&check_all(&all).await), [("digest", "missed")]);
    assert!(check_all(&all).await.is_empty());
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_run_is_reported_once_while_it_runs() {
    let prefix = unique_prefix();
    let clock = ManualClock::now();
    let policy = CheckinPolicy::job("export").max_runtime(5 * MIN);
    let workers: Vec<Worker> = (0..3)
        .map(|_| Worker::new(REDIS, &prefix, &clock, std::slice::from_ref(&policy)))
        .collect();
    let all: Vec<&Worker> = workers.iter().collect();

    // A quick run is never stuck.
    workers[0].run_ok("export").await;
    let hanging = workers[1].start("export");
    workers[1].flush().await;
    clock.advance(4 * MIN);
    assert!(check_all(&all).await.is_empty());
    clock.advance(2 * MIN);
    let (a, b, c) = tokio::join!(workers[0].check(), workers[1].check(), workers[2].check());
    let found: Vec<Incident> = [a, b, c].concat();
    assert_eq!(kinds(&found), [("export", "stuck")]);
    clock.advance(10 * MIN);
    assert!(check_all(&all).await.is_empty());

    // It finally ends: gone from the running set.
    hanging.succeed();
    workers[1].flush().await;
    clock.advance(10 * MIN);
    assert!(check_all(&all).await.is_empty());
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_is_found_stuck_by_the_others() {
    let prefix = unique_prefix();
    let clock = ManualClock::now();
    let policy = CheckinPolicy::job("import")
        .schedule(Schedule::every(60 * MIN))
        .max_runtime(5 * MIN);
    let workers: Vec<Worker> = (0..3)
        .map(|_| Worker::new(REDIS, &prefix, &clock, std::slice::from_ref(&policy)))
        .collect();

    let victim = &workers[2];
    let tx = victim.start("import");
    victim.flush().await;
    // Killed: no end event will ever be sent, and its watchdog is gone.
    std::mem::forget(tx);
    let survivors = [&workers[0], &workers[1]];
    clock.advance(3 * MIN);
    assert!(check_all(&survivors).await.is_empty());
    clock.advance(3 * MIN);
    let (a, b) = tokio::join!(workers[0].check(), workers[1].check());
    let found: Vec<Incident> = [a, b].concat();
    assert_eq!(kinds(&found), [("import", "stuck")]);
    clock.advance(30 * MIN);
    assert!(check_all(&survivors).await.is_empty());
    cleanup(&prefix).await;
}

/// A TCP proxy to Redis that the test can cut and restore.
struct Proxy {
    port: u16,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Proxy {
            port,
            tasks: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let tasks = self.tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect("127.0.0.1:6379").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(pipe);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    async fn restore(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_pauses_the_watchdog_without_false_misses() {
    let prefix = unique_prefix();
    let clock = ManualClock::now();
    let policy = CheckinPolicy::job("sync")
        .schedule(Schedule::every(10 * MIN))
        .grace(MIN);
    let proxy = Proxy::start().await;
    let worker = Worker::new(&proxy.url(), &prefix, &clock, std::slice::from_ref(&policy));

    worker.run_ok("sync").await;
    assert!(worker.check().await.is_empty());
    proxy.cut();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The deadline (11 min) passes while Redis is away.
    for _ in 0..3 {
        clock.advance(5 * MIN);
        assert!(worker.watchdog.check(&worker.checkins).await.is_err());
    }
    assert!(worker.watchdog.is_paused());
    assert_eq!(worker.watchdog.stats().errors(), 3);
    assert_eq!(worker.watchdog.stats().outages(), 1, "announced once");

    proxy.restore().await;
    // Redis is back: what fell while it was away is not judged.
    assert!(worker.check().await.is_empty());
    assert!(!worker.watchdog.is_paused());
    clock.advance(10 * MIN);
    assert!(
        worker.check().await.is_empty(),
        "a full interval from the return"
    );
    clock.advance(MIN + Duration::from_secs(1));
    assert_eq!(kinds(&worker.check().await), [("sync", "missed")]);
    assert!(worker.check().await.is_empty());
    proxy.cut();
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_schedule_missed_once_per_scheduled_time() {
    let prefix = unique_prefix();
    // 00:00:30 UTC on some day: the hourly job is due at 01:00.
    let day = 1_800_000_000_000i64 / 86_400_000 * 86_400_000;
    let clock = ManualClock::new(day + 30_000);
    let policy = CheckinPolicy::job("hourly")
        .schedule(Schedule::cron("0 * * * *", "Europe/Berlin").unwrap())
        .grace(2 * MIN)
        .max_runtime(10 * MIN);
    let workers: Vec<Worker> = (0..3)
        .map(|_| Worker::new(REDIS, &prefix, &clock, std::slice::from_ref(&policy)))
        .collect();
    let all: Vec<&Worker> = workers.iter().collect();
    assert!(check_all(&all).await.is_empty());
    // 01:00 passes with a run at 01:00:10: fine.
    clock.advance(60 * MIN - Duration::from_secs(20));
    workers[1].run_ok("hourly").await;
    clock.advance(5 * MIN);
    assert!(check_all(&all).await.is_empty());
    // 02:00 passes with no run: missed once, after the grace.
    clock.advance(55 * MIN + MIN);
    assert!(check_all(&all).await.is_empty(), "within grace");
    clock.advance(2 * MIN);
    assert_eq!(kinds(&check_all(&all).await), [("hourly", "missed")]);
    assert!(check_all(&all).await.is_empty());
    // 03:00 too: a second incident.
    clock.advance(60 * MIN);
    assert_eq!(kinds(&check_all(&all).await), [("hourly", "missed")]);
    cleanup(&prefix).await;
}

/// The child half of `a_killed_worker_process_is_found_stuck`: a worker
/// process that starts a run, makes sure Redis has it, says so on stdout
/// and then waits to be killed. Does nothing unless started by that test.
#[tokio::test]
#[ignore = "started as a child process by a_killed_worker_process_is_found_stuck"]
async fn child_worker() {
    let Ok(prefix) = std::env::var("JOBSIGHT_CHILD_PREFIX") else {
        return;
    };
    let watchdog = Watchdog::builder(REDIS).prefix(prefix).build().unwrap();
    let checkins = Checkins::new()
        .policy(CheckinPolicy::job("import").max_runtime(Duration::from_millis(500)))
        .sink(watchdog.recorder());
    let mut tx = JobMonitor::new().start(JobMeta::builder("test", "jobs").name("import").build());
    tx.checkin(&checkins, &checkins.find("jobs", "import").unwrap());
    assert!(watchdog.recorder().flush(Duration::from_secs(5)).await);
    println!("CHILD-STARTED");
    tokio::time::sleep(Duration::from_secs(60)).await;
    drop(tx);
}

/// A real worker process killed (SIGKILL) mid-run: the two surviving
/// workers find its run stuck, once, on Redis's own clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_process_is_found_stuck() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let prefix = unique_prefix();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_worker",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("JOBSIGHT_CHILD_PREFIX", &prefix)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let started = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("CHILD-STARTED"))
    })
    .await
    .unwrap();
    assert!(started, "the child worker did not start its run");
    child.kill().unwrap();
    child.wait().unwrap();

    let policy = CheckinPolicy::job("import").max_runtime(Duration::from_millis(500));
    let survivors: Vec<(Watchdog, Checkins)> = (0..2)
        .map(|_| {
            let watchdog = Watchdog::builder(REDIS)
                .prefix(prefix.clone())
                .build()
                .unwrap();
            let checkins = Checkins::new()
                .policy(policy.clone())
                .sink(watchdog.recorder());
            (watchdog, checkins)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (a, b) = tokio::join!(
        survivors[0].0.check(&survivors[0].1),
        survivors[1].0.check(&survivors[1].1)
    );
    let found: Vec<Incident> = [a.unwrap(), b.unwrap()].concat();
    assert_eq!(kinds(&found), [("import", "stuck")]);
    let again = survivors[0].0.check(&survivors[0].1).await.unwrap();
    assert!(again.is_empty());
    cleanup(&prefix).await;
}

/// Incidents reach the lifecycle observers of a monitor, as `Missed` and
/// `Stuck` events naming the check-in monitor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_reach_lifecycle_observers() {
    use jobsight_core::observer::{EventKind, JobEvent};

    let prefix = unique_prefix();
    let clock = ManualClock::now();
    /// What an observer saw: kind, job name, run id.
    type Seen = Vec<(EventKind, String, Option<String>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let log = seen.clone();
    let observing = JobMonitor::builder()
        .observer(move |event: &JobEvent| {
            log.lock().unwrap().push((
                event.kind,
                event.job.name().to_owned(),
                event.run_id.as_deref().map(str::to_owned),
            ));
        })
        .build();
    let watchdog = Watchdog::builder(REDIS)
        .prefix(prefix.clone())
        .clock(Clock::Manual(clock.clone()))
        .observers(observing.clone())
        .build()
        .unwrap();
    let checkins = Checkins::new()
        .policy(
            CheckinPolicy::job("sync")
                .schedule(Schedule::every(10 * MIN))
                .max_runtime(5 * MIN),
        )
        .sink(watchdog.recorder());
    let mut tx = JobMonitor::new().start(JobMeta::builder("test", "jobs").name("sync").build());
    tx.checkin(&checkins, &checkins.find("jobs", "sync").unwrap());
    assert!(watchdog.recorder().flush(Duration::from_secs(5)).await);
    assert!(watchdog.check(&checkins).await.unwrap().is_empty());
    clock.advance(20 * MIN);
    let found = watchdog.check(&checkins).await.unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(observing.observers().flush(Duration::from_secs(5)));
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by_key(|(kind, _, _)| kind.as_str());
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!((seen[0].0, seen[0].1.as_str()), (EventKind::Missed, "sync"));
    assert_eq!((seen[1].0, seen[1].1.as_str()), (EventKind::Stuck, "sync"));
    assert_eq!(
        seen[1].2.as_ref().map(String::len),
        Some(36),
        "the stuck run's id"
    );
    std::mem::forget(tx);
    cleanup(&prefix).await;
}
